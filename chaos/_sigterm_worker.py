"""Fault ``sigterm_worker``: SIGTERM a worker, the polite way to stop one.

The executor promises a graceful shutdown: the worker cancels its running pipelines (their
stage groups get SIGTERM, then SIGKILL after the stage grace), each run ends with
``final.json`` status ``canceled``, and the tickets are released back to ``todo`` without
counting an error. No reaper is involved; the campaign starts a replacement worker.

The target is a worker holding a lease when there is one (else any live worker).
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

__all__ = ["FAULT", "sigterm_worker"]


def sigterm_worker(target: Target) -> Injection | None:
    """SIGTERM a worker: its runs end canceled and its tickets are released, not lost."""
    workers = target.workers()
    leased = target.leased()
    busy = [w for w in workers if held_by(w, leased)]
    worker = choose(busy or workers, target.pick, key=lambda w: w.name)
    if worker is None:
        return None
    held = held_by(worker, leased)
    worker.doomed = True
    try:
        worker.process().terminate()
    except psutil.Error as exc:
        return Injection(f"worker {worker.name} (pid {worker.pid})", {"error": str(exc)})
    return Injection(
        target=f"worker {worker.name} (pid {worker.pid})",
        detail={"pid": worker.pid, "worker": worker.name},
        runs=runs_of(held),
        held=leases_of(held),
    )


#: A canceled run is terminal and healthy; nothing at error may follow.
FAULT = Fault(sigterm_worker, may_cause=frozenset())
