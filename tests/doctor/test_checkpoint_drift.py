"""``checkpoint_drift``: checkpoints that disagree with their event stream."""

from __future__ import annotations

from pathlib import Path

from doctor import DoctorConfig, Finding, Severity, diagnose_path
from doctor._detectors.checkpoint_drift import DUP_MIN_ENTRIES
from fixtures._kilroy import KilroyRun, Stream

START = "2026-02-10T16:00:00Z"
BRANCH = "parallel/fanout/03-impl_monsters"
NEXT = {"impl": "verify", "verify": "check", "check": "impl"}


def _run(tmp_path: Path) -> KilroyRun:
    run = KilroyRun(tmp_path, "r1", START)
    run.run_pid(99999999)
    return run


def _findings(run: KilroyRun) -> list[Finding]:
    diagnosis = diagnose_path(
        run.finish(), DoctorConfig(now=run.start_ns / 1e9 + 7200, checks=("checkpoint_drift",))
    )
    return list(diagnosis.findings)


def _attempt(s: Stream, node: str, t: float, status: str, attempt: int = 1, mx: int = 5) -> None:
    s.emit("stage_attempt_start", t, node_id=node, attempt=attempt, max=mx)
    s.emit("stage_attempt_end", t + 5, node_id=node, attempt=attempt, max=mx, status=status)


def _loop(s: Stream, laps: int, last: str = "success") -> list[str]:
    """impl -> verify -> check laps; verify fails until the last lap (attempt 1 each visit)."""
    done, t = [], 0.0
    for lap in range(laps):
        for node in ("impl", "verify", "check"):
            status = "fail" if node != "impl" and lap < laps - 1 else "success"
            if lap == laps - 1 and node != "impl":
                status = last
            _attempt(s, node, t, status, mx=1 if node == "check" else 4)
            s.emit("edge_selected", t + 5.1, from_node=node, to_node=NEXT[node])
            done.append(node)
            t += 6
    return done


def test_retries_lost_on_a_node_that_never_succeeded_are_an_error(tmp_path: Path) -> None:
    run = _run(tmp_path)
    s = run.stream(BRANCH)
    # The Feb-10 subgraph runner: a revisit starts at the next attempt number.
    for lap in range(3):
        _attempt(s, "impl_monsters", 100 * lap, "fail", attempt=lap + 1)
        _attempt(s, "check_monsters", 100 * lap + 10, "fail", mx=1)
    history = ["impl_monsters", "check_monsters"] * 3
    run.checkpoint(
        BRANCH, at=300, current_node="check_monsters", completed_nodes=history, node_retries={}
    )

    [finding] = _findings(run)

    assert finding.severity is Severity.ERROR
    assert finding.scope == BRANCH and finding.node_id == "impl_monsters"
    assert finding.evidence == dict(finding.evidence) | {
        "completed_nodes_entries": 6,
        "completed_nodes_unique": 2,
        "node_retries_recorded": 0,
        "retries_observed": 2,
        "checkpoint_node": "check_monsters",
        "actual_node": "check_monsters",
        "lost_retries": {"impl_monsters": 2},
    }


def test_retries_followed_by_a_success_are_not_drift(tmp_path: Path) -> None:
    run = _run(tmp_path)
    s = run.stream()
    _attempt(s, "build", 1, "fail", attempt=1)
    _attempt(s, "build", 10, "success", attempt=2)
    run.checkpoint(at=20, current_node="build", completed_nodes=["build"], node_retries={})

    assert _findings(run) == []


def test_recorded_retries_of_a_failed_node_are_not_drift(tmp_path: Path) -> None:
    run = _run(tmp_path)
    s = run.stream()
    _attempt(s, "build", 1, "fail", attempt=1, mx=2)
    _attempt(s, "build", 10, "fail", attempt=2, mx=2)
    run.checkpoint(at=20, current_node="build", completed_nodes=["build"],
                   node_retries={"build": 1})  # fmt: skip

    assert _findings(run) == []


