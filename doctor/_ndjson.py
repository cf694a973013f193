"""Reading ``progress.ndjson`` streams into the canonical ``events`` table (held in DuckDB).

Two paths fill the same table:

* the *bulk* path hands whole files to one multi-file, multi-threaded DuckDB scan. With
  ``ignore_errors`` DuckDB keeps one row per non-blank line and leaves a line that does not
  parse as a row of NULLs, so torn lines are noticed without a second read. ``read_json_objects``
  is used when the raw line must be kept (diagnosing one run), ``read_json`` with typed
  columns otherwise (scanning a fleet), which is about twice as fast;
* the *precise* path reads bytes from a known offset (to resume an append-only file, or to
  locate the torn lines of a file the bulk path flagged), splits them at newlines in Python and
  hands the lines to the same DuckDB extraction. It knows each line's number and byte offset.

``seq`` orders records: it is the row's position in ingestion order (DuckDB's ``rowid``, free to
read), and each stream is ingested contiguously and in file order, so ``seq`` increases along
every stream. Line numbers and byte offsets are reported for torn lines, which is where a
person needs them.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:  # loaded by the functions that ingest: `doctor checks` needs neither
    import duckdb

from doctor._errors import IngestError
from rundoctor.paths import file_kind
from rundoctor.words import plural

__all__ = [
    "CHUNK_BYTES",
    "EVENT_COLUMNS",
    "EVENT_FIELDS",
    "LINE_COMPLETE",
    "MAX_LINE_BYTES",
    "NOT_AN_EVENT",
    "UNTIMED",
    "RaceHook",
    "TornLine",
    "bounded_lines",
    "create_events_table",
    "ended",
    "has_long_line",
    "insert_columns",
    "last_line",
    "only_last_line_bad",
    "open_regular",
    "read_bulk",
    "read_precise",
    "register_streams",
    "too_long",
    "untimed_detail",
]

#: Why a line that is a JSON object, but names no event, is torn.
NOT_AN_EVENT = "a JSON object without an event name"

#: Typed fields pulled out of every event line (name -> DuckDB type); ``raw`` keeps the rest.
EVENT_FIELDS: dict[str, str] = {
    "event": "VARCHAR",
    "node_id": "VARCHAR",
    "attempt": "BIGINT",
    "max": "BIGINT",
    "status": "VARCHAR",
    "failure_reason": "VARCHAR",
    "failure_class": "VARCHAR",
    "from_node": "VARCHAR",
    "to_node": "VARCHAR",
    "condition": "VARCHAR",
    "signature": "VARCHAR",
    "signature_count": "BIGINT",
    "signature_limit": "BIGINT",
    "signature_version": "BIGINT",
    "source": "VARCHAR",
    "branch_key": "VARCHAR",
    "branch_event": "VARCHAR",
    "branch_node_id": "VARCHAR",
    "branch_status": "VARCHAR",
    "branch_logs_root": "VARCHAR",
    "selection_method": "VARCHAR",
    "will_retry": "BOOLEAN",
    "matched": "BOOLEAN",
    "edge_to": "VARCHAR",
    "retry_target": "VARCHAR",
    "message": "VARCHAR",
    "reason": "VARCHAR",
    "epoch": "BIGINT",
}

#: The canonical events table, in column order. ``ts`` is UTC with nanoseconds.
EVENT_COLUMNS: dict[str, str] = {
    "run_id": "VARCHAR",
    "scope": "VARCHAR",
    "seq": "BIGINT",
    "ts": "TIMESTAMP_NS",
    **EVENT_FIELDS,
    "raw": "VARCHAR",
}

# Kilroy writes RFC3339Nano with a Z; TIMESTAMP_NS keeps the nanoseconds but ignores offsets,
# so anything without a Z goes through TIMESTAMPTZ (microseconds) to honour its offset.
# An offset of 24 hours or more, or of 60 minutes or more, is no offset (RFC 3339 allows
# -23:59 to +23:59), but DuckDB's cast takes "+99:00" for 99 hours: such a time is unreadable,
# as doctor._timestamps.parse_iso has it (a stream with it showed a 4-day idle gap that was not).
_BAD_OFFSET = (
    r"regexp_matches({t}, '\d:\d\d(:\d\d(\.\d*)?)?\s*[+-]"
    r"((2[4-9]|[3-9]\d)(:?\d\d)?|\d\d:?[6-9]\d)$')"
)
# A date and a time of day, an optional zone (upper case): nothing else is a time, though
# DuckDB's casts read the words "epoch" (1970), "infinity" and "-infinity" (years 9999 and 1;
# a Python writer's float('inf') is "ts": Infinity), a date alone (midnight) and zone names
# ("EST", "America/New_York") or "BC": a run that began at "epoch" was 56 years long.
_SHAPE = (
    r"regexp_full_match({t}, "
    r"'\d{{4}}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?\s*(Z|[+-]\d\d(:?\d\d)?)?')"
)
_TS_CAST = (
    f"CASE WHEN NOT {_SHAPE} THEN NULL "
    "WHEN {t} LIKE '%Z' THEN try_cast({t} AS TIMESTAMP_NS) "
    f"WHEN {_BAD_OFFSET} THEN NULL "
    "ELSE try_cast(try_cast({t} AS TIMESTAMPTZ) AS TIMESTAMP_NS) END"
)
# What DuckDB's casts refuse of RFC 3339, on the rare path only (a Z time that did not cast, or
# an offset): a lowercase 't' or 'z', and a leap second (23:59:60), read as the second after
# :59 as POSIX time counts it. Both were NULL, and the event silently had no time.
_TS_UPPER = "upper(ts_text)"
_TS_LEAP = f"substr({_TS_UPPER}, 18, 2) = '60'"
_TS_MENDED = (
    f"CASE WHEN {_TS_LEAP} THEN substr({_TS_UPPER}, 1, 17) || '59' || substr({_TS_UPPER}, 20) "
    f"ELSE {_TS_UPPER} END"
)
# The common form (a Z, an upper-case T after the date, no leap second, no space) takes the one
# cast it always took: no word or date alone reaches it, since none has a T there; and the cast
# reads a word after a space as a zone and drops it ("…T10:00:00 ESTZ" was 10:00:00), so a
# space sends a time to the shape's test.
_TS_SQL = (
    "CASE WHEN ts_text LIKE '%Z' AND substr(ts_text, 11, 1) = 'T' "
    "AND substr(ts_text, 18, 2) <> '60' AND ts_text NOT LIKE '% %' "
    "THEN try_cast(ts_text AS TIMESTAMP_NS) "
    f"ELSE ({_TS_CAST.format(t=f'({_TS_MENDED})')}) "
    f"+ CASE WHEN {_TS_LEAP} THEN INTERVAL 1 SECOND ELSE INTERVAL 0 SECOND END END"
)
_TRANSFORM = "{" + ",".join(f'"{k}":"{t}"' for k, t in EVENT_FIELDS.items()) + "}"
_READ_JSON_COLUMNS = (
    "{" + ",".join(f"'{k}':'{t}'" for k, t in EVENT_FIELDS.items()) + ",'ts':'VARCHAR'}"
)


@dataclass(frozen=True, slots=True)
class TornLine:
    """A line that is not a JSON object: truncated, corrupt, not UTF-8, or another JSON value."""

    run_id: str
    scope: str
    file: Path
    line: int
    byte_offset: int
    detail: str


#: How much of an unreadable ``ts`` (and of its event's name) its finding quotes.
UNTIMED_EXAMPLE_CHARS = 80

#: How the ``unreadable_artifact`` detail of a stream with untimed events begins.
UNTIMED = "no readable time"


def untimed_detail(count: int, event: str, text: str) -> str:
    """The ``unreadable_artifact`` detail of a stream with ``count`` events whose ``ts`` is
    no time, the first an ``event`` whose ``ts`` reads ``text`` ('' when it has none).

    >>> untimed_detail(2, "stage_heartbeat", "yesterday")  # doctest: +NORMALIZE_WHITESPACE
    "no readable time (ts) on 2 events: the first, a stage_heartbeat, has ts 'yesterday';
    they are in no time figure (start, end, wall time, idle gaps, attempt durations)"
    """

    def cut(s: str) -> str:
        return s if len(s) <= UNTIMED_EXAMPLE_CHARS else s[:UNTIMED_EXAMPLE_CHARS] + "…"

    has = "has no ts" if text == "" else f"has ts {cut(text)!r}"
    return (
        f"{UNTIMED} (ts) on {plural(count, 'event')}: the first, a {cut(event)}, {has}; "
        "they are in no time figure (start, end, wall time, idle gaps, attempt durations)"
    )


# ``ts_unread`` is stored, never shown by the ``events`` view: an event line's ``ts`` text
# (its first UNTIMED_EXAMPLE_CHARS characters; '' when it has none) when it is no readable time,
# NULL when it is. Such an event has no place in any time figure, and its stream's
# ``unreadable_artifact`` says how many there are (:func:`untimed_events`).
_STORED = (
    {"stream_id": "BIGINT"}
    | {k: t for k, t in EVENT_COLUMNS.items() if k not in {"run_id", "scope", "seq"}}
    | {"ts_unread": "VARCHAR"}
)


def create_events_table(con: duckdb.DuckDBPyConnection) -> None:
    """Create the empty ``streams`` and ``events_base`` tables and the ``events`` view.

    Rows store a small ``stream_id``; the view resolves it to ``run_id``/``scope`` through
    ``streams`` and exposes ``rowid`` as ``seq``.
    """
    con.execute(
        "CREATE OR REPLACE TABLE streams (stream_id BIGINT PRIMARY KEY, run_id VARCHAR, "
        "scope VARCHAR, path VARCHAR)"
    )
    cols = ", ".join(f'"{k}" {t}' for k, t in _STORED.items())
    con.execute(f"CREATE OR REPLACE TABLE events_base ({cols})")
    select = ", ".join(
        "e.rowid AS seq" if k == "seq" else f's."{k}"' if k in {"run_id", "scope"} else f'e."{k}"'
        for k in EVENT_COLUMNS
    )
    con.execute(
        f"CREATE OR REPLACE VIEW events AS SELECT {select} "
        "FROM events_base e JOIN streams s ON s.stream_id = e.stream_id WHERE e.event IS NOT NULL"
    )


def insert_columns(
    con: duckdb.DuckDBPyConnection,
    table: str,
    columns: Mapping[str, tuple[str, Sequence[object]]],
    *,
    select: str = "*",
) -> None:
    """Append rows given as columns (``name -> (DuckDB type, values)``, all of one length).

    Python lists go in as typed list parameters unnested side by side (in order): no Arrow
    (and so no NumPy) to import, and far faster than ``executemany``. ``select`` may
    reorder or compute the inserted columns from the named ones.
    """
    names = list(columns)
    params = {f"c{i}": list(columns[n][1]) for i, n in enumerate(names)}
    unnest = ", ".join(
        f'unnest(${f"c{i}"}::{columns[n][0]}[]) AS "{n}"' for i, n in enumerate(names)
    )
    con.execute(f"INSERT INTO {table} SELECT {select} FROM (SELECT {unnest})", params)


def register_streams(
    con: duckdb.DuckDBPyConnection,
    streams: Sequence[tuple[str, str, Path]],
    first: int | None = None,
) -> list[int]:
    """Add ``(run_id, scope, path)`` streams; returns their new, consecutive ids, from
    ``first`` when the caller knows the next free id (else DuckDB is asked)."""
    if not streams:
        return []
    if first is None:
        sql = "SELECT coalesce(max(stream_id) + 1, 0) FROM streams"
        first = int(con.execute(sql).fetchall()[0][0])
    ids = list(range(first, first + len(streams)))
    insert_columns(
        con,
        "streams",
        {
            "stream_id": ("BIGINT", ids),
            "run_id": ("VARCHAR", [s[0] for s in streams]),
            "scope": ("VARCHAR", [s[1] for s in streams]),
            "path": ("VARCHAR", [_text(str(s[2])) for s in streams]),
        },
    )
    return ids


def _text(name: str) -> str:
    """A path as text: bytes that are not UTF-8 written ``\\xNN``."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _insert_sql(source: str, *, objects: bool, keep_raw: bool = True) -> str:
    """SELECT the canonical columns (plus ``ok``, ``pos``, ``file_key``) from ``source``.

    ``source`` yields ``file_key`` (0-based; the stream id is ``$first + file_key``) and
    either ``json`` (objects) or the typed columns (read_json). No join: a hash join would
    reorder rows, and row order is line order. Without ``keep_raw`` the ``raw`` column is NULL.
    """
    fields = ", ".join(f'"{k}"' for k in EVENT_FIELDS)
    if objects:
        inner = f"""
            SELECT file_key, pos,
                   json_type(json) = 'OBJECT' AND json_extract_string(json, '$.event') IS NOT NULL
                       AS ok,
                   CASE WHEN json_type(json) = 'OBJECT' THEN json_transform(json, '{_TRANSFORM}')
                        END AS j,
                   CASE WHEN json_type(json) = 'OBJECT' THEN json_extract_string(json, '$.ts')
                        END AS ts_text,
                   CASE WHEN json_type(json) = 'OBJECT' THEN json::VARCHAR END AS raw
            FROM {source}"""
        select_fields = ", ".join(f"j.{k}" for k in EVENT_FIELDS)
    else:
        inner = f"""
            SELECT file_key, pos, event IS NOT NULL AS ok, {fields}, ts AS ts_text,
                   NULL::VARCHAR AS raw
            FROM {source}"""
        select_fields = fields
    raw = "p.raw" if keep_raw else "NULL::VARCHAR AS raw"
    return f"""
        SELECT *, CASE WHEN ts IS NULL THEN coalesce(left(ts_text, {UNTIMED_EXAMPLE_CHARS + 1}), '')
                  END AS ts_unread
        FROM (SELECT $first + p.file_key AS stream_id, {_TS_SQL} AS ts, {select_fields}, {raw},
                     p.ok, p.pos, p.file_key, p.ts_text
              FROM ({inner}) p)
    """


