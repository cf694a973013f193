"""Fault ``sigstop_worker``: freeze a worker with SIGSTOP, and wake it with SIGCONT later.

A frozen worker is alive (its pid exists) but silent: its heartbeats stop, so its lease
expires and another worker's reaper reclaims the ticket once ``lease_ttl_s`` passed, killing
the frozen worker's stage groups and terminalizing its run first. The freeze lasts longer than
the lease plus two reaper passes, so the worker always wakes up *after* its lease was taken:
its first heartbeat is fenced (stale epoch) or its watchdog fences it, and it must write
nothing more for the ticket — the fencing the checkers verify. The latency from the freeze to
the ``reclaimed`` event is held to the ``sigstop`` bounds.

The target is a worker holding a lease when there is one, never the last unfrozen worker
(someone must be left to reap).
"""

from __future__ import annotations

from typing import Any

import psutil

from chaos._injection import (
    Fault,
    Injection,
    Target,
    WorkerHandle,
    choose,
    held_by,
    leases_of,
    runs_of,
)

__all__ = ["FAULT", "sigstop_worker"]


def _resume(worker: WorkerHandle) -> dict[str, Any]:
    worker.frozen = False
    try:
        worker.process().resume()
    except psutil.Error as exc:
        return {"error": str(exc)}
    return {"pid": worker.pid}


def sigstop_worker(target: Target) -> Injection | None:
    """SIGSTOP a worker until its lease was reclaimed, then SIGCONT it (it must stay fenced)."""
    workers = target.workers()
    if len(workers) < 2:
        return None  # the last awake worker is the reaper of everyone else
    leased = target.leased()
    busy = [w for w in workers if held_by(w, leased)]
    worker = choose(busy or workers, target.pick, key=lambda w: w.name)
    if worker is None:
        return None
    held = held_by(worker, leased)
    try:
        worker.process().suspend()
    except psutil.Error as exc:
        return Injection(f"worker {worker.name} (pid {worker.pid})", {"error": str(exc)})
    worker.frozen = True
    cfg = target.config
    hold = cfg.lease_ttl_s + 2 * cfg.reaper_interval_s + 1.0
    return Injection(
        target=f"worker {worker.name} (pid {worker.pid})",
        detail={"pid": worker.pid, "worker": worker.name, "frozen_for_s": hold},
        runs=runs_of(held),
        held=leases_of(held),
        undo=lambda: _resume(worker),
        undo_after_s=hold,
    )


#: The woken worker's late events go aside (``late-events.ndjson``), never after the
#: reaper's terminal event (seed 2 found that they did, tests/chaos/test_regressions.py).
FAULT = Fault(
    sigstop_worker,
    may_cause=frozenset(),
    reclaims="sigstop",
)
