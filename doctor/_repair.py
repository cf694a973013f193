"""The repair loop: plan safe fixes from a diagnosis, apply them, diagnose again.

:func:`plan_repairs` turns the findings that name a ``repair`` into :class:`Action` records;
:func:`apply_repairs` carries them out and returns a :class:`RepairReport` saying, per action,
what happened and which findings it resolved (or introduced), and which findings remain.

Actions on run directories (``shared/FINDINGS.md``'s ``repair`` values):

* ``terminalize`` writes ``final.json`` (status ``fail``, a ``failure_reason`` naming why, and
  ``repaired_by`` provenance) — only when the owner process is dead, no event was written
  within the run's stall timeout (a run without events: it did not start within it), and no
  top-level ``final.json`` exists.
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
reason when it no longer holds, writes only inside the run directory (every path walked from
the run's directory descriptor with ``O_NOFOLLOW``, so a symlink swapped in after a check is
never followed; new files created without overwriting), holds the run's own lock while it
terminalizes or truncates (so a resuming run and the repair exclude each other), cuts a stream
only under a write lease (no other process has it open, none can open it to append meanwhile;
:func:`_sole_open`), and is
journaled in
``repairs.ndjson`` (:mod:`doctor._journal`) with before and after hashes. A breaker stops the
same action on the same target after ``breaker_tries`` applied or failed tries within
``breaker_window_s`` seconds (from the journal): incident 02's recovery loop cannot happen.
``apply_repairs(..., race_hook=...)`` is the one test seam: a callable run between an action's
last check and its first write, so the race tests hit that window deterministically.
Queue actions are idempotent by the queue itself (:mod:`doctor._repair_queue`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import json
import os
import signal
import stat
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from doctor._config import DoctorConfig
from doctor._detectors._queue import same_host, this_host
from doctor._diagnose import ScanResult, diagnose_path
from doctor._documents import normalize_status, parse_json, read_documents
from doctor._errors import UsageError
from doctor._facts import iso, parse_iso
from doctor._journal import JournalEntry, append_entry, read_journal
from doctor._layout import MANIFEST, RUN_CONFIG, RUN_PID, discover, is_top_scope
from doctor._model import Diagnosis, Finding, plural
from doctor._ndjson import open_regular
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
from rundoctor.atomic import create_file, replace_file
from rundoctor.liveness import owner_alive, start_ticks, valid_pid

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
        if f.repair in QUEUE_ACTIONS:
            action = _plan_queue(f, ref, config)
        elif run_path is None:
            continue
        else:
            action = _plan_run(f, ref, facts, run_path, config)
        if action is None:
            continue
        key = (action.kind, action.target)
        # A ticket that is both stale_lease and session_desync: keep the plan with an epoch.
        if key not in actions or (actions[key].lease_epoch is None and action.lease_epoch):
            actions[key] = action
    return sorted(actions.values(), key=lambda a: (ACTIONS.index(a.kind), a.target))


def _plan_run(
    f: Finding, ref: FindingRef, facts: Mapping[str, Any], run_path: Path, config: DoctorConfig
) -> Action | None:
    """The repair of a run's finding, or None when it names none this module plans."""
    if f.repair == "terminalize" and is_top_scope(f.scope):
        return _plan_terminalize(ref, facts, config, run_path)
    if f.repair == "ingest_status":
        return _plan_ingest_status(f, ref, run_path)
    if f.repair == "truncate_torn_line":
        return _plan_truncate(f, ref, facts)
    return None


#: What a run writes as it starts, before its first event: for a run without events, the
#: newest of them is when it last wrote (``run.lock.json`` is not one: a repair holds it).
_START_DOCUMENTS = (MANIFEST, RUN_CONFIG, RUN_PID)


