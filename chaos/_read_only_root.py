"""Fault ``read_only_root``: the runs root turns read-only for longer than a lease.

Only when the runs root is a file system of its own (``doctor chaos run --runs-tmpfs MB``, as
root): the harness remounts it read-only (``mount -o remount,ro``), as the kernel does to a
file system after an I/O error, and read-write again ``lease_ttl_s + 2`` seconds later. On
any other runs root the fault is skipped.

A file system with a file open for writing (a stage's log, a worker's stream) refuses to be
remounted read-only (``EBUSY``, "mount point is busy"): in a campaign that is nearly always.
The harness then covers the runs root with a read-only bind mount of itself: every open for
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

import os
import subprocess
import time
from typing import Any

from chaos._injection import DISK_FINDINGS, Fault, Injection, Target, runs_of, runs_under

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


def _read_only(root: str) -> dict[str, Any]:
    """Make ``root`` refuse writes: remount it read-only, or, when a file open for writing
    keeps it busy, cover it with a read-only bind mount of itself (``cover``)."""
    remounted = _remount(root, "ro")
    if "error" not in remounted:
        return remounted
    status, error = _mount("--bind", root, root)
    if status == 0:
        status, error = _mount("-o", "remount,bind,ro", root)
        if status != 0:
            subprocess.run(["umount", "-l", root], capture_output=True, check=False)
    if status != 0:
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
    root = str(target.runs_root)
    if target.pending("disk_full") or target.pending("read_only_root"):
        return None
    if not os.path.ismount(root):
        return None  # never remount a shared file system: --runs-tmpfs gives the runs their own
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
