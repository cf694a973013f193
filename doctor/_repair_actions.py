"""The repair's actions on a run directory: what each does, and its precondition re-checked.

:data:`_RUNNERS` maps each action (``shared/FINDINGS.md``'s ``repair`` values) to the runner
:func:`doctor._repair.apply_repairs` calls:

* ``terminalize`` writes ``final.json`` (status ``fail``, a ``failure_reason`` naming why, and
  ``repaired_by`` provenance) — only when the owner process is dead, no event was written
  within the run's stall timeout (a run without events: it did not start within it), and no
  top-level ``final.json`` exists but one an earlier ``terminalize`` wrote that a resume went
  on past (:mod:`doctor._superseded`), which is replaced and kept as a backup.
* ``ingest_status`` copies a stranded worktree status file to the stage's canonical
  ``<node>/status.json``, with ``repaired_by`` provenance. An existing canonical file is
  replaced only when it is the engine's placeholder (a ``fail`` whose reason starts with
  ``missing status.json``/``invalid status.json``, what Kilroy writes when it found no status
  file), and it is kept as ``<node>/status.json.replaced-<UTC time>.bak``; never while the
  owner is alive (a resumed run writes the stage's status.json itself).
* ``truncate_torn_line`` cuts a torn *last* line off a progress stream, keeping the whole file
  as ``<file>.torn-<UTC time>.bak`` — only when the owner is not alive (a live owner may be
  writing that line). Bytes appended after the check are never dropped: they are moved down
  over the torn bytes and kept; the move is journaled first, and a cut killed between the
  move and the ``ftruncate`` is finished by the next repair (:func:`finish_cut`).

Every runner is idempotent (an action found done, by the journal's hash of its last result, is
a no-op: :func:`_check_done`), re-checks its precondition from the files right before acting
and refuses with the reason when it no longer holds, writes only through
:mod:`doctor._repair_files` (inside the run directory, every path walked from the run's
directory descriptor with ``O_NOFOLLOW``, so a symlink swapped in after a check is never
followed; new files created without overwriting), holds the run's own lock while it
writes (so a resuming run and the repair exclude each other), and cuts a
stream only under a write lease (no other process has it open, none can open it to append
meanwhile; :func:`doctor._repair_files._sole_open`). Between its last check and its first
write each calls ``ctx.checked(kind)``: the ``race_hook`` test seam of ``apply_repairs``.

The planner (:mod:`doctor._repair_plan`) reads the same facts at plan time from here: when the
run last wrote a start document (:func:`_start_written_ns`) and whether a canonical status is
the engine's placeholder (:func:`_is_placeholder`).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any

from doctor._documents import normalize_status, parse_json, read_documents
from doctor._journal import JournalEntry
from doctor._layout import MANIFEST, RUN_CONFIG, RUN_PID, RunLayout, discover, is_top_scope
from doctor._model import plural
from doctor._ndjson import bounded_lines, open_regular
from doctor._repair_files import (
    _LOCK,
    _NOFOLLOW,
    _check_rel,
    _create,
    _json_bytes,
    _lstat_at,
    _parent,
    _pread_all,
    _read_at,
    _replace,
    _run_lock,
    _sha_rel,
    _sole_open,
)
from doctor._repair_model import Action, _Ctx, _Done, _Refused
from doctor._superseded import (
    RESUME_MARK,
    RUN_ENDS,
    STAGE_START,
    final_ns,
    repaired_final_ns,
    resumed_past,
    superseded,
)
from doctor._timestamps import iso, parse_iso
from rundoctor.liveness import run_owner_alive, valid_pid

_TAIL_BYTES = 1 << 16


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


def _last_applied(ctx: _Ctx, action: Action) -> JournalEntry | None:
    for e in reversed(ctx.journal):
        if e.action == action.kind and e.target == action.target and e.outcome == "applied":
            return e
    return None


def _check_done(ctx: _Ctx, action: Action) -> None:
    if action.kind == "terminalize" and _final_went_past(ctx):
        return  # the final.json it wrote is still there, but a resume went on past it
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
            ns = parse_iso(parse_json(raw, first_wins=True)[0].get("ts"))
            if ns is not None:
                return ns
    return None


def _latest_event_ns(layout: RunLayout) -> int | None:
    """The latest last event over every stream of the run (epoch ns)."""
    return max((ns for s in layout.scopes if (ns := _last_event_ns(s.progress))), default=None)


def _resume_marks(layout: RunLayout, after_ns: int) -> dict[str, int | None]:
    """After ``after_ns`` in the run's top-level streams: the first stage start, the first
    resume mark and the last terminal event (:func:`doctor._superseded.resumed_past`'s
    ``stage_ns``, ``mark_ns`` and ``ended_ns``, epoch ns; None when there is none)."""
    first: dict[str, int] = {}
    ended: int | None = None
    names = (STAGE_START.encode(), RESUME_MARK.encode(), *(e.encode() for e in RUN_ENDS))
    for s in layout.scopes:
        if not is_top_scope(s.scope):
            continue
        try:
            with open_regular(s.progress) as fh:
                for raw in bounded_lines(fh):
                    if not any(n in raw for n in names):
                        continue
                    with contextlib.suppress(ValueError, AttributeError):
                        value = parse_json(raw)[0]
                        event, ns = value.get("event"), parse_iso(value.get("ts"))
                        if ns is None or ns <= after_ns:
                            continue
                        if event in RUN_ENDS:
                            ended = max(ns, ended or ns)
                        elif event in (STAGE_START, RESUME_MARK):
                            first[event] = min(ns, first.get(event, ns))
        except OSError:
            continue
    return {
        "stage_ns": first.get(STAGE_START),
        "mark_ns": first.get(RESUME_MARK),
        "ended_ns": ended,
    }


def _went_past(
    value: Any,
    latest: int | None,
    since: int | None,
    marks: Callable[[int], dict[str, int | None]],
) -> bool:
    """Whether the top-level final.json ``value`` is one a resume went on past
    (:mod:`doctor._superseded`): the doctor's once a stream wrote after it (``latest``: the
    run's last event), Kilroy's on the evidence of a resume (``since``: when the run's
    recorded owner took its lock; ``marks``: :func:`_resume_marks` of the run after a time)."""
    if repaired_final_ns(value) is not None:
        return superseded(value, latest)
    stamped = final_ns(value)
    if stamped is None:
        return False
    return resumed_past(stamped, owner_since=since, **marks(stamped))


def _final_went_past(ctx: _Ctx) -> bool:
    """Whether the run's final.json is one a resume went past (:mod:`doctor._superseded`):
    terminalizing it again is not done already."""
    try:
        with _parent(ctx, "final.json") as (dfd, name):
            value = parse_json(_read_at(dfd, name, "final.json"))[0]
    except (_Refused, OSError, ValueError):
        return False
    layout = discover(ctx.run_path)
    since = read_documents(layout).owner_since
    return _went_past(value, _latest_event_ns(layout), since, partial(_resume_marks, layout))


def _superseded_final(dfd: int, name: str, gone: Callable[[Any], bool]) -> bytes | None:
    """The bytes of ``final.json`` when a resume went past it (``gone``; it may be replaced,
    backed up); None when there is none; refused for any other."""
    if _lstat_at(dfd, name) is None:
        return None
    data = _read_at(dfd, name, name)
    try:
        value = parse_json(data)[0]
    except ValueError:
        value = None
    if not gone(value):
        raise _Refused("a top-level final.json exists: the run terminalized after the plan")
    return data


def _terminalize(ctx: _Ctx, action: Action) -> tuple[str, str | None]:
    _check_rel(action.target)
    _check_done(ctx, action)
    with _run_lock(ctx), _parent(ctx, action.target) as (dfd, name):
        # Checked with the lock held: a resuming run cannot start between check and write.
        layout = discover(ctx.run_path)
        docs = read_documents(layout)
        latest = _latest_event_ns(layout)
        since = _recorded_since(ctx, docs.pid, docs.owner_since)
        marks = functools.cache(partial(_resume_marks, layout))  # the streams read once

        def gone(value: Any) -> bool:
            return _went_past(value, latest, since, marks)

        finals = [
            s.final
            for s in docs.scopes.values()
            if is_top_scope(s.scope) and s.final and not gone(s.final.value)
        ]
        if finals:
            raise _Refused("a top-level final.json exists: the run terminalized after the plan")
        went_past = _superseded_final(dfd, name, gone)
        pid, start = _recorded_owner(ctx, docs.pid, docs.pid_start_time)
        alive = run_owner_alive(pid, start, ctx.run_path)
        if alive is not False:
            who = "no owner pid is recorded" if pid is None else f"owner pid {pid} is alive"
            raise _Refused(f"{who}; only a run whose owner is dead is terminalized")
        stall = action.stall_timeout_s or docs.stall_timeout_s or ctx.config.stall_timeout_s
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
        kept = _write(ctx, action, (dfd, name), _json_bytes(final), went_past)
    return _terminalized(action.target, kept, went_past)


def _terminalized(target: str, kept: str | None, went_past: bytes | None) -> tuple[str, str | None]:
    """What a terminalize did: wrote ``target``, over the final.json a resume went past
    (``went_past``, kept as ``kept``) when there was one."""
    if kept is None:
        return f"wrote {target} with status fail", None
    whose = "an earlier repair" if went_past is not None and _repaired(went_past) else "Kilroy"
    return (
        f"wrote {target} with status fail over the one {whose} wrote, which a resume went on "
        f"past (kept as {kept})",
        kept,
    )


def _repaired(data: bytes) -> bool:
    """Whether the final.json ``data`` is one ``doctor repair`` wrote (``repaired_by``).

    >>> _repaired(b'{"status": "fail", "timestamp": "2026-12-06T19:17:06Z", "repaired_by": {}}')
    True
    """
    try:
        value = parse_json(data)[0]
    except ValueError:
        return False
    return repaired_final_ns(value) is not None


def _pid_file(ctx: _Ctx) -> int | None:
    try:
        text = _read_at(ctx.run_fd, "run.pid", "run.pid").strip()
    except (_Refused, OSError):
        return None
    return valid_pid(int(text)) if text.isdigit() and len(text) <= 10 else None


def _set_aside_lock(ctx: _Ctx) -> Any:
    """The stale lock this repair set aside to take the run's own (:func:`_run_lock`), parsed;
    None when there is none or it does not parse."""
    try:
        value, _ = parse_json(_read_at(ctx.run_fd, f".{_LOCK}.stale-{os.getpid()}", _LOCK))
    except (_Refused, OSError, ValueError):
        return None
    return value


def _recorded_since(ctx: _Ctx, pid: int | None, since: int | None) -> int | None:
    """When the run's recorded owner took its lock (epoch ns): the lock's, unless the lock is
    this process's own (the repair holds it), then the stale lock it set aside."""
    if pid != os.getpid():
        return since
    value = _set_aside_lock(ctx)
    taken = value.get("acquired_at") if isinstance(value, dict) else None
    return parse_iso(taken) if isinstance(taken, str) else None


