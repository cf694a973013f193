"""SQLite specifics: WAL, busy_timeout, one connection per queue, URL forms, error mapping."""

from __future__ import annotations

import doctest
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import executor
from executor import (
    QueueError,
    SessionInfo,
    UsageError,
    _errors,
    _postgres,
    _queue,
    _schema,
    _sqlite,
    open_queue,
)
from executor._sqlite import SqliteQueue

GRAPH = "/pipelines/build.dot"
FORMS = "a SQLite file path, sqlite:///ABS/PATH, or postgresql://user@host:port/db"


@contextmanager
def write_lock_held(path: Path) -> Iterator[sqlite3.Connection]:
    """Another process's view: a connection holding the database's write lock."""
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield other
    finally:
        if other.in_transaction:
            other.execute("ROLLBACK")
        other.close()


@pytest.mark.parametrize("module", [_errors, _queue, _schema, _sqlite, _postgres])
def test_the_docstring_examples_run(module: object) -> None:
    # pytest collects doctests only under tests/; the queue's examples are run from here.
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert result.attempted > 0
    assert result.failed == 0


def test_the_file_runs_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    open_queue(str(path)).close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()


def test_a_writer_waits_for_another_process_instead_of_failing(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    with open_queue(str(path)) as queue, write_lock_held(path) as other:
        threading.Timer(0.3, other.execute, args=("COMMIT",)).start()
        t0 = time.monotonic()
        queue.enqueue("x", GRAPH)
        assert time.monotonic() - t0 >= 0.25
        assert len(queue.tickets()) == 1


def test_a_lock_held_past_busy_timeout_is_a_queue_error_from_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    with SqliteQueue(str(path), busy_timeout_ms=100) as queue:
        with write_lock_held(path), pytest.raises(QueueError, match="busy_timeout=100 ms") as err:
            queue.enqueue("x", GRAPH)
        assert isinstance(err.value.__cause__, sqlite3.OperationalError)
        assert queue.enqueue("x", GRAPH).status == "todo"  # the queue is usable afterwards


def test_readers_do_not_wait_for_the_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    with SqliteQueue(str(path), busy_timeout_ms=100) as queue:
        t = queue.enqueue("x", GRAPH)
        with write_lock_held(path):
            assert queue.get(t.id).status == "todo"
            assert [e.event for e in queue.events(t.id)] == ["created"]


def test_each_queue_object_has_its_own_connection_to_one_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    with open_queue(url) as one, open_queue(url) as two:
        t = one.enqueue("x", GRAPH)
        lease = two.claim("w2", lease_ttl_s=30, session=SessionInfo("s", 1, 1, None, "h"))
        assert lease is not None and lease.ticket_id == t.id
        assert one.get(t.id).lease_owner == "w2"


def test_an_in_memory_queue_is_private_to_its_object() -> None:
    with open_queue(":memory:") as one, open_queue(":memory:") as two:
        one.enqueue("x", GRAPH)
        assert two.tickets() == []


def test_a_relative_path_and_a_path_object_are_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with open_queue("relative.db") as queue:
        queue.enqueue("x", GRAPH)
    with open_queue(tmp_path / "relative.db") as queue:
        assert len(queue.tickets()) == 1


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://db/queue", f"cannot open queue 'mysql://db/queue': expected {FORMS}"),
        ("", f"cannot open queue '': expected {FORMS}"),
        ("sqlite://queue.db", "needs an absolute path"),
        ("/no/such/dir/q.db", "directory '/no/such/dir' does not exist"),
    ],
)
def test_a_bad_url_is_a_usage_error_naming_the_accepted_forms(url: str, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("?", r"\?")):
        open_queue(url)


