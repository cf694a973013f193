"""The executor's own cost per stage: a 20-stage pipeline of ``true``, run several times.

``stage_overhead`` is ``(wall - sum of the stages' process times) / stages`` at the median of
the runs: what the executor adds around each process (events, the attempt directory, status
and checkpoint documents written atomically with fsync, routing). ``stage_wall`` is
``wall / stages``, process time included. Both target at most 20 ms per stage. The runs are
real: ``bash -c true`` subprocesses, fsync on, under ``.bench/stage_overhead/``.
"""

from __future__ import annotations

import json
import statistics
import time

from bench._common import BENCH_DIR, Result
from executor import ExecutorConfig, run_pipeline
from rundoctor.paths import remove_tree

__all__ = ["RUNS", "STAGES", "run"]

STAGES = 20
RUNS = 7
TARGET_MS = 20.0


def _graph() -> str:
    names = [f"s{i:02d}" for i in range(STAGES)]
    nodes = "".join(f'  {n} [shape=parallelogram, tool_command="true"]\n' for n in names)
    chain = " -> ".join(["start", *names, "exit"])
    return (
        "digraph overhead {\n  start [shape=Mdiamond]\n  exit [shape=Msquare]\n"
        f"{nodes}  {chain}\n}}\n"
    )


def run() -> list[Result]:
    """Median overhead and wall time per stage over :data:`RUNS` runs."""
    root = BENCH_DIR / "stage_overhead"
    remove_tree(root, ignore_errors=True)
    root.mkdir(parents=True)
    graph = root / "overhead.dot"
    graph.write_text(_graph())
    config = ExecutorConfig()
    overheads, walls = [], []
    for i in range(RUNS):
        t0 = time.perf_counter()
        result = run_pipeline(graph, root / "runs", config, run_id=f"run{i}")
        wall = time.perf_counter() - t0
        assert result.status == "success", result.failure_reason
        stage_s = json.loads((result.path / "final.json").read_text())["stage_s"]
        overheads.append((wall - stage_s) / STAGES * 1000)
        walls.append(wall / STAGES * 1000)
    overhead, per_stage = statistics.median(overheads), statistics.median(walls)
    note = f"{STAGES} stages x {RUNS} runs, fsync on"
    return [
        Result("stage_overhead", overhead, TARGET_MS, "ms/stage", note=note),
        Result("stage_wall", per_stage, TARGET_MS, "ms/stage", note=note),
    ]