def _load(con: duckdb.DuckDBPyConnection, select: str, params: dict[str, object]) -> list[int]:
    """Append ``select`` to ``events_base``; return the streams holding unparsable lines.

    Unparsable lines are kept as rows whose ``event`` is NULL (the ``events`` view hides
    them), which costs far less than staging the scan to filter it.
    """
    cols = ", ".join(f'"{k}"' for k in _STORED)
    con.execute(f"INSERT INTO events_base SELECT {cols} FROM ({select})", params)
    # execute, not sql: a relation costs DuckDB's Python layer a millisecond or more per query.
    bad = con.execute(
        "SELECT DISTINCT stream_id FROM events_base WHERE event IS NULL AND stream_id >= $first "
        "ORDER BY 1",
        {"first": params["first"]},
    ).fetchall()
    return [int(r[0]) for r in bad]


def read_bulk(
    con: duckdb.DuckDBPyConnection,
    files: Sequence[Path],
    first_stream_id: int,
    *,
    keep_raw: bool,
    race_hook: RaceHook | None = None,
) -> list[int]:
    """Append whole files to ``events`` in one DuckDB scan.

    ``files[i]`` is stream ``first_stream_id + i`` (see :func:`register_streams`). Returns the
    stream ids of files with at least one line that is not a JSON object with an ``event``,
    and of files left unscanned because DuckDB would expand their names as glob patterns, or
    because they are no longer regular files when opened: delete their rows and read them
    again with :func:`read_precise` to locate the lines (or fail, with the reason).

    DuckDB never opens a stream by its name: each is opened here (:func:`open_regular`: no
    symlink followed, no FIFO blocked on, a regular file or nothing) and DuckDB reads the
    opened descriptor (``/proc/self/fd/N``), so a FIFO or device swapped in after the caller's
    check is never read. ``race_hook`` is a test seam, None outside tests: called with a
    batch's files just before they are opened.
    """
    bad: list[int] = []
    # list_position is linear in the list, so a scan maps filenames in batches: large enough
    # for DuckDB to read files in parallel, small enough that the lookup stays cheap.
    for start in range(0, len(files), _BATCH):
        batch = files[start : start + _BATCH]
        bad += _read_batch(con, batch, first_stream_id + start, keep_raw, race_hook)
    return bad


