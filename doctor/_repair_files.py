"""The repair's file operations: every write inside the run directory, nothing followed.

Every path is walked from the run directory's descriptor (``ctx.run_fd``, opened by
:func:`_open_run` without following a symlink), one component at a time, each opened
``O_NOFOLLOW`` (:func:`_parent`): a directory swapped for a symlink after any check is never
followed, because nothing is ever looked up by its full path again. Files are created (never
replacing an existing one: :func:`_create`), replaced (temporary file, fsync, rename:
:func:`_replace`) and read (a regular file only, never through a symlink, never a FIFO:
:func:`_read_at`) relative to their directory's descriptor, and a path that is absolute or
holds ``..`` or NUL is refused (:func:`_check_rel`): a repair writes only inside the run
directory. :func:`_sha_rel` is the SHA-256 the journal records before and after an action.

Also here, the two locks an action's write takes (:mod:`doctor._repair_actions`):

* :func:`_run_lock` holds the run's own lock (``run.lock.json``, Kilroy's protocol) while an
  action writes, so a resuming run and the repair exclude each other; an
  advisory ``flock`` on the run directory excludes a second ``doctor repair``.
* :func:`_sole_open` holds a write lease on a stream while it is cut: no other process has it
  open, none can open it to append meanwhile.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import signal
import stat
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from doctor._documents import parse_json
from doctor._errors import UsageError
from doctor._repair_model import TOOL, _Ctx, _Refused
from doctor._timestamps import iso
from rundoctor.atomic import create_file, replace_file
from rundoctor.liveness import owner_alive, run_owner_alive, start_ticks, valid_pid

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW


def _check_rel(rel: str) -> PurePosixPath:
    """``rel`` as a relative path without ``..`` or NUL, else refused."""
    pure = PurePosixPath(rel)
    if (
        not rel
        or "\x00" in rel
        or pure.is_absolute()
        or "\\" in rel
        or any(p in ("..", ".") for p in pure.parts)
    ):
        raise _Refused(f"{rel!r} is not a path inside the run directory")
    return pure


def _open_run(run_path: Path) -> int:
    try:
        return os.open(run_path, _DIR_FLAGS)
    except OSError as exc:
        raise UsageError(
            f"{str(run_path)!r} is not a run directory (or is a symlink): {exc.strerror}"
        ) from exc


@contextlib.contextmanager
def _parent(ctx: _Ctx, rel: str, *, create_dirs: bool = False) -> Iterator[tuple[int, str]]:
    """``(directory descriptor, file name)`` of ``rel``, every directory on the way opened
    relative to the last without following a symlink (created when ``create_dirs``)."""
    pure = _check_rel(rel)
    fd = os.dup(ctx.run_fd)
    try:
        walked = PurePosixPath()
        for part in pure.parts[:-1]:
            walked /= part
            try:
                nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create_dirs:
                    raise _Refused(f"{walked} does not exist") from None
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
                try:
                    nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError:
                    raise _Refused(f"{walked} is a symlink or not a directory") from None
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                    raise _Refused(
                        f"{walked} is a symlink or not a directory; repairs never follow one"
                    ) from None
                raise
            os.close(fd)
            fd = nfd
        yield fd, pure.parts[-1]
    finally:
        os.close(fd)


def _lstat_at(dfd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _read_at(dfd: int, name: str, what: str) -> bytes:
    """The bytes of the regular file ``name`` in ``dfd`` (never a symlink, never a FIFO)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | _NOFOLLOW, dir_fd=dfd)
    except FileNotFoundError:
        raise _Refused(f"{what} no longer exists") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _Refused(f"{what} is a symlink; repairs never read through one") from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _Refused(f"{what} is not a regular file")
        chunks = []
        while block := os.read(fd, 1 << 20):
            chunks.append(block)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _sha_rel(ctx: _Ctx, rel: str) -> str | None:
    """SHA-256 of the regular file at ``rel`` (None when absent or unreachable)."""
    try:
        with _parent(ctx, rel) as (dfd, name):
            st = _lstat_at(dfd, name)
            if st is None or not stat.S_ISREG(st.st_mode):
                return None
            return hashlib.sha256(_read_at(dfd, name, rel)).hexdigest()
    except (_Refused, OSError):
        return None


def _create(dfd: int, name: str, data: bytes) -> None:
    """Write a new file atomically; never replaces an existing one (FileExistsError)."""
    if not create_file(name, data, dir_fd=dfd):
        raise FileExistsError(errno.EEXIST, "refusing to replace an existing file", name)


