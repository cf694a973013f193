"""A warm child process for a rescan's small batch (:func:`warm_child`).

After a run or two grew, a rescan reads them in one small batch while it plans the other
runs (:func:`doctor._scan_plan._plan_cached`). On a thread, that batch shares the interpreter
with the plan, and pays on the scan's critical path for what only it needs: DuckDB, the
detectors and the signer to import (~70 ms), and DuckDB's first start. So a scan with a cache
forks a child as it starts, before it walks the roots: the child imports those and starts
DuckDB once while the parent walks and fingerprints (:func:`_warm_up`), then waits on a pipe.
The parent sends it the batch (:meth:`WarmChild.submit`) or, as soon as the plan knows that
nothing is to be read that way, kills it unused (:meth:`WarmChild.close`: it has written
nothing). The child diagnoses and caches the batch exactly as a worker process does
(:func:`doctor._scan_pool._safely`) on the machine's other core, and sends back the outcomes.

A fork is only safe while nothing else runs: the child is made only while this process has
one thread and has not loaded DuckDB, Polars, Arrow or NumPy (whose own threads and locks
would not survive it), and on Linux. Otherwise, and whenever the child ends
without an answer (killed, out of memory, its batch failed), the batch is diagnosed here on a
thread as before, so a failure is raised and reported by this process as it always was; a
child that Ctrl-C ended ends the scan as Ctrl-C does.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import pickle
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NoReturn

from doctor._scan_batch import _Batch
from doctor._scan_outcome import RunOutcome
from doctor._scan_pool import _on_thread, _safely
from rundoctor.atomic import write_fd

if TYPE_CHECKING:
    from concurrent.futures import Future

__all__: list[str] = []

#: What the child imports while it waits (DuckDB's engine too: :func:`_warm_up`): what a
#: batch needs and a rescan's parent does not.
_WARM = (
    "doctor._tables",
    "doctor._ingest",
    "doctor._facts",
    "doctor._detectors._catalog",
    "rundoctor.signature",
)


#: What :func:`_warm_up` has DuckDB run once: JSON, casts and a window, as a batch does.
_WARM_SQL = (
    "SELECT try_cast(j ->> 'ts' AS TIMESTAMP_NS), epoch_ns(now()), ends_with(j ->> 'e', 'x'), "
    'json_transform(j, \'{"e": "VARCHAR"}\'), row_number() OVER (PARTITION BY 1 ORDER BY 1) '
    """FROM (SELECT '{"e": "x", "ts": "2026-01-01T00:00:00Z"}'::JSON AS j)"""
)


@dataclass
class WarmChild:
    """A forked child waiting for one batch: its pid and the parent's ends of two pipes (-1
    once closed: a descriptor number is never closed twice, since another file may reuse it).
    """

    pid: int
    to_child: int
    from_child: int
    used: bool = False
    _status: int | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def submit(self, batch: _Batch) -> Future[list[RunOutcome]]:
        """``batch`` diagnosed by the child (here, if the child gives no answer), as a future
        resolved on a thread that does the exchange."""
        self.used = True
        return _on_thread(batch, self._exchange)

    def _exchange(self, batch: _Batch) -> list[RunOutcome]:
        reply = b""
        try:
            write_fd(self.to_child, pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL))
            self._close_ends(to_child=True)
            reply = _read_all(self.from_child)
        except (OSError, pickle.PicklingError):
            reply = b""  # the child is gone (or never had the batch): diagnosed here
        finally:
            self._close_ends(to_child=True, from_child=True)
            status = self.reap()
        outcomes = _outcomes(reply)
        if outcomes is not None:
            return outcomes
        if status is not None and _interrupted(status):
            raise KeyboardInterrupt  # Ctrl-C reached the child: the scan is ending
        return _safely(batch)

    def close(self) -> None:
        """End an unused child at once (it has written nothing) and reap it, once; a used
        one is reaped by its exchange."""
        if self.used or self._status is not None:
            return  # never a signal to a pid reaped already: another process may have it now
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        self._close_ends(to_child=True, from_child=True)
        self.reap()

    def reap(self) -> int | None:
        """Wait for the child to end (once); its wait status."""
        with self._lock:
            if self._status is None:
                with contextlib.suppress(ChildProcessError):
                    self._status = os.waitpid(self.pid, 0)[1]
            return self._status

    def _close_ends(self, *, to_child: bool = False, from_child: bool = False) -> None:
        with self._lock:
            if to_child and self.to_child >= 0:
                _close(self.to_child)
                self.to_child = -1
            if from_child and self.from_child >= 0:
                _close(self.from_child)
                self.from_child = -1


def _outcomes(reply: bytes) -> list[RunOutcome] | None:
    """The child's answer, or None when it gave none (or a cut one: it died writing it)."""
    if not reply:
        return None
    try:
        outcomes: list[RunOutcome] = pickle.loads(reply)
    except Exception:  # a cut pickle raises any of several errors
        return None
    return outcomes


