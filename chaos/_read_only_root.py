"""Fault ``read_only_root``: the runs root turns read-only for longer than a lease.

Only when the runs root is a file system of its own (``doctor chaos run --runs-tmpfs MB``, as
root): the harness remounts it read-only (``mount -o remount,ro``), as the kernel does to a
file system after an I/O error, and read-write again ``lease_ttl_s + 2`` seconds later. On
any other runs root the fault is skipped.

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


def _remount(root: str, mode: str) -> dict[str, Any]:
    done = subprocess.run(
        ["mount", "-o", f"remount,{mode}", root], capture_output=True, text=True, check=False
    )
    out: dict[str, Any] = {"mode": mode, "exit_status": done.returncode}
    if done.returncode != 0:
        out["error"] = done.stderr.strip()[-300:]
    return out


def _writable_again(root: str, since: float) -> dict[str, Any]:
    return _remount(root, "rw") | {"runs": runs_under(root, since)}


def read_only_root(target: Target) -> Injection | None:
    """Remount the runs root (a file system of its own) read-only for longer than a lease."""
    root = str(target.runs_root)
    if target.pending("disk_full") or target.pending("read_only_root"):
        return None
    if not os.path.ismount(root):
        return None  # never remount a shared file system: --runs-tmpfs gives the runs their own
    running = [t for t in target.leased() if t.status == "running"]
    since = time.time()
    detail = _remount(root, "ro")
    if "error" in detail:
        return Injection("the runs root (read-only)", detail)
    return Injection(
        target="the runs root (read-only)",
        detail=detail,
        runs=runs_of(running),
        undo=lambda: _writable_again(root, since),
        undo_after_s=target.config.lease_ttl_s + 2.0,
    )


#: The same partial records as a full disk.
FAULT = Fault(read_only_root, may_cause=DISK_FINDINGS)
