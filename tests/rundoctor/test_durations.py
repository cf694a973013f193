"""``rundoctor.durations``: one grammar for ``--since``, ``--interval``, ``--idle-gap``,
``chaos run --duration`` and a graph node's ``timeout``, and the formatter that writes it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from executor import GraphError, parse_graph
from rundoctor.durations import DurationError, format_duration, parse_duration
from tests.helpers import run_doctor

REPO = Path(__file__).resolve().parents[2]
HEALTHY_ROOT = REPO / "fixtures/cases/healthy_tool_run/run"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        ("2.5", 2.5),
        ("250ms", 0.25),
        ("90s", 90.0),
        ("15m", 900.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("2w", 1209600.0),
        ("1h30m", 5400.0),
        ("1d12h", 129600.0),
        ("1m30.5s", 90.5),
        ("1.5h", 5400.0),
        (" 1H30M ", 5400.0),
        ("0s", 0.0),
    ],
)
def test_a_duration_reads_as_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "soon", "1x", "-5m", "1h 30m", "30m1h", "1m1m", "1mo", "1y", "h", "1.h", "1e3"]
)
def test_text_that_is_not_a_duration_is_refused_in_one_line(text: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_duration(text)
    message = str(info.value)
    assert "\n" not in message and repr(text) in message


@pytest.mark.parametrize("text", ["5219w", "9999999999w", "99999999999999999999", "36527d"])
def test_a_duration_past_a_century_is_refused_in_one_line(text: str) -> None:
    # Before: accepted, then `watch --interval 9999999999w` crashed in Event.wait (time_t).
    with pytest.raises(DurationError, match="too long a duration") as info:
        parse_duration(text)
    assert "\n" not in str(info.value) and repr(text) in str(info.value)
    assert parse_duration("5218w") == 5218 * 604800.0


@given(st.integers(min_value=0, max_value=10**9))
def test_formatting_whole_seconds_reads_back_exactly(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False))
def test_formatting_any_duration_reads_back_exactly(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


def test_the_formatter_combines_units() -> None:
    assert [format_duration(s) for s in (5400, 86400, 90, 0.25)] == [
        "1h30m",
        "1d",
        "1m30s",
        "250ms",
    ]


def test_a_graph_timeout_takes_combined_units() -> None:
    graph = parse_graph(
        'digraph g { start [shape=Mdiamond]; work [shape=parallelogram, tool_command="true",'
        ' timeout="1h30m"]; exit [shape=Msquare]; start -> work -> exit }'
    )
    assert graph.nodes["work"].timeout_s == 5400.0
    with pytest.raises(GraphError, match="not a duration"):
        parse_graph(
            'digraph g { start [shape=Mdiamond]; work [shape=parallelogram, tool_command="true",'
            ' timeout="soon"]; exit [shape=Msquare]; start -> work -> exit }'
        )


# --- the command lines ---------------------------------------------------------------------------


def _doctor(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return run_doctor(*args)


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_scan_since_takes_a_combined_age() -> None:
    # Before: ``--since 1h30m`` was refused while ``--since 90m`` was read.
    result = _doctor("scan", "--root", HEALTHY_ROOT, "--since", "1h30m", "--json")
    assert result.returncode in (0, 1), result.stderr


def test_scan_since_refuses_a_bad_age_in_one_line() -> None:
    line = _one_line_error(_doctor("scan", "--root", HEALTHY_ROOT, "--since", "1h30"))
    assert "'1h30'" in line and "1h30m" in line


def test_chaos_run_refuses_a_bad_duration_in_one_line(tmp_path: Path) -> None:
    args = ("chaos", "run", "--seed", "1", "--out", tmp_path / "c", "--duration")
    line = _one_line_error(_doctor(*args, "1x"))
    assert "--duration" in line and "'1x'" in line
    zero = _one_line_error(_doctor(*args, "0s"))
    assert zero == "error: --duration '0s' must be more than zero, e.g. 60s, 20m or 1h"


def test_watch_refuses_a_zero_interval_in_one_line(tmp_path: Path) -> None:
    line = _one_line_error(
        _doctor("watch", "--root", HEALTHY_ROOT, "--state", tmp_path / "s.json", "--interval", "0")
    )
    assert "--interval" in line and "more than zero" in line


def test_worker_timing_options_take_durations_and_refuse_bad_ones_in_one_line(
    tmp_path: Path,
) -> None:
    args = ("worker", "--db", tmp_path / "q.db", "--root", tmp_path / "runs", "--once")
    line = _one_line_error(_doctor(*args, "--create-queue", "--lease-ttl", "soon"))
    assert "--lease-ttl" in line and "'soon'" in line
    done = _doctor(*args, "--create-queue", "--lease-ttl", "2m", "--reaper-interval", "500ms")
    assert done.returncode == 0, done.stderr
    # A zero was named by the config field it sets: "reaper_interval_s = 0.0 must be > 0".
    for flag in ("--reaper-interval", "--lease-ttl"):
        line = _one_line_error(_doctor(*args, flag, "0ms"))
        assert line == f"error: {flag} '0ms' must be more than zero, e.g. 1s, 500ms or 2m"
