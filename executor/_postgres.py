"""The PostgreSQL backend: one shared queue for workers on any number of machines.

Each :class:`PostgresQueue` owns one psycopg connection with autocommit OFF; every method
runs in one explicit transaction (``conn.transaction()``: BEGIN … COMMIT, ROLLBACK on an
exception), so the connection is never left idle inside a transaction. Transactions run
concurrently under READ COMMITTED; what keeps them correct:

- the claim selects its row ``FOR UPDATE SKIP LOCKED``: concurrent claimers take different
  rows instead of the same one (or of queueing behind each other);
- every fenced write first locks the row ``FOR UPDATE`` with the epoch in the WHERE clause;
  a concurrent reclaim that bumps the epoch makes the locked re-check find nothing;
- cascades lock each dependant before counting its unfinished dependencies, and enqueue
  locks its dependencies ``FOR SHARE``, so no ticket stays blocked after its last
  dependency finished (docs/queue.md walks through the interleavings);
- a transaction PostgreSQL aborts to break a deadlock is run again (``Queue._atomic``).

Every time a transaction stamps or compares is the server's (``clock_timestamp()``, read once
the rows it decides on are locked), so workers and reapers on machines whose clocks disagree
still agree on every lease (:mod:`executor._clocks`); ``server_clock=False`` keeps the
injected clock instead, for tests that pin time.

Every ``psycopg.Error`` becomes a :class:`~executor._errors.QueueError` raised ``from`` it;
the password in a URL is never repeated in a message.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from executor._clocks import SERVER_NOW, ClockOffset, measure
from executor._errors import NoQueueError, QueueError
from executor._queue import Queue
from executor._schema import POSTGRES, Tx, install
from rundoctor.clock import Clock
from rundoctor.passwords import redact

__all__ = ["APPLICATION_NAME", "IDLE_IN_TRANSACTION_S", "PostgresQueue"]

#: Shown in ``pg_stat_activity`` so an operator can tell queue connections apart.
APPLICATION_NAME = "rundoctor-executor"

#: How long a transaction of the queue may sit idle (its client silent between two statements)
#: before the server ends it. The queue's transactions run their statements back to back; one
#: idle for seconds belongs to a client that was frozen (SIGSTOP, a paused VM) or cut off by
#: the network half-way, and the rows it locked would hold up every reaper and writer that needs
#: them for as long as it stays so (hours, until TCP gives up on a partitioned client). The
#: server ending it releases the locks; the client, should it wake, finds its connection closed
#: and retries as after any dropped connection. A URL, role or server that sets
#: ``idle_in_transaction_session_timeout`` itself keeps its value.
IDLE_IN_TRANSACTION_S = 5.0
_BOUND_IDLE = (
    "SELECT set_config('idle_in_transaction_session_timeout', %s, false)"
    " WHERE current_setting('idle_in_transaction_session_timeout') = '0'"
)

# Serializes schema creation across processes opening a fresh database at the same moment
# (CREATE … IF NOT EXISTS alone races on the catalog). Any constant will do; this is "rdqueue".
_SCHEMA_LOCK_KEY = 0x72647175657565


#: What PostgreSQL says of a queue that no retry can mend: its tables or columns are missing or
#: are not the executor's (SQLSTATE 42P01, 42703), as SQLite's "no such table" is.
_LASTING = (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn)


class PostgresQueue(Queue):
    """A queue in a PostgreSQL database (the tables live in the first schema of search_path)."""

    def __init__(
        self,
        url: str,
        *,
        clock: Clock = time.time,
        connect_timeout_s: int = 10,
        create: bool = True,
        server_clock: bool = True,
    ) -> None:
        super().__init__(clock=clock)
        self.url = url
        self.connect_timeout_s = connect_timeout_s
        self.server_clock = server_clock
        self._offset: ClockOffset | None = None
        self._lock = threading.RLock()
        self._conn: psycopg.Connection[tuple[object, ...]] | None = self._connect()
        try:
            with self._transaction() as tx:
                if not create:
                    # Inspecting: no lock, no DDL; a missing schema or table is an answer.
                    if not tx.raw(POSTGRES.has_schema):
                        raise NoQueueError(redact(url))
                else:
                    tx.raw(f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK_KEY})")
                    _create_search_schema(tx)
                install(tx, POSTGRES)
        except BaseException:
            self.close()
            raise

    def _connect(self) -> psycopg.Connection[tuple[object, ...]]:
        try:
            conninfo = self.url
            if "application_name" not in conninfo:
                conninfo = make_conninfo(conninfo, application_name=APPLICATION_NAME)
            conn = psycopg.connect(
                conninfo, autocommit=False, connect_timeout=self.connect_timeout_s
            )
            with conn.transaction():
                conn.execute(_BOUND_IDLE, (f"{IDLE_IN_TRANSACTION_S * 1000:.0f}",))
            return conn
        except psycopg.Error as exc:
            raise QueueError(
                f"cannot connect to the PostgreSQL queue at {redact(self.url)}: "
                f"{_first_line(exc, self.url)}; check that the server is up and the URL's user, "
                "host, port and database are right"
            ) from exc

    @contextmanager
    def _transaction(self, *, write: bool = True) -> Iterator[Tx]:
        # ``write`` matters to SQLite only: PostgreSQL readers never block writers.
        with self._lock:
            if self._conn is None:
                raise QueueError(f"PostgreSQL queue {redact(self.url)} is closed")
            if self._conn.broken or self._conn.closed:
                # The server restarted or the network dropped: one fresh connection, then on
                # (a refused connection raises QueueError, which the worker retries).
                self._conn.close()
                self._conn = self._connect()
            conn = self._conn
            try:
                with conn.transaction(), conn.cursor() as cursor:
                    yield Tx(cursor, POSTGRES)
            except psycopg.Error as exc:
                # A connection lost during COMMIT may have committed: say so, never "rolled back".
                outcome = (
                    "the connection was lost: the transaction may have committed"
                    if conn.broken
                    else "the transaction was rolled back"
                )
                raise QueueError(
                    f"PostgreSQL queue {redact(self.url)}: {_first_line(exc, self.url)}"
                    f" ({type(exc).__name__}); {outcome}",
                    # Tables or columns that are not the executor's: no retry can mend them.
                    lasting=isinstance(exc, _LASTING) and not conn.broken,
                ) from exc

    def now(self) -> float:
        """The server's time (one transaction), or the injected clock's without ``server_clock``."""
        if not self.server_clock:
            return self._clock()
        return self._atomic(self._now, write=False)

    @property
    def clock_offset(self) -> ClockOffset | None:
        """The server's clock minus the injected clock, as measured by the last transaction
        that read the time (None before any, or without ``server_clock``)."""
        return self._offset

    def _now(self, tx: Tx) -> float:
        if not self.server_clock:
            return self._clock()
        server, self._offset = measure(self._clock, lambda: float(tx.raw(SERVER_NOW)[0][0]))
        return server

    def _transient(self, error: BaseException | None) -> bool:
        # 40P01 and 40001: PostgreSQL rolled the transaction back and asks for it to be run
        # again. A dropped connection is not retried here: its COMMIT may have happened, so
        # the worker (executor._resilience.persist) first checks whether it did.
        return isinstance(
            error, psycopg.errors.DeadlockDetected | psycopg.errors.SerializationFailure
        )

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _create_search_schema(tx: Tx) -> None:
    """Create the first schema of ``search_path`` when none of its schemas exists.

    ``?schema=NAME`` (search_path NAME alone) then makes the queue in NAME, rather than
    failing with "no schema has been selected to create in".
    """
    if tx.raw("SELECT current_schema()")[0][0] is not None:
        return
    first = str(tx.raw("SHOW search_path")[0][0]).split(",")[0].strip()
    name = first[1:-1].replace('""', '"') if first.startswith('"') else first
    if name and name != "$user":
        tx.raw(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(name)).as_string())


def _first_line(exc: BaseException, url: str) -> str:
    """The first line of the driver's message, without ``url``'s password: libpq quotes the
    part of a connection string it cannot parse, password included.

    >>> _first_line(ValueError('bad "password=s3cret"\\nmore'), "postgresql:///q?password=s3cret")
    'bad "password=***"'
    """
    text = str(exc).strip()
    return redact(text.splitlines()[0], url) if text else type(exc).__name__
