"""Repairs on the work queue (``DoctorConfig.db``): :func:`apply_queue_repairs`.

The actions, planned by :func:`doctor._repair_plan.plan_repairs` from a scan's queue
findings, target the ticket id:

* ``reclaim`` (``stale_lease``, ``session_desync`` without a live session) takes the lost lease
  back through :func:`executor.reap`, narrowed to that ticket at the lease epoch the
  finding saw: the reaper's own preconditions (the owner's pid is dead on this host, or the
  lease expired outside the claim grace), its killing of the lost worker's stage process
  groups, its terminalizing of the lost run, then the compare-and-set on the epoch.
* ``reconcile`` (``session_desync`` with a live session) makes the record agree with the
  process table: a leased ticket whose pid is dead is reclaimed as above; a terminal (or
  unleased) ticket whose session still runs needs a person — nothing is killed and a terminal
  row cannot change, so the action refuses with the reason, journaled.

Queue actions are idempotent by the queue itself (a lease already reclaimed is a no-op), and
are journaled in ``repairs.ndjson`` (:mod:`doctor._journal`) with the hashes of the ticket's
row before and after, and the breaker of :mod:`doctor._repair_model` applies to them too.
Their journal lives next to a SQLite queue, or in the first runs root (or ``journal``) for
PostgreSQL (:func:`queue_journal_dir`).

Leases are judged at the queue's clock, as the scan found them (docs/queue.md): a PostgreSQL
queue is opened on its server's clock, so the reaper's test, its claim grace and the times the
reclaim stamps are the server's, whatever this host's clock says; SQLite keeps this host's
clock. A pinned ``config.now`` is used as given (the queue opened with ``server_clock=False``):
tests, and replays at a known time. The journal's ``at`` and what is written into a lost run's
directory keep this host's clock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from doctor._config import DoctorConfig
from doctor._detectors._queue import LEASED, iso_s, same_host, this_host
from doctor._diagnose import scan
from doctor._errors import DoctorError, IngestError, UsageError
from doctor._facts import iso
from doctor._journal import JOURNAL, JournalEntry, append_entry, read_journal
from doctor._model import noun
from doctor._queue_ingest import QueueSource, parse_queue_url, sqlite_file
from doctor._repair_model import (
    _COUNTED,
    BREAKER_TRIES,
    BREAKER_WINDOW_S,
    TOOL,
    Action,
    ActionResult,
    FindingRef,
    QueueRepairReport,
    _breaker,
    _Ctx,
    _diff,
    _Done,
    _journal_unsafe,
    _Refused,
    _version,
)
from executor import (
    ExecutorConfig,
    ExecutorError,
    Queue,
    QueueError,
    Ticket,
    open_queue,
    reap,
    watch_lapses,
)
from rundoctor.liveness import owner_alive, process_alive

__all__ = ["apply_queue_repairs", "queue_journal_dir"]


def queue_journal_dir(config: DoctorConfig, journal: Path | None = None) -> Path:
    """The directory whose ``repairs.ndjson`` journals queue repairs.

    ``journal`` (a directory, or a path ending in ``repairs.ndjson``) when given; else the
    SQLite queue's own directory; else, for PostgreSQL, the first runs root.

    >>> queue_journal_dir(DoctorConfig(db="/nonexistent/queue.db"))
    Traceback (most recent call last):
    ...
    doctor._errors.UsageError: the repair journal's directory '/nonexistent' does not exist; pass --journal DIR
    """  # noqa: E501
    if journal is not None:
        where = journal.parent if journal.name == JOURNAL else journal
    elif not config.db:
        raise UsageError("queue repairs need the queue: doctor repair --db URL")
    else:
        source = parse_queue_url(config.db)
        if source.kind == "sqlite" and source.target == ":memory:":
            raise UsageError("a :memory: queue cannot be repaired: it lives in one process only")
        if source.kind == "sqlite":
            where = Path(source.target).absolute().parent
        elif config.roots:
            where = config.roots[0]
        else:
            raise UsageError(
                "a PostgreSQL queue's repairs are journaled in the runs root: pass --root DIR "
                "or --journal DIR"
            )
    if where.is_symlink() or not where.is_dir():
        what = (
            "is a symlink"
            if where.is_symlink()
            else "is a file, not a directory"
            if where.exists()
            else "does not exist"
        )  # was "does not exist (or is a symlink)" for a file too
        raise UsageError(
            f"the repair journal's directory {str(where)!r} {what}; pass --journal DIR"
        )
    return Path(os.path.realpath(where))


def _queue_url(source: QueueSource) -> str:
    """The executor's URL for a queue the doctor names (its ``?schema=`` shorthand becomes
    libpq's ``options=-csearch_path=``, which the executor passes through)."""
    if source.kind == "sqlite":
        return str(sqlite_file(source.target))
    if source.schema is None:
        return source.target
    parts = urlsplit(source.target)
    query = parse_qsl(parts.query, keep_blank_values=True)
    options = " ".join([v for k, v in query if k == "options"] + [f"-csearch_path={source.schema}"])
    query = [(k, v) for k, v in query if k != "options"] + [("options", options)]
    # Not urlunsplit: it drops the empty host of postgresql:///db (a local socket).
    return source.target.split("?", 1)[0] + "?" + urlencode(query, quote_via=quote)


