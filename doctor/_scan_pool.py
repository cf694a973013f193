"""Where a scan's batches are diagnosed: in this process, on a thread, or in worker processes.

With several batches and enough bytes, two processes diagnose batches side by side (the
machine's cores, at most :data:`doctor._scan.MAX_WORKERS`): :func:`_in_pool`, each worker's
DuckDB on one thread. When the runs to read make a small batch, as after a run or two grew,
the plan has it diagnosed on a thread of its own while it plans the other runs
(:func:`_on_thread`; DuckDB works without holding the interpreter's lock), or handed by that
thread to a warm child process (:mod:`doctor._scan_child`). However it runs, a
batch is diagnosed :func:`_safely`: one that fails with cached entries is read once more from
scratch, and one over the resource budget is diagnosed run by run (:func:`_one_by_one`).
Ctrl-C, or a batch's error, ends a pool's work at once: no batch left is started, and the
batches the workers hold are interrupted (:func:`_stop_batch_on`). SIGTERM while the workers
run ends it as Ctrl-C does (:func:`_terminated_as_interrupt`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from doctor._budget import budget_detail, exceeded
from doctor._config import DoctorConfig
from doctor._layout import RunLayout
from doctor._scan_batch import _Batch, _short, diagnose_batch
from doctor._scan_outcome import RunOutcome
from rundoctor.errors import interrupted

if TYPE_CHECKING:
    from concurrent.futures import Future
    from multiprocessing.synchronize import Event

__all__ = ["Progress"]

#: The scan's progress callback: ``(runs done, runs in all)``.
Progress = Callable[[int, int], None]


def _settle(early: Future[list[RunOutcome]] | None) -> None:
    """Wait for the batch on a thread when the scan fails before taking its result: never
    leave a thread writing the cache behind (its own error, if any, is not the scan's)."""
    if early is not None:
        from concurrent.futures import wait

        wait([early])


def _on_thread(
    batch: _Batch, run: Callable[[_Batch], list[RunOutcome]] | None = None
) -> Future[list[RunOutcome]]:
    """``batch`` diagnosed on a thread of its own (its result or error in the future), by
    :func:`_safely` or ``run`` (which hands it to a warm child: :mod:`doctor._scan_child`)."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rundoctor-scan")
    try:
        return pool.submit(run or _safely, batch)
    finally:
        pool.shutdown(wait=False)  # the thread ends with the batch


def _safely(batch: _Batch) -> list[RunOutcome]:
    """A batch; when it fails with cached entries, once more reading its runs from scratch
    (a concurrent scan may have replaced a Parquet file it resumed from). A batch over the
    resource budget is diagnosed run by run (:func:`_one_by_one`)."""
    try:
        return diagnose_batch(batch)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        if interrupted(exc):
            raise  # Ctrl-C: the scan ends; nothing is read again
        if exceeded(exc) is not None:
            return _one_by_one(batch, exc)
        if not batch.entries:
            raise
        why = _short(exc)
        note = f"read again from the run directory: the cached events could not be read ({why})"
    again = diagnose_batch(dataclasses.replace(batch, entries={}))
    return [
        dataclasses.replace(o, cache_note=o.cache_note or note) if o.run_id in batch.entries else o
        for o in again
    ]


def _one_by_one(batch: _Batch, exc: Exception) -> list[RunOutcome]:
    """The batch's runs each alone, after ``exc`` put the batch over the resource budget: a
    run still over it alone gets the finding (:mod:`doctor._budget`), the others their
    diagnosis."""
    out: list[RunOutcome] = []
    for layout in batch.layouts:
        limit = exceeded(exc) if len(batch.layouts) == 1 else None
        if limit is None:
            entries = {k: v for k, v in batch.entries.items() if k == layout.run_id}
            try:
                out.extend(
                    diagnose_batch(dataclasses.replace(batch, layouts=(layout,), entries=entries))
                )
                continue
            except KeyboardInterrupt:
                raise
            except Exception as again:
                if interrupted(again):
                    raise
                limit = exceeded(again)
                if limit is None:
                    raise
        out.append(_over_budget_outcome(layout, limit, batch.config))
    return out


def _over_budget_outcome(layout: RunLayout, limit: str, config: DoctorConfig) -> RunOutcome:
    """A run over the budget: its finding, the owner for the fleet phase, and no activity
    (the fleet's ``idle_gap`` does not see it). Never cached: a rescan reads it again."""
    from doctor._diagnose import over_budget

    d = over_budget(layout, budget_detail(limit, config), config)
    clock = {"pid": d.facts.get("owner_pid"), "alive": None, "state": d.state}
    return RunOutcome(layout.run_id, d.to_json(), clock, {"first": None})


def _in_process(
    batches: list[_Batch], progress: Progress | None, start: int, total: int
) -> list[RunOutcome]:
    out: list[RunOutcome] = []
    for batch in batches:
        out.extend(_safely(batch))
        if progress is not None:
            progress(start + len(out), total)
    return out


#: In a worker of :func:`_in_pool`: set once the scan is ending, so batches it holds are
#: not started.
_stopping: Event | None = None
#: In a worker of :func:`_in_pool` whose scan takes Ctrl-C: Ctrl-C interrupts its batches
#: (and only them: :func:`_unless_stopped`).
_batches_take_ctrl_c = False
#: In a worker: whether it is diagnosing a batch now, under :data:`_batch_lock` (what
#: :func:`_stop_batch_on` reads to interrupt it).
_in_batch = False
_batch_lock = threading.Lock()


def _worker_start(stop: Event, parent: int | None = None) -> None:
    """A worker's start: the scan's ``stop``, and the worker's death with the scan's process
    (``parent``). A scan ended by a signal it does not catch (SIGTERM from ``timeout`` or a
    service manager, SIGKILL) left its workers diagnosing the batches they held, minutes of
    both cores for a large fleet, with no one to take their results; on Linux the kernel now
    kills them as the scan's process ends (``PR_SET_PDEATHSIG``). Without ``parent`` (a
    test calling it in its own process), only the ``stop``.

    A worker is born with Ctrl-C blocked (:func:`_terminated_as_interrupt`): one that came
    while it started (the terminal sends it to the scan and its workers alike) is dropped
    here, the scan has it too, and from now on the worker takes Ctrl-C only while it
    diagnoses a batch. Before, a Ctrl-C in a worker's start printed a traceback
    (``KeyboardInterrupt`` in multiprocessing's bootstrap, or "Exception in initializer"),
    as did one in a worker waiting for its next batch.
    """
    global _stopping, _batches_take_ctrl_c
    _stopping = stop
    if parent is not None:
        _batches_take_ctrl_c = signal.getsignal(signal.SIGINT) is signal.default_int_handler
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # drops one pending
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        _die_with(parent)
        if _batches_take_ctrl_c:
            watcher = threading.Thread(
                target=_stop_batch_on,
                args=(stop, threading.main_thread().ident),
                name="rundoctor-scan-stop",
                daemon=True,
            )
            watcher.start()


def _stop_batch_on(stop: Event, main: int) -> None:
    """A worker's watch of the scan's ``stop``: set while the worker diagnoses a batch, it
    interrupts the batch as Ctrl-C does (a SIGINT to the worker's main thread: Python's
    handler and the DuckDB relay, :mod:`doctor._interrupts`).

    The scan sets ``stop`` on Ctrl-C, SIGTERM or a batch's error, and then waits for the
    batches its workers hold. A worker takes Ctrl-C only in a batch, so one that came just
    before it took its next batch was dropped, and that batch ran to its end (a batch of
    huge runs: minutes), as did every batch held when the scan was sent SIGTERM alone
    (``timeout``, a service stop, ``kill``): the scan waited for them all.
    """
    stop.wait()
    with _batch_lock:
        if _in_batch:
            signal.pthread_kill(main, signal.SIGINT)


def _die_with(parent: int) -> None:
    import sys

    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        if libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0) != 0:
            return
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the scan ended before the request was made
        os._exit(1)


def _unless_stopped(batch: _Batch) -> list[RunOutcome]:
    """:func:`_safely`, in a worker, unless the scan is ending (nothing, then); Ctrl-C
    interrupts it (its ``KeyboardInterrupt`` goes back to the scan as the batch's result)."""
    global _in_batch
    if not _batches_take_ctrl_c:
        return [] if _stopping is not None and _stopping.is_set() else _safely(batch)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with _batch_lock:
            _in_batch = True
        # ``stop`` looked at once Ctrl-C is taken and the batch is marked: one set before
        # is seen here, one set after interrupts the batch (:func:`_stop_batch_on`).
        return [] if _stopping is not None and _stopping.is_set() else _safely(batch)
    finally:
        try:
            with _batch_lock:
                _in_batch = False
        finally:
            _ignore_ctrl_c()


def _ignore_ctrl_c() -> None:
    """Ctrl-C ignored again after a batch, even when one pending is raised as it is set."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise


@contextlib.contextmanager
def _terminated_as_interrupt() -> Iterator[Callable[[], None]]:
    """SIGTERM (``timeout``, a service manager) raising ``KeyboardInterrupt`` while the
    workers run, as Ctrl-C does; one that lands while they are started is acted on once
    they are (by the function this yields: a worker whose start was cut short printed a
    traceback, ``EOFError``, reading what its parent never sent).

    SIGTERM's default action ended the scan's process where it stood: its workers went with
    it (:func:`_worker_start`), but the semaphores of the pool's queues and of ``stop`` were
    never released, and multiprocessing's resource tracker, outliving it, printed a warning
    of leaked semaphores on the scan's standard error after it had ended. Stopped as Ctrl-C
    stops it, the scan starts no batch more, has its workers interrupt the batches they hold
    (:func:`_stop_batch_on`; a SIGTERM to the workers could leave the pool's queues locked,
    and a Ctrl-C to one still starting prints a traceback) and waits for them,
    releases the pool and says ``error: interrupted`` (exit 130, as SIGTERM does while a
    document is printed: :func:`rundoctor.errors.whole_output`). Only where SIGTERM's action
    is the default one, on the main thread: a command's own handler (``doctor watch``'s) is
    left in place.

    Ctrl-C is held the same way while the workers are started (where it is Python's
    default): raised in the middle of a worker's spawn, it cut the data the worker reads
    from its parent short (``EOFError`` in the worker). And the workers are born with it
    blocked, so that one still starting does not print a traceback (:func:`_worker_start`).
    """
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    from multiprocessing import resource_tracker

    # Started first: starting it unblocks Ctrl-C in this thread (multiprocessing's own care).
    resource_tracker.ensure_running()
    term = signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    ctrl_c = signal.getsignal(signal.SIGINT) is signal.default_int_handler
    starting, got = [True], []

    def on_signal(signum: int, _frame: object) -> None:
        if not starting:
            raise KeyboardInterrupt
        got.append(signum)

    previous = {
        sig: signal.signal(sig, on_signal)
        for sig, ours in ((signal.SIGTERM, term), (signal.SIGINT, ctrl_c))
        if ours
    }
    # The workers forked now are born with Ctrl-C blocked (they take it once started:
    # _worker_start), and this thread takes none (its handler runs, on_signal, whichever
    # thread the kernel hands it to).
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})

    def started() -> None:
        if not starting:
            return
        starting.clear()
        if signal.SIGINT in previous:
            signal.signal(signal.SIGINT, previous.pop(signal.SIGINT))
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if got:
            raise KeyboardInterrupt

    try:
        yield started
    finally:
        if starting:
            starting.clear()
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _in_pool(
    batches: list[_Batch], workers: int, progress: Progress | None, start: int, total: int
) -> list[RunOutcome]:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    out: list[RunOutcome] = []
    # Each worker's DuckDB gets one thread: the processes are the parallelism.
    batches = [dataclasses.replace(b, threads=1) for b in batches]
    # spawn, not fork: DuckDB's threads do not survive a fork.
    context = multiprocessing.get_context("spawn")
    with _terminated_as_interrupt() as started:
        stop = context.Event()
        pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=context,
            initializer=_worker_start,
            initargs=(stop, os.getpid()),
        )
        try:
            pending: set[Future[list[RunOutcome]]] = {
                pool.submit(_unless_stopped, b) for b in batches
            }
            started()  # the workers are (submit starts them)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    out.extend(fut.result())
                if progress is not None:
                    progress(start + len(out), total)
        except BaseException:
            # Ctrl-C, SIGTERM or a batch's error: the batches not started are dropped (those
            # a worker already holds included: ``stop``), and the running ones (stopped at
            # once: _stop_batch_on, doctor._interrupts) waited for. The
            # pool's own exit would have run every batch left first.
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
    return out
