"""``telemetry_divergence``: live.json / checkpoint.json naming another node than the stream."""

from __future__ import annotations

import os
from pathlib import Path

from doctor import DoctorConfig, Finding, Severity, diagnose_path
from fixtures._kilroy import KilroyRun, Stream

START = "2026-02-10T16:00:00Z"


def _run(tmp_path: Path, *, pid: int = 99999999) -> KilroyRun:
    run = KilroyRun(tmp_path, "r1", START)
    run.run_pid(pid)
    run.run_config(stall_timeout_ms=600_000)
    return run


def _findings(run: KilroyRun, after_s: float = 7200) -> list[Finding]:
    diagnosis = diagnose_path(
        run.finish(),
        DoctorConfig(now=run.start_ns / 1e9 + after_s, checks=("telemetry_divergence",)),
    )
    return list(diagnosis.findings)


def _done(s: Stream, node: str, t: float) -> None:
    s.emit("stage_attempt_start", t, node_id=node, attempt=1, max=4)
    s.emit("stage_attempt_end", t + 5, node_id=node, attempt=1, max=4, status="success")


def test_a_stale_heartbeat_in_live_json_of_an_orphaned_fanout_is_an_error(tmp_path: Path) -> None:
    run = _run(tmp_path)
    top = run.stream()
    _done(top, "verify_scaffold", 1)
    _done(top, "check_scaffold", 10)
    top.emit("edge_selected", 15.1, from_node="check_scaffold", to_node="fanout")
    top.emit("stage_attempt_start", 16, node_id="fanout", attempt=1, max=1)
    top.emit("stage_heartbeat", 60, node_id="verify_scaffold", elapsed_s=60)
    run.stream("parallel/fanout/01-a").emit(
        "stage_attempt_start", 17, node_id="a", attempt=1, max=4
    )
    run.checkpoint(at=15.05, current_node="check_scaffold",
                   completed_nodes=["verify_scaffold", "check_scaffold"])  # fmt: skip

    [finding] = _findings(run)

    assert finding.severity is Severity.ERROR
    assert finding.scope == ""
    assert finding.evidence == dict(finding.evidence) | {
        "live_node": "verify_scaffold",
        "checkpoint_node": "check_scaffold",
        "actual_node": "fanout",
    }


def test_live_json_naming_the_running_node_is_consistent(tmp_path: Path) -> None:
    run = _run(tmp_path, pid=os.getpid())
    top = run.stream()
    _done(top, "a", 1)
    top.emit("stage_attempt_start", 10, node_id="b", attempt=1, max=4)
    top.emit("stage_heartbeat", 70, node_id="b", elapsed_s=60)
    run.checkpoint(at=6.1, current_node="a", completed_nodes=["a"])

    assert _findings(run, after_s=80) == []


def test_a_diverging_live_json_of_a_running_scope_is_a_warning(tmp_path: Path) -> None:
    run = _run(tmp_path, pid=os.getpid())
    top = run.stream()
    _done(top, "a", 1)
    top.emit("stage_attempt_start", 10, node_id="b", attempt=1, max=4)
    top.emit("stage_heartbeat", 70, node_id="a", elapsed_s=60)

    [finding] = _findings(run, after_s=80)

    assert finding.severity is Severity.WARNING
    assert finding.evidence["live_node"] == "a"
    assert finding.evidence["actual_node"] == "b"


def test_live_json_naming_a_node_with_an_open_attempt_is_consistent(tmp_path: Path) -> None:
    run = _run(tmp_path)
    top = run.stream()
    top.emit("stage_attempt_start", 1, node_id="a", attempt=1, max=4)
    top.emit("stage_attempt_start", 2, node_id="b", attempt=1, max=4)  # concurrent region
    top.emit("stage_heartbeat", 62, node_id="a", elapsed_s=60)

    assert _findings(run) == []


