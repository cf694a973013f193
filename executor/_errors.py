"""The executor's exception tree: one base class, mapped at every dependency boundary.

::

    ExecutorError                  anything the executor raises on purpose
    ├── QueueError                 the ticket queue failed (sqlite3 / psycopg errors, unknown ids)
    │   └── FencedError            a fenced write (stale lease epoch, lost CAS) was rejected
    ├── GraphError                 a pipeline graph is invalid (``line`` and ``reason``)
    ├── BudgetError                timing budgets are inconsistent (lease, heartbeat, grace, ...)
    ├── UsageError                 bad input from the caller: a URL, an option, a path
    │   └── NoQueueError           ``open_queue(url, create=False)`` found no queue there
    └── WorkerError                a worker cannot continue (its database stayed away): exit 3

Dependency errors (``sqlite3.Error``, ``psycopg.Error``) never escape the package: the
backend catches them and raises a ``QueueError`` ``from`` the original so the cause stays
in the traceback. The CLI maps ``UsageError``/``GraphError``/``BudgetError`` to exit code 2 and
``WorkerError`` to its ``exit_code``, 3.

>>> issubclass(FencedError, QueueError) and issubclass(QueueError, ExecutorError)
True
>>> str(GraphError(12, "edge to unknown node 'x'"))
"line 12: edge to unknown node 'x'"
"""

from __future__ import annotations

__all__ = [
    "BudgetError",
    "ExecutorError",
    "FencedError",
    "GraphError",
    "NoQueueError",
    "QueueError",
    "UsageError",
    "WorkerError",
]


class ExecutorError(Exception):
    """Base class of every error the executor raises deliberately."""


class QueueError(ExecutorError):
    """The ticket queue could not do what was asked (storage error, unknown ticket, bad state).

    ``lasting`` is True when trying again cannot help: the database is damaged (SQLite's
    ``database disk image is malformed``), is not the executor's (a table or column missing), or
    holds a row no executor wrote. A worker rides out every other ``QueueError`` as an outage,
    and stops at once on a lasting one (it spent its whole outage budget on them).

    >>> QueueError("no such table: tickets", lasting=True).lasting, QueueError("locked").lasting
    (True, False)
    """

    lasting = False

    def __init__(self, *args: object, lasting: bool = False) -> None:
        super().__init__(*args)
        self.lasting = lasting


class FencedError(QueueError):
    """A write's compare-and-set on the lease failed, so the write was rejected.

    For a worker: another worker or the reaper took the ticket over and bumped
    ``lease_epoch``, or the ticket left ``claimed``/``running`` (terminal rows included); the
    worker must stop touching the ticket and its run. For the reaper's ``reclaim``: the epoch
    moved, the ticket is not leased, or it was claimed within the claim grace period.

    >>> err = FencedError("t-0000000000ab", 3, "epoch moved")
    >>> (err.ticket_id, err.epoch)
    ('t-0000000000ab', 3)
    """

    def __init__(self, ticket_id: str, epoch: int, reason: str) -> None:
        super().__init__(f"ticket {ticket_id}: write with lease epoch {epoch} fenced off: {reason}")
        self.ticket_id = ticket_id
        self.epoch = epoch
        self.reason = reason


class GraphError(ExecutorError):
    """A pipeline graph is invalid; ``line`` is 1-based in the DOT source (0 when unknown);
    ``path`` names the file when the graph was read from one.

    >>> err = GraphError(3, "no start node")
    >>> (err.line, err.reason, str(err))
    (3, 'no start node', 'line 3: no start node')
    >>> str(GraphError(3, "no start node", path="p.dot"))
    "pipeline graph 'p.dot', line 3: no start node"
    """

    def __init__(self, line: int, reason: str, *, path: str | None = None) -> None:
        where = f"line {line}: " if line else ""
        if path is not None:
            where = f"pipeline graph {path!r}, {where}" if line else f"pipeline graph {path!r}: "
        super().__init__(f"{where}{reason}")
        self.line = line
        self.reason = reason
        self.path = path


class BudgetError(ExecutorError):
    """Timing budgets are inconsistent (e.g. heartbeat interval not below the lease TTL)."""


class UsageError(ExecutorError):
    """The caller passed a bad value (URL, option, path); the message names the accepted forms."""


class NoQueueError(UsageError):
    """No queue at ``url`` (its tables, or its PostgreSQL schema, do not exist); nothing created.

    Raised by ``open_queue(url, create=False)``, which inspecting callers use so that a
    mistyped URL never leaves an empty queue behind.

    >>> NoQueueError("q.db").url
    'q.db'
    """

    def __init__(self, url: str) -> None:
        super().__init__(f"no queue at {url}: its tables do not exist (nothing was created)")
        self.url = url


class WorkerError(ExecutorError):
    """A worker cannot continue: its queue stayed unreachable (or locked) past its outage budget.

    The worker released what it could first; ``exit_code`` is what ``doctor worker`` exits with.

    >>> WorkerError("the queue stayed unreachable for 300 s").exit_code
    3
    """

    exit_code = 3
