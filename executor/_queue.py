"""The durable ticket queue: the :class:`Queue` contract and :func:`open_queue`.

One contract, two backends (SQLite embedded, PostgreSQL across machines). Everything that
decides a ticket's fate is written once, as SQL run inside one transaction per call; the
backends only supply the connection, the transaction and the dialect (``_schema.py``).
:class:`Queue` is assembled from its parts, one module each:

- ``_queue_base.py``: the machinery every part stands on (transactions, fencing on the lease
  epoch, the cascades to dependants, the event log);
- ``_queue_lifecycle.py``: a ticket's life, from ``enqueue`` through the claim and the worker's
  fenced writes to its end (``complete``, ``fail``, ``release``, ``cancel``);
- ``_queue_reclaim.py``: the reaper's primitives (``expired``, ``reclaim``), compare-and-set
  only;
- ``_queue_reads.py``: the reads (``get``, ``tickets``, ``iter_tickets``, ``count_tickets``,
  ``events``).

This module adds :func:`open_queue`, which reads the queue's URL and opens its backend. The
records the queue hands out (:class:`Ticket`, :class:`Lease`, ...) live in ``_records.py`` and
are re-exported here, so ``from executor._queue import Ticket`` keeps working.

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

import errno
import os
import time
from pathlib import Path

from executor._errors import QueueError, UsageError
from executor._queue_lifecycle import TicketLifecycle
from executor._queue_reads import TicketReads
from executor._queue_reclaim import ReaperPrimitives
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
from rundoctor.clock import Clock

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


class Queue(TicketLifecycle, ReaperPrimitives, TicketReads):
    """The ticket queue contract: every method is one transaction; worker writes are fenced.

    Backends supply :meth:`_transaction` and :meth:`close`; the state machine is written once,
    over the statements of :mod:`executor._schema`, in the parts this class joins: the
    machinery (:class:`~executor._queue_base.QueueBase`), a ticket's life
    (:class:`~executor._queue_lifecycle.TicketLifecycle`), the reaper's primitives
    (:class:`~executor._queue_reclaim.ReaperPrimitives`) and the reads
    (:class:`~executor._queue_reads.TicketReads`).

    >>> [part.__name__ for part in Queue.__mro__[1:5]]
    ['TicketLifecycle', 'ReaperPrimitives', 'TicketReads', 'QueueBase']
    """


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
            fix = (
                "pass a shorter path"
                if exc.errno == errno.ENAMETOOLONG
                else "check the permissions of its directories"
            )
            raise QueueError(
                f"cannot open queue {text!r}: it cannot be reached ({exc.strerror or exc}); {fix}"
            ) from exc
        if path.is_dir():
            raise UsageError(
                f"cannot open queue {text!r}: it is a directory; expected {_URL_FORMS}"
            )
        if path.exists() and not path.is_file():  # a FIFO, a socket, a device
            raise UsageError(
                f"cannot open queue {text!r}: it is not a regular file (SQLite would block on "
                f"a FIFO or fail with a disk I/O error); expected {_URL_FORMS}"
            )
        if not path.parent.is_dir():
            raise UsageError(
                f"cannot open queue {text!r}: directory {str(path.parent)!r} "
                "does not exist; create it first"
            )
    from executor._sqlite import SqliteQueue

    return SqliteQueue(text, clock=clock, create=create)
