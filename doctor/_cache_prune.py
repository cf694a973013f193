"""Forgetting what the scan cache keeps of runs that are gone (``doctor cache prune``).

The scan cache (:mod:`doctor._cache`) keeps an entry and an events partition for every run it
ever diagnosed, so the dataset holds the history of runs deleted since; a watch over a fleet
whose runs come and go grows its cache without end. Pruning removes, and only inside the
cache directory:

- the entries (``runs/<key>.json``) of runs whose directory is gone, with their events
  (``events/run=<key>/``). The run's directory is the entry's ``resolved_path`` (written since
  this command exists), else its ``run_path`` when absolute. An entry that names neither (an
  older entry of a scan given a relative root) is never taken for gone;
- with ``older_than_s``, the entries not written for that long, whatever their run (the next
  scan reads those runs again);
- entries that are not an entry (not JSON, or no object): a scan ignores them and reads the
  run again anyway;
- events partitions that no entry names and temporary files a killed scan left, once older
  than ``grace_s`` (a running scan writes a run's events before its entry).

Nothing is followed through a symlink, and nothing but the files named above is removed: a
partition holding anything but regular files is left with them, and said so. A cache is
derived data: whatever is pruned costs at most a run read again, never a result.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from doctor._ndjson import open_regular

__all__ = ["PruneResult", "Pruned", "prune_cache"]

#: How old an events partition without an entry, or a temporary file, must be to be pruned:
#: a scan writing one now saves its entry within seconds.
GRACE_S = 3600.0

#: The longest first line of an entry read (the identities, offsets and activity of a run).
_HEAD_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Pruned:
    """One run's (or one leftover's) removal: ``reason`` is ``gone`` (its directory is not
    there), ``older`` (not written for ``older_than_s``), ``damaged`` (not an entry),
    ``orphan`` (events no entry names) or ``temporary`` (a killed scan's file)."""

    key: str
    reason: str
    run_path: str | None
    bytes: int


@dataclass(frozen=True, slots=True)
class PruneResult:
    """What :func:`prune_cache` removed (or, with ``dry_run``, would), the entries it kept,
    and what it left that it does not own (``left``: paths, each with why)."""

    cache: Path
    removed: tuple[Pruned, ...]
    kept: int
    dry_run: bool
    left: tuple[str, ...] = ()

    @property
    def freed(self) -> int:
        return sum(p.bytes for p in self.removed)

    def as_json(self) -> dict[str, object]:
        return {
            "cache": str(self.cache),
            "dry_run": self.dry_run,
            "removed": [
                {"key": p.key, "reason": p.reason, "run_path": p.run_path, "bytes": p.bytes}
                for p in self.removed
            ],
            "kept": self.kept,
            "freed_bytes": self.freed,
            "left": list(self.left),
        }


def prune_cache(
    cache: Path,
    *,
    older_than_s: float | None = None,
    dry_run: bool = False,
    now: float | None = None,
    grace_s: float = GRACE_S,
) -> PruneResult:
    """Prune ``cache`` (see the module docstring); ``now`` is the wall clock, for tests.

    Raises ``OSError`` when ``cache`` is not a scan cache directory (no ``runs/``).
    """
    now = time.time() if now is None else now
    runs, events = cache / "runs", cache / "events"
    try:
        is_cache = stat.S_ISDIR(os.lstat(runs).st_mode)
    except FileNotFoundError:
        is_cache = False
    if not is_cache:
        raise NotADirectoryError(20, "not a scan cache directory (no runs/ in it)", str(cache))
    removed: list[Pruned] = []
    left: list[str] = []
    keys: set[str] = set()
    kept = 0
    for name in sorted(os.listdir(runs)):
        path = runs / name
        st = _lstat(path)
        if st is None or not stat.S_ISREG(st.st_mode):
            continue
        if name.startswith(".") and name.endswith(".tmp"):
            if now - st.st_mtime > grace_s:
                removed.append(_remove(path, st, name, "temporary", None, dry_run))
            continue
        if not name.endswith(".json"):
            continue
        key = name[: -len(".json")]
        head = _head(path)
        why, run_path = _why(head, st, now, older_than_s)
        if why is None:
            kept += 1
            keys.add(key)
            continue
        gone = _remove(path, st, key, why, run_path, dry_run)
        removed.append(
            Pruned(key, why, run_path, gone.bytes + _drop_events(events, key, dry_run, left))
        )
    for name in sorted(_listdir(events)):
        if not name.startswith("run=") or name[len("run=") :] in keys:
            continue
        folder = events / name
        st = _lstat(folder)
        if st is None or not stat.S_ISDIR(st.st_mode) or now - _newest(folder, st) <= grace_s:
            continue
        key = name[len("run=") :]
        if any(p.key == key for p in removed):
            continue
        removed.append(Pruned(key, "orphan", None, _drop_events(events, key, dry_run, left)))
    return PruneResult(cache, tuple(removed), kept, dry_run, tuple(left))


def _why(
    head: dict[str, object] | None, st: os.stat_result, now: float, older_than_s: float | None
) -> tuple[str | None, str | None]:
    """Why an entry goes (None: it stays), and the run directory it names."""
    if head is None:
        return "damaged", None
    named = head.get("resolved_path") or head.get("run_path")
    run_path = named if isinstance(named, str) else None
    where = head.get("resolved_path")
    if not isinstance(where, str):
        where = run_path if run_path is not None and os.path.isabs(run_path) else None
    if where is not None and not os.path.isdir(where):
        return "gone", run_path
    if older_than_s is not None and now - st.st_mtime > older_than_s:
        return "older", run_path
    return None, run_path


def _head(path: Path) -> dict[str, object] | None:
    """The entry's first line as an object, or None when it is none (a damaged entry)."""
    try:
        with open_regular(path) as f:  # not through a symlink, never a FIFO
            line = bytearray()
            while b"\n" not in line and len(line) < _HEAD_BYTES:
                chunk = f.read(65536)
                if not chunk:
                    break
                line += chunk
        data = json.loads(line.partition(b"\n")[0])
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _drop_events(events: Path, key: str, dry_run: bool, left: list[str]) -> int:
    """Remove ``events/run=<key>/``'s regular files and the folder; their bytes."""
    folder = events / f"run={key}"
    st = _lstat(folder)
    if st is None:
        return 0
    if not stat.S_ISDIR(st.st_mode):  # a symlink or a file in its place: not ours to follow
        left.append(f"{folder}: not a directory, left")
        return 0
    total, others = 0, False
    for name in _listdir(folder):
        path = folder / name
        sub = _lstat(path)
        if sub is None:
            continue
        if not stat.S_ISREG(sub.st_mode):
            others = True
            continue
        total += _remove(path, sub, key, "", None, dry_run).bytes
    if others:
        left.append(f"{folder}: holds something other than files, left")
    elif not dry_run:
        with contextlib.suppress(OSError):
            os.rmdir(folder)
    return total


def _remove(
    path: Path, st: os.stat_result, key: str, reason: str, run_path: str | None, dry_run: bool
) -> Pruned:
    if not dry_run:
        with contextlib.suppress(FileNotFoundError):  # a concurrent prune or scan was first
            os.unlink(path)
    return Pruned(key, reason, run_path, st.st_size)


def _newest(folder: Path, st: os.stat_result) -> float:
    """The latest mtime of ``folder`` and of what it holds."""
    newest = st.st_mtime
    for name in _listdir(folder):
        sub = _lstat(folder / name)
        if sub is not None:
            newest = max(newest, sub.st_mtime)
    return newest


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []
