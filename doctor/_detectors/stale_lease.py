"""``stale_lease``: a ticket held by a worker that stopped heartbeating (incident 05).

A ticket in ``claimed`` or ``running`` holds a lease. Its *last heartbeat* is
``last_heartbeat_at``, or ``claimed_at`` when no heartbeat was recorded (as the executor's
reaper reads it). When that is older than ``config.stale_lease_s`` (default 300 s, the five
minutes of incident 05's reaper) the worker is presumed dead and the ticket is stuck until
something reclaims it. Ages are taken at the queue's clock (:attr:`Context.queue_now`: the
database server's for PostgreSQL), the clock the lease was stamped in.

That clock is a wall clock and can step: right after a step forward every live lease looks
silent for the step's length, until its worker's next heartbeat. A scan reads one instant and
cannot tell the two apart, so the finding stands (no heartbeat by the stamps), but when the
worker's process still runs on this host (pid and start time: ``owner_alive``) it is not
called probably dead: its heartbeats fail, or the clock stepped, and ``doctor repair --db
--apply`` watches for a heartbeat before it reclaims such a lease (docs/queue.md, "A clock
that steps").
"""

from __future__ import annotations

from doctor._detectors._context import Context, needs
from doctor._detectors._queue import LEASED, iso_s, same_host, this_host, ticket_label
from doctor._detectors.retry_loop import duration_text
from doctor._model import Finding, Severity
from rundoctor.liveness import owner_alive

__all__ = ["stale_lease"]

_SQL = f"""
SELECT id, title, status, lease_owner, lease_epoch, last_heartbeat_at, claimed_at,
       lease_expires_at, run_id, host, pid, proc_start_time,
       $now - coalesce(last_heartbeat_at, claimed_at, updated_at) AS age_s
FROM tickets
WHERE status IN {LEASED} AND $now - coalesce(last_heartbeat_at, claimed_at, updated_at) > $stale
ORDER BY age_s DESC, id
"""


@needs(queue=True)
def stale_lease(ctx: Context) -> list[Finding]:
    """A claimed or running ticket whose lease has had no heartbeat for too long."""
    now = ctx.queue_now
    findings = []
    here = this_host()
    for (
        ticket_id,
        title,
        status,
        owner,
        epoch,
        last_hb,
        claimed_at,
        expires_at,
        run_id,
        host,
        pid,
        start,
        age,
    ) in ctx.tables.sql(_SQL, now=now, stale=ctx.config.stale_lease_s):
        expired = expires_at is not None and expires_at < now
        basis = "no heartbeat since it was claimed" if last_hb is None else "no heartbeat"
        alive = owner_alive(pid, start) if same_host(host, here) else None
        verdict = (
            f"; its worker's process (pid {pid}) still runs on this host: its heartbeats fail, "
            "or the queue's clock stepped forward (repair --apply watches for a heartbeat "
            "before it reclaims)"
            if alive
            else "; its worker is probably dead: reclaim it (back to todo) and check why "
            "no reaper did"
        )
        findings.append(
            Finding(
                code="stale_lease",
                # The work stopped and the ticket is stuck until a reaper reclaims it.
                severity=Severity.ERROR,
                summary=(
                    f"{ticket_label(ticket_id, title)} is {status} (worker {owner or 'unknown'}) "
                    f"but its lease has had {basis} for {duration_text(age)}"
                    + (" and has expired" if expired else "")
                    + verdict
                ),
                scope="",
                repair="reclaim",
                evidence={
                    "ticket_id": ticket_id,
                    "worker": owner,
                    "last_heartbeat_at": iso_s(last_hb),
                    "age_s": round(age, 3),
                    "status": status,
                    "claimed_at": iso_s(claimed_at),
                    "lease_epoch": epoch,
                    "lease_expires_at": iso_s(expires_at),
                    "lease_expired": expired,
                    "run_id": run_id,
                    "host": host,
                    "pid": pid,
                    "owner_alive": alive,
                },
            )
        )
    return findings
