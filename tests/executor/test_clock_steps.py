"""A wall clock that steps while workers hold leases (NTP, ``date -s``, a restored VM).

Real worker processes on a SQLite queue, whose every clock read is ``time.time()`` plus the
step written in the test's ``step`` file: all of them step at once, as a host's clock does,
while their monotonic clocks run on. Before the reaper timed silences itself
(``executor._lease_watch``), a step forward past the lease TTL made a worker's own reaper
thread take its live ticket (its stage killed, "lost worker" in ``final.json``, the ticket run
again), and a step back kept a frozen worker's ticket for the length of the step and refused
even a dead worker's reclaim.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from doctor import DoctorConfig, scan
from doctor._repair import apply_queue_repairs, plan_repairs
from executor import ExecutorConfig, Queue, SessionInfo, Ticket, open_queue
from executor._reaper import reap, reap_observed
from tests.helpers import REPO, ReaperSeam, run_doctor, wait_until

#: Heartbeats a second apart, reaper passes a tenth of one: after a step, a reaper pass comes
#: long before the worker's next heartbeat could move its lease into the new time.
CONFIG = ExecutorConfig(
    heartbeat_interval_s=1.0,
    heartbeat_misses=2,
    self_fence_s=3.0,
    lease_ttl_s=4.0,
    reaper_interval_s=0.1,
    claim_grace_s=0.0,
    stage_grace_s=0.5,
)
#: Far more than the lease TTL.
STEP_S = 3600.0


class Host:
    """The test's host clock: the step file every worker process reads its time through."""

    def __init__(self, tmp: Path) -> None:
        self.file = tmp / "step"
        self.file.write_text("0")

    def step(self, seconds: float) -> None:
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(repr(seconds))
        tmp.replace(self.file)  # whole: a reader never sees half a number

    def now(self) -> float:
        return time.time() + float(self.file.read_text())

    def spawn(
        self, url: str, root: Path, *, reaper: bool, config: ExecutorConfig = CONFIG
    ) -> subprocess.Popen[str]:
        """A real worker process on this clock."""
        fields = dataclasses.asdict(config)
        code = textwrap.dedent(
            f"""
            import json, signal, threading, time
            from pathlib import Path
            from executor import ExecutorConfig
            from executor._worker import run_worker
            step = Path({str(self.file)!r})
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *a: stop.set())
            config = ExecutorConfig(**{fields!r})
            stats = run_worker({url!r}, Path({str(root)!r}), config, stop=stop,
                               reaper={reaper}, clock=lambda: time.time() + float(step.read_text()))
            print(json.dumps(stats.to_json()), flush=True)
            """
        )
        return subprocess.Popen(
            [sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True
        )


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path)


@pytest.fixture
def queue(tmp_path: Path, host: Host) -> Iterator[Queue]:
    with open_queue(str(tmp_path / "queue.db"), clock=host.now) as q:
        yield q


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for w in started:  # a failing test's workers: never left behind, nor left frozen
        with contextlib.suppress(ProcessLookupError):
            os.kill(w.pid, signal.SIGCONT)
        if w.poll() is None:
            w.terminate()
        try:
            w.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            w.kill()
            w.communicate()


def _waiting(tmp: Path, queue: Queue) -> Ticket:
    """A ticket whose one stage runs until the file ``go`` exists."""
    command = f"while [ ! -e {tmp / 'go'} ]; do sleep 0.05; done"
    graph = tmp / "wait.dot"
    graph.write_text(
        "digraph p { start [shape=Mdiamond]; exit [shape=Msquare];\n"
        f"  work [shape=parallelogram, tool_command={json.dumps(command)}];\n"
        "  start -> work -> exit }\n"
    )
    return queue.enqueue("wait", str(graph))


def _running(queue: Queue, ticket: Ticket) -> Ticket:
    """The ticket once its stage has started (its ``process.json`` is written)."""
    wait_until(lambda: queue.get(ticket.id).status == "running")
    running = queue.get(ticket.id)
    assert running.run_path is not None
    wait_until(lambda: list(Path(running.run_path or "").glob("**/process.json")))
    return running


