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


def _fanout(run: Path, branches: int, *, results: bool = False) -> None:
    """A run whose fan-out ``par`` ran ``branches`` branches, every third failed, as its
    parent stream recorded them (``branch_subgraph_done`` with the branch's logs root), or
    with ``results`` as the fan-out's ``parallel_results.json`` alone recorded them."""
    import json

    def line(second: int, event: str, **fields: Any) -> str:
        ts = f"2026-04-28T09:{second // 60:02d}:{second % 60:02d}Z"
        return json.dumps({"event": event, "ts": ts, **fields}) + "\n"

    top = [line(0, "stage_attempt_start", node_id="par", attempt=1)]
    for i in range(branches):
        scope = f"parallel/par/pass1/{i + 1:03d}-b{i}"
        (run / scope).mkdir(parents=True)
        (run / scope / "progress.ndjson").write_text(
            line(1, "stage_attempt_start", node_id=f"b{i}", attempt=1)
            + line(2, "stage_attempt_end", node_id=f"b{i}", attempt=1, status="success")
        )
        status = "fail" if i % 3 == 0 else "success"
        top.append(
            line(
                3,
                "branch_progress",
                branch_event="branch_subgraph_done",
                branch_key=f"b{i}",
                branch_logs_root=str(run / scope),
                branch_status=status,
            )
        )
    if results:
        entries = [
            {
                "branch_key": d["branch_key"],
                "logs_root": d["branch_logs_root"],
                "outcome": {"status": d["branch_status"]},
            }
            for d in map(json.loads, top[1:])
        ]
        (run / "par").mkdir()
        (run / "par" / "parallel_results.json").write_text(json.dumps(entries))
        top = top[:1]
    (run / "progress.ndjson").write_text("".join(top))
    (run / "run.pid").write_text("99999999")


def test_each_branch_of_a_wide_fan_out_finds_its_parent_s_record_without_trying_every_one(
    tmp_path: Path, monkeypatch: Any
) -> None:
    from doctor import _branch_records

    run = tmp_path / "wide"
    _fanout(run, 90)
    calls = 0
    names = _branch_records._names

    def counted(*args: Any) -> bool:
        nonlocal calls
        calls += 1
        return names(*args)

    monkeypatch.setattr(_branch_records, "_names", counted)
    facts = diagnose_path(run, DoctorConfig(roots=(tmp_path,), now=1_800_000_000.0)).facts
    states = [b["state"] for b in facts["branches"]]
    assert states == ["failed" if i % 3 == 0 else "succeeded" for i in range(90)]
    assert calls <= 2 * 90  # each branch tries its own records, not the 90 of the fan-out


def test_a_wide_fan_out_s_results_file_is_read_once_for_all_its_branches(
    tmp_path: Path, monkeypatch: Any
) -> None:
    import json

    run = tmp_path / "wide"
    _fanout(run, 90, results=True)
    reads = 0
    loads = json.loads

    def counted(text: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal reads
        reads += isinstance(text, bytes) and text.startswith(b'[{"branch_key"')
        return loads(text, *args, **kwargs)

    monkeypatch.setattr(json, "loads", counted)
    facts = diagnose_path(run, DoctorConfig(roots=(tmp_path,), now=1_800_000_000.0)).facts
    states = [b["state"] for b in facts["branches"]]
    assert states == ["failed" if i % 3 == 0 else "succeeded" for i in range(90)]
    assert reads == 1  # it was parsed again for each of the 90 branches
