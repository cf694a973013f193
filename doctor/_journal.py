"""The repair journal: ``repairs.ndjson`` in the run directory, append-only.

One JSON object per line, one line per repair attempt that did something or refused to
(``applied``, ``refused``, ``failed``, ``breaker``; an action found already done writes
nothing)::

    {"schema": "rundoctor.repair/2", "at": "2026-02-11T12:00:00Z", "at_s": 1770811200.0,
     "tool": "rundoctor doctor repair", "version": "0.1.0",
     "action": "terminalize", "target": "final.json",
     "finding": {"code": "missing_final", "scope": "", "node_id": "fanout"},
     "outcome": "applied", "message": "...",
     "before_sha256": null, "after_sha256": "9f2c…", "backup": null, "source": null,
     "attempt": "4242-1770811200000000000"}

An action on a run directory that reaches its first write journals a ``started`` line first
(with the run's lock held, before a byte is written), then its outcome; both carry the same
``attempt``. A ``started`` line no later line finishes (the repair was killed, or the machine
went down, between the two) says the action *may* have happened: :func:`read_journal` returns
it (a finished one it drops), the breaker counts it as a try, and nothing takes it as done,
so the next repair decides from the files again. Journals of ``rundoctor.repair/1`` (no
``started`` lines, no ``attempt``) read as before.

Lines are appended with one ``write`` on a descriptor opened ``O_APPEND | O_NOFOLLOW`` and
fsynced, so a crash leaves at most a torn last line, which :func:`read_journal` skips. The
breaker (:mod:`doctor._repair_model`) counts the journal's ``applied`` and ``failed`` lines
and its unfinished ``started`` ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from doctor._ndjson import bounded_lines

__all__ = [
    "JOURNAL",
    "JOURNAL_SCHEMA",
    "STARTED",
    "JournalEntry",
    "append_entry",
    "read_journal",
    "sha256_of",
]

JOURNAL = "repairs.ndjson"
JOURNAL_SCHEMA = "rundoctor.repair/2"
#: The line an action on a run directory journals before its first write (``attempt`` pairs
#: it with the line of its outcome).
STARTED = "started"


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One line of ``repairs.ndjson``."""

    at: str
    at_s: float
    tool: str
    version: str
    action: str
    target: str
    finding: Mapping[str, Any]
    outcome: str
    message: str
    before_sha256: str | None = None
    after_sha256: str | None = None
    backup: str | None = None
    source: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: Pairs a ``started`` line with its outcome's line; None on a line of no such pair.
    attempt: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": JOURNAL_SCHEMA,
            "at": self.at,
            "at_s": self.at_s,
            "tool": self.tool,
            "version": self.version,
            "action": self.action,
            "target": self.target,
            "finding": dict(self.finding),
            "outcome": self.outcome,
            "message": self.message,
            "before_sha256": self.before_sha256,
            "after_sha256": self.after_sha256,
            "backup": self.backup,
            "source": self.source,
            **dict(self.extra),
            **({} if self.attempt is None else {"attempt": self.attempt}),
        }


def sha256_of(path: Path) -> str | None:
    """The SHA-256 of a regular file's bytes; ``None`` when there is no such file.

    >>> sha256_of(Path("/nonexistent")) is None
    True
    """
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_journal(run_path: Path, *, outcomes: Collection[str] | None = None) -> list[JournalEntry]:
    """Every well-formed line of the run's journal, in order (none when there is none); with
    ``outcomes``, only the lines of those outcomes (what the breaker and the no-op check read:
    ``applied``, ``failed`` and ``started``). A ``started`` line is returned only while no
    line finishes its attempt (whatever that line's outcome): an action that may or may not
    have happened.

    A journal that is a symlink or not a regular file is not read (it may lead outside the
    run); torn or foreign lines are skipped. It is read a line at a time, and a line of
    another outcome is skipped before it is parsed: a journal of years of refusals costs its
    reading, not its size in memory. A line over ``MAX_LINE_BYTES`` is no entry.
    """
    path = run_path / JOURNAL
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)  # never through a symlink, never blocking on a FIFO
    except OSError:
        return []
    # A line of an attempt is parsed whatever its outcome: it may finish a started line.
    wanted = None if outcomes is None else (*(o.encode() for o in outcomes), b'"attempt"')
    out = []
    finished: set[str] = set()
    with os.fdopen(fd, "rb") as fh:
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return []
            for raw in bounded_lines(fh, MAX_LINE_BYTES):
                if wanted is None or any(w in raw for w in wanted):
                    entry = _entry(raw)
                    if entry is None:
                        continue
                    if entry.attempt is not None and entry.outcome != STARTED:
                        finished.add(entry.attempt)
                    if outcomes is None or entry.outcome in outcomes:
                        out.append(entry)
        except OSError:
            pass
    return [e for e in out if e.outcome != STARTED or e.attempt not in finished]


