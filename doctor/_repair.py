"""The repair loop: plan safe fixes from a diagnosis, apply them, diagnose again.

:func:`plan_repairs` turns the findings that name a ``repair`` into :class:`Action` records;
:func:`apply_repairs` carries them out and returns a :class:`RepairReport` saying, per action,
what happened and which findings it resolved (or introduced), and which findings remain.

Actions on run directories (``shared/FINDINGS.md``'s ``repair`` values):

* ``terminalize`` writes ``final.json`` (status ``fail``, a ``failure_reason`` naming why, and
  ``repaired_by`` provenance) — only when the owner process is dead, no event was written
  within the run's stall timeout, and no top-level ``final.json`` exists.
* ``ingest_status`` copies a stranded worktree status file to the stage's canonical
  ``<node>/status.json``, with ``repaired_by`` provenance. An existing canonical file is
  replaced only when it is the engine's placeholder (a ``fail`` whose reason starts with
  ``missing status.json``/``invalid status.json``, what Kilroy writes when it found no status
  file), and it is kept as ``<node>/status.json.replaced-<UTC time>.bak``.
* ``truncate_torn_line`` cuts a torn *last* line off a progress stream, keeping the whole file
  as ``<file>.torn-<UTC time>.bak`` — only when the owner is not alive (a live owner may be
  writing that line).

Actions on the work queue (``reclaim``, ``reconcile``; target the ticket id) are planned here
too, from a scan's queue findings, and applied by :func:`apply_queue_repairs`
(:mod:`doctor._repair_queue`, which describes them). The records (actions, results, reports)
live in :mod:`doctor._repair_model`; this module re-exports them, and the queue's entry
points, so ``from doctor._repair import ...`` names the whole repair loop.

Every action is idempotent (an action found done, by the journal's hash of its last result, is
a no-op), re-checks its precondition from the files right before acting and refuses with the
reason when it no longer holds, writes only inside the run directory (paths are resolved and
checked, symlinks refused, new files created without overwriting), and is journaled in
``repairs.ndjson`` (:mod:`doctor._journal`) with before and after hashes. A breaker stops the
same action on the same target after ``breaker_tries`` applied or failed tries within
``breaker_window_s`` seconds (from the journal): incident 02's recovery loop cannot happen.
Queue actions are idempotent by the queue itself (:mod:`doctor._repair_queue`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import stat
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from doctor._config import DoctorConfig
from doctor._detectors._queue import same_host, this_host
from doctor._diagnose import ScanResult, diagnose_path
from doctor._documents import normalize_status, read_documents
from doctor._errors import UsageError
from doctor._facts import iso, parse_iso
from doctor._journal import JournalEntry, append_entry, read_journal, sha256_of
from doctor._layout import discover, is_top_scope
from doctor._liveness import owner_alive, process_alive
from doctor._model import Diagnosis, Finding
from doctor._repair_model import (
    ACTIONS,
    BREAKER_TRIES,
    BREAKER_WINDOW_S,
    QUEUE_ACTIONS,
    TOOL,
    Action,
    ActionResult,
    FindingRef,
    QueueRepairReport,
    RepairReport,
    _breaker,
    _Ctx,
    _diff,
    _Done,
    _journal_unsafe,
    _Refused,
    _version,
)
from doctor._repair_queue import apply_queue_repairs, queue_journal_dir

__all__ = [
    "ACTIONS",
    "BREAKER_TRIES",
    "BREAKER_WINDOW_S",
    "QUEUE_ACTIONS",
    "Action",
    "ActionResult",
    "FindingRef",
    "QueueRepairReport",
    "RepairReport",
    "apply_queue_repairs",
    "apply_repairs",
    "plan_repairs",
    "queue_journal_dir",
]

_TAIL_BYTES = 1 << 16


# ---------------------------------------------------------------- planning


def _age_s(config: DoctorConfig, ts: object) -> float | None:
    ns = parse_iso(ts)
    return None if ns is None else config.now - ns / 1e9


def plan_repairs(diagnosis: Diagnosis | ScanResult, config: DoctorConfig) -> list[Action]:
    """The repairs the diagnosis calls for, one per (action, target), in :data:`ACTIONS` order.

    A run's :class:`Diagnosis` plans the run's repairs (and queue repairs, should it carry
    queue findings); a :class:`ScanResult` plans its fleet findings' repairs: the queue's,
    present when the scan read ``config.db``.

    >>> from doctor import Diagnosis, DoctorConfig
    >>> plan_repairs(Diagnosis("r1", "/runs/r1", "kilroy", "succeeded", {}), DoctorConfig())
    []
    """
    facts: Mapping[str, Any] = {} if isinstance(diagnosis, ScanResult) else diagnosis.facts
    run_path = None if isinstance(diagnosis, ScanResult) else Path(diagnosis.path)
    actions: dict[tuple[str, str], Action] = {}
    for f in diagnosis.findings:
        ref = FindingRef.of(f)
        ev = f.evidence
        action: Action | None = None
        if f.repair in QUEUE_ACTIONS:
            action = _plan_queue(f, ref, config)
        elif run_path is None:
            continue
        elif f.repair == "terminalize" and is_top_scope(f.scope):
            stall = facts.get("stall_timeout_s")
            stall = float(stall) if isinstance(stall, int | float) else config.stall_timeout_s
            age = _age_s(config, facts.get("last_event_at"))
            blocked = None
            if facts.get("owner_alive") is not False:
                blocked = "the owner process is not known to be dead"
            elif age is not None and age <= stall:
                blocked = (
                    f"the last event is {age:.0f} s old, within the {stall:.0f} s stall timeout"
                )
            pid = facts.get("owner_pid")
            action = Action(
                "terminalize",
                "final.json",
                ref,
                f"owner pid {pid} is dead and nothing was written since "
                f"{facts.get('last_event_at')} (stall timeout {stall:.0f} s)",
                stall_timeout_s=stall,
                blocked=blocked,
            )
        elif f.repair == "ingest_status":
            target, source = ev.get("expected_path"), ev.get("found_path")
            if isinstance(target, str) and isinstance(source, str):
                canonical = run_path / target
                kept = os.path.lexists(canonical) and not _is_placeholder(canonical)
                action = Action(
                    "ingest_status",
                    target,
                    ref,
                    f"{f.node_id} failed for want of a status file while {source} holds "
                    f"outcome {ev.get('found_outcome')!r}",
                    source=source,
                    blocked=f"{target} already records an outcome; the repair only replaces an "
                    "engine's 'missing status.json' placeholder"
                    if kept
                    else None,
                )
        elif f.repair == "truncate_torn_line":
            target, offset = ev.get("file"), ev.get("byte_offset")
            if isinstance(target, str) and isinstance(offset, int):
                action = Action(
                    "truncate_torn_line",
                    target,
                    ref,
                    f"its last line, from byte {offset}, is a half-written append "
                    f"({ev.get('detail')})",
                    byte_offset=offset,
                    blocked="the owner process is alive and may be writing that line"
                    if facts.get("owner_alive") is True
                    else None,
                )
        if action is None:
            continue
        key = (action.kind, action.target)
        # A ticket that is both stale_lease and session_desync: keep the plan with an epoch.
        if key not in actions or (actions[key].lease_epoch is None and action.lease_epoch):
            actions[key] = action
    return sorted(actions.values(), key=lambda a: (ACTIONS.index(a.kind), a.target))


def _plan_queue(f: Finding, ref: FindingRef, config: DoctorConfig) -> Action | None:
    """A ``reclaim`` or ``reconcile`` of the finding's ticket, with the plan's forecast."""
    ev = f.evidence
    ticket = ev.get("ticket_id")
    if not isinstance(ticket, str) or f.repair is None:
        return None
    epoch, pid = ev.get("lease_epoch"), ev.get("pid")
    epoch = epoch if isinstance(epoch, int) else None
    pid = pid if isinstance(pid, int) else None
    worker, session = ev.get("worker"), ev.get("session_name")
    status = ev.get("status", ev.get("recorded_status"))
    start = ev.get("proc_start_time")
    local = same_host(ev.get("host"), this_host())
    dead = local and process_alive(pid, start if isinstance(start, int) else None) is False
    expires = ev.get("lease_expires_at")
    blocked = None
    if not config.db:
        blocked = "no queue given: queue repairs need its URL (doctor repair --db URL)"
    elif f.repair == "reconcile" and ev.get("pid_alive"):
        blocked = f"needs a person: the ticket is {status} but its session (pid {pid}) still " + (
            "runs; the doctor kills nothing, and a terminal row cannot change"
            if status != "todo" and status != "blocked"
            else "runs; the doctor kills nothing: stop it before a worker starts the work again"
        )
    elif f.code == "stale_lease" and ev.get("lease_expired") is False and expires and not dead:
        blocked = (
            f"the lease has not expired (it runs until {expires}) and its owner is not known "
            "dead on this host: the reaper would not reclaim it yet"
        )
    kind = f"{f.code}, {ev['kind']}" if ev.get("kind") else f.code
    if f.repair == "reclaim":
        why = f"ticket {ticket} is {status} but its worker {worker or '(unknown)'} looks lost"
    else:
        runs = "still runs" if ev.get("pid_alive") else "does not run"
        why = f"the queue records ticket {ticket} as {status} while its session (pid {pid}) {runs}"
    return Action(
        f.repair,
        ticket,
        ref,
        f"{why} ({kind})",
        blocked=blocked,
        lease_epoch=epoch,
        worker=worker if isinstance(worker, str) else None,
        session_name=session if isinstance(session, str) else None,
        pid=pid,
    )


# ---------------------------------------------------------------- safe writing


def _inside(run_path: Path, rel: str, *, create_dirs: bool = False) -> Path:
    """``run_path / rel`` after checking it cannot lead outside the run directory.

    ``rel`` must be relative, without ``..``; no component may be a symlink; the parent must
    be a real directory inside the run (created when ``create_dirs``).
    """
    pure = PurePosixPath(rel)
    if not rel or pure.is_absolute() or "\\" in rel or any(p in ("..", ".") for p in pure.parts):
        raise _Refused(f"{rel!r} is not a path inside the run directory")
    here = run_path
    for part in pure.parts[:-1]:
        here = here / part
        try:
            st = here.lstat()
        except FileNotFoundError:
            if not create_dirs:
                raise _Refused(f"{here.relative_to(run_path)} does not exist") from None
            here.mkdir()
            continue
        if stat.S_ISLNK(st.st_mode):
            raise _Refused(f"{here.relative_to(run_path)} is a symlink; repairs never follow one")
        if not stat.S_ISDIR(st.st_mode):
            raise _Refused(f"{here.relative_to(run_path)} is not a directory")
    target = here / pure.parts[-1]
    if os.path.islink(target):
        raise _Refused(f"{rel} is a symlink; repairs never write through one")
    real_parent = Path(os.path.realpath(target.parent))
    if real_parent != run_path and run_path not in real_parent.parents:
        raise _Refused(f"{rel} resolves outside the run directory")
    return target


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_temp(target: Path, data: bytes) -> Path:
    tmp = target.with_name(f".{target.name}.repair-{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return tmp


def _create(target: Path, data: bytes) -> None:
    """Write a new file atomically; never replaces an existing one (hard link, then unlink)."""
    tmp = _write_temp(target, data)
    try:
        os.link(tmp, target)  # fails with FileExistsError rather than overwrite
    finally:
        tmp.unlink()
    _fsync_dir(target.parent)


def _replace(target: Path, data: bytes) -> None:
    """Replace a file atomically (temp file, fsync, rename)."""
    tmp = _write_temp(target, data)
    try:
        os.replace(tmp, target)
    except OSError:
        tmp.unlink()
        raise
    _fsync_dir(target.parent)


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode()


# ---------------------------------------------------------------- the actions


def _last_applied(ctx: _Ctx, action: Action) -> JournalEntry | None:
    for e in reversed(ctx.journal):
        if e.action == action.kind and e.target == action.target and e.outcome == "applied":
            return e
    return None


def _check_done(ctx: _Ctx, action: Action, path: Path) -> None:
    last = _last_applied(ctx, action)
    if last is not None and last.after_sha256 and sha256_of(path) == last.after_sha256:
        raise _Done(f"already done at {last.at} (the file still has the hash that repair left)")


def _owner_alive(ctx: _Ctx) -> bool | None:
    docs = read_documents(discover(ctx.run_path))
    return owner_alive(docs.pid, docs.pid_start_time)


def _last_event_ns(path: Path) -> int | None:
    """The ``ts`` of the last complete line of a progress stream (read from its tail)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(size - _TAIL_BYTES, 0))
            tail = fh.read()
    except OSError:
        return None
    for raw in reversed(tail.split(b"\n")[:-1]):
        with contextlib.suppress(ValueError, AttributeError):
            ns = parse_iso(json.loads(raw).get("ts"))
            if ns is not None:
                return ns
    return None


