"""Run facts and run state (FINDINGS.md, "facts" and "state"), for many runs at once.

Every query groups by ``run_id``, so facts for a fleet cost one pass per query, not one per
run. The *top-level stream* of a run is its ``progress.ndjson`` plus those of its
``restart-N/`` directories (one logical run loop); branches are reported under ``branches``.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from doctor._config import DoctorConfig
from doctor._documents import TERMINAL_STATUSES, RunDocuments
from doctor._layout import is_top_scope
from doctor._tables import HEARTBEAT_SQL, Tables
from rundoctor.liveness import owner_alive

__all__ = [
    "ATTEMPTS_OPEN_SQL",
    "BRANCH_LIFECYCLE_SQL",
    "LATEST_ATTEMPTS_SQL",
    "STOP_EVENTS",
    "STOP_EVENTS_SQL",
    "TOP_SQL",
    "RunFacts",
    "compute_facts",
    "family_of",
    "iso",
    "parse_iso",
    "scope_state",
    "signal_stop",
]

#: ``failure_reasons`` keeps at most this many (scope, node, reason) rows per run.
MAX_FAILURE_REASONS = 200
#: ``attempt_stats``, ``attempt_spans``, ``phases`` and ``edges`` keep at most this many rows
#: per run (the rest are counted in ``rows_omitted``): a run of 380,000 distinct nodes would
#: otherwise build (and print) over a million rows, past the memory budget.
MAX_NODE_ROWS = 1000

#: SQL predicate over ``scope``: the run's own stream and its loop restarts.
TOP_SQL = "(scope = '' OR regexp_full_match(scope, 'restart-[0-9]+'))"
#: SQL expression: the node an event names.
NODE_SQL = "coalesce(node_id, to_node)"
#: SQL: per run and scope, ``went_on``: when the run went on past what the scope's unended
#: attempts could still be doing. That is the latest attempt start in the run's top-level
#: scopes other than the one the scope belongs to (itself, or the ``restart-N`` or base
#: directory its branch directory lies under): Kilroy's run loop works in one top-level scope
#: at a time, a ``loop_restart`` takes it to ``restart-N/``, and ``kilroy attractor resume``
#: of a restarted run back to the base directory (real run ``loop_restart_resumed``). Or the
#: run's last terminal event (``run_completed``/``run_failed`` in its top-level scopes) or
#: the latest recorded ``timestamp`` of a top-level final.json (table ``finals``): the process
#: that wrote it had ended every attempt it ran, so a start before it without an end was its
#: killed predecessor's; the resume need not run that node again in the same place (a
#: concurrent region killed and resumed runs as a fan-out, its nodes in branch directories:
#: real run ``concurrent_killed_resumed``), and a resume that fails before the engine starts
#: writes a final.json and no event (real run ``resume_no_git``). NULL when none exists. An
#: attempt that started before ``went_on`` and never ended was left behind by its dead process.
_WENT_ON_SQL = f"""
    WITH s AS (SELECT run_id, scope, max(start_ts) AS last_start FROM attempts GROUP BY ALL),
    t AS (SELECT * FROM s WHERE {TOP_SQL}),
    elsewhere AS (
        SELECT s.run_id, s.scope, max(t.last_start) AS went_on
        FROM s JOIN t ON t.run_id = s.run_id
         AND t.scope <> regexp_extract(s.scope, '^(restart-[0-9]+)(/|$)', 1)
        GROUP BY ALL),
    ended AS (
        SELECT run_id, max(ended_at) AS ended_at FROM (
            SELECT run_id, ts AS ended_at FROM progress_events
            WHERE {TOP_SQL} AND event IN ('run_completed', 'run_failed')
            UNION ALL
            SELECT run_id, make_timestamp_ns(ts_ns) FROM finals WHERE {TOP_SQL})
        GROUP BY ALL)
    SELECT s.run_id, s.scope, greatest(x.went_on, e.ended_at) AS went_on
    FROM s LEFT JOIN elsewhere x USING (run_id, scope) LEFT JOIN ended e USING (run_id)"""
#: SQL over rows of ``attempts`` joined to :data:`_WENT_ON_SQL` as ``w``: the attempt started
#: before the run went on in another of its top-level scopes.
_LEFT_BEHIND_SQL = "coalesce(a.start_ts < w.went_on, false)"
#: SQL: each node's latest attempt in each scope (rows of ``attempts``), with ``is_open``. An
#: *open attempt* is such a row without an end, unless the run went on in another of its
#: top-level scopes, or ended, after it started (:data:`_WENT_ON_SQL`). So neither a start
#: that a resume superseded (its process killed before it could end; real resumed runs start
#: the node again) nor one in a ``restart-N`` scope that a resume left for the base directory,
#: nor one a resume that then ended never ran again, is open work.
LATEST_ATTEMPTS_SQL = f"""
    SELECT a.*, a.end_seq IS NULL AND NOT {_LEFT_BEHIND_SQL} AS is_open
    FROM (SELECT * FROM attempts QUALIFY row_number() OVER (
              PARTITION BY run_id, scope, node_id ORDER BY start_seq DESC) = 1) a
    LEFT JOIN ({_WENT_ON_SQL}) w ON w.run_id = a.run_id AND w.scope = a.scope"""
#: SQL: every row of ``attempts`` with ``is_open`` as :data:`LATEST_ATTEMPTS_SQL` defines it
#: (false for all but a node's latest start in its scope).
ATTEMPTS_OPEN_SQL = f"""
    SELECT a.*, a.end_seq IS NULL
               AND a.start_seq = max(a.start_seq) OVER (PARTITION BY a.run_id, a.scope, a.node_id)
               AND NOT {_LEFT_BEHIND_SQL} AS is_open
    FROM attempts a LEFT JOIN ({_WENT_ON_SQL}) w ON w.run_id = a.run_id AND w.scope = a.scope"""

_ROLE = re.compile(r"^(?:impl|implement|verify|check|fix|review|test|plan)_(.+)$")


def family_of(node_id: str) -> str:
    """The node family a phase is reported under: the node id without its role prefix.

    >>> family_of("verify_scaffold"), family_of("fanout")
    ('scaffold', 'fanout')
    """
    m = _ROLE.match(node_id)
    return m.group(1) if m else node_id


def iso(ns: int | None) -> str | None:
    """Nanoseconds since the epoch as RFC 3339 UTC, trailing zeros trimmed like Kilroy's.

    >>> iso(1770741731818881199)
    '2026-02-10T16:42:11.818881199Z'
    >>> iso(1770696025000000000)
    '2026-02-10T04:00:25Z'
    """
    if ns is None:
        return None
    secs, frac = divmod(int(ns), 1_000_000_000)
    base = datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    digits = f"{frac:09d}".rstrip("0")
    return f"{base}.{digits}Z" if digits else f"{base}Z"


_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)")


def parse_iso(text: object) -> int | None:
    """RFC 3339 (up to nanoseconds, ``Z`` or an offset) to epoch nanoseconds; the inverse of
    :func:`iso`. ``None`` when it does not parse.

    >>> parse_iso("2026-02-10T16:42:11.818881199Z")
    1770741731818881199
    >>> parse_iso("2026-02-10T18:42:11.5+02:00") == parse_iso("2026-02-10T16:42:11.5Z")
    True
    >>> parse_iso("yesterday") is None
    True
    """
    m = _RFC3339.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        return None
    zone = "+00:00" if m[3] == "Z" else m[3]
    try:
        secs = int(datetime.fromisoformat(m[1] + zone).timestamp())
    except ValueError:
        return None
    return secs * 1_000_000_000 + int((m[2] or "").ljust(9, "0"))


def _seconds(a: int | None, b: int | None) -> float | None:
    if a is None or b is None:
        return None
    return round((int(b) - int(a)) / 1e9, 3)


class RunFacts(dict[str, Any]):
    """The ``facts`` object of one run, plus private keys (prefixed ``_``) for detectors."""

    def public(self) -> dict[str, Any]:
        return {k: v for k, v in self.items() if not k.startswith("_")}


def _per_run(rows: list[tuple[Any, ...]]) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for row in rows:
        out[row[0]].append(row[1:])
    return out


#: Events that end a Kilroy run loop: its terminal events and the stops that cause them.
STOP_EVENTS = (
    "run_completed",
    "run_failed",
    "deterministic_failure_cycle_breaker",
    "stuck_cycle_breaker",
    "stall_watchdog_timeout",
    "loop_restart_blocked",
    "loop_restart_circuit_breaker",
)
STOP_EVENTS_SQL = "(" + ", ".join(f"'{e}'" for e in STOP_EVENTS) + ")"

# The queries behind the facts, one row group per run (the run id comes first).
# Every event line is read once: counted and timed per (scope, event) from the base table
# (grouping its small stream id, then naming it), which is what the run's summary, its event
# counts and its branches' times need; the rest comes from the non-heartbeat rows. A branch
# scope needs no more than its heartbeats, its attempt starts and its other events apart: its
# rows are summed to those three (``event`` kept for starts only), however many kinds it has.
_COUNTS_SQL = f"""
        WITH g AS (
            SELECT stream_id, event, count(*) AS n, min(ts) AS first_ts, max(ts) AS last_ts
            FROM events_base WHERE event IS NOT NULL GROUP BY ALL
        ),
        named AS (
            SELECT s.run_id, s.scope, {TOP_SQL} AS top, {HEARTBEAT_SQL} AS hb, g.event, g.n,
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
_STATS_SQL = """
        SELECT run_id, scope, node_id, count(*), min(duration_s), median(duration_s),
               max(duration_s), sum(duration_s) AS total
        FROM attempts WHERE duration_s IS NOT NULL GROUP BY ALL"""
_OPEN_ATTEMPTS_SQL = f"""
        SELECT run_id, node_id, epoch_ns(start_ts) FROM ({LATEST_ATTEMPTS_SQL})
        WHERE is_open AND {TOP_SQL} ORDER BY run_id, start_seq"""
#: Events by which a parent forwards its branches' lifecycle: ``branch_progress`` since about
#: 2026-02-11, ``branch_liveness`` in the builds of 2026-02-10/11 (format doc §2.6), which
#: carries ``branch_key``, ``branch_logs_root`` and ``branch_event`` only (no status).
BRANCH_LIFECYCLE_SQL = "('branch_progress', 'branch_liveness')"
_BRANCH_DONE_SQL = f"""
        SELECT run_id, scope, branch_logs_root, branch_key, arg_max(branch_status, seq),
               epoch_ns(max(ts))
        FROM progress_events
        WHERE event IN {BRANCH_LIFECYCLE_SQL} AND branch_event = 'branch_subgraph_done'
        GROUP BY ALL"""
# The run's stops and terminal events in the order it wrote them: by time over its top-level
# streams (seq orders a stream, not streams: a resume of a restarted run goes on in the base
# directory, after the restart-N's own stop), by place in the stream on a tie.
_ENDINGS_SQL = f"""
        SELECT run_id, event, coalesce(reason, failure_reason), seq FROM progress_events
        WHERE {TOP_SQL} AND event IN {STOP_EVENTS_SQL}
        ORDER BY run_id, ts, seq"""
# The spans' and the phases' "open" is the open attempt (ATTEMPTS_OPEN_SQL).
_SPANS_SQL = f"""
        SELECT run_id, scope, node_id, count(*) AS n, count(*) FILTER (WHERE is_open),
               epoch_ns(min(start_ts)) AS first_ns, epoch_ns(max(end_ts))
        FROM ({ATTEMPTS_OPEN_SQL}) GROUP BY ALL"""
_REASONS_SQL = f"""
        SELECT * FROM (
            SELECT run_id, scope, node_id, coalesce(failure_reason, '') AS reason, count(*) AS n
            FROM attempts WHERE status IN ('fail', 'retry') GROUP BY ALL)
        -- cut here, not in Python: a run of many failing nodes has a row for each
        QUALIFY row_number() OVER (PARTITION BY run_id ORDER BY n DESC, scope, node_id, reason)
            <= {MAX_FAILURE_REASONS}
        ORDER BY run_id, n DESC, scope, node_id, reason"""

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
    (what a scan keeps of its activity, :func:`doctor._scan._activity`), whether an attempt end
    failed, and the top-level scope holding the latest node (the one the run worked in last).
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


def compute_facts(
    tables: Tables, config: DoctorConfig, *, skip_absent: bool = True
) -> dict[str, RunFacts]:
    """Facts and state of every run in ``tables`` (recording its event kinds in
    ``tables.event_kinds``). ``skip_absent=False`` runs even the queries over event kinds the
    runs do not have, which return no row (a test compares)."""
    rows = _query_fleet(tables, skip_absent=skip_absent)
    return {
        run_id: _run_facts(run_id, docs, rows, config) for run_id, docs in tables.documents.items()
    }


def _run_facts(run_id: str, docs: RunDocuments, rows: _FleetRows, config: DoctorConfig) -> RunFacts:
    """Phase 2, per run: the public facts from its rows, then its ending, state, branches
    and the private keys the detectors read."""
    started, last_event, last_progress, n, starts, ends, node, last_hb = rows.summary.get(
        run_id, (None, None, None, 0, 0, 0, None, None)
    )
    alive = owner_alive(docs.pid, docs.pid_start_time)
    final = docs.final
    facts = RunFacts(
        started_at=iso(started),
        last_event_at=iso(last_event),
        last_progress_at=iso(last_progress),
        wall_s=_seconds(started, last_event),
        events=int(n),
        events_by_type={e: int(c) for e, c in rows.by_type.get(run_id, [])},
        attempts_started=int(starts),
        attempts_ended=int(ends),
        final_json=final is not None and final.ok and isinstance(final.value, dict),
        owner_pid=docs.pid,
        owner_alive=alive,
        current_node=_current_node(node, rows.open_attempts.get(run_id, []), docs),
        edges=[{"from": f, "to": t, "count": int(c)} for f, t, c in rows.edges.get(run_id, [])],
        phases=_phase_rows(rows.phases.get(run_id, []), started, last_event),
        branches=[],
        attempt_stats=_attempt_stats(rows.stats.get(run_id, [])),
        cost_usd=docs.cost_usd,
        attempt_spans=_attempt_spans(rows.spans.get(run_id, [])),
        failure_reasons=_failure_reasons(rows.reasons.get(run_id, [])),
    )
    stall = docs.stall_timeout_s or config.stall_timeout_s
    facts["stall_timeout_s"] = stall
    final_status = final.get("status") if facts["final_json"] and final else None
    facts["terminal_reason"], facts["stopped_by"] = _ending(
        final_status,
        final.get("failure_reason") if facts["final_json"] and final else None,
        rows.endings.get(run_id, []),
    )
    facts["_state"] = run_state(
        final_status=final_status,
        owner_alive=alive,
        last_progress=last_progress,
        last_event=last_event,
        stall_timeout_s=stall,
        now=config.now,
        owner_since=docs.owner_since,
    )
    facts["branches"] = _branch_facts(
        docs, rows, run_id, _Liveness(alive=alive, stall=stall, now=config.now)
    )
    facts["_last_heartbeat_at"] = iso(last_hb)
    facts["_open_attempts"] = [a[0] for a in rows.open_attempts.get(run_id, [])]
    # The top-level scope ("" or "restart-N") the run worked in last: its current logs root,
    # where current_node was taken from; None when no top-level event names a node.
    facts["_current_scope"] = rows.current_scope.get(run_id)
    # For a scan's cache (doctor._scan): the run's times over all its scopes, and each
    # branch's last event (either would be a statement of its own there).
    facts["_activity"] = rows.activity.get(run_id, (None, None, None))
    facts["_branch_last_event"] = {b[0]: b[2] for b in rows.branches.get(run_id, [])}
    if run_id in rows.omitted:
        facts["rows_omitted"] = rows.omitted[run_id]
    return facts


def _attempt_stats(stats: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """``attempt_stats``: count and duration spread of each (scope, node)'s attempts."""
    return [
        {
            "scope": scope,
            "node_id": nid,
            "attempts": int(c),
            "min_s": round(mn, 3),
            "median_s": round(md, 3),
            "max_s": round(mx, 3),
            "total_s": round(tot, 3),
        }
        for scope, nid, c, mn, md, mx, tot in stats
    ]


def _attempt_spans(spans: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """``attempt_spans``: when each (scope, node)'s attempts ran, and how many are open."""
    return [
        {
            "scope": scope,
            "node_id": nid,
            "attempts": int(c),
            "open": int(n_open),
            "first_start": iso(first),
            "last_end": iso(last),
        }
        for scope, nid, c, n_open, first, last in spans
    ]


def _failure_reasons(reasons: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """``failure_reasons``: what the failed attempts said, the most frequent first; capped,
    so a run whose reasons never repeat (what fragmentation looks like) keeps a bounded
    diagnosis."""
    return [
        {"scope": scope, "node_id": nid, "reason": reason, "count": int(c)}
        for scope, nid, reason, c in reasons[:MAX_FAILURE_REASONS]
    ]


@dataclass(frozen=True)
class _Liveness:
    """What a branch's state is judged against: its run's owner, stall timeout and now."""

    alive: bool | None
    stall: float
    now: float


def _branch_facts(
    docs: RunDocuments, rows: _FleetRows, run_id: str, live: _Liveness
) -> list[dict[str, Any]]:
    """``branches``: each branch scope's state (as its parent recorded it, else its own
    liveness) and its progress."""
    done = _DoneRecords(rows.branch_done.get(run_id, []))
    return [
        {
            "scope": scope,
            "state": _recorded_state(docs, done, scope, last_start, last_status)
            or _branch_state(docs, scope, live, last_progress=lp, last_event=le),
            "final_json": _scope_final_ok(docs, scope),
            "last_progress_at": iso(lp),
            "started_at": iso(first),
            "attempts_started": int(bs),
            "failures": int(bf),
            "last_status": last_status,
        }
        for scope, lp, le, first, bs, bf, last_status, last_start in rows.branches.get(run_id, [])
    ]


_SUCCESS_LIKE = ("success", "partial_success", "degraded_success", "skipped")


def _ending(
    status: Any, final_reason: Any, events: list[tuple[Any, ...]]
) -> tuple[str | None, str | None]:
    """The run's terminal reason and the stop that ended it.

    The reason is final.json's ``failure_reason``, else the ``run_failed`` ``reason`` of the
    run's last ending; a run that succeeded has none. ``stopped_by`` names the stop event of
    that ending (a breaker, the stall watchdog, a blocked loop_restart), ``signal`` for
    Kilroy's "stopped by signal" ending, and is null for a run nothing stopped. An ending
    before the last one (the watchdog, then ``kilroy attractor resume``, then a signal)
    belongs to an earlier attempt of the run: see :func:`_last_ending`.

    >>> _ending("fail", None, [("stall_watchdog_timeout", None, 1),
    ...                        ("run_failed", "stall watchdog timeout after 3s", 2)])
    ('stall watchdog timeout after 3s', 'stall_watchdog_timeout')
    >>> _ending("success", None, [("run_completed", None, 9)])
    (None, None)
    >>> _ending("fail", "stopped by signal terminated",
    ...         [("stall_watchdog_timeout", None, 1), ("run_failed", "stall …", 2),
    ...          ("run_failed", "stopped by signal terminated", 40)])
    ('stopped by signal terminated', 'signal')
    """
    if status == "success":
        return None, None
    last = _last_ending(events)
    failed_reasons = [r for e, r, _ in last if e == "run_failed" and r]
    reason = final_reason if isinstance(final_reason, str) and final_reason else None
    if reason is None and failed_reasons:
        reason = failed_reasons[-1]
    stops = [e for e, _, _ in last if e not in _TERMINAL_EVENTS]
    stopped_by: str | None = stops[-1] if stops else None
    if stopped_by is None and signal_stop(reason):
        stopped_by = "signal"
    return reason, stopped_by


_TERMINAL_EVENTS = ("run_completed", "run_failed")


def signal_stop(reason: object) -> bool:
    """Whether a failure reason is Kilroy's "stopped by signal" ending, said by the run or
    wrapped by the construct the signal ended (a concurrent region: ``concurrent region "c1"
    failed: branch node a failed: stopped by signal terminated``, real run
    ``concurrent_sigterm``; Go wraps errors as ``context: cause``).

    >>> signal_stop("stopped by signal terminated")
    True
    >>> signal_stop('concurrent region "c1" failed: branch node a failed: stopped by signal '
    ...             'interrupt')
    True
    >>> signal_stop("exit status 1"), signal_stop(None)
    (False, False)
    """
    if not isinstance(reason, str):
        return False
    return reason.startswith("stopped by signal") or ": stopped by signal" in reason


def _last_ending(events: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The stops and terminal event of the run's last ending, of its ``events`` in time order.

    A terminal event (``run_completed``, ``run_failed``) closes an ending; the stops before it,
    after the terminal event before, are that ending's. A resumed run appends its own ending
    after the one it resumed from (in the base directory, or after a ``restart-N``'s), so only
    the last counts; stops after the last terminal event (a stop whose ``run_failed`` was never
    written) are the last ending.

    >>> _last_ending([("stuck_cycle_breaker", None, 1), ("run_failed", "x", 2),
    ...               ("run_completed", None, 9)])
    [('run_completed', None, 9)]
    >>> _last_ending([("run_failed", "x", 2), ("stall_watchdog_timeout", None, 9)])
    [('stall_watchdog_timeout', None, 9)]
    """
    ends = [i for i, (event, *_) in enumerate(events) if event in _TERMINAL_EVENTS]
    if not ends:
        return events
    if ends[-1] < len(events) - 1:
        return events[ends[-1] + 1 :]
    return events[ends[-2] + 1 :] if len(ends) > 1 else events


_MAX_RESULTS_BYTES = 8 * 1024 * 1024
_FANOUT_SCOPE = re.compile(r"(?:(?P<prefix>.*)/)?parallel/(?P<fanout>[^/]+)/(?:pass\d+/)?[^/]+")


class _DoneRecords:
    """A run's ``branch_subgraph_done`` records ``(parent, logs_root, key, status, ns)``,
    indexed by the branch scopes each can name (see :func:`_names`): a fan-out of B branches
    finds each branch's records at once, where trying every record for every branch took
    B² :func:`_names` calls (3,000 branches: 12 million, 20 s).

    >>> done = _DoneRecords([("", "/r/parallel/p/pass1/01-a", "a", "success", 1),
    ...                      ("", None, "b", "fail", 2)])
    >>> done.of("parallel/p/pass1/01-a"), done.of("parallel/p/pass1/02-b"), done.of("x")
    ([(1, 'success')], [(2, 'fail')], [])
    """

    def __init__(self, records: list[tuple[Any, ...]]) -> None:
        self._by_suffix: dict[str, list[int]] = {}
        self._by_key: dict[str, list[int]] = {}
        self._records = records
        #: Each fan-out's parallel_results.json, read once for all its branches.
        self.results: dict[Path, dict[str, Any] | None] = {}
        for i, (_parent, root, key, _status, _ns) in enumerate(records):
            if isinstance(root, str) and root:
                # _names: the root ends with "/" + scope, so the scope is a suffix of it
                # starting after one of its slashes.
                parts = root.rstrip("/").split("/")
                for j in range(1, len(parts)):
                    self._by_suffix.setdefault("/".join(parts[j:]), []).append(i)
            elif isinstance(key, str):
                self._by_key.setdefault(key, []).append(i)

    def of(self, scope: str) -> list[tuple[Any, Any]]:
        """``(ns, status)`` of the records of branch ``scope``, in the records' order."""
        key = scope.rsplit("/", 1)[-1].split("-", 1)[-1]
        found = set(self._by_suffix.get(scope, ())) | set(self._by_key.get(key, ()))
        return [
            (ns, st)
            for i in sorted(found)
            for parent, root, key, st, ns in (self._records[i],)
            if _names(parent, root, key, scope)
        ]


def _recorded_state(
    docs: RunDocuments,
    done: _DoneRecords,
    scope: str,
    last_start: int | None,
    last_status: Any = None,
) -> str | None:
    """A Kilroy branch's outcome as its parent recorded it: the parent stream's latest
    ``branch_subgraph_done`` for it, else its fan-out's ``parallel_results.json``. A record
    without a status (``branch_liveness``, 2026-02-10/11 builds) says the branch finished;
    its outcome is then that of its last attempt (``last_status``), what its subgraph
    returned.

    None when there is neither, or when the branch started an attempt after that record:
    ``kilroy attractor resume`` of a run killed mid-fan-out dispatches the fan-out again into
    the same ``passN/`` directories (real run ``fanout_resumed_killed``), so the record (and
    the results of any join before it) are of the dispatch before, and the branch's state is
    its own stream's.
    """
    records = done.of(scope)
    if not records:
        return _results_state(docs.path, scope, done.results)
    done_ns, status = max(records, key=lambda r: -1 if r[0] is None else int(r[0]))
    if done_ns is not None and last_start is not None and int(done_ns) < int(last_start):
        return None
    return _outcome_state(status) or _outcome_state(last_status)


def _results_state(
    run_path: Path, scope: str, read: dict[Path, dict[str, Any] | None] | None = None
) -> str | None:
    """A Kilroy branch's outcome from its fan-out's ``parallel_results.json`` (format doc §3.8).

    The fan-out node's directory (``[restart-N/]<fanout>/``) holds one entry per branch of the
    latest pass, each with the branch's ``logs_root`` and the ``outcome`` of its last node.
    Only read when the parent stream has no ``branch_subgraph_done`` for the branch; ``read``
    keeps each file's entries for the fan-out's other branches (:func:`_results_of`).

    >>> _results_state(Path("/nonexistent"), "parallel/par/pass1/01-a") is None
    True
    """
    m = _FANOUT_SCOPE.fullmatch(scope)
    if m is None:
        return None
    base = run_path / m["prefix"] if m["prefix"] else run_path
    path = base / m["fanout"] / "parallel_results.json"
    read = {} if read is None else read
    if path not in read:
        read[path] = _results_of(path)
    statuses = read[path]
    return None if statuses is None else _outcome_state(statuses.get(scope))


def _results_of(path: Path) -> dict[str, Any] | None:
    """``path``'s entries as the status of the last one naming each scope (every scope its
    ``logs_root`` can name, as :func:`_names` matches), None when it cannot be read."""
    try:
        if (
            path.parent.is_symlink()
            or path.is_symlink()
            or not path.is_file()
            or path.stat().st_size > _MAX_RESULTS_BYTES
        ):
            return None
        entries = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(entries, list):
        return None
    statuses: dict[str, Any] = {}
    for e in entries:
        if not isinstance(e, dict) or not isinstance(e.get("outcome") or {}, dict):
            continue
        root = e.get("logs_root")
        if isinstance(root, str) and root:
            parts = root.rstrip("/").split("/")
            for k in range(1, len(parts)):
                statuses["/".join(parts[k:])] = (e.get("outcome") or {}).get("status")
    return statuses


def _names(parent: Any, logs_root: Any, key: Any, scope: str) -> bool:
    """Whether a parent's record of a branch (its ``branch_subgraph_done``, or an entry of its
    ``parallel_results.json``) is of branch ``scope``.

    Matched on ``branch_logs_root`` (the branch's absolute directory, which ends with the
    scope), else on the branch key at the end of the scope under the same parent.

    >>> _names("", "/tmp/r/parallel/par/pass1/01-a", "a", "parallel/par/pass1/01-a")
    True
    >>> _names("", None, "a", "parallel/par/pass1/02-b")
    False
    """
    if isinstance(logs_root, str) and logs_root:
        return logs_root.rstrip("/").endswith("/" + scope)
    return (
        isinstance(key, str)
        and scope.startswith(f"{parent}/" if parent else "")
        and scope.rsplit("/", 1)[-1].split("-", 1)[-1] == key
    )


def _outcome_state(status: Any) -> str | None:
    """The branch state a recorded outcome status means; None for no status."""
    if not isinstance(status, str) or not status:
        return None
    status = status.strip().lower()
    if status in _SUCCESS_LIKE:
        return "succeeded"
    return "canceled" if status in ("canceled", "cancelled") else "failed"


def _scope_final_ok(docs: RunDocuments, scope: str) -> bool:
    sd = docs.scopes.get(scope)
    return bool(sd and sd.final and sd.final.ok and isinstance(sd.final.value, dict))


def _current_node(
    node: str | None, open_attempts: list[tuple[Any, ...]], docs: RunDocuments
) -> str | None:
    # An open fan-out is where the run is, whatever its branches or stale heartbeats say.
    # The fan-out is the directory after "parallel" in [restart-N/]parallel/<fan>/[passN/]<NN>-<k>.
    fanouts = {
        parts[i + 1]
        for parts in (s.split("/") for s in docs.scopes)
        for i in range(len(parts) - 1)
        if parts[i] == "parallel"
    }
    for nid, _ts in reversed(open_attempts):
        if nid in fanouts:
            return str(nid)
    return node


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


#: :func:`family_of` in SQL (RE2): ``\n?`` because Python's ``$`` also matches before a
#: trailing newline.
_FAMILY_SQL = (
    "coalesce(nullif(regexp_extract(node_id, "
    "'^(?:impl|implement|verify|check|fix|review|test|plan)_(.+)\n?$', 1), ''), node_id)"
)


def _phases(tables: Tables, omitted: dict[str, dict[str, int]]) -> dict[str, list[tuple[Any, ...]]]:
    """Per run, its node families' attempts (family, first start, last end, open): the open
    ones and then the longest, at most :data:`MAX_NODE_ROWS`."""
    return _bounded(
        tables,
        "phases",
        f"""SELECT run_id, {_FAMILY_SQL} AS family, epoch_ns(min(start_ts)) AS first_ns,
               epoch_ns(max(coalesce(end_ts, start_ts))) AS last_ns,
               bool_or(is_open) AS is_open
        FROM ({ATTEMPTS_OPEN_SQL}) WHERE {TOP_SQL}
        GROUP BY ALL""",
        keep="is_open DESC, last_ns - first_ns DESC, family",
        order="run_id, first_ns, family",
        omitted=omitted,
    )


def _phase_rows(
    rows: list[tuple[Any, ...]], started: int | None, last_event: int | None
) -> list[dict[str, Any]]:
    # An open family lasts to the run's last event (every attempt ends by then).
    families = [
        (fam, first, last_event if is_open and last_event is not None else last)
        for fam, first, last, is_open in rows
    ]
    wall = _seconds(started, last_event) or 0.0
    out = []
    for fam, first, last in families:
        span = _seconds(first, last) or 0.0
        out.append(
            {
                "node": fam,
                "first_start": iso(first),
                "last_end": iso(last),
                "wall_s": span,
                "share": round(span / wall, 4) if wall else None,
            }
        )
    return out


def run_state(
    *,
    final_status: Any,
    owner_alive: bool | None,
    last_progress: int | None,
    last_event: int | None,
    stall_timeout_s: float,
    now: float,
    owner_since: int | None = None,
) -> str:
    """The run's state, FINDINGS.md's rules with three readings made explicit.

    * A dead owner means ``orphaned`` even within the stall timeout: nobody is left to write
      ``final.json``.
    * An unknown owner past the stall timeout is ``stalled`` while something (heartbeats)
      still arrives within the timeout, and ``orphaned`` when nothing does.
    * A live owner that took the run (``owner_since``, epoch ns: run.lock.json's
      ``acquired_at``) within the stall timeout is ``running``, though no progress came yet:
      Kilroy runs its preflight, workspace setup and input materialization before its first
      event, and a resume before its first new one (real run ``starting``).

    >>> run_state(final_status="success", owner_alive=None, last_progress=None,
    ...           last_event=None, stall_timeout_s=600, now=0)
    'succeeded'
    >>> run_state(final_status=None, owner_alive=True, last_progress=None, last_event=None,
    ...           stall_timeout_s=600, now=100, owner_since=99 * 10**9)
    'running'
    """
    if final_status in TERMINAL_STATUSES:
        return {"success": "succeeded", "fail": "failed", "canceled": "canceled"}[final_status]
    if owner_alive is False:
        return "orphaned"

    def fresh(ns: int | None) -> bool:
        return ns is not None and now - ns / 1e9 <= stall_timeout_s

    if fresh(last_progress) or (owner_alive and fresh(owner_since)):
        return "running"
    if owner_alive:
        return "stalled"
    return "stalled" if fresh(last_event) else "orphaned"


def _branch_state(
    docs: RunDocuments,
    scope: str,
    live: _Liveness,
    *,
    last_progress: int | None,
    last_event: int | None,
) -> str:
    """A branch scope's state from its own final document and events, like a run's."""
    sd = docs.scopes.get(scope)
    final = sd.final if sd else None
    status = final.get("status") if final is not None and final.ok else None
    return run_state(
        final_status=status,
        owner_alive=live.alive,
        last_progress=last_progress,
        last_event=last_event,
        stall_timeout_s=live.stall,
        now=live.now,
    )


def scope_state(facts: RunFacts, scope: str) -> Any:
    """The state of the run's top level (a restart's is the run's), or of one of its
    branches (None for a scope the facts do not list)."""
    if is_top_scope(scope):
        return facts.get("_state")
    return next((b.get("state") for b in facts.get("branches", []) if b["scope"] == scope), None)


def facts_of(facts: Mapping[str, RunFacts], run_id: str) -> RunFacts:
    return facts.get(run_id, RunFacts())
