"""Bugs the chaos harness found, each pinned to the campaign (seed) that found it.

Each test reproduces the finding directly, without a whole campaign, so it is deterministic.
A bug that is not fixed yet is ``xfail(strict=True)``: the day it is fixed the test passes,
strict xfail turns that into a failure, and whoever fixed it removes the mark (and the fault's
``may_cause`` entry that tolerates it in campaigns).
"""

from __future__ import annotations

import calendar
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import doctor
from chaos import CHAOS_EXECUTOR, FaultRecord, Held, History, Planned, QueueEvent
from chaos._checkers import reclaim_latency
from chaos._evidence import stall_windows
from chaos._stall_database import _lock
from executor import ExecutorConfig, Lease, Queue, SessionInfo, open_queue, run_pipeline
from executor._reaper import _reclaim as _reaper_reclaim
from executor._reaper import reap
from rundoctor.liveness import start_ticks
from tests.chaos.test_database_unavailable import BY_NAME, _campaign, _faults
from tests.executor.conftest import Backend, FakeClock
from tests.executor.private_postgres import PrivatePostgres

REPO = Path(__file__).resolve().parents[2]

# `doctor chaos run --seed 2 --duration 60s` wrote this pipeline (deterministic_01) when the
# workload still drew breaker limits up to 4.
SEED_2_LOOP = """digraph deterministic_01 {
  graph [goal="a fix loop that never converges", breaker_limit=4]
  node [shape=parallelogram]
  start [shape=Mdiamond]
  exit [shape=Msquare]
  impl [tool_command="n=$(cat .lap 2>/dev/null || echo 0); echo $((n+1)) > .lap; echo patched"]
  verify [max_retries=0, tool_command="n=$(cat .lap); echo \\"error[E502]: cannot find value \
x$RANDOM in this scope --> /tmp/build-$RANDOM/src/mod_$n.rs:$((RANDOM % 300)):5 (check took \
$((RANDOM % 900 + 100))ms, attempt $n)\\" >&2; exit 101"]
  check [shape=diamond]
  start -> impl -> verify -> check
  check -> exit [condition="outcome=success"]
  check -> impl [condition="outcome=fail", label="retry"]
}
"""
LONG = (
    "digraph long { start [shape=Mdiamond]; exit [shape=Msquare]; work [shape=parallelogram, "
    'tool_command="for i in $(seq 1 8); do echo tick $i; sleep 1; done"]; start -> work -> exit }'
)
FANOUT = (
    "digraph fan { start [shape=Mdiamond]; exit [shape=Msquare]; fan [shape=component];"
    ' join [shape=tripleoctagon]; b1 [shape=parallelogram, tool_command="sleep 8"];'
    ' b2 [shape=parallelogram, tool_command="sleep 8"];'
    " start -> fan; fan -> b1 -> join; fan -> b2 -> join; join -> exit }"
)


def serious(path: Path) -> list[str]:
    d = doctor.diagnose_path(path, doctor.DoctorConfig())
    return [f.code for f in d.findings if f.severity >= doctor.Severity.ERROR]


def test_seed_2_the_breaker_stops_a_loop_whose_graph_allows_four_laps_at_four(
    tmp_path: Path,
) -> None:
    (tmp_path / "loop.dot").write_text(SEED_2_LOOP)
    r = run_pipeline(tmp_path / "loop.dot", tmp_path / "runs", CHAOS_EXECUTOR, run_id="loop")
    assert r.status == "fail" and "repeated 4 times (limit 4)" in r.failure_reason


def test_seed_2_the_doctor_finds_nothing_serious_in_a_loop_the_breaker_stopped(
    tmp_path: Path,
) -> None:
    (tmp_path / "loop.dot").write_text(SEED_2_LOOP)
    r = run_pipeline(tmp_path / "loop.dot", tmp_path / "runs", CHAOS_EXECUTOR, run_id="loop")
    assert serious(r.path) == []


