"""The reaper: takes dead or expired workers' tickets back, and never lets two runs overlap.

One pass (:func:`reap`) looks at every leased ticket (``claimed`` or ``running``):

* the owner ran on this host and its pid is gone (pid plus start time, so a reused pid cannot
  fool it): reclaim at once;
* otherwise, the lease expired (no heartbeat for ``lease_ttl_s``; a NULL heartbeat counts as
  the claim time), outside the claim grace period: reclaim. A reaper that keeps a
  :class:`~executor._lease_watch.LeaseWatch` across passes (each worker's reaper thread) times
  that silence itself, on the monotonic clock, for every ticket it watched since an earlier
  pass: a wall clock stepped forward takes no live lease, one stepped back holds no lapsed one.
  A lease such a reaper first sees lapsed by the stamps is believed only once it saw it stand
  still for half the lease's TTL (a live holder heartbeats within that); a one-shot pass
  (:func:`reap_observed`, ``doctor reap``) watches that long before it takes one, and
  :func:`watch_lapses` watches the leases it is given (``doctor repair --db``: those whose
  holder still runs on the repairing host).

The fence comes first: the reclaim locks the ticket's row and compares it with the row the
pass judged (the lease epoch, the run, the last heartbeat). When anything moved meanwhile (the
epoch: someone else handled it; a heartbeat: the worker lives), nothing is done. Only when the
compare-and-set wins, and while the row stays locked (no worker can claim the ticket, nor its
holder write on the lease), the lost worker's stage process groups that are still running are
killed (each attempt records ``process.json``: pid, pgid and start time), and its run
directory is terminalized: ``final.json`` with status ``fail`` and a reason naming the lost
worker, written only if no ``final.json`` exists yet (first writer wins, atomically), then a
``run_failed`` event; then the ticket goes back to ``todo``. Tickets reclaimed more than
``quarantine_after`` times within ``quarantine_window_s`` are quarantined.

A run whose own worker already wrote ``final.json`` with status ``success`` at the ticket's
current lease epoch did its work: the worker was lost (or its database blinked) between the
record and the ``complete``. Its ticket is completed for it (the same fenced write, at that
epoch), never run again. A run directory that cannot be written (a full disk, a read-only
file system) does not stop the pass: the ticket is still reclaimed, its reason says why the
run has no ``final.json``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from executor._artifacts import append_fresh_line
from executor._config import ExecutorConfig
from executor._errors import FencedError, QueueError
from executor._lease_watch import LeaseWatch
from executor._queue import Lease, Queue, Ticket
from executor._stage_mark import kill_marked
from rundoctor.atomic import create_file
from rundoctor.clock import Clock
from rundoctor.liveness import boot_id, owner_alive, process_alive
from rundoctor.paths import read_regular_bytes
from rundoctor.words import noun, plural

__all__ = [
    "PROCESS_FILE",
    "ReapFailed",
    "ReapInterrupted",
    "Reclaim",
    "kill_stage_escapees",
    "kill_stage_groups",
    "reap",
    "reap_observed",
    "terminalize_lost_run",
    "watch_lapses",
]

#: Written by every stage attempt right after its process starts: pid, pgid, pid_start_time.
PROCESS_FILE = "process.json"
_SKIP_DIRS = frozenset({"worktree", ".git", "input_snapshot", "outputs", "artifacts"})


@dataclass(frozen=True, slots=True)
class Reclaim:
    """What one reclaim did."""

    ticket_id: str
    reason: str
    status: str  # the ticket's status afterwards: todo | quarantined | "" (CAS lost)
    killed_groups: tuple[int, ...]
    terminalized: bool
    #: Processes that had left those groups (``setsid``), killed by their stage's mark.
    killed_escapees: tuple[int, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "ticket_id": self.ticket_id,
            "reason": self.reason,
            "status": self.status,
            "killed_groups": list(self.killed_groups),
            "killed_escapees": list(self.killed_escapees),
            "terminalized": self.terminalized,
        }


def _process_files(run_path: Path) -> Iterator[Path]:
    stack = [run_path]
    while stack:
        d = stack.pop()
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for e in entries:
            if e.is_dir(follow_symlinks=False) and e.name not in _SKIP_DIRS:
                stack.append(Path(e.path))
            elif e.name == PROCESS_FILE and e.is_file(follow_symlinks=False):
                yield Path(e.path)


#: The most of a ``process.json`` or ``final.json`` the reaper reads (the executor writes a
#: few hundred bytes of either): what a stage left in their place is never read whole.
_MAX_RECORD_BYTES = 1024 * 1024


def _process_records(run_path: Path) -> Iterator[dict[str, Any]]:
    """The run's ``process.json`` records that parse as objects."""
    for path in _process_files(run_path):
        try:
            info = json.loads(read_regular_bytes(path, max_bytes=_MAX_RECORD_BYTES))
        except (OSError, ValueError, RecursionError):  # nested past the parser: not ours
            continue
        if isinstance(info, dict):
            yield info


