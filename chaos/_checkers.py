"""The invariants: named functions over a :class:`~chaos.History`, listed in :data:`CHECKERS`.

Each checker is ``(History) -> Verdict``; it reads only the history, so a saved
``history.ndjson`` can be checked again and a hand-made history tests a checker. A violation
comes with its minimal witness: the few records that prove it (for the first violation found;
``violations`` counts them all).

A lease is named by ``(ticket, epoch)``; it *ends* at the first ``completed``, ``failed``,
``released``, ``reclaimed`` or ``canceled`` ticket event carrying that epoch.

>>> from chaos._history import TicketRecord
>>> h = History((TicketRecord(9.0, "t-1", "long_01", "long", "running", 2),))
>>> v = no_ticket_lost(h)
>>> (v.ok, v.summary)
(False, '1 of 1 ticket not terminal after the drain; first: t-1 (running, epoch 2)')
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable

from chaos._evidence import (
    Checker,
    Found,
    Verdict,
    lease_ends,
    op_pairs,
    stall_windows,
    touched_by,
    verdict,
)
from chaos._history import (
    Bounds,
    FaultRecord,
    History,
    Op,
    QueueEvent,
    Record,
    RunRecord,
    TicketRecord,
    WorkerRecord,
)
from rundoctor.words import every, noun, plural

__all__ = [
    "CHECKERS",
    "Checker",
    "Verdict",
    "at_most_one_completion",
    "breaker_within_limit",
    "check",
    "diagnosis_explained",
    "every_worker_exit_explained",
    "final_json_in_time",
    "no_heartbeat_after_end",
    "no_stale_write_accepted",
    "no_succeeded_run_rerun",
    "no_ticket_lost",
    "no_worker_crashed",
    "percentile",
    "reclaim_latency",
]

TERMINAL = frozenset({"done", "failed", "canceled", "quarantined"})
#: Queue events that a worker writes under its lease (each carries its worker and epoch).
LEASED_WRITES = frozenset({"completed", "failed", "released", "heartbeat_gap"})
#: Ops that change the ticket under a lease; an ``ok`` means the queue accepted the write.
WRITE_OPS = frozenset({"start", "heartbeat", "complete", "fail", "release"})


def no_ticket_lost(h: History) -> Verdict:
    """Every ticket ends terminal (done, failed, canceled or quarantined) once drained.

    >>> from chaos._history import TicketRecord
    >>> done = TicketRecord(9.0, "t-1", "ok_01", "ok", "done", 1)
    >>> v = no_ticket_lost(History((done,)))
    >>> v.ok, v.summary
    (True, 'the one ticket ended terminal (done 1)')
    """
    tickets = {t.ticket: t for t in h.of(TicketRecord)}
    created = [e for e in h.of(QueueEvent) if e.event == "created"]
    events = defaultdict(list)
    for e in h.of(QueueEvent):
        events[e.ticket].append(e)
    found: list[Found] = []
    for e in created:
        if e.ticket not in tickets:
            found.append((f"{e.ticket} was created and then vanished from the queue", (e,)))
    for t in tickets.values():
        if t.status not in TERMINAL:
            why = f"first: {t.ticket} ({t.status}, epoch {t.lease_epoch})"
            found.append((why, (t, *events[t.ticket][-3:])))
    counts: dict[str, int] = defaultdict(int)
    for t in tickets.values():
        counts[t.status] += 1
    shape = ", ".join(f"{s} {n}" for s, n in sorted(counts.items()))
    lost = len(found)
    total = (
        f"{lost} of {plural(len(tickets), 'ticket')} not terminal after the drain; " if lost else ""
    )
    return verdict(
        "no_ticket_lost", found, f"{every(len(tickets), 'ticket')} ended terminal ({shape})", total
    )


def at_most_one_completion(h: History) -> Verdict:
    """At most one accepted completion per ticket (queue events and acknowledged ops).

    >>> from chaos._history import QueueEvent
    >>> done = [QueueEvent(t, i, "t-1", "completed", "w1/0", 1) for i, t in enumerate((5.0, 6.0))]
    >>> v = at_most_one_completion(History(tuple(done)))
    >>> v.ok, v.summary
    (False, 't-1 was completed 2 times')
    """
    found: list[Found] = []
    done: dict[str, list[Record]] = defaultdict(list)
    for e in h.of(QueueEvent):
        if e.event == "completed":
            done[e.ticket].append(e)
    for ticket, evs in done.items():
        if len(evs) > 1:
            found.append((f"{ticket} was completed {len(evs)} times", tuple(evs)))
    acked: dict[str, list[Record]] = defaultdict(list)
    for op in h.of(Op):
        if op.f == "complete" and op.type == "ok" and op.ticket:
            acked[op.ticket].append(op)
    for ticket, ops in acked.items():
        if len(ops) > 1:
            found.append((f"{len(ops)} completions of {ticket} were acknowledged", tuple(ops)))
    return verdict(
        "at_most_one_completion",
        found,
        f"{plural(len(done), 'ticket')} completed, each exactly once",
    )


def no_stale_write_accepted(h: History) -> Verdict:
    """No write under a lease is accepted from a worker that does not hold that epoch, or
    after the lease was reclaimed.

    >>> from chaos._history import QueueEvent
    >>> from chaos._history import Op
    >>> claim = QueueEvent(1.0, 1, "t-1", "claimed", "w1/0", 1)
    >>> beat = [Op(t, kind, "heartbeat", "w1/0", "w1", "t-1", 1) for t, kind in ((2.0, "invoke"),
    ...                                                                         (2.1, "ok"))]
    >>> v = no_stale_write_accepted(History((claim, *beat)))
    >>> v.ok, v.summary
    (True, "1 accepted write came from the epoch's holder; 0 stale ones fenced")
    """
    claims: dict[tuple[str, int], QueueEvent] = {}
    reclaims: dict[tuple[str, int], QueueEvent] = {}
    for e in h.of(QueueEvent):
        if e.epoch is None:
            continue
        if e.event == "claimed":
            claims[(e.ticket, e.epoch)] = e
        elif e.event == "reclaimed":
            reclaims.setdefault((e.ticket, e.epoch), e)
    found: list[Found] = []

    def judge(key: tuple[str, int], worker: str | None, began: float, what: Record) -> None:
        claim, reclaim = claims.get(key), reclaims.get(key)
        if claim is not None and claim.worker != worker:
            why = f"{worker} wrote {key[0]} under epoch {key[1]}, which {claim.worker} holds"
            found.append((why, (claim, what)))
        elif reclaim is not None and reclaim.time < began:
            why = f"{worker} wrote {key[0]} under epoch {key[1]} after it was reclaimed"
            found.append((why, (reclaim, what)))

    for e in h.of(QueueEvent):
        if e.event in LEASED_WRITES and e.epoch is not None:
            judge((e.ticket, e.epoch), e.worker, e.time, e)
    for invoke, outcome in op_pairs(h.of(Op)):
        if outcome.type == "ok" and outcome.f in WRITE_OPS and outcome.ticket:
            judge((outcome.ticket, outcome.epoch or 0), outcome.worker, invoke.time, outcome)
    writes = sum(1 for o in h.of(Op) if o.type == "ok" and o.f in WRITE_OPS)
    fenced = sum(1 for e in h.of(QueueEvent) if e.event == "fenced")
    return verdict(
        "no_stale_write_accepted",
        found,
        f"{plural(writes, 'accepted write')} {noun(writes, 'came', 'all came')} from the "
        f"epoch's holder; {fenced} stale {noun(fenced, 'one')} fenced",
    )


#: What a worker's ``failed`` or ``released`` (or the reaper's ``reclaimed``) reason says when
#: the run's directory could not be written: then the reason stands for the missing
#: ``final.json``.
_UNWRITABLE = ("could not be written", "could not be terminalized")


def _unwritable(h: History) -> set[tuple[str, int]]:
    """Leases whose run directory the disk refused, as their queue events say."""
    out: set[tuple[str, int]] = set()
    for e in h.of(QueueEvent):
        reason = str(e.detail.get("reason", ""))
        refused = any(text in reason for text in _UNWRITABLE)
        if refused and e.event in ("failed", "released", "reclaimed") and e.epoch is not None:
            out.add((e.ticket, e.epoch))
    return out


def final_json_in_time(h: History) -> Verdict:
    """Every run directory has a valid ``final.json`` within the bound after its lease ended,
    or, when the disk refused it, its ticket's ``failed``/``released``/``reclaimed`` reason
    says so.

    >>> from chaos._history import RunRecord
    >>> run = RunRecord(5.0, "r1", "/runs/r1", "t-1", 1, "ok", final_status="success",
    ...                 final_at=7.0, final_by="executor")
    >>> v = final_json_in_time(History((run,)))
    >>> v.ok, v.summary
    (True, 'the one run has a valid final.json; latest 0.00s after the lease ended (bound 5s)')
    """
    bound = h.bounds.final_s
    ends = lease_ends(h)
    found: list[Found] = []
    worst = 0.0
    unwritable = _unwritable(h)
    refused = 0
    for run in h.of(RunRecord):
        if not run.ticket:
            found.append((f"run {run.run_id} has no recorded start", (run,)))
        elif (run.ticket, run.epoch) in unwritable:
            # The disk refused it: the ticket's reason says so, and its worker writes the
            # final.json once the root takes writes again, however late that is.
            refused += 1
        elif run.final_problem or run.final_at is None:
            found.append((f"run {run.run_id}: {run.final_problem}", (run,)))
        elif (end := ends.get((run.ticket, run.epoch))) is not None:
            late = run.final_at - end.time
            worst = max(worst, late)
            if late > bound:
                why = f"run {run.run_id}: final.json {late:.2f}s after its lease ended"
                found.append((f"{why} (bound {bound:g}s)", (end, run)))
    n = len(h.of(RunRecord))
    runs = f"{every(n, 'run')} {noun(n, 'has', 'have')} a valid final.json"
    fine = f"{runs}; latest {worst:.2f}s after the lease ended"
    if refused:
        fine = (
            f"{runs} or, for {refused} the disk refused, a terminal reason; latest "
            f"{worst:.2f}s after the lease ended"
        )
    return verdict("final_json_in_time", found, f"{fine} (bound {bound:g}s)")


def no_heartbeat_after_end(h: History) -> Verdict:
    """No lease heartbeat is accepted after its lease ended; no stage heartbeat follows the
    end of its attempt.

    >>> from chaos._history import Op
    >>> beat = Op(5.0, "ok", "heartbeat", "w1", "w1/0", "t-1", 1)
    >>> v = no_heartbeat_after_end(History((beat,)))
    >>> v.ok, v.summary
    (True, '1 lease heartbeat, none after its lease ended')
    """
    ends = lease_ends(h)
    found: list[Found] = []
    for invoke, outcome in op_pairs(h.of(Op)):
        if outcome.f != "heartbeat" or outcome.type != "ok" or not outcome.ticket:
            continue
        end = ends.get((outcome.ticket, outcome.epoch or 0))
        if end is not None and invoke.time > end.time:
            why = f"{outcome.worker} heartbeat {outcome.ticket} epoch {outcome.epoch} after its end"
            found.append((why, (end, invoke, outcome)))
    for run in h.of(RunRecord):
        if run.late_heartbeats:
            found.append((f"run {run.run_id}: {run.late_heartbeats[0]}", (run,)))
    beats = sum(1 for o in h.of(Op) if o.f == "heartbeat" and o.type == "ok")
    return verdict(
        "no_heartbeat_after_end",
        found,
        f"{plural(beats, 'lease heartbeat')}, none after {noun(beats, 'its', 'their')} lease ended",
    )


def breaker_within_limit(h: History) -> Verdict:
    """The breaker stops every deterministic loop at its limit and never a transient-only run.

    Runs a fault touched are held to the limit only: a killed stage may end a loop early, or
    fail a transient stage for good.

    >>> from chaos._history import RunRecord
    >>> run = RunRecord(5.0, "r1", "/runs/r1", "t-1", 1, "deterministic", final_status="fail",
    ...                 signature_limit=3, max_signature_count=3, breaker_trips=1)
    >>> v = breaker_within_limit(History((run,)))
    >>> v.ok, v.summary
    (True, '1 breaker trip, each within its limit')
    """
    touched = touched_by(h)
    found: list[Found] = []
    tripped = 0
    for run in h.of(RunRecord):
        tripped += run.breaker_trips > 0
        limit = run.signature_limit
        if limit is not None and run.max_signature_count > limit:
            why = f"run {run.run_id}: a signature counted {run.max_signature_count} (limit {limit})"
            found.append((why, (run,)))
        if run.path in touched:
            continue
        natural = run.final_by == "executor" and run.final_status == "fail"
        if run.workload == "deterministic" and natural and run.breaker_trips == 0:
            found.append((f"deterministic run {run.run_id} failed without a breaker trip", (run,)))
        if run.workload == "transient" and run.breaker_trips:
            found.append((f"transient-only run {run.run_id} tripped the breaker", (run,)))
    return verdict(
        "breaker_within_limit", found, f"{plural(tripped, 'breaker trip')}, each within its limit"
    )


#: How long after the fault a lease may still have ended by its worker's own hand (a
#: completion committed just before the signal landed).
_RACE_S = 1.0


def percentile(values: list[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile of ``values`` (not empty).

    >>> percentile([0.1, 0.2, 0.3, 0.4], 50), percentile([0.1, 0.2, 0.3, 0.4], 99)
    (0.2, 0.4)
    """
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def _stalled(start: float, end: float, stalls: list[tuple[float, float]]) -> float:
    """Seconds of [start, end] during which the database was stalled."""
    return sum(max(0.0, min(end, b) - max(start, a)) for a, b in stalls)


