"""Ingestion: run directories in, canonical tables out.

All event streams that must be read whole go through one bulk DuckDB scan; streams with
unparsable lines are re-read precisely to locate them. Streams the cache has already read
are reloaded from Parquet and read on from their last byte offset. Streams of a run whose
owner is alive are read precisely up to their last complete line, so a line being written
is never mistaken for a torn one. The small JSON documents are read in Python.

One run's failure is that run's finding, never the whole read's: a stream that cannot be read
(a line over the budget, a read error, DuckDB refusing it) becomes an ``unreadable_artifact``
of its run and its rows are dropped; a run whose documents cannot be read at all is kept with
an ``unreadable_artifact`` saying why.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from doctor._cache import CacheEntry, RunCache, StreamState, tail_sha
from doctor._documents import RunDocuments, ScopeDocuments, read_documents
from doctor._errors import IngestError
from doctor._layout import TOP_SQL, RunLayout, Unreadable, display_name, is_top_scope
from doctor._ndjson import (
    EVENT_FIELDS,
    MAX_LINE_BYTES,
    RaceHook,
    TornLine,
    has_long_line,
    last_line,
    only_last_line_bad,
    open_regular,
    read_bulk,
    read_precise,
    untimed_detail,
)
from doctor._read_progress import ReadProgress, Reported
from doctor._superseded import (
    RESUME_MARK,
    RUN_ENDS,
    STAGE_START,
    final_ns,
    repaired_final_ns,
    resumed_past,
    superseded,
)
from doctor._tables import Tables, new_connection
from doctor._timestamps import parse_iso

if TYPE_CHECKING:
    import duckdb

    from doctor._config import DoctorConfig

__all__ = ["load_run", "load_runs"]

Progress = Callable[[int, int], None]


def _stat(path: Path) -> os.stat_result | None:
    """The stream's stat when it is a regular file (a FIFO is never opened: it would block)."""
    try:
        st = path.lstat()
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def _documents_of(run: RunLayout) -> RunDocuments:
    """The run's documents; a failure to read them is the run's finding, not the scan's."""
    try:
        return read_documents(run)
    except (OSError, ValueError, RecursionError, MemoryError, IngestError) as exc:
        docs = RunDocuments(run.run_id, run.path, run.layout, scopes={})
        docs.scopes = {s.scope: ScopeDocuments(s.scope, s.path) for s in run.scopes}
        why = f"its documents could not be read: {type(exc).__name__}: {str(exc)[:200]}"
        if isinstance(exc, MemoryError):  # it has no message: say what it means (_budget)
            why = (
                "its documents could not be read: over the resource budget: Python ran out "
                "of memory reading them; diagnose it on a machine with more memory"
            )
        docs.unreadable.append(Unreadable(".", "run", why))
        return docs


def _stream_failed(tables: Tables, run_id: str, rel: str, sid: int, exc: Exception) -> None:
    tables.con.execute("DELETE FROM events_base WHERE stream_id = ?", [sid])
    why = f"the stream could not be read: {str(exc)[:300]}"
    tables.documents[run_id].unreadable.append(Unreadable(rel, "progress", why))


def load_run(layout: RunLayout, config: DoctorConfig, reading: Reported | None = None) -> Tables:
    """One run, as a diagnosis and its timeline read it: the typed scan (no detector reads the
    raw lines, and it is about twice as fast) on ``config``'s threads, within its budget;
    ``reading(bytes read, bytes to read)`` as its streams are read. No detector needs DuckDB's
    relation layer, so it is not imported for them (:mod:`doctor._engine`); a caller's
    :meth:`Tables.frame` or :meth:`Tables.arrow` imports it when called."""
    return load_runs(
        [layout],
        keep_raw=False,
        threads=config.threads,
        limits=(config.memory_limit, config.spill_limit),
        relations=False,
        reading=reading,
    )