def _start_written_ns(run: Path | int) -> int | None:
    """When the run's newest start document was written (epoch ns), None without any;
    ``run`` is its directory, or a descriptor of it."""
    newest: int | None = None
    for name in _START_DOCUMENTS:
        try:
            if isinstance(run, int):
                st = os.stat(name, dir_fd=run, follow_symlinks=False)
            else:
                st = os.lstat(run / name)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            newest = st.st_mtime_ns if newest is None else max(newest, st.st_mtime_ns)
    return newest


def _plan_terminalize(
    ref: FindingRef, facts: Mapping[str, Any], config: DoctorConfig, run_path: Path
) -> Action:
    """Write the run's final.json; blocked while its owner may live or its last event (its
    start, when it wrote none) is within the stall timeout."""
    stall = facts.get("stall_timeout_s")
    stall = float(stall) if isinstance(stall, int | float) else config.stall_timeout_s
    age = _age_s(config, facts.get("last_event_at"))
    what = "the last event"
    if facts.get("last_event_at") is None and (started := _start_written_ns(run_path)):
        age, what = config.now - started / 1e9, "the run wrote no event; its start"
    blocked = None
    if facts.get("owner_alive") is not False:
        blocked = "the owner process is not known to be dead"
    elif age is not None and age <= stall:
        blocked = f"{what} is {age:.0f} s old, within the {stall:.0f} s stall timeout"
    pid = facts.get("owner_pid")
    last = facts.get("last_event_at")
    since = f"nothing was written since {last}" if last else "it never wrote an event"
    return Action(
        "terminalize",
        "final.json",
        ref,
        f"owner pid {pid} is dead and {since} (stall timeout {stall:.0f} s)",
        stall_timeout_s=stall,
        blocked=blocked,
    )


