"""Workers: claim tickets, run their pipelines, keep the lease alive, fence themselves.

A worker process runs ``concurrency`` slots. Each slot claims a ticket (the session — worker
pid, process group, start time, host — is recorded in the same transaction), starts a run
directory, and runs the ticket's pipeline with :func:`executor.run_pipeline`, stamping the
lease epoch on every event. The worker also runs the reaper every ``reaper_interval_s``, so a
fleet of workers needs no separate reaper process. :func:`run_ticket` runs one named ticket in
the foreground instead (``doctor run --db``).

This module holds the worker process: its slots, its reaper thread and its two entry points.
The parts a slot stands on live beside it:

- ``_ticket_run.py``: one claimed ticket, from the start of its run to its recorded outcome
  (a pipeline that cannot run fails its ticket; a runs root that refuses writes gives it
  back);
- ``_lease_keeper.py``: the heartbeat thread that keeps the lease alive, and the watchdog that
  fences the slot itself when heartbeats stop succeeding (``self_fence_s`` < ``lease_ttl_s``);
- ``_resilience.py``: riding out a database that blinks (every queue call retried with
  backoff for up to ``database_outage_s``, a write that may have landed checked, not
  repeated), pausing claims while the runs root refuses writes, and giving up as a whole.

A worker that cannot continue (the queue stayed away past its budget) lets its other slots
release what they can, then :func:`run_worker` raises :class:`~executor.WorkerError` (exit 3).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from executor._clocks import ClockOffset
from executor._config import ExecutorConfig
from executor._errors import (
    ExecutorError,
    FencedError,
    NoQueueError,
    QueueError,
    UsageError,
    WorkerError,
)
from executor._events import Event
from executor._lease_keeper import Connect
from executor._lease_watch import LeaseWatch
from executor._queue import Lease, Queue, SessionInfo, Ticket, open_queue
from executor._reaper import reap
from executor._resilience import ClockNotice, Fleet, persist, say
from executor._runner import RunResult
from executor._ticket_run import (
    Slots,
    WorkerStats,
    fail_for_good,
    finish_refused,
    run_leased,
)
from rundoctor.clock import Clock
from rundoctor.liveness import start_ticks
from rundoctor.paths import make_dirs
from rundoctor.terminal import printable

__all__ = [
    "MAX_CONCURRENCY",
    "QueueOpener",
    "TicketHook",
    "WorkerStats",
    "check_root_text",
    "make_root",
    "run_ticket",
    "run_worker",
    "worker_session",
]


class QueueOpener(Protocol):
    """What opens a queue for a worker: :func:`executor.open_queue`'s signature.

    :func:`run_worker` and :func:`run_ticket` open every queue they use (one per slot, one
    per lease keeper, one for the reaper) through the one they are given, so a caller can
    wrap each connection (the chaos harness records every ticket operation this way).
    """

    def __call__(
        self, target: str | os.PathLike[str], /, *, clock: Clock = ..., create: bool = ...
    ) -> Queue: ...


#: The most slots one worker process runs: each is a thread, a connection and a pipeline's
#: processes, and a mistyped ``--concurrency 100000000`` must not exhaust the host's memory.
MAX_CONCURRENCY = 1024

#: Told of each ticket a worker claims (``"claimed"``) and runs (``"finished"``, the result).
TicketHook = Callable[[str, Ticket, RunResult | None], None]


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

    >>> import tempfile
    >>> from pathlib import Path
    >>> from executor import ExecutorConfig, open_queue
    >>> work = Path(tempfile.mkdtemp())
    >>> _ = (work / "hello.dot").write_text(
    ...     'digraph hello { start [shape=Mdiamond]; exit [shape=Msquare]; '
    ...     'say [shape=parallelogram, tool_command="echo hello"]; start -> say -> exit }')
    >>> url = str(work / "queue.db")
    >>> queue = open_queue(url)
    >>> ticket = queue.enqueue("hello", work / "hello.dot")
    >>> queue.close()
    >>> result, stats = run_ticket(url, ticket.id, work / "runs", ExecutorConfig())
    >>> result.status, stats.completed
    ('success', 1)
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
        ClockNotice().check(queue.clock_offset)
        if lease is None:
            return None, stats
        stats.add(claimed=1)
        connect: Connect = lambda: opener(url, clock=clock)  # noqa: E731
        # The caller's one line says how a ticket that never ran ended: no worker line too.
        quiet: Callable[[str], None] = lambda _line: None  # noqa: E731
        ctx = Slots(connect, root, config, threading.Event(), stats, clock, Fleet(), quiet)
        return run_leased(ctx, queue, lease, session, on_event), stats
    finally:
        queue.close()


def _slot(
    ctx: Slots, name: str, once: bool, poll_s: float, on_ticket: TicketHook | None = None
) -> None:
    """Claim and run tickets until ``stop``; every error is handled or ends the worker."""
    try:
        _slot_loop(ctx, name, once, poll_s, on_ticket)
    except WorkerError as exc:
        say(f"slot {name} gives up: {exc}")
        ctx.fleet.give_up(str(exc))
        ctx.stop.set()  # the other slots cancel their runs and release what they can
    except Exception as exc:  # never a silent death: the worker exits and says why
        why = f"slot {name} crashed: {type(exc).__name__}: {exc}"
        say(why)
        ctx.fleet.give_up(why)
        ctx.stop.set()


def _slot_loop(
    ctx: Slots, name: str, once: bool, poll_s: float, on_ticket: TicketHook | None
) -> None:
    """Claim a ticket, run it, repeat: until ``stop`` (or, with ``once``, an empty queue)."""
    queue = persist(
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
            lease = _claim(ctx, queue, name, session)
            if lease is None:
                if once or ctx.stop.is_set():
                    return
                ctx.stop.wait(poll_s)
                continue
            _run_claimed(ctx, queue, lease, session, on_ticket)
    finally:
        queue.close()


def _claim(ctx: Slots, queue: Queue, name: str, session: SessionInfo) -> Lease | None:
    """Claim a ticket for slot ``name``, riding out a database that is unavailable (a stall,
    a restart) rather than let the slot die while the worker looks healthy.

    A claim whose COMMIT landed before its connection dropped is not lost: before a retry,
    the slot looks for a ticket it holds claimed, under this very session, and takes it up.
    The slot runs one ticket at a time, so such a ticket is the lost answer's. Claiming again
    instead left it claimed by a live worker that never ran it, until its lease expired."""
    tried = False

    def attempt() -> Lease | None:
        nonlocal tried
        if tried:
            for t in queue.tickets(status=("claimed",)):
                if _held_by(t, name, session):
                    return Lease(t, t.lease_epoch, name)
        tried = True
        return queue.claim(name, lease_ttl_s=ctx.config.lease_ttl_s, session=session)

    return persist(attempt, "claim", ctx.config, ctx.fleet, quit=ctx.stop)


def _held_by(t: Ticket, name: str, s: SessionInfo) -> bool:
    """Is ``t`` leased by slot ``name`` under session ``s`` (this very process)?"""
    mine = (name, s.session_name, s.pid, s.proc_start_time, s.host)
    return (t.lease_owner, t.session_name, t.pid, t.proc_start_time, t.host) == mine


def _run_claimed(
    ctx: Slots, queue: Queue, lease: Lease, session: SessionInfo, on_ticket: TicketHook | None
) -> None:
    """Run one claimed ticket; an executor bug fails the ticket and keeps the slot."""
    ctx.stats.add(claimed=1)
    if on_ticket is not None:
        on_ticket("claimed", lease.ticket, None)
    result: RunResult | None = None
    try:
        result = run_leased(ctx, queue, lease, session)
    except WorkerError:
        raise
    except Exception as exc:  # a bug: fail this ticket, keep the slot
        reason = f"executor error: {type(exc).__name__}: {exc}"
        say(f"ticket {lease.ticket_id}: {reason}")
        with contextlib.suppress(FencedError):
            fail_for_good(queue, lease, reason, ctx.config, ctx.fleet)
        ctx.stats.add(failed=1)
    if on_ticket is not None:
        shown = lease.ticket
        if result is None:  # failed before a run (its reason is in the queue) or fenced
            with contextlib.suppress(ExecutorError):
                shown = queue.get(lease.ticket_id)
        on_ticket("finished", shown, result)


#: How often the main thread wakes while it waits for the slots (see :func:`_join`).
_JOIN_TICK_S = 0.2


def _join(thread: threading.Thread) -> None:
    """Wait for ``thread`` a tick at a time, never in one unbounded join.

    The handlers of SIGTERM and SIGINT (the caller's, which set ``stop``) run only in the main
    thread, when it runs Python code. A signal the kernel hands to another thread does not
    interrupt a join without a timeout: the handler waited until the slots ended, which they
    never did, since it was what would have stopped them. Linux hands a signal to another
    thread whenever the main thread still has one pending, as it does just after a SIGCONT:
    a frozen worker stopped with ``kill -CONT; kill -TERM``, or as systemd and bash's ``kill``
    stop a stopped job (SIGTERM, then SIGCONT), went on claiming tickets."""
    while thread.is_alive():
        thread.join(_JOIN_TICK_S)


def _reaper_loop(
    connect: Connect,
    config: ExecutorConfig,
    stop: threading.Event,
    stats: WorkerStats,
    clock: Clock,
    notice: ClockNotice,
) -> None:
    """Reap every ``reaper_interval_s``; any error is logged and the next pass tries again.

    Each pass reads the queue's clock, so it also tells ``notice`` this host's offset. One
    :class:`LeaseWatch` lives across the passes: a lease this thread watched stand still is
    judged by the silence it timed, not by stamps a wall clock's step has moved."""
    queue: Queue | None = None
    watch = LeaseWatch()
    told = ""
    try:
        while not stop.wait(config.reaper_interval_s):
            try:
                if queue is None:
                    queue = connect()
                found = reap(queue, config, clock=clock, watch=watch)
                notice.check(queue.clock_offset)
                stats.add(reclaimed=len([r for r in found if r.status]))
                told = ""
            except Exception as exc:
                text = f"{type(exc).__name__}: {exc}"
                if text != told:  # once per distinct error, not once per pass
                    say(f"reaper pass failed: {text}; trying again next pass")
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
        first = persist(
            lambda: opener(url, clock=clock, create=create),
            "open the queue",
            config,
            Fleet(),
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


def check_root_text(root: Path) -> None:
    """Refuse a runs root whose path is not text: a run records its paths (``logs_root``,
    ``worktree``, each attempt's directory) in its JSON artifacts, and a queue ticket its
    ``run_path``, as text, and a name with a byte that is not UTF-8 is none (``doctor run``
    wrote a final.json saying "executor error: UnicodeEncodeError", exit 70; a worker failed
    every ticket so).

    >>> check_root_text(Path("/srv/runs"))
    >>> check_root_text(Path("/srv/" + b"\\xff".decode("utf-8", "surrogateescape")))
    Traceback (most recent call last):
    ...
    executor._errors.UsageError: runs root '/srv/\\xff' is not UTF-8 text (a byte such as ...
    """
    path = os.path.abspath(root)
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(
            f"runs root '{printable(path)}' is not UTF-8 text (a byte such as \\xff in a name is "
            "no character): a run records its paths in its JSON artifacts (and a queue in its "
            "ticket) as text; pass --root (or set RUNDOCTOR_ROOT to) a directory whose path is "
            "UTF-8"
        ) from None


def make_root(root: Path) -> None:
    """Create the runs root (and its parents), or :class:`UsageError` saying why it cannot be.

    >>> make_root(Path("/dev/null/runs"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    executor._errors.UsageError: runs root '/dev/null/runs' cannot be created: Not a directory; ...
    """
    check_root_text(root)
    try:
        make_dirs(root)
    except FileExistsError:  # exist_ok only excuses a directory
        raise UsageError(
            f"runs root {str(root)!r} is not a directory; pass --root (or set RUNDOCTOR_ROOT "
            "to) a directory"
        ) from None
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise  # said once for every command: "file name too long", naming the part
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

    >>> import tempfile
    >>> from pathlib import Path
    >>> from executor import ExecutorConfig, open_queue
    >>> work = Path(tempfile.mkdtemp())
    >>> _ = (work / "hello.dot").write_text(
    ...     'digraph hello { start [shape=Mdiamond]; exit [shape=Msquare]; '
    ...     'say [shape=parallelogram, tool_command="echo hello"]; start -> say -> exit }')
    >>> url = str(work / "queue.db")
    >>> queue = open_queue(url)
    >>> ticket = queue.enqueue("hello", work / "hello.dot")
    >>> queue.close()
    >>> stats = run_worker(url, work / "runs", ExecutorConfig(), once=True)
    >>> stats.claimed, stats.completed, stats.failed
    (1, 1, 0)
    """
    config.validate()
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise UsageError(
            f"--concurrency must be from 1 to {MAX_CONCURRENCY}, got {concurrency} (each slot is "
            "a thread, a database connection and a running pipeline); run more workers instead"
        )
    check_root_text(root)
    stop = stop or threading.Event()
    notice = ClockNotice()
    offset = _open_first(
        url, config, opener=opener, clock=clock, create=create, wait=wait_for_database, stop=stop
    )
    notice.check(offset)
    make_root(root)
    name = name or f"{socket.gethostname()}:{os.getpid()}"
    stats = WorkerStats()
    fleet = Fleet()

    def connect() -> Queue:  # each thread's own connection, once the queue exists
        try:  # never create: a queue deleted under the worker was made anew, empty
            return opener(url, clock=clock, create=False)
        except NoQueueError as exc:
            raise QueueError(
                f"{exc}: the queue this worker opened is gone (deleted or moved away since); "
                "put it back, or restart the worker on a queue",
                lasting=True,
            ) from exc

    ctx = Slots(connect, root, config, stop, stats, clock, fleet)
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
        _join(t)
    stop.set()
    finish_refused(ctx)  # the runs the root refused, should it take writes by now
    if fleet.why:
        done = ", ".join(f"{k} {v}" for k, v in stats.to_json().items())
        raise WorkerError(f"worker {name} cannot continue: {fleet.why} ({done})")
    return stats