def load_runs(
    layouts: Sequence[RunLayout],
    *,
    keep_raw: bool,
    threads: int | None = None,
    progress: Progress | None = None,
    cache: RunCache | None = None,
    entries: Mapping[str, CacheEntry] | None = None,
    race_hook: RaceHook | None = None,
    limits: tuple[str, str] | None = None,
    relations: bool = True,
    reading: Reported | None = None,
) -> Tables:
    """Read every run into one :class:`Tables`.

    ``keep_raw`` keeps each event's whole line (diagnosing one run); scans leave it out.
    ``progress(done, total)`` is called as runs are read. With a ``cache`` and the runs'
    previous ``entries``, streams that only grew are resumed from their byte offsets.
    ``race_hook`` is a test seam (see :func:`doctor._ndjson.read_bulk`), None outside tests.
    ``limits`` is DuckDB's (memory_limit, spill_limit) (:mod:`doctor._budget`); over either,
    DuckDB's out-of-memory error is raised, never taken for one stream's failure.
    ``relations=False``: the tables are queried through ``execute`` only (a scan's batch), and
    DuckDB's Python relation layer need not be imported (:mod:`doctor._engine`).
    ``reading(bytes read, bytes to read)`` is called as the event streams are read
    (:mod:`doctor._read_progress`).

    >>> from fixtures.example import example_root
    >>> root = example_root()  # one run, r1: node a's attempt, started and failed
    >>> from doctor import discover
    >>> tables = load_runs([discover(root / "r1")], keep_raw=False)
    >>> tables.frame("SELECT node_id, event FROM events ORDER BY ts").rows()
    [('a', 'stage_attempt_start'), ('a', 'stage_attempt_end')]
    """
    budget = {} if limits is None else {"memory_limit": limits[0], "spill_limit": limits[1]}
    # No attempts view: frozen into a table below, before anything reads it.
    con = new_connection(threads, relations=relations, attempts_view=False, **budget)
    tables = Tables(con, attempts_view=False)
    entries = entries or {}
    for i, run in enumerate(layouts):
        tables.documents[run.run_id] = _documents_of(run)
        if progress is not None:
            progress(i + 1, len(layouts))
    plan = _plan_streams(tables, layouts, cache, entries)
    bytes_read = None if reading is None else ReadProgress(reading, _planned_bytes(plan))
    # Resumed streams first: their cached rows must precede the tails read below.
    if plan.resumed and cache is not None:
        _load_resumed(tables, plan, cache, entries, keep_raw=keep_raw, bytes_read=bytes_read)
    _load_bulk(tables, plan, keep_raw=keep_raw, race_hook=race_hook, bytes_read=bytes_read)
    _load_live(tables, plan, keep_raw=keep_raw, bytes_read=bytes_read)
    _note_untimed(tables, plan)
    if bytes_read is not None:
        bytes_read.done()
    _set_aside_superseded_finals(tables)
    _record_files(tables, layouts)
    tables.freeze()
    return tables


@dataclass(frozen=True)
class _StreamPlan:
    """How each progress stream is read: ``resumed`` from a cached offset (with its cached
    state and whether its writer is alive), ``bulk`` in one pass (a dead writer's), ``live``
    line by line (a live writer's); ``stats`` is each stream's ``stat`` as planned."""

    bulk: list[tuple[str, str, Path]]
    live: list[tuple[str, str, Path]]
    resumed: list[tuple[str, str, Path, StreamState, bool]]
    stats: dict[tuple[str, str], os.stat_result]


def _plan_streams(
    tables: Tables,
    layouts: Sequence[RunLayout],
    cache: RunCache | None,
    entries: Mapping[str, CacheEntry],
) -> _StreamPlan:
    """Sort every stream that exists into resumed, bulk or live (see :class:`_StreamPlan`)."""
    plan = _StreamPlan(bulk=[], live=[], resumed=[], stats={})
    for run in layouts:
        docs = tables.documents[run.run_id]
        alive = bool(docs.owner_alive())
        entry = entries.get(run.run_id)
        for sl in run.scopes:
            st = _stat(sl.progress)
            if st is None:
                continue
            plan.stats[(run.run_id, sl.scope)] = st
            old = entry.streams.get(sl.scope) if entry and cache else None
            if (
                old is not None
                and old.ino == st.st_ino
                and st.st_size >= old.offset
                # Same size but a new mtime: rewritten in place, not appended to.
                and not (st.st_size == old.size and st.st_mtime_ns != old.mtime_ns)
                and tail_sha(sl.progress, old.offset) == old.tail_sha
            ):
                plan.resumed.append((run.run_id, sl.scope, sl.progress, old, alive))
            elif alive:
                plan.live.append((run.run_id, sl.scope, sl.progress))
            else:
                plan.bulk.append((run.run_id, sl.scope, sl.progress))
    return plan


