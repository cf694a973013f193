"""The one rule for a cost an artifact reports: what the executor keeps of a stage's
``cost_usd`` and what the doctor adds into a run's and a fleet's cost."""

from __future__ import annotations

import math

__all__ = ["cost_figure"]


def cost_figure(value: object) -> float | None:
    """A cost as an artifact reports it: a number that fits a double, is finite and is not
    below zero; ``None`` otherwise. A 400-digit integer stopped a run with OverflowError (the
    executor) and a diagnosis (the doctor); ``Infinity``, which Python's json reads, went
    into every document after it; a cost of -3 was taken off the run's and the fleet's
    totals; ``true`` (a JSON boolean is a Python int) was a $1.00 run.

    >>> cost_figure(7), cost_figure(0.25), cost_figure(10**400), cost_figure(True)
    (7.0, 0.25, None, None)
    >>> cost_figure(-3.0), cost_figure(-0.0), cost_figure(float("inf"))
    (None, 0.0, None)
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        cost = float(value)
    except OverflowError:
        return None
    # -0.0 is no refund either: it reads as 0, never as "-0.0" in a total.
    return cost + 0.0 if math.isfinite(cost) and cost >= 0 else None
