"""``fragmented_failure_signatures``: many reason strings, few canonical failures."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from doctor import SIGNATURE_VERSION, Diagnosis, DoctorConfig, Finding, diagnose_path
from fixtures._kilroy import KilroyRun, Stream

START = "2026-02-10T10:00:00Z"
NOW = datetime(2026, 2, 10, 18, tzinfo=UTC).timestamp()
CHECK = "deterministic_failure_cycle_check"


def _reasons(n: int) -> list[str]:
    """``n`` distinct strings, one canonical failure (only counts and temp paths differ)."""
    return [f"build failed: {i + 1} errors in /tmp/tmp.w{i:03d}/src/main.rs" for i in range(n)]


def _fail(s: Stream, at: float, node: str, reason: str) -> None:
    s.emit("stage_attempt_start", at, node_id=node, attempt=1, max=1)
    s.emit(
        "stage_attempt_end",
        at + 5,
        node_id=node,
        attempt=1,
        max=1,
        status="fail",
        failure_reason=reason,
    )


def _check(s: Stream, at: float, count: int, limit: int = 3, node: str = "verify") -> None:
    s.emit(
        CHECK,
        at,
        node_id=node,
        signature=f"{node}|deterministic|x",
        signature_count=count,
        signature_limit=limit,
        failure_class="deterministic",
        failure_reason="x",
    )


def _run(
    tmp_path: Path, reasons: list[str], counts: list[int] | None = None, limit: int = 3
) -> KilroyRun:
    run = KilroyRun(tmp_path, "r1", START)
    run.run_pid(99999999)
    s = run.stream()
    for i, reason in enumerate(reasons):
        _fail(s, i * 100, "verify", reason)
        if counts is not None:
            _check(s, i * 100 + 6, counts[i], limit)
    return run


def _findings(run: KilroyRun) -> list[Finding]:
    cfg = DoctorConfig(now=NOW, checks=("fragmented_failure_signatures",))
    return list(diagnose_path(run.finish(), cfg).findings)


def test_many_reasons_that_are_one_canonical_failure_are_fragmented(tmp_path: Path) -> None:
    run = _run(tmp_path, _reasons(8), counts=[1, 1, 2, 1, 1, 2, 1, 1])
    (f,) = _findings(run)
    assert f.node_id == "verify"
    assert f.severity.label == "error"
    assert f.evidence == f.evidence | {
        "failures": 8,
        "unique_reasons": 8,
        "canonical_signatures": 1,
        "top_signature": "build failed: <n> error in <path>",
        "top_signature_count": 8,
        "breaker_limit": 3,
        "max_signature_count_seen": 2,
    }


def test_without_cycle_checks_the_seen_count_is_null_and_the_limit_is_the_configs(
    tmp_path: Path,
) -> None:
    (f,) = _findings(_run(tmp_path, _reasons(5)))
    assert f.evidence["max_signature_count_seen"] is None
    assert f.evidence["breaker_limit"] == 3


def test_the_breaker_limit_is_the_runs_own_signature_limit(tmp_path: Path) -> None:
    # A run whose graph sets the limit to 9: six repeats would not have tripped it.
    assert _findings(_run(tmp_path / "a", _reasons(6), counts=[1] * 6, limit=9)) == []
    (f,) = _findings(_run(tmp_path / "b", _reasons(6), counts=[1] * 6, limit=5))
    assert f.evidence["breaker_limit"] == 5


def test_too_few_failures_are_not_fragmentation(tmp_path: Path) -> None:
    assert _findings(_run(tmp_path, _reasons(4))) == []


def test_distinct_failures_are_not_fragmentation(tmp_path: Path) -> None:
    reasons = [
        "missing crate serde",
        "unused variable x",
        "assertion failed",
        "rustfmt failed",
        "undefined symbol main",
        "Permission denied",
    ]
    assert _findings(_run(tmp_path, reasons)) == []


def test_repeating_the_same_string_is_not_fragmentation(tmp_path: Path) -> None:
    assert _findings(_run(tmp_path, ["exit status 1"] * 6)) == []


def test_a_run_whose_own_breaker_tripped_and_failed_on_gets_a_warning(tmp_path: Path) -> None:
    run = KilroyRun(tmp_path, "r1", START)
    run.run_pid(99999999)
    s = run.stream()
    for i, (reason, count) in enumerate(zip(_reasons(6), [1, 2, 3, 1, 2, 3], strict=True)):
        _fail(s, i * 100, "verify", reason)
        _check(s, i * 100 + 6, count, 3)
        if i == 2:  # the breaker fires, yet the failures go on (a resume, say)
            s.emit("deterministic_failure_cycle_breaker", i * 100 + 7, node_id="verify")
    (f,) = _findings(run)
    assert f.severity.label == "warning"
    assert f.evidence["max_signature_count_seen"] == 3
    assert f.evidence["stopped_by"] is None


def test_a_loop_a_breaker_ended_is_only_info_and_names_the_stop(tmp_path: Path) -> None:
    run = _run(tmp_path, _reasons(6), counts=[1, 2, 3, 1, 2, 3])
    run.stream().emit("deterministic_failure_cycle_breaker", 700, node_id="verify")
    (f,) = _findings(run)
    assert f.severity.label == "info"
    assert f.evidence["stopped_by"] == "deterministic_failure_cycle_breaker"


def test_a_node_run_again_after_the_stop_was_not_stopped_by_it(tmp_path: Path) -> None:
    run = _run(tmp_path, _reasons(6), counts=[1] * 6)
    s = run.stream()
    s.emit("stuck_cycle_breaker", 700, node_id="implement")
    s.emit("run_failed", 701, reason='run aborted: node "implement" visited 6 times')
    s.emit("stage_attempt_start", 800, node_id="verify", attempt=1, max=1)
    s.emit("stage_attempt_end", 805, node_id="verify", attempt=1, max=1, status="success")
    s.emit("run_completed", 810, status="success")  # `kilroy attractor resume`: verify passed
    (f,) = _findings(run)
    assert f.evidence["stopped_by"] is None
    assert f.severity.label == "error"


def test_a_stop_after_the_loops_own_ending_is_not_its_stop(tmp_path: Path) -> None:
    run = _run(tmp_path, _reasons(6), counts=[1] * 6)
    s = run.stream()
    s.emit("run_failed", 700, reason="stopped by signal terminated")
    s.emit("stuck_cycle_breaker", 800, node_id="implement")  # the resumed run's, elsewhere
    s.emit("run_failed", 801, reason='run aborted: node "implement" visited 6 times')
    (f,) = _findings(run)
    assert f.evidence["stopped_by"] is None


def test_a_breaker_before_the_nodes_first_failure_did_not_trip_for_its_loop(
    tmp_path: Path,
) -> None:
    run = KilroyRun(tmp_path, "r1", START)
    run.run_pid(99999999)
    s = run.stream()
    s.emit("stuck_cycle_breaker", 0, node_id="verify")  # before verify ever ran
    s.emit("run_failed", 1, reason='run aborted: node "verify" visited 3 times')
    for i, reason in enumerate(_reasons(6)):  # `kilroy attractor resume`, then the loop
        _fail(s, 100 + i * 100, "verify", reason)
        _check(s, 100 + i * 100 + 6, 1, 3)
    (f,) = _findings(run)
    assert (f.evidence["breaker_tripped"], f.severity.label) == (False, "error")


def test_branch_nodes_use_the_subgraph_cycle_checks(tmp_path: Path) -> None:
    run = KilroyRun(tmp_path, "r1", START)
    s = run.stream("parallel/fan/01-a")
    for i, reason in enumerate(_reasons(5)):
        _fail(s, i * 100, "verify_a", reason)
        s.emit(
            "subgraph_deterministic_failure_cycle_check",
            i * 100 + 6,
            node_id="verify_a",
            signature_count=1,
            signature_limit=4,
        )
    (f,) = _findings(run)
    assert f.scope == "parallel/fan/01-a"
    assert (f.evidence["breaker_limit"], f.evidence["max_signature_count_seen"]) == (4, 1)


@pytest.fixture(scope="module")
def rogue(rogue_diagnosis: Diagnosis) -> list[Finding]:
    """Incident 04's run (``fixtures/rogue.py``), built and diagnosed once per session
    (tests/conftest.py): this check's findings, the same as diagnosing with it alone."""
    return [f for f in rogue_diagnosis.findings if f.code == "fragmented_failure_signatures"]


