"""The clock every package injects: a callable returning epoch seconds.

Library code never calls :func:`time.time` directly where time matters to a result; it takes
a ``clock: Clock = time.time`` parameter, so tests (and chaos replays) pin time exactly.

>>> frozen: Clock = lambda: 1_700_000_000.0
>>> frozen()
1700000000.0
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

__all__ = ["Clock"]

#: A source of time: epoch seconds as a float (``time.time`` in production).
Clock: TypeAlias = Callable[[], float]