@pytest.fixture
def campaign_dir(
    tmp_path: Path,
) -> Iterator[tuple[str, Queue, Callable[[], subprocess.Popen[bytes]]]]:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    config = tmp_path / "executor.json"
    config.write_text(json.dumps(CHAOS_EXECUTOR.to_json()))
    queue = open_queue(url)
    workers: list[subprocess.Popen[bytes]] = []

    def spawn() -> subprocess.Popen[bytes]:
        command = [
            sys.executable,
            "-m",
            "chaos",
            "worker",
            "--db",
            url,
            "--root",
            str(tmp_path / "runs"),
            "--name",
            f"w{len(workers) + 1}",
            "--config",
            str(config),
            "--history",
            str(tmp_path / f"w{len(workers) + 1}.ndjson"),
        ]
        workers.append(subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL))
        return workers[-1]

    yield str(tmp_path), queue, spawn
    for w in workers:
        if w.poll() is None:
            os.kill(w.pid, signal.SIGCONT)
            w.kill()
            w.wait()
    queue.close()


def _running(queue: Queue, ticket_id: str) -> Path:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        t = queue.get(ticket_id)
        if t.status == "running" and t.run_path and list(Path(t.run_path).glob("**/process.json")):
            return Path(t.run_path)
        time.sleep(0.05)
    raise AssertionError(f"ticket {ticket_id} never started a stage")


@pytest.mark.chaos
def test_seed_2_a_worker_woken_after_its_lease_was_reclaimed_writes_nothing_more_into_its_run(
    campaign_dir: tuple[str, Queue, Callable[[], subprocess.Popen[bytes]]],
) -> None:
    tmp, queue, spawn = campaign_dir
    (Path(tmp) / "long.dot").write_text(LONG)
    ticket = queue.enqueue("long", str(Path(tmp) / "long.dot"))
    worker = spawn()
    run = _running(queue, ticket.id)
    os.kill(worker.pid, signal.SIGSTOP)
    time.sleep(CHAOS_EXECUTOR.lease_ttl_s + 0.5)
    assert [r.status for r in reap(queue, CHAOS_EXECUTOR)] == ["todo"]
    os.kill(worker.pid, signal.SIGCONT)
    time.sleep(2.0)
    worker.terminate()
    worker.wait(timeout=20)
    events = [json.loads(x)["event"] for x in (run / "progress.ndjson").read_text().splitlines()]
    assert events[-1] == "run_failed", events[events.index("run_failed") :]
    assert "post_terminal_activity" not in serious(run)


@pytest.mark.chaos
def test_seed_11_the_reaper_terminalizes_the_open_branches_of_a_lost_fanout(
    campaign_dir: tuple[str, Queue, Callable[[], subprocess.Popen[bytes]]],
) -> None:
    tmp, queue, spawn = campaign_dir
    (Path(tmp) / "fan.dot").write_text(FANOUT)
    ticket = queue.enqueue("fan", str(Path(tmp) / "fan.dot"))
    worker = spawn()
    run = _running(queue, ticket.id)
    time.sleep(0.5)  # both branches started
    worker.kill()
    worker.wait()
    assert [r.status for r in reap(queue, CHAOS_EXECUTOR)] == ["todo"]
    branches = sorted((run / "parallel" / "fan").iterdir())
    assert len(branches) == 2
    assert all((b / "final.json").is_file() for b in branches), "a branch has no final.json"
    assert serious(run) == []


def test_seed_20_a_claim_that_waited_behind_a_stalled_database_is_not_born_expired(
    backend: Backend, request: pytest.FixtureRequest
) -> None:
    """Found by ``doctor chaos run --seed 20 --duration 60s --db postgresql://…``: a claim
    blocked by ``stall_database`` committed a lease that had expired while it waited, the
    reaper took the ticket from the healthy worker 0.5 s later, killed its stage and
    terminalized its run (post_terminal_activity followed). SQLite takes its write lock before
    reading the clock; PostgreSQL waits inside the claim's first statement, after it."""
    setup, claimer = backend.open(), backend.open()
    setup.enqueue("long", "/p/long.dot")
    got: list[Lease | None] = []
    me = SessionInfo("s", os.getpid(), os.getpgid(0), None, "h")
    lock = _lock(backend.url)
    waiter = threading.Thread(
        target=lambda: got.append(claimer.claim("w1/0", lease_ttl_s=2.5, session=me))
    )
    waiter.start()
    time.sleep(2.0)  # the claim waits behind the lock, longer than nothing
    released = time.time()
    lock.rollback()
    lock.close()
    waiter.join(timeout=20)
    setup.close()
    claimer.close()
    (lease,) = got
    assert lease is not None and lease.ticket.lease_expires_at is not None
    assert lease.ticket.lease_expires_at >= released + 2.5 - 0.5, "the lease was born expired"