@pytest.mark.slow
def test_incident_04_verify_scaffold_has_31_reasons_for_35_failures(rogue: list[Finding]) -> None:
    (f,) = [f for f in rogue if f.node_id == "verify_scaffold"]
    assert f.evidence == f.evidence | {
        "failures": 35,
        "unique_reasons": 31,
        "breaker_limit": 3,
        "max_signature_count_seen": 2,
    }
    assert f.evidence["canonical_signatures"] * 2 <= 31
    assert f.evidence["top_signature_count"] >= 3
    assert f.severity.label == "error"


def _signed_check(s: Stream, at: float, signature: str, count: int, version: int) -> None:
    s.emit(
        CHECK,
        at,
        node_id="verify",
        signature=f"verify|deterministic|{signature}",
        signature_count=count,
        signature_limit=3,
        failure_class="deterministic",
        failure_reason="x",
        signature_version=version,
    )


def test_a_breaker_of_the_doctors_signature_version_is_read_for_the_top_signature(
    tmp_path: Path,
) -> None:
    run = _run(tmp_path, _reasons(6))
    s = run.stream()
    _signed_check(s, 900, "build failed: <n> error in <path>", 2, SIGNATURE_VERSION)
    _signed_check(s, 901, "some other failure", 5, SIGNATURE_VERSION)
    (f,) = _findings(run)
    assert f.evidence["max_signature_count_seen"] == 2