class _OneLease(Queue):
    """The queue as :func:`executor.reap` sees it for one repair: the one ticket, and
    only while it holds the lease at ``epoch`` (the compare-and-set's expected value).
    ``race_hook`` (a test seam, None outside tests) is called with the ticket id once the
    reaper has read the lease it judges, before it acts."""

    def __init__(
        self,
        inner: Queue,
        ticket_id: str,
        epoch: int,
        clock: Callable[[], float],
        race_hook: Callable[[str], None] | None = None,
    ):
        super().__init__(clock=clock)
        self._inner, self._ticket_id, self._epoch = inner, ticket_id, epoch
        self._race_hook = race_hook

    def _mine(self, found: Iterable[Ticket]) -> list[Ticket]:
        return [t for t in found if t.id == self._ticket_id and t.lease_epoch == self._epoch]

    def tickets(self, *, status: str | Iterable[str] | None = None) -> list[Ticket]:
        return self._mine(self._inner.tickets(status=status))

    def expired(self, now: float, *, claim_grace_s: float = 0.0) -> list[Ticket]:
        found = self._mine(self._inner.expired(now, claim_grace_s=claim_grace_s))
        if self._race_hook is not None:  # the pass's last read: it acts on what it read
            self._race_hook(self._ticket_id)
        return found

    def now(self) -> float:
        """The queue's clock (a PostgreSQL server's), which its leases are aged in."""
        return self._inner.now()

    def reclaim(
        self,
        ticket_id: str,
        *,
        expected_epoch: int,
        reason: str,
        quarantine_after: int,
        window_s: float,
        claim_grace_s: float | None = 0.0,
        judged: Ticket | None = None,
        stop_holder: Callable[[Ticket], str] | None = None,
    ) -> Ticket:
        return self._inner.reclaim(
            ticket_id,
            expected_epoch=expected_epoch,
            reason=reason,
            quarantine_after=quarantine_after,
            window_s=window_s,
            claim_grace_s=claim_grace_s,
            judged=judged,
            stop_holder=stop_holder,
        )

    def _transaction(self, *, write: bool = True) -> contextlib.AbstractContextManager[Any]:
        raise AssertionError("the reaper's one-lease view runs no transaction of its own")

    def close(self) -> None:
        """The view does not own the connection."""


@dataclass
class _QueueCtx:
    queue: Queue
    config: DoctorConfig
    executor: ExecutorConfig
    breaker: str | None = None  # set per action: why it must not act again
    #: Leases that looked lapsed while their holder ran here, left to it: why, by ticket id.
    spared: dict[str, str] = dataclasses.field(default_factory=dict)
    #: Such leases that stood still while watched: how many seconds each was watched.
    watched: dict[str, float] = dataclasses.field(default_factory=dict)
    #: The test seam of :class:`_OneLease`.
    race_hook: Callable[[str], None] | None = None


class _Breaker(Exception):
    """The breaker is open: the action would act again on a target it keeps acting on."""


