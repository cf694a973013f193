"""The canonical tables of one or many runs, held in one DuckDB connection.

=============  ==========================================================================
table          rows
=============  ==========================================================================
``events``     one per event line: run_id, scope, seq, ts, event, node_id, attempt, status,
               failure_reason, … and ``raw`` (the whole line) when ingested with raw lines
``attempts``   one per ``stage_attempt_start``, paired with its ``stage_attempt_end`` (an
               ``output_contract_violated`` after it makes its status ``fail``;
               ``end_status`` keeps what the end event said)
``files``      one per artifact read: kind, size, mtime, whether it parsed and why not
``runs``       one per run directory: path, layout, owner pid
``torn``       one per line or file that does not parse
``unreadable`` one per artifact that could not be read as written (not a regular file, a
               name that is not UTF-8, a stream over the budget, duplicate keys)
=============  ==========================================================================

Memory and disk are bounded: DuckDB gets :data:`DUCKDB_MEMORY_LIMIT` of the per-run budget
(:data:`MEMORY_BUDGET_BYTES`, 1 GiB) and spills to a private temporary directory (never the
working directory), at most :data:`DUCKDB_TEMP_LIMIT`, removed when the connection goes.

A queue's ``tickets``, ``ticket_deps`` and ``ticket_events`` (the executor's columns) are
empty unless ``doctor scan --db`` read one (:func:`doctor._queue_ingest.load_queue`).

Detectors query them with SQL (or pull small frames into Polars); :meth:`Tables.arrow`
exports any of them as a ``pyarrow.Table`` for notebooks and the Parquet cache.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # loaded where used: listing the checks needs none of them
    import duckdb
    import polars as pl
    import pyarrow as pa

from doctor._cache import StreamState
from doctor._documents import RunDocuments
from doctor._interrupts import interruptible
from doctor._ndjson import TornLine, create_events_table, insert_columns, register_streams
from rundoctor.paths import remove_tree

__all__ = [
    "DUCKDB_MEMORY_LIMIT",
    "DUCKDB_TEMP_LIMIT",
    "HEARTBEAT_SQL",
    "MEMORY_BUDGET_BYTES",
    "TABLE_NAMES",
    "Tables",
    "heartbeat_sql",
    "new_connection",
]

#: The memory a diagnosis of one run may take, the whole process included.
MEMORY_BUDGET_BYTES = 1 << 30
#: DuckDB's share of it (``memory_limit``); the rest is Python, Arrow and the interpreter.
DUCKDB_MEMORY_LIMIT = "256MiB"
#: The most DuckDB may spill to its private temporary directory before it gives up.
DUCKDB_TEMP_LIMIT = "4GiB"

TABLE_NAMES = (
    "events",
    "attempts",
    "files",
    "runs",
    "torn",
    "unreadable",
    "tickets",
    "ticket_deps",
    "ticket_events",
)


#: The ``branch_event`` of the keepalive the 2026-02-10/11 builds sent per running branch as a
#: ``branch_liveness`` event (a ticker, like today's ``branch_heartbeat``).
BRANCH_KEEPALIVE = "branch_active"


def heartbeat_sql(column: str = "event") -> str:
    """SQL predicate: FINDINGS.md's definition of a heartbeat event, over ``column`` (and the
    ``branch_event`` column beside it: same table prefix).

    ``stage_heartbeat``, ``branch_heartbeat``, ``branch_stale_warning`` and any
    ``*_heartbeat``: the first two are of the last kind, and ``ends_with`` is the same test as
    ``LIKE '%\\_heartbeat'`` at less than half the cost (it runs on every row, many times).
    Also the keepalives of the builds of 2026-02-10/11 (format doc §2.6, §8): they forwarded
    every branch event to the parent as ``branch_liveness`` with its name in
    ``branch_event``, and sent one with :data:`BRANCH_KEEPALIVE` on a ticker while the branch
    ran (their ``emitBranchLiveness("branch_active")``); such a keepalive, or a forwarded
    heartbeat, is a heartbeat like the ``branch_heartbeat`` that replaced it.

    >>> heartbeat_sql("e.event")  # doctest: +NORMALIZE_WHITESPACE
    "(e.event = 'branch_stale_warning' OR ends_with(e.event, '_heartbeat')
      OR (e.event IN ('branch_liveness', 'branch_progress') AND (e.branch_event IN
      ('branch_active', 'branch_stale_warning') OR ends_with(e.branch_event, '_heartbeat'))))"
    """
    table = column[: -len("event")] if column.endswith("event") else ""
    forwarded = f"{table}branch_event"
    return (
        f"({column} = 'branch_stale_warning' OR ends_with({column}, '_heartbeat') "
        f"OR ({column} IN ('branch_liveness', 'branch_progress') "
        f"AND ({forwarded} IN ('{BRANCH_KEEPALIVE}', "
        f"'branch_stale_warning') OR ends_with({forwarded}, '_heartbeat'))))"
    )


#: :func:`heartbeat_sql` over the ``event`` column.
HEARTBEAT_SQL = heartbeat_sql()

# Keyed on the integer stream_id of events_base (cheaper to partition and sort than names);
# run_id and scope are joined onto the attempt rows, which are few.
_ATTEMPTS_SQL = """
WITH marks AS (
    SELECT stream_id, node_id, attempt, event, ts, rowid AS seq, status, failure_reason,
           failure_class, epoch,
           -- a running sum, not count(*) FILTER: DuckDB evaluates a filtered window
           -- aggregate row by row (~70x slower; minutes on a stream repeating one node)
           sum(CASE WHEN event = 'stage_attempt_start' THEN 1 ELSE 0 END) OVER (
               PARTITION BY stream_id, node_id ORDER BY rowid ROWS UNBOUNDED PRECEDING
           )::BIGINT AS start_no
    FROM events_base
    WHERE event IN ('stage_attempt_start', 'stage_attempt_end', 'output_contract_violated')
      AND node_id IS NOT NULL
),
ends AS (
    SELECT stream_id, node_id, start_no,
           min(seq) AS end_seq, arg_min(ts, seq) AS end_ts, arg_min(status, seq) AS status,
           arg_min(failure_reason, seq) AS failure_reason,
           arg_min(failure_class, seq) AS failure_class
    FROM marks WHERE event = 'stage_attempt_end' AND start_no > 0
    GROUP BY ALL
),
-- An attempt that ended success-like without the node's declared outputs: Kilroy writes
-- output_contract_violated right after its stage_attempt_end and the outcome is fail.
violated AS (
    SELECT stream_id, node_id, start_no, arg_min(failure_reason, seq) AS failure_reason
    FROM marks WHERE event = 'output_contract_violated' AND start_no > 0
    GROUP BY ALL
)
SELECT st.run_id, st.scope, s.node_id, s.attempt, s.start_no, s.seq AS start_seq,
       s.ts AS start_ts, e.end_seq, e.end_ts,
       (epoch_ns(e.end_ts) - epoch_ns(s.ts)) / 1e9 AS duration_s,
       CASE WHEN v.start_no IS NOT NULL AND e.end_seq IS NOT NULL THEN 'fail' ELSE e.status END
           AS status,
       CASE WHEN v.start_no IS NOT NULL AND e.end_seq IS NOT NULL
            THEN coalesce(v.failure_reason, e.failure_reason) ELSE e.failure_reason END
           AS failure_reason,
       e.failure_class, s.epoch, s.stream_id, e.status AS end_status