def _plan_ingest_status(f: Finding, ref: FindingRef, run_path: Path) -> Action | None:
    """Copy a stranded status file to the canonical path; blocked unless what is there is
    only the engine's placeholder."""
    ev = f.evidence
    target, source = ev.get("expected_path"), ev.get("found_path")
    if not (isinstance(target, str) and isinstance(source, str)):
        return None
    canonical = run_path / target
    kept = os.path.lexists(canonical) and not _is_placeholder(canonical)
    return Action(
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


def _plan_truncate(f: Finding, ref: FindingRef, facts: Mapping[str, Any]) -> Action | None:
    """Cut a torn last line off a stream; blocked while its owner is alive."""
    ev = f.evidence
    target, offset = ev.get("file"), ev.get("byte_offset")
    if not (isinstance(target, str) and isinstance(offset, int)):
        return None
    return Action(
        "truncate_torn_line",
        target,
        ref,
        f"its last line, from byte {offset}, is a half-written append ({ev.get('detail')})",
        byte_offset=offset,
        blocked="the owner process is alive and may be writing that line"
        if facts.get("owner_alive") is True
        else None,
    )


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
    dead = local and owner_alive(pid, start if isinstance(start, int) else None) is False
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
#
# Every path is walked from the run directory's descriptor (``ctx.run_fd``), one component at
# a time, each opened ``O_NOFOLLOW``: a directory swapped for a symlink after any check is
# never followed, because nothing is ever looked up by its full path again. Files are created,
# replaced and read relative to their directory's descriptor.

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW


def _check_rel(rel: str) -> PurePosixPath:
    """``rel`` as a relative path without ``..`` or NUL, else refused."""
    pure = PurePosixPath(rel)
    if (
        not rel
        or "\x00" in rel
        or pure.is_absolute()
        or "\\" in rel
        or any(p in ("..", ".") for p in pure.parts)
    ):
        raise _Refused(f"{rel!r} is not a path inside the run directory")
    return pure


def _open_run(run_path: Path) -> int:
    try:
        return os.open(run_path, _DIR_FLAGS)
    except OSError as exc:
        raise UsageError(
            f"{str(run_path)!r} is not a run directory (or is a symlink): {exc.strerror}"
        ) from exc


@contextlib.contextmanager
def _parent(ctx: _Ctx, rel: str, *, create_dirs: bool = False) -> Iterator[tuple[int, str]]:
    """``(directory descriptor, file name)`` of ``rel``, every directory on the way opened
    relative to the last without following a symlink (created when ``create_dirs``)."""
    pure = _check_rel(rel)
    fd = os.dup(ctx.run_fd)
    try:
        walked = PurePosixPath()
        for part in pure.parts[:-1]:
            walked /= part
            try:
                nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create_dirs:
                    raise _Refused(f"{walked} does not exist") from None
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
                try:
                    nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError:
                    raise _Refused(f"{walked} is a symlink or not a directory") from None
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                    raise _Refused(
                        f"{walked} is a symlink or not a directory; repairs never follow one"
                    ) from None
                raise
            os.close(fd)
            fd = nfd
        yield fd, pure.parts[-1]
    finally:
        os.close(fd)


def _lstat_at(dfd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _read_at(dfd: int, name: str, what: str) -> bytes:
    """The bytes of the regular file ``name`` in ``dfd`` (never a symlink, never a FIFO)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | _NOFOLLOW, dir_fd=dfd)
    except FileNotFoundError:
        raise _Refused(f"{what} no longer exists") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _Refused(f"{what} is a symlink; repairs never read through one") from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _Refused(f"{what} is not a regular file")
        chunks = []
        while block := os.read(fd, 1 << 20):
            chunks.append(block)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _sha_rel(ctx: _Ctx, rel: str) -> str | None:
    """SHA-256 of the regular file at ``rel`` (None when absent or unreachable)."""
    try:
        with _parent(ctx, rel) as (dfd, name):
            st = _lstat_at(dfd, name)
            if st is None or not stat.S_ISREG(st.st_mode):
                return None
            return hashlib.sha256(_read_at(dfd, name, rel)).hexdigest()
    except (_Refused, OSError):
        return None


def _create(dfd: int, name: str, data: bytes) -> None:
    """Write a new file atomically; never replaces an existing one (FileExistsError)."""
    if not create_file(name, data, dir_fd=dfd):
        raise FileExistsError(errno.EEXIST, "refusing to replace an existing file", name)


def _replace(dfd: int, name: str, data: bytes) -> None:
    """Replace a file atomically (temp file, fsync, rename)."""
    replace_file(name, data, dir_fd=dfd)


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=True) + "\n").encode()


# ---------------------------------------------------------------- the run's lock

_LOCK = "run.lock.json"


@contextlib.contextmanager
def _run_lock(ctx: _Ctx) -> Iterator[None]:
    """Hold the run's own lock (``run.lock.json``, Kilroy's protocol) while repairing.

    The lock is created exclusively (temp file, then a hard link that fails when the name
    exists). A lock whose owner is alive refuses the repair; a stale one (its owner dead) is
    set aside with a rename, the repair takes the lock, and on release the stale lock is put
    back, so the run still records its crashed owner. A resuming run that takes the lock
    first makes the repair refuse; one that comes while the repair holds it finds it held by
    a live process (this one) and waits or refuses, as Kilroy's resume does. An advisory
    ``flock`` on the run directory also excludes a second ``doctor repair``.
    """
    try:
        fcntl.flock(ctx.run_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise _Refused("another doctor repair holds this run") from None
    me = os.getpid()
    lock = {
        "pid": me,
        "pid_start_time": start_ticks(me),
        "run_id": ctx.run_id,
        "acquired_at": iso(time.time_ns()),
        "repaired_by": TOOL,
    }
    stale = f".{_LOCK}.stale-{me}"
    set_aside = False
    ours: os.stat_result | None = None
    try:
        for _ in range(3):
            if create_file(_LOCK, _json_bytes(lock), dir_fd=ctx.run_fd):
                ours = os.stat(_LOCK, dir_fd=ctx.run_fd, follow_symlinks=False)
                break
            if set_aside:
                raise _Refused("the run's lock was taken while the repair set a stale one aside")
            held = _lock_holder(ctx)
            if held is not None:
                raise _Refused(held)
            try:  # stale: set it aside (one rename: only one party wins it)
                os.rename(_LOCK, stale, src_dir_fd=ctx.run_fd, dst_dir_fd=ctx.run_fd)
                set_aside = True
            except FileNotFoundError:
                continue
            if _lock_holder(ctx, stale) is not None:  # a live lock won the race: give back
                with contextlib.suppress(OSError):
                    os.link(stale, _LOCK, src_dir_fd=ctx.run_fd, dst_dir_fd=ctx.run_fd)
                os.unlink(stale, dir_fd=ctx.run_fd)
                set_aside = False
                raise _Refused("the run's lock was taken by a live process")
        else:
            raise _Refused("the run's lock keeps changing hands")
        yield
    finally:
        if ours is not None:
            now = _lstat_at(ctx.run_fd, _LOCK)
            if now is not None and (now.st_ino, now.st_dev) == (ours.st_ino, ours.st_dev):
                os.unlink(_LOCK, dir_fd=ctx.run_fd)
        if set_aside:
            with contextlib.suppress(OSError):  # someone else's lock stays where it is
                os.link(stale, _LOCK, src_dir_fd=ctx.run_fd, dst_dir_fd=ctx.run_fd)
            with contextlib.suppress(OSError):
                os.unlink(stale, dir_fd=ctx.run_fd)
        fcntl.flock(ctx.run_fd, fcntl.LOCK_UN)


def _lock_holder(ctx: _Ctx, name: str = _LOCK) -> str | None:
    """Why the lock file ``name`` is held (its owner alive or unknown), or None when stale."""
    try:
        value, _dups = parse_json(_read_at(ctx.run_fd, name, name))
    except _Refused as exc:
        if "no longer exists" in str(exc):
            return None
        return f"the run's lock is unreadable ({exc}); a person should look"
    except ValueError:
        return "the run's lock does not parse; a person should look"
    pid = valid_pid(value.get("pid")) if isinstance(value, dict) else None
    start = value.get("pid_start_time") if isinstance(value, dict) else None
    alive = owner_alive(pid, start if isinstance(start, int) else None)
    if pid is not None and alive is False:
        return None
    return f"the run's lock is held by pid {pid} ({'alive' if alive else 'not known dead'})"


# ---------------------------------------------------------------- the actions


def _last_applied(ctx: _Ctx, action: Action) -> JournalEntry | None:
    for e in reversed(ctx.journal):
        if e.action == action.kind and e.target == action.target and e.outcome == "applied":
            return e
    return None


def _check_done(ctx: _Ctx, action: Action) -> None:
    last = _last_applied(ctx, action)
    if last is not None and last.after_sha256 and _sha_rel(ctx, action.target) == last.after_sha256:
        raise _Done(f"already done at {last.at} (the file still has the hash that repair left)")


def _last_event_ns(path: Path) -> int | None:
    """The ``ts`` of the last complete line of a progress stream (read from its tail)."""
    try:
        with open_regular(path) as fh:
            size = os.fstat(fh.fileno()).st_size
            fh.seek(max(size - _TAIL_BYTES, 0))
            tail = fh.read(_TAIL_BYTES)
    except OSError:
        return None
    for raw in reversed(tail.split(b"\n")[:-1]):
        with contextlib.suppress(ValueError, AttributeError):
            ns = parse_iso(parse_json(raw)[0].get("ts"))
            if ns is not None:
                return ns
    return None


def _terminalize(ctx: _Ctx, action: Action) -> tuple[str, str | None]:
    _check_rel(action.target)
    _check_done(ctx, action)
    with _run_lock(ctx), _parent(ctx, action.target) as (dfd, name):
        # Checked with the lock held: a resuming run cannot start between check and write.
        layout = discover(ctx.run_path)
        docs = read_documents(layout)
        finals = [s.final for s in docs.scopes.values() if is_top_scope(s.scope) and s.final]
        if finals or _lstat_at(dfd, name) is not None:
            raise _Refused("a top-level final.json exists: the run terminalized after the plan")
        pid, start = _recorded_owner(ctx, docs.pid, docs.pid_start_time)
        alive = owner_alive(pid, start)
        if alive is not False:
            who = "no owner pid is recorded" if pid is None else f"owner pid {pid} is alive"
            raise _Refused(f"{who}; only a run whose owner is dead is terminalized")
        stall = action.stall_timeout_s or docs.stall_timeout_s or ctx.config.stall_timeout_s
        latest = max(
            (ns for s in layout.scopes if (ns := _last_event_ns(s.progress))), default=None
        )
        if latest is not None and ctx.config.now - latest / 1e9 <= stall:
            raise _Refused(
                f"an event was written at {iso(latest)}, within the {stall:.0f} s stall timeout"
            )
        started = _start_written_ns(ctx.run_fd) if latest is None else None
        if started is not None and ctx.config.now - started / 1e9 <= stall:
            raise _Refused(
                f"the run wrote no event and started at {iso(started)}, within the "
                f"{stall:.0f} s stall timeout"
            )
        owner = _stale_owner(ctx, docs.pid)
        opened = action.finding
        final = {
            # The run ended with its last event; when the repair ran is in repaired_by.at.
            # (The repair's own time would open an idle gap from the last event to the repair.)
            "timestamp": iso(latest) if latest is not None else iso(int(ctx.config.now * 1e9)),
            "status": "fail",
            "run_id": ctx.run_id,
            "failure_reason": (
                f"terminalized by doctor repair: owner pid {owner} is dead and no event was "
                f"written since {iso(latest) if latest else 'the start'} (stall timeout "
                f"{stall:.0f} s); finding {opened.code}: {opened.summary}"
            ),
            "repaired_by": ctx.provenance,
        }
        ctx.checked(action.kind)  # every check passed, the lock is held: a resume waits
        _create(dfd, name, _json_bytes(final))
    return f"wrote {action.target} with status fail", None


def _pid_file(ctx: _Ctx) -> int | None:
    try:
        text = _read_at(ctx.run_fd, "run.pid", "run.pid").strip()
    except (_Refused, OSError):
        return None
    return valid_pid(int(text)) if text.isdigit() and len(text) <= 10 else None


def _recorded_owner(ctx: _Ctx, pid: int | None, start: int | None) -> tuple[int | None, int | None]:
    """The run's owner as recorded before the repair took the lock: the lock's, unless the
    lock is this process's own, then the stale lock set aside, else ``run.pid``."""
    if pid is not None and pid != os.getpid():
        return pid, start
    try:
        value, _ = parse_json(_read_at(ctx.run_fd, f".{_LOCK}.stale-{os.getpid()}", _LOCK))
    except (_Refused, OSError, ValueError):
        value = None
    if isinstance(value, dict) and valid_pid(value.get("pid")) is not None:
        began = value.get("pid_start_time")
        ok = isinstance(began, int) and not isinstance(began, bool) and 0 <= began < 2**62
        return valid_pid(value.get("pid")), began if ok else None
    return _pid_file(ctx), None


def _stale_owner(ctx: _Ctx, pid: int | None) -> int | None:
    """The dead owner's pid (see :func:`_recorded_owner`)."""
    return _recorded_owner(ctx, pid, None)[0]


def _ingest_status(ctx: _Ctx, action: Action) -> tuple[str, str | None]:
    if action.source is None:
        raise _Refused("the plan names no stranded status file")
    _check_rel(action.source)
    _check_rel(action.target)
    _check_done(ctx, action)
    with _parent(ctx, action.source) as (sfd, sname):
        raw = _read_at(sfd, sname, action.source)
    try:
        value, _dups = parse_json(raw)
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
            "source_sha256": hashlib.sha256(raw).hexdigest(),
        },
    }
    with _parent(ctx, action.target) as (dfd, name):
        placeholder = _engine_placeholder(action, dfd, name)
        # Checked; from here on only ``dfd`` is written, whatever the path now names.
        ctx.checked(action.kind)
        if placeholder is None:
            _create(dfd, name, _json_bytes(record))
            return f"copied {action.source} (outcome {status!r}) to {action.target}", None
        replaced = _back_up(ctx, action, dfd, name, placeholder)
        _replace(dfd, name, _json_bytes(record))
    return (
        f"copied {action.source} (outcome {status!r}) over the engine's placeholder "
        f"{action.target}, which is kept as {replaced}",
        replaced,
    )


