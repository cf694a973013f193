"""The contexts of the report templates: one typed, frozen dataclass per template.

:class:`PostmortemContext` feeds ``templates/postmortem.md.j2`` (built from one
:class:`doctor.Diagnosis` by :func:`reports.postmortem_context`); :class:`FleetContext` feeds
``templates/fleet.md.j2`` (built from a :class:`doctor.ScanResult` by
:func:`reports.fleet_context`). Each top-level field is a template variable and each field of a
nested dataclass an attribute the template reads; ``tests/reports/test_template_context.py``
checks that these are exactly the names the templates use.

Every number comes from the diagnosis JSON (facts and finding evidence): the builders select,
group and format, and do arithmetic only on those numbers (a span from two of its timestamps,
1 − a share). Strings that come from artifacts are :class:`reports._escape.Text`, which a
template can print only through an escaping filter (see :mod:`reports._escape`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from doctor import Finding, Severity
from reports._escape import Text
from reports._throughput import Throughput

__all__ = [
    "TOP",
    "AttemptRow",
    "EdgeRow",
    "EventCount",
    "EvidenceItem",
    "FanoutView",
    "FindingView",
    "FleetContext",
    "GanttSection",
    "GanttTask",
    "Headline",
    "IdleGapRow",
    "Layer0",
    "MechanismView",
    "NodeCount",
    "PlanView",
    "PostmortemContext",
    "ReasonRow",
    "RunFactsView",
    "ScopeView",
    "SeverityCount",
    "SignatureRow",
    "StateCount",
    "Timeline",
    "TimelineRow",
    "ValidationRow",
    "WorstRun",
    "as_float",
    "as_int",
    "as_text",
    "duration",
    "finding_view",
    "gantt_time",
    "is_top",
    "iso_plus",
    "opt_text",
    "parse_time",
    "scope_name",
    "severity_counts",
]

#: The top level's name in tables and headings.
TOP = "top level"


# ---------------------------------------------------------------- shared pieces


@dataclass(frozen=True, slots=True)
class SeverityCount:
    """How many findings have one severity."""

    severity: str
    count: int


@dataclass(frozen=True, slots=True)
class EvidenceItem:
    """One evidence key of a finding and its value as text (lists and maps as compact JSON)."""

    key: Text
    value: Text


@dataclass(frozen=True, slots=True)
class FindingView:
    """One finding as the report shows it."""

    code: Text
    severity: str
    scope: Text
    node_id: Text | None
    summary: Text
    repair: Text | None
    evidence: tuple[EvidenceItem, ...]


@dataclass(frozen=True, slots=True)
class NodeCount:
    """A node and a count (heartbeats, events)."""

    node: Text
    count: int


def parse_time(text: object) -> datetime | None:
    """An RFC 3339 UTC timestamp of the diagnosis as an aware datetime (microseconds).

    >>> parse_time("2026-02-10T09:22:03.948370657Z")
    datetime.datetime(2026, 2, 10, 9, 22, 3, 948370, tzinfo=datetime.timezone.utc)
    >>> parse_time(None) is None
    True
    """
    if not isinstance(text, str):
        return None
    head, _, frac = text.rstrip("Z").partition(".")
    try:
        base = datetime.fromisoformat(head).replace(tzinfo=UTC)
    except ValueError:
        return None
    digits = "".join(ch for ch in frac if ch.isdigit())[:6]
    return base + timedelta(microseconds=int(digits.ljust(6, "0")) if digits else 0)


def gantt_time(text: object) -> str | None:
    """A diagnosis timestamp in the gantt block's ``dateFormat YYYY-MM-DD HH:mm:ss``.

    >>> gantt_time("2026-02-10T16:21:49.878354873Z")
    '2026-02-10 16:21:49'
    """
    ts = parse_time(text)
    return None if ts is None else ts.strftime("%Y-%m-%d %H:%M:%S")


def iso_plus(text: object, seconds: object) -> str | None:
    ts = parse_time(text)
    if ts is None or not isinstance(seconds, int | float):
        return None
    return (ts + timedelta(seconds=float(seconds))).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def as_int(value: object) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def as_float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def as_text(value: object) -> Text:
    return Text("" if value is None else str(value))


def opt_text(value: object) -> Text | None:
    return None if value is None else Text(str(value))


def scope_name(scope: str) -> Text:
    return Text(scope or TOP)


def is_top(scope: str) -> bool:
    return scope == "" or (scope.startswith("restart-") and "/" not in scope)


def _evidence_value(value: Any) -> Text:
    if isinstance(value, str):
        return Text(value)
    if isinstance(value, list) and len(value) > 8:
        value = [*value[:8], f"… and {len(value) - 8} more"]
    if isinstance(value, dict) and len(value) > 8:
        keep = dict(list(value.items())[:8])
        keep["…"] = f"and {len(value) - 8} more"
        value = keep
    return Text(json.dumps(value, ensure_ascii=False, default=str))


def finding_view(finding: Finding) -> FindingView:
    """The report's view of one finding: every evidence key, values as text."""
    return FindingView(
        code=Text(finding.code),
        severity=finding.severity.label,
        scope=scope_name(finding.scope),
        node_id=opt_text(finding.node_id),
        summary=Text(finding.summary),
        repair=opt_text(finding.repair),
        evidence=tuple(
            EvidenceItem(Text(str(k)), _evidence_value(v)) for k, v in finding.evidence.items()
        ),
    )


