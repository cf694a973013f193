"""Hostile input: every bad artifact is its run's finding, never a crash of the doctor, and a
crash of the doctor itself is one line and exit 70.

Each test builds the input the issue found crashing (or misreading) the doctor and runs the real
``doctor`` command line in a subprocess. ``timeout`` on a subprocess is a guard against a hang
(a FIFO opened for reading blocks forever), not a speed assertion.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from doctor import DoctorConfig, Severity, diagnose_path
from tests.helpers import run_doctor

DEAD_PID = "99999999"
HANG_GUARD_S = 300


def doctor(
    *args: str | bytes | Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    # Not from the checkout: the installed doctor, whatever the working directory holds.
    return run_doctor(*args, env=env, cwd=cwd or Path(tempfile.gettempdir()), timeout=HANG_GUARD_S)


def _event(event: str, second: int, **fields: Any) -> str:
    return json.dumps({"event": event, "ts": f"2026-04-28T10:00:{second:02d}Z", **fields}) + "\n"


def _run(root: Path, run_id: str, *, final: str | None = "success") -> Path:
    """A finished run: one successful attempt of ``build``, a dead owner, ``final.json``."""
    run = root / run_id
    run.mkdir(parents=True)
    (run / "run.pid").write_text(DEAD_PID)
    (run / "progress.ndjson").write_text(
        _event("stage_attempt_start", 0, node_id="build", attempt=1)
        + _event("stage_attempt_end", 5, node_id="build", attempt=1, status="success")
    )
    (run / "build").mkdir()
    (run / "build/status.json").write_text(json.dumps({"status": "success"}))
    if final is not None:
        (run / "final.json").write_text(json.dumps({"status": final, "run_id": run_id}))
    return run


def _no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode in (0, 1), result


def _codes(result: subprocess.CompletedProcess[str]) -> list[tuple[str, str]]:
    data = json.loads(result.stdout)
    return [(f["code"], f["severity"]) for f in data["findings"]]


def _scan_rows(root: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = doctor("scan", "--root", root, "--json", env=env)
    _no_traceback(result)
    return {r["run_id"]: r for r in json.loads(result.stdout)["runs"]}


# --- names that are not UTF-8 ----------------------------------------------------------------


def _non_utf8_node(root: Path) -> Path:
    run = _run(root, "r1")
    node = os.path.join(os.fsencode(run), b"impl\xff")
    os.mkdir(node)
    with open(os.path.join(node, b"status.json"), "w") as fh:
        fh.write(json.dumps({"status": "fail"}))
    return run


@pytest.mark.parametrize("command", ["diagnose", "report", "repair"])
def test_a_node_directory_whose_name_is_not_utf8_is_the_run_s_finding(
    tmp_path: Path, command: str
) -> None:
    _non_utf8_node(tmp_path)
    result = doctor(command, "--run-id", "r1", "--root", tmp_path)
    _no_traceback(result)
    if command == "diagnose":
        findings = json.loads(
            doctor("diagnose", "--run-id", "r1", "--root", tmp_path, "--json").stdout
        )
        (finding,) = findings["findings"]
        assert finding["code"] == "unreadable_artifact"
        assert finding["evidence"]["file"] == "impl\\xff"
        assert "not UTF-8" in finding["summary"]


def test_a_run_directory_whose_name_is_not_utf8_is_scanned_with_the_others(
    tmp_path: Path,
) -> None:
    _run(tmp_path, "good")
    bad = os.path.join(os.fsencode(tmp_path), b"run\xfe")
    os.mkdir(bad)
    with open(os.path.join(bad, b"progress.ndjson"), "w") as fh:
        fh.write(_event("run_started", 0))
    rows = _scan_rows(tmp_path)
    assert rows["good"]["state"] == "succeeded" and rows["good"]["findings"] == []
    assert "run\\xfe" in rows
    result = doctor("diagnose", "--run-id", b"run\xfe", "--root", tmp_path, "--json")
    _no_traceback(result)
    assert json.loads(result.stdout)["run_id"] == "run\\xfe"


# --- numbers that are not data -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["final.json", "checkpoint.json", "build/status.json"])
def test_an_integer_of_5000_digits_in_a_document_is_a_torn_artifact(
    tmp_path: Path, name: str
) -> None:
    run = _run(tmp_path, "r1")
    (run / name).write_text('{"status": "success", "cost_usd": ' + "9" * 5000 + "}")
    result = doctor("diagnose", "--run-id", "r1", "--root", tmp_path, "--json")
    _no_traceback(result)
    torn = [f for f in json.loads(result.stdout)["findings"] if f["code"] == "torn_artifact"]
    assert [f["evidence"]["file"] for f in torn] == [name]
    assert "5000 digits" in torn[0]["evidence"]["detail"]


def test_a_lock_pid_of_2_to_the_63_is_no_pid(tmp_path: Path) -> None:
    run = _run(tmp_path, "r1", final=None)
    (run / "run.lock.json").write_text(json.dumps({"pid": 2**63, "pid_start_time": 10**30}))
    result = doctor("diagnose", "--run-id", "r1", "--root", tmp_path, "--json")
    _no_traceback(result)
    facts = json.loads(result.stdout)["facts"]
    assert facts["owner_pid"] == int(DEAD_PID)  # run.pid is read instead
    assert facts["owner_alive"] is False


def test_run_pid_1_is_not_reported_as_the_live_owner(tmp_path: Path) -> None:
    run = _run(tmp_path, "r1", final=None)
    (run / "run.pid").write_text("1")
    result = doctor("diagnose", "--run-id", "r1", "--root", tmp_path, "--json")
    _no_traceback(result)
    assert json.loads(result.stdout)["facts"]["owner_alive"] is not True


def test_a_run_pid_naming_the_doctor_itself_is_not_the_live_owner(tmp_path: Path) -> None:
    run = _run(tmp_path, "r1", final=None)
    # The doctor process writes its own pid into run.pid, then diagnoses: a reused pid.
    script = textwrap.dedent(
        f"""
        import os, sys
        open({str(run / "run.pid")!r}, "w").write(str(os.getpid()))
        sys.argv = ["doctor", "diagnose", "--run-id", "r1", "--root", {str(tmp_path)!r}, "--json"]
        from doctor._cli import main
        main()
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
        timeout=HANG_GUARD_S,
    )
    _no_traceback(result)
    facts = json.loads(result.stdout)["facts"]
    assert facts["owner_pid"] == int((run / "run.pid").read_text())
    assert facts["owner_alive"] is False


