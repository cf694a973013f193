"""``retry_loop``: back edges taken again and again, and how long the loop ran."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from doctor import Diagnosis, DoctorConfig, Finding, diagnose_path
from fixtures._kilroy import KilroyRun, Stream

START = "2026-03-01T10:00:00Z"
NOW = datetime(2026, 3, 1, 18, tzinfo=UTC).timestamp()


def _attempt(s: Stream, start: float, end: float, node: str, status: str, reason: str = "") -> None:
    s.emit("stage_attempt_start", start, node_id=node, attempt=1, max=4)
    s.emit(
        "stage_attempt_end",
        end,
        node_id=node,
        attempt=1,
        max=4,
        status=status,
        failure_reason=reason,
    )


def _hop(s: Stream, at: float, src: str, dst: str) -> None:
    s.emit("edge_selected", at, from_node=src, to_node=dst, label="", condition="")


def _laps(s: Stream, laps: int, *, leave_to: str | None, t: float = 0.0) -> float:
    """start -> impl -> verify -> check, ``laps`` times (check -> impl between laps), 100 s each."""
    _attempt(s, t, t + 1, "start", "success")
    _hop(s, t + 2, "start", "impl")
    t += 2
    for lap in range(laps):
        last = lap == laps - 1
        _attempt(s, t + 1, t + 50, "impl", "success")
        _hop(s, t + 51, "impl", "verify")
        _attempt(s, t + 52, t + 90, "verify", "success" if last else "fail", "" if last else "x")
        _hop(s, t + 91, "verify", "check")
        _attempt(s, t + 92, t + 93, "check", "success" if last else "fail")
        if not last:
            _hop(s, t + 100, "check", "impl")
        elif leave_to:
            _hop(s, t + 100, "check", leave_to)
        t += 100
    return t


def _findings(run: KilroyRun, **config: object) -> list[Finding]:
    path = run.finish()
    cfg = DoctorConfig(now=NOW, checks=("retry_loop",), **config)  # type: ignore[arg-type]
    return list(diagnose_path(path, cfg).findings)


def _run(tmp_path: Path) -> KilroyRun:
    run = KilroyRun(tmp_path, "r1", START)
    run.run_pid(99999999)
    return run


def test_the_hop_that_closes_a_loop_is_a_retry_loop(tmp_path: Path) -> None:
    run = _run(tmp_path)
    s = run.stream()
    t = _laps(s, 4, leave_to="deploy")
    s.emit("stage_attempt_start", t + 1, node_id="deploy", attempt=1, max=4)
    (f,) = _findings(run)
    assert f.code == "retry_loop"
    assert (f.evidence["from_node"], f.evidence["to_node"], f.evidence["traversals"]) == (
        "check",
        "impl",
        3,
    )
    assert f.node_id == "impl"


def test_hops_inside_the_loop_are_not_back_edges(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _laps(run.stream(), 6, leave_to="deploy")
    findings = _findings(run)
    assert [(f.evidence["from_node"], f.evidence["to_node"]) for f in findings] == [
        ("check", "impl")
    ]


def test_a_back_edge_taken_fewer_times_than_the_minimum_is_not_reported(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _laps(run.stream(), 3, leave_to="deploy")  # two traversals
    assert _findings(run) == []
    run2 = KilroyRun(tmp_path / "b", "r1", START)
    _laps(run2.stream(), 3, leave_to="deploy")
    assert len(_findings(run2, retry_loop_min=2)) == 1


def test_loop_wall_runs_from_the_targets_first_entry_to_the_hop_that_leaves_the_loop(
    tmp_path: Path,
) -> None:
    run = _run(tmp_path)
    s = run.stream()
    t = _laps(s, 4, leave_to="deploy")  # start->impl at 2 s, check->deploy at 402 s
    s.emit("warning", t + 598, message="late")  # run wall: 0 .. 1000 s
    (f,) = _findings(run)
    assert f.evidence["loop_wall_s"] == 400.0
    assert f.evidence["share_of_run"] == 0.4
    assert f.evidence["first_entry_at"] == "2026-03-01T10:00:02Z"
    assert f.evidence["loop_end_at"] == "2026-03-01T10:06:42Z"
    assert f.evidence["still_looping"] is False


def test_a_loop_that_never_left_ends_at_the_scopes_last_progress_event(tmp_path: Path) -> None:
    run = _run(tmp_path)
    s = run.stream()
    t = _laps(s, 4, leave_to=None)
    s.emit("stage_heartbeat", t + 500, node_id="check")  # heartbeats are not progress
    (f,) = _findings(run)
    assert f.evidence["still_looping"] is True
    assert f.evidence["loop_end_at"] == "2026-03-01T10:06:35Z"  # check's last attempt end


def test_a_loop_that_dominates_an_unfinished_run_is_an_error(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _laps(run.stream(), 5, leave_to=None)
    (f,) = _findings(run)
    assert f.severity.label == "error"


def test_a_dominant_loop_in_a_run_that_succeeded_is_only_a_warning(tmp_path: Path) -> None:
    run = _run(tmp_path)
    s = run.stream()
    t = _laps(s, 5, leave_to="exit")
    s.emit("run_completed", t + 1, status="success")
    run.final("success", at=t + 1)
    (f,) = _findings(run)
    assert f.severity.label == "warning"
    assert f.evidence["share_of_run"] > 0.9


def test_a_self_loop_is_a_back_edge(tmp_path: Path) -> None:
    run = _run(tmp_path)
    s = run.stream()
    for i in range(4):
        _attempt(s, i * 10, i * 10 + 5, "poll", "fail", "not ready")
        _hop(s, i * 10 + 6, "poll", "poll")
    (f,) = _findings(run)
    assert f.evidence["traversals"] == 4


def test_loops_are_counted_per_scope(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _laps(run.stream(), 3, leave_to=None)  # two traversals at the top level
    _laps(run.stream("restart-1"), 3, leave_to=None, t=1000)  # two more after a restart
    assert _findings(run) == []


@pytest.fixture(scope="module")
def rogue(rogue_diagnosis: Diagnosis) -> list[Finding]:
    """Incident 04's run (``fixtures/rogue.py``), built and diagnosed once per session
    (tests/conftest.py): this check's findings, the same as diagnosing with it alone."""
    return [f for f in rogue_diagnosis.findings if f.code == "retry_loop"]


