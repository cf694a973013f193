"""The queue's machinery: transactions, fencing, cascades and the event log.

:class:`QueueBase` is what every part of :class:`executor._queue.Queue` is written over. A
backend supplies the connection and the transaction (:meth:`QueueBase._transaction`,
:meth:`QueueBase.close`; ``_sqlite.py``, ``_postgres.py``) and, on PostgreSQL, the server's
clock; this module runs each call as one transaction (run again when the database aborted it
to break a deadlock), fences a worker's write on its lease epoch (a stale epoch is recorded as
a ``fenced`` event, committed, then raised as :class:`FencedError`), cascades a ticket's end to
its dependants, appends to the event log, and turns rows into :class:`Ticket` records. The
statements themselves are the dialect's (``_schema.py``).

>>> from executor import open_queue
>>> with open_queue(":memory:", clock=lambda: 1.0) as q:
...     isinstance(q, QueueBase), q.now()
(True, 1.0)
"""

from __future__ import annotations

import abc
import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Self, TypeVar, cast

from executor import _schema as sql
from executor._clocks import ClockOffset
from executor._errors import BudgetError, FencedError, QueueError, UsageError
from executor._records import Lease, Ticket
from executor._schema import Tx
from rundoctor.clock import Clock
from rundoctor.errors import close_matches, did_you_mean
from rundoctor.terminal import quoted
from rundoctor.words import plural

__all__ = [
    "QueueBase",
    "raise_fenced",
    "require_name",
    "require_seconds",
    "to_ticket",
    "updated",
]

T = TypeVar("T")
R = TypeVar("R")
_ATTEMPTS = 3
_Body = Callable[[Tx, Ticket, float], T]


class QueueBase(abc.ABC):
    """What every part of the queue contract stands on: one transaction per call, worker
    writes fenced on the lease epoch.

    Backends supply :meth:`_transaction` and :meth:`close`; the state machine is written once,
    over the statements of :mod:`executor._schema`, by the parts of
    :class:`executor._queue.Queue`.
    """

    def __init__(self, *, clock: Clock) -> None:
        self._clock = clock

    def now(self) -> float:
        """The time in the queue's clock: the one every lease time is stamped and compared in.

        The injected clock for SQLite (one machine, one clock); the database server's for a
        PostgreSQL queue (see :mod:`executor._clocks`). A reaper ages leases with it.

        >>> from executor import open_queue
        >>> open_queue(":memory:", clock=lambda: 42.0).now()
        42.0
        """
        return self._clock()

    @property
    def clock_offset(self) -> ClockOffset | None:
        """The server's clock minus the injected clock, as last measured; None for a queue
        that has one clock (SQLite) or has not read the server's yet.

        >>> from executor import open_queue
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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- shared machinery ----------------------------------------------------------------------

    def _fenced(self, lease: Lease, action: str, body: _Body[T]) -> T:
        """Run ``body`` on the leased row if the lease is still current; otherwise record a
        ``fenced`` event, commit it, and raise :class:`FencedError`."""

        def run(tx: Tx) -> T | FencedError:
            row = tx.one(sql.LOCK_LEASED, (lease.ticket_id, lease.epoch))
            now = self._now(tx)  # after the lock: time spent waiting for it counts
            if row is not None:
                return body(tx, to_ticket(row), now)
            return self._reject(tx, lease.ticket_id, lease.epoch, lease.worker, action, now)

        return raise_fenced(self._atomic(run))

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
        current = to_ticket(row) if row else None
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
        return to_ticket(row)

    def _unknown(self, tx: Tx, ticket_id: str) -> QueueError:
        ids = [r[0] for r in tx.rows(sql.SELECT_IDS)]
        close = close_matches(ticket_id, ids)
        hint = (
            did_you_mean(close)
            if close
            else f" (it holds {plural(len(ids), 'ticket')}; ids look like t-0123456789ab)"
        )
        return QueueError(f"no ticket {quoted(ticket_id)} in the queue{hint}")

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


def raise_fenced(result: T | FencedError) -> T:
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


def updated(tx: Tx, statement: str, params: Sequence[Any]) -> Ticket:
    """Run a fenced ``UPDATE … RETURNING`` on a row this transaction already locked."""
    row = tx.one(statement, params)
    if row is None:
        raise QueueError(f"ticket {params[-2]} changed inside its own transaction")
    return to_ticket(row)


# Every time column (epoch seconds) ends in "_at".
_REAL_COLUMNS = frozenset(c for c in sql.TICKET_COLUMNS if c.endswith("_at"))
#: What each column of a ticket row may hold, from :class:`Ticket`'s annotations ("int",
#: "str | None", …): SQLite keeps whatever was written, and a row some other program wrote
#: ('yesterday' in created_at) ended `doctor tickets` with "internal error", exit 70.
_PYTHON_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "str": ((str,), "text"),
    "int": ((int,), "a whole number"),
    "float": ((int, float), "a finite number (epoch seconds)"),
}
_EXPECTED: dict[str, tuple[tuple[type, ...], str, bool]] = {
    f.name: (*_PYTHON_TYPES[str(f.type).split(" | ")[0]], str(f.type).endswith("| None"))
    for f in dataclasses.fields(Ticket)
}


def to_ticket(row: Sequence[Any]) -> Ticket:
    """A ticket row as :class:`Ticket`; a value of the wrong type is a :class:`QueueError`
    naming the ticket, the column and the value.

    >>> row = ["t-1", "x", "/g.dot", "todo", 0, 0, 0, 1, None, 0] + [None] * 11
    >>> to_ticket([*row, "later", 1.0, None])
    Traceback (most recent call last):
    ...
    executor._errors.QueueError: ticket 't-1' holds 'later' in created_at, where a finite number ...
    """
    for name, value in zip(sql.TICKET_COLUMNS, row, strict=True):
        kinds, expected, nullable = _EXPECTED[name]
        ok = (value is None and nullable) or (
            isinstance(value, kinds)
            and not isinstance(value, bool)
            and (name not in _REAL_COLUMNS or math.isfinite(cast(float, value)))
        )
        if not ok:
            raise QueueError(
                f"ticket {row[0]!r} holds {value!r:.80} in {name}, where {expected}"
                f"{' or NULL' if nullable else ''} belongs: the row was not written by the "
                "executor; correct or delete it (sqlite3, psql)",
                lasting=True,
            )
    # SQLite hands back a whole-number REAL from UPDATE … RETURNING as an int; times are floats.
    values: list[Any] = [
        float(v) if v is not None and name in _REAL_COLUMNS else v
        for name, v in zip(sql.TICKET_COLUMNS, row, strict=True)
    ]
    return Ticket(*values)


def require_name(what: str, value: str) -> None:
    if not value.strip():
        raise UsageError(f"{what} must be a non-empty name, got {value!r}")


def require_seconds(what: str, value: float, *, zero_ok: bool = False) -> None:
    if not (value >= 0 if zero_ok else value > 0):
        expected = "zero or more seconds" if zero_ok else "a positive number of seconds"
        raise BudgetError(f"{what} must be {expected}, got {value!r}")