def _adopted(e: QueueEvent) -> bool:
    """A completion the reaper wrote for a lost worker whose run had succeeded."""
    result = e.detail.get("result")
    return e.event == "completed" and isinstance(result, dict) and "adopted_by" in result


# Fewer reclaims than this are held to the p99 bound only (docs/chaos.md, "Bounds").
_MIN_SAMPLES_FOR_P50 = 5


def reclaim_latency(h: History) -> Verdict:
    """Leases of a SIGKILLed or SIGSTOPped worker are reclaimed within the executor's bounds
    (p50 and p99, stall time excluded; the p50 bound from five samples on).

    Latency runs from the fault to the lease's ``reclaimed`` event. Time the database spent
    stalled by ``stall_database`` is not counted: no reaper writes through a held lock, and the
    stall is a fault of its own.

    >>> v = reclaim_latency(History(()))
    >>> v.ok, v.summary
    (True, 'sigkill: no samples; sigstop: no samples (within bounds)')
    """
    samples, found = _reclaim_samples(h)
    stats, slow = _latency_stats(samples, h.bounds)

    def show(kind: str) -> str:
        row = stats[kind]
        if not row["n"]:
            return f"{kind}: no samples"
        return f"{kind}: n={row['n']:.0f} p50 {row['p50_s']:.2f}s p99 {row['p99_s']:.2f}s"

    fine = f"{show('sigkill')}; {show('sigstop')} (within bounds)"
    return verdict("reclaim_latency", found + slow, fine, stats=stats)


