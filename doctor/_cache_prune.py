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
- entries that are not an entry (not JSON or no object, nested past the parser's depth,
  over the 64 MiB a scan reads): a scan ignores them and reads the run again anyway;
- events partitions that no entry names and temporary files a killed scan left, once older
  than ``grace_s`` (a running scan writes a run's events before its entry).

Nothing is followed through a symlink (a cache whose ``runs/`` or ``events/`` is one is
refused), and nothing but the files named above is removed: a partition holding anything but
regular files is left with them, an entry that cannot be read (no permission) or is no file
(a FIFO) is left, a file that cannot be removed is left, each said so in ``left``. A run
directory that cannot be looked at (no permission on a parent) is not taken for gone.

Prune may run while scans use the cache. An entry a scan saves anew after prune judged the
old one is not removed (it is renamed aside, compared and put back), a run's events
written after its entry, a running scan's that will name them, stay, and a partition it
emptied is removed only while no scan writes events (:mod:`doctor._cache_lock`), else left
to the next prune. A cache is derived
data: whatever is pruned costs at most a run read again, never a result.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from doctor._cache import MAX_ENTRY_BYTES
from doctor._cache_lock import partitions_removable
from doctor._ndjson import open_regular
from rundoctor.paths import file_kind

__all__ = ["PruneResult", "Pruned", "prune_cache"]

#: How old an events partition without an entry, or a temporary file, must be to be pruned:
#: a scan writing one now saves its entry within seconds.
GRACE_S = 3600.0


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
    race_hook: Callable[[str], None] | None = None,
) -> PruneResult:
    """Prune ``cache`` (see the module docstring); ``now`` is the wall clock, for tests.

    Raises ``OSError`` (naming the directory in ``filename``) when ``cache`` is not a scan
    cache directory (no ``runs/``, or ``runs/`` or ``events/`` a symlink or no directory) or
    cannot be pruned (not readable, or not writable unless ``dry_run``): before anything is
    removed. A file that cannot be read or removed later is left, and said so in ``left``.
    ``race_hook`` is a test seam, None outside tests: called with an entry's key once it is
    judged to go, before it is removed.
    """
    now = time.time() if now is None else now
    runs, events = cache / "runs", cache / "events"
    _check(runs, events, dry_run)
    removed: list[Pruned] = []
    left: list[str] = []
    keys: set[str] = set()
    kept = 0
    for name in sorted(os.listdir(runs)):
        path = runs / name
        st = _lstat(path)
        if st is None:
            continue
        if not stat.S_ISREG(st.st_mode):
            if name.endswith(".json"):  # a scan reads the run again each time: not ours
                left.append(f"{path}: {file_kind(st.st_mode)}, not an entry, left")
            continue
        if name.startswith(".") and name.endswith(".tmp"):
            if now - st.st_mtime > grace_s and _remove(path, dry_run, left):
                removed.append(Pruned(name, "temporary", None, st.st_size))
            continue
        if not name.endswith(".json"):
            continue
        key = name[: -len(".json")]
        head = _head(path, st)
        if isinstance(head, OSError):
            left.append(f"{path}: cannot be read ({head.strerror or head}), left")
            keys.add(key)
            continue
        why, run_path = _why(head, st, now, older_than_s)
        if why is None:
            kept += 1
            keys.add(key)
            continue
        if race_hook is not None:
            race_hook(key)
        if not _take(path, st, dry_run, left):  # a scan saved the run anew since: it stays
            kept += 1
            keys.add(key)
            continue
        # Only the events the entry could name: a newer file is a running scan's, whose
        # entry is not saved yet (a killed scan's is an orphan once past the grace).
        freed = _drop_events(events, key, dry_run, left, st.st_mtime_ns, now - grace_s)
        removed.append(Pruned(key, why, run_path, st.st_size + (freed or 0)))
    for name in sorted(os.listdir(events) if _lstat(events) is not None else ()):
        if not name.startswith("run=") or name[len("run=") :] in keys:
            continue
        folder = events / name
        st = _lstat(folder)
        if st is None or not stat.S_ISDIR(st.st_mode) or now - _newest(folder, st) <= grace_s:
            continue
        key = name[len("run=") :]
        if any(p.key == key for p in removed):
            continue
        freed = _drop_events(events, key, dry_run, left, None, now)
        if freed is not None:
            removed.append(Pruned(key, "orphan", None, freed))
    return PruneResult(cache, tuple(removed), kept, dry_run, tuple(left))


def _check(runs: Path, events: Path, dry_run: bool) -> None:
    """Raise ``OSError`` unless ``runs`` (and ``events`` when there) are directories, not
    symlinks, that this process may list and, unless ``dry_run``, remove from."""
    for folder in (runs, events):
        try:
            mode = os.lstat(folder).st_mode
        except FileNotFoundError:
            if folder == runs:
                raise NotADirectoryError(
                    errno.ENOTDIR, "not a scan cache directory (no runs/ in it)", str(runs.parent)
                ) from None
            continue
        if stat.S_ISLNK(mode):
            raise NotADirectoryError(
                errno.ENOTDIR, f"{folder.name}/ is a symlink, not followed", str(folder)
            )
        if not stat.S_ISDIR(mode):
            raise NotADirectoryError(
                errno.ENOTDIR,
                f"not a scan cache directory ({folder.name}/ is a {file_kind(mode)})",
                str(folder),
            )
        need = os.R_OK | os.X_OK | (0 if dry_run else os.W_OK)
        if not os.access(folder, need):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(folder))