#: Failure reasons an engine writes when it found no status file: the canonical file then
#: records the contract's failure, not the stage's outcome, and may be replaced (backed up).
_PLACEHOLDER_REASONS = ("missing status.json", "invalid status.json")


def _placeholder_bytes(data: bytes) -> bool:
    try:
        status, reason = normalize_status(parse_json(data)[0])
    except ValueError:
        return False
    return status in ("fail", "retry") and (reason or "").startswith(_PLACEHOLDER_REASONS)


def _is_placeholder(path: Path) -> bool:
    """True when the status file at ``path`` only records that a status file was missing."""
    try:
        st = path.lstat()
        if not stat.S_ISREG(st.st_mode):
            return False
        with open_regular(path) as fh:
            data = fh.read(_MAX_STATUS_BYTES)
    except OSError:
        return False
    return _placeholder_bytes(data)


_MAX_STATUS_BYTES = 32 * 1024 * 1024


def _engine_placeholder(action: Action, dfd: int, name: str) -> bytes | None:
    """The bytes of a canonical status that only says the status file was missing; None when
    there is no canonical file. Refuses anything else."""
    if _lstat_at(dfd, name) is None:
        return None
    data = _read_at(dfd, name, action.target)
    if not _placeholder_bytes(data):
        raise _Refused(
            f"{action.target} already records an outcome; the repair only replaces an "
            "engine's 'missing status.json' placeholder"
        )
    return data


