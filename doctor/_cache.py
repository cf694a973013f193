"""The scan cache: one entry per run, and the runs' events as a Parquet dataset.

Layout under the cache directory::

    runs/<key>.json                          per run: the identity of every file the doctor
                                             read, per-stream byte offsets and torn lines,
                                             the diagnosis, its clock inputs and its activity
                                             (one JSON line), then the diagnosis's facts and
                                             findings as kept text (below)
    events/run=<key>/part-<uuid>.parquet     the run's events (hive layout: one partition
                                             per run, ``run`` is the partition column)

A run whose files are unchanged is not read again, whatever its state: its diagnosis is
brought to the new clock (see :mod:`doctor._scan_outcome`). A run whose append-only streams only
grew is reloaded from its Parquet partition and read from each stream's last byte offset. Anything
else is read from scratch. Entries carry :data:`CACHE_VERSION`, a hash of the code that
diagnoses (:func:`code_key`: every module of ``doctor`` and ``rundoctor``) and the detector
configuration, so another release, a patched or edited install, or other thresholds never reuse
stale results: the cache is then read as empty, and refilled.

An entry is one file read at once: a first line of JSON (everything above but the facts and
the findings, with their lengths in bytes under ``body`` and their CRC-32 under ``body_crc``),
then the facts' JSON text and each finding's JSON text as a scan prints it
(:mod:`doctor._kept`), back to back. A rescan parses the first line only; the facts are not
kept but read again from the entry and parsed when looked into (a rescan holds no run's
facts), the findings parsed when they depend on the clock or are looked into, and the rest is
spliced into the scan's JSON as it is: so the body is checked against its CRC-32 when the
entry is read, and one that does not match is a damaged entry, its run read again.

Writes are atomic (a temporary file with a unique name, renamed into place), so scans sharing
one cache directory never see half an entry; the last writer of an entry wins, and a run whose
Parquet partition vanished under a concurrent scan is read again. Entries are not fsynced: a
cache entry lost to a power failure is a run read again, and fsyncing a thousand entries
would cost seconds.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import os
import re
import uuid
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb

from doctor._cache_lock import events_written
from doctor._errors import CacheEntryGone, UsageError
from doctor._kept import SEVERITY_LABELS, KeptFindings
from doctor._layout import (
    CHECKPOINT,
    FINAL,
    GRAPH_DOT,
    LIVE,
    MANIFEST,
    PROGRESS,
    RUN_CONFIG,
    RUN_LOCK,
    RUN_OUT,
    RUN_PID,
    RunLayout,
    stage_dirs,
)
from doctor._ndjson import open_regular
from rundoctor.atomic import replace_file
from rundoctor.paths import make_dirs, read_regular_bytes

__all__ = [
    "CACHE_VERSION",
    "CacheEntry",
    "LazyFacts",
    "RunCache",
    "StreamState",
    "code_key",
    "fingerprint",
]

CACHE_VERSION = 9
#: Cache files are written atomically (unique temporary name, rename) but not fsynced: a
#: crash loses at most a cache entry, which the next scan rebuilds, and an fsync per run
#: would dominate a cold scan's write time.
_DURABLE = False
_TAIL_CHECK = 64  # bytes before the resume offset that must be unchanged to resume
#: What a run key replaces with "_": anything but letters and digits (``str.isalnum``, which
#: is what ``\w`` matches besides "_") and "-_.".
_UNSAFE_KEY = re.compile(r"[^\w.-]")
#: Keys DuckDB's partitioned write names a ``run=<key>`` directory after as they are (it
#: escapes other characters in hive values).
_HIVE_SAFE_KEY = re.compile(r"[A-Za-z0-9_.-]+")
#: A batch whose runs average fewer event rows than this has its runs' files written by one
#: ``COPY ... PARTITION_BY``: a ``COPY`` costs about 2 ms before its first row, and the
#: partitioned writer about twice as much per row. Measured on one DuckDB thread, 100 runs
#: (ms a run, one COPY each / partitioned): 60 rows 2.24 / 1.10, 1,000 rows 2.75 / 2.07,
#: 3,000 rows 3.31 / 4.06, 8,000 rows 6.17 / 9.40.
PARTITIONED_BELOW_ROWS = 1000
#: Runs one partitioned ``COPY`` writes at most (each has a file open until it ends).
_PARTITIONS_AT_ONCE = 128
_FANOUT_SCOPE = re.compile(r"(?:(?P<prefix>.*)/)?parallel/(?P<fanout>[^/]+)/(?:pass\d+/)?[^/]+")


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
    #: Events read with no readable ``ts``, and the first one's event name and ``ts`` text
    #: (doctor._ingest: the cached rows keep no text, so a resumed stream's count is here).
    untimed: tuple[int, str, str] = (0, "", "")


@dataclass(slots=True)
class CacheEntry:
    """What a scan keeps of one run (see the module docstring)."""

    key: str
    run_path: str
    settings: str
    fingerprint: dict[str, list[int]]
    streams: dict[str, StreamState] = field(default_factory=dict)
    #: The run's diagnosis (``rundoctor.diagnosis/1``) without the fleet-phase findings
    #: (loaded: its facts a :class:`LazyFacts`, its findings :class:`KeptFindings`).
    diagnosis: dict[str, Any] | None = None
    #: What the diagnosis's clock-dependent parts were computed from (``doctor._scan_outcome``).
    clock: dict[str, Any] = field(default_factory=dict)
    #: The run's activity for fleet-wide detectors: first event, last progress, last event,
    #: final.json's time, and thinned progress points (``doctor._scan_fleet``).
    activity: dict[str, Any] = field(default_factory=dict)
    #: The Parquet file holding the run's events, relative to the cache directory.
    events: str | None = None


#: What a kept diagnosis holds besides its facts and findings (all text).
_DIAGNOSIS_HEAD = ("schema", "run_id", "path", "layout", "state")
#: Facts a scan reads of every run (fleet sums, ``--since``, the table): kept parsed.
_FACTS_HEAD = ("started_at", "wall_s", "events", "cost_usd")


class LazyFacts(Mapping[str, Any]):
    """A cached diagnosis's facts, parsed from their JSON text when first looked into.

    A rescan prints findings, not facts: parsing a thousand runs' facts would be most of its
    time. The few facts every scan reads (:data:`_FACTS_HEAD`) are at hand unparsed. Loaded
    from an entry, the text itself is not kept either (:class:`_FactsOnDisk`): it is read
    again from the entry's file each time it is parsed, so what a rescan holds of a run does
    not grow with its facts.

    One fact asked for by name (``get``) keeps, of the parsed facts, the scalars and the facts
    asked for so far, not the lists and objects (per node, per attempt) that are most of a
    run's facts: a fleet report or ``doctor metrics`` reads one fact of every run, and keeping
    every run's parsed facts made 10,000 runs hold 250 MB. Asking for a list or object not
    kept parses the text again. Iterating, ``len`` or ``[key]`` keep them all, as before.

    >>> facts = LazyFacts('{"a": 1, "nodes": [{"id": "n"}], "edges": [1, 2]}')
    >>> facts.get("nodes"), facts.get("a"), facts.get("edges"), facts.get("gone", 0)
    ([{'id': 'n'}], 1, [1, 2], 0)
    >>> sorted(facts._kept or {}), facts._parsed is None
    (['a', 'edges', 'nodes'], True)
    """

    __slots__ = ("_kept", "_left", "_parsed", "_span", "_text", "head")

    def __init__(
        self,
        text: str | bytes | _FactsOnDisk,
        start: int = 0,
        end: int | None = None,
        head: Any = None,
    ) -> None:
        # The facts are text[start:end], cut when first looked into; or in a cache entry's
        # file, read again each time they are parsed.
        self._text = text
        self._span = (start, text.size if isinstance(text, _FactsOnDisk) else len(text))
        if end is not None:
            self._span = (start, end)
        self.head: Mapping[str, Any] = head if head is not None else {}
        self._parsed: dict[str, Any] | None = None
        self._kept: dict[str, Any] | None = None  # what get() keeps of a parse
        self._left: frozenset[str] = frozenset()  # the parse's facts get() did not keep

    def _parse(self) -> dict[str, Any]:
        if isinstance(self._text, _FactsOnDisk):
            return _str_keyed(json.loads(self._text.read()))
        start, end = self._span
        return _str_keyed(json.loads(self._text[start:end]))

    def _all(self) -> dict[str, Any]:
        if self._parsed is None:
            self._parsed = self._parse()
            self._kept, self._left = None, frozenset()
        return self._parsed

    def get(self, key: str, default: Any = None) -> Any:
        if self._parsed is not None:
            return self._parsed.get(key, default)
        if key in self.head:
            return self.head[key]
        if self._kept is None or key in self._left:
            asked = self._kept or {}
            facts = self._parse()
            self._kept = {
                k: v
                for k, v in facts.items()
                if k == key or k in asked or not isinstance(v, (list, dict))
            }
            self._left = frozenset(facts.keys() - self._kept.keys())
        return self._kept.get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self._all()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (self._all(),))


def _stat(path: Path | str) -> list[int] | None:
    try:
        st = os.lstat(path)
    except (OSError, ValueError):
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino]


class _Listing:
    """What one listing of a directory says: its entries' names, and whether any is a real
    directory. A directory that cannot be listed says nothing (every name is looked up)."""

    __slots__ = ("dirs", "names")

    def __init__(self, path: str) -> None:
        try:
            entries = list(os.scandir(path))
        except OSError:
            self.names: set[str] | None = None
            self.dirs: set[str] | None = None
            return
        self.names = {e.name for e in entries}
        self.dirs = {e.name for e in entries if e.is_dir(follow_symlinks=False)}

    def may_hold(self, name: str) -> bool:
        return self.names is None or name in self.names

    def may_hold_dir(self, name: str | None = None) -> bool:
        """Whether the directory may hold a real directory (called ``name``, or any)."""
        return self.dirs is None or (bool(self.dirs) if name is None else name in self.dirs)


def fingerprint(layout: RunLayout) -> dict[str, list[int]]:
    """Size, mtime and inode of every file the doctor reads in a run (no file is opened).

    Each scope's directory is listed once: a name it does not hold is not looked up, and
    stage and worktree files are looked for only where a directory could hold them (as
    :func:`doctor._layout.stage_dirs` and ``worktree_status_files`` would find none).
    """
    out: dict[str, list[int]] = {}
    base = str(layout.path) + os.sep
    listings: dict[str, _Listing] = {}

    def listing(folder: str) -> _Listing:
        found = listings.get(folder)
        if found is None:
            found = listings[folder] = _Listing(folder)
        return found

    def add(path: str) -> None:
        st = _stat(path)
        if st is not None:
            # Every path is under the run (os.path.relpath is the slow way to say so).
            out[path[len(base) :] if path.startswith(base) else os.path.relpath(path, base)] = st

    def add_listed(folder: str, name: str) -> None:
        if listing(folder).may_hold(name):
            add(os.path.join(folder, name))

    top = str(layout.path)
    for name in (MANIFEST, RUN_CONFIG, RUN_PID, RUN_LOCK, GRAPH_DOT):  # the run's own documents
        add_listed(top, name)
    if not listing(top).may_hold(PROGRESS) or _stat(os.path.join(top, PROGRESS)) is None:
        add_listed(top, RUN_OUT)  # read only for a run without events (never started)
    for scope in layout.scopes:
        folder = str(scope.path)
        for name in (PROGRESS, FINAL, CHECKPOINT, LIVE):
            add_listed(folder, name)
        seen = listing(folder)
        paths: list[Path] = []
        if seen.may_hold_dir():
            for stage in stage_dirs(scope.path):
                paths += list(stage.status_files) + list(stage.stdout_logs)
        if seen.may_hold_dir("worktree"):
            paths += scope.worktree_status_files(layout.run_id)
        m = _FANOUT_SCOPE.fullmatch(scope.scope)
        if m is not None:  # a branch's outcome may come from its fan-out's results
            fanout = layout.path / m["prefix"] if m["prefix"] else layout.path
            paths.append(fanout / m["fanout"] / "parallel_results.json")
        for p in paths:
            add(str(p))
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


def _one_document(raw: bytes) -> bool:
    """Whether ``raw`` is one JSON object: an older version's entry, not a damaged one.

    >>> _one_document(b'{"key": "r1"}'), _one_document(b"garbage"), _one_document(b'{"key')
    (True, False, False)
    """
    try:
        return isinstance(json.loads(raw), dict)
    except (ValueError, RecursionError):
        return False


def _str_keyed(value: Any) -> dict[str, Any]:
    """A JSON object (its keys are text)."""
    if not isinstance(value, dict):
        raise TypeError("expected an object")
    return value


def _body(
    raw: bytes,
    at: int,
    layout: Mapping[str, Any],
    crc: object,
    where: tuple[str, str] | None = None,
) -> tuple[LazyFacts, KeptFindings]:
    """An entry's facts (parsed when looked into) and findings, from ``raw[at:]``, whose
    CRC-32 must be ``crc``: the body is parsed only when looked into, and the findings are
    spliced into a scan's JSON as they are, so a body damaged on disk (torn, tampered with,
    nested past the parser's depth) must be caught here, where the run can still be read
    again, not when printed. With ``where`` (the entry's file and its run's path), the facts
    are not kept: they are read again from the file when looked into (:class:`_FactsOnDisk`).

    >>> _body(b'{}[]', 0, {"facts": 2, "findings": [], "clocked": []}, 0)
    Traceback (most recent call last):
    ...
    ValueError: the entry's body does not match its checksum
    """
    ends = at + int(layout["facts"])
    if len(raw) < ends:
        raise ValueError("the entry's body is shorter than its first line says")
    facts_crc = zlib.crc32(memoryview(raw)[at:ends])
    if zlib.crc32(memoryview(raw)[ends:], facts_crc) != int(str(crc)):
        raise ValueError("the entry's body does not match its checksum")
    meta = layout["findings"]
    ranks, sizes = [int(r) for r, _ in meta], [int(n) for _, n in meta]
    if ranks and not 0 <= min(ranks) <= max(ranks) < len(SEVERITY_LABELS):
        raise ValueError("a severity rank out of range")
    clocked = [int(i) for i in layout["clocked"]]
    block = str(memoryview(raw)[ends:], "ascii")
    # The facts' bytes are not kept (nor the whole entry, which would keep a thousand runs'
    # findings twice): a scan prints none of them but the head, and they were most of what a
    # rescan held, 6.5 KB of a run's 15.7 KB (tracemalloc, 2,000 runs).
    if where is None:
        facts = LazyFacts(raw[at:ends])
    else:
        facts = LazyFacts(_FactsOnDisk(where[0], at, ends - at, facts_crc, where[1]))
    return facts, KeptFindings(block, sizes, ranks, clocked)


@dataclass(frozen=True, slots=True)
class _FactsOnDisk:
    """Where a cache entry's facts are: its file (``path``), the byte range and the range's
    CRC-32 when the scan read it, and the run's path. Read again when looked into."""

    path: str
    offset: int
    size: int
    crc: int
    run_path: str

    def read(self) -> bytes:
        """The facts' JSON text. When the entry was replaced since (a concurrent scan wrote
        the run's diagnosis anew: its files changed), that entry's facts, if it is still the
        run's; else :class:`~doctor._errors.CacheEntryGone` (a ``ValueError`` too), saying so:
        one line and exit 2 at the command line (``doctor metrics``, ``report --fleet``), not
        an internal error."""
        data = b""
        with contextlib.suppress(OSError), open_regular(Path(self.path)) as fh:
            data = os.pread(fh.fileno(), self.size, self.offset)
        if len(data) == self.size and zlib.crc32(data) == self.crc:
            return data
        return self._replaced()

    def _replaced(self) -> bytes:
        gone = CacheEntryGone(
            f"the scan cache entry {self.path!r} was replaced or removed since the scan read "
            "it (a concurrent `doctor cache prune` or scan), and is no other diagnosis of "
            "this run: scan again"
        )
        try:
            raw = read_regular_bytes(Path(self.path), max_bytes=MAX_ENTRY_BYTES)
            end = raw.index(b"\n")
            data = _str_keyed(json.loads(raw[:end]))
            if data.get("run_path") != self.run_path:
                raise gone
            facts, _ = _body(raw, end + 1, data["body"], data["body_crc"])
            return bytes(facts._text)  # type: ignore[arg-type]
        except (OSError, ValueError, KeyError, TypeError, RecursionError):
            raise gone from None


