"""``unjoined_fanout``: fan-outs that started and never ended."""

from __future__ import annotations

import json
import os
from pathlib import Path

from doctor import Diagnosis, DoctorConfig, Finding, Severity, diagnose_path
from fixtures._kilroy import KilroyRun, fanout_dispatched_again

START = "2026-02-10T16:00:00Z"


def _run(tmp_path: Path, *, pid: int = 99999999) -> KilroyRun:
    run = KilroyRun(tmp_path, "r1", START)
    run.run_pid(pid)
    run.run_config(stall_timeout_ms=600_000)
    return run


def _findings(run: KilroyRun, after_s: float = 7200) -> list[Finding]:
    diagnosis: Diagnosis = diagnose_path(
        run.finish(),
        DoctorConfig(now=run.start_ns / 1e9 + after_s, checks=("unjoined_fanout",)),
    )
    return list(diagnosis.findings)


def _branch(run: KilroyRun, scope: str, node: str, status: str | None) -> None:
    s = run.stream(scope)
    s.emit("stage_attempt_start", 2.0, node_id=node, attempt=1, max=4)
    if status is not None:
        s.emit("stage_attempt_end", 30.0, node_id=node, attempt=1, max=4, status=status)


def test_open_fanout_in_an_orphaned_run_counts_its_finished_branches(tmp_path: Path) -> None:
    run = _run(tmp_path)
    run.stream().emit("stage_attempt_start", 1.5, node_id="fanout", attempt=1, max=1)
    _branch(run, "parallel/fanout/01-a", "a", "success")
    _branch(run, "parallel/fanout/02-b", "b", "fail")
    _branch(run, "parallel/fanout/03-c", "c", "retry")  # a retry status is not an ending
    _branch(run, "parallel/fanout/04-d", "d", None)

    [finding] = _findings(run)

    assert finding.severity is Severity.ERROR
    assert finding.scope == "" and finding.node_id == "fanout"
    assert finding.evidence["fanout_node"] == "fanout"
    assert finding.evidence["started_at"] == "2026-02-10T16:00:01.5Z"
    assert finding.evidence["branches"] == 4
    assert finding.evidence["branches_finished"] == 2
    assert finding.evidence["unfinished_branches"] == [
        "parallel/fanout/03-c",
        "parallel/fanout/04-d",
    ]


def test_branches_kilroy_had_not_started_yet_are_counted_from_the_runs_graph(
    tmp_path: Path,
) -> None:
    # Kilroy starts at most max_parallel (4) branches at a time: a run frozen early in a
    # 6-branch fan-out has 2 branch directories, and its graph.dot says there are 6.
    run = _run(tmp_path)
    run.stream().emit("stage_attempt_start", 1.5, node_id="par", attempt=1, max=1)
    _branch(run, "parallel/par/pass1/01-w0", "w0", "success")
    _branch(run, "parallel/par/pass1/02-w1", "w1", None)
    path = run.finish()
    edges = "".join(f"  par -> w{i}; w{i} -> join\n" for i in range(6))
    (path / "graph.dot").write_text(
        "digraph g {\n  start [shape=Mdiamond]\n  par [shape=component]\n"
        f"  join [shape=tripleoctagon]\n  exit [shape=Msquare]\n  start -> par\n{edges}"
        '  join -> exit [condition="outcome=success"]\n}\n'
    )
    config = DoctorConfig(now=run.start_ns / 1e9 + 7200, checks=("unjoined_fanout",))
    [finding] = diagnose_path(path, config).findings
    assert (finding.evidence["branches"], finding.evidence["branches_started"]) == (6, 2)
    assert finding.evidence["branches_finished"] == 1
    assert "with 6 branches (1 still unfinished (w1); 4 never started)" in finding.summary
    # A graph the reader cannot take leaves the count to the directories.
    (path / "graph.dot").write_text("digraph g { par -> <html> }")
    [finding] = diagnose_path(path, config).findings
    assert (finding.evidence["branches"], finding.evidence["branches_started"]) == (2, 2)


def test_branch_the_parent_saw_finish_counts_as_finished(tmp_path: Path) -> None:
    run = _run(tmp_path)
    top = run.stream()
    top.emit("stage_attempt_start", 1.0, node_id="fan", attempt=1, max=1)
    top.emit(
        "branch_progress",
        31.0,
        branch_key="c",
        branch_event="branch_subgraph_done",
        branch_status="fail",
    )
    _branch(run, "parallel/fan/pass1/01-c", "c", "retry")

    [finding] = _findings(run)

    assert finding.evidence["branches_finished"] == 1


def test_joined_fanout_is_not_reported(tmp_path: Path) -> None:
    run = _run(tmp_path)
    top = run.stream()
    top.emit("stage_attempt_start", 1.0, node_id="fan", attempt=1, max=1)
    _branch(run, "parallel/fan/01-a", "a", "success")
    top.emit("stage_attempt_end", 31.0, node_id="fan", attempt=1, max=1, status="success")

    assert _findings(run) == []


