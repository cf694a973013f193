"""``lost_failure_reason``: a generic failure right after a concrete one upstream."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from doctor import Diagnosis, DoctorConfig, Finding, diagnose_path
from fixtures._kilroy import KilroyRun, Stream

START = "2026-02-10T16:00:00Z"
NOW = datetime(2026, 2, 10, 20, tzinfo=UTC).timestamp()
GENERIC = 'failure_reason must be non-empty when status="fail"'
MISSING = "missing status.json (auto_status=false)"
BRANCH = "parallel/fanout/02-impl_combat_items"


def _attempt(s: Stream, at: float, node: str, status: str, reason: str | None = "") -> None:
    s.emit("stage_attempt_start", at, node_id=node, attempt=1, max=1)
    end = {"failure_reason": reason} if reason is not None else {}
    s.emit("stage_attempt_end", at + 5, node_id=node, attempt=1, max=1, status=status, **end)


def _findings(run: KilroyRun) -> list[Finding]:
    cfg = DoctorConfig(now=NOW, checks=("lost_failure_reason",))
    return list(diagnose_path(run.finish(), cfg).findings)


def _run(tmp_path: Path) -> KilroyRun:
    run = KilroyRun(tmp_path, "r1", START)
    run.run_pid(99999999)
    return run


def test_a_generic_check_failure_after_a_concrete_upstream_one_is_lost(tmp_path: Path) -> None:
    run = _run(tmp_path)
    s = run.stream(BRANCH)
    for lap in range(2):
        _attempt(s, lap * 100, "impl_combat_items", "fail", MISSING)
        _attempt(s, lap * 100 + 10, "verify_combat_items", "fail", MISSING)
        _attempt(s, lap * 100 + 20, "check_combat_items", "fail", GENERIC)
    (f,) = _findings(run)
    assert (f.scope, f.node_id, f.severity.label) == (BRANCH, "check_combat_items", "error")
    assert f.evidence == f.evidence | {
        "reason": GENERIC,
        "occurrences": 2,
        "upstream_node": "verify_combat_items",
        "upstream_reason": MISSING,
    }


@pytest.mark.parametrize("reason", ["", "None", "null", "Subprocess failed: None", None])
def test_empty_and_null_reasons_are_generic(tmp_path: Path, reason: str | None) -> None:
    run = _run(tmp_path)
    s = run.stream()
    _attempt(s, 0, "verify", "fail", "turn limit reached (max_turns=8)")
    _attempt(s, 10, "check", "fail", reason)
    (f,) = _findings(run)
    assert f.evidence["reason"] == reason
    assert f.evidence["upstream_reason"] == "turn limit reached (max_turns=8)"


def test_a_concrete_reason_is_not_lost(tmp_path: Path) -> None:
    run = _run(tmp_path)
    s = run.stream()
    _attempt(s, 0, "verify", "fail", "turn limit reached (max_turns=8)")
    _attempt(s, 10, "check", "fail", "turn limit reached (max_turns=8)")  # passed through
    _attempt(s, 20, "lint", "fail", "exit status 1")  # a bare exit code is a tool's own reason
    assert _findings(run) == []


def test_the_upstream_failure_must_be_in_the_same_scope(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _attempt(run.stream(), 0, "plan", "fail", "spec not found")
    _attempt(run.stream(BRANCH), 10, "check_combat_items", "fail", GENERIC)
    assert _findings(run) == []


def test_an_upstream_failure_from_an_earlier_lap_is_not_the_cause(tmp_path: Path) -> None:
    run = _run(tmp_path)
    s = run.stream()
    _attempt(s, 0, "verify", "fail", "tests failed: 3 of 10")
    _attempt(s, 10, "check", "fail", "tests failed: 3 of 10")  # lap 1: reason passed through
    _attempt(s, 20, "impl", "success")
    _attempt(s, 30, "verify", "success")
    _attempt(s, 40, "check", "fail", GENERIC)  # lap 2: nothing upstream failed
    assert _findings(run) == []


def test_consecutive_generic_failures_chain_back_to_the_same_upstream(tmp_path: Path) -> None:
    run = _run(tmp_path)
    s = run.stream()
    _attempt(s, 0, "verify", "fail", MISSING)
    _attempt(s, 10, "check", "fail", GENERIC)
    _attempt(s, 20, "check", "fail", GENERIC)  # a retry of check with no new upstream
    (f,) = _findings(run)
    assert f.evidence["occurrences"] == 2
    assert f.evidence["upstream_node"] == "verify"


def test_the_latest_concrete_upstream_failure_is_reported(tmp_path: Path) -> None:
    run = _run(tmp_path)
    s = run.stream()
    _attempt(s, 0, "impl", "fail", MISSING)
    _attempt(s, 10, "verify", "fail", "turn limit reached (max_turns=8)")
    _attempt(s, 20, "check", "fail", GENERIC)
    (f,) = _findings(run)
    assert (f.evidence["upstream_node"], f.evidence["upstream_reasons"]) == ("verify", 1)


def test_all_parallel_branches_failed_is_an_accurate_summary_not_a_lost_reason(
    tmp_path: Path,
) -> None:
    run = _run(tmp_path)
    s = run.stream()
    _attempt(s, 0, "prepare", "fail", "exit status 2")
    _attempt(s, 10, "join", "fail", "all parallel branches failed")
    assert _findings(run) == []


@pytest.fixture(scope="module")
def rogue(rogue_diagnosis: Diagnosis) -> list[Finding]:
    """Incident 04's run (``fixtures/rogue.py``), built and diagnosed once per session
    (tests/conftest.py): this check's findings, the same as diagnosing with it alone."""
    return [f for f in rogue_diagnosis.findings if f.code == "lost_failure_reason"]


