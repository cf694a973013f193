"""The lease keeper: heartbeats for one lease, and the watchdog that fences the slot itself.

While a ticket's run lasts, a heartbeat thread extends the lease every
``heartbeat_interval_s`` on its own connection, and a watchdog fences the slot itself when no
heartbeat succeeded for ``self_fence_s`` (a stalled database, a frozen process): it cancels the
run, whose stage process groups are stopped, before the reaper could hand the ticket to anyone
else (``self_fence_s`` < ``lease_ttl_s``, checked by :meth:`ExecutorConfig.validate`).

A heartbeat rejected for a stale epoch means the reaper took the ticket: the run is canceled
and the worker writes nothing more for it. When the worker shuts down (``stop``), the watchdog
cancels the run too, and the ticket is released.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from executor._config import ExecutorConfig
from executor._errors import FencedError, QueueError
from executor._queue import Lease, Queue

__all__ = ["Connect", "LeaseKeeper"]

#: How a slot, a lease keeper or the reaper thread gets its own connection to the queue.
Connect = Callable[[], Queue]


class LeaseKeeper:
    """Heartbeats for one lease, and the self-fence watchdog that does not trust them.

    The watchdog times the silence with :func:`time.monotonic`, never with the wall clock: the
    lease it races is kept in the queue's clock, and a wall clock stepped back (NTP, a resumed
    VM) must not keep a worker that cannot heartbeat from fencing itself."""

    def __init__(
        self, connect: Connect, lease: Lease, config: ExecutorConfig, stop: threading.Event
    ) -> None:
        self.connect, self.lease, self.config = connect, lease, config
        self.stop = stop
        self.cancel = threading.Event()
        self.fenced = threading.Event()
        self.done = threading.Event()
        self.last_ok = time.monotonic()
        self._threads = [
            threading.Thread(target=self._beat, daemon=True, name="lease-heartbeat"),
            threading.Thread(target=self._watch, daemon=True, name="lease-watchdog"),
        ]

    def __enter__(self) -> LeaseKeeper:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        for t in self._threads:
            t.join(timeout=self.config.heartbeat_interval_s + 5)

    def _beat(self) -> None:
        interval = self.config.heartbeat_interval_s
        queue: Queue | None = None
        try:
            while not self.done.wait(interval):
                if self.fenced.is_set() or self._silent_past_fence():
                    # The slot fenced itself (or is about to: woken from a freeze longer than
                    # self_fence_s, this thread may run before the watchdog): its run is being
                    # canceled, and a beat now would renew a lease no one works under, which
                    # the reaper then waited a whole TTL more to take back (chaos seed 4).
                    return
                try:
                    if queue is None:  # opened here, so a database that blinked is retried
                        queue = self.connect()
                    queue.heartbeat(
                        self.lease,
                        lease_ttl_s=self.config.lease_ttl_s,
                        interval_s=interval,
                        alive_since=self.last_ok,  # a step of the queue's clock is no gap
                    )
                    self.last_ok = time.monotonic()
                except FencedError:
                    # The reaper took the ticket: stop, and write nothing more for it.
                    self.fenced.set()
                    self.cancel.set()
                    return
                except QueueError:
                    continue  # the database is unavailable; the watchdog keeps count
        finally:
            if queue is not None:
                queue.close()

    def _silent_past_fence(self) -> bool:
        """True when no heartbeat succeeded for ``self_fence_s``: the slot must fence itself."""
        return time.monotonic() - self.last_ok > self.config.self_fence_s

    def _watch(self) -> None:
        # Separate from the heartbeat thread, which may be stuck in a database call.
        while not self.done.wait(min(0.5, self.config.heartbeat_interval_s / 2)):
            if self.stop.is_set():
                self.cancel.set()  # the worker is shutting down: cancel, then release
                return
            if self._silent_past_fence():
                self.fenced.set()
                self.cancel.set()
                return