def test_a_breaker_of_another_signature_version_is_not_matched_by_signature(
    tmp_path: Path,
) -> None:
    run = _run(tmp_path, _reasons(6))
    s = run.stream()
    _signed_check(s, 900, "build failed: <n> error in <path>", 2, SIGNATURE_VERSION - 1)
    _signed_check(s, 901, "some other failure", 5, SIGNATURE_VERSION - 1)
    (f,) = _findings(run)
    # Another version's strings mean nothing here: only the node's largest count is used.
    assert f.evidence["max_signature_count_seen"] == 5


def test_reasons_the_runs_own_breaker_counted_as_one_signature_are_not_fragmented(
    tmp_path: Path,
) -> None:
    # Real run signature_hint: verify's reasons name fresh numbers, but its status.json names
    # one failure_signature; Kilroy's checks count that one signature 1, 2, 3 up to the limit.
    run = KilroyRun(tmp_path, "r1", START)
    run.run_pid(99999999)
    s = run.stream()
    for i, reason in enumerate(_reasons(5)):
        _fail(s, i * 100, "verify", reason)
        if i:  # the first failure Kilroy classed transient: not checked
            _check(s, i * 100 + 6, i, 4)
    s.emit("deterministic_failure_cycle_breaker", 507, node_id="verify")
    assert _findings(run) == []


def test_reasons_the_runs_own_breaker_counted_under_several_signatures_are_fragmented(
    tmp_path: Path,
) -> None:
    run = KilroyRun(tmp_path, "r1", START)
    run.run_pid(99999999)
    s = run.stream()
    for i, reason in enumerate(_reasons(5)):
        _fail(s, i * 100, "verify", reason)
        s.emit(
            CHECK,
            i * 100 + 6,
            node_id="verify",
            signature=f"verify|deterministic|{reason}",
            signature_count=1,
            signature_limit=3,
            failure_class="deterministic",
            failure_reason=reason,
        )
    (f,) = _findings(run)
    assert f.evidence["max_signature_count_seen"] == 1
    assert f.severity.label == "error"
