"""How Kilroy ended a scope: shared by the detectors that must not mistake a stop for a fault.

When an attempt ends the run (``run_failed`` after a signal, the stall watchdog, the
deterministic-failure cycle breaker), Kilroy deliberately saves no checkpoint for that node:
``checkpoint.json`` keeps the last node that completed before it, which is exactly where a
resume must start (format doc §3.3: "a breaker trip aborts before saving"). So in such a scope
the checkpoint's ``current_node`` is right when it names the node completed before the
interrupted one.

What says the run ended there: a stop or terminal event after the attempt's end, or, in a
top-level scope, the run's final.json not ``success`` written after it. Runs of builds before
2026-04-27 have no terminal event (format doc §8): a signal leaves no event at all, and the
stall watchdog's event comes before the attempt it cancels ends; a final.json Kilroy wrote
without a terminal event (a resume that failed before its engine started, ``kilroy
attractor stop`` for a dead process) is the same.

A loop's stop (``retry_loop``, ``fragmented_failure_signatures``, ``deterministic_retry_loop``)
is the first of its scope's *endings* after the loop's last traversal or failure, and only when
the loop did no more work after it (:func:`loop_stop`): ``kilroy attractor resume`` appends to
the stream it stopped, so one stream can hold a stop, a resumed run going on (looping again, or
leaving the loop) and that run's own ending; neither the last stop of the scope nor one before
the loop's last lap is that loop's. An ending is a terminal event (``run_failed``,
``run_completed``; a ``loop_restart``, after which the run works in ``restart-N/``) with the
stops written just before it, or stops no terminal event followed before more work began.
Loops are compared with endings in their own stream, by ``seq``: the stream a loop ran in is the
one its ending is written to (a stop goes to the current logs root), and a run that leaves that
stream writes ``loop_restart`` there first; the time order across the run's top-level streams
(:func:`doctor._run_state._last_ending`) decides the run's ending, not a loop's.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from doctor._facts import facts_of
from doctor._layout import TOP_SQL, is_top_scope
from doctor._run_state import STOP_EVENTS, reason_stop
from doctor._superseded import final_ns, repaired_final_ns
from doctor._tables import Tables
from doctor._timestamps import parse_iso

if TYPE_CHECKING:
    from doctor._detectors._context import Context

__all__ = [
    "ENDING_EVENTS",
    "NODE_WORK_SQL",
    "REGIONS_SQL",
    "SCOPE_STOPS",
    "Ending",
    "exhausted_budgets",
    "interrupted_visits",
    "loop_stop",
    "pending_budgets",
    "scope_endings",
]

#: The concurrent regions of each scope of ``{events}``: the ``seq`` of a
#: ``concurrent_split_started`` and of the first ``concurrent_split_completed`` after it (else
#: past the stream's end). Their nodes run at once in the shared worktree, and Kilroy saves no
#: checkpoint for them (real run ``concurrent_region_killed``: checkpoint.json names the split
#: until the join's is saved, with every region node in its ``completed_nodes``).
REGIONS_SQL = """
SELECT s.run_id, s.scope, s.seq AS from_seq,
       coalesce((SELECT min(c.seq) FROM {events} c
                 WHERE c.run_id = s.run_id AND c.scope = s.scope AND c.seq > s.seq
                   AND c.event = 'concurrent_split_completed'), 9223372036854775807) AS to_seq