def _recorded_owner(ctx: _Ctx, pid: int | None, start: int | None) -> tuple[int | None, int | None]:
    """The run's owner as recorded before the repair took the lock: the lock's, unless the
    lock is this process's own, then the stale lock set aside, else ``run.pid``."""
    if pid is not None and pid != os.getpid():
        return pid, start
    value = _set_aside_lock(ctx)
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
            # The run's last event when ingested, on the engine's clock: an event naming the
            # node after it means a resume routed on from this status (status_contract_mismatch).
            "run_last_event_at": iso(_latest_event_ns(discover(ctx.run_path))),
        },
    }
    with _run_lock(ctx), _parent(ctx, action.target) as (dfd, name):
        # Checked with the lock held: a resuming run cannot start (and write the stage's own
        # status.json) between the check and the write.
        if _owner_alive_but_us(ctx) is True:
            raise _Refused(
                "the owner process is alive: the run is working and may write the stage's "
                "status.json itself; repair it once the owner has exited"
            )
        placeholder = _engine_placeholder(action, dfd, name)
        # Checked; from here on only ``dfd`` is written, whatever the path now names.
        ctx.checked(action.kind)
        replaced = _write(ctx, action, (dfd, name), _json_bytes(record), placeholder)
    if replaced is None:
        return f"copied {action.source} (outcome {status!r}) to {action.target}", None
    return (
        f"copied {action.source} (outcome {status!r}) over the engine's placeholder "
        f"{action.target}, which is kept as {replaced}",
        replaced,
    )


