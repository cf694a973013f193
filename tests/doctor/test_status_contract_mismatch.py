"""``status_contract_mismatch``: outcomes the engine did not read, or read differently."""

from __future__ import annotations

from pathlib import Path

from doctor import DoctorConfig, Finding, Severity, diagnose_path
from fixtures._kilroy import KilroyRun

START = "2026-02-10T16:00:00Z"
BRANCH = "parallel/fanout/02-impl_combat_items"
MISSING = "missing status.json (auto_status=false)"


def _run(tmp_path: Path) -> KilroyRun:
    run = KilroyRun(tmp_path, "r1", START)
    run.run_pid(99999999)
    return run


def _findings(run: KilroyRun) -> list[Finding]:
    diagnosis = diagnose_path(
        run.finish(),
        DoctorConfig(now=run.start_ns / 1e9 + 7200, checks=("status_contract_mismatch",)),
    )
    return list(diagnosis.findings)


def _attempt(
    run: KilroyRun, scope: str, node: str, t: float, status: str, reason: str = "", attempt: int = 1
) -> None:
    s = run.stream(scope)
    s.emit("stage_attempt_start", t, node_id=node, attempt=attempt, max=5)
    s.emit(
        "stage_attempt_end",
        t + 10,
        node_id=node,
        attempt=attempt,
        max=5,
        status=status,
        failure_reason=reason,
    )