def _ticket(q: _QueueCtx, ticket_id: str) -> Ticket:
    try:
        return q.queue.get(ticket_id)
    except QueueError as exc:
        raise _Refused(str(exc)) from None


def _who(t: Ticket) -> str:
    return f"session {t.session_name!r} (pid {t.pid})" if t.session_name else f"pid {t.pid}"


def _lease_gone(q: _QueueCtx, t: Ticket, held: str, match: Callable[[Any], bool]) -> NoReturn:
    """The lease the finding saw is no longer held: a no-op when it was reclaimed (by the
    reaper or an earlier repair), else a refusal."""
    for e in reversed(q.queue.events(t.id)):
        if e.event == "reclaimed" and match(e):
            raise _Done(
                f"already reclaimed: {held} was reclaimed at {iso_s(e.at)} "
                f"({e.detail.get('reason')}); the ticket is {t.status} at epoch {t.lease_epoch}"
            )
    raise _Refused(
        f"the ticket no longer holds {held} and it was not reclaimed: it is {t.status} at "
        f"epoch {t.lease_epoch}, so there is no lost lease to take back"
    )


def _not_lost(t: Ticket, cfg: ExecutorConfig, host: str, now: float) -> str:
    """Why the reaper's precondition does not hold for the leased ticket ``t``."""
    if t.pid is None:
        owner = "no owner pid is recorded"
    elif t.host != host:
        owner = f"its owner runs on host {t.host}, whose processes cannot be seen from here"
    else:
        owner = f"its owner {_who(t)} is alive"
    claimed = t.claimed_at if t.claimed_at is not None else t.updated_at
    if now - claimed < cfg.claim_grace_s:
        lease = f"it was claimed {now - claimed:.0f} s ago, inside the claim grace period"
    else:
        until = t.lease_expires_at or t.last_alive_at or t.updated_at
        lease = f"its lease runs until {iso_s(until)}"
    return f"the lease no longer looks lost (the reaper's test): {owner}, and {lease}"


def _host_clock(config: DoctorConfig) -> Callable[[], float]:
    """This host's clock for the repair: a pinned ``now`` as given, else ``config.clock``."""
    if config.now_pinned:
        return lambda: config.now
    return config.clock


def _reap_one(q: _QueueCtx, t: Ticket, epoch: int) -> str:
    """Reclaim ``t``'s lease at ``epoch`` exactly as the reaper does (its preconditions, its
    kill of orphaned stage groups, its terminalizing of the lost run, its compare-and-set).

    The breaker is consulted here, right before acting: a lease found reclaimed already, or
    gone, is reported as such however often it was repaired before.
    """
    if q.breaker is not None:
        raise _Breaker(q.breaker)
    here = this_host()
    host = t.host if t.host and same_host(t.host, here) else here  # the detectors' host rule
    if t.id in q.spared:
        raise _Refused(q.spared[t.id])
    clock = _host_clock(q.config)
    view = _OneLease(q.queue, t.id, epoch, clock, q.race_hook)
    done = reap(view, q.executor, host=host, clock=clock)  # aged at view.now(): the queue's
    if not done:
        raise _Refused(_not_lost(t, q.executor, host, q.queue.now()))
    (r,) = done
    did = "".join(
        [
            f"; killed the lost worker's stage process "
            f"{noun(len(r.killed_groups), 'group')} {list(r.killed_groups)}"
            if r.killed_groups
            else "",
            f"; killed {noun(len(r.killed_escapees), 'process', 'processes')} "
            f"{list(r.killed_escapees)} that had left those groups"
            if r.killed_escapees
            else "",
            f"; wrote {t.run_path}/final.json (status fail)" if r.terminalized else "",
            f"; its worker {_who(t)} still ran on this host, but no heartbeat came in the "
            f"{q.watched[t.id]:.1f} s the doctor watched"
            if t.id in q.watched
            else "",
        ]
    )
    if not r.status:
        raise _Refused(
            f"the compare-and-set on lease epoch {epoch} lost: the ticket changed while it was "
            f"being reclaimed ({_fenced_why(q.queue, t.id)}), so nothing was killed nor written"
        )
    return f"reclaimed lease epoch {epoch} ({r.reason}): the ticket is {r.status} now{did}"


