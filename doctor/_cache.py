"""The scan cache: canonical events as Parquet, resumable byte offsets, reusable results.

Layout under the cache directory::

    events/batch-<uuid>.parquet   the events of the runs one scan read (one file per scan)
    index.json                    run key -> the batch holding its events
    runs/<key>.json               fingerprints, per-stream byte offsets, torn lines, and the
                                  last diagnosis when it cannot change by itself

A run whose files are unchanged and whose result cannot change by itself (a valid
``final.json``, or an owner process that is gone) is not read at all. A run whose append-only
streams only grew is reloaded from Parquet and read from each stream's last byte offset.
Anything else is
read from scratch. Entries carry :data:`CACHE_VERSION` and the detector configuration, so a
new release or other thresholds never reuse stale results.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb

from doctor._layout import RunLayout, stage_dirs
from doctor._ndjson import open_regular
from rundoctor.atomic import replace_file
from rundoctor.signature import SIGNATURE_VERSION

__all__ = ["CACHE_VERSION", "CacheEntry", "RunCache", "StreamState", "fingerprint"]

CACHE_VERSION = 4
#: Cache files are written atomically (unique temporary name, rename) but not fsynced: a
#: crash loses at most a cache entry, which the next scan rebuilds, and an fsync per run
#: would dominate a cold scan's write time.
_DURABLE = False
_TAIL_CHECK = 64  # bytes before the resume offset that must be unchanged to resume


@dataclass(frozen=True, slots=True)
class StreamState:
    """How far one stream was read."""

    scope: str
    ino: int
    size: int
    mtime_ns: int
    offset: int
    tail_sha: str  # sha1 of the _TAIL_CHECK bytes before ``offset``
    torn: tuple[tuple[int, int, str], ...] = ()  # (line, byte_offset, detail)


@dataclass(slots=True)
class CacheEntry:
    key: str
    run_path: str
    settings: str
    fingerprint: dict[str, list[int]]
    streams: dict[str, StreamState] = field(default_factory=dict)
    diagnosis: dict[str, Any] | None = None
    #: For a reused (finished) run: its life [start_ns, end_ns] and thinned progress points,
    #: which fleet-wide detectors need although the run is not read again.
    life: list[int] = field(default_factory=list)
    progress: list[int] = field(default_factory=list)


def _stat(path: Path) -> list[int] | None:
    try:
        st = path.lstat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def fingerprint(layout: RunLayout) -> dict[str, list[int]]:
    """Size, mtime and inode of every file the doctor reads in a run (no file is opened)."""
    out: dict[str, list[int]] = {}
    paths = [layout.manifest, layout.run_config, layout.run_pid, layout.run_lock]
    for scope in layout.scopes:
        paths += [scope.progress, scope.final, scope.checkpoint, scope.live]
        for stage in stage_dirs(scope.path):
            paths += list(stage.status_files) + list(stage.stdout_logs)
        paths += scope.worktree_status_files(layout.run_id)
    for p in paths:
        st = _stat(p)
        if st is not None:
            out[os.path.relpath(p, layout.path)] = st
    return out


def tail_sha(path: Path, offset: int) -> str:
    """Hash of the bytes just before ``offset``: proof the prefix was not rewritten."""
    start = max(0, offset - _TAIL_CHECK)
    try:
        with open_regular(path) as fh:
            fh.seek(start)
            return hashlib.sha1(fh.read(offset - start)).hexdigest()
    except OSError:
        return ""


class RunCache:
    """Per-run cache entries and Parquet event files under ``root``."""

    def __init__(self, root: Path, settings: str) -> None:
        self.root = Path(root)
        # Findings depend on how failure texts are signed: a new signature version rereads.
        self.settings = f"{CACHE_VERSION}:sig{SIGNATURE_VERSION}:{settings}"
        (self.root / "runs").mkdir(parents=True, exist_ok=True)
        (self.root / "events").mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(layout: RunLayout) -> str:
        digest = hashlib.sha1(os.fsencode(layout.path.resolve())).hexdigest()[:12]
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in layout.run_id)[:64]
        return f"{safe}-{digest}"

    def load(self, layout: RunLayout) -> CacheEntry | None:
        path = self.root / "runs" / f"{self.key(layout)}.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict):
            return None
        if data.get("settings") != self.settings or data.get("run_path") != str(layout.path):
            return None
        try:
            streams = {
                s["scope"]: StreamState(
                    s["scope"],
                    s["ino"],
                    s["size"],
                    s["mtime_ns"],
                    s["offset"],
                    s["tail_sha"],
                    tuple((int(a), int(b), str(c)) for a, b, c in s.get("torn", [])),
                )
                for s in data.get("streams", [])
            }
            return CacheEntry(
                key=data["key"],
                run_path=data["run_path"],
                settings=data["settings"],
                fingerprint={k: list(v) for k, v in data["fingerprint"].items()},
                streams=streams,
                diagnosis=data.get("diagnosis"),
                life=[int(x) for x in data.get("life", [])],
                progress=[int(x) for x in data.get("progress", [])],
            )
        except (KeyError, TypeError, ValueError):
            return None

    def save(self, entry: CacheEntry) -> None:
        data = {
            "key": entry.key,
            "run_path": entry.run_path,
            "settings": entry.settings,
            "fingerprint": entry.fingerprint,
            "streams": [
                {
                    "scope": s.scope,
                    "ino": s.ino,
                    "size": s.size,
                    "mtime_ns": s.mtime_ns,
                    "offset": s.offset,
                    "tail_sha": s.tail_sha,
                    "torn": [list(t) for t in s.torn],
                }
                for s in entry.streams.values()
            ],
            "diagnosis": entry.diagnosis,
            "life": entry.life,
            "progress": entry.progress,
        }
        path = self.root / "runs" / f"{entry.key}.json"
        replace_file(path, json.dumps(data), fsync=_DURABLE)

    def _index(self) -> dict[str, str]:
        try:
            data = json.loads((self.root / "index.json").read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def write_events(
        self,
        con: duckdb.DuckDBPyConnection,
        keys: Mapping[str, str],
        run_ids: Sequence[str],
        forget: Sequence[str] = (),
    ) -> None:
        """Write the events of ``run_ids`` (run_id -> cache key in ``keys``) to one new batch.

        One Parquet file per scan is several times cheaper to write than one per run. The
        index maps each run's key to its batch; the runs in ``forget`` lose theirs, and
        batches no run refers to are deleted.
        """
        index = self._index()
        for run_id in forget:
            index.pop(keys[run_id], None)
        batch = f"batch-{uuid.uuid4().hex}.parquet"
        if run_ids:
            self._copy(con, run_ids, self.root / "events" / batch)
            index.update({keys[r]: batch for r in run_ids})
        replace_file(self.root / "index.json", json.dumps(index), fsync=_DURABLE)
        live = set(index.values())
        for old in (self.root / "events").glob("batch-*.parquet"):
            if old.name not in live:
                old.unlink(missing_ok=True)

    @staticmethod
    def _copy(con: duckdb.DuckDBPyConnection, run_ids: Sequence[str], target: Path) -> None:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _rd_keys AS SELECT unnest($ids) AS run_id",
            {"ids": list(run_ids)},
        )
        con.execute(
            "COPY (SELECT * EXCLUDE (raw) FROM events SEMI JOIN _rd_keys USING (run_id)) "
            "TO $target (FORMAT parquet)",
            {"target": str(target)},
        )
        con.execute("DROP TABLE _rd_keys")

    def event_files(self, key: str) -> list[Path]:
        """The batch holding ``key``'s events (empty when it has none)."""
        batch = self._index().get(key)
        path = self.root / "events" / batch if batch else None
        return [path] if path is not None and path.is_file() else []