def severity_counts(findings: Iterable[Finding]) -> tuple[SeverityCount, ...]:
    """Findings per severity, most severe first, every severity present."""
    counts = {s: 0 for s in Severity}
    for f in findings:
        counts[f.severity] += 1
    return tuple(SeverityCount(s.label, counts[s]) for s in sorted(Severity, reverse=True))


def duration(seconds: float | None) -> str:
    """``7h 47m 56s``-style span (the ``dur`` filter's format).

    >>> duration(28076.161), duration(2890.231), duration(12.0)
    ('7h 47m 56s', '48m 10s', '12s')
    """
    if seconds is None:
        return "?"
    s = int(seconds)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    if h:
        return f"{h}h {m:02d}m {sec:02d}s"
    return f"{m}m {sec:02d}s" if m else f"{sec}s"


# ---------------------------------------------------------------- postmortem


@dataclass(frozen=True, slots=True)
class Headline:
    """One line of the executive summary: a finding code and its worst finding's summary."""

    code: Text
    severity: str
    count: int
    scopes: int
    summary: Text


@dataclass(frozen=True, slots=True)
class FanoutView:
    """The first fan-out's phase and the share of the run before it.

    ``pre_share`` is 1 − ``share`` (the reading of incident 04: 89.7 %), ``pre_wall_s`` is the
    run's ``wall_s`` minus the fan-out phase's.
    """

    node: Text
    started_at: Text
    wall_s: float
    share: float | None
    pre_wall_s: float | None
    pre_share: float | None


@dataclass(frozen=True, slots=True)
class RunFactsView:
    """The run facts section (facts of the diagnosis; null facts are ``None``)."""

    started_at: Text | None
    last_event_at: Text | None
    last_progress_at: Text | None
    wall_s: float | None
    events: int
    attempts_started: int
    attempts_ended: int
    final_json: bool
    owner_pid: int | None
    owner_alive: bool | None
    current_node: Text | None
    stall_timeout_s: float | None
    cost_usd: float | None
    branches: int
    fanout: FanoutView | None
    live_node: Text | None
    checkpoint_node: Text | None
    terminal_reason: Text | None = None
    stopped_by: Text | None = None
    terminal_detail: tuple[Text, ...] = ()
    owner_stopped: bool = False
    stopped_hint: str | None = None
    continue_command: str | None = None
    resumed_past: tuple[Text, ...] = ()


