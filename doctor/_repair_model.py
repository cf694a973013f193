"""The records the repair loop shares: what a plan, a result and a report are.

:data:`ACTIONS` names the actions this release can carry out (:data:`QUEUE_ACTIONS` those on
the work queue); an :class:`Action` is one planned repair of the :class:`FindingRef` it
answers, an :class:`ActionResult` what applying it did, and a :class:`RepairReport` (a run
directory, :mod:`doctor._repair`) or :class:`QueueRepairReport` (the work queue,
:mod:`doctor._repair_queue`) the outcome of applying a plan.

Also here, for both appliers: the ``_Refused``/``_Done`` signals a runner raises, the
journal's provenance (``TOOL``, ``_version``), the context an applier carries (``_Ctx``), the
breaker (``_breaker``: at most :data:`BREAKER_TRIES` applied or failed tries of one action on
one target within :data:`BREAKER_WINDOW_S` seconds, counted from the journal, so incident 02's
recovery loop cannot happen; an unfinished ``started`` line counts as a try), the journal's
safety check (``_journal_unsafe``) and the
before/after comparison of findings (``_diff``).
"""

from __future__ import annotations

import stat
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from doctor._config import DoctorConfig
from doctor._journal import JOURNAL, STARTED, JournalEntry
from doctor._model import Finding, Severity

__all__ = [
    "ACTIONS",
    "BREAKER_TRIES",
    "BREAKER_WINDOW_S",
    "QUEUE_ACTIONS",
    "TOOL",
    "Action",
    "ActionResult",
    "FindingRef",
    "QueueRepairReport",
    "RepairReport",
]

#: The actions this release can carry out, in the order a plan runs them.
ACTIONS = ("truncate_torn_line", "ingest_status", "terminalize", "reclaim", "reconcile")
#: The actions on the work queue (their target is a ticket id, not a path in a run).
QUEUE_ACTIONS = ("reclaim", "reconcile")
#: The breaker: at most this many applied or failed tries of one action on one target ...
BREAKER_TRIES = 3
#: ... within this many seconds.
BREAKER_WINDOW_S = 24 * 3600.0
TOOL = "rundoctor doctor repair"
#: The journal's outcomes a repair reads back: the breaker counts them, and the last
#: ``applied`` makes an action a no-op; a ``started`` line is read back only while unfinished
#: (the action may have happened: a try). Refusals are written for people, never read back.
_COUNTED = ("applied", "failed", "started")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rundoctor")
    except PackageNotFoundError:
        return "0+unknown"


@dataclass(frozen=True, slots=True)
class FindingRef:
    """A finding as a repair report names it (a queue finding with its ticket)."""

    code: str
    severity: str
    scope: str
    node_id: str | None
    summary: str
    ticket_id: str | None = None

    @classmethod
    def of(cls, f: Finding) -> FindingRef:
        return cls(f.code, f.severity.label, f.scope, f.node_id, f.summary, _ticket_of(f))

    def to_json(self) -> dict[str, Any]:
        out = {
            "code": self.code,
            "severity": self.severity,
            "scope": self.scope,
            "node_id": self.node_id,
            "summary": self.summary,
        }
        return out if self.ticket_id is None else {**out, "ticket_id": self.ticket_id}


def _ticket_of(f: Finding) -> str | None:
    ticket = f.evidence.get("ticket_id") if f.run_id is None else None
    return ticket if isinstance(ticket, str) else None


