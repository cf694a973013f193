"""``doctor diagnose`` on the full-scale rogue fixture, as a whole process.

Target (issue 2): under 1.5 s on this 2-core machine (best of three runs).
"""

from __future__ import annotations

import subprocess
import sys

from bench._common import BENCH_DIR, Result, best_of
from fixtures.rogue import RUN_ID, build_rogue_run

__all__ = ["run"]


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
    return [Result("diagnose rogue run (whole process)", seconds, 1.5, "s")]