SIGNAL = "stopped by signal terminated"
WATCHDOG = "stall watchdog timeout after 3s with no progress"


def _lap(s: Stream, t: float) -> float:
    """One more lap of :func:`_laps`' loop from ``t``: check -> impl, then impl, verify and
    check failing again."""
    _hop(s, t, "check", "impl")
    _attempt(s, t + 1, t + 50, "impl", "success")
    _hop(s, t + 51, "impl", "verify")
    _attempt(s, t + 52, t + 90, "verify", "fail", "x")
    _hop(s, t + 91, "verify", "check")
    _attempt(s, t + 92, t + 93, "check", "fail")
    return t + 100


def test_a_loop_a_resume_took_up_again_is_stopped_by_the_resumed_runs_ending(
    tmp_path: Path,
) -> None:
    run = _run(tmp_path)
    s = run.stream()
    t = _lap(s, _laps(s, 3, leave_to=None))
    s.emit("stall_watchdog_timeout", t + 1)
    s.emit("run_failed", t + 2, reason=WATCHDOG)
    t = _lap(s, _lap(s, t + 10))  # `kilroy attractor resume` (no watchdog) laps on
    s.emit("run_failed", t + 1, reason=SIGNAL)
    (f,) = _findings(run)
    assert (f.evidence["traversals"], f.evidence["stopped_by"]) == (5, "signal")
    assert f.severity.label != "info"  # the watchdog bounded the first run only


def test_a_stop_whose_run_failed_never_came_is_not_the_resumed_runs_ending(
    tmp_path: Path,
) -> None:
    run = _run(tmp_path)
    s = run.stream()
    t = _lap(s, _laps(s, 3, leave_to=None))
    s.emit("stuck_cycle_breaker", t + 1, node_id="impl")  # then SIGKILL: no run_failed
    t = _lap(s, t + 10)
    s.emit("run_failed", t + 1, reason=SIGNAL)
    (f,) = _findings(run)
    assert f.evidence["stopped_by"] == "signal"