def _load_resumed(
    tables: Tables,
    plan: _StreamPlan,
    cache: RunCache,
    entries: Mapping[str, CacheEntry],
    *,
    keep_raw: bool,
    bytes_read: ReadProgress | None = None,
) -> None:
    """Resumed streams: their cached rows from the cache's event files, then each tail read
    from its cached offset."""
    con = tables.con
    resumed = plan.resumed
    ids = tables.register_streams([(r, s, p) for r, s, p, *_ in resumed])
    keys = {r: entries[r].key for r, *_ in resumed}
    files = sorted({str(f) for k in keys.values() for f in cache.event_files(k)})
    if files:
        cols = ", ".join(f'p."{k}"' for k in EVENT_FIELDS)
        con.execute(
            f"INSERT INTO events_base SELECT s.stream_id, p.ts, {cols}, NULL, NULL "
            "FROM read_parquet($files) p "
            "JOIN streams s ON s.run_id = p.run_id AND s.scope = p.scope "
            "WHERE s.stream_id >= $first ORDER BY s.stream_id, p.seq",
            {"files": files, "first": ids[0]},
        )
    for sid, (run_id, scope, path, old, alive) in zip(ids, resumed, strict=True):
        st = plan.stats[(run_id, scope)]
        torn: list[TornLine] = [TornLine(run_id, scope, path, a, b, c) for a, b, c in old.torn]
        offset = old.offset
        if st.st_size > old.offset:
            try:
                chunk = read_precise(
                    con,
                    path,
                    sid,
                    (run_id, scope),
                    offset=old.offset,
                    # As for a first read: a dead writer's unterminated last line is torn.
                    complete=not alive,
                    keep_raw=keep_raw,
                    on_block=_advance(bytes_read),
                )
            except IngestError as exc:
                _stream_failed(tables, run_id, _rel(tables, run_id, path), sid, exc)
                continue
            # read_precise numbers lines from the offset; torn lines need file line numbers.
            before = _count_lines(path, old.offset) if chunk.torn else 0
            torn += [replace(t, line=t.line + before) for t in chunk.torn]
            offset = chunk.end_offset
        tables.torn_lines.extend(torn)
        # The cached rows keep no ts text: their untimed events are counted in the state.
        state = _state(scope, path, st, offset, torn)
        tables.stream_states[(run_id, scope)] = replace(state, untimed=old.untimed)


def _load_bulk(
    tables: Tables,
    plan: _StreamPlan,
    *,
    keep_raw: bool,
    race_hook: RaceHook | None,
    bytes_read: ReadProgress | None = None,
) -> None:
    """Dead writers' streams in one pass; a stream that did not parse whole is read again
    line by line, unless only its last line was cut short."""
    con = tables.con
    bulk = plan.bulk
    ids = tables.register_streams(bulk)
    first = ids[0] if ids else 0
    paths = [p for *_, p in bulk]
    with _statement(bytes_read, con, sum(plan.stats[(r, s)].st_size for r, s, _ in bulk)):
        bad = set(read_bulk(con, paths, first, keep_raw=keep_raw, race_hook=race_hook))
    # Lines over the limit, which DuckDB parsed: torn lines, as the precise path reports them.
    long = {
        sid
        for sid, (run_id, scope, path) in zip(ids, bulk, strict=True)
        if plan.stats[(run_id, scope)].st_size > MAX_LINE_BYTES and has_long_line(path)
    }
    # A stream that grew (or changed) while DuckDB read it: its rows go past the size it
    # was planned at, which the cache would resume from (reading those lines twice). It is
    # read again line by line, which knows the offset it reached.
    moved = {
        sid
        for sid, (run_id, scope, path) in zip(ids, bulk, strict=True)
        if _moved(path, plan.stats[(run_id, scope)])
    }
    cut = only_last_line_bad(con, sorted(bad)) - long - moved
    bad |= long | moved
    for sid, (run_id, scope, path) in zip(ids, bulk, strict=True):
        st = plan.stats[(run_id, scope)]
        torn = []
        offset = st.st_size
        try:
            if sid in cut:
                # The usual crash: everything parsed but a last line cut short mid-write.
                line = last_line(path, (run_id, scope))
                torn = [line] if line is not None else []
            elif sid in bad:
                con.execute("DELETE FROM events_base WHERE stream_id = ?", [sid])
                chunk = read_precise(
                    con, path, sid, (run_id, scope), complete=True, keep_raw=keep_raw
                )
                torn, offset = list(chunk.torn), chunk.end_offset
        except IngestError as exc:
            _stream_failed(tables, run_id, _rel(tables, run_id, path), sid, exc)
            continue
        tables.torn_lines.extend(torn)
        tables.stream_states[(run_id, scope)] = _state(scope, path, st, offset, torn)


