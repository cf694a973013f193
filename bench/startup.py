"""``doctor --help`` and ``doctor checks`` as whole processes: what every command pays first.

Target (issues 10 and 12): at most 0.15 s each on this 2-core machine, the median of several
runs of the installed console script, after one warm-up run that writes the bytecode a normal
installation has (into ``.bench/pycache``: ``PYTHONDONTWRITEBYTECODE`` would make every run
compile every module again, which is not what a user's shell does). The bare interpreter's
start-up (``python -c pass``) is measured in the same run and printed beside each, so a loaded
machine shows as such.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench._common import BENCH_DIR, Result

__all__ = ["run"]

#: Runs per command; the median is reported (one slow run on a shared machine does not count).
REPEATS = 9
TARGET_S = 0.15


def _doctor() -> list[str]:
    """The console script beside this interpreter (what a user runs), else ``-m doctor``."""
    script = Path(sys.executable).with_name("doctor")
    if script.exists():
        return [str(script)]
    found = shutil.which("doctor")
    return [found] if found else [sys.executable, "-m", "doctor"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(BENCH_DIR / "pycache")
    return env


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _median_s(cmd: list[str]) -> tuple[float, float]:
    """Median wall and CPU seconds of ``cmd`` (CPU time suffers less from a loaded machine)."""
    env = _env()
    subprocess.run(cmd, capture_output=True, check=False, env=env)  # warm-up: bytecode, page cache
    wall, cpu = [], []
    for _ in range(REPEATS):
        start, start_cpu = time.perf_counter(), _cpu_s()
        done = subprocess.run(cmd, capture_output=True, check=False, env=env)
        wall.append(time.perf_counter() - start)
        cpu.append(_cpu_s() - start_cpu)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.decode(errors='replace')}")
    return statistics.median(wall), statistics.median(cpu)


def run() -> list[Result]:
    bare, bare_cpu = _median_s([sys.executable, "-c", "pass"])
    results = []
    for args in (["--help"], ["checks"]):
        wall, cpu = _median_s([*_doctor(), *args])
        note = (
            f"median of {REPEATS}, CPU {cpu:.3f} s; bare python start-up {bare:.3f} s "
            f"(CPU {bare_cpu:.3f} s) in this run"
        )
        results.append(
            Result(f"doctor {' '.join(args)} (whole process)", wall, TARGET_S, "s", note=note)
        )
    return results