_Sample = tuple[float, FaultRecord, QueueEvent]


def _reclaim_samples(h: History) -> tuple[dict[str, list[_Sample]], list[Found]]:
    """Each held lease of a reclaiming fault: its latency by kind (``sigkill``, ``sigstop``),
    or a violation when it was never reclaimed."""
    from chaos._faults import FAULTS

    kinds = {f.name: f.reclaims for f in FAULTS if f.reclaims}
    reclaims: dict[tuple[str, int], QueueEvent] = {}
    for e in h.of(QueueEvent):
        if e.event == "reclaimed" and e.epoch is not None:
            reclaims.setdefault((e.ticket, e.epoch), e)
    ends, stalls = lease_ends(h), stall_windows(h)
    samples: dict[str, list[_Sample]] = defaultdict(list)
    found: list[Found] = []
    for f in h.of(FaultRecord):
        kind = kinds.get(f.fault)
        if kind is None or f.phase != "inject" or "error" in f.detail:
            continue
        for held in f.held:
            key = (held.ticket, held.epoch)
            got = reclaims.get(key)
            end = ends.get(key)
            if got is None and end is not None and _adopted(end):
                got = end  # the reaper completed the lost worker's succeeded run instead
            if got is None:
                if end is not None and end.time <= f.time + _RACE_S:
                    continue  # its worker ended the lease as the signal landed
                how = f"ended by {end.event} from {end.worker}" if end else "never ended"
                why = f"{f.fault}: lease {held.ticket} epoch {held.epoch} was not reclaimed ({how})"
                found.append((why, (f,) if end is None else (f, end)))
                continue
            latency = max(0.0, got.time - f.time - _stalled(f.time, got.time, stalls))
            samples[kind].append((latency, f, got))
    return samples, found


