"""Who holds a SQLite queue's write lock, and whether that process is stopped.

SQLite's ``database is locked`` names nobody, and a writer frozen inside its transaction
(SIGSTOP, a debugger, a suspended terminal job) holds every other writer of the queue until it
is continued or ended. The write lock is a POSIX advisory lock: on byte 120 of the ``-shm``
file of a WAL database (``WAL_WRITE_LOCK``; the queue always runs in WAL mode), on the
RESERVED byte (0x40000001) of the file itself in rollback-journal mode. ``F_GETLK`` on that
byte names the process that holds it, and ``/proc`` says whether it is stopped. Linux only
(the layout of ``struct flock`` and ``/proc``); elsewhere, or when the holder cannot be told,
:func:`write_lock_holder` returns None and the error stays as SQLite put it.

>>> write_lock_holder("/nonexistent/queue.db") is None
True
"""

from __future__ import annotations

import fcntl
import os
import struct
import sys

from rundoctor.liveness import process_state

__all__ = ["write_lock_holder"]

_WAL_WRITE_LOCK = 120
_RESERVED_BYTE = 0x40000001
#: Linux's ``struct flock`` on a 64-bit host: type, whence, start, len, pid (padded to 32).
_FLOCK = struct.Struct("@hhqqi4x")


def write_lock_holder(path: str) -> str | None:
    """A phrase naming the process that holds the write lock of the SQLite file ``path`` (and
    how to free it when the process is stopped), or None when none can be named."""
    if sys.platform != "linux" or struct.calcsize("P") != 8 or path == ":memory:":
        return None
    for name, offset in ((f"{path}-shm", _WAL_WRITE_LOCK), (path, _RESERVED_BYTE)):
        pid = _locker(name, offset)
        if pid is not None:
            return _describe(pid)
    return None


def _locker(path: str, offset: int) -> int | None:
    """The pid holding a lock on byte ``offset`` of ``path`` that a write lock would meet."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        query = _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, offset, 1, 0)
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, query)
    except OSError:
        return None
    finally:
        os.close(fd)
    kind, _whence, _start, _length, pid = _FLOCK.unpack(answer)
    if kind == fcntl.F_UNLCK:
        return None
    return int(pid)  # 0 or -1: an open file description's lock, whose process is not told


def _describe(pid: int) -> str:
    if pid <= 0:
        return "another process holds its write lock (which one, the system does not say)"
    state = process_state(pid)
    if state is None:
        return f"process {pid} holds its write lock"
    who = f"process {pid} ({state.name})"
    if state.stopped:
        return (
            f"{who} holds its write lock and is stopped (SIGSTOP, a debugger or a suspended "
            f"job): `kill -CONT {pid}` lets it finish, or end it"
        )
    return f"{who} holds its write lock"
