"""Ingestion of a work queue: the executor's ``tickets``, ``ticket_deps`` and ``ticket_events``.

The doctor reads the queue's tables directly, by the schema of ``notes/executor-design.md``
(it never imports the executor), through the database driver into Arrow, and registers them
in the :class:`~doctor._tables.Tables` connection under the same names. The empty tables, with
their columns and types, are created by :func:`doctor._tables.new_connection`; those columns
are the only ones read.

Queue URLs (``doctor scan --db URL``):

=====================================  ===================================================
``/path/queue.db``, ``queue.db``       a SQLite file
``sqlite:///ABS/PATH``                 the same, as a URL (``sqlite:////abs`` also works)
``postgresql://user@host:port/db``     PostgreSQL (``postgres://`` too), through psycopg
``postgresql:///db?host=/run/pg``      the same, libpq's form for a local server
=====================================  ===================================================

SQLite files are opened read-only (``file:…?mode=ro``), so the doctor never creates or
changes a queue. PostgreSQL is read in one read-only ``REPEATABLE READ`` transaction, so the
three tables are one consistent snapshot; its first statement reads the server's time
(``clock_timestamp()``, bracketed by two reads of the doctor's clock, as the executor does:
:func:`rundoctor.clock.measure`), the instant the snapshot is taken at. :func:`load_queue`
returns that reading: the queue's "now", which its leases are judged at (they were stamped in
the server's clock), and the doctor's offset to the server.

A queue kept in its own PostgreSQL schema is named either the libpq way,
``?options=-csearch_path%3Dmyschema`` (passed through to the server untouched; the executor's
URLs use the same), or with the doctor's shorthand ``?schema=myschema``
(removed from the URL before connecting, then ``SET search_path TO myschema``).

Errors are one line saying what to do: a missing file is a :class:`~doctor.RootError`; a
file that is not a queue, a schema that does not match, or a server that cannot be reached
is an :class:`~doctor.IngestError`; a URL the doctor cannot read is a
:class:`~doctor.UsageError`. Passwords (``user:pw@`` or ``?password=``) never appear in
messages, not even where the driver quotes the URL back.
"""

from __future__ import annotations

import errno
import math
import os
import sqlite3
import stat
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from doctor._errors import IngestError, RootError, UsageError
from doctor._model import noun
from doctor._tables import Tables
from rundoctor.clock import SERVER_NOW, Clock, ClockOffset, measure
from rundoctor.passwords import redact

if TYPE_CHECKING:  # loaded when a queue is read: a diagnosis of one run needs no Arrow here
    import pyarrow as pa

__all__ = [
    "QUEUE_TABLES",
    "QueueSource",
    "ServerTime",
    "copy_queue",
    "load_queue",
    "parse_queue_url",
    "queue_tables",
    "sqlite_file",
]

#: The queue tables the doctor reads, in the order they are read.
QUEUE_TABLES = ("tickets", "ticket_deps", "ticket_events")

#: The executor's queue schema the doctor reads (``executor._schema.SCHEMA_VERSION``).
QUEUE_SCHEMA_VERSION = 1

# Rows are stable across reads (a scan of the same queue gives the same tables).
_ORDER = {"tickets": "id", "ticket_deps": "ticket_id, depends_on", "ticket_events": "id"}
_BATCH = 50_000
_CONNECT_TIMEOUT_S = 10
#: How long a read waits for another process's lock on the queue (a SQLite writer outside WAL
#: mode, a PostgreSQL migration) before it gives up with one line, instead of hanging.
LOCK_TIMEOUT_S = 10.0
_LOCKED = (
    "another process held a lock on the queue for over {s:g} s ({what}); the doctor reads "
    "without waiting longer: run it again when that is done"
)
# libpq takes the password as a query parameter too (``?password=…``).
_HINT = "pass --db the executor's queue: a SQLite file, sqlite:///ABS/PATH or postgresql://…"