#: The packages whose code a cached diagnosis depends on (``rundoctor``: signatures, liveness).
_DIAGNOSING = ("doctor", "rundoctor")


@functools.cache
def code_key(packages: tuple[str, ...] = _DIAGNOSING) -> str:
    """A hash of the source of ``packages`` (every ``.py`` file, by its path in the package and
    its bytes): a cache entry written by other code is not reused, whatever the version says
    (an editable install's version does not move with its code). Read once per process, about
    a megabyte.

    >>> code_key() == code_key() and len(code_key())
    16
    """
    import importlib.util

    digest = hashlib.sha256()
    for package in packages:
        spec = importlib.util.find_spec(package)
        locations = spec.submodule_search_locations if spec is not None else None
        for location in sorted(locations or ()):
            base = Path(location)
            for path in sorted(base.rglob("*.py")):
                digest.update(os.fsencode(f"{package}/{path.relative_to(base).as_posix()}\0"))
                try:
                    digest.update(path.read_bytes())
                except OSError as exc:  # a file Python could not have imported either
                    digest.update(f"unreadable: {exc.errno}".encode())
                digest.update(b"\0")
    return digest.hexdigest()[:16]


#: The largest entry read (64 MiB, far past a run's diagnosis): a larger file is no entry a
#: scan wrote, a damaged one, and is never read whole.
MAX_ENTRY_BYTES = 64 * 1024 * 1024


