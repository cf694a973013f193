"""Ingestion: run directories in, canonical tables out.

All event streams of all runs go through one bulk DuckDB scan; streams with unparsable lines
are re-read precisely to locate them. The small JSON documents are read in Python.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from doctor._documents import read_documents
from doctor._layout import RunLayout
from doctor._liveness import process_alive
from doctor._ndjson import TornLine, read_bulk, read_precise, register_streams
from doctor._tables import Tables, new_connection

__all__ = ["load_runs"]

Progress = Callable[[int, int], None]


def _is_file(path: os.PathLike[str]) -> bool:
    try:
        return os.path.isfile(path) and not os.path.islink(path)
    except OSError:
        return False


def load_runs(
    layouts: Sequence[RunLayout],
    *,
    keep_raw: bool,
    threads: int | None = None,
    progress: Progress | None = None,
) -> Tables:
    """Read every run into one :class:`Tables`.

    ``keep_raw`` keeps each event's whole line (diagnosing one run); scans leave it out.
    ``progress(done, total)`` is called as runs' documents are read.
    """
    con = new_connection(threads)
    tables = Tables(con)
    streams = [
        (run.run_id, scope.scope, scope.progress)
        for run in layouts
        for scope in run.scopes
        if _is_file(scope.progress)
    ]
    ids = register_streams(con, streams)
    bad = read_bulk(con, [s[2] for s in streams], ids[0] if ids else 0, keep_raw=keep_raw)
    for i, run in enumerate(layouts):
        docs = read_documents(run)
        tables.documents[run.run_id] = docs
        if progress is not None:
            progress(i + 1, len(layouts))
    by_id = dict(zip(ids, streams, strict=True))
    for sid in bad:
        run_id, scope, path = by_id[sid]
        docs = tables.documents[run_id]
        # A live writer may be mid-line: leave its unterminated last line for the next read.
        alive = process_alive(docs.pid, docs.pid_start_time)
        con.execute("DELETE FROM events_base WHERE stream_id = ?", [sid])
        chunk = read_precise(con, path, sid, (run_id, scope), complete=not alive, keep_raw=keep_raw)
        tables.torn_lines.extend(chunk.torn)
    _record_files(tables, layouts)
    return tables


def _record_files(tables: Tables, layouts: Sequence[RunLayout]) -> None:
    files: list[tuple[object, ...]] = []
    torn: list[tuple[object, ...]] = []
    runs: list[tuple[object, ...]] = []
    for run in layouts:
        docs = tables.documents[run.run_id]
        runs.append((run.run_id, str(run.path), run.layout, docs.pid))
        for scope in run.scopes:
            try:
                st = scope.progress.stat()
            except OSError:
                continue
            rel = os.path.relpath(scope.progress, run.path)
            files.append((run.run_id, scope.scope, rel, "progress", st.st_size, st.st_mtime_ns,
                          True, None))
        for doc in docs.documents:
            scope = _scope_of(doc.rel, docs.scopes)
            files.append((run.run_id, scope, doc.rel, doc.kind, doc.size, doc.mtime_ns, doc.ok,
                          doc.error))
            if not doc.ok and doc.kind != "stranded_status":
                torn.append((run.run_id, scope, doc.rel, doc.line, doc.byte_offset, doc.error))
    for t in tables.torn_lines:
        run_path = tables.documents[t.run_id].path
        torn.append((t.run_id, t.scope, os.path.relpath(t.file, run_path), t.line,
                     t.byte_offset, t.detail))
    tables.add_rows("files", files)
    tables.add_rows("torn", torn)
    tables.add_rows("runs", runs)


def _scope_of(rel: str, scopes: dict[str, object]) -> str:
    best = ""
    for name in scopes:
        if name and (rel == name or rel.startswith(name + "/")) and len(name) > len(best):
            best = name
    return best


__all__ += ["TornLine"]