#: ``read_bulk``'s test seam: called with a batch's files between the check and the open.
RaceHook = Callable[[Sequence[Path]], None]

#: Where an open descriptor can be named to DuckDB (Linux; ``/dev/fd`` elsewhere).
_FD_DIR = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"


_BATCH = 64


#: DuckDB expands these in file names ("run[1]/progress.ndjson" would read "run1/…").
_GLOB_CHARS = frozenset("*?[]{}")


def _scannable(path: str) -> bool:
    if _GLOB_CHARS & set(path):
        return False
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _read_batch(
    con: duckdb.DuckDBPyConnection,
    files: Sequence[Path],
    first_stream_id: int,
    keep_raw: bool,
    race_hook: RaceHook | None = None,
) -> list[int]:
    if race_hook is not None:
        race_hook(files)
    fds: list[int | None] = []
    try:
        for f in files:
            fds.append(_open_fd(f))
        return _scan_batch(con, files, fds, first_stream_id, keep_raw, race_hook)
    finally:
        for fd in fds:
            if fd is not None:
                os.close(fd)


def _open_fd(path: Path) -> int | None:
    """A descriptor of ``path`` when it is a scannable regular file, else None."""
    if not _scannable(str(path)):
        return None
    try:
        with open_regular(path) as fh:
            return os.dup(fh.fileno())
    except OSError:
        return None  # a FIFO, device or symlink swapped in, or gone: the precise read says so