FROM {events} s WHERE s.event = 'concurrent_split_started'
"""

#: Events after which a scope does no more work: the run's stops and terminal events, and a
#: branch's own ends (its cycle breaker, a structural abort, cancellation).
SCOPE_STOPS = (
    *STOP_EVENTS,
    "subgraph_deterministic_failure_cycle_breaker",
    "subgraph_structural_failure_abort",
    "subgraph_canceled_exit",
)
_SCOPE_STOPS_SQL = "(" + ", ".join(f"'{e}'" for e in SCOPE_STOPS) + ")"

# Per scope: the node of the last attempt end, when nothing routed on from it (no edge, no new
# attempt) and a stop or terminal event followed; and the node that completed before its visit
# began (its first attempt's start). Before the visit, not before its end: in a concurrent
# region (pentagon/cylinder) the region's nodes run at once in the one stream, and a stop ends
# them all; the other node ending first is not a completed resume point, the split before
# them is (real run concurrent_sigterm: checkpoint ``split``, ``b`` then ``a`` ended).
_SQL = f"""
WITH failed AS (
    SELECT unnest($runs::VARCHAR[]) AS run_id, unnest($finals::BIGINT[]) AS final_ns
),
resumed AS (
    SELECT unnest($resumed::VARCHAR[]) AS run_id, unnest($at::BIGINT[]) AS ns
),
last_end AS (
    SELECT run_id, scope, max(seq) AS seq, arg_max(node_id, seq) AS node,
           epoch_ns(arg_max(ts, seq)) AS end_ns
    FROM {{view}} WHERE event = 'stage_attempt_end' AND node_id IS NOT NULL GROUP BY ALL
),
cut AS (
    SELECT l.* FROM last_end l
    WHERE (EXISTS (SELECT 1 FROM {{view}} x WHERE x.run_id = l.run_id AND x.scope = l.scope
                   AND x.seq > l.seq AND x.event IN {_SCOPE_STOPS_SQL})
           OR ({TOP_SQL} AND EXISTS (SELECT 1 FROM failed f WHERE f.run_id = l.run_id
                                     AND f.final_ns > l.end_ns)))
      AND NOT EXISTS (SELECT 1 FROM {{view}} x WHERE x.run_id = l.run_id
                      AND x.scope = l.scope AND x.seq > l.seq
                      AND x.event IN ('edge_selected', 'stage_attempt_start', 'run_completed')
                      -- a resume starting the node again: after the stop, or past the
                      -- final.json (builds whose signal leaves no event)
                      AND NOT (x.event = 'stage_attempt_start' AND x.node_id = l.node
                               AND (EXISTS (SELECT 1 FROM {{view}} y WHERE y.run_id = l.run_id
                                            AND y.scope = l.scope AND y.seq > l.seq
                                            AND y.seq < x.seq AND y.event IN {_SCOPE_STOPS_SQL})
                                    OR EXISTS (SELECT 1 FROM resumed r
                                               WHERE r.run_id = l.run_id
                                                 AND epoch_ns(x.ts) >= r.ns))))
),
visit AS (
    SELECT c.*, coalesce(
        (SELECT max(x.seq) FROM {{view}} x
         WHERE x.run_id = c.run_id AND x.scope = c.scope AND x.seq < c.seq
           AND x.event = 'stage_attempt_start' AND x.node_id = c.node
           AND coalesce(x.attempt, 1) <= 1), c.seq) AS visit_seq
    FROM cut c
)
SELECT v.run_id, v.scope, v.node,
       (SELECT arg_max(x.node_id, x.seq) FROM {{view}} x
        WHERE x.run_id = v.run_id AND x.scope = v.scope AND x.seq < v.visit_seq
          AND x.event = 'stage_attempt_end' AND x.node_id IS NOT NULL
          AND x.node_id <> v.node) AS resume_node
