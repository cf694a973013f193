"""Fault ``disk_full``: the runs root fills up for longer than a lease.

Only when the runs root is a file system of its own (``doctor chaos run --runs-tmpfs MB``
mounts a tmpfs there, as root): the harness writes a filler file until the disk refuses
(``ENOSPC``), and removes it ``lease_ttl_s + 2`` seconds later. On any other runs root the
fault is not applicable (a skip that says so): the harness never fills a disk it shares with
anything else.

The executor promises: ``final.json`` is retried; a run whose directory cannot be written ends
with its ticket failed and the reason ("could not be written ... No space left on device");
the reaper reclaims with the reason when it cannot terminalize; no slot dies, no traceback.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

from chaos._injection import DISK_FINDINGS, Fault, Injection, Target, disk_root, runs_of, runs_under

__all__ = ["FAULT", "FILLER", "disk_full"]

#: The filler's name, in the runs root (no run id looks like it).
FILLER = ".chaos-disk-full"


def _fill(path: str) -> int:
    """Write zeros to ``path`` until the disk is full; the bytes written."""
    written = 0
    chunk = b"\0" * (1 << 16)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            try:
                n = os.write(fd, chunk)
            except OSError:
                return written  # ENOSPC: full
            if n == 0:
                return written
            written += n
    finally:
        os.close(fd)


def _free(path: str, root: str, since: float) -> dict[str, Any]:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return {"runs": runs_under(root, since)}


def disk_full(target: Target) -> Injection | None:
    """Fill the runs root (a file system of its own) for longer than a lease, then free it."""
    root = disk_root(target)  # never fill a shared disk
    if root is None:
        return None
    running = [t for t in target.leased() if t.status == "running"]
    filler = os.path.join(root, FILLER)
    since = time.time()
    written = _fill(filler)
    return Injection(
        target="the runs root (full)",
        detail={"filled_bytes": written},
        runs=runs_of(running),
        undo=lambda: _free(filler, root, since),
        undo_after_s=target.config.lease_ttl_s + 2.0,
    )


#: A run caught by the full disk may lack ``final.json`` (its ticket says why), end mid-line
#: or lose the events that would have closed an attempt or a fan-out.
FAULT = Fault(disk_full, may_cause=DISK_FINDINGS)
