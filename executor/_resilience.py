"""How a worker rides out trouble: a database that blinks, a runs root that refuses writes.

The database may blink (a PostgreSQL restart, an outage, SQLite's ``database is locked``):
every queue call is retried with backoff (:func:`persist`) for up to ``database_outage_s``.
A write that may have committed before its connection dropped is checked, not repeated
blindly: the retry first looks for its own event (``completed``, ``failed``, ``released``, at
its lease epoch) in the ticket's log (:func:`logged`). A worker that cannot continue (the
queue stayed away past its budget) is ``doomed`` (:class:`Fleet`): every slot stops waiting
for the database, its other slots release what they can, then
:func:`~executor._worker.run_worker` raises :class:`~executor.WorkerError` (exit 3).

A runs root that refuses writes as a whole (full, read-only, over quota) is not the ticket's
fault (``_ticket_run.py`` gives the ticket back): the worker pauses claiming, with backoff
(:meth:`Fleet.root_refused`), so a disk that is full for a while does not throw the queue's
work away. A host clock that is off from the queue's database server's is said once on stderr
(:class:`ClockNotice`). What the worker rode out or gave up on is one line on stderr
(:func:`say`), never a traceback.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from executor._clocks import ClockOffset
from executor._config import ExecutorConfig
from executor._errors import FencedError, QueueError, WorkerError
from executor._queue import Lease, Queue

__all__ = ["ClockNotice", "Fleet", "RefusedRun", "logged", "persist", "say"]

T = TypeVar("T")

#: Backoff between two tries of a queue call: doubles from the first to the last value.
_BACKOFF_FIRST_S, _BACKOFF_MAX_S = 0.1, 2.0
#: The longest pause between claims while the runs root refuses writes (unless the first
#: pause, ``root_refusal_backoff_s``, is longer).
_ROOT_PAUSE_MAX_S = 60.0


def say(message: str) -> None:
    """One line on stderr: what the worker rode out or gave up on (never a traceback)."""
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(f"rundoctor worker {os.getpid()}: {message}\n")
        sys.stderr.flush()


@dataclass(frozen=True, slots=True)
class RefusedRun:
    """A run directory the runs root refused its ``final.json``: what to write there later."""

    path: Path
    run_id: str
    reason: str
    epoch: int


class Fleet:
    """What a worker's threads share about its health: once ``doomed``, every slot stops
    waiting for the database (one last try each) and the worker exits with ``why``; while the
    runs root refuses writes, every slot pauses claiming until ``resume_at``."""

    def __init__(self) -> None:
        self.doomed = threading.Event()
        self.why = ""
        self._lock = threading.Lock()
        self.resume_at = 0.0  # time.monotonic() before which no slot claims
        self._pause = 0.0  # the next pause; 0 while the runs root takes writes
        self._unfinished: list[RefusedRun] = []

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

    def left_unfinished(self, run: RefusedRun) -> None:
        """The runs root refused ``run`` its ``final.json``: to be finished once the root
        takes writes again (:meth:`unfinished`)."""
        with self._lock:
            self._unfinished.append(run)

    def unfinished(self) -> list[RefusedRun]:
        """The runs the root refused so far, each handed out once."""
        with self._lock:
            runs, self._unfinished = self._unfinished, []
            return runs

    def claim_pause(self) -> float:
        """Seconds until slots may claim again (0 when they may now)."""
        with self._lock:
            return max(0.0, self.resume_at - time.monotonic())

    def give_up(self, why: str) -> None:
        with self._lock:
            if not self.why:
                self.why = why
        self.doomed.set()


class ClockNotice:
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
                say(
                    f"{offset.describe()}; leases are kept in the server's clock, but this "
                    "worker stamps its run directories with its own: synchronize the clocks "
                    "(NTP)"
                )


def persist(
    call: Callable[[], T],
    what: str,
    config: ExecutorConfig,
    fleet: Fleet,
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
    >>> (persist(flaky, "test", ExecutorConfig(), Fleet()), len(calls))
    ('ok', 3)
    """
    deadline = time.monotonic() + config.database_outage_s
    delay, tried, told = _BACKOFF_FIRST_S, False, False
    while True:
        try:
            if tried and landed is not None and landed():
                say(f"{what}: the earlier try had committed; not repeated")
                return None
            tried = True
            return call()
        except FencedError:
            raise
        except QueueError as exc:
            if exc.lasting:  # a damaged database or a foreign row: no retry can mend it
                raise WorkerError(f"{what}: {exc} (retrying cannot help)") from exc
            if fleet.doomed.is_set() or time.monotonic() >= deadline:
                why = (
                    f"the queue stayed unavailable for {config.database_outage_s:g} s (last: {exc})"
                    if not fleet.doomed.is_set()
                    else f"the worker is giving up ({fleet.why})"
                )
                raise WorkerError(f"{what}: {why}") from exc
            if not told:
                say(f"{what}: {exc}; retrying with backoff")
                told = True
        if quit is not None and quit.wait(delay):
            return None
        if quit is None:
            fleet.doomed.wait(delay)
        delay = min(delay * 2, _BACKOFF_MAX_S)


def logged(queue: Queue, lease: Lease, event: str) -> bool:
    """True when the ticket's log holds ``event`` written with this lease (epoch and worker)."""
    return any(
        e.event == event and e.epoch == lease.epoch and e.worker == lease.worker
        for e in queue.events(lease.ticket_id)
    )
