"""What a fault is: one plain function over the campaign's :class:`Target`, plus what it may do.

A fault function takes the running campaign (:class:`Target`: its workers, the queue's leased
tickets, the seeded ``pick`` that chooses among candidates) and either hits something and
returns an :class:`Injection` (what it hit, the runs and leases it touched, and how to undo it
later, for SIGSTOP and a stalled database), or returns ``None`` when nothing fit (the campaign
records a ``skip``). The function's docstring says what it does; :class:`Fault` adds the
doctor findings it may cause (``may_cause``: codes a run it touched may show at ``error`` or
above without that being a bug) and which reclaim-latency bound it is measured against.

Targets are chosen deterministically from what is there: candidates sorted by name, then
``candidates[pick % len(candidates)]`` (:func:`choose`).

>>> choose(["w2", "w1", "w3"], 4)
'w2'
>>> choose([], 4) is None
True
"""

from __future__ import annotations

import json
import os
import shlex
import sqlite3
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import psutil

from chaos._errors import FaultNotApplicable, FaultSkipped
from chaos._history import Held
from executor import ExecutorConfig, Ticket
from rundoctor.passwords import redact

__all__ = [
    "DATABASE_FAULTS",
    "DATABASE_UNAVAILABLE",
    "DISK_FINDINGS",
    "NOT_APPLICABLE",
    "Fault",
    "Injection",
    "Stage",
    "Target",
    "WorkerHandle",
    "choose",
    "control_database",
    "database_unavailable",
    "disk_root",
    "held_by",
    "leases_of",
    "live_stages",
    "require_database_free",
    "require_db_control",
    "runs_of",
    "runs_under",
    "signal_worker",
]

T = TypeVar("T")

#: Faults that hold the queue's database away; only one of them runs at a time, and the
#: harness feeds no tickets meanwhile.
DATABASE_FAULTS = ("stall_database", "restart_database", "database_outage")


def require_database_free(target: Target) -> None:
    """Raise :class:`FaultSkipped` while another database fault holds the queue's database:
    one of them at a time (a second lock would wait for the first one's undo), and the
    harness writes nothing meanwhile. The campaign records a ``database unavailable`` skip
    naming the fault that holds it, not a fault without a target."""
    holding = [f for f in DATABASE_FAULTS if target.pending(f)]
    if holding:
        raise FaultSkipped(f"the queue database is unavailable: {holding[0]} holds it")


#: What a run whose writes a full or read-only disk refused may show: no ``final.json`` (its
#: ticket's reason says why), a torn last line, or the events that would have closed an
#: attempt, a fan-out or the checkpoint missing.
DISK_FINDINGS = frozenset(
    {
        "missing_final",
        "torn_artifact",
        "stale_heartbeat",
        "unjoined_fanout",
        "checkpoint_drift",
        "post_terminal_activity",
        "telemetry_divergence",
        "status_contract_mismatch",
        "lost_failure_reason",
    }
)


class WorkerHandle:
    """A worker process of the campaign; ``frozen`` while SIGSTOPped, ``doomed`` once the
    harness killed or terminated it (its exit is expected)."""

    def __init__(self, name: str, popen: subprocess.Popen[bytes]) -> None:
        self.name = name
        self.popen = popen
        self.pid = popen.pid
        self.frozen = False
        self.doomed = False
        self.exited = False  # its exit was recorded

    def process(self) -> psutil.Process:
        return psutil.Process(self.pid)

    def __repr__(self) -> str:
        return f"WorkerHandle({self.name!r}, pid={self.pid})"


class Target(Protocol):
    """The running campaign as a fault sees it."""

    #: The seeded number that chooses among candidates.
    pick: int
    #: The queue's URL (a SQLite path or a PostgreSQL URL).
    url: str
    config: ExecutorConfig
    #: The command that controls the database under test (``{action}`` is ``restart``,
    #: ``stop`` or ``start``), or None: database faults on PostgreSQL are then skipped.
    db_control: str | None
    #: A directory the faults may write into (e.g. pipelines they enqueue).
    scratch: Path
    #: Where the workers put their run directories.
    runs_root: Path

    def enqueue(self, title: str, graph: Path) -> Ticket:
        """Enqueue a ticket of the campaign's (its fate is checked like every other)."""
        ...

    def workers(self) -> list[WorkerHandle]:
        """Live workers that are not frozen and not doomed, sorted by name."""
        ...

    def leased(self) -> list[Ticket]:
        """The campaign's tickets that are claimed or running now, sorted by id."""
        ...

    def pending(self, fault: str) -> bool:
        """True while an injection of ``fault`` waits to be undone."""
        ...


