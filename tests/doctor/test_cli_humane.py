"""The ``doctor`` command line as a person meets it (issue 13): Ctrl-C inside a DuckDB query,
``--since`` on everything a scan reports, and mistakes that get one line saying what to do."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest
import typer

from doctor._errors import DoctorError, IngestError
from executor.console import reported
from rundoctor.terminal import shell_quote
from tests.doctor.test_cli import (
    HEALTHY_ROOT,
    _assert_one_line_error,
    _command,
    _line,
    _write_run,
    doctor,
)
from tests.helpers import REPO

HEALTHY_RUN = HEALTHY_ROOT / "healthy01"


# -- Ctrl-C ---------------------------------------------------------------------------------


def _big_run(root: Path, lines: int = 20_000) -> Path:
    """A run whose stream takes DuckDB a while to read (fat lines), and little else to do."""
    run = root / "big"
    run.mkdir(parents=True)
    (run / "run.pid").write_text("99999999")
    one = _line("stage_attempt_start", 0, node_id="n", attempt=1, pad="x" * 5000).encode()
    (run / "progress.ndjson").write_bytes(one * lines)
    return run / "progress.ndjson"


def _has_open(pid: int, path: Path) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                return True
        except OSError:
            continue
    return False


def _frozen_mid_read(root: Path, stream: Path) -> subprocess.Popen[str] | None:
    """A scan of ``root`` stopped (SIGSTOP) while it holds ``stream`` open, i.e. while DuckDB
    scans it; None when it had moved past the read before it could be stopped (the read takes
    a fraction of a second, and on a loaded machine this process may not run that soon)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNDOCTOR_")}
    proc = subprocess.Popen(
        [*_command(), "scan", "--root", str(root), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    end = time.monotonic() + 120
    while not _has_open(proc.pid, stream):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, "the scan never opened the stream"
        time.sleep(0.001)
    os.kill(proc.pid, signal.SIGSTOP)
    if _has_open(proc.pid, stream):
        return proc
    os.kill(proc.pid, signal.SIGCONT)
    proc.communicate(timeout=120)
    return None


def test_ctrl_c_while_duckdb_reads_the_runs_is_one_line_and_exit_130(tmp_path: Path) -> None:
    # Stopped while it reads, then interrupted: the SIGINT lands mid-read whatever the load
    # (sent as soon as the stream was seen open, it once came after a scan that had finished).
    stream = _big_run(tmp_path / "root").resolve()
    for _ in range(20):
        proc = _frozen_mid_read(tmp_path / "root", stream)
        if proc is not None:
            break
    else:
        pytest.fail("no scan could be stopped while it read the stream")
    proc.send_signal(signal.SIGINT)
    os.kill(proc.pid, signal.SIGCONT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (proc.returncode, err[-2000:])
    assert err.strip().splitlines() == ["error: interrupted"], err[-2000:]
    assert out == ""  # no half-written JSON


# -- --since applies to the fleet's findings too ---------------------------------------------


def _old_fleet(root: Path) -> None:
    """Two runs months ago with a long silence between them: a fleet idle_gap."""
    lines = [_line("stage_attempt_start", 0, node_id="a", attempt=1)]
    _write_run(root, "jan", [x.replace("2026-04-28", "2026-01-05") for x in lines])
    done = [
        _line("stage_attempt_start", 0, node_id="b", attempt=1),
        _line("stage_attempt_end", 5, node_id="b", attempt=1, status="success"),
    ]
    _write_run(root, "mar", [x.replace("2026-04-28", "2026-03-02") for x in done], final="success")


def test_since_leaves_out_fleet_findings_that_ended_before_it(tmp_path: Path) -> None:
    _old_fleet(tmp_path)
    everything = json.loads(doctor("scan", "--root", tmp_path, "--json").stdout)
    assert [f["code"] for f in everything["findings"]] == ["idle_gap"]
    recent = doctor("scan", "--root", tmp_path, "--since", "2026-04-01", "--json")
    assert recent.returncode == 0, recent.stderr
    data = json.loads(recent.stdout)
    assert data["runs"] == [] and data["findings"] == []
    human = doctor("scan", "--root", tmp_path, "--since", "2026-04-01")
    assert "idle_gap" not in human.stdout and human.returncode == 0


def test_since_a_date_in_the_future_is_refused_in_one_line_naming_the_flag(
    tmp_path: Path,
) -> None:
    _old_fleet(tmp_path)
    result = doctor("scan", "--root", tmp_path, "--since", "2999-01-01")
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert "--since '2999-01-01' is in the future (2999-01-01T00:00:00Z)" in line
    # So is an age of nothing: it listed no run, and said all was well (exit 0).
    result = doctor("scan", "--root", tmp_path, "--since", "0")
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert "--since '0' is no age: no run can have started since now" in line


def test_since_keeps_a_fleet_finding_that_reaches_past_it(tmp_path: Path) -> None:
    _old_fleet(tmp_path)
    data = json.loads(doctor("scan", "--root", tmp_path, "--since", "2026-02-01", "--json").stdout)
    assert [f["code"] for f in data["findings"]] == ["idle_gap"]


# -- mistakes -----------------------------------------------------------------------------------


def test_a_run_directory_path_given_as_run_id_is_taken(tmp_path: Path) -> None:
    result = doctor("diagnose", "--run-id", HEALTHY_RUN, "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["run_id"] == "healthy01"
    relative = doctor("diagnose", "--run-id", "fixtures/cases/healthy_tool_run/run/healthy01")
    assert relative.returncode == 0, relative.stderr


def test_a_file_given_as_root_is_the_same_one_line_for_every_command(tmp_path: Path) -> None:
    file = tmp_path / "notes.txt"
    file.write_text("x")
    lines = {
        _assert_one_line_error(doctor("diagnose", "--run-id", "r1", "--root", file)),
        _assert_one_line_error(doctor("scan", "--root", file)),
        _assert_one_line_error(doctor("repair", "--run-id", "r1", "--root", file)),
    }
    (line,) = lines
    assert str(file) in line and "is a file, not a directory" in line


def test_a_root_that_is_no_directory_says_what_it_is(tmp_path: Path) -> None:
    # A FIFO was "a file", a symlink loop and a dangling symlink "does not exist".
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    expected = {
        "fifo": "is a FIFO, not a directory",
        "loop": "is a symlink loop: it never reaches a directory",
        "dangling": f"is a symlink to '{tmp_path / 'nowhere'}', which does not exist",
    }
    for name, said in expected.items():
        line = _assert_one_line_error(doctor("scan", "--root", tmp_path / name))
        assert f"runs root '{tmp_path / name}' {said}" in line


def test_a_run_directory_given_as_root_says_what_it_is_and_what_to_type(tmp_path: Path) -> None:
    line = _assert_one_line_error(doctor("scan", "--root", HEALTHY_RUN))
    assert "is a run directory, not a runs root" in line
    command = line.split("`")[1]
    assert command == f"doctor diagnose --run-id {shell_quote(str(HEALTHY_RUN))}"
    pasted = doctor(*shlex.split(command)[1:], "--json")
    assert pasted.returncode == 0, pasted.stderr


def test_a_usage_error_of_typer_is_one_line_naming_the_help(tmp_path: Path) -> None:
    line = _assert_one_line_error(doctor("diagnose", "--root", tmp_path))
    assert line == "error: missing option '--run-id' (see `doctor diagnose --help`)"
    line = _assert_one_line_error(doctor("scna"))
    assert "did you mean 'scan'" in line.lower()


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("scan", "--limit", "abc"), "'--limit': 'abc' is not a whole number"),
        (("scan", "--limit", "-1"), "'--limit': '-1' is less than 0"),
        (("watch", "--max-sends", "1e3"), "'--max-sends': '1e3' is not a whole number"),
        (("chaos", "run", "--seed", "1.5"), "'--seed': '1.5' is not a whole number"),
        (("tickets", "--limit", "nan"), "'--limit': 'nan' is not a whole number"),
    ],
    ids=lambda a: " ".join(a) if isinstance(a, tuple) else None,
)
def test_a_number_option_given_no_number_names_the_value(args: tuple[str, ...], said: str) -> None:
    # Before: "Input should be a valid integer, unable to parse string as an integer" and
    # "Input should be greater than or equal to 0" (typer's Pydantic words), not the value.
    line = _assert_one_line_error(doctor(*args))
    assert said in line and "Input should" not in line
    assert line.endswith(f"(see `doctor {' '.join(a for a in args[:2] if a[0] != '-')} --help`)")


def test_a_stray_argument_is_named_with_the_option_it_belongs_to(tmp_path: Path) -> None:
    # `doctor scan ./runs`, `doctor repair r1`, `doctor tickets q.db`: the option to pass it
    # with, which the line did not already give; the help otherwise.
    (tmp_path / "runs").mkdir()
    # The whole line, the argument with its option in its place, so it can be pasted.
    cases = {
        ("scan", "runs", "--json"): "did you mean `doctor scan --root runs --json`?",
        ("repair", "r1", "--root", "runs"): "did you mean `doctor repair --run-id r1 --root runs`?",
        ("tickets", "q.db"): "did you mean `doctor tickets --db q.db`?",
        ("diagnose", "--run-id", "r1", "r2"): "(see `doctor diagnose --help`)",
        ("checks", "foo"): "(see `doctor checks --help`)",
    }
    for args, end in cases.items():
        line = _assert_one_line_error(doctor(*args, cwd=tmp_path))
        assert line.startswith("error: got unexpected extra argument"), args
        assert line.endswith(end), (args, line)
    # A required option missing, and one argument on the line: that option, with it.
    missing = {
        (
            "diagnose",
            "r1",
            "--root",
            "runs",
        ): "; did you mean `doctor diagnose --run-id r1 --root runs`?",
        ("diagnose", "my run"): "; did you mean `doctor diagnose --run-id 'my run'`?",
        ("diagnose", "a", "b"): " (see `doctor diagnose --help`)",
    }
    for args, end in missing.items():
        line = _assert_one_line_error(doctor(*args, cwd=tmp_path))
        assert line == f"error: missing option '--run-id'{end}", (args, line)


# -- hints can be pasted, output is not hard-wrapped in a pipe ---------------------------------

ORPHANED = Path(__file__).resolve().parents[2] / "fixtures/cases/fanout_never_joined/run"


def _piped(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """As under cron: stdout a pipe, no COLUMNS."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNDOCTOR_")}
    env.pop("COLUMNS", None)
    return subprocess.run(
        [*_command(), *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd
    )


def test_every_command_diagnose_prints_runs_when_pasted(tmp_path: Path) -> None:
    shutil.copytree(ORPHANED, tmp_path / "runs")
    shown = _piped("diagnose", "--run-id", "fanout01", "--root", tmp_path / "runs")
    assert shown.returncode == 1, shown.stderr
    commands = [
        shlex.split(line)
        for line in shown.stdout.splitlines()
        if line.strip().startswith("doctor ")
    ]
    assert [c[:2] for c in commands] == [["doctor", "repair"], ["doctor", "diagnose"]]
    for command in commands:
        pasted = _piped(*command[1:], cwd=tmp_path / "runs")  # from anywhere: the root is in it
        assert pasted.returncode in (0, 1), (command, pasted.stderr)
        assert "error:" not in pasted.stderr


def test_piped_diagnose_and_scan_never_break_a_line(tmp_path: Path) -> None:
    shutil.copytree(ORPHANED, tmp_path / "runs")
    for args in (("diagnose", "--run-id", "fanout01"), ("scan",)):
        out = _piped(*args, "--root", tmp_path / "runs").stdout
        assert "so that nothing waits for it" in out  # the end of a long summary, on its line
        long = [line for line in out.splitlines() if "terminalize it (write final.json" in line]
        assert long and all("The run has no final.json" in line for line in long), out
        assert all(line == line.rstrip() for line in out.splitlines())


def test_at_40_columns_the_tables_keep_run_and_ticket_ids_whole(tmp_path: Path) -> None:
    queue = tmp_path / "q" / "queue.db"
    graph = Path(__file__).resolve().parents[2] / "fixtures/pipelines/retry_converges.dot"
    runs = tmp_path / "xruns"
    ticket = doctor("enqueue", graph, "--db", queue, "--root", runs).stdout.strip()
    assert doctor("worker", "--once", "-q", "--db", queue, "--root", runs).returncode == 0
    shown = doctor("tickets", "--db", queue, env={"COLUMNS": "40"})
    assert shown.returncode == 0, shown.stderr
    (run_id,) = [p.name for p in runs.iterdir()]
    (row,) = [line.split() for line in shown.stdout.splitlines() if line.startswith("t-")]
    assert row[0] == ticket and run_id in row, shown.stdout  # was `t-d2a17…  01M984X4XEV…`
    shutil.copytree(ORPHANED, tmp_path / "runs")
    scan = doctor("scan", "--root", tmp_path / "runs", env={"COLUMNS": "40"}).stdout
    assert any(line.split()[:2] == ["fanout01", "orphaned"] for line in scan.splitlines()), scan


@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_a_locale_that_is_not_utf_8_gets_escapes_not_a_crash(tmp_path: Path, encoding: str) -> None:
    # Before: `doctor diagnose` under a Latin-1 locale ended at its first `[✓]` with
    # "internal error … UnicodeEncodeError", exit 70; `scan` at its first `·`.
    shutil.copytree(ORPHANED, tmp_path / "runs")
    if not (str(REPO) + sys.prefix).isascii():
        pytest.skip(
            "the clone's path is not ASCII: under LC_ALL=C with PYTHONUTF8=0 file names are "
            "ASCII, and neither the editable install's finder nor DuckDB's extension loads "
            "from it (No module named 'doctor'; UnicodeEncodeError at import _duckdb)"
        )
    env = {**os.environ, "PYTHONIOENCODING": encoding, "PYTHONUTF8": "0", "LC_ALL": "C"}

    def shown(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*_command(), *map(str, args), "--root", str(tmp_path / "runs")],
            capture_output=True, encoding=encoding, env=env, timeout=120,
        )  # fmt: skip

    diagnosis = shown("diagnose", "--run-id", "fanout01")
    assert diagnosis.returncode == 1 and "internal error" not in diagnosis.stderr, diagnosis
    assert "[\\u2717] missing_final" in diagnosis.stdout, diagnosis.stdout
    scan = shown("scan")
    assert scan.returncode == 1 and scan.stderr == "", scan.stderr
    assert any(line.split()[:1] == ["fanout01"] for line in scan.stdout.splitlines())


COMMANDS = [
    ("diagnose",),
    ("scan",),
    ("checks",),
    ("repair",),
    ("report",),
    ("chaos", "run"),
    ("chaos", "faults"),
    ("chaos", "check"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_option_has_help_text_and_a_plain_metavar(command: tuple[str, ...]) -> None:
    shown = _piped(*command, "--help")
    assert shown.returncode == 0, shown.stderr
    options = [line for line in shown.stdout.splitlines() if line.startswith("  -")]
    assert options, shown.stdout
    for line in options:
        flags, _, text = line.strip().partition("  ")
        assert text.strip(), f"{flags} has no help text"
        assert "<" not in flags, line  # `--seed N`, not `--seed <int>`


def test_a_duckdb_interrupt_wrapped_in_a_library_error_is_still_an_interrupt(
    capsys: pytest.CaptureFixture[str],
) -> None:
    con = duckdb.connect()
    # Readiness: query_progress() leaves -1 once the query runs (it needs the progress bar on).
    con.execute("SET enable_progress_bar = true; SET enable_progress_bar_print = false")

    def interrupt_once_running() -> None:
        while con.query_progress() == -1:  # -1: no query running yet
            time.sleep(0.001)
        con.interrupt()

    helper = threading.Thread(target=interrupt_once_running)
    helper.start()
    with pytest.raises(typer.Exit) as ended, reported(DoctorError):
        try:
            con.execute(
                "SELECT count(*) FROM range(100000000000) t WHERE t.range % 7 = 3"
            ).fetchall()
        except duckdb.Error as exc:  # as doctor._ndjson wraps what DuckDB raises
            raise IngestError(f"DuckDB could not read the event streams: {exc}") from exc
    helper.join()
    assert ended.value.exit_code == 130
    assert capsys.readouterr().err == "error: interrupted\n"


def test_a_run_without_a_recorded_owner_reads_as_english(tmp_path: Path) -> None:
    run = _write_run(tmp_path, "r1", [_line("stage_attempt_start", 0, node_id="a", attempt=1)])
    (run / "run.pid").unlink()
    data = json.loads(doctor("diagnose", "--run-id", "r1", "--root", tmp_path, "--json").stdout)
    (summary,) = [f["summary"] for f in data["findings"] if f["code"] == "missing_final"]
    assert "its owner process was never recorded" in summary
    assert "its no recorded" not in summary


def test_the_command_repair_prints_after_applying_can_be_pasted(tmp_path: Path) -> None:
    shutil.copytree(ORPHANED, tmp_path / "runs")
    applied = _piped("repair", "--run-id", tmp_path / "runs" / "fanout01", "--apply")
    assert "1 repair planned" not in applied.stdout and "finding(s)" not in applied.stdout
    command = shlex.split(applied.stdout.split("`")[1])
    assert command == [
        "doctor",
        "diagnose",
        "--run-id",
        "fanout01",
        "--root",
        str(tmp_path / "runs"),
    ]
    pasted = _piped(*command[1:])
    assert pasted.returncode in (0, 1) and "error:" not in pasted.stderr, pasted.stderr


# -- a closed standard output -------------------------------------------------------------------


@pytest.mark.parametrize("args", [("checks",), ("scan", "--root", str(HEALTHY_ROOT), "--json")])
def test_a_closed_standard_output_is_one_line_and_exit_2(args: tuple[str, ...]) -> None:
    # `doctor … >&-`: Python starts with sys.stdout None; nothing may crash on it.
    line = " ".join(shlex.quote(w) for w in [*_command(), *args])
    base = {k: v for k, v in os.environ.items() if not k.startswith("RUNDOCTOR_")}
    result = subprocess.run(
        ["bash", "-c", f"{line} >&-"], capture_output=True, text=True, env=base, check=False
    )
    assert _assert_one_line_error(result) == (
        "error: standard output is closed; nothing could be printed"
    )
