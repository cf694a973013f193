"""Planning repairs: :func:`plan_repairs` turns a diagnosis's findings into actions.

Each finding that names a ``repair`` becomes an :class:`~doctor._repair_model.Action`, one per
(action, target), in :data:`~doctor._repair_model.ACTIONS` order, carrying the reason it would
be refused (``blocked``) when its precondition already fails at plan time; the runners check
again right before acting. A run's :class:`~doctor._model.Diagnosis` plans the actions on the
run directory (``terminalize`` of a top-level finding, ``ingest_status``,
``truncate_torn_line``: :mod:`doctor._repair_actions` carries them out); queue findings (a
:class:`~doctor._diagnose.ScanResult`'s fleet findings, present when the scan read
``config.db``) plan ``reclaim`` and ``reconcile`` of a ticket, carried out by
:func:`doctor._repair_queue.apply_queue_repairs`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from doctor._config import DoctorConfig
from doctor._detectors._queue import same_host, this_host
from doctor._diagnose import ScanResult
from doctor._journal import STARTED, JournalEntry, read_journal
from doctor._layout import is_top_scope
from doctor._model import Diagnosis, Finding
from doctor._ndjson import NOT_AN_EVENT
from doctor._repair_actions import _is_placeholder, _start_written_ns, cut_forecast
from doctor._repair_model import _COUNTED, ACTIONS, QUEUE_ACTIONS, Action, FindingRef
from doctor._timestamps import parse_iso
from rundoctor.liveness import owner_alive

__all__ = [
    "TerminalizeClock",
    "half_done_cuts",
    "plan_finishing",
    "plan_repairs",
    "terminalize_clock",
]


def _age_s(config: DoctorConfig, ts: object) -> float | None:
    ns = parse_iso(ts)
    return None if ns is None else config.now - ns / 1e9


def plan_repairs(diagnosis: Diagnosis | ScanResult, config: DoctorConfig) -> list[Action]:
    """The repairs the diagnosis calls for, one per (action, target), in :data:`ACTIONS` order.

    A run's :class:`Diagnosis` plans the run's repairs (and queue repairs, should it carry
    queue findings); a :class:`ScanResult` plans its fleet findings' repairs: the queue's,
    present when the scan read ``config.db``.

    >>> from doctor import Diagnosis, DoctorConfig
    >>> plan_repairs(Diagnosis("r1", "/runs/r1", "kilroy", "succeeded", {}), DoctorConfig())
    []
    """
    facts: Mapping[str, Any] = {} if isinstance(diagnosis, ScanResult) else diagnosis.facts
    run_path = None if isinstance(diagnosis, ScanResult) else Path(diagnosis.path)
    actions: dict[tuple[str, str], Action] = {}
    for f in diagnosis.findings:
        ref = FindingRef.of(f)
        if f.repair in QUEUE_ACTIONS:
            action = _plan_queue(f, ref, config)
        elif run_path is None:
            continue
        else:
            action = _plan_run(f, ref, facts, run_path, config)
        if action is None:
            continue
        key = (action.kind, action.target)
        # A ticket that is both stale_lease and session_desync: keep the plan with an epoch.
        if key not in actions or (actions[key].lease_epoch is None and action.lease_epoch):
            actions[key] = action
    return sorted(actions.values(), key=lambda a: (ACTIONS.index(a.kind), a.target))


def half_done_cuts(journal: Sequence[JournalEntry]) -> list[tuple[str, JournalEntry, Action]]:
    """The cuts a killed (or stopped) repair left half done, by ``journal`` (a run's, as
    :func:`~doctor._journal.read_journal` gives it): each attempt whose last unfinished
    ``started`` line journaled a ``cut``, with that line and the action that finishes it.

    >>> half_done_cuts([])
    []
    """
    last: dict[str, JournalEntry] = {}
    for e in journal:
        if e.outcome == STARTED and e.attempt is not None and "cut" in e.extra:
            last[e.attempt] = e
    out = []
    for attempt, e in last.items():
        f, cut = e.finding, e.extra["cut"]
        node = f.get("node_id")
        action = Action(
            e.action,
            e.target,
            FindingRef(
                str(f.get("code", "")),
                "warning",
                str(f.get("scope", "")),
                node if isinstance(node, str) else None,
                "a repair left its cut of this stream half done",
            ),
            (
                f"repair attempt {attempt} began a cut it did not finish (killed, or outrun by "
                "a writer): the stream may hold a moved line twice"
            ),
            byte_offset=at if isinstance(at := cut.get("at"), int) else None,
        )
        out.append((attempt, e, action))
    return out


def plan_finishing(diagnosis: Diagnosis, run_path: Path | None = None) -> list[Action]:
    """What ``doctor repair --apply`` finishes before its plan: the cuts a killed repair left
    half done in the run (:func:`half_done_cuts`), each ``blocked`` by the reason finishing
    it would be refused now (the run's owner alive, the stream changed since). ``run_path``
    is the run's directory (default: the diagnosis's path, which is text: a name that is not
    UTF-8 is escaped there)."""
    run_path = Path(diagnosis.path) if run_path is None else run_path
    alive = diagnosis.facts.get("owner_alive")
    return [
        dataclasses.replace(
            action,
            blocked=cut_forecast(
                run_path, e.target, e.extra["cut"], alive if isinstance(alive, bool) else None
            ),
        )
        for _attempt, e, action in half_done_cuts(read_journal(run_path, outcomes=_COUNTED))
    ]


def _plan_run(
    f: Finding, ref: FindingRef, facts: Mapping[str, Any], run_path: Path, config: DoctorConfig
) -> Action | None:
    """The repair of a run's finding, or None when it names none this module plans."""
    if f.repair == "terminalize" and is_top_scope(f.scope):
        return _plan_terminalize(ref, facts, config, run_path)
    if f.repair == "ingest_status":
        return _plan_ingest_status(f, ref, run_path, facts)
    if f.repair == "truncate_torn_line":
        return _plan_truncate(f, ref, facts)
    return None


