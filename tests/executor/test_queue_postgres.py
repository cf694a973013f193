"""PostgreSQL specifics: explicit transactions, SKIP LOCKED, connection errors, reconnects."""

from __future__ import annotations

import threading
import time
import uuid

import psycopg
import pytest

from executor import QueueError, SessionInfo, Ticket, open_queue
from tests.executor.conftest import PG_URL, Backend

pytestmark = pytest.mark.postgres

GRAPH = "/pipelines/build.dot"
ME = SessionInfo("s", pid=1, pgid=1, proc_start_time=None, host="h")


def _named(backend: Backend) -> tuple[str, str]:
    """The backend's URL with an application_name no other connection on the server uses."""
    name = f"rdtest_{uuid.uuid4().hex[:12]}"
    return f"{backend.url}&application_name={name}", name


def _sessions(name: str) -> list[tuple[int, str]]:
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pid, state FROM pg_stat_activity WHERE application_name = %s", (name,)
        ).fetchall()
    return [(int(pid), str(state)) for pid, state in rows]


def test_every_call_ends_its_transaction(postgres_backend: Backend) -> None:
    # Autocommit is off, so only explicit COMMITs end transactions; none may be left open
    # ("idle in transaction" holds locks and snapshots for as long as the worker lives).
    url, name = _named(postgres_backend)
    with open_queue(url) as queue:
        t = queue.enqueue("x", GRAPH)
        lease = queue.claim("w", lease_ttl_s=30, session=ME)
        assert lease is not None
        queue.heartbeat(lease, lease_ttl_s=30)
        queue.get(t.id)
        queue.events(t.id)
        with pytest.raises(QueueError):
            queue.get("t-nope")
        assert [state for _, state in _sessions(name)] == ["idle"]


def test_a_claim_skips_rows_locked_by_another_transaction(postgres_backend: Backend) -> None:
    # lock_timeout makes a claim that queued behind the lock fail fast instead of hanging.
    url = postgres_backend.url + "%20-clock_timeout%3D2000"
    with open_queue(url) as queue:
        first = queue.enqueue("first", GRAPH, priority=9)
        second = queue.enqueue("second", GRAPH)
        with psycopg.connect(url) as other:  # autocommit off: the lock lasts until rollback
            other.execute("SELECT id FROM tickets WHERE id = %s FOR UPDATE", (first.id,))
            lease = queue.claim("w", lease_ttl_s=30, session=ME)
            assert lease is not None and lease.ticket_id == second.id
            other.rollback()
        lease = queue.claim("w", lease_ttl_s=30, session=ME)
        assert lease is not None and lease.ticket_id == first.id


def test_an_unreachable_server_is_a_queue_error_without_the_password() -> None:
    url = "postgresql://postgres:hunter2@127.0.0.1:1/test"
    with pytest.raises(QueueError, match="cannot connect to the PostgreSQL queue") as caught:
        open_queue(url)
    assert "hunter2" not in str(caught.value)
    assert "postgres:***@127.0.0.1:1/test" in str(caught.value)
    assert isinstance(caught.value.__cause__, psycopg.OperationalError)


def test_an_unknown_database_is_a_queue_error(postgres_backend: Backend) -> None:
    with pytest.raises(QueueError, match="no_such_db_rd") as caught:
        open_queue("postgres://postgres@127.0.0.1:5432/no_such_db_rd")
    assert isinstance(caught.value.__cause__, psycopg.Error)


def test_a_dropped_connection_fails_one_call_then_reconnects(postgres_backend: Backend) -> None:
    url, name = _named(postgres_backend)
    with open_queue(url) as queue:
        t = queue.enqueue("x", GRAPH)
        [(pid, _)] = _sessions(name)
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(QueueError) as caught:
            queue.get(t.id)
        assert isinstance(caught.value.__cause__, psycopg.OperationalError)
        assert queue.get(t.id).status == "todo"


def test_many_processes_opening_a_fresh_database_create_the_schema_once(
    postgres_backend: Backend,
) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def open_one() -> None:
        try:
            barrier.wait()
            open_queue(postgres_backend.url).close()
        except BaseException as exc:  # re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert postgres_backend.raw("SELECT version FROM schema_version") == [(1,)]


def test_a_deadlock_victim_is_retried_and_completes_once(postgres_backend: Backend) -> None:
    # PostgreSQL checks for a deadlock once, deadlock_timeout after a wait began: the queue's
    # connection checks after 5 s (by then the other one waits too: it asks for its second
    # lock as soon as the queue's connection is seen waiting, which takes milliseconds but
    # took over 2 s once on a loaded machine, so the check found no cycle yet and was not
    # made again), the other after 60 s: the queue's transaction is the victim, and the
    # queue runs it again.
    url, name = _named(postgres_backend)
    with open_queue(url.replace("options=", "options=-cdeadlock_timeout%3D5000%20", 1)) as queue:
        a = queue.enqueue("a", GRAPH)
        b = queue.enqueue("b", GRAPH, depends_on=[a.id])
        lease = queue.claim("w", lease_ttl_s=30, session=ME)
        assert lease is not None
        with psycopg.connect(postgres_backend.url) as other:
            other.execute("SET deadlock_timeout = '60s'")
            other.execute("SELECT 1 FROM tickets WHERE id = %s FOR UPDATE", (b.id,))
            done: list[Ticket] = []
            worker = threading.Thread(target=lambda: done.append(queue.complete(lease, result={})))
            worker.start()
            _wait_until_blocked(name)  # complete holds a's row and waits for b's
            other.execute("SELECT 1 FROM tickets WHERE id = %s FOR UPDATE", (a.id,))
            other.rollback()
            worker.join(30)
        assert [t.status for t in done] == ["done"]
        assert queue.get(b.id).status == "todo"
        assert [e.event for e in queue.events(a.id)].count("completed") == 1


def _wait_until_blocked(name: str) -> None:
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        for _ in range(3000):  # however loaded the machine, not forever
            row = admin.execute(
                "SELECT wait_event_type FROM pg_stat_activity WHERE application_name = %s",
                (name,),
            ).fetchone()
            if row is not None and row[0] == "Lock":
                return
            time.sleep(0.01)
    raise AssertionError(f"the queue's connection {name} never waited for a lock")


def test_a_slow_reader_of_a_ticket_stream_keeps_its_transaction(postgres_backend: Backend) -> None:
    # The queue's connections end transactions left idle (a frozen worker's locks); a stream's
    # reader may take its time (`doctor tickets --json | less`) and must not be cut off.
    url = postgres_backend.url + "%20-cidle_in_transaction_session_timeout%3D300"
    with open_queue(url) as queue:
        made = [queue.enqueue(f"t{i}", GRAPH).id for i in range(3)]
        read = []
        for ticket in queue.iter_tickets():
            read.append(ticket.id)
            if len(read) == 1:
                time.sleep(1.0)  # the reader is slow: longer than the server lets idle
        assert read == made
        assert queue.get(made[0]).status == "todo"  # the connection is still good