def _scan_batch(
    con: duckdb.DuckDBPyConnection,
    files: Sequence[Path],
    fds: Sequence[int | None],
    first_stream_id: int,
    keep_raw: bool,
    race_hook: RaceHook | None,
) -> list[int]:
    from doctor._engine import engine

    db = engine(relations=False)  # a scan's connection may have no relation layer

    # Files whose names DuckDB would read as glob patterns are not scanned; reporting them
    # as bad sends them to the caller's precise (Python) read instead.
    # So are names that are not UTF-8 (DuckDB takes text): Python opens them by bytes.
    # And files that were no longer regular files when opened: the precise read fails them.
    unsafe = [first_stream_id + i for i, fd in enumerate(fds) if fd is None]
    paths = ["" if fd is None else f"{_FD_DIR}/{fd}" for fd in fds]
    read = [p for p in paths if p]
    if not read:
        return unsafe
    # Small files as JSON objects, the others through read_json's typed columns (see
    # OBJECTS_BELOW_BYTES); whole raw lines are kept from objects, so all of them then.
    by_reader: dict[bool, list[str]] = {}
    for path, fd in zip(paths, fds, strict=True):
        if fd is not None:
            objects = keep_raw or os.fstat(fd).st_size < OBJECTS_BELOW_BYTES
            by_reader.setdefault(objects, []).append(path)
    try:
        unparsed = set(unsafe)
        for objects, read in by_reader.items():
            params = {"paths": paths, "read": read, "first": first_stream_id}
            select = _insert_sql(_source(objects), objects=objects, keep_raw=keep_raw)
            unparsed.update(_load(con, select, params))
        return sorted(unparsed)
    except db.OutOfMemoryException:
        raise  # over the run's budget: the run's finding (doctor._budget), not a stream's
    except db.Error as exc:
        if isinstance(exc, db.InterruptException):
            raise IngestError(f"DuckDB could not read the event streams: {exc}") from exc
        if len(files) == 1:
            # This file alone fails the scan (a line over the limit, an unreadable file):
            # the caller reads it precisely, so the failure stays this stream's.
            con.execute("DELETE FROM events_base WHERE stream_id = ?", [first_stream_id])
            return [first_stream_id]
    # One file failed the batch: read the batch again file by file.
    con.execute(
        "DELETE FROM events_base WHERE stream_id >= ? AND stream_id < ?",
        [first_stream_id, first_stream_id + len(files)],
    )
    bad: list[int] = []
    for i, f in enumerate(files):
        bad += _read_batch(con, [f], first_stream_id + i, keep_raw, race_hook)
    return sorted(bad)


