"""The per-run resource budget (issue 15): a run over DuckDB's memory or spill limit is that
run's ``unreadable_artifact``, never a crash (exit 70) nor the fleet's failure; and a run's
per-node facts are bounded.

The limits are made tiny through the documented environment variables, so a run of a few
MB goes over them with the real DuckDB.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

HANG_GUARD_S = 300
#: A small run passes these, a node-heavy one of ~20 MB does not (it would spill more).
TINY = {"RUNDOCTOR_MEMORY_LIMIT": "64MiB", "RUNDOCTOR_SPILL_LIMIT": "1MiB"}


def doctor(
    *args: str | Path,
    env: dict[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """The doctor as a process, with none of this environment's ``RUNDOCTOR_`` settings."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("RUNDOCTOR_")}
    return subprocess.run(
        [sys.executable, "-m", "doctor", *map(str, args)],
        capture_output=True,
        text=True,
        env={**base, "COLUMNS": "100", **(env or {})},
        cwd=Path(tempfile.gettempdir()),
        check=False,
        timeout=HANG_GUARD_S,
        preexec_fn=preexec_fn,  # only setrlimit, in the child
    )


def _run(root: Path, run_id: str, nodes: int, heartbeats: int = 2) -> Path:
    """A dead run, no final.json: ``nodes`` distinct nodes, three attempts each (two fail)."""
    run = root / run_id
    run.mkdir(parents=True)
    (run / "run.pid").write_text("99999999")
    lines = []
    for n in range(nodes):
        node = f"node_{n:07d}"
        for attempt in (1, 2, 3):
            second = n * 3 + attempt
            ts = f"2026-02-01T{second // 3600 % 24:02d}:{second // 60 % 60:02d}:{second % 60:02d}Z"
            lines.append(
                {"event": "stage_attempt_start", "ts": ts, "node_id": node, "attempt": attempt}
            )
            lines += [{"event": "stage_heartbeat", "ts": ts, "node_id": node}] * heartbeats
            status = "success" if attempt == 3 else "fail"
            lines.append(
                {
                    "event": "stage_attempt_end",
                    "ts": ts,
                    "node_id": node,
                    "attempt": attempt,
                    "status": status,
                    "failure_reason": "boom",
                }
            )
    (run / "progress.ndjson").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return run


def _findings(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert "Traceback" not in result.stderr, result.stderr
    findings: list[dict[str, Any]] = json.loads(result.stdout)["findings"]
    return findings


def test_a_run_over_the_spill_limit_is_its_unreadable_artifact_not_a_crash(tmp_path: Path) -> None:
    _run(tmp_path, "big", 15_000)
    result = doctor("diagnose", "--run-id", "big", "--root", tmp_path, "--json", env=TINY)
    assert result.returncode == 1, result.stderr  # by severity (error), not 70
    (finding,) = _findings(result)
    assert finding["code"] == "unreadable_artifact"
    assert finding["severity"] == "error"
    assert finding["evidence"]["kind"] == "run"
    detail = finding["evidence"]["detail"]
    assert detail.startswith("over the resource budget: DuckDB")
    # It names the limit that was reached and how to raise it.
    assert ("RUNDOCTOR_SPILL_LIMIT" in detail and "1MiB" in detail) or (
        "RUNDOCTOR_MEMORY_LIMIT" in detail and "64MiB" in detail
    )


def test_the_same_run_within_the_default_budget_is_diagnosed(tmp_path: Path) -> None:
    _run(tmp_path, "big", 15_000)
    result = doctor("diagnose", "--run-id", "big", "--root", tmp_path, "--json")
    assert result.returncode == 1
    assert [f["code"] for f in _findings(result)] == ["missing_final"]


def test_a_scan_gives_the_finding_to_the_run_over_the_budget_only(tmp_path: Path) -> None:
    for run_id in ("a", "c"):
        _run(tmp_path, run_id, 3)
    _run(tmp_path, "b", 15_000)
    result = doctor("scan", "--root", tmp_path, "--json", env=TINY)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1
    runs = {r["run_id"]: r for r in json.loads(result.stdout)["runs"]}
    assert [f["code"] for f in runs["b"]["findings"]] == ["unreadable_artifact"]
    assert runs["b"]["findings"][0]["evidence"]["detail"].startswith("over the resource budget")
    for run_id in ("a", "c"):  # diagnosed as without the big run
        assert [f["code"] for f in runs[run_id]["findings"]] == ["missing_final"]
        assert runs[run_id]["state"] == "orphaned"


def test_a_limit_that_is_not_a_size_is_a_usage_error(tmp_path: Path) -> None:
    _run(tmp_path, "a", 1)
    result = doctor(
        "diagnose", "--run-id", "a", "--root", tmp_path, env={"RUNDOCTOR_SPILL_LIMIT": "lots"}
    )
    assert result.returncode == 2
    assert "RUNDOCTOR_SPILL_LIMIT 'lots' is not a size" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("variable", "size", "command"),
    [
        ("RUNDOCTOR_MEMORY_LIMIT", "99999999999999999999TB", "diagnose"),
        ("RUNDOCTOR_SPILL_LIMIT", "99999999999999999999TB", "scan"),
        ("RUNDOCTOR_MEMORY_LIMIT", "0B", "scan"),
    ],
)
def test_a_limit_out_of_range_is_a_usage_error_not_every_runs_failure(
    tmp_path: Path, variable: str, size: str, command: str
) -> None:
    # Before: DuckDB refused the huge value ("Memory value out of range"): `diagnose` ended
    # with "internal error", exit 70, and `scan` reported every run unreadable_artifact; 0B
    # reported every run over the budget. The setting was wrong, not the runs.
    _run(tmp_path, "a", 1)
    args = ("--run-id", "a") if command == "diagnose" else ()
    result = doctor(command, *args, "--root", tmp_path, env={variable: size})
    assert result.returncode == 2, result
    assert result.stderr == (
        f"error: {variable} {size!r} is out of range; give a size above 0B and at most "
        "1024TiB (a pebibyte), e.g. 512MiB or 8GiB\n"
    )


def test_per_node_facts_keep_at_most_1000_rows_and_count_the_rest(tmp_path: Path) -> None:
    _run(tmp_path, "wide", 1_500, heartbeats=0)
    result = doctor("diagnose", "--run-id", "wide", "--root", tmp_path, "--json")
    assert result.returncode == 1
    facts = json.loads(result.stdout)["facts"]
    assert facts["rows_omitted"] == {"attempt_stats": 500, "attempt_spans": 500, "phases": 500}
    for key in ("attempt_stats", "attempt_spans", "phases"):
        assert len(facts[key]) == 1_000
    assert facts["attempts_started"] == 4_500  # the counts still cover every node
    # Spans keep the nodes with the most attempts (all tie at 3: the earliest), in start order.
    spans = [s["node_id"] for s in facts["attempt_spans"]]
    assert spans == [f"node_{n:07d}" for n in range(1_000)]


def test_a_run_under_the_cap_has_no_rows_omitted(tmp_path: Path) -> None:
    _run(tmp_path, "narrow", 10, heartbeats=0)
    result = doctor("diagnose", "--run-id", "narrow", "--root", tmp_path, "--json")
    facts = json.loads(result.stdout)["facts"]
    assert "rows_omitted" not in facts
    assert len(facts["attempt_stats"]) == len(facts["attempt_spans"]) == len(facts["phases"]) == 10
