"""A ticket's life: enqueue it, claim it, run it under a lease, and end it.

Every transition but the reaper's (``_queue_reclaim.py``), as methods of :class:`Queue` (the
:class:`TicketLifecycle` part): :meth:`~TicketLifecycle.enqueue` makes a ticket ``todo`` or
``blocked`` behind its dependencies; :meth:`~TicketLifecycle.claim` leases the best claimable
one, bumping its epoch and recording the worker's session in the same transaction; the
worker's writes that follow (:meth:`~TicketLifecycle.start`, :meth:`~TicketLifecycle.heartbeat`,
:meth:`~TicketLifecycle.complete`, :meth:`~TicketLifecycle.fail`,
:meth:`~TicketLifecycle.release`) are fenced on that epoch; :meth:`~TicketLifecycle.cancel` is
the operator's. A ticket that ends unblocks or blocks its dependants in the same transaction.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any

from executor import _schema as sql
from executor._errors import QueueError, UsageError
from executor._queue_base import (
    QueueBase,
    require_name,
    require_seconds,
    to_ticket,
    updated,
)
from executor._records import TERMINAL_STATUSES, Lease, SessionInfo, Ticket, new_ticket_id
from executor._schema import Tx
from rundoctor.terminal import printable

__all__ = ["COLUMN_RANGES", "MAX_TITLE_CHARS", "TicketLifecycle", "check_column", "check_text"]

#: The range of the queue's INTEGER columns that a caller sets (PostgreSQL's 32-bit INTEGER).
_INT32 = 2**31

#: The values an enqueue accepts for each integer column, lowest and highest.
COLUMN_RANGES = {"priority": (-_INT32, _INT32 - 1), "max_error_attempts": (1, _INT32 - 1)}


def check_column(column: str, value: int, name: str | None = None) -> None:
    """Refuse a value of an integer ``column`` out of its range, naming it as ``name`` (the
    command line's flag, ``--priority``) or else as the column.

    >>> check_column("priority", 5)
    >>> check_column("max_error_attempts", 0, "--max-error-attempts")
    Traceback (most recent call last):
    ...
    executor._errors.UsageError: --max-error-attempts 0 is out of range; pass a whole number ...
    """
    low, high = COLUMN_RANGES[column]
    if not low <= value <= high:
        raise UsageError(
            f"{name or column} {value} is out of range; pass a whole number from {low} to {high}"
        )


#: The longest ticket title: a name for people, shown on one line of ``doctor tickets``.
MAX_TITLE_CHARS = 1000


def check_text(column: str, value: str, name: str | None = None) -> None:
    """Refuse text that a queue could not store alike on SQLite and PostgreSQL (a NUL
    character, which PostgreSQL refuses in text; bytes that are not UTF-8, as a file name may
    hold, which neither can store as text), and a title past :data:`MAX_TITLE_CHARS`, naming
    it as ``name`` (the command line's flag) or else as the column.

    >>> check_text("title", "nightly build")
    >>> check_text("title", "x" * 5000, "--title")
    Traceback (most recent call last):
    ...
    executor._errors.UsageError: --title is 5,000 characters long; a title may have at most 1,000
    >>> check_text("graph_path", "/p/" + b"\\xff".decode("utf-8", "surrogateescape") + ".dot")
    Traceback (most recent call last):
    ...
    executor._errors.UsageError: graph_path '/p/\\xff.dot' is not UTF-8 text (a byte such as ...
    """
    text = printable(value)  # a NUL as \\x00, a byte that is not UTF-8 as \\xff
    shown = f"'{text}'" if len(text) <= 300 else f"'{text[:299]}…"
    if "\x00" in value:
        raise UsageError(
            f"{name or column} {shown} holds a NUL character (\\x00), which a PostgreSQL "
            "queue cannot store; remove it"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(
            f"{name or column} {shown} is not UTF-8 text (a byte such as \\xff in a file's "
            "name is no character), which a queue stores; rename it, or give a path whose "
            "names are UTF-8"
        ) from None
    if column == "title" and len(value) > MAX_TITLE_CHARS:
        raise UsageError(
            f"{name or column} is {len(value):,} characters long; a title may have at most "
            f"{MAX_TITLE_CHARS:,}"
        )


class TicketLifecycle(QueueBase):
    """The part of :class:`executor._queue.Queue` that creates tickets and moves them through
    their lease: each method is one transaction; worker writes are fenced."""

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

        >>> from executor import open_queue
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
        # Both are INTEGER columns: 32 bits on PostgreSQL, and a wider number would crash
        # SQLite's driver; refuse it by name rather than fail the insert.
        check_column("priority", priority)
        check_column("max_error_attempts", max_error_attempts)
        if isinstance(depends_on, str):
            raise UsageError(
                f"depends_on takes a list of ticket ids, got the string {depends_on!r}"
            )
        deps = sorted(set(depends_on))  # one global lock order: no deadlocks between enqueues
        check_text("title", title)
        check_text("graph_path", path)
        for dep in deps:
            check_text("depends_on", dep)

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
            ticket = to_ticket(row)
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

        >>> from executor import open_queue
        >>> q = open_queue(":memory:", clock=lambda: 10.0)
        >>> _ = q.enqueue("low", "/p.dot"), q.enqueue("high", "/p.dot", priority=9)
        >>> me = SessionInfo("s1", pid=1, pgid=1, proc_start_time=None, host="h")
        >>> lease = q.claim("w1", lease_ttl_s=60, session=me)
        >>> (lease.ticket.title, lease.epoch, lease.ticket.lease_expires_at)
        ('high', 1, 70.0)
        """
        require_name("worker", worker)
        require_seconds("lease_ttl_s", lease_ttl_s)

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
            ticket = to_ticket(row)
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
            return Lease(ticket, ticket.lease_epoch, worker, claimed_mono=time.monotonic())

        return self._atomic(run)

    def start(
        self,
        lease: Lease,
        *,
        run_id: str,
        run_path: str | os.PathLike[str],
        session: SessionInfo,
        lease_ttl_s: float | None = None,
        alive_since: float | None = None,
    ) -> Ticket:
        """Mark the leased ticket ``running`` with its run and the session running it (fenced).

        With ``lease_ttl_s`` the start is also a heartbeat: the lease runs to now +
        ``lease_ttl_s``, so a run started late on its lease (the worker frozen between claim and
        start, a slow database) is not reclaimed by the next reaper pass for an expiry that
        came before the worker proved itself alive. A lease already reclaimed stays fenced.
        Its ``heartbeat_gap`` (a start later than ``lease_ttl_s`` after the claim) is timed as
        :meth:`heartbeat` times one, ``alive_since`` being the lease's ``claimed_mono``.

        >>> from executor import open_queue
        >>> now = [1.0]
        >>> q = open_queue(":memory:", clock=lambda: now[0])
        >>> _ = q.enqueue("x", "/p.dot")
        >>> me = SessionInfo("s1", pid=7, pgid=7, proc_start_time=3, host="h")
        >>> lease = q.claim("w1", lease_ttl_s=5, session=me)
        >>> now[0] = 9.0  # past the claim's lease
        >>> t = q.start(lease, run_id="r1", run_path="/runs/r1", session=me, lease_ttl_s=5)
        >>> t.status, t.lease_expires_at
        ('running', 14.0)
        """
        s = session
        if lease_ttl_s is not None:
            require_seconds("lease_ttl_s", lease_ttl_s)

        def body(tx: Tx, t: Ticket, now: float) -> Ticket:
            session_params = (s.session_name, s.pid, s.pgid, s.proc_start_time, s.host)
            head = (run_id, os.fspath(run_path), *session_params, now)
            fence = (t.id, lease.epoch)
            if lease_ttl_s is None:
                return updated(tx, sql.START, (*head, *fence))
            started = updated(tx, sql.START_EXTENDING, (*head, now + lease_ttl_s, now, *fence))
            self._note_gap(tx, t, lease, now, threshold_s=lease_ttl_s, since=alive_since)
            return started

        return self._fenced(lease, "start", body)

    def heartbeat(
        self,
        lease: Lease,
        *,
        lease_ttl_s: float,
        interval_s: float | None = None,
        alive_since: float | None = None,
    ) -> None:
        """Extend the lease to now + ``lease_ttl_s`` (fenced).

        A ``heartbeat_gap`` event is appended only when the time since the previous heartbeat
        (or the claim, if none came yet) exceeds twice ``interval_s``, the worker's heartbeat
        interval; without it, half the TTL is assumed, so a gap means the lease had lapsed.

        That time is read in the queue's clock, a wall clock, which steps: an hour forward
        and every live lease's next heartbeat came "an hour late". ``alive_since``, the
        caller's :func:`time.monotonic` when its previous write on this lease was
        acknowledged, is a second measure that no step moves: a gap is recorded only when
        both exceed the threshold, and it is the shorter of the two (``gap_s``; each is in the
        event too, ``queue_gap_s`` and ``holder_gap_s``).

        >>> import time
        >>> now = [0.0]
        >>> from executor import open_queue
        >>> q = open_queue(":memory:", clock=lambda: now[0])
        >>> _ = q.enqueue("x", "/p.dot")
        >>> lease = q.claim("w", lease_ttl_s=10, session=SessionInfo("s", 1, 1, None, "h"))
        >>> now[0] = 25.0
        >>> q.heartbeat(lease, lease_ttl_s=10, interval_s=5)
        >>> [(e.event, e.detail["gap_s"]) for e in q.events() if e.event == "heartbeat_gap"]
        [('heartbeat_gap', 25.0)]
        >>> now[0] = 3625.0  # the clock stepped an hour; the worker's own beat came on time
        >>> q.heartbeat(lease, lease_ttl_s=10, interval_s=5, alive_since=time.monotonic())
        >>> len([e for e in q.events() if e.event == "heartbeat_gap"])
        1
        """
        require_seconds("lease_ttl_s", lease_ttl_s)
        expected = lease_ttl_s / 2 if interval_s is None else interval_s
        require_seconds("interval_s", expected)

        def body(tx: Tx, t: Ticket, now: float) -> None:
            updated(tx, sql.HEARTBEAT, (now + lease_ttl_s, now, now, t.id, lease.epoch))
            self._note_gap(tx, t, lease, now, threshold_s=2 * expected, since=alive_since)

        self._fenced(lease, "heartbeat", body)

    def _note_gap(
        self,
        tx: Tx,
        t: Ticket,
        lease: Lease,
        now: float,
        *,
        threshold_s: float,
        since: float | None,
    ) -> None:
        """Append ``heartbeat_gap`` when the time since ``t`` was last alive exceeds
        ``threshold_s`` (``t`` as read before this write extended the lease), by the queue's
        clock and, given ``since`` (the holder's monotonic time of its previous acknowledged
        write), by the holder's monotonic clock too: a step of the queue's clock is no gap."""
        previous = t.last_alive_at
        if previous is None or now - previous <= threshold_s:
            return
        queue_gap = now - previous
        gap = {"gap_s": queue_gap, "threshold_s": threshold_s, "previous_at": previous}
        if since is not None:
            held = time.monotonic() - since  # after the row's lock: a wait for it counts
            if held <= threshold_s:
                return
            gap.update(gap_s=min(held, queue_gap), queue_gap_s=queue_gap, holder_gap_s=held)
        self._event(
            tx, t.id, now, "heartbeat_gap", worker=lease.worker, epoch=lease.epoch, detail=gap
        )

    def complete(self, lease: Lease, *, result: Mapping[str, Any]) -> Ticket:
        """Mark the ticket ``done`` (fenced); dependants whose dependencies are all done unblock.

        >>> from executor import open_queue
        >>> q = open_queue(":memory:", clock=lambda: 1.0)
        >>> a = q.enqueue("a", "/p.dot")
        >>> b = q.enqueue("b", "/p.dot", depends_on=[a.id])
        >>> lease = q.claim("w", lease_ttl_s=5, session=SessionInfo("s", 1, 1, None, "h"))
        >>> (q.complete(lease, result={}).status, q.get(b.id).status)
        ('done', 'todo')
        """

        def body(tx: Tx, t: Ticket, now: float) -> Ticket:
            done = updated(
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

        >>> from executor import open_queue
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
                out = updated(tx, sql.REQUEUE, (attempts, reason, now, t.id, t.lease_epoch))
            else:
                params = ("failed", attempts, reason, now, now, t.id, t.lease_epoch)
                out = updated(tx, sql.FINISH, params)
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

        >>> from executor import open_queue
        >>> q = open_queue(":memory:", clock=lambda: 1.0)
        >>> _ = q.enqueue("a", "/p.dot")
        >>> lease = q.claim("w", lease_ttl_s=5, session=SessionInfo("s", 1, 1, None, "h"))
        >>> t = q.release(lease, "worker shutting down")
        >>> (t.status, t.error_attempts, t.lease_owner)
        ('todo', 0, None)
        """

        def body(tx: Tx, t: Ticket, now: float) -> Ticket:
            out = updated(tx, sql.REQUEUE, (t.error_attempts, reason, now, t.id, t.lease_epoch))
            detail = {"reason": reason, "run_id": t.run_id, "session_name": t.session_name}
            self._event(
                tx, t.id, now, "released", worker=lease.worker, epoch=lease.epoch, detail=detail
            )
            return out

        return self._fenced(lease, "release", body)

    # -- the operator's end: cancel ------------------------------------------------------------

    def cancel(self, ticket_id: str, reason: str) -> Ticket:
        """Cancel a ticket that is not terminal yet; its dependants become ``blocked``.

        >>> from executor import open_queue
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
            before = to_ticket(row)
            if before.terminal:
                raise QueueError(
                    f"ticket {ticket_id} is already {before.status}; a terminal ticket never "
                    "changes (enqueue a new one to run it again)"
                )
            out = updated(tx, sql.CANCEL, (reason, now, now, ticket_id))
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