@dataclass(frozen=True, slots=True)
class Action:
    """One planned repair. ``target`` (and ``source``) are paths relative to the run directory;
    a queue action's ``target`` is the ticket id.

    ``blocked`` says why the plan already expects a refusal (``apply_repairs`` re-checks
    anyway); ``byte_offset`` is where a torn line starts; ``stall_timeout_s`` the run's. A
    queue action names the lease the finding saw: ``lease_epoch`` (``stale_lease``), else its
    holder (``worker``, ``session_name``, ``pid``; ``session_desync`` records no epoch).
    """

    kind: str
    target: str
    finding: FindingRef
    reason: str
    source: str | None = None
    byte_offset: int | None = None
    stall_timeout_s: float | None = None
    blocked: str | None = None
    lease_epoch: int | None = None
    worker: str | None = None
    session_name: str | None = None
    pid: int | None = None

    @property
    def summary(self) -> str:
        """One line: what the action does, to what, and why."""
        epoch = "" if self.lease_epoch is None else f" at lease epoch {self.lease_epoch}"
        what = {
            "terminalize": f"write {self.target} (status fail)",
            "ingest_status": f"copy {self.source} to {self.target}",
            "truncate_torn_line": f"cut the torn last line of {self.target} at byte "
            f"{self.byte_offset}",
            "reclaim": f"take ticket {self.target}'s lease back{epoch}",
            "reconcile": f"make ticket {self.target}'s session record agree with the processes",
        }.get(self.kind, self.target)
        return f"{self.kind}: {what} — {self.reason}"

    def to_json(self) -> dict[str, Any]:
        out = {
            "action": self.kind,
            "target": self.target,
            "source": self.source,
            "byte_offset": self.byte_offset,
            "finding": self.finding.to_json(),
            "reason": self.reason,
            "blocked": self.blocked,
        }
        if self.kind in QUEUE_ACTIONS:
            lease = {"lease_epoch": self.lease_epoch, "worker": self.worker}
            out |= {**lease, "session_name": self.session_name, "pid": self.pid}
        return out


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What one action did: ``applied``, ``noop`` (already done), ``refused`` (its
    precondition does not hold), ``failed`` (an error while acting) or ``breaker``."""

    action: Action
    outcome: str
    message: str
    before_sha256: str | None = None
    after_sha256: str | None = None
    backup: str | None = None
    resolved: tuple[FindingRef, ...] = ()
    introduced: tuple[FindingRef, ...] = ()

    @property
    def summary(self) -> str:
        return f"{self.action.kind} {self.action.target}: {self.outcome} — {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {
            **self.action.to_json(),
            "outcome": self.outcome,
            "message": self.message,
            "before_sha256": self.before_sha256,
            "after_sha256": self.after_sha256,
            "backup": self.backup,
            "resolved": [r.to_json() for r in self.resolved],
            "introduced": [r.to_json() for r in self.introduced],
        }


@dataclass(frozen=True, slots=True)
class RepairReport:
    """The outcome of :func:`apply_repairs`: one result per action, and what remains."""

    run_id: str
    path: str
    results: tuple[ActionResult, ...]
    remaining: tuple[FindingRef, ...]
    state: str

    @property
    def exit_code(self) -> int:
        """0 when every action applied (or was done already) and nothing at ``error`` or above
        remains; 1 otherwise."""
        return _exit_code(self.results, self.remaining)

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "path": self.path,
            "state": self.state,
            "results": [r.to_json() for r in self.results],
            "remaining": [f.to_json() for f in self.remaining],
        }


@dataclass(frozen=True, slots=True)
class QueueRepairReport:
    """The outcome of :func:`apply_queue_repairs`: one result per action, and the queue's
    findings that remain. ``queue`` is printable (no password); ``journal`` is the file."""

    queue: str
    journal: str
    results: tuple[ActionResult, ...]
    remaining: tuple[FindingRef, ...]
    #: Why the queue could not be scanned again after the repairs (it failed: a server
    #: restarted, a connection dropped), or None when it was: ``remaining`` is then empty,
    #: and unknown.
    unverified: str | None = None

    @property
    def exit_code(self) -> int:
        """As :attr:`RepairReport.exit_code`; 2 when the queue failed before the repairs
        could be verified (:attr:`unverified`)."""
        return 2 if self.unverified else _exit_code(self.results, self.remaining)

    def to_json(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "journal": self.journal,
            "results": [r.to_json() for r in self.results],
            "remaining": [f.to_json() for f in self.remaining],
            "unverified": self.unverified,
        }


def _exit_code(results: Sequence[ActionResult], remaining: Sequence[FindingRef]) -> int:
    if any(r.outcome not in ("applied", "noop") for r in results):
        return 1
    return int(any(Severity.parse(f.severity) >= Severity.ERROR for f in remaining))


class _Refused(Exception):
    """A precondition does not hold; the message says which."""


class _Done(Exception):
    """The action's result is already in place."""