def test_missing_status_with_a_stranded_success_suggests_ingesting_it(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _attempt(run, BRANCH, "impl_combat_items", 1.0, "fail", MISSING)
    run.write_json(f"{BRANCH}/worktree/.ai/status.json", {"outcome": "SUCCESS"})

    [finding] = _findings(run)

    assert finding.severity is Severity.ERROR
    assert finding.repair == "ingest_status"
    assert finding.scope == BRANCH
    assert finding.evidence == dict(finding.evidence) | {
        "node_id": "impl_combat_items",
        "attempt": 1,
        "failure_reason": MISSING,
        "expected_path": f"{BRANCH}/impl_combat_items/status.json",
        "found_path": f"{BRANCH}/worktree/.ai/status.json",
        "found_outcome": "success",
    }


def test_ingestion_decision_without_a_source_counts_as_missing(tmp_path: Path) -> None:
    run = _run(tmp_path)
    s = run.stream()
    s.emit("stage_attempt_start", 1.0, node_id="impl", attempt=1, max=1)
    s.emit("status_ingestion_decision", 5.0, node_id="impl", source="", copied=False)
    s.emit(
        "stage_attempt_end",
        6.0,
        node_id="impl",
        attempt=1,
        max=1,
        status="fail",
        failure_reason="x",
    )
    run.write_json("worktree/status.json", {"status": "ok"})

    [finding] = _findings(run)

    assert finding.evidence["found_path"] == "worktree/status.json"
    assert finding.evidence["expected_path"] == "impl/status.json"
    assert finding.evidence["found_outcome"] == "success"


def test_stranded_failure_outcome_gets_no_repair(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _attempt(run, "", "impl", 1.0, "fail", MISSING)
    run.write_json("worktree/.ai/runs/r1/status.json", {"status": "fail", "failure_reason": "x"})

    [finding] = _findings(run)

    assert finding.repair is None
    assert finding.evidence["found_outcome"] == "fail"


def test_stranded_file_without_a_failed_attempt_is_ignored(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _attempt(run, "", "impl", 1.0, "success")
    run.write_json("worktree/.ai/status.json", {"outcome": "success"})

    assert _findings(run) == []


def test_missing_status_without_a_stranded_file_is_ignored(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _attempt(run, "", "impl", 1.0, "fail", MISSING)

    assert _findings(run) == []


def test_the_latest_failure_of_the_scope_is_named_and_all_are_counted(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _attempt(run, BRANCH, "impl_combat_items", 1.0, "fail", MISSING)
    _attempt(run, BRANCH, "verify_combat_items", 20.0, "fail", MISSING)
    _attempt(run, BRANCH, "impl_combat_items", 40.0, "fail", MISSING, attempt=2)
    run.write_json(f"{BRANCH}/worktree/.ai/status.json", {"outcome": "success"})

    [finding] = _findings(run)

    assert finding.node_id == "impl_combat_items"
    assert finding.evidence["attempt"] == 2
    assert finding.evidence["failed_attempts"] == 3
    assert finding.evidence["failed_by_node"] == {"impl_combat_items": 2, "verify_combat_items": 1}


def test_canonical_status_contradicting_the_last_attempt_is_reported(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _attempt(run, "", "verify", 1.0, "fail", "exit status 1")
    run.node_status("", "verify", {"status": "success"})

    [finding] = _findings(run)

    assert finding.severity is Severity.ERROR
    assert finding.repair is None
    assert finding.evidence["found_path"] == "verify/status.json"
    assert finding.evidence["found_outcome"] == "success"
    assert finding.evidence["event_status"] == "fail"
    assert finding.evidence["failure_reason"] == "exit status 1"


def test_kilroys_own_rewrites_after_the_last_attempt_are_not_mismatches(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _attempt(run, "", "a", 1.0, "retry", "timeout")  # exhausted retry recorded as fail
    run.node_status("", "a", {"status": "fail", "failure_reason": "timeout"})
    _attempt(run, "", "b", 20.0, "fail", "exit status 1")  # allow_partial
    run.node_status("", "b", {"status": "partial_success"})
    _attempt(run, "", "c", 40.0, "success")  # aliases are normalized
    run.node_status("", "c", {"outcome": "OK"})

    assert _findings(run) == []


def test_status_of_an_open_attempt_is_not_compared(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _attempt(run, "", "a", 1.0, "fail", "x")
    run.stream().emit("stage_attempt_start", 20.0, node_id="a", attempt=2, max=5)
    run.node_status("", "a", {"status": "success"})

    assert _findings(run) == []


SIGNAL = "stopped by signal terminated"


def _fanout_stopped_in_a_restart(run: KilroyRun, *, verify: str | None = None) -> None:
    """As the real engine left it: a loop restart, a signal in restart-1/ just after the
    fan-out par ended ``partial_success`` (Kilroy records the stop in par's status.json, and
    saves its outcome to restart-1/ and the base directory). With ``verify``, a node verify
    ended success before, and its status.json says fail with that reason."""
    run.stream().emit("loop_restart", 1.0, restart_count=1)
    if verify is not None:
        _attempt(run, "restart-1", "verify", 1.5, "success")
        run.node_status("restart-1", "verify", {"status": "fail", "failure_reason": verify})
    _attempt(run, "restart-1", "par", 12.0, "partial_success", "1 of 2 branches failed")
    run.stream("restart-1").emit("run_failed", 22.5, status="fail", reason=SIGNAL)
    run.node_status("restart-1", "par", {"status": "fail", "failure_reason": SIGNAL})
    for scope in ("", "restart-1"):
        run.final("fail", SIGNAL, at=22.4, scope=scope)


def test_the_stop_a_restart_recorded_is_no_mismatch_once_a_resume_went_on(
    tmp_path: Path,
) -> None:
    # The resume went on in the base directory and succeeded: the run's terminal reason is
    # none, but restart-1's final.json still records the stop it wrote on par.
    run = _run(tmp_path)
    _fanout_stopped_in_a_restart(run)
    _attempt(run, "", "par", 30.0, "success")
    run.node_status("", "par", {"status": "success"})
    run.stream().emit("run_completed", 50.0, status="success")
    run.final("success", at=49.9)

    assert _findings(run) == []


def test_a_restart_s_record_of_a_stop_excuses_only_the_reason_it_gave(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _fanout_stopped_in_a_restart(run, verify="exit status 1")
    run.final("success", at=49.9)

    [finding] = _findings(run)

    assert (finding.scope, finding.node_id) == ("restart-1", "verify")