#: Longer journal lines are no entry (one is a few hundred bytes) and are never held whole.
MAX_LINE_BYTES = 1 << 20


def _entry(raw: bytes) -> JournalEntry | None:
    """The journal line ``raw`` as an entry; None for a torn or foreign line."""
    try:
        obj = json.loads(raw)
        return JournalEntry(
            at=str(obj["at"]),
            at_s=float(obj["at_s"]),
            tool=str(obj.get("tool", "")),
            version=str(obj.get("version", "")),
            action=str(obj["action"]),
            target=str(obj["target"]),
            finding=obj.get("finding") or {},
            outcome=str(obj["outcome"]),
            message=str(obj.get("message", "")),
            before_sha256=obj.get("before_sha256"),
            after_sha256=obj.get("after_sha256"),
            backup=obj.get("backup"),
            source=obj.get("source"),
            attempt=obj["attempt"] if isinstance(obj.get("attempt"), str) else None,
            extra={"cut": obj["cut"]} if isinstance(obj.get("cut"), dict) else {},
        )
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None


def append_entry(run_path: Path, entry: JournalEntry, *, dir_fd: int | None = None) -> None:
    """Append one line to the run's journal (created if absent), durably, or leave the
    journal as it was: a write the disk refuses (full, an I/O error) takes back the part of
    the line it took, and a journal this call created is removed again, so a full disk never
    leaves an empty ``repairs.ndjson`` or a torn line behind; the ``OSError`` is raised.

    Refuses (``OSError``) a journal that is a symlink: ``O_NOFOLLOW`` never writes through one.
    A journal ending in a torn line gets a newline first, so the new line is whole.
    With ``dir_fd`` (the run directory, opened without following a symlink) the journal is
    opened relative to it, so a run directory swapped for a symlink is never written through.
    """
    line = (json.dumps(entry.to_json(), ensure_ascii=True, sort_keys=False) + "\n").encode()
    path: str | Path = JOURNAL if dir_fd is not None else run_path / JOURNAL
    fd, created = _open_journal(path, dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{JOURNAL} is not a regular file")
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            # A torn last line (a crash mid-write): glued to it, this entry would not parse
            # and be lost when read; it starts on a line of its own.
            line = b"\n" + line
        try:
            rest = memoryview(line)
            while rest:  # a full disk may take part of the line before it refuses the rest
                rest = rest[os.write(fd, rest) :]
            os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
                if created and size == 0:
                    os.unlink(path, dir_fd=dir_fd)
            raise
    finally:
        os.close(fd)


def _open_journal(path: str | Path, dir_fd: int | None) -> tuple[int, bool]:
    """The journal opened for appending, never through a symlink nor blocking on a FIFO, and
    whether this call created it."""
    flags = os.O_RDWR | os.O_APPEND | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
    try:
        return os.open(path, flags, dir_fd=dir_fd), False
    except FileNotFoundError:
        pass
    try:
        return os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=dir_fd), True
    except FileExistsError:  # another repair created it meanwhile: append to theirs
        return os.open(path, flags, dir_fd=dir_fd), False