FROM marks s
JOIN streams st ON st.stream_id = s.stream_id
LEFT JOIN ends e
  ON e.stream_id = s.stream_id AND e.node_id = s.node_id AND e.start_no = s.start_no
LEFT JOIN violated v
  ON v.stream_id = s.stream_id AND v.node_id = s.node_id AND v.start_no = s.start_no
WHERE s.event = 'stage_attempt_start'
"""
_ATTEMPTS_VIEW = "CREATE OR REPLACE VIEW attempts AS " + _ATTEMPTS_SQL


_SCRATCH_PREFIX = "rundoctor-duckdb-"
#: Held (``flock``) by the process that owns a spill directory, for as long as it lives.
_OWNER_LOCK = "owner.lock"


def _remove_orphaned_scratch() -> None:
    """Remove the spill directories of doctor processes that died without removing theirs
    (killed: SIGKILL, or SIGTERM, which runs no exit handler): those whose owner lock is free.
    """
    base = tempfile.gettempdir()
    try:
        names = [n for n in os.listdir(base) if n.startswith(_SCRATCH_PREFIX)]
    except OSError:
        return
    for name in names:
        path = os.path.join(base, name)
        try:
            fd = os.open(os.path.join(path, _OWNER_LOCK), os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue  # no owner lock (yet, or an older doctor's): not ours to judge
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # its owner is alive
        else:
            remove_tree(path, ignore_errors=True)
        finally:
            os.close(fd)


def _own_scratch() -> tuple[str, int]:
    """A new private spill directory and the descriptor holding its owner lock."""
    scratch = tempfile.mkdtemp(prefix=_SCRATCH_PREFIX)
    lock = os.path.join(scratch, _OWNER_LOCK)
    fd = os.open(lock + ".new", os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.rename(lock + ".new", lock)  # seen by others only once held
    return scratch, fd


def _drop_scratch(scratch: str, fd: int) -> None:
    remove_tree(scratch, ignore_errors=True)
    os.close(fd)


def new_connection(
    threads: int | None = None,
    *,
    memory_limit: str = DUCKDB_MEMORY_LIMIT,
    spill_limit: str = DUCKDB_TEMP_LIMIT,
    relations: bool = True,
    attempts_view: bool = True,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the canonical (empty) tables, its memory and spill
    bounded by ``memory_limit`` and ``spill_limit`` (DuckDB sizes: ``256MiB``, ``4GiB``).

    ``relations=False`` is for a connection used through ``execute`` only (a scan's batch):
    DuckDB's Python relation layer (``con.sql``) is then not imported for it
    (:mod:`doctor._engine`). ``attempts_view=False`` leaves ``attempts`` out, for a caller
    that calls :meth:`Tables.freeze` before any query (:func:`doctor._ingest.load_runs`): the
    view would only be dropped unread."""
    from doctor._engine import engine

    db = engine(relations=relations)
    # DuckDB spills to "./.tmp" by default: a private directory instead, removed with the
    # connection (or at exit), and both memory and spill bounded.
    _remove_orphaned_scratch()
    scratch, lock = _own_scratch()
    try:
        # Set as the database starts: cheaper than a statement each, and with ``threads`` its
        # thread pool is never started larger.
        con: duckdb.DuckDBPyConnection = db.connect(
            ":memory:", config=_settings(scratch, threads, memory_limit, spill_limit)
        )
    except BaseException:
        _drop_scratch(scratch, lock)
        raise
    weakref.finalize(con, _drop_scratch, scratch, lock)  # also runs at interpreter exit
    interruptible(con)  # Ctrl-C stops its statements at once (doctor._interrupts)
    _configure(con, db)
    _create_tables(con, attempts_view=attempts_view)
    return con