@dataclass(frozen=True, slots=True)
class QueueSource:
    """Where a queue lives: ``kind`` is ``sqlite`` (``target`` a path) or ``postgres``
    (``target`` the libpq URL, without the doctor's ``schema=``); ``display`` is safe to print.
    """

    kind: str
    target: str
    schema: str | None
    display: str


def parse_queue_url(url: str) -> QueueSource:
    """Read a ``--db`` value.

    >>> parse_queue_url("sqlite:///var/q.db").target
    '/var/q.db'
    >>> s = parse_queue_url("postgresql://me:pw@db:5432/test?schema=q1&sslmode=disable")
    >>> s.kind, s.schema
    ('postgres', 'q1')
    >>> s.target
    'postgresql://me:pw@db:5432/test?sslmode=disable'
    >>> s.display
    'postgresql://me:***@db:5432/test?sslmode=disable'
    >>> parse_queue_url("queue.db").kind
    'sqlite'
    """
    text = url.strip()
    if not text:
        raise UsageError(f"--db is empty; {_HINT}")
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in ("postgresql", "postgres"):
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 (a port that is not a number raises here, not later)
        except ValueError as exc:  # "Invalid IPv6 URL", "Port could not be cast …"
            raise UsageError(f"--db {redact(text)!r} is not a URL ({exc}); {_HINT}") from None
        query = parse_qsl(parts.query, keep_blank_values=True)
        schemas = [v for k, v in query if k == "schema"]
        if any(not s for s in schemas) or len(schemas) > 1:
            raise UsageError(f"--db {redact(text)!r}: give schema= once, with a name")
        target = text
        if schemas:  # the URL as given but for schema=: urlunsplit would drop an empty host
            rest = urlencode([q for q in query if q[0] != "schema"])
            target = text.split("?", 1)[0] + (f"?{rest}" if rest else "")
        return QueueSource("postgres", target, schemas[0] if schemas else None, redact(target))
    if scheme == "sqlite":
        path = unquote(urlsplit(text).path)
        if not path:
            raise UsageError(f"--db {text!r} names no file; write sqlite:///ABS/PATH")
        return QueueSource("sqlite", path, None, path)
    if scheme:
        raise UsageError(f"--db {redact(text)!r}: unknown scheme {scheme!r}; {_HINT}")
    return QueueSource("sqlite", text, None, text)


def _one_line(exc: BaseException, url: str = "") -> str:
    """The first line of ``exc``'s message, without ``url``'s password should the driver
    have repeated it (libpq quotes a connection string it cannot parse)."""
    text = str(exc).strip()
    line = text.splitlines()[0].strip() if text else type(exc).__name__
    return redact(line, url) if url else line


#: A PostgreSQL queue's time as its snapshot was taken (epoch seconds, the server's clock), and
#: the offset of the doctor's clock to it.
ServerTime = tuple[float, ClockOffset]


def load_queue(tables: Tables, url: str, clock: Clock = time.time) -> ServerTime | None:
    """Read the queue at ``url`` into ``tables``' ``tickets``, ``ticket_deps`` and
    ``ticket_events`` (replacing what they held), in batches of 50,000 rows.

    Returns the server's time the rows were read at, measured against ``clock`` (this host's)
    for PostgreSQL; None for SQLite, whose one clock is the doctor's host's own.

    >>> from doctor._tables import new_connection
    >>> tables = Tables(new_connection())
    >>> load_queue(tables, "/nonexistent/queue.db")
    Traceback (most recent call last):
    ...
    doctor._errors.RootError: queue database '/nonexistent/queue.db' does not exist; pass --db the executor's queue: a SQLite file, sqlite:///ABS/PATH or postgresql://…
    """  # noqa: E501
    source = parse_queue_url(url)
    columns = {
        t: [(str(r[0]), str(r[1])) for r in tables.con.sql(f"DESCRIBE {t}").fetchall()]
        for t in QUEUE_TABLES
    }
    # Each batch goes into DuckDB as it is read: Python holds one batch, never the whole queue
    # (no DuckDB transaction around it either: its undo data cost more memory than the rows).
    # A read that fails raises, and the caller drops the half-filled tables.
    for table in QUEUE_TABLES:
        tables.con.execute(f"DELETE FROM {table}")

    def sink(table: str, batch: pa.RecordBatch) -> None:
        _insert(tables, table, batch)

    if source.kind == "sqlite":
        _read_sqlite(source, columns, sink)
        return None
    return _read_postgres(source, columns, sink, clock)