def _why(
    head: dict[str, object] | None, st: os.stat_result, now: float, older_than_s: float | None
) -> tuple[str | None, str | None]:
    """Why an entry goes (None: it stays), and the run directory it names."""
    if head is None:
        return "damaged", None
    named = head.get("resolved_path") or head.get("run_path")
    run_path = named if isinstance(named, str) else None
    where = head.get("resolved_path")
    if not isinstance(where, str) or not os.path.isabs(where):
        where = run_path if run_path is not None and os.path.isabs(run_path) else None
    if where is not None:
        gone = _gone(where)
        if gone is None:  # no path (a NUL in it): no entry a scan wrote
            return "damaged", None
        if gone:
            return "gone", run_path
    if older_than_s is not None and now - st.st_mtime > older_than_s:
        return "older", run_path
    return None, run_path


def _gone(where: str) -> bool | None:
    """Whether the run directory ``where`` is gone: not there, or no directory. One that
    cannot be looked at (no permission, an I/O error) is not taken for gone. None when
    ``where`` is no path."""
    try:
        st = os.stat(where)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        return False
    except ValueError:
        return None
    return not stat.S_ISDIR(st.st_mode)


def _head(path: Path, st: os.stat_result) -> dict[str, object] | OSError | None:
    """The entry's first line as an object; None when it is none (a damaged entry: not
    JSON, nested past the parser's depth, or a file over the largest entry a scan reads),
    the error when it cannot be read (it is not judged)."""
    if st.st_size > MAX_ENTRY_BYTES:
        return None
    try:
        with open_regular(path) as f:  # not through a symlink, never a FIFO
            line = bytearray()
            while b"\n" not in line and len(line) <= MAX_ENTRY_BYTES:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                line += chunk
    except OSError as exc:
        return exc
    try:
        data = json.loads(line.partition(b"\n")[0])
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _take(path: Path, st: os.stat_result, dry_run: bool, left: list[str]) -> bool:
    """Remove the entry ``path`` if it is still the file ``st`` judged; False when it is
    not (a scan saved the run anew since, or removed it) or cannot be removed (in ``left``).

    The entry is renamed aside before it is looked at again, so a scan's entry saved between
    the look and the removal is never the one removed: it is put back unless a newer one is
    there already."""
    if dry_run:
        return True
    aside = path.with_name(f".{path.name}.prune-{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False
    except OSError as exc:
        left.append(f"{path}: cannot be removed ({exc.strerror or exc}), left")
        return False
    now = _lstat(aside)
    same = now is not None and (now.st_ino, now.st_dev, now.st_mtime_ns) == (
        st.st_ino,
        st.st_dev,
        st.st_mtime_ns,
    )
    if not same:
        with contextlib.suppress(OSError):  # FileExistsError: a newer entry is there
            os.link(aside, path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(aside)
    return same


def _drop_events(
    events: Path, key: str, dry_run: bool, left: list[str], upto_ns: int | None, stale: float
) -> int | None:
    """Remove ``events/run=<key>/``'s regular files written at ``upto_ns`` or before, or
    before ``stale`` (seconds), and the folder when that empties it; the bytes removed, None
    when nothing was (or would be)."""
    folder = events / f"run={key}"
    st = _lstat(folder)
    if st is None:
        return None
    if not stat.S_ISDIR(st.st_mode):  # a symlink or a file in its place: not ours to follow
        left.append(f"{folder}: not a directory, left")
        return None
    total, any_removed, stays = 0, False, False
    others: list[str] = []
    for name in sorted(_listdir(folder)):
        path = folder / name
        sub = _lstat(path)
        if sub is None:
            continue
        if not stat.S_ISREG(sub.st_mode):
            others.append(file_kind(sub.st_mode))
            continue
        if upto_ns is not None and sub.st_mtime_ns > upto_ns and sub.st_mtime >= stale:
            stays = True  # a running scan's
            continue
        if _remove(path, dry_run, left):
            total += sub.st_size
            any_removed = True
        else:
            stays = True
    if others:
        left.append(f"{folder}: holds what is no file ({', '.join(sorted(set(others)))}), left")
    elif not stays:
        if dry_run:
            any_removed = True
        else:
            # Not while a scan writes events: it may have made this folder to write into it
            # (left empty, to the next prune, then).
            with partitions_removable(events.parent) as free:
                try:
                    if free:
                        os.rmdir(folder)
                        any_removed = True
                except OSError:  # a scan's new file: its entry names it
                    pass
    return total if any_removed else None


def _remove(path: Path, dry_run: bool, left: list[str]) -> bool:
    """Remove the file ``path``; False (said in ``left``) when it cannot be."""
    if dry_run:
        return True
    try:
        os.unlink(path)
    except FileNotFoundError:  # a concurrent prune or scan was first
        return False
    except OSError as exc:
        left.append(f"{path}: cannot be removed ({exc.strerror or exc}), left")
        return False
    return True


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
