"""The run directory writer: atomic documents, whole lines, attempt dirs never reused."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from executor._artifacts import Checkpoint, RunWriter, atomic_write_json
from executor._events import EngineWarning, Event, StageAttemptStart


def writer(tmp_path: Path, **kw: Any) -> RunWriter:
    w = RunWriter(tmp_path / "run", run_id="r1", epoch=3, clock=lambda: 1770741731.5, **kw)
    w.create()
    return w


def test_an_attempt_directory_is_never_reused_even_by_a_new_writer(tmp_path: Path) -> None:
    w = writer(tmp_path)
    assert [w.new_attempt("a").rel for _ in range(2)] == ["a/attempt-1", "a/attempt-2"]
    (w.path / "a" / "attempt-3").mkdir()  # left by someone else
    again = RunWriter(w.path, run_id="r1")
    assert again.new_attempt("a").rel == "a/attempt-4"


def test_a_run_directory_is_never_reused(tmp_path: Path) -> None:
    w = writer(tmp_path)
    with pytest.raises(FileExistsError):
        RunWriter(w.path, run_id="r1").create()


def test_documents_are_replaced_whole_and_leave_no_temporary_files(tmp_path: Path) -> None:
    target = tmp_path / "final.json"
    atomic_write_json(target, {"status": "fail", "failure_reason": "x" * 10_000})
    atomic_write_json(target, {"status": "success"})
    assert json.loads(target.read_text()) == {"status": "success"}
    assert [p.name for p in tmp_path.iterdir()] == ["final.json"]


def test_an_event_is_one_stamped_line_in_the_stream_the_attempt_and_live_json(
    tmp_path: Path,
) -> None:
    seen: list[Event] = []
    w = writer(tmp_path, sink=seen.append)
    a = w.new_attempt("build")
    start = StageAttemptStart(node_id="build", attempt=1, max=1, handler="tool", attempt_dir=a.rel)
    stamped = w.emit(start, attempt=a)
    line = (w.path / "progress.ndjson").read_text()
    assert line == (a.path / "events.ndjson").read_text() == (w.path / "live.json").read_text()
    data = json.loads(line)
    assert (data["event"], data["ts"], data["run_id"], data["epoch"]) == (
        "stage_attempt_start",
        "2026-02-10T16:42:11.5Z",
        "r1",
        3,
    )
    assert seen == [stamped] and stamped.id == data["id"]


def test_concurrent_emitters_never_interleave_lines(tmp_path: Path) -> None:
    w = writer(tmp_path)

    def spam(n: int) -> None:
        for i in range(200):
            w.emit(EngineWarning(message=f"{n}:{i}:" + "x" * 3000))

    threads = [threading.Thread(target=spam, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = (w.path / "progress.ndjson").read_text().splitlines()
    assert len(lines) == 800 and all(json.loads(x)["event"] == "warning" for x in lines)


def test_the_checkpoint_lists_each_node_once_and_counts_every_retry(tmp_path: Path) -> None:
    ck = Checkpoint()
    for node, retries in [("impl", 0), ("verify", 2), ("impl", 1), ("verify", 0)]:
        ck.complete(node, retries=retries)
    w = writer(tmp_path)
    w.save_checkpoint(ck)
    doc = json.loads((w.path / "checkpoint.json").read_text())
    assert doc["completed_nodes"] == ["impl", "verify"]
    assert doc["node_retries"] == {"impl": 1, "verify": 2}
    assert doc["current_node"] == "verify"


def test_the_run_lock_is_exclusive_and_names_its_owner(tmp_path: Path) -> None:
    w = writer(tmp_path)
    w.acquire_lock(12345)
    lock = json.loads((w.path / "run.lock.json").read_text())
    assert (lock["pid"], lock["run_id"]) == (12345, "r1")
    assert (w.path / "run.pid").read_text() == "12345"
    with pytest.raises(FileExistsError):
        w.acquire_lock(12345)
    w.release_lock()
    assert not (w.path / "run.lock.json").exists()


def test_final_json_has_the_kilroy_keys_and_the_totals(tmp_path: Path) -> None:
    w = writer(tmp_path)
    w.write_final("canceled", "canceled by signal SIGTERM", wall_s=1.5, cost_usd=0.0, attempts=2)
    final = json.loads((w.path / "final.json").read_text())
    assert final["status"] == "canceled" and final["epoch"] == 3 and final["attempts"] == 2
    assert {"timestamp", "run_id", "failure_reason", "final_git_commit_sha"} <= set(final)
