"""On a shared PostgreSQL queue every lease time is the database server's, whatever the clocks
of the workers and reapers say (``executor._clocks``).

Real worker processes whose clock is made to run a minute behind or ahead (twenty lease TTLs),
the real PostgreSQL server, real reaper passes. Before the rule, a worker behind had its live
lease reclaimed at the first pass, a reaper ahead took every live lease, and a dead worker
whose clock ran ahead kept its lease a minute longer.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from executor import ExecutorConfig, Queue, SessionInfo, Ticket, open_queue
from executor._reaper import reap
from tests.executor.conftest import Backend
from tests.helpers import wait_until

pytestmark = pytest.mark.postgres

#: How far the skewed clocks are off: far more than the lease TTL.
SKEW_S = 60.0
CONFIG = ExecutorConfig(
    heartbeat_interval_s=0.2,
    heartbeat_misses=2,
    self_fence_s=2.0,
    lease_ttl_s=3.0,
    reaper_interval_s=0.3,
    claim_grace_s=0.0,
    stage_grace_s=0.5,
)
SESSION = SessionInfo("s", 1, 1, None, "h")
REPO = Path(__file__).resolve().parents[2]
_FIELDS = (
    "heartbeat_interval_s",
    "heartbeat_misses",
    "self_fence_s",
    "lease_ttl_s",
    "reaper_interval_s",
    "claim_grace_s",
    "stage_grace_s",
)


def _server_now(backend: Backend) -> float:
    """The database server's clock, read through the side door (not the queue)."""
    return float(backend.raw("SELECT extract(epoch FROM clock_timestamp())::float8")[0][0])


def _wait(what: Callable[[], object], timeout: float = 60.0) -> None:
    wait_until(what, timeout)


def _waiting_pipeline(tmp: Path, go: Path) -> Path:
    """A pipeline whose one stage runs until ``go`` exists."""
    path = tmp / "wait.dot"
    command = f"while [ ! -e {go} ]; do sleep 0.05; done"
    path.write_text(
        "digraph p { start [shape=Mdiamond]; exit [shape=Msquare];\n"
        f"  work [shape=parallelogram, tool_command={json.dumps(command, ensure_ascii=False)}];\n"
        "  start -> work -> exit }\n"
    )
    return path


def _spawn_worker(url: str, root: Path, clock: str) -> subprocess.Popen[str]:
    """A real worker process whose every clock read is the Python expression ``clock``."""
    fields = {k: getattr(CONFIG, k) for k in _FIELDS}
    code = textwrap.dedent(
        f"""
        import os, signal, threading, time
        from pathlib import Path
        from executor import ExecutorConfig
        from executor._worker import run_worker
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *a: stop.set())
        config = ExecutorConfig(**{fields!r})
        run_worker({url!r}, Path({str(root)!r}), config, stop=stop, reaper=False,
                   clock=lambda: {clock})
        """
    )
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def running(
    postgres_backend: Backend, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[Queue, Ticket, subprocess.Popen[str]]]:
    """A worker process running a ticket whose stage waits, and the reaper's queue (on this
    host's clock) beside it. The worker's clock is the expression ``request.param`` (``TMP``
    in it is the test's directory), ``time.time()`` without one."""
    clock = str(getattr(request, "param", "time.time()")).replace("TMP", str(tmp_path))
    go = tmp_path / "go"
    queue = postgres_backend.open()
    ticket = queue.enqueue("wait", str(_waiting_pipeline(tmp_path, go)))
    worker = _spawn_worker(postgres_backend.url, tmp_path / "runs", clock)
    try:
        _wait(lambda: queue.get(ticket.id).status == "running")
        yield queue, queue.get(ticket.id), worker
    finally:
        go.touch()  # the stage ends; a live worker completes the ticket
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
        try:
            worker.communicate(timeout=30)
        except subprocess.TimeoutExpired:  # a failing test's worker: do not leave it behind
            worker.kill()
            worker.communicate()
        queue.close()


def _passes_while_it_heartbeats(
    reaper: Queue, ticket: Ticket, clock: Callable[[], float] = time.time
) -> int:
    """Reaper passes on ``clock`` (as a worker's reaper thread runs them: on the worker's
    clock), until the worker's heartbeats have gone on for two lease TTLs; every pass must
    reclaim nothing. Returns how many passes there were."""
    first = ticket.last_heartbeat_at
    assert first is not None
    passes = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert reap(reaper, CONFIG, clock=clock) == [], f"pass {passes + 1} reclaimed a live lease"
        passes += 1
        last = reaper.get(ticket.id).last_heartbeat_at
        assert last is not None
        if last - first > 2 * CONFIG.lease_ttl_s:
            return passes
        time.sleep(0.1)
    raise AssertionError("the worker stopped heartbeating")


def _finished_untouched(queue: Queue, ticket: Ticket, tmp_path: Path) -> None:
    """Let the stage end: the worker completes its ticket at the epoch it claimed."""
    (tmp_path / "go").touch()
    _wait(lambda: queue.get(ticket.id).status == "done")
    after = queue.get(ticket.id)
    assert (after.lease_epoch, after.crash_recoveries) == (ticket.lease_epoch, 0)
    events = [e.event for e in queue.events(ticket.id)]
    assert "reclaimed" not in events and "fenced" not in events, events


BEHIND = f"time.time() - {SKEW_S}"
AHEAD = f"time.time() + {SKEW_S}"