def copy_queue(source: Tables, target: Tables) -> None:
    """Copy the queue tables ``source`` holds into ``target`` (replacing what it held), batch by
    batch: a scan reads the database once, though it needs the queue in two connections.

    >>> from doctor._tables import new_connection
    >>> a, b = Tables(new_connection()), Tables(new_connection())
    >>> a.con.execute("INSERT INTO ticket_deps VALUES ('t2', 't1')") and None
    >>> copy_queue(a, b)
    >>> b.sql("SELECT * FROM ticket_deps")
    [('t2', 't1')]
    """
    for table in QUEUE_TABLES:
        target.con.execute(f"DELETE FROM {table}")
        reader = source.con.sql(f"SELECT * FROM {table}").to_arrow_reader(_BATCH)
        target.con.register("_rd_queue", reader)
        try:
            target.con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _rd_queue")
        finally:
            target.con.unregister("_rd_queue")


def _insert(tables: Tables, table: str, batch: pa.RecordBatch) -> None:
    tables.con.register("_rd_queue", batch)
    try:
        tables.con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _rd_queue")
    finally:
        tables.con.unregister("_rd_queue")


def queue_tables(url: str) -> Tables:
    """The queue at ``url`` alone, read into fresh tables (what ``reports`` computes
    throughput from); the doctor's errors (exit 2) when it cannot be read.

    >>> import tempfile
    >>> from executor import open_queue
    >>> path = tempfile.mkdtemp() + "/queue.db"
    >>> _ = open_queue(path).enqueue("demo", "/p.dot")
    >>> queue_tables(path).con.sql("SELECT status FROM tickets").fetchall()
    [('todo',)]
    """
    from doctor._tables import new_connection

    tables = Tables(new_connection())
    load_queue(tables, url)
    return tables


Columns = dict[str, list[tuple[str, str]]]
Fetch = Callable[[int], Sequence[Sequence[Any]]]
Sink = Callable[[str, "pa.RecordBatch"], None]


def _stream(
    source: QueueSource, table: str, cols: list[tuple[str, str]], fetch: Fetch, sink: Sink
) -> None:
    """Batches of driver rows, typed like the DuckDB table, handed to ``sink`` one by one."""
    import pyarrow as pa

    arrow_types = {"VARCHAR": pa.string(), "BIGINT": pa.int64(), "DOUBLE": pa.float64()}
    schema = pa.schema([(name, arrow_types[kind]) for name, kind in cols])
    while rows := fetch(_BATCH):
        arrays = []
        for i, (name, kind) in enumerate(cols):
            values = [row[i] for row in rows]
            if kind == "DOUBLE":  # NaN and ±inf are no time: unknown, as NULL is
                values = [v if v is None or _finite(v) else None for v in values]
            try:
                arrays.append(pa.array(values, arrow_types[kind]))
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
                raise IngestError(
                    f"queue {source.display}: column {table}.{name} holds a value that is not "
                    f"{kind} ({_one_line(exc)}); is this the executor's queue?"
                ) from exc
        del rows  # the driver's rows go before DuckDB copies the batch
        sink(table, pa.RecordBatch.from_arrays(arrays, schema=schema))


def _finite(value: Any) -> bool:
    """False for NaN and ±inf (True for anything else: a string fails later, by its column).

    >>> _finite(1.5), _finite(float("inf")), _finite(float("nan")), _finite("x")
    (True, False, False, True)
    """
    return not isinstance(value, float) or math.isfinite(value)