def _latency_stats(
    samples: dict[str, list[_Sample]], b: Bounds
) -> tuple[dict[str, dict[str, float]], list[Found]]:
    """Per kind: n, p50, p99 and max against the bounds; a violation per bound exceeded."""
    stats: dict[str, dict[str, float]] = {}
    found: list[Found] = []
    limits = {
        "sigkill": (b.sigkill_p50_s, b.sigkill_p99_s),
        "sigstop": (b.sigstop_p50_s, b.sigstop_p99_s),
    }
    for kind, (b50, b99) in limits.items():
        got_samples = samples.get(kind, [])
        values = [s[0] for s in got_samples]
        row = {"n": float(len(values)), "bound_p50_s": b50, "bound_p99_s": b99}
        if values:
            p50, p99 = percentile(values, 50), percentile(values, 99)
            row |= {"p50_s": round(p50, 3), "p99_s": round(p99, 3), "max_s": round(max(values), 3)}
            _, fault, event = max(got_samples, key=lambda s: s[0])
            checked = (("p50", p50, b50), ("p99", p99, b99))
            # A median of a handful of samples is one sample: each is held to the p99 bound
            # until there are enough for the p50 bound to describe the reaper, not the noise.
            for name, value, bound in checked[len(values) < _MIN_SAMPLES_FOR_P50 :]:
                if value > bound:
                    why = f"{kind} reclaim latency {name} {value:.2f}s exceeds its bound {bound:g}s"
                    found.append((why, (fault, event)))
        stats[kind] = row
    return stats, found


