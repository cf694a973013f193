"""Fault ``read_only_root``: the runs root turns read-only for longer than a lease.

Only when the runs root is a file system of its own (``doctor chaos run --runs-tmpfs MB``, as
root): the harness remounts it read-only (``mount -o remount,ro``), as the kernel does to a
file system after an I/O error, and read-write again ``lease_ttl_s + 2`` seconds later. On
any other runs root the fault is not applicable (a skip that says so).

A file system with a file open for writing (a stage's log, a worker's stream) refuses to be
remounted read-only (``EBUSY``, "mount point is busy"): in a campaign that is nearly always.
The harness then covers the runs root with a read-only bind mount of itself, made read-only
before it is attached (the new mount API; on a kernel without it, ``mount --bind`` then
``remount,bind,ro``, which a file opened between the two keeps busy): every open for
writing, create, mkdir and rename under it fails with ``EROFS``, as after a remount; a file
opened for writing before the fault can still be written until it is closed (a remount could
not have happened then at all). The undo lifts the cover (``umount -l``). Before the cover,
13 of the fault's 18 tries in the SQLite campaigns of seeds 1-20 (``--duration 35s
--runs-tmpfs 16``, the CI smoke's seed 1 among them) ended at "mount point is busy": the fault
never happened and the campaign passed.

The executor promises what it does for a full disk (``disk_full``): the ticket of a run that
cannot be written fails with the reason ("Read-only file system"), the reaper reclaims with
the reason when it cannot terminalize, no slot dies and nothing prints a traceback.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import time
from typing import Any

from chaos._injection import DISK_FINDINGS, Fault, Injection, Target, disk_root, runs_of, runs_under

__all__ = ["FAULT", "read_only_root"]


def _mount(*argv: str) -> tuple[int, str]:
    done = subprocess.run(["mount", *argv], capture_output=True, text=True, check=False)
    return done.returncode, done.stderr.strip()[-300:]


def _remount(root: str, mode: str) -> dict[str, Any]:
    status, error = _mount("-o", f"remount,{mode}", root)
    out: dict[str, Any] = {"mode": mode, "exit_status": status}
    if status != 0:
        out["error"] = error
    return out


# The new mount API (Linux 5.12; one number on every architecture).
_OPEN_TREE, _MOVE_MOUNT, _MOUNT_SETATTR = 428, 429, 442
_AT_FDCWD, _AT_EMPTY_PATH = -100, 0x1000
_OPEN_TREE_CLONE, _MOVE_MOUNT_F_EMPTY_PATH, _MOUNT_ATTR_RDONLY = 1, 0x4, 0x1


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def _cover_at_once(root: str) -> str | None:
    """Cover ``root`` with a read-only bind mount of itself made read-only *before* it is
    attached (``open_tree``, ``mount_setattr``, ``move_mount``): nothing can open a file for
    writing through it in between, which kept ``mount --bind`` then ``remount,bind,ro`` busy
    whenever a stage opened its log between the two calls (chaos seed 74). None when done,
    else why not."""
    libc = ctypes.CDLL(None, use_errno=True)
    path = os.fsencode(root)
    fd = libc.syscall(_OPEN_TREE, _AT_FDCWD, path, _OPEN_TREE_CLONE | os.O_CLOEXEC)
    if fd < 0:
        return f"open_tree: {os.strerror(ctypes.get_errno())}"
    try:
        attr = _MountAttr(attr_set=_MOUNT_ATTR_RDONLY)
        size = ctypes.sizeof(attr)
        if libc.syscall(_MOUNT_SETATTR, fd, b"", _AT_EMPTY_PATH, ctypes.byref(attr), size):
            return f"mount_setattr: {os.strerror(ctypes.get_errno())}"
        flags = _MOVE_MOUNT_F_EMPTY_PATH
        if libc.syscall(_MOVE_MOUNT, fd, b"", _AT_FDCWD, path, flags):
            return f"move_mount: {os.strerror(ctypes.get_errno())}"
    finally:
        os.close(fd)
    return None


def _cover_in_two_steps(root: str) -> str | None:
    """The same cover with mount(8), for a kernel without the new mount API: a file opened
    for writing between its two calls keeps it busy. None when done, else why not."""
    status, error = _mount("--bind", root, root)
    if status == 0:
        status, error = _mount("-o", "remount,bind,ro", root)
        if status != 0:
            subprocess.run(["umount", "-l", root], capture_output=True, check=False)
    return None if status == 0 else error


def _read_only(root: str) -> dict[str, Any]:
    """Make ``root`` refuse writes: remount it read-only, or, when a file open for writing
    keeps it busy, cover it with a read-only bind mount of itself (``cover``)."""
    remounted = _remount(root, "ro")
    if "error" not in remounted:
        return remounted
    error = _cover_at_once(root)
    if error is not None and "Function not implemented" in error:
        error = _cover_in_two_steps(root)
    if error is not None:
        return remounted | {"cover_error": error}
    return {"mode": "ro", "exit_status": 0, "cover": True, "busy": remounted["error"]}


def _writable_again(root: str, since: float, *, cover: bool) -> dict[str, Any]:
    if cover:
        done = subprocess.run(["umount", "-l", root], capture_output=True, text=True, check=False)
        back: dict[str, Any] = {"mode": "rw", "exit_status": done.returncode, "cover": True}
        if done.returncode != 0:
            back["error"] = done.stderr.strip()[-300:]
    else:
        back = _remount(root, "rw")
    return back | {"runs": runs_under(root, since)}


def read_only_root(target: Target) -> Injection | None:
    """Remount the runs root (a file system of its own) read-only for longer than a lease."""
    root = disk_root(target)  # never remount a shared file system
    if root is None:
        return None
    running = [t for t in target.leased() if t.status == "running"]
    since = time.time()
    detail = _read_only(root)
    if "error" in detail:
        return Injection("the runs root (read-only)", detail)
    cover = bool(detail.get("cover"))
    return Injection(
        target="the runs root (read-only)",
        detail=detail,
        runs=runs_of(running),
        undo=lambda: _writable_again(root, since, cover=cover),
        undo_after_s=target.config.lease_ttl_s + 2.0,
    )


#: The same partial records as a full disk.
FAULT = Fault(read_only_root, may_cause=DISK_FINDINGS)
