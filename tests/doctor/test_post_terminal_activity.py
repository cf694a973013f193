"""``post_terminal_activity``: events after the run's terminal event or final.json."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from doctor import DoctorConfig, Finding, Severity, diagnose_path
from fixtures._kilroy import KilroyRun, Stream

START = "2026-04-28T09:00:00Z"


def _run(tmp_path: Path, *, pid: int = 99999999) -> KilroyRun:
    run = KilroyRun(tmp_path, "r1", START)
    run.run_pid(pid)
    return run


def _findings(run: KilroyRun) -> list[Finding]:
    diagnosis = diagnose_path(
        run.finish(),
        DoctorConfig(now=run.start_ns / 1e9 + 7200, checks=("post_terminal_activity",)),
    )
    return list(diagnosis.findings)


def _attempt(s: Stream, node: str, t: float, status: str = "success") -> None:
    s.emit("stage_attempt_start", t, node_id=node, attempt=1, max=1)
    s.emit("stage_attempt_end", t + 4, node_id=node, attempt=1, max=1, status=status)


def _failed_then_resumed(run: KilroyRun) -> None:
    top = run.stream()
    _attempt(top, "build", 1, "fail")
    run.final("fail", "exit status 1", at=5.2)
    top.emit("run_failed", 5.3, status="fail", reason="exit status 1")
    _attempt(top, "build", 600)
    top.emit("stage_heartbeat", 700, node_id="build", elapsed_s=60)


def test_progress_after_final_with_a_dead_owner_is_an_error(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _failed_then_resumed(run)

    [finding] = _findings(run)

    assert finding.severity is Severity.ERROR
    assert finding.evidence == dict(finding.evidence) | {
        "events_after": 3,
        "progress_events_after": 2,
        "first_after_at": "2026-04-28T09:10:00Z",
        "first_after_event": "stage_attempt_start",
        "final_status": "fail",
        "final_at": "2026-04-28T09:00:05.2Z",
        "terminal_event": "run_failed",
    }


def test_progress_after_final_with_a_live_owner_is_an_overlapping_resume(tmp_path: Path) -> None:
    run = _run(tmp_path, pid=os.getpid())
    _failed_then_resumed(run)

    [finding] = _findings(run)

    assert finding.severity is Severity.WARNING
    assert "overlapping resume" in finding.summary


def test_git_push_and_the_terminal_event_may_follow_final_json(tmp_path: Path) -> None:
    run = _run(tmp_path)
    top = run.stream()
    _attempt(top, "build", 1)
    run.final("success", at=5.5)
    top.emit("git_push_start", 5.6, remote="origin", branch="attractor/run/r1")
    top.emit("git_push_failed", 9.0, remote="origin", branch="attractor/run/r1", error="denied")
    top.emit("run_completed", 9.1, status="success")

    assert _findings(run) == []


def test_the_ending_s_own_events_before_its_terminal_event_are_not_activity(
    tmp_path: Path,
) -> None:
    # Real run graph_outputs: the outputs are copied after final.json, a missing one warned
    # of, then run_completed.
    run = _run(tmp_path)
    top = run.stream()
    _attempt(top, "write", 1)
    run.final("success", at=5.5)
    top.emit("warning", 5.6, message='output: declared output "missing.txt" not found')
    top.emit("run_completed", 5.7, status="success")

    assert _findings(run) == []


def test_events_after_final_json_before_a_terminal_event_of_another_outcome_are_activity(
    tmp_path: Path,
) -> None:
    # The run_completed is a later process's (it did not rewrite final.json): what came before
    # it is that process's work, not the failed run's ending.
    run = _run(tmp_path)
    top = run.stream()
    _attempt(top, "build", 1, "fail")
    run.final("fail", "exit status 1", at=5.2)
    _attempt(top, "build", 600)
    top.emit("run_completed", 605, status="success")

    [finding] = _findings(run)

    assert finding.evidence["first_after_event"] == "stage_attempt_start"
    assert finding.evidence["events_after"] == 2


def test_anything_after_the_last_terminal_event_is_reported(tmp_path: Path) -> None:
    run = _run(tmp_path)
    top = run.stream()
    _attempt(top, "build", 1)
    top.emit("run_completed", 5.3, status="success")  # no final.json: a HEAD run's only signal
    top.emit("git_push_start", 5.6, remote="origin", branch="attractor/run/r1")

    [finding] = _findings(run)

    assert finding.evidence["events_after"] == 1
    assert finding.evidence["first_after_event"] == "git_push_start"
    assert finding.evidence["final_at"] is None


def test_heartbeats_alone_after_the_end_are_a_warning(tmp_path: Path) -> None:
    run = _run(tmp_path)
    top = run.stream()
    _attempt(top, "build", 1)
    run.final("success", at=5.2)
    top.emit("run_completed", 5.3, status="success")
    top.emit("stage_heartbeat", 60, node_id="build", elapsed_s=59)

    [finding] = _findings(run)

    assert finding.severity is Severity.WARNING
    assert finding.evidence["progress_events_after"] == 0


def test_branch_work_after_the_run_ended_is_reported_in_the_branch(tmp_path: Path) -> None:
    run = _run(tmp_path)
    top = run.stream()
    top.emit("stage_attempt_start", 1, node_id="fan", attempt=1, max=1)
    top.emit("stage_attempt_end", 20, node_id="fan", attempt=1, max=1, status="fail")
    run.final("canceled", "context canceled", at=20.5)
    branch = run.stream("parallel/fan/01-a")
    _attempt(branch, "a", 2, "fail")
    branch.emit("stage_attempt_start", 30, node_id="a", attempt=2, max=4)

    [finding] = _findings(run)

    assert finding.scope == "parallel/fan/01-a"
    assert finding.severity is Severity.ERROR
    assert finding.evidence["first_after_at"] == "2026-04-28T09:00:30Z"


def test_a_resume_that_finished_and_rewrote_final_json_is_not_reported(tmp_path: Path) -> None:
    run = _run(tmp_path)
    top = run.stream()
    _attempt(top, "build", 1, "fail")
    top.emit("run_failed", 5.3, status="fail", reason="exit status 1")
    _attempt(top, "build", 600)
    run.final("success", at=604.5)
    top.emit("run_completed", 604.6, status="success")

    assert _findings(run) == []


def _resume_preamble(s: Stream, t: float) -> None:
    """What ``kilroy attractor resume`` writes before it reads the checkpoint."""
    s.emit("setup_command_start", t, index=0, command="make deps")
    s.emit("setup_command_ok", t + 0.1, index=0, command="make deps", stdout="")
    for step in ("started", "progress", "completed"):
        s.emit(f"input_materialization_{step}", t + 0.2, scope="resume")


def test_a_resume_of_a_run_that_had_ended_and_found_nothing_to_do_is_not_reported(
    tmp_path: Path,
) -> None:
    run = _run(tmp_path)
    top = run.stream()
    _attempt(top, "build", 1)
    run.final("success", at=5.2)
    top.emit("run_completed", 5.3, status="success")
    _resume_preamble(top, 600)  # as the real run resume_after_success: nothing else follows

    assert _findings(run) == []


def _resumed_past_final(run: KilroyRun, *, preamble: bool) -> None:
    """A run that failed (Kilroy's final.json and run_failed), then a resume that started
    build again (after its preamble, or without one) and died there."""
    top = run.stream()
    _attempt(top, "build", 1, "fail")
    run.final("fail", "exit status 1", at=5.2)
    top.emit("run_failed", 5.3, status="fail", reason="exit status 1")
    if preamble:
        _resume_preamble(top, 600)
    top.emit("stage_attempt_start", 601, node_id="build", attempt=1, max=1)


def test_work_a_resume_does_after_its_preamble_sets_kilroys_final_json_aside(
    tmp_path: Path,
) -> None:
    # Kilroy's resume keeps its old final.json until it finishes. Before: the resume's work
    # was reported as activity after the end (error) and the run read `failed`; now the
    # final.json is set aside (docs/findings.md, State): the run never ended again.
    run = _run(tmp_path)
    _resumed_past_final(run, preamble=True)
    assert _findings(run) == []
    diagnosis = diagnose_path(run.finish(), DoctorConfig(now=run.start_ns / 1e9 + 7200))
    assert (diagnosis.state, diagnosis.facts["terminal_reason"]) == ("orphaned", None)
    [missing] = [f for f in diagnosis.findings if f.code == "missing_final"]
    assert missing.evidence["superseded_final"] == "final.json"


@pytest.mark.parametrize(("taken_at", "set_aside"), [(599.0, True), (0.0, False)])
def test_the_runs_lock_taken_after_its_final_json_is_a_resumes_evidence_too(
    tmp_path: Path, taken_at: float, set_aside: bool
) -> None:
    # Without the preamble (materialization off), the lock a resume took after the final.json
    # says the same; the first run's own lock (taken at its start) says nothing.
    run = _run(tmp_path)
    run.run_lock(99999999, None, at=taken_at)
    _resumed_past_final(run, preamble=False)
    found = [f.code for f in _findings(run)]
    assert found == ([] if set_aside else ["post_terminal_activity"])


def _restart_stopped_then_resumed_in_the_base(run: KilroyRun) -> Stream:
    """As the real run loop_restart_sigterm_resumed: a loop restart, a signal in restart-1/
    (whose outcome Kilroy saves there and in the base directory), then a resume that went on
    in the base directory to success and rewrote only the base final.json."""
    top = run.stream()
    _attempt(top, "fetch", 1, "fail")
    top.emit("loop_restart", 5.5, restart_count=1)
    restart = run.stream("restart-1")
    restart.emit("stage_attempt_start", 6, node_id="build", attempt=1, max=4)
    restart.emit(
        "stage_attempt_end", 8, node_id="build", attempt=1, max=4, status="fail",
        failure_reason="stopped by signal terminated",
    )  # fmt: skip
    for scope in ("", "restart-1"):
        run.final("fail", "stopped by signal terminated", at=8.1, scope=scope)
    restart.emit("run_failed", 8.2, status="fail", reason="stopped by signal terminated")
    _attempt(top, "build", 9)
    run.final("success", at=13.5)
    top.emit("run_completed", 13.6, status="success")
    return top


def test_a_resume_that_went_on_in_the_base_directory_after_a_stopped_restart_ended_the_run(
    tmp_path: Path,
) -> None:
    # The run's end is the base final.json the resume wrote last, not restart-1's.
    run = _run(tmp_path)
    _restart_stopped_then_resumed_in_the_base(run)

    assert _findings(run) == []


def test_the_end_of_a_resumed_restart_is_the_terminal_event_written_last(tmp_path: Path) -> None:
    run = _run(tmp_path)
    top = _restart_stopped_then_resumed_in_the_base(run)
    top.emit("stage_heartbeat", 60, node_id="build", elapsed_s=51)

    [finding] = _findings(run)

    assert (finding.scope, finding.severity) == ("", Severity.WARNING)
    assert finding.evidence == dict(finding.evidence) | {
        "events_after": 1,
        "final_status": "success",
        "final_at": "2026-04-28T09:00:13.5Z",
        "terminal_event": "run_completed",
        "terminal_at": "2026-04-28T09:00:13.6Z",
    }
