"""``python -m bench [NAME ...]``: run benchmarks; print measured/target ratios side by side."""

from __future__ import annotations

import importlib
import sys

from bench._common import Result

#: Benchmark modules, each with ``run() -> list[Result]``.
BENCHES = (
    "claims",
    "diagnose",
    "many_runs",
    "reclaim",
    "scan",
    "signatures",
    "stage_overhead",
    "startup",
)


def main(argv: list[str]) -> int:
    names = argv or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(
            f"unknown benchmark {unknown[0]!r}; expected one of {', '.join(BENCHES)}",
            file=sys.stderr,
        )
        return 2
    results: list[Result] = []
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        results.extend(module.run())
    width = max(len(r.name) for r in results)
    print(f"{'benchmark':<{width}}  {'measured':>12}  {'target':>12}  {'ratio':>6}  verdict")
    for r in results:
        cmp = ">=" if r.higher_is_better else "<="
        verdict = "ok" if r.ok else "MISSED"
        print(
            f"{r.name:<{width}}  {r.measured:>12.4g}  {cmp}{r.target:>10.4g}  {r.ratio:>6.2f}  "
            f"{verdict} {r.unit}{'  ' + r.note if r.note else ''}"
        )
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