def kill_stage_groups(run_path: Path, *, grace_s: float = 0.0) -> tuple[int, ...]:
    """SIGKILL the process groups of the run's stage attempts that are still running.

    A group is killed only when its leader's pid still runs with the recorded start time, so
    a reused pid is never hit, and only when the attempt was recorded in this boot of this
    host (``boot_id``; a record without one, written before it was kept, is believed): after
    a reboot, or on another host sharing the runs root, the same pid and start time name
    another process (a deterministic boot starts the same services at the same ticks).
    """
    killed: list[int] = []
    here = boot_id()
    for info in _process_records(run_path):
        try:
            pid, pgid = int(info["pid"]), int(info["pgid"])
            start = info.get("pid_start_time")
        except (ValueError, KeyError, TypeError):
            continue
        if info.get("boot_id") is not None and info.get("boot_id") != here:
            continue  # another boot's process: its pid names none of ours
        start = start if isinstance(start, int) else None
        if pgid <= 1 or not process_alive(pid, start):
            continue
        try:
            if grace_s > 0:
                os.killpg(pgid, signal.SIGTERM)
                deadline = time.monotonic() + grace_s
                while time.monotonic() < deadline and process_alive(pid, start):
                    time.sleep(0.02)
            os.killpg(pgid, signal.SIGKILL)
            killed.append(pgid)
        except ProcessLookupError:
            continue
    return tuple(killed)


def kill_stage_escapees(run_path: Path, killed_groups: tuple[int, ...] = ()) -> tuple[int, ...]:
    """SIGKILL the processes of the run's stage attempts outside ``killed_groups`` (the groups
    :func:`kill_stage_groups` just killed): those that left their group (a daemon that called
    ``setsid``), and those of a group whose leader had died. Found by the mark each attempt
    recorded (:mod:`executor._stage_mark`); the pids killed."""
    marks = {str(m) for info in _process_records(run_path) if (m := info.get("mark"))}
    return kill_marked(marks, killed_groups=killed_groups)


def terminalize_lost_run(
    run_path: Path,
    *,
    run_id: str,
    reason: str,
    epoch: int,
    now: float,
    by: str = "executor.reaper",
) -> bool:
    """Write ``final.json`` (status ``fail``) unless the run already has one; True if written.

    The file appears atomically and only once: it is linked into place, which fails when a
    ``final.json`` exists, so a worker that wakes up late and the reaper can never both win.
    ``by`` names who wrote it (``repaired_by.tool``): the reaper, or the worker finishing a
    run the runs root had refused.
    """
    if not run_path.is_dir() or run_path.is_symlink():
        return False
    final = run_path / "final.json"
    stamp = _rfc3339(now)
    doc = {
        "timestamp": stamp,
        "status": "fail",
        "run_id": run_id,
        "failure_reason": reason,
        "final_git_commit_sha": "",
        "repaired_by": {"tool": by, "at": stamp},
    }
    if not _link_json(final, doc):
        return False
    line = {
        "event": "run_failed",
        "status": "fail",
        "reason": reason,
        "run_id": run_id,
        "ts": stamp,
        "epoch": epoch,
    }
    # The lost worker may have died half-way through a line: start on a fresh one.
    append_fresh_line(run_path / "progress.ndjson", (json.dumps(line) + "\n").encode())
    # A fan-out the lost worker never joined: its branches end with the run (chaos seed 11).
    for branch in _open_branches(run_path):
        _link_json(branch / "final.json", {**doc, "failure_reason": f"{reason} (branch)"})
    return True


