"""The chaos report's context: one typed, frozen dataclass per table of ``chaos.md.j2``.

:class:`ChaosContext` is built by ``chaos`` from a finished campaign (``chaos._report``) and
rendered by :func:`render_chaos`. As with the other contexts, each top-level field is a
template variable, each field of a nested dataclass an attribute the template reads, and
strings that come from artifacts or the history (targets, summaries, witness records, paths)
are :class:`reports._escape.Text`, printable only through an escaping filter. The fields are
documented in ``docs/chaos.md`` ("The report's context").

>>> ctx = ChaosContext(
...     seed=7, duration_s=30.0, elapsed_s=41.5, workers=4, db=Text("sqlite:///q.db"),
...     faults_selected=("torn_write",), ok=True, violated=0,
...     replay=Text("doctor chaos run --seed 7"), tickets=(TicketCount("done", 3),),
...     fault_kinds=(), faults=(), faults_left_out=0, skips=(), never_fired=(), recoveries=(),
...     latencies=(), invariants=())
>>> render_chaos(ctx).splitlines()[0]
'# Chaos campaign: seed 7 — passed'
"""

from __future__ import annotations

from dataclasses import dataclass

from reports._escape import Text

__all__ = [
    "ChaosContext",
    "FaultKindRow",
    "FaultRow",
    "InvariantView",
    "LatencyRow",
    "NeverFiredRow",
    "RecoveryRow",
    "SkipRow",
    "TicketCount",
    "render_chaos",
]


@dataclass(frozen=True, slots=True)
class TicketCount:
    """Tickets that ended in one status."""

    status: str
    count: int


@dataclass(frozen=True, slots=True)
class FaultKindRow:
    """One fault of the catalog: how often it hit something, failed (its injection met an
    error), was skipped for want of a target, because the queue's database was unavailable or
    because the campaign cannot apply it, and the doctor findings it declares it may cause."""

    kind: str
    injected: int
    failed: int
    skipped: int
    unavailable: int
    not_applicable: int
    may_cause: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NeverFiredRow:
    """A selected fault that hit nothing in the whole campaign, and why: the invariants that
    held say nothing about it."""

    kind: str
    why: Text


@dataclass(frozen=True, slots=True)
class SkipRow:
    """A fault that could not fire because the queue's database was unavailable: seconds
    after the start, its kind, and the driver's reason."""

    at_s: float
    kind: str
    reason: Text


@dataclass(frozen=True, slots=True)
class FaultRow:
    """One injected fault: seconds after the start, its kind, what it hit and how."""

    at_s: float
    kind: str
    target: Text
    detail: Text


@dataclass(frozen=True, slots=True)
class RecoveryRow:
    """A recovery the queue recorded (reclaimed, fenced, quarantined, released, …) and how
    often."""

    event: str
    count: int


@dataclass(frozen=True, slots=True)
class LatencyRow:
    """Reclaim latency after one kind of worker fault (seconds); ``None`` without samples."""

    kind: str
    samples: int
    p50_s: float | None
    p99_s: float | None
    max_s: float | None
    bound_p50_s: float
    bound_p99_s: float


@dataclass(frozen=True, slots=True)
class InvariantView:
    """One invariant's verdict, with its witness (history records, one JSON line each) when
    violated."""

    name: str
    ok: bool
    summary: Text
    violations: int
    witness: tuple[Text, ...]


@dataclass(frozen=True, slots=True)
class ChaosContext:
    """Everything ``chaos.md.j2`` prints.

    The campaign: ``seed``, ``duration_s`` (fault injection), ``elapsed_s`` (wall clock,
    drain and checks included), ``workers``, ``db``, ``faults_selected``, ``replay`` (the
    command that runs it again). The outcome: ``ok`` and ``violated`` (invariants violated),
    ``tickets`` (by final status), ``fault_kinds``, ``faults`` (the timeline;
    ``faults_left_out`` not shown), ``skips`` (faults the database's absence kept from
    firing), ``never_fired`` (selected faults that hit nothing), ``recoveries``,
    ``latencies``, ``invariants``.
    """

    seed: int
    duration_s: float
    elapsed_s: float
    workers: int
    db: Text
    faults_selected: tuple[str, ...]
    ok: bool
    violated: int
    replay: Text
    tickets: tuple[TicketCount, ...]
    fault_kinds: tuple[FaultKindRow, ...]
    faults: tuple[FaultRow, ...]
    faults_left_out: int
    skips: tuple[SkipRow, ...]
    never_fired: tuple[NeverFiredRow, ...]
    recoveries: tuple[RecoveryRow, ...]
    latencies: tuple[LatencyRow, ...]
    invariants: tuple[InvariantView, ...]


def render_chaos(context: ChaosContext) -> str:
    """The chaos report of a campaign, as Markdown.

    >>> import tempfile
    >>> from pathlib import Path
    >>> from chaos import CampaignConfig, CampaignResult, History, chaos_context, check
    >>> out = Path(tempfile.mkdtemp())
    >>> result = CampaignResult(CampaignConfig(seed=7, out=out), History(()), check(History(())),
    ...                         1.5, out)
    >>> render_chaos(chaos_context(result)).splitlines()[0]
    '# Chaos campaign: seed 7 — passed'
    """
    from reports._render import render

    return render(context)