def _moved(path: Path, planned: os.stat_result) -> bool:
    """Whether ``path`` is no longer the file it was when planned (size, mtime, inode)."""
    st = _stat(path)
    return st is None or (st.st_size, st.st_mtime_ns, st.st_ino) != (
        planned.st_size,
        planned.st_mtime_ns,
        planned.st_ino,
    )


def _load_live(
    tables: Tables, plan: _StreamPlan, *, keep_raw: bool, bytes_read: ReadProgress | None = None
) -> None:
    """Live writers' streams, line by line."""
    con = tables.con
    ids = tables.register_streams(plan.live)
    for sid, (run_id, scope, path) in zip(ids, plan.live, strict=True):
        # A live writer may be mid-line: its unterminated last line waits for the next read.
        try:
            chunk = read_precise(
                con,
                path,
                sid,
                (run_id, scope),
                complete=False,
                keep_raw=keep_raw,
                on_block=_advance(bytes_read),
            )
        except IngestError as exc:
            _stream_failed(tables, run_id, _rel(tables, run_id, path), sid, exc)
            continue
        tables.torn_lines.extend(chunk.torn)
        st = plan.stats[(run_id, scope)]
        tables.stream_states[(run_id, scope)] = _state(
            scope, path, st, chunk.end_offset, list(chunk.torn)
        )


# Each stream's events read with no readable ts (stored ``ts_unread``, doctor._ndjson), and
# the first one's event name and ts text.
_UNTIMED_SQL = """
SELECT s.run_id, s.scope, count(*), arg_min(e.event, e.rowid), arg_min(e.ts_unread, e.rowid)
FROM events_base e JOIN streams s ON s.stream_id = e.stream_id
WHERE e.ts_unread IS NOT NULL AND e.event IS NOT NULL
GROUP BY ALL
"""


def _note_untimed(tables: Tables, plan: _StreamPlan) -> None:
    """Count each stream's events that have no readable ``ts`` into its state, and make each
    such stream its run's ``unreadable_artifact`` (a warning: the events are read, but they
    are in no time figure; they were silently timeless)."""
    for run_id, scope, count, event, text in tables.sql(_UNTIMED_SQL):
        state = tables.stream_states.get((run_id, scope))
        if state is None:
            continue
        before, first_event, first_text = state.untimed
        if not before:
            first_event, first_text = str(event), str(text)
        untimed = (before + int(count), first_event, first_text)
        tables.stream_states[(run_id, scope)] = replace(state, untimed=untimed)
    paths = {(r, s): p for r, s, p in [*plan.bulk, *plan.live]}
    paths |= {(r, s): p for r, s, p, *_ in plan.resumed}
    for (run_id, scope), state in tables.stream_states.items():
        if state.untimed[0]:
            rel = _rel(tables, run_id, paths[(run_id, scope)])
            detail = untimed_detail(*state.untimed)
            tables.documents[run_id].unreadable.append(Unreadable(rel, "progress", detail))


