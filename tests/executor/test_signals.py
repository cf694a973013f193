"""SIGTERM/SIGINT to a process running ``run_pipeline``: the stage's process group goes, and the
run still terminalizes with ``final.json`` status ``canceled``."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import doctor

REPO = Path(__file__).resolve().parents[2]
CHILD = """
import sys
from pathlib import Path
from executor import ExecutorConfig, run_pipeline
cfg = ExecutorConfig(stage_grace_s=0.5, heartbeat_interval_s=0.1)
r = run_pipeline(Path(sys.argv[1]), Path(sys.argv[2]), cfg, run_id="sig")
print(r.status)
"""
GRAPH = """digraph sig {
  start [shape=Mdiamond]
  exit [shape=Msquare]
  slow [shape=parallelogram,
        tool_command="echo $$ > stage.pid; sleep 60 & echo $! > child.pid; wait"]
  after [shape=parallelogram, tool_command="touch after"]
  start -> slow -> after -> exit
}
"""


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def _wait_for(path: Path, within: float = 15.0) -> int:
    end = time.monotonic() + within
    while not (path.is_file() and path.read_text().strip()):
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.02)
    return int(path.read_text())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_cancels_the_stage_group_and_final_json_says_canceled(
    tmp_path: Path, sig: signal.Signals
) -> None:
    (tmp_path / "g.dot").write_text(GRAPH)
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path / "g.dot"), str(tmp_path / "runs")],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run = tmp_path / "runs" / "sig"
    try:
        stage = _wait_for(run / "worktree" / "stage.pid")
        child = _wait_for(run / "worktree" / "child.pid")
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert (proc.returncode, out.strip()) == (0, "canceled"), err
    time.sleep(0.1)  # the orphaned sleep is reaped by init
    assert not _alive(stage) and not _alive(child)
    final = json.loads((run / "final.json").read_text())
    assert final["status"] == "canceled"
    assert final["failure_reason"] == (
        f"canceled by signal {sig.name}; the run stopped at node 'slow'"
    )
    lines = [json.loads(x) for x in (run / "progress.ndjson").read_text().splitlines()]
    end = next(e for e in lines if e["event"] == "stage_attempt_end" and e["node_id"] == "slow")
    assert (end["failure_class"], end["signal"]) == ("canceled", "SIGTERM")
    assert (lines[-1]["event"], lines[-1]["status"]) == ("run_failed", "canceled")
    assert not (run / "worktree" / "after").exists()
    d = doctor.diagnose_path(run, doctor.DoctorConfig())
    assert d.state == "canceled"
    assert [f for f in d.findings if f.severity >= doctor.Severity.ERROR] == []


#: How a frozen process is stopped: by hand (continue it, then terminate it), and as systemd
#: and bash's ``kill`` stop a stopped job (terminate it, then continue it).
STOP_ORDERS = {
    "CONT-then-TERM": (signal.SIGCONT, signal.SIGTERM),
    "TERM-then-CONT": (signal.SIGTERM, signal.SIGCONT),
}


@pytest.mark.parametrize("order", list(STOP_ORDERS))
def test_a_frozen_worker_stopped_with_sigterm_and_sigcont_releases_its_ticket_and_exits(
    tmp_path: Path, order: str
) -> None:
    # Linux hands a signal sent right after a SIGCONT to another thread than the main one:
    # the worker's SIGTERM handler waited behind the main thread's join of its slots, and
    # the worker went on claiming. Three workers: each lost the signal three times in four.
    go = tmp_path / "go"
    graph = tmp_path / "wait.dot"
    graph.write_text(
        "digraph p { start [shape=Mdiamond]; exit [shape=Msquare];\n"
        f'  work [shape=parallelogram, tool_command="while [ ! -e {go} ]; do sleep 0.05; done"];'
        "\n  start -> work -> exit }\n"
    )
    db = str(tmp_path / "queue.db")
    doctor_cli = [sys.executable, "-m", "doctor"]
    for _ in range(3):
        subprocess.run([*doctor_cli, "enqueue", graph, "--db", db], check=True, timeout=60)
    worker_cmd = [*doctor_cli, "worker", "--db", db, "--root", tmp_path / "runs", "-q"]
    # A lease of a minute: a freeze this short must end in a clean release, not a fence.
    workers = [
        subprocess.Popen([*map(str, worker_cmd), "--lease-ttl", "60s"], cwd=REPO) for _ in range(3)
    ]
    try:
        with contextlib.closing(sqlite3.connect(db)) as q:
            end = time.monotonic() + 60
            running = "SELECT count(*) FROM tickets WHERE status = 'running'"
            while q.execute(running).fetchone()[0] != 3:
                assert time.monotonic() < end, "the workers never started their tickets"
                time.sleep(0.05)
        for w in workers:
            os.kill(w.pid, signal.SIGSTOP)
        for w in workers:
            for sig in STOP_ORDERS[order]:
                os.kill(w.pid, sig)
        codes = [w.wait(timeout=30) for w in workers]
    finally:
        go.touch()
        for w in workers:
            if w.poll() is None:  # a worker that lost its SIGTERM: not left behind
                os.kill(w.pid, signal.SIGCONT)
                w.kill()
                w.wait()
    assert codes == [0, 0, 0]
    with contextlib.closing(sqlite3.connect(db)) as q:
        rows = q.execute("SELECT status, lease_epoch FROM tickets").fetchall()
    assert sorted(rows) == [("todo", 1)] * 3  # released, not fenced, and not run again
