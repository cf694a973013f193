"""``session_desync``: the queue's record of a session disagrees with the process table.

Incident 02: a project "stuck for 5+ hours without session" whose database row had no
``session_name``, and a project "marked failed" whose session was still active. The queue
records each lease's session (``session_name``, ``pid``, ``proc_start_time``, ``host``); the
doctor checks the ``pid`` with psutil, and the start time (``/proc/PID/stat`` clock ticks) so
a reused pid is not mistaken for the session. Processes are only visible on this host: a
``host`` other than this one's (equal names, or equal first labels) gets ``pid_alive`` null.

``kind`` (evidence), severity, repair:

* ``dead_session``: ``claimed``/``running``, this host, the pid is dead → ``error``,
  ``reclaim`` (the lease will heartbeat or expire with nothing behind it).
* ``no_session``: ``claimed``/``running`` with neither ``session_name`` nor ``pid`` → ``error``,
  ``reclaim`` (nobody can tell whether the work lives; the executor records the session in
  the claim's own transaction).
* ``live_after_terminal``: ``done``/``failed``/``canceled``/``quarantined``, this host, the
  pid is alive → ``error`` (a "false failure": work goes on that the queue thinks is over),
  ``warning`` for ``done`` (a leaked session) or when no ``proc_start_time`` rules out a
  reused pid; ``reconcile``.
* ``live_unleased``: ``todo``/``blocked`` with a recorded pid alive here → ``warning``,
  ``reconcile`` (a second worker may start the same work).
* ``other_host``: ``claimed``/``running`` on another host → ``info``: check it there.
* ``no_pid``: ``claimed``/``running`` with a ``session_name`` but no pid → ``info``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from doctor._detectors._context import Context, needs
from doctor._detectors._queue import LEASED, TERMINAL, same_host, this_host, ticket_label
from doctor._model import Finding, Severity
from rundoctor.liveness import process_alive

__all__ = ["session_desync"]

# Leases always; other rows only with a pid (a terminal row without one says nothing).
_SQL = f"""
SELECT id, title, status, session_name, pid, proc_start_time, host, run_id, lease_owner,
       lease_epoch
FROM tickets
WHERE status IN {LEASED} OR pid IS NOT NULL
ORDER BY id
"""


@needs(queue=True)
def session_desync(ctx: Context) -> list[Finding]:
    """The queue's record of a session disagrees with the processes running on this host."""
    rows = ctx.tables.sql(_SQL)
    if not rows:
        return []
    here = this_host()
    import psutil  # here: listing the checks need not load it

    running = set(psutil.pids())
    findings = []
    for ticket_id, title, status, session, pid, start, host, run_id, owner, epoch in rows:
        local = same_host(host, here)
        alive: bool | None = None
        if pid is not None and local:
            # Most terminal rows name long-gone pids: only those in the process table are read.
            alive = bool(process_alive(pid, start)) if pid in running else False
        s = _Session(
            ticket_id=ticket_id,
            title=title,
            status=status,
            session=session,
            pid=pid,
            start=start,
            host=host,
            run_id=run_id,
            owner=owner,
            epoch=epoch,
            local=local,
            alive=alive,
            here=here,
        )
        verdict = _verdict(s)
        if verdict is not None:
            findings.append(_finding(s, verdict))
    return findings


@dataclass(frozen=True)
class _Session:
    """One ticket's recorded session (a row of ``_SQL``), and what this host says of it."""

    ticket_id: Any
    title: Any
    status: Any
    session: Any
    pid: Any
    start: Any
    host: Any
    run_id: Any
    owner: Any
    epoch: Any
    local: bool
    alive: bool | None
    here: str


def _verdict(s: _Session) -> tuple[str, Severity, str | None, str] | None:
    """``(kind, severity, repair, summary)`` of a session that disagrees, None otherwise."""
    status, pid = s.status, s.pid
    leased = status in LEASED
    label = ticket_label(s.ticket_id, s.title)
    who = f"session {s.session!r}" if s.session else "its session"
    if leased and pid is None and s.session is None:
        return (
            "no_session",
            Severity.ERROR,
            "reclaim",
            (
                f"{label} is {status} but the queue recorded no session for it (no session "
                "name, no pid), so nobody can tell whether its work is alive; reclaim it and "
                "make the worker record its session when it claims"
            ),
        )
    if leased and pid is None:
        summary = f"{label} is {status} in {who}, but no pid was recorded to check it by"
        return "no_pid", Severity.INFO, None, summary
    if leased and not s.local:
        return (
            "other_host",
            Severity.INFO,
            None,
            (
                f"{label} is {status} in {who} (pid {pid}) on host {s.host or '(unknown)'}; "
                "run the doctor there to check that the session is alive"
            ),
        )
    if leased and s.alive is False:
        return (
            "dead_session",
            Severity.ERROR,
            "reclaim",
            (
                f"{label} is {status} but {who} (pid {pid}) is no longer running on this host; "
                "the work died with it: reclaim the ticket so it runs again"
            ),
        )
    if status in TERMINAL and s.alive:
        severity = Severity.WARNING if status == "done" or s.start is None else Severity.ERROR
        return (
            "live_after_terminal",
            severity,
            "reconcile",
            (
                f"{label} is marked {status} but {who} (pid {pid}) is still running on this "
                "host; find out what it is doing, then stop it or correct the ticket"
            ),
        )
    if status in ("todo", "blocked") and s.alive:
        return (
            "live_unleased",
            Severity.WARNING,
            "reconcile",
            (
                f"{label} is {status} (no lease) but {who} (pid {pid}) is still running on "
                "this host; stop it before a worker starts the same work again"
            ),
        )
    return None


def _finding(s: _Session, verdict: tuple[str, Severity, str | None, str]) -> Finding:
    """The finding of a disagreeing session, with what a reclaim or reconcile needs."""
    kind, severity, repair, summary = verdict
    return Finding(
        code="session_desync",
        severity=severity,
        summary=summary,
        scope="",
        repair=repair,
        evidence={
            "ticket_id": s.ticket_id,
            "recorded_status": s.status,
            "session_name": s.session,
            "pid": s.pid,
            "pid_alive": s.alive,
            "kind": kind,
            "host": s.host,
            "this_host": s.here,
            "proc_start_time": s.start,
            "worker": s.owner,
            # The lease a reclaim or reconcile must compare-and-set on.
            "lease_epoch": s.epoch,
            "run_id": s.run_id,
        },
    )
