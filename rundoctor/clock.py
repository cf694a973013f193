"""The clock every package injects: a callable returning epoch seconds.

Library code never calls :func:`time.time` directly where time matters to a result; it takes
a ``clock: Clock = time.time`` parameter, so tests (and chaos replays) pin time exactly.

A PostgreSQL queue's times are its database server's (``executor._clocks``): :func:`measure`
reads the server's time between two reads of this host's clock, for the executor and the
doctor alike.

>>> frozen: Clock = lambda: 1_700_000_000.0
>>> frozen()
1700000000.0
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

__all__ = ["SERVER_NOW", "SKEW_NOTICE_S", "Clock", "ClockOffset", "measure"]

#: A source of time: epoch seconds as a float (``time.time`` in production).
Clock: TypeAlias = Callable[[], float]

#: The server's time as epoch seconds: the statement's own instant (``now()`` would be the
#: transaction's start, which a claim that waited for a lock has long passed, chaos seed 20).
SERVER_NOW = "SELECT extract(epoch FROM clock_timestamp())::float8"

#: A worker says on stderr (and ``doctor scan --db`` in its fleet section) that its clock is off
#: when the measured offset exceeds this (after the measurement's own uncertainty): leases are
#: safe either way, its run directories' times are not comparable with the queue's.
SKEW_NOTICE_S = 1.0


@dataclass(frozen=True, slots=True)
class ClockOffset:
    """How far the database server's clock is from this process's (injected) clock.

    ``offset_s`` is server − local (positive: this host runs behind); ``error_s`` is half the
    time the measurement took by the local clock: the true offset lies within ± that.
    """

    offset_s: float
    error_s: float

    def skewed(self, threshold_s: float = SKEW_NOTICE_S) -> bool:
        """Whether the offset surely exceeds ``threshold_s``.

        >>> (ClockOffset(1.5, 0.1).skewed(), ClockOffset(-1.05, 0.1).skewed())
        (True, False)
        """
        return abs(self.offset_s) - self.error_s > threshold_s

    def describe(self) -> str:
        """One clause for a human: which way, how far, how sure.

        >>> ClockOffset(-2.25, 0.0004).describe()
        "this host's clock is 2.25 s ahead of the queue's database server (±0.0004 s)"
        """
        way = "behind" if self.offset_s > 0 else "ahead of"
        return (
            f"this host's clock is {abs(self.offset_s):.3g} s {way} the queue's database server"
            f" (±{self.error_s:.1g} s)"
        )


def measure(local: Clock, read_server: Callable[[], float]) -> tuple[float, ClockOffset]:
    """Read the server's time between two reads of ``local``: (the server's time, the offset).

    The offset is taken at the midpoint of the two local reads.

    >>> ticks = iter([100.0, 100.2])
    >>> server, offset = measure(lambda: next(ticks), lambda: 160.1)
    >>> server, round(offset.offset_s, 6), round(offset.error_s, 6)
    (160.1, 60.0, 0.1)
    """
    before = local()
    server = read_server()
    after = local()
    return server, ClockOffset(server - (before + after) / 2, abs(after - before) / 2)