def test_seed_39_a_lost_run_is_stamped_when_the_reaper_terminalizes_it_not_when_its_pass_began(
    tmp_path: Path,
) -> None:
    """Found by ``doctor chaos run --seed 39 --duration 30s --faults sigkill_stage,
    sigkill_worker,sigstop_worker,sigterm_worker,torn_write,stall_database,kill_mid_write``: a
    worker frozen while it held the SQLite lock held up the whole queue; a reaper pass that
    began meanwhile waited on its first reclaim, then terminalized the frozen worker's run with
    the pass's start time, 2.3 s before the events the woken worker had just written into it
    (``post_terminal_activity``)."""
    url = f"sqlite:///{tmp_path / 'q.db'}"
    queue = open_queue(url)
    gone = subprocess.Popen(["true"])
    gone.wait()  # the lost worker: a real process, dead
    lost = SessionInfo("w1", gone.pid, gone.pid, None, "h")
    runs = []
    for n in (1, 2):
        queue.enqueue(f"long_0{n}", "/p/long.dot")
        lease = queue.claim(f"w{n}/0", lease_ttl_s=60, session=lost)
        assert lease is not None
        run = tmp_path / f"r{n}"
        run.mkdir()
        (run / "progress.ndjson").write_text('{"event":"run_started"}\n')
        queue.start(lease, run_id=f"r{n}", run_path=run, session=lost)
        runs.append((lease.ticket_id, run))
    lock = _lock(url)  # the queue held away: the pass's first reclaim waits for it
    threading.Timer(1.0, lambda: (lock.rollback(), lock.close())).start()
    reclaims = reap(queue, CHAOS_EXECUTOR, host="h")
    assert [r.status for r in reclaims] == ["todo", "todo"]
    (first, _), (_, second_run) = runs
    reclaimed_at = next(e.at for e in queue.events(first) if e.event == "reclaimed")
    queue.close()
    final = json.loads((second_run / "final.json").read_text())
    stamped = doctor_time(final["timestamp"])
    # Terminalized after the first reclaim committed, so stamped after it (was: before it).
    assert stamped >= reclaimed_at, (final["timestamp"], reclaimed_at)
    last = json.loads((second_run / "progress.ndjson").read_text().splitlines()[-1])
    assert last["event"] == "run_failed" and last["ts"] == final["timestamp"]


def doctor_time(stamp: str) -> float:
    """Epoch seconds of an RFC 3339 ``...Z`` stamp with up to nine fractional digits."""
    whole, _, frac = stamp.removesuffix("Z").partition(".")
    return calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) + float(f"0.{frac or 0}")


@pytest.mark.postgres
def test_seed_61_a_postgresql_restart_is_a_window_that_closes_not_one_left_open(
    private_pg: PrivatePostgres, tmp_path: Path
) -> None:
    """Found by ``doctor chaos run --seed 61 --duration 30s --workers 3 --db postgresql://…
    --db-control …``: the restart left no ``recover`` record, so ``stall_windows`` kept its
    window open to the end of the campaign and ``reclaim_latency`` subtracted everything after
    it: every later reclaim measured 0.00 s, and no bound could be exceeded."""
    camp = _campaign(private_pg, tmp_path / "c", [])
    try:
        camp.inject(Planned(1.0, "restart_database", 0), BY_NAME["restart_database"])
        camp.undo_due()  # the campaign's next tick
    finally:
        camp.queue.close()
    records = _faults(camp)
    assert [(r.fault, r.phase) for r in records] == [
        ("restart_database", "inject"),
        ("restart_database", "recover"),
    ]
    ((start, end),) = stall_windows(History(tuple(records)))
    assert start < end < math.inf
    # A worker SIGKILLed after the restart and reclaimed 4 s later is measured as such.
    killed = FaultRecord(end + 1.0, "sigkill_worker", "inject", "w1", held=(Held("t1", 1),))
    claimed = QueueEvent(end + 0.5, 1, "t1", "claimed", "w1/0", 1)
    reclaimed = QueueEvent(end + 5.0, 2, "t1", "reclaimed", "w1/0", 1)
    verdict = reclaim_latency(History((*records, claimed, killed, reclaimed)))
    assert not verdict.ok and "sigkill reclaim latency p99 4.00s" in verdict.summary, verdict


