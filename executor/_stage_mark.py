"""The mark every process of a stage carries, and the stage processes that left its group.

A stage runs in a session and process group of its own, and the group is killed when the
stage ends (its leader exits, times out, is canceled) or when the reaper takes a lost worker's
ticket back. A process that leaves the group (``setsid``, a daemon's double fork) escapes
``killpg``: it outlived its stage, its run and a reclaim, going on beside the ticket's next
execution in a worktree that is no longer its own, or holding a port or a lock the next
attempt needs.

So each stage process starts with ``RUNDOCTOR_STAGE_MARK=<mark>`` in its environment, a token
of its own recorded in the attempt's ``process.json``. Its descendants inherit it, whatever
group or session they move to, and :func:`kill_marked` finds them by it in
``/proc/PID/environ`` (as Jenkins' ProcessTreeKiller finds a build's processes by its
``BUILD_ID``). Each one is signalled through a pidfd opened *before* its mark is read, so a pid
reused meanwhile is never hit. A process that starts from an empty environment (``env -i``)
is not found: this is a net under the group kill, not a sandbox.

>>> kill_marked([new_mark()])  # no process carries a fresh mark
()
"""

from __future__ import annotations

import os
import secrets
import select
import signal
import time
from collections.abc import Collection
from pathlib import Path

__all__ = ["STAGE_MARK", "kill_marked", "new_mark"]

#: The environment variable that marks a stage's processes.
STAGE_MARK = "RUNDOCTOR_STAGE_MARK"
_PROC = Path("/proc")
#: Looks at the process table per call: a marked process may fork while it is being killed,
#: and each look finds the children the one before missed.
_ROUNDS = 8


def new_mark() -> str:
    """A mark no other stage has: 128 random bits.

    >>> len(new_mark()), new_mark() != new_mark()
    (32, True)
    """
    return secrets.token_hex(16)


def kill_marked(marks: Collection[str], *, killed_groups: Collection[int] = ()) -> tuple[int, ...]:
    """SIGKILL every process of this host whose environment carries one of ``marks``; the
    pids killed. Each round waits (up to a second) for the processes it killed to end, then
    looks again, so children forked meanwhile go too. Processes of ``killed_groups`` (already
    SIGKILLed as a group, dying) are left to it. Nothing happens without ``/proc`` or pidfds
    (not Linux)."""
    wanted = {f"{STAGE_MARK}={m}".encode() for m in marks if m}
    if not wanted or not hasattr(os, "pidfd_open"):
        return ()
    spared = frozenset(killed_groups)
    killed: list[int] = []
    for _ in range(_ROUNDS):
        dying = {
            pid: fd
            for pid in _pids()
            if pid not in killed
            and _carries(pid, wanted)
            and _group(pid) not in spared
            and (fd := _kill(pid, wanted)) is not None
        }
        if not dying:
            break
        killed.extend(dying)
        _await_ends(list(dying.values()))
    return tuple(killed)


def _await_ends(fds: list[int], within_s: float = 1.0) -> None:
    """Wait until every process of ``fds`` (pidfds) ended, at most ``within_s``; close them.
    A pidfd turns readable when its process ends: a killed process whose environment could
    still be read would be found, and counted, again."""
    deadline = time.monotonic() + within_s
    pending = list(fds)
    try:
        while pending and (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select(pending, [], [], left)
            pending = [fd for fd in pending if fd not in ready]
    finally:
        for fd in fds:
            os.close(fd)


def _pids() -> list[int]:
    try:
        names = os.listdir(_PROC)
    except OSError:
        return []
    me = os.getpid()
    return [int(n) for n in names if n.isdigit() and int(n) != me]


def _group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _carries(pid: int, wanted: set[bytes]) -> bool:
    """True when ``pid``'s environment holds one of the ``wanted`` entries (a zombie's, or
    another user's, reads as empty)."""
    try:
        entries = (_PROC / str(pid) / "environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return not wanted.isdisjoint(entries)


def _kill(pid: int, wanted: set[bytes]) -> int | None:
    """SIGKILL ``pid`` if it still carries the mark, through a pidfd opened first (a pid that
    was reused after the look names another process, which carries no mark); the pidfd,
    open, or None when nothing was killed."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return None
    try:
        if _carries(pid, wanted):
            signal.pidfd_send_signal(fd, signal.SIGKILL)
            return fd
    except OSError:
        pass
    os.close(fd)
    return None