def _terminalize(ctx: _Ctx, action: Action) -> tuple[str, str | None]:
    target = _inside(ctx.run_path, action.target)
    _check_done(ctx, action, target)
    layout = discover(ctx.run_path)
    docs = read_documents(layout)
    finals = [s.final for s in docs.scopes.values() if is_top_scope(s.scope) and s.final]
    if finals or os.path.lexists(target):
        raise _Refused("a top-level final.json exists: the run terminalized after the plan")
    alive = owner_alive(docs.pid, docs.pid_start_time)
    if alive is not False:
        who = "no owner pid is recorded" if docs.pid is None else f"owner pid {docs.pid} is alive"
        raise _Refused(f"{who}; only a run whose owner is dead is terminalized")
    stall = action.stall_timeout_s or docs.stall_timeout_s or ctx.config.stall_timeout_s
    latest = max((ns for s in layout.scopes if (ns := _last_event_ns(s.progress))), default=None)
    if latest is not None and ctx.config.now - latest / 1e9 <= stall:
        raise _Refused(
            f"an event was written at {iso(latest)}, within the {stall:.0f} s stall timeout"
        )
    opened = action.finding
    final = {
        # The run ended with its last event; when the repair ran is in repaired_by.at. (The
        # repair's own time would open an idle gap from the last event to the repair.)
        "timestamp": iso(latest) if latest is not None else iso(int(ctx.config.now * 1e9)),
        "status": "fail",
        "run_id": ctx.run_id,
        "failure_reason": (
            f"terminalized by doctor repair: owner pid {docs.pid} is dead and no event was "
            f"written since {iso(latest) if latest else 'the start'} (stall timeout "
            f"{stall:.0f} s); finding {opened.code}: {opened.summary}"
        ),
        "repaired_by": ctx.provenance,
    }
    _create(target, _json_bytes(final))
    return f"wrote {action.target} with status fail", None