def test_a_legitimate_loop_with_repeated_completed_nodes_is_not_drift(tmp_path: Path) -> None:
    run = _run(tmp_path)
    done = _loop(run.stream(), laps=5)
    assert len(done) < DUP_MIN_ENTRIES
    run.checkpoint(at=1000, current_node="check", completed_nodes=done,
                   node_retries={"impl": 0, "verify": 0, "check": 0})  # fmt: skip

    assert _findings(run) == []


def test_a_duplicate_heavy_history_is_only_a_warning(tmp_path: Path) -> None:
    run = _run(tmp_path)
    done = _loop(run.stream(), laps=8, last="fail")
    run.checkpoint(at=1000, current_node="check", completed_nodes=done, node_retries={})

    [finding] = _findings(run)

    assert finding.severity is Severity.WARNING
    assert finding.evidence["completed_nodes_entries"] == 24
    assert finding.evidence["completed_nodes_unique"] == 3
    assert finding.evidence["duplicate_heavy"] is True
    assert finding.evidence["lost_retries"] == {}


def test_the_loop_history_of_a_run_that_succeeded_is_not_drift(tmp_path: Path) -> None:
    # real run goal_gate_loop_resumed: a long loop, killed, resumed and finished; the
    # history is every visit of the stream and nothing will resume from it
    run = _run(tmp_path)
    done = _loop(run.stream(), laps=8)
    assert len(done) >= DUP_MIN_ENTRIES
    run.checkpoint(at=1000, current_node="check", completed_nodes=done,
                   node_retries={"impl": 0, "verify": 0, "check": 0})  # fmt: skip
    run.final("success", at=1001)

    assert _findings(run) == []


def test_a_checkpoint_behind_the_last_completed_node_is_a_warning(tmp_path: Path) -> None:
    run = _run(tmp_path)
    s = run.stream()
    _attempt(s, "a", 1, "success")
    _attempt(s, "b", 10, "success")
    s.emit("stage_attempt_start", 20, node_id="c", attempt=1, max=4)
    run.checkpoint(at=6.5, current_node="a", completed_nodes=["a"], node_retries={"a": 0})

    [finding] = _findings(run)

    assert finding.severity is Severity.WARNING
    assert finding.evidence["checkpoint_node"] == "a"
    assert finding.evidence["last_completed_node"] == "b"
    assert finding.evidence["actual_node"] == "c"


def test_a_checkpoint_one_node_behind_a_running_node_is_not_drift(tmp_path: Path) -> None:
    run = _run(tmp_path)
    s = run.stream()
    _attempt(s, "a", 1, "success")
    s.emit("edge_selected", 6.1, from_node="a", to_node="b")
    s.emit("stage_attempt_start", 7, node_id="b", attempt=1, max=4)
    run.checkpoint(at=6.05, current_node="a", completed_nodes=["a"], node_retries={"a": 0})

    assert _findings(run) == []


def test_a_failed_attempt_awaiting_its_retry_is_not_yet_completed(tmp_path: Path) -> None:
    run = _run(tmp_path)
    s = run.stream()
    _attempt(s, "a", 1, "success")
    _attempt(s, "b", 10, "fail", attempt=1, mx=4)  # killed during the retry sleep
    run.checkpoint(at=6.05, current_node="a", completed_nodes=["a"], node_retries={"a": 0})

    assert _findings(run) == []


def test_an_open_retry_attempt_is_not_drift(tmp_path: Path) -> None:
    run = _run(tmp_path)
    s = run.stream()
    _attempt(s, "a", 1, "success")
    _attempt(s, "b", 10, "fail", attempt=1)
    s.emit("stage_attempt_start", 16, node_id="b", attempt=2, max=5)
    run.checkpoint(at=6.05, current_node="a", completed_nodes=["a"], node_retries={"a": 0})

    assert _findings(run) == []


