"""PostgreSQL specifics: explicit transactions, SKIP LOCKED, connection errors, reconnects."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable

import psycopg
import pytest

from executor import ExecutorConfig, QueueError, SessionInfo, Ticket, open_queue
from executor._reaper import reap
from rundoctor.liveness import start_ticks
from tests.executor.conftest import PG_URL, Backend
from tests.helpers import REPO

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


# A worker's heartbeat frozen half-way (SIGSTOP, a paused VM, a network partition): the row it
# locked stays locked for as long as its transaction stays open.
_FROZEN_WRITE = """
import os, signal, sys
from executor import open_queue
from executor import _schema as sql
queue = open_queue(sys.argv[1])
with queue._transaction() as tx:
    tx.one(sql.LOCK_TICKET, (sys.argv[2],))
    print("locked", flush=True)
    os.kill(os.getpid(), signal.SIGSTOP)
"""


def test_a_worker_frozen_inside_a_transaction_holds_up_no_reclaim_for_long(
    postgres_backend: Backend,
) -> None:
    # Chaos seed 120 (serializable, six workers): a worker frozen while its heartbeat held its
    # ticket's row kept every reaper waiting on that row, the dead worker's ticket behind it
    # too, until it woke. Frozen for good, no reaper pass would ever have ended.
    url = postgres_backend.url
    host = socket.gethostname()
    config = ExecutorConfig(lease_ttl_s=0.5, self_fence_s=0.4, claim_grace_s=0.0)
    with open_queue(url) as queue:
        frozen = queue.enqueue("frozen", GRAPH)
        dead = queue.enqueue("dead", GRAPH)
        child = subprocess.Popen(
            [sys.executable, "-c", _FROZEN_WRITE, url, frozen.id],
            stdout=subprocess.PIPE,
            cwd=REPO,
        )
        try:
            alive = SessionInfo("frozen", child.pid, child.pid, start_ticks(child.pid), host)
            gone = SessionInfo("dead", 2**22 - 1, 2**22 - 1, None, host)
            assert queue.claim("w-frozen", lease_ttl_s=0.5, session=alive) is not None
            assert queue.claim("w-dead", lease_ttl_s=30, session=gone) is not None
            assert child.stdout is not None and child.stdout.readline() == b"locked\n"
            _until(lambda: [t.id for t in queue.expired(queue.now())] == [frozen.id])

            def one_pass() -> None:
                with open_queue(url) as reaper:
                    reap(reaper, config)

            passes = threading.Thread(target=one_pass, daemon=True)
            passes.start()
            # The dead worker's ticket first; then the frozen one, once the server ended the
            # transaction that sat idle, while its worker is still frozen.
            _until(lambda: queue.get(dead.id).status == "todo")
            assert queue.get(frozen.id).status == "claimed"  # its row is still locked
            _until(lambda: queue.get(frozen.id).status == "todo")
            assert child.poll() is None
            passes.join(timeout=60)
            assert not passes.is_alive()
        finally:
            child.kill()
            child.wait()
            child.stdout.close() if child.stdout else None


def _until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not within the deadline"
        time.sleep(0.05)


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