def _interrupted(status: int) -> bool:
    """Whether a child's wait status says Ctrl-C ended it (see :func:`_serve`)."""
    if os.WIFSIGNALED(status):
        return os.WTERMSIG(status) == signal.SIGINT
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == _INTERRUPTED


#: A signal mask, as ``signal.pthread_sigmask`` returns it.
_Mask = set[int | signal.Signals]

#: The child's exit code when Ctrl-C reached it (as a shell's 128 + SIGINT).
_INTERRUPTED = 130


@contextlib.contextmanager
def warm_child(enabled: bool) -> Iterator[WarmChild | None]:
    """A :class:`WarmChild` for the ``with`` block when ``enabled`` and a fork is safe here
    (else None); an unused one is killed as the block ends."""
    forked = _fork() if enabled and _can_fork() else None
    if forked is None:
        yield None
        return
    child, mask = forked
    try:
        # Ctrl-C was held off while forking (see _fork); one that came meanwhile lands here,
        # where the child is still killed on the way out.
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        yield child
    finally:
        child.close()


#: Libraries that run threads of their own, which ``threading`` does not count: none may be
#: loaded when the child is forked (its copy of their locks could be held forever).
_THREADED = frozenset({"_duckdb", "duckdb", "polars", "pyarrow", "numpy"})


def _can_fork() -> bool:
    """One thread, no library with threads of its own loaded, and Linux (see the module's
    docstring; macOS's system libraries are not safe to use in a forked child, which is why
    Python's own process pools spawn there)."""
    threaded = _THREADED.intersection(sys.modules)
    return sys.platform.startswith("linux") and threading.active_count() == 1 and not threaded


def _fork() -> tuple[WarmChild, _Mask] | None:
    """The child, and the signal mask to restore in this process once it is in hand. Ctrl-C
    is blocked across the fork, so that the child takes it only inside :func:`_serve` (never
    running this process's code on from the fork, which would print and flush as this one)."""
    down_r, down_w = os.pipe()
    up_r, up_w = os.pipe()
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        pid = os.fork()
    except OSError:  # no memory or process slot for it: the thread serves, as before
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for fd in (down_r, down_w, up_r, up_w):
            _close(fd)
        return None
    if pid == 0:
        _serve(down_r, up_w, (down_w, up_r), mask)
    _close(down_r)
    _close(up_w)
    return WarmChild(pid, down_w, up_r), mask


def _serve(from_parent: int, to_parent: int, parents: tuple[int, int], mask: _Mask) -> NoReturn:
    """The child: import, wait for a batch, diagnose it, answer; never return, never flush
    the parent's buffered output (``os._exit``), never print."""
    code = 1
    try:
        for fd in parents:
            _close(fd)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        _warm_up()
        payload = _read_all(from_parent)
        if payload:
            outcomes = _safely(pickle.loads(payload))
            answer = pickle.dumps(outcomes, protocol=pickle.HIGHEST_PROTOCOL)
            gc.collect()  # the batch's connection gone, and its spill directory with it
            write_fd(to_parent, answer)
        code = 0
    except KeyboardInterrupt:
        code = _INTERRUPTED
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _warm_up() -> None:
    """Import what a batch needs: DuckDB's engine without its Python layer, as the batch
    connects (:mod:`doctor._engine`), and :data:`_WARM`; then start DuckDB once and run
    :data:`_WARM_SQL` in memory, so that the batch's own connection is not the process's
    first."""
    from doctor._engine import engine

    db = engine(relations=False)
    for name in _WARM:
        importlib.import_module(name)
    # DuckDB's first instance and its first JSON, cast and window functions cost ~25 ms
    # once per process (30 ms against 12 ms for a later instance): paid here, while the
    # parent walks the roots, not by the batch. In memory, nothing to spill: no file made.
    con = db.connect(":memory:", config={"threads": 1})
    try:
        con.execute(_WARM_SQL).fetchall()
    finally:
        con.close()


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