def _replace(dfd: int, name: str, data: bytes) -> None:
    """Replace a file atomically (temp file, fsync, rename)."""
    replace_file(name, data, dir_fd=dfd)


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=True) + "\n").encode()


# ---------------------------------------------------------------- the run's lock

_LOCK = "run.lock.json"


@contextlib.contextmanager
def _run_lock(ctx: _Ctx) -> Iterator[None]:
    """Hold the run's own lock (``run.lock.json``, Kilroy's protocol) while repairing.

    The lock is created exclusively (temp file, then a hard link that fails when the name
    exists). A lock whose owner is alive refuses the repair; a stale one (its owner dead) is
    set aside with a rename, the repair takes the lock, and on release the stale lock is put
    back, so the run still records its crashed owner. A resuming run that takes the lock
    first makes the repair refuse; one that comes while the repair holds it finds it held by
    a live process (this one) and waits or refuses, as Kilroy's resume does. An advisory
    ``flock`` on the run directory also excludes a second ``doctor repair``.
    """
    try:
        fcntl.flock(ctx.run_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise _Refused("another doctor repair holds this run") from None
    _recover_crashed_repair(ctx)
    me = os.getpid()
    lock = {
        "pid": me,
        "pid_start_time": start_ticks(me),
        "run_id": ctx.run_id,
        "acquired_at": iso(time.time_ns()),
        "repaired_by": TOOL,
    }
    stale = f"{_STALE_PREFIX}{me}"
    set_aside = False
    ours: os.stat_result | None = None
    try:
        for _ in range(3):
            if create_file(_LOCK, _json_bytes(lock), dir_fd=ctx.run_fd):
                ours = os.stat(_LOCK, dir_fd=ctx.run_fd, follow_symlinks=False)
                break
            if set_aside:
                raise _Refused("the run's lock was taken while the repair set a stale one aside")
            held = _lock_holder(ctx)
            if held is not None:
                raise _Refused(held)
            try:  # stale: set it aside (one rename: only one party wins it)
                os.rename(_LOCK, stale, src_dir_fd=ctx.run_fd, dst_dir_fd=ctx.run_fd)
                set_aside = True
            except FileNotFoundError:
                continue
            if _lock_holder(ctx, stale) is not None:  # a live lock won the race: give back
                with contextlib.suppress(OSError):
                    os.link(stale, _LOCK, src_dir_fd=ctx.run_fd, dst_dir_fd=ctx.run_fd)
                os.unlink(stale, dir_fd=ctx.run_fd)
                set_aside = False
                raise _Refused("the run's lock was taken by a live process")
        else:
            raise _Refused("the run's lock keeps changing hands")
        yield
    finally:
        if ours is not None:
            now = _lstat_at(ctx.run_fd, _LOCK)
            if now is not None and (now.st_ino, now.st_dev) == (ours.st_ino, ours.st_dev):
                os.unlink(_LOCK, dir_fd=ctx.run_fd)
        if set_aside:
            with contextlib.suppress(OSError):  # someone else's lock stays where it is
                os.link(stale, _LOCK, src_dir_fd=ctx.run_fd, dst_dir_fd=ctx.run_fd)
            with contextlib.suppress(OSError):
                os.unlink(stale, dir_fd=ctx.run_fd)
        fcntl.flock(ctx.run_fd, fcntl.LOCK_UN)


_STALE_PREFIX = f".{_LOCK}.stale-"


def _recover_crashed_repair(ctx: _Ctx) -> None:
    """Undo what a repair killed while it held the run's lock left (called holding the run
    directory's ``flock``, so no other repair is between taking and releasing the lock).

    A killed repair leaves its own lock as ``run.lock.json`` (its pid, now dead) and, when the
    run had a stale lock, that lock set aside as ``.run.lock.json.stale-<pid>``. Taken as they
    are, the repair's dead pid would pass for the run's owner (named in ``final.json``, and put
    back as the run's lock). The run's own lock is put back, or the repair's removed when the
    run had none; a lock another process took meanwhile is left alone.
    """
    aside = sorted(
        n
        for n in os.listdir(ctx.run_fd)
        if n.startswith(_STALE_PREFIX) and n[len(_STALE_PREFIX) :].isdigit()
    )
    held, killed = _crashed_repair_lock(ctx)
    if f"{_STALE_PREFIX}{killed}" in aside:  # the one that repair set aside comes back first
        aside.remove(f"{_STALE_PREFIX}{killed}")
        aside.append(f"{_STALE_PREFIX}{killed}")
    if held is not None:  # the killed repair's lock: moved out of the way, then removed
        gone = f".{_LOCK}.crashed-{os.getpid()}"
        try:
            os.rename(_LOCK, gone, src_dir_fd=ctx.run_fd, dst_dir_fd=ctx.run_fd)
        except FileNotFoundError:
            return
        moved = os.stat(gone, dir_fd=ctx.run_fd, follow_symlinks=False)
        if (moved.st_ino, moved.st_dev) != held:  # not the one checked: give it back
            with contextlib.suppress(OSError):
                os.link(gone, _LOCK, src_dir_fd=ctx.run_fd, dst_dir_fd=ctx.run_fd)
            os.unlink(gone, dir_fd=ctx.run_fd)
            return
        os.unlink(gone, dir_fd=ctx.run_fd)
    if _lstat_at(ctx.run_fd, _LOCK) is not None:
        return  # a lock another process holds (or the run's own): the set-aside ones stay
    for name in aside[-1:]:  # the run's own lock, as the killed repair found it
        with contextlib.suppress(FileExistsError):  # a resume took the lock meanwhile
            os.link(name, _LOCK, src_dir_fd=ctx.run_fd, dst_dir_fd=ctx.run_fd)
    for name in aside:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=ctx.run_fd)


