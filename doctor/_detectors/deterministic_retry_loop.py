"""``deterministic_retry_loop``: the same canonical failure, again and again, and nothing stops it.

The failures of a node in a scope (attempt ends with status ``fail`` or ``retry``) are grouped
by :func:`rundoctor.signature.canonical_signature` of their reason. A failure that a
conditional node merely passes on (the same reason as the attempt just before it, on another
node) is counted for the node that failed, not again for the conditional one. A group of at
least ``breaker_limit`` failures — the run's own limit (the largest ``signature_limit`` its
cycle-check or breaker events state, i.e. the graph's), else ``config.breaker_limit`` — is
reported unless a breaker stopped it or the run stopped on it:

* a *breaker stop*: the loop's stop (the scope's first ending after its last failure:
  :func:`doctor._detectors._stops.loop_stop`) is a
  ``deterministic_failure_cycle_breaker``, ``subgraph_deterministic_failure_cycle_breaker`` or
  ``stuck_cycle_breaker`` event for the node. A breaker event followed by more failures is no
  stop: the finding is reported with ``breaker_tripped: true``;
* the run *stopped on it* when it is terminal (a valid ``final.json``) and the scope's last
  attempt is a failure of the node with that signature, unless a signal or an operator's
  stop ended the loop (its stop says so): one that lands between the failure and the next
  lap leaves that failure last, but the loop would have gone on (real run
  ``goal_gate_loop_sigterm``);
* its *retry budget stopped it*: the failures fall in fewer than ``breaker_limit`` visits and
  the node's last failure was followed by Kilroy's ``retry_decision`` with
  ``will_retry: false`` ("max retries exhausted"): retries inside a visit, bounded by
  ``max_retries``, are what a retry budget is for. Likewise when its last failure was
  followed by a ``retry_decision`` with ``will_retry: true`` and no attempt of the node
  ended after it: the stream stops inside the visit's budget (real run
  ``retries_varying_killed``: SIGKILL in the sleep before the 4th of 6 attempts), which
  bounds the loop as a spent one does.

``breaker_tripped`` is true only when the signature breaker
(``deterministic_failure_cycle_breaker`` or its ``subgraph_`` form) fired for the node between
the loop's first and last failure: the failure went on after it (a breaker before the loop's
first failure, which a resume went on from, is not this loop's). ``stopped_by`` names the
loop's stop (its last stop event, ``signal`` or ``run_failed``), null when none ended it.

A *visit* is a run of consecutive attempts of the node with no other node's attempt and no
hop in between: an ``edge_selected``, or in a branch, which writes none, an
``edge_condition_evaluated`` (Kilroy evaluates edges only once a visit has ended, never between
retries). Attempt numbers are no help: the February 2026 subgraph runner carried them across
loop-backs. A node entered again by a hop is a new visit even when no other node ran between:
a self-loop, or a goal gate whose retry target is the gate node itself (``verify -> exit``,
then the gate's jump back to ``verify``, real run ``goal_gate_transient``; a branch's node
routed back to itself by a condition, real run ``fanout_self_loop``). Failures spread over
``breaker_limit`` visits or more came back through the graph, which is what a cycle breaker
exists for (``error``); fewer visits means retries inside a visit, bounded by the node's retry
budget (``warning``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from doctor._detectors._context import Context, in_scope, needs
from doctor._detectors._stops import (
    Ending,
    exhausted_budgets,
    loop_stop,
    pending_budgets,
    scope_endings,
)
from doctor._facts import facts_of
from doctor._model import Finding, Severity, plural
from doctor._timestamps import iso

__all__ = ["BREAKER_EVENTS", "SIGNATURE_BREAKERS", "deterministic_retry_loop", "visits_sql"]

BREAKER_EVENTS = (
    "deterministic_failure_cycle_breaker",
    "subgraph_deterministic_failure_cycle_breaker",
    "stuck_cycle_breaker",
)
_BREAKERS_SQL = ", ".join(f"'{e}'" for e in BREAKER_EVENTS)


def visits_sql() -> str:
    """SQL: ``attempts`` plus ``visit``, the node's visit number in its scope (1, 2, …): a new
    one after another node's attempt or a hop (``edge_selected``).

    >>> "lag(a.node_id)" in visits_sql() and "edge_selected" in visits_sql()
    True
    """
    return """
    SELECT * EXCLUDE (hopped),
           sum(CASE WHEN prev_node IS DISTINCT FROM node_id OR hopped THEN 1 ELSE 0 END) OVER (
               PARTITION BY run_id, scope, node_id ORDER BY start_seq ROWS UNBOUNDED PRECEDING
           ) AS visit
    FROM (SELECT a.*, lag(a.node_id) OVER w AS prev_node,
                 lag(a.failure_reason) OVER w AS prev_reason, coalesce(h.hopped, false) AS hopped
          FROM attempts a
          LEFT JOIN (
              -- Whether the event before the attempt's start, among attempt starts and hops,
              -- is a hop: a hop came between the scope's previous attempt and this one. A
              -- branch engine writes no edge_selected, only its edge conditions evaluated,
              -- which Kilroy does only once a visit has ended, never between retries.
              SELECT run_id, scope, seq, lag(hop) OVER (
                         PARTITION BY run_id, scope ORDER BY seq) AS hopped, hop
              FROM (SELECT run_id, scope, start_seq AS seq, false AS hop FROM attempts
                    UNION ALL
                    SELECT run_id, scope, seq, true FROM progress_events
                    WHERE event IN ('edge_selected', 'edge_condition_evaluated'))
          ) h ON h.run_id = a.run_id AND h.scope = a.scope AND h.seq = a.start_seq AND NOT h.hop
          WINDOW w AS (PARTITION BY a.run_id, a.scope ORDER BY a.start_seq))
    """


# The run's failures that count (one row each), of the nodes with enough of them to reach
# the run's limit, with ``key``: the reason with digit runs masked, as
# :func:`rundoctor.signature.signature_key` does (ASCII digits in both), so that equal keys
# have equal signatures and a loop whose reasons differ only in numbers is signed once.
_FAILURES_SQL = f"""
CREATE OR REPLACE TEMP TABLE _drl_fail AS
WITH limits AS ({{limits}}),
f AS (
    SELECT run_id, scope, node_id, coalesce(failure_reason, '') AS reason, visit, end_seq,
           end_ts, count(*) OVER (PARTITION BY run_id, scope, node_id) AS node_failures
    FROM ({visits_sql()})
    WHERE end_seq IS NOT NULL AND lower(status) IN ('fail', 'retry')
      -- A conditional node passing on the previous node's failure verbatim is that node's
      -- failure seen again, not a loop of its own (a breaker counts the node that failed).
      AND NOT coalesce(prev_node IS DISTINCT FROM node_id AND prev_reason = failure_reason, false)
)
SELECT f.run_id, scope, node_id, reason, regexp_replace(reason, '[0-9]+', '0', 'g') AS key,
       visit, end_seq, end_ts
