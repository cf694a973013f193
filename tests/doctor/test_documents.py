"""``doctor._documents`` and ``rundoctor.liveness``: a run's small JSON files, and its owner."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from doctor import DoctorConfig, diagnose
from doctor._documents import Document, RunDocuments, normalize_status, read_documents
from doctor._ingest import load_runs
from doctor._layout import discover
from doctor._tables import Tables
from rundoctor.liveness import owner_alive, process_alive, start_ticks

REPO = Path(__file__).resolve().parents[2]
DEAD_PID = 99999999


def _write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)
    return path


def _run(tmp_path: Path, run_id: str = "r1") -> Path:
    run = tmp_path / run_id
    _write(run / "run.pid", str(DEAD_PID))
    _write(run / "progress.ndjson", '{"event": "run_started", "ts": "2026-04-28T10:00:00Z"}\n')
    return run


def _docs(run: Path) -> RunDocuments:
    return read_documents(discover(run))


def _tables(run: Path) -> Tables:
    return load_runs([discover(run)], keep_raw=True)


# --- normalize_status ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("success", "success"),
        ("ok", "success"),
        (" OK ", "success"),
        ("fail", "fail"),
        ("failure", "fail"),
        ("Error", "fail"),
        ("skip", "skipped"),
        ("partialsuccess", "partial_success"),
        ("partial-success", "partial_success"),
        ("degradedsuccess", "degraded_success"),
        ("Degraded-Success", "degraded_success"),
        ("retry", "retry"),
        ("Needs_Review", "needs_review"),
    ],
)
def test_status_strings_are_trimmed_lowered_and_aliased_like_kilroy(
    raw: str, expected: str
) -> None:
    assert normalize_status({"status": raw}) == (expected, None)


def test_a_failure_reason_is_kept() -> None:
    doc = {"status": "fail", "failure_reason": "exit status 1", "notes": "tool failed"}
    assert normalize_status(doc) == ("fail", "exit status 1")


def test_an_empty_failure_reason_is_none() -> None:
    assert normalize_status({"status": "fail", "failure_reason": ""}) == ("fail", None)


def test_the_legacy_outcome_shape_is_read() -> None:
    assert normalize_status({"outcome": "SUCCESS", "preferred_next_label": "Yes"}) == (
        "success",
        None,
    )


def test_the_legacy_shape_takes_its_reason_from_details_then_notes() -> None:
    both = {"outcome": "FAILURE", "details": "tsc failed", "notes": "see log"}
    assert normalize_status(both) == ("fail", "tsc failed")
    assert normalize_status({"outcome": "failure", "notes": "see log"}) == ("fail", "see log")


def test_the_legacy_shape_prefers_an_explicit_failure_reason() -> None:
    doc = {"outcome": "fail", "failure_reason": "boom", "details": "other"}
    assert normalize_status(doc) == ("fail", "boom")


def test_notes_of_the_canonical_shape_are_not_a_failure_reason() -> None:
    assert normalize_status({"status": "fail", "notes": "tool completed"}) == ("fail", None)


@pytest.mark.parametrize(
    "value",
    [None, [], "success", 3, {}, {"status": ""}, {"status": "  "}, {"status": 1}, {"notes": "x"}],
)
def test_values_without_a_usable_status_normalize_to_nothing(value: Any) -> None:
    assert normalize_status(value) == (None, None)


# --- stage statuses -----------------------------------------------------------------------------


def test_stage_statuses_are_normalized_and_the_canonical_one_is_marked(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _write(run / "build/status.json", '{"status": "OK"}')
    _write(run / "build/attempt_1/status.json", '{"outcome": "failure", "notes": "boom"}')
    statuses = _docs(run).top.statuses
    assert [(s.node_id, s.status, s.failure_reason, s.canonical) for s in statuses] == [
        ("build", "success", None, True),
        ("build", "fail", "boom", False),
    ]


def test_an_archive_alone_is_not_marked_canonical(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _write(run / "build/attempt_1/status.json", '{"status": "fail"}')
    (status,) = _docs(run).top.statuses
    assert status.canonical is False


def test_the_attempt_archives_of_an_earlier_visit_are_read_too(tmp_path: Path) -> None:
    # Kilroy moves a node's whole directory, attempt_<K>/ included, into visit_<N>/.
    run = _run(tmp_path)
    _write(run / "verify/status.json", '{"status": "success"}')
    _write(run / "verify/visit_1/status.json", '{"status": "fail", "failure_reason": "v1a2"}')
    _write(
        run / "verify/visit_1/attempt_1/status.json",
        '{"status": "fail", "failure_reason": "v1a1"}',
    )
    reasons = [s.failure_reason for s in _docs(run).top.statuses]
    assert reasons[0] is None
    assert sorted(r for r in reasons[1:] if r) == ["v1a1", "v1a2"]


def test_a_torn_stage_status_is_a_document_error_with_no_status(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _write(run / "build/status.json", '{"status": "fa')
    (status,) = _docs(run).top.statuses
    assert status.status is None
    assert not status.document.ok
    assert status.document.error is not None


# --- unreadable documents -----------------------------------------------------------------------


def _final(run: Path) -> Document:
    final = _docs(run).top.final
    assert final is not None
    return final


def test_a_valid_final_json_parses(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _write(run / "final.json", '{"status": "success", "run_id": "r1"}')
    final = _final(run)
    assert final.ok
    assert final.get("status") == "success"
    assert final.error is None


def test_an_empty_document_is_an_error_at_its_first_byte(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _write(run / "final.json", "")
    final = _final(run)
    assert not final.ok
    assert (final.error, final.line, final.byte_offset) == ("empty file", 1, 0)
    assert final.get("status") is None


def test_a_truncated_document_reports_where_it_stops(tmp_path: Path) -> None:
    run = _run(tmp_path)
    text = '{\n  "status": "success",\n  "run_id": '
    _write(run / "final.json", text)
    final = _final(run)
    assert final.error is not None
    assert final.error.startswith("not JSON")
    assert (final.line, final.byte_offset) == (3, len(text.encode()))


def test_the_byte_offset_of_a_torn_document_counts_bytes_not_characters(tmp_path: Path) -> None:
    run = _run(tmp_path)
    text = '{"notes": "héllo wörld", "status": '
    _write(run / "checkpoint.json", text)
    doc = _docs(run).top.checkpoint
    assert doc is not None
    assert doc.byte_offset == len(text.encode("utf-8"))


def test_a_document_that_is_not_utf8_reports_the_line_and_byte_of_the_bad_byte(
    tmp_path: Path,
) -> None:
    run = _run(tmp_path)
    data = b'{\n  "status": "\xff"\n}'
    _write(run / "live.json", data)
    live = _docs(run).top.live
    assert live is not None
    assert live.error == "not UTF-8"
    assert (live.line, live.byte_offset) == (2, data.index(b"\xff"))


def test_an_unreadable_document_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _run(tmp_path)
    target = _write(run / "final.json", '{"status": "success"}')
    real_open = os.open

    def refusing_open(path: Any, flags: int, *args: Any, **kw: Any) -> int:
        if Path(path) == target:  # chmod 000 does not stop root, so refuse the open here
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(os, "open", refusing_open)
    final = _final(run)
    assert final.error == "unreadable: Permission denied"
    assert final.value is None


def test_torn_documents_appear_in_the_torn_table(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _write(run / "final.json", "")
    _write(run / "checkpoint.json", '{"current_node": ')
    _write(run / "build/status.json", '{"status"')
    _write(run / "parallel/fan/01-a/progress.ndjson", '{"event": "x"}\n')
    _write(run / "parallel/fan/01-a/live.json", '{"event": "x"')
    rows = _tables(run).sql("SELECT scope, rel, line, byte_offset FROM torn ORDER BY rel")
    assert rows == [
        ("", "build/status.json", 1, 9),
        ("", "checkpoint.json", 1, 17),
        ("", "final.json", 1, 0),
        ("parallel/fan/01-a", "parallel/fan/01-a/live.json", 1, 13),
    ]


def test_torn_stranded_status_files_are_kept_but_not_reported_torn(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _write(run / "worktree/status.json", '{"status": ')
    _write(run / "worktree/.ai/runs/r1/status.json", '{"status": "success"}')
    docs = _docs(run)
    stranded = {d.rel: d for d in docs.top.stranded}
    assert set(stranded) == {"worktree/status.json", "worktree/.ai/runs/r1/status.json"}
    assert not stranded["worktree/status.json"].ok
    assert stranded["worktree/.ai/runs/r1/status.json"].get("status") == "success"
    tables = _tables(run)
    assert tables.sql("SELECT count(*) FROM torn") == [(0,)]
    assert tables.sql("SELECT rel, ok FROM files WHERE kind = 'stranded_status' ORDER BY rel") == [
        ("worktree/.ai/runs/r1/status.json", True),
        ("worktree/status.json", False),
    ]


def test_documents_are_listed_in_the_files_table_with_their_scope(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _write(run / "final.json", '{"status": "success"}')
    _write(run / "parallel/fan/01-a/progress.ndjson", '{"event": "x"}\n')
    _write(run / "parallel/fan/01-a/impl/status.json", '{"status": "success"}')
    rows = _tables(run).sql("SELECT scope, rel, kind, ok FROM files ORDER BY rel")
    assert ("", "final.json", "final", True) in rows
    assert (
        "parallel/fan/01-a",
        "parallel/fan/01-a/impl/status.json",
        "status",
        True,
    ) in rows


# --- cost ---------------------------------------------------------------------------------------


def _result_line(cost: float) -> str:
    return json.dumps({"type": "result", "subtype": "success", "total_cost_usd": cost}) + "\n"


def test_cost_sums_total_cost_usd_over_stage_stdout_logs(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _write(run / "impl/prompt.md", "do it")
    _write(run / "impl/stdout.log", '{"type": "system"}\n' + _result_line(0.25))
    _write(run / "impl/attempt_1/stdout.log", _result_line(0.5) + "noise\n" + _result_line(0.125))
    _write(run / "parallel/fan/01-a/progress.ndjson", '{"event": "x"}\n')
    _write(run / "parallel/fan/01-a/review/stdout.log", _result_line(1.0))
    docs = _docs(run)
    assert docs.top.cost_usd == pytest.approx(0.875)
    assert docs.cost_usd == pytest.approx(1.875)


def test_cost_is_none_when_no_artifact_reports_one(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _write(run / "build/stdout.log", "compiling\n")
    assert _docs(run).cost_usd is None


def test_cost_reaches_the_run_facts(tmp_path: Path) -> None:
    from doctor import DoctorConfig, diagnose

    run = _run(tmp_path)
    _write(run / "impl/stdout.log", _result_line(0.1) + _result_line(0.2))
    facts = diagnose("r1", DoctorConfig(roots=(tmp_path,), now=1.78e9)).facts
    assert facts["cost_usd"] == pytest.approx(0.3)


# --- owner pid ----------------------------------------------------------------------------------


def _my_start_ticks() -> int:
    ticks = start_ticks(os.getpid())
    if ticks is None:
        pytest.skip("no /proc/PID/stat on this host")
    return ticks


def test_the_pid_comes_from_run_pid_without_a_lock(tmp_path: Path) -> None:
    docs = _docs(_run(tmp_path))
    assert (docs.pid, docs.pid_start_time) == (DEAD_PID, None)


def test_run_lock_json_pid_and_start_time_are_preferred_over_run_pid(tmp_path: Path) -> None:
    run = _run(tmp_path)
    ticks = _my_start_ticks()
    lock = {"pid": os.getpid(), "pid_start_time": ticks, "run_id": "r1"}
    _write(run / "run.lock.json", json.dumps(lock))
    docs = _docs(run)
    assert (docs.pid, docs.pid_start_time) == (os.getpid(), ticks)
    assert process_alive(docs.pid, docs.pid_start_time) is True


def test_a_torn_lock_falls_back_to_run_pid(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _write(run / "run.lock.json", '{"pid": 12')
    docs = _docs(run)
    assert docs.pid == DEAD_PID
    assert any(d.rel == "run.lock.json" and not d.ok for d in docs.documents)


@pytest.mark.parametrize("text", ["", "abc", "-5", "0", "12 34", str(2**40)])
def test_a_run_pid_that_is_not_a_pid_is_ignored(tmp_path: Path, text: str) -> None:
    run = _run(tmp_path)
    _write(run / "run.pid", text)
    assert _docs(run).pid is None


def test_a_run_pid_with_a_trailing_newline_is_read(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _write(run / "run.pid", "4242\n")
    assert _docs(run).pid == 4242


# --- liveness -----------------------------------------------------------------------------------


def test_this_process_is_alive() -> None:
    assert process_alive(os.getpid()) is True


def test_this_process_with_its_own_start_time_is_alive() -> None:
    assert process_alive(os.getpid(), _my_start_ticks()) is True


def test_a_reused_pid_with_another_start_time_is_not_the_owner() -> None:
    assert process_alive(os.getpid(), _my_start_ticks() + 1) is False


def test_a_pid_that_cannot_exist_is_dead() -> None:
    assert process_alive(DEAD_PID) is False


def test_no_pid_means_unknown() -> None:
    assert owner_alive(None) is None


def test_a_zombie_counts_as_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        proc = psutil.Process(child.pid)
        for _ in range(10_000):  # wait for the exit, however long it takes (no time limit)
            if proc.status() == psutil.STATUS_ZOMBIE:
                break
            psutil.wait_procs([], timeout=0.01)
        assert proc.status() == psutil.STATUS_ZOMBIE
        assert process_alive(child.pid) is False
    finally:
        child.wait()


# --- the run's terminal record ------------------------------------------------------------------


def _final_at(run: Path, scope: str, status: str, ts: str) -> None:
    """A top-level final.json as Kilroy saves one: its status at ``ts`` (recorded)."""
    where = run / scope if scope else run
    _write(where / "final.json", json.dumps({"timestamp": ts, "status": status}))


def _restarted(tmp_path: Path) -> Path:
    run = _run(tmp_path)
    _write(run / "restart-1/progress.ndjson", '{"event": "x"}\n')
    return run


def test_the_final_json_the_run_wrote_last_is_the_run_s_final(tmp_path: Path) -> None:
    # loop_restart_sigterm_resumed: a signal stopped restart-1/ (its final.json and the base
    # one say fail), and the resume went on in the base directory, whose final.json it
    # rewrote: success, an hour later. The run's end is the base one, not the restart's.
    run = _restarted(tmp_path)
    _final_at(run, "restart-1", "fail", "2026-12-06T13:41:15.257795677Z")
    _final_at(run, "", "success", "2026-12-06T14:42:15.338942156Z")
    final = _docs(run).final
    assert final is not None
    assert (final.rel, final.get("status")) == ("final.json", "success")


def test_a_restart_s_final_json_written_after_the_base_one_is_the_run_s_final(
    tmp_path: Path,
) -> None:
    # A resume of restart-1/ itself (``--logs-root …/restart-1``) of a run directory that was
    # moved: Kilroy rewrites restart-1/final.json, and the base one at the recorded old path.
    run = _restarted(tmp_path)
    _final_at(run, "", "fail", "2026-12-06T13:42:25.052334354Z")
    _final_at(run, "restart-1", "success", "2026-12-06T13:46:27.520796315Z")
    final = _docs(run).final
    assert final is not None
    assert (final.rel, final.get("status")) == ("restart-1/final.json", "success")


def test_one_outcome_saved_to_a_restart_and_the_base_is_read_from_the_restart(
    tmp_path: Path,
) -> None:
    # Kilroy saves the outcome of a run that ends in restart-N/ there and in the base
    # directory, with one timestamp (real run loop_restart_transient).
    run = _restarted(tmp_path)
    for scope in ("", "restart-1"):
        _final_at(run, scope, "success", "2026-12-05T23:13:42.324847926Z")
    final = _docs(run).final
    assert final is not None
    assert final.rel == "restart-1/final.json"


def test_a_final_json_without_a_readable_timestamp_comes_before_a_recorded_one(
    tmp_path: Path,
) -> None:
    run = _restarted(tmp_path)
    _final_at(run, "", "fail", "2026-12-06T13:41:15Z")
    _write(run / "restart-1/final.json", '{"timestamp": "2026-12-06T13:4')  # torn
    final = _docs(run).final
    assert final is not None
    assert final.rel == "final.json"
    _write(run / "restart-1/final.json", '{"status": "success", "timestamp": "yesterday"}')
    final = _docs(run).final
    assert final is not None
    assert final.rel == "final.json"


def test_without_recorded_timestamps_the_latest_restart_s_final_json_is_the_run_s_final(
    tmp_path: Path,
) -> None:
    run = _run(tmp_path)
    _write(run / "final.json", '{"status": "fail"}')
    for n, status in ((2, "fail"), (10, "success"), (9, "fail")):
        _write(run / f"restart-{n}/progress.ndjson", '{"event": "x"}\n')
        _write(run / f"restart-{n}/final.json", json.dumps({"status": status}))
    final = _docs(run).final
    assert final is not None
    assert final.rel == "restart-10/final.json"


def test_a_branch_inside_a_restart_does_not_break_the_run_s_final(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _write(run / "restart-1/progress.ndjson", '{"event": "x"}\n')
    _write(run / "restart-1/final.json", '{"status": "success"}')
    _write(run / "restart-1/parallel/fan/pass1/01-a/progress.ndjson", '{"event": "x"}\n')
    final = _docs(run).final
    assert final is not None
    assert final.rel == "restart-1/final.json"


def test_a_branch_s_final_json_is_never_the_run_s_final(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _write(run / "parallel/fan/01-a/progress.ndjson", '{"event": "x"}\n')
    _write(run / "parallel/fan/01-a/final.json", '{"status": "success"}')
    assert _docs(run).final is None


def test_a_run_pid_reused_by_a_younger_process_leaves_the_run_orphaned(tmp_path: Path) -> None:
    # A real Kilroy run killed mid-stage, as an older build leaves it: run.pid, no lock.
    run = tmp_path / "sigkill_mid_stage"
    shutil.copytree(REPO / "fixtures" / "kilroy" / "runs" / "sigkill_mid_stage", run)
    (run / "run.lock.json").unlink()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run / "run.pid").write_text(str(child.pid))  # the pid, reused by a live process
        config = DoctorConfig(roots=(tmp_path,))
        recorded_now = diagnose(run.name, config)
        assert (recorded_now.state, recorded_now.facts["owner_alive"]) == ("stalled", True)
        hour_ago = time.time() - 3600  # written down an hour before that process started
        os.utime(run / "run.pid", (hour_ago, hour_ago))
        reused = diagnose(run.name, config)
        assert (reused.state, reused.facts["owner_alive"]) == ("orphaned", False)
        assert "missing_final" in [f.code for f in reused.findings]
    finally:
        child.kill()
        child.wait()
