"""The reaper's primitives: find lapsed leases, take one back by compare-and-set.

The reaper (``_reaper.py``) decides which leases are dead; these methods of :class:`Queue`
(the :class:`ReaperPrimitives` part) only act on its decision, and only if nothing moved
meanwhile: :meth:`~ReaperPrimitives.reclaim` succeeds only while the ticket is leased at the
epoch the reaper saw, bumps the epoch (the old worker's writes are fenced from then on), and
quarantines a ticket reclaimed too often within the window, blocking its dependants.

>>> from executor import SessionInfo, open_queue
>>> q = open_queue(":memory:", clock=lambda: 100.0)
>>> _ = q.enqueue("x", "/p.dot")
>>> lease = q.claim("w", lease_ttl_s=10, session=SessionInfo("s", 1, 1, None, "h"))
>>> [t.id for t in q.expired(110.0)] == [lease.ticket_id]
True
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

from executor import _schema as sql
from executor._errors import FencedError, QueueError, UsageError
from executor._queue_base import QueueBase, raise_fenced, require_seconds, to_ticket
from executor._records import LEASED_STATUSES, Ticket
from executor._schema import Tx

__all__ = ["ReaperPrimitives"]


class ReaperPrimitives(QueueBase):
    """The part of :class:`executor._queue.Queue` the reaper acts through: compare-and-set
    only."""

    def expired(self, now: float, *, claim_grace_s: float = 0.0) -> list[Ticket]:
        """Leased tickets whose lease lapsed by ``now``, oldest first, outside the claim grace.

        A row without ``lease_expires_at`` lapses at its last sign of life: the heartbeat, or
        the claim when the heartbeat is NULL (a NULL never means "fresh", incident 05).

        >>> now = [0.0]
        >>> from executor import SessionInfo, open_queue
        >>> q = open_queue(":memory:", clock=lambda: now[0])
        >>> _ = q.enqueue("x", "/p.dot")
        >>> _ = q.claim("w", lease_ttl_s=10, session=SessionInfo("s", 1, 1, None, "h"))
        >>> (len(q.expired(5.0)), len(q.expired(10.0)), len(q.expired(10.0, claim_grace_s=30)))
        (0, 1, 0)
        """
        require_seconds("claim_grace_s", claim_grace_s, zero_ok=True)
        params = (now, now - claim_grace_s)
        return self._atomic(lambda tx: [to_ticket(r) for r in tx.rows(sql.EXPIRED, params)], False)

    def reclaim(
        self,
        ticket_id: str,
        *,
        expected_epoch: int,
        reason: str,
        quarantine_after: int,
        window_s: float,
        claim_grace_s: float | None = 0.0,
        judged: Ticket | None = None,
        stop_holder: Callable[[Ticket], str] | None = None,
    ) -> Ticket:
        """Take a dead or expired worker's lease back: compare-and-set on ``expected_epoch``.

        Bumps the epoch (the old worker's writes are fenced from now on), counts a crash
        recovery (not an error attempt), clears owner and session, and returns the ticket to
        ``todo`` — or ``quarantined`` when this makes more than ``quarantine_after`` reclaims
        within ``window_s``. Raises :class:`FencedError` when the epoch moved, the ticket is
        not leased (terminal rows included) or it was claimed less than ``claim_grace_s`` ago.

        ``claim_grace_s=None`` skips the claim time altogether: for a reclaim that rests on
        proof (the owner's pid is dead) or on a silence the reaper timed itself
        (:class:`executor._lease_watch.LeaseWatch`), not on the queue's clock. After that
        clock stepped back, every lease claimed before the step was claimed "in the future",
        and the check refused even a dead worker's ticket for as long as the step.

        ``judged`` is the row the caller judged lost: when the ticket's holder wrote on the
        lease since, the reclaim is refused too (:class:`FencedError`) and the next reaper
        pass judges the row as it is. A new run (its ``run_id`` differs: the ``start``
        committed while the reclaim waited for a lock) was never judged, let alone stopped.
        Chaos seed 71: a reaper that read a claimed, expired ticket during a stall reclaimed
        it after its worker's ``start`` committed, and the run it never killed went on to
        succeed under the reclaimed lease, then ran again. A heartbeat since (its
        ``last_heartbeat_at`` or ``lease_expires_at`` differs) says the holder lives: a worker
        whose heartbeats were held up (a database stall, a frozen moment) got through between
        the judgment and the reclaim.

        ``stop_holder`` stops what the lease's holder was doing (the reaper kills the stages
        of its run and terminalizes it): it is called with the locked row once the
        compare-and-set is known to win, before the ticket changes, and what it returns is
        added to the reason. The fence comes first: a holder that renewed its lease in time
        keeps its stages, and one that tries once ``stop_holder`` began waits for the row and
        is fenced, since no worker can write on the lease until the reclaim commits. Called
        again if the database aborts the transaction (a deadlock), so it must be idempotent.

        >>> from executor import SessionInfo, open_queue
        >>> q = open_queue(":memory:", clock=lambda: 100.0)
        >>> _ = q.enqueue("x", "/p.dot")
        >>> lease = q.claim("w", lease_ttl_s=10, session=SessionInfo("s", 1, 1, None, "h"))
        >>> t = q.reclaim(lease.ticket_id, expected_epoch=1, reason="pid 1 is dead",
        ...               quarantine_after=3, window_s=3600)
        >>> (t.status, t.lease_epoch, t.crash_recoveries, t.error_attempts)
        ('todo', 2, 1, 0)
        """
        if quarantine_after < 0:
            raise UsageError(f"quarantine_after must be 0 or more, got {quarantine_after}")
        require_seconds("window_s", window_s)
        if claim_grace_s is not None:
            require_seconds("claim_grace_s", claim_grace_s, zero_ok=True)

        def run(tx: Tx) -> Ticket | FencedError:
            row = tx.one(sql.LOCK_FULL_TICKET, (ticket_id,))
            now = self._now(tx)  # after the lock: time spent waiting for it counts
            if row is None:
                raise self._unknown(tx, ticket_id)
            before = to_ticket(row)
            current = before.lease_epoch == expected_epoch and before.status in LEASED_STATUSES
            claimed_by = math.inf if claim_grace_s is None else now - claim_grace_s
            why = _moved_since(before, judged) if current else None
            if current and why is None and claim_grace_s is not None:
                claimed = before.claimed_at if before.claimed_at is not None else before.updated_at
                if claimed > claimed_by:
                    why = (
                        f"claimed {now - claimed:g}s ago, inside the {claim_grace_s:g}s claim "
                        "grace period"
                    )
            if not current or why is not None:
                return self._reject(tx, ticket_id, expected_epoch, None, "reclaim", now, why=why)
            # Fenced first, then the holder is stopped: under the row's lock, before it changes.
            told = reason + (stop_holder(before) if stop_holder is not None else "")
            recent = tx.count(sql.RECLAIMS_SINCE, (ticket_id, now - window_s)) + 1
            quarantine = recent > quarantine_after
            why = (
                f"reclaimed {recent} times within {window_s:g}s"
                f" (more than {quarantine_after}); last: {told}"
                if quarantine
                else told
            )
            status = "quarantined" if quarantine else "todo"
            finished = now if quarantine else None
            cas = (ticket_id, expected_epoch, claimed_by)
            after_row = tx.one(sql.RECLAIM, (status, why, finished, now, *cas))
            if after_row is None:  # the row is locked and was checked above
                raise QueueError(f"ticket {ticket_id} changed inside its own transaction")
            after = to_ticket(after_row)
            self._record_reclaim(
                tx,
                before,
                after,
                _Reclaim(now, expected_epoch, told, recent, why if quarantine else None),
            )
            return after

        return raise_fenced(self._atomic(run))

    def _record_reclaim(self, tx: Tx, before: Ticket, after: Ticket, r: _Reclaim) -> None:
        """The events of a reclaim (and of the quarantine it caused, which also blocks the
        ticket's dependants)."""
        ticket_id = before.id
        detail = {
            "reason": r.reason,
            "new_epoch": after.lease_epoch,
            "reclaims_in_window": r.recent,
            "crash_recoveries": after.crash_recoveries,
            "previous_status": before.status,
            "session_name": before.session_name,
            "pid": before.pid,
            "host": before.host,
            "run_id": before.run_id,
        }
        self._event(
            tx,
            ticket_id,
            r.now,
            "reclaimed",
            worker=before.lease_owner,
            epoch=r.expected_epoch,
            detail=detail,
        )
        if r.quarantined_why is not None:
            self._event(
                tx,
                ticket_id,
                r.now,
                "quarantined",
                epoch=after.lease_epoch,
                detail={"reason": r.quarantined_why},
            )
            self._block_dependants(tx, ticket_id, "quarantined", r.now)


def _moved_since(row: Ticket, judged: Ticket | None) -> str | None:
    """Why the lease ``row`` (at the judged epoch) is no longer the one judged lost, or None."""
    if judged is None:
        return None
    if row.run_id != judged.run_id:
        return f"run {row.run_id} started since the ticket was judged ({judged.status})"
    if (row.last_heartbeat_at, row.lease_expires_at) != (
        judged.last_heartbeat_at,
        judged.lease_expires_at,
    ):
        return f"its holder {row.lease_owner} renewed the lease since it was judged lost"
    return None


@dataclasses.dataclass(frozen=True)
class _Reclaim:
    """One reclaim as it is recorded: when, the epoch it took back, why, how many reclaims
    the window now holds, and why it quarantined the ticket (None when it did not)."""

    now: float
    expected_epoch: int
    reason: str
    recent: int
    quarantined_why: str | None
