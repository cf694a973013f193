"""Is a run's owner process alive on this host? (psutil; pid plus start time where known)."""

from __future__ import annotations

import os

import psutil

__all__ = ["CLOCK_TICKS", "process_alive"]

#: Linux clock ticks per second, the unit of Kilroy's ``pid_start_time`` (``/proc/PID/stat``).
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _start_ticks(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    # Field 22 (starttime) follows the parenthesised command name, which may hold spaces.
    fields = stat[stat.rfind(b")") + 2 :].split()
    return int(fields[19]) if len(fields) > 19 else None


def process_alive(pid: int | None, start_time: int | None = None) -> bool | None:
    """True when ``pid`` runs here (and started at ``start_time`` ticks, when given).

    ``None`` when there is no pid to check. A zombie counts as dead: it does no more work.

    >>> process_alive(os.getpid())
    True
    >>> process_alive(None) is None
    True
    """
    if pid is None:
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
    except (psutil.NoSuchProcess, ValueError):
        return False
    except psutil.AccessDenied:
        return True  # it exists; it belongs to someone else
    if start_time is not None:
        ticks = _start_ticks(pid)
        if ticks is not None and ticks != start_time:
            return False
    return True
