"""Every option error names the flag the user typed, not the field or column it sets.

A new user who typed ``--max-error-attempts 0`` was told ``max_error_attempts must be at
least 1``: a name that appears nowhere on their command line. Each case here runs the real
command line and reads its one error line.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.executor.test_cli import SIMPLE, _base_env, _doctor, _usage_error


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = _base_env(tmp_path)
    env["RUNDOCTOR_DB"] = str(tmp_path / "queue.db")
    env["RUNDOCTOR_ROOT"] = str(tmp_path / "runs")
    return env


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--max-error-attempts", "0"), "--max-error-attempts 0 is out of range"),
        (("--max-error-attempts", "2147483648"), "--max-error-attempts 2147483648 is out of"),
        (("--priority", "2147483648"), "--priority 2147483648 is out of range"),
        (("--priority", "-2147483649"), "--priority -2147483649 is out of range"),
        (("--title", ""), "--title is empty"),
        (("--title", "   "), "--title is empty"),
        (("--depends-on", ""), "--depends-on is empty"),
        (("--depends-on", "t-nope"), "--depends-on: no ticket 't-nope'"),
    ],
    ids=lambda a: " ".join(a) if isinstance(a, tuple) else None,
)
def test_enqueue_names_the_flag_of_a_bad_value(
    env: dict[str, str], args: tuple[str, ...], expected: str
) -> None:
    line = _usage_error(_doctor(env, "enqueue", SIMPLE, *args))
    assert expected in line
    assert "max_error_attempts" not in line and "priority " not in line.replace("--priority", "")


def test_an_unknown_dependency_in_a_queue_of_one_ticket_is_counted_in_the_singular(
    env: dict[str, str],
) -> None:
    assert _doctor(env, "enqueue", SIMPLE).returncode == 0
    line = _usage_error(_doctor(env, "enqueue", SIMPLE, "--depends-on", "zzz"))
    assert "(it holds 1 ticket;" in line


def test_tickets_names_the_status_flag_and_the_closest_status(env: dict[str, str]) -> None:
    assert _doctor(env, "enqueue", SIMPLE).returncode == 0
    line = _usage_error(_doctor(env, "tickets", "--status", "todoo"))
    assert line.startswith("error: --status: unknown status 'todoo' (did you mean 'todo'?)")


@pytest.mark.parametrize("command", ["run", "enqueue"])
def test_a_mistyped_graph_gets_the_closest_file_beside_it(
    env: dict[str, str], tmp_path: Path, command: str
) -> None:
    # It printed "[Errno 2] No such file or directory: 'tool_simpel.dot'", repeating the name.
    (tmp_path / "tool_simple.dot").write_text(SIMPLE.read_text())
    line = _usage_error(_doctor(env, command, tmp_path / "tool_simpel.dot"))
    assert line.endswith(f"no such file (did you mean '{tmp_path / 'tool_simple.dot'}'?)")


def test_the_help_says_what_each_option_does(env: dict[str, str]) -> None:
    # `enqueue --root` read "Runs root (default $RUNDOCTOR_ROOT, …)" though it is ignored;
    # `--priority` said its default twice; each `--json` said only "Print JSON."
    env = env | {"COLUMNS": "200"}
    enqueue = _doctor(env, "enqueue", "--help").stdout
    assert re.search(r"--root DIR\s+Accepted and ignored", enqueue), enqueue
    assert "[default: " not in enqueue and "a 32-bit integer" in " ".join(enqueue.split())
    for command in ("run", "enqueue", "worker", "reap", "tickets"):
        text = _doctor(env, command, "--help").stdout
        (line,) = [x for x in text.splitlines() if x.strip().startswith("--json")]
        assert line.split(None, 1)[1] != "Print JSON.", command
    worker = _doctor(env, "worker", "--help").stdout
    flat = " ".join(worker.split())
    assert "1 to 1,024 (default 1)" in flat and "(default 60s, at least 1s)" in flat


@pytest.mark.parametrize(
    ("args", "command"),
    [
        (("report", "--run-id"), "doctor report"),
        (("chaos", "run", "--seed"), "doctor chaos run"),
        (("tickets", "--limit"), "doctor tickets"),
    ],
)
def test_an_option_missing_its_value_names_the_commands_help(
    env: dict[str, str], args: tuple[str, ...], command: str
) -> None:
    # It ended "option '--run-id' requires an argument." with no `--help` to read, unlike
    # every other mistake in the command line.
    line = _usage_error(_doctor(env, *args))
    assert line == f"error: option '{args[-1]}' requires an argument (see `{command} --help`)"