#: Files under this size are read as JSON objects (``read_json_objects``, then
#: ``json_transform``), larger ones by ``read_json`` with typed columns. The typed reader
#: costs about 0.6 ms more per file (it sets up its ~28 columns for each one), the objects
#: about 0.3 µs more per line: measured on one DuckDB thread, 60-line files (12 KB) took 0.33
#: against 0.90 ms each, 8,100-line files (1.4 MB) 9.9 against 7.8 ms. Even at ~1,000 lines.
OBJECTS_BELOW_BYTES = 128 << 10


def _source(objects: bool) -> str:
    """The rows of the files in ``$read``, keyed by their place in ``$paths`` (``file_key``:
    ``list_position`` maps DuckDB's filename back without a join), as JSON objects
    (``json``) or read_json's typed columns. The scan keeps insertion order, so rowid order
    within a file is line order."""
    # maximum_object_size lets DuckDB take lines up to MAX_LINE_BYTES; it does not refuse
    # longer ones, so the caller looks for them (has_long_line) and reads such a file by the
    # precise path, which reports them torn.
    options = (
        "format='newline_delimited', ignore_errors=true, filename=true, "
        f"maximum_object_size={MAX_LINE_BYTES + 1}"
    )
    if objects:
        rows, reader = "* EXCLUDE (filename)", "read_json_objects"
    else:
        rows, reader = "* EXCLUDE (filename, ts), ts", "read_json"
        options += f", columns={_READ_JSON_COLUMNS}"
    return (
        f"(SELECT list_position($paths, filename) - 1 AS file_key, "
        f"NULL::BIGINT AS pos, {rows} FROM {reader}($read, {options}))"
    )


def _classify(line: bytes) -> str:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8 (byte {exc.start} of the line)"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"not JSON: {exc.msg} at column {exc.colno}"
    except RecursionError:
        return "not JSON: nested too deeply"
    if isinstance(value, dict):
        return NOT_AN_EVENT
    return f"a JSON {type(value).__name__}, not an object"


def only_last_line_bad(con: duckdb.DuckDBPyConnection, stream_ids: Sequence[int]) -> set[int]:
    """Streams among ``stream_ids`` whose one unparsable line is their last (a cut write)."""
    if not stream_ids:
        return set()
    rows = con.execute(
        "SELECT stream_id FROM events_base WHERE list_contains($ids, stream_id) GROUP BY 1 "
        "HAVING count(*) FILTER (WHERE event IS NULL) = 1 "
        "AND max(rowid) FILTER (WHERE event IS NULL) = max(rowid)",
        {"ids": list(stream_ids)},
    ).fetchall()
    return {int(r[0]) for r in rows}


