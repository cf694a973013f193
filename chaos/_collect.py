"""Preparing a campaign's directory and database, and collecting its history afterwards.

After the drain, the history is assembled from four sources: the harness's own records
(faults, worker starts and exits), each worker's recorded ticket operations, the queue (its
``ticket_events`` and every ticket's final row) and the run directories (``final.json``, the
breaker's events, stage heartbeats, and ``doctor.diagnose_path``'s findings). An ``invoke``
left without an outcome (its worker was killed mid-call) is closed with an ``info`` op at the
worker's exit: the call may or may not have happened, and the checkers treat it so.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import doctor
from chaos._config import CampaignConfig
from chaos._errors import CampaignError, UsageError
from chaos._history import (
    FindingFact,
    History,
    Meta,
    Op,
    QueueEvent,
    Record,
    RunRecord,
    TicketRecord,
    WorkerRecord,
    read_records,
)
from chaos._workload import Workload
from executor import Queue, Ticket
from rundoctor.passwords import redact
from rundoctor.paths import expand_user, make_dirs, remove_tree
from rundoctor.terminal import printable

__all__ = ["check_out", "collect", "prepare_db", "prepare_out", "run_facts"]

_OURS = frozenset({"campaign", "history.ndjson", "report.md", "report.json"})
_CHECKS = ("deterministic_failure_cycle_check", "subgraph_deterministic_failure_cycle_check")
_TRIPS = ("deterministic_failure_cycle_breaker", "subgraph_deterministic_failure_cycle_breaker")
_FINAL_STATUSES = frozenset({"success", "fail", "canceled"})


def prepare_out(out: Path) -> Path:
    """Create ``out`` (or clear a previous campaign's files from it); refuse anything else."""
    out = check_out(out)
    try:
        for name in _OURS:  # a campaign's runs may nest past any recursion limit
            remove_tree(out / name)
    except OSError as exc:
        raise UsageError(
            f"cannot clear the previous campaign from --out {str(out)!r}: {exc}"
        ) from exc
    try:
        for sub in ("pipelines", "runs", "workers"):
            make_dirs(out / "campaign" / sub)
    except OSError as exc:
        raise UsageError(f"cannot create --out {str(out)!r}: {exc.strerror}") from exc
    return out


def check_out(out: Path) -> Path:
    """``out`` resolved, when a campaign may use it (new, or empty, or a previous campaign's
    directory); refuse anything else. Reads only: nothing is created or removed."""
    try:
        # Strict, so that a symlink loop is refused here on every Python: 3.13's non-strict
        # resolve no longer raises for one (RuntimeError before), and `--out loop` then failed
        # later, as "cannot create --out".
        try:
            out = expand_user(out).resolve(strict=True)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise
            # A new directory (created below), or a name the file system refuses, which the
            # creation below names as such ("file name too long").
            out = expand_user(out).resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop (RuntimeError before 3.13)
        raise UsageError(
            f"--out {str(out)!r} cannot be resolved: {exc}; pass a directory"
        ) from None
    try:  # its pipelines are queued by path, and a queue stores text
        str(out).encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(
            f"--out '{printable(out)}' is not UTF-8 text (a byte such as \\xff in a name is no "
            "character): the campaign queues the pipelines it writes there by their path, which "
            "a queue stores as text; pass a directory whose path is UTF-8"
        ) from None
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a file; pass a directory")
    if out.exists():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in _OURS)
        if foreign:
            raise UsageError(
                f"--out {str(out)!r} holds other files ({', '.join(foreign[:3])}); pass an "
                "empty or new directory"
            )
    return out


