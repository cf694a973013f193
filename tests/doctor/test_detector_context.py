"""``Context.has_failed_attempts``: what lets the failure-reason detectors skip healthy runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from doctor._config import DoctorConfig
from doctor._detectors import Context
from doctor._facts import compute_facts
from doctor._ingest import load_runs
from doctor._layout import discover


def _context(tmp_path: Path, status: str, *, then: tuple[dict[str, object], ...] = ()) -> Context:
    run = tmp_path / "r1"
    run.mkdir(parents=True)
    (run / "run.pid").write_text("99999999")
    lines = [
        {
            "event": "stage_attempt_start",
            "node_id": "a",
            "attempt": 1,
            "ts": "2026-04-28T10:00:00Z",
        },
        {
            "event": "stage_attempt_end",
            "node_id": "a",
            "attempt": 1,
            "status": status,
            "failure_reason": "",
            "ts": "2026-04-28T10:00:01Z",
        },
        *then,
    ]
    (run / "progress.ndjson").write_text("".join(json.dumps(x) + "\n" for x in lines))
    config = DoctorConfig(roots=(tmp_path,), now=1_800_000_000.0)
    tables = load_runs([discover(run)], keep_raw=False)
    return Context(tables, compute_facts(tables, config), config)


@pytest.mark.parametrize(
    ("status", "failed"),
    [("success", False), ("partial_success", False), ("fail", True), ("RETRY", True)],
)
def test_failed_attempts_are_those_ended_fail_or_retry_in_any_case(
    tmp_path: Path, status: str, failed: bool
) -> None:
    ctx = _context(tmp_path, status)
    assert ctx.has_failed_attempts() is failed
    assert ctx.has_failed_attempts() is failed  # asked once, then remembered


def test_an_empty_failure_reason_is_still_found_when_the_attempt_failed(tmp_path: Path) -> None:
    from doctor._detectors.swallowed_error import swallowed_error

    ctx = _context(tmp_path, "fail")
    assert [f.code for f in swallowed_error(ctx)] == ["swallowed_error"]
    assert swallowed_error(_context(tmp_path / "ok", "success")) == []


def test_the_scopes_endings_are_asked_of_duckdb_once_per_context(tmp_path: Path) -> None:
    # retry_loop, deterministic_retry_loop and fragmented_failure_signatures all ask for them.
    from doctor._detectors._stops import _ENDINGS_SQL, scope_endings

    failed = {"event": "run_failed", "failure_reason": "x", "ts": "2026-04-28T10:00:02Z"}
    ctx = _context(tmp_path, "fail", then=(failed,))
    asked: list[str] = []
    sql = ctx.tables.sql

    def counted(query: str, **params: object) -> list[tuple[object, ...]]:
        asked.append(query)
        return sql(query, **params)

    ctx.tables.sql = counted  # type: ignore[method-assign]
    first = scope_endings(ctx)
    assert scope_endings(ctx) is first
    assert scope_endings(ctx) is first
    assert asked.count(_ENDINGS_SQL) == 1