def _planned_bytes(plan: _StreamPlan) -> int:
    """The bytes ``plan`` reads: whole streams, and resumed streams' tails."""
    whole = sum(plan.stats[(r, s)].st_size for r, s, _ in [*plan.bulk, *plan.live])
    tails = sum(max(0, plan.stats[(r, s)].st_size - old.offset) for r, s, _, old, _ in plan.resumed)
    return whole + tails


def _advance(bytes_read: ReadProgress | None) -> Callable[[int], None] | None:
    return None if bytes_read is None else bytes_read.advance


def _statement(
    bytes_read: ReadProgress | None, con: duckdb.DuckDBPyConnection, nbytes: int
) -> contextlib.AbstractContextManager[None]:
    """:meth:`ReadProgress.statement`, or nothing when no one follows the reading."""
    if bytes_read is None or not nbytes:
        return contextlib.nullcontext()
    return bytes_read.statement(con, nbytes)


def _rel(tables: Tables, run_id: str, path: Path) -> str:
    return os.path.relpath(path, tables.documents[run_id].path)


def _count_lines(path: Path, offset: int) -> int:
    """Newlines in the first ``offset`` bytes of ``path`` (only read when a tail has torn lines)."""
    count, left = 0, offset
    try:
        with open_regular(path) as fh:
            while left > 0:
                block = fh.read(min(left, 1 << 20))
                if not block:
                    break
                count += block.count(b"\n")
                left -= len(block)
    except OSError:
        pass
    return count


def _state(
    scope: str, path: Path, st: os.stat_result, offset: int, torn: Sequence[TornLine]
) -> StreamState:
    return StreamState(
        scope=scope,
        ino=st.st_ino,
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        offset=offset,
        tail_sha=tail_sha(path, offset),
        torn=tuple((t.line, t.byte_offset, t.detail) for t in torn),
    )


# The latest of the runs' streams' last events (each stream's last line with a time), as
# ``terminalize`` stamped it: not the latest time anywhere in a stream, which may lie before
# its last line (forwarded branch_progress events go back in time).
_LAST_EVENT_SQL = """
SELECT run_id, max(last_ns) FROM (
    SELECT run_id, scope, arg_max(epoch_ns(ts), seq) AS last_ns FROM events
    WHERE run_id IN (SELECT unnest($runs)) AND ts IS NOT NULL GROUP BY run_id, scope
) GROUP BY run_id
"""


_RESUMED_SQL = f"""
WITH finals AS (SELECT unnest($runs) AS run_id, unnest($scopes) AS final_scope,
                       unnest($finals) AS final_ns)
SELECT f.run_id, f.final_scope,
       min(epoch_ns(e.ts)) FILTER (WHERE e.event = '{STAGE_START}') AS stage_ns,
       min(epoch_ns(e.ts)) FILTER (WHERE e.event = '{RESUME_MARK}') AS mark_ns,
       max(epoch_ns(e.ts)) FILTER (WHERE e.event IN {RUN_ENDS}) AS ended_ns
FROM finals f JOIN events e ON e.run_id = f.run_id
WHERE e.ts IS NOT NULL AND epoch_ns(e.ts) > f.final_ns
  AND e.event IN ('{STAGE_START}', '{RESUME_MARK}', {", ".join(repr(x) for x in RUN_ENDS)})
  AND {TOP_SQL.replace("scope", "e.scope")}
GROUP BY ALL
"""