@dataclass(frozen=True, slots=True)
class TerminalizeClock:
    """How long ago a run last wrote, against its stall timeout: a terminalize refuses a run
    that wrote within it. ``age_s`` is the age of its last event, or of its start documents
    when it wrote no event (``from_start``); None when nothing dates it."""

    stall_timeout_s: float
    age_s: float | None
    from_start: bool = False

    @property
    def left_s(self) -> float | None:
        """Seconds until the stall timeout has passed since the run last wrote (0 at the
        boundary, which still refuses); None once it has, or when nothing dates the run."""
        if self.age_s is None or self.age_s > self.stall_timeout_s:
            return None
        return self.stall_timeout_s - self.age_s


def terminalize_clock(
    facts: Mapping[str, Any], run_path: Path, config: DoctorConfig
) -> TerminalizeClock:
    """The run's :class:`TerminalizeClock` at ``config.now``: the one rule both the repair
    plan and the diagnosis's hint judge a terminalize's wait by. The stall timeout is the
    run's (``facts``), else the configured one.

    >>> from doctor import DoctorConfig
    >>> c = terminalize_clock({"last_event_at": "2026-01-01T00:00:00Z"}, Path("/nonexistent"),
    ...     DoctorConfig(now=1767225614.0))
    >>> c.stall_timeout_s, c.age_s, c.left_s
    (600.0, 14.0, 586.0)
    """
    stall = facts.get("stall_timeout_s")
    stall = float(stall) if isinstance(stall, int | float) else config.stall_timeout_s
    if facts.get("last_event_at") is None and (started := _start_written_ns(run_path)):
        return TerminalizeClock(stall, config.now - started / 1e9, from_start=True)
    return TerminalizeClock(stall, _age_s(config, facts.get("last_event_at")))


def _plan_terminalize(
    ref: FindingRef, facts: Mapping[str, Any], config: DoctorConfig, run_path: Path
) -> Action:
    """Write the run's final.json; blocked while its owner may live or its last event (its
    start, when it wrote none) is within the stall timeout."""
    clock = terminalize_clock(facts, run_path, config)
    stall = clock.stall_timeout_s
    what = "the run wrote no event; its start" if clock.from_start else "the last event"
    blocked = None
    if facts.get("owner_alive") is not False:
        blocked = "the owner process is not known to be dead"
    elif clock.left_s is not None:
        blocked = f"{what} is {clock.age_s:.0f} s old, within the {stall:.0f} s stall timeout"
    pid = facts.get("owner_pid")
    last = facts.get("last_event_at")
    since = f"nothing was written since {last}" if last else "it never wrote an event"
    return Action(
        "terminalize",
        "final.json",
        ref,
        f"owner pid {pid} is dead and {since} (stall timeout {stall:.0f} s)",
        stall_timeout_s=stall,
        blocked=blocked,
    )


def _plan_ingest_status(
    f: Finding, ref: FindingRef, run_path: Path, facts: Mapping[str, Any]
) -> Action | None:
    """Copy a stranded status file to the canonical path; blocked unless what is there is
    only the engine's placeholder, and while the run's owner is alive."""
    ev = f.evidence
    target, source = ev.get("expected_path"), ev.get("found_path")
    if not (isinstance(target, str) and isinstance(source, str)):
        return None
    canonical = run_path / target
    kept = os.path.lexists(canonical) and not _is_placeholder(canonical)
    blocked = None
    if kept:
        blocked = (
            f"{target} already records an outcome; the repair only replaces an "
            "engine's 'missing status.json' placeholder or a cancellation"
        )
    elif facts.get("owner_alive") is True:
        blocked = "the owner process is alive and may write the stage's status.json itself"
    return Action(
        "ingest_status",
        target,
        ref,
        _ingest_reason(ev, target, source),
        source=source,
        blocked=blocked,
    )