def _back_up(ctx: _Ctx, action: Action, dfd: int, name: str, data: bytes) -> str:
    """Keep the placeholder ``data`` as ``<name>.replaced-<UTC time>.bak``; its path relative
    to the run."""
    stamp = datetime.fromtimestamp(ctx.config.now, UTC).strftime("%Y%m%dT%H%M%SZ")
    backup = f"{name}.replaced-{stamp}.bak"
    n = 1
    while _lstat_at(dfd, backup) is not None:
        n += 1
        backup = f"{name}.replaced-{stamp}-{n}.bak"
    _create(dfd, backup, data)
    return (PurePosixPath(action.target).parent / backup).as_posix()


def _is_event_line(raw: bytes) -> bool:
    try:
        obj, _dups = parse_json(raw)
    except ValueError:
        return False
    return isinstance(obj, dict) and isinstance(obj.get("event"), str)


def _truncate(ctx: _Ctx, action: Action) -> tuple[str, str | None]:
    _check_rel(action.target)
    _check_done(ctx, action)
    with _run_lock(ctx), _parent(ctx, action.target) as (dfd, name):
        if _lstat_at(dfd, name) is None:
            raise _Refused(f"{action.target} no longer exists")
        if _owner_alive_but_us(ctx) is True:
            raise _Refused("the owner process is alive and may be writing that line")
        try:
            fd = os.open(name, os.O_RDWR | os.O_NONBLOCK | _NOFOLLOW, dir_fd=dfd)
        except OSError as exc:
            raise _Refused(f"{action.target} cannot be opened: {exc.strerror}") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise _Refused(f"{action.target} is not a regular file")
            # An advisory lock on the stream itself: writers that take it are excluded.
            fcntl.flock(fd, fcntl.LOCK_EX)
            return _cut_torn_tail(ctx, action, dfd, name, fd)
        finally:
            os.close(fd)