def prepare_db(config: CampaignConfig, directory: Path) -> tuple[str, Callable[[], None]]:
    """The queue URL the campaign uses, and what to do with the database afterwards.

    No ``--db``: a fresh SQLite file in the campaign directory. A SQLite ``--db`` must be new,
    or the queue a previous campaign in ``directory`` left (replaced). A PostgreSQL URL without a
    ``search_path`` gets a schema of its own (dropped once the history is collected), so the
    campaign never sees another's tickets; with ``options=`` the caller chose the schema.
    """
    if config.db is None:
        return f"sqlite:///{directory / 'queue.db'}", lambda: None
    url = config.db
    if not url.startswith(("postgresql://", "postgres://")):
        path = Path(url.removeprefix("sqlite://"))
        if path.exists() and path.stat().st_size > 0:
            if not _campaign_queue(path, directory):
                raise UsageError(
                    f"--db {url!r} exists; a campaign needs a fresh queue file (or the queue a "
                    "previous campaign in the same --out left, which its replay replaces)"
                )
            _remove_sqlite(path)
        return _absolute(url), lambda: None
    import psycopg

    shown = redact(url, drop=True)
    if "options=" in url:
        # The caller chose the schema: it must exist, or the queue's tables have nowhere to
        # go, and the campaign failed only once it had started (its replay printed).
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
                row = conn.execute("SELECT current_schema()").fetchone()
        except psycopg.Error as exc:
            raise CampaignError(f"cannot reach --db {shown!r}: {_first_line(exc)}") from exc
        if row is None or row[0] is None:
            raise UsageError(
                f"--db {shown!r}: its search_path (options=) names no schema that exists; "
                "create it first (CREATE SCHEMA NAME), or leave options= out and the campaign "
                "makes a schema of its own"
            )
        return url, lambda: None
    schema = f"chaos_{config.seed}_{time.time_ns() // 1000:x}"
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
    except psycopg.Error as exc:
        raise CampaignError(
            f"cannot create schema {schema} for the campaign in --db {shown!r}: {_first_line(exc)}"
        ) from exc

    def drop() -> None:
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        except psycopg.Error:
            pass  # the history is written; a leftover schema is harmless

    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}", drop


