"""The SQLite backend: one database file shared by any number of worker processes.

Each :class:`SqliteQueue` owns exactly one connection. The file runs in WAL mode (readers
never block the writer) with ``busy_timeout`` so a writer waits for another process's
transaction instead of failing at once. Every write transaction starts with ``BEGIN
IMMEDIATE``: it takes the write lock up front, so two claimers can never both read the same
``todo`` row and both update it — the second one waits, then sees the first one's claim.

Every ``sqlite3.Error`` becomes a :class:`~executor._errors.QueueError` raised ``from`` it.

>>> q = SqliteQueue(":memory:", clock=lambda: 1.0)
>>> q.enqueue("x", "/p.dot").status
'todo'
>>> q.close()
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from executor._errors import NoQueueError, QueueError
from executor._queue import Queue
from executor._schema import SQLITE, Tx, install
from executor._sqlite_lock import write_lock_holder
from rundoctor.clock import Clock

__all__ = ["BUSY_TIMEOUT_MS", "SqliteQueue"]

#: How long a writer waits for another process's write transaction before giving up.
BUSY_TIMEOUT_MS = 5000


class SqliteQueue(Queue):
    """A queue in one SQLite file (or ``":memory:"``, private to this object)."""

    def __init__(
        self,
        path: str,
        *,
        clock: Clock = time.time,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
        create: bool = True,
    ) -> None:
        super().__init__(clock=clock)
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        # One connection, possibly used from a heartbeat thread too: the lock keeps each
        # transaction whole, check_same_thread=False lets the other thread in.
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        #: The file the connection opened (device, inode): see :meth:`_same_file`.
        self._file: tuple[int, int] | None = None
        if not create and path != ":memory:" and not _is_file(path):
            raise NoQueueError(path)  # sqlite3.connect would create the file
        try:
            # isolation_level=None: the module never opens transactions behind our back; we
            # issue BEGIN IMMEDIATE / COMMIT ourselves.
            conn = sqlite3.connect(
                path,
                isolation_level=None,
                check_same_thread=False,
                timeout=busy_timeout_ms / 1000,
            )
            self._conn = conn
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            # Inspecting (``create=False``): look before anything is written (WAL included).
            if not create and not conn.execute(SQLITE.has_schema).fetchall():
                raise NoQueueError(path)
            if path != ":memory:":
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise QueueError(
                        f"SQLite queue {path!r}: could not switch to WAL mode (got {mode!r}); "
                        "put the file on a local filesystem that supports shared memory"
                    )
            # FULL: a completion acknowledged to the worker survives a power cut too; a lost
            # completion would re-run the ticket and break "at most one accepted completion".
            conn.execute("PRAGMA synchronous = FULL")
            self._file = None if path == ":memory:" else _identity(path)
        except sqlite3.Error as exc:
            self.close()
            raise _mapped(exc, path, busy_timeout_ms, "open") from exc
        except QueueError:
            self.close()
            raise
        try:
            # An existing queue's schema is only read: a write transaction here made `doctor
            # tickets` (and every inspection) wait on, and fail behind, a writer holding its
            # lock, where WAL lets a reader read. A deferred BEGIN still creates the tables.
            with self._transaction(write=create) as tx:
                install(tx, SQLITE)
        except BaseException:
            self.close()
            raise

    @contextmanager
    def _transaction(self, *, write: bool = True) -> Iterator[Tx]:
        with self._lock:
            conn = self._conn
            if conn is None:
                raise QueueError(f"SQLite queue {self.path!r} is closed")
            self._same_file()
            cursor = conn.cursor()
            try:
                # Readers take no write lock (WAL gives them a consistent snapshot anyway).
                cursor.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield Tx(cursor, SQLITE)
                except BaseException:
                    if conn.in_transaction:
                        cursor.execute("ROLLBACK")
                    raise
                cursor.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise _mapped(exc, self.path, self.busy_timeout_ms, "transaction") from exc
            finally:
                cursor.close()

    def _same_file(self) -> None:
        """Refuse to go on when the queue's path no longer names the file the connection
        opened: deleted, moved away or replaced by another file.

        The connection holds the old file open and goes on reading and writing it without an
        error, but no other process can open it: a worker went on claiming its tickets and
        completing them into a file nobody could read, and a queue made anew at that path
        was a second queue beside it. The error is lasting: a worker stops at once, saying
        so (exit 3). One ``stat`` per transaction (a few microseconds)."""
        if self._file is None:
            return
        try:
            now = _identity(self.path)
        except FileNotFoundError:
            now = None
        except OSError:
            return  # cannot be looked at (EACCES on the way): SQLite says what it finds
        if now != self._file:
            what = "deleted or moved away" if now is None else "replaced by another file"
            raise QueueError(
                f"SQLite queue {self.path!r}: the file was {what} after this process opened "
                "it; its connection still holds the old file, which no other process can "
                "read, so nothing more is written there: put the file back, or restart the "
                "worker on the queue now at that path",
                lasting=True,
            )

    def __del__(self) -> None:
        # A queue dropped without close() (a docstring example, a one-off inspection) still
        # closes its connection: Python 3.13 warns (ResourceWarning) about a connection
        # garbage-collected open. getattr: __init__ may have failed before setting it.
        conn = getattr(self, "_conn", None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Close the connection (idempotent).

        >>> q = SqliteQueue(":memory:")
        >>> q.close(); q.close()
        """
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _identity(path: str) -> tuple[int, int]:
    """The file at ``path`` (device, inode); raises OSError (FileNotFoundError) as ``stat``."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _is_file(path: str) -> bool:
    """Whether ``path`` is a file; a directory on the way that cannot be searched (EACCES) is
    a :class:`QueueError` that says so, not "no queue" (which is a guess) nor a traceback.

    >>> _is_file("/nonexistent/queue.db")
    False
    """
    try:
        return Path(path).is_file()
    except OSError as exc:
        raise QueueError(
            f"SQLite queue {path!r} cannot be reached ({exc.strerror or exc}): check the "
            "permissions of its directories"
        ) from exc


def _mapped(exc: sqlite3.Error, path: str, busy_timeout_ms: int, doing: str) -> QueueError:
    """One readable QueueError for a sqlite3 error, naming the file and the likely next step."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        # Name the holder: a writer frozen inside its transaction holds the queue until it
        # is continued, and "retry" alone sent people waiting on it.
        holder = write_lock_holder(path)
        hint = (
            f"another process held the write lock longer than busy_timeout={busy_timeout_ms} ms;"
            " retry, or use PostgreSQL for many concurrent workers"
            if holder is None
            else f"{holder} (waited busy_timeout={busy_timeout_ms} ms)"
        )
    elif "malformed" in text:
        hint = "the file is damaged; restore it from a backup, or salvage it (sqlite3's .recover)"
    elif isinstance(exc, sqlite3.DatabaseError) and "not a database" in text:
        hint = "the file is not a SQLite database; point the queue at another path"
    elif "unable to open" in text or "readonly" in text:
        hint = "check that the file and its directory are writable"
    elif ("disk I/O error" in text or "disk is full" in text) and _blocks(path) == 0:
        # /proc/self/mem is a regular file, on a file system that stores nothing (it was
        # "full": such a file system has no block free, nor any block at all).
        hint = (
            "it is on a file system that stores nothing (/proc, /sys); pass a SQLite file on a disk"
        )
    elif ("disk I/O error" in text or "disk is full" in text) and _full(path):
        # On a full disk SQLite cannot make its -shm and -wal files: even a read says only
        # "disk I/O error" (doctor tickets, reap), which named no cause.
        hint = "the file system holding it is full; free space there, then retry"
    else:
        hint = "the queue database refused the statement"
    return QueueError(
        f"SQLite queue {path!r} ({doing}): {text}: {hint}",
        lasting=any(mark in text for mark in _LASTING),
    )


def _blocks(path: str) -> int | None:
    """How many blocks the file system holding ``path`` has (0: a pseudo file system such as
    /proc), or None when it cannot be asked.

    >>> _blocks("/proc/self/mem"), _blocks("/nonexistent/queue.db")
    (0, None)
    """
    try:
        return os.statvfs(os.path.dirname(os.path.abspath(path))).f_blocks
    except OSError:
        return None


def _full(path: str) -> bool:
    """Whether the file system holding ``path`` has no space left for this user.

    >>> _full("/nonexistent/queue.db")
    False
    """
    try:
        return os.statvfs(os.path.dirname(os.path.abspath(path))).f_bavail == 0
    except OSError:
        return False


#: What SQLite says of a database that no retry can mend: damaged, or not the executor's.
_LASTING = ("malformed", "not a database", "no such table", "no such column")
