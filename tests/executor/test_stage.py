"""One stage attempt's process and status file, with real processes (no mocks)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from executor._artifacts import clear_status_files, ingest_status
from executor._reaper import kill_stage_groups
from executor._stage import Beat, ProcessResult, classify, run_process, stage_env
from rundoctor.liveness import boot_id, start_ticks


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie (containers may not reap orphans)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def gone(pid: int, within: float = 3.0) -> bool:
    end = time.monotonic() + within
    while alive(pid):
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True


def run(
    tmp_path: Path,
    script: str,
    *,
    timeout: float = 10.0,
    grace: float = 1.0,
    heartbeat: float = 5.0,
    canceled: Callable[[], bool] = lambda: False,
    beats: list[Beat] | None = None,
) -> ProcessResult:
    return run_process(
        ("sh", "-c", script),
        command=script,
        cwd=tmp_path,
        env=stage_env(None, {}),
        attempt_dir=tmp_path,
        timeout_s=timeout,
        grace_s=grace,
        heartbeat_s=heartbeat,
        canceled=canceled,
        on_heartbeat=(beats.append if beats is not None else lambda b: None),
    )


def test_a_failing_stage_reason_names_the_exit_status_the_command_and_the_stderr_tail(
    tmp_path: Path,
) -> None:
    r = run(tmp_path, "echo compiling; echo 'error: linker failed' >&2; exit 7")
    assert (r.exit_code, r.signal, r.ok) == (7, None, False)
    reason = r.describe()
    assert reason.startswith("exit status 7; stderr tail: error: linker failed; command: echo")
    assert (tmp_path / "stdout.log").read_text() == "compiling\n"


def test_a_stage_killed_by_a_signal_is_named_by_the_signal(tmp_path: Path) -> None:
    r = run(tmp_path, "kill -KILL $$")
    assert (r.exit_code, r.signal) == (None, "SIGKILL")
    assert r.describe() == "killed by signal SIGKILL; stderr tail: (empty); command: kill -KILL $$"


def test_a_reason_given_by_the_stage_keeps_the_process_facts_beside_it(tmp_path: Path) -> None:
    r = run(tmp_path, "echo warn >&2")
    assert r.describe("3 tests failed") == (
        "3 tests failed (exit status 0); stderr tail: warn; command: echo warn >&2"
    )


def test_the_stderr_tail_keeps_the_last_lines_and_is_bounded(tmp_path: Path) -> None:
    r = run(tmp_path, "for i in $(seq 1 500); do echo line $i >&2; done; exit 1")
    assert r.stderr_tail.endswith("line 499 | line 500")
    assert len(r.stderr_tail) <= 601


def test_a_command_that_cannot_start_fails_with_the_reason_it_could_not(tmp_path: Path) -> None:
    r = run_process(
        ("/nonexistent/agent",),
        command="/nonexistent/agent",
        cwd=tmp_path,
        env={},
        attempt_dir=tmp_path,
        timeout_s=5,
        grace_s=1,
        heartbeat_s=5,
        canceled=lambda: False,
        on_heartbeat=lambda b: None,
    )
    assert r.describe().startswith(
        "could not start (no process, no exit status): [Errno 2] No such file or directory"
    )
    assert "No such file" in (tmp_path / "stderr.log").read_text()


def test_a_timeout_stops_the_whole_group_and_kills_what_ignores_sigterm(tmp_path: Path) -> None:
    t0 = time.monotonic()
    r = run(tmp_path, "trap '' TERM; sleep 30 & echo $! > child.pid; wait", timeout=0.3, grace=0.3)
    child = int((tmp_path / "child.pid").read_text())
    assert r.timed_out and r.signal == "SIGKILL"
    assert r.describe().startswith("timed out after 0.3s (process group stopped); killed by")
    assert time.monotonic() - t0 < 3
    assert gone(child)


def test_cancellation_sends_sigterm_to_the_group(tmp_path: Path) -> None:
    t0 = time.monotonic()
    r = run(
        tmp_path,
        "sleep 30 & echo $! > child.pid; wait",
        canceled=lambda: time.monotonic() - t0 > 0.2,
    )
    assert r.canceled and r.signal == "SIGTERM"
    assert gone(int((tmp_path / "child.pid").read_text()))


def test_background_children_left_by_a_finished_stage_are_killed(tmp_path: Path) -> None:
    r = run(tmp_path, "sleep 30 & echo $! > child.pid; exit 0")
    assert r.ok
    assert gone(int((tmp_path / "child.pid").read_text()))


def test_heartbeats_are_measured_while_the_process_runs_and_never_after(tmp_path: Path) -> None:
    beats: list[Beat] = []
    r = run(tmp_path, "echo start; sleep 0.35", heartbeat=0.1, beats=beats)
    assert len(beats) >= 2
    assert all(b.elapsed_s <= r.duration_s for b in beats)
    assert beats[-1].stdout_bytes == len("start\n")


def test_classes_come_from_the_stage_hint_first_then_from_the_text() -> None:
    assert classify("curl: (7) Connection refused") == "transient_infra"
    assert classify("HTTP 503 from registry") == "transient_infra"
    assert classify("assertion failed at line 503") == "deterministic"
    assert classify("turn limit reached (max_turns=25)") == "budget_exhausted"
    assert classify("write_scope_violation: src/") == "structural"
    assert classify("connection refused", "permanent") == "deterministic"
    assert classify("x", "canceled") == "canceled"


def test_the_stage_environment_drops_stale_kilroy_keys_and_adds_the_new_ones() -> None:
    env = stage_env(
        {"PATH": "/bin", "KILROY_NODE_ID": "old", "STAGE_STATUS_PATH": "/old"},
        {"KILROY_RUN_ID": "r"},
    )
    assert env == {"PATH": "/bin", "KILROY_RUN_ID": "r"}


def _dirs(tmp_path: Path) -> tuple[Path, Path]:
    attempt, worktree = tmp_path / "a" / "attempt-1", tmp_path / "wt"
    attempt.mkdir(parents=True)
    worktree.mkdir()
    return attempt, worktree


@pytest.mark.parametrize(
    ("rel", "source"),
    [
        ("attempt/status.json", "canonical"),
        ("wt/status.json", "worktree"),
        ("wt/.ai/status.json", "dot_ai"),
        ("wt/.ai/runs/r1/status.json", "dot_ai"),
    ],
)
def test_a_status_file_is_ingested_from_each_location_and_moved_out_of_the_way(
    tmp_path: Path, rel: str, source: str
) -> None:
    attempt, worktree = _dirs(tmp_path)
    path = tmp_path / rel.replace("attempt/", "a/attempt-1/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"status": "OK", "preferred_label": "ship", "cost_usd": 0.5}))
    ing = ingest_status(attempt, worktree, "r1")
    assert (ing.source, ing.path) == (source, str(path))
    assert ing.outcome is not None
    assert (ing.outcome.status, ing.outcome.preferred_label, ing.outcome.cost_usd) == (
        "success",
        "ship",
        0.5,
    )
    assert not path.exists()
    assert json.loads((attempt / "stage_status.json").read_text())["status"] == "OK"


def test_the_stage_status_path_wins_and_other_files_are_set_aside(tmp_path: Path) -> None:
    attempt, worktree = _dirs(tmp_path)
    (attempt / "status.json").write_text('{"status": "fail", "failure_reason": "real"}')
    (worktree / "status.json").write_text('{"status": "success"}')
    ing = ingest_status(attempt, worktree, "r1")
    assert ing.source == "canonical" and ing.outcome is not None
    assert ing.outcome.failure_reason == "real"
    assert "worktree ignored" in ing.diagnostic
    assert not (worktree / "status.json").exists()
    assert (attempt / "stage_status.worktree.ignored.json").exists()


def test_invalid_and_legacy_status_files(tmp_path: Path) -> None:
    attempt, worktree = _dirs(tmp_path)
    (attempt / "status.json").write_text("{not json")
    (worktree / ".ai").mkdir()
    (worktree / ".ai" / "status.json").write_text('{"outcome": "FAILURE", "details": "boom"}')
    ing = ingest_status(attempt, worktree, "r1")
    assert ing.source == "dot_ai" and ing.outcome is not None
    assert (ing.outcome.status, ing.outcome.failure_reason) == ("fail", "boom")
    assert ing.diagnostic.startswith("canonical invalid")
    assert (attempt / "stage_status.canonical.invalid").exists()


def test_a_status_file_nested_too_deeply_is_invalid_and_the_next_one_decides(
    tmp_path: Path,
) -> None:
    # Before: json's RecursionError escaped ingest_status and ended `doctor run` (and a
    # worker's ticket run) with "internal error (a bug in rundoctor)", exit 70.
    attempt, worktree = _dirs(tmp_path)
    (attempt / "status.json").write_text("[" * 100_000 + "]" * 100_000)
    (worktree / "status.json").write_text('{"status": "fail", "failure_reason": "real"}')
    ing = ingest_status(attempt, worktree, "r1")
    assert ing.source == "worktree" and ing.outcome is not None
    assert ing.outcome.failure_reason == "real"
    assert "canonical invalid: " in ing.diagnostic and ": JSON nested too deeply" in ing.diagnostic
    assert (attempt / "stage_status.canonical.invalid").exists()


def test_a_status_file_over_32_mib_is_invalid_unread_and_the_next_one_decides(
    tmp_path: Path,
) -> None:
    # Before: a stage's 1 GiB status.json was read whole, 1.3 GiB of the executor's memory
    # (of a worker running several stages at once), to be found no JSON.
    attempt, worktree = _dirs(tmp_path)
    with (attempt / "status.json").open("wb") as f:  # sparse
        f.truncate(1 << 30)
    (worktree / "status.json").write_text('{"status": "fail", "failure_reason": "real"}')
    ing = ingest_status(attempt, worktree, "r1")
    assert ing.source == "worktree" and ing.outcome is not None
    assert f"canonical invalid: {attempt / 'status.json'}: larger than 33,554,432 bytes" in (
        ing.diagnostic
    )
    assert (attempt / "stage_status.canonical.invalid").stat().st_size == 1 << 30


def test_doctor_run_survives_an_agent_whose_status_file_is_nested_too_deeply(
    tmp_path: Path,
) -> None:
    from tests.helpers import run_doctor

    graph = tmp_path / "g.dot"
    graph.write_text(
        "digraph g { start [shape=Mdiamond] exit [shape=Msquare] a [shape=box, prompt=go]\n"
        "start -> a -> exit }"
    )
    status = tmp_path / "nested.json"
    status.write_text("[" * 100_000 + "]" * 100_000)
    agent = f"cp {status} {{status_path}}"
    done = run_doctor("run", graph, "--root", tmp_path / "runs", "--json", "--agent-command", agent)
    # Read as any invalid status file (the run ends, exit 1, not a crash's 70): no valid
    # status, so the agent did not report (auto_status=false, Kilroy's default).
    assert done.returncode == 1, done.stderr
    ended = json.loads(done.stdout)
    assert ended["status"] == "fail"
    assert ended["failure_reason"].startswith("missing status.json (auto_status=false)")
    assert "JSON nested too deeply" in ended["failure_reason"]


def test_no_status_file_leaves_the_decision_to_the_exit_status(tmp_path: Path) -> None:
    attempt, worktree = _dirs(tmp_path)
    ing = ingest_status(attempt, worktree, "r1")
    assert (ing.source, ing.outcome) == ("", None)
    assert ing.diagnostic.count("missing") == 4


def test_stale_worktree_status_files_are_cleared_before_a_stage(tmp_path: Path) -> None:
    _, worktree = _dirs(tmp_path)
    (worktree / "status.json").write_text("{}")
    clear_status_files(worktree, "r1")
    assert not (worktree / "status.json").exists()


def test_a_daemon_that_left_the_stage_s_group_ends_with_its_attempt(tmp_path: Path) -> None:
    # `setsid` takes the daemon out of the stage's process group, which is all the end of an
    # attempt killed: it lived on after its stage, run and ticket. It carries the stage's mark.
    pid_file = tmp_path / "daemon.pid"
    script = (
        f"setsid sh -c 'echo $$ > {pid_file}; exec sleep 600' & "
        f"while [ ! -s {pid_file} ]; do sleep 0.01; done"
    )
    r = run(tmp_path, script)
    daemon = int(pid_file.read_text())
    try:
        assert r.ok
        assert gone(daemon, within=10)
        record = json.loads((tmp_path / "process.json").read_text())
        assert len(record["mark"]) == 32
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(daemon, 9)


def test_the_reaper_kills_no_group_a_process_json_of_another_boot_names(tmp_path: Path) -> None:
    # A pid and a start time name a process within one boot of one host only: after a reboot
    # (a deterministic boot starts the same services at the same ticks), or on another host
    # sharing the runs root, a lost run's process.json named a live process of someone
    # else's, and the reaper killed its whole group. Each record now says its boot.
    assert run(tmp_path, "exit 0").ok
    assert json.loads((tmp_path / "process.json").read_text())["boot_id"] == boot_id()
    other = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        attempt = tmp_path / "run" / "build" / "attempt-1"
        attempt.mkdir(parents=True)
        record = {"pid": other.pid, "pgid": other.pid, "pid_start_time": start_ticks(other.pid)}
        (attempt / "process.json").write_text(json.dumps({**record, "boot_id": "another-boot"}))
        assert kill_stage_groups(tmp_path / "run") == ()
        assert alive(other.pid)
        (attempt / "process.json").write_text(json.dumps({**record, "boot_id": boot_id()}))
        assert kill_stage_groups(tmp_path / "run") == (other.pid,)
        assert gone(other.pid)
    finally:
        other.kill()
        other.wait()
