"""``no_progress_lease``: a lease kept alive by heartbeats while its work stands still.

Incident 03's stub executor: a worker claims a ticket and heartbeats for ever, but the work
never happens, so no reaper (which only looks at heartbeats) ever takes the ticket back.

Candidates are the leases ``stale_lease`` does not report: tickets ``claimed`` or ``running``
whose last heartbeat (``last_heartbeat_at``, else ``claimed_at``) is within
``config.stale_lease_s`` of the queue's now (``Context.queue_now``: ``config.now``, or a
PostgreSQL server's time). ``in_progress_s`` is ``now - claimed_at`` (the current lease's
age). What counts as progress depends on what the doctor can see:

* **run** — the ticket's run is in the tables (a run whose ``run_id`` is the ticket's
  ``run_id``, or whose path is its ``run_path``): ``progress_events`` are the run's
  non-heartbeat events (every scope) at or after ``claimed_at``, ``heartbeats`` its heartbeat
  events in that time. Fires when the last of those progress events (or ``claimed_at`` when
  there is none) is older than the run's stall timeout. ``error``. The run's times are in its
  worker's clock, taken to be this host's, and the lease's in the queue's: a PostgreSQL
  server's clock may be off from both, so the run's times are moved by the offset measured
  when the rows were read (:attr:`Context.queue_offset_s`) before they are compared.
* **no run** — the ticket names no run (``run_id`` and ``run_path`` null): nothing was ever
  started for the lease. ``progress_events`` are the ticket's queue events at or after
  ``claimed_at`` other than ``claimed``, ``heartbeat_gap`` and ``fenced``; ``heartbeats`` are
  the lease heartbeats the queue proves: its ``heartbeat_gap`` events since the claim, plus
  one when ``last_heartbeat_at`` is later than ``claimed_at`` (the queue keeps only the latest,
  so this is a lower bound). Fires after ``config.stall_timeout_s`` without such an event.
  ``error``.
* **run not loaded** — the ticket names a run the tables do not hold (scan without its
  ``--root``, or a run the scan reused from its cache): as *no run*, but only after
  ``config.idle_gap_s``, and ``warning``: the work may progress where the doctor cannot see.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from doctor._detectors._context import Context, needs
from doctor._detectors._queue import LEASED, iso_s, ticket_label
from doctor._detectors.retry_loop import duration_text
from doctor._model import Finding, Severity
from doctor._tables import HEARTBEAT_SQL

__all__ = ["no_progress_lease"]

_NOT_PROGRESS = ("claimed", "heartbeat_gap", "fenced")

_SQL = f"""
WITH leased AS (
    SELECT id, title, status, lease_owner, claimed_at, last_heartbeat_at, run_id, run_path
    FROM tickets
    WHERE status IN {LEASED} AND claimed_at IS NOT NULL
      AND $now - coalesce(last_heartbeat_at, claimed_at) <= $stale
),
linked AS (
    SELECT l.id, min(r.run_id) AS run
    FROM leased l JOIN runs r ON r.run_id = l.run_id OR r.path = l.run_path
    GROUP BY l.id
),
run_work AS (
    SELECT k.id, count(e.t) FILTER (WHERE NOT e.hb) AS progress,
           count(e.t) FILTER (WHERE e.hb) AS heartbeats,
           max(e.t) FILTER (WHERE NOT e.hb) AS last_progress
    FROM linked k JOIN leased l USING (id)
    LEFT JOIN (SELECT run_id, epoch_ns(ts) / 1e9 + $offset AS t, {HEARTBEAT_SQL} AS hb
               FROM events WHERE ts IS NOT NULL) e
      ON e.run_id = k.run AND e.t >= l.claimed_at
    GROUP BY k.id
),
queue_work AS (
    SELECT l.id,
           count(ev.at) FILTER (WHERE ev.event NOT IN {_NOT_PROGRESS}) AS progress,
           count(ev.at) FILTER (WHERE ev.event = 'heartbeat_gap') AS gaps,
           max(ev.at) FILTER (WHERE ev.event NOT IN {_NOT_PROGRESS}) AS last_progress
    FROM leased l LEFT JOIN ticket_events ev ON ev.ticket_id = l.id AND ev.at >= l.claimed_at
    GROUP BY l.id
)
SELECT l.id, l.title, l.status, l.lease_owner, l.claimed_at, l.last_heartbeat_at, l.run_id,
       l.run_path, k.run, r.progress, r.heartbeats, r.last_progress, q.progress, q.gaps,
       q.last_progress
