"""Whole runs of real pipelines (real subprocesses, the scripted fake agent), checked through
their artifacts and by the doctor."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import doctor
from executor import ExecutorConfig, GraphError, RunResult, UsageError, run_pipeline
from executor._events import Event
from fixtures.fake_agent import PIPELINES, agent_command

HEALTHY = ("tool_simple", "retry_converges", "fanout", "agent_status")


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


def config(**overrides: Any) -> ExecutorConfig:
    base: dict[str, Any] = {
        "heartbeat_interval_s": 0.05,
        "backoff_initial_s": 0.01,
        "stage_grace_s": 0.5,
        "agent_command": agent_command(),
    }
    return ExecutorConfig(**{**base, **overrides})


def run(tmp_path: Path, graph: str | Path, **kw: Any) -> RunResult:
    if isinstance(graph, str):
        tmp_path.mkdir(parents=True, exist_ok=True)
        path = tmp_path / "graph.dot"
        path.write_text(graph)
        graph = path
    cfg = kw.pop("cfg", None) or config()
    return run_pipeline(graph, tmp_path / "runs", cfg, run_id=kw.pop("run_id", "r1"), **kw)


def events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (path / "progress.ndjson").read_text().splitlines()]


def named(evs: list[dict[str, Any]], name: str, **match: Any) -> list[dict[str, Any]]:
    return [e for e in evs if e["event"] == name and all(e.get(k) == v for k, v in match.items())]


def serious(path: Path) -> list[doctor.Finding]:
    d = doctor.diagnose_path(path, doctor.DoctorConfig())
    return [f for f in d.findings if f.severity >= doctor.Severity.ERROR]


def streams(path: Path) -> list[Path]:
    return [path, *sorted(p.parent for p in (path / "parallel").glob("**/progress.ndjson"))]


def assert_heartbeats_only_inside_open_attempts(path: Path) -> int:
    beats = 0
    for scope in streams(path):
        open_attempts: set[tuple[Any, Any]] = set()
        for e in events(scope):
            key = (e.get("node_id"), e.get("attempt"))
            if e["event"] == "stage_attempt_start":
                open_attempts.add(key)
            elif e["event"] == "stage_attempt_end":
                open_attempts.discard(key)
            elif e["event"] == "stage_heartbeat":
                beats += 1
                assert key in open_attempts, f"{scope}: heartbeat of a closed attempt: {e}"
    return beats


TOOL = '  {name} [shape=parallelogram, tool_command="{cmd}"{extra}]\n'


def graph(*stages: tuple[str, str, str], edges: str, attrs: str = "") -> str:
    nodes = "".join(TOOL.format(name=n, cmd=c, extra=x) for n, c, x in stages)
    check = "  check [shape=diamond]\n" if "check" in edges else ""
    return (
        f"digraph t {{\n  graph [{attrs}]\n  start [shape=Mdiamond]\n  exit [shape=Msquare]\n"
        f"{check}{nodes}{edges}\n}}"
    )


def agents(*names: str, extra: str = "") -> str:
    """start -> (agent nodes) -> exit."""
    decls = "".join(f'  {n} [prompt="do {n}"{extra}]\n' for n in names)
    chain = " -> ".join(("start", *names, "exit"))
    return f"digraph a {{\n  start [shape=Mdiamond]\n  exit [shape=Msquare]\n{decls}  {chain}\n}}"


@pytest.mark.parametrize("name", HEALTHY)
def test_a_healthy_example_run_succeeds_and_the_doctor_finds_nothing_serious(
    tmp_path: Path, name: str
) -> None:
    r = run(tmp_path, PIPELINES / f"{name}.dot", run_id=name)
    assert (r.status, r.failure_reason) == ("success", "")
    assert serious(r.path) == []
    evs = events(r.path)
    assert evs[-1]["event"] == "run_completed"
    final = json.loads((r.path / "final.json").read_text())
    # RFC3339Nano trims trailing zeros ("…11.417Z" is before "…11.41782Z"): compare instants.
    assert final["status"] == "success" and instant(final["timestamp"]) <= instant(evs[-1]["ts"])
    assert not (r.path / "run.lock.json").exists()
    assert json.loads((r.path / "manifest.json").read_text())["layout"] == "rundoctor-native/1"
    assert_heartbeats_only_inside_open_attempts(r.path)


def test_every_line_carries_the_envelope_and_the_lease_epoch(tmp_path: Path) -> None:
    seen: list[Event] = []
    r = run(tmp_path, PIPELINES / "fanout.dot", epoch=7, on_event=seen.append)
    lines = events(r.path)
    assert {(e["run_id"], e["epoch"]) for e in lines} == {("r1", 7)}
    assert all(len(e["id"]) == 8 and e["ts"].endswith("Z") for e in lines)
    assert [e.to_json() for e in seen] == lines  # on_event sees every line, in file order


def test_heartbeats_are_never_written_after_their_attempt_ended(tmp_path: Path) -> None:
    g = graph(
        ("a", "echo a; sleep 0.25", ""),
        ("b", "sleep 0.25; exit 3", ", max_retries=0"),
        edges="  start -> a -> b -> check\n  check -> exit\n",
    )
    r = run(tmp_path, g, cfg=config(heartbeat_interval_s=0.02))
    assert r.status == "fail"
    assert assert_heartbeats_only_inside_open_attempts(r.path) >= 10
    for attempt in r.path.glob("*/attempt-*/events.ndjson"):
        names = [json.loads(line)["event"] for line in attempt.read_text().splitlines()]
        assert (
            names[0] == "stage_attempt_start"
            and "stage_heartbeat" not in names[names.index("stage_attempt_end") :]
        )


def test_a_failed_stage_stops_the_run_with_its_exit_status_command_and_stderr(
    tmp_path: Path,
) -> None:
    g = graph(
        ("build", "echo 'ld: cannot find -lfoo' >&2; exit 2", ""),
        ("ship", "touch shipped", ""),
        edges="  start -> build -> ship -> check\n  check -> exit\n",
    )
    r = run(tmp_path, g)
    assert r.status == "fail"
    assert r.failure_reason.startswith(
        "exit status 2; stderr tail: ld: cannot find -lfoo; command:"
    )
    assert "echo 'ld: cannot find -lfoo'" in r.failure_reason
    assert not (r.path / "worktree" / "shipped").exists()  # a failure never flows into work
    end = named(events(r.path), "stage_attempt_end", node_id="build")[-1]
    assert (end["exit_code"], end["failure_class"]) == (2, "deterministic")
    assert named(events(r.path), "run_failed")[0]["reason"] == r.failure_reason
    d = doctor.diagnose_path(r.path, doctor.DoctorConfig())
    assert d.state == "failed" and d.facts["final_json"]
    assert [f for f in d.findings if f.severity >= doctor.Severity.ERROR] == []


def test_a_check_node_fails_with_its_upstream_cause_verbatim(tmp_path: Path) -> None:
    g = graph(
        ("verify", "echo 'E: 2 of 9 tests failed' >&2; exit 1", ", max_retries=0"),
        edges='  start -> verify -> check\n  check -> exit [condition="outcome=success"]\n',
    )
    r = run(tmp_path, g)
    evs = events(r.path)
    cause = named(evs, "stage_attempt_end", node_id="verify")[0]["failure_reason"]
    check = named(evs, "stage_attempt_end", node_id="check")[0]
    assert (check["status"], check["failure_reason"]) == ("fail", cause)
    assert "E: 2 of 9 tests failed" in cause and r.failure_reason == cause
    codes = {f.code for f in doctor.diagnose_path(r.path, doctor.DoctorConfig()).findings}
    assert "lost_failure_reason" not in codes and "swallowed_error" not in codes


def test_the_breaker_stops_the_varying_text_loop_at_its_limit(tmp_path: Path) -> None:
    r = run(tmp_path, PIPELINES / "deterministic_loop.dot")
    evs = events(r.path)
    failures = named(evs, "stage_attempt_end", node_id="verify", status="fail")
    assert len(failures) == 3 and len({f["failure_reason"] for f in failures}) == 3
    checks = named(evs, "deterministic_failure_cycle_check", node_id="verify")
    assert [c["signature_count"] for c in checks] == [1, 2, 3]
    breaker = named(evs, "deterministic_failure_cycle_breaker")
    assert len(breaker) == 1 and breaker[0]["signature"] == checks[0]["signature"]
    assert {e["signature_version"] for e in [*checks, *breaker]} == {doctor.SIGNATURE_VERSION}
    assert r.status == "fail"
    assert r.failure_reason.startswith("run aborted: deterministic failure cycle detected")
    assert breaker[0]["signature"] in r.failure_reason
    ck = json.loads((r.path / "checkpoint.json").read_text())
    assert ck["extra"]["loop_failure_signatures"] == {breaker[0]["signature"]: 3}
    assert ck["extra"]["loop_failure_signature_version"] == doctor.SIGNATURE_VERSION
    d = doctor.diagnose_path(r.path, doctor.DoctorConfig())
    assert d.state == "failed"
    assert d.facts["events_by_type"]["deterministic_failure_cycle_breaker"] == 1
    assert [f for f in d.findings if f.severity >= doctor.Severity.ERROR] == []
    assert "deterministic_retry_loop" not in {f.code for f in d.findings}


def test_the_breaker_limit_comes_from_the_config_unless_the_graph_sets_one(tmp_path: Path) -> None:
    source = (PIPELINES / "deterministic_loop.dot").read_text().replace(", breaker_limit=3", "")
    r = run(tmp_path, source, cfg=config(breaker_limit=2))
    assert len(named(events(r.path), "stage_attempt_end", node_id="verify")) == 2


def test_transient_failures_are_retried_in_place_and_never_trip_the_breaker(
    tmp_path: Path,
) -> None:
    r = run(tmp_path, PIPELINES / "retry_converges.dot")
    evs = events(r.path)
    fetch = named(evs, "stage_attempt_end", node_id="fetch")
    assert [(e["attempt"], e["status"], e["failure_class"]) for e in fetch] == [
        (1, "fail", "transient_infra"),
        (2, "fail", "transient_infra"),
        (3, "success", ""),
    ]
    assert len(named(evs, "stage_retry_sleep", node_id="fetch")) == 2
    assert named(evs, "deterministic_failure_cycle_breaker") == []
    ck = json.loads((r.path / "checkpoint.json").read_text())
    assert ck["node_retries"]["fetch"] == 2
    assert ck["completed_nodes"] == ["start", "fetch", "impl", "verify", "check", "exit"]
    assert sorted(p.name for p in (r.path / "fetch").iterdir()) == [
        "attempt-1",
        "attempt-2",
        "attempt-3",
        "status.json",
    ]
    assert sorted(p.name for p in (r.path / "impl").glob("attempt-*")) == ["attempt-1", "attempt-2"]


def test_a_timeout_is_transient_and_the_run_retry_budget_bounds_it(tmp_path: Path) -> None:
    g = graph(
        ("slow", "sleep 5", ', timeout="100ms", max_retries=5'),
        edges="  start -> slow -> exit\n",
    )
    r = run(tmp_path, g, cfg=config(retry_budget=1))
    evs = events(r.path)
    assert len(named(evs, "stage_attempt_end", node_id="slow")) == 2
    assert named(evs, "retry_decision")[-1]["reason"].endswith("the run's retry budget is spent")
    assert r.failure_reason.startswith("timed out after 0.1s (process group stopped)")


def test_exit_status_75_asks_for_a_retry(tmp_path: Path) -> None:
    g = graph(
        ("flaky", "test -f once && exit 0; touch once; exit 75", ""),
        edges="  start -> flaky -> exit\n",
    )
    r = run(tmp_path, g)
    assert r.status == "success"
    assert named(events(r.path), "stage_attempt_end", node_id="flaky")[0]["failure_class"] == (
        "transient_infra"
    )


def test_a_failure_without_an_edge_goes_to_its_retry_target(tmp_path: Path) -> None:
    g = graph(
        ("impl", "n=$(cat n 2>/dev/null || echo 0); echo $((n+1)) > n", ""),
        ("gate", "test $(cat n) -ge 2", ', max_retries=0, retry_target="impl"'),
        edges="  start -> impl -> gate -> exit\n",
    )
    r = run(tmp_path, g)
    assert r.status == "success"
    evs = events(r.path)
    assert named(evs, "no_matching_fail_edge_fallback", node_id="gate", retry_target="impl")
    assert named(evs, "edge_selected", from_node="gate", to_node="impl")[0]["hop_source"] == (
        "retry_target"
    )


def test_a_node_entered_too_often_stops_the_run(tmp_path: Path) -> None:
    g = graph(
        ("impl", "true", ""),
        ("verify", "echo 'connection reset by peer' >&2; exit 1", ", max_retries=0"),
        edges='  start -> impl -> verify -> check\n  check -> impl [condition="outcome=fail"]\n'
        '  check -> exit [condition="outcome=success"]\n',
        attrs="max_node_visits=3",
    )
    r = run(tmp_path, g)
    assert named(events(r.path), "stuck_cycle_breaker", node_id="impl", visit_count=4)
    assert "entered 4 times (limit 3)" in r.failure_reason


def test_fan_out_branches_each_terminalize_and_the_parent_joins(tmp_path: Path) -> None:
    r = run(tmp_path, PIPELINES / "fanout.dot")
    branches = sorted((r.path / "parallel" / "fan").iterdir())
    assert [b.name for b in branches] == ["01-lint", "02-unit", "03-docs"]
    for b in branches:
        final = json.loads((b / "final.json").read_text())
        assert (final["status"], final["branch_key"]) == ("success", b.name[3:])
        assert (b / "worktree" / "lib.py").is_file()  # a copy of the parent's worktree
    assert (branches[1] / "unit_report" / "attempt-1" / "stdout.log").read_text() == (
        "coverage 100%\n"
    )
    evs = events(r.path)
    done = named(evs, "branch_progress", branch_event="branch_subgraph_done")
    assert sorted(e["branch_key"] for e in done) == ["docs", "lint", "unit"]
    fan_end = named(evs, "stage_attempt_end", node_id="fan")[0]
    assert evs.index(fan_end) > max(evs.index(e) for e in done)
    assert named(evs, "branch_heartbeat")  # the branches' stage heartbeats, mirrored
    mirrored = named(evs, "branch_progress", branch_event="stage_attempt_end")
    assert {e["branch_node_id"] for e in mirrored} == {"lint", "unit", "unit_report", "docs"}
    results = json.loads((r.path / "fan" / "parallel_results.json").read_text())
    assert [x["status"] for x in results] == ["success"] * 3


def test_one_failed_branch_still_joins_and_all_failed_branches_fail_with_their_causes(
    tmp_path: Path,
) -> None:
    source = (PIPELINES / "fanout.dot").read_text()
    one = source.replace("grep -q 'def add' lib.py", "grep -q 'def sub' lib.py")
    r = run(tmp_path / "one", one)
    assert r.status == "success"
    fan = named(events(r.path), "stage_attempt_end", node_id="fan")[0]
    assert fan["status"] == "partial_success"
    assert json.loads((r.path / "parallel/fan/01-lint/final.json").read_text())["status"] == "fail"
    every = one.replace("sleep 0.2; echo '2 passed'", "exit 1").replace("echo '# add", "exit 1 #")
    r = run(tmp_path / "all", every)
    assert r.status == "fail"
    assert r.failure_reason.startswith("all parallel branches failed: lint: exit status 1")
    assert "unit: exit status 1" in r.failure_reason and "docs: exit status 1" in r.failure_reason


BRANCH_LOOP = """digraph b {
  start [shape=Mdiamond]
  exit [shape=Msquare]
  fan [shape=component]
  ok [shape=parallelogram, tool_command="echo fine"]
  docs [shape=parallelogram, max_retries=0, tool_command="echo broken link $$ >&2; exit 1"]
  dcheck [shape=diamond]
  join [shape=tripleoctagon]
  start -> fan
  fan -> ok -> join
  fan -> docs -> dcheck
  dcheck -> docs [condition="outcome=fail"]
  dcheck -> join [condition="outcome=success"]
  join -> exit
}"""


def test_a_branch_has_its_own_breaker(tmp_path: Path) -> None:
    r = run(tmp_path, BRANCH_LOOP)
    branch = r.path / "parallel" / "fan" / "02-docs"
    evs = events(branch)
    assert len(named(evs, "subgraph_deterministic_failure_cycle_check")) == 3
    assert named(evs, "subgraph_deterministic_failure_cycle_breaker", node_id="docs")
    final = json.loads((branch / "final.json").read_text())
    assert final["failure_reason"].startswith("branch aborted: deterministic failure cycle")
    assert r.status == "success"  # the other branch won the fan-in
    assert serious(r.path) == []


@pytest.mark.parametrize(
    ("step", "source"),
    [
        ({"status_to": "env"}, "canonical"),
        ({"status_to": "worktree"}, "worktree"),
        ({"status_to": "dot_ai"}, "dot_ai"),
        ({"status_to": "dot_ai_run"}, "dot_ai"),
    ],
)
def test_an_agent_status_is_ingested_wherever_the_agent_wrote_it(
    tmp_path: Path, step: dict[str, Any], source: str
) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"default": [{**step, "status": "success", "exit": 1}]}))
    g = agents("work")
    r = run(tmp_path, g, cfg=config(agent_command=agent_command(script)))
    assert r.status == "success"  # the status file decides, even over exit status 1
    decision = named(events(r.path), "status_ingestion_decision", node_id="work")[0]
    assert (decision["source"], decision["decided_by"]) == (source, "status_file")
    assert not list((r.path / "worktree").glob("**/status.json"))  # nothing stranded
    assert serious(r.path) == []


def test_with_auto_status_and_no_valid_status_file_the_exit_status_decides(
    tmp_path: Path,
) -> None:
    script = tmp_path / "script.json"
    steps = {
        "nodes": {
            "a": [{"status_to": "garbage", "exit": 0}],
            "b": [{"status_to": "none", "exit": 4, "stderr": "agent crashed"}],
        }
    }
    script.write_text(json.dumps(steps))
    g = agents("a", "b", extra=", auto_status=true")
    r = run(tmp_path, g, cfg=config(agent_command=agent_command(script)))
    evs = events(r.path)
    a, b = (named(evs, "status_ingestion_decision", node_id=n)[0] for n in "ab")
    assert (a["source"], a["decided_by"]) == ("", "exit_code") and "canonical invalid" in a[
        "diagnostic"
    ]
    assert (b["source"], b["decided_by"]) == ("", "exit_code")
    assert r.failure_reason.startswith("exit status 4; stderr tail: agent crashed; command: ")
    assert "fake_agent.py" in r.failure_reason


@pytest.mark.parametrize("status_to", ["none", "garbage"])
def test_an_agent_that_exits_0_without_a_status_file_fails_for_not_reporting(
    tmp_path: Path, status_to: str
) -> None:
    # Kilroy's default (auto_status=false): an agent that reported nothing did not say it did
    # the work. Counted a success, its run went on and its ticket was done, though the agent
    # (a stub, a crash that still exits 0) may have done nothing at all (incident 03).
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"nodes": {"a": [{"status_to": status_to, "exit": 0}]}}))
    g = agents("a", "b", extra=", max_retries=0")
    r = run(tmp_path, g, cfg=config(agent_command=agent_command(script)))
    assert r.status == "fail"
    assert r.failure_reason.startswith("missing status.json (auto_status=false); canonical ")
    assert "(exit status 0); stderr tail:" in r.failure_reason
    evs = events(r.path)
    (decision,) = named(evs, "status_ingestion_decision", node_id="a")
    assert (decision["source"], decision["decided_by"]) == ("", "contract")
    (end,) = named(evs, "stage_attempt_end", node_id="a")
    assert (end["status"], end["failure_class"], end["exit_code"]) == ("fail", "deterministic", 0)
    assert not named(evs, "stage_attempt_start", node_id="b")


def test_a_failure_reported_by_the_agent_keeps_its_words_and_the_process_facts(
    tmp_path: Path,
) -> None:
    script = tmp_path / "script.json"
    script.write_text(
        json.dumps(
            {
                "default": [
                    {"status": "fail", "reason": "turn limit reached (max_turns=25)", "cost": 0.75}
                ]
            }
        )
    )
    g = agents("work", extra=", max_retries=0")
    r = run(tmp_path, g, cfg=config(agent_command=agent_command(script)))
    end = named(events(r.path), "stage_attempt_end", node_id="work")[0]
    assert end["failure_reason"].startswith("turn limit reached (max_turns=25) (exit status 0)")
    assert (end["failure_class"], end["cost_usd"], r.cost_usd) == ("budget_exhausted", 0.75, 0.75)
    prompt = (r.path / "work" / "attempt-1" / "prompt.md").read_text()
    assert str(r.path / "work" / "attempt-1" / "status.json") in prompt


def test_cancel_event_stops_the_stage_group_and_the_run_ends_canceled(tmp_path: Path) -> None:
    g = graph(
        ("slow", "sleep 30 & echo $! > child.pid; wait", ""), edges="  start -> slow -> exit\n"
    )
    cancel = threading.Event()
    threading.Timer(0.4, cancel.set).start()
    t0 = time.monotonic()
    r = run(tmp_path, g, cancel=cancel)
    assert time.monotonic() - t0 < 3
    assert r.status == "canceled"
    assert r.failure_reason.startswith("canceled by the caller (cancel event set); the run stopped")
    final = json.loads((r.path / "final.json").read_text())
    assert final["status"] == "canceled"
    last = events(r.path)[-1]
    assert (last["event"], last["status"]) == ("run_failed", "canceled")
    end = named(events(r.path), "stage_attempt_end", node_id="slow")[0]
    assert (end["failure_class"], end["signal"]) == ("canceled", "SIGTERM")
    child = int((r.path / "worktree" / "child.pid").read_text())
    assert (
        not Path(f"/proc/{child}").exists()
        or "Z" in Path(f"/proc/{child}/stat").read_text().split(")")[1][:3]
    )


def test_an_on_event_callback_that_raises_cancels_the_run(tmp_path: Path) -> None:
    def fenced(e: Event) -> None:
        if e.EVENT == "stage_heartbeat":
            raise RuntimeError("lease epoch 3 fenced")

    g = graph(("slow", "sleep 10", ""), edges="  start -> slow -> exit\n")
    r = run(tmp_path, g, on_event=fenced)
    assert r.status == "canceled"
    assert "on_event callback raised RuntimeError: lease epoch 3 fenced" in r.failure_reason


def test_bad_inputs_are_refused_before_anything_is_created(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"needs an agent command to run: pass --agent-command"):
        run(tmp_path, agents("w"), cfg=ExecutorConfig())
    with pytest.raises(GraphError, match="line 1: no exit node"):
        run(tmp_path, "digraph a { start [shape=Mdiamond] }")
    with pytest.raises(UsageError, match="plain directory name"):
        run(tmp_path, PIPELINES / "tool_simple.dot", run_id="../x")
    assert not (tmp_path / "runs").exists()
    run(tmp_path, PIPELINES / "tool_simple.dot")
    with pytest.raises(UsageError, match="already exists"):
        run(tmp_path, PIPELINES / "tool_simple.dot")


def test_an_executor_error_still_terminalizes_the_run(tmp_path: Path) -> None:
    r_path = tmp_path / "runs" / "r1"

    def sabotage(e: Event) -> None:
        if e.EVENT == "edge_selected" and getattr(e, "to_node", "") == "build":
            (r_path / "build").write_text("a file where the stage directory must go")

    with pytest.raises(FileExistsError):
        run(tmp_path, PIPELINES / "tool_simple.dot", on_event=sabotage)
    final = json.loads((r_path / "final.json").read_text())
    assert final["status"] == "fail"
    assert final["failure_reason"].startswith("executor error: FileExistsError")
    assert events(r_path)[-1]["event"] == "run_failed"
    assert not (r_path / "run.lock.json").exists()


def test_each_attempt_records_its_process_for_the_reaper(tmp_path: Path) -> None:
    r = run(tmp_path, PIPELINES / "tool_simple.dot")
    info = json.loads((r.path / "build" / "attempt-1" / "process.json").read_text())
    assert info["pid"] == info["pgid"] and isinstance(info["pid_start_time"], int)
    status = json.loads((r.path / "build" / "attempt-1" / "status.json").read_text())
    assert status["details"]["pid"] == info["pid"]


def test_a_final_json_written_first_by_the_reaper_stands(tmp_path: Path) -> None:
    r_path = tmp_path / "runs" / "r1"
    reaped = {"status": "fail", "failure_reason": "worker w1 lost its lease", "run_id": "r1"}

    def reaper(e: Event) -> None:
        if e.EVENT == "stage_attempt_start" and getattr(e, "node_id", "") == "test":
            (r_path / "final.json").write_text(json.dumps(reaped))

    r = run(tmp_path, PIPELINES / "tool_simple.dot", on_event=reaper)
    assert (r.status, r.failure_reason) == ("fail", "worker w1 lost its lease")
    assert json.loads((r_path / "final.json").read_text()) == reaped
    assert not named(events(r_path), "run_completed")


def test_canceling_during_a_fan_out_stops_every_branch_and_terminalizes_each(
    tmp_path: Path,
) -> None:
    source = (PIPELINES / "fanout.dot").read_text().replace("sleep 0.2", "sleep 30")
    source = source.replace("grep -q 'def add' lib.py", "sleep 30; true")
    cancel = threading.Event()
    docs = tmp_path / "runs" / "r1" / "parallel" / "fan" / "03-docs" / "final.json"
    canceled_at: list[float] = []

    def cancel_once_docs_is_done() -> None:
        # Not after a fixed 0.5 s: on a loaded machine (Python 3.12 suite run beside two
        # others) docs had not finished by then and was canceled too.
        while not docs.exists() and not cancel.is_set():
            time.sleep(0.02)
        canceled_at.append(time.monotonic())
        cancel.set()

    waiter = threading.Thread(target=cancel_once_docs_is_done)
    waiter.start()
    try:
        r = run(tmp_path, source, cancel=cancel)
    finally:
        cancel.set()
        waiter.join()
    # The 30 s sleeps were stopped, not waited for.
    assert time.monotonic() - canceled_at[0] < 25 and r.status == "canceled"
    for key in ("01-lint", "02-unit"):
        branch = r.path / "parallel" / "fan" / key
        assert json.loads((branch / "final.json").read_text())["status"] == "canceled"
        assert named(events(branch), "subgraph_canceled_exit")
    assert json.loads((r.path / "parallel/fan/03-docs/final.json").read_text())["status"] == (
        "success"
    )
    d = doctor.diagnose_path(r.path, doctor.DoctorConfig())
    assert d.state == "canceled"
    assert [f for f in d.findings if f.severity >= doctor.Severity.ERROR] == []


def test_no_attempt_starts_in_a_run_whose_final_json_someone_else_wrote(tmp_path: Path) -> None:
    # The reaper ended the run of a worker frozen past its lease (final.json written, stages
    # killed); woken, the worker retried the killed stage's transient failure in that run,
    # beside the ticket's next execution. Here the stage itself writes the run's final.json,
    # as the reaper would, then fails transiently: the retry would have been attempt 2.
    stage = "echo '{}' > $KILROY_LOGS_ROOT/final.json; echo 'Connection refused' >&2; exit 1"
    g = graph(("w", stage, ", max_retries=3"), edges="  start -> w -> exit")
    r = run(tmp_path, g)
    run_dir = tmp_path / "runs" / "r1"
    assert (run_dir / "w" / "attempt-1").is_dir()
    assert not (run_dir / "w" / "attempt-2").exists()
    assert json.loads((run_dir / "final.json").read_text()) == {}
    assert r.status == "fail", r
    late = (run_dir / "late-events.ndjson").read_text()
    assert '"will_retry":true' in late.replace(" ", ""), late
