"""``doctor._facts``: how a run that was restarted, stopped and resumed ended."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from doctor import DoctorConfig, diagnose_path
from fixtures._kilroy import KilroyRun

START = "2026-04-28T09:00:00Z"
STALL = "stall watchdog timeout after 3s with no progress"
BREAKER = 'run aborted: deterministic failure cycle detected \u2014 signature "verify|x"'


def _facts(run: KilroyRun) -> dict[str, Any]:
    config = DoctorConfig(now=run.start_ns / 1e9 + 7200, checks=("missing_final",))
    return dict(diagnose_path(run.finish(), config).facts)


def _stopped_in_restart_1_then_in_the_base_directory(run: KilroyRun, *, reasons: bool) -> None:
    """The stall watchdog ends restart-1/ (Kilroy saves the outcome there and in the base
    directory); a resume goes on in the base directory, where the signature breaker ends it
    and rewrites the base final.json. With ``reasons`` false, the final.json files record no
    failure reason (as a build before Kilroy wrote one would)."""
    run.run_pid(99999999)
    top, restart = run.stream(), run.stream("restart-1")
    top.emit("loop_restart", 1, restart_count=1)
    restart.emit("stall_watchdog_timeout", 5, stall_timeout_ms=3000, idle_ms=3001)
    restart.emit("run_failed", 5.2, status="fail", reason=STALL)
    for scope in ("", "restart-1"):
        run.final("fail", STALL if reasons else "", at=5.1, scope=scope)
    top.emit("deterministic_failure_cycle_breaker", 60, node_id="verify", signature="verify|x")
    top.emit("run_failed", 60.2, status="fail", reason=BREAKER)
    run.final("fail", BREAKER if reasons else "", at=60.1)


def test_the_stop_that_ended_a_resumed_restart_is_the_one_written_last(tmp_path: Path) -> None:
    run = KilroyRun(tmp_path, "r1", START)
    _stopped_in_restart_1_then_in_the_base_directory(run, reasons=True)

    facts = _facts(run)

    assert (facts["terminal_reason"], facts["stopped_by"]) == (
        BREAKER,
        "deterministic_failure_cycle_breaker",
    )


def test_without_a_recorded_reason_the_last_run_failed_written_gives_it(tmp_path: Path) -> None:
    run = KilroyRun(tmp_path, "r1", START)
    _stopped_in_restart_1_then_in_the_base_directory(run, reasons=False)

    facts = _facts(run)

    assert facts["terminal_reason"] == BREAKER


SIGNAL = "stopped by signal terminated"


def _stalled_then_resumed(run: KilroyRun) -> None:
    """The stall watchdog ends the run in build (real run: a silent 60 s tool stage, a 3 s
    stall timeout); ``kilroy attractor resume`` appends to the same stream, build passes and
    test starts."""
    run.run_pid(99999999)
    top = run.stream()
    top.emit("stage_attempt_start", 1, node_id="build", attempt=1, max=1)
    top.emit("stall_watchdog_timeout", 4.4, stall_timeout_ms=3000, idle_ms=3404)
    top.emit("stage_attempt_end", 4.41, node_id="build", attempt=1, max=1, status="fail",
             failure_reason=STALL)  # fmt: skip
    run.final("fail", STALL, at=4.44)
    top.emit("run_failed", 4.45, status="fail", reason=STALL)
    top.emit("stage_attempt_start", 7, node_id="build", attempt=1, max=1)
    top.emit("stage_attempt_end", 7.1, node_id="build", attempt=1, max=1, status="success",
             failure_reason="")  # fmt: skip
    top.emit("edge_selected", 7.1, from_node="build", to_node="test", selection_method="fallback")
    top.emit("stage_attempt_start", 7.2, node_id="test", attempt=1, max=1)


def test_a_signal_ending_a_resume_of_a_stalled_run_is_what_stopped_it(tmp_path: Path) -> None:
    run = KilroyRun(tmp_path, "r1", START)
    _stalled_then_resumed(run)
    run.stream().emit("stage_attempt_end", 7.8, node_id="test", attempt=1, max=1, status="fail",
                      failure_reason=SIGNAL)  # fmt: skip
    run.final("fail", SIGNAL, at=7.8)
    run.stream().emit("run_failed", 7.81, status="fail", reason=SIGNAL)

    facts = _facts(run)

    # Not the watchdog: it ended the attempt the resume went on from.
    assert (facts["terminal_reason"], facts["stopped_by"]) == (SIGNAL, "signal")


def test_a_resume_that_completed_keeps_no_stop_of_the_run_before(tmp_path: Path) -> None:
    run = KilroyRun(tmp_path, "r1", START)
    _stalled_then_resumed(run)
    run.stream().emit("stage_attempt_end", 8, node_id="test", attempt=1, max=1, status="success",
                      failure_reason="")  # fmt: skip
    run.stream().emit("run_completed", 8.1, status="success")
    run.write_text("final.json", '{"timestamp": "2026-04-28T09:00:08Z", "status": "succ')  # torn

    facts = _facts(run)

    assert (facts["terminal_reason"], facts["stopped_by"]) == (None, None)
