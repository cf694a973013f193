"""The durable ticket queue: the :class:`Queue` contract and :func:`open_queue`.

One contract, two backends (SQLite embedded, PostgreSQL across machines). Everything that
decides a ticket's fate lives here, once, as SQL run inside one transaction per call; the
backends only supply the connection, the transaction and the dialect (``_schema.py``). The
records it hands out (:class:`Ticket`, :class:`Lease`, ...) live in ``_records.py`` and are
re-exported here, so ``from executor._queue import Ticket`` keeps working.

>>> q = open_queue(":memory:", clock=lambda: 1000.0)
>>> t = q.enqueue("build", "/pipelines/build.dot")
>>> me = SessionInfo("rd-w1", pid=4242, pgid=4242, proc_start_time=777, host="box")
>>> lease = q.claim("w1", lease_ttl_s=30, session=me)
>>> (lease.ticket.id == t.id, lease.epoch, lease.ticket.status, lease.ticket.session_name)
(True, 1, 'claimed', 'rd-w1')
>>> q.complete(lease, result={"status": "success"}).status
'done'
>>> [e.event for e in q.events(t.id)]
['created', 'claimed', 'completed']
"""

from __future__ import annotations

import abc
import dataclasses
import json
import os
import time
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, TypeVar

from executor import _schema as sql
from executor._clocks import ClockOffset
from executor._errors import BudgetError, FencedError, QueueError, UsageError
from executor._records import (
    LEASED_STATUSES,
    PRESSING_ORDER,
    STATUSES,
    TERMINAL_STATUSES,
    Lease,
    SessionInfo,
    Ticket,
    TicketEvent,
    new_ticket_id,
)
from executor._schema import Tx
from rundoctor.clock import Clock
from rundoctor.errors import close_matches, did_you_mean

__all__ = [
    "LEASED_STATUSES",
    "PRESSING_ORDER",
    "STATUSES",
    "TERMINAL_STATUSES",
    "Lease",
    "Queue",
    "SessionInfo",
    "Ticket",
    "TicketEvent",
    "new_ticket_id",
    "open_queue",
]

T = TypeVar("T")
R = TypeVar("R")
_ATTEMPTS = 3
#: The range of the queue's INTEGER columns that a caller sets (PostgreSQL's 32-bit INTEGER).
_INT32 = 2**31
_Body = Callable[[Tx, Ticket, float], T]


