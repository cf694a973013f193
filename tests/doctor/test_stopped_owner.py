"""A run whose owner is alive but stopped (SIGSTOP, state ``T``) is named as stopped, its
advice is ``kill -CONT``, never a terminalize of a live owner's run; and a fan-out of a live
owner is a join that may still come, not one nobody will make. Each against the real Kilroy
engine: its run is diagnosed while the engine is held, then let go.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from rich.console import Console

from doctor import DETECTORS, STOPPED_OWNER_HINT, Diagnosis, DoctorConfig, diagnose, scan
from doctor._render import render_diagnosis
from doctor._repair import plan_repairs
from reports import render_postmortem
from rundoctor.liveness import process_state

GRAPHS = Path(__file__).resolve().parents[2] / "fixtures" / "kilroy" / "graphs"
KILROY_RUN = Path(os.environ.get("KILROY_HOME", "/work/shared/kilroy")) / "run.sh"

pytestmark = pytest.mark.skipif(
    not KILROY_RUN.exists(), reason="the real Kilroy engine is not installed"
)


def _text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _until(test: Callable[[], bool], proc: subprocess.Popen[bytes], what: str) -> None:
    """Poll until ``test`` holds; the engine ending first fails the test."""
    while not test():
        assert proc.poll() is None, f"kilroy ended before {what}"
        time.sleep(0.05)


@contextlib.contextmanager
def _engine(tmp_path: Path, graph: str, run_id: str, marker: str) -> Iterator[int]:
    """Run the real engine on ``graph`` until its stream holds ``marker``; yield its pid
    (the run's owner, run.pid); kill it and its stages on the way out."""
    logs = tmp_path / run_id
    with subprocess.Popen(
        [str(KILROY_RUN), str(GRAPHS / graph), run_id, str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as proc:
        try:
            _until(lambda: marker in _text(logs / "progress.ndjson"), proc, marker)
            yield int((logs / "run.pid").read_text())
        finally:
            kilroy = psutil.Process(int((logs / "run.pid").read_text()))
            stages = kilroy.children(recursive=True)
            kilroy.kill()
            with contextlib.suppress(ProcessLookupError):
                os.kill(kilroy.pid, signal.SIGCONT)  # a stopped process takes SIGKILL anyway
            for p in stages:
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.kill()
            proc.wait(timeout=60)


def _hold(pid: int, sig: signal.Signals) -> None:
    """Send SIGSTOP or SIGCONT and wait until ``/proc`` shows the engine stopped or not."""
    os.kill(pid, sig)
    want = sig == signal.SIGSTOP
    while (state := process_state(pid)) is not None and state.stopped != want:
        time.sleep(0.01)


def _rendered(d: Diagnosis) -> str:
    console = Console(file=io.StringIO(), width=200)
    render_diagnosis(console, d, DETECTORS, verbose=False)
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_a_run_whose_owner_is_stopped_is_stalled_and_the_advice_is_to_continue_it(
    tmp_path: Path,
) -> None:
    config = DoctorConfig(roots=(tmp_path,))
    with _engine(tmp_path, "long_stage.dot", "held", '"node_id":"build"') as pid:
        assert diagnose("held", config).state == "running"
        _hold(pid, signal.SIGSTOP)
        held = diagnose("held", config)
        assert held.state == "stalled"
        assert held.facts["owner_alive"] is True and held.facts["owner_stopped"] is True
        (finding,) = held.findings
        assert finding.code == "missing_final" and finding.repair is None
        assert f"owner pid {pid} is stopped" in finding.summary
        assert f"kill -CONT {pid}" in finding.summary
        assert finding.evidence["owner_stopped"] is True
        assert finding.evidence["open_attempts"] == ["build"]
        assert plan_repairs(held, config) == []
        text = _rendered(held)
        assert f"kill -CONT {pid}" in text and "doctor repair" not in text
        # The postmortem states the same fact, in the console's words.
        report = render_postmortem(held)
        assert f"- Owner process: pid `{pid}`, alive but stopped (state T): " in report
        assert f"{STOPPED_OWNER_HINT}: `kill -CONT {pid}`" in report
        summary = report.split("## Executive summary")[1].split("## ")[0]
        assert f"(pid `{pid}`) is alive but stopped (state T)" in summary
        # The scan (and its cache) says the same, and notices when the owner goes on.
        cached = DoctorConfig(roots=(tmp_path,), cache_dir=tmp_path / "cache")
        assert [d.state for d in scan(cached).diagnoses] == ["stalled"]
        _hold(pid, signal.SIGCONT)
        going = diagnose("held", config)
        assert going.state == "running" and going.facts["owner_stopped"] is False
        assert going.findings == ()
        assert [d.state for d in scan(cached).diagnoses] == ["running"]


def test_a_fanout_whose_owner_is_stopped_is_a_pending_join(tmp_path: Path) -> None:
    config = DoctorConfig(roots=(tmp_path,))
    with _engine(tmp_path, "fanout_killed.dot", "held_fanout", '"branch_subgraph_done"') as pid:
        _hold(pid, signal.SIGSTOP)
        held = diagnose("held_fanout", config)
        (fanout,) = [f for f in held.findings if f.code == "unjoined_fanout"]
        assert "nobody will join" not in fanout.summary
        assert "the join is pending" in fanout.summary and f"kill -CONT {pid}" in fanout.summary
        assert f"kill -CONT {pid}" in _rendered(held)
        (branch,) = [f for f in held.findings if f.code == "missing_final" and f.scope]
        assert branch.scope.endswith("02-impl_b") and f"kill -CONT {pid}" in branch.summary
        assert "before cleaning the run up" not in branch.summary


def test_a_stalled_fanout_whose_owner_is_alive_may_still_join(tmp_path: Path) -> None:
    with _engine(tmp_path, "fanout_killed.dot", "slow_fanout", '"branch_subgraph_done"'):
        config = DoctorConfig(roots=(tmp_path,))
        stall = diagnose("slow_fanout", config).facts["stall_timeout_s"]
        # Judged past the stall timeout, the engine alive and working: stalled, not dead.
        late = diagnose("slow_fanout", config.with_now(time.time() + stall + 5))
        assert late.state == "stalled" and late.facts["owner_stopped"] is False
        (fanout,) = [f for f in late.findings if f.code == "unjoined_fanout"]
        assert "nobody will join" not in fanout.summary
        assert "the join may still come" in fanout.summary
        assert "the join may still come" in _rendered(late)
        (branch,) = [f for f in late.findings if f.code == "missing_final" and f.scope]
        assert "it may still go on" in branch.summary
        assert "before cleaning the run up" not in branch.summary
