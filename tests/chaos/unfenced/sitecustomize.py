"""TEST-ONLY: a worker whose fencing is defeated, so the chaos checkers can be shown to fail.

``tests/chaos/test_campaign.py`` puts this directory first on ``PYTHONPATH`` of a ``chaos run``;
Python imports ``sitecustomize`` at start-up, so the campaign and every worker it spawns swap
the worker's lease keeper for one that never fences: a fenced heartbeat adopts the ticket's
current lease epoch, the self-fence watchdog never fires, and the run's outcome is written
as the current epoch. A worker woken after its lease was reclaimed then keeps writing, and the
queue accepts it. The library has no switch for this: it lives here, with the test.
"""

from __future__ import annotations

import dataclasses
import os

if os.environ.get("RUNDOCTOR_TEST_UNFENCED") == "1":
    from executor import _lease_keeper, _ticket_run
    from executor._errors import FencedError, QueueError
    from executor._queue import Lease, Queue

    def _current(queue: Queue, lease: Lease) -> Lease:
        try:
            return dataclasses.replace(lease, epoch=queue.get(lease.ticket_id).lease_epoch)
        except QueueError:
            return lease

    class _UnfencedKeeper(_lease_keeper.LeaseKeeper):
        def _beat(self) -> None:
            interval = self.config.heartbeat_interval_s
            queue = None
            try:
                while not self.done.wait(interval):
                    try:
                        if queue is None:
                            queue = self.connect()
                        queue.heartbeat(
                            self.lease, lease_ttl_s=self.config.lease_ttl_s, interval_s=interval
                        )
                    except FencedError:
                        if queue is not None:
                            self.lease = _current(queue, self.lease)
                    except QueueError:
                        continue
            finally:
                if queue is not None:
                    queue.close()

        def _watch(self) -> None:
            while not self.done.wait(0.25):
                if self.stop.is_set():
                    self.cancel.set()
                    return

        def __exit__(self, *exc: object) -> None:
            super().__exit__(*exc)
            try:  # the outcome is written as the ticket's current epoch
                queue = self.connect()
                try:
                    self.lease = _current(queue, self.lease)
                finally:
                    queue.close()
            except QueueError:
                pass

    # Swapped where a slot's run looks the keeper up.
    _ticket_run.LeaseKeeper = _UnfencedKeeper  # type: ignore[misc]