class Queue(abc.ABC):
    """The ticket queue contract: every method is one transaction; worker writes are fenced.

    Backends supply :meth:`_transaction` and :meth:`close`; the state machine is written once,
    here, over the statements of :mod:`executor._schema`.
    """

    def __init__(self, *, clock: Clock) -> None:
        self._clock = clock

    def now(self) -> float:
        """The time in the queue's clock: the one every lease time is stamped and compared in.

        The injected clock for SQLite (one machine, one clock); the database server's for a
        PostgreSQL queue (see :mod:`executor._clocks`). A reaper ages leases with it.

        >>> open_queue(":memory:", clock=lambda: 42.0).now()
        42.0
        """
        return self._clock()

    @property
    def clock_offset(self) -> ClockOffset | None:
        """The server's clock minus the injected clock, as last measured; None for a queue
        that has one clock (SQLite) or has not read the server's yet.

        >>> print(open_queue(":memory:").clock_offset)
        None
        """
        return None

    def _now(self, tx: Tx) -> float:
        """The time inside transaction ``tx``, read once the rows it decides on are locked."""
        return self._clock()

    @abc.abstractmethod
    def _transaction(self, *, write: bool = True) -> AbstractContextManager[Tx]:
        """One transaction: committed on exit, rolled back on an exception. ``write=False``
        lets SQLite readers skip the write lock."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close the connection; the queue object is unusable afterwards."""

    def _transient(self, error: BaseException | None) -> bool:
        """True for a driver error that a retry of the whole transaction may not meet again."""
        return False

    def _atomic(self, body: Callable[[Tx], R], write: bool = True) -> R:
        """Run ``body`` in one transaction and return its result.

        PostgreSQL may abort a transaction to break a deadlock (possible only when ids and
        dependency order disagree, e.g. under clock skew between hosts); such a transaction
        is run again from the start, a few times, before its error is raised.
        """
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                with self._transaction(write=write) as tx:
                    return body(tx)
            except QueueError as exc:
                if attempt == _ATTEMPTS or not self._transient(exc.__cause__):
                    raise
        raise AssertionError("unreachable: the last attempt returns or raises")

    def __enter__(self) -> Queue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- creating work -------------------------------------------------------------------------

    def enqueue(
        self,
        title: str,
        graph_path: str | os.PathLike[str],
        *,
        priority: int = 0,
        depends_on: Iterable[str] = (),
        max_error_attempts: int = 1,
    ) -> Ticket:
        """Add a ticket: ``todo`` when every dependency is done, else ``blocked``.

        >>> q = open_queue(":memory:", clock=lambda: 1.0)
        >>> a = q.enqueue("fetch", "/p/fetch.dot", priority=5)
        >>> b = q.enqueue("build", "/p/build.dot", depends_on=[a.id])
        >>> (a.status, b.status, b.reason == f"waiting for {a.id} (todo)")
        ('todo', 'blocked', True)
        """
        path = os.fspath(graph_path)
        if not title.strip():
            raise UsageError("a ticket needs a non-empty title")
        if not os.path.isabs(path):
            raise UsageError(f"graph_path {path!r} is relative; pass the DOT file's absolute path")
        if max_error_attempts < 1:
            raise UsageError(f"max_error_attempts must be at least 1, got {max_error_attempts}")
        # Both are INTEGER columns: 32 bits on PostgreSQL, and a wider number would crash
        # SQLite's driver; refuse it by name rather than fail the insert.
        for name, value, low in (
            ("priority", priority, -_INT32),
            ("max_error_attempts", max_error_attempts, 1),
        ):
            if not low <= value < _INT32:
                raise UsageError(
                    f"{name} {value} is out of range; pass a whole number from {low} to "
                    f"{_INT32 - 1}"
                )
        if isinstance(depends_on, str):
            raise UsageError(
                f"depends_on takes a list of ticket ids, got the string {depends_on!r}"
            )
        deps = sorted(set(depends_on))  # one global lock order: no deadlocks between enqueues

        def run(tx: Tx) -> Ticket:
            now = self._now(tx)
            waiting: list[str] = []
            doomed: list[str] = []
            for dep in deps:
                row = tx.one(sql.LOCK_DEPENDENCY, (dep,))
                if row is None:
                    raise self._unknown(tx, dep)
                if row[0] in TERMINAL_STATUSES - {"done"}:
                    doomed.append(f"{dep} {row[0]}")
                elif row[0] != "done":
                    waiting.append(f"{dep} ({row[0]})")
            reason = (
                f"dependency {', '.join(doomed)}"
                if doomed
                else f"waiting for {', '.join(waiting)}"
                if waiting
                else None
            )
            status = "todo" if reason is None else "blocked"
            values = (title, path, status, priority, max_error_attempts, reason, now, now)
            while (row := tx.one(sql.INSERT_TICKET, (new_ticket_id(now), *values))) is None:
                pass  # the id was taken this very millisecond by another process: draw again
            ticket = _ticket(row)
            ticket_id = ticket.id
            for dep in deps:
                tx.rows(sql.INSERT_DEP, (ticket_id, dep))
            created = {"title": title, "graph_path": path, "priority": priority, "depends_on": deps}
            self._event(tx, ticket_id, now, "created", detail=created)
            if reason is not None:
                self._event(tx, ticket_id, now, "blocked", detail={"reason": reason})
            return ticket

        return self._atomic(run)

    # -- the worker's side: claim, then fenced writes ------------------------------------------

    def claim(
        self,
        worker: str,
        *,
        lease_ttl_s: float,
        session: SessionInfo,
        ticket_id: str | None = None,
    ) -> Lease | None:
        """Lease the best claimable ticket (priority, then age), or None when there is none.

        With ``ticket_id``, lease that ticket only, when it is claimable.

        The epoch goes up by one, and the worker's session is recorded in the same
        transaction, so a claimed row never lacks the process that holds it (incident 02).

        >>> q = open_queue(":memory:", clock=lambda: 10.0)
        >>> _ = q.enqueue("low", "/p.dot"), q.enqueue("high", "/p.dot", priority=9)
        >>> me = SessionInfo("s1", pid=1, pgid=1, proc_start_time=None, host="h")
        >>> lease = q.claim("w1", lease_ttl_s=60, session=me)
        >>> (lease.ticket.title, lease.epoch, lease.ticket.lease_expires_at)
        ('high', 1, 70.0)
        """
        _require_name("worker", worker)
        _require_seconds("lease_ttl_s", lease_ttl_s)

        def run(tx: Tx) -> Lease | None:
            candidate = (
                tx.one(sql.CLAIM_CANDIDATE)
                if ticket_id is None
                else tx.one(sql.CLAIM_CANDIDATE_ONE, (ticket_id,))
            )
            if candidate is None:
                return None
            # The clock is read once the row is locked: a claim that waited behind a stalled
            # database must not commit a lease that already expired (chaos seed 20).
            now = self._now(tx)
            s = session
            lease_params = (worker, now + lease_ttl_s, now, now)
            session_params = (s.session_name, s.pid, s.pgid, s.proc_start_time, s.host)
            row = tx.one(sql.CLAIM, (*lease_params, *session_params, now, candidate[0]))
            if row is None:  # cannot happen: the candidate is locked by this transaction
                return None
            ticket = _ticket(row)
            detail = {"lease_expires_at": now + lease_ttl_s, "session": dataclasses.asdict(s)}
            self._event(
                tx,
                ticket.id,
                now,
                "claimed",
                worker=worker,
                epoch=ticket.lease_epoch,
                detail=detail,
            )
            return Lease(ticket, ticket.lease_epoch, worker)

        return self._atomic(run)

    def start(
        self, lease: Lease, *, run_id: str, run_path: str | os.PathLike[str], session: SessionInfo
    ) -> Ticket:
        """Mark the leased ticket ``running`` with its run and the session running it (fenced).

        >>> q = open_queue(":memory:", clock=lambda: 1.0)
        >>> _ = q.enqueue("x", "/p.dot")
        >>> me = SessionInfo("s1", pid=7, pgid=7, proc_start_time=3, host="h")
        >>> lease = q.claim("w1", lease_ttl_s=5, session=me)
        >>> q.start(lease, run_id="r1", run_path="/runs/r1", session=me).status
        'running'
        """
        s = session

        def body(tx: Tx, t: Ticket, now: float) -> Ticket:
            session_params = (s.session_name, s.pid, s.pgid, s.proc_start_time, s.host)
            params = (run_id, os.fspath(run_path), *session_params, now, t.id, lease.epoch)
            return _updated(tx, sql.START, params)

        return self._fenced(lease, "start", body)

    def heartbeat(
        self, lease: Lease, *, lease_ttl_s: float, interval_s: float | None = None
    ) -> None:
        """Extend the lease to now + ``lease_ttl_s`` (fenced).

        A ``heartbeat_gap`` event is appended only when the time since the previous heartbeat
        (or the claim, if none came yet) exceeds twice ``interval_s``, the worker's heartbeat
        interval; without it, half the TTL is assumed, so a gap means the lease had lapsed.

        >>> now = [0.0]
        >>> q = open_queue(":memory:", clock=lambda: now[0])
        >>> _ = q.enqueue("x", "/p.dot")
        >>> lease = q.claim("w", lease_ttl_s=10, session=SessionInfo("s", 1, 1, None, "h"))
        >>> now[0] = 25.0
        >>> q.heartbeat(lease, lease_ttl_s=10, interval_s=5)
        >>> [(e.event, e.detail["gap_s"]) for e in q.events() if e.event == "heartbeat_gap"]
        [('heartbeat_gap', 25.0)]
        """
        _require_seconds("lease_ttl_s", lease_ttl_s)
        expected = lease_ttl_s / 2 if interval_s is None else interval_s
        _require_seconds("interval_s", expected)

        def body(tx: Tx, t: Ticket, now: float) -> None:
            previous = t.last_alive_at
            _updated(tx, sql.HEARTBEAT, (now + lease_ttl_s, now, now, t.id, lease.epoch))
            if previous is not None and now - previous > 2 * expected:
                gap = {
                    "gap_s": now - previous,
                    "threshold_s": 2 * expected,
                    "previous_at": previous,
                }
                self._event(
                    tx,
                    t.id,
                    now,
                    "heartbeat_gap",
                    worker=lease.worker,
                    epoch=lease.epoch,
                    detail=gap,
                )

        self._fenced(lease, "heartbeat", body)

    def complete(self, lease: Lease, *, result: Mapping[str, Any]) -> Ticket:
        """Mark the ticket ``done`` (fenced); dependants whose dependencies are all done unblock.

        >>> q = open_queue(":memory:", clock=lambda: 1.0)
        >>> a = q.enqueue("a", "/p.dot")
        >>> b = q.enqueue("b", "/p.dot", depends_on=[a.id])
        >>> lease = q.claim("w", lease_ttl_s=5, session=SessionInfo("s", 1, 1, None, "h"))
        >>> (q.complete(lease, result={}).status, q.get(b.id).status)
        ('done', 'todo')
        """

        def body(tx: Tx, t: Ticket, now: float) -> Ticket:
            done = _updated(
                tx, sql.FINISH, ("done", t.error_attempts, None, now, now, t.id, t.lease_epoch)
            )
            detail = {"result": dict(result), "run_id": t.run_id, "run_path": t.run_path}
            self._event(
                tx, t.id, now, "completed", worker=lease.worker, epoch=lease.epoch, detail=detail
            )
            self._unblock_dependants(tx, t.id, now)
            return done

        return self._fenced(lease, "complete", body)

    def fail(self, lease: Lease, *, reason: str, retryable: bool) -> Ticket:
        """Record a failed execution (fenced): back to ``todo`` while retryable attempts remain,
        else ``failed``, and every dependant (transitively) ``blocked`` naming this ticket.

        >>> q = open_queue(":memory:", clock=lambda: 1.0)
        >>> t = q.enqueue("a", "/p.dot", max_error_attempts=2)
        >>> me = SessionInfo("s", 1, 1, None, "h")
        >>> q.fail(q.claim("w", lease_ttl_s=5, session=me), reason="exit 1", retryable=True).status
        'todo'
        >>> q.fail(q.claim("w", lease_ttl_s=5, session=me), reason="exit 1", retryable=True).status
        'failed'
        """

        def body(tx: Tx, t: Ticket, now: float) -> Ticket:
            attempts = t.error_attempts + 1
            retry = retryable and attempts < t.max_error_attempts
            if retry:
                out = _updated(tx, sql.REQUEUE, (attempts, reason, now, t.id, t.lease_epoch))
            else:
                params = ("failed", attempts, reason, now, now, t.id, t.lease_epoch)
                out = _updated(tx, sql.FINISH, params)
            detail = {
                "reason": reason,
                "retryable": retryable,
                "requeued": retry,
                "error_attempts": attempts,
                "max_error_attempts": t.max_error_attempts,
                "run_id": t.run_id,
                "run_path": t.run_path,
            }
            self._event(
                tx, t.id, now, "failed", worker=lease.worker, epoch=lease.epoch, detail=detail
            )
            if not retry:
                self._block_dependants(tx, t.id, "failed", now)
            return out

        return self._fenced(lease, "fail", body)

    def release(self, lease: Lease, reason: str) -> Ticket:
        """Give the ticket back (``todo``) without counting an error: graceful shutdown (fenced).

        >>> q = open_queue(":memory:", clock=lambda: 1.0)
        >>> _ = q.enqueue("a", "/p.dot")
        >>> lease = q.claim("w", lease_ttl_s=5, session=SessionInfo("s", 1, 1, None, "h"))
        >>> t = q.release(lease, "worker shutting down")
        >>> (t.status, t.error_attempts, t.lease_owner)
        ('todo', 0, None)
        """

        def body(tx: Tx, t: Ticket, now: float) -> Ticket:
            out = _updated(tx, sql.REQUEUE, (t.error_attempts, reason, now, t.id, t.lease_epoch))
            detail = {"reason": reason, "run_id": t.run_id, "session_name": t.session_name}
            self._event(
                tx, t.id, now, "released", worker=lease.worker, epoch=lease.epoch, detail=detail
            )
            return out

        return self._fenced(lease, "release", body)

    # -- the reaper's primitives: compare-and-set only -----------------------------------------

    def expired(self, now: float, *, claim_grace_s: float = 0.0) -> list[Ticket]:
        """Leased tickets whose lease lapsed by ``now``, oldest first, outside the claim grace.

        A row without ``lease_expires_at`` lapses at its last sign of life: the heartbeat, or
        the claim when the heartbeat is NULL (a NULL never means "fresh", incident 05).

        >>> now = [0.0]
        >>> q = open_queue(":memory:", clock=lambda: now[0])
        >>> _ = q.enqueue("x", "/p.dot")
        >>> _ = q.claim("w", lease_ttl_s=10, session=SessionInfo("s", 1, 1, None, "h"))
        >>> (len(q.expired(5.0)), len(q.expired(10.0)), len(q.expired(10.0, claim_grace_s=30)))
        (0, 1, 0)
        """
        _require_seconds("claim_grace_s", claim_grace_s, zero_ok=True)
        params = (now, now - claim_grace_s)
        return self._atomic(lambda tx: [_ticket(r) for r in tx.rows(sql.EXPIRED, params)], False)

    def reclaim(
        self,
        ticket_id: str,
        *,
        expected_epoch: int,
        reason: str,
        quarantine_after: int,
        window_s: float,
        claim_grace_s: float = 0.0,
    ) -> Ticket:
        """Take a dead or expired worker's lease back: compare-and-set on ``expected_epoch``.

        Bumps the epoch (the old worker's writes are fenced from now on), counts a crash
        recovery (not an error attempt), clears owner and session, and returns the ticket to
        ``todo`` — or ``quarantined`` when this makes more than ``quarantine_after`` reclaims
        within ``window_s``. Raises :class:`FencedError` when the epoch moved, the ticket is
        not leased (terminal rows included) or it was claimed less than ``claim_grace_s`` ago.

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
        _require_seconds("window_s", window_s)
        _require_seconds("claim_grace_s", claim_grace_s, zero_ok=True)

        def run(tx: Tx) -> Ticket | FencedError:
            row = tx.one(sql.LOCK_FULL_TICKET, (ticket_id,))
            now = self._now(tx)  # after the lock: time spent waiting for it counts
            if row is None:
                raise self._unknown(tx, ticket_id)
            before = _ticket(row)
            recent = tx.count(sql.RECLAIMS_SINCE, (ticket_id, now - window_s)) + 1
            quarantine = recent > quarantine_after
            why = (
                f"reclaimed {recent} times within {window_s:g}s"
                f" (more than {quarantine_after}); last: {reason}"
                if quarantine
                else reason
            )
            status = "quarantined" if quarantine else "todo"
            finished = now if quarantine else None
            cas = (ticket_id, expected_epoch, now - claim_grace_s)
            after_row = tx.one(sql.RECLAIM, (status, why, finished, now, *cas))
            if after_row is not None:
                after = _ticket(after_row)
                self._record_reclaim(
                    tx,
                    before,
                    after,
                    _Reclaim(now, expected_epoch, reason, recent, why if quarantine else None),
                )
                return after
            grace = None
            if before.lease_epoch == expected_epoch and before.status in LEASED_STATUSES:
                since = now - (
                    before.claimed_at if before.claimed_at is not None else before.updated_at
                )
                grace = f"claimed {since:g}s ago, inside the {claim_grace_s:g}s claim grace period"
            return self._reject(tx, ticket_id, expected_epoch, None, "reclaim", now, why=grace)

        return _raise_fenced(self._atomic(run))

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

    # -- operator actions and reads ------------------------------------------------------------

    def cancel(self, ticket_id: str, reason: str) -> Ticket:
        """Cancel a ticket that is not terminal yet; its dependants become ``blocked``.

        >>> q = open_queue(":memory:", clock=lambda: 1.0)
        >>> t = q.enqueue("x", "/p.dot")
        >>> (q.cancel(t.id, "not needed").status, q.get(t.id).reason)
        ('canceled', 'not needed')
        """

        def run(tx: Tx) -> Ticket:
            row = tx.one(sql.LOCK_FULL_TICKET, (ticket_id,))
            now = self._now(tx)  # after the lock: time spent waiting for it counts
            if row is None:
                raise self._unknown(tx, ticket_id)
            before = _ticket(row)
            if before.terminal:
                raise QueueError(
                    f"ticket {ticket_id} is already {before.status}; a terminal ticket never "
                    "changes (enqueue a new one to run it again)"
                )
            out = _updated(tx, sql.CANCEL, (reason, now, now, ticket_id))
            detail = {"reason": reason, "previous_status": before.status}
            self._event(
                tx,
                ticket_id,
                now,
                "canceled",
                worker=before.lease_owner,
                epoch=before.lease_epoch,
                detail=detail,
            )
            self._block_dependants(tx, ticket_id, "canceled", now)
            return out

        return self._atomic(run)

    def get(self, ticket_id: str) -> Ticket:
        """The ticket with that id; an unknown id raises :class:`QueueError` with "did you mean".

        >>> q = open_queue(":memory:", clock=lambda: 1.0)
        >>> q.get(q.enqueue("x", "/p.dot").id).title
        'x'
        """
        return self._atomic(lambda tx: self._fetch(tx, ticket_id), write=False)

    def tickets(self, *, status: str | Iterable[str] | None = None) -> list[Ticket]:
        """All tickets (optionally only those in ``status``), oldest first.

        >>> q = open_queue(":memory:", clock=lambda: 1.0)
        >>> _ = q.enqueue("x", "/p.dot"), q.cancel(q.enqueue("y", "/p.dot").id, "no")
        >>> [t.title for t in q.tickets(status="todo")]
        ['x']
        """
        wanted = _statuses(status)
        statement = sql.select_tickets(None if wanted is None else len(wanted), None, limit=False)
        rows = self._atomic(lambda tx: tx.rows(statement, wanted or ()), False)
        return [_ticket(r) for r in rows]

    def iter_tickets(
        self,
        *,
        status: str | Iterable[str] | None = None,
        pressing_first: bool = False,
        limit: int | None = None,
    ) -> Generator[Ticket, None, None]:
        """The tickets (optionally only those in ``status``, at most ``limit``) streamed from
        one read transaction, a batch at a time: a queue of any size is never held whole.

        Oldest first, or with ``pressing_first`` in the status order of
        :data:`~executor._records.PRESSING_ORDER` (running, claimed, quarantined, failed,
        blocked, todo, canceled, done), each status most recently changed first. An unknown
        status or a ``limit`` below 1 raises :class:`UsageError` at once, not at the first row.

        >>> clock = iter(range(1, 100)).__next__
        >>> q = open_queue(":memory:", clock=lambda: float(clock()))
        >>> old, new = q.enqueue("old", "/p.dot"), q.enqueue("new", "/p.dot")
        >>> _ = q.cancel(old.id, "no")
        >>> [t.title for t in q.iter_tickets()], [t.title for t in q.iter_tickets(limit=1)]
        (['old', 'new'], ['old'])
        >>> [t.title for t in q.iter_tickets(pressing_first=True)]
        ['new', 'old']
        """
        wanted = _statuses(status)
        if limit is not None and limit < 1:
            raise UsageError(f"the limit must be 1 or more tickets, got {limit}")
        statement = sql.select_tickets(
            None if wanted is None else len(wanted),
            PRESSING_ORDER if pressing_first else None,
            limit=limit is not None,
        )
        params = (*(wanted or ()), *(() if limit is None else (limit,)))
        return self._stream(statement, params)

    def _stream(self, statement: str, params: Sequence[Any]) -> Generator[Ticket, None, None]:
        # A generator: the read transaction stays open while the caller consumes the rows and
        # ends (rolled back: it wrote nothing) when the caller stops early.
        with self._transaction(write=False) as tx:
            for row in tx.stream(statement, params):
                yield _ticket(row)

    def count_tickets(self) -> dict[str, int]:
        """How many tickets each status holds (statuses that hold none left out).

        >>> q = open_queue(":memory:", clock=lambda: 1.0)
        >>> _ = q.enqueue("x", "/p.dot"), q.cancel(q.enqueue("y", "/p.dot").id, "no")
        >>> q.count_tickets()
        {'canceled': 1, 'todo': 1}
        """
        rows = self._atomic(lambda tx: tx.rows(sql.COUNT_BY_STATUS), False)
        return {str(s): int(n) for s, n in sorted(rows)}

    def events(self, ticket_id: str | None = None) -> list[TicketEvent]:
        """The append-only event log, in insertion order (of one ticket, or of all).

        >>> q = open_queue(":memory:", clock=lambda: 1.0)
        >>> [(e.event, e.at) for e in q.events(q.enqueue("x", "/p.dot").id)]
        [('created', 1.0)]
        """
        if ticket_id is None:
            rows = self._atomic(lambda tx: tx.rows(sql.SELECT_ALL_EVENTS), False)
        else:
            rows = self._atomic(lambda tx: tx.rows(sql.SELECT_TICKET_EVENTS, (ticket_id,)), False)
        return [
            TicketEvent(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]) if r[6] else {})
            for r in rows
        ]

    # -- shared machinery ----------------------------------------------------------------------

    def _fenced(self, lease: Lease, action: str, body: _Body[T]) -> T:
        """Run ``body`` on the leased row if the lease is still current; otherwise record a
        ``fenced`` event, commit it, and raise :class:`FencedError`."""

        def run(tx: Tx) -> T | FencedError:
            row = tx.one(sql.LOCK_LEASED, (lease.ticket_id, lease.epoch))
            now = self._now(tx)  # after the lock: time spent waiting for it counts
            if row is not None:
                return body(tx, _ticket(row), now)
            return self._reject(tx, lease.ticket_id, lease.epoch, lease.worker, action, now)

        return _raise_fenced(self._atomic(run))

    def _reject(
        self,
        tx: Tx,
        ticket_id: str,
        epoch: int,
        worker: str | None,
        action: str,
        now: float,
        *,
        why: str | None = None,
    ) -> FencedError:
        row = tx.one(sql.SELECT_TICKET, (ticket_id,))
        current = _ticket(row) if row else None
        why = why if why is not None else _why_fenced(current, epoch)
        detail = {
            "action": action,
            "reason": why,
            "current_epoch": current.lease_epoch if current else None,
            "current_status": current.status if current else None,
        }
        self._event(tx, ticket_id, now, "fenced", worker=worker, epoch=epoch, detail=detail)
        return FencedError(ticket_id, epoch, f"{action} rejected: {why}")

    def _unblock_dependants(self, tx: Tx, ticket_id: str, now: float) -> None:
        for (dependant,) in tx.rows(sql.DEPENDANTS, (ticket_id,)):
            # Lock first, count second: of two dependencies finishing at once, the later
            # transaction waits here and then sees the other's commit (READ COMMITTED).
            row = tx.one(sql.LOCK_TICKET, (dependant,))
            if row is None or row[0] != "blocked":
                continue
            if tx.count(sql.UNFINISHED_DEPS, (dependant,)) == 0:
                tx.rows(sql.SET_STATUS, ("todo", None, now, dependant, "blocked"))
                self._event(tx, dependant, now, "unblocked", detail={"after": ticket_id})

    def _block_dependants(self, tx: Tx, ticket_id: str, status: str, now: float) -> None:
        frontier, seen = [ticket_id], {ticket_id}
        while frontier:
            parent = frontier.pop(0)
            for (dependant,) in tx.rows(sql.DEPENDANTS, (parent,)):
                if dependant in seen:
                    continue
                seen.add(dependant)
                row = tx.one(sql.LOCK_TICKET, (dependant,))
                if row is None or row[0] not in ("todo", "blocked"):
                    continue
                why = f"dependency {ticket_id} {status}"
                why += f" (via {parent})" if parent != ticket_id else ""
                tx.rows(sql.SET_STATUS, ("blocked", why, now, dependant, row[0]))
                detail = {"reason": why, "cause": ticket_id}
                self._event(tx, dependant, now, "blocked", detail=detail)
                frontier.append(dependant)

    def _fetch(self, tx: Tx, ticket_id: str) -> Ticket:
        row = tx.one(sql.SELECT_TICKET, (ticket_id,))
        if row is None:
            raise self._unknown(tx, ticket_id)
        return _ticket(row)

    def _unknown(self, tx: Tx, ticket_id: str) -> QueueError:
        ids = [r[0] for r in tx.rows(sql.SELECT_IDS)]
        close = close_matches(ticket_id, ids)
        hint = (
            did_you_mean(close)
            if close
            else f" (it holds {len(ids)} tickets; ids look like t-0123456789ab)"
        )
        return QueueError(f"no ticket {ticket_id!r} in the queue{hint}")

    def _event(
        self,
        tx: Tx,
        ticket_id: str,
        at: float,
        event: str,
        *,
        worker: str | None = None,
        epoch: int | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        text = json.dumps(dict(detail or {}), sort_keys=True, default=str)
        tx.rows(sql.INSERT_EVENT, (ticket_id, at, event, worker, epoch, text))


def _raise_fenced(result: T | FencedError) -> T:
    """Raise a rejection only now, after the transaction that recorded it committed."""
    if isinstance(result, FencedError):
        raise result
    return result


def _why_fenced(current: Ticket | None, epoch: int) -> str:
    if current is None:
        return "no such ticket"
    if current.terminal:
        return f"the ticket is {current.status}; a terminal ticket never changes"
    if current.lease_epoch != epoch:
        return f"the lease epoch moved to {current.lease_epoch} (ticket {current.status})"
    return f"the ticket is {current.status}, not leased"


def _updated(tx: Tx, statement: str, params: Sequence[Any]) -> Ticket:
    """Run a fenced ``UPDATE … RETURNING`` on a row this transaction already locked."""
    row = tx.one(statement, params)
    if row is None:
        raise QueueError(f"ticket {params[-2]} changed inside its own transaction")
    return _ticket(row)


# Every time column (epoch seconds) ends in "_at".
_REAL_COLUMNS = frozenset(c for c in sql.TICKET_COLUMNS if c.endswith("_at"))


def _ticket(row: Sequence[Any]) -> Ticket:
    # SQLite hands back a whole-number REAL from UPDATE … RETURNING as an int; times are floats.
    values: list[Any] = [
        float(v) if v is not None and name in _REAL_COLUMNS else v
        for name, v in zip(sql.TICKET_COLUMNS, row, strict=True)
    ]
    return Ticket(*values)


def _statuses(status: str | Iterable[str] | None) -> tuple[str, ...] | None:
    """The statuses asked for, sorted and deduplicated (None: all); an unknown one is a
    :class:`UsageError` with "did you mean"."""
    if status is None:
        return None
    wanted = {status} if isinstance(status, str) else set(status)
    unknown = sorted(wanted - set(STATUSES))
    if unknown:
        hint = did_you_mean(close_matches(unknown[0], STATUSES, n=1))
        raise UsageError(
            f"unknown status {unknown[0]!r}{hint}; expected one of {', '.join(STATUSES)}"
        )
    return tuple(sorted(wanted))


def _require_name(what: str, value: str) -> None:
    if not value.strip():
        raise UsageError(f"{what} must be a non-empty name, got {value!r}")


def _require_seconds(what: str, value: float, *, zero_ok: bool = False) -> None:
    if not (value >= 0 if zero_ok else value > 0):
        expected = "zero or more seconds" if zero_ok else "a positive number of seconds"
        raise BudgetError(f"{what} must be {expected}, got {value!r}")


_URL_FORMS = "a SQLite file path, sqlite:///ABS/PATH, or postgresql://user@host:port/db"


def open_queue(
    url: str | os.PathLike[str],
    *,
    clock: Clock = time.time,
    create: bool = True,
    server_clock: bool = True,
) -> Queue:
    """Open (creating the schema if needed) the queue at ``url``.

    With ``create=False`` (inspecting callers) nothing is created: a queue whose file, tables
    or PostgreSQL schema do not exist raises :class:`~executor.NoQueueError` instead.

    A PostgreSQL queue stamps and compares every time in the database server's clock, so
    workers whose clocks disagree still agree on their leases; ``clock`` is then this host's
    clock, only measured against the server's (:attr:`Queue.clock_offset`). With
    ``server_clock=False`` it uses ``clock`` as it is, like SQLite always does: for tests
    that pin time exactly, and for the doctor, which judges leases at its own ``now``.

    Accepted forms: a SQLite file path (``":memory:"`` for a private in-memory queue),
    ``sqlite:///ABS/PATH``, or ``postgresql://user@host:port/db`` (``postgres://`` too; libpq
    query parameters such as ``?options=-csearch_path%3Dmy_schema`` pass through).

    >>> open_queue(":memory:").tickets()
    []
    >>> import tempfile
    >>> open_queue(tempfile.mkdtemp() + "/q.db", create=False)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    executor._errors.NoQueueError: no queue at /.../q.db: its tables do not exist ...
    >>> open_queue("mysql://db/queue")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    executor._errors.UsageError: cannot open queue 'mysql://db/queue': expected a SQLite ...
    """
    text = os.fspath(url)
    if text.startswith(("postgresql://", "postgres://")):
        from executor._postgres import PostgresQueue

        return PostgresQueue(text, clock=clock, create=create, server_clock=server_clock)
    if text.startswith("sqlite://"):
        text = text.removeprefix("sqlite://")
        if not text.startswith("/"):
            raise UsageError(
                f"cannot open queue {url!r}: the sqlite:// form needs an absolute "
                f"path (sqlite:///ABS/PATH); expected {_URL_FORMS}"
            )
    elif "://" in text or not text.strip():
        raise UsageError(f"cannot open queue {os.fspath(url)!r}: expected {_URL_FORMS}")
    if text != ":memory:":
        path = Path(text)
        try:
            path.stat()
        except (FileNotFoundError, NotADirectoryError):
            pass  # created below (or refused, create=False)
        except OSError as exc:  # EACCES on a directory on the way: say so, not a traceback
            raise QueueError(
                f"cannot open queue {text!r}: it cannot be reached ({exc.strerror or exc}); "
                "check the permissions of its directories"
            ) from exc
        if path.is_dir():
            raise UsageError(
                f"cannot open queue {text!r}: it is a directory; expected {_URL_FORMS}"
            )
        if not path.parent.is_dir():
            raise UsageError(
                f"cannot open queue {text!r}: directory {str(path.parent)!r} "
                "does not exist; create it first"
            )
    from executor._sqlite import SqliteQueue

    return SqliteQueue(text, clock=clock, create=create)


@dataclasses.dataclass(frozen=True)
class _Reclaim:
    """One reclaim as it is recorded: when, the epoch it took back, why, how many reclaims
    the window now holds, and why it quarantined the ticket (None when it did not)."""

    now: float
    expected_epoch: int
    reason: str
    recent: int
    quarantined_why: str | None