def _ingest_status(ctx: _Ctx, action: Action) -> tuple[str, str | None]:
    if action.source is None:
        raise _Refused("the plan names no stranded status file")
    source = _inside(ctx.run_path, action.source)
    target = _inside(ctx.run_path, action.target, create_dirs=False)
    _check_done(ctx, action, target)
    replaced = _engine_placeholder(ctx, action, target)
    try:
        if not stat.S_ISREG(source.lstat().st_mode):
            raise _Refused(f"{action.source} is not a regular file")
        value = json.loads(source.read_bytes())
    except FileNotFoundError:
        raise _Refused(f"{action.source} no longer exists") from None
    except ValueError as exc:
        raise _Refused(f"{action.source} no longer parses: {exc}") from None
    status, _reason = normalize_status(value)
    if not isinstance(value, dict) or status is None:
        raise _Refused(f"{action.source} holds no outcome")
    record = {
        **value,
        "repaired_by": {
            **ctx.provenance,
            "source": action.source,
            "source_sha256": sha256_of(source),
        },
    }
    if replaced is None:
        _create(target, _json_bytes(record))
        return f"copied {action.source} (outcome {status!r}) to {action.target}", None
    _replace(target, _json_bytes(record))
    return (
        f"copied {action.source} (outcome {status!r}) over the engine's placeholder "
        f"{action.target}, which is kept as {replaced}",
        replaced,
    )