def _fenced_why(queue: Queue, ticket_id: str) -> str:
    """Why the ticket's last reclaim was fenced, as its ``fenced`` event says."""
    for e in reversed(queue.events(ticket_id)):
        if e.event == "fenced" and e.detail.get("action") == "reclaim":
            return str(e.detail.get("reason"))
    return "its lease moved"


def _live_lapses(q: _QueueCtx, plan: Sequence[Action]) -> list[Ticket]:
    """The leases ``plan`` would reclaim that look lapsed by the queue's clock while their
    holder still runs on this host (pid and start time): a live worker whose heartbeats failed,
    or one whose lease the queue's clock stepped past (its next heartbeat is due within half
    its TTL). A dead holder, or one on another host, is judged by the stamps alone."""
    epochs = {a.target: a.lease_epoch for a in plan if a.kind == "reclaim"}
    if not epochs:
        return []
    here = this_host()
    lapsed = q.queue.expired(q.queue.now(), claim_grace_s=q.executor.claim_grace_s)
    return [
        t
        for t in lapsed
        if t.id in epochs
        and epochs[t.id] in (None, t.lease_epoch)
        and same_host(t.host, here)
        and owner_alive(t.pid, t.proc_start_time) is True
    ]


def _watch(
    q: _QueueCtx, live: list[Ticket], say: Callable[[str], None] | None
) -> tuple[dict[str, float], dict[str, str]]:
    """Watch ``live`` (:func:`_live_lapses`): how long each that stood still was watched,
    and why each other one is left to its worker."""
    try:
        watched = watch_lapses(q.queue, q.executor, live, say=say)
    except QueueError as exc:
        why = f"the queue failed while the doctor watched for its worker's heartbeat ({exc})"
        return {}, {t.id: f"{why}; its worker {_who(t)} still runs on this host" for t in live}
    return watched, {
        t.id: f"its worker {_who(t)} still runs on this host and heartbeat while the doctor "
        "watched: the lease only looked expired by the queue's clock (a clock stepped "
        "forward?), so nothing was reclaimed"
        for t in live
        if t.id not in watched
    }


def _reclaim(q: _QueueCtx, action: Action) -> str:
    t = _ticket(q, action.target)
    epoch = action.lease_epoch
    if epoch is not None:
        if t.lease_epoch != epoch or t.status not in LEASED:
            _lease_gone(q, t, f"the lease of epoch {epoch}", lambda e: e.epoch == epoch)
        return _reap_one(q, t, epoch)
    holder = (action.worker, action.session_name, action.pid)
    if t.status in LEASED and (t.lease_owner, t.session_name, t.pid) == holder:
        return _reap_one(q, t, t.lease_epoch)
    _lease_gone(
        q,
        t,
        f"the lease of worker {action.worker} (session {action.session_name}, pid {action.pid})",
        lambda e: (e.worker, e.detail.get("session_name"), e.detail.get("pid")) == holder,
    )


def _reconcile(q: _QueueCtx, action: Action) -> str:
    t = _ticket(q, action.target)
    local = same_host(t.host, this_host())
    alive = process_alive(t.pid, t.proc_start_time) if t.pid is not None and local else None
    if t.status in LEASED:
        if alive:
            raise _Done(f"the record agrees: the ticket is {t.status} and {_who(t)} is alive")
        return _reap_one(q, t, t.lease_epoch)
    if alive and t.terminal:
        raise _Refused(
            f"needs a person: ticket {t.id} is {t.status}, yet {_who(t)} still runs on this "
            f"host. The doctor kills nothing, and a terminal row never changes (the database "
            f"forbids it), so this is recorded in the journal only: find out what pid {t.pid} "
            f"is doing, then stop it (process group {t.pgid}) or enqueue the work again"
        )
    if alive:
        raise _Refused(
            f"needs a person: ticket {t.id} is {t.status} (no lease), yet {_who(t)} still runs "
            f"on this host; the doctor kills nothing: stop it (process group {t.pgid}) before "
            "a worker starts the same work again"
        )
    if t.pid is not None and not local:
        raise _Refused(
            f"{_who(t)} was recorded on host {t.host}: run the doctor there, where its "
            "processes can be seen"
        )
    gone = "no session is recorded" if t.pid is None else f"{_who(t)} no longer runs"
    raise _Done(f"the record agrees now: the ticket is {t.status} and {gone}")


