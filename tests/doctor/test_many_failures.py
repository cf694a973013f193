"""A stream of many failures (issue 15): ``deterministic_retry_loop`` and
``status_contract_mismatch`` aggregate them in DuckDB, and what they fetch into Python is a
row per node or per failure class, never a row per failure.

The stream is real (20,000 failing visits of one node, each reason with its own numbers) and
read by the real DuckDB; what Python receives is counted by wrapping ``Tables.sql``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from doctor import DoctorConfig, Finding
from doctor._detectors import Context
from doctor._detectors.deterministic_retry_loop import deterministic_retry_loop
from doctor._detectors.status_contract_mismatch import status_contract_mismatch
from doctor._facts import compute_facts
from doctor._ingest import load_runs
from doctor._layout import discover
from doctor._tables import Tables
from fixtures._kilroy import KilroyRun

# The module, not the function of the same name the package puts in its place.
drl_module = importlib.import_module("doctor._detectors.deterministic_retry_loop")
FAILURES = 20_000
#: What a detector may fetch in one query here: a handful of nodes and classes.
FEW = 10


def _many_failures(tmp_path: Path, reason: Callable[[int], str]) -> Path:
    """impl succeeds, then verify fails ``FAILURES`` times, each a visit of its own, with
    ``reason(i)`` for the i-th failure; the agent wrote its status elsewhere."""
    run = KilroyRun(tmp_path, "r1", "2026-03-01T10:00:00Z")
    run.run_pid(99999999)
    s = run.stream()
    for i in range(FAILURES):
        t = i * 10.0
        for node, status, why in (("impl", "success", ""), ("verify", "fail", reason(i))):
            s.emit("stage_attempt_start", t, node_id=node, attempt=1, max=1)
            s.emit(
                "stage_attempt_end",
                t + 4,
                node_id=node,
                attempt=1,
                max=1,
                status=status,
                failure_reason=why,
            )
            t += 5
    run.write_json("worktree/status.json", {"status": "success"})
    return run.finish()


def _letters(i: int) -> str:
    """``i`` written in letters: reasons that differ in more than their numbers."""
    return "".join("abcdefghij"[int(d)] for d in str(i))


def _context(path: Path) -> Context:
    config = DoctorConfig(now=1.8e9)
    tables = load_runs([discover(path)], keep_raw=False)
    return Context(tables, compute_facts(tables, config), config)


@pytest.fixture
def fetched(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The number of rows each ``Tables.sql`` call hands to Python."""
    sizes: list[int] = []
    sql = Tables.sql

    def counted(self: Tables, query: str, **params: Any) -> list[tuple[Any, ...]]:
        rows = sql(self, query, **params)
        sizes.append(len(rows))
        return rows

    monkeypatch.setattr(Tables, "sql", counted)
    yield sizes


def _one(findings: list[Finding]) -> dict[str, Any]:
    (f,) = findings
    return f.evidence


def test_a_loop_of_many_failures_is_one_finding_fetched_as_one_row(
    tmp_path: Path, fetched: list[int]
) -> None:
    ctx = _context(_many_failures(tmp_path, "missing status.json after {} ms".format))
    fetched.clear()  # the facts' queries: bounded by their own caps
    loop = _one(deterministic_retry_loop(ctx))
    assert loop["count"] == loop["visits"] == loop["unique_reasons"] == FAILURES
    assert loop["signature"] == "missing status.json after <time>"
    # The most frequent reason (all once), among equals the most recent.
    assert loop["example"] == f"missing status.json after {FAILURES - 1} ms"
    stranded = _one(status_contract_mismatch(ctx))
    assert stranded["failed_attempts"] == FAILURES
    assert stranded["failed_by_node"] == {"verify": FAILURES}
    assert stranded["failure_reason"] == f"missing status.json after {FAILURES - 1} ms"
    assert stranded["found_outcome"] == "success"
    assert fetched and max(fetched) <= FEW, fetched


def test_many_reasons_that_differ_in_more_than_numbers_are_signed_a_page_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Letters make each reason a key of its own (one signature: a path): the keys are
    signed in pages, and the finding is the same whatever the page size."""
    path = _many_failures(tmp_path, lambda i: f"missing status.json in /w/{_letters(i)}/")
    whole = deterministic_retry_loop(_context(path))
    monkeypatch.setattr(drl_module, "_PAGE", 997)
    paged = deterministic_retry_loop(_context(path))
    assert [f.to_json() for f in paged] == [f.to_json() for f in whole]
    loop = _one(paged)
    assert loop["count"] == loop["unique_reasons"] == FAILURES
    assert loop["signature"] == "missing status.json in <path>"