def open_regular(path: Path) -> BinaryIO:
    """``path`` opened for reading when it is a regular file: never through a symlink, and
    never blocking on a FIFO (``O_NONBLOCK``; the descriptor is checked before any read).

    Raises ``OSError`` otherwise.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NOCTTY", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = file_kind(mode)
            why = kind if kind == "not a regular file" else f"{kind}, not a regular file"
            raise OSError(errno.EINVAL, why, str(path))
        return os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise


def last_line(path: Path, key: tuple[str, str]) -> TornLine | None:
    """Locate and classify the last non-blank line of ``path`` (read in bounded blocks); its
    detail ends with :data:`LINE_COMPLETE` when a newline ends it."""
    try:
        with open_regular(path) as fh:
            size = os.fstat(fh.fileno()).st_size
            # Walk back from the end to the newline before the last non-blank line.
            end, tail = size, b""
            while end > 0:
                start = max(0, end - CHUNK_BYTES)
                fh.seek(start)
                tail = fh.read(end - start) + tail
                end = start
                body = tail.rstrip(b"\r\n \t")
                if (body and b"\n" in body) or len(tail) > MAX_LINE_BYTES + CHUNK_BYTES:
                    break
            body = tail.rstrip(b"\r\n \t")
            if not body:
                return None
            cut = body.rfind(b"\n") + 1
            line_start = end + cut
            # The line's number: newlines before it, counted in bounded blocks.
            number, fh_pos = 1, 0
            fh.seek(0)
            while fh_pos < line_start:
                block = fh.read(min(CHUNK_BYTES, line_start - fh_pos))
                if not block:
                    break
                number += block.count(b"\n")
                fh_pos += len(block)
    except OSError as exc:
        raise IngestError(f"cannot read {path}: {exc.strerror}") from exc
    line = body[cut:]
    complete = b"\n" in tail[len(body) :]  # a newline ends it: written whole
    if len(line) > MAX_LINE_BYTES:
        return TornLine(*key, path, number, line_start, _too_long(len(line), complete))
    detail = _classify(line)
    return TornLine(*key, path, number, line_start, ended(detail) if complete else detail)


def has_long_line(path: Path, limit: int | None = None) -> bool:
    """Whether ``path`` has a line of more than ``limit`` bytes (:data:`MAX_LINE_BYTES`),
    read in blocks of :data:`CHUNK_BYTES`: only a stream that long can have one.

    DuckDB's ``read_json`` does not hold lines to its ``maximum_object_size`` (2.0: it
    parses longer ones), so the bulk path asks this of every stream over the limit, and
    one with such a line is read by the precise path, which reports it torn.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "progress.ndjson"
    >>> _ = path.write_bytes(b'{"event": "a"}\\n' + b"x" * 40 + b"\\n")
    >>> has_long_line(path, 39), has_long_line(path, 40)
    (True, False)
    """
    limit = MAX_LINE_BYTES if limit is None else limit
    run = 0  # bytes since the last newline
    try:
        with open_regular(path) as fh:
            while block := fh.read(min(CHUNK_BYTES, limit)):
                first = block.find(b"\n")
                if first < 0:
                    run += len(block)
                else:
                    if run + first > limit:
                        return True
                    # Lines wholly inside the block are shorter than it: within the limit.
                    run = len(block) - block.rfind(b"\n") - 1
                if run > limit:
                    return True
    except OSError:
        return False  # the precise path says why, if it cannot read it either
    return False


#: A line longer than this is not parsed: it is a torn line (``torn_artifact``) of its run.
MAX_LINE_BYTES = 16 * 1024 * 1024
#: Streams are read (precise path) in blocks of this many bytes, whatever their size.
CHUNK_BYTES = 1024 * 1024


#: What the detail of a torn line adds when a newline ends it and it is over the line limit
#: (anywhere in the stream) or its stream's last line: no crash cut it short, since a write
#: cut short never ends with its newline, and ``doctor repair`` has nothing to cut.
LINE_COMPLETE = "it ends with a newline: complete, not cut short"


def ended(detail: str) -> str:
    """``detail`` saying its line ends with a newline (:data:`LINE_COMPLETE`), once.

    >>> ended(NOT_AN_EVENT)
    'a JSON object without an event name; it ends with a newline: complete, not cut short'
    >>> ended(ended("not JSON")) == ended("not JSON")
    True
    """
    return detail if detail.endswith(LINE_COMPLETE) else f"{detail}; {LINE_COMPLETE}"


def too_long(detail: str) -> bool:
    """Whether ``detail`` is that of a line over :data:`MAX_LINE_BYTES`.

    >>> too_long(_too_long(20_000_000, ended_=True)), too_long(ended(NOT_AN_EVENT))
    (True, False)
    """
    return detail.startswith("line of ") and f"exceeds the {MAX_LINE_BYTES}-byte limit" in detail


def _too_long(n: int, ended_: bool) -> str:
    """Why a line of ``n`` bytes is torn; ``ended_``: a newline ends it.

    >>> _too_long(20_000_000, ended_=True).endswith("; " + LINE_COMPLETE)
    True
    """
    why = f"line of {n} bytes exceeds the {MAX_LINE_BYTES}-byte limit"
    return ended(why) if ended_ else why


#: A stream's torn lines are located up to this many (and the last one); the rest counted.
MAX_TORN_LINES = 1000


def _classify_at(path: Path, t: TornLine) -> str:
    """Classify the torn line ``t`` again from the file (its bytes were not kept)."""
    try:
        with open_regular(path) as fh:
            fh.seek(t.byte_offset)
            line = fh.readline(MAX_LINE_BYTES + 1).rstrip(b"\n")
    except OSError:
        return "unreadable"
    return _classify(line)


@dataclass(frozen=True, slots=True)
class Chunk:
    """What the precise path consumed from one file."""

    torn: tuple[TornLine, ...]
    end_offset: int  # bytes consumed: the next read resumes here
    records: int  # non-blank lines consumed


def _insert_lines(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    stream_id: int,
    key: tuple[str, str],
    lines: list[tuple[int, int, bytes]],
    *,
    keep_raw: bool,
    room: int,
) -> tuple[list[TornLine], int, tuple[int, int, bytes] | None]:
    """Append a batch of ``(line number, byte offset, bytes)`` lines: its first ``room`` torn
    lines, how many there are, and the last one's ``(number, offset, bytes)``."""
    from doctor._engine import engine

    db = engine(relations=False)  # a scan's connection may have no relation layer

    texts: list[str | None] = []
    for _number, _start, line in lines:
        try:
            texts.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            texts.append(None)
    try:
        # The lines go in as one list parameter; ``pos`` is each one's 1-based place in it.
        source = (
            "(SELECT 0::BIGINT AS file_key, pos, try_cast(line AS JSON) AS json FROM ("
            "SELECT unnest(range(1, len($texts::VARCHAR[]) + 1)) AS pos, "
            "unnest($texts::VARCHAR[]) AS line))"
        )
        sql = _insert_sql(source, objects=True, keep_raw=keep_raw)
        cols = ", ".join(f'"{k}"' for k in _STORED)
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _rd_stage AS {sql}",
            {"first": stream_id, "texts": texts},
        )
        del texts
        con.execute(f"INSERT INTO events_base SELECT {cols} FROM _rd_stage WHERE ok ORDER BY pos")
        # Only the first ``room`` torn lines are located; the rest are counted (by the same
        # statement: each row carries the count and the last one).
        rows = con.execute(
            "SELECT pos, count(*) OVER (), max(pos) OVER () FROM _rd_stage "
            f"WHERE NOT ok OR ok IS NULL ORDER BY 1 LIMIT {max(1, int(room))}"
        ).fetchall()
        n_bad, last = (rows[0][1], rows[0][2]) if rows else (0, None)
        bad = [(r[0],) for r in rows[: max(0, int(room))]]
        con.execute("DROP TABLE _rd_stage")
    except (db.OutOfMemoryException, db.InterruptException):
        # Over the run's budget: the run's finding (doctor._budget); Ctrl-C: the command's
        # end (doctor._interrupts). Neither is this stream's.
        raise
    except db.Error as exc:
        raise IngestError(f"DuckDB could not parse {path}: {exc}") from exc
    out = []
    for (bad_pos,) in bad:
        number, start, line = lines[int(bad_pos) - 1]
        out.append(TornLine(*key, path, number, start, _classify(line)))
    return out, int(n_bad), None if last is None else lines[int(last) - 1]