def _stage_pid(run_path: str | None) -> int:
    (found,) = Path(run_path or "").glob("**/process.json")
    return int(json.loads(found.read_text())["pid"])


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _events(queue: Queue, ticket: Ticket) -> list[str]:
    return [e.event for e in queue.events(ticket.id)]


def _worker_running(
    tmp: Path, host: Host, queue: Queue, workers: list[subprocess.Popen[str]], *, reaper: bool
) -> tuple[Ticket, subprocess.Popen[str]]:
    """A worker on ``host``'s clock running a ticket whose stage waits for ``go``: the ticket
    once its stage has started, and the worker."""
    ticket = _waiting(tmp, queue)
    worker = host.spawn(str(tmp / "queue.db"), tmp / "runs", reaper=reaper)
    workers.append(worker)
    return _running(queue, ticket), worker


def test_a_clock_stepped_forward_past_the_lease_ttl_takes_no_live_lease(
    tmp_path: Path, host: Host, queue: Queue, workers: list[subprocess.Popen[str]]
) -> None:
    ticket = _waiting(tmp_path, queue)
    workers.append(host.spawn(str(tmp_path / "queue.db"), tmp_path / "runs", reaper=True))
    running = _running(queue, ticket)
    # A heartbeat since the start: its reaper thread has watched the lease for a second.
    wait_until(lambda: queue.get(ticket.id).last_heartbeat_at != running.last_heartbeat_at)
    stepped_at = time.time() + STEP_S
    host.step(STEP_S)
    # The worker's next heartbeat stamps its lease in the new time; its reaper thread passed
    # ten times before it, each seeing a lease an hour past its expiry.
    wait_until(lambda: (queue.get(ticket.id).last_heartbeat_at or 0) > stepped_at)
    (tmp_path / "go").touch()
    wait_until(lambda: queue.get(ticket.id).status == "done")
    done = queue.get(ticket.id)
    assert (done.lease_epoch, done.crash_recoveries) == (1, 0), _events(queue, ticket)
    assert "reclaimed" not in _events(queue, ticket)
    # Nor does the step log a gap: the worker's beats came on time by its monotonic clock.
    assert "heartbeat_gap" not in _events(queue, ticket)
    assert done.run_id == running.run_id
    final = json.loads((Path(running.run_path or "") / "final.json").read_text())
    assert final["status"] == "success", final


def test_a_dead_worker_s_ticket_is_reclaimed_after_the_clock_stepped_back(
    tmp_path: Path, host: Host, queue: Queue, workers: list[subprocess.Popen[str]]
) -> None:
    ticket = _waiting(tmp_path, queue)
    worker = host.spawn(str(tmp_path / "queue.db"), tmp_path / "runs", reaper=False)
    workers.append(worker)
    running = _running(queue, ticket)
    stage = _stage_pid(running.run_path)
    host.step(-STEP_S)  # the ticket was claimed "an hour from now"
    worker.kill()
    worker.wait()
    (reclaim,) = reap(queue, CONFIG, clock=host.now)
    assert reclaim.status == "todo", reclaim
    assert "is dead" in reclaim.reason and reclaim.killed_groups
    wait_until(lambda: not _alive(stage), timeout=10)
    assert queue.get(ticket.id).status == "todo"


