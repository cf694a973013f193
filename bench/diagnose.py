"""``doctor diagnose --json`` as a whole process: the rogue run, and a heartbeat-heavy run.

Targets:

* issue 2: the full-scale rogue fixture under 1.5 s on this 2-core machine (best of three);
* issue 10: a run whose top-level ``progress.ndjson`` holds 200,120 events (40 stages of one
  attempt, 5,000 ``stage_heartbeat`` each, Kilroy's fields) in at most 0.6 s, and at most 2x a
  bare DuckDB process that reads the same file and counts its events per node, the two run
  one after the other in this run (median of :data:`REPEATS` each, after one warm-up; the
  first, "cold" run of each right after the file is written is printed beside it). The bare
  interpreter start-up is printed too, so a loaded machine shows as such.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench._common import BENCH_DIR, Result, best_of
from bench.startup import _cpu_s, _doctor, _env
from fixtures.rogue import RUN_ID, build_rogue_run

__all__ = ["build_heartbeat_run", "run"]

#: Runs of each process per measurement; the median is reported.
REPEATS = 7
STAGES, BEATS = 40, 5000
HEAVY_ID = f"heartbeats-{STAGES}x{BEATS}"
_BASE_NS = 1_780_000_000 * 1_000_000_000

# What a person would run with DuckDB alone: read the stream, count its events per node.
_BARE = """
import sys
import duckdb
rows = duckdb.sql(
    "SELECT node_id, count(*) FROM read_json($f, format='newline_delimited') GROUP BY ALL",
    params={"f": sys.argv[1]},
).fetchall()
assert sum(n for _, n in rows) > 0
"""


def _ts(ns: int) -> str:
    secs, frac = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def build_heartbeat_run(root: Path, stages: int = STAGES, beats: int = BEATS) -> Path:
    """Write ``<root>/heartbeats-SxB/``: a dead run (no ``final.json``, a ``run.pid`` no process
    has) of ``stages`` stages, each ``stage_attempt_start``, ``beats`` heartbeats 0.5 s apart,
    ``stage_attempt_end`` and ``edge_selected``. Deterministic: same arguments, same bytes."""
    run_id = f"heartbeats-{stages}x{beats}"
    run = root / run_id
    run.mkdir(parents=True, exist_ok=True)
    t, n = _BASE_NS, 0
    out: list[str] = []

    def line(**fields: object) -> None:
        out.append(json.dumps({**fields, "run_id": run_id}, separators=(",", ":"), sort_keys=True))

    for s in range(stages):
        node = f"stage_{s:02d}"
        line(attempt=1, event="stage_attempt_start", max=4, node_id=node, ts=_ts(t))
        for h in range(beats):
            t += 500_000_000 + h * 7
            line(
                elapsed_s=h // 2,
                event="stage_heartbeat",
                id=f"{n:08x}",
                node_id=node,
                since_last_output_s=h % 3,
                stderr_bytes=0,
                stdout_bytes=99 + h,
                ts=_ts(t),
            )
            n += 1
        t += 1_000_000
        line(attempt=1, event="stage_attempt_end", max=4, node_id=node, status="success", ts=_ts(t))
        line(event="edge_selected", from_node=node, to_node=f"stage_{s + 1:02d}", ts=_ts(t + 1000))
    tmp = run / "progress.ndjson.tmp"
    tmp.write_text("\n".join(out) + "\n")
    tmp.rename(run / "progress.ndjson")
    (run / "run.pid").write_text("99999999")  # above Linux's PID_MAX_LIMIT: never alive
    return run


def _timed(cmd: list[str], ok: tuple[int, ...]) -> tuple[float, float]:
    """Wall and CPU seconds of one run of ``cmd``."""
    start, start_cpu = time.perf_counter(), _cpu_s()
    done = subprocess.run(cmd, capture_output=True, check=False, env=_env())
    wall, cpu = time.perf_counter() - start, _cpu_s() - start_cpu
    if done.returncode not in ok:
        raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.decode(errors='replace')}")
    return wall, cpu


def _heavy() -> list[Result]:
    root = BENCH_DIR / "heartbeats"
    run = root / HEAVY_ID
    fresh = not (run / "progress.ndjson").exists()
    if fresh:
        build_heartbeat_run(root)
    stream = str(run / "progress.ndjson")
    doctor = [*_doctor(), "diagnose", "--run-id", HEAVY_ID, "--root", str(root), "--json"]
    bare = [sys.executable, "-c", _BARE, stream]
    # Cold: the first run of each (bytecode as installed; the file just written when fresh).
    cold_doctor = _timed(doctor, (0, 1))[0]
    cold_bare = _timed(bare, (0,))[0]
    walls: dict[str, list[float]] = {"doctor": [], "bare": [], "python": []}
    cpus: dict[str, list[float]] = {"doctor": [], "bare": [], "python": []}
    for _ in range(REPEATS):  # interleaved, so a burst of load hits both alike
        for name, cmd, ok in (
            ("doctor", doctor, (0, 1)),
            ("bare", bare, (0,)),
            ("python", [sys.executable, "-c", "pass"], (0,)),
        ):
            wall, cpu_s = _timed(cmd, ok)
            walls[name].append(wall)
            cpus[name].append(cpu_s)
    med = {k: statistics.median(v) for k, v in walls.items()}
    cpu = {k: statistics.median(v) for k, v in cpus.items()}
    first = "written just now" if fresh else "already there"
    note = (
        f"median of {REPEATS} (CPU {cpu['doctor']:.3f} s); cold {cold_doctor:.3f} s (file "
        f"{first}); bare DuckDB {med['bare']:.3f} s (CPU {cpu['bare']:.3f} s, cold "
        f"{cold_bare:.3f} s); python -c pass {med['python']:.3f} s"
    )
    ratio = med["doctor"] / med["bare"]
    return [
        Result(
            f"diagnose {STAGES * (BEATS + 3):,}-event run (whole process)",
            med["doctor"],
            0.6,
            "s",
            note=note,
        ),
        Result(
            "diagnose that run / bare DuckDB counting its events per node",
            ratio,
            2.0,
            "x",
            note=f"CPU ratio {cpu['doctor'] / cpu['bare']:.2f}",
        ),
    ]


def run() -> list[Result]:
    root = BENCH_DIR / "rogue"
    if not (root / RUN_ID / "progress.ndjson").exists():
        build_rogue_run(root)
    cmd = [
        sys.executable,
        "-m",
        "doctor",
        "diagnose",
        "--run-id",
        RUN_ID,
        "--root",
        str(root),
        "--json",
    ]

    def once() -> None:
        done = subprocess.run(cmd, capture_output=True, check=False)
        if done.returncode not in (0, 1):
            raise RuntimeError(done.stderr.decode(errors="replace"))

    seconds = best_of(3, once)
    return [Result("diagnose rogue run (whole process)", seconds, 1.5, "s"), *_heavy()]