#: Failure reasons an engine writes when it found no status file: the canonical file then
#: records the contract's failure, not the stage's outcome, and may be replaced (backed up).
_PLACEHOLDER_REASONS = ("missing status.json", "invalid status.json")


def _is_placeholder(path: Path) -> bool:
    """True when the status file at ``path`` only records that a status file was missing."""
    try:
        status, reason = normalize_status(json.loads(path.read_bytes()))
    except (OSError, ValueError):
        return False
    return status in ("fail", "retry") and (reason or "").startswith(_PLACEHOLDER_REASONS)


def _engine_placeholder(ctx: _Ctx, action: Action, target: Path) -> str | None:
    """Back up a canonical status that only says the status file was missing; its backup's
    path relative to the run. None when there is no canonical file. Refuses anything else."""
    if not os.path.lexists(target):
        return None
    if not _is_placeholder(target):
        raise _Refused(
            f"{action.target} already records an outcome; the repair only replaces an "
            "engine's 'missing status.json' placeholder"
        )
    stamp = datetime.fromtimestamp(ctx.config.now, UTC).strftime("%Y%m%dT%H%M%SZ")
    backup = _inside(ctx.run_path, f"{action.target}.replaced-{stamp}.bak")
    n = 1
    while os.path.lexists(backup):
        n += 1
        backup = _inside(ctx.run_path, f"{action.target}.replaced-{stamp}-{n}.bak")
    _create(backup, target.read_bytes())
    return backup.relative_to(ctx.run_path).as_posix()