@dataclass(frozen=True, slots=True)
class Injection:
    """What a fault hit: ``target`` (e.g. ``worker w2 (pid 4242)``), details, the run
    directories and leases it touched, and an optional ``undo`` run ``undo_after_s`` later."""

    target: str
    detail: dict[str, Any] = field(default_factory=dict)
    runs: tuple[str, ...] = ()
    held: tuple[Held, ...] = ()
    undo: Callable[[], dict[str, Any]] | None = None
    undo_after_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Fault:
    """A fault of the catalog: its function, the findings it may cause, its latency bound."""

    inject: Callable[[Target], Injection | None]
    #: Doctor finding codes a run this fault touched may show at ``error`` or above.
    may_cause: frozenset[str] = frozenset()
    #: ``sigkill`` or ``sigstop``: the reclaim-latency bound its leases are held to.
    reclaims: str = ""

    @property
    def name(self) -> str:
        return self.inject.__name__

    @property
    def summary(self) -> str:
        """The first line of the function's docstring."""
        return (self.inject.__doc__ or "").strip().splitlines()[0]


def choose(candidates: Iterable[T], pick: int, key: Callable[[T], Any] = str) -> T | None:
    """The candidate ``pick`` selects, after sorting by ``key``; None when there is none."""
    ordered = sorted(candidates, key=key)
    return ordered[pick % len(ordered)] if ordered else None


def held_by(worker: WorkerHandle, leased: Sequence[Ticket]) -> list[Ticket]:
    """The leased tickets whose lease this worker's slots hold."""
    return [t for t in leased if (t.lease_owner or "").startswith(f"{worker.name}/")]


def runs_of(tickets: Iterable[Ticket]) -> tuple[str, ...]:
    """The run directories of tickets that have one."""
    return tuple(sorted(t.run_path for t in tickets if t.run_path))


def runs_under(root: str, since: float) -> list[str]:
    """Run directories under ``root`` changed since ``since`` (the ones a disk fault hit)."""
    out: list[str] = []
    with os.scandir(root) as entries:
        for e in entries:
            try:
                if e.is_dir(follow_symlinks=False) and e.stat().st_mtime >= since - 1.0:
                    out.append(e.path)
            except OSError:
                continue
    return sorted(out)


def leases_of(tickets: Iterable[Ticket]) -> tuple[Held, ...]:
    """The (ticket, epoch) pairs of tickets."""
    return tuple(Held(t.id, t.lease_epoch) for t in tickets)


def signal_worker(target: Target, send: Callable[[psutil.Process], None]) -> Injection | None:
    """Pick a worker (one holding a lease when there is one), expect its exit, and ``send``
    it a signal; the injection records the runs and leases it held.

    Never the last awake worker: with the others frozen (``sigstop_worker``), nobody would reap
    its leases until a replacement had started, far past the ``sigkill`` bound (``--seed 41
    --duration 6s --workers 2``: 2.5-2.6 s)."""
    workers = target.workers()
    if len(workers) < 2:
        return None  # the last awake worker is the reaper of everyone else (seed 41)
    leased = target.leased()
    busy = [w for w in workers if held_by(w, leased)]
    worker = choose(busy or workers, target.pick, key=lambda w: w.name)
    if worker is None:
        return None
    held = held_by(worker, leased)
    worker.doomed = True  # its exit is expected: the campaign replaces it
    try:
        send(worker.process())
    except psutil.Error as exc:
        return Injection(f"worker {worker.name} (pid {worker.pid})", {"error": str(exc)})
    return Injection(
        target=f"worker {worker.name} (pid {worker.pid})",
        detail={"pid": worker.pid, "worker": worker.name},
        runs=runs_of(held),
        held=leases_of(held),
    )


def control_database(template: str, action: str) -> dict[str, Any]:
    """Run the database-control command with ``{action}`` filled in; what happened, as detail.

    >>> control_database("true {action}", "restart")["exit_status"]
    0
    """
    argv = shlex.split(template.replace("{action}", action))
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return {"action": action, "error": f"{type(exc).__name__}: {exc}"}
    out = {"action": action, "exit_status": done.returncode}
    if done.returncode != 0:
        out["error"] = (done.stderr or done.stdout).strip()[-300:]
    return out


