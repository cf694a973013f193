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

The database may blink (a PostgreSQL restart, an outage, SQLite's ``database is locked``):
every queue call is retried with backoff (:func:`_persist`) for up to ``database_outage_s``.
A write that may have committed before its connection dropped is checked, not repeated
blindly: the retry first looks for its own event (``completed``, ``failed``, ``released``, at
its lease epoch) in the ticket's log. A ticket whose pipeline cannot be loaded, or whose run
directory cannot be written, fails with that reason; no error kills a slot silently. A runs
root that refuses writes as a whole (full, read-only, over quota: ENOSPC, EROFS, EDQUOT) is not
the ticket's fault: the ticket goes back to ``todo`` with the reason (at most
``root_refusal_releases`` times, then it fails with it) and the worker pauses claiming, with
backoff, so a disk that is full for a while does not throw the queue's work away. A worker
that cannot continue (the queue stayed away past its budget) lets its other slots release
what they can, then :func:`run_worker` raises :class:`~executor.WorkerError` (exit 3).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol, TypeVar

from executor._clocks import ClockOffset
from executor._config import ExecutorConfig
from executor._errors import (
    BudgetError,
    ExecutorError,
    FencedError,
    GraphError,
    QueueError,
    UsageError,
    WorkerError,
)
from executor._events import Event
from executor._queue import Lease, Queue, SessionInfo, Ticket, open_queue
from executor._reaper import reap
from executor._runner import RunResult, new_run_id, run_pipeline
from rundoctor.clock import Clock
from rundoctor.liveness import start_ticks

__all__ = ["QueueOpener", "WorkerStats", "run_ticket", "run_worker", "worker_session"]

T = TypeVar("T")

#: How a slot, a lease keeper or the reaper thread gets its own connection to the queue.
Connect = Callable[[], Queue]


class QueueOpener(Protocol):
    """What opens a queue for a worker: :func:`executor.open_queue`'s signature.

    :func:`run_worker` and :func:`run_ticket` open every queue they use (one per slot, one
    per lease keeper, one for the reaper) through the one they are given, so a caller can
    wrap each connection (the chaos harness records every ticket operation this way).
    """

    def __call__(
        self, target: str | os.PathLike[str], /, *, clock: Clock = ..., create: bool = ...
    ) -> Queue: ...


#: Backoff between two tries of a queue call: doubles from the first to the last value.
_BACKOFF_FIRST_S, _BACKOFF_MAX_S = 0.1, 2.0


def _say(message: str) -> None:
    """One line on stderr: what the worker rode out or gave up on (never a traceback)."""
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(f"rundoctor worker {os.getpid()}: {message}\n")
        sys.stderr.flush()


#: The most slots one worker process runs: each is a thread, a connection and a pipeline's
#: processes, and a mistyped ``--concurrency 100000000`` must not exhaust the host's memory.
MAX_CONCURRENCY = 1024

#: The errors of a runs root that refuses writes as a whole: full, read-only, over quota.
ROOT_REFUSALS = frozenset({errno.ENOSPC, errno.EROFS, errno.EDQUOT})
#: How a release for such a refusal starts its reason (counted in the ticket's log).
ROOT_REFUSED = "the runs root refused writes"
#: The longest pause between claims while the runs root refuses writes (unless the first
#: pause, ``root_refusal_backoff_s``, is longer).
_ROOT_PAUSE_MAX_S = 60.0


class _Fleet:
    """What a worker's threads share about its health: once ``doomed``, every slot stops
    waiting for the database (one last try each) and the worker exits with ``why``; while the
    runs root refuses writes, every slot pauses claiming until ``resume_at``."""

    def __init__(self) -> None:
        self.doomed = threading.Event()
        self.why = ""
        self._lock = threading.Lock()
        self.resume_at = 0.0  # time.monotonic() before which no slot claims
        self._pause = 0.0  # the next pause; 0 while the runs root takes writes

    def root_refused(self, config: ExecutorConfig) -> float:
        """The runs root refused writes: pause claiming (doubling each time); the pause."""
        first = config.root_refusal_backoff_s
        with self._lock:
            pause = self._pause or first
            self._pause = min(pause * 2, max(first, _ROOT_PAUSE_MAX_S))
            self.resume_at = max(self.resume_at, time.monotonic() + pause)
            return pause

    def root_took_writes(self) -> None:
        """A run wrote its ``final.json``: claim at full speed again."""
        with self._lock:
            self._pause = 0.0
            self.resume_at = 0.0

    def claim_pause(self) -> float:
        """Seconds until slots may claim again (0 when they may now)."""
        with self._lock:
            return max(0.0, self.resume_at - time.monotonic())

    def give_up(self, why: str) -> None:
        with self._lock:
            if not self.why:
                self.why = why
        self.doomed.set()