def read_precise(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    stream_id: int,
    key: tuple[str, str],
    *,
    offset: int = 0,
    complete: bool,
    keep_raw: bool = True,
    max_line_bytes: int = MAX_LINE_BYTES,
    chunk_bytes: int = CHUNK_BYTES,
    on_block: Callable[[int], None] | None = None,
) -> Chunk:
    """Append ``path`` from byte ``offset`` to ``events``, reading ``chunk_bytes`` at a time.

    A last line without a newline is left for the next read unless ``complete`` (the writer is
    gone), in which case it is parsed or reported torn. A line over ``max_line_bytes`` is
    reported torn without being held in memory. Line numbers count from ``offset``.
    ``on_block(n)`` is called once each block of ``n`` bytes is appended.
    """
    cur = _Cursor(key=key, path=path, max_line_bytes=max_line_bytes, consumed=offset)
    try:
        with open_regular(path) as fh:
            fh.seek(offset)
            while True:
                block = fh.read(chunk_bytes)
                eof = not block
                if eof and not complete:
                    break
                batch = cur.at_eof() if eof else cur.take(block)
                if batch:
                    cur.records += len(batch)
                    room = max(0, MAX_TORN_LINES - len(cur.torn))
                    found, n_bad, last = _insert_lines(
                        con, path, stream_id, key, batch, keep_raw=keep_raw, room=room
                    )
                    cur.torn += found
                    cur.n_torn += n_bad
                    if last is not None:
                        cur.last_torn = TornLine(*key, path, last[0], last[1], "")
                    del batch
                if eof:
                    break
                if on_block is not None:
                    on_block(len(block))
    except OSError as exc:
        raise IngestError(f"cannot read {path}: {exc.strerror}") from exc
    return cur.chunk()


