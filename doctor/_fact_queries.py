"""The queries behind the facts (phase 1 of :func:`doctor._facts.compute_facts`).

Every query groups by ``run_id`` and runs once over all the runs of a batch, so facts for a
fleet cost one pass per query, not one per run; their rows come back grouped by run id
(:class:`_FleetRows`). A query over event kinds the runs do not have is not run, and the
per-node rows are cut to :data:`MAX_NODE_ROWS` per run in DuckDB (:func:`_bounded`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from doctor._attempts import (
    _OPEN_ATTEMPTS_SQL,
    _PHASES_SQL,
    _REASONS_SQL,
    _SPANS_SQL,
    _STATS_SQL,
)
from doctor._branch_records import _BRANCH_DONE_SQL
from doctor._layout import TOP_SQL
from doctor._run_state import STOP_EVENTS, STOP_EVENTS_SQL
from doctor._superseded import RESUME_MARK
from doctor._tables import HEARTBEAT_SQL, Tables

__all__ = ["MAX_NODE_ROWS", "RESUME_ROW"]


#: ``attempt_stats``, ``attempt_spans``, ``phases`` and ``edges`` keep at most this many rows
#: per run (the rest are counted in ``rows_omitted``): a run of 380,000 distinct nodes would
#: otherwise build (and print) over a million rows, past the memory budget.
MAX_NODE_ROWS = 1000
#: The ``event`` of an engine's start (the run's, a resume's) among its endings (``endings``).
RESUME_ROW = "resume"
#: SQL expression: the node an event names.
NODE_SQL = "coalesce(node_id, to_node)"


def _per_run(rows: list[tuple[Any, ...]]) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for row in rows:
        out[row[0]].append(row[1:])
    return out


# The queries behind the facts, one row group per run (the run id comes first).
# Every event line is read once: counted and timed per (scope, event) from the base table
# (grouping its small stream id, then naming it), which is what the run's summary, its event
# counts and its branches' times need; the rest comes from the non-heartbeat rows. A branch
# scope needs no more than its heartbeats, its attempt starts and its other events apart: its
# rows are summed to those three (``event`` kept for starts only), however many kinds it has.
_COUNTS_SQL = f"""
        WITH g AS (
            SELECT stream_id, event, {HEARTBEAT_SQL} AS hb, count(*) AS n, min(ts) AS first_ts,
                   max(ts) AS last_ts
            FROM events_base WHERE event IS NOT NULL GROUP BY ALL
        ),
        named AS (
            SELECT s.run_id, s.scope, {TOP_SQL} AS top, g.hb, g.event, g.n,
                   g.first_ts, g.last_ts
            FROM g JOIN streams s ON s.stream_id = g.stream_id
        )
        SELECT run_id, scope, top, hb,
               CASE WHEN top OR event = 'stage_attempt_start' THEN event END AS kind,
               sum(n)::BIGINT, epoch_ns(min(first_ts)), epoch_ns(max(last_ts)),
               list(DISTINCT event) AS kinds
        FROM named GROUP BY run_id, scope, top, hb, kind"""
# Per scope: its last node (the row's time and seq, to take the run's latest), its failed or
# retried ends (an output_contract_violated fails the success-like end it follows) and the
# status of its last end.
_MARKS_SQL = f"""
        SELECT run_id, scope, max(seq) FILTER (WHERE {NODE_SQL} IS NOT NULL),
               arg_max({NODE_SQL}, seq) FILTER (WHERE {NODE_SQL} IS NOT NULL),
               count(*) FILTER (WHERE (event = 'stage_attempt_end' AND status IN ('fail', 'retry'))
                                OR event = 'output_contract_violated'),
               arg_max(CASE WHEN event = 'output_contract_violated' THEN 'fail' ELSE status END,
                       seq) FILTER (WHERE event IN ('stage_attempt_end',
                                                    'output_contract_violated')),
               epoch_ns(arg_max(ts, seq) FILTER (WHERE {NODE_SQL} IS NOT NULL))
        FROM progress_events GROUP BY ALL"""
# Per-node rows are cut to MAX_NODE_ROWS per run by :func:`_bounded` (keep / order).
_EDGES_SQL = f"""
        SELECT run_id, from_node, to_node, count(*) AS n FROM progress_events
        WHERE {TOP_SQL} AND event = 'edge_selected' GROUP BY ALL"""
# The run's stops and terminal events in the order it wrote them: by time over its top-level
# streams (seq orders a stream, not streams: a resume of a restarted run goes on in the base
# directory, after the restart-N's own stop), by place in the stream on a tie; with each
# start of the engine among them (RESUME_ROW: Kilroy materializes the run's inputs naming no
# node, ``scope`` ``run_startup`` or ``resume``; a stage's name theirs), since an ending before
# it is an earlier attempt's (_facts._own_endings).
_ENDINGS_SQL = f"""
        SELECT run_id, CASE WHEN event IN {STOP_EVENTS_SQL} THEN event ELSE '{RESUME_ROW}' END,
               coalesce(reason, failure_reason), seq, epoch_ns(ts)
        FROM progress_events
        WHERE {TOP_SQL} AND (event IN {STOP_EVENTS_SQL}
                             OR (event = '{RESUME_MARK}' AND node_id IS NULL))
        ORDER BY run_id, ts, seq"""


_Rows = dict[str, list[tuple[Any, ...]]]
#: Every kind a facts query filters on (with ``skip_absent=False``: as if all were present).
_EVERY_KIND = frozenset(
    {"stage_attempt_start", "edge_selected", "branch_progress", "branch_liveness", *STOP_EVENTS}
)


@dataclass(frozen=True)
class _FleetRows:
    """What every query returned, grouped by run id (``summary`` holds one row per run)."""

    summary: dict[str, tuple[Any, ...]]
    by_type: _Rows
    edges: _Rows
    stats: _Rows
    open_attempts: _Rows
    phases: _Rows
    branch_done: _Rows
    endings: _Rows
    branches: _Rows
    #: run_id -> (first ts, last ts, last non-heartbeat ts) over every scope of the run
    activity: dict[str, tuple[Any, Any, Any]]
    # Extra facts for reports: when each node's attempts ran, and what its failures said.
    spans: _Rows
    reasons: _Rows
    #: run_id -> fact name -> how many per-node rows were cut (``rows_omitted``)
    omitted: dict[str, dict[str, int]]
    #: run_id -> the top-level scope the run worked in last
    current_scope: dict[str, str]


def _query_fleet(tables: Tables, *, skip_absent: bool = True) -> _FleetRows:
    """Phase 1: run every query once over all runs, in the order the facts need them.

    A query over events of kinds the runs do not have (``attempts`` is built from
    ``stage_attempt_start`` events) would return no row: it is not run.
    """
    omitted: dict[str, dict[str, int]] = {}
    ev = _event_rows(tables)
    tables.event_kinds = kinds = ev.kinds
    failed = ev.failed_ends
    if not skip_absent:  # every query, as a test compares
        kinds, failed = _EVERY_KIND, True
    attempts = "stage_attempt_start" in kinds
    return _FleetRows(
        summary=ev.summary,
        by_type=ev.by_type,
        edges=_bounded(
            tables,
            "edges",
            _EDGES_SQL,
            keep="n DESC, from_node, to_node",
            order="run_id, n DESC, from_node, to_node",
            omitted=omitted,
        )
        if "edge_selected" in kinds
        else {},
        stats=_bounded(
            tables,
            "attempt_stats",
            _STATS_SQL,
            keep="total DESC, scope, node_id",
            order="run_id, scope, total DESC, node_id",
            omitted=omitted,
        )
        if attempts
        else {},
        open_attempts=_per_run(tables.sql(_OPEN_ATTEMPTS_SQL)) if attempts else {},
        phases=_phases(tables, omitted) if attempts else {},
        branch_done=_per_run(tables.sql(_BRANCH_DONE_SQL))
        if kinds & {"branch_progress", "branch_liveness"}
        else {},
        endings=_per_run(tables.sql(_ENDINGS_SQL)) if kinds & set(STOP_EVENTS) else {},
        branches=ev.branches,
        activity=ev.activity,
        spans=_bounded(
            tables,
            "attempt_spans",
            _SPANS_SQL,
            keep="n DESC, first_ns, scope, node_id",
            order="run_id, scope, first_ns, node_id",
            omitted=omitted,
        )
        if attempts
        else {},
        reasons=_per_run(tables.sql(_REASONS_SQL)) if attempts and failed else {},
        omitted=omitted,
        current_scope=ev.current_scope,
    )


def _max(values: list[Any]) -> Any:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _min(values: list[Any]) -> Any:
    present = [v for v in values if v is not None]
    return min(present) if present else None


@dataclass(frozen=True)
class _EventRows:
    """What :func:`_event_rows` returns (see there)."""

    summary: dict[str, tuple[Any, ...]]
    by_type: _Rows
    branches: _Rows
    kinds: frozenset[str]
    activity: dict[str, tuple[Any, Any, Any]]
    #: Whether a ``stage_attempt_end`` says ``fail`` or ``retry`` (as written): without one,
    #: no attempt did (:data:`_REASONS_SQL` has no row).
    failed_ends: bool
    #: run_id -> the top-level scope the run worked in last (``current_node``'s).
    current_scope: dict[str, str]


def _event_rows(tables: Tables) -> _EventRows:
    """Each run's summary row, its event counts (top-level stream, the most frequent first)
    and its branches' rows (in scope order), from one read of every event line
    (:data:`_COUNTS_SQL`) and one of the non-heartbeat rows (:data:`_MARKS_SQL`).

    A summary is ``(first ts, last ts, last non-heartbeat ts, events, attempt starts,
    attempt ends, latest node, last heartbeat ts)``, times in epoch nanoseconds; a branch row
    ``(scope, last non-heartbeat ts, last ts, first ts, attempt starts, failed or retried
    ends, status of the last end, last attempt start ts)``. Then every event kind of the runs
    (any scope), and each run's ``(first, last, last non-heartbeat)`` times over all its scopes
    (what a scan keeps of its activity, :func:`doctor._scan_fleet._activity`), whether an
    attempt end failed, and the top-level scope holding the latest node (the one the run worked
    in last).
    """
    groups: dict[tuple[str, str], list[tuple[Any, ...]]] = defaultdict(list)
    tops: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    top_scopes: set[tuple[str, str]] = set()
    kinds: set[str] = set()
    every: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for run_id, scope, top, hb, event, n, first, last, present in tables.sql(_COUNTS_SQL):
        kinds.update(present)
        row = (hb, event, int(n), first, last)
        every[run_id].append(row)
        if top:
            tops[run_id].append(row)
            top_scopes.add((run_id, scope))
        else:
            groups[(run_id, scope)].append(row)
    marks = {(r[0], r[1]): r[2:] for r in tables.sql(_MARKS_SQL)}
    # The run's latest node: that of the latest row naming one, over its top-level scopes:
    # the last in its stream, and of the scopes the one whose row is the latest in time (a
    # resume of a restarted run goes on in the base directory, after its restart-N's rows).
    # That scope is the one the run worked in last (its current logs root).
    latest: dict[str, tuple[tuple[int, int], Any, str]] = {}
    for key, (seq, node, _, _, ts) in marks.items():
        when = (-1 if ts is None else int(ts), int(seq) if seq is not None else -1)
        if key in top_scopes and seq is not None and when > latest.get(key[0], ((-2, -2),))[0]:
            latest[key[0]] = (when, node, key[1])
    summary: dict[str, tuple[Any, ...]] = {}
    by_type: _Rows = {}
    for run_id, rows in tops.items():
        summary[run_id] = (
            *_times(rows),
            sum(n for _, _, n, _, _ in rows),
            sum(n for _, e, n, _, _ in rows if e == "stage_attempt_start"),
            sum(n for _, e, n, _, _ in rows if e == "stage_attempt_end"),
            latest.get(run_id, (None, None))[1],
            _max([last for hb, _, _, _, last in rows if hb]),
        )
        counts: dict[str, int] = defaultdict(int)
        for _, event, n, _, _ in rows:
            counts[event] += n
        by_type[run_id] = sorted(counts.items(), key=lambda c: (-c[1], c[0]))
    branches: _Rows = defaultdict(list)
    for (run_id, scope), rows in sorted(groups.items()):
        _, _, ends, last_status, _ = marks.get((run_id, scope), (None, None, 0, None, None))
        first, last, last_progress = _times(rows)
        starts = sum(n for _, e, n, _, _ in rows if e == "stage_attempt_start")
        last_start = _max([last for _, e, _, _, last in rows if e == "stage_attempt_start"])
        branches[run_id].append(
            (scope, last_progress, last, first, starts, ends, last_status, last_start)
        )
    activity = {run_id: _times(rows) for run_id, rows in every.items()}
    failed_ends = any(m[2] for m in marks.values())
    current = {run_id: row[2] for run_id, row in latest.items()}
    return _EventRows(summary, by_type, branches, frozenset(kinds), activity, failed_ends, current)


def _times(rows: list[tuple[Any, ...]]) -> tuple[Any, Any, Any]:
    """``(first, last, last non-heartbeat)`` of ``(hb, event, n, first, last)`` rows."""
    return (
        _min([first for _, _, _, first, _ in rows]),
        _max([last for _, _, _, _, last in rows]),
        _max([last for hb, _, _, _, last in rows if not hb]),
    )


def _bounded(
    tables: Tables,
    name: str,
    query: str,
    *,
    keep: str,
    order: str,
    omitted: dict[str, dict[str, int]],
) -> dict[str, list[tuple[Any, ...]]]:
    """Per run, the rows of ``query`` (run_id first): at most :data:`MAX_NODE_ROWS`, those
    first in ``keep`` order, returned in ``order``; ``omitted[run_id][name]`` counts the rest.
    The cut is made in DuckDB, so a run of many nodes never has all its rows in Python."""
    rows = tables.sql(f"""
        SELECT *, count(*) OVER (PARTITION BY run_id) AS _total FROM ({query})
        QUALIFY row_number() OVER (PARTITION BY run_id ORDER BY {keep}) <= {MAX_NODE_ROWS}
        ORDER BY {order}""")
    out: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for row in rows:
        if row[-1] > MAX_NODE_ROWS:
            omitted.setdefault(row[0], {})[name] = int(row[-1]) - MAX_NODE_ROWS
        out[row[0]].append(row[1:-1])
    return out


def _phases(tables: Tables, omitted: dict[str, dict[str, int]]) -> dict[str, list[tuple[Any, ...]]]:
    """Per run, its node families' attempts (family, first start, last end, open): the open
    ones and then the longest, at most :data:`MAX_NODE_ROWS`."""
    return _bounded(
        tables,
        "phases",
        _PHASES_SQL,
        keep="is_open DESC, last_ns - first_ns DESC, family",
        order="run_id, first_ns, family",
        omitted=omitted,
    )