def _settings(
    scratch: str, threads: int | None, memory_limit: str, spill_limit: str
) -> dict[str, str | int | bool]:
    """Bounded memory and spill (under ``scratch``), insertion order kept, and ``threads``
    when given."""
    settings: dict[str, str | int | bool] = {
        "memory_limit": memory_limit,
        "temp_directory": str(Path(scratch) / "spill"),
        "max_temp_directory_size": spill_limit,
        "preserve_insertion_order": True,
    }
    if threads:
        settings["threads"] = int(threads)
    return settings


def _configure(con: duckdb.DuckDBPyConnection, db: ModuleType) -> None:
    """UTC and no progress bar: session settings, which a database's ``config`` refuses."""
    # Offsets in timestamps are converted through TIMESTAMPTZ, whose cast to TIMESTAMP_NS
    # uses the session time zone: pin it, or the result would depend on the host's zone.
    con.execute("SET TimeZone = 'UTC'")
    # DuckDB draws a progress bar on stdout for queries over 2 s (a scan's batch on a busy
    # machine): it would corrupt `--json` output. In Jupyter (no stdout to corrupt) DuckDB
    # refuses to change the setting without ipywidgets: it then stays as it is.
    with contextlib.suppress(db.InvalidInputException):
        con.execute("SET enable_progress_bar = false")