@pytest.mark.parametrize("running", [BEHIND], indirect=True, ids=["worker-behind"])
def test_a_worker_whose_clock_runs_behind_by_more_than_the_ttl_keeps_its_lease_through_reaper_passes(  # noqa: E501
    running: tuple[Queue, Ticket, subprocess.Popen[str]], tmp_path: Path
) -> None:
    queue, ticket, worker = running
    assert _passes_while_it_heartbeats(queue, ticket) >= 2
    _finished_untouched(queue, ticket, tmp_path)
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=30)
    # Its leases are safe, but it says its clock is off (its run directories use it).
    assert "this host's clock is 60 s behind the queue's database server" in err, err


def test_a_reaper_whose_clock_runs_ahead_by_more_than_the_ttl_takes_no_live_lease(
    running: tuple[Queue, Ticket, subprocess.Popen[str]],
    postgres_backend: Backend,
    tmp_path: Path,
) -> None:
    _, ticket, _ = running
    # A worker whose clock runs ahead is a reaper whose clock runs ahead: its reaper thread
    # passes its clock to both the queue it opens and each pass.
    clock = lambda: time.time() + SKEW_S  # noqa: E731
    with open_queue(postgres_backend.url, clock=clock) as ahead:
        assert _passes_while_it_heartbeats(ahead, ticket, clock) >= 2
    _finished_untouched(running[0], ticket, tmp_path)


@pytest.mark.parametrize(
    "running", [BEHIND, AHEAD], indirect=True, ids=["worker-behind", "worker-ahead"]
)
def test_a_dead_worker_whose_clock_was_off_is_reclaimed_once_its_lease_ends_in_the_servers_clock(
    running: tuple[Queue, Ticket, subprocess.Popen[str]], postgres_backend: Backend
) -> None:
    queue, ticket, worker = running
    beat = ticket.last_heartbeat_at
    _wait(lambda: queue.get(ticket.id).last_heartbeat_at != beat)  # a fresh heartbeat
    worker.kill()
    worker.wait()
    killed_at = _server_now(postgres_backend)
    dead = queue.get(ticket.id)
    assert dead.last_heartbeat_at is not None and dead.lease_expires_at is not None
    # Its last heartbeat came before its death, in the server's clock, and its lease ends one
    # TTL after it: neither a minute early (behind) nor a minute late (ahead).
    assert killed_at - CONFIG.lease_ttl_s < dead.last_heartbeat_at <= killed_at
    assert dead.lease_expires_at == dead.last_heartbeat_at + CONFIG.lease_ttl_s
    # Reaper passes (as from another host: the dead pid cannot be seen) until it is taken.
    found: list[object] = []
    while not found:
        assert _server_now(postgres_backend) < dead.lease_expires_at + 30, "never reclaimed"
        found = list(reap(queue, CONFIG, host="elsewhere"))
        time.sleep(0.1)
    (reclaimed,) = [e for e in queue.events(ticket.id) if e.event == "reclaimed"]
    assert reclaimed.at >= dead.lease_expires_at  # not before its lease ended
    assert queue.get(ticket.id).status == "todo"


def test_a_postgres_queue_on_an_offset_clock_stamps_the_servers_time_and_measures_the_offset(
    postgres_backend: Backend,
) -> None:
    local = lambda: time.time() - 120  # noqa: E731
    with open_queue(postgres_backend.url, clock=local) as q:
        s0, l0 = _server_now(postgres_backend), local()
        now = q.now()
        q.enqueue("x", "/p.dot")
        lease = q.claim("w", lease_ttl_s=30, session=SESSION)
        l1, s1 = local(), _server_now(postgres_backend)
        offset = q.clock_offset
    assert s0 <= now <= s1
    assert lease is not None
    t = lease.ticket
    assert t.claimed_at is not None and s0 <= t.created_at <= t.claimed_at <= s1
    assert t.lease_expires_at == t.claimed_at + 30
    assert offset is not None and s0 - l1 <= offset.offset_s <= s1 - l0
    assert offset.skewed() and "120 s behind" in offset.describe()


def test_a_postgres_queue_without_the_server_clock_keeps_the_injected_one_exactly(
    postgres_backend: Backend,
) -> None:
    with open_queue(postgres_backend.url, clock=lambda: 1000.0, server_clock=False) as q:
        assert q.now() == 1000.0
        q.enqueue("x", "/p.dot")
        lease = q.claim("w", lease_ttl_s=30, session=SESSION)
        assert lease is not None and lease.ticket.lease_expires_at == 1030.0
        assert q.clock_offset is None


#: A clock stepped back an hour (NTP, a resumed VM) once the file ``TMP/step`` exists.
STEPPED_BACK = "time.time() - (3600 if os.path.exists('TMP/step') else 0)"


@pytest.mark.parametrize("running", [STEPPED_BACK], indirect=True, ids=["stepped-back"])
def test_a_worker_whose_clock_steps_back_still_fences_itself_when_the_database_stalls(
    running: tuple[Queue, Ticket, subprocess.Popen[str]],
    postgres_backend: Backend,
    tmp_path: Path,
) -> None:
    _, ticket, _ = running
    assert ticket.run_path is not None
    final = Path(ticket.run_path) / "final.json"
    (tmp_path / "step").touch()  # the worker's clock is an hour behind from now on
    with psycopg.connect(postgres_backend.url) as blocker:
        # The ticket's row locked: every heartbeat waits, as behind a stalled database. The
        # worker must notice the silence and stop its stage before its lease could expire.
        blocker.execute("SELECT id FROM tickets WHERE id = %s FOR UPDATE", (ticket.id,))
        _wait(final.exists, timeout=CONFIG.lease_ttl_s * 10)
        blocker.rollback()
    assert json.loads(final.read_text())["status"] == "canceled"
