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
with its own clock. The primitives live in :mod:`rundoctor.clock`, where the doctor, which
judges a PostgreSQL queue at its server's clock too, finds them without loading the executor.

>>> ticks = iter([100.0, 100.2])
>>> server_now, offset = measure(lambda: next(ticks), lambda: 160.1)
>>> (server_now, offset.offset_s, round(offset.error_s, 3))
(160.1, 60.0, 0.1)
>>> offset.describe()
"this host's clock is 60 s behind the queue's database server (±0.1 s)"
"""

from __future__ import annotations

from rundoctor.clock import SERVER_NOW, SKEW_NOTICE_S, ClockOffset, measure

__all__ = ["SERVER_NOW", "SKEW_NOTICE_S", "ClockOffset", "measure"]