#: The canonical tables but events' (doctor._ndjson.create_events_table) and attempts: each
#: one's columns and types, in order. :meth:`Tables.add_rows` types its parameters from here
#: instead of asking DuckDB (``DESCRIBE``, a statement per table filled).
_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "files": (
        ("run_id", "VARCHAR"),
        ("scope", "VARCHAR"),
        ("rel", "VARCHAR"),
        ("kind", "VARCHAR"),
        ("size", "BIGINT"),
        ("mtime_ns", "BIGINT"),
        ("ok", "BOOLEAN"),
        ("detail", "VARCHAR"),
    ),
    "unreadable": (
        ("run_id", "VARCHAR"),
        ("scope", "VARCHAR"),
        ("rel", "VARCHAR"),
        ("kind", "VARCHAR"),
        ("detail", "VARCHAR"),
    ),
    "runs": (
        ("run_id", "VARCHAR"),
        ("path", "VARCHAR"),
        ("layout", "VARCHAR"),
        ("owner_pid", "BIGINT"),
    ),
    # Runs a scan's fleet phase sees through their activity, not their events
    # (doctor._scan_fleet): their life and thinned progress points, for fleet-wide detectors.
    "cached_lives": (
        ("run_id", "VARCHAR"),
        ("start_ns", "BIGINT"),
        ("end_ns", "BIGINT"),
        ("finished", "BOOLEAN"),
    ),
    "cached_progress": (("run_id", "VARCHAR"), ("t", "BIGINT")),
    # Each final.json's recorded ``timestamp`` (epoch ns), when it has a readable one: a run
    # ended then even when no terminal event says so (doctor._attempts._WENT_ON_SQL).
    "finals": (("run_id", "VARCHAR"), ("scope", "VARCHAR"), ("ts_ns", "BIGINT")),
    "torn": (
        ("run_id", "VARCHAR"),
        ("scope", "VARCHAR"),
        ("rel", "VARCHAR"),
        ("line", "BIGINT"),
        ("byte_offset", "BIGINT"),
        ("detail", "VARCHAR"),
    ),
    # A queue's tables (the executor's schema; times are epoch seconds). Empty unless a
    # scan reads a queue (doctor._queue_ingest.load_queue), so queue detectors find nothing.
    "tickets": (
        ("id", "VARCHAR"),
        ("title", "VARCHAR"),
        ("graph_path", "VARCHAR"),
        ("status", "VARCHAR"),
        ("priority", "BIGINT"),
        ("error_attempts", "BIGINT"),
        ("crash_recoveries", "BIGINT"),
        ("max_error_attempts", "BIGINT"),
        ("lease_owner", "VARCHAR"),
        ("lease_epoch", "BIGINT"),
        ("lease_expires_at", "DOUBLE"),
        ("last_heartbeat_at", "DOUBLE"),
        ("claimed_at", "DOUBLE"),
        ("session_name", "VARCHAR"),
        ("pid", "BIGINT"),
        ("pgid", "BIGINT"),
        ("proc_start_time", "BIGINT"),
        ("host", "VARCHAR"),
        ("run_id", "VARCHAR"),
        ("run_path", "VARCHAR"),
        ("reason", "VARCHAR"),
        ("created_at", "DOUBLE"),
        ("updated_at", "DOUBLE"),
        ("finished_at", "DOUBLE"),
    ),
    "ticket_deps": (("ticket_id", "VARCHAR"), ("depends_on", "VARCHAR")),
    "ticket_events": (
        ("id", "BIGINT"),
        ("ticket_id", "VARCHAR"),
        ("at", "DOUBLE"),
        ("event", "VARCHAR"),
        ("worker", "VARCHAR"),
        ("epoch", "BIGINT"),
        ("detail", "VARCHAR"),
    ),
}

# The other tables, one script: one statement each would pay DuckDB's per-statement cost a
# dozen times per connection.
_TABLES_SQL = ";".join(
    f"CREATE TABLE {table} (" + ", ".join(f'"{c}" {t}' for c, t in cols) + ")"
    for table, cols in _COLUMNS.items()
)


def _create_tables(con: duckdb.DuckDBPyConnection, *, attempts_view: bool) -> None:
    """The canonical tables, empty: events and attempts (a view, unless the caller makes it
    a table once the events are in: :meth:`Tables.freeze`), files, runs, torn lines, what a
    scan's fleet phase reads of cached runs, and a queue's tables."""
    create_events_table(con)
    con.execute(f"{_ATTEMPTS_VIEW};{_TABLES_SQL}" if attempts_view else _TABLES_SQL)