def test_a_frozen_worker_s_lease_lapses_in_its_ttl_after_the_clock_stepped_back_and_its_waking_changes_nothing(  # noqa: E501
    tmp_path: Path, host: Host, queue: Queue, workers: list[subprocess.Popen[str]]
) -> None:
    url, root = str(tmp_path / "queue.db"), tmp_path / "runs"
    ticket = _waiting(tmp_path, queue)
    frozen = host.spawn(url, root, reaper=False)
    workers.append(frozen)
    first = _running(queue, ticket)
    stage = _stage_pid(first.run_path)
    os.kill(frozen.pid, signal.SIGSTOP)
    host.step(-STEP_S)  # its lease, stamped before the step, now ends an hour from now
    other = host.spawn(url, root, reaper=True)
    workers.append(other)
    # The other worker's reaper times the silence itself: the lease lapses one TTL after it
    # first saw it, not an hour later. It kills the frozen worker's stage, then runs the ticket.
    wait_until(lambda: "reclaimed" in _events(queue, ticket))
    (reclaimed,) = [e for e in queue.events(ticket.id) if e.event == "reclaimed"]
    assert "monotonic" in str(reclaimed.detail.get("reason")), reclaimed.detail
    wait_until(lambda: not _alive(stage), timeout=10)
    second = _running(queue, ticket)
    # Reclaimed once (epoch 2), claimed again by the other worker (epoch 3).
    assert (second.lease_epoch, second.crash_recoveries) == (3, 1), _events(queue, ticket)
    assert second.lease_owner != first.lease_owner and second.run_path != first.run_path
    first_final = (Path(first.run_path or "") / "final.json").read_text()
    assert json.loads(first_final)["status"] == "fail"
    # Awake, the frozen worker finds its lease gone: it writes nothing, here or in the new run.
    os.kill(frozen.pid, signal.SIGCONT)
    frozen.terminate()
    out, _ = frozen.communicate(timeout=30)
    stats = json.loads(out.strip().splitlines()[-1])
    assert stats["completed"] == 0 and stats["fenced"] == 1, stats
    assert (Path(first.run_path or "") / "final.json").read_text() == first_final
    (tmp_path / "go").touch()
    wait_until(lambda: queue.get(ticket.id).status == "done")
    done = queue.get(ticket.id)
    assert (done.lease_epoch, done.run_id) == (3, second.run_id)
    final = json.loads((Path(second.run_path or "") / "final.json").read_text())
    assert (final["status"], final["epoch"]) == ("success", 3)


def test_a_one_shot_reap_right_after_a_step_forward_takes_no_live_lease(
    tmp_path: Path, host: Host, queue: Queue, workers: list[subprocess.Popen[str]]
) -> None:
    # ``doctor reap`` sees every lease for the first time: right after the step, each looks an
    # hour past its expiry. Before, it took the live worker's ticket (its stage killed, "lost
    # worker" in final.json, the ticket run again); now it waits for the next heartbeat.
    running, _ = _worker_running(tmp_path, host, queue, workers, reaper=False)
    ticket = running
    host.step(STEP_S)
    assert [t.id for t in queue.expired(queue.now())] == [ticket.id]
    assert reap_observed(queue, CONFIG, clock=host.now) == []
    after = queue.get(ticket.id)
    assert (after.status, after.lease_epoch, after.run_id) == ("running", 1, running.run_id)
    assert _alive(_stage_pid(running.run_path))
    (tmp_path / "go").touch()
    wait_until(lambda: queue.get(ticket.id).status == "done")
    assert (queue.get(ticket.id).lease_epoch, _events(queue, ticket).count("reclaimed")) == (1, 0)


def test_a_one_shot_reap_after_a_step_forward_still_takes_a_frozen_worker_s_lease(
    tmp_path: Path, host: Host, queue: Queue, workers: list[subprocess.Popen[str]]
) -> None:
    running, frozen = _worker_running(tmp_path, host, queue, workers, reaper=False)
    stage = _stage_pid(running.run_path)
    os.kill(frozen.pid, signal.SIGSTOP)
    host.step(STEP_S)
    (reclaim,) = reap_observed(queue, CONFIG, clock=host.now)
    assert reclaim.status == "todo", reclaim
    assert "the reaper watched" in reclaim.reason, reclaim.reason
    wait_until(lambda: not _alive(stage), timeout=10)


def _doctor_ahead(db: Path, host: Host, how: str) -> DoctorConfig:
    """The doctor's view right after the step forward: the host's clock stepped (and the
    doctor reads it), or the doctor's ``now`` pinned an hour ahead of the worker's."""
    if how == "stepped":
        host.step(STEP_S)
        return DoctorConfig(db=str(db), clock=host.now)
    return DoctorConfig(db=str(db), now=time.time() + STEP_S)


AHEAD = pytest.mark.parametrize("how", ["stepped", "pinned"])