def _open_branches(run_path: Path) -> Iterator[Path]:
    """Branch directories (``parallel/…`` with a progress stream) without a final.json."""
    parallel = run_path / "parallel"
    if not parallel.is_dir() or parallel.is_symlink():
        return
    for stream in sorted(parallel.glob("**/progress.ndjson")):
        branch = stream.parent
        if "worktree" in branch.relative_to(run_path).parts or branch.is_symlink():
            continue
        if not (branch / "final.json").exists():
            yield branch


def _link_json(target: Path, doc: Mapping[str, object]) -> bool:
    """Create ``target`` with ``doc`` unless it exists (atomic: first writer wins)."""
    return create_file(target, json.dumps(doc, indent=2) + "\n")


def _rfc3339(now: float) -> str:
    secs = int(now)
    frac = f"{round((now - secs) * 1e9):09d}".rstrip("0")
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    return f"{base}.{frac}Z" if frac else f"{base}Z"


def _why(t: Ticket, host: str, now: float) -> str | None:
    """Why ``t`` should be reclaimed now, or None."""
    # Dead needs proof (rundoctor.liveness): pid 1 or an unknowable process is left to the
    # lease's expiry.
    if t.host == host and owner_alive(t.pid, t.proc_start_time) is False:
        return f"worker {t.lease_owner} (pid {t.pid} on {host}) is dead"
    return None


def _silent(t: Ticket, silent_s: float) -> str:
    """Why ``t``, whose lease this reaper watched stand still, is reclaimed."""
    return (
        f"lease of worker {t.lease_owner} expired ({silent_s:.0f}s without a heartbeat,"
        " timed by the reaper's monotonic clock)"
    )


def _lapsed(t: Ticket, now: float, watched_s: float | None = None) -> str:
    """Why ``t``, whose lease expired, is reclaimed (``watched_s``: how long this reaper saw
    it stand still first, when it did)."""
    seen = t.last_heartbeat_at or t.claimed_at
    gap = f" ({now - seen:.0f}s without a heartbeat)" if seen is not None else ""
    watched = "" if watched_s is None else f"; none came in the {watched_s:.1f}s the reaper watched"
    return f"lease of worker {t.lease_owner} expired{gap}{watched}"


def _beat_window(t: Ticket, config: ExecutorConfig) -> float:
    """How long a live holder of ``t`` surely takes to heartbeat: half its lease's TTL (a
    worker heartbeats at least twice a TTL, :meth:`ExecutorConfig.validate`), read from the
    lease's stamps, which one clock wrote at one instant; the reaper's TTL when they lack."""
    alive, expires = t.last_alive_at, t.lease_expires_at
    ttl = expires - alive if alive is not None and expires is not None else 0.0
    return (ttl if ttl > 0 else config.lease_ttl_s) / 2


def _succeeded(run_path: Path, epoch: int) -> bool:
    """True when the run's own worker recorded success at ``epoch`` (its ``final.json``)."""
    try:
        # Never a plain read: a stage may leave a FIFO there (its KILROY_LOGS_ROOT is the
        # run's), and every reaper pass, every worker's, waited on it for good.
        doc = json.loads(read_regular_bytes(run_path / "final.json", max_bytes=_MAX_RECORD_BYTES))
    except (OSError, ValueError, RecursionError):
        return False
    return (
        isinstance(doc, dict)
        and doc.get("status") == "success"
        and doc.get("epoch") == epoch
        and "repaired_by" not in doc
    )


def _adopt(queue: Queue, t: Ticket, reason: str) -> Reclaim:
    """Complete a lost worker's ticket whose run succeeded (fenced at the ticket's epoch)."""
    why = f"{reason}; its run had succeeded (final.json), so the ticket was completed for it"
    lease = Lease(t, t.lease_epoch, t.lease_owner or "reaper")
    try:
        status = queue.complete(
            lease, result={"adopted_by": "executor.reaper", "reason": why}
        ).status
    except FencedError:
        status = ""
    return Reclaim(t.id, why, status, (), False)