# ---------------------------------------------------------------- shared by both appliers


@dataclass
class _Ctx:
    run_path: Path
    run_id: str
    config: DoctorConfig
    journal: list[JournalEntry]
    provenance: dict[str, Any] = field(default_factory=dict)
    #: The run directory opened ``O_DIRECTORY|O_NOFOLLOW``: every write is relative to it.
    run_fd: int = -1
    #: The test seam of :func:`doctor._repair.apply_repairs` (``race_hook``), else None.
    race_hook: Callable[[str], None] | None = None
    #: The seam after an action wrote, before its outcome is journaled (``wrote_hook``).
    wrote_hook: Callable[[str], None] | None = None
    #: Journals a ``started`` line of the action being applied, with the keys given (set by
    #: the applier for each action).
    start: Callable[[dict[str, Any]], None] | None = None

    def checked(self, kind: str) -> None:
        """An action has checked its preconditions and is about to write: journal that it
        starts (an ``OSError`` here fails the action before a byte is written), then call the
        seam."""
        if self.start is not None:
            self.start({})
        if self.race_hook is not None:
            self.race_hook(kind)

    def start_step(self, extra: dict[str, Any]) -> None:
        """Journal a step of the action about to write (a ``started`` line with ``extra``)."""
        if self.start is not None:
            self.start(extra)

    def wrote(self, point: str) -> None:
        """An action wrote (``point``: its kind, or a step within it): call the seam."""
        if self.wrote_hook is not None:
            self.wrote_hook(point)


def _breaker(ctx: _Ctx, action: Action, tries: int, window_s: float) -> str | None:
    since = ctx.config.now - window_s
    recent: list[JournalEntry] = []
    attempts: set[str] = set()  # an attempt's several started lines (a cut's moves) are one try
    for e in ctx.journal:
        if e.action != action.kind or e.target != action.target or e.outcome not in _COUNTED:
            continue
        if e.at_s < since or (e.outcome == STARTED and e.attempt in attempts):
            continue
        if e.outcome == STARTED and e.attempt is not None:
            attempts.add(e.attempt)
        recent.append(e)
    if len(recent) < tries:
        return None
    return (
        f"breaker open: {action.kind} on {action.target} was tried {len(recent)} times since "
        f"{recent[0].at} (limit {tries} in {window_s:.0f} s); something keeps undoing it, and "
        "repairing it again would be a recovery loop (incident 02). Find what undoes it; the "
        "tries are in repairs.ndjson"
    )


def _diff(
    before: Sequence[Finding], after: Sequence[Finding]
) -> tuple[list[FindingRef], list[FindingRef]]:
    """Findings gone and findings new, by (code, scope, node, ticket): a finding whose summary
    or evidence changed (a state named in it, say) is the same finding, still there."""

    def key(f: Finding) -> tuple[str, str, str | None, str | None]:
        return (f.code, f.scope, f.node_id, _ticket_of(f))

    left = Counter(key(f) for f in after) - Counter(key(f) for f in before)
    gone = Counter(key(f) for f in before) - Counter(key(f) for f in after)
    resolved, introduced = [], []
    for f in before:
        if gone[key(f)] > 0:
            gone[key(f)] -= 1
            resolved.append(FindingRef.of(f))
    for f in after:
        if left[key(f)] > 0:
            left[key(f)] -= 1
            introduced.append(FindingRef.of(f))
    return resolved, introduced


def _journal_unsafe(run_path: Path) -> str | None:
    path = run_path / JOURNAL
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return None
    if stat.S_ISREG(mode):
        return None
    return f"{JOURNAL} is a symlink or not a regular file; nothing is done without a journal"