#: Failure reasons an engine writes when it found no status file: the canonical file then
#: records the contract's failure, not the stage's outcome, and may be replaced (backed up).
_PLACEHOLDER_REASONS = ("missing status.json", "invalid status.json")


def _placeholder_bytes(data: bytes) -> bool:
    """Whether a canonical status records no outcome of the stage: the engine found no status
    file, or a stop cancelled the attempt (status fail, ``context_updates.failure_class``
    ``canceled``, format doc §3.6: what a resume would otherwise route on)."""
    try:
        value = parse_json(data)[0]
        status, reason = normalize_status(value)
    except ValueError:
        return False
    updates = value.get("context_updates") if isinstance(value, dict) else None
    cls = updates.get("failure_class") if isinstance(updates, dict) else None
    if status == "fail" and isinstance(cls, str) and cls.strip().lower() == "canceled":
        return True
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
            "engine's 'missing status.json' placeholder or a cancellation"
        )
    return data


def _write(
    ctx: _Ctx, action: Action, at: tuple[int, str], data: bytes, replaced: bytes | None
) -> str | None:
    """Write ``data`` as the file ``at`` (directory descriptor, name): created when there was
    none (``replaced`` None), else over it, the file it replaces (``replaced``) kept first
    (:func:`_back_up`). Returns the backup's path relative to the run, or None."""
    dfd, name = at
    if replaced is None:
        _create(dfd, name, data)
        return None
    kept = _back_up(ctx, action, dfd, name, replaced)
    _replace(dfd, name, data)
    return kept