class RunCache:
    """Per-run cache entries and the Parquet events dataset under ``root``."""

    def __init__(self, root: Path, settings: str) -> None:
        self.root = Path(root)
        # Findings depend on how failure texts are signed: code_key hashes rundoctor's source,
        # rundoctor/signature.py (its rules and SIGNATURE_VERSION) included, so a new version
        # or rule rereads. Importing the module for its version compiled its rules: 11 ms of
        # a rescan that signs nothing.
        self.settings = f"{CACHE_VERSION}:code{code_key()}:{settings}"
        # A cache that cannot be written is the scan's mistake, said once: not each changed
        # run's unreadable_artifact when DuckDB fails to write its events there.
        try:
            for sub in ("runs", "events"):
                make_dirs(self.root / sub)
                if not os.access(self.root / sub, os.W_OK | os.X_OK):
                    raise PermissionError(errno.EACCES, "not writable", str(self.root / sub))
        except OSError as exc:  # a file, a read-only or full disk, no permission
            raise UsageError(
                f"cannot use the scan cache directory {str(self.root)!r}: "
                f"{exc.strerror or exc} ({exc.filename}); point RUNDOCTOR_CACHE (or cache_dir "
                "in the config file) at a writable directory, or unset it"
            ) from None
        self._files: dict[str, str] = {}
        self._parents: dict[str, str] = {}
        self._runs = str(self.root / "runs")
        #: Keys whose entry :meth:`load` found damaged (not JSON, cut short, of the wrong
        #: shape), as opposed to missing or of other settings: the scan says so.
        self.damaged: set[str] = set()

    @staticmethod
    def key(layout: RunLayout, resolved: str | None = None) -> str:
        """The run's key: its name made safe, and a hash of its resolved path."""
        real = resolved if resolved is not None else str(layout.path.resolve())
        digest = hashlib.sha1(os.fsencode(real)).hexdigest()[:12]
        safe = _UNSAFE_KEY.sub("_", layout.run_id)[:64]
        return f"{safe}-{digest}"

    def key_of(self, layout: RunLayout) -> str:
        """:meth:`key`, resolving each runs root once per scan: a run directory that is not
        a symlink resolves to its name under its resolved parent (``Path.resolve`` would
        look up every component of every run's path)."""
        path = str(layout.path)
        parent, name = os.path.split(path)
        if not parent or name in ("", ".", "..") or os.path.islink(path):
            return self.key(layout)
        real = self._parents.get(parent)
        if real is None:
            real = self._parents[parent] = os.path.realpath(parent)
        return self.key(layout, os.path.join(real, name))

    def written_ns(self, key: str) -> int | None:
        """When the entry ``key`` was last written (its file's mtime), None without one."""
        try:
            return os.stat(os.path.join(self._runs, f"{key}.json")).st_mtime_ns
        except (OSError, ValueError):
            return None

    def load(self, layout: RunLayout, key: str | None = None) -> CacheEntry | None:
        """The run's entry, or None when there is none or it does not fit this scan."""
        key = key or self.key_of(layout)
        path = os.path.join(self._runs, f"{key}.json")
        try:  # a FIFO in its place hung the scan; a gigabyte was read whole
            raw = read_regular_bytes(Path(path), max_bytes=MAX_ENTRY_BYTES)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.EFBIG):
                self.damaged.add(key)  # no entry a scan wrote: said, and the run read again
            return None
        end = raw.find(b"\n")
        if end < 0:  # not this format's (an older version's entry is one JSON document)
            if not _one_document(raw):
                self.damaged.add(key)
            return None
        try:
            data = json.loads(raw[:end])
        except (ValueError, RecursionError):
            data = None
        if not isinstance(data, dict):
            self.damaged.add(key)
            return None
        if data.get("settings") != self.settings or data.get("run_path") != str(layout.path):
            return None
        try:
            streams = {s["scope"]: _stream_state(s) for s in data.get("streams", [])}
            events = data.get("events")
            diagnosis = data.get("diagnosis")
            if diagnosis:
                diagnosis = _str_keyed(diagnosis)
                if not all(isinstance(diagnosis.get(k), str) for k in _DIAGNOSIS_HEAD):
                    raise TypeError("a diagnosis names its run, path, layout and state")
                facts, findings = _body(
                    raw, end + 1, data["body"], data["body_crc"], (path, str(layout.path))
                )
                facts.head = _str_keyed(data["facts_head"])
                diagnosis["facts"] = facts
                diagnosis["findings"] = findings
            entry = CacheEntry(
                key=str(data["key"]),
                run_path=str(data["run_path"]),
                settings=str(data["settings"]),
                fingerprint=_str_keyed(data["fingerprint"]),
                streams=streams,
                diagnosis=diagnosis or None,
                clock=_str_keyed(data.get("clock", {})),
                activity=_str_keyed(data.get("activity", {})),
                events=str(events) if isinstance(events, str) else None,
            )
        except (KeyError, TypeError, ValueError, AttributeError, IndexError):
            self.damaged.add(key)
            return None
        self.remember(entry)
        return entry

    def remember(self, entry: CacheEntry) -> None:
        """Know where ``entry``'s events are (for :meth:`event_files`)."""
        if entry.events is not None:
            self._files[entry.key] = entry.events

    def save(self, entry: CacheEntry) -> None:
        diagnosis, head, body = entry.diagnosis, {}, {}
        texts: list[bytes] = []
        if diagnosis is not None:
            facts = dict(diagnosis["facts"])
            head = {k: facts.get(k) for k in _FACTS_HEAD}
            kept = diagnosis["findings"]
            if not isinstance(kept, KeptFindings):
                kept = KeptFindings.of(kept)
            # ASCII (json.dumps and dumps_indented escape the rest): bytes are characters.
            texts = [json.dumps(facts).encode("ascii"), kept.block.encode("ascii")]
            body = {
                "facts": len(texts[0]),
                "findings": [list(x) for x in zip(kept.ranks, kept.sizes, strict=True)],
                "clocked": list(kept.clocked),
            }
            diagnosis = {k: v for k, v in diagnosis.items() if k not in ("facts", "findings")}
        data = {
            "key": entry.key,
            "run_path": entry.run_path,
            # The run's directory whatever the scan's working directory (``run_path`` is as
            # the root was given): what ``doctor cache prune`` checks is still there.
            "resolved_path": os.path.realpath(entry.run_path),
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
                    "untimed": list(s.untimed),
                }
                for s in entry.streams.values()
            ],
            "diagnosis": diagnosis,
            "facts_head": head,
            "body": body,
            "body_crc": zlib.crc32(b"".join(texts)),
            "clock": entry.clock,
            "activity": entry.activity,
            "events": entry.events,
        }
        path = self.root / "runs" / f"{entry.key}.json"
        replace_file(path, b"\n".join([json.dumps(data).encode(), b"".join(texts)]), fsync=_DURABLE)

    def write_events(
        self,
        con: duckdb.DuckDBPyConnection,
        keys: dict[str, str],
        registered: Sequence[tuple[int, str, str]] | None = None,
    ) -> dict[str, str]:
        """Write the events of the runs in ``keys`` (run_id -> cache key), one new Parquet
        file per run in its ``run=<key>`` partition.

        Returns run_id -> the new file (relative to the cache directory); runs without events
        get none. The files they replace are deleted by :meth:`prune_events` once the new
        entries are saved. Runs of a few hundred events are written by one
        ``COPY ... PARTITION_BY`` (:data:`PARTITIONED_BELOW_ROWS`), larger ones by one
        ``COPY`` each over their stream ids (for runs of thousands of events about 1.5 times
        cheaper than the partitioned writer).

        Each one-run ``COPY`` reads ``events_base`` alone, in its own order: a scan of the
        table is in ``rowid`` order (``seq``) and insertion order is preserved, so rows are
        written as an ``ORDER BY seq`` would write them. The run's name and its streams' scopes are
        parameters (a join with ``streams`` and a sort were a third of a cold scan's writes).
        ``registered``: the ``streams`` rows, ``(stream_id, run_id, scope)`` in id order, when
        the caller holds them (:attr:`doctor._tables.Tables.streams`); else they are read.
        """
        if registered is None:
            registered = con.execute(
                "SELECT stream_id, run_id, scope FROM streams ORDER BY stream_id"
            ).fetchall()
        streams: dict[str, list[tuple[int, str]]] = {}
        for sid, run_id, scope in registered:
            if run_id in keys:
                streams.setdefault(run_id, []).append((int(sid), scope))
        batch = uuid.uuid4().hex
        try:
            # A prune removes no emptied partition meanwhile (it was between our mkdir and
            # the COPY into it): doctor._cache_lock.
            with events_written(self.root):
                return self._write_events(con, keys, streams, batch)
        except BaseException:
            # A failed write (a full disk) leaves no part of its files: no entry names them.
            for run_id in streams:
                folder = self.root / "events" / f"run={keys[run_id]}"
                for path in folder.glob(f"part-{batch}*.parquet"):
                    with contextlib.suppress(OSError):
                        path.unlink()
            raise

    def _write_events(
        self,
        con: duckdb.DuckDBPyConnection,
        keys: dict[str, str],
        streams: dict[str, list[tuple[int, str]]],
        batch: str,
    ) -> dict[str, str]:
        """:meth:`write_events`, its files named after ``batch``."""
        if self._small_runs(con, keys, streams):
            written = self._write_partitioned(con, keys, streams, batch)
            if written is not None:
                return written
        out: dict[str, str] = {}
        for run_id, ids in streams.items():
            rel = f"events/run={keys[run_id]}/part-{batch}.parquet"
            (self.root / rel).parent.mkdir(exist_ok=True)
            con.execute(
                f"COPY ({_events_sql(ids)}) TO $target (FORMAT parquet)",
                {
                    "run": run_id,
                    "lo": ids[0][0],
                    "hi": ids[-1][0],
                    **{f"s{i}": scope for i, (_, scope) in enumerate(ids)},
                    "target": str(self.root / rel),
                },
            )
            out[run_id] = rel
        return out

    @staticmethod
    def _small_runs(
        con: duckdb.DuckDBPyConnection,
        keys: dict[str, str],
        streams: dict[str, list[tuple[int, str]]],
    ) -> bool:
        """Whether the runs are better written by one partitioned ``COPY``: fewer than
        :data:`PARTITIONED_BELOW_ROWS` rows a run, and keys DuckDB names directories after."""
        if len(streams) < 2 or not all(_HIVE_SAFE_KEY.fullmatch(keys[r]) for r in streams):
            return False
        row = con.execute("SELECT count(*) FROM events_base").fetchone()
        return row is not None and int(row[0]) < PARTITIONED_BELOW_ROWS * len(streams)

    def _write_partitioned(
        self,
        con: duckdb.DuckDBPyConnection,
        keys: dict[str, str],
        streams: dict[str, list[tuple[int, str]]],
        batch: str,
    ) -> dict[str, str] | None:
        """:meth:`write_events` in one ``COPY ... PARTITION_BY (run)``: each run's file is
        ``run=<key>/part-<batch>-0.parquet``; a run without an event row gets none.

        None when a run's rows did not land in exactly one file (its files of this batch are
        then deleted): the caller writes the runs one by one instead.
        """
        events = self.root / "events"
        prefix = f"part-{batch}-"
        runs = list(streams.items())
        # One file per run: the writer keeps every run's file open to the end (DuckDB's
        # default closes the least recent beyond 100, and a later row opens a second file),
        # so a COPY takes at most _PARTITIONS_AT_ONCE runs (open files are a bounded resource).
        con.execute(f"SET partitioned_write_max_open_files = {2 * _PARTITIONS_AT_ONCE}")
        for run_id in streams:
            # Made here, not by DuckDB: its mkdir fails when a concurrent scan's made the
            # same directory between its check and its own.
            (events / f"run={keys[run_id]}").mkdir(exist_ok=True)
        for start in range(0, len(runs), _PARTITIONS_AT_ONCE):
            pairs = [
                (sid, run_id, scope)
                for run_id, ids in runs[start : start + _PARTITIONS_AT_ONCE]
                for sid, scope in ids
            ]
            con.execute(
                f"COPY ({_partitioned_sql()}) TO $target (FORMAT parquet, PARTITION_BY (run), "
                f"WRITE_PARTITION_COLUMNS false, FILENAME_PATTERN '{prefix}{{i}}', "
                "OVERWRITE_OR_IGNORE)",
                {
                    "sids": [p[0] for p in pairs],
                    "keys": [keys[p[1]] for p in pairs],
                    "runs": [p[1] for p in pairs],
                    "scopes": [p[2] for p in pairs],
                    "target": str(events),
                },
            )
        return self._partitioned_files(con, keys, streams, prefix)

    def _partitioned_files(
        self,
        con: duckdb.DuckDBPyConnection,
        keys: dict[str, str],
        streams: dict[str, list[tuple[int, str]]],
        prefix: str,
    ) -> dict[str, str] | None:
        """Each run's file the partitioned ``COPY`` wrote (named ``prefix``…), or None (and
        none of them left) when a run's rows landed in several."""
        # The streams with event rows: their run has a file, even when none is found below
        # (a concurrent scan's prune took it as it was written: the entry names it, so the
        # next scan reads the run again, as after a one-run COPY).
        with_rows = {
            int(r[0])
            for r in con.execute(
                "SELECT DISTINCT stream_id FROM events_base WHERE event IS NOT NULL"
            ).fetchall()
        }
        out: dict[str, str] = {}
        whole = True
        for run_id, ids in streams.items():
            folder = self.root / "events" / f"run={keys[run_id]}"
            try:
                names = [n for n in os.listdir(folder) if n.startswith(prefix)]
            except FileNotFoundError:
                names = []
            if len(names) == 1:
                out[run_id] = f"events/run={keys[run_id]}/{names[0]}"
            elif not names and any(sid in with_rows for sid, _ in ids):
                out[run_id] = f"events/run={keys[run_id]}/{prefix}0.parquet"
            elif names:
                whole = False
                for name in names:
                    with contextlib.suppress(OSError):
                        (folder / name).unlink()
        if whole:
            return out
        for rel in out.values():
            with contextlib.suppress(OSError):
                (self.root / rel).unlink()
        return None

    def prune_events(self, key: str, keep: str | None) -> None:
        """Delete the run's event files older than ``keep``, the one its entry names.

        So the dataset holds one file per run at rest, whatever an interrupted scan left. A
        newer file is a concurrent scan's, whose entry may be saved after this one: it stays
        (and prunes this one). Should the two scans' writes and saves cross, an entry may name
        a file the other pruned: that run is read again next time.
        """
        folder = self.root / "events" / f"run={key}"
        try:
            names = os.listdir(folder)
            newest = (self.root / keep).stat().st_mtime_ns if keep else None
        except OSError:
            return
        for name in names:
            if f"events/run={key}/{name}" == keep or not name.endswith(".parquet"):
                continue
            with contextlib.suppress(OSError):
                path = folder / name
                if newest is None or path.stat().st_mtime_ns <= newest:
                    path.unlink()

    def events_present(self, entry: CacheEntry) -> bool:
        return entry.events is not None and os.path.isfile(os.path.join(self.root, entry.events))

    def event_files(self, key: str) -> list[Path]:
        """The Parquet file holding ``key``'s events (empty when it has none)."""
        rel = self._files.get(key)
        path = self.root / rel if rel else None
        return [path] if path is not None and path.is_file() else []