@dataclass
class _Cursor:
    """Where a precise read of one file stands: lines seen, bytes fully accounted for, the
    start of a line not yet ended (``carry``), an overlong line being skipped (from byte
    ``long_from``, ``carry_len`` bytes so far), and the torn lines found (the first
    ``MAX_TORN_LINES`` kept, ``n_torn`` in all, the last one remembered)."""

    key: tuple[str, str]
    path: Path
    max_line_bytes: int
    consumed: int
    records: int = 0  # non-blank lines consumed
    number: int = 0
    carry: bytes = b""
    long_from: int | None = None
    carry_len: int = 0
    torn: list[TornLine] = field(default_factory=list)
    n_torn: int = 0
    last_torn: TornLine | None = None
    #: The number of the last non-blank line consumed, and whether a newline ended it.
    last_seen: int = 0
    last_ended: bool = False

    def _too_long(self, start: int, length: int, ended_: bool = True) -> None:
        """Line ``number``, from byte ``start``, is torn for its ``length`` (``ended_``: a
        newline ends it)."""
        t = TornLine(*self.key, self.path, self.number, start, _too_long(length, ended_))
        self.last_seen, self.last_ended = self.number, ended_
        self.n_torn, self.last_torn = self.n_torn + 1, t
        self.torn += [t][: max(0, MAX_TORN_LINES - len(self.torn))]
        self.records += 1

    def at_eof(self) -> list[tuple[int, int, bytes]]:
        """The writer is gone: an unended last line is a line (an overlong one is torn)."""
        batch = []
        if self.long_from is not None:
            self.number += 1
            self._too_long(self.long_from, self.carry_len, ended_=False)
            self.consumed += self.carry_len
            self.long_from = None
        elif self.carry.strip():
            self.number += 1
            batch.append((self.number, self.consumed, self.carry))
            self.last_seen, self.last_ended = self.number, False
            self.consumed += len(self.carry)
        self.carry = b""
        return batch

    def take(self, block: bytes) -> list[tuple[int, int, bytes]]:
        """The ended, non-blank lines of ``block`` (after what was carried over) as
        ``(number, byte offset, bytes)``; overlong ones are reported torn instead."""
        batch: list[tuple[int, int, bytes]] = []
        data = self.carry + block if self.carry else block
        base = self.consumed if self.long_from is None else self.consumed + self.carry_len
        if self.long_from is not None:
            nl = block.find(b"\n")
            if nl < 0:
                self.carry_len += len(block)
                return batch
            self.number += 1
            self.carry_len += nl
            self._too_long(self.long_from, self.carry_len)
            self.consumed = self.long_from + self.carry_len + 1
            self.long_from = None
            data, base = block[nl + 1 :], self.consumed
        max_line_bytes, number = self.max_line_bytes, self.number  # locals: the hot loop
        pos = 0
        while True:
            nl = data.find(b"\n", pos)
            if nl < 0:
                break
            line = data[pos:nl]
            number += 1
            if line.strip():
                if len(line) > max_line_bytes:
                    self.number = number
                    self._too_long(base + pos, len(line))
                else:
                    batch.append((number, base + pos, line))
            pos = nl + 1
        self.number = number
        if batch and batch[-1][0] > self.last_seen:  # every line of a batch ended
            self.last_seen, self.last_ended = batch[-1][0], True
        self.consumed = base + pos
        self.carry = data[pos:]
        if len(self.carry) > max_line_bytes:
            self.long_from, self.carry_len, self.carry = self.consumed, len(self.carry), b""
        return batch

    def _mark_complete(self) -> None:
        """A torn line that is the last read, a newline ending it and nothing unended after
        it, was written whole: its detail says so (:data:`LINE_COMPLETE`)."""
        last = self.last_torn
        if last is None or (last.line, True) != (self.last_seen, self.last_ended):
            return
        if self.carry.strip() or self.long_from is not None:
            return  # an unended line follows: the torn one is not the stream's last
        self.torn = [
            replace(t, detail=ended(t.detail)) if t.line == last.line else t for t in self.torn
        ]

    def chunk(self) -> Chunk:
        """What was consumed; torn lines beyond those listed are counted on the last one."""
        self._mark_complete()
        torn = self.torn
        torn.sort(key=lambda t: t.line)
        last_torn = self.last_torn
        if self.n_torn > len(torn) and last_torn is not None:
            # The rest are counted, not listed: the last one closes the list, saying so.
            if not last_torn.detail:
                last_torn = replace(last_torn, detail=_classify_at(self.path, last_torn))
            more = f"{self.n_torn} torn lines in all, the first {len(torn)} listed"
            torn.append(replace(last_torn, detail=f"{last_torn.detail} ({more})"))
        return Chunk(
            torn=tuple(torn),
            end_offset=self.consumed,
            records=self.records,
        )


def bounded_lines(fh: BinaryIO, limit: int = MAX_LINE_BYTES) -> Iterator[bytes]:
    """The lines of ``fh``, each read whole only up to ``limit`` (longer ones, which
    the doctor never parses, are skipped without being held).

    >>> import io
    >>> list(bounded_lines(io.BytesIO(b"a\\nb")))
    [b'a\\n', b'b']
    """
    while raw := fh.readline(limit):
        if len(raw) < limit or raw.endswith(b"\n"):
            yield raw
            continue
        while (rest := fh.readline(limit)) and not rest.endswith(b"\n"):
            pass