def reap(
    queue: Queue,
    config: ExecutorConfig,
    *,
    host: str | None = None,
    clock: Clock = time.time,
    watch: LeaseWatch | None = None,
) -> list[Reclaim]:
    """One reaper pass over the queue; returns what it reclaimed.

    Leases are aged in the queue's clock (:meth:`Queue.now`: the database server's for
    PostgreSQL), the clock they were stamped in, never in this host's: a worker whose clock
    disagrees with the reaper's keeps its live lease and loses a dead one on time. ``clock``
    is this host's clock, for what the pass writes into run directories (``final.json``,
    ``run_failed``), whose other events the workers stamp with theirs.

    ``watch``, kept from one pass to the next, judges each ticket it saw at an earlier pass by
    the silence it timed itself (:mod:`executor._lease_watch`): the queue's clock may have
    stepped since.

    >>> from executor._queue import open_queue, SessionInfo
    >>> q = open_queue(":memory:", clock=lambda: 1000.0)
    >>> _ = q.enqueue("t", "/p.dot")
    >>> _ = q.claim("w1", lease_ttl_s=60, session=SessionInfo("s", 99999999, 99999999, 1, "h"))
    >>> [r.status for r in reap(q, ExecutorConfig(), host="h", clock=lambda: 1000.0)]
    ['todo']
    """
    host = host or socket.gethostname()
    now = queue.now()
    leased = queue.tickets(status=("claimed", "running"))
    expired = {t.id for t in queue.expired(now, claim_grace_s=config.claim_grace_s)}
    if watch is not None:
        watch.observe(leased)
    # (ticket, reason, claim grace: None when the reclaim does not rest on the queue's clock)
    dead: list[tuple[Ticket, str, float | None]] = []
    lapsed: list[tuple[Ticket, str, float | None]] = []
    for t in leased:
        reason = _why(t, host, now)
        believed = None
        if reason is None and t.id in expired:
            believed = True if watch is None else watch.lapse_believed(t, _beat_window(t, config))
        silent = None if watch is None else watch.silence(t)
        if reason is not None:
            dead.append((t, reason, None))
        elif believed is not None:  # lapsed by the stamps: believed, or held while watched
            if believed:
                lapsed.append((t, _lapsed(t, now, silent), config.claim_grace_s))
        elif silent is not None:  # watched since before it lapsed: its own silence decides
            grace = config.claim_grace_s if t.status == "claimed" else 0.0
            if silent >= config.lease_ttl_s + grace:
                lapsed.append((t, _silent(t, silent), None))
    # Proven deaths first: a lapsed lease may belong to a worker frozen inside a transaction
    # that still locks its row, and its reclaim waits for that lock (chaos seed 120).
    done: list[Reclaim] = []
    for t, reason, claim_grace in dead + lapsed:
        try:
            done.append(_reclaim(queue, config, t, reason, clock, claim_grace_s=claim_grace))
        except QueueError as exc:  # the reclaims made are made: the caller reports them
            raise ReapFailed(done, exc) from exc
    return done


class ReapFailed(QueueError):
    """The queue failed during a :func:`reap` pass (a server restarted, a connection
    dropped): ``found`` holds what the pass had reclaimed before (done in the queue, so
    ``doctor reap`` still reports them); the message is the queue's error."""

    def __init__(self, found: list[Reclaim], error: QueueError) -> None:
        super().__init__(str(error), lasting=error.lasting)
        self.found = found


class ReapInterrupted(KeyboardInterrupt):
    """Ctrl-C while :func:`reap_observed` watched: ``found`` holds what its passes had
    reclaimed by then (done in the queue, so ``doctor reap`` still reports them)."""

    def __init__(self, found: list[Reclaim]) -> None:
        super().__init__()
        self.found = found


