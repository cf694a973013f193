"""Is a run's owner process alive on this host? (psutil; pid plus start time where known)."""

from __future__ import annotations

import os

__all__ = [
    "CLOCK_TICKS",
    "PID_MAX",
    "exclude_self_as_owner",
    "owner_alive",
    "process_alive",
    "valid_pid",
]

#: Linux clock ticks per second, the unit of Kilroy's ``pid_start_time`` (``/proc/PID/stat``).
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


#: Linux's largest possible pid (``PID_MAX_LIMIT``, 2^22): a recorded pid above it names no
#: live process here (it is dead without asking the kernel).
PID_MAX = 1 << 22


def valid_pid(value: object) -> int | None:
    """``value`` as a pid when it can be one: an int (not a bool) that fits ``pid_t``.

    >>> valid_pid(1234), valid_pid(2**63), valid_pid(True), valid_pid("12"), valid_pid(0)
    (1234, None, None, None, None)
    """
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**31:
        return None
    return value


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
    if valid_pid(pid) is None or pid > PID_MAX:
        return False  # no process can have it
    import psutil  # here, not at import: every command loads this module (main)

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


#: Pids that are never taken as a run's live owner without a matching start time: the
#: doctor command's own (see :func:`exclude_self_as_owner`).
_NOT_OWNERS: set[int] = set()


def exclude_self_as_owner() -> None:
    """Never take this process's pid as a run's live owner (the ``doctor`` command calls it:
    a recorded pid equal to the doctor's own was reused by it, the owner is gone). A library
    caller that owns runs itself (tests, an embedding process) does not call it.
    """
    _NOT_OWNERS.add(os.getpid())


def owner_alive(pid: int | None, start_time: int | None = None) -> bool | None:
    """Is the process recorded as a run's owner alive and plausibly that owner?

    As :func:`process_alive`, except for pids that are alive but never prove a run's owner
    without a matching start time: pid 1 (init, alive forever: a stale ``run.pid`` in a
    container says 1) is unknown (``None``), and the doctor command's own pid (see
    :func:`exclude_self_as_owner`) is dead (``False``).

    >>> owner_alive(1), owner_alive(None), owner_alive(2**63), owner_alive(os.getpid())
    (None, None, False, True)
    """
    if pid is None:
        return None
    if pid == 1 or pid in _NOT_OWNERS:
        ticks = _start_ticks(pid) if start_time is not None else None
        if ticks is not None and ticks == start_time:
            return True
        return None if pid == 1 else False
    return process_alive(pid, start_time)
