"""Fault ``kill_mid_write``: a worker dies half-way through writing a line of its run.

The harness freezes (SIGSTOP) a worker with a running ticket, cuts the run's
``progress.ndjson`` in the middle of its last line, as a write interrupted by the kill would
leave it, and SIGKILLs the worker. Nothing appends after the torn line but the reaper, whose
``run_failed`` must start on a line of its own (issue 15: it was glued onto the torn line and
became unreadable). The ticket is reclaimed within the ``sigkill`` bounds.
"""

from __future__ import annotations

from pathlib import Path

import psutil

from chaos._injection import Fault, Injection, Target, choose, held_by, leases_of, runs_of
from chaos._torn_write import _tear

__all__ = ["FAULT", "kill_mid_write"]


def kill_mid_write(target: Target) -> Injection | None:
    """Freeze a worker with a running run, tear its last progress line, then SIGKILL it."""
    workers = target.workers()
    if len(workers) < 2:
        return None  # the last awake worker is the reaper of everyone else (seed 41)
    leased = target.leased()
    busy = [
        w for w in workers if any(t.status == "running" and t.run_path for t in held_by(w, leased))
    ]
    worker = choose(busy, target.pick, key=lambda w: w.name)
    if worker is None:
        return None
    held = held_by(worker, leased)
    run = sorted(t.run_path for t in held if t.status == "running" and t.run_path)[0]
    stream = Path(run) / "progress.ndjson"
    worker.doomed = True  # its exit is expected: the campaign replaces it
    try:
        process = worker.process()
        process.suspend()
        torn = _tear(stream)
        process.kill()
    except psutil.Error as exc:
        return Injection(f"worker {worker.name} (pid {worker.pid})", {"error": str(exc)})
    detail: dict[str, object] = {"pid": worker.pid, "worker": worker.name, "file": str(stream)}
    if torn is not None:
        detail |= {"size": torn[0], "truncated_to": torn[1]}
    return Injection(
        target=f"worker {worker.name} (pid {worker.pid})",
        detail=detail,
        runs=runs_of(held),
        held=leases_of(held),
    )


#: The torn line stays in the stream (``torn_artifact``); the event it destroyed may be an
#: attempt's start, whose heartbeats then name an attempt the stream never opened.
FAULT = Fault(
    kill_mid_write,
    may_cause=frozenset({"torn_artifact", "stale_heartbeat"}),
    reclaims="sigkill",
)