FROM f LEFT JOIN limits l USING (run_id)
WHERE node_failures >= coalesce(l.lim, $default)
"""
# One row per (run, scope, node, signature) at the run's limit or over: the count, visits,
# last failure, first and last end, distinct reasons, and the example (the most frequent
# reason, among equals the most recent).
_GROUPS_SQL = """
WITH limits AS ({limits}),
f AS (SELECT f.*, s.sig FROM _drl_fail f JOIN _drl_sig s USING (key)),
g AS (
    SELECT run_id, scope, node_id, sig, count(*) AS n, count(DISTINCT visit) AS visits,
           min(end_seq) AS first_seq, max(end_seq) AS last_seq, epoch_ns(min(end_ts)) AS first_ts,
           epoch_ns(max(end_ts)) AS last_ts, count(DISTINCT reason) AS reasons
    FROM f GROUP BY ALL
),
ex AS (
    SELECT run_id, scope, node_id, sig, reason FROM (
        SELECT run_id, scope, node_id, sig, reason, count(*) AS n, max(end_seq) AS last
        FROM f GROUP BY ALL
    )
    QUALIFY row_number() OVER (PARTITION BY run_id, scope, node_id, sig
                               ORDER BY n DESC, last DESC) = 1
)
SELECT g.run_id, g.scope, g.node_id, g.sig, n, visits, reasons, ex.reason, first_seq,
       last_seq, first_ts, last_ts
FROM g JOIN ex USING (run_id, scope, node_id, sig) LEFT JOIN limits l USING (run_id)
WHERE n >= coalesce(l.lim, $default)
"""
#: Keys signed per page: what is held in Python at once.
_PAGE = 10_000
# The run's own breaker limit, when its events state one (the graph's breaker_limit).
_LIMIT_EVENTS = (
    "deterministic_failure_cycle_check",
    "deterministic_failure_cycle_breaker",
    "subgraph_deterministic_failure_cycle_check",
    "subgraph_deterministic_failure_cycle_breaker",
)
_LIMITS_SQL = f"""
SELECT run_id, max(signature_limit) AS lim FROM progress_events
WHERE event IN ({", ".join(f"'{e}'" for e in _LIMIT_EVENTS)})
  AND signature_limit > 0