def _ingest_reason(ev: Mapping[str, Any], target: str, source: str) -> str:
    """Why an ``ingest_status`` copies ``source`` to ``target``, by the finding's evidence."""
    outcome = ev.get("found_outcome")
    if ev.get("lost_by_resume"):
        return (
            f"the run's resume failed for want of {target}, which the attempt killed before "
            f"it had deleted, while {source} holds outcome {outcome!r}"
        )
    if ev.get("canceled_status"):
        return (
            f"a resume would route on the cancellation {target} records, not on the outcome "
            f"of the visit the checkpoint recorded, which {source} holds ({outcome!r})"
        )
    if ev.get("resume_would_fail"):
        return (
            f"a resume would fail for want of {target}, which the killed attempt had "
            f"deleted, while {source} holds outcome {outcome!r}"
        )
    node = ev.get("node_id")
    return f"{node} failed for want of a status file while {source} holds outcome {outcome!r}"


def _cut_line(detail: object) -> str:
    """What the last line a truncate cuts is, by the torn line's ``detail``.

    >>> _cut_line("truncated JSON")
    'a half-written append (truncated JSON)'
    """
    if detail == NOT_AN_EVENT:
        return (
            "a JSON object but no event, with no newline after it: the next append would be "
            "glued onto it"
        )
    return f"a half-written append ({detail})"


def _plan_truncate(f: Finding, ref: FindingRef, facts: Mapping[str, Any]) -> Action | None:
    """Cut a torn last line off a stream; blocked while its owner is alive."""
    ev = f.evidence
    target, offset = ev.get("file"), ev.get("byte_offset")
    if not (isinstance(target, str) and isinstance(offset, int)):
        return None
    return Action(
        "truncate_torn_line",
        target,
        ref,
        f"its last line, from byte {offset}, is {_cut_line(ev.get('detail'))}",
        byte_offset=offset,
        blocked="the owner process is alive and may be writing that line"
        if facts.get("owner_alive") is True
        else None,
    )


def _plan_queue(f: Finding, ref: FindingRef, config: DoctorConfig) -> Action | None:
    """A ``reclaim`` or ``reconcile`` of the finding's ticket, with the plan's forecast."""
    ev = f.evidence
    ticket = ev.get("ticket_id")
    if not isinstance(ticket, str) or f.repair is None:
        return None
    epoch, pid = ev.get("lease_epoch"), ev.get("pid")
    epoch = epoch if isinstance(epoch, int) else None
    pid = pid if isinstance(pid, int) else None
    worker, session = ev.get("worker"), ev.get("session_name")
    status = ev.get("status", ev.get("recorded_status"))
    start = ev.get("proc_start_time")
    local = same_host(ev.get("host"), this_host())
    dead = local and owner_alive(pid, start if isinstance(start, int) else None) is False
    expires = ev.get("lease_expires_at")
    blocked = None
    if not config.db:
        blocked = "no queue given: queue repairs need its URL (doctor repair --db URL)"
    elif f.repair == "reconcile" and ev.get("pid_alive"):
        blocked = f"needs a person: the ticket is {status} but its session (pid {pid}) still " + (
            "runs; the doctor kills nothing, and a terminal row cannot change"
            if status != "todo" and status != "blocked"
            else "runs; the doctor kills nothing: stop it before a worker starts the work again"
        )
    elif f.code == "stale_lease" and ev.get("lease_expired") is False and expires and not dead:
        blocked = (
            f"the lease has not expired (it runs until {expires}) and its owner is not known "
            "dead on this host: the reaper would not reclaim it yet"
        )
    kind = f"{f.code}, {ev['kind']}" if ev.get("kind") else f.code
    if f.repair == "reclaim":
        why = f"ticket {ticket} is {status} but its worker {worker or '(unknown)'} looks lost"
    else:
        runs = "still runs" if ev.get("pid_alive") else "does not run"
        why = f"the queue records ticket {ticket} as {status} while its session (pid {pid}) {runs}"
    return Action(
        f.repair,
        ticket,
        ref,
        f"{why} ({kind})",
        blocked=blocked,
        lease_epoch=epoch,
        worker=worker if isinstance(worker, str) else None,
        session_name=session if isinstance(session, str) else None,
        pid=pid,
    )