def _back_up(ctx: _Ctx, action: Action, dfd: int, name: str, data: bytes) -> str:
    """Keep the placeholder ``data`` as ``<name>.replaced-<UTC time>.bak``; its path relative
    to the run."""
    backup = _backup_name(ctx, dfd, name, "replaced")
    _create(dfd, backup, data)
    return (PurePosixPath(action.target).parent / backup).as_posix()


def _backup_name(ctx: _Ctx, dfd: int, name: str, why: str) -> str:
    """A free name beside ``name`` for its backup: ``<name>.<why>-<UTC time>.bak``, with
    ``-2``, ``-3``… before ``.bak`` while the name is taken."""
    stamp = datetime.fromtimestamp(ctx.config.now, UTC).strftime("%Y%m%dT%H%M%SZ")
    backup = f"{name}.{why}-{stamp}.bak"
    n = 1
    while _lstat_at(dfd, backup) is not None:
        n += 1
        backup = f"{name}.{why}-{stamp}-{n}.bak"
    return backup


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
        with _open_stream(dfd, name, action.target) as fd:
            return _cut_torn_tail(ctx, action, dfd, name, fd)


@contextlib.contextmanager
def _open_stream(dfd: int, name: str, what: str) -> Iterator[int]:
    """The stream ``name`` in ``dfd`` opened for a cut (read-write, never through a symlink,
    a regular file only) and ``flock``ed: writers that take that lock are excluded."""
    try:
        fd = os.open(name, os.O_RDWR | os.O_NONBLOCK | _NOFOLLOW, dir_fd=dfd)
    except OSError as exc:
        raise _Refused(f"{what} cannot be opened: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _Refused(f"{what} is not a regular file")
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


def _owner_alive_but_us(ctx: _Ctx) -> bool | None:
    docs = read_documents(discover(ctx.run_path))
    return run_owner_alive(*_recorded_owner(ctx, docs.pid, docs.pid_start_time), ctx.run_path)


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
        backup = _backup_name(ctx, dfd, name, "torn")
        _create(dfd, backup, data)
        # Move whatever follows the torn bytes (appended since the read, before the lease)
        # down over them, then cut the file to its new length; the size is checked again
        # after each move, and under the lease nothing can be appended between that check
        # and the cut.
        end, moved = len(data), b""
        for moves_left in range(_MOVES, -1, -1):
            prior = len(moved)
            moved += _pread_all(fd, end + len(moved))
            if moved:  # never overlaps bytes not yet read: start < end
                # Killed between the move and the cut, the stream would hold the moved
                # bytes twice, a garbled line between: journaled first, the next repair
                # finishes the cut (:func:`finish_cut`).
                ctx.start_step({"cut": _cut_record(fd, start, moved, prior)})
                if not moves_left:
                    raise _Refused(_still_growing(action.target, prior))
                os.pwrite(fd, moved, start)
                ctx.wrote(f"{action.kind}:moved")
            if os.fstat(fd).st_size == end + len(moved):
                os.ftruncate(fd, start + len(moved))
                break
    os.fsync(fd)
    rel = (PurePosixPath(action.target).parent / backup).as_posix()
    return f"cut {plural(len(tail), 'byte')} at byte {start}; the whole file is kept as {rel}", rel


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


#: How often a cut moves bytes appended meanwhile down before it leaves the rest to the next
#: repair (only where no lease keeps writers out can the stream grow under the cut).
_MOVES = 100


def _still_growing(target: str, prior: int) -> str:
    """Why a cut stopped moving appended bytes down (``prior`` of them moved so far).

    >>> _still_growing("progress.ndjson", 120).split("; ")[1]
    'the cut is left half done (120 bytes moved down, not cut) and journaled: the next \
`doctor repair --apply` finishes it once the writer has stopped (the backup holds the stream \
as it was)'
    """
    return (
        f"{target} keeps growing: a writer is alive (no lease keeps it out); the cut is left "
        f"half done ({plural(prior, 'byte')} moved down, not cut) and journaled: the next "
        "`doctor repair --apply` finishes it once the writer has stopped (the backup holds "
        "the stream as it was)"
    )


def _cut_record(fd: int, start: int, moved: bytes, prior: int = 0) -> dict[str, Any]:
    """What a cut about to move ``moved`` down to ``start`` journals first: the stream's size
    and the hashes of its tail from ``start`` before the move and after it (before the cut),
    and of the moved bytes, so a repair killed in between can be told from any other change.
    ``prior``: how many of ``moved`` an earlier move of the same cut already wrote there."""
    tail = _pread_all(fd, start)
    return {
        "at": start,
        "size": start + len(tail),
        "length": len(moved),
        "prior": prior,
        "tail_sha256": _sha(tail),
        "moved_tail_sha256": _sha(moved + tail[len(moved) :]),
        "moved_sha256": _sha(moved),
    }


@dataclass(frozen=True, slots=True)
class _Cut:
    """A journaled cut (:func:`_cut_record`), parsed."""

    at: int
    size: int
    length: int
    prior: int
    tail_sha256: str
    moved_tail_sha256: str
    moved_sha256: str

    @classmethod
    def of(cls, target: str, cut: Any) -> _Cut:
        """``cut`` as journaled, or refused when it is no cut."""
        try:
            at, size, length = (int(cut[k]) for k in ("at", "size", "length"))
            prior = int(cut.get("prior", 0))
            sums = tuple(str(cut[k]) for k in ("tail_sha256", "moved_tail_sha256", "moved_sha256"))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise _Refused(
                f"the journaled cut of {target} does not parse: a person should look"
            ) from None
        if not 0 <= at < at + length <= size or not 0 <= prior <= length:
            raise _Refused(f"the journaled cut of {target} is not a cut: a person should look")
        return cls(at, size, length, prior, *sums)


def _cut_left(fd: int, target: str, cut: _Cut) -> bytes | None:
    """Where the half-done ``cut`` of the stream ``fd`` stands: the bytes still to move down
    (killed before the move), ``b""`` (moved, the cut alone left) or None (cut already);
    refused when the stream changed since the cut was journaled."""
    size = os.fstat(fd).st_size
    grown = size != cut.size
    # The bytes the journaled hashes cover, as far as the stream holds them (a journal is
    # read, not trusted: a size it gives is never allocated beyond the stream's).
    tail = os.pread(fd, max(min(cut.size, size) - cut.at, 0), cut.at)
    if _sha(tail) not in (cut.tail_sha256, cut.moved_tail_sha256):
        if _sha(tail[: cut.length]) == cut.moved_sha256:
            return None
        grown = True
    if grown:
        raise _Refused(
            f"{target} changed since a repair left its cut at byte {cut.at} half done: "
            "a person should look (its backup holds the stream as it was)"
        )
    if _sha(tail) == cut.moved_tail_sha256:
        return b""
    # Killed before the move: an earlier move of the cut put the first ``prior`` bytes at
    # the cut already; the rest were appended after it, at the end.
    rest = cut.length - cut.prior
    moved = tail[: cut.prior] + tail[len(tail) - rest :]
    if _sha(moved) != cut.moved_sha256:
        raise _Refused(
            f"the bytes the journaled cut of {target} would move are not in the stream: "
            "a person should look (its backup holds the stream as it was)"
        )
    return moved


def finish_cut(ctx: _Ctx, target: str, cut: Any) -> str:
    """Finish the cut a repair killed between moving bytes down and cutting left (its journaled
    ``cut``, :func:`_cut_record`), with the run's lock and the stream's lease held: move and
    cut when the stream is as it was before the move, cut when the bytes were moved, nothing
    when it was cut already; anything else is refused (the stream changed since). Returns
    what was done."""
    parsed = _Cut.of(target, cut)
    with (
        _run_lock(ctx),
        _parent(ctx, target) as (dfd, name),
        _open_stream(dfd, name, target) as fd,
        _sole_open(fd, target),
    ):
        if _owner_alive_but_us(ctx) is True:
            raise _Refused("the owner process is alive and may be writing that stream")
        moved = _cut_left(fd, target, parsed)
        if moved is None:
            return f"{target} was cut already (the moved bytes are at byte {parsed.at})"
        length = plural(parsed.length, "byte")
        if moved:
            os.pwrite(fd, moved, parsed.at)
            ctx.wrote("truncate_torn_line:moved")
            done = f"moved {length} down to byte {parsed.at} and cut there"
        else:
            done = f"cut after the {length} moved down to byte {parsed.at}"
        if os.fstat(fd).st_size != parsed.size:  # no lease kept a writer out: keep its bytes
            raise _Refused(
                f"{target} grew while the cut a repair left half done was finished (no lease "
                "keeps writers out): nothing is cut, a person should look (its backup holds "
                "the stream as it was)"
            )
        os.ftruncate(fd, parsed.at + parsed.length)
        os.fsync(fd)
    return f"finished the cut a killed repair left half done: {done}"


def cut_forecast(run_path: Path, target: str, cut: Any, owner_alive: bool | None) -> str | None:
    """What finishing the half-done ``cut`` of ``target`` would refuse for, read now without
    a lock (:func:`finish_cut` checks again); None when it would be finished (or found cut)."""
    try:
        parsed = _Cut.of(target, cut)
        if owner_alive is True:
            raise _Refused("the owner process is alive and may be writing that stream")
        _check_rel(target)
        with open_regular(run_path / target) as fh:
            _cut_left(fh.fileno(), target, parsed)
    except _Refused as refused:
        return str(refused)
    except OSError as exc:
        return f"{target} cannot be opened: {exc.strerror or exc}"
    return None


_RUNNERS = {"terminalize": _terminalize, "ingest_status": _ingest_status}
_RUNNERS["truncate_torn_line"] = _truncate