@pytest.mark.slow
def test_incident_04_check_nodes_of_branches_02_to_04_lost_their_reasons(
    rogue: list[Finding],
) -> None:
    got = {
        f.scope.rsplit("/", 1)[1]: (f.evidence["upstream_node"], f.evidence["upstream_reason"])
        for f in rogue
    }
    assert got == {
        "02-impl_combat_items": ("verify_combat_items", MISSING),
        "03-impl_monsters": ("verify_monsters", "turn limit reached (max_turns=8)"),
        "04-impl_player_io": ("verify_player_io", "turn limit reached (max_turns=8)"),
    }
    assert all(f.evidence["reason"] == GENERIC for f in rogue)


CANCELED_RUN = 'concurrent region "c1" failed: branch node a failed: context canceled'


def _concurrent_region(run: KilroyRun, b_reason: str, run_reason: str = CANCELED_RUN) -> None:
    # Kilroy's own order (real run concurrent_sibling_fails): both start, b fails, a is
    # canceled, the run fails naming a.
    s = run.stream()
    s.emit("stage_attempt_start", 0, node_id="a", attempt=1, max=4)
    s.emit("stage_attempt_start", 0.1, node_id="b", attempt=1, max=1)
    s.emit(
        "stage_attempt_end",
        1,
        node_id="b",
        attempt=1,
        max=1,
        status="fail",
        failure_reason=b_reason,
    )
    s.emit(
        "stage_attempt_end",
        1.2,
        node_id="a",
        attempt=1,
        max=4,
        status="fail",
        failure_reason="signal: killed",
    )
    s.emit("run_failed", 1.5, reason=run_reason, status="fail")
    run.final("fail", run_reason)


def test_a_node_canceled_because_a_sibling_failed_points_to_the_sibling(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _concurrent_region(run, "exit status 1")
    (f,) = _findings(run)
    assert (f.scope, f.node_id, f.severity.label) == ("", "a", "error")
    assert f.evidence == f.evidence | {
        "reason": CANCELED_RUN,
        "occurrences": 1,
        "upstream_node": "b",
        "upstream_reason": "exit status 1",
    }


def test_a_canceled_node_the_run_reason_does_not_name_keeps_its_own_reason(
    tmp_path: Path,
) -> None:
    run = _run(tmp_path)
    _concurrent_region(run, "tests failed", run_reason="stopped by operator")
    (f,) = _findings(run)
    assert (f.node_id, f.evidence["reason"], f.evidence["upstream_node"]) == (
        "a",
        "signal: killed",
        "b",
    )


def test_siblings_both_stopped_by_a_signal_lost_nothing(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _concurrent_region(run, "signal: killed")
    assert _findings(run) == []


def test_a_cancellation_after_the_sibling_failure_ended_is_not_caused_by_it(
    tmp_path: Path,
) -> None:
    run = _run(tmp_path)
    s = run.stream()
    _attempt(s, 0, "b", "fail", "exit status 1")
    _attempt(s, 10, "a", "fail", "signal: killed")
    assert _findings(run) == []
