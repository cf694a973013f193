"""The run directory on disk: the one place that writes it.

Layout (Kilroy's, plus the native extras; ``docs/executor-artifacts.md`` has every field)::

    <root>/<run_id>/
      manifest.json  run_config.json  graph.dot  run.pid  run.lock.json
      progress.ndjson  live.json  checkpoint.json  final.json
      worktree/                                   the stages' working directory
      <node>/status.json                          the node's latest outcome
      <node>/attempt-<n>/{status.json, stage_status.json, stdout.log, stderr.log,
                          cmd.json, prompt.md, events.ndjson}
      parallel/<fanout>/[pass<P>/]<NN>-<branch>/  a branch: the same, minus the run files

Rules the writer enforces, so callers cannot break them:

* every JSON document is written to a temporary file, fsynced and renamed into place, except
  ``live.json``: a hint rewritten on every event, overwritten in place so that a reader always
  sees one whole event (see :meth:`RunWriter._write_live`);
* every event is one whole line appended with ``O_APPEND`` in a single ``write``, stamped with
  the run id, a random id, the clock's time and the lease epoch;
* attempt directories are created with ``mkdir`` that fails when the directory exists, so an
  attempt can never overwrite another one's files;
* ``checkpoint.json`` lists each completed node once and counts every retry a node used.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import secrets
import stat
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from executor._events import Event, RunCompleted, RunFailed, finite, rfc3339
from executor._graph import canonical_outcome
from rundoctor.atomic import create_file, replace_file
from rundoctor.clock import Clock
from rundoctor.costs import cost_figure
from rundoctor.liveness import start_ticks
from rundoctor.paths import make_dirs, read_regular_bytes
from rundoctor.signature import SIGNATURE_VERSION

__all__ = [
    "AttemptDir",
    "Checkpoint",
    "RunWriter",
    "append_fresh_line",
    "append_line",
    "atomic_write_json",
]


#: Where a worker's events go once its run was terminalized by someone else (the reaper).
LATE_EVENTS = "late-events.ndjson"
E = TypeVar("E", bound=Event)


def atomic_write_json(path: Path, value: Any, *, fsync: bool = True) -> None:
    """Write ``value`` as indented JSON to ``path`` (:func:`rundoctor.atomic.replace_file`).

    >>> import tempfile; d = Path(tempfile.mkdtemp())
    >>> atomic_write_json(d / "x.json", {"a": 1}); (d / "x.json").read_text()
    '{\\n  "a": 1\\n}\\n'
    """
    replace_file(path, _json_bytes(value), fsync=fsync)


def _json_bytes(value: Any) -> bytes:
    # An infinite or NaN number is null: JSON has no spelling for it (executor._events.finite).
    return (json.dumps(finite(value), indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _open_regular(path: Path, flags: int) -> int:
    """``os.open(path, flags)`` of a regular file: never waiting on a FIFO, never through a
    symlink. A stage may write in its run (``KILROY_LOGS_ROOT``, ``KILROY_STAGE_LOGS_DIR``):
    a FIFO it left as ``progress.ndjson`` or ``live.json`` hung the executor on its open, and
    a symlink there would have had it append to a file outside the run. Either is
    ``OSError``, as a run directory that refuses writes is.

    >>> import tempfile; d = Path(tempfile.mkdtemp()); os.mkfifo(d / "live.json")
    >>> _open_regular(d / "live.json", os.O_WRONLY)
    Traceback (most recent call last):
    ...
    OSError: [Errno 6] No such device or address: '...live.json'
    """
    fd = os.open(path, flags | os.O_NONBLOCK | _NOFOLLOW, 0o644)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file (a FIFO, device or socket)", str(path))
    return fd


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def append_line(path: Path, line: bytes) -> None:
    """Append one whole line with ``O_APPEND`` (the file is opened and closed per line), or
    nothing (:func:`_append_whole`)."""
    fd = _open_regular(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        _append_whole(fd, line)
    finally:
        os.close(fd)


def _append_whole(fd: int, data: bytes) -> None:
    """Append ``data`` to ``fd`` (opened ``O_APPEND``) whole, or take back what went in.

    A full disk takes a line's first bytes up to the end of a block, then refuses the rest
    (ENOSPC): the stream was left with half a heartbeat, a torn line mid-file once the disk
    had room again. The part is cut off again, unless another writer appended after it (then
    it stays: cutting would take that writer's line too).
    """
    start = os.fstat(fd).st_size
    done = 0
    view = memoryview(data)
    try:
        while view:
            n = os.write(fd, view)
            done, view = done + n, view[n:]
    except OSError:
        if done:
            with contextlib.suppress(OSError):
                if os.fstat(fd).st_size == start + done:
                    os.ftruncate(fd, start)
        raise


#: Pauses before the second and third try of a ``final.json`` write (a disk that filled up
#: for a moment: a log rotated, a temporary file removed).
_FINAL_RETRY_S = (0.1, 0.5)


def _retried(write: Callable[[], bool]) -> bool:
    """``write()``, tried again after each pause of :data:`_FINAL_RETRY_S` on ``OSError``
    (the atomic writer removes its partial temporary file first: it takes space too)."""
    for pause in (*_FINAL_RETRY_S, None):
        try:
            return write()
        except OSError:
            if pause is None:
                raise
            time.sleep(pause)
    raise AssertionError("unreachable")


def append_fresh_line(path: Path, line: bytes) -> None:
    """Append ``line`` on a line of its own: a newline first when the file ends mid-line
    (its writer was killed half-way through), so the torn line stays alone and this one
    stays readable.

    >>> import tempfile; p = Path(tempfile.mkdtemp()) / "s.ndjson"
    >>> _ = p.write_bytes(b'{"a": 1}\\n{"b": ')
    >>> append_fresh_line(p, b'{"c": 3}\\n'); p.read_bytes().splitlines()[-1]
    b'{"c": 3}'
    """
    fd = _open_regular(path, os.O_RDWR | os.O_CREAT | os.O_APPEND)
    try:
        size = os.fstat(fd).st_size
        torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"
        _append_whole(fd, (b"\n" if torn else b"") + line)
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class AttemptDir:
    """One attempt's own directory, ``<node>/attempt-<index>``."""

    node_id: str
    index: int
    path: Path
    rel: str


@dataclass(slots=True)
class Checkpoint:
    """What ``checkpoint.json`` records: unique completed nodes and true retry counts."""

    current_node: str = ""
    completed_nodes: list[str] = field(default_factory=list)
    node_retries: dict[str, int] = field(default_factory=dict)
    node_visits: dict[str, int] = field(default_factory=dict)
    signatures: dict[str, int] = field(default_factory=dict)
    context: dict[str, str] = field(default_factory=dict)

    def complete(self, node_id: str, *, retries: int) -> None:
        """Record a finished visit of ``node_id`` that used ``retries`` retries.

        >>> ck = Checkpoint(); ck.complete("a", retries=2); ck.complete("a", retries=1)
        >>> (ck.completed_nodes, ck.node_retries)
        (['a'], {'a': 3})
        """
        self.current_node = node_id
        if node_id not in self.completed_nodes:
            self.completed_nodes.append(node_id)
        self.node_retries[node_id] = self.node_retries.get(node_id, 0) + retries

    def to_json(self, timestamp: str, base_logs_root: str) -> dict[str, Any]:
        return {
            "timestamp": timestamp,
            "current_node": self.current_node,
            "completed_nodes": list(self.completed_nodes),
            "node_retries": dict(self.node_retries),
            "context": dict(self.context),
            "logs": [],
            "extra": {
                "base_logs_root": base_logs_root,
                "restart_count": 0,
                "loop_failure_signatures": dict(self.signatures),
                "loop_failure_signature_version": SIGNATURE_VERSION,
                "node_visits": dict(self.node_visits),
            },
        }


class RunWriter:
    """Writes one scope: a run's top level or one of its branches.

    ``sink`` receives every event after it is on disk (the parent's mirror for a branch, the
    caller's ``on_event`` for the run); it is called with the writer's lock held, so it sees
    events in file order and must be quick.
    """

    def __init__(
        self,
        path: Path,
        *,
        run_id: str,
        epoch: int = 0,
        clock: Clock = time.time,
        fsync: bool = True,
        sink: Callable[[Event], None] | None = None,
        base_logs_root: str = "",
    ) -> None:
        self.path = path
        self.run_id = run_id
        self.epoch = epoch
        self.clock = clock
        self.fsync = fsync
        self.sink = sink
        self.base_logs_root = base_logs_root
        self._own_final = False
        self.last_event: Event | None = None
        self._lock = threading.Lock()
        self._attempts: dict[str, int] = {}
        self._statuses: dict[str, tuple[Path, dict[str, Any]]] = {}

    def create(self) -> None:
        """Create the scope's directory; it must not exist yet (runs are never reused)."""
        make_dirs(self.path, exist_ok=False)

    def now(self) -> str:
        return rfc3339(self.clock())

    def emit(self, event: E, *, attempt: AttemptDir | None = None) -> E:
        """Stamp ``event``, append it (and to the attempt's ``events.ndjson``), update live.json."""
        with self._lock:
            stamped = event.stamped(
                ts=self.now(), run_id=self.run_id, id=secrets.token_hex(4), epoch=self.epoch
            )
            line = stamped.to_line()
            if self.sealed_by_other():
                # The reaper terminalized this run after taking the lease from this (frozen)
                # worker: the record is closed. Late lines are kept aside, not lost, and never
                # follow the terminal event (chaos seed 2).
                append_line(self.path / LATE_EVENTS, line)
                return stamped
            append_line(self.path / "progress.ndjson", line)
            if attempt is not None:
                append_line(attempt.path / "events.ndjson", line)
            self._write_live(line)
            self.last_event = stamped
            if self.sink is not None:
                self.sink(stamped)
            return stamped

    def _write_live(self, line: bytes) -> None:
        """Overwrite ``live.json`` in place, cheaply: replacing a file costs milliseconds on
        ext4. The new line is padded with spaces to the old length, then the file is cut to
        the line, so a reader sees either line (plus whitespace): always one valid object."""
        fd = _open_regular(self.path / "live.json", os.O_WRONLY | os.O_CREAT)
        try:
            padded = line + b" " * max(0, os.fstat(fd).st_size - len(line))
            os.pwrite(fd, padded, 0)
            os.ftruncate(fd, len(line))
        finally:
            os.close(fd)

    def write_json(self, rel: str, value: Any) -> Path:
        """Write a document atomically at ``rel`` (relative to the scope); not once the
        reaper ended the scope (:meth:`sealed_by_other`): a frozen worker woken after its
        lease was taken rewrote ``checkpoint.json`` and the node's ``status.json`` of the run
        the reaper had terminalized (the node "completed", killed by the reaper's SIGKILL)."""
        path = self.path / rel
        if self.sealed_by_other():
            return path
        make_dirs(path.parent)
        atomic_write_json(path, value, fsync=self.fsync)
        return path

    def attempt_status(self, attempt: AttemptDir, doc: dict[str, Any]) -> None:
        """Write the attempt's ``status.json``."""
        self.write_json(f"{attempt.rel}/status.json", doc)
        self._statuses[attempt.node_id] = (attempt.path / "status.json", doc)

    def node_status(self, node_id: str, doc: dict[str, Any]) -> None:
        """Write ``<node>/status.json``: a hard link to the node's last attempt status when it
        says the same (no second fsync for the same bytes), else a document of its own; not
        once the reaper ended the scope."""
        last = self._statuses.pop(node_id, None)
        if self.sealed_by_other():
            return
        if last is None or last[1] != doc:
            self.write_json(f"{node_id}/status.json", doc)
            return
        tmp = self.path / node_id / f".status.json.{threading.get_ident()}.link"
        tmp.unlink(missing_ok=True)  # left by a crash between link and rename
        os.link(last[0], tmp)
        os.replace(tmp, self.path / node_id / "status.json")

    def new_attempt(self, node_id: str) -> AttemptDir:
        """A fresh ``<node>/attempt-<n>/``; numbers only grow, existing ones are never reused."""
        node_dir = self.path / node_id
        node_dir.mkdir(exist_ok=True)
        n = self._attempts.get(node_id, 0)
        while True:
            n += 1
            path = node_dir / f"attempt-{n}"
            try:
                path.mkdir()
            except FileExistsError:
                continue
            self._attempts[node_id] = n
            return AttemptDir(node_id, n, path, f"{node_id}/attempt-{n}")

    def save_checkpoint(self, ck: Checkpoint) -> None:
        self.write_json("checkpoint.json", ck.to_json(self.now(), self.base_logs_root))

    def write_final(self, status: str, reason: str, **totals: Any) -> tuple[dict[str, Any], bool]:
        """Write ``final.json`` (before the terminal event, which the caller emits next).

        The first writer wins: the file is linked into place, which fails when one exists
        (the reaper terminalized the run of a worker it gave up on). Returns the record on
        disk and whether it is this one.
        """
        final = {
            "timestamp": self.now(),
            "status": status,
            "run_id": self.run_id,
            "failure_reason": reason,
            "final_git_commit_sha": "",
            "cxdb_context_id": "",
            "cxdb_head_turn_id": "",
            "epoch": self.epoch,
            **totals,
        }
        path = self.path / "final.json"
        if not _retried(lambda: create_file(path, _json_bytes(final), fsync=self.fsync)):
            try:
                existing = json.loads(path.read_bytes())
            except (OSError, ValueError, RecursionError):  # torn or tampered with: not ours
                existing = {}
            return (existing if isinstance(existing, dict) else {}), False
        self._own_final = True
        return final, True

    def sealed_by_other(self) -> bool:
        """True once someone else (the reaper) wrote this scope's final.json: the record is
        closed, and this writer's worker no longer holds the lease."""
        return not self._own_final and (self.path / "final.json").exists()

    def terminalize(self, status: str, reason: str, **totals: Any) -> tuple[str, str]:
        """End the run: ``final.json`` first (atomically; the first writer wins), then the
        terminal event (``run_completed`` or ``run_failed``), then the lock goes.

        When the reaper terminalized the run first, its record stands, no second terminal
        event is written, and its status and reason are returned.
        """
        final, won = self.write_final(status, reason, **totals)
        if won:
            wall, cost, attempts = totals["wall_s"], totals["cost_usd"], totals["attempts"]
            terminal: Event = (
                RunCompleted(status=status, wall_s=wall, cost_usd=cost, attempts=attempts)
                if status == "success"
                else RunFailed(
                    status=status, reason=reason, wall_s=wall, cost_usd=cost, attempts=attempts
                )
            )
            # final.json is the record and it is on disk: a full disk that refuses the
            # terminal line (or live.json) must not turn a finished run into an error.
            with contextlib.suppress(OSError):
                self.emit(terminal)
        with contextlib.suppress(OSError):
            self.release_lock()
        if won:
            return status, reason
        return str(final.get("status", "fail")), str(final.get("failure_reason", ""))

    def acquire_lock(self, pid: int) -> None:
        """Write ``run.pid`` and take ``run.lock.json`` (exclusive: ``link`` fails if held)."""
        (self.path / "run.pid").write_text(str(pid))
        lock = {
            "pid": pid,
            "pid_start_time": start_ticks(pid),
            "run_id": self.run_id,
            "acquired_at": self.now(),
        }
        target = self.path / "run.lock.json"
        if not create_file(target, _json_bytes(lock), fsync=self.fsync):
            raise FileExistsError(errno.EEXIST, "the run's lock is held", str(target))

    def release_lock(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.path / "run.lock.json").unlink()


SUCCESS_LIKE = frozenset({"success", "partial_success", "degraded_success", "skipped"})
FAILED = frozenset({"fail", "retry"})


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a node's visit (or one attempt) produced; routing reads ``status``."""

    status: str
    failure_reason: str = ""
    failure_class: str = ""
    preferred_label: str = ""
    failure_signature: str = ""
    notes: str = ""
    cost_usd: float | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status in FAILED

    def routing(self) -> dict[str, str]:
        """The values edge conditions test."""
        return {
            "outcome": self.status,
            "preferred_label": self.preferred_label,
            "failure_class": self.failure_class,
        }

    def to_json(self) -> dict[str, Any]:
        """Kilroy's ``status.json`` shape; empty fields are left out."""
        meta: dict[str, Any] = {
            "failure_class": self.failure_class,
            "failure_signature": self.failure_signature,
            "cost_usd": self.cost_usd,
        }
        out = {
            "status": self.status,
            "preferred_label": self.preferred_label,
            "notes": self.notes,
            "failure_reason": self.failure_reason,
            "details": dict(self.details),
            "meta": {k: v for k, v in meta.items() if v not in ("", None)},
        }
        return {k: v for k, v in out.items() if v not in ("", {}, None)}


@dataclass(frozen=True, slots=True)
class Ingestion:
    """Which status file decided the attempt (``source`` is ``""`` when none did)."""

    source: str
    path: str
    diagnostic: str
    outcome: Outcome | None


def _candidates(attempt_dir: Path, worktree: Path, run_id: str) -> list[tuple[str, Path]]:
    return [
        ("canonical", attempt_dir / "status.json"),
        ("worktree", worktree / "status.json"),
        ("dot_ai", worktree / ".ai" / "status.json"),
        ("dot_ai", worktree / ".ai" / "runs" / run_id / "status.json"),
    ]


def clear_status_files(worktree: Path, run_id: str) -> None:
    """Remove status files left in the worktree, so none is attributed to the next stage."""
    for _, path in _candidates(worktree, worktree, run_id)[1:]:
        path.unlink(missing_ok=True)


def _report(value: Any) -> Outcome:
    """A stage's status JSON as an :class:`Outcome` (Kilroy's shapes, legacy included)."""
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    raw = value.get("status", value.get("outcome"))
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError("no status string")
    meta: dict[str, Any] = value["meta"] if isinstance(value.get("meta"), dict) else {}

    def text(*keys: str, src: Mapping[str, Any] = value) -> str:
        found = next((src[k] for k in keys if isinstance(src.get(k), str) and src[k]), "")
        return str(found)

    return Outcome(
        status=canonical_outcome(raw),
        failure_reason=text("failure_reason") or ("" if "status" in value else text("details")),
        failure_class=text("failure_class") or text("failure_class", src=meta),
        preferred_label=text("preferred_label", "preferred_next_label"),
        failure_signature=text("failure_signature") or text("failure_signature", src=meta),
        notes=text("notes"),
        cost_usd=cost_figure(value.get("cost_usd", meta.get("cost_usd"))),
    )


#: The largest status file a stage's outcome is read from (32 MiB, the most of a document the
#: doctor reads): a larger one is invalid, moved aside unread; a 1 GiB file took 1.3 GiB of
#: the executor's memory.
MAX_STATUS_BYTES = 32 * 1024 * 1024


def ingest_status(attempt_dir: Path, worktree: Path, run_id: str) -> Ingestion:
    """Take the first valid status file (see the module docstring) into the attempt dir."""
    notes: list[str] = []
    winner: Ingestion | None = None
    for source, path in _candidates(attempt_dir, worktree, run_id):
        if not path.is_file():
            if winner is None:
                notes.append(f"{source} missing: {path}")
            continue
        try:
            value, fixed = _status_json(read_regular_bytes(path, max_bytes=MAX_STATUS_BYTES))
            outcome = _report(value)
        except (OSError, ValueError, RecursionError) as exc:  # an agent's file: anything
            why: object = exc
            if isinstance(exc, RecursionError):
                why = "JSON nested too deeply"
            elif isinstance(exc, OSError):  # "larger than …", not "[Errno 27] …: 'PATH'"
                why = exc.strerror or exc
            notes.append(f"{source} invalid: {path}: {why}")
            _move(path, attempt_dir / f"stage_status.{source}.invalid")
            continue
        if winner is not None:
            notes.append(f"{source} ignored (an earlier file won): {path}")
            _keep(path, attempt_dir / f"stage_status.{source}.ignored.json", fixed)
            continue
        _keep(path, attempt_dir / "stage_status.json", fixed)
        winner = Ingestion(source, str(path), "", outcome)
    if winner is None:
        return Ingestion("", "", "; ".join(notes), None)
    return Ingestion(winner.source, winner.path, "; ".join(notes), winner.outcome)


def _status_json(data: bytes) -> tuple[Any, bytes | None]:
    """A stage's status file read as JSON, and, when it holds a number JSON has no spelling
    for (``Infinity``, ``NaN``, which Python's json reads, or ``1e999``, past a double), the
    bytes to keep instead: the same document with each of them ``null`` (as
    :func:`executor._events.finite` writes the executor's own documents). None: keep the file.

    >>> _status_json(b'{"status": "success", "cost_usd": 0.5}')
    ({'status': 'success', 'cost_usd': 0.5}, None)
    >>> _status_json(b'{"status": "success", "cost_usd": Infinity, "n": [NaN, 1e999, 2.5]}')[1]
    b'{"status": "success", "cost_usd": null, "n": [null, null, 2.5]}\\n'
    """
    nonfinite = False

    def no_number(_text: str) -> None:
        nonlocal nonfinite
        nonfinite = True

    def number(text: str) -> float | None:
        value = float(text)
        if math.isfinite(value):
            return value
        no_number(text)
        return None

    value = json.loads(data, parse_constant=no_number, parse_float=number)
    return value, (json.dumps(value) + "\n").encode() if nonfinite else None


def _keep(src: Path, dst: Path, fixed: bytes | None) -> None:
    """Move a stage's status file to ``dst`` unchanged, or write ``fixed`` there instead
    (whole, fsynced) and remove it."""
    if fixed is None:
        _move(src, dst)
        return
    replace_file(dst, fixed, fsync=True)
    src.unlink(missing_ok=True)


def _move(src: Path, dst: Path) -> None:
    try:
        os.replace(src, dst)
    except OSError:  # another file system: copy, then remove
        dst.write_bytes(src.read_bytes())
        src.unlink(missing_ok=True)