class _ClockNotice:
    """Says on stderr when this host's clock is off from the queue's database server's (more
    than ``SKEW_NOTICE_S``): once when it goes off, again only after it came back. Leases are
    safe either way (a PostgreSQL queue keeps them in the server's clock); the times this
    worker writes into its run directories are its own clock's."""

    def __init__(self) -> None:
        self._off = False
        self._lock = threading.Lock()

    def check(self, offset: ClockOffset | None) -> None:
        if offset is None:
            return
        with self._lock:
            was, self._off = self._off, offset.skewed()
            if self._off and not was:
                _say(
                    f"{offset.describe()}; leases are kept in the server's clock, but this "
                    "worker stamps its run directories with its own: synchronize the clocks "
                    "(NTP)"
                )


def _persist(
    call: Callable[[], T],
    what: str,
    config: ExecutorConfig,
    fleet: _Fleet,
    *,
    landed: Callable[[], bool] | None = None,
    quit: threading.Event | None = None,
) -> T | None:
    """Run the queue call ``call`` until the database answers, riding out outages.

    A :class:`FencedError` is an answer and passes through. Any other :class:`QueueError`
    (connection lost, server restarting, ``database is locked``) is retried with backoff for
    up to ``config.database_outage_s``; before each retry ``landed()`` checks whether the
    previous try committed before its connection dropped (then None is returned instead of
    writing twice). Returns None at once when ``quit`` is set; raises :class:`WorkerError`
    when the budget is spent or the worker is already giving up.

    >>> calls = []
    >>> def flaky() -> str:
    ...     calls.append(1)
    ...     if len(calls) < 3:
    ...         raise QueueError("database is locked")
    ...     return "ok"
    >>> (_persist(flaky, "test", ExecutorConfig(), _Fleet()), len(calls))
    ('ok', 3)
    """
    deadline = time.monotonic() + config.database_outage_s
    delay, tried, told = _BACKOFF_FIRST_S, False, False
    while True:
        try:
            if tried and landed is not None and landed():
                _say(f"{what}: the earlier try had committed; not repeated")
                return None
            tried = True
            return call()
        except FencedError:
            raise
        except QueueError as exc:
            if fleet.doomed.is_set() or time.monotonic() >= deadline:
                why = (
                    f"the queue stayed unavailable for {config.database_outage_s:g} s (last: {exc})"
                    if not fleet.doomed.is_set()
                    else f"the worker is giving up ({fleet.why})"
                )
                raise WorkerError(f"{what}: {why}") from exc
            if not told:
                _say(f"{what}: {exc}; retrying with backoff")
                told = True
        if quit is not None and quit.wait(delay):
            return None
        if quit is None:
            fleet.doomed.wait(delay)
        delay = min(delay * 2, _BACKOFF_MAX_S)


def _logged(queue: Queue, lease: Lease, event: str) -> bool:
    """True when the ticket's log holds ``event`` written with this lease (epoch and worker)."""
    return any(
        e.event == event and e.epoch == lease.epoch and e.worker == lease.worker
        for e in queue.events(lease.ticket_id)
    )


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
        proc_start_time=start_ticks(pid),
        host=socket.gethostname(),
    )


