"""Workers: claim tickets, run their pipelines, keep the lease alive, fence themselves.

A worker process runs ``concurrency`` slots. Each slot claims a ticket (the session — worker
pid, process group, start time, host — is recorded in the same transaction), starts a run
directory, and runs the ticket's pipeline with :func:`executor.run_pipeline`, stamping the
lease epoch on every event. While the run lasts, a heartbeat thread extends the lease every
``heartbeat_interval_s`` on its own connection, and a watchdog fences the slot itself when no
heartbeat succeeded for ``self_fence_s`` (a stalled database, a frozen process): it cancels the
run, whose stage process groups are stopped, before the reaper could hand the ticket to anyone
else (``self_fence_s`` < ``lease_ttl_s``, checked by :meth:`ExecutorConfig.validate`).

A heartbeat rejected for a stale epoch means the reaper took the ticket: the run is canceled
and the worker writes nothing more for it. The worker also runs the reaper every
``reaper_interval_s``, so a fleet of workers needs no separate reaper process.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from executor._artifacts import proc_start_ticks
from executor._config import ExecutorConfig
from executor._errors import FencedError, QueueError, UsageError
from executor._events import Event
from executor._queue import Lease, Queue, SessionInfo, Ticket, open_queue
from executor._reaper import reap
from executor._runner import RunResult, new_run_id, run_pipeline

__all__ = ["WorkerStats", "run_ticket", "run_worker", "worker_session"]

Clock = Callable[[], float]
#: Told of each ticket a worker claims (``"claimed"``) and runs (``"finished"``, the result).
TicketHook = Callable[[str, Ticket, RunResult | None], None]


@dataclass
class WorkerStats:
    """What a worker did; one object shared by its slots (guarded by ``lock``)."""

    claimed: int = 0
    completed: int = 0
    failed: int = 0
    released: int = 0
    fenced: int = 0
    reclaimed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self.lock:
            for key, n in counts.items():
                setattr(self, key, getattr(self, key) + n)

    def to_json(self) -> dict[str, int]:
        return {
            k: getattr(self, k)
            for k in ("claimed", "completed", "failed", "released", "fenced", "reclaimed")
        }


def worker_session(name: str) -> SessionInfo:
    """This process as the session that runs a ticket."""
    pid = os.getpid()
    return SessionInfo(
        session_name=name,
        pid=pid,
        pgid=os.getpgid(0),
        proc_start_time=proc_start_ticks(pid),
        host=socket.gethostname(),
    )


class _LeaseKeeper:
    """Heartbeats for one lease, and the self-fence watchdog that does not trust them."""

    def __init__(
        self,
        url: str,
        lease: Lease,
        config: ExecutorConfig,
        clock: Clock,
        stop: threading.Event,
    ) -> None:
        self.url, self.lease, self.config, self.clock, self.stop = url, lease, config, clock, stop
        self.cancel = threading.Event()
        self.fenced = threading.Event()
        self.done = threading.Event()
        self.last_ok = clock()
        self._threads = [
            threading.Thread(target=self._beat, daemon=True, name="lease-heartbeat"),
            threading.Thread(target=self._watch, daemon=True, name="lease-watchdog"),
        ]

    def __enter__(self) -> _LeaseKeeper:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        for t in self._threads:
            t.join(timeout=self.config.heartbeat_interval_s + 5)

    def _beat(self) -> None:
        interval = self.config.heartbeat_interval_s
        try:
            queue = open_queue(self.url, clock=self.clock)
        except QueueError:
            return  # the watchdog fences the slot when no heartbeat ever succeeds
        try:
            while not self.done.wait(interval):
                try:
                    queue.heartbeat(
                        self.lease, lease_ttl_s=self.config.lease_ttl_s, interval_s=interval
                    )
                    self.last_ok = self.clock()
                except FencedError:
                    if self.config.unsafe_disable_fencing:  # TEST-ONLY (ExecutorConfig)
                        self.lease = _adopt_epoch(queue, self.lease)
                        continue
                    # The reaper took the ticket: stop, and write nothing more for it.
                    self.fenced.set()
                    self.cancel.set()
                    return
                except QueueError:
                    continue  # the database is unavailable; the watchdog keeps count
        finally:
            queue.close()

    def _watch(self) -> None:
        # Separate from the heartbeat thread, which may be stuck in a database call.
        while not self.done.wait(min(0.5, self.config.heartbeat_interval_s / 2)):
            if self.stop.is_set():
                self.cancel.set()  # the worker is shutting down: cancel, then release
                return
            if self.config.unsafe_disable_fencing:  # TEST-ONLY: never fence itself
                continue
            if self.clock() - self.last_ok > self.config.self_fence_s:
                self.fenced.set()
                self.cancel.set()
                return


def _adopt_epoch(queue: Queue, lease: Lease) -> Lease:
    """TEST-ONLY (``unsafe_disable_fencing``): the lease with the ticket's current epoch."""
    try:
        return replace(lease, epoch=queue.get(lease.ticket_id).lease_epoch)
    except QueueError:
        return lease


