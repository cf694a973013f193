"""``clock_skew``: a lease whose last heartbeat lies in the future of this host's clock.

The queue's times are stamped in the queue's clock: the writing worker's on SQLite, the
database server's on PostgreSQL (``executor._clocks``; an executor from before that rule, or
another writer, used its own). When that clock runs ahead of this host's (or the writer
records another unit than epoch seconds, such as milliseconds) a lease's *last heartbeat*
(``last_heartbeat_at``, or ``claimed_at`` when NULL, as ``stale_lease`` reads it) lies after
``config.now``: the lease has a negative age here, so ``stale_lease`` can never fire on it; and
when the worker's own clock stamped it, its ``lease_expires_at`` makes every reaper wait that
much longer to reclaim it should the worker die. On PostgreSQL with current workers it means
this host's clock runs behind the database server's, which blinds this host's lease ages alone.
Fires when the last heartbeat is more than ``config.stale_lease_s`` ahead of ``config.now``
(the skew that would hide a dead worker for as long as ``stale_lease`` waits).
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
    """A leased ticket whose last heartbeat is ahead of this host's clock."""
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
                    f"{where}) with its last heartbeat {duration_text(ahead)} ahead of this "
                    "host's clock: the clock that stamped it runs ahead of this one (its "
                    "worker's; on PostgreSQL the database server's) or it records another unit "
                    "than epoch seconds, so its lease cannot be aged here — stale_lease stays "
                    "silent, and a reaper reclaims it late if the worker dies and its own clock "
                    "stamped it; synchronize the clocks (NTP)"
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