def reap_observed(
    queue: Queue,
    config: ExecutorConfig,
    *,
    host: str | None = None,
    clock: Clock = time.time,
    say: Callable[[str], None] | None = None,
) -> list[Reclaim]:
    """A one-shot reaper pass (``doctor reap``) that takes no live lease after a step of
    the queue's clock: the pass of :func:`reap` with a fresh :class:`LeaseWatch`, then, while
    a lease the stamps alone call lapsed is held (its holder neither proven dead nor seen
    standing still for half its TTL), another pass every ``reaper_interval_s``. A holder that
    heartbeats meanwhile keeps its lease; a proven-dead one's is taken at the first pass.
    ``say`` is told, once, what the pass waits for; a queue that fails while it waits ends the
    wait (``say`` is told why, the held leases are left untaken), and what the passes
    reclaimed is returned. A queue that fails during the first pass raises its
    :class:`ReapFailed`, holding what that pass reclaimed. Ctrl-C while it waits raises
    :class:`ReapInterrupted` holding what the passes reclaimed.

    >>> from executor._queue import open_queue, SessionInfo
    >>> now = [1000.0]
    >>> q = open_queue(":memory:", clock=lambda: now[0])
    >>> _ = q.enqueue("t", "/p.dot")
    >>> _ = q.claim("w1", lease_ttl_s=0.2, session=SessionInfo("s", 1, 1, None, "elsewhere"))
    >>> now[0] += 3600  # a step, or a worker gone for an hour: watched 0.1 s before taken
    >>> (r,) = reap_observed(q, ExecutorConfig(reaper_interval_s=0.05), host="h")
    >>> r.reason.split("; ")  # doctest: +ELLIPSIS
    ['lease of worker w1 expired (3600s without a heartbeat)', 'none came in the 0...s the ...']
    """
    watch = LeaseWatch()
    found = reap(queue, config, host=host, clock=clock, watch=watch)
    try:
        if say is not None and watch.held():
            n = watch.held()
            say(
                f"{plural(n, 'lease')} {noun(n, 'looks', 'look')} expired by the queue's clock "
                f"alone: watching for a heartbeat for up to {watch.held_s():.0f} s before "
                f"taking {noun(n, 'it', 'them')} (a clock stepped forward makes live leases "
                "look expired)"
            )
        while (held := watch.held_s()) > 0:
            time.sleep(min(config.reaper_interval_s, held))
            n = watch.held()
            try:
                found += reap(queue, config, host=host, clock=clock, watch=watch)
            except QueueError as exc:  # what the earlier passes reclaimed is still reported
                found += exc.found if isinstance(exc, ReapFailed) else []
                if say is not None:
                    say(f"{exc}; {plural(n, 'lease')} watched {noun(n, 'is', 'are')} left untaken")
                break
    except KeyboardInterrupt as exc:  # the reclaims done are done: the caller reports them
        raise ReapInterrupted(found) from exc
    return found


def watch_lapses(
    queue: Queue,
    config: ExecutorConfig,
    tickets: Iterable[Ticket],
    *,
    say: Callable[[str], None] | None = None,
) -> dict[str, float]:
    """Watch ``tickets``, leases that look lapsed by the queue's clock alone, all together
    for a heartbeat's window each (half the lease's TTL, as :func:`reap_observed` does): the
    ids of those that stood still that long, each with the seconds it was watched. Those that
    moved meanwhile (their holder heartbeat: the queue's clock stepped forward, it did not stop)
    and those no longer leased are left out. A pass every ``reaper_interval_s``; ``say`` is
    told once what the wait is for. A queue that fails while it waits raises its
    :class:`QueueError`.

    >>> from executor._queue import open_queue, SessionInfo
    >>> q = open_queue(":memory:", clock=lambda: 1000.0)
    >>> _ = q.enqueue("t", "/p.dot")
    >>> _ = q.claim("w1", lease_ttl_s=0.2, session=SessionInfo("s", 1, 1, None, "h"))
    >>> (t,) = q.tickets()
    >>> watched = watch_lapses(q, ExecutorConfig(reaper_interval_s=0.05), [t])
    >>> list(watched) == [t.id] and watched[t.id] >= 0.1  # half its 0.2 s TTL, standing still
    True
    """
    wanted = {t.id: _beat_window(t, config) for t in tickets}
    watch = LeaseWatch()
    stood: dict[str, float] = {}
    said = False
    while wanted:
        leased = [t for t in queue.tickets(status=("claimed", "running")) if t.id in wanted]
        watch.observe(leased)
        held = {t.id: watch.lapse_believed(t, wanted[t.id]) for t in leased}
        for t in leased:
            if held[t.id]:
                stood[t.id] = watch.silence(t) or wanted[t.id]
        wanted = {i: w for i, w in wanted.items() if held.get(i) is False}
        if not wanted or (left := watch.held_s()) <= 0:
            break
        if say is not None and not said:
            n, said = len(wanted), True
            say(
                f"{plural(n, 'lease')} {noun(n, 'looks', 'look')} expired by the queue's "
                f"clock alone: watching for a heartbeat for up to "
                f"{left:.0f} s before taking {noun(n, 'it', 'them')} (a clock stepped forward "
                "makes live leases look expired)"
            )
        time.sleep(min(config.reaper_interval_s, left))
    return stood


