"""``deterministic_retry_loop``: one canonical failure repeating with nothing to stop it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from doctor import Diagnosis, DoctorConfig, Finding, diagnose_path
from fixtures._kilroy import KilroyRun, Stream

START = "2026-03-01T10:00:00Z"
NOW = datetime(2026, 3, 1, 18, tzinfo=UTC).timestamp()
BRANCH = "parallel/fanout/03-impl_monsters"


def _attempt(
    s: Stream, at: float, node: str, status: str, reason: str = "", attempt: int = 1
) -> None:
    s.emit("stage_attempt_start", at, node_id=node, attempt=attempt, max=5)
    s.emit(
        "stage_attempt_end",
        at + 5,
        node_id=node,
        attempt=attempt,
        max=5,
        status=status,
        failure_reason=reason,
    )


def _visits(s: Stream, reasons: list[str], t: float = 0.0) -> float:
    """impl (success) then verify failing with each reason: one visit of verify per reason."""
    for reason in reasons:
        _attempt(s, t, "impl", "success")
        _attempt(s, t + 10, "verify", "fail", reason)
        t += 20
    return t


def _findings(run: KilroyRun) -> list[Finding]:
    cfg = DoctorConfig(now=NOW, checks=("deterministic_retry_loop",))
    return list(diagnose_path(run.finish(), cfg).findings)


def _run(tmp_path: Path) -> KilroyRun:
    run = KilroyRun(tmp_path, "r1", START)
    run.run_pid(99999999)
    return run


def test_the_same_canonical_failure_on_three_visits_is_an_error(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _visits(
        run.stream(), ["2 tests failed in 14.2s", "5 tests failed in 3.9s", "1 tests failed in 8s"]
    )
    (f,) = _findings(run)
    assert f.node_id == "verify"
    assert f.severity.label == "error"
    assert f.evidence["count"] == 3
    assert f.evidence["visits"] == 3
    assert f.evidence["breaker_tripped"] is False
    assert f.evidence["signature"].startswith("<n> test failed")


def test_a_failure_repeated_fewer_times_than_the_breaker_limit_is_not_reported(
    tmp_path: Path,
) -> None:
    run = _run(tmp_path)
    _visits(run.stream(), ["exit status 1", "exit status 1"])
    assert _findings(run) == []


def test_different_canonical_failures_are_counted_separately(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _visits(run.stream(), ["missing crate serde", "unused variable x", "missing crate serde"])
    assert _findings(run) == []


def test_a_breaker_event_after_the_last_failure_stops_the_loop(tmp_path: Path) -> None:
    run = _run(tmp_path)
    s = run.stream()
    t = _visits(s, ["exit status 1"] * 3)
    s.emit(
        "deterministic_failure_cycle_breaker",
        t,
        node_id="verify",
        signature="verify|deterministic|exit status <n>",
        signature_count=3,
        signature_limit=3,
    )
    assert _findings(run) == []


def test_failures_after_a_breaker_tripped_are_reported_as_breaker_tripped(tmp_path: Path) -> None:
    run = _run(tmp_path)
    s = run.stream()
    t = _visits(s, ["exit status 1"] * 3)
    s.emit("deterministic_failure_cycle_breaker", t, node_id="verify", signature_count=3)
    _visits(s, ["exit status 1"], t=t + 100)  # a resume kept going
    (f,) = _findings(run)
    assert f.evidence["breaker_tripped"] is True
    assert f.evidence["count"] == 4


def test_a_breaker_before_the_loops_first_failure_is_not_tripped_for_it(tmp_path: Path) -> None:
    run = _run(tmp_path)
    s = run.stream()
    t = _visits(s, ["exit status 1"] * 3)
    s.emit("deterministic_failure_cycle_breaker", t, node_id="verify", signature_count=3)
    s.emit("run_failed", t + 1, reason="run aborted: deterministic failure cycle detected")
    # `kilroy attractor resume`: verify fails on, another way, and nothing stops it.
    _visits(s, [f"cannot open /tmp/tmp.{k}/out.o" for k in "abc"], t=t + 100)
    (f,) = _findings(run)
    assert (f.evidence["count"], f.evidence["breaker_tripped"]) == (3, False)
    assert f.evidence["stopped_by"] is None
    assert "no breaker stopped it" in f.summary


def test_a_breaker_after_a_signal_ended_the_loop_does_not_stop_it(tmp_path: Path) -> None:
    run = _run(tmp_path)
    s = run.stream()
    t = _visits(s, ["exit status 1"] * 3)
    s.emit("run_failed", t, reason="stopped by signal terminated")
    # The resumed run stops before verify runs again: not the loop's stop.
    s.emit("stuck_cycle_breaker", t + 100, node_id="verify", visit_count=3, visit_limit=3)
    s.emit("run_failed", t + 101, reason='run aborted: node "verify" visited 3 times')
    (f,) = _findings(run)
    assert (f.evidence["stopped_by"], f.evidence["breaker_tripped"]) == ("signal", False)


def test_a_breaker_for_another_node_does_not_stop_the_loop(tmp_path: Path) -> None:
    run = _run(tmp_path)
    s = run.stream()
    t = _visits(s, ["exit status 1"] * 3)
    s.emit("stuck_cycle_breaker", t, node_id="impl", visit_count=3, visit_limit=3)
    assert len(_findings(run)) == 1


def test_a_terminal_run_that_stopped_on_the_failure_is_not_reported(tmp_path: Path) -> None:
    run = _run(tmp_path)
    t = _visits(run.stream(), ["exit status 1"] * 3)
    run.final("fail", "exit status 1", at=t)
    assert _findings(run) == []


def test_a_run_killed_on_the_failure_is_still_reported(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _visits(run.stream(), ["exit status 1"] * 3)  # no final.json: nobody stopped it
    assert len(_findings(run)) == 1


def test_retries_within_one_visit_are_only_a_warning(tmp_path: Path) -> None:
    run = _run(tmp_path)
    s = run.stream()
    _attempt(s, 0, "impl", "success")
    for a in range(1, 5):
        _attempt(s, a * 10, "verify", "fail", "exit status 1", attempt=a)
    _attempt(s, 60, "fix", "success")
    (f,) = _findings(run)
    assert f.severity.label == "warning"
    assert (f.evidence["count"], f.evidence["visits"]) == (4, 1)


def test_attempt_numbers_running_on_across_loop_backs_still_count_as_visits(
    tmp_path: Path,
) -> None:
    # The Feb-2026 subgraph runner carried attempt numbers across loop-backs (incident 04,
    # branch 03): impl_monsters attempts 1..4 are four visits, each followed by verify and check.
    run = _run(tmp_path)
    s = run.stream(BRANCH)
    reason = "turn limit reached (max_turns=25)"
    for a in range(1, 5):
        t = a * 100
        _attempt(s, t, "impl_monsters", "fail", reason, attempt=a)
        _attempt(s, t + 10, "verify_monsters", "fail", "turn limit reached (max_turns=8)", a)
        _attempt(s, t + 20, "check_monsters", "fail", "failure_reason must be non-empty")
    findings = {f.node_id: f for f in _findings(run)}
    impl = findings["impl_monsters"]
    assert impl.scope == BRANCH
    assert (impl.evidence["count"], impl.evidence["visits"]) == (4, 4)
    assert impl.severity.label == "error"
    assert set(findings) == {"impl_monsters", "verify_monsters", "check_monsters"}


@pytest.fixture(scope="module")
def rogue(rogue_diagnosis: Diagnosis) -> list[Finding]:
    """Incident 04's run (``fixtures/rogue.py``), built and diagnosed once per session
    (tests/conftest.py): this check's findings, the same as diagnosing with it alone."""
    return [f for f in rogue_diagnosis.findings if f.code == "deterministic_retry_loop"]


@pytest.mark.slow
def test_incident_04_branch_03_repeats_its_turn_limits_four_times(rogue: list[Finding]) -> None:
    branch = {f.node_id: f for f in rogue if f.scope == "parallel/fanout/03-impl_monsters"}
    impl = branch["impl_monsters"]
    assert impl.evidence == impl.evidence | {
        "signature": "turn limit reached (max_turns=<n>)",
        "count": 4,
        "breaker_tripped": False,
        "example": "turn limit reached (max_turns=25)",
    }
    assert branch["verify_monsters"].evidence["example"] == "turn limit reached (max_turns=8)"
    assert branch["verify_monsters"].evidence["count"] == 4
    assert branch["check_monsters"].evidence["count"] == 4
    # Branch 04 failed twice on impl and once on verify before the kill: under the limit.
    assert not [f for f in rogue if f.scope == "parallel/fanout/04-impl_player_io"]
