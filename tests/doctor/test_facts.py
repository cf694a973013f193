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
