"""Every DuckDB time function the project's SQL calls works on nanosecond timestamps.

The canonical tables keep ``ts``, ``start_ts`` and ``end_ts`` as ``TIMESTAMP_NS``. DuckDB 2.0
dropped some casts on that type (``epoch_ms(TIMESTAMP_NS …)`` raises "Unimplemented type for
cast (INT64 -> INT64)"), and a notebook broke on a fresh install. This test finds each time
function named anywhere in the project's code and notebooks and calls it on a ``TIMESTAMP_NS``
with the DuckDB that is installed, so the next such change fails here, not in a user's hands.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("doctor", "executor", "chaos", "reports", "fixtures", "bench", "notebooks")

# Each function DuckDB applies to one timestamp, with the call that exercises it.
CALLS = {
    "epoch": "epoch({ts})",
    "epoch_ms": "epoch_ms({ts})",
    "epoch_us": "epoch_us({ts})",
    "epoch_ns": "epoch_ns({ts})",
    "date_trunc": "date_trunc('second', {ts})",
    "date_part": "date_part('epoch', {ts})",
    "datediff": "datediff('ms', {ts}, {ts})",
    "date_diff": "date_diff('ms', {ts}, {ts})",
    "time_bucket": "time_bucket(INTERVAL 1 MINUTE, {ts})",
    "strftime": "strftime({ts}, '%Y')",
    "year": "year({ts})",
    "extract": "extract(epoch FROM {ts})",
}
TS = "TIMESTAMP_NS '2026-01-01 00:00:00.123456789'"


def _project_text() -> str:
    parts = []
    for top in SOURCES:
        for path in (REPO / top).rglob("*"):
            if path.suffix in {".py", ".ipynb", ".sql"} and path.is_file():
                parts.append(path.read_text(encoding="utf-8"))
    return "\n".join(parts)


def _used() -> list[str]:
    text = _project_text()
    return sorted(name for name in CALLS if re.search(rf"\b{name}\s*\(", text, re.IGNORECASE))


def test_the_project_uses_some_time_functions() -> None:
    assert "epoch_ns" in _used()


@pytest.mark.parametrize("name", _used())
def test_the_time_function_works_on_nanosecond_timestamps(name: str) -> None:
    duckdb.sql("SELECT " + CALLS[name].format(ts=TS)).fetchall()


def test_a_function_that_fails_on_nanoseconds_would_be_caught() -> None:
    # The call that broke the notebook: proves the check above can fail with this DuckDB, or
    # records that DuckDB fixed it (then the project may use it again).
    try:
        duckdb.sql("SELECT " + CALLS["epoch_ms"].format(ts=TS)).fetchall()
    except duckdb.Error:
        assert "epoch_ms" not in _used()
