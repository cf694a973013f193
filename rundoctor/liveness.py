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
and the pids registered with :func:`exclude_self_as_owner`. :func:`works_elsewhere` tells an
owner that lives but works on another run directory (the one it was started on, of which this
one is a copy, or which was moved while it ran).
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
    "WorkingProcess",
    "boot_id",
    "exclude_owners",
    "exclude_self_as_owner",
    "excluded_owners",
    "owner_alive",
    "owner_stopped",
    "process_alive",
    "process_state",
    "run_owner_alive",
    "start_ticks",
    "started_at",
    "valid_pid",
    "working_processes",
    "works_elsewhere",
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


#: The command-line flag that names the run directory a Kilroy engine writes
#: (``kilroy attractor run|resume|stop --logs-root DIR``; Go's flags also take ``-logs-root``
#: and ``=DIR``).
_LOGS_ROOT_FLAGS = (b"--logs-root", b"-logs-root")


def _flag_value(argv: list[bytes]) -> bytes | None:
    """The value of the last ``--logs-root`` in ``argv``, if any.

    >>> _flag_value([b"kilroy", b"attractor", b"run", b"--logs-root", b"/r/x", b"--no-cxdb"])
    b'/r/x'
    >>> _flag_value([b"kilroy", b"-logs-root=runs/x"]), _flag_value([b"python", b"-m", b"w"])
    (b'runs/x', None)
    """
    found = None
    for i, arg in enumerate(argv):
        if arg in _LOGS_ROOT_FLAGS and i + 1 < len(argv):
            found = argv[i + 1]
        elif arg.startswith(tuple(flag + b"=" for flag in _LOGS_ROOT_FLAGS)):
            found = arg.partition(b"=")[2]
    return found or None


def works_elsewhere(pid: int, run_dir: Path) -> str | None:
    """The run directory the live process ``pid`` was started on (its ``--logs-root``, as
    Kilroy's engine is called) when that is not ``run_dir``: ``run_dir`` is a copy of that
    run, or that run was moved here while the process ran, and nothing the process does is
    written here. None when the process names ``run_dir`` (the same directory, by device and
    inode, whatever the path), names no directory, or cannot be looked at.

    The path is looked up as the process sees it (``/proc/PID/root``, its ``cwd`` for a
    relative one): a process in a container names its own mount's path. A path that does not
    exist there any more is another directory (the run was moved away from under it).

    >>> import subprocess, sys, tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     a, b = Path(tmp, "a"), Path(tmp, "b")
    ...     a.mkdir(); b.mkdir()
    ...     code = "import time; print('up', flush=True); time.sleep(30)"
    ...     argv = [sys.executable, "-c", code, "--logs-root", str(a)]
    ...     child = subprocess.Popen(argv, stdout=subprocess.PIPE)
    ...     up = child.stdout.readline()  # it runs: its command line is there to read
    ...     said = works_elsewhere(child.pid, a), works_elsewhere(child.pid, b) == str(a)
    ...     child.kill(); _ = child.wait(); child.stdout.close()
    >>> said
    (None, True)
    """
    if valid_pid(pid) is None or pid > PID_MAX:
        return None
    proc = _PROC / str(pid)
    try:
        root = _flag_value((proc / "cmdline").read_bytes().split(b"\0"))
    except OSError:
        return None
    if root is None:
        return None
    seen = (
        os.fsencode(proc / "root") + root
        if root.startswith(b"/")
        else os.path.join(os.fsencode(proc / "cwd"), root)
    )
    try:
        ours = os.stat(run_dir)
    except OSError:
        return None
    try:
        theirs = os.stat(seen)
    except FileNotFoundError:
        return os.fsdecode(root)
    except OSError:
        return None  # not ours to look at (another user's process): unknown
    if (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino):
        return None
    return os.fsdecode(root)


def run_owner_alive(
    pid: int | None,
    start_time: int | None,
    run_dir: Path,
    *,
    recorded_at: float | None = None,
) -> bool | None:
    """:func:`owner_alive` of the owner a run directory records, False too when that process
    lives but works on another run directory (:func:`works_elsewhere`): ``run_dir`` is a copy
    of its run, or was moved away from under it, and nothing writes it any more.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     run_owner_alive(os.getpid(), None, Path(tmp)), run_owner_alive(None, None, Path(tmp))
    (True, None)
    """
    alive = owner_alive(pid, start_time, recorded_at=recorded_at)
    if alive and pid is not None and works_elsewhere(pid, run_dir) is not None:
        return False
    return alive


@dataclass(frozen=True)
class WorkingProcess:
    """A live process here and the directory it works in (:func:`working_processes`)."""

    pid: int
    pgid: int
    name: str
    #: Its working directory as this host sees it (``/proc/PID/cwd``).
    cwd: str
    #: When it started, epoch seconds (to the second: the boot time's resolution).
    started: float


def _ancestors(pid: int) -> set[int]:
    """``pid`` and the processes it descends from (their ``/proc/PID/stat`` parents)."""
    seen: set[int] = set()
    while pid > 0 and pid not in seen:
        seen.add(pid)
        try:
            tail = (_PROC / str(pid) / "stat").read_bytes().rpartition(b")")[2].split()
            pid = int(tail[1])
        except (OSError, ValueError, IndexError):
            break
    return seen


def working_processes() -> list[WorkingProcess]:
    """The live processes of this host whose working directory can be read, but this one and
    its ancestors (the shell that runs the doctor), in pid order; empty without ``/proc``.
    One look at the process table: a caller filters it by directory and start time (the
    processes a killed engine's stage left running in its run, which Kilroy starts in their
    own process group, in the run's worktree).

    >>> import tempfile, subprocess, sys
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     code = "import time; print('up', flush=True); time.sleep(30)"
    ...     child = subprocess.Popen([sys.executable, "-c", code], cwd=tmp, stdout=subprocess.PIPE)
    ...     up = child.stdout.readline()
    ...     found = [w.pid for w in working_processes() if w.cwd == os.path.realpath(tmp)]
    ...     child.kill(); _ = child.wait(); child.stdout.close()
    >>> found == [child.pid], os.getpid() in {w.pid for w in working_processes()}
    (True, False)
    """
    mine = _ancestors(os.getpid())
    out: list[WorkingProcess] = []
    try:
        entries = [e.name for e in os.scandir(_PROC) if e.name.isdigit()]
    except OSError:
        return out
    for name in entries:
        pid = int(name)
        if pid in mine:
            continue
        try:
            cwd = os.readlink(_PROC / name / "cwd")
            pgid = os.getpgid(pid)
        except OSError:
            continue  # gone, or not ours to look at
        state, began = process_state(pid), started_at(pid)
        if state is None or state.zombie or began is None:
            continue
        out.append(WorkingProcess(pid, pgid, state.name, cwd, began))
    return sorted(out, key=lambda w: w.pid)