@dataclass
class Tables:
    """Canonical tables plus the parsed documents of each run."""

    con: duckdb.DuckDBPyConnection
    documents: dict[str, RunDocuments] = field(default_factory=dict)
    torn_lines: list[TornLine] = field(default_factory=list)
    stream_states: dict[tuple[str, str], StreamState] = field(default_factory=dict)
    #: Whether the connection has the ``attempts`` view (:func:`new_connection`).
    attempts_view: bool = True
    #: Every stream registered through :meth:`register_streams`, ``(stream_id, run_id,
    #: scope)`` in id order: what the cache writes each run's events by.
    streams: list[tuple[int, str, str]] = field(default_factory=list)
    #: Every event kind in ``events`` (any run, any scope), once
    #: :func:`doctor._facts.compute_facts` has counted them (None before): what lets a
    #: detector or a fact query skip a batch without the events it looks at
    #: (:class:`doctor._detectors.Needs`).
    event_kinds: frozenset[str] | None = None

    @property
    def run_ids(self) -> list[str]:
        return list(self.documents)

    def sql(self, query: str, **params: Any) -> list[tuple[Any, ...]]:
        """Rows of ``query`` with ``$name`` parameters.

        Run with ``execute``: ``sql`` would build a relation, binding the query once more.
        """
        return self.con.execute(query, params or None).fetchall()

    def frame(self, query: str, **params: Any) -> pl.DataFrame:
        """``query`` as a Polars frame."""
        import duckdb  # noqa: F401  (the relation API: a scan's connection may not have it yet)

        frame: pl.DataFrame = self.con.sql(query, params=params or None).pl()
        return frame

    def arrow(self, table: str, run_id: str | None = None) -> pa.Table:
        """One canonical table as Arrow, optionally for one run only."""
        if table not in TABLE_NAMES:
            raise KeyError(f"unknown table {table!r}; expected one of {', '.join(TABLE_NAMES)}")
        where = " WHERE run_id = $run_id" if run_id is not None else ""
        if run_id is not None and table.startswith("ticket"):
            raise KeyError(f"{table} has no run_id column; export it without run_id")
        order = " ORDER BY run_id, scope, seq" if table == "events" else ""
        params: Mapping[str, Any] | None = {"run_id": run_id} if run_id is not None else None
        import duckdb  # noqa: F401  (the relation API: a scan's connection may not have it yet)

        return self.con.sql(f"SELECT * FROM {table}{where}{order}", params=params).to_arrow_table()

    def register_streams(self, streams: Sequence[tuple[str, str, Path]]) -> list[int]:
        """:func:`doctor._ndjson.register_streams`, numbered on from the last one registered
        here (DuckDB is not asked for the next free id)."""
        first = self.streams[-1][0] + 1 if self.streams else 0
        ids = register_streams(self.con, streams, first)
        self.streams.extend((i, s[0], s[1]) for i, s in zip(ids, streams, strict=True))
        return ids

    def add_rows(self, table: str, rows: Sequence[tuple[Any, ...]]) -> None:
        """Append rows (tuples in column order) as typed list parameters, one per column:
        no Arrow to import, and far faster than executemany."""
        if not rows:
            return
        # The columns as created (no DESCRIBE round trip); any other table as DuckDB has it.
        columns = _COLUMNS.get(table) or tuple(
            (str(r[0]), str(r[1])) for r in self.con.execute(f"DESCRIBE {table}").fetchall()
        )
        insert_columns(
            self.con,
            table,
            {name: (kind, [row[i] for row in rows]) for i, (name, kind) in enumerate(columns)},
        )

    def freeze(self) -> None:
        """Materialize ``attempts`` once ingestion is complete (replacing its view, if the
        connection has one).

        Facts and detectors query attempts many times; computing its window once is cheaper.
        So with ``progress_events``, the rows of ``events`` that are not heartbeats (the same
        columns, ``seq`` included): heartbeats are most of a stream's lines, and most queries
        look only at the other events, so they read this table instead of skipping them.
        Two statements on a connection made without the view (:func:`new_connection`).
        """
        self.con.execute(
            ("DROP VIEW IF EXISTS attempts;" if self.attempts_view else "")
            + f"CREATE TABLE attempts AS {_ATTEMPTS_SQL};"
            "CREATE OR REPLACE TABLE progress_events AS "
            f"SELECT * FROM events WHERE NOT {HEARTBEAT_SQL}"
        )
