"""A rescan's small batch in a warm child process (``doctor._scan_child``).

The child is forked only where nothing else runs, so each scan below runs in a fresh Python
process (this one has DuckDB loaded, and so never forks one): a script scans the runs with a
cache, after a run grew, and reports what it got and which process diagnosed the batch.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from doctor import DoctorConfig, scan

NOW = 1777377600.0  # 2026-04-28T12:00:00Z
DEAD_PID = "99999999"

#: Scans ``root`` with the cache and prints the scan's JSON text and what the spies saw:
#: ``submitted``, the runs handed to the child; ``here``, the batches this process diagnosed
#: (a child's own are not seen here). ``argv[4]`` says what befalls the child once forked.
_SCRIPT = """
import json, os, signal, sys, time
from pathlib import Path
from doctor import DoctorConfig, scan
from doctor import _scan_child, _scan_pool

root, cache, now, fate = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
submitted, here, pids = [], [], []
real_submit, real_safely, real_fork = (
    _scan_child.WarmChild.submit, _scan_pool._safely, _scan_child._fork)

def submit(self, batch):
    submitted.append([x.run_id for x in batch.layouts])
    return real_submit(self, batch)

def safely(batch):
    here.append([x.run_id for x in batch.layouts])
    return real_safely(batch)

def fork():
    forked = real_fork()
    if forked is not None:
        pids.append(forked[0].pid)
        if fate == "killed":
            os.kill(forked[0].pid, signal.SIGKILL)
        if fate == "interrupted":
            os.kill(forked[0].pid, signal.SIGINT)
    return forked

_scan_child.WarmChild.submit = submit
_scan_child._safely = safely
_scan_child._fork = fork
config = DoctorConfig(roots=(root,), cache_dir=cache, now=now)
try:
    text = scan(config).to_json_text()
except KeyboardInterrupt:
    text = "interrupted"
reaped = []
for pid in pids:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        reaped.append(pid)
print(json.dumps({"text": text, "submitted": submitted, "here": here, "forked": len(pids),
                  "reaped": len(reaped)}))