def _owner_alive_but_us(ctx: _Ctx) -> bool | None:
    docs = read_documents(discover(ctx.run_path))
    return owner_alive(*_recorded_owner(ctx, docs.pid, docs.pid_start_time))


def _pread_all(fd: int, offset: int) -> bytes:
    chunks = []
    while block := os.pread(fd, 1 << 20, offset):
        chunks.append(block)
        offset += len(block)
    return b"".join(chunks)


@contextlib.contextmanager
def _sole_open(fd: int, what: str) -> Iterator[None]:
    """Hold a write lease (Linux ``F_SETLEASE``) on the stream ``fd`` while it is cut.

    The kernel grants the lease only while no other process has the file open, and a process
    that opens it meanwhile waits in ``open`` until the lease is released: no append can land
    between the cut's last size check and its ``ftruncate``. Another process holding the
    stream open refuses the action (it may be a writer). The lease-break notice is sent as
    ``SIGURG``, ignored by default (``SIGIO``'s default would end this process). Where leases
    are not available (another OS, a file system without them, a stream owned by another user
    without ``CAP_LEASE``) the cut goes ahead without one, as before.
    """
    setlease: int | None = getattr(fcntl, "F_SETLEASE", None)
    leased = False
    if setlease is not None:
        try:
            fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)
            fcntl.fcntl(fd, setlease, fcntl.F_WRLCK)
            leased = True
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EBUSY):
                raise _Refused(
                    f"{what} is open in another process (a writer may be alive); try again "
                    "when it has closed it"
                ) from None
    try:
        yield
    finally:
        if leased and setlease is not None:
            with contextlib.suppress(OSError):
                fcntl.fcntl(fd, setlease, fcntl.F_UNLCK)