def test_open_fanout_of_a_running_run_is_not_reported(tmp_path: Path) -> None:
    run = _run(tmp_path, pid=os.getpid())
    top = run.stream()
    top.emit("stage_attempt_start", 1.0, node_id="fan", attempt=1, max=1)
    top.emit("branch_progress", 30.0, branch_key="a", branch_event="stage_attempt_start")
    _branch(run, "parallel/fan/01-a", "a", None)

    assert _findings(run, after_s=60) == []


def test_pass_directories_count_only_the_latest_dispatch(tmp_path: Path) -> None:
    run = _run(tmp_path)
    top = run.stream()
    top.emit("stage_attempt_start", 1.0, node_id="fan", attempt=1, max=1)
    top.emit("stage_attempt_end", 40.0, node_id="fan", attempt=1, max=1, status="fail")
    top.emit("stage_attempt_start", 50.0, node_id="fan", attempt=1, max=1)
    for n, key in (("01", "a"), ("02", "b")):
        _branch(run, f"parallel/fan/pass1/{n}-{key}", key, "fail")
    _branch(run, "parallel/fan/pass2/01-a", "a", "success")

    [finding] = _findings(run)

    assert finding.evidence["started_at"] == "2026-02-10T16:00:50Z"
    assert finding.evidence["branches"] == 1
    assert finding.evidence["branch_scopes"] == ["parallel/fan/pass2/01-a"]


def test_open_node_without_branch_directories_is_not_a_fanout(tmp_path: Path) -> None:
    run = _run(tmp_path)
    run.stream().emit("stage_attempt_start", 1.0, node_id="build", attempt=1, max=4)
    _branch(run, "parallel/other/01-a", "a", "success")

    assert _findings(run) == []


def test_a_branch_that_finished_when_a_resume_dispatched_it_again_is_finished(
    tmp_path: Path,
) -> None:
    # Killed while b ran and a had finished; the resume dispatches fan again into the same
    # directories (real run fanout_resumed_killed), b finishes and a runs: killed again. b's
    # start of the killed dispatch never ended, but its latest did.
    run = _run(tmp_path)
    fanout_dispatched_again(run)

    [finding] = _findings(run)

    assert finding.evidence["started_at"] == "2026-02-10T16:01:00Z"
    assert finding.evidence["branches_finished"] == 1
    assert finding.evidence["unfinished_branches"] == ["parallel/fan/pass1/01-a"]


def test_a_fanout_left_open_in_a_restart_is_named_as_the_top_levels_restart(
    tmp_path: Path,
) -> None:
    run = _run(tmp_path)
    base = run.stream()
    base.emit("stage_attempt_start", 0.1, node_id="fetch", attempt=1, max=1)
    base.emit("stage_attempt_end", 0.2, node_id="fetch", attempt=1, max=1, status="fail")
    base.emit("loop_restart", 0.3, restart_count=1)
    run.stream("restart-1").emit("stage_attempt_start", 1.5, node_id="fan", attempt=1, max=1)
    _branch(run, "restart-1/parallel/fan/pass1/01-a", "a", None)

    [finding] = _findings(run)

    assert finding.scope == "restart-1"
    assert finding.summary.startswith(
        "Fan-out fan in the top level's restart-1 started at 2026-02-10T16:00:01.5Z"
    ), finding.summary


def test_a_fanout_a_later_final_json_ended_is_closed(tmp_path: Path) -> None:
    # Kilroy's resume that fails before the engine starts writes final.json and no event
    # (real run resume_no_git): the run ended after the fan-out started, so it is not open.
    run = _run(tmp_path)
    run.stream().emit("stage_attempt_start", 1.5, node_id="fanout", attempt=1, max=1)
    _branch(run, "parallel/fanout/01-a", "a", "success")
    _branch(run, "parallel/fanout/02-b", "b", None)
    run.final("fail", "checkpoint missing git_commit_sha", at=3600)

    assert _findings(run) == []


def test_a_fanout_left_open_by_a_terminalized_run_is_a_warning(tmp_path: Path) -> None:
    # doctor repair wrote final.json (status fail) for the orphaned run: that end closed the
    # fan-out; the branches' results are still only in their directories.
    run = _run(tmp_path)
    run.stream().emit("stage_attempt_start", 1.5, node_id="fanout", attempt=1, max=1)
    _branch(run, "parallel/fanout/01-a", "a", "success")
    _branch(run, "parallel/fanout/02-b", "b", None)
    # As terminalize writes it: with its provenance (a final.json without one closes the
    # attempts started before its timestamp: test_a_fanout_a_later_final_json_ended_is_closed).
    final = run.final("fail", "terminalized by doctor repair", at=3600)
    doc = json.loads(final.read_text())
    doc["repaired_by"] = {"tool": "rundoctor", "finding": {"code": "missing_final"}}
    run.write_json("final.json", doc)

    [finding] = _findings(run)

    assert finding.severity is Severity.WARNING
    assert finding.evidence["state"] == "failed"
    assert "before the run was terminalized (its scope is failed)" in finding.summary
    assert "terminalize the run" not in finding.summary
