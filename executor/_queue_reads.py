"""Reading a queue: one ticket, the tickets (listed, streamed, counted), the event log.

The :class:`TicketReads` part of :class:`Queue`. Reads change nothing: each runs in a read
transaction (SQLite readers skip the write lock). :meth:`~TicketReads.iter_tickets` streams a
queue of any size a batch at a time, oldest first or the most pressing first (the order of
:data:`~executor._records.PRESSING_ORDER`), so ``doctor tickets`` never holds it whole;
:meth:`~TicketReads.count_tickets` counts each status in the database.

>>> from executor import open_queue
>>> q = open_queue(":memory:", clock=lambda: 1.0)
>>> t = q.enqueue("x", "/p.dot")
>>> (q.get(t.id).status, q.count_tickets(), [e.event for e in q.events(t.id)])
('todo', {'todo': 1}, ['created'])
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterable, Sequence
from typing import Any

from executor import _schema as sql
from executor._errors import QueueError, UsageError
from executor._queue_base import QueueBase, to_ticket
from executor._records import PRESSING_ORDER, STATUSES, Ticket, TicketEvent
from rundoctor.errors import close_matches, did_you_mean
from rundoctor.terminal import quoted

__all__ = ["TicketReads", "check_statuses"]


class TicketReads(QueueBase):
    """The part of :class:`executor._queue.Queue` that reads tickets and their events."""

    def get(self, ticket_id: str) -> Ticket:
        """The ticket with that id; an unknown id raises :class:`QueueError` with "did you mean".

        >>> from executor import open_queue
        >>> q = open_queue(":memory:", clock=lambda: 1.0)
        >>> q.get(q.enqueue("x", "/p.dot").id).title
        'x'
        """
        return self._atomic(lambda tx: self._fetch(tx, ticket_id), write=False)

    def tickets(self, *, status: str | Iterable[str] | None = None) -> list[Ticket]:
        """All tickets (optionally only those in ``status``), oldest first.

        >>> from executor import open_queue
        >>> q = open_queue(":memory:", clock=lambda: 1.0)
        >>> _ = q.enqueue("x", "/p.dot"), q.cancel(q.enqueue("y", "/p.dot").id, "no")
        >>> [t.title for t in q.tickets(status="todo")]
        ['x']
        """
        wanted = check_statuses(status)
        statement = sql.select_tickets(None if wanted is None else len(wanted), None, limit=False)
        rows = self._atomic(lambda tx: tx.rows(statement, wanted or ()), False)
        return [to_ticket(r) for r in rows]

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

        >>> from executor import open_queue
        >>> clock = iter(range(1, 100)).__next__
        >>> q = open_queue(":memory:", clock=lambda: float(clock()))
        >>> old, new = q.enqueue("old", "/p.dot"), q.enqueue("new", "/p.dot")
        >>> _ = q.cancel(old.id, "no")
        >>> [t.title for t in q.iter_tickets()], [t.title for t in q.iter_tickets(limit=1)]
        (['old', 'new'], ['old'])
        >>> [t.title for t in q.iter_tickets(limit=10**30)]
        ['old', 'new']
        >>> [t.title for t in q.iter_tickets(pressing_first=True)]
        ['new', 'old']
        """
        wanted = check_statuses(status)
        if limit is not None and limit < 1:
            raise UsageError(f"the limit must be 1 or more tickets, got {limit}")
        if limit is not None and limit > _MOST_ROWS:
            limit = None  # more than a database can count is every ticket (and no overflow)
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
                yield to_ticket(row)

    def count_tickets(self) -> dict[str, int]:
        """How many tickets each status holds (statuses that hold none left out).

        >>> from executor import open_queue
        >>> q = open_queue(":memory:", clock=lambda: 1.0)
        >>> _ = q.enqueue("x", "/p.dot"), q.cancel(q.enqueue("y", "/p.dot").id, "no")
        >>> q.count_tickets()
        {'canceled': 1, 'todo': 1}
        """
        rows = self._atomic(lambda tx: tx.rows(sql.COUNT_BY_STATUS), False)
        return {str(s): int(n) for s, n in sorted(rows)}

    def events(self, ticket_id: str | None = None) -> list[TicketEvent]:
        """The append-only event log, in insertion order (of one ticket, or of all).

        >>> from executor import open_queue
        >>> q = open_queue(":memory:", clock=lambda: 1.0)
        >>> [(e.event, e.at) for e in q.events(q.enqueue("x", "/p.dot").id)]
        [('created', 1.0)]
        """
        if ticket_id is None:
            rows = self._atomic(lambda tx: tx.rows(sql.SELECT_ALL_EVENTS), False)
        else:
            rows = self._atomic(lambda tx: tx.rows(sql.SELECT_TICKET_EVENTS, (ticket_id,)), False)
        return [TicketEvent(r[0], r[1], r[2], r[3], r[4], r[5], _payload(r)) for r in rows]


#: The largest ``LIMIT`` SQLite and PostgreSQL take (a signed 64-bit integer).
_MOST_ROWS = 2**63 - 1


def check_statuses(status: str | Iterable[str] | None) -> tuple[str, ...] | None:
    """The statuses asked for, sorted and deduplicated (None: all); an unknown one is a
    :class:`UsageError` with "did you mean".

    >>> check_statuses(["todo", "done", "todo"])
    ('done', 'todo')
    >>> check_statuses("tdoo")
    Traceback (most recent call last):
    ...
    executor._errors.UsageError: unknown status 'tdoo' (did you mean 'todo'?); expected one of ...
    """
    if status is None:
        return None
    wanted = {status} if isinstance(status, str) else set(status)
    unknown = sorted(wanted - set(STATUSES))
    if unknown:
        hint = did_you_mean(close_matches(unknown[0], STATUSES, n=1))
        raise UsageError(
            f"unknown status {quoted(unknown[0])}{hint}; expected one of {', '.join(STATUSES)}"
        )
    return tuple(sorted(wanted))


def _payload(row: Any) -> dict[str, Any]:
    """An event row's JSON payload; one that is not a JSON object (a row another program
    wrote) is a :class:`QueueError` naming the ticket, where ``json.loads`` ended the command
    with "internal error", exit 70."""
    if not row[6]:
        return {}
    try:
        payload = json.loads(row[6])
    except (ValueError, TypeError, RecursionError) as exc:
        payload = exc
    if not isinstance(payload, dict):
        raise QueueError(
            f"an event of ticket {row[1]!r} holds {row[6]!r:.80} as its payload, where a JSON "
            "object belongs: the row was not written by the executor; correct or delete it",
            lasting=True,
        )
    return payload
