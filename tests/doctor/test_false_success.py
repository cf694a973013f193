"""``false_success``: the fallback hop must be in the top-level scope the run ended in."""

from __future__ import annotations

from pathlib import Path

from doctor import DoctorConfig, Finding, diagnose_path
from fixtures._kilroy import KilroyRun

START = "2026-04-28T09:00:00Z"
REFUSED = "connection refused by registry"


def _findings(run: KilroyRun) -> list[Finding]:
    config = DoctorConfig(now=run.start_ns / 1e9 + 7200, checks=("false_success",))
    return list(diagnose_path(run.finish(), config).findings)


def _fetch_fails_and_falls_back(run: KilroyRun, to_node: str) -> None:
    """fetch fails in the base directory and no condition of its edges matches: Kilroy falls
    back to the edge into ``to_node`` (real run ``loop_restart_transient`` writes its
    ``fetch -> prepare`` loop_restart edge here, then ``loop_restart``; prepare runs in
    restart-1/)."""
    run.run_pid(99999999)
    top = run.stream()
    top.emit("stage_attempt_start", 1, node_id="fetch", attempt=1, max=1)
    top.emit("stage_attempt_end", 2, node_id="fetch", attempt=1, max=1, status="fail",
             failure_reason=REFUSED)  # fmt: skip
    top.emit("edge_selected", 3, from_node="fetch", to_node=to_node, condition="outcome=retry",
             selection_method="fallback")  # fmt: skip


def test_a_fallback_into_a_loop_restart_the_restart_went_on_from_is_no_false_success(
    tmp_path: Path,
) -> None:
    run = KilroyRun(tmp_path, "r1", START)
    _fetch_fails_and_falls_back(run, "prepare")
    run.stream().emit("loop_restart", 3.1, restart_count=1, target_node="prepare")
    restart = run.stream("restart-1")
    for node, at in (("prepare", 4), ("fetch", 5)):
        restart.emit("stage_attempt_start", at, node_id=node, attempt=1, max=1)
        restart.emit("stage_attempt_end", at + 0.5, node_id=node, attempt=1, max=1,
                     status="success", failure_reason="")  # fmt: skip
    restart.emit("edge_selected", 6, from_node="fetch", to_node="exit",
                 condition="outcome=success", selection_method="condition_match")  # fmt: skip
    restart.emit("run_completed", 6.2, status="success")
    for scope in ("", "restart-1"):
        run.final("success", at=6.1, scope=scope)

    assert _findings(run) == []


def test_a_fallback_into_the_exit_of_the_scope_the_run_ended_in_is_reported(
    tmp_path: Path,
) -> None:
    run = KilroyRun(tmp_path, "r1", START)
    _fetch_fails_and_falls_back(run, "exit")
    run.stream().emit("run_completed", 3.2, status="success")
    run.final("success", at=3.1)

    (finding,) = _findings(run)

    assert (finding.scope, finding.evidence["from_node"]) == ("", "fetch")