def _is_event_line(raw: bytes) -> bool:
    try:
        obj = json.loads(raw)
    except ValueError:
        return False
    return isinstance(obj, dict) and isinstance(obj.get("event"), str)


def _truncate(ctx: _Ctx, action: Action) -> tuple[str, str | None]:
    target = _inside(ctx.run_path, action.target)
    _check_done(ctx, action, target)
    if not os.path.lexists(target):
        raise _Refused(f"{action.target} no longer exists")
    if _owner_alive(ctx) is True:
        raise _Refused("the owner process is alive and may be writing that line")
    data = target.read_bytes()
    start = data.rfind(b"\n") + 1
    tail = data[start:]
    if not tail.strip():
        raise _Refused(f"{action.target} ends with a complete line: nothing is torn")
    if start != action.byte_offset:
        raise _Refused(
            f"the last line of {action.target} starts at byte {start}, not at the planned "
            f"{action.byte_offset}: the file changed since the plan"
        )
    if _is_event_line(tail):
        raise _Refused(f"the last line of {action.target} parses: it is not torn")
    stamp = datetime.fromtimestamp(ctx.config.now, UTC).strftime("%Y%m%dT%H%M%SZ")
    backup = _inside(ctx.run_path, f"{action.target}.torn-{stamp}.bak")
    n = 1
    while os.path.lexists(backup):
        n += 1
        backup = _inside(ctx.run_path, f"{action.target}.torn-{stamp}-{n}.bak")
    _create(backup, data)
    _replace(target, data[:start])
    rel = backup.relative_to(ctx.run_path).as_posix()
    return f"cut {len(tail)} byte(s) at byte {start}; the whole file is kept as {rel}", rel


_RUNNERS = {"terminalize": _terminalize, "ingest_status": _ingest_status}
_RUNNERS["truncate_torn_line"] = _truncate


# ---------------------------------------------------------------- applying


def _run_dir(run_path: Path) -> Path:
    if run_path.is_symlink() or not run_path.is_dir():
        raise UsageError(f"{str(run_path)!r} is not a run directory (or is a symlink)")
    return Path(os.path.realpath(run_path))