@dataclass(frozen=True, slots=True)
class GanttTask:
    """One bar of the gantt block; ``start``/``end`` in its ``dateFormat``.

    ``status`` is Mermaid's task tag list: ``done``, ``active``, ``crit`` or ``crit, done``.
    """

    id: str
    label: Text
    status: str
    start: str
    end: str


@dataclass(frozen=True, slots=True)
class GanttSection:
    """A section of the gantt block: the top level's phases, its attempts, or one branch."""

    name: Text
    tasks: tuple[GanttTask, ...]


@dataclass(frozen=True, slots=True)
class TimelineRow:
    """One row of the timeline table: when, where, which node or edge, and what happened."""

    at: Text
    scope: Text
    subject: Text
    what: str  # Markdown, printed as is: artifact text in it is escaped where it is built


@dataclass(frozen=True, slots=True)
class Timeline:
    """The timeline: a Mermaid gantt block and a table of moments."""

    title: Text
    sections: tuple[GanttSection, ...]
    branches_left_out: int
    rows: tuple[TimelineRow, ...]


@dataclass(frozen=True, slots=True)
class Layer0:
    """The observable incident, from the top level's findings."""

    state: Text
    final_json: bool
    open_attempts: tuple[Text, ...]
    fanout_node: Text | None
    fanout_branches: int
    fanout_finished: int
    heartbeats_after: int | None
    heartbeat_span_s: float | None
    last_progress_event: Text | None
    last_progress_at: Text | None
    nodes_after: tuple[NodeCount, ...]


@dataclass(frozen=True, slots=True)
class EdgeRow:
    """An ``edge_selected`` count of the top level; ``back`` when a retry_loop names it."""

    source: Text
    target: Text
    count: int
    back: bool


@dataclass(frozen=True, slots=True)
class AttemptRow:
    """Attempt duration statistics of one node (facts ``attempt_stats``)."""

    node: Text
    attempts: int
    min_s: float
    median_s: float
    max_s: float
    total_s: float


@dataclass(frozen=True, slots=True)
class ReasonRow:
    """A distinct failure reason of one node (facts ``failure_reasons``) and its count."""

    node: Text
    reason: Text
    count: int


@dataclass(frozen=True, slots=True)
class ScopeView:
    """One event stream of Layer 1: the top level (``is_top``) or one fan-out branch.

    The top level's row comes from the run facts (``failures`` = its failed attempts, from
    ``failure_reasons``; ``last_status`` none); a branch's from its ``branches[]`` row.
    ``edges`` are the top level's only (facts ``edges`` cover the top-level stream);
    ``reasons`` are the most frequent distinct failure reasons (``reasons_left_out`` more).
    """

    scope: Text
    is_top: bool
    state: Text
    last_status: Text | None
    started_at: Text | None
    last_progress_at: Text | None
    attempts_started: int
    failures: int
    final_json: bool
    edges: tuple[EdgeRow, ...]
    attempts: tuple[AttemptRow, ...]
    reasons: tuple[ReasonRow, ...]
    reasons_left_out: int
    findings: tuple[FindingView, ...]


@dataclass(frozen=True, slots=True)
class MechanismView:
    """A Layer 2 mechanism and the finding codes that show it failed."""

    title: str
    codes: tuple[Text, ...]
    findings: int
    scopes: tuple[Text, ...]


@dataclass(frozen=True, slots=True)
class PlanView:
    """An improvement-plan item for one finding code, with the command that accepts it."""

    priority: str
    title: str
    code: Text
    action: str
    acceptance: str
    findings: int
    scopes: int
    check: Text


@dataclass(frozen=True, slots=True)
class ValidationRow:
    """A regression test of the validation matrix."""

    code: Text
    test: str
    asserts: str


@dataclass(frozen=True, slots=True)
class EventCount:
    """Events of one type in the top-level stream."""

    event: Text
    count: int


