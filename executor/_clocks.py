"""The queue's clock: one clock for every lease time, the database server's on PostgreSQL.

A lease is arithmetic between times written by different processes: a worker stamps
``claimed_at``, ``last_heartbeat_at`` and ``lease_expires_at``, a reaper compares them with its
own "now". On a shared PostgreSQL queue those processes run on different machines; were each to
use its own clock, a worker whose clock runs behind the reaper's by more than the lease TTL
would have its live lease reclaimed at every pass, and one whose clock runs ahead would keep a
dead lease that much longer. So a PostgreSQL queue reads "now" from the server
(``clock_timestamp()``, the time of the statement, not of the transaction's start) inside
every transaction that stamps or compares, and :meth:`executor.Queue.now` gives the same time
to the reaper. SQLite is one file on one machine: its queue keeps the injected clock.

Each server reading is bracketed by two reads of the process's own (injected) clock, which
measures this host's offset to the server (:class:`ClockOffset`): the worker says so on stderr
when it exceeds :data:`SKEW_NOTICE_S`, since the run directories it writes are still stamped
with its own clock.

>>> ticks = iter([100.0, 100.2])
>>> server_now, offset = measure(lambda: next(ticks), lambda: 160.1)
>>> (server_now, offset.offset_s, round(offset.error_s, 3))
(160.1, 60.0, 0.1)
>>> offset.describe()
"this host's clock is 60 s behind the queue's database server (±0.1 s)"
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rundoctor.clock import Clock

__all__ = ["SERVER_NOW", "SKEW_NOTICE_S", "ClockOffset", "measure"]

#: The server's time as epoch seconds: the statement's own instant (``now()`` would be the
#: transaction's start, which a claim that waited for a lock has long passed, chaos seed 20).
SERVER_NOW = "SELECT extract(epoch FROM clock_timestamp())::float8"

#: A worker says on stderr that its clock is off when the measured offset exceeds this (after
#: the measurement's own uncertainty): leases are safe either way, its run directories' times
#: are not comparable with the queue's.
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
    """
    before = local()
    server = read_server()
    after = local()
    return server, ClockOffset(server - (before + after) / 2, abs(after - before) / 2)