def test_a_checkpoint_naming_an_unrelated_node_is_a_warning(tmp_path: Path) -> None:
    run = _run(tmp_path)
    top = run.stream()
    _done(top, "a", 1)
    _done(top, "b", 10)
    run.checkpoint(at=16, current_node="zeta", completed_nodes=["zeta"])

    [finding] = _findings(run)

    assert finding.severity is Severity.WARNING
    assert finding.evidence["checkpoint_node"] == "zeta"
    assert finding.evidence["live_node"] == "b"
    assert finding.evidence["actual_node"] == "b"


def test_live_json_without_a_node_is_not_compared(tmp_path: Path) -> None:
    run = _run(tmp_path)
    top = run.stream()
    top.emit("stage_attempt_start", 1, node_id="fan", attempt=1, max=1)
    top.emit("branch_heartbeat", 3, branch_key="a", branch_idle_ms=100)
    run.stream("parallel/fan/01-a").emit("stage_attempt_start", 2, node_id="a", attempt=1, max=4)

    assert _findings(run) == []


def test_a_branch_is_compared_with_its_own_stream(tmp_path: Path) -> None:
    run = _run(tmp_path)
    run.stream().emit("stage_attempt_start", 1, node_id="fan", attempt=1, max=1)
    b = run.stream("parallel/fan/01-dungeon")
    _done(b, "impl_dungeon", 2)
    _done(b, "check_dungeon", 10)
    b.emit("stage_heartbeat", 120, node_id="impl_dungeon", elapsed_s=118)

    [finding] = _findings(run)

    assert finding.scope == "parallel/fan/01-dungeon"
    assert finding.severity is Severity.WARNING  # finished: stale_heartbeat reports the leak
    assert finding.evidence["live_node"] == "impl_dungeon"
    assert finding.evidence["actual_node"] == "check_dungeon"


def test_only_the_latest_restart_speaks_for_the_top_level(tmp_path: Path) -> None:
    run = _run(tmp_path)
    base = run.stream()
    _done(base, "a", 1)
    base.emit("stage_heartbeat", 60, node_id="old", elapsed_s=60)  # superseded by restart-1
    restart = run.stream("restart-1")
    _done(restart, "a", 100)
    restart.emit("stage_attempt_start", 110, node_id="b", attempt=1, max=4)
    restart.emit("stage_heartbeat", 170, node_id="b", elapsed_s=60)

    assert _findings(run) == []


def test_a_restart_a_resume_left_for_the_base_directory_does_not_speak_for_the_top_level(
    tmp_path: Path,
) -> None:
    # A restarted run killed in restart-1 while it slept before b's retry, resumed: Kilroy's
    # resume goes on in the base directory. restart-1's live.json still names b, whose attempt
    # ended; the base directory, where the run is now, is the top level's current logs root.
    run = _run(tmp_path)
    base = run.stream()
    base.emit("stage_attempt_start", 1, node_id="fetch", attempt=1, max=1)
    base.emit("stage_attempt_end", 2, node_id="fetch", attempt=1, max=1, status="fail")
    base.emit("loop_restart", 3, restart_count=1)
    restart = run.stream("restart-1")
    _done(restart, "fetch", 4)
    restart.emit("stage_attempt_start", 10, node_id="b", attempt=1, max=2)
    restart.emit("stage_attempt_end", 11, node_id="b", attempt=1, max=2, status="fail")
    restart.emit("stage_retry_sleep", 12, node_id="b", attempt=1, delay_ms=20_000)
    run.checkpoint("restart-1", at=9.5, current_node="fetch", completed_nodes=["fetch"])
    _done(base, "fetch", 20)
    _done(base, "b", 30)
    _done(base, "c", 40)
    base.emit("stage_heartbeat", 50, node_id="fetch", elapsed_s=30)  # a leak, after the resume
    run.checkpoint(at=45.5, current_node="c", completed_nodes=["fetch", "fetch", "b", "c"])

    [finding] = _findings(run)

    assert finding.scope == ""
    assert finding.evidence == dict(finding.evidence) | {
        "live_node": "fetch",
        "checkpoint_node": "c",
        "actual_node": "c",
    }