@dataclass(frozen=True, slots=True)
class PostmortemContext:
    """Everything ``postmortem.md.j2`` prints, in the order of incident 04's postmortem.

    Scope: ``run_id``, ``path``, ``layout``, ``schema``, ``diagnose_command``. Executive
    summary: ``state``, ``headlines`` (one per code at ``error`` or above), ``counts``. Run
    facts: ``facts``. Timeline: ``timeline``. Deep dive: ``layer0``; Layer 1: ``layer1``
    (the top level, then each branch); Layer 2: ``mechanisms``. Improvement plan: ``plan``
    (P0, P1, P2 order). Validation matrix: ``validation``. Appendix: ``events_by_type``,
    ``findings_by_code``.
    """

    run_id: Text
    path: Text
    layout: Text
    schema: str
    diagnose_command: Text
    state: Text
    counts: tuple[SeverityCount, ...]
    headlines: tuple[Headline, ...]
    facts: RunFactsView
    timeline: Timeline
    layer0: Layer0
    layer1: tuple[ScopeView, ...]
    mechanisms: tuple[MechanismView, ...]
    plan: tuple[PlanView, ...]
    validation: tuple[ValidationRow, ...]
    events_by_type: tuple[EventCount, ...]
    findings_by_code: tuple[NodeCount, ...]


# ---------------------------------------------------------------- fleet


@dataclass(frozen=True, slots=True)
class StateCount:
    """Runs in one state, and their share of the fleet."""

    state: Text
    count: int
    share: float


@dataclass(frozen=True, slots=True)
class WorstRun:
    """A run ranked by its worst finding, then by its findings at ``error`` or above."""

    run_id: Text
    state: Text
    severity: str
    code: Text
    summary: Text
    errors: int
    findings: int


@dataclass(frozen=True, slots=True)
class SignatureRow:
    """A failure class of the Pareto table (``doctor.signature_groups`` over every failure
    reason of every run); ``share`` and ``cumulative`` are fractions of all failures."""

    rank: int
    signature: Text
    count: int
    share: float
    cumulative: float
    runs: int
    example: Text


@dataclass(frozen=True, slots=True)
class IdleGapRow:
    """An ``idle_gap`` finding: no progress while work was pending. ``where`` is the run id
    of a run's own gap, ``all runs`` for a fleet-wide gap, ``queue`` for the queue's."""

    where: Text
    start: Text
    end: Text
    duration_s: float
    pending: int
    alive_runs: int


@dataclass(frozen=True, slots=True)
class FleetContext:
    """Everything ``fleet.md.j2`` prints.

    ``roots`` scanned; ``runs``, ``events``, ``cost_usd``, ``read``/``reused`` (the scan's
    fleet facts); ``states``; ``counts`` (findings per severity over all runs and the fleet);
    ``worst`` runs (``worst_left_out`` not shown); ``signatures`` (the Pareto of failure
    classes; ``failures`` in all, ``signatures_left_out`` classes not shown); ``idle_gaps``,
    longest first (``idle_gaps_left_out`` not shown); ``throughput`` of the queue, ``None``
    when no queue was given; ``notes``, what the scan left out or could not cache.
    """

    roots: tuple[Text, ...]
    runs: int
    events: int
    cost_usd: float | None
    read: int
    reused: int
    states: tuple[StateCount, ...]
    counts: tuple[SeverityCount, ...]
    worst: tuple[WorstRun, ...]
    worst_left_out: int
    failures: int
    signatures: tuple[SignatureRow, ...]
    signatures_left_out: int
    idle_gaps: tuple[IdleGapRow, ...]
    idle_gaps_left_out: int
    throughput: Throughput | None
    #: What the scan says it left out or could not cache (``fleet.root_notes``, then
    #: ``fleet.cache_notes``): runs not read, directories not looked into.
    notes: tuple[Text, ...] = ()
