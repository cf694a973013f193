"""``stale_heartbeat``: how its summaries name the scope the heartbeats came in."""

from __future__ import annotations

from pathlib import Path

from doctor import DoctorConfig, Finding, diagnose_path
from fixtures._kilroy import KilroyRun, Stream

START = "2026-02-10T16:00:00Z"


def _findings(run: KilroyRun) -> list[Finding]:
    diagnosis = diagnose_path(
        run.finish(),
        DoctorConfig(now=run.start_ns / 1e9 + 7200, checks=("stale_heartbeat",)),
    )
    return list(diagnosis.findings)


def _leaks(s: Stream, node: str, t: float) -> None:
    """``node`` runs and ends, then three of its heartbeats come after its end."""
    s.emit("stage_attempt_start", t, node_id=node, attempt=1, max=1)
    s.emit("stage_attempt_end", t + 5, node_id=node, attempt=1, max=1, status="success")
    for i in range(3):
        s.emit("stage_heartbeat", t + 10 + i, node_id=node, elapsed_s=10 + i)


def _restarted(tmp_path: Path) -> KilroyRun:
    run = KilroyRun(tmp_path, "r1", START)
    run.run_pid(99999999)
    base = run.stream()
    base.emit("stage_attempt_start", 1, node_id="fetch", attempt=1, max=1)
    base.emit("stage_attempt_end", 2, node_id="fetch", attempt=1, max=1, status="fail")
    base.emit("loop_restart", 3, restart_count=1)
    return run


def test_heartbeats_in_a_restart_are_named_as_the_top_levels_restart_not_a_branch(
    tmp_path: Path,
) -> None:
    run = _restarted(tmp_path)
    _leaks(run.stream("restart-1"), "impl", 10)

    [finding] = _findings(run)

    assert finding.scope == "restart-1"
    assert finding.summary.startswith(
        "3 stage heartbeats in the top level's restart-1 name nodes with no open attempt"
    ), finding.summary


def test_heartbeats_in_a_branch_of_a_restart_are_named_as_the_branch(tmp_path: Path) -> None:
    run = _restarted(tmp_path)
    restart = run.stream("restart-1")
    restart.emit("stage_attempt_start", 10, node_id="fan", attempt=1, max=1)
    _leaks(run.stream("restart-1/parallel/fan/01-a"), "a", 11)
    restart.emit("stage_attempt_end", 40, node_id="fan", attempt=1, max=1, status="success")

    [finding] = _findings(run)

    assert finding.scope == "restart-1/parallel/fan/01-a"
    assert "stage heartbeats in branch restart-1/parallel/fan/01-a name" in finding.summary
