"""Fault ``torn_write``: cut a running run's ``progress.ndjson`` in the middle of a line.

This is what a crash (or a full disk) in the middle of an append leaves behind: the last line
loses its second half. The executor keeps appending whole lines after it, so the torn line ends
up inside the file, glued to the next event. Run Doctor must notice (``torn_artifact``) and
nothing else may break: the run still ends with a valid ``final.json`` and its ticket still
ends terminal.

The target is the ``progress.ndjson`` of a running ticket's run, sorted by run directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from chaos._injection import Fault, Injection, Target, choose, leases_of

__all__ = ["FAULT", "torn_write"]


def _tear(path: Path) -> tuple[int, int] | None:
    """Truncate ``path`` halfway through its last complete line: (old size, new size)."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    end = data.rfind(b"\n")
    if end <= 0:
        return None
    start = data.rfind(b"\n", 0, end) + 1
    if end - start < 8:
        return None
    cut = start + (end - start) // 2
    with path.open("r+b") as f:
        f.truncate(cut)
        os.fsync(f.fileno())
    return len(data), cut


def torn_write(target: Target) -> Injection | None:
    """Truncate a running run's progress.ndjson mid-line (a torn append)."""
    running = [t for t in target.leased() if t.status == "running" and t.run_path]
    ticket = choose(running, target.pick, key=lambda t: t.run_path or "")
    if ticket is None or ticket.run_path is None:
        return None
    path = Path(ticket.run_path) / "progress.ndjson"
    torn = _tear(path)
    if torn is None:
        return None
    size, cut = torn
    return Injection(
        target=f"{path.name} of ticket {ticket.id}",
        detail={"file": str(path), "size": size, "truncated_to": cut},
        runs=(ticket.run_path,),
        held=leases_of([ticket]),
    )


#: The torn line is the finding; the event it destroyed may be an attempt's start, after
#: which that attempt's heartbeats name an attempt the stream never opened
#: (``stale_heartbeat``) and the node's last attempt the stream shows is the one before: when
#: that one failed and the lost one succeeded, the node's ``status.json`` says ``success``
#: where the stream says ``fail`` (``status_contract_mismatch``; seen in CI, seed 1).
FAULT = Fault(
    torn_write,
    may_cause=frozenset({"torn_artifact", "stale_heartbeat", "status_contract_mismatch"}),
)