def _set_aside_superseded_finals(tables: Tables) -> None:
    """Move each top-level final.json the run went past from ``final`` to
    ``superseded_final`` (:mod:`doctor._superseded`), so the run is read as the resume left
    it: the doctor's once any stream has an event after it, Kilroy's own on the evidence of
    a resume (:func:`~doctor._superseded.resumed_past`)."""
    repaired: list[str] = []
    kilroy: list[tuple[str, str, int]] = []
    for run_id, docs in tables.documents.items():
        for name, sd in docs.scopes.items():
            if sd.final is None or not is_top_scope(name):
                continue
            if repaired_final_ns(sd.final.value) is not None:
                repaired.append(run_id)
            elif (ns := final_ns(sd.final.value)) is not None:
                kilroy.append((run_id, name, ns))
    if repaired:
        for run_id, last_ns in tables.sql(_LAST_EVENT_SQL, runs=sorted(set(repaired))):
            for sd in tables.documents[run_id].scopes.values():
                if sd.final is not None and superseded(sd.final.value, last_ns):
                    sd.superseded_final, sd.final = sd.final, None
    if not kilroy:
        return
    stamped = {(run_id, name): ns for run_id, name, ns in kilroy}
    rows = tables.sql(
        _RESUMED_SQL,
        runs=[k[0] for k in kilroy],
        scopes=[k[1] for k in kilroy],
        finals=[k[2] for k in kilroy],
    )
    for run_id, name, stage_ns, mark_ns, ended_ns in rows:
        docs = tables.documents[run_id]
        marks = {"stage_ns": stage_ns, "mark_ns": mark_ns, "ended_ns": ended_ns}
        if resumed_past(stamped[(run_id, name)], owner_since=docs.owner_since, **marks):
            sd = docs.scopes[name]
            sd.superseded_final, sd.final = sd.final, None
            docs.resumed_ns = min(stage_ns, docs.resumed_ns or stage_ns)


def _record_files(tables: Tables, layouts: Sequence[RunLayout]) -> None:
    files: list[tuple[object, ...]] = []
    torn: list[tuple[object, ...]] = []
    runs: list[tuple[object, ...]] = []
    for run in layouts:
        docs = tables.documents[run.run_id]
        runs.append((run.run_id, display_name(str(run.path)), run.layout, docs.pid))
        for sl in run.scopes:
            state = tables.stream_states.get((run.run_id, sl.scope))
            if state is None:
                continue
            rel = os.path.relpath(sl.progress, run.path)
            files.append(
                (
                    run.run_id,
                    sl.scope,
                    rel,
                    "progress",
                    state.size,
                    state.mtime_ns,
                    not state.torn,
                    None if not state.torn else f"{len(state.torn)} torn",
                )
            )
        for doc in docs.documents:
            scope_name = _scope_of(doc.rel, docs.scopes)
            files.append(
                (
                    run.run_id,
                    scope_name,
                    doc.rel,
                    doc.kind,
                    doc.size,
                    doc.mtime_ns,
                    doc.ok,
                    doc.error,
                )
            )
            if not doc.ok and doc.kind != "stranded_status":
                torn.append((run.run_id, scope_name, doc.rel, doc.line, doc.byte_offset, doc.error))
    for t in tables.torn_lines:
        run_path = tables.documents[t.run_id].path
        torn.append(
            (t.run_id, t.scope, os.path.relpath(t.file, run_path), t.line, t.byte_offset, t.detail)
        )
    unreadable = [
        (run.run_id, _scope_of(u.rel, tables.documents[run.run_id].scopes), u.rel, u.kind, u.detail)
        for run in layouts
        for u in tables.documents[run.run_id].unreadable
    ]
    tables.add_rows("files", files)
    tables.add_rows("torn", torn)
    tables.add_rows("unreadable", unreadable)
    tables.add_rows("runs", runs)
    tables.add_rows("finals", _final_rows(tables, layouts))


def _final_rows(tables: Tables, layouts: Sequence[RunLayout]) -> list[tuple[object, ...]]:
    """``(run_id, scope, ts_ns)`` of each final.json with a readable recorded ``timestamp``:
    when the run ended, for a final.json written without a terminal event (a resume that
    fails before the engine starts; real run ``resume_no_git``). Not ``doctor repair``'s
    (``repaired_by``): ``terminalize`` stamps the run's last event on the doctor's judgement,
    and the work it found open stays visible as the hang it was (``unjoined_fanout``)."""
    rows: list[tuple[object, ...]] = []
    for run in layouts:
        for name, sd in tables.documents[run.run_id].scopes.items():
            final = sd.final
            if final is None or final.get("repaired_by") is not None:
                continue
            ns = parse_iso(final.get("timestamp"))
            if ns is not None:
                rows.append((run.run_id, name, ns))
    return rows


def _scope_of(rel: str, scopes: Mapping[str, object]) -> str:
    best = ""
    for name in scopes:
        if name and (rel == name or rel.startswith(name + "/")) and len(name) > len(best):
            best = name
    return best
