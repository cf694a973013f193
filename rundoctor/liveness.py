"""Is a process alive on this host, and is it plausibly the one that was recorded?

One answer for every package: the executor's reaper (reclaim a dead worker's ticket), the
doctor (is a run's owner alive), its repairs (may a lock be set aside). A record names a pid
and, where it could, the process's start time in clock ticks (field 22 of ``/proc/PID/stat``,
Kilroy's ``pid_start_time``), which tells a live owner from an unrelated process that reused
its pid.

The rules, in order:

- a value that cannot be a pid (not an int, a bool, zero, negative, ``>= 2**31``, or above
  Linux's ``PID_MAX_LIMIT``) names no live process: dead;
- ``kill(pid, 0)`` says whether the pid exists (``EPERM``: it exists, someone else owns it);
- a zombie (state ``Z`` or ``X``) is dead: it does no more work;
- with a recorded start time, a process that started at another time is a reused pid: dead;
- **an unknown start time proves nothing either way**: when none was recorded, or this host
  cannot say when the process started (no ``/proc``), a live pid counts as alive. Dead needs
  proof, because the callers' next step on "dead" (reclaim a ticket, terminalize a run, set a
  lock aside) is worse when wrong than waiting for the lease to expire.

:func:`owner_alive` adds the pids that are alive but prove nothing about a run's owner: pid 1
and the pids registered with :func:`exclude_self_as_owner`.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CLOCK_TICKS",
    "PID_MAX",
    "YOUNGER_BY_S",
    "ProcessState",
    "boot_id",
    "exclude_owners",
    "exclude_self_as_owner",
    "excluded_owners",
    "owner_alive",
    "owner_stopped",
    "process_alive",
    "process_state",
    "start_ticks",
    "started_at",
    "valid_pid",
]

#: Linux clock ticks per second, the unit of a recorded start time (``/proc/PID/stat``).
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

#: Linux's largest possible pid (``PID_MAX_LIMIT``, 2^22): a recorded pid above it names no
#: live process here (it is dead without asking the kernel).
PID_MAX = 1 << 22

_PROC = Path("/proc")


def valid_pid(value: object) -> int | None:
    """``value`` as a pid when it can be one: an int (not a bool) that fits ``pid_t``.

    >>> valid_pid(1234), valid_pid(2**63), valid_pid(True), valid_pid("12"), valid_pid(0)
    (1234, None, None, None, None)
    """
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**31:
        return None
    return value


@dataclass(frozen=True, slots=True)
class ProcessState:
    """What this host's ``/proc`` says of one process (:func:`process_state`)."""

    pid: int
    #: Its command name, from ``/proc/PID/comm`` (the kernel keeps 15 bytes of it): any
    #: characters, spaces and parentheses among them; bytes not UTF-8 as ``\\x..``.
    name: str
    #: The state letter of ``/proc/PID/stat``: ``R`` running, ``S`` sleeping, ``D`` waiting on
    #: a disk, ``T`` stopped, ``t`` stopped by a debugger, ``Z`` a zombie, ``X`` dead, …
    state: str
    #: When it started, in clock ticks since boot (field 22); ``None`` when unreadable.
    start_ticks: int | None

    @property
    def stopped(self) -> bool:
        """Stopped (SIGSTOP, a suspended job) or held by a debugger: alive, doing nothing."""
        return self.state in ("T", "t")

    @property
    def zombie(self) -> bool:
        """Exited, not yet collected by its parent: dead, doing no more work."""
        return self.state in ("Z", "X")


