"""A command that changed something and then could not print it exits 74, saying what it did.

``doctor enqueue --json > /dev/full`` queued its ticket and exited 2, "usage or input error",
which tells a script nothing was done: run again, it queues the ticket twice. Every command
that changes state and then prints (``enqueue``, ``run``, ``worker``, ``reap``, ``repair
--apply``, ``report --out``, ``chaos run``) now ends such a failure with
``rundoctor.errors.OUTPUT_LOST`` (74, ``EX_IOERR``) and one line naming what was done; a
command that changed nothing keeps 2. Real processes, their standard output the real
``/dev/full``.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from rundoctor.errors import OUTPUT_LOST, USAGE_EXIT_CODE

REPO = Path(__file__).resolve().parents[1]
GRAPH = REPO / "fixtures/pipelines/tool_simple.dot"
TORN = REPO / "fixtures/cases/torn_last_progress_line/run"


def _to_full(tmp_path: Path, *args: str | Path) -> tuple[int, str]:
    """``doctor ARGS`` with standard output on ``/dev/full``: the exit code and the one line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNDOCTOR_")}
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "doctor", *map(str, args)],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            env=env,
            check=False,
            timeout=120,
        )
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines, done
    return done.returncode, lines[-1]


def _tickets(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as con:
        return list(con.execute("SELECT id, status FROM tickets ORDER BY id"))


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "id"])
def test_enqueue_to_a_full_stdout_says_the_ticket_was_queued_and_exits_74(
    tmp_path: Path, as_json: bool
) -> None:
    db = tmp_path / "q.db"
    code, line = _to_full(tmp_path, "enqueue", GRAPH, "--db", db, *["--json"] * as_json)
    (ticket, status), *more = _tickets(db)
    assert (code, status, more) == (OUTPUT_LOST, "todo", [])
    assert line.startswith(f"error: ticket {ticket} was queued, but the command's output")
    assert "No space left on device" in line and "doctor tickets" in line


def test_run_and_worker_to_a_full_stdout_exit_74_naming_what_ran(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    code, line = _to_full(tmp_path, "run", GRAPH, "--root", runs, "--json")
    (run,) = runs.iterdir()
    assert code == OUTPUT_LOST and f"run {run.name} ended success" in line
    db = tmp_path / "q.db"
    assert _to_full(tmp_path, "enqueue", GRAPH, "--db", db)[0] == OUTPUT_LOST
    code, line = _to_full(tmp_path, "worker", "--db", db, "--root", runs, "--once", "-q", "--json")
    assert code == OUTPUT_LOST and "worker stopped: claimed 1, completed 1" in line
    assert [s for _, s in _tickets(db)] == ["done"]


def test_a_command_that_changed_nothing_keeps_exit_2(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    assert _to_full(tmp_path, "enqueue", GRAPH, "--db", db)[0] == OUTPUT_LOST
    code, line = _to_full(tmp_path, "reap", "--db", db)  # nothing to reclaim: nothing done
    assert code == USAGE_EXIT_CODE and "cannot write" in line
    code, _ = _to_full(tmp_path, "report", "--run-id", "torn01", "--root", TORN)
    assert code == USAGE_EXIT_CODE  # the report is what is printed: nothing was written


def test_report_out_and_repair_apply_to_a_full_stdout_exit_74(tmp_path: Path) -> None:
    out = tmp_path / "r.md"
    code, line = _to_full(
        tmp_path, "report", "--run-id", "torn01", "--root", TORN, "--out", out, "--json"
    )
    assert code == OUTPUT_LOST and f"the report was written to '{out}'" in line
    assert out.read_text().startswith("#")
    root = tmp_path / "runs"
    shutil.copytree(TORN, root)
    code, line = _to_full(tmp_path, "repair", "--run-id", "torn01", "--root", root, "--apply")
    assert code == OUTPUT_LOST and "the repairs of run 'torn01' were carried out" in line
    assert (root / "torn01" / "repairs.ndjson").exists()


def test_a_chaos_campaign_to_a_full_stdout_exits_74_naming_its_report(tmp_path: Path) -> None:
    out = tmp_path / "campaign"
    code, line = _to_full(
        tmp_path, "chaos", "run", "--seed", "3", "--duration", "1s", "--workers", "2",
        "--faults", "sigterm_worker", "--out", out, "--json",
    )  # fmt: skip
    assert code == OUTPUT_LOST and "the campaign ran (" in line
    assert f"'{out / 'report.json'}'" in line
    assert json.loads((out / "report.json").read_text())["invariants"]