def _crashed_repair_lock(ctx: _Ctx) -> tuple[tuple[int, int] | None, int | None]:
    """The (inode, device) of ``run.lock.json`` and the pid in it when a ``doctor repair``
    that is dead wrote it, else ``(None, None)``."""
    st = _lstat_at(ctx.run_fd, _LOCK)
    if st is None or not stat.S_ISREG(st.st_mode):
        return None, None
    try:
        value, _dups = parse_json(_read_at(ctx.run_fd, _LOCK, _LOCK))
    except (_Refused, OSError, ValueError):
        return None, None
    if not isinstance(value, dict) or value.get("repaired_by") != TOOL:
        return None, None
    start = value.get("pid_start_time")
    pid = valid_pid(value.get("pid"))
    if pid is None or owner_alive(pid, start if isinstance(start, int) else None) is not False:
        return None, None
    return (st.st_ino, st.st_dev), pid


def _lock_holder(ctx: _Ctx, name: str = _LOCK) -> str | None:
    """Why the lock file ``name`` is held (its owner alive or unknown), or None when stale."""
    try:
        value, _dups = parse_json(_read_at(ctx.run_fd, name, name))
    except _Refused as exc:
        if "no longer exists" in str(exc):
            return None
        return f"the run's lock is unreadable ({exc}); a person should look"
    except ValueError:
        return "the run's lock does not parse; a person should look"
    pid = valid_pid(value.get("pid")) if isinstance(value, dict) else None
    start = value.get("pid_start_time") if isinstance(value, dict) else None
    # A holder that lives but works on another run directory (this one is its run's copy)
    # holds nothing here.
    alive = run_owner_alive(pid, start if isinstance(start, int) else None, ctx.run_path)
    if pid is not None and alive is False:
        return None
    return f"the run's lock is held by pid {pid} ({'alive' if alive else 'not known dead'})"


# ---------------------------------------------------------------- the write lease


def _pread_all(fd: int, offset: int) -> bytes:
    chunks = []
    while block := os.pread(fd, 1 << 20, offset):
        chunks.append(block)
        offset += len(block)
    return b"".join(chunks)


@contextlib.contextmanager
def _sole_open(fd: int, what: str) -> Iterator[None]:
    """Hold a write lease (Linux ``F_SETLEASE``) on the stream ``fd`` while it is cut.

    The kernel grants the lease only while no other process has the file open, and a process
    that opens it meanwhile waits in ``open`` until the lease is released: no append can land
    between the cut's last size check and its ``ftruncate``. Another process holding the
    stream open refuses the action (it may be a writer). The lease-break notice is sent as
    ``SIGURG``, ignored by default (``SIGIO``'s default would end this process). Where leases
    are not available (another OS, a file system without them, a stream owned by another user
    without ``CAP_LEASE``) the cut goes ahead without one, as before.
    """
    setlease: int | None = getattr(fcntl, "F_SETLEASE", None)
    leased = False
    if setlease is not None:
        try:
            fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)
            fcntl.fcntl(fd, setlease, fcntl.F_WRLCK)
            leased = True
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EBUSY):
                raise _Refused(
                    f"{what} is open in another process (a writer may be alive); try again "
                    "when it has closed it"
                ) from None
    try:
        yield
    finally:
        if leased and setlease is not None:
            with contextlib.suppress(OSError):
                fcntl.fcntl(fd, setlease, fcntl.F_UNLCK)
