"""Running out of memory for real (issue 15): each place the doctor catches DuckDB's
``OutOfMemoryException`` or Python's ``MemoryError`` turns it into the run's
``unreadable_artifact`` and exit 1 (README: an ``error`` finding), never exit 70.

* DuckDB's ``memory_limit`` (``RUNDOCTOR_MEMORY_LIMIT``), reading a dead writer's stream in
  bulk and a live writer's line by line (``doctor._ndjson``'s two re-raises), in ``diagnose``
  and in ``scan`` (which then reads the batch's runs one by one);
* Python's ``MemoryError``, under an address-space limit (``RLIMIT_AS``) set on the doctor
  process only, reading a run's documents (``doctor._ingest``).

``tests/doctor/test_budget.py`` covers the spill limit.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.doctor.test_budget import HANG_GUARD_S, _run, doctor

#: Below what DuckDB's JSON reader and a 15,000-node run need (its read buffer alone is 32 MiB).
SMALL_MEMORY = {"RUNDOCTOR_MEMORY_LIMIT": "16MiB"}


def _findings(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1, result.stderr  # an error finding, not 70 (a crash)
    findings: list[dict[str, Any]] = json.loads(result.stdout)["findings"]
    return findings


def _over_memory_limit(finding: dict[str, Any]) -> None:
    assert finding["code"] == "unreadable_artifact"
    assert finding["severity"] == "error"
    assert finding["evidence"]["kind"] == "run"
    assert finding["evidence"]["detail"] == (
        "over the resource budget: DuckDB needed more than 16MiB of memory for this run; "
        "raise it with RUNDOCTOR_MEMORY_LIMIT=SIZE (or memory_limit in the config file's "
        "[doctor]) and diagnose it again"
    )


@pytest.fixture
def live_pid() -> Iterator[int]:
    """A live process to stand for a run's writer: its stream is read line by line."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=-1)
    try:
        yield proc.pid
    finally:
        proc.communicate(b"")


def test_a_dead_writer_s_stream_over_the_memory_limit_is_the_run_s_finding(
    tmp_path: Path,
) -> None:
    _run(tmp_path, "big", 15_000)
    result = doctor("diagnose", "--run-id", "big", "--root", tmp_path, "--json", env=SMALL_MEMORY)
    (finding,) = _findings(result)
    _over_memory_limit(finding)


def test_a_live_writer_s_stream_over_the_memory_limit_is_the_run_s_finding(
    tmp_path: Path, live_pid: int
) -> None:
    run = _run(tmp_path, "big", 15_000)
    (run / "run.pid").write_text(str(live_pid))
    result = doctor("diagnose", "--run-id", "big", "--root", tmp_path, "--json", env=SMALL_MEMORY)
    (finding,) = _findings(result)
    _over_memory_limit(finding)
    # Within the default budget the same live run is read.
    within = doctor("diagnose", "--run-id", "big", "--root", tmp_path, "--json")
    assert "unreadable_artifact" not in [f["code"] for f in _findings(within)]


def test_a_limit_so_small_the_commit_is_refused_is_the_run_s_finding_too(
    tmp_path: Path,
) -> None:
    # Under 1 MiB DuckDB refuses a block when the streams' registration commits, and says so
    # as a TransactionException ("Failed to commit: could not allocate block of size …"), not
    # an OutOfMemoryException: diagnose was "internal error (a bug in rundoctor)", exit 70,
    # and so was `report --run-id`, where the README promises the run's finding and one line.
    from fixtures.rogue import RUN_ID, build_rogue_run

    build_rogue_run(tmp_path)  # its streams' registration is what the limit refuses
    tiny = {"RUNDOCTOR_MEMORY_LIMIT": "1MiB"}
    result = doctor("diagnose", "--run-id", RUN_ID, "--root", tmp_path, "--json", env=tiny)
    (finding,) = _findings(result)
    assert finding["code"] == "unreadable_artifact" and finding["evidence"]["kind"] == "run"
    assert finding["evidence"]["detail"].startswith(
        "over the resource budget: DuckDB needed more than 1MiB of memory for this run"
    )
    report = doctor("report", "--run-id", RUN_ID, "--root", tmp_path, env=tiny)
    assert report.returncode == 2, report.stderr
    assert report.stderr.startswith(f"error: run '{RUN_ID}' is over the resource budget: ")


def test_a_scan_over_the_memory_limit_gives_the_finding_to_each_run_over_it(
    tmp_path: Path,
) -> None:
    for run_id in ("a", "b"):
        _run(tmp_path, run_id, 3)
    result = doctor("scan", "--root", tmp_path, "--json", env=SMALL_MEMORY)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1
    runs = {r["run_id"]: r for r in json.loads(result.stdout)["runs"]}
    for run_id in ("a", "b"):  # even three nodes need DuckDB's 32 MiB read buffer
        (finding,) = runs[run_id]["findings"]
        _over_memory_limit(finding)


# --- Python's MemoryError ------------------------------------------------------------------------

_PEAK = """
import atexit, runpy, sys
def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmPeak:"):
            sys.stderr.write(f"VmPeak {int(line.split()[1]) * 1024}\\n")
atexit.register(peak)
sys.argv = ["doctor", *sys.argv[1:]]
runpy.run_module("doctor", run_name="__main__")
"""


def _address_space_peak(*args: str | Path, env: dict[str, str]) -> int:
    """The doctor's peak virtual size (bytes) doing ``args`` with no limit."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("RUNDOCTOR_")}
    result = subprocess.run(
        [sys.executable, "-c", _PEAK, *map(str, args)],
        capture_output=True,
        text=True,
        env={**base, **env},
        cwd=Path(tempfile.gettempdir()),
        check=False,
        timeout=HANG_GUARD_S,
    )
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("VmPeak ")]
    return int(line.split()[1])


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's /proc")
def test_python_running_out_of_memory_reading_a_document_is_the_run_s_finding(
    tmp_path: Path,
) -> None:
    """A 30 MB final.json of ten million empty lists (some 800 MB as Python objects), read
    under an address-space limit 512 MiB above what the same run with a small final.json peaks
    at: the parse raises ``MemoryError``, and the run is diagnosed without its documents. (At
    384 MiB a CI run once ended in glibc's "cannot allocate memory for thread-local data",
    exit 127: a thread started after the failed parse found no room; the parse still needs
    far more than 512.)"""
    run = _run(tmp_path, "fat", 3)
    (run / "final.json").write_text(json.dumps({"status": "success", "run_id": "fat"}))
    env = {"MALLOC_ARENA_MAX": "2"}  # fewer, smaller malloc arenas: a steadier virtual size
    args = ("diagnose", "--run-id", "fat", "--root", tmp_path, "--json")
    limit = _address_space_peak(*args, env=env) + (512 << 20)

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    fine = doctor(*args, env=env, preexec_fn=cap)  # the limit leaves room for the run
    assert (fine.returncode, json.loads(fine.stdout)["findings"]) == (0, []), fine.stderr
    (run / "final.json").write_text("[" + ",".join(["[]"] * 10_000_000) + "]")
    findings = _findings(doctor(*args, env=env, preexec_fn=cap))
    unreadable = [f for f in findings if f["code"] == "unreadable_artifact"]
    assert [f["evidence"]["file"] for f in unreadable] == ["."]
    assert unreadable[0]["evidence"]["detail"] == (
        "its documents could not be read: over the resource budget: Python ran out of "
        "memory reading them; diagnose it on a machine with more memory"
    )
