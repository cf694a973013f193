"""Workers and the reaper, with real worker processes and real signals."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import doctor
from executor import ExecutorConfig, Queue, QueueError, SessionInfo, Ticket, open_queue
from executor._lease_keeper import LeaseKeeper
from executor._reaper import reap
from executor._worker import run_worker

FAST = ExecutorConfig(
    heartbeat_interval_s=0.2,
    heartbeat_misses=2,
    self_fence_s=1.0,
    lease_ttl_s=1.5,
    reaper_interval_s=0.3,
    claim_grace_s=0.0,
    stage_grace_s=0.5,
)
REPO = Path(__file__).resolve().parents[2]


def _pipeline(tmp: Path, command: str, name: str = "p") -> Path:
    path = tmp / f"{name}.dot"
    path.write_text(
        "digraph p { start [shape=Mdiamond]; exit [shape=Msquare];\n"
        f"  work [shape=parallelogram, tool_command={json.dumps(command, ensure_ascii=False)}];\n"
        "  start -> work -> exit }\n"
    )
    return path


def _wait(what: Callable[[], object], timeout: float = 20.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'queue.db'}"


@pytest.fixture
def queue(url: str) -> Iterator[Queue]:
    q = open_queue(url)
    yield q
    q.close()


def _spawn_worker(url: str, root: Path, *, once: bool = False) -> subprocess.Popen[str]:
    code = textwrap.dedent(
        f"""
        import json, signal, threading
        from pathlib import Path
        from executor import ExecutorConfig
        from executor._worker import run_worker
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *a: stop.set())
        config = ExecutorConfig(**{json.dumps(_config_fields(FAST))})
        stats = run_worker({url!r}, Path({str(root)!r}), config, once={once}, stop=stop,
                           reaper=False)
        print(json.dumps(stats.to_json()), flush=True)
        """
    )
    return subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True
    )


def _config_fields(config: ExecutorConfig) -> dict[str, object]:
    return {
        k: getattr(config, k)
        for k in (
            "heartbeat_interval_s",
            "heartbeat_misses",
            "self_fence_s",
            "lease_ttl_s",
            "reaper_interval_s",
            "claim_grace_s",
            "stage_grace_s",
        )
    }


def _stage_pid(run_path: Path) -> int:
    files = list(run_path.glob("**/process.json"))
    return int(json.loads(files[0].read_text())["pid"]) if files else 0


def _running(
    queue: Queue, url: str, tmp_path: Path, command: str = "sleep 60"
) -> tuple[subprocess.Popen[str], Ticket, Path, int]:
    """A worker process running a long stage: (worker, its ticket, run dir, stage pid)."""
    queue.enqueue("long", str(_pipeline(tmp_path, command)))
    worker = _spawn_worker(url, tmp_path / "runs")
    running: list[Ticket] = []

    def started() -> bool:
        running[:] = [t for t in queue.tickets() if t.status == "running"]
        return bool(running)

    _wait(started)
    (ticket,) = running
    assert ticket.run_path is not None
    run_path = Path(ticket.run_path)
    _wait(lambda: _stage_pid(run_path))
    return worker, ticket, run_path, _stage_pid(run_path)


def test_a_worker_runs_queued_tickets_to_done(queue: Queue, url: str, tmp_path: Path) -> None:
    graph = _pipeline(tmp_path, "echo hi")
    for i in range(3):
        queue.enqueue(f"t{i}", str(graph))
    stats = run_worker(url, tmp_path / "runs", FAST, concurrency=2, once=True)
    assert (stats.claimed, stats.completed, stats.failed) == (3, 3, 0)
    tickets = queue.tickets()
    assert {t.status for t in tickets} == {"done"}
    for t in tickets:
        assert t.run_path is not None
        d = doctor.diagnose_path(Path(t.run_path), doctor.DoctorConfig())
        assert d.state == "succeeded" and d.exit_code == 0, d.findings


def test_a_failing_pipeline_fails_its_ticket_with_the_runs_reason(
    queue: Queue, url: str, tmp_path: Path
) -> None:
    queue.enqueue("bad", str(_pipeline(tmp_path, "echo broken >&2; exit 3")))
    stats = run_worker(url, tmp_path / "runs", FAST, once=True)
    (t,) = queue.tickets()
    assert (stats.failed, t.status, t.error_attempts) == (1, "failed", 1)
    assert t.reason is not None and "exit status 3" in t.reason and "broken" in t.reason


def _lost(queue: Queue, url: str, tmp_path: Path) -> tuple[Ticket, Path, int]:
    """A worker SIGKILLed while its long stage runs: (its ticket, run dir, stage pid)."""
    worker, ticket, run_path, stage = _running(queue, url, tmp_path)
    worker.kill()
    worker.communicate()
    return ticket, run_path, stage


def test_a_sigkilled_worker_is_reclaimed_at_once_and_its_stage_killed(
    queue: Queue, url: str, tmp_path: Path
) -> None:
    worker, ticket, run_path, stage = _running(queue, url, tmp_path)
    worker.kill()
    worker.communicate()
    assert _alive(stage)  # the stage outlives its worker: it has its own session
    (reclaim,) = reap(queue, FAST)
    assert reclaim.status == "todo" and "is dead" in reclaim.reason
    assert reclaim.killed_groups and reclaim.terminalized
    _wait(lambda: not _alive(stage), timeout=5)
    final = json.loads((run_path / "final.json").read_text())
    assert final["status"] == "fail" and "lost worker" in final["failure_reason"]
    after = queue.get(ticket.id)
    assert (after.status, after.crash_recoveries, after.error_attempts) == ("todo", 1, 0)
    assert after.lease_epoch == ticket.lease_epoch + 1
    d = doctor.diagnose_path(run_path, doctor.DoctorConfig())
    assert d.state == "failed"


def test_a_lost_worker_s_stage_daemon_that_left_its_group_is_killed_at_the_reclaim(
    queue: Queue, url: str, tmp_path: Path
) -> None:
    # `setsid` takes the daemon out of the stage's process group: killing the group missed
    # it, and it went on beside the ticket's next execution.
    pid_file = tmp_path / "daemon.pid"
    command = f"setsid sh -c 'echo $$ > {pid_file}; exec sleep 600' & sleep 60"
    worker, _ticket, _run_path, stage = _running(queue, url, tmp_path, command)
    _wait(lambda: pid_file.exists() and pid_file.read_text().strip())
    daemon = int(pid_file.read_text())
    try:
        worker.kill()
        worker.communicate()
        assert _alive(daemon) and os.getsid(daemon) != os.getsid(stage)
        (reclaim,) = reap(queue, FAST)
        assert reclaim.status == "todo" and reclaim.killed_groups
        assert reclaim.killed_escapees == (daemon,)
        _wait(lambda: not _alive(daemon), timeout=10)
        assert reclaim.to_json()["killed_escapees"] == [daemon]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(daemon, signal.SIGKILL)


def test_a_frozen_worker_is_fenced_when_it_wakes_after_its_lease_was_reclaimed(
    queue: Queue, url: str, tmp_path: Path
) -> None:
    worker, ticket, run_path, stage = _running(queue, url, tmp_path)
    os.kill(worker.pid, signal.SIGSTOP)
    try:
        time.sleep(FAST.lease_ttl_s + 0.3)
        (reclaim,) = reap(queue, FAST)
        assert reclaim.status == "todo" and "expired" in reclaim.reason
        assert not _alive(stage) or _wait(lambda: not _alive(stage), timeout=5)
        reaper_final = (run_path / "final.json").read_text()
    finally:
        os.kill(worker.pid, signal.SIGCONT)
    # Awake, the old worker finds its lease gone: it writes nothing more for the ticket.
    time.sleep(FAST.heartbeat_interval_s * 5)
    worker.terminate()
    out, _ = worker.communicate(timeout=20)
    stats = json.loads(out.strip().splitlines()[-1])
    assert stats["fenced"] == 1 and stats["completed"] == 0
    assert (run_path / "final.json").read_text() == reaper_final
    assert queue.get(ticket.id).status == "todo"
    # Woken past its self-fence, it sends no heartbeat at all (one renewed the lease of a run
    # its watchdog was canceling): nothing to fence. Before, the stale beat was fenced.
    assert "fenced" not in [e.event for e in queue.events(ticket.id)]


def test_sigterm_cancels_the_run_and_releases_the_ticket(
    queue: Queue, url: str, tmp_path: Path
) -> None:
    worker, ticket, run_path, stage = _running(queue, url, tmp_path)
    worker.terminate()
    out, _ = worker.communicate(timeout=20)
    assert json.loads(out.strip().splitlines()[-1])["released"] == 1
    assert not _alive(stage)
    assert json.loads((run_path / "final.json").read_text())["status"] == "canceled"
    after = queue.get(ticket.id)
    assert (after.status, after.error_attempts, after.crash_recoveries) == ("todo", 0, 0)


def test_a_stalled_database_makes_the_worker_fence_itself_before_its_lease_expires(
    queue: Queue, url: str, tmp_path: Path
) -> None:
    worker, _ticket, run_path, stage = _running(queue, url, tmp_path)
    blocker = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # every write waits: heartbeats cannot land
    try:
        started = time.monotonic()
        _wait(lambda: (run_path / "final.json").exists(), timeout=FAST.lease_ttl_s * 4)
        fenced_after = time.monotonic() - started
        assert not _alive(stage)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert json.loads((run_path / "final.json").read_text())["status"] == "canceled"
    # It stopped its stage within its self-fence deadline (plus a stage grace), before a
    # reaper could have handed the ticket to anyone else.
    assert fenced_after < FAST.self_fence_s + FAST.stage_grace_s + 1.0
    worker.terminate()
    worker.communicate(timeout=20)


def test_the_clock_notice_speaks_once_each_time_this_hosts_clock_goes_off(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from executor import ClockOffset
    from executor._resilience import ClockNotice

    notice = ClockNotice()
    for offset in (None, ClockOffset(0.2, 0.001), ClockOffset(-90.0, 0.001)):
        notice.check(offset)  # one clock, in sync, then 90 s ahead: one line
    notice.check(ClockOffset(-91.0, 0.001))  # still off: nothing more
    notice.check(ClockOffset(0.0, 0.001))  # back in sync, then off again: a second line
    notice.check(ClockOffset(30.0, 0.001))
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2, lines
    assert "this host's clock is 90 s ahead of the queue's database server" in lines[0]
    assert "30 s behind" in lines[1] and lines[1].endswith("synchronize the clocks (NTP)")


def test_the_reaper_never_waits_on_a_fifo_a_stage_left_as_the_runs_final_json(
    queue: Queue, url: str, tmp_path: Path
) -> None:
    # Before: a stage may write where its KILROY_LOGS_ROOT says, the run's directory: a FIFO
    # it left as final.json hung the reaper's read of it, `doctor reap` and every worker's
    # reaper pass alike, and the lost worker's ticket was never reclaimed.
    ticket, run_path, stage = _lost(queue, url, tmp_path)
    os.mkfifo(run_path / "final.json")
    done = subprocess.run(
        [sys.executable, "-m", "doctor", "reap", "--db", url, "--json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (reclaim,) = json.loads(done.stdout)
    assert (reclaim["ticket_id"], reclaim["status"]) == (ticket.id, "todo")
    assert not reclaim["terminalized"]  # the FIFO holds final.json's name: left to the doctor
    _wait(lambda: not _alive(stage), timeout=5)


@pytest.mark.parametrize("nested", ["process.json", "final.json"])
def test_the_reaper_takes_a_file_nested_past_the_parser_for_one_it_cannot_read(
    queue: Queue, url: str, tmp_path: Path, nested: str
) -> None:
    # Before: json's RecursionError escaped the reaper's read of a tampered process.json (or
    # final.json): the pass crashed, the lost worker's ticket was never reclaimed.
    ticket, run_path, stage = _lost(queue, url, tmp_path)
    where = run_path / "stray" / "attempt-9" if nested == "process.json" else run_path
    where.mkdir(parents=True, exist_ok=True)
    (where / nested).write_text("[" * 100_000)
    (reclaim,) = reap(queue, FAST)
    assert reclaim.status == "todo" and reclaim.killed_groups, reclaim
    _wait(lambda: not _alive(stage), timeout=5)
    # The unreadable final.json is not the run's success: it is kept, not adopted.
    assert reclaim.terminalized == (nested == "process.json")
    assert queue.get(ticket.id).crash_recoveries == 1


class _RefusesOneHeartbeat:
    """A real queue connection whose ``heartbeat`` number ``refused`` raises
    :class:`QueueError`, as a database that blinked once does."""

    def __init__(self, queue: Queue, refused: int) -> None:
        self.queue, self.refused, self.calls = queue, refused, 0

    def heartbeat(self, *args: object, **kwargs: object) -> object:
        self.calls += 1
        if self.calls == self.refused:
            raise QueueError("the database blinked")
        return self.queue.heartbeat(*args, **kwargs)  # type: ignore[arg-type]

    def close(self) -> None:
        self.queue.close()


def test_one_missed_heartbeat_is_one_gap_of_just_over_twice_the_interval(tmp_path: Path) -> None:
    # The lease keeper waits one interval after each attempt, so one refused beat puts the
    # next more than twice the interval after the last one that landed (an attempt takes
    # time), and beats that land are an interval and their own write apart: the threshold
    # of twice the interval needs no slack to tell one missed beat from none.
    config = ExecutorConfig(
        heartbeat_interval_s=0.5, heartbeat_misses=2, self_fence_s=3.0, lease_ttl_s=4.0
    )
    db = tmp_path / "queue.db"
    with open_queue(db) as queue:
        ticket = queue.enqueue("t", "/p.dot")
        session = SessionInfo("s", os.getpid(), os.getpgid(0), None, "here")
        lease = queue.claim("w", lease_ttl_s=config.lease_ttl_s, session=session)
        assert lease is not None
        conn = _RefusesOneHeartbeat(open_queue(db), refused=2)
        keeper = LeaseKeeper(lambda: conn, lease, config, threading.Event())  # type: ignore[arg-type,return-value]
        with keeper:
            _wait(lambda: conn.calls >= 5)
        assert not keeper.fenced.is_set()
        (gap,) = [e for e in queue.events(ticket.id) if e.event == "heartbeat_gap"]
        assert gap.detail["threshold_s"] == 2 * config.heartbeat_interval_s
        assert gap.detail["holder_gap_s"] > 2 * config.heartbeat_interval_s, gap.detail
