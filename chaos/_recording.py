"""A campaign's worker process: the executor's own worker, with every ticket operation recorded.

:func:`serve_worker` runs :func:`executor.run_worker` unchanged, except that each queue the
worker opens (one per slot, one per lease keeper, one for its reaper) is wrapped in a
:class:`RecordingQueue`, through the queue opener the worker takes as a parameter
(``opener``). The wrapper writes an ``invoke`` op before each ticket operation and ``ok``
(accepted), ``fail`` (rejected: a fenced write, a lost compare-and-set) or ``info`` (unknown:
the database failed mid-call) after it, to the worker's own history file. A worker killed
mid-operation leaves a bare ``invoke``; the campaign closes it with ``info``.

Claims that find nothing are not recorded (idle slots poll twice a second); a claim that got a
lease is recorded as ``invoke`` then ``ok``, both written once it returned.

>>> q = RecordingQueue(open_queue(":memory:", clock=lambda: 5.0), None, "w1", clock=lambda: 5.0)
>>> _ = q.enqueue("x", "/p.dot")
>>> lease = q.claim("w1/0", lease_ttl_s=10, session=SessionInfo("s", 1, 1, None, "h"))
>>> [(o.type, o.f, o.epoch) for o in q.ops]
[('invoke', 'claim', None), ('ok', 'claim', 1)]
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar, cast

from chaos._history import Op, Recorder
from executor import (
    ExecutorConfig,
    FencedError,
    Lease,
    Queue,
    QueueError,
    SessionInfo,
    Ticket,
    open_queue,
    run_worker,
)
from rundoctor.clock import Clock

__all__ = ["RecordingQueue", "serve_worker"]

T = TypeVar("T")


class RecordingQueue:
    """Delegates everything to ``inner``; records the ticket operations (see the module doc).

    With ``recorder=None`` the ops are kept in :attr:`ops` (for tests).
    """

    def __init__(
        self, inner: Queue, recorder: Recorder | None, process: str, *, clock: Clock = time.time
    ) -> None:
        self._inner = inner
        self._recorder = recorder
        self._process = process
        self._clock = clock
        self.ops: list[Op] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _record(self, op: Op) -> None:
        if self._recorder is None:
            self.ops.append(op)
        else:
            self._recorder.record(op)

    def _op(
        self,
        f: str,
        worker: str,
        ticket: str | None,
        epoch: int | None,
        call: Callable[[], T],
        *,
        value: Mapping[str, Any],
        result: Callable[[T], dict[str, Any]] = lambda _: {},
    ) -> T:
        def op(kind: str, value: Mapping[str, Any], error: str = "") -> Op:
            return Op(
                self._clock(), kind, f, worker, self._process, ticket, epoch, dict(value), error
            )

        self._record(op("invoke", value))
        try:
            out = call()
        except FencedError as exc:
            self._record(op("fail", {}, str(exc)))
            raise
        except QueueError as exc:
            self._record(op("info", {}, str(exc)))
            raise
        self._record(op("ok", result(out)))
        return out

    def claim(
        self,
        worker: str,
        *,
        lease_ttl_s: float,
        session: SessionInfo,
        ticket_id: str | None = None,
    ) -> Lease | None:
        t0 = self._clock()
        lease = self._inner.claim(
            worker, lease_ttl_s=lease_ttl_s, session=session, ticket_id=ticket_id
        )
        if lease is not None:
            args = (worker, self._process, lease.ticket_id)
            self._record(Op(t0, "invoke", "claim", *args, None, {"pid": session.pid}))
            self._record(Op(self._clock(), "ok", "claim", *args, lease.epoch))
        return lease

    def start(
        self,
        lease: Lease,
        *,
        run_id: str,
        run_path: Any,
        session: SessionInfo,
        lease_ttl_s: float | None = None,
        alive_since: float | None = None,
    ) -> Ticket:
        value = {"run_id": run_id, "run_path": str(run_path)}
        return self._op(
            "start",
            lease.worker,
            lease.ticket_id,
            lease.epoch,
            lambda: self._inner.start(
                lease,
                run_id=run_id,
                run_path=run_path,
                session=session,
                lease_ttl_s=lease_ttl_s,
                alive_since=alive_since,
            ),
            value=value,
        )

    def heartbeat(
        self,
        lease: Lease,
        *,
        lease_ttl_s: float,
        interval_s: float | None = None,
        alive_since: float | None = None,
    ) -> None:
        def call() -> None:
            self._inner.heartbeat(
                lease, lease_ttl_s=lease_ttl_s, interval_s=interval_s, alive_since=alive_since
            )

        self._op("heartbeat", lease.worker, lease.ticket_id, lease.epoch, call, value={})

    def complete(self, lease: Lease, *, result: Mapping[str, Any]) -> Ticket:
        value = {"run_id": result.get("run_id"), "status": result.get("status")}
        return self._op(
            "complete",
            lease.worker,
            lease.ticket_id,
            lease.epoch,
            lambda: self._inner.complete(lease, result=result),
            value=value,
            result=lambda t: {"status": t.status},
        )

    def fail(self, lease: Lease, *, reason: str, retryable: bool) -> Ticket:
        return self._op(
            "fail",
            lease.worker,
            lease.ticket_id,
            lease.epoch,
            lambda: self._inner.fail(lease, reason=reason, retryable=retryable),
            value={"reason": reason[:300], "retryable": retryable},
            result=lambda t: {"status": t.status},
        )

    def release(self, lease: Lease, reason: str) -> Ticket:
        return self._op(
            "release",
            lease.worker,
            lease.ticket_id,
            lease.epoch,
            lambda: self._inner.release(lease, reason),
            value={"reason": reason},
            result=lambda t: {"status": t.status},
        )

    def reclaim(self, ticket_id: str, *, expected_epoch: int, **kw: Any) -> Ticket:
        return self._op(
            "reclaim",
            f"{self._process}/reaper",
            ticket_id,
            expected_epoch,
            lambda: self._inner.reclaim(ticket_id, expected_epoch=expected_epoch, **kw),
            value={"reason": str(kw.get("reason", ""))},
            result=lambda t: {"status": t.status, "new_epoch": t.lease_epoch},
        )

    def cancel(self, ticket_id: str, reason: str) -> Ticket:
        return self._op(
            "cancel",
            f"{self._process}/cancel",
            ticket_id,
            None,
            lambda: self._inner.cancel(ticket_id, reason),
            value={"reason": reason[:300]},
            result=lambda t: {"status": t.status},
        )


#: Seconds between two looks at whether the campaign that started a worker still runs.
_PARENT_POLL_S = 0.5


def _stop_with_parent(stop: threading.Event, parent: int) -> None:
    """Set ``stop`` once ``parent``, the campaign that started this worker, is no longer its
    parent (the worker was handed to another, or was from the start: killed before the
    worker ran): a campaign killed outright (SIGKILL, the OOM killer) cannot stop its
    workers, which ran on with its queue, orphaned, claiming nothing forever. They now stop
    as at SIGTERM: their runs canceled, their tickets released."""

    def watch() -> None:
        while os.getppid() == parent and not stop.wait(_PARENT_POLL_S):
            pass
        stop.set()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def serve_worker(
    url: str,
    root: Path,
    config: ExecutorConfig,
    *,
    name: str,
    history: Path,
    concurrency: int = 1,
    campaign_pid: int | None = None,
) -> dict[str, int]:
    """Run one recorded worker until SIGTERM/SIGINT, or until ``campaign_pid`` (the campaign
    that started it, its parent) is gone; returns the worker's stats.

    Called from a worker process's main thread (``python -m chaos worker``).
    """
    recorder = Recorder(history)

    # The executor's worker opens every queue it uses through the opener it is given; wrapping
    # it is the whole instrumentation, and the worker's logic runs exactly as in production.
    def recording_open(
        target: str | os.PathLike[str], *, clock: Clock = time.time, create: bool = True
    ) -> Queue:
        queue = open_queue(target, clock=clock, create=create)
        return cast(Queue, RecordingQueue(queue, recorder, name))

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    _stop_with_parent(stop, os.getppid() if campaign_pid is None else campaign_pid)
    try:
        stats = run_worker(
            url,
            root,
            config,
            name=name,
            concurrency=concurrency,
            stop=stop,
            poll_s=0.2,
            wait_for_database=True,  # a replacement may start while the database restarts
            opener=recording_open,
        )
    finally:
        recorder.close()
    return stats.to_json()
