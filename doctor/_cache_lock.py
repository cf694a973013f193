"""Scans writing a run's events and ``doctor cache prune`` emptying its partition, apart.

A scan writes a run's events into ``events/run=<key>/``: it makes the folder, then has DuckDB
write the file there (:meth:`doctor._cache.RunCache.write_events`). A prune that removed the
last files of that partition (the run's entry gone or older than ``--older-than``) and then
the emptied folder between the two made the scan's ``COPY`` fail: its whole batch was "not
saved to the cache" and read again by the next scan.

So the two take a lock on one file of the cache directory, ``.events.lock`` (beside
``runs/`` and ``events/``: the dataset and the entries hold nothing else): every scan's
writes hold it shared, together; a
prune removes an emptied folder only while it holds it alone, and never waits for it: a
folder it may not remove now is left, empty, to the next prune. A lock file that cannot be
made or opened (a cache of another user's, a read-only one) leaves the scan unlocked, as it
was before, and the prune with the folder left.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path

__all__ = ["LOCK_NAME", "events_written", "partitions_removable"]

#: The lock's file, in the cache directory.
LOCK_NAME = ".events.lock"


def _open(cache: Path) -> int | None:
    """The lock file of ``cache`` opened (made when missing), or None when it cannot be,
    or is no regular file (a FIFO in its place is never waited on)."""
    flags = os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(cache / LOCK_NAME, flags, 0o666)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def events_written(cache: Path) -> Iterator[None]:
    """Hold the lock shared while a scan makes partitions and writes events into them (as
    long as a prune takes to remove a folder, at most)."""
    fd = _open(cache)
    try:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        if fd is not None:
            os.close(fd)


@contextlib.contextmanager
def partitions_removable(cache: Path) -> Iterator[bool]:
    """Whether no scan is writing events now: True while the lock is held alone (the caller
    may remove an emptied partition), False without waiting when a scan holds it or there
    is no lock to take."""
    fd = _open(cache)
    if fd is None:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