@AHEAD
def test_repair_apply_right_after_a_step_forward_leaves_a_live_workers_lease(
    tmp_path: Path, host: Host, queue: Queue, workers: list[subprocess.Popen[str]], how: str
) -> None:
    # Before: the scan called the lease stale ("its worker is probably dead"), and `doctor
    # repair --db --apply` reclaimed it at once: the live stage killed, "lost worker" in
    # final.json, the ticket run again. The holder runs on this host: the repair watches it.
    running, _ = _worker_running(tmp_path, host, queue, workers, reaper=False)
    config = _doctor_ahead(tmp_path / "queue.db", host, how)
    result = scan(config)
    (stale,) = [f for f in result.findings if f.code == "stale_lease"]
    assert stale.evidence["owner_alive"] is True, stale.evidence
    assert "still runs on this host" in stale.summary and "probably dead" not in stale.summary
    plan = plan_repairs(result, config)
    assert [(a.kind, a.target) for a in plan] == [("reclaim", running.id)]
    said: list[str] = []
    report = apply_queue_repairs(plan, config, journal=tmp_path, say=said.append)
    (outcome,) = report.results
    assert outcome.outcome == "refused", outcome.message
    if how == "stepped" and not said:
        # The worker's heartbeat since the scan stamped its lease in the stepped time: the
        # repair found it live at once (the scan and the plan take longer than a heartbeat
        # interval on a loaded machine), and had nothing to watch.
        assert "no longer looks lost" in outcome.message, outcome.message
    else:
        assert "heartbeat while the doctor watched" in outcome.message, outcome.message
        assert len(said) == 1 and "watching for a heartbeat" in said[0], said
    after = queue.get(running.id)
    assert (after.status, after.lease_epoch, after.run_id) == ("running", 1, running.run_id)
    assert _alive(_stage_pid(running.run_path))
    (tmp_path / "go").touch()
    wait_until(lambda: queue.get(running.id).status == "done")
    assert (queue.get(running.id).lease_epoch, _events(queue, running).count("reclaimed")) == (
        1,
        0,
    )


@AHEAD
def test_repair_apply_right_after_a_step_forward_still_takes_a_frozen_workers_lease(
    tmp_path: Path, host: Host, queue: Queue, workers: list[subprocess.Popen[str]], how: str
) -> None:
    running, frozen = _worker_running(tmp_path, host, queue, workers, reaper=False)
    stage = _stage_pid(running.run_path)
    os.kill(frozen.pid, signal.SIGSTOP)
    config = _doctor_ahead(tmp_path / "queue.db", host, how)
    plan = plan_repairs(scan(config), config)
    (outcome,) = apply_queue_repairs(plan, config, journal=tmp_path).results
    assert outcome.outcome == "applied", outcome.message
    assert "no heartbeat came in the" in outcome.message, outcome.message
    wait_until(lambda: not _alive(stage), timeout=10)
    assert queue.get(running.id).status == "todo"


def test_doctor_repair_apply_says_it_watches_and_leaves_a_live_workers_lease(
    tmp_path: Path, host: Host, queue: Queue, workers: list[subprocess.Popen[str]]
) -> None:
    # The worker's clock an hour behind the doctor's (as after a step forward of the doctor's
    # host that the worker's has not seen): every lease it stamps looks an hour lapsed to the
    # `doctor` command, each heartbeat too. Before, `repair --apply` reclaimed it.
    host.step(-STEP_S)
    running, _ = _worker_running(tmp_path, host, queue, workers, reaper=False)
    done = run_doctor("repair", "--db", tmp_path / "queue.db", "--apply", timeout=120)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "watching for a heartbeat for up to 2 s" in done.stderr, done.stderr
    assert "heartbeat while the doctor watched" in done.stdout, done.stdout
    assert "Traceback" not in done.stderr
    after = queue.get(running.id)
    assert (after.status, after.lease_epoch, after.run_id) == ("running", 1, running.run_id)
    assert _alive(_stage_pid(running.run_path))