def _check_version(source: QueueSource, rows: Sequence[Sequence[Any]]) -> None:
    """Refuse a queue whose ``schema_version`` names another schema than the one the doctor
    reads: its columns may mean other things. A queue without the table is read as it is."""
    found = sorted({r[0] for r in rows})
    if found and found != [QUEUE_SCHEMA_VERSION]:
        versions = ", ".join(str(v) for v in found)
        raise IngestError(
            f"queue {source.display} has schema version {versions}; this doctor reads version "
            f"{QUEUE_SCHEMA_VERSION}: use the doctor that ships with the executor that wrote it "
            "(pip install -U rundoctor)"
        )


def _missing(source: QueueSource, table: str, have: Iterable[str], want: list[str]) -> None:
    present = set(have)
    missing = [c for c in want if c not in present]
    if missing:
        raise IngestError(
            f"queue {source.display}: table {table} has no {noun(len(missing), 'column')} "
            f"{', '.join(missing)}; it is not the executor's queue schema the doctor reads "
            "(docs/findings.md)"
        )


def sqlite_file(target: str) -> Path:
    """The SQLite queue file ``target`` names, once it is known to be a file this process may
    read; else a :class:`~doctor.RootError` that says why (missing, not a file, or a file or
    directory the permissions hide).

    >>> sqlite_file("/nonexistent/queue.db")
    Traceback (most recent call last):
    ...
    doctor._errors.RootError: queue database '/nonexistent/queue.db' does not exist; pass --db the executor's queue: a SQLite file, sqlite:///ABS/PATH or postgresql://…
    """  # noqa: E501
    path = Path(target)
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise RootError(f"queue database {target!r} does not exist; {_HINT}") from None
    except OSError as exc:  # EACCES on a directory on the way, ELOOP, ENAMETOOLONG
        fix = (
            "pass a shorter path"
            if exc.errno == errno.ENAMETOOLONG
            else "check the permissions of its directories, or run the doctor as a user who "
            "can read the queue"
        )
        raise RootError(
            f"queue database {target!r} cannot be reached ({exc.strerror or exc}); {fix}"
        ) from None
    if not stat.S_ISREG(st.st_mode):
        raise RootError(f"queue database {target!r} is not a file; {_HINT}")
    if not os.access(path, os.R_OK):
        raise RootError(
            f"queue database {target!r} cannot be read (permission denied); run the doctor as "
            "a user who can read the queue, or grant read access to the file"
        )
    return path


def _read_sqlite(source: QueueSource, columns: Columns, sink: Sink) -> None:
    path = sqlite_file(source.target)
    # The path's bytes, percent-encoded: a name that is not UTF-8 (quote of its str raised
    # UnicodeEncodeError, "internal error") is the same file to SQLite.
    uri = f"file:{quote(os.fsencode(path.resolve()))}?mode=ro"
    try:
        con = sqlite3.connect(uri, uri=True, timeout=LOCK_TIMEOUT_S)
    except sqlite3.Error as exc:
        raise IngestError(f"cannot open queue {source.display}: {_one_line(exc)}") from exc
    try:
        # One read transaction: the three tables are one snapshot even while a worker writes.
        con.execute("BEGIN")
        have = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
        absent = [t for t in QUEUE_TABLES if t not in have]
        if absent:
            raise IngestError(
                f"{source.display} is not a queue database (no table {', '.join(absent)}); " + _HINT
            )
        if "schema_version" in have:
            _check_version(source, con.execute("SELECT version FROM schema_version").fetchall())
        for table, cols in columns.items():
            names = [c for c, _ in cols]
            info = con.execute(f"PRAGMA table_info({table})").fetchall()
            _missing(source, table, (r[1] for r in info), names)
            cur = con.execute(f"SELECT {', '.join(names)} FROM {table} ORDER BY {_ORDER[table]}")
            _stream(source, table, cols, cur.fetchmany, sink)
        con.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc) and "busy" not in str(exc):
            raise IngestError(f"cannot read queue {source.display}: {_one_line(exc)}") from exc
        what = "a writer outside WAL mode, or a checkpoint"
        locked = _LOCKED.format(s=LOCK_TIMEOUT_S, what=what)
        raise IngestError(f"cannot read queue {source.display}: {locked}") from exc
    except sqlite3.DatabaseError as exc:
        # "file is not a database", a corrupt file.
        raise IngestError(f"cannot read queue {source.display}: {_one_line(exc)}; {_HINT}") from exc
    finally:
        con.close()


