"""The queue's SQL, both dialects, in one place.

Every statement the queue runs is written once here with ``?`` placeholders; :class:`Dialect`
turns it into what the driver wants (``%s`` for psycopg) and fills the few dialect-specific
fragments: column types, the auto-increment key, row locks and triggers.

Row locks (``{lock_update}``, ``{lock_share}``, ``{claim_lock}``) are empty for SQLite, where
``BEGIN IMMEDIATE`` already serializes every writer, and real ``FOR UPDATE`` / ``FOR SHARE`` /
``FOR UPDATE SKIP LOCKED`` clauses for PostgreSQL, where transactions run concurrently under
READ COMMITTED and the locks are what make the cascades race-free (see docs/queue.md).

:class:`Tx` runs them on a backend's cursor inside one transaction; :func:`install` creates
the tables on first use and refuses a database of another :data:`SCHEMA_VERSION`.

Text never reaches a database with a NUL character in it: PostgreSQL refuses one in a text
column, SQLite keeps it, and a ticket must read the same on both. :class:`Tx` writes the four
characters ``\\x00`` in its place in every parameter (a stage's stderr, quoted in a failure
reason, may hold one), and ``\\xff`` for a byte that is not UTF-8, which neither driver can
encode (:func:`storable`); what a person gives (a title, a graph's path, a runs root) is
refused before, by :func:`executor._queue_lifecycle.check_text`.

``ticket_events`` is append-only: this module only ever INSERTs into it and SELECTs from it,
and the triggers below make the database itself refuse anything else. Rows of ``tickets``
in a terminal status are frozen by a trigger the same way.

>>> POSTGRES.sql("SELECT id FROM tickets WHERE id = ?{lock_update}")
'SELECT id FROM tickets WHERE id = %s FOR UPDATE'
>>> SQLITE.sql("SELECT id FROM tickets WHERE id = ?{lock_update}")
'SELECT id FROM tickets WHERE id = ?'
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from executor._errors import QueueError

__all__ = [
    "POSTGRES",
    "SCHEMA_VERSION",
    "SQLITE",
    "TICKET_COLUMNS",
    "Dialect",
    "Tx",
    "install",
    "select_tickets",
    "storable",
]

#: Bumped whenever a column or table changes; a database of another version is refused.
SCHEMA_VERSION = 1

#: The columns of ``tickets`` in the order of :class:`executor._queue.Ticket`'s fields.
TICKET_COLUMNS = (
    "id",
    "title",
    "graph_path",
    "status",
    "priority",
    "error_attempts",
    "crash_recoveries",
    "max_error_attempts",
    "lease_owner",
    "lease_epoch",
    "lease_expires_at",
    "last_heartbeat_at",
    "claimed_at",
    "session_name",
    "pid",
    "pgid",
    "proc_start_time",
    "host",
    "run_id",
    "run_path",
    "reason",
    "created_at",
    "updated_at",
    "finished_at",
)

_TICKETS = """
CREATE TABLE IF NOT EXISTS tickets (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    graph_path TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('todo', 'claimed', 'running', 'done', 'failed',
                                           'blocked', 'canceled', 'quarantined')),
    priority INTEGER NOT NULL DEFAULT 0,
    error_attempts INTEGER NOT NULL DEFAULT 0,
    crash_recoveries INTEGER NOT NULL DEFAULT 0,
    max_error_attempts INTEGER NOT NULL DEFAULT 1,
    lease_owner TEXT,
    lease_epoch INTEGER NOT NULL DEFAULT 0,
    lease_expires_at {real},
    last_heartbeat_at {real},
    claimed_at {real},
    session_name TEXT,
    pid INTEGER,
    pgid INTEGER,
    proc_start_time {bigint},
    host TEXT,
    run_id TEXT,
    run_path TEXT,
    reason TEXT,
    created_at {real} NOT NULL,
    updated_at {real} NOT NULL,
    finished_at {real}
)"""

_DDL_COMMON = (
    _TICKETS,
    """CREATE TABLE IF NOT EXISTS ticket_deps (
    ticket_id TEXT NOT NULL,
    depends_on TEXT NOT NULL,
    PRIMARY KEY (ticket_id, depends_on)
)""",
    """CREATE TABLE IF NOT EXISTS ticket_events (
    id {serial},
    ticket_id TEXT NOT NULL,
    at {real} NOT NULL,
    event TEXT NOT NULL,
    worker TEXT,
    epoch INTEGER,
    detail TEXT
)""",
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
    # The claim scans todo rows in exactly this order.
    "CREATE INDEX IF NOT EXISTS tickets_claim_order"
    " ON tickets (status, priority DESC, created_at, id)",
    # Cascades walk the dependency edges backwards (who depends on the ticket that just ended).
    "CREATE INDEX IF NOT EXISTS ticket_deps_depends_on ON ticket_deps (depends_on)",
    "CREATE INDEX IF NOT EXISTS ticket_events_by_ticket ON ticket_events (ticket_id, id)",
)

_TERMINAL_SQL = "('done', 'failed', 'canceled', 'quarantined')"

_SQLITE_TRIGGERS = (
    f"""CREATE TRIGGER IF NOT EXISTS tickets_terminal_frozen BEFORE UPDATE ON tickets
    WHEN OLD.status IN {_TERMINAL_SQL}
    BEGIN SELECT RAISE(ABORT, 'tickets: a terminal row is never modified'); END""",
    """CREATE TRIGGER IF NOT EXISTS ticket_events_no_update BEFORE UPDATE ON ticket_events
    BEGIN SELECT RAISE(ABORT, 'ticket_events is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS ticket_events_no_delete BEFORE DELETE ON ticket_events
    BEGIN SELECT RAISE(ABORT, 'ticket_events is append-only'); END""",
)

_POSTGRES_TRIGGERS = (
    f"""CREATE OR REPLACE FUNCTION tickets_terminal_frozen() RETURNS trigger AS $$
BEGIN
    IF OLD.status IN {_TERMINAL_SQL} THEN
        RAISE EXCEPTION 'tickets: a terminal row is never modified (ticket %)', OLD.id;
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql""",
    """CREATE OR REPLACE FUNCTION ticket_events_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'ticket_events is append-only';
END $$ LANGUAGE plpgsql""",
    """CREATE OR REPLACE TRIGGER tickets_terminal_frozen BEFORE UPDATE ON tickets
    FOR EACH ROW EXECUTE FUNCTION tickets_terminal_frozen()""",
    """CREATE OR REPLACE TRIGGER ticket_events_append_only BEFORE UPDATE OR DELETE
    ON ticket_events FOR EACH ROW EXECUTE FUNCTION ticket_events_append_only()""",
)


@dataclass(frozen=True)
class Dialect:
    """What differs between SQLite and PostgreSQL, and nothing else."""

    name: str
    placeholder: str
    real: str
    bigint: str
    serial: str
    lock_update: str
    lock_share: str
    claim_lock: str
    triggers: tuple[str, ...]
    has_schema: str
    #: Lets one transaction sit idle while its caller consumes a stream ("": no such limit).
    allow_idle: str = ""

    def sql(self, statement: str) -> str:
        """Fill the dialect fragments of ``statement`` and convert its ``?`` placeholders."""
        text = statement.format(
            lock_update=self.lock_update,
            lock_share=self.lock_share,
            claim_lock=self.claim_lock,
            real=self.real,
            bigint=self.bigint,
            serial=self.serial,
        )
        return text.replace("?", self.placeholder)

    def ddl(self) -> list[str]:
        """Every statement that creates the schema, idempotent (``IF NOT EXISTS``)."""
        # Trigger bodies are kept verbatim: they are run without parameters, and PL/pgSQL's
        # own % placeholders must not meet psycopg's.
        return [self.sql(s) for s in _DDL_COMMON] + list(self.triggers)


SQLITE = Dialect(
    name="sqlite",
    placeholder="?",
    real="REAL",
    bigint="INTEGER",
    serial="INTEGER PRIMARY KEY AUTOINCREMENT",
    lock_update="",
    lock_share="",
    claim_lock="",
    triggers=_SQLITE_TRIGGERS,
    has_schema="SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'",
)

POSTGRES = Dialect(
    name="postgres",
    placeholder="%s",
    real="DOUBLE PRECISION",
    # Clock ticks since boot overflow a 32-bit INTEGER after ~250 days of uptime at 100 Hz.
    bigint="BIGINT",
    serial="BIGSERIAL PRIMARY KEY",
    lock_update=" FOR UPDATE",
    lock_share=" FOR SHARE",
    # A claimer skips rows another claimer holds instead of queueing behind it.
    claim_lock=" FOR UPDATE OF t SKIP LOCKED",
    triggers=_POSTGRES_TRIGGERS,
    # to_regclass follows search_path, so each schema (one per test) gets its own tables.
    has_schema="SELECT 1 WHERE to_regclass('schema_version') IS NOT NULL",
    # The queue's connections bound idle transactions (executor._postgres); a stream's reader
    # may be slow (a pipe to a pager), and the rows it has not read yet are no lock.
    allow_idle="SET LOCAL idle_in_transaction_session_timeout = 0",
)


class Tx:
    """A cursor inside one open transaction, speaking one dialect (built by the backends)."""

    def __init__(self, cursor: Any, dialect: Dialect) -> None:
        self._cursor = cursor
        self._dialect = dialect

    def rows(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run ``statement``; return its rows (none for statements without a result)."""
        return self.raw(_render(self._dialect, statement), storable(params))

    def raw(self, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run ``text`` as it is (DDL, trigger bodies); no parameters means no placeholder
        parsing, so PL/pgSQL's own ``%`` survives psycopg."""
        if params:
            self._cursor.execute(text, tuple(params))
        else:
            self._cursor.execute(text)
        return list(self._cursor.fetchall()) if self._cursor.description else []

    def stream(self, statement: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        """Run ``statement``; yield its rows as the database hands them over, a batch at a
        time, so a result of any size is never held whole (psycopg's ``stream``: libpq's
        chunked rows instead of the whole result in client memory; sqlite3: ``fetchmany``).
        The transaction may sit idle for as long as the caller takes to read them."""
        if self._dialect.allow_idle:
            self._cursor.execute(self._dialect.allow_idle)
        text = _render(self._dialect, statement)
        params = storable(params)
        stream = getattr(self._cursor, "stream", None)
        if stream is not None:
            yield from stream(text, params, size=_BATCH)
            return
        self._cursor.execute(text, params)
        while rows := self._cursor.fetchmany(_BATCH):
            yield from rows

    def one(self, statement: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        """The first row of ``statement``, or None."""
        found = self.rows(statement, params)
        return found[0] if found else None

    def count(self, statement: str, params: Sequence[Any] = ()) -> int:
        """The single integer a ``SELECT COUNT(*)`` returns."""
        row = self.one(statement, params)
        return int(row[0]) if row else 0


#: What no queue stores as text: a NUL (PostgreSQL refuses it) and a lone surrogate (a byte
#: that was not UTF-8, as ``os.fsdecode`` keeps it; neither driver can encode it).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match[0])
    if 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's surrogateescape: the byte it stands for
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def storable(params: Sequence[Any]) -> tuple[Any, ...]:
    """``params`` with what no queue stores as text written as the terminal shows it: a NUL
    character as the four characters ``\\x00`` (PostgreSQL refuses one, SQLite would keep
    it), a byte that is not UTF-8 as ``\\xff`` (neither driver can encode one).

    >>> storable(("exit status 1; stderr tail: a\\x00b", 3))
    ('exit status 1; stderr tail: a\\\\x00b', 3)
    >>> storable(("bad " + b"\\xff".decode("utf-8", "surrogateescape"),))
    ('bad \\\\xff',)
    """
    return tuple(
        _UNSTORABLE.sub(_escape, p)
        if isinstance(p, str) and ("\x00" in p or not p.isascii())
        else p
        for p in params
    )


@functools.cache
def _render(dialect: Dialect, statement: str) -> str:
    return dialect.sql(statement)


_COLS = ", ".join(TICKET_COLUMNS)
#: Rows fetched at a time by :meth:`Tx.stream`.
_BATCH = 1000
_LEASED = "status IN ('claimed', 'running')"

# -- statements shared by both dialects (``?`` placeholders, ``{...}`` dialect fragments) -----

SELECT_TICKET = f"SELECT {_COLS} FROM tickets WHERE id = ?"
LOCK_FULL_TICKET = SELECT_TICKET + "{lock_update}"
COUNT_BY_STATUS = "SELECT status, COUNT(*) FROM tickets GROUP BY status"
SELECT_IDS = "SELECT id FROM tickets"
SELECT_VERSION = "SELECT version FROM schema_version"
INSERT_VERSION = "INSERT INTO schema_version (version) VALUES (?)"
LOCK_DEPENDENCY = "SELECT status FROM tickets WHERE id = ?{lock_share}"
# Two processes may draw the same id in the same millisecond (18 random bits); the loser's
# insert returns no row and it draws again, instead of failing on the primary key.
INSERT_TICKET = (
    "INSERT INTO tickets (id, title, graph_path, status, priority, max_error_attempts, reason,"
    " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    f" ON CONFLICT (id) DO NOTHING RETURNING {_COLS}"
)
INSERT_DEP = "INSERT INTO ticket_deps (ticket_id, depends_on) VALUES (?, ?)"
INSERT_EVENT = (
    "INSERT INTO ticket_events (ticket_id, at, event, worker, epoch, detail)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
_EVENTS = "SELECT id, ticket_id, at, event, worker, epoch, detail FROM ticket_events"
SELECT_ALL_EVENTS = _EVENTS + " ORDER BY id"
SELECT_TICKET_EVENTS = _EVENTS + " WHERE ticket_id = ? ORDER BY id"

# The claim candidate: the best todo row all of whose dependencies are done. ``todo`` already
# implies that (blocked rows wait), the NOT EXISTS keeps it true even for hand-edited rows.
CLAIM_CANDIDATE = (
    "SELECT t.id FROM tickets t WHERE t.status = 'todo' AND NOT EXISTS ("
    " SELECT 1 FROM ticket_deps d JOIN tickets p ON p.id = d.depends_on"
    " WHERE d.ticket_id = t.id AND p.status <> 'done')"
    " ORDER BY t.priority DESC, t.created_at, t.id LIMIT 1{claim_lock}"
)
# The same, restricted to one ticket (``doctor run --db`` runs exactly the ticket it queued).
CLAIM_CANDIDATE_ONE = CLAIM_CANDIDATE.replace(
    "WHERE t.status = 'todo' AND", "WHERE t.status = 'todo' AND t.id = ? AND"
)
CLAIM = (
    "UPDATE tickets SET status = 'claimed', lease_epoch = lease_epoch + 1, lease_owner = ?,"
    " lease_expires_at = ?, claimed_at = ?, last_heartbeat_at = ?, session_name = ?, pid = ?,"
    " pgid = ?, proc_start_time = ?, host = ?, run_id = NULL, run_path = NULL, updated_at = ?"
    f" WHERE id = ? AND status = 'todo' RETURNING {_COLS}"
)

# Every worker write: the row must still carry the worker's epoch and be leased.
LOCK_LEASED = (
    f"SELECT {_COLS} FROM tickets WHERE id = ? AND lease_epoch = ? AND {_LEASED}{{lock_update}}"
)
FENCE = f" WHERE id = ? AND lease_epoch = ? AND {_LEASED} RETURNING {_COLS}"
START = (
    "UPDATE tickets SET status = 'running', run_id = ?, run_path = ?, session_name = ?, pid = ?,"
    " pgid = ?, proc_start_time = ?, host = ?, updated_at = ?" + FENCE
)
# A start that also extends the lease, as a heartbeat does: the worker is alive now.
START_EXTENDING = (
    "UPDATE tickets SET status = 'running', run_id = ?, run_path = ?, session_name = ?, pid = ?,"
    " pgid = ?, proc_start_time = ?, host = ?, updated_at = ?, lease_expires_at = ?,"
    " last_heartbeat_at = ?" + FENCE
)
HEARTBEAT = "UPDATE tickets SET lease_expires_at = ?, last_heartbeat_at = ?, updated_at = ?" + FENCE
# Ending a lease: terminal rows keep owner, session and run as the record of who did the work;
# rows going back to todo forget them (the event detail keeps them) so a todo row never names
# a process that might be mistaken for a live one.
FINISH = (
    "UPDATE tickets SET status = ?, error_attempts = ?, reason = ?, lease_expires_at = NULL,"
    " finished_at = ?, updated_at = ?" + FENCE
)
REQUEUE = (
    "UPDATE tickets SET status = 'todo', error_attempts = ?, reason = ?, lease_owner = NULL,"
    " lease_expires_at = NULL, last_heartbeat_at = NULL, claimed_at = NULL, session_name = NULL,"
    " pid = NULL, pgid = NULL, proc_start_time = NULL, host = NULL, run_id = NULL,"
    " run_path = NULL, updated_at = ?" + FENCE
)

# Reaper: compare-and-set on the epoch, never inside the claim grace period.
EXPIRED = (
    f"SELECT {_COLS} FROM tickets WHERE {_LEASED}"
    " AND COALESCE(lease_expires_at, last_heartbeat_at, claimed_at, updated_at) <= ?"
    " AND COALESCE(claimed_at, updated_at) <= ?"
    " ORDER BY COALESCE(lease_expires_at, last_heartbeat_at, claimed_at, updated_at), id"
)
RECLAIMS_SINCE = (
    "SELECT COUNT(*) FROM ticket_events WHERE ticket_id = ? AND event = 'reclaimed' AND at >= ?"
)
RECLAIM = (
    "UPDATE tickets SET status = ?, lease_epoch = lease_epoch + 1,"
    " crash_recoveries = crash_recoveries + 1, reason = ?, finished_at = ?, lease_owner = NULL,"
    " lease_expires_at = NULL, last_heartbeat_at = NULL, claimed_at = NULL, session_name = NULL,"
    " pid = NULL, pgid = NULL, proc_start_time = NULL, host = NULL, run_id = NULL,"
    " run_path = NULL, updated_at = ?"
    f" WHERE id = ? AND lease_epoch = ? AND {_LEASED} AND COALESCE(claimed_at, updated_at) <= ?"
    f" RETURNING {_COLS}"
)

# Cascades. Dependants are locked (PostgreSQL) before their dependencies are counted, so two
# dependencies finishing concurrently cannot both miss the moment the last one is done.
DEPENDANTS = "SELECT ticket_id FROM ticket_deps WHERE depends_on = ? ORDER BY ticket_id"
LOCK_TICKET = "SELECT status, reason FROM tickets WHERE id = ?{lock_update}"
UNFINISHED_DEPS = (
    "SELECT COUNT(*) FROM ticket_deps d JOIN tickets p ON p.id = d.depends_on"
    " WHERE d.ticket_id = ? AND p.status <> 'done'"
)
SET_STATUS = "UPDATE tickets SET status = ?, reason = ?, updated_at = ? WHERE id = ? AND status = ?"
CANCEL = (
    "UPDATE tickets SET status = 'canceled', reason = ?, lease_expires_at = NULL,"
    f" finished_at = ?, updated_at = ? WHERE id = ? AND status NOT IN {_TERMINAL_SQL}"
    f" RETURNING {_COLS}"
)


def select_tickets(statuses: int | None, order: Sequence[str] | None, *, limit: bool) -> str:
    """The tickets, of ``statuses`` placeholders' statuses (None: all), oldest first, or in
    the status ``order`` given (each status most recently changed first); ``limit`` adds a
    ``LIMIT ?`` placeholder.

    >>> select_tickets(2, None, limit=False).endswith("WHERE status IN (?, ?) ORDER BY created_at, id")
    True
    >>> select_tickets(None, ("failed", "done"), limit=True).split(" FROM tickets ")[1]
    "ORDER BY CASE status WHEN 'failed' THEN 0 WHEN 'done' THEN 1 ELSE 2 END, updated_at DESC, id LIMIT ?"
    """  # noqa: E501
    where = "" if statuses is None else f" WHERE status IN ({', '.join('?' * statuses)})"
    if statuses == 0:  # no status asked for: no row (IN () is not SQL)
        where = " WHERE 1 = 0"
    if order is None:
        by = "created_at, id"
    else:
        ranks = " ".join(f"WHEN '{s}' THEN {i}" for i, s in enumerate(order))
        by = f"CASE status {ranks} ELSE {len(order)} END, updated_at DESC, id"
    return f"SELECT {_COLS} FROM tickets{where} ORDER BY {by}" + (" LIMIT ?" if limit else "")


def install(tx: Tx, dialect: Dialect) -> None:
    """Create the tables on first use; refuse a database of another schema version."""
    if not tx.raw(dialect.has_schema):
        for statement in dialect.ddl():
            tx.raw(statement)
        tx.rows(INSERT_VERSION, (SCHEMA_VERSION,))
        return
    row = tx.one(SELECT_VERSION)
    if row is None or row[0] != SCHEMA_VERSION:
        found = "no version" if row is None else f"version {row[0]}"
        raise QueueError(
            f"the queue database has schema {found}; this executor needs version "
            f"{SCHEMA_VERSION} (use a fresh database or the matching executor)"
        )