#: The reason a fault that met an unavailable database is skipped with (``target``).
DATABASE_UNAVAILABLE = "database unavailable"
#: The target of a skip for a fault the campaign cannot apply (:class:`FaultNotApplicable`).
NOT_APPLICABLE = "not applicable"


def disk_root(target: Target) -> str | None:
    """The runs root for a disk fault (``disk_full``, ``read_only_root``): None while one of
    them holds it (no target yet); :class:`FaultNotApplicable` when it is not a file system of
    its own (``--runs-tmpfs``), since the harness never fills or remounts a shared one, at any
    moment of the campaign."""
    root = str(target.runs_root)
    if not os.path.ismount(root):
        raise FaultNotApplicable(
            "the runs root is not a file system of its own, and the harness never fills or "
            "remounts a shared one: pass --runs-tmpfs MB (as root) to give the runs their own"
        )
    return None if target.pending("disk_full") or target.pending("read_only_root") else root


def require_db_control(target: Target) -> str:
    """The command that controls the PostgreSQL database under test (``--db-control``); else
    raise :class:`FaultNotApplicable`."""
    if not target.db_control:
        raise FaultNotApplicable(
            "no command controls the PostgreSQL database under test: pass --db-control CMD "
            "(e.g. 'pg_ctl -D DIR -m fast -w {action}')"
        )
    return target.db_control


def database_unavailable(exc: BaseException, url: str = "") -> str | None:
    """Why ``exc`` shows the queue's database unavailable (``url``'s password hidden), or None.

    The database is unavailable when the driver, anywhere down the chain of causes, could not
    reach it or was cut off (``psycopg.OperationalError``: refused, shutting down, a session
    terminated by a restart; ``psycopg.InterfaceError``: a connection already closed), or
    when SQLite's lock stayed held past the busy timeout (``database is locked``/``busy``).
    A fault that meets one of these while a database fault holds the database away cannot
    fire; the campaign records it as a skip with this reason. Any other error is the fault's.

    >>> from executor import QueueError
    >>> try:
    ...     try:
    ...         raise sqlite3.OperationalError("database is locked")
    ...     except sqlite3.Error as exc:
    ...         raise QueueError("SQLite queue 'q.db' (transaction): …") from exc
    ... except QueueError as exc:
    ...     database_unavailable(exc)
    'the queue database is unavailable: database is locked'
    >>> database_unavailable(sqlite3.IntegrityError("UNIQUE constraint failed")) is None
    True
    """
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if _unreachable(cause):
            lines = str(cause).strip().splitlines()
            first = lines[0] if lines else type(cause).__name__
            return f"the queue database is unavailable: {redact(first, url) if url else first}"
        cause = cause.__cause__ or cause.__context__
    return None


def _unreachable(error: BaseException) -> bool:
    if isinstance(error, sqlite3.OperationalError):
        return any(word in str(error) for word in ("locked", "busy"))
    if not type(error).__module__.startswith("psycopg"):
        return False  # not a driver error: psycopg need not be imported to say so
    import psycopg

    return isinstance(error, psycopg.OperationalError | psycopg.InterfaceError)


@dataclass(frozen=True, slots=True)
class Stage:
    """A live stage session: its leader's pid and group, in one run directory."""

    run_path: str
    node: str
    pid: int
    pgid: int
    ticket: str


def live_stages(tickets: Iterable[Ticket]) -> list[Stage]:
    """The stage sessions running now for ``tickets`` (from each attempt's ``process.json``)."""
    found: list[Stage] = []
    for t in tickets:
        if not t.run_path or t.status != "running":
            continue
        for path in sorted(Path(t.run_path).glob("**/attempt-*/process.json")):
            try:
                info = json.loads(path.read_text())
                pid, pgid = int(info["pid"]), int(info["pgid"])
                # The leader still runs in the recorded group: not a reused pid.
                if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE or os.getpgid(pid) != pgid:
                    continue
            except (OSError, ValueError, KeyError, TypeError, psutil.Error):
                continue
            node = path.parent.parent.name
            found.append(Stage(t.run_path, node, pid, pgid, t.id))
    return found