def test_a_loop_a_resumed_run_works_on_in_was_not_stopped_by_the_stop_before(
    tmp_path: Path,
) -> None:
    run = _run(tmp_path)
    s = run.stream()
    t = _lap(s, _laps(s, 3, leave_to=None))
    s.emit("stall_watchdog_timeout", t + 1)
    s.emit("run_failed", t + 2, reason=WATCHDOG)
    # The resumed run starts where the checkpoint points (no hop), and is still there.
    s.emit("stage_attempt_start", t + 11, node_id="impl", attempt=1, max=4)
    (f,) = _findings(run)
    assert (f.evidence["stopped_by"], f.evidence["still_looping"]) == (None, True)


def test_a_loop_a_resumed_run_worked_on_in_short_of_a_lap_is_stopped_by_its_ending(
    tmp_path: Path,
) -> None:
    run = _run(tmp_path)
    s = run.stream()
    t = _lap(s, _laps(s, 3, leave_to=None))
    s.emit("stall_watchdog_timeout", t + 1)
    s.emit("run_failed", t + 2, reason=WATCHDOG)
    # The resumed run starts impl again (no hop yet) and is stopped by SIGTERM there.
    s.emit("stage_attempt_start", t + 11, node_id="impl", attempt=1, max=4)
    s.emit("run_failed", t + 20, reason=SIGNAL)
    (f,) = _findings(run)
    assert (f.evidence["stopped_by"], f.evidence["still_looping"]) == ("signal", False)


def test_a_loop_the_resumed_run_left_is_not_stopped_by_its_ending(tmp_path: Path) -> None:
    run = _run(tmp_path)
    s = run.stream()
    t = _lap(s, _laps(s, 3, leave_to=None))
    s.emit("stall_watchdog_timeout", t + 1)
    s.emit("run_failed", t + 2, reason=WATCHDOG)
    _hop(s, t + 10, "check", "deploy")  # the resume leaves the loop, then is stopped
    s.emit("stage_attempt_start", t + 11, node_id="deploy", attempt=1, max=4)
    s.emit("run_failed", t + 20, reason=SIGNAL)
    (f,) = _findings(run)
    assert (f.evidence["stopped_by"], f.evidence["still_looping"]) == (None, False)


@pytest.mark.slow
def test_incident_04_scaffold_loop_is_35_traversals_that_dominate_the_run(
    rogue: list[Finding],
) -> None:
    (f,) = rogue
    assert f.evidence == f.evidence | {
        "from_node": "check_scaffold",
        "to_node": "impl_scaffold",
        "traversals": 35,
        "first_entry_at": "2026-02-10T10:27:08.609977449Z",
    }
    # 10:27:08 to the hop into the fan-out at 16:21:49: 5 h 55 min of the 7 h 48 min run.
    assert 21_200 < f.evidence["loop_wall_s"] < 21_300
    assert 0.75 < f.evidence["share_of_run"] < 0.77
    assert f.severity.label == "error"


def test_a_loop_its_process_died_in_says_so_before_and_after_the_run_is_terminalized(
    tmp_path: Path,
) -> None:
    # Before: "has not exited" on a run whose process was dead, and on one `doctor repair`
    # had terminalized since (a SIGKILLed looping real run). The terminalize is no stop: the
    # loop is still the error it was, its run is over.
    from doctor._repair import apply_repairs, plan_repairs

    run = _run(tmp_path)
    _laps(run.stream(), 5, leave_to=None)
    (f,) = _findings(run)
    assert f.summary.count("had not exited when the run's process died") == 1
    assert "has not exited" not in f.summary and f.severity.label == "error"
    config = DoctorConfig(now=NOW, roots=(tmp_path,))
    plan = plan_repairs(diagnose_path(tmp_path / "r1", config), config)
    assert [a.kind for a in plan] == ["terminalize"]
    apply_repairs(plan, config, run_path=tmp_path / "r1")
    cfg = DoctorConfig(now=NOW, checks=("retry_loop",))
    (after,) = diagnose_path(tmp_path / "r1", cfg).findings
    assert "(doctor repair terminalized it)" in after.summary
    assert (after.severity.label, after.evidence["stopped_by"]) == ("error", None)