def _first_line(exc: Exception) -> str:
    """The first line of a database error (libpq's carry a hint and a caret on more)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _absolute(url: str) -> str:
    """A SQLite ``--db`` (a path, or ``sqlite://PATH``) with its path made absolute: the
    workers run from the checkout, not from here. Anything else is left as it is, for the
    queue to refuse.

    >>> _absolute("sqlite:///srv/q.db"), _absolute("mysql://x")
    ('sqlite:///srv/q.db', 'mysql://x')
    """
    if "://" in url and not url.startswith("sqlite://"):
        return url
    path = expand_user(url.removeprefix("sqlite://"))
    return f"sqlite://{os.path.abspath(path)}"


def _campaign_queue(path: Path, directory: Path) -> bool:
    """True when ``path`` is the SQLite queue of a previous campaign in ``directory``: it has
    tickets, and every one runs a pipeline of that campaign (its workload or a fault's).

    The printed replay command names the same ``--db`` and ``--out``; the queue it finds is
    that campaign's, and only such a queue is replaced (the replay was refused before).
    """
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            rows = conn.execute("SELECT graph_path FROM tickets").fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return False  # not a queue (or not readable): never replaced
    home = directory.resolve()
    return bool(rows) and all(Path(str(r[0])).is_relative_to(home) for r in rows)


def _remove_sqlite(path: Path) -> None:
    """Delete a SQLite database and its journal, WAL and shared-memory files."""
    for file in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm", "-journal"))):
        file.unlink(missing_ok=True)


def _close_dangling(ops: list[Op], exits: dict[str, float], end: float) -> list[Op]:
    """``info`` for every ``invoke`` whose worker died before it could write the outcome."""
    open_: Counter[tuple[Any, ...]] = Counter()
    first: dict[tuple[Any, ...], Op] = {}
    for op in ops:
        key = (op.worker, op.f, op.ticket, op.epoch)
        if op.type == "invoke":
            open_[key] += 1
            first.setdefault(key, op)
        elif open_[key] > 0:
            open_[key] -= 1
    closing = [
        Op(
            exits.get(op.process, end),
            "info",
            op.f,
            op.worker,
            op.process,
            op.ticket,
            op.epoch,
            {},
            "no outcome: the worker exited during the call",
        )
        for key, op in first.items()
        for _ in range(open_[key])
    ]
    return ops + closing


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    try:
        raw = path.read_bytes()
    except OSError:
        return
    for line in raw.splitlines():
        try:
            data = json.loads(line)
        except ValueError:
            continue  # a torn line: the doctor reports it, the facts skip it
        if isinstance(data, dict):
            yield data


def run_facts(path: Path, *, ticket: str, epoch: int, workload: str, now: float) -> RunRecord:
    """The facts the checkers need about one run directory."""
    final_status, problem, final_at, final_by = None, "", None, ""
    try:
        doc = json.loads((path / "final.json").read_bytes())
        final_at = (path / "final.json").stat().st_mtime
    except FileNotFoundError:
        doc, problem = None, "no final.json"
    except (OSError, ValueError) as exc:
        doc, problem = None, f"final.json is unreadable: {exc}"
    if isinstance(doc, dict):
        status = doc.get("status")
        if status not in _FINAL_STATUSES:
            problem = f"final.json status {status!r} is not success, fail or canceled"
        elif doc.get("run_id") != path.name:
            problem = f"final.json names run {doc.get('run_id')!r}, not {path.name!r}"
        else:
            final_status = str(status)
        final_by = "reaper" if isinstance(doc.get("repaired_by"), dict) else "executor"
    elif doc is not None:
        problem = "final.json is not a JSON object"
    limit: int | None = None
    top, trips = 0, 0
    late: list[str] = []
    streams = [path / "progress.ndjson", *sorted(path.glob("parallel/**/progress.ndjson"))]
    for stream in streams:
        ended: set[tuple[Any, Any]] = set()
        for e in _lines(stream):
            name = e.get("event")
            key = (e.get("node_id"), e.get("attempt"))
            if name in _CHECKS:
                top = max(top, int(e.get("signature_count") or 0))
                limit = max(limit or 0, int(e.get("signature_limit") or 0))
            elif name in _TRIPS:
                trips += 1
            elif name == "stage_attempt_end":
                ended.add(key)
            elif name == "stage_heartbeat" and key in ended:
                where = str(stream.parent.relative_to(path)) if stream.parent != path else "run"
                late.append(f"{where}: {key[0]} attempt {key[1]} at {e.get('ts')}")
    findings = _findings(path, now)
    return RunRecord(
        time=final_at or now,
        run_id=path.name,
        path=str(path),
        ticket=ticket,
        epoch=epoch,
        workload=workload,
        final_status=final_status,
        final_problem=problem,
        final_at=final_at,
        final_by=final_by,
        signature_limit=limit,
        max_signature_count=top,
        breaker_trips=trips,
        late_heartbeats=tuple(late),
        findings=findings,
    )


def _findings(path: Path, now: float) -> tuple[FindingFact, ...]:
    try:
        d = doctor.diagnose_path(path, doctor.DoctorConfig(now=now))
    except doctor.DoctorError as exc:
        return (FindingFact("diagnose_failed", "error", f"{type(exc).__name__}: {exc}"),)
    return tuple(FindingFact(f.code, f.severity.label, f.summary) for f in d.findings)


def _ticket_record(t: Ticket, workload: str) -> TicketRecord:
    return TicketRecord(
        time=t.finished_at or t.updated_at,
        ticket=t.id,
        title=t.title,
        workload=workload,
        status=t.status,
        lease_epoch=t.lease_epoch,
        error_attempts=t.error_attempts,
        crash_recoveries=t.crash_recoveries,
        reason=t.reason or "",
    )


def collect(
    directory: Path, queue: Queue, ids: Iterable[str], workload: Workload, meta: Meta
) -> History:
    """The whole history of a drained campaign whose files are in ``directory``."""
    ours = set(ids)
    harness: list[Record] = list(read_records(directory / "harness.ndjson"))
    exits = {r.name: r.time for r in harness if isinstance(r, WorkerRecord) and r.phase == "exit"}
    ops: list[Op] = []
    for f in sorted((directory / "workers").glob("*.ndjson")):
        ops += [r for r in read_records(f) if isinstance(r, Op)]
    now = time.time()
    ops = _close_dangling(ops, exits, now)
    events = [
        QueueEvent(e.at, e.id, e.ticket_id, e.event, e.worker, e.epoch, e.detail)
        for e in queue.events()
        if e.ticket_id in ours
    ]
    kinds = {p.name: p.kind for p in workload.pipelines}
    tickets = [_ticket_record(t, kinds.get(t.title, "")) for t in queue.tickets() if t.id in ours]
    title = {t.ticket: t.workload for t in tickets}
    starts = {str(o.value.get("run_id")): o for o in ops if o.f == "start" and o.type == "invoke"}
    runs: list[RunRecord] = []
    for run in sorted(p for p in (directory / "runs").iterdir() if p.is_dir()):
        # Every run directory is created after its recorded ``start`` invoke; a run without
        # one has ticket "" and fails the final-json checker, which names it.
        start = starts.get(run.name)
        ticket = start.ticket or "" if start is not None else ""
        epoch = start.epoch or 0 if start is not None else 0
        facts = run_facts(run, ticket=ticket, epoch=epoch, workload=title.get(ticket, ""), now=now)
        runs.append(facts)
    return History((meta, *harness, *ops, *events, *tickets, *runs)).sorted()
