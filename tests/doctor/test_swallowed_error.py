"""``swallowed_error``: failure reasons with nothing in them, and bare exit codes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from doctor import Diagnosis, DoctorConfig, Finding, diagnose_path
from doctor._detectors.swallowed_error import BARE_EXIT_RE, generic_sql, swallowed_sql
from fixtures._kilroy import KilroyRun, Stream

START = "2026-03-01T10:00:00Z"
NOW = datetime(2026, 3, 1, 18, tzinfo=UTC).timestamp()


def _is(predicate: str, text: str | None) -> bool:
    row = duckdb.sql(f"SELECT {predicate} FROM (SELECT $x::VARCHAR AS x)", params={"x": text})
    return bool(row.fetchall()[0][0])


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        None,
        "None",
        "null",
        "<nil>",
        "undefined",
        "Subprocess failed: None",
        "error:",
        "stderr=null",
        'detail: ""',
        "Exception: {}",
    ],
)
def test_reasons_with_nothing_in_them_are_swallowed(text: str | None) -> None:
    assert _is(swallowed_sql("x"), text)


@pytest.mark.parametrize(
    "text",
    [
        "exit status 1",
        "missing status.json (auto_status=false)",
        "error: file not found",
        "turn limit reached (max_turns=25)",
        "Subprocess failed with return code 1: None",
        'failure_reason must be non-empty when status="fail"',
        "key: value: None",
    ],
)
def test_reasons_that_say_something_are_not_swallowed(text: str) -> None:
    assert not _is(swallowed_sql("x"), text)


@pytest.mark.parametrize(
    "text", ["exit status 1", "exit code 127", "return code: 2", "exit status -1"]
)
def test_bare_exit_codes_are_recognised(text: str) -> None:
    pattern = "'" + BARE_EXIT_RE.replace("'", "''") + "'"
    assert _is(f"regexp_full_match(x, {pattern})", text)


def test_placeholders_are_generic_but_not_swallowed() -> None:
    text = 'failure_reason must be non-empty when status="fail"'
    assert _is(generic_sql("x"), text)
    assert _is(generic_sql("x"), "max retries exceeded")
    assert not _is(generic_sql("x"), "all parallel branches failed")


def _attempt(s: Stream, at: float, node: str, status: str, reason: str | None) -> None:
    s.emit("stage_attempt_start", at, node_id=node, attempt=1, max=4)
    end = {"failure_reason": reason} if reason is not None else {}
    s.emit("stage_attempt_end", at + 5, node_id=node, attempt=1, max=4, status=status, **end)


def _findings(run: KilroyRun) -> list[Finding]:
    cfg = DoctorConfig(now=NOW, checks=("swallowed_error",))
    return list(diagnose_path(run.finish(), cfg).findings)


def _run(tmp_path: Path) -> KilroyRun:
    run = KilroyRun(tmp_path, "r1", START)
    run.run_pid(99999999)
    return run


def test_subprocess_failed_none_is_a_swallowed_error(tmp_path: Path) -> None:
    run = _run(tmp_path)
    for i in range(3):
        _attempt(run.stream(), i * 10, "spec", "fail", "Subprocess failed: None")
    (f,) = _findings(run)
    assert (f.node_id, f.severity.label) == ("spec", "error")
    assert f.evidence["occurrences"] == 3
    assert f.evidence["examples"] == ["Subprocess failed: None"]


def test_a_missing_reason_is_quoted_as_null(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _attempt(run.stream(), 0, "a", "fail", None)
    _attempt(run.stream(), 10, "a", "retry", "")
    (f,) = _findings(run)
    assert f.evidence["occurrences"] == 2
    assert f.evidence["examples"] == ["", None]


def test_a_bare_exit_code_is_only_info(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _attempt(run.stream(), 0, "build", "fail", "exit status 1")
    (f,) = _findings(run)
    assert f.severity.label == "info"
    assert f.evidence["kind"] == "bare_exit_code"


def test_a_successful_attempt_is_never_swallowed(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _attempt(run.stream(), 0, "build", "success", "None")
    assert _findings(run) == []


def test_examples_are_capped_and_the_summary_says_how_many_more(tmp_path: Path) -> None:
    run = _run(tmp_path)
    labels = ["a", "b", "c", "d", "e", "f", "g"]
    for i, label in enumerate(labels):
        _attempt(run.stream(), i * 10, "spec", "fail", f"{label}: None")
    (f,) = _findings(run)
    assert len(f.evidence["examples"]) == 5
    assert "… and 2 more" in f.summary


@pytest.fixture(scope="module")
def rogue(rogue_diagnosis: Diagnosis) -> list[Finding]:
    """Incident 04's run (``fixtures/rogue.py``), built and diagnosed once per session
    (tests/conftest.py): this check's findings, the same as diagnosing with it alone."""
    return [f for f in rogue_diagnosis.findings if f.code == "swallowed_error"]


@pytest.mark.slow
def test_incident_04_reasons_are_all_informative(rogue: list[Finding]) -> None:
    assert rogue == []