def test_repair_apply_takes_a_dead_workers_lease_before_it_watches_a_live_ones(
    tmp_path: Path, host: Host, queue: Queue, workers: list[subprocess.Popen[str]]
) -> None:
    running, _ = _worker_running(tmp_path, host, queue, workers, reaper=False)
    # Enqueued after it, so planned after it (by ticket id); the busy worker claims no other.
    dead = queue.enqueue("dead", "/p/dead.dot")
    here = socket.gethostname()
    gone = SessionInfo("rd-gone", pid=99_999_999, pgid=99_999_999, proc_start_time=1, host=here)
    claimed = queue.claim("w-gone", lease_ttl_s=60, session=gone)
    assert claimed is not None and claimed.ticket.id == dead.id
    config = _doctor_ahead(tmp_path / "queue.db", host, "pinned")
    plan = plan_repairs(scan(config), config)
    assert [a.target for a in plan if a.kind == "reclaim"] == [running.id, dead.id]
    seen: list[str] = []
    report = apply_queue_repairs(
        plan, config, journal=tmp_path, say=lambda _: seen.append(queue.get(dead.id).status)
    )
    assert seen == ["todo"]  # the dead worker's ticket was back before the watch began
    outcomes = {r.action.target: r.outcome for r in report.results}
    assert outcomes[dead.id] == "applied" and outcomes[running.id] == "refused", report.results
    assert queue.get(running.id).status == "running"


def _kept(queue: Queue, running: Ticket, tmp: Path) -> None:
    """``running``'s worker kept its lease and its stage, and completes it at epoch 1."""
    after = queue.get(running.id)
    assert (after.status, after.lease_epoch, after.run_id) == ("running", 1, running.run_id)
    assert _alive(_stage_pid(running.run_path))
    assert not (Path(running.run_path or "") / "final.json").exists()
    (fenced,) = [e for e in queue.events(running.id) if e.event == "fenced"]
    assert fenced.detail["action"] == "reclaim", fenced.detail
    assert "renewed the lease since it was judged lost" in fenced.detail["reason"], fenced.detail
    (tmp / "go").touch()
    wait_until(lambda: queue.get(running.id).status == "done")
    done = queue.get(running.id)
    assert (done.lease_epoch, done.crash_recoveries) == (1, 0), _events(queue, running)
    final = json.loads((Path(running.run_path or "") / "final.json").read_text())
    assert (final["status"], final["epoch"]) == ("success", 1), final


def test_a_reaper_whose_judgment_a_heartbeat_outran_kills_nothing(
    tmp_path: Path, host: Host, queue: Queue, workers: list[subprocess.Popen[str]]
) -> None:
    # A one-shot pass that believes the stamps, on a clock an hour ahead of the worker's:
    # the live lease looks lapsed. The worker's heartbeat lands after the pass read it. Before,
    # the pass killed the stage, wrote "lost worker" into final.json, and only then its
    # compare-and-set (on the epoch alone) took the renewed lease: the ticket ran again.
    running, _ = _worker_running(tmp_path, host, queue, workers, reaper=False)

    def heartbeat_lands() -> None:  # after the pass read the lease, before it acts
        (seen,) = [t.last_heartbeat_at for t in seam.read if t.id == running.id]
        wait_until(lambda: queue.get(running.id).last_heartbeat_at != seen)

    with open_queue(str(tmp_path / "queue.db"), clock=lambda: host.now() + STEP_S) as ahead:
        seam = ReaperSeam(ahead, judged=heartbeat_lands)
        (r,) = reap(seam, CONFIG, clock=host.now)
    assert (r.status, r.killed_groups, r.terminalized) == ("", (), False), r
    _kept(queue, running, tmp_path)


#: Leases of 10 s: the doctor watches a frozen holder for 5 s, which wakes well inside its
#: self-fence (9 s) and heartbeats.
SLOW = dataclasses.replace(CONFIG, lease_ttl_s=10.0, self_fence_s=9.0)


