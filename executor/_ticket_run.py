"""One claimed ticket: start its run, run its pipeline under the lease, record how it ended.

A slot that claimed a ticket (the session — worker pid, process group, start time, host — is
recorded in the same transaction) starts a run directory (``Queue.start``) and runs the
ticket's pipeline with :func:`executor.run_pipeline`, stamping the lease epoch on every event,
while a :class:`~executor._lease_keeper.LeaseKeeper` keeps the lease alive. The outcome is
then written to the ticket, fenced at its lease: completed, failed (retried while its
``max_error_attempts`` allow), released (the worker shut down) or canceled (from outside),
and counted in the worker's :class:`WorkerStats`.

A ticket whose pipeline cannot be loaded, or whose run directory cannot be written, fails with
that reason; no error kills a slot silently. A runs root that refuses writes as a whole (full,
read-only, over quota: ENOSPC, EROFS, EDQUOT) is not the ticket's fault: the ticket goes back
to ``todo`` with the reason (at most ``root_refusal_releases`` times, then it fails with it)
and the worker pauses claiming (:meth:`~executor._resilience.Fleet.root_refused`).
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from executor._config import ExecutorConfig
from executor._errors import BudgetError, FencedError, GraphError, UsageError
from executor._events import Event
from executor._lease_keeper import Connect, LeaseKeeper
from executor._queue import Lease, Queue, SessionInfo
from executor._reaper import terminalize_lost_run
from executor._resilience import Fleet, RefusedRun, logged, persist, say
from executor._runner import RunResult, new_run_id, run_pipeline
from executor._stage import fd_limit, out_of_fds
from rundoctor.clock import Clock

__all__ = [
    "FDS_RAN_OUT",
    "ROOT_REFUSALS",
    "ROOT_REFUSED",
    "Slots",
    "WorkerStats",
    "fail_for_good",
    "finish_refused",
    "run_leased",
]

#: The errors of a runs root that refuses writes as a whole: full, read-only, over quota.
ROOT_REFUSALS = frozenset({errno.ENOSPC, errno.EROFS, errno.EDQUOT})
#: How a release for such a refusal starts its reason (counted in the ticket's log).
ROOT_REFUSED = "the runs root refused writes"
#: How a release for a worker out of file descriptors (``OUT_OF_FDS``: its own ``ulimit
#: -n``, or the host's table) starts its reason, counted with the runs root's refusals: no
#: fault of the ticket either, which would meet it on no other worker.
FDS_RAN_OUT = "this worker ran out of file descriptors"


@dataclass
class WorkerStats:
    """What a worker did; one object shared by its slots (guarded by ``lock``)."""

    claimed: int = 0
    completed: int = 0
    failed: int = 0
    released: int = 0
    fenced: int = 0
    reclaimed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self.lock:
            for key, n in counts.items():
                setattr(self, key, getattr(self, key) + n)

    def to_json(self) -> dict[str, int]:
        return {
            k: getattr(self, k)
            for k in ("claimed", "completed", "failed", "released", "fenced", "reclaimed")
        }


@dataclass(frozen=True, slots=True)
class Slots:
    """What the slots of one worker share (``run_ticket`` builds one for its single ticket);
    ``connect`` opens each thread's own connection to the queue; ``log`` says how a ticket
    ended when it did not run (``run_ticket``'s caller says that itself, in its one line)."""

    connect: Connect
    root: Path
    config: ExecutorConfig
    stop: threading.Event
    stats: WorkerStats
    clock: Clock
    fleet: Fleet
    log: Callable[[str], None] = say


def run_leased(
    ctx: Slots,
    queue: Queue,
    lease: Lease,
    session: SessionInfo,
    on_event: Callable[[Event], None] | None = None,
) -> RunResult | None:
    """Start the ticket's run under ``lease``, run it with lease heartbeats, record the
    outcome; the result (None when the run never started)."""
    run_id = new_run_id(ctx.clock)
    tid = lease.ticket_id

    def started() -> bool:
        t = queue.get(tid)
        return t.run_id == run_id and t.lease_epoch == lease.epoch

    try:
        persist(
            lambda: queue.start(
                lease,
                run_id=run_id,
                run_path=ctx.root / run_id,
                session=session,
                lease_ttl_s=ctx.config.lease_ttl_s,
                alive_since=lease.claimed_mono,
            ),
            f"start of ticket {tid}",
            ctx.config,
            ctx.fleet,
            landed=started,
        )
    except FencedError:
        ctx.stats.add(fenced=1)
        return None
    with LeaseKeeper(ctx.connect, lease, ctx.config, ctx.stop) as keeper:
        result, broken, refused = _run(ctx, lease, run_id, keeper.cancel, on_event)
    if refused:
        why = broken if broken.startswith(FDS_RAN_OUT) else f"{ROOT_REFUSED}: {broken}"
        ctx.fleet.left_unfinished(RefusedRun(ctx.root / run_id, run_id, why, lease.epoch))
    if keeper.fenced.is_set():
        ctx.stats.add(fenced=1)
        return result
    if result is not None:
        ctx.fleet.root_took_writes()
        finish_refused(ctx)
    _record_outcome(ctx, queue, keeper.lease, result, broken, refused)
    return result


def finish_refused(ctx: Slots) -> None:
    """Give the runs the runs root refused their ``final.json`` (status ``fail``, the refusal
    as the reason): every run that got a directory ends terminal, not only its ticket. Tried
    when a run wrote its own ``final.json`` (the root takes writes again) and when the worker
    stops; one the root refuses again waits for the next chance."""
    for run in ctx.fleet.unfinished():
        try:
            terminalize_lost_run(
                run.path,
                run_id=run.run_id,
                reason=run.reason,
                epoch=run.epoch,
                now=ctx.clock(),
                by="executor.worker",
            )
        except OSError:
            ctx.fleet.left_unfinished(run)


def _run(
    ctx: Slots,
    lease: Lease,
    run_id: str,
    cancel: threading.Event,
    on_event: Callable[[Event], None] | None,
) -> tuple[RunResult | None, str, bool]:
    """Run the ticket's pipeline: ``(result, why it could not run, the runs root refused)``."""
    root, graph = ctx.root, lease.ticket.graph_path
    try:
        result = run_pipeline(
            Path(graph),
            root,
            ctx.config,
            run_id=run_id,
            epoch=lease.epoch,
            clock=ctx.clock,
            cancel=cancel,
            on_event=on_event,
        )
    except Exception as exc:
        fds = _out_of_fds(exc)  # reading the graph, writing the run, starting a stage
        if fds is not None:
            return None, fds, True
        return _broken(exc, graph, root, run_id)
    return result, "", False


def _out_of_fds(exc: BaseException) -> str | None:
    """Why the run could not go on when ``exc`` (or what it was raised from) is EMFILE or
    ENFILE: this worker's limit, which the ticket would meet on no other worker."""
    cause = out_of_fds(exc)
    if cause is None:
        return None
    return (
        f"{FDS_RAN_OUT} ({cause}; it has {fd_limit()}): raise its limit, or run it with a "
        "lower --concurrency"
    )


def _broken(exc: Exception, graph: str, root: Path, run_id: str) -> tuple[None, str, bool]:
    """Why the ticket's run could not be run, and whether the runs root refused it."""
    if isinstance(exc, (GraphError, UsageError, BudgetError)):
        # Deleted or made invalid after enqueue: this ticket's fault, not the slot's.
        return None, f"the ticket's pipeline {graph!r} cannot be run: {exc}", False
    if isinstance(exc, OSError):  # ENOSPC, EROFS, EACCES under the runs root
        refused = exc.errno in ROOT_REFUSALS  # the runs root refused writes as a whole
        broken = (
            f"the run directory {str(root / run_id)!r} could not be written "
            f"({exc}); free space or fix permissions under {str(root)!r}"
        ) + ("" if refused else ", then enqueue again")
        return None, broken, refused
    # A bug must fail its ticket, never kill the slot silently.
    return None, f"executor error: {type(exc).__name__}: {exc}", False


def _record_outcome(
    ctx: Slots,
    queue: Queue,
    lease: Lease,
    result: RunResult | None,
    broken: str,
    refused: bool,
) -> None:
    """Write the run's outcome to the ticket (fenced at ``lease``): complete, release, cancel
    or fail it; a pipeline that could not run (``broken``) fails it for good, a runs root that
    refused writes (``refused``) gives it back."""
    tid = lease.ticket_id
    config, fleet, stats, stop = ctx.config, ctx.fleet, ctx.stats, ctx.stop
    try:
        if result is None and refused:
            _root_refused(queue, lease, broken, ctx)
        elif result is None:
            ctx.log(f"ticket {tid} failed: {broken}")
            fail_for_good(queue, lease, broken, config, fleet)
            stats.add(failed=1)
        elif result.status == "success":
            run = result.to_json()
            persist(
                lambda: queue.complete(lease, result=run),
                f"completion of ticket {tid}",
                config,
                fleet,
                landed=lambda: logged(queue, lease, "completed"),
            )
            stats.add(completed=1)
        elif result.status == "canceled" and stop.is_set():
            persist(
                lambda: queue.release(lease, "worker shut down; the run was canceled"),
                f"release of ticket {tid}",
                config,
                fleet,
                landed=lambda: logged(queue, lease, "released"),
            )
            stats.add(released=1)
        elif result.status == "canceled":
            # Canceled from outside (SIGINT of `doctor run --db`): the ticket is canceled too.
            why = result.failure_reason or "the run was canceled"
            persist(
                lambda: queue.cancel(tid, why),
                f"cancel of ticket {tid}",
                config,
                fleet,
                landed=lambda: queue.get(tid).terminal,
            )
            stats.add(failed=1)
        else:
            # Retryable: the ticket's max_error_attempts decides how many failed runs it gets.
            why = result.failure_reason or result.status
            persist(
                lambda: queue.fail(lease, reason=why, retryable=True),
                f"fail of ticket {tid}",
                config,
                fleet,
                landed=lambda: logged(queue, lease, "failed"),
            )
            stats.add(failed=1)
    except FencedError:
        stats.add(fenced=1)


def _root_refused(queue: Queue, lease: Lease, why: str, ctx: Slots) -> None:
    """The runs root refused the run's writes: give the ticket back (``todo``, the reason
    recorded) and pause claiming, or fail it once it was given back
    ``config.root_refusal_releases`` times for that reason."""
    tid, config, fleet, stats = lease.ticket_id, ctx.config, ctx.fleet, ctx.stats
    before = persist(
        lambda: sum(
            1
            for e in queue.events(tid)
            if e.event == "released"
            and str(e.detail.get("reason", "")).startswith((ROOT_REFUSED, FDS_RAN_OUT))
        ),
        f"events of ticket {tid}",
        config,
        fleet,
    )
    n, limit = (before or 0) + 1, config.root_refusal_releases
    pause = fleet.root_refused(config)
    if n > limit:
        again = f" (refused {n} times, released {n - 1})" if limit else ""
        reason = f"{why}{again}, then enqueue again"
        ctx.log(f"ticket {tid} failed: {reason}")
        fail_for_good(queue, lease, reason, config, fleet)
        stats.add(failed=1)
        return
    if why.startswith(FDS_RAN_OUT):
        reason = f"{FDS_RAN_OUT} ({n} of {limit} releases){why[len(FDS_RAN_OUT) :]}"
    else:
        reason = f"{ROOT_REFUSED} ({n} of {limit} releases): {why}"
    ctx.log(f"ticket {tid} back to todo: {reason}; claims pause {pause:g} s")
    persist(
        lambda: queue.release(lease, reason),
        f"release of ticket {tid}",
        config,
        fleet,
        landed=lambda: logged(queue, lease, "released"),
    )
    stats.add(released=1)


def fail_for_good(
    queue: Queue, lease: Lease, reason: str, config: ExecutorConfig, fleet: Fleet
) -> None:
    """Fail the ticket, not retryable: its pipeline or run directory is unusable."""
    persist(
        lambda: queue.fail(lease, reason=reason, retryable=False),
        f"fail of ticket {lease.ticket_id}",
        config,
        fleet,
        landed=lambda: logged(queue, lease, "failed"),
    )