_QUEUE_RUNNERS: dict[str, Callable[[_QueueCtx, Action], str]] = {
    "reclaim": _reclaim,
    "reconcile": _reconcile,
}


def _row_state(q: _QueueCtx, ticket_id: str) -> tuple[str | None, dict[str, Any]]:
    """The SHA-256 of the ticket's row (every column, as JSON) and the facts journaled."""
    try:
        t = q.queue.get(ticket_id)
    except QueueError:
        return None, {}
    row = json.dumps(t.to_json(), sort_keys=True, default=str).encode()
    return hashlib.sha256(row).hexdigest(), {"status": t.status, "lease_epoch": t.lease_epoch}


def _apply_queue_one(
    ctx: _Ctx, q: _QueueCtx, display: str, action: Action, tries: int, window_s: float
) -> ActionResult:
    unsafe = _journal_unsafe(ctx.run_path)
    if unsafe is not None:
        return ActionResult(action, "refused", unsafe)
    before, was = _row_state(q, action.target)
    q.breaker = _breaker(ctx, action, tries, window_s)
    try:
        if action.kind not in _QUEUE_RUNNERS:
            outcome, message = "refused", f"{action.kind!r} is not a queue action"
        else:
            message, outcome = _QUEUE_RUNNERS[action.kind](q, action), "applied"
    except _Done as done:
        return ActionResult(action, "noop", str(done), before, before)
    except _Breaker as tripped:
        outcome, message = "breaker", str(tripped)
    except _Refused as refused:
        outcome, message = "refused", str(refused)
    except (ExecutorError, OSError) as exc:
        outcome, message = "failed", f"{type(exc).__name__}: {exc}"
    after, now = _row_state(q, action.target)
    entry = JournalEntry(
        at=iso(int(ctx.config.now * 1e9)) or "",
        at_s=ctx.config.now,
        tool=TOOL,
        version=_version(),
        action=action.kind,
        target=action.target,
        finding={"code": action.finding.code, "scope": "", "node_id": None},
        outcome=outcome,
        message=message,
        before_sha256=before,
        after_sha256=after,
        extra={"queue": display, "lease_epoch": action.lease_epoch, "before": was, "after": now},
    )
    try:
        append_entry(ctx.run_path, entry)
    except OSError as exc:
        # One line: the journal is left as it was (no empty file, no torn line).
        message += f" (not journaled, the journal left as it was: {exc.strerror or exc})"
        outcome = "failed" if outcome == "applied" else outcome
    ctx.journal.append(entry)
    return ActionResult(action, outcome, message, before, after)


