"""``doctor scan`` of ten thousand runs, cold: memory is a batch's, not the fleet's.

Issue 10 asks that peak memory grow sub-linearly with the fleet, so that 10,000 runs fit the
machine that scans 1,000. The fleet here has issue 10's shape (Kilroy-sized lines, 60% killed
by a crash: no ``final.json``, no ``run.pid``) with ten times the runs and a tenth of the lines
each (810 events, 1.5 GB in all), generated once into ``.bench/``. Measured as a whole
process with an empty cache, the way ``bench/scan.py`` measures (peak: the resident sets of
the process and its workers, sampled every 20 ms); target: the same 1 GB.
``RUNDOCTOR_BENCH_SCALE`` scales the number of runs.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench._common import BENCH_DIR, Result
from bench.scan import GB, LAST_CPU, SIMPLE_SQL, doctor_scan, duckdb_process, warm_page_cache
from fixtures.fleet import build_fleet
from rundoctor.paths import remove_tree

__all__ = ["run"]

RUNS, PER_RUN, CRASHED = 10_000, 810, 0.6


def _fleet() -> tuple[Path, int]:
    scale = float(os.environ.get("RUNDOCTOR_BENCH_SCALE") or 1)
    runs = max(2, round(RUNS * scale))
    root = BENCH_DIR / f"fleet-many-{runs}x{PER_RUN}"
    if not (root / f"fleet-{runs - 1:04d}" / "progress.ndjson").exists():
        build_fleet(root, runs, PER_RUN, kilroy=True, crashed=CRASHED)
    return root, runs


def run() -> list[Result]:
    root, runs = _fleet()
    size = warm_page_cache(root)
    # Issue 10's simple aggregate over the same files, for scale: a run's own cost (its
    # documents, its cache entry and events file) weighs more here, with ten times the runs.
    simple, _ = duckdb_process(root, [SIMPLE_SQL])
    simple_cpu = LAST_CPU[0]
    cache = Path(tempfile.mkdtemp(prefix="rundoctor-bench-cache-"))
    try:
        wall, peak, fleet = doctor_scan(root, cache)
    finally:
        remove_tree(cache, ignore_errors=True)
    scaled = "" if runs == RUNS else f" (scaled to {runs:,} runs: RUNDOCTOR_BENCH_SCALE)"
    return [
        Result(
            f"scan {runs:,} runs cold, peak memory (process + workers)",
            peak / GB,
            1.0,
            "GiB",
            note=f"{peak / 2**20:.0f} MiB; {wall:.1f} s (CPU {fleet['cpu_s']} s) over "
            f"{size / 2**30:.2f} GiB, read {fleet['read']} runs; simple DuckDB {simple:.1f} s "
            f"(CPU {simple_cpu:.1f} s): {wall / simple:.2f}x{scaled}",
        )
    ]
