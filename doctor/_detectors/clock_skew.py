"""``clock_skew``: a lease whose last heartbeat lies in the future of the queue's clock.

A queue's rows are judged at the queue's clock (:attr:`Context.queue_now`): the doctor's own
for SQLite, the database server's time (read in the snapshot the rows come from) for
PostgreSQL, where every current worker and reaper stamps and compares in it
(``executor._clocks``). A lease's *last heartbeat* (``last_heartbeat_at``, or ``claimed_at``
when NULL, as ``stale_lease`` reads it) ahead of that "now" was written in a clock that runs
ahead of the queue's — a SQLite worker's; on PostgreSQL an executor from before the
server-clock rule or another tool with its own clock — or in another unit than epoch seconds
(milliseconds): the lease has a negative age, so ``stale_lease`` can never fire on it, and
when that clock stamped its ``lease_expires_at`` too, every reaper waits that much longer to
reclaim it should the worker die. A doctor host whose own clock is off from a PostgreSQL
server's is no such finding (the scan notes it in ``fleet.queue_notes``). With a pinned
``config.now`` the lease is compared with that, as given. Fires when the last heartbeat is
more than ``config.stale_lease_s`` ahead (the skew that would hide a dead worker for as long
as ``stale_lease`` waits).
"""

from __future__ import annotations

from doctor._detectors._context import Context, needs
from doctor._detectors._queue import LEASED, iso_s, ticket_label
from doctor._detectors.retry_loop import duration_text
from doctor._model import Finding, Severity

__all__ = ["clock_skew"]

_SQL = f"""
SELECT id, title, status, lease_owner, host, lease_epoch, last_heartbeat_at, claimed_at,
       lease_expires_at, run_id, coalesce(last_heartbeat_at, claimed_at) - $now AS ahead_s
FROM tickets
WHERE status IN {LEASED} AND coalesce(last_heartbeat_at, claimed_at) - $now > $stale
  AND NOT isnan(coalesce(last_heartbeat_at, claimed_at))
ORDER BY ahead_s DESC, id
"""


@needs(queue=True)
def clock_skew(ctx: Context) -> list[Finding]:
    """A leased ticket whose last heartbeat is ahead of the queue's clock."""
    findings = []
    for (
        ticket_id,
        title,
        status,
        owner,
        host,
        epoch,
        last_hb,
        claimed_at,
        expires_at,
        run_id,
        ahead,
    ) in ctx.tables.sql(_SQL, now=ctx.queue_now, stale=ctx.config.stale_lease_s):
        where = f" on host {host}" if host else ""
        findings.append(
            Finding(
                code="clock_skew",
                # Nothing is lost yet, but a dead worker would go unnoticed: act before it does.
                severity=Severity.WARNING,
                summary=(
                    f"{ticket_label(ticket_id, title)} is {status} (worker {owner or 'unknown'}"
                    f"{where}) with its last heartbeat {duration_text(ahead)} ahead of the "
                    "queue's clock: the clock that wrote it runs ahead of the queue's (a "
                    "SQLite worker's; on PostgreSQL an executor from before the server-clock "
                    "rule, or another tool, stamping with its own) or it records another unit "
                    "than epoch seconds, so its lease cannot be aged — stale_lease stays "
                    "silent, and a reaper reclaims it late if the worker dies and its own clock "
                    "stamped it; synchronize the writer's clock (NTP)"
                ),
                scope="",
                repair=None,
                evidence={
                    "ticket_id": ticket_id,
                    "worker": owner,
                    "host": host,
                    "status": status,
                    "last_heartbeat_at": iso_s(last_hb),
                    "claimed_at": iso_s(claimed_at),
                    "ahead_s": round(ahead, 3),
                    "lease_epoch": epoch,
                    "lease_expires_at": iso_s(expires_at),
                    "run_id": run_id,
                },
            )
        )
    return findings