def apply_queue_repairs(
    plan: Sequence[Action],
    config: DoctorConfig,
    *,
    journal: Path | None = None,
    executor_config: ExecutorConfig | None = None,
    breaker_tries: int = BREAKER_TRIES,
    breaker_window_s: float = BREAKER_WINDOW_S,
    say: Callable[[str], None] | None = None,
    race_hook: Callable[[str], None] | None = None,
) -> QueueRepairReport:
    """Carry out the queue actions of ``plan`` on the queue at ``config.db``, journaled in
    :func:`queue_journal_dir`'s ``repairs.ndjson``; the queue is scanned again (alone, without
    the runs) once after the actions, when one was applied, and the report says what each
    resolved (the findings of its ticket; those of no repaired ticket go with the last one).

    The reaper's tests and the queue's writes are in the queue's clock (a PostgreSQL server's;
    a pinned ``config.now`` as given, see the module docstring); ``executor_config`` gives the
    reaper's claim grace and quarantine (the executor's defaults when omitted).

    A lease to reclaim that looks lapsed while its holder still runs on this host is watched
    first, all such leases together, for up to half the lease's TTL (:func:`executor.
    watch_lapses`; ``say`` is told once): one that heartbeats meanwhile is left to its worker
    (the queue's clock stepped forward), one that stands still is reclaimed. A dead holder's
    lease, or one held on another host, is reclaimed without waiting, as the reaper does.

    A reclaim is fenced first, as the reaper's: a lease whose worker heartbeat after the
    repair judged it lost is refused, its stages left running. ``race_hook`` is a test seam,
    None outside tests: called with ``""`` once the queue is open, before the repair's first
    look at it, and with a ticket's id once its reclaim has read the lease it judges, before
    it acts.

    A queue that fails (a server restarted, a connection dropped) before any action is an
    :class:`IngestError`; after one, the actions still run (each one that meets the failure
    is ``failed``, journaled) and the report says what was done, with ``unverified`` set
    when the scan that verifies them failed.
    """
    journal_dir = queue_journal_dir(config, journal)
    source = parse_queue_url(config.db or "")
    alone = dataclasses.replace(config, roots=(), cache_dir=None)
    current = scan(alone).findings
    ctx = _Ctx(journal_dir, "", config, read_journal(journal_dir, outcomes=_COUNTED))
    try:
        # The queue's clock, the one its scan judged the leases at: a PostgreSQL server's,
        # unless now is pinned (then used as given: server_clock=False).
        queue = open_queue(
            _queue_url(source), clock=_host_clock(config), server_clock=not config.now_pinned
        )
    except ExecutorError as exc:
        raise IngestError(f"cannot open the queue {source.display} for repairs: {exc}") from exc
    done: dict[int, ActionResult] = {}
    with queue:
        q = _QueueCtx(queue, config, executor_config or ExecutorConfig(), race_hook=race_hook)
        try:
            if race_hook is not None:
                race_hook("")
            live = _live_lapses(q, plan)
        except QueueError as exc:  # nothing was done yet: one line, exit 2
            raise IngestError(
                f"the queue {source.display} failed before any repair was made: {exc}"
            ) from exc
        watched = {t.id for t in live}
        # The others first: a dead worker's stages are not left running while the doctor
        # watches a live one's lease.
        first = [i for i, a in enumerate(plan) if a.target not in watched]
        then = [i for i, a in enumerate(plan) if a.target in watched]
        for i in first + then:
            if live and plan[i].target in watched:
                q.watched, q.spared = _watch(q, live, say)
                live = []
            done[i] = _apply_queue_one(
                ctx, q, source.display, plan[i], breaker_tries, breaker_window_s
            )
    results = [done[i] for i in range(len(plan))]
    unverified: str | None = None
    if any(r.outcome == "applied" for r in results):
        # One scan verifies them all: a scan after each action made a plan of thousands of
        # reclaims on a large queue take days.
        try:
            after = scan(alone).findings
        except DoctorError as exc:  # what was applied is journaled, and reported all the same
            unverified = f"the queue could not be scanned again to verify the repairs: {exc}"
            current = ()
        else:
            results = _attribute(results, *_diff(current, after))
            current = after
    return QueueRepairReport(
        queue=source.display,
        journal=str(journal_dir / JOURNAL),
        results=tuple(results),
        remaining=tuple(FindingRef.of(f) for f in current),
        unverified=unverified,
    )


def _attribute(
    results: list[ActionResult], resolved: list[FindingRef], introduced: list[FindingRef]
) -> list[ActionResult]:
    """Each applied action with the findings of its ticket that the scan after the repairs no
    longer (or newly) reports; findings of no repaired ticket go with the last applied action.
    """
    applied = [i for i, r in enumerate(results) if r.outcome == "applied"]
    owner: dict[str, int] = {}
    for i in applied:
        owner.setdefault(results[i].action.target, i)
    gone: dict[int, list[FindingRef]] = {i: [] for i in applied}
    new: dict[int, list[FindingRef]] = {i: [] for i in applied}
    for refs, into in ((resolved, gone), (introduced, new)):
        for ref in refs:
            into[owner.get(ref.ticket_id or "", applied[-1])].append(ref)
    return [
        dataclasses.replace(r, resolved=tuple(gone[i]), introduced=tuple(new[i]))
        if i in gone
        else r
        for i, r in enumerate(results)
    ]