FROM visit v
"""


def interrupted_visits(
    tables: Tables, view: str = "progress_events"
) -> dict[tuple[str, str], tuple[str, str | None]]:
    """``{(run_id, scope): (interrupted_node, resume_node)}`` for scopes a stop ended mid-visit.

    A resume that started the interrupted node again (after the stop's event, or past the
    run's final.json: :mod:`doctor._superseded`) without ending it (killed) leaves the visit
    interrupted: the checkpoint is still the node completed before it (real run
    ``sigterm_resumed_killed``, also once terminalized).

    ``view`` is the events table (by default its non-heartbeat rows: the events this reads) or
    a detector's restricted view of it.
    """
    runs: list[str] = []
    finals: list[int] = []
    resumed: dict[str, int] = {}
    for run_id, docs in tables.documents.items():
        final = docs.final or next(  # a final.json a resume went past still ended a visit
            (sd.superseded_final for n, sd in docs.scopes.items() if is_top_scope(n)), None
        )
        ns = parse_iso(final.get("timestamp")) if final is not None and final.ok else None
        if ns is not None and final is not None and final.get("status") != "success":
            runs.append(run_id)
            finals.append(ns)
        if docs.resumed_ns is not None:
            resumed[run_id] = docs.resumed_ns
    rows = tables.sql(
        _SQL.format(view=view),
        runs=runs,
        finals=finals,
        resumed=list(resumed),
        at=list(resumed.values()),
    )
    return {(r, s): (str(node), None if prev is None else str(prev)) for r, s, node, prev in rows}


#: The events that end a scope's run loop: :data:`SCOPE_STOPS`, and ``loop_restart`` (the run
#: goes on in ``restart-N/``; what the stream holds after it is a resume's).
ENDING_EVENTS = (*SCOPE_STOPS, "loop_restart")
#: The events that close an ending: the stops written before one belong to it.
_TERMINALS = frozenset({"run_completed", "run_failed", "loop_restart"})

# Per scope with an ending, its ending events in stream order, each with the seq of the next
# stage_attempt_start (work begun after it: a stop it follows is not its ending's).
_ENDINGS_SQL = f"""
WITH e AS (
    SELECT run_id, scope, seq, event, coalesce(reason, failure_reason) AS reason, node_id
    FROM progress_events
    WHERE event IN ({", ".join(f"'{e}'" for e in ENDING_EVENTS)})
),
starts AS (
    SELECT run_id, scope, seq FROM progress_events
    WHERE event = 'stage_attempt_start' AND (run_id, scope) IN (SELECT run_id, scope FROM e)
)
SELECT e.run_id, e.scope, e.seq, e.event, e.reason, e.node_id,
       (SELECT min(s.seq) FROM starts s
        WHERE s.run_id = e.run_id AND s.scope = e.scope AND s.seq > e.seq) AS next_start
FROM e ORDER BY e.run_id, e.scope, e.seq
"""

#: Per node and scope, the seq of its last attempt event (start, or end when it ended): the
#: node's last work, which a loop of its failures did after its stop when it comes later.
NODE_WORK_SQL = """
SELECT run_id, scope, node_id, max(coalesce(end_seq, start_seq)) FROM attempts
WHERE node_id IS NOT NULL GROUP BY ALL
"""


_EXHAUSTED_SQL = """
SELECT run_id, scope, node_id, max(seq) FROM progress_events
WHERE node_id IS NOT NULL
  AND ((event = 'retry_decision' AND will_retry = false)
       OR (event = 'stage_attempt_end' AND status IN ('fail', 'retry')
           AND "max" > 1 AND attempt >= "max"))
GROUP BY ALL
"""


def exhausted_budgets(ctx: Context) -> dict[tuple[str, str, str], int]:
    """Per (run, scope, node), the seq where Kilroy's retry budget for a visit last ran out:
    its last ``retry_decision`` with ``will_retry: false`` ("max retries exhausted", or a
    failure that is not retryable), or a failed attempt end whose ``attempt`` is its ``max``,
    of a node allowed retries (``max`` > 1): the visit's last allowed attempt (a run killed
    before its ``retry_decision``, ~5 ms later, spent the budget all the same). Failures of
    one visit that end so were bounded by ``max_retries``, not by a cycle breaker, which
    counts a visit once (format doc §4.3); the budget bounds the failures at or before that
    seq."""
    rows = ctx.rows_of(("retry_decision", "stage_attempt_end"), _EXHAUSTED_SQL)
    return {(r, s, n): int(seq) for r, s, n, seq in rows}


# Per (run, scope, node): its last retry_decision that announced a retry, when no attempt of
# the node ended after it (the stream stops inside the visit's retry budget).
_PENDING_SQL = """
SELECT run_id, scope, node_id, retry_seq FROM (
    SELECT run_id, scope, node_id,
           max(seq) FILTER (WHERE event = 'retry_decision' AND will_retry) AS retry_seq,
           max(seq) FILTER (WHERE event = 'stage_attempt_end') AS end_seq
    FROM progress_events
    WHERE event IN ('retry_decision', 'stage_attempt_end') AND node_id IS NOT NULL
    GROUP BY ALL
) WHERE retry_seq > coalesce(end_seq, -1)
"""


def pending_budgets(ctx: Context) -> dict[tuple[str, str, str], int]:
    """Per (run, scope, node), the seq of a ``retry_decision`` with ``will_retry: true`` that
    no attempt end of the node followed: the stream stops (the run killed or stopped in
    Kilroy's retry sleep or next attempt, or still there) inside a visit whose retry budget
    was not spent, and that budget bounds its failures as it bounds a spent one."""
    rows = ctx.rows_of(("retry_decision",), _PENDING_SQL)
    return {(r, s, n): int(seq) for r, s, n, seq in rows}


@dataclass(frozen=True, slots=True)
class Ending:
    """One ending of a scope: ``stops`` (event, node) written for it, in order, the
    ``terminal`` event that closed it (None when none did) and its ``reason``, and ``seq``:
    its last event's.

    >>> Ending(9, (("stall_watchdog_timeout", None),), "run_failed", "stall …").stopped_by
    'stall_watchdog_timeout'
    >>> Ending(9, (), "run_failed", "stopped by signal terminated").stopped_by
    'signal'
    >>> Ending(9, (), "run_completed", None).stopped_by is None
    True
    """

    seq: int
    stops: tuple[tuple[str, str | None], ...]
    terminal: str | None
    reason: str | None

    @property
    def stopped_by(self) -> str | None:
        """What a loop this ending stopped was stopped by: its last stop, else the stop its
        failure reason names (``signal`` for Kilroy's "stopped by signal", ``operator`` for
        the final.json ``kilroy attractor stop`` wrote), else ``run_failed``; None for a
        ``run_completed`` or a ``loop_restart`` (the loop was left, not stopped)."""
        if self.stops:
            return self.stops[-1][0]
        if self.terminal != "run_failed":
            return None
        return reason_stop(self.reason) or "run_failed"

    def stopped(self, events: Iterable[str], node: str) -> bool:
        """Whether one of ``events`` of ``node`` is among its stops."""
        wanted = frozenset(events)
        return any(event in wanted and who == node for event, who in self.stops)


def _endings(rows: Iterable[tuple[Any, ...]]) -> list[Ending]:
    """A scope's endings from its ending events ``(seq, event, reason, node, next_start)``
    in stream order.

    >>> [e.seq for e in _endings([(5, "stuck_cycle_breaker", None, "a", 9),
    ...                            (6, "run_failed", "x", None, 9)])]
    [6]
    >>> [e.stopped_by for e in _endings([(5, "stall_watchdog_timeout", None, None, 7),
    ...                                  (30, "run_failed", "stopped by signal t", None, None)])]
    ['stall_watchdog_timeout', 'signal']
    """
    out: list[Ending] = []
    stops: list[tuple[str, str | None]] = []
    last = (-1, None)  # the seq and next start of the pending stops' last one
    for seq, event, reason, node, next_start in rows:
        if stops and last[1] is not None and last[1] < seq:  # work began after those stops
            out.append(Ending(last[0], tuple(stops), None, None))
            stops = []
        if event in _TERMINALS:
            out.append(Ending(int(seq), tuple(stops), str(event), reason))
            stops = []
        else:
            stops.append((str(event), None if node is None else str(node)))
            last = (int(seq), next_start)
    if stops:
        out.append(Ending(last[0], tuple(stops), None, None))
    return out


def scope_endings(ctx: Context) -> dict[tuple[str, str], list[Ending]]:
    """``{(run_id, scope): endings}``, each scope's endings in stream order: asked of DuckDB
    once per context, however many loop detectors ask (:meth:`Context.once`)."""
    return ctx.once("scope_endings", _scope_endings)


def _scope_endings(ctx: Context) -> dict[tuple[str, str], list[Ending]]:
    rows: dict[tuple[str, str], list[tuple[Any, ...]]] = defaultdict(list)
    for run_id, scope, *row in ctx.rows_of(ENDING_EVENTS, _ENDINGS_SQL):
        rows[(str(run_id), str(scope))].append(tuple(row))
    out = {key: _endings(scope_rows) for key, scope_rows in rows.items()}
    for key, ending in _final_endings(ctx).items():
        own = out.setdefault(key, [])
        if all(e.seq < ending.seq for e in own):  # the scope wrote no ending after it
            own.append(ending)
    return out


# Per run and top-level scope, the seq of the scope's last event written before the run's
# final.json (by its ``timestamp``).
_FINAL_AT_SQL = """
WITH f AS (SELECT unnest($runs::VARCHAR[]) AS run_id, unnest($scopes::VARCHAR[]) AS scope,
                  unnest($finals::BIGINT[]) AS final_ns)
SELECT f.run_id, f.scope, max(e.seq) FROM f
JOIN progress_events e ON e.run_id = f.run_id AND e.scope = f.scope
WHERE epoch_ns(e.ts) <= f.final_ns GROUP BY ALL
"""


def _final_endings(ctx: Context) -> dict[tuple[str, str], Ending]:
    """The ending a run's own final.json (not ``success``, not the doctor's) records in the
    top-level scope the run worked in last, placed after that scope's last event before it.

    It is the scope's only ending when the scope wrote none after it: ``kilroy attractor
    stop`` writes final.json itself for an engine it had to SIGKILL (real run
    ``loop_stop_hung``), builds before 2026-04-27 wrote no terminal event (format doc §8), and
    a resume that fails before its engine starts writes only final.json. The doctor's
    ``terminalize`` is no stop: it records that the run's process had died.
    """
    runs: list[str] = []
    scopes: list[str] = []
    finals: list[int] = []
    reasons: dict[str, Any] = {}
    for run_id, docs in ctx.tables.documents.items():
        final = docs.final
        scope = facts_of(ctx.facts, run_id).get("_current_scope")
        if final is None or not final.ok or scope is None:
            continue
        ns = final_ns(final.value)
        if ns is None or final.get("status") in (None, "success"):
            continue
        if repaired_final_ns(final.value) is None:
            runs.append(run_id)
            scopes.append(str(scope))
            finals.append(ns)
            reasons[run_id] = final.get("failure_reason")
    if not runs:
        return {}
    rows = ctx.tables.sql(_FINAL_AT_SQL, runs=runs, scopes=scopes, finals=finals)
    return {
        (str(run_id), str(scope)): Ending(int(seq) + 1, (), "run_failed", reasons[run_id])
        for run_id, scope, seq in rows
        if seq is not None
    }


def loop_stop(endings: Sequence[Ending], last: int, work: int) -> Ending | None:
    """The ending that stopped a loop whose last traversal or failure is at seq ``last``
    and whose last work of any kind at ``work`` (``>= last``): the scope's first ending after
    ``last``, when the loop did no work after it; None otherwise.

    >>> watchdog = Ending(50, (("stall_watchdog_timeout", None),), "run_failed", "stall …")
    >>> signal = Ending(90, (), "run_failed", "stopped by signal terminated")
    >>> loop_stop([watchdog, signal], 40, 40).stopped_by   # the loop ended at the watchdog
    'stall_watchdog_timeout'
    >>> loop_stop([watchdog, signal], 70, 70).stopped_by   # a resume looped on, then SIGTERM
    'signal'
    >>> loop_stop([watchdog, signal], 40, 60) is None      # a resume went on from the loop
    True
    """
    for ending in endings:
        if ending.seq > last:
            return ending if ending.seq > work else None
    return None
