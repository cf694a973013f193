"""The reaper's own stopwatch on each lease: silence timed on the monotonic clock.

A lease is stamped in the queue's clock, a wall clock (this host's for SQLite, the database
server's for PostgreSQL), and wall clocks step: NTP correcting a drift, ``date -s``, a VM
restored from a snapshot. Every lease moves with the step at once:

* **forward** past ``lease_ttl_s``, every live lease looked lapsed, and the next reaper pass
  took them all: it killed running stages, wrote "lost worker" into their ``final.json``,
  counted a crash recovery and ran the tickets again (three steps quarantined them);
* **backward**, a lease that lapses looked alive for as long as the step (an hour back: a
  frozen worker's ticket held for an hour).

A reaper that lives across passes (each worker's reaper thread) therefore keeps a
:class:`LeaseWatch`: each leased ticket's progress (owner, epoch, claim and heartbeat stamps)
and when, on :func:`time.monotonic`, that progress last moved. A ticket it has watched since an
earlier pass is judged by that silence alone: lapsed once nothing moved for ``lease_ttl_s``
(plus ``claim_grace_s`` while it is only claimed), whatever the stamps say. That is as safe as
the stamps were: the owner's watchdog fences the slot after ``self_fence_s`` of its own
monotonic silence (``self_fence_s < lease_ttl_s``), and this reaper's silence starts no earlier
than the owner's last heartbeat. A ticket seen for the first time (a one-shot ``doctor reap``,
a worker that just started) is judged by the queue's clock; one that clock calls lapsed is
believed only once the watch saw it stand still for a heartbeat's window
(:meth:`LeaseWatch.lapse_believed`): after a step forward its live holder heartbeats first.

>>> from executor import SessionInfo, open_queue
>>> q = open_queue(":memory:", clock=lambda: 100.0)
>>> _ = q.enqueue("x", "/p.dot")
>>> _ = q.claim("w", lease_ttl_s=10, session=SessionInfo("s", 1, 1, None, "h"))
>>> mono = [0.0]
>>> watch = LeaseWatch(clock=lambda: mono[0])
>>> watch.observe(q.tickets(status=("claimed", "running")))
>>> (t,) = q.tickets()
>>> watch.silence(t) is None  # first seen: the queue's clock judges it
True
>>> mono[0] = 9.0
>>> watch.observe(q.tickets(status=("claimed", "running")))
>>> watch.silence(t)  # nothing moved for 9 s of the monotonic clock
9.0

A lease first seen lapsed by the queue's clock is held until the watch saw it stand still:

>>> watch = LeaseWatch(clock=lambda: mono[0])
>>> watch.observe(q.tickets(status=("claimed", "running")))
>>> (watch.lapse_believed(t, 5.0), watch.held_s())
(False, 5.0)
>>> mono[0] = 14.0
>>> watch.observe(q.tickets(status=("claimed", "running")))
>>> (watch.lapse_believed(t, 5.0), watch.held_s())
(True, 0.0)
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from executor._records import Ticket
from rundoctor.clock import Clock

__all__ = ["LeaseWatch"]

#: What changes whenever a lease shows a sign of life or changes hands.
_Progress = tuple[object, ...]


def _progress(t: Ticket) -> _Progress:
    return (t.lease_epoch, t.lease_owner, t.status, t.claimed_at, t.last_heartbeat_at, t.run_id)


class LeaseWatch:
    """How long each leased ticket has shown no progress, timed by this reaper.

    ``clock`` is monotonic (:func:`time.monotonic`): a wall clock's step must not count as
    silence, nor hide it."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        #: ticket id -> (its progress, when it last moved, whether seen before this pass)
        self._seen: dict[str, tuple[_Progress, float, bool]] = {}
        #: Tickets first seen with a lapsed lease that showed no progress since.
        self._doubted: set[str] = set()
        #: ticket id -> how much longer the reaper watches it before it believes the stamps
        self._held: dict[str, float] = {}

    def observe(self, leased: Iterable[Ticket]) -> None:
        """Record one pass's leased tickets; forget those no longer leased.

        >>> watch = LeaseWatch(clock=lambda: 5.0)
        >>> watch.observe([])
        >>> len(watch)
        0
        """
        now = self._clock()
        self._held = {}
        seen: dict[str, tuple[_Progress, float, bool]] = {}
        for t in leased:
            progress = _progress(t)
            before = self._seen.get(t.id)
            if before is None:
                seen[t.id] = (progress, now, False)
            elif before[0] == progress:
                seen[t.id] = (progress, before[1], True)
            else:
                seen[t.id] = (progress, now, True)
                self._doubted.discard(t.id)  # it moved: its holder is alive
        self._seen = seen
        self._doubted &= seen.keys()

    def __len__(self) -> int:
        """How many leased tickets the watch holds."""
        return len(self._seen)

    def silence(self, t: Ticket) -> float | None:
        """Seconds ``t`` has shown no progress to this reaper; None when the last
        :meth:`observe` saw it for the first time (judge it by the queue's clock then).

        >>> from executor import open_queue
        >>> q = open_queue(":memory:")
        >>> LeaseWatch().silence(q.enqueue("x", "/p.dot")) is None
        True
        """
        entry = self._seen.get(t.id)
        if entry is None or not entry[2]:
            return None
        return self._clock() - entry[1]

    def lapse_believed(self, t: Ticket, window_s: float) -> bool | None:
        """For ``t``, whose lease the queue's clock calls lapsed: whether to believe it.

        None when this watch saw ``t`` before its lease looked lapsed: judge it by its
        :meth:`silence`. Otherwise (first seen lapsed, and no progress since), True once this
        watch has seen it stand still for ``window_s``; until then False, and the ticket is
        held (:meth:`held_s`). After the queue's clock stepped forward every live lease looks
        lapsed, and its holder's next heartbeat, due within ``window_s``, shows it is not.
        """
        entry = self._seen.get(t.id)
        if entry is None:
            return True  # never observed: nothing to set against the stamps
        _, moved_at, before = entry
        if before and t.id not in self._doubted:
            return None
        self._doubted.add(t.id)
        silent = self._clock() - moved_at
        if silent >= window_s:
            return True
        self._held[t.id] = window_s - silent
        return False

    def held_s(self) -> float:
        """The longest the tickets held at this pass (:meth:`lapse_believed`) are still
        watched before their stamps are believed; 0.0 when none is held."""
        return max(self._held.values(), default=0.0)

    def held(self) -> int:
        """How many tickets this pass held (:meth:`lapse_believed`)."""
        return len(self._held)
