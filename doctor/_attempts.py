"""A run's attempts: which are open, and the per-node facts made of them.

An *attempt* is a row of the ``attempts`` table (a ``stage_attempt_start`` and, when there is
one, its ``stage_attempt_end``). Whether an attempt is still *open* (running, for all the
doctor can tell) is decided once, here, in SQL (:data:`LATEST_ATTEMPTS_SQL`,
:data:`ATTEMPTS_OPEN_SQL`), and shared by the facts, the detectors and the timeline. The
per-node facts built on the attempts (``attempt_stats``, ``attempt_spans``, ``phases``,
``failure_reasons``) have their queries here, which :mod:`doctor._fact_queries` runs once over
every run of a batch, and their rows are shaped into facts here.
"""

from __future__ import annotations

import re
from typing import Any

from doctor._layout import TOP_SQL
from doctor._timestamps import _seconds, iso

__all__ = ["ATTEMPTS_OPEN_SQL", "LATEST_ATTEMPTS_SQL", "MAX_FAILURE_REASONS", "family_of"]


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


#: :func:`family_of` in SQL (RE2): ``\n?`` because Python's ``$`` also matches before a
#: trailing newline.
_FAMILY_SQL = (
    "coalesce(nullif(regexp_extract(node_id, "
    "'^(?:impl|implement|verify|check|fix|review|test|plan)_(.+)\n?$', 1), ''), node_id)"
)


#: ``failure_reasons`` keeps at most this many (scope, node, reason) rows per run.
MAX_FAILURE_REASONS = 200


# The per-node queries over the attempts, one row group per run (the run id first), run by
# doctor._fact_queries; the stats', spans' and phases' rows are cut there to MAX_NODE_ROWS
# per run (:func:`doctor._fact_queries._bounded`, keep / order).
_STATS_SQL = """
        SELECT run_id, scope, node_id, count(*), min(duration_s), median(duration_s),
               max(duration_s), sum(duration_s) AS total
        FROM attempts WHERE duration_s IS NOT NULL GROUP BY ALL"""
_OPEN_ATTEMPTS_SQL = f"""
        SELECT run_id, node_id, epoch_ns(start_ts) FROM ({LATEST_ATTEMPTS_SQL})
        WHERE is_open AND {TOP_SQL} ORDER BY run_id, start_seq"""
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
#: Per run, its node families' attempts (family, first start, last end, open).
_PHASES_SQL = f"""SELECT run_id, {_FAMILY_SQL} AS family, epoch_ns(min(start_ts)) AS first_ns,
               epoch_ns(max(coalesce(end_ts, start_ts))) AS last_ns,
               bool_or(is_open) AS is_open
        FROM ({ATTEMPTS_OPEN_SQL}) WHERE {TOP_SQL}
        GROUP BY ALL"""


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