def apply_repairs(
    plan: Sequence[Action],
    config: DoctorConfig,
    *,
    run_path: Path,
    breaker_tries: int = BREAKER_TRIES,
    breaker_window_s: float = BREAKER_WINDOW_S,
) -> RepairReport:
    """Carry out ``plan`` in the run directory ``run_path`` and diagnose again after each
    applied action; the report says what each action resolved and what remains.

    >>> import tempfile
    >>> from doctor import DoctorConfig
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = (Path(d) / "run1").mkdir(), (Path(d) / "run1" / "progress.ndjson").write_text("")
    ...     apply_repairs([], DoctorConfig(now=0.0), run_path=Path(d) / "run1").results
    ()
    """
    run_dir = _run_dir(run_path)
    current = diagnose_path(run_dir, config)
    ctx = _Ctx(run_dir, current.run_id, config, read_journal(run_dir))
    results: list[ActionResult] = []
    for action in plan:
        ctx.provenance = {
            "tool": TOOL,
            "version": _version(),
            "at": iso(int(config.now * 1e9)),
            "finding": {
                "code": action.finding.code,
                "scope": action.finding.scope,
                "node_id": action.finding.node_id,
            },
        }
        result = _apply_one(ctx, action, breaker_tries, breaker_window_s)
        if result.outcome == "applied":
            after = diagnose_path(run_dir, config)
            resolved, introduced = _diff(current.findings, after.findings)
            result = dataclasses.replace(
                result, resolved=tuple(resolved), introduced=tuple(introduced)
            )
            current = after
        results.append(result)
    return RepairReport(
        run_id=current.run_id,
        path=current.path,
        results=tuple(results),
        remaining=tuple(FindingRef.of(f) for f in current.findings),
        state=current.state,
    )


def _apply_one(ctx: _Ctx, action: Action, tries: int, window_s: float) -> ActionResult:
    unsafe = _journal_unsafe(ctx.run_path)
    if unsafe is not None:
        return ActionResult(action, "refused", unsafe)
    try:
        target_path: Path | None = _inside(ctx.run_path, action.target)
    except _Refused:
        target_path = None  # the runner refuses with the reason; nothing is hashed
    before = sha256_of(target_path) if target_path is not None else None
    runner = _RUNNERS.get(action.kind)
    backup: str | None = None
    try:
        if target_path is not None:
            _check_done(ctx, action, target_path)
        tripped = _breaker(ctx, action, tries, window_s)
        if runner is None:
            outcome, message = (
                "refused",
                f"unknown action {action.kind!r}"
                + (
                    " in a run directory: a queue action is applied with --db URL"
                    if action.kind in QUEUE_ACTIONS
                    else ""
                ),
            )
        elif tripped is not None:
            outcome, message = "breaker", tripped
        else:
            message, backup = runner(ctx, action)
            outcome = "applied"
    except _Done as done:
        return ActionResult(action, "noop", str(done), before, before)
    except _Refused as refused:
        outcome, message = "refused", str(refused)
    except OSError as exc:
        outcome, message = "failed", f"{type(exc).__name__}: {exc}"
    after = sha256_of(target_path) if target_path is not None else None
    entry = JournalEntry(
        at=iso(int(ctx.config.now * 1e9)) or "",
        at_s=ctx.config.now,
        tool=TOOL,
        version=_version(),
        action=action.kind,
        target=action.target,
        finding={
            "code": action.finding.code,
            "scope": action.finding.scope,
            "node_id": action.finding.node_id,
        },
        outcome=outcome,
        message=message,
        before_sha256=before,
        after_sha256=after,
        backup=backup,
        source=action.source,
    )
    try:
        append_entry(ctx.run_path, entry)
    except OSError as exc:
        message += f" (the journal could not be written: {exc})"
        outcome = "failed" if outcome == "applied" else outcome
    ctx.journal.append(entry)
    return ActionResult(action, outcome, message, before, after, backup)
