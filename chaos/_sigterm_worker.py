"""Fault ``sigterm_worker``: SIGTERM a worker, the polite way to stop one.

The executor promises a graceful shutdown: the worker cancels its running pipelines (their
stage groups get SIGTERM, then SIGKILL after the stage grace), each run ends with
``final.json`` status ``canceled``, and the tickets are released back to ``todo`` without
counting an error. No reaper is involved; the campaign starts a replacement worker.

The target is a worker holding a lease when there is one (else any live worker).
"""

from __future__ import annotations

from chaos._injection import Fault, Injection, Target, signal_worker

__all__ = ["FAULT", "sigterm_worker"]


def sigterm_worker(target: Target) -> Injection | None:
    """SIGTERM a worker: its runs end canceled and its tickets are released, not lost."""
    return signal_worker(target, lambda process: process.terminate())


#: A canceled run is terminal and healthy; nothing at error may follow.
FAULT = Fault(sigterm_worker, may_cause=frozenset())