def test_a_directory_is_not_a_queue(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="it is a directory"):
        open_queue(str(tmp_path))


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_fifo_or_a_device_is_not_a_queue(tmp_path: Path, kind: str) -> None:
    # Before: `tickets --db FIFO` said its tables did not exist, `enqueue` and `worker` that
    # SQLite met a disk I/O error.
    path = tmp_path / "q.db"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path = Path("/dev/null")
    for create in (False, True):
        with pytest.raises(UsageError, match="it is not a regular file"):
            open_queue(str(path), create=create)


def test_a_file_that_is_not_a_database_is_a_queue_error_from_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"this is not a database, just some text" * 100)
    with pytest.raises(QueueError, match="not a SQLite database") as caught:
        open_queue(str(path))
    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)


def test_a_closed_queue_says_so(tmp_path: Path) -> None:
    queue = open_queue(str(tmp_path / "q.db"))
    queue.close()
    with pytest.raises(QueueError, match="is closed"):
        queue.tickets()


def test_the_queue_names_are_exported() -> None:
    for name in ("Lease", "Queue", "SessionInfo", "Ticket", "TicketEvent", "open_queue"):
        assert name in executor.__all__


def _hand_edited(path: Path, *statements: str) -> None:
    """Another program's writes: the terminal-row trigger dropped, then ``statements``."""
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TRIGGER IF EXISTS tickets_terminal_frozen")
        for statement in statements:
            conn.execute(statement)
    conn.close()


@pytest.mark.parametrize(
    ("statement", "says"),
    [
        ("UPDATE tickets SET created_at = 'yesterday'", "holds 'yesterday' in created_at"),
        ("UPDATE tickets SET lease_epoch = 'x'", "holds 'x' in lease_epoch"),
        ("UPDATE tickets SET last_heartbeat_at = 9e999", "holds inf in last_heartbeat_at"),
        ("UPDATE tickets SET priority = 'high'", "holds 'high' in priority"),
    ],
)
def test_a_ticket_row_of_the_wrong_type_is_one_line_naming_its_column(
    tmp_path: Path, statement: str, says: str
) -> None:
    # Before: SQLite keeps whatever is written, and such a row ended `doctor tickets` with
    # "internal error (a bug in rundoctor): ValueError", exit 70; a worker's slot crashed.
    from tests.executor.test_cli import _base_env, _doctor, _usage_error

    path = tmp_path / "q.db"
    with open_queue(str(path)) as queue:
        ticket = queue.enqueue("x", GRAPH)
    _hand_edited(path, statement)
    line = _usage_error(_doctor(_base_env(tmp_path), "tickets", "--db", path))
    assert f"ticket {ticket.id!r} {says}, where " in line, line
    with open_queue(str(path)) as queue, pytest.raises(QueueError, match=says):
        queue.get(ticket.id)


def test_an_event_payload_that_is_not_a_json_object_is_a_queue_error(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    with open_queue(str(path)) as queue:
        ticket = queue.enqueue("x", GRAPH)
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TRIGGER IF EXISTS ticket_events_no_update")
        conn.execute("UPDATE ticket_events SET detail = '{torn'")
    conn.close()
    with open_queue(str(path)) as queue, pytest.raises(QueueError, match="as its payload"):
        queue.events(ticket.id)


def test_the_example_of_docs_queue_md_runs_on_a_sqlite_queue(tmp_path: Path) -> None:
    # It passed `session=...` (an Ellipsis) to `start`, which no caller could copy.
    doc = (Path(__file__).resolve().parents[2] / "docs" / "queue.md").read_text()
    code = doc.split("```python\n", 1)[1].split("```", 1)[0]
    assert '"/var/rd/queue.db"' in code
    names: dict[str, object] = {}
    exec(
        compile(code.replace("/var/rd/queue.db", str(tmp_path / "q.db")), "queue.md", "exec"), names
    )
    queue = names["queue"]
    assert isinstance(queue, executor.Queue)
    try:
        (ticket,) = queue.tickets()
        assert (ticket.status, ticket.run_id) == ("done", "run-1")
    finally:
        queue.close()