def test_repair_apply_whose_judgment_a_heartbeat_outran_kills_nothing(
    tmp_path: Path, host: Host, queue: Queue, workers: list[subprocess.Popen[str]]
) -> None:
    # `doctor repair --db --apply` watched a frozen worker's lease stand still for half its
    # TTL and judged it lost; the worker woke and heartbeat before the reclaim acted. Before,
    # the reclaim (executor.reap) killed its stage and wrote "lost worker" into final.json
    # first, then took the renewed lease.
    ticket = _waiting(tmp_path, queue)
    worker = host.spawn(str(tmp_path / "queue.db"), tmp_path / "runs", reaper=False, config=SLOW)
    workers.append(worker)
    running = _running(queue, ticket)
    os.kill(worker.pid, signal.SIGSTOP)
    config = _doctor_ahead(tmp_path / "queue.db", host, "pinned")
    plan = plan_repairs(scan(config), config)

    def wake(ticket_id: str) -> None:  # the worker is frozen: no heartbeat lands before
        if ticket_id != running.id:
            return  # "": the queue just opened
        seen = queue.get(ticket_id).last_heartbeat_at
        os.kill(worker.pid, signal.SIGCONT)
        wait_until(lambda: queue.get(ticket_id).last_heartbeat_at != seen)

    report = apply_queue_repairs(plan, config, journal=tmp_path, race_hook=wake)
    (outcome,) = report.results
    assert outcome.outcome == "refused", outcome.message
    assert "renewed the lease since it was judged lost" in outcome.message, outcome.message
    assert "nothing was killed" in outcome.message, outcome.message
    _kept(queue, running, tmp_path)


def test_a_worker_frozen_past_its_lease_writes_nothing_into_the_run_the_reaper_ended(
    tmp_path: Path, host: Host, queue: Queue, workers: list[subprocess.Popen[str]]
) -> None:
    # The woken worker's events went aside (late-events.ndjson), but it rewrote the run's
    # checkpoint.json and work/status.json after the reaper had terminalized it: the node
    # "completed", failed by the reaper's SIGKILL, and the doctor read checkpoint_drift.
    running, frozen = _worker_running(tmp_path, host, queue, workers, reaper=False)
    os.kill(frozen.pid, signal.SIGSTOP)
    wait_until(lambda: queue.expired(queue.now()))
    (r,) = reap(queue, CONFIG, clock=host.now)
    assert (r.status, r.terminalized) == ("todo", True), r
    run = Path(running.run_path or "")
    kept = ("checkpoint.json", "final.json", "progress.ndjson", "live.json", "work/status.json")

    def record() -> dict[str, bytes | None]:
        return {f: (run / f).read_bytes() if (run / f).exists() else None for f in kept}

    before = record()
    os.kill(frozen.pid, signal.SIGCONT)
    wait_until(lambda: (run / "late-events.ndjson").exists())  # it woke, and wrote aside
    frozen.terminate()
    out, _ = frozen.communicate(timeout=30)
    stats = json.loads(out.strip().splitlines()[-1])
    assert (stats["completed"], stats["fenced"]) == (0, 1), stats
    assert record() == before
    assert not list(run.glob("work/attempt-2"))


def test_a_worker_woken_past_its_self_fence_renews_no_lease(
    tmp_path: Path, host: Host, queue: Queue, workers: list[subprocess.Popen[str]]
) -> None:
    # Woken from a freeze longer than its self-fence, the worker's watchdog canceled its run,
    # but its heartbeat thread still renewed the lease (a heartbeat_gap of the freeze): the
    # ticket stayed leased, no one working under it, for a whole TTL more before a reaper
    # could take it (chaos seed 4 on PostgreSQL: sigstop reclaim latency p99 7.2 s, bound 5 s).
    running, frozen = _worker_running(tmp_path, host, queue, workers, reaper=False)
    os.kill(frozen.pid, signal.SIGSTOP)
    before = queue.get(running.id)
    wait_until(lambda: queue.expired(queue.now()))  # silent past its TTL, so its self-fence
    os.kill(frozen.pid, signal.SIGCONT)
    run = Path(running.run_path or "")
    wait_until(lambda: (run / "final.json").exists())  # the watchdog canceled the run
    assert json.loads((run / "final.json").read_text())["status"] == "canceled"
    after = queue.get(running.id)
    assert (after.lease_epoch, after.last_heartbeat_at) == (1, before.last_heartbeat_at)
    assert (after.lease_expires_at, after.status) == (before.lease_expires_at, "running")
    assert "heartbeat_gap" not in _events(queue, running)
    assert [t.id for t in queue.expired(queue.now())] == [running.id]  # a reaper takes it now