def test_a_checkpoint_written_before_the_retried_node_ended_is_its_save_pending(
    tmp_path: Path,
) -> None:
    # b's visit ended and nothing came after it: Kilroy had not saved b's checkpoint yet (or
    # was killed before it did), so the checkpoint names a and could not record b's retries
    run = _run(tmp_path)
    s = run.stream()
    _attempt(s, "a", 1, "success")
    _attempt(s, "b", 10, "fail", attempt=1, mx=2)
    _attempt(s, "b", 20, "fail", attempt=2, mx=2)
    run.checkpoint(at=6.05, current_node="a", completed_nodes=["a"], node_retries={"a": 0})

    assert _findings(run) == []


def test_a_checkpoint_behind_a_node_the_stream_routed_on_from_lags(tmp_path: Path) -> None:
    # Kilroy routes on from a node only after saving its checkpoint: one written before b
    # ended while the stream selected b's edge is behind, whatever came next
    run = _run(tmp_path)
    s = run.stream()
    _attempt(s, "a", 1, "success")
    _attempt(s, "b", 10, "success")
    s.emit("edge_selected", 16, from_node="b", to_node="c")
    run.checkpoint(at=6.05, current_node="a", completed_nodes=["a"], node_retries={"a": 0})

    [finding] = _findings(run)

    assert finding.severity is Severity.WARNING
    assert finding.evidence["checkpoint_node"] == "a"
    assert finding.evidence["last_completed_node"] == "b"


def test_the_exit_node_reached_by_an_edge_is_not_lagging(tmp_path: Path) -> None:
    run = _run(tmp_path)
    s = run.stream()
    _attempt(s, "a", 1, "success")
    s.emit("edge_selected", 6.1, from_node="a", to_node="exit")
    s.emit("run_completed", 6.3, status="success")
    run.checkpoint(at=6.2, current_node="exit", completed_nodes=["a", "exit"],
                   node_retries={"a": 0})  # fmt: skip

    assert _findings(run) == []


def test_a_torn_checkpoint_is_left_to_torn_artifact(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _attempt(run.stream(), "a", 1, "fail", attempt=2)
    run.write_text("checkpoint.json", '{"current_node": "a", "node_ret')

    assert _findings(run) == []


def _concurrent_region_stopped(run: KilroyRun, reason: str) -> None:
    """As the real run concurrent_sigterm: a signal while both nodes of a concurrent region
    (pentagon ``split``) run; Kilroy ends both and checkpoints neither."""
    top = run.stream()
    _attempt(top, "start", 0, "success", mx=1)
    top.emit("edge_selected", 5.1, from_node="start", to_node="split")
    _attempt(top, "split", 6, "success", mx=1)
    top.emit("concurrent_split_started", 11.1, concurrent_id="c1", split_node="split")
    top.emit("stage_attempt_start", 12, node_id="b", attempt=1, max=1)
    top.emit("stage_attempt_start", 12.1, node_id="a", attempt=1, max=4)
    top.emit("stage_attempt_end", 20, node_id="a", attempt=1, max=4, status="fail",
             failure_reason="stopped by signal terminated")  # fmt: skip
    top.emit("stage_attempt_end", 20.1, node_id="b", attempt=1, max=1, status="fail",
             failure_reason="stopped by signal terminated")  # fmt: skip
    top.emit("concurrent_split_completed", 20.2, concurrent_id="c1", failed_nodes=["a", "b"])
    run.final("fail", reason, at=20.3)
    top.emit("run_failed", 20.4, status="fail", reason=reason)
    run.checkpoint(current_node="split", completed_nodes=["start", "split"])


def test_a_checkpoint_at_the_split_of_a_stopped_concurrent_region_is_not_drift(
    tmp_path: Path,
) -> None:
    run = _run(tmp_path)
    reason = 'concurrent region "c1" failed: branch node a failed: stopped by signal terminated'
    _concurrent_region_stopped(run, reason)

    assert _findings(run) == []