def process_state(pid: int) -> ProcessState | None:
    """``pid``'s name, state and start time; ``None`` when no process has that pid here, the
    value cannot be a pid, or this host has no ``/proc``.

    >>> import signal, subprocess
    >>> child = subprocess.Popen(["sleep", "30"])
    >>> state = process_state(child.pid)
    >>> state.name, state.start_ticks == start_ticks(child.pid), state.stopped
    ('sleep', True, False)
    >>> child.kill(); child.wait()
    -9
    >>> process_state(child.pid), process_state(2**40), process_state(0)
    (None, None, None)
    """
    if valid_pid(pid) is None or pid > PID_MAX:
        return None
    try:
        stat = (_PROC / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    # "pid (comm) S …": the name may hold spaces and parentheses; the state follows the last
    # ")". The name itself is read from comm, where nothing needs splitting off.
    head, _, tail = stat.rpartition(b")")
    fields = tail.split()
    try:
        name = (_PROC / str(pid) / "comm").read_bytes().removesuffix(b"\n")
    except OSError:  # gone since: the name stat gave
        name = head.partition(b"(")[2]
    ticks = fields[19] if len(fields) > 19 and fields[19].isdigit() else None
    return ProcessState(
        pid,
        name.decode("utf-8", "backslashreplace"),
        fields[0].decode("ascii", "replace") if fields else "?",
        None if ticks is None else int(ticks),
    )


#: How much later than its pid was recorded a process may seem to have started and still be
#: taken for the owner: file times and the boot time have their granularity, and a clock
#: stepped forward after the owner started makes it look younger than it is.
YOUNGER_BY_S = 60.0


def started_at(pid: int) -> float | None:
    """When ``pid`` started, in epoch seconds (the boot time plus its start ticks); ``None``
    when unknown (no ``/proc``).

    >>> import time
    >>> 0 <= time.time() - (started_at(os.getpid()) or 0) < 86400 * 365
    True
    """
    ticks = start_ticks(pid)
    boot = _boot_time()
    if ticks is None or boot is None:
        return None
    return boot + ticks / CLOCK_TICKS


@functools.cache
def boot_id() -> str | None:
    """This boot's id (``/proc/sys/kernel/random/boot_id``: random at each boot, so no two
    machines nor two boots of one share it); ``None`` where the kernel has none. A pid and a
    start time name a process only within one boot: after a reboot (a deterministic boot
    starts the same services at the same ticks), or on another host, they name another.

    >>> boot_id() is None or len(boot_id() or "") == 36
    True
    """
    try:
        return (_PROC / "sys" / "kernel" / "random" / "boot_id").read_text().strip() or None
    except OSError:
        return None


@functools.cache
def _boot_time() -> float | None:
    """The boot time in epoch seconds (``btime`` of ``/proc/stat``), None without it; read
    once per process (it does not change while the machine is up)."""
    try:
        for line in (_PROC / "stat").read_bytes().splitlines():
            if line.startswith(b"btime "):
                return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def start_ticks(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot; ``None`` when unknown.

    >>> isinstance(start_ticks(os.getpid()), int), start_ticks(2**40)
    (True, None)
    """
    state = process_state(pid)
    return None if state is None else state.start_ticks


def process_alive(pid: int, start_time: int | None = None) -> bool:
    """True when ``pid`` runs here (and, when ``start_time`` is known, started then).

    >>> process_alive(os.getpid()), process_alive(2**63), process_alive(os.getpid(), -1)
    (True, False, False)
    """
    if valid_pid(pid) is None or pid > PID_MAX:
        return False  # no process can have it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists; it belongs to someone else
    state = process_state(pid)
    if state is None:
        # No stat: on a host with /proc the process went away between the two looks; without
        # /proc its state and start time are unknown, and unknown is not dead.
        return not _PROC.joinpath("self").exists()
    if state.zombie:
        return False  # dead, only not yet collected by its parent
    if start_time is not None and state.start_ticks is not None:
        return state.start_ticks == start_time  # another start time: the pid was reused
    return True


#: Pids that are never taken as a run's live owner without a matching start time.
_NOT_OWNERS: set[int] = set()


def exclude_self_as_owner() -> None:
    """Never take this process's pid as a run's live owner (the ``doctor`` command calls it:
    a recorded pid equal to the doctor's own was reused by it, the owner is gone). A caller
    that owns runs itself (a worker, its reaper, tests) does not call it.

    >>> import subprocess, sys
    >>> code = ("import os; from rundoctor.liveness import exclude_self_as_owner, excluded_owners; "
    ...         "exclude_self_as_owner(); print(os.getpid() in excluded_owners())")
    >>> subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    'True\\n'
    """
    _NOT_OWNERS.add(os.getpid())


def excluded_owners() -> frozenset[int]:
    """The pids this process never takes as a run's live owner (see
    :func:`exclude_self_as_owner`), to hand to a worker process it starts.

    >>> isinstance(excluded_owners(), frozenset)
    True
    """
    return frozenset(_NOT_OWNERS)


def exclude_owners(pids: frozenset[int] | set[int]) -> None:
    """Never take ``pids`` as a run's live owner either: a worker process of the doctor's
    scan inherits its parent's exclusions this way (the parent's pid is not a run's owner).

    >>> import subprocess, sys
    >>> code = ("from rundoctor.liveness import exclude_owners, excluded_owners, owner_alive; "
    ...         "exclude_owners({1}); print(sorted(excluded_owners()))")
    >>> subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    '[1]\\n'
    """
    _NOT_OWNERS.update(pids)


def owner_alive(
    pid: int | None, start_time: int | None = None, *, recorded_at: float | None = None
) -> bool | None:
    """Is the process recorded as a run's (or a lease's) owner alive and plausibly that owner?

    As :func:`process_alive`, with ``None`` (unknown) where nothing can be said: no pid was
    recorded, or the pid is 1 (init, alive forever: a stale ``run.pid`` in a container says 1)
    without a matching start time. A pid registered by :func:`exclude_self_as_owner` is dead
    without a matching start time.

    Without a start time, ``recorded_at`` (epoch seconds: when the pid was written down, a
    ``run.pid``'s modification time) still tells a reused pid: a process that started more
    than :data:`YOUNGER_BY_S` after its pid was recorded is not the process that recorded it.

    >>> owner_alive(1), owner_alive(None), owner_alive(2**63), owner_alive(os.getpid())
    (None, None, False, True)
    >>> import time
    >>> owner_alive(os.getpid(), recorded_at=time.time()), owner_alive(os.getpid(), recorded_at=0)
    (True, False)
    """
    if pid is None:
        return None
    if pid == 1 or pid in _NOT_OWNERS:
        ticks = start_ticks(pid) if start_time is not None else None
        if ticks is not None and ticks == start_time:
            return True
        return None if pid == 1 else False
    alive = process_alive(pid, start_time)
    if alive and start_time is None and recorded_at is not None:
        began = started_at(pid)
        if began is not None and began > recorded_at + YOUNGER_BY_S:
            return False  # started after its pid was written down: the pid was reused
    return alive


def owner_stopped(
    pid: int | None, start_time: int | None = None, *, recorded_at: float | None = None
) -> bool:
    """Is the recorded owner alive (:func:`owner_alive`) but stopped (SIGSTOP, a suspended
    job, a debugger): a process that does no work until it is continued (``kill -CONT``)?

    >>> import signal, subprocess
    >>> child = subprocess.Popen(["sleep", "30"])
    >>> os.kill(child.pid, signal.SIGSTOP); os.waitpid(child.pid, os.WUNTRACED)[0] == child.pid
    True
    >>> owner_stopped(child.pid), owner_stopped(os.getpid()), owner_stopped(None)
    (True, False, False)
    >>> child.kill(); child.wait()
    -9
    """
    if pid is None or owner_alive(pid, start_time, recorded_at=recorded_at) is not True:
        return False
    state = process_state(pid)
    return state is not None and state.stopped