GROUP BY ALL
"""
#: Stops from outside the run: a signal or ``kilroy attractor stop`` that came right after
#: a failure ended the run there, not the failure (real run ``goal_gate_loop_sigterm``).
_OUTSIDE_STOPS = frozenset({"signal", "operator"})
#: The signature breakers: the only ones ``breaker_tripped`` speaks of.
SIGNATURE_BREAKERS = BREAKER_EVENTS[:2]
_BREAKER_SQL = f"""
SELECT run_id, scope, node_id, seq, event IN ('{SIGNATURE_BREAKERS[0]}', '{SIGNATURE_BREAKERS[1]}')
FROM progress_events
WHERE event IN ({_BREAKERS_SQL}) AND node_id IS NOT NULL ORDER BY ALL
"""
_LAST_ATTEMPT_SQL = """
SELECT run_id, scope, arg_max(node_id, start_seq), arg_max(status, start_seq),
       arg_max(failure_reason, start_seq)
FROM attempts GROUP BY ALL
"""


@dataclass(frozen=True, slots=True)
class _Group:
    """One node's failures of one signature: ``count`` failures over ``visits`` visits with
    ``reasons`` distinct reasons, ``example`` the most frequent (among equals the most
    recent), the first and last failure's ``first_seq`` and ``last_seq`` and the first and
    last end times."""

    count: int
    visits: int
    reasons: int
    example: str
    first_seq: int
    last_seq: int
    first_ts: int | None
    last_ts: int | None


def _sign_keys(ctx: Context) -> bool:
    """``_drl_sig``: each failure key's canonical signature, signed in Python a page at a
    time (the signature is Python's alone), so a stream of a million distinct reasons never
    sits in Python whole. False, and no table, when there is no key to sign.

    Pages are read from ``_drl_fail`` in key order, and the first one creates the table it
    goes into: no numbered copy of the keys, no count, no empty table made first."""
    from doctor._ndjson import insert_columns
    from rundoctor.signature import canonical_signature

    con = ctx.tables.con
    low = 0
    while True:  # pages until one is short
        keys = [
            str(k)
            for (k,) in con.execute(
                "SELECT DISTINCT key FROM _drl_fail ORDER BY key LIMIT $page OFFSET $low",
                {"page": _PAGE, "low": low},
            ).fetchall()
        ]
        if not keys and not low:
            return False
        # The key is the reason's signature_key: signing it is signing the reason.
        columns = {
            "key": ("VARCHAR", keys),
            "sig": ("VARCHAR", [canonical_signature(k) for k in keys]),
        }
        if not low:
            con.execute(
                "CREATE OR REPLACE TEMP TABLE _drl_sig AS "
                "SELECT unnest($key::VARCHAR[]) AS key, unnest($sig::VARCHAR[]) AS sig",
                {name: values for name, (_, values) in columns.items()},
            )
        elif keys:
            insert_columns(con, "_drl_sig", columns)
        if len(keys) < _PAGE:
            return True
        low += _PAGE


def _groups(ctx: Context) -> dict[tuple[str, str, str, str], _Group]:
    """The (run, scope, node, signature) groups at their run's limit or over, aggregated in
    DuckDB: what Python holds is a row per group, not per failure."""
    params = {"default": ctx.config.breaker_limit}
    ctx.tables.sql(_FAILURES_SQL.format(limits=_LIMITS_SQL), **params)
    try:
        signed = _sign_keys(ctx)
        # No failure at its run's limit (no key): no group either.
        rows = ctx.tables.sql(_GROUPS_SQL.format(limits=_LIMITS_SQL), **params) if signed else []
    finally:
        ctx.tables.con.execute("DROP TABLE IF EXISTS _drl_fail; DROP TABLE IF EXISTS _drl_sig")
    return {
        (str(run_id), str(scope), str(node), str(sig)): _Group(
            int(n), int(visits), int(reasons), str(example), int(first), int(last), *times
        )
        for run_id, scope, node, sig, n, visits, reasons, example, first, last, *times in rows
    }


def _stopped_on(ctx: Context, last: tuple[Any, ...] | None, node: str, signature: str) -> bool:
    if last is None:
        return False
    last_node, status, reason = last
    return (
        last_node == node
        and str(status or "").lower() in ("fail", "retry")
        and ctx.signature(reason) == signature
    )


@dataclass(frozen=True, slots=True)
class _Stops:
    """What may have stopped the loops: each scope's endings, each node's breaker events
    ``(seq, is a signature breaker)``, its spent retry budgets and the ones the stream
    stops inside (:func:`doctor._detectors._stops.pending_budgets`)."""

    endings: dict[tuple[str, str], list[Ending]]
    breakers: dict[tuple[str, str, str], list[tuple[int, bool]]]
    exhausted: dict[tuple[str, str, str], int]
    pending: dict[tuple[str, str, str], int]


def _read_stops(ctx: Context) -> _Stops:
    """The stop queries (the breakers and budgets each skipped when the batch has none of
    their events)."""
    breakers: dict[tuple[str, str, str], list[tuple[int, bool]]] = {}
    for r, s, n, seq, signature in ctx.rows_of(BREAKER_EVENTS, _BREAKER_SQL):
        breakers.setdefault((r, s, n), []).append((int(seq), bool(signature)))
    return _Stops(
        endings=scope_endings(ctx),
        breakers=breakers,
        exhausted=exhausted_budgets(ctx),
        pending=pending_budgets(ctx),
    )


@needs(failed_attempts=True)
def deterministic_retry_loop(ctx: Context) -> list[Finding]:
    """The same canonical failure repeating on a node with no breaker stopping it."""
    groups = _groups(ctx)
    if not groups:
        return []
    stops = _read_stops(ctx)
    last_attempt = {(r, s): (n, st, fr) for r, s, n, st, fr in ctx.tables.sql(_LAST_ATTEMPT_SQL)}
    limits = {r: int(n) for r, n in ctx.rows_of(_LIMIT_EVENTS, _LIMITS_SQL)}
    findings = []
    for (run_id, scope, node, signature), g in sorted(groups.items()):
        limit = limits.get(run_id, ctx.config.breaker_limit)
        node_key = (run_id, scope, node)
        # The loop's work is its failures: the node failing otherwise, or passing, after a
        # stop (a resume) is not this loop going on.
        stop = loop_stop(stops.endings.get((run_id, scope), ()), g.last_seq, g.last_seq)
        if stop is not None and stop.stopped(BREAKER_EVENTS, node):
            continue  # the breaker stopped it
        budget_seq = max(stops.exhausted.get(node_key, -1), stops.pending.get(node_key, -1))
        if budget_seq >= g.last_seq and g.visits < limit:
            continue  # its retry budget ran out (max_retries stopped it) or still bounds it
        facts = facts_of(ctx.facts, run_id)
        if (
            facts.get("final_json")
            and not (stop is not None and stop.stopped_by in _OUTSIDE_STOPS)
            and _stopped_on(ctx, last_attempt.get((run_id, scope)), node, signature)
        ):
            continue  # the run ended on it: bounded
        # Breakers that fired while the loop went on (not one before it, which a resume left).
        during = [b for b in stops.breakers.get(node_key, ()) if g.first_seq < b[0] < g.last_seq]
        findings.append(
            _finding(
                (run_id, scope, node, signature),
                g,
                limit,
                (bool(during), any(sig for _, sig in during), stop.stopped_by if stop else None),
            )
        )
    return findings


def _finding(
    key: tuple[str, str, str, str], g: _Group, limit: int, breaker: tuple[bool, bool, str | None]
) -> Finding:
    """The finding of a loop nothing stopped: an error once it spans ``limit`` visits.
    ``breaker``: whether a breaker of the node fired while the loop went on, whether a
    signature breaker did, and what stopped the loop (None when nothing did)."""
    run_id, scope, node, signature = key
    tripped, signature_breaker, stopped_by = breaker
    where = in_scope(scope)
    example = g.example
    looped = g.visits >= limit
    summary = (
        f"{node}{where} failed {g.count} times over {plural(g.visits, 'visit')} "
        f"with the same failure ({example!r})"
        + (
            ", and kept failing after a breaker tripped"
            if tripped
            else ", and no breaker stopped it"
        )
        + (f" ({stopped_by} ended it)" if stopped_by else "")
        + "; fix that cause, or add a cycle breaker or retry cap on canonical signatures"
    )
    return Finding(
        code="deterministic_retry_loop",
        severity=Severity.ERROR if looped else Severity.WARNING,
        summary=summary,
        run_id=run_id,
        scope=scope,
        node_id=node,
        evidence={
            "signature": signature,
            "count": g.count,
            "breaker_tripped": signature_breaker,
            "stopped_by": stopped_by,
            "visits": g.visits,
            "breaker_limit": limit,
            "unique_reasons": g.reasons,
            "example": example,
            "first_at": iso(g.first_ts),
            "last_at": iso(g.last_ts),
        },
    )