# --- files that are not regular files ----------------------------------------------------------


def test_a_fifo_progress_stream_is_never_opened_and_is_an_error(tmp_path: Path) -> None:
    run = _run(tmp_path, "r1")
    (run / "progress.ndjson").unlink()
    os.mkfifo(run / "progress.ndjson")
    result = doctor("diagnose", "--run-id", "r1", "--root", tmp_path, "--json")
    _no_traceback(result)
    assert result.returncode == 1
    assert ("unreadable_artifact", "error") in _codes(result)
    detail = json.loads(result.stdout)["findings"][0]["evidence"]["detail"]
    assert detail.startswith("a FIFO, not a regular file")


def test_a_fifo_swapped_in_after_the_check_is_never_read_by_the_bulk_scan(tmp_path: Path) -> None:
    """The stream is a regular file when ingestion checks it, a FIFO when it is opened.

    ``read_bulk``'s ``race_hook`` swaps the FIFO in exactly between the check (``lstat``) and
    the open. Before, DuckDB opened the stream by its name: it blocked on the FIFO (a helper
    thread below opens its write end, so the test never hangs) and read it as empty, so the
    run was ``succeeded`` with no finding. Now the stream is opened ``O_NONBLOCK|O_NOFOLLOW``
    and checked on the descriptor, DuckDB reads the descriptor, and the FIFO is the run's
    ``unreadable_artifact``.
    """
    from doctor import DoctorConfig
    from doctor._detectors._context import Context
    from doctor._detectors.unreadable_artifact import unreadable_artifact
    from doctor._facts import compute_facts
    from doctor._ingest import load_runs
    from doctor._layout import discover

    run = _run(tmp_path, "r1")
    stream = run / "progress.ndjson"
    done = threading.Event()
    swapped: list[list[Path]] = []

    def unblock_a_reader() -> None:
        while not done.is_set():  # a reader blocked on the FIFO gets end-of-file
            try:
                os.close(os.open(stream, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:  # ENXIO: nobody has it open for reading
                done.wait(0.001)

    def swap_in_a_fifo(files: Sequence[Path]) -> None:
        swapped.append(list(files))
        if len(swapped) == 1:
            stream.unlink()
            os.mkfifo(stream)
            threading.Thread(target=unblock_a_reader, daemon=True).start()

    try:
        tables = load_runs([discover(run)], keep_raw=True, race_hook=swap_in_a_fifo)
    finally:
        done.set()
    assert swapped[0] == [stream]
    config = DoctorConfig(roots=(tmp_path,))
    findings = unreadable_artifact(Context(tables, compute_facts(tables, config), config))
    assert [(f.code, f.severity.name, f.evidence["file"]) for f in findings] == [
        ("unreadable_artifact", "ERROR", "progress.ndjson")
    ]
    assert "a FIFO, not a regular file" in findings[0].evidence["detail"]
    assert tables.sql("SELECT count(*) FROM events WHERE run_id = 'r1'") == [(0,)]


@pytest.mark.parametrize("name", ["final.json", "checkpoint.json", "run.lock.json", "run.pid"])
def test_a_fifo_document_is_never_opened_and_is_reported(tmp_path: Path, name: str) -> None:
    run = _run(tmp_path, "r1")
    (run / name).unlink(missing_ok=True)
    os.mkfifo(run / name)
    result = doctor("diagnose", "--run-id", "r1", "--root", tmp_path, "--json")
    _no_traceback(result)
    findings = json.loads(result.stdout)["findings"]
    assert any(
        f["code"] == "unreadable_artifact" and f["evidence"]["file"] == name for f in findings
    )


def test_dev_null_as_final_json_is_reported(tmp_path: Path) -> None:
    run = _run(tmp_path, "r1", final=None)
    try:
        os.mknod(run / "final.json", 0o600 | 0o020000, os.makedev(1, 3))
    except PermissionError:
        pytest.skip(
            "needs root (CAP_MKNOD) to make a device node the run's final.json; no other user"
            " may, and CI runs it as root (README.md, Tests without root)"
        )
    result = doctor("diagnose", "--run-id", "r1", "--root", tmp_path, "--json")
    _no_traceback(result)
    findings = json.loads(result.stdout)["findings"]
    (bad,) = [f for f in findings if f["code"] == "unreadable_artifact"]
    assert bad["evidence"]["detail"].startswith("a character device")


@pytest.mark.parametrize("status", [5, "weird", None, ["success"]])
def test_a_final_json_whose_status_ends_nothing_is_why_the_run_is_orphaned(
    tmp_path: Path, status: object
) -> None:
    run = _run(tmp_path, "r1", final=None)
    (run / "final.json").write_text(json.dumps({"status": status, "run_id": "r1"}))
    d = diagnose_path(run, DoctorConfig(now=1_800_000_000.0))
    assert (d.state, d.facts["final_json"]) == ("orphaned", True)  # parsed, ends nothing
    (bad,) = [f for f in d.findings if f.code == "unreadable_artifact"]
    assert bad.severity is Severity.ERROR
    assert "is none of success, fail, canceled" in str(bad.evidence["detail"])
    ok = _run(tmp_path / "ok", "r1")
    assert not diagnose_path(ok, DoctorConfig(now=1_800_000_000.0)).findings


# --- duplicate keys ------------------------------------------------------------------------------


def test_duplicate_keys_read_last_wins_in_documents_as_engines_do_first_wins_in_streams(
    tmp_path: Path,
) -> None:
    run = _run(tmp_path, "r1", final=None)
    (run / "final.json").write_text('{"status": "success", "status": "fail"}')
    with (run / "progress.ndjson").open("a") as fh:
        fh.write(
            '{"event": "stage_attempt_start", "event": "stage_heartbeat", '
            '"ts": "2026-04-28T10:00:06Z", "node_id": "test", "attempt": 1}\n'
        )
    result = doctor("diagnose", "--run-id", "r1", "--root", tmp_path, "--json")
    _no_traceback(result)
    data = json.loads(result.stdout)
    # Documents as Go's encoding/json (Kilroy) and Python's json (the executor) read them:
    # the last "status"; event lines as DuckDB reads them: the first "event".
    assert data["state"] == "failed"
    assert data["facts"]["attempts_started"] == 2
    dup = [f for f in data["findings"] if f["code"] == "unreadable_artifact"]
    assert [(f["severity"], f["evidence"]["file"]) for f in dup] == [("warning", "final.json")]
    assert "duplicate key 'status'" in dup[0]["summary"]


# --- one run's failure is that run's finding ---------------------------------------------------


@pytest.mark.parametrize("cached", [False, True])
def test_a_fleet_with_every_hostile_run_still_scans_and_the_good_run_stays_clean(
    tmp_path: Path, cached: bool
) -> None:
    env = {"RUNDOCTOR_CACHE": str(tmp_path.parent / f"{tmp_path.name}-cache")} if cached else None
    _run(tmp_path, "good")
    bad = os.path.join(os.fsencode(tmp_path), b"run\xfe")
    os.mkdir(bad)
    with open(os.path.join(bad, b"progress.ndjson"), "w") as fh:
        fh.write(_event("run_started", 0))
    _non_utf8_node(tmp_path / "n")
    os.rename(tmp_path / "n/r1", tmp_path / "nonutf8")
    big = _run(tmp_path, "bigint")
    (big / "checkpoint.json").write_text('{"current_node": ' + "1" * 4301 + "}")
    pid = _run(tmp_path, "bigpid", final=None)
    (pid / "run.lock.json").write_text(json.dumps({"pid": 2**64}))
    fifo = _run(tmp_path, "fifo")
    (fifo / "progress.ndjson").unlink()
    os.mkfifo(fifo / "progress.ndjson")
    for _ in range(2 if cached else 1):  # the second scan reuses what the cache holds
        rows = _scan_rows(tmp_path, env)
        assert sorted(rows) == ["bigint", "bigpid", "fifo", "good", "nonutf8", "run\\xfe"]
        assert rows["good"]["findings"] == []
        for name in ("bigint", "fifo", "nonutf8"):
            codes = {f["code"] for f in rows[name]["findings"]}
            assert codes & {"torn_artifact", "unreadable_artifact"}, name


def test_a_line_over_16_mib_is_that_run_s_torn_line_and_the_scan_reads_the_rest(
    tmp_path: Path,
) -> None:
    _run(tmp_path, "good")
    long = _run(tmp_path, "long")
    with (long / "progress.ndjson").open("a") as fh:
        fh.write("not json\n")  # a torn line: the stream is read line by line, in blocks
        fh.write('{"event": "note", "ts": "2026-04-28T10:00:07Z", "message": "')
        fh.write("x" * (16 * 1024 * 1024 + 10))
        fh.write('"}\n')
        fh.write(_event("stage_heartbeat", 8, node_id="build"))
    rows = _scan_rows(tmp_path)
    assert rows["good"]["findings"] == []
    (torn,) = [f for f in rows["long"]["findings"] if f["code"] == "torn_artifact"]
    assert torn["evidence"]["count"] == 2
    assert torn["evidence"]["line"] == 3
    result = doctor("diagnose", "--run-id", "long", "--root", tmp_path, "--json")
    _no_traceback(result)
    facts = json.loads(result.stdout)["facts"]
    assert facts["events_by_type"]["stage_heartbeat"] == 1  # read on past the long line


def test_a_well_formed_line_over_16_mib_is_a_torn_line_though_duckdb_parses_it(
    tmp_path: Path,
) -> None:
    # No other bad line: the stream is read in one bulk scan, which took the long line as an
    # event, where a line-by-line read (a live run, a resumed stream) calls it torn.
    long = _run(tmp_path, "long")
    with (long / "progress.ndjson").open("a") as fh:
        fh.write('{"event": "note", "ts": "2026-04-28T10:00:07Z", "message": "')
        fh.write("x" * (16 * 1024 * 1024 + 10))
        fh.write('"}\n')
        fh.write(_event("stage_heartbeat", 8, node_id="build"))
    (torn,) = [f for f in _scan_rows(tmp_path)["long"]["findings"] if f["code"] == "torn_artifact"]
    assert torn["evidence"]["detail"].startswith("line of 16777288 bytes exceeds the 16777216")
    result = doctor("diagnose", "--run-id", "long", "--root", tmp_path, "--json")
    facts = json.loads(result.stdout)["facts"]
    assert "note" not in facts["events_by_type"]
    assert facts["events_by_type"]["stage_heartbeat"] == 1  # read on past the long line


# --- a crash of the tool -----------------------------------------------------------------------

_CRASH = """
import sys
import doctor._cli as cli
def boom(*a, **k):
    raise RuntimeError("injected bug")
cli.diagnose = boom
sys.argv = ["doctor", "diagnose", "--run-id", "r1", "--root", sys.argv[1]]
cli.main()
"""


def test_a_crash_of_the_doctor_is_one_line_exit_70_and_a_file_with_the_traceback(
    tmp_path: Path,
) -> None:
    _run(tmp_path / "runs", "r1")
    env = {k: v for k, v in os.environ.items() if k != "RUNDOCTOR_DEBUG"}
    env["TMPDIR"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", _CRASH, str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
        timeout=HANG_GUARD_S,
    )
    assert result.returncode == 70
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: internal error (a bug in rundoctor): RuntimeError: injected bug")
    (report,) = tmp_path.glob("rundoctor-crash-*.txt")
    assert str(report) in line
    assert "Traceback" in report.read_text() and "injected bug" in report.read_text()
    debug = subprocess.run(
        [sys.executable, "-c", _CRASH, str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        env={**env, "RUNDOCTOR_DEBUG": "1"},
        cwd=tmp_path,
        check=False,
        timeout=HANG_GUARD_S,
    )
    assert debug.returncode == 70
    assert "Traceback" in debug.stderr


# --- memory and disk within budget ---------------------------------------------------------------

_MEASURE = """
import resource, subprocess, sys
r = subprocess.run([sys.executable, "-m", "doctor", *sys.argv[1:]], capture_output=True)
print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def _peak_rss_bytes(tmp_path: Path, *args: str | Path) -> tuple[int, int]:
    """Peak RSS of one whole ``doctor`` process, measured by a parent that runs only it."""
    scratch = tmp_path / "tmp"
    scratch.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNDOCTOR_")}
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, *map(str, args)],
        capture_output=True,
        text=True,
        env={**env, "TMPDIR": str(scratch)},
        cwd=tmp_path,
        check=True,
        timeout=HANG_GUARD_S,
    ).stdout.split()
    assert resource.RUSAGE_CHILDREN  # Linux reports ru_maxrss in KiB
    return int(out[0]), int(out[1]) * 1024


BUDGET = 1 << 30


def test_a_stream_of_three_million_non_event_lines_stays_within_the_memory_budget(
    tmp_path: Path,
) -> None:
    run = _run(tmp_path / "runs", "r1", final=None)
    with (run / "progress.ndjson").open("a") as fh:
        fh.write("{}\n" * 3_000_000)  # 9 MB: the doctor took 2.4 GB for it before
    code, peak = _peak_rss_bytes(tmp_path, "diagnose", "--run-id", "r1", "--root", "runs")
    assert code == 1  # torn lines inside the stream: an error finding
    assert peak < BUDGET, f"peak RSS {peak / 2**20:.0f} MiB"
    # DuckDB spilled (if at all) into a private directory that is gone, not into the cwd.
    assert not (tmp_path / ".tmp").exists()
    assert list((tmp_path / "tmp").glob("rundoctor-duckdb-*")) == []


def test_a_stream_repeating_one_attempt_stays_within_the_memory_budget(tmp_path: Path) -> None:
    run = _run(tmp_path / "runs", "r1", final=None)
    records = (
        _event("stage_attempt_start", 0, node_id="build", attempt=1)
        + _event("stage_heartbeat", 1, node_id="build")
        + _event("stage_attempt_end", 2, node_id="build", attempt=1, status="fail")
    )
    with (run / "progress.ndjson").open("a") as fh:
        for _ in range(20):
            fh.write(records * 5_000)  # ~19 MB in all
    code, peak = _peak_rss_bytes(tmp_path, "diagnose", "--run-id", "r1", "--root", "runs")
    assert code == 1
    assert peak < BUDGET, f"peak RSS {peak / 2**20:.0f} MiB"
    assert not (tmp_path / ".tmp").exists()


_HOLD_A_CONNECTION = """
import sys
from doctor._tables import new_connection
con = new_connection()
print("ready", flush=True)
sys.stdin.read()
"""


def test_the_spill_directory_of_a_killed_doctor_is_removed_by_the_next_one(tmp_path: Path) -> None:
    """SIGKILL (or SIGTERM) runs no exit handler, so a killed doctor leaves its private spill
    directory (up to 4 GiB) behind; the next doctor removes it, and only it: a live doctor's
    directory is kept (its owner holds a lock on it)."""
    _run(tmp_path / "runs", "r1")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNDOCTOR_")}
    env["TMPDIR"] = str(scratch)

    def holder() -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", _HOLD_A_CONNECTION], stdin=-1, stdout=-1, text=True, env=env
        )
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        return proc

    killed, live = holder(), holder()
    try:
        dirs = set(scratch.glob("rundoctor-duckdb-*"))
        assert len(dirs) == 2
        killed.kill()
        killed.communicate()
        assert set(scratch.glob("rundoctor-duckdb-*")) == dirs  # left behind
        result = doctor("diagnose", "--run-id", "r1", "--root", tmp_path / "runs", env=env)
        _no_traceback(result)
        (kept,) = scratch.glob("rundoctor-duckdb-*")
        assert kept in dirs  # the live doctor's, not the killed one's
    finally:
        live.communicate("")
    assert list(scratch.glob("rundoctor-duckdb-*")) == []  # the live one removed its own


def test_cost_figures_in_a_large_stdout_log_are_read_in_blocks_each_once(tmp_path: Path) -> None:
    from doctor._documents import read_documents
    from doctor._layout import discover

    run = _run(tmp_path, "r1")
    line = json.dumps({"type": "result", "total_cost_usd": 0.25}).encode() + b"\n"
    filler = b"x" * ((1 << 20) - 20) + b"\n"  # puts the second figure across a block boundary
    (run / "build/stdout.log").write_bytes(line + filler + line + b"y" * (3 << 20) + b"\n" + line)
    assert read_documents(discover(run)).top.cost_usd == 0.75


# --- timestamps in every form RFC 3339 allows ---------------------------------------------------


def test_lowercase_t_and_z_and_a_leap_second_are_event_times(tmp_path: Path) -> None:
    # Before: DuckDB's casts refused "t", "z" and second 60, and such an event silently had no
    # time: this run's last event was its start, its wall time 0.
    run = _run(tmp_path, "r1")
    start = {"event": "stage_attempt_start", "node_id": "build", "attempt": 1}
    end = {"event": "stage_attempt_end", "node_id": "build", "attempt": 1, "status": "success"}
    (run / "progress.ndjson").write_text(
        json.dumps({**start, "ts": "2016-12-31t23:59:58.5z"})
        + "\n"
        + json.dumps({**end, "ts": "2016-12-31T23:59:60.25Z"})
        + "\n"
    )
    result = doctor("diagnose", "--run-id", "r1", "--root", tmp_path, "--json")
    _no_traceback(result)
    facts = json.loads(result.stdout)["facts"]
    assert facts["started_at"] == "2016-12-31T23:59:58.5Z"
    assert facts["last_event_at"] == "2017-01-01T00:00:00.25Z"  # the second after :59
    assert facts["wall_s"] == 1.75


@pytest.mark.parametrize(
    "timestamp", ["2026-04-28t10:00:02z", "2026-04-28 10:00:02Z", "2026-04-28T10:00:02.0000000001Z"]
)
def test_a_final_json_time_in_any_rfc3339_form_is_the_run_s_end(
    tmp_path: Path, timestamp: str
) -> None:
    # Before: a document's time was read by a stricter rule than an event's, and final.json's
    # "t…z" (or a space, or ten fraction digits) was no time at all: the build attempt
    # that went on after the run's end (10:00:05) was not reported.
    run = _run(tmp_path, "r1")
    (run / "final.json").write_text(json.dumps({"status": "success", "timestamp": timestamp}))
    result = doctor("diagnose", "--run-id", "r1", "--root", tmp_path, "--json")
    _no_traceback(result)
    assert "post_terminal_activity" in dict(_codes(result))


@pytest.mark.parametrize("ended", [True, False], ids=["newline", "cut-short"])
def test_an_overlong_last_line_is_cut_only_when_no_newline_ends_it(
    tmp_path: Path, ended: bool
) -> None:
    # Before: a whole last line over 16 MiB was "a half-written append from a crash" and
    # `repair` planned to cut it, which `--apply` then refused ("ends with a complete line").
    long = _run(tmp_path, "long", final=None)
    with (long / "progress.ndjson").open("a") as fh:
        fh.write('{"event": "note", "ts": "2026-04-28T10:00:07Z", "message": "')
        fh.write("x" * (16 * 1024 * 1024 + 10))
        fh.write('"}\n' if ended else "")
    result = doctor("diagnose", "--run-id", "long", "--root", tmp_path, "--json")
    _no_traceback(result)
    (torn,) = [f for f in json.loads(result.stdout)["findings"] if f["code"] == "torn_artifact"]
    assert torn["evidence"]["last_line"] is True and torn["severity"] == "warning"
    assert torn["evidence"]["detail"].endswith("complete, not cut short") == ended
    assert ("half-written append" in torn["summary"]) != ended
    assert torn["repair"] == (None if ended else "truncate_torn_line")


@pytest.mark.parametrize(
    ("tail", "planned"),
    [
        (b'{"source": "other-tool", "n": 1}\n', False),
        (b"garbage from another writer\n", False),
        (b'{"source": "other-tool", "n": 1}', True),
        (b'{"event": "stage_attempt_end", "ts": "2026-04-28T10:00:0', True),
    ],
    ids=["object-ended", "text-ended", "object-unended", "cut-write"],
)
def test_a_last_line_a_newline_ends_is_never_planned_for_a_cut_apply_would_refuse(
    tmp_path: Path, tail: bytes, planned: bool
) -> None:
    # Before: a whole last line that is no event (`{"source": …}\n`, or text, ending with a
    # newline) was "a half-written append from a crash"; `repair` planned to cut it and the
    # diagnosis offered that plan, which `repair --apply` then refused ("ends with a complete
    # line: nothing is torn"), exit 1. A line no newline ends is still cut, and the cut holds.
    run = _run(tmp_path, "r1", final=None)
    with (run / "progress.ndjson").open("ab") as fh:
        fh.write(tail)
    result = doctor("diagnose", "--run-id", "r1", "--root", tmp_path, "--json")
    _no_traceback(result)
    (torn,) = [f for f in json.loads(result.stdout)["findings"] if f["code"] == "torn_artifact"]
    assert torn["evidence"]["last_line"] is True and torn["severity"] == "warning"
    assert torn["evidence"]["detail"].endswith("complete, not cut short") != planned
    assert torn["repair"] == ("truncate_torn_line" if planned else None)
    human = doctor("diagnose", "--run-id", "r1", "--root", tmp_path, "--check", "torn_artifact")
    assert ("doctor repair --run-id r1" in human.stdout) == planned, human.stdout
    # A whole object with no newline is cut too, but no crash is said to have cut it short.
    crash = planned and not tail.endswith(b"}")
    assert ("half-written append" in human.stdout) == crash, human.stdout
    assert ("glued onto it" in human.stdout) == (planned and not crash), human.stdout
    plan = doctor("repair", "--run-id", "r1", "--root", tmp_path, "--json")
    kinds = [a["action"] for a in json.loads(plan.stdout)["plan"]]
    assert ("truncate_torn_line" in kinds) == planned, plan.stdout
    applied = doctor("repair", "--run-id", "r1", "--root", tmp_path, "--apply", "--json")
    outcomes = {r["action"]: r["outcome"] for r in json.loads(applied.stdout)["report"]["results"]}
    assert "refused" not in outcomes.values(), applied.stdout
    assert (run / "progress.ndjson").read_bytes().endswith(tail) != planned


def test_a_whole_last_line_that_grew_a_cached_stream_is_not_planned_for_a_cut(
    tmp_path: Path,
) -> None:
    # The line-by-line read (a stream that grew since the cached scan, read from its last
    # offset) says the same as the whole-file read: a line a newline ends was written whole.
    root = tmp_path / "runs"
    run = _run(root, "r1", final=None)
    env = {"RUNDOCTOR_CACHE": str(tmp_path / "cache")}
    _no_traceback(doctor("scan", "--root", root, "--json", env=env))
    with (run / "progress.ndjson").open("ab") as fh:
        fh.write(b'{"source": "other-tool", "n": 1}\n')
    result = doctor("scan", "--root", root, "--json", env=env)
    _no_traceback(result)
    (diagnosed,) = json.loads(result.stdout)["runs"]
    (torn,) = [f for f in diagnosed["findings"] if f["code"] == "torn_artifact"]
    assert torn["evidence"]["detail"].endswith("complete, not cut short"), torn
    assert torn["repair"] is None and torn["evidence"]["last_line"] is True


@pytest.mark.parametrize(
    ("final", "says"),
    [
        ('{"status": "succ', "does not parse"),
        ("[1, 2, 3]", "a JSON list, not an object"),
        ('"success"', "a JSON str, not an object"),
    ],
    ids=["torn", "list", "string"],
)
def test_a_final_json_that_records_no_end_is_never_planned_for_a_terminalize_apply_refuses(
    tmp_path: Path, final: str, says: str
) -> None:
    # Before: "The run has no final.json" (it had one), a terminalize planned and offered,
    # and `repair --apply` refused it: "a top-level final.json exists: the run terminalized
    # after the plan", exit 1; a final.json holding a list or a string was not reported.
    run = _run(tmp_path, "r1", final=None)
    (run / "final.json").write_text(final)
    result = doctor("diagnose", "--run-id", "r1", "--root", tmp_path, "--json")
    _no_traceback(result)
    findings = json.loads(result.stdout)["findings"]
    (missing,) = [f for f in findings if f["code"] == "missing_final"]
    assert missing["summary"].startswith("The run's final.json records no end"), missing
    assert missing["repair"] is None and "move final.json aside" in missing["summary"]
    assert any(says in f["summary"] for f in findings if f["code"] != "missing_final"), findings
    human = doctor("diagnose", "--run-id", "r1", "--root", tmp_path)
    assert "the final.json there records no end" in human.stdout, human.stdout
    applied = doctor("repair", "--run-id", "r1", "--root", tmp_path, "--apply", "--json")
    assert json.loads(applied.stdout)["plan"] == [], applied.stdout
    assert (run / "final.json").read_text() == final  # never overwritten
    (run / "final.json").rename(run / "final.json.bad")  # as the finding says: then it is
    again = doctor("repair", "--run-id", "r1", "--root", tmp_path, "--apply", "--json")
    (done,) = json.loads(again.stdout)["report"]["results"]
    assert (done["action"], done["outcome"]) == ("terminalize", "applied"), again.stdout


# --- event times that cannot be read -----------------------------------------------------------


def _untimed(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    _no_traceback(result)
    data = json.loads(result.stdout)
    findings = data["runs"][0]["findings"] if "runs" in data else data["findings"]
    return [
        f
        for f in findings
        if f["code"] == "unreadable_artifact" and f["evidence"]["detail"].startswith("no readable")
    ]


@pytest.mark.parametrize("torn", [False, True], ids=["bulk-read", "read-line-by-line"])
def test_events_whose_ts_cannot_be_read_are_counted_in_a_warning(
    tmp_path: Path, torn: bool
) -> None:
    # Before: an event whose ts was no time (a word, an epoch number, none at all) was read
    # without a time and without a word: its run looked whole, its figures silently short.
    run = _run(tmp_path, "r1")
    with (run / "progress.ndjson").open("a") as fh:
        fh.write(json.dumps({"event": "stage_heartbeat", "ts": "yesterday", "node_id": "b"}) + "\n")
        fh.write(json.dumps({"event": "stage_heartbeat", "ts": 1714300000, "node_id": "b"}) + "\n")
        fh.write(json.dumps({"event": "stage_heartbeat", "node_id": "b"}) + "\n")
        if torn:  # a torn line sends the stream through the line-by-line reader
            fh.write('{"event": "note", "ts": \n')
        fh.write(_event("note", 6, message="the rest are read"))
    result = doctor("diagnose", "--run-id", "r1", "--root", tmp_path, "--json")
    (finding,) = _untimed(result)
    assert finding["severity"] == "warning" and finding["evidence"]["file"] == "progress.ndjson"
    assert finding["evidence"]["detail"].startswith(
        "no readable time (ts) on 3 events: the first, a stage_heartbeat, has ts 'yesterday'"
    )
    assert json.loads(result.stdout)["facts"]["last_event_at"] == "2026-04-28T10:00:06Z"
    assert result.returncode == (1 if torn else 0)  # the torn line is the error, not the times


def test_untimed_events_of_a_cached_stream_still_count_after_it_grew(tmp_path: Path) -> None:
    root, cache = tmp_path / "runs", tmp_path / "cache"
    run = _run(root, "r1", final=None)
    stream = run / "progress.ndjson"
    with stream.open("a") as fh:
        fh.write(json.dumps({"event": "stage_heartbeat", "ts": "yesterday", "node_id": "b"}) + "\n")
    env = {"RUNDOCTOR_CACHE": str(cache)}
    first = doctor("scan", "--root", root, "--json", env=env)
    assert "on 1 event:" in _untimed(first)[0]["evidence"]["detail"]
    with stream.open("a") as fh:  # read on from the cached offset: the cached rows have no text
        fh.write(json.dumps({"event": "stage_heartbeat", "ts": "later", "node_id": "b"}) + "\n")
    (finding,) = _untimed(doctor("scan", "--root", root, "--json", env=env))
    assert (
        "on 2 events: the first, a stage_heartbeat, has ts 'yesterday'"
        in (finding["evidence"]["detail"])
    )


# --- costs that no double holds ------------------------------------------------------------


def test_a_cost_no_double_holds_is_no_cost_never_a_crash_nor_infinity(tmp_path: Path) -> None:
    # Before: final.json's 400-digit cost_usd stopped `diagnose` with OverflowError (exit 70,
    # and the run unreadable in a scan); two stdout costs of 1e308 summed to infinity, printed
    # as `"cost_usd": Infinity`, which no JSON reader takes.
    huge = _run(tmp_path, "huge")
    (huge / "final.json").write_text('{"status": "success", "cost_usd": ' + "9" * 400 + "}")
    over = _run(tmp_path, "over")
    lines = ['{"total_cost_usd": 1e308}', '{"total_cost_usd": 1.7e308}']
    (over / "build/stdout.log").write_text("\n".join(lines) + "\n")

    def strict(text: str) -> Any:
        return json.loads(text, parse_constant=lambda word: pytest.fail(f"{word} in the JSON"))

    for run_id in ("huge", "over"):
        result = doctor("diagnose", "--run-id", run_id, "--root", tmp_path, "--json")
        assert result.returncode == 0, result.stderr
        assert strict(result.stdout)["facts"]["cost_usd"] is None
    scan = doctor("scan", "--root", tmp_path, "--json")
    assert scan.returncode == 0, scan.stderr
    assert strict(scan.stdout)["fleet"]["cost_usd"] is None


def test_a_cost_below_zero_is_no_cost_in_the_run_s_nor_the_fleet_s_total(tmp_path: Path) -> None:
    # Before: final.json's cost_usd of -3.0 was summed into the run's cost (-1.0 here) and the
    # fleet's (0.25): a run paid nobody. The executor already took such a stage cost as none.
    neg = _run(tmp_path, "neg")
    (neg / "final.json").write_text('{"status": "success", "cost_usd": -3.0}')
    lines = ['{"total_cost_usd": -1.5}', '{"total_cost_usd": 2.0}', '{"total_cost_usd":-0.5}']
    (neg / "build/stdout.log").write_text("\n".join(lines) + "\n")
    zero = _run(tmp_path, "zero")
    (zero / "final.json").write_text('{"status": "success", "cost_usd": -0.0}')
    pos = _run(tmp_path, "pos")
    (pos / "final.json").write_text('{"status": "success", "cost_usd": 1.25}')

    costs = {}
    for run_id in ("neg", "zero", "pos"):
        result = doctor("diagnose", "--run-id", run_id, "--root", tmp_path, "--json")
        assert result.returncode == 0, result.stderr
        costs[run_id] = json.loads(result.stdout)["facts"]["cost_usd"]
    assert costs == {"neg": 2.0, "zero": 0.0, "pos": 1.25}
    assert (
        '"cost_usd": -'
        not in doctor("diagnose", "--run-id", "zero", "--root", tmp_path, "--json").stdout
    )
    scan = doctor("scan", "--root", tmp_path, "--json")
    assert json.loads(scan.stdout)["fleet"]["cost_usd"] == 3.25


def test_a_final_json_timestamp_that_is_no_time_is_said_and_its_status_still_stands(
    tmp_path: Path,
) -> None:
    # Before: "99999-01-01" was left out of when the run ended and of which final.json the run
    # wrote last, without a word.
    stamps = {
        "year5": '"99999-01-01"',
        "number": "5",
        "good": '"2026-04-28T10:00:06.5Z"',
        "null": "null",
    }
    for run_id, stamp in stamps.items():
        final = '{"status": "success", "timestamp": ' + stamp + "}"
        (_run(tmp_path, run_id, final=None) / "final.json").write_text(final)
    said = {}
    for run_id in stamps:
        result = doctor("diagnose", "--run-id", run_id, "--root", tmp_path, "--json")
        assert result.returncode == 0, result.stdout + result.stderr  # a warning, not an error
        data = json.loads(result.stdout)
        assert data["state"] == "succeeded"
        said[run_id] = [
            (f["severity"], f["evidence"]["file"], f["evidence"]["kind"], f["evidence"]["detail"])
            for f in data["findings"]
            if f["code"] == "unreadable_artifact"
        ]
    tail = (
        "is no readable time (RFC 3339): when the run ended, and which final.json it wrote "
        "last, are judged without it"
    )
    assert said == {
        "year5": [("warning", "final.json", "final", f"its timestamp '99999-01-01' {tail}")],
        "number": [("warning", "final.json", "final", f"its timestamp 5 {tail}")],
        "good": [],
        "null": [],
    }


# --- symlinks where a run keeps its files ---------------------------------------------------


def test_a_symlinked_artifact_is_said_to_be_one_and_never_followed(tmp_path: Path) -> None:
    # Before: a symlinked final.json, progress.ndjson or run.pid was left out without a word:
    # "The run has no final.json ...; terminalize it", which `repair --apply` then refused
    # ("final.json is a symlink"), and a stream behind a link was "no progress ever recorded".
    root, outside = tmp_path / "runs", tmp_path / "outside"
    outside.mkdir()
    (outside / "final.json").write_text('{"status": "success"}')
    (outside / "progress.ndjson").write_text(_event("secret_event", 1))
    (outside / "pid").write_text(str(os.getpid()))
    run = _run(root, "r1", final=None)
    (run / "final.json").symlink_to(outside / "final.json")
    (run / "run.pid").unlink()
    (run / "run.pid").symlink_to(outside / "pid")
    stream = _run(root, "r2") / "progress.ndjson"
    stream.unlink()
    stream.symlink_to(outside / "progress.ndjson")

    def linked(run_id: str) -> tuple[dict[str, str], list[dict[str, Any]], str]:
        result = doctor("diagnose", "--run-id", run_id, "--root", root, "--json")
        _no_traceback(result)
        findings = json.loads(result.stdout)["findings"]
        said = {
            f["evidence"]["file"]: f["evidence"]["kind"]
            for f in findings
            if f["code"] == "unreadable_artifact"
            and f["evidence"]["detail"].startswith("a symlink to " + str(outside))
        }
        return said, findings, result.stdout

    said, findings, out = linked("r1")
    assert said == {"final.json": "final", "run.pid": "pid"}
    (missing,) = [f for f in findings if f["code"] == "missing_final"]
    assert missing["summary"].startswith("The run's final.json is a symlink")
    assert missing["repair"] is None  # no terminalize that --apply would refuse
    assert linked("r2")[0] == {"progress.ndjson": "progress"}
    assert "secret_event" not in out + linked("r2")[2]
    doctor("repair", "--run-id", "r1", "--root", root, "--apply")
    assert (outside / "final.json").read_text() == '{"status": "success"}'


def test_a_symlinked_node_branch_or_attempt_directory_is_said_and_never_followed(
    tmp_path: Path,
) -> None:
    # Before: a node directory, a stage's attempt_1/ or a branch directory (or parallel/
    # itself) that was a symlink was skipped without a word, as symlinked files were until
    # they became unreadable_artifact findings.
    root, outside = tmp_path / "runs", tmp_path / "outside"
    (outside / "deploy").mkdir(parents=True)
    (outside / "deploy/status.json").write_text('{"status": "fail", "failure_reason": "secret"}')
    (outside / "notes.txt").write_text("a file")
    run = _run(root, "r1")
    (run / "deploy").symlink_to(outside / "deploy")
    (run / "notes.txt").symlink_to(outside / "notes.txt")  # no directory: not a node's place
    (run / "gone").symlink_to(outside / "gone")  # dangling: nothing to say it was a node
    (run / "build/attempt_1").symlink_to(outside / "deploy")
    (run / "parallel/fan").mkdir(parents=True)
    (run / "parallel/fan/01-a").symlink_to(outside / "deploy")  # a branch's place
    nested = _run(root, "r2")
    (nested / "parallel").symlink_to(outside)

    result = doctor("diagnose", "--run-id", "r1", "--root", root, "--json")
    assert result.returncode == 1, result.stdout + result.stderr  # a node left out: an error
    said = {
        f["evidence"]["file"]: (f["severity"], f["evidence"]["kind"], f["evidence"]["detail"])
        for f in json.loads(result.stdout)["findings"]
        if f["code"] == "unreadable_artifact"
    }
    not_followed = ", not followed: the doctor reads nothing through a symlink"
    assert said == {
        "deploy": ("error", "node", f"a symlink to {outside / 'deploy'}{not_followed}"),
        "build/attempt_1": ("error", "attempt", f"a symlink to {outside / 'deploy'}{not_followed}"),
        "parallel/fan/01-a": (
            "error",
            "branch",
            f"a symlink to {outside / 'deploy'}{not_followed}",
        ),
    }
    assert "secret" not in result.stdout
    r2 = doctor("diagnose", "--run-id", "r2", "--root", root, "--json")
    assert [
        (f["evidence"]["file"], f["evidence"]["kind"], f["evidence"]["detail"])
        for f in json.loads(r2.stdout)["findings"]
        if f["code"] == "unreadable_artifact"
    ] == [("parallel", "branch", f"a symlink to {outside}{not_followed}")]


def test_a_run_whose_every_time_is_unreadable_is_not_said_to_have_recorded_no_progress(
    tmp_path: Path,
) -> None:
    # Before: "nothing has progressed since its start (no progress was ever recorded)" of a
    # run that had recorded an attempt, only without a readable time.
    run = _run(tmp_path, "r1", final=None)
    (run / "progress.ndjson").write_text(
        json.dumps({"event": "stage_attempt_start", "ts": "yesterday", "node_id": "a"}) + "\n"
    )
    result = doctor("diagnose", "--run-id", "r1", "--root", tmp_path, "--json")
    (missing,) = [f for f in json.loads(result.stdout)["findings"] if f["code"] == "missing_final"]
    assert "no progress event with a readable time was recorded" in missing["summary"]
    assert len(_untimed(result)) == 1


def test_a_symlinked_restart_directory_is_said_and_never_followed(tmp_path: Path) -> None:
    # Before: a loop restart's directory (restart-N/, where Kilroy's run loop goes on after a
    # loop_restart) that was a symlink was skipped without a word, its stream, checkpoint and
    # final.json left out, as a symlinked node or branch directory was until it was said.
    # A real run: loop_restart_transient restarts once; its restart-1/ moved out and linked.
    real = Path(__file__).resolve().parents[2] / "fixtures/kilroy/runs/loop_restart_transient"
    root, outside = tmp_path / "runs", tmp_path / "outside"
    run = root / "r1"
    shutil.copytree(real, run, symlinks=True)
    outside.mkdir()
    (run / "restart-1").rename(outside / "restart-1")
    (run / "restart-1").symlink_to(outside / "restart-1")
    (run / "restart-2").symlink_to(outside / "gone")  # dangling: still no restart to read
    result = doctor("diagnose", "--run-id", "r1", "--root", root, "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    diagnosis = json.loads(result.stdout)
    said = {
        f["evidence"]["file"]: (f["severity"], f["evidence"]["kind"], f["evidence"]["detail"])
        for f in diagnosis["findings"]
        if f["code"] == "unreadable_artifact"
    }
    not_followed = ", not followed: the doctor reads nothing through a symlink"
    assert said == {
        "restart-1": ("error", "restart", f"a symlink to {outside / 'restart-1'}{not_followed}"),
        "restart-2": ("error", "restart", f"a symlink to {outside / 'gone'}{not_followed}"),
    }
    # Nothing behind the link was read: no restart scope, only the base stream's events.
    assert not [f for f in diagnosis["findings"] if f["scope"].startswith("restart-")]
    base_events = len((run / "progress.ndjson").read_text().splitlines())
    assert diagnosis["facts"]["events"] == base_events