def _cut_torn_tail(
    ctx: _Ctx, action: Action, dfd: int, name: str, fd: int
) -> tuple[str, str | None]:
    """Cut the torn last line in place, on the descriptor checked; bytes appended after the
    check are never dropped: the cut keeps everything past the torn bytes the check saw."""
    data = _pread_all(fd, 0)
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
    ctx.checked(action.kind)  # checked on this descriptor: an append now is moved, not lost
    with _sole_open(fd, action.target):
        stamp = datetime.fromtimestamp(ctx.config.now, UTC).strftime("%Y%m%dT%H%M%SZ")
        backup = f"{name}.torn-{stamp}.bak"
        n = 1
        while _lstat_at(dfd, backup) is not None:
            n += 1
            backup = f"{name}.torn-{stamp}-{n}.bak"
        _create(dfd, backup, data)
        # Move whatever follows the torn bytes (appended since the read, before the lease)
        # down over them, then cut the file to its new length; the size is checked again
        # after each move, and under the lease nothing can be appended between that check
        # and the cut.
        end, moved = len(data), b""
        for _ in range(100):
            moved += _pread_all(fd, end + len(moved))
            if moved:  # never overlaps bytes not yet read: start < end
                os.pwrite(fd, moved, start)
            if os.fstat(fd).st_size == end + len(moved):
                os.ftruncate(fd, start + len(moved))
                break
        else:
            raise _Refused(f"{action.target} keeps growing: a writer is alive")
    os.fsync(fd)
    rel = (PurePosixPath(action.target).parent / backup).as_posix()
    return f"cut {plural(len(tail), 'byte')} at byte {start}; the whole file is kept as {rel}", rel


_RUNNERS = {"terminalize": _terminalize, "ingest_status": _ingest_status}
_RUNNERS["truncate_torn_line"] = _truncate


# ---------------------------------------------------------------- applying


def _run_dir(run_path: Path) -> tuple[Path, int]:
    """The run directory's path (its parents resolved, not itself) and a descriptor opened on
    it without following a symlink: everything the repair writes goes through the descriptor,
    so a run directory swapped for a symlink after this point is never written through."""
    run_path = Path(run_path)
    fd = _open_run(run_path)
    try:
        parent = Path(os.path.realpath(run_path.parent))
    except OSError as exc:
        os.close(fd)
        raise UsageError(f"{str(run_path)!r} is not a run directory: {exc}") from exc
    return parent / run_path.name, fd