def diagnosis_explained(h: History) -> Verdict:
    """``doctor.diagnose_path`` finds nothing at error or above in any run, except findings
    that a fault which touched the run declares it may cause.

    >>> from chaos._history import FindingFact, RunRecord
    >>> found = FindingFact("missing_final", "critical", "The run has no final.json")
    >>> run = RunRecord(5.0, "r1", "/runs/r1", "t-1", 1, "long", findings=(found,))
    >>> v = diagnosis_explained(History((run,)))
    >>> v.ok, v.summary
    (False, 'run r1: critical missing_final (no fault touched it): The run has no final.json')
    """
    from chaos._faults import FAULTS

    declared = {f.name: f.may_cause for f in FAULTS}
    touched = touched_by(h)
    found: list[Found] = []
    explained = 0
    for run in h.of(RunRecord):
        faults = touched.get(run.path, ())
        allowed = set().union(*(declared.get(f.fault, frozenset()) for f in faults))
        for f in run.findings:
            if f.severity not in ("error", "critical"):
                continue
            if f.code in allowed:
                explained += 1
                continue
            by = ", ".join(sorted({x.fault for x in faults})) or "no fault"
            why = f"run {run.run_id}: {f.severity} {f.code} ({by} touched it): {f.summary}"
            found.append((why, (run, *faults)))
    runs = len(h.of(RunRecord))
    fine = (
        f"{plural(runs, 'run')} diagnosed: nothing serious beyond "
        f"{plural(explained, 'fault-explained finding')}"
    )
    return verdict("diagnosis_explained", found, fine)