class _LeaseKeeper:
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
        queue: Queue | None = None
        try:
            while not self.done.wait(interval):
                try:
                    if queue is None:  # opened here, so a database that blinked is retried
                        queue = self.connect()
                    queue.heartbeat(
                        self.lease, lease_ttl_s=self.config.lease_ttl_s, interval_s=interval
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

    def _watch(self) -> None:
        # Separate from the heartbeat thread, which may be stuck in a database call.
        while not self.done.wait(min(0.5, self.config.heartbeat_interval_s / 2)):
            if self.stop.is_set():
                self.cancel.set()  # the worker is shutting down: cancel, then release
                return
            if time.monotonic() - self.last_ok > self.config.self_fence_s:
                self.fenced.set()
                self.cancel.set()
                return


@dataclass(frozen=True, slots=True)
class _Slots:
    """What the slots of one worker share (``run_ticket`` builds one for its single ticket);
    ``connect`` opens each thread's own connection to the queue."""

    connect: Connect
    root: Path
    config: ExecutorConfig
    stop: threading.Event
    stats: WorkerStats
    clock: Clock
    fleet: _Fleet


def _run_ticket(
    ctx: _Slots,
    queue: Queue,
    lease: Lease,
    session: SessionInfo,
    on_event: Callable[[Event], None] | None = None,
) -> RunResult | None:
    """Start the ticket's run under ``lease``, run it with lease heartbeats, record the
    outcome; the result (None when the run never started)."""
    run_id = new_run_id(ctx.clock)
    tid = lease.ticket_id

    def started() -> bool:
        t = queue.get(tid)
        return t.run_id == run_id and t.lease_epoch == lease.epoch

    try:
        _persist(
            lambda: queue.start(lease, run_id=run_id, run_path=ctx.root / run_id, session=session),
            f"start of ticket {tid}",
            ctx.config,
            ctx.fleet,
            landed=started,
        )
    except FencedError:
        ctx.stats.add(fenced=1)
        return None
    with _LeaseKeeper(ctx.connect, lease, ctx.config, ctx.stop) as keeper:
        result, broken, refused = _run(ctx, lease, run_id, keeper.cancel, on_event)
    if keeper.fenced.is_set():
        ctx.stats.add(fenced=1)
        return result
    if result is not None:
        ctx.fleet.root_took_writes()
    _record_outcome(ctx, queue, keeper.lease, result, broken, refused)
    return result


def _run(
    ctx: _Slots,
    lease: Lease,
    run_id: str,
    cancel: threading.Event,
    on_event: Callable[[Event], None] | None,
) -> tuple[RunResult | None, str, bool]:
    """Run the ticket's pipeline: ``(result, why it could not run, the runs root refused)``."""
    root, graph = ctx.root, lease.ticket.graph_path
    try:
        result = run_pipeline(
            Path(graph),
            root,
            ctx.config,
            run_id=run_id,
            epoch=lease.epoch,
            clock=ctx.clock,
            cancel=cancel,
            on_event=on_event,
        )
    except (GraphError, UsageError, BudgetError) as exc:
        # Deleted or made invalid after enqueue: this ticket's fault, not the slot's.
        return None, f"the ticket's pipeline {graph!r} cannot be run: {exc}", False
    except OSError as exc:  # ENOSPC, EROFS, EACCES under the runs root
        refused = exc.errno in ROOT_REFUSALS  # the runs root refused writes as a whole
        broken = (
            f"the run directory {str(root / run_id)!r} could not be written "
            f"({exc}); free space or fix permissions under {str(root)!r}"
        ) + ("" if refused else ", then enqueue again")
        return None, broken, refused
    except Exception as exc:  # a bug must fail its ticket, never kill the slot silently
        return None, f"executor error: {type(exc).__name__}: {exc}", False
    return result, "", False


def _record_outcome(
    ctx: _Slots,
    queue: Queue,
    lease: Lease,
    result: RunResult | None,
    broken: str,
    refused: bool,
) -> None:
    """Write the run's outcome to the ticket (fenced at ``lease``): complete, release, cancel
    or fail it; a pipeline that could not run (``broken``) fails it for good, a runs root that
    refused writes (``refused``) gives it back."""
    tid = lease.ticket_id
    config, fleet, stats, stop = ctx.config, ctx.fleet, ctx.stats, ctx.stop
    try:
        if result is None and refused:
            _root_refused(queue, lease, broken, config, fleet, stats)
        elif result is None:
            _say(f"ticket {tid} failed: {broken}")
            _fail_for_good(queue, lease, broken, config, fleet)
            stats.add(failed=1)
        elif result.status == "success":
            run = result.to_json()
            _persist(
                lambda: queue.complete(lease, result=run),
                f"completion of ticket {tid}",
                config,
                fleet,
                landed=lambda: _logged(queue, lease, "completed"),
            )
            stats.add(completed=1)
        elif result.status == "canceled" and stop.is_set():
            _persist(
                lambda: queue.release(lease, "worker shut down; the run was canceled"),
                f"release of ticket {tid}",
                config,
                fleet,
                landed=lambda: _logged(queue, lease, "released"),
            )
            stats.add(released=1)
        elif result.status == "canceled":
            # Canceled from outside (SIGINT of `doctor run --db`): the ticket is canceled too.
            why = result.failure_reason or "the run was canceled"
            _persist(
                lambda: queue.cancel(tid, why),
                f"cancel of ticket {tid}",
                config,
                fleet,
                landed=lambda: queue.get(tid).terminal,
            )
            stats.add(failed=1)
        else:
            # Retryable: the ticket's max_error_attempts decides how many failed runs it gets.
            why = result.failure_reason or result.status
            _persist(
                lambda: queue.fail(lease, reason=why, retryable=True),
                f"fail of ticket {tid}",
                config,
                fleet,
                landed=lambda: _logged(queue, lease, "failed"),
            )
            stats.add(failed=1)
    except FencedError:
        stats.add(fenced=1)


def _root_refused(
    queue: Queue,
    lease: Lease,
    why: str,
    config: ExecutorConfig,
    fleet: _Fleet,
    stats: WorkerStats,
) -> None:
    """The runs root refused the run's writes: give the ticket back (``todo``, the reason
    recorded) and pause claiming, or fail it once it was given back
    ``config.root_refusal_releases`` times for that reason."""
    tid = lease.ticket_id
    before = _persist(
        lambda: sum(
            1
            for e in queue.events(tid)
            if e.event == "released" and str(e.detail.get("reason", "")).startswith(ROOT_REFUSED)
        ),
        f"events of ticket {tid}",
        config,
        fleet,
    )
    n, limit = (before or 0) + 1, config.root_refusal_releases
    pause = fleet.root_refused(config)
    if n > limit:
        again = f" (refused {n} times, released {n - 1})" if limit else ""
        reason = f"{why}{again}, then enqueue again"
        _say(f"ticket {tid} failed: {reason}")
        _fail_for_good(queue, lease, reason, config, fleet)
        stats.add(failed=1)
        return
    reason = f"{ROOT_REFUSED} ({n} of {limit} releases): {why}"
    _say(f"ticket {tid} back to todo: {reason}; claims pause {pause:g} s")
    _persist(
        lambda: queue.release(lease, reason),
        f"release of ticket {tid}",
        config,
        fleet,
        landed=lambda: _logged(queue, lease, "released"),
    )
    stats.add(released=1)


def _fail_for_good(
    queue: Queue, lease: Lease, reason: str, config: ExecutorConfig, fleet: _Fleet
) -> None:
    """Fail the ticket, not retryable: its pipeline or run directory is unusable."""
    _persist(
        lambda: queue.fail(lease, reason=reason, retryable=False),
        f"fail of ticket {lease.ticket_id}",
        config,
        fleet,
        landed=lambda: _logged(queue, lease, "failed"),
    )


def run_ticket(
    url: str,
    ticket_id: str,
    root: Path,
    config: ExecutorConfig,
    *,
    name: str | None = None,
    clock: Clock = time.time,
    on_event: Callable[[Event], None] | None = None,
    opener: QueueOpener = open_queue,
) -> tuple[RunResult | None, WorkerStats]:
    """Claim ``ticket_id`` and run it in this thread, with lease heartbeats (``doctor run``).

    Returns ``(None, stats)`` when the ticket could not be claimed (not ``todo``, or a
    dependency not done). Called from the main thread, SIGTERM and SIGINT cancel the run.
    """
    config.validate()
    # In the foreground there is no later claim: a runs root that refuses writes fails it.
    config = replace(config, root_refusal_releases=0)
    make_root(root)
    name = name or f"{socket.gethostname()}:{os.getpid()}"
    stats = WorkerStats()
    queue = opener(url, clock=clock)
    try:
        session = worker_session(name)
        lease = queue.claim(
            name, lease_ttl_s=config.lease_ttl_s, session=session, ticket_id=ticket_id
        )
        _ClockNotice().check(queue.clock_offset)
        if lease is None:
            return None, stats
        stats.add(claimed=1)
        connect: Connect = lambda: opener(url, clock=clock)  # noqa: E731
        ctx = _Slots(connect, root, config, threading.Event(), stats, clock, _Fleet())
        return _run_ticket(ctx, queue, lease, session, on_event), stats
    finally:
        queue.close()


def _slot(
    ctx: _Slots, name: str, once: bool, poll_s: float, on_ticket: TicketHook | None = None
) -> None:
    """Claim and run tickets until ``stop``; every error is handled or ends the worker."""
    try:
        _slot_loop(ctx, name, once, poll_s, on_ticket)
    except WorkerError as exc:
        _say(f"slot {name} gives up: {exc}")
        ctx.fleet.give_up(str(exc))
        ctx.stop.set()  # the other slots cancel their runs and release what they can
    except Exception as exc:  # never a silent death: the worker exits and says why
        why = f"slot {name} crashed: {type(exc).__name__}: {exc}"
        _say(why)
        ctx.fleet.give_up(why)
        ctx.stop.set()


def _slot_loop(
    ctx: _Slots, name: str, once: bool, poll_s: float, on_ticket: TicketHook | None
) -> None:
    """Claim a ticket, run it, repeat: until ``stop`` (or, with ``once``, an empty queue)."""
    queue = _persist(
        ctx.connect,
        "open the queue",
        ctx.config,
        ctx.fleet,
        quit=ctx.stop,
    )
    if queue is None:
        return
    session = worker_session(name)
    try:
        while not ctx.stop.is_set():
            pause = ctx.fleet.claim_pause()  # the runs root refused writes: wait before claiming
            if pause > 0:
                ctx.stop.wait(pause)
                continue
            # The database is unavailable (a stall, a restart): claim again with backoff
            # rather than let the slot die while the worker looks healthy.
            lease = _persist(
                lambda: queue.claim(name, lease_ttl_s=ctx.config.lease_ttl_s, session=session),
                "claim",
                ctx.config,
                ctx.fleet,
                quit=ctx.stop,
            )
            if lease is None:
                if once or ctx.stop.is_set():
                    return
                ctx.stop.wait(poll_s)
                continue
            _run_claimed(ctx, queue, lease, session, on_ticket)
    finally:
        queue.close()


def _run_claimed(
    ctx: _Slots, queue: Queue, lease: Lease, session: SessionInfo, on_ticket: TicketHook | None
) -> None:
    """Run one claimed ticket; an executor bug fails the ticket and keeps the slot."""
    ctx.stats.add(claimed=1)
    if on_ticket is not None:
        on_ticket("claimed", lease.ticket, None)
    result: RunResult | None = None
    try:
        result = _run_ticket(ctx, queue, lease, session)
    except WorkerError:
        raise
    except Exception as exc:  # a bug: fail this ticket, keep the slot
        reason = f"executor error: {type(exc).__name__}: {exc}"
        _say(f"ticket {lease.ticket_id}: {reason}")
        with contextlib.suppress(FencedError):
            _fail_for_good(queue, lease, reason, ctx.config, ctx.fleet)
        ctx.stats.add(failed=1)
    if on_ticket is not None:
        shown = lease.ticket
        if result is None:  # failed before a run (its reason is in the queue) or fenced
            with contextlib.suppress(ExecutorError):
                shown = queue.get(lease.ticket_id)
        on_ticket("finished", shown, result)


def _reaper_loop(
    connect: Connect,
    config: ExecutorConfig,
    stop: threading.Event,
    stats: WorkerStats,
    clock: Clock,
    notice: _ClockNotice,
) -> None:
    """Reap every ``reaper_interval_s``; any error is logged and the next pass tries again.

    Each pass reads the queue's clock, so it also tells ``notice`` this host's offset."""
    queue: Queue | None = None
    told = ""
    try:
        while not stop.wait(config.reaper_interval_s):
            try:
                if queue is None:
                    queue = connect()
                found = reap(queue, config, clock=clock)
                notice.check(queue.clock_offset)
                stats.add(reclaimed=len([r for r in found if r.status]))
                told = ""
            except Exception as exc:
                text = f"{type(exc).__name__}: {exc}"
                if text != told:  # once per distinct error, not once per pass
                    _say(f"reaper pass failed: {text}; trying again next pass")
                    told = text
                if isinstance(exc, QueueError) and queue is not None:
                    with contextlib.suppress(Exception):
                        queue.close()
                    queue = None
    finally:
        if queue is not None:
            queue.close()


def _open_first(
    url: str,
    config: ExecutorConfig,
    *,
    opener: QueueOpener,
    clock: Clock,
    create: bool,
    wait: bool,
    stop: threading.Event,
) -> ClockOffset | None:
    """Open the queue once before any slot starts: a queue that cannot be reached is the
    caller's error (a bad URL, not a dead thread), raised here; with ``wait`` it is waited
    for like any outage. Returns this host's clock offset to the queue's (None: one clock)."""
    if not wait:
        first: Queue | None = opener(url, clock=clock, create=create)
    else:
        first = _persist(
            lambda: opener(url, clock=clock, create=create),
            "open the queue",
            config,
            _Fleet(),
            quit=stop,
        )
    if first is None:
        return None
    try:
        first.now()  # a PostgreSQL queue measures the offset as it reads the server's clock
        return first.clock_offset
    except QueueError:
        return None  # the slots ride out a database that blinked right now
    finally:
        first.close()


def make_root(root: Path) -> None:
    """Create the runs root (and its parents), or :class:`UsageError` saying why it cannot be.

    >>> make_root(Path("/dev/null/runs"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    executor._errors.UsageError: runs root '/dev/null/runs' cannot be created: Not a directory; ...
    """
    try:
        root.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # exist_ok only excuses a directory
        raise UsageError(
            f"runs root {str(root)!r} is not a directory; pass --root (or set RUNDOCTOR_ROOT "
            "to) a directory"
        ) from None
    except OSError as exc:
        raise UsageError(
            f"runs root {str(root)!r} cannot be created: {exc.strerror or exc}; pass --root "
            "(or set RUNDOCTOR_ROOT to) a writable directory"
        ) from None


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
    wait_for_database: bool = False,
    on_ticket: TicketHook | None = None,
    create: bool = True,
    opener: QueueOpener = open_queue,
) -> WorkerStats:
    """Claim and run tickets until ``stop`` is set (or, with ``once``, the queue is empty).

    Each of the ``concurrency`` slots runs one ticket at a time. Setting ``stop`` cancels the
    running pipelines (their stages are stopped, ``final.json`` says canceled) and releases
    their tickets back to ``todo``. Raises :class:`~executor.WorkerError` (after every slot
    released what it could) when the queue stayed unavailable past ``database_outage_s``.

    A queue that cannot be reached at start is the caller's error (a bad URL, a wrong port),
    raised at once; with ``wait_for_database`` (a fleet whose URL is known to be good, such
    as a chaos campaign's replacement workers) it is waited for like any outage.

    ``on_ticket("claimed", ticket, None)`` is called (from the slot's thread) when a ticket is
    claimed, ``on_ticket("finished", ticket, result)`` when its run ended (result ``None`` when
    the lease was lost before the run started, or the ticket failed on an executor error or
    a pipeline that cannot be run; then ``ticket`` is re-read, so its ``status`` and
    ``reason`` say which).

    With ``create=False`` a queue that does not exist yet raises
    :class:`~executor.NoQueueError` instead of being created.

    Every queue the worker uses is opened with ``opener`` (see :class:`QueueOpener`).
    """
    config.validate()
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise UsageError(
            f"--concurrency must be from 1 to {MAX_CONCURRENCY}, got {concurrency} (each slot is "
            "a thread, a database connection and a running pipeline); run more workers instead"
        )
    stop = stop or threading.Event()
    notice = _ClockNotice()
    offset = _open_first(
        url, config, opener=opener, clock=clock, create=create, wait=wait_for_database, stop=stop
    )
    notice.check(offset)
    make_root(root)
    name = name or f"{socket.gethostname()}:{os.getpid()}"
    stats = WorkerStats()
    fleet = _Fleet()

    def connect() -> Queue:  # each thread's own connection, once the queue exists
        return opener(url, clock=clock)

    ctx = _Slots(connect, root, config, stop, stats, clock, fleet)
    slots = [
        threading.Thread(
            target=_slot, args=(ctx, f"{name}/{i}", once, poll_s, on_ticket), name=f"slot-{i}"
        )
        for i in range(concurrency)
    ]
    helper = threading.Thread(
        target=_reaper_loop,
        args=(connect, config, stop, stats, clock, notice),
        daemon=True,
        name="reaper",
    )
    if reaper:
        helper.start()
    for t in slots:
        t.start()
    for t in slots:
        t.join()
    stop.set()
    if fleet.why:
        done = ", ".join(f"{k} {v}" for k, v in stats.to_json().items())
        raise WorkerError(f"worker {name} cannot continue: {fleet.why} ({done})")
    return stats