FROM leased l
LEFT JOIN linked k USING (id)
LEFT JOIN run_work r USING (id)
LEFT JOIN queue_work q USING (id)
ORDER BY l.claimed_at, l.id
"""


@dataclass(frozen=True)
class _Lease:
    """One leased ticket: a row of ``_SQL``, its run's progress and the queue's."""

    ticket_id: Any
    title: Any
    status: Any
    owner: Any
    claimed_at: Any
    last_hb: Any
    run_id: Any
    run_path: Any
    run: Any
    run_progress: Any
    run_beats: Any
    run_last: Any
    q_progress: Any
    q_gaps: Any
    q_last: Any


@dataclass(frozen=True)
class _Measure:
    """What the lease's progress is measured from (its scanned run, else the queue's own
    records) and the quiet time it may have."""

    source: str
    progress: int
    beats: int
    last: Any
    threshold: float
    severity: Severity


@needs(queue=True)
def no_progress_lease(ctx: Context) -> list[Finding]:
    """A lease kept alive by heartbeats while its run (or the ticket) makes no progress."""
    cfg = ctx.config
    now = ctx.queue_now  # the leases' clock (a PostgreSQL queue's server)
    findings = []
    offset = ctx.queue_offset_s  # run files' times, moved into the queue's clock
    for row in ctx.tables.sql(_SQL, now=now, stale=cfg.stale_lease_s, offset=offset):
        lease = _Lease(*row)
        measure = _measure(ctx, lease)
        last = measure.last
        since = max(lease.claimed_at, last if last is not None else lease.claimed_at)
        quiet = now - since
        if quiet <= measure.threshold:
            continue
        findings.append(_finding(lease, measure, quiet=quiet, held=now - lease.claimed_at))
    return findings


def _measure(ctx: Context, lease: _Lease) -> _Measure:
    """The run's progress when it was scanned (its stall timeout the limit), else the
    queue's (the idle-gap limit when it names a run that was not scanned)."""
    cfg = ctx.config
    if lease.run is not None:
        facts = ctx.facts.get(lease.run)
        stall = facts.get("stall_timeout_s") if facts is not None else None
        return _Measure(
            source="run",
            progress=int(lease.run_progress),
            beats=int(lease.run_beats),
            last=lease.run_last,
            threshold=float(stall or cfg.stall_timeout_s),
            severity=Severity.ERROR,
        )
    last_hb, claimed_at = lease.last_hb, lease.claimed_at
    named = lease.run_id or lease.run_path
    return _Measure(
        source="queue",
        progress=int(lease.q_progress),
        beats=int(lease.q_gaps) + (1 if last_hb is not None and last_hb > claimed_at else 0),
        last=lease.q_last,
        threshold=cfg.idle_gap_s if named else cfg.stall_timeout_s,
        severity=Severity.WARNING if named else Severity.ERROR,
    )


def _summary(lease: _Lease, measure: _Measure, *, quiet: float, held: float) -> str:
    """What the lease looks like and the next step: inspect the run, scan its root, or fix a
    worker that only heartbeats."""
    label = ticket_label(lease.ticket_id, lease.title)
    head = (
        f"{label} has been {lease.status} for {duration_text(held)} "
        f"(worker {lease.owner or 'unknown'}) with its lease kept alive by heartbeats"
    )
    if measure.source == "run":
        return (
            f"{head}, but its run {lease.run} made no progress for {duration_text(quiet)} "
            f"({measure.progress} progress events and {measure.beats} heartbeats since the "
            "claim); the work is hung or never really started: inspect the run, then cancel "
            "or release the ticket"
        )
    if lease.run_id or lease.run_path:
        return (
            f"{head}, and the queue shows no progress for {duration_text(quiet)}; its run "
            f"{lease.run_id or lease.run_path} is not in the scanned roots: scan with --root "
            "set to the runs directory to see whether it progresses"
        )
    return (
        f"{head}, but no run was ever started for it ({duration_text(quiet)} without "
        "progress): the worker only heartbeats (a stub executor?); fix the worker, "
        "then release the ticket"
    )


def _finding(lease: _Lease, measure: _Measure, *, quiet: float, held: float) -> Finding:
    """The finding of a lease quiet for longer than its threshold."""
    return Finding(
        code="no_progress_lease",
        severity=measure.severity,
        summary=_summary(lease, measure, quiet=quiet, held=held),
        scope="",
        evidence={
            "ticket_id": lease.ticket_id,
            "in_progress_s": round(held, 3),
            "heartbeats": measure.beats,
            "progress_events": measure.progress,
            "progress_source": measure.source,
            "quiet_s": round(quiet, 3),
            "threshold_s": measure.threshold,
            "last_progress_at": iso_s(measure.last),
            "last_heartbeat_at": iso_s(lease.last_hb),
            "claimed_at": iso_s(lease.claimed_at),
            "status": lease.status,
            "worker": lease.owner,
            "run_id": lease.run if lease.run is not None else lease.run_id,
        },
    )