def _reclaim(
    queue: Queue,
    config: ExecutorConfig,
    t: Ticket,
    reason: str,
    clock: Clock,
    *,
    claim_grace_s: float | None,
) -> Reclaim:
    """Take ``t`` back from its lost worker: adopt its succeeded run, or reclaim the ticket
    (fenced at its epoch, and refused if its holder wrote on the lease since ``t`` was read)
    and, once the compare-and-set is known to win, kill the run's stages and terminalize the
    run, under the row's lock, before the ticket goes back to ``todo``.

    The fence comes first: a worker whose heartbeat got through after the judgment keeps its
    lease and its stages (they were killed, "lost worker" written into ``final.json``, and
    the compare-and-set on the epoch alone then took the renewed lease). No worker can claim
    the ticket, nor its holder write on the lease, while the stages are killed: two executions
    of one ticket never overlap.

    ``final.json`` and ``run_failed`` carry the time they are written, not the time the pass
    began: an earlier reclaim of the pass can wait seconds behind the database (a worker
    frozen while it held the SQLite lock), and a run stamped then ended "before" the events its
    woken worker wrote meanwhile (``post_terminal_activity``, chaos seed 39)."""
    if t.run_path and _succeeded(Path(t.run_path), t.lease_epoch):
        return _adopt(queue, t, reason)
    stopped = _Stopped(reason, clock)
    try:
        after = queue.reclaim(
            t.id,
            expected_epoch=t.lease_epoch,
            reason=reason,
            quarantine_after=config.quarantine_after,
            window_s=config.quarantine_window_s,
            claim_grace_s=claim_grace_s,
            judged=t,  # a holder that heartbeat, or started a run, since: refused
            stop_holder=stopped,
        )
        status = after.status
    except FencedError:
        status = ""
    return Reclaim(
        t.id, reason + stopped.why, status, stopped.groups, stopped.written, stopped.escapees
    )


class _Stopped:
    """What a reclaim did to its lost worker's run, once its compare-and-set won: the stages
    killed (before the ticket can be claimed again: two executions of one ticket must never
    overlap) and the run terminalized. Idempotent: the database may run the reclaim's
    transaction again (a deadlock), and this again with it."""

    def __init__(self, reason: str, clock: Clock) -> None:
        self.reason, self.clock = reason, clock
        self.groups: tuple[int, ...] = ()
        self.escapees: tuple[int, ...] = ()
        self.written = False
        self.why = ""

    def __call__(self, t: Ticket) -> str:
        if not t.run_path:
            return ""
        run_path = Path(t.run_path)
        killed = kill_stage_groups(run_path)
        self.groups += tuple(g for g in killed if g not in self.groups)
        self.escapees += tuple(
            p for p in kill_stage_escapees(run_path, killed) if p not in self.escapees
        )
        self.why = ""
        try:
            self.written = (
                terminalize_lost_run(
                    run_path,
                    run_id=t.run_id or run_path.name,
                    reason=f"lost worker: {self.reason}; the ticket was reclaimed",
                    epoch=t.lease_epoch + 1,
                    now=self.clock(),
                )
                or self.written
            )
        except OSError as exc:  # ENOSPC, EROFS: the queue still learns what happened
            self.why = f"; its run directory could not be terminalized ({exc})"
        return self.why
