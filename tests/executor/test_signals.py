"""SIGTERM/SIGINT to a process running ``run_pipeline``: the stage's process group goes, and the
run still terminalizes with ``final.json`` status ``canceled``."""

from __future__ import annotations

import json
import signal
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