def apply_repairs(
    plan: Sequence[Action],
    config: DoctorConfig,
    *,
    run_path: Path,
    breaker_tries: int = BREAKER_TRIES,
    breaker_window_s: float = BREAKER_WINDOW_S,
    race_hook: Callable[[str], None] | None = None,
) -> RepairReport:
    """Carry out ``plan`` in the run directory ``run_path`` and diagnose again after each
    applied action; the report says what each action resolved and what remains.

    ``race_hook`` is a test seam, None outside tests: it is called with the action's kind once
    per run-directory action that reaches its write, after every precondition was checked
    (for ``terminalize`` and ``truncate_torn_line`` with the run's lock held) and before the
    first byte is written (the backup, or the target). A test changes the run there (swaps a
    directory for a symlink, resumes the run, appends to the stream) to hit the window
    between check and write every time instead of by chance; what the repair writes next
    must still land inside the run and lose nothing.

    >>> import tempfile
    >>> from doctor import DoctorConfig
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = (Path(d) / "run1").mkdir(), (Path(d) / "run1" / "progress.ndjson").write_text("")
    ...     apply_repairs([], DoctorConfig(now=0.0), run_path=Path(d) / "run1").results
    ()
    """
    run_dir, run_fd = _run_dir(run_path)
    try:
        current = diagnose_path(run_dir, config)
        ctx = _Ctx(
            run_dir,
            current.run_id,
            config,
            read_journal(run_dir),
            run_fd=run_fd,
            race_hook=race_hook,
        )
        results, current = _apply_all(ctx, plan, current, breaker_tries, breaker_window_s)
    finally:
        os.close(run_fd)
    return RepairReport(
        run_id=current.run_id,
        path=current.path,
        results=tuple(results),
        remaining=tuple(FindingRef.of(f) for f in current.findings),
        state=current.state,
    )


def _apply_all(
    ctx: _Ctx,
    plan: Sequence[Action],
    current: Diagnosis,
    breaker_tries: int,
    breaker_window_s: float,
) -> tuple[list[ActionResult], Diagnosis]:
    config, run_dir = ctx.config, ctx.run_path
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
    return results, current


def _apply_one(ctx: _Ctx, action: Action, tries: int, window_s: float) -> ActionResult:
    """Apply one action unless the journal is unsafe, it is already done, or the breaker
    tripped; journal what happened, with the target's hashes before and after."""
    unsafe = _journal_unsafe(ctx.run_path)
    if unsafe is not None:
        return ActionResult(action, "refused", unsafe)
    try:
        _check_rel(action.target)
        hashable = True
    except _Refused:
        hashable = False  # the runner refuses with the reason; nothing is hashed
    before = _sha_rel(ctx, action.target) if hashable else None
    runner = _RUNNERS.get(action.kind)
    backup: str | None = None
    try:
        if hashable:
            _check_done(ctx, action)
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
    after = _sha_rel(ctx, action.target) if hashable else None
    entry = _journal_entry(
        ctx, action, outcome=outcome, message=message, before=before, after=after, backup=backup
    )
    try:
        append_entry(ctx.run_path, entry, dir_fd=ctx.run_fd)
    except OSError as exc:
        message += f" (the journal could not be written: {exc})"
        outcome = "failed" if outcome == "applied" else outcome
    ctx.journal.append(entry)
    return ActionResult(action, outcome, message, before, after, backup)


def _journal_entry(
    ctx: _Ctx,
    action: Action,
    *,
    outcome: str,
    message: str,
    before: str | None,
    after: str | None,
    backup: str | None,
) -> JournalEntry:
    """The journal's record of one action: what was done to which target, for which
    finding, and the target's hashes before and after."""
    return JournalEntry(
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