def no_worker_crashed(h: History) -> Verdict:
    """Every worker that exited was told to (SIGKILL, SIGTERM, the end of the campaign).

    >>> from chaos._history import WorkerRecord
    >>> died = WorkerRecord(9.0, "w1", 42, "exit", 70, expected=False)
    >>> v = no_worker_crashed(History((WorkerRecord(1.0, "w1", 42, "start"), died)))
    >>> v.ok, v.summary
    (False, 'worker w1 (pid 42) exited by itself with status 70')
    """
    found: list[Found] = [
        (f"worker {w.name} (pid {w.pid}) exited by itself with status {w.exit_code}", (w,))
        for w in h.of(WorkerRecord)
        if w.phase == "exit" and not w.expected
    ]
    started = sum(1 for w in h.of(WorkerRecord) if w.phase == "start")
    return verdict("no_worker_crashed", found, f"{plural(started, 'worker')}; none exited unasked")


def no_succeeded_run_rerun(h: History) -> Verdict:
    """No ticket is claimed again after one of its runs succeeded (``final.json`` written by
    the executor with status ``success``): a database that blinked, a worker lost between its
    record and its ``complete``, must never make succeeded work run twice.

    >>> from chaos._history import RunRecord
    >>> ran = RunRecord(5.0, "r1", "/runs/r1", "t-1", 1, "success", final_status="success",
    ...                 final_by="executor")
    >>> again = QueueEvent(9.0, 7, "t-1", "claimed", "w2/0", 2)
    >>> no_succeeded_run_rerun(History((ran, again))).summary
    'ticket t-1 was claimed again (epoch 2) after its run r1 (epoch 1) succeeded'
    """
    succeeded: dict[str, RunRecord] = {}
    for run in h.of(RunRecord):
        if run.final_status == "success" and run.final_by == "executor" and run.ticket:
            first = succeeded.get(run.ticket)
            if first is None or run.epoch < first.epoch:
                succeeded[run.ticket] = run
    found: list[Found] = []
    for e in h.of(QueueEvent):
        ok = succeeded.get(e.ticket)
        if e.event == "claimed" and ok is not None and (e.epoch or 0) > ok.epoch:
            why = (
                f"ticket {e.ticket} was claimed again (epoch {e.epoch}) after its run "
                f"{ok.run_id} (epoch {ok.epoch}) succeeded"
            )
            found.append((why, (ok, e)))
    fine = f"{plural(len(succeeded), 'ticket')} whose work succeeded; none was run again"
    return verdict("no_succeeded_run_rerun", found, fine)


def every_worker_exit_explained(h: History) -> Verdict:
    """Every worker exit is explained: the harness caused it, or the worker said why in one
    line (``cannot continue``, exit 3); and no worker's log holds a traceback.

    >>> gave_up = WorkerRecord(9.0, "w1", 42, "exit", 3, expected=False,
    ...                        said="error: worker w1 cannot continue: the queue stayed away")
    >>> every_worker_exit_explained(History((gave_up,))).ok
    True
    """
    found: list[Found] = []
    for w in h.of(WorkerRecord):
        if w.phase != "exit":
            continue
        if w.traceback:
            found.append((f"worker {w.name} (pid {w.pid}) wrote a traceback: {w.said}", (w,)))
        elif not w.expected and (w.exit_code == 0 or "cannot continue" not in w.said):
            why = f"worker {w.name} (pid {w.pid}) exited with status {w.exit_code} unexplained"
            found.append((why + (f": {w.said!r}" if w.said else ""), (w,)))
    exits = sum(1 for w in h.of(WorkerRecord) if w.phase == "exit")
    return verdict(
        "every_worker_exit_explained", found, f"{plural(exits, 'worker exit')}, each explained"
    )


#: Every invariant, in report order.
CHECKERS: tuple[Checker, ...] = (
    no_ticket_lost,
    at_most_one_completion,
    no_stale_write_accepted,
    final_json_in_time,
    no_heartbeat_after_end,
    breaker_within_limit,
    reclaim_latency,
    diagnosis_explained,
    no_worker_crashed,
    no_succeeded_run_rerun,
    every_worker_exit_explained,
)


def check(h: History, checkers: Iterable[Checker] = CHECKERS) -> tuple[Verdict, ...]:
    """Every checker's verdict on ``h``.

    >>> all(v.ok for v in check(History(())))
    True
    """
    return tuple(c(h) for c in checkers)