def _gaps(ids: list[tuple[int, str]]) -> bool:
    """Whether a run's stream ids (ascending) leave out ids between the first and the last."""
    return ids[-1][0] - ids[0][0] + 1 != len(ids)


def _stream_state(s: Mapping[str, Any]) -> StreamState:
    """A stream's saved state; KeyError, TypeError or ValueError when it is not one (a
    damaged entry)."""
    count, event, text = s.get("untimed", (0, "", ""))
    return StreamState(
        str(s["scope"]),
        int(s["ino"]),
        int(s["size"]),
        int(s["mtime_ns"]),
        int(s["offset"]),
        str(s["tail_sha"]),
        tuple((int(a), int(b), str(c)) for a, b, c in s.get("torn", [])),
        (int(count), str(event), str(text)),
    )


def _partitioned_sql() -> str:
    """Every run's rows of ``events_base`` in the dataset's columns, with its cache key as
    ``run`` (see :meth:`RunCache._write_partitioned`), in ``seq`` order. Parameters: ``$sids``
    the runs' stream ids and, in the same order, their ``$keys``, ``$runs`` and ``$scopes``.

    The partitioned writer marks every column optional (nullable), where a one-run ``COPY``
    marks ``run_id``, ``scope`` and ``event`` required: the same types, which DuckDB, Polars
    and Arrow read together as one dataset (docs/artifacts.md)."""
    from doctor._ndjson import EVENT_COLUMNS

    special = {"run_id": "m.run_id", "scope": "m.scope", "seq": "e.rowid"}
    cols = ", ".join(
        f'{special[k]} AS "{k}"' if k in special else f'e."{k}"'
        for k in EVENT_COLUMNS
        if k != "raw"
    )
    streams = (
        "SELECT unnest($sids) AS stream_id, unnest($keys) AS run, unnest($runs) AS run_id, "
        "unnest($scopes) AS scope"
    )
    return (
        f"SELECT m.run, {cols} FROM events_base e JOIN ({streams}) m "
        "ON m.stream_id = e.stream_id WHERE e.event IS NOT NULL ORDER BY e.rowid"
    )


