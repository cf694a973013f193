"""Fault ``sigkill_worker``: SIGKILL a worker process while it holds a lease.

The worker dies without a word: no release, no ``final.json``, its heartbeats stop. Its stage
sessions survive it (each runs in its own session). The executor promises that another
worker's reaper sees the owner's pid dead (same host, pid plus start time) and, at its next
pass, kills the orphaned stage groups, terminalizes the run (``final.json`` status ``fail``,
"lost worker") and reclaims the ticket (a compare-and-set on the epoch). The latency from the
kill to the ``reclaimed`` event is held to the ``sigkill`` bounds.

The target is a worker holding a lease when there is one (else any live worker), sorted by name;
the campaign starts a replacement so the fleet keeps its size.
"""

from __future__ import annotations

import psutil

from chaos._injection import (
    Fault,
    Injection,
    Target,
    choose,
    held_by,
    leases_of,
    runs_of,
)

__all__ = ["FAULT", "sigkill_worker"]


def sigkill_worker(target: Target) -> Injection | None:
    """SIGKILL a worker (preferably one holding a lease); another worker's reaper recovers."""
    workers = target.workers()
    leased = target.leased()
    busy = [w for w in workers if held_by(w, leased)]
    worker = choose(busy or workers, target.pick, key=lambda w: w.name)
    if worker is None:
        return None
    held = held_by(worker, leased)
    worker.doomed = True  # its exit is expected: the campaign replaces it
    try:
        worker.process().kill()
    except psutil.Error as exc:
        return Injection(f"worker {worker.name} (pid {worker.pid})", {"error": str(exc)})
    return Injection(
        target=f"worker {worker.name} (pid {worker.pid})",
        detail={"pid": worker.pid, "worker": worker.name},
        runs=runs_of(held),
        held=leases_of(held),
    )


#: The reaper terminalizes the lost run and its open branches (seed 11 found that it did not,
#: tests/chaos/test_regressions.py); nothing serious is left to explain.
FAULT = Fault(
    sigkill_worker,
    may_cause=frozenset(),
    reclaims="sigkill",
)
