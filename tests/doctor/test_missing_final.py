"""``missing_final``: scopes that stopped without a final.json."""

from __future__ import annotations

import os
from pathlib import Path

from doctor import Diagnosis, DoctorConfig, Finding, Severity, diagnose_path
from fixtures._kilroy import KilroyRun, fanout_dispatched_again

START = "2026-02-10T16:00:00Z"
DEAD = 99999999


def _run(tmp_path: Path, *, pid: int = DEAD, native: bool = False) -> KilroyRun:
    run = KilroyRun(tmp_path, "r1", START)
    run.run_pid(pid)
    run.run_config(stall_timeout_ms=600_000)
    if native:
        run.manifest(layout="rundoctor-native/1")
    else:
        run.manifest()
    return run


def _diagnose(run: KilroyRun, after_s: float) -> Diagnosis:
    path = run.finish()
    now = run.start_ns / 1e9 + after_s
    return diagnose_path(path, DoctorConfig(now=now, checks=("missing_final",)))


def _by_scope(diagnosis: Diagnosis) -> dict[str, Finding]:
    return {f.scope: f for f in diagnosis.findings if f.code == "missing_final"}


def _fan_out(run: KilroyRun, *, second_open: bool = True) -> None:
    top = run.stream()
    top.emit("stage_attempt_start", 1.0, node_id="fan", attempt=1, max=1)
    a = run.stream("parallel/fan/01-a")
    a.emit("stage_attempt_start", 2.0, node_id="a", attempt=1, max=4)
    a.emit("stage_attempt_end", 30.0, node_id="a", attempt=1, max=4, status="success")
    b = run.stream("parallel/fan/02-b")
    b.emit("stage_attempt_start", 2.5, node_id="b", attempt=1, max=4)
    if not second_open:
        b.emit("stage_attempt_end", 40.0, node_id="b", attempt=1, max=4, status="success")


def test_orphaned_run_without_final_is_critical_and_terminalizable(tmp_path: Path) -> None:
    run = _run(tmp_path)
    top = run.stream()
    top.emit("stage_attempt_start", 10.0, node_id="build", attempt=1, max=4)
    top.emit("stage_heartbeat", 70.0, node_id="build", elapsed_s=60)

    finding = _by_scope(_diagnose(run, 3600))[""]

    assert finding.severity is Severity.CRITICAL
    assert finding.repair == "terminalize"
    assert finding.evidence["last_progress_at"] == "2026-02-10T16:00:10Z"
    assert finding.evidence["idle_s"] == 3590.0
    assert finding.evidence["owner_pid"] == DEAD
    assert finding.evidence["owner_alive"] is False
    assert finding.evidence["open_attempts"] == ["build"]


def test_stalled_run_with_a_live_owner_is_an_error_without_repair(tmp_path: Path) -> None:
    run = _run(tmp_path, pid=os.getpid())
    top = run.stream()
    top.emit("stage_attempt_start", 10.0, node_id="build", attempt=1, max=4)
    top.emit("stage_heartbeat", 3500.0, node_id="build", elapsed_s=3490)

    diagnosis = _diagnose(run, 3600)
    finding = _by_scope(diagnosis)[""]

    assert diagnosis.state == "stalled"
    assert finding.severity is Severity.ERROR
    assert finding.repair is None
    assert finding.evidence["owner_alive"] is True


def test_running_run_is_not_reported(tmp_path: Path) -> None:
    run = _run(tmp_path, pid=os.getpid())
    run.stream().emit("stage_attempt_start", 10.0, node_id="build", attempt=1, max=4)

    diagnosis = _diagnose(run, 60)

    assert diagnosis.state == "running"
    assert _by_scope(diagnosis) == {}