def _events_sql(ids: list[tuple[int, str]]) -> str:
    """One run's rows of ``events_base`` in the dataset's columns (see
    :meth:`RunCache.write_events`); ``ids`` are its streams ``(stream_id, scope)``, ascending.
    Parameters: ``$run``, ``$lo`` and ``$hi`` (the first and last id), and ``$s<i>``, the
    scope of its i-th stream."""
    from doctor._ndjson import EVENT_COLUMNS

    if len(ids) == 1:
        scope = "$s0::VARCHAR"
    else:
        # A CASE, not a list lookup: the Parquet writer then knows the column is never NULL
        # and marks it required, as it did when scopes were joined from ``streams``.
        whens = " ".join(f"WHEN {int(sid)} THEN $s{i}::VARCHAR" for i, (sid, _) in enumerate(ids))
        scope = f"CASE e.stream_id {whens} ELSE '' END"
    special = {"run_id": "$run::VARCHAR", "scope": scope, "seq": "e.rowid"}
    cols = ", ".join(
        f'{special[k]} AS "{k}"' if k in special else f'e."{k}"'
        for k in EVENT_COLUMNS
        if k != "raw"
    )
    where = "e.stream_id BETWEEN $lo AND $hi AND e.event IS NOT NULL"
    if _gaps(ids):  # other runs' streams between: only this run's
        where += f" AND e.stream_id IN ({', '.join(str(int(sid)) for sid, _ in ids)})"
    return f"SELECT {cols} FROM events_base e WHERE {where}"