def _run_ticket(
    queue: Queue,
    url: str,
    lease: Lease,
    session: SessionInfo,
    root: Path,
    config: ExecutorConfig,
    stop: threading.Event,
    stats: WorkerStats,
    clock: Clock,
    on_event: Callable[[Event], None] | None = None,
) -> RunResult | None:
    run_id = new_run_id(clock)
    try:
        queue.start(lease, run_id=run_id, run_path=root / run_id, session=session)
    except FencedError:
        stats.add(fenced=1)
        return None
    with _LeaseKeeper(url, lease, config, clock, stop) as keeper:
        result = run_pipeline(
            Path(lease.ticket.graph_path),
            root,
            config,
            run_id=run_id,
            epoch=lease.epoch,
            clock=clock,
            cancel=keeper.cancel,
            on_event=on_event,
        )
    if keeper.fenced.is_set():
        stats.add(fenced=1)
        return result
    if config.unsafe_disable_fencing:  # TEST-ONLY (ExecutorConfig): write as the current epoch
        lease = _adopt_epoch(queue, lease)
    try:
        if result.status == "success":
            queue.complete(lease, result=result.to_json())
            stats.add(completed=1)
        elif result.status == "canceled" and stop.is_set():
            queue.release(lease, "worker shut down; the run was canceled")
            stats.add(released=1)
        elif result.status == "canceled":
            # Canceled from outside (SIGINT of `doctor run --db`): the ticket is canceled too.
            queue.cancel(lease.ticket_id, result.failure_reason or "the run was canceled")
            stats.add(failed=1)
        else:
            # Retryable: the ticket's max_error_attempts decides how many failed runs it gets.
            queue.fail(lease, reason=result.failure_reason or result.status, retryable=True)
            stats.add(failed=1)
    except FencedError:
        stats.add(fenced=1)
    return result


def run_ticket(
    url: str,
    ticket_id: str,
    root: Path,
    config: ExecutorConfig,
    *,
    name: str | None = None,
    clock: Clock = time.time,
    on_event: Callable[[Event], None] | None = None,
) -> tuple[RunResult | None, WorkerStats]:
    """Claim ``ticket_id`` and run it in this thread, with lease heartbeats (``doctor run``).

    Returns ``(None, stats)`` when the ticket could not be claimed (not ``todo``, or a
    dependency not done). Called from the main thread, SIGTERM and SIGINT cancel the run.
    """
    config.validate()
    root.mkdir(parents=True, exist_ok=True)
    name = name or f"{socket.gethostname()}:{os.getpid()}"
    stats = WorkerStats()
    queue = open_queue(url, clock=clock)
    try:
        session = worker_session(name)
        lease = queue.claim(
            name, lease_ttl_s=config.lease_ttl_s, session=session, ticket_id=ticket_id
        )
        if lease is None:
            return None, stats
        stats.add(claimed=1)
        stop = threading.Event()
        result = _run_ticket(queue, url, lease, session, root, config, stop, stats, clock, on_event)
        return result, stats
    finally:
        queue.close()


def _slot(
    url: str,
    root: Path,
    config: ExecutorConfig,
    name: str,
    once: bool,
    poll_s: float,
    stop: threading.Event,
    stats: WorkerStats,
    clock: Clock,
    on_ticket: TicketHook | None = None,
) -> None:
    queue = open_queue(url, clock=clock)
    session = worker_session(name)
    try:
        while not stop.is_set():
            try:
                lease = queue.claim(name, lease_ttl_s=config.lease_ttl_s, session=session)
            except QueueError:
                # The database is unavailable (a stall, a restart): wait and claim again
                # rather than let the slot die while the worker looks healthy.
                stop.wait(max(poll_s, 1.0))
                continue
            if lease is None:
                if once:
                    return
                stop.wait(poll_s)
                continue
            stats.add(claimed=1)
            if on_ticket is not None:
                on_ticket("claimed", lease.ticket, None)
            result = _run_ticket(queue, url, lease, session, root, config, stop, stats, clock)
            if on_ticket is not None:
                on_ticket("finished", lease.ticket, result)
    finally:
        queue.close()


def _reaper_loop(
    url: str, config: ExecutorConfig, stop: threading.Event, stats: WorkerStats, clock: Clock
) -> None:
    queue = open_queue(url, clock=clock)
    try:
        while not stop.wait(config.reaper_interval_s):
            try:
                stats.add(reclaimed=len([r for r in reap(queue, config, clock=clock) if r.status]))
            except QueueError:
                continue
    finally:
        queue.close()


def run_worker(
    url: str,
    root: Path,
    config: ExecutorConfig,
    *,
    name: str | None = None,
    concurrency: int = 1,
    once: bool = False,
    poll_s: float = 0.5,
    reaper: bool = True,
    stop: threading.Event | None = None,
    clock: Clock = time.time,
    on_ticket: TicketHook | None = None,
) -> WorkerStats:
    """Claim and run tickets until ``stop`` is set (or, with ``once``, the queue is empty).

    Each of the ``concurrency`` slots runs one ticket at a time. Setting ``stop`` cancels the
    running pipelines (their stages are stopped, ``final.json`` says canceled) and releases
    their tickets back to ``todo``. ``on_ticket("claimed", ticket, None)`` is called (from the
    slot's thread) when a ticket is claimed, ``on_ticket("finished", ticket, result)`` when
    its run ended (result ``None`` when the lease was lost before the run started).
    """
    config.validate()
    if concurrency < 1:
        raise UsageError(f"--concurrency must be at least 1, got {concurrency}")
    open_queue(url, clock=clock).close()  # a bad URL is the caller's error, not a dead thread
    root.mkdir(parents=True, exist_ok=True)
    stop = stop or threading.Event()
    name = name or f"{socket.gethostname()}:{os.getpid()}"
    stats = WorkerStats()
    slots = [
        threading.Thread(
            target=_slot,
            args=(url, root, config, f"{name}/{i}", once, poll_s, stop, stats, clock, on_ticket),
            name=f"slot-{i}",
        )
        for i in range(concurrency)
    ]
    helper = threading.Thread(
        target=_reaper_loop, args=(url, config, stop, stats, clock), daemon=True, name="reaper"
    )
    if reaper:
        helper.start()
    for t in slots:
        t.start()
    for t in slots:
        t.join()
    stop.set()
    return stats
