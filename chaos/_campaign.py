"""The campaign: real worker processes, a seeded workload, faults from a seeded schedule.

:func:`run_campaign` does, in order:

1. builds the workload from the seed (DOT files in ``OUT/campaign/pipelines``) and plans the
   fault schedule from the same ``random.Random(seed)``; both go into the ``meta`` record.
   The arrivals (which pipeline the n-th ticket runs) come from a generator of their own,
   ``random.Random(f"{seed}/arrivals")``, so nothing that happens at run time (a slot that
   frees early, an enqueue refused while the database is away) shifts them;
2. starts ``workers`` worker processes (``python -m chaos worker``: the executor's worker with
   its ticket operations recorded), each running the production state machine with the short
   budgets of :data:`chaos.CHAOS_EXECUTOR` and its own reaper;
3. for ``duration_s``: keeps the queue fed with tickets drawn from the workload, injects each
   scheduled fault when it is due (psutil signals, a torn file, a held lock), undoes the ones
   that end (SIGCONT, the lock's release), and replaces workers that exited;
4. drains: no new tickets or faults, until every ticket is terminal (or ``drain_timeout_s``);
5. stops the workers (SIGTERM), collects the history (:mod:`chaos._collect`), runs every
   checker and writes ``history.ndjson``, ``report.md`` and ``report.json`` into ``out``.

The seed fixes the workload, the sequence of arrivals and the schedule (each fault's kind, time
and ``pick``); the operating system still decides the interleaving, hence how many arrivals
a campaign gets through and which candidates a ``pick`` chooses among, so a replay recreates
the conditions of a failure, not every instruction.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, ParamSpec, TypeVar

import chaos
from chaos._checkers import Verdict, check
from chaos._collect import check_out, collect, prepare_db, prepare_out
from chaos._config import CampaignConfig, plan_schedule
from chaos._errors import CampaignError, FaultNotApplicable, FaultSkipped
from chaos._faults import select_faults
from chaos._history import FaultRecord, History, Meta, Planned, Recorder, WorkerRecord
from chaos._injection import (
    DATABASE_FAULTS,
    DATABASE_UNAVAILABLE,
    NOT_APPLICABLE,
    Fault,
    Injection,
    WorkerHandle,
    database_unavailable,
)
from chaos._runs_tmpfs import mount_runs
from chaos._workload import Pipeline, build_workload
from executor import ExecutorConfig, ExecutorError, Queue, QueueError, Ticket, open_queue
from rundoctor.clock import Clock
from rundoctor.passwords import redact

__all__ = ["CampaignResult", "run_campaign"]

Log = Callable[[str], None]
_TICK_S = 0.1
#: Seconds before a fault that found no candidate is tried again (within the campaign).
_RETRY_S = 0.5


@dataclass(frozen=True, slots=True)
class CampaignResult:
    """A finished campaign: its configuration, history, verdicts and where it was written."""

    config: CampaignConfig
    history: History
    verdicts: tuple[Verdict, ...]
    elapsed_s: float
    out: Path

    @property
    def ok(self) -> bool:
        """True when every invariant held."""
        return all(v.ok for v in self.verdicts)


@dataclass(slots=True)
class _Pending:
    due: float
    fault: str
    target: str
    undo: Callable[[], dict[str, Any]]


class _Campaign:
    """The running campaign; also the :class:`chaos._injection.Target` faults see."""

    def __init__(
        self, cfg: CampaignConfig, url: str, executor: ExecutorConfig, clock: Clock, log: Log
    ) -> None:
        self.cfg, self.url, self.config, self.clock, self.log = cfg, url, executor, clock, log
        self.pick = 0
        self.dir = cfg.out / "campaign"
        self.db_control = cfg.db_control
        self.scratch = self.dir / "faults"
        self.runs_root = self.dir / "runs"
        self.handles: list[WorkerHandle] = []
        self.owed = 0  # replacements deferred while the database is away
        self.next_arrival: Pipeline | None = None  # drawn, not enqueued yet
        self.undos: list[_Pending] = []
        self.ids: set[str] = set()
        self.recorder = Recorder(self.dir / "harness.ndjson")
        self.queue: Queue = open_queue(url, clock=clock)
        self.config_file = self.dir / "executor.json"
        self.config_file.write_text(json.dumps(executor.to_json() | {"env": None}, indent=2))

    # -- the Target protocol -------------------------------------------------------------

    def workers(self) -> list[WorkerHandle]:
        alive = [h for h in self.handles if h.popen.poll() is None]
        return sorted((h for h in alive if not (h.frozen or h.doomed)), key=lambda h: h.name)

    def leased(self) -> list[Ticket]:
        found = self.queue.tickets(status=("claimed", "running"))
        return sorted((t for t in found if t.id in self.ids), key=lambda t: t.id)

    def pending(self, fault: str) -> bool:
        return any(p.fault == fault for p in self.undos)

    def enqueue(self, title: str, graph: Path) -> Ticket:
        ticket = self.queue.enqueue(title, str(graph))
        self.ids.add(ticket.id)
        return ticket

    def database_away(self) -> bool:
        """True while a fault holds the database (a held lock, a storm, an outage)."""
        return any(self.pending(f) for f in DATABASE_FAULTS)

    # -- workers -------------------------------------------------------------------------

    def spawn(self) -> WorkerHandle:
        name = f"w{len(self.handles) + 1}"
        wdir = self.dir / "workers"
        command = [
            sys.executable,
            "-m",
            "chaos",
            "worker",
            "--db",
            self.url,
            "--root",
            str(self.runs_root),
            "--name",
            name,
            "--config",
            str(self.config_file),
            "--history",
            str(wdir / f"{name}.ndjson"),
            "--concurrency",
            str(self.cfg.concurrency),
            "--campaign-pid",  # the worker stops when the campaign is gone, however it ended
            str(os.getpid()),
        ]
        # Run from the directory holding the packages, so `-m chaos` finds this checkout.
        home = Path(chaos.__file__).resolve().parents[1]
        try:
            with (wdir / f"{name}.log").open("ab") as out:
                popen = subprocess.Popen(
                    command, cwd=home, stdin=subprocess.DEVNULL, stdout=out, stderr=out
                )
        except OSError as exc:
            raise CampaignError(f"cannot start worker {name}: {exc}") from exc
        handle = WorkerHandle(name, popen)
        self.handles.append(handle)
        self.recorder.record(WorkerRecord(self.clock(), name, handle.pid, "start"))
        return handle

    def supervise(self, *, replace_dead: bool) -> None:
        """Record exits; keep the fleet at its size.

        Replacements wait while the database is held away: a worker that cannot reach its
        queue when it starts is a configuration error (exit 2), not a fault to survive.
        """
        if replace_dead and not self.database_away():
            while self.owed > 0:
                self.owed -= 1
                self.spawn()
        for h in list(self.handles):
            code = h.popen.poll()
            if code is None or h.exited:
                continue
            h.exited = True
            said, traceback = self.last_words(h)
            self.recorder.record(
                WorkerRecord(
                    self.clock(),
                    h.name,
                    h.pid,
                    "exit",
                    code,
                    expected=h.doomed,
                    said=said,
                    traceback=traceback,
                )
            )
            if not h.doomed:
                self.log(
                    f"worker {h.name} (pid {h.pid}) exited by itself with status {code}: {said}"
                )
            if replace_dead and not self.database_away():
                self.spawn()
            elif replace_dead:
                self.owed += 1

    def last_words(self, h: WorkerHandle) -> tuple[str, bool]:
        """The last line of a worker's log, and whether the log holds a traceback."""
        try:
            text = (self.dir / "workers" / f"{h.name}.log").read_text(errors="replace")
        except OSError:
            return "", False
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return (lines[-1][:500] if lines else ""), "Traceback (most recent call last)" in text

    def stop_workers(self) -> None:
        self.undo_due(all_now=True)  # wake the frozen, free the lock: nobody is left stuck
        for h in self.handles:
            if h.popen.poll() is None:
                h.doomed = True
                h.popen.terminate()
        deadline = time.monotonic() + 20
        for h in self.handles:
            try:
                h.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                h.popen.kill()
                h.popen.wait()
        self.supervise(replace_dead=False)

    # -- faults and tickets --------------------------------------------------------------

    def revive(self) -> None:
        """Replace the harness's connection if the server dropped it (a restart, an outage
        that ended): the first call through it fails and the next one connects afresh. A
        fault would otherwise meet the dead connection and be skipped as ``database
        unavailable`` with the database back up. A database still away fails the fault's own
        read too (the reason then says so: ``connection refused``), and it is skipped."""
        with contextlib.suppress(QueueError):
            self.queue.now()

    def inject(self, planned: Planned, fault: Fault, *, last_try: bool = True) -> bool:
        """Fire ``fault``; False when it found no candidate and this is not its ``last_try``
        (nothing is recorded then: the caller tries it again a little later)."""
        self.pick = planned.pick
        self.revive()
        now = self.clock()
        try:
            got: Injection | None = fault.inject(self)
        except FaultSkipped as exc:
            self.skip(planned, fault.name, now, str(exc))
            return True
        except FaultNotApplicable as exc:  # no target will ever turn up: not tried again
            self.skip(planned, fault.name, now, str(exc), NOT_APPLICABLE)
            return True
        except (OSError, ExecutorError) as exc:
            # The database held away (an outage, a restart) is why it could not fire: a skip.
            why = database_unavailable(exc, self.url)
            if why is not None:
                self.skip(planned, fault.name, now, why)
                return True
            got = Injection("nothing", {"error": f"{type(exc).__name__}: {exc}"})
        if got is None:
            if not last_try:
                return False
            self.recorder.record(FaultRecord(now, fault.name, "skip", "no candidate"))
            self.log(f"{planned.at:7.2f}s  {fault.name} skipped: no target before the end")
            return True
        self.recorder.record(
            FaultRecord(now, fault.name, "inject", got.target, got.detail, got.runs, got.held)
        )
        self.log(f"{planned.at:7.2f}s  {fault.name} → {got.target}")
        if got.undo is not None:
            due = self.clock() + got.undo_after_s
            self.undos.append(_Pending(due, fault.name, got.target, got.undo))
        return True

    def skip(
        self, planned: Planned, fault: str, now: float, why: str, kind: str = DATABASE_UNAVAILABLE
    ) -> None:
        """Record a fault that could not fire as a ``skip`` of ``kind`` (its target) with
        ``why`` (not an error)."""
        record = FaultRecord(now, fault, "skip", kind, {"reason": why})
        self.recorder.record(record)
        self.log(f"{planned.at:7.2f}s  {fault} skipped: {why}")

    def undo_due(self, *, all_now: bool = False) -> None:
        now = self.clock()
        for p in [p for p in self.undos if all_now or p.due <= now]:
            self.undos.remove(p)
            detail = p.undo()
            runs = tuple(str(r) for r in detail.pop("runs", ()))
            self.recorder.record(
                FaultRecord(self.clock(), p.fault, "recover", p.target, detail, runs)
            )

    def open_tickets(self) -> int:
        """Tickets not terminal yet (-1 while the database does not answer)."""
        try:
            return sum(1 for t in self.queue.tickets() if t.id in self.ids and not t.terminal)
        except QueueError:  # a restart's dead connection; the next call reconnects
            return -1

    def feed(self, arrivals: Iterator[Pipeline]) -> None:
        """Enqueue the next arrivals until ``workers × concurrency + 2`` tickets are open."""
        want = self.cfg.workers * self.cfg.concurrency + 2
        have = self.open_tickets()
        if have < 0:
            return
        for _ in range(max(0, want - have)):
            p = self.next_arrival or next(arrivals)
            try:
                self.ids.add(self.queue.enqueue(p.name, str(p.path)).id)
            except QueueError:
                self.next_arrival = p  # the database blinked: this one goes first next tick
                return
            self.next_arrival = None


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _terminated_as_interrupted(run: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run ``run`` with SIGTERM raising ``KeyboardInterrupt``, as Ctrl-C does.

    A campaign's clean-up is ``finally`` clauses: stop the workers, close the queue, drop its
    PostgreSQL schema, unmount the tmpfs. SIGTERM's default action (a CI job's timeout,
    ``timeout``, systemd) ended the driver alone, and its workers, which run until they are
    told to stop, ran on forever with the database they were given. In the main thread only
    (a signal handler can be set nowhere else); the previous handler is put back after.
    """

    @functools.wraps(run)
    def guarded(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        if threading.current_thread() is not threading.main_thread():
            return run(*args, **kwargs)

        def interrupt(_signum: int, _frame: FrameType | None) -> None:
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGTERM, interrupt)
        try:
            return run(*args, **kwargs)
        finally:
            signal.signal(signal.SIGTERM, previous)

    return guarded


@_terminated_as_interrupted
def run_campaign(
    config: CampaignConfig,
    *,
    log: Log | None = None,
    clock: Clock = time.time,
    on_start: Callable[[], None] | None = None,
) -> CampaignResult:
    """Run one campaign (see the module doc) and write its history and report to ``config.out``.
    ``on_start`` is called once ``--out`` and the database were accepted, as the campaign
    starts (the command line prints its replay command then, not before a refusal).

    Raises :class:`chaos.UsageError` for a bad configuration and :class:`chaos.CampaignError`
    when the campaign cannot run; violations are data (``result.verdicts``), not errors.
    SIGTERM stops it as Ctrl-C does (``KeyboardInterrupt``, its workers stopped first).
    """
    config.validate()
    say = log or (lambda _: None)
    # Every input is accepted before anything is made or removed: --out is checked, then the
    # database is reached (a PostgreSQL campaign's schema made), and only then is --out
    # cleared of a previous campaign and created; a refused --db leaves it as it was.
    out = check_out(config.out)
    url, cleanup = prepare_db(config, out / "campaign")
    try:  # the schema made for the campaign is dropped whatever stops it from here
        prepare_out(out)
        rng = random.Random(config.seed)
        faults = {f.name: f for f in select_faults(config.faults)}
        workload = build_workload(rng, out / "campaign" / "pipelines")
        schedule = plan_schedule(
            rng, config.duration_s, tuple(faults), mean_gap_s=config.mean_gap_s
        )
        arrivals = workload.arrivals(random.Random(f"{config.seed}/arrivals"))
        executor = config.executor
        if on_start is not None:
            on_start()
        started = clock()
        meta = Meta(
            time=started,
            seed=config.seed,
            duration_s=config.duration_s,
            workers=config.workers,
            db=redact(url if config.db is None else config.db, drop=True),
            faults=tuple(faults),
            schedule=schedule,
            bounds=config.bounds(),
            replay=config.replay_command(),
            config=executor.to_json(),
        )
        try:  # its workers run from the checkout, not from here: every path they get is absolute
            camp = _Campaign(dataclasses.replace(config, out=out), url, executor, clock, say)
        except ExecutorError as exc:
            raise CampaignError(f"cannot open the queue {meta.db!r}: {exc}") from exc
    except BaseException:
        cleanup()
        raise
    unmount = mount_runs(camp.runs_root, config.runs_tmpfs_mb) if config.runs_tmpfs_mb else None
    try:
        try:
            _drive(camp, arrivals, schedule, faults, started)
        finally:
            camp.stop_workers()
            camp.recorder.close()
        history = collect(camp.dir, camp.queue, camp.ids, workload, meta)
    except ExecutorError as exc:
        raise CampaignError(f"the campaign lost its queue: {exc}") from exc
    finally:
        camp.queue.close()
        cleanup()
        if unmount is not None:
            unmount()
    verdicts = check(history)
    result = CampaignResult(config, history, verdicts, clock() - started, out)
    from chaos._report import write_report

    write_report(result)
    return result


def _drive(
    camp: _Campaign,
    arrivals: Iterator[Pipeline],
    schedule: tuple[Planned, ...],
    faults: dict[str, Fault],
    started: float,
) -> None:
    cfg = camp.cfg
    for _ in range(cfg.workers):
        camp.spawn()
    todo = list(schedule)
    while (elapsed := camp.clock() - started) < cfg.duration_s:
        camp.supervise(replace_dead=True)
        camp.undo_due()
        while todo and todo[0].at <= elapsed:
            planned = todo.pop(0)
            later = elapsed + _RETRY_S
            if not camp.inject(planned, faults[planned.fault], last_try=later >= cfg.duration_s):
                # No candidate at this moment (no running run to tear, every worker frozen):
                # tried again until one turns up or the campaign ends, then skipped.
                todo.append(dataclasses.replace(planned, at=later))
                todo.sort(key=lambda p: p.at)
        if not camp.database_away():  # a write would wait behind the lock, or fail
            camp.feed(arrivals)
        time.sleep(_TICK_S)
    camp.log(f"{camp.clock() - started:7.2f}s  draining")
    deadline = camp.clock() + cfg.drain_timeout_s
    while camp.clock() < deadline:
        camp.supervise(replace_dead=True)
        camp.undo_due()
        if not camp.undos and camp.open_tickets() == 0:
            return
        time.sleep(_TICK_S)
    camp.log(f"drain timed out after {cfg.drain_timeout_s:g}s; tickets are left open")