"""


def _line(event: str, at: str, **fields: Any) -> str:
    return json.dumps({"event": event, "ts": f"2026-04-28T{at}Z", **fields}) + "\n"


def _run(root: Path, run_id: str, stream: str, final: str | None = None) -> None:
    run = root / run_id
    run.mkdir(parents=True)
    (run / "run.pid").write_text(DEAD_PID)
    (run / "progress.ndjson").write_text(stream)
    if final is not None:
        (run / "final.json").write_text(json.dumps({"status": final, "run_id": run_id}))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    start = _line("stage_attempt_start", "09:00:00", node_id="a", attempt=1)
    end = _line("stage_attempt_end", "09:00:05", node_id="a", attempt=1, status="success")
    _run(root, "done", start + end + _line("run_completed", "09:00:06"), final="success")
    _run(root, "dead", start + _line("stage_heartbeat", "09:00:02", node_id="a"))
    _run(root, "failed", start + end.replace('"success"', '"fail"'))
    return root


def _scan_in_a_new_process(root: Path, tmp_path: Path, fate: str = "") -> dict[str, Any]:
    # Its own temporary directory: where the batch's DuckDB spills, checked empty after.
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir(exist_ok=True)
    args = [str(root), str(tmp_path / "cache"), str(NOW), fate or "-"]
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _grow(root: Path) -> None:
    with (root / "dead/progress.ndjson").open("a") as fh:
        fh.write(_line("stage_heartbeat", "09:00:04", node_id="a"))


def _uncached(root: Path) -> str:
    return scan(DoctorConfig(roots=(root,), now=NOW)).to_json_text()


def _without_counts(text: str) -> Any:
    data = json.loads(text)
    data["fleet"] = {k: v for k, v in data["fleet"].items() if k not in ("read", "reused")}
    return data


def test_the_run_that_grew_is_diagnosed_by_the_warm_child_with_the_cold_result(
    root: Path, tmp_path: Path
) -> None:
    cold = _scan_in_a_new_process(root, tmp_path)
    assert cold["forked"] == 1 and cold["submitted"] == []  # every run read: by this process
    assert cold["reaped"] == 1  # the unused child was killed and reaped
    _grow(root)
    warm = _scan_in_a_new_process(root, tmp_path)
    assert warm["submitted"] == [["dead"]]
    assert warm["here"] == []  # the child diagnosed it: this process did not
    assert warm["reaped"] == 1
    assert json.loads(warm["text"])["fleet"]["read"] == 1
    assert _without_counts(warm["text"]) == _without_counts(_uncached(root))
    assert not list((tmp_path / "tmp").iterdir())  # the child's DuckDB left no spill directory


def test_a_rescan_with_nothing_to_read_kills_the_child_unused(root: Path, tmp_path: Path) -> None:
    _scan_in_a_new_process(root, tmp_path)
    again = _scan_in_a_new_process(root, tmp_path)
    assert again["forked"] == 1 and again["reaped"] == 1
    assert again["submitted"] == [] and again["here"] == []
    assert json.loads(again["text"])["fleet"]["reused"] == 3


def test_a_child_killed_before_it_answers_leaves_the_batch_to_this_process(
    root: Path, tmp_path: Path
) -> None:
    _scan_in_a_new_process(root, tmp_path)
    _grow(root)
    killed = _scan_in_a_new_process(root, tmp_path, "killed")
    assert killed["submitted"] == [["dead"]]
    assert killed["here"] == [["dead"]]  # diagnosed here instead, with the same result
    assert _without_counts(killed["text"]) == _without_counts(_uncached(root))


def test_ctrl_c_in_the_child_ends_the_scan_as_ctrl_c(root: Path, tmp_path: Path) -> None:
    _scan_in_a_new_process(root, tmp_path)
    _grow(root)
    interrupted = _scan_in_a_new_process(root, tmp_path, "interrupted")
    assert interrupted["text"] == "interrupted"
    assert interrupted["here"] == []  # not diagnosed again after Ctrl-C
    assert interrupted["reaped"] == 1


def test_no_child_is_forked_where_duckdb_runs_threads(root: Path, tmp_path: Path) -> None:
    import duckdb  # noqa: F401  (loaded, as in this test process anyway)

    from doctor._scan_child import warm_child

    with warm_child(True) as child:
        assert child is None
    config = DoctorConfig(roots=(root,), cache_dir=tmp_path / "cache", now=NOW)
    scan(config)
    _grow(root)
    assert _without_counts(scan(config).to_json_text()) == _without_counts(
        scan(replace(config, cache_dir=None)).to_json_text()
    )


def test_an_answer_cut_short_is_no_answer() -> None:
    import pickle

    from doctor._scan_child import _outcomes
    from doctor._scan_outcome import RunOutcome

    whole = pickle.dumps([RunOutcome("r", {"run_id": "r"}, {}, {"first": None})])
    assert _outcomes(whole) == [RunOutcome("r", {"run_id": "r"}, {}, {"first": None})]
    assert all(_outcomes(whole[:cut]) is None for cut in range(len(whole)))


def test_a_child_closed_twice_is_signalled_once() -> None:
    # The second close must not signal the pid again: once reaped, another process may have it.
    probe = (
        "import os, signal, json; from doctor import _scan_child as c; sent = []; "
        "real = os.kill; os.kill = lambda pid, sig: (sent.append(sig), real(pid, sig)); "
        "cm = c.warm_child(True); child = cm.__enter__(); child.close(); child.close(); "
        "cm.__exit__(None, None, None); print(json.dumps(sent))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(done.stdout) == [int(signal.SIGKILL)]


def test_the_child_s_warm_up_runs_duckdb_and_leaves_no_file(tmp_path: Path) -> None:
    probe = "from doctor._scan_child import _warm_up; _warm_up(); print('warm')"
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and done.stdout == "warm\n", done.stderr
    assert list(tmp_path.iterdir()) == []  # no .tmp spill directory, no database file
