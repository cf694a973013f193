"""What every benchmark returns: a measured value next to its target, measured in this run."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BENCH_DIR", "Result", "best_of", "timer"]

#: Where benchmarks keep generated inputs between runs (git-ignored).
BENCH_DIR = Path(
    os.environ.get("RUNDOCTOR_BENCH_DIR", Path(__file__).resolve().parent.parent / ".bench")
)


@dataclass(frozen=True)
class Result:
    """One line of the benchmark table.

    ``ratio`` is measured / target for "at most" targets and target / measured for "at least"
    targets, so a ratio <= 1.0 always means the target is met.
    """

    name: str
    measured: float
    target: float
    unit: str
    higher_is_better: bool = False
    note: str = ""

    @property
    def ratio(self) -> float:
        if self.higher_is_better:
            return self.target / self.measured if self.measured else float("inf")
        return self.measured / self.target if self.target else float("inf")

    @property
    def ok(self) -> bool:
        return self.ratio <= 1.0


@contextmanager
def timer() -> Iterator[Callable[[], float]]:
    """``with timer() as elapsed: ...; elapsed()`` gives wall seconds."""
    start = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - start
    end.append(time.perf_counter())


def best_of(n: int, fn: Callable[[], object]) -> float:
    """Best wall time of ``n`` calls: the least noisy estimate on a shared 2-core machine."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)