def _server_now(con: Any) -> float:
    """The server's clock (``clock_timestamp()``), epoch seconds."""
    row = con.execute(SERVER_NOW).fetchone()
    return float(row[0])


def _connect(source: QueueSource) -> Any:
    """A connection to the PostgreSQL queue, or the one-line error that says why not."""
    import psycopg

    url = source.target
    kwargs: dict[str, Any] = {}
    if "connect_timeout" not in source.target:
        kwargs["connect_timeout"] = _CONNECT_TIMEOUT_S
    try:
        return psycopg.connect(source.target, **kwargs)
    except psycopg.ProgrammingError as exc:  # a malformed URL or an unknown parameter
        raise UsageError(f"--db {source.display}: {_one_line(exc, url)}; {_HINT}") from exc
    except psycopg.Error as exc:
        raise IngestError(
            f"cannot connect to the queue at {source.display}: {_one_line(exc, url)}; check that "
            "PostgreSQL is running and the user, host, port and database are right"
        ) from exc


def _read_postgres(source: QueueSource, columns: Columns, sink: Sink, clock: Clock) -> ServerTime:
    import psycopg
    from psycopg import sql

    url = source.target
    con = _connect(source)
    where = f" (schema {source.schema})" if source.schema else ""
    try:
        con.read_only = True
        con.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with con.transaction():
            # A table locked by a migration (ALTER, VACUUM FULL) must not hang the doctor.
            con.execute(f"SET LOCAL lock_timeout = {int(LOCK_TIMEOUT_S * 1000)}")
            # The transaction's first query takes its snapshot: the server's time read in it
            # is the instant the rows below are as of.
            server = measure(clock, lambda: _server_now(con))
            if source.schema:
                con.execute(
                    sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(source.schema))
                )
            if con.execute("SELECT to_regclass('schema_version')").fetchone() != (None,):
                _check_version(source, con.execute("SELECT version FROM schema_version").fetchall())
            for table, cols in columns.items():
                probe = con.execute(
                    sql.SQL("SELECT * FROM {} LIMIT 0").format(sql.Identifier(table))
                )
                _missing(
                    source, table, (d.name for d in probe.description or ()), [c for c, _ in cols]
                )
                query = sql.SQL("SELECT {} FROM {} ORDER BY {}").format(
                    sql.SQL(", ").join(sql.Identifier(c) for c, _ in cols),
                    sql.Identifier(table),
                    sql.SQL(_ORDER[table]),
                )
                # A server-side cursor: ticket_events may be long.
                with con.cursor(name=f"doctor_{table}") as cur:
                    cur.execute(query)
                    _stream(source, table, cols, cur.fetchmany, sink)
        return server
    except psycopg.errors.UndefinedTable as exc:
        raise IngestError(
            f"{source.display}{where} is not a queue database ({_one_line(exc, url)}); name the "
            "queue's schema with ?options=-csearch_path%3DNAME or ?schema=NAME, or " + _HINT
        ) from exc
    except psycopg.errors.LockNotAvailable as exc:
        locked = _LOCKED.format(s=LOCK_TIMEOUT_S, what="a migration, or an explicit LOCK TABLE")
        raise IngestError(f"cannot read queue {source.display}{where}: {locked}") from exc
    except psycopg.Error as exc:
        msg = _one_line(exc, url)
        raise IngestError(f"cannot read queue {source.display}{where}: {msg}") from exc
    finally:
        con.close()