def test_kilroy_branches_are_not_reported_when_the_run_terminalized(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _fan_out(run, second_open=False)
    run.stream().emit("stage_attempt_end", 41.0, node_id="fan", attempt=1, max=1, status="success")
    run.final("success", at=42.0)

    assert _by_scope(_diagnose(run, 3600)) == {}


def test_kilroy_branches_are_reported_when_the_run_never_terminalized(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _fan_out(run)

    found = _by_scope(_diagnose(run, 3600))

    assert set(found) == {"", "parallel/fan/01-a", "parallel/fan/02-b"}
    assert found["parallel/fan/01-a"].severity is Severity.ERROR
    assert found["parallel/fan/01-a"].evidence["open_attempts"] == []
    assert found["parallel/fan/02-b"].evidence["open_attempts"] == ["b"]
    assert found["parallel/fan/02-b"].evidence["last_progress_at"] == "2026-02-10T16:00:02.5Z"
    assert found[""].evidence["open_attempts"] == ["fan"]


def test_native_branch_without_final_is_reported_even_when_the_run_finished(
    tmp_path: Path,
) -> None:
    run = _run(tmp_path, native=True)
    _fan_out(run, second_open=False)
    run.final("success", at=40.5, scope="parallel/fan/02-b")
    run.stream().emit("stage_attempt_end", 41.0, node_id="fan", attempt=1, max=1, status="success")
    run.final("success", at=42.0)

    found = _by_scope(_diagnose(run, 3600))

    assert set(found) == {"parallel/fan/01-a"}
    assert found["parallel/fan/01-a"].severity is Severity.ERROR


def test_torn_final_json_counts_as_missing(tmp_path: Path) -> None:
    run = _run(tmp_path)
    run.stream().emit("stage_attempt_start", 10.0, node_id="build", attempt=1, max=4)
    run.write_text("final.json", '{"status": "succ')

    finding = _by_scope(_diagnose(run, 3600))[""]

    assert finding.severity is Severity.CRITICAL
    assert finding.evidence["final_json_present"] is True


def test_a_start_a_resume_superseded_is_not_an_open_attempt(tmp_path: Path) -> None:
    # Killed while build ran, resumed (Kilroy starts build's attempt 1 again in the same
    # stream), killed again: build has one open attempt, the latest start (FINDINGS.md).
    run = _run(tmp_path)
    top = run.stream()
    top.emit("stage_attempt_start", 1.0, node_id="prep", attempt=1, max=4)
    top.emit("stage_attempt_end", 2.0, node_id="prep", attempt=1, max=4, status="success")
    top.emit("stage_attempt_start", 3.0, node_id="build", attempt=1, max=1)
    top.emit("stage_attempt_start", 60.0, node_id="build", attempt=1, max=1)

    diagnosis = _diagnose(run, 3600)
    finding = _by_scope(diagnosis)[""]

    assert finding.evidence["open_attempts"] == ["build"]
    assert "build, build" not in finding.summary
    assert diagnosis.facts["current_node"] == "build"


def test_a_fanout_a_resume_ran_again_to_its_end_is_not_where_the_run_is(tmp_path: Path) -> None:
    # The killed run's fan-out start stays unmatched; the resume's own start of it ended and
    # the run went on to verify, which is where it is.
    run = _run(tmp_path)
    top = run.stream()
    top.emit("stage_attempt_start", 1.0, node_id="fan", attempt=1, max=1)
    top.emit("stage_attempt_start", 60.0, node_id="fan", attempt=1, max=1)
    top.emit("stage_attempt_end", 90.0, node_id="fan", attempt=1, max=1, status="success")
    top.emit("edge_selected", 91.0, from_node="fan", to_node="verify")
    top.emit("stage_attempt_start", 92.0, node_id="verify", attempt=1, max=1)
    run.stream("parallel/fan/pass1/01-a").emit(
        "stage_attempt_start", 2.0, node_id="a", attempt=1, max=1
    )

    diagnosis = _diagnose(run, 3600)

    assert diagnosis.facts["current_node"] == "verify"
    assert _by_scope(diagnosis)[""].evidence["open_attempts"] == ["verify"]


def test_a_branch_a_resume_dispatched_again_is_not_done_by_its_parents_earlier_record(
    tmp_path: Path,
) -> None:
    # The parent saw a finish; the run was killed, and its resume dispatched fan again into
    # the same directories (real run fanout_resumed_killed): a runs again, killed with the
    # resumed run. The earlier record is of the dispatch before: a is orphaned, not succeeded.
    run = _run(tmp_path)
    fanout_dispatched_again(run)

    diagnosis = _diagnose(run, 3600)
    found = _by_scope(diagnosis)

    states = {b["scope"]: b["state"] for b in diagnosis.facts["branches"]}
    assert states == {"parallel/fan/pass1/01-a": "orphaned", "parallel/fan/pass1/02-b": "succeeded"}
    assert set(found) == {"", "parallel/fan/pass1/01-a"}
    assert found["parallel/fan/pass1/01-a"].evidence["open_attempts"] == ["a"]
    assert found[""].evidence["open_attempts"] == ["fan"]