def test_seed_71_a_reclaim_judged_before_its_worker_started_the_run_is_refused(
    backend: Backend, tmp_path: Path
) -> None:
    """Found by ``doctor chaos run --seed 71 --duration 30s --workers 3 --db postgresql://…
    --faults sigkill_stage,torn_write,stall_database,database_outage,remove_pipeline``: during
    ``stall_database`` a reaper read a claimed ticket whose lease had expired while its
    worker's ``start`` waited behind the lock; once the lock went, the worker's ``start``
    committed first and the run began, then the reaper's reclaim (a compare-and-set on the
    epoch alone) took the ticket from under it. Judged on the claimed row, the reaper killed no
    stage and terminalized nothing: the run succeeded under a reclaimed lease, its ``complete``
    was fenced and the ticket ran again (``no_succeeded_run_rerun``)."""
    clock = FakeClock()
    queue = backend.open(clock)
    me = SessionInfo("s", os.getpid(), os.getpgid(0), None, "h")
    queue.enqueue("success_02", "/p/success.dot")
    lease = queue.claim("w3/0", lease_ttl_s=2.5, session=me)
    assert lease is not None
    clock.advance(3.6)  # the stall: the lease expires while start waits for the lock
    (judged,) = queue.expired(clock(), claim_grace_s=CHAOS_EXECUTOR.claim_grace_s)
    assert judged.status == "claimed" and judged.run_path is None  # what the reaper read
    run = tmp_path / "run"
    run.mkdir()
    queue.start(lease, run_id="r1", run_path=run, session=me)  # the lock goes: start first
    grace = CHAOS_EXECUTOR.claim_grace_s
    reclaimed = _reaper_reclaim(
        queue, CHAOS_EXECUTOR, judged, "lease expired", clock, claim_grace_s=grace
    )
    assert reclaimed.status == "", "a reclaim judged on the claimed row took the running run"
    ticket = queue.get(lease.ticket_id)
    assert (ticket.status, ticket.lease_epoch, ticket.run_id) == ("running", 1, "r1")
    # The next pass judges the row as it is now: the run's stages are its to kill.
    running = queue.get(lease.ticket_id)
    later = reap(queue, CHAOS_EXECUTOR, host="another-host", clock=clock)
    assert [(r.ticket_id, r.status) for r in later] == [(lease.ticket_id, "todo")]
    # Another reaper that judged the running row too is told the epoch moved (not a new run).
    again = _reaper_reclaim(
        queue, CHAOS_EXECUTOR, running, "lease expired", clock, claim_grace_s=grace
    )
    assert again.status == ""
    last = [e for e in queue.events(lease.ticket_id) if e.event == "fenced"][-1]
    assert last.detail["reason"] == "the lease epoch moved to 2 (ticket todo)", last.detail
    queue.close()


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


@pytest.mark.postgres
def test_seed_120_a_worker_frozen_inside_a_transaction_holds_up_no_reclaim_for_long(
    postgres_backend: Backend,
) -> None:
    """Found by ``doctor chaos run --seed 120 --duration 30s --workers 6 --db
    postgresql://…?options=-cdefault_transaction_isolation%3Dserializable --db-control …``: a
    worker SIGSTOPped while its heartbeat held its ticket's row kept every reaper waiting on
    that row, and a SIGKILLed worker's ticket, later in the same pass, behind it until the
    frozen worker woke (``reclaim_latency``: 2.61 s). Frozen for good, or cut off by the
    network, it would have kept every pass from ending."""
    url = postgres_backend.url
    host = socket.gethostname()
    config = ExecutorConfig(lease_ttl_s=0.5, self_fence_s=0.4, claim_grace_s=0.0)
    with open_queue(url) as queue:
        frozen = queue.enqueue("frozen", "/p/frozen.dot")
        dead = queue.enqueue("dead", "/p/dead.dot")
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
