"""How fast a lost worker's ticket is claimed again by another worker on the same host.

Each trial uses a fresh SQLite queue under ``.bench/reclaim/`` and two real worker processes
(``python -c`` calling :func:`executor._worker.run_worker`, so the budgets can be short):

* the *victim* (no reaper) claims the only ticket, a pipeline whose stage runs ``sleep 60``;
* once that stage runs, the *rescuer* starts: its slots poll for work and its in-process
  reaper loop runs every ``reaper_interval_s``. After a random part of one reaper interval
  (so the kill falls at a random phase of the rescuer's loop), the victim gets the signal.

Measured: from just before ``os.kill`` to the ``claimed`` event the rescuer's claim appended
to ``ticket_events`` (both epoch seconds, one host, one clock).

* **SIGKILL** (target 2 s, issue 3): the reaper sees the owner's pid (plus start time) gone
  and reclaims at once, without waiting for the lease. The benchmark waits for the killed
  victim at once, as a worker's parent (a shell, systemd) would; an unreaped zombie still
  looks alive.
* **SIGSTOP** (target lease TTL + reaper interval): the frozen worker's pid lives, so only
  the expired lease gives it away.

p99 is the nearest-rank percentile: with this few trials it is the slowest one.
"""

from __future__ import annotations

import json
import math
import os
import random
import select
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench._common import BENCH_DIR, Result
from executor import ExecutorConfig, open_queue
from executor._reaper import kill_stage_groups
from rundoctor.paths import remove_tree

__all__ = ["CASES", "Case", "run"]

REPO = Path(__file__).resolve().parent.parent

_WORKER = """
import json, signal, sys, threading
from pathlib import Path
from executor import ExecutorConfig
from executor._worker import run_worker
url, root, name, fields, poll_s, reaper, wait = json.loads(sys.argv[1])
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
if wait:  # imports done; start when told to
    sys.stdin.readline()
print("ready", flush=True)
run_worker(url, Path(root), ExecutorConfig(**fields), name=name, poll_s=poll_s,
           reaper=reaper, stop=stop)
"""

_PIPELINE = """digraph lost {
  start [shape=Mdiamond]
  exit  [shape=Msquare]
  work  [shape=parallelogram, tool_command="sleep 60"]
  start -> work -> exit
}
"""


@dataclass(frozen=True)
class Case:
    """One way to lose a worker, with the budgets the workers run with."""

    name: str
    sig: signal.Signals
    trials: int
    config: ExecutorConfig
    poll_s: float  # the rescuer's slots look for claimable work this often

    @property
    def target_s(self) -> float:
        if self.sig == signal.SIGKILL:
            return 2.0
        return self.config.lease_ttl_s + self.config.reaper_interval_s

    @property
    def note(self) -> str:
        c = self.config
        return (
            f"{self.trials} trials, SQLite; heartbeat {c.heartbeat_interval_s:g}s, "
            f"lease TTL {c.lease_ttl_s:g}s, reaper every {c.reaper_interval_s:g}s, "
            f"claim poll {self.poll_s:g}s, claim grace {c.claim_grace_s:g}s"
        )


def _budgets(*, reaper_interval_s: float) -> ExecutorConfig:
    """Short, valid budgets: heartbeat 0.2 s × 2 < self-fence 1 s < lease TTL 1.5 s."""
    return ExecutorConfig(
        heartbeat_interval_s=0.2,
        heartbeat_misses=2,
        self_fence_s=1.0,
        lease_ttl_s=1.5,
        reaper_interval_s=reaper_interval_s,
        claim_grace_s=0.5,
        stage_grace_s=0.3,
    ).validate()


CASES = (
    Case("SIGKILL", signal.SIGKILL, 10, _budgets(reaper_interval_s=1.0), poll_s=0.1),
    Case("SIGSTOP", signal.SIGSTOP, 5, _budgets(reaper_interval_s=0.5), poll_s=0.1),
)


def _spawn(
    url: str, root: Path, name: str, case: Case, *, reaper: bool, wait: bool
) -> subprocess.Popen[str]:
    defaults = asdict(ExecutorConfig())
    fields = {k: v for k, v in asdict(case.config).items() if v != defaults[k]}
    args = json.dumps([url, str(root), name, fields, case.poll_s, reaper, wait])
    return subprocess.Popen(
        [sys.executable, "-c", _WORKER, args],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _until(what: str, check: Any, timeout: float = 30.0, every: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise RuntimeError(f"reclaim bench: timed out after {timeout:g}s waiting for {what}")


def _ready(proc: subprocess.Popen[str], timeout: float = 30.0) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    readable, _, _ = select.select([proc.stdout], [], [], timeout)
    if not readable or proc.stdout.readline().strip() != "ready":
        raise RuntimeError(f"reclaim bench: the rescuer did not start (exit {proc.poll()})")


def _trial(case: Case, index: int, rng: random.Random) -> float:
    """Seconds from the signal to the rescuer's claim of the victim's ticket."""
    base = BENCH_DIR / "reclaim" / f"{case.name.lower()}-{index}"
    remove_tree(base, ignore_errors=True)
    base.mkdir(parents=True)
    graph, runs = base / "lost.dot", base / "runs"
    graph.write_text(_PIPELINE)
    url = f"sqlite:///{base / 'queue.db'}"
    queue = open_queue(url)
    ticket = queue.enqueue("lost", str(graph))
    victim = _spawn(url, runs, "victim", case, reaper=False, wait=False)
    rescuer = _spawn(url, runs, "rescuer", case, reaper=True, wait=True)  # imports meanwhile
    try:

        def stage_running() -> bool:
            t = queue.get(ticket.id)
            return bool(t.status == "running" and t.run_path) and any(
                Path(str(t.run_path)).glob("**/process.json")
            )

        _until("the victim's stage to start", stage_running)
        _ready(rescuer)
        time.sleep(rng.uniform(0, case.config.reaper_interval_s))  # a random loop phase
        sent = time.time()
        os.kill(victim.pid, case.sig)
        if case.sig == signal.SIGKILL:
            victim.wait()

        def rescued() -> float | None:
            for e in queue.events(ticket.id):
                if e.event == "claimed" and (e.worker or "").startswith("rescuer") and e.at >= sent:
                    return e.at
            return None

        claimed_at: float = _until("the rescuer's claim", rescued)
        return claimed_at - sent
    finally:
        rescuer.terminate()
        victim.kill()  # a stopped process dies of SIGKILL too
        for proc in (rescuer, victim):
            try:
                proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
        kill_stage_groups(runs)  # any stage left behind by a failed trial
        queue.close()


def _nearest_rank(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


def run() -> list[Result]:
    """p50 and p99 of signal-to-reclaim for a SIGKILLed and a SIGSTOPped worker."""
    rng = random.Random(3)
    results: list[Result] = []
    for case in CASES:
        seconds = [_trial(case, i, rng) for i in range(case.trials)]
        for label, value in (
            ("p50", statistics.median(seconds)),
            ("p99", _nearest_rank(seconds, 0.99)),
        ):
            results.append(
                Result(
                    f"reclaim after {case.name} {label}",
                    value,
                    case.target_s,
                    "s",
                    note=case.note,
                )
            )
    return results
