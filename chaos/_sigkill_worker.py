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

from chaos._injection import Fault, Injection, Target, signal_worker

__all__ = ["FAULT", "sigkill_worker"]


def sigkill_worker(target: Target) -> Injection | None:
    """SIGKILL a worker (preferably one holding a lease); another worker's reaper recovers."""
    return signal_worker(target, lambda process: process.kill())


#: The reaper terminalizes the lost run and its open branches (seed 11 found that it did not,
#: tests/chaos/test_regressions.py); nothing serious is left to explain.
FAULT = Fault(
    sigkill_worker,
    may_cause=frozenset(),
    reclaims="sigkill",
)
