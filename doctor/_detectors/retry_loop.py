"""``retry_loop``: a back edge taken again and again.

In each scope, a node is *entered* by its first ``stage_attempt_start`` or by the first
``edge_selected`` into it, whichever comes first. An ``edge_selected`` hop ``u -> v`` is a
*back edge* when ``v`` was entered no later than ``u`` was first entered: the hop returns to a
node that precedes its source in the scope. (Reading "the target was entered earlier" as
"earlier than the hop" would make every hop inside a loop a back edge from its second lap on:
``impl -> verify`` would count 35 times in incident 04. This reading leaves exactly the edge that
closes the loop, ``check_scaffold -> impl_scaffold``.) ``traversals`` counts the hop's
``edge_selected`` events in the scope; ``config.retry_loop_min`` of them make a retry loop.

A goal gate's jump is a hop too, though Kilroy writes no ``edge_selected`` for it (format doc
§2.9): reaching the exit node with an unsatisfied ``goal_gate`` node, the run goes to its retry
target. It shows as an attempt right after an ``edge_selected`` into a node that never runs
attempts (the exit node) whose target is not that node: the hop ``exit -> <retry target>``,
counted in ``traversals`` and in ``goal_gate_jumps`` (real run ``goal_gate_loop``: three laps
fix, verify, exit, back to fix, were no loop to the doctor before).

A failed node's jump to its retry target is a hop too: a node that fails with no outgoing edge
goes to its retry target (``no_matching_fail_edge_fallback``, ``node_id`` -> ``retry_target``),
again with no ``edge_selected``; counted in ``traversals`` and in ``retry_target_jumps`` (real
runs ``retry_target_loop``, ``fallback_retry_target``, ``graph_retry_target``).

``loop_wall_s``: from the first entry of ``v`` to the end of the lap begun by the last
traversal, i.e. the first ``edge_selected`` after the last traversal whose target lies outside
the loop body (the nodes first entered between ``v``'s and ``u``'s first entries); while no hop
has left the loop, the scope's last progress event. ``share_of_run``: ``loop_wall_s`` over the
run's ``wall_s`` fact. Branch streams carry no ``edge_selected`` events, so loops inside
branches are seen by ``deterministic_retry_loop`` instead.

``stopped_by``: the stop that ended a loop no hop left: the scope's first ending after the
loop's last work (every hop and attempt in the scope after the loop began is the loop's while no
hop has left it; :func:`doctor._detectors._stops.loop_stop`): a resumed run that laps again, or
works on in the loop, was stopped by its own ending, not by the stop it resumed from. Its
last stop (``deterministic_failure_cycle_breaker``, ``stuck_cycle_breaker`` for
``max_node_visits``, ``stall_watchdog_timeout``, ``loop_restart_blocked``,
``loop_restart_circuit_breaker``), else the stop the ending's reason names (``signal`` for
Kilroy's "stopped by signal", ``operator`` for the final.json ``kilroy attractor stop`` wrote),
else ``run_failed`` for any other terminal failure. Such a loop is not
``still_looping``, and a loop that a breaker or the watchdog ended did what they are for: it is
reported at ``info``.
"""

from __future__ import annotations

from doctor._detectors._context import Context, needs
from doctor._detectors._stops import loop_stop, scope_endings
from doctor._facts import facts_of
from doctor._model import Finding, Severity
from doctor._timestamps import iso

__all__ = ["DOMINANT_SHARE", "duration_text", "retry_loop"]

#: A loop that took at least this share of the run's wall time dominates it.
DOMINANT_SHARE = 0.5

_SQL = """
WITH moves AS (
    SELECT run_id, scope, seq, ts, event, node_id,
           lag(event) OVER w AS prev_event, lag(to_node) OVER w AS prev_to
    FROM progress_events
    WHERE event IN ('edge_selected', 'stage_attempt_start')
    WINDOW w AS (PARTITION BY run_id, scope ORDER BY seq)
),
attempted AS (
    SELECT DISTINCT run_id, scope, node_id FROM progress_events
    WHERE event = 'stage_attempt_start' AND node_id IS NOT NULL
),
hops AS (
    SELECT run_id, scope, seq, ts, from_node, to_node, false AS jump, false AS fallback
    FROM progress_events
    WHERE event = 'edge_selected' AND from_node IS NOT NULL AND to_node IS NOT NULL
    UNION ALL
    -- A failed node's jump to its retry target: no outgoing edge to take.
    SELECT run_id, scope, seq, ts, node_id, retry_target, false, true FROM progress_events
    WHERE event = 'no_matching_fail_edge_fallback' AND node_id IS NOT NULL
      AND retry_target IS NOT NULL
    UNION ALL
    -- A goal gate's jump: an attempt right after a hop into a node that never runs attempts
    -- (the exit node), to a node the hop did not name.
    SELECT m.run_id, m.scope, m.seq, m.ts, m.prev_to, m.node_id, true, false FROM moves m
    ANTI JOIN attempted a
        ON a.run_id = m.run_id AND a.scope = m.scope AND a.node_id = m.prev_to
    WHERE m.event = 'stage_attempt_start' AND m.prev_event = 'edge_selected'
      AND m.node_id IS NOT NULL AND m.prev_to IS NOT NULL AND m.prev_to <> m.node_id
),
firsts AS (
    SELECT run_id, scope, node, min(seq) AS seq, arg_min(ts, seq) AS ts FROM (
        SELECT run_id, scope, node_id AS node, seq, ts FROM progress_events
        WHERE event = 'stage_attempt_start' AND node_id IS NOT NULL
        UNION ALL
        SELECT run_id, scope, to_node, seq, ts FROM hops
    ) GROUP BY ALL
),
back AS (
    SELECT h.run_id, h.scope, h.from_node, h.to_node, count(*) AS n,
           count(*) FILTER (WHERE h.jump) AS jumps,
           count(*) FILTER (WHERE h.fallback) AS fallbacks, max(h.seq) AS last_seq,
           epoch_ns(max(h.ts)) AS last_ts, any_value(v.seq) AS v_seq,
           epoch_ns(any_value(v.ts)) AS v_ts, any_value(u.seq) AS u_seq
    FROM hops h
    JOIN firsts v ON v.run_id = h.run_id AND v.scope = h.scope AND v.node = h.to_node
    JOIN firsts u ON u.run_id = h.run_id AND u.scope = h.scope AND u.node = h.from_node
    WHERE v.seq <= u.seq
    GROUP BY h.run_id, h.scope, h.from_node, h.to_node
    HAVING count(*) >= $min
),
exits AS (
    SELECT b.run_id, b.scope, b.from_node, b.to_node, epoch_ns(arg_min(h.ts, h.seq)) AS ts
    FROM back b
    JOIN hops h ON h.run_id = b.run_id AND h.scope = b.scope AND h.seq > b.last_seq
    JOIN firsts t ON t.run_id = h.run_id AND t.scope = h.scope AND t.node = h.to_node
    WHERE t.seq NOT BETWEEN b.v_seq AND b.u_seq
    GROUP BY ALL
),
last_progress AS (
    SELECT run_id, scope, epoch_ns(max(ts)) AS ts,
           max(seq) FILTER (WHERE event IN ('stage_attempt_start', 'edge_selected')) AS work
    FROM progress_events GROUP BY ALL
)
SELECT b.run_id, b.scope, b.from_node, b.to_node, b.n, b.jumps, b.fallbacks, b.v_ts, b.last_ts,
       coalesce(x.ts, greatest(p.ts, b.last_ts)) AS end_ts, x.ts IS NULL AS still_looping,
       b.last_seq, greatest(p.work, b.last_seq) AS last_work
FROM back b
LEFT JOIN exits x USING (run_id, scope, from_node, to_node)
LEFT JOIN last_progress p USING (run_id, scope)
ORDER BY b.run_id, b.scope, b.n DESC, b.from_node, b.to_node
"""


#: Stops that end a loop on purpose: Kilroy's breakers and its stall watchdog.
_DESIGNED_STOPS = frozenset(
    {
        "deterministic_failure_cycle_breaker",
        "subgraph_deterministic_failure_cycle_breaker",
        "stuck_cycle_breaker",
        "stall_watchdog_timeout",
        "loop_restart_blocked",
        "loop_restart_circuit_breaker",
    }
)
_STOP_TEXT = {
    "deterministic_failure_cycle_breaker": "the deterministic-failure cycle breaker",
    "subgraph_deterministic_failure_cycle_breaker": "the branch's cycle breaker",
    "stuck_cycle_breaker": "max_node_visits (stuck_cycle_breaker)",
    "stall_watchdog_timeout": "the stall watchdog",
    "loop_restart_blocked": "a blocked loop_restart",
    "loop_restart_circuit_breaker": "the loop_restart circuit breaker",
    "signal": "a signal",
    "operator": "the operator's stop (kilroy attractor stop)",
    "run_failed": "the run's failure",
}


def duration_text(seconds: float) -> str:
    """A duration the way a person says it.

    >>> duration_text(95), duration_text(2404), duration_text(21281.264), duration_text(4991400)
    ('95 s', '40 min', '5.9 h', '57 d 18 h')
    >>> duration_text(float("inf"))  # a time a queue row holds as infinite
    'an unbounded time'
    """
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return "an unbounded time"
    if seconds >= 2 * 86400:
        days, rest = divmod(round(seconds / 3600), 24)
        return f"{days} d {rest} h"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _severity(stopped_by: str | None, *, dominant: bool, state: object) -> Severity:
    """A loop a cycle breaker (or the watchdog) stopped did what it is for: bounded, info.
    One that dominated a run that did not succeed, with nothing stopping it, is an error."""
    if stopped_by in _DESIGNED_STOPS:
        return Severity.INFO
    if dominant and state != "succeeded" and stopped_by is None:
        return Severity.ERROR
    return Severity.WARNING


def _unexited(ctx: Context, run_id: str, state: object) -> str:
    """How a loop that no hop left and no stop ended stands: running on, or over with its
    run's process (orphaned, or failed by ``doctor repair``'s terminalize, which is no stop:
    it records the death). Before: "has not exited" on a run a repair had terminalized."""
    died = " and had not exited when the run's process died"
    final = ctx.tables.documents[run_id].final
    if final is not None and final.get("repaired_by") is not None:
        return died + " (doctor repair terminalized it)"
    return died if state == "orphaned" else " and has not exited"


def _summary(
    hop: tuple[str, str, str, int, int, int],
    loop_s: float,
    share: float | None,
    unexited: str,
    stopped_by: str | None,
) -> str:
    """The finding's sentence; ``hop`` is (scope, from, to, traversals, goal-gate jumps,
    retry-target jumps), ``unexited`` how a loop no hop left stands (:func:`_unexited`), else
    empty."""
    scope, src, dst, n, jumps, fallbacks = hop
    where = f" in {scope}" if scope else ""
    pct = f" ({share:.0%} of the run)" if share is not None else ""
    if fallbacks == n:
        # Kilroy's no_matching_fail_edge_fallback: src failed with no edge it could take.
        taken = (
            f"{src} failed with no outgoing edge to take and Kilroy sent the run to its retry "
            f"target {dst}{where} {n} times"
        )
        why = f"find why {src} keeps failing (its retry target {dst} does not fix it)"
    elif jumps == n:
        # The hop is the goal gate's: reached from src (the exit), the run went back to dst.
        taken = f"a goal gate sent the run from {src} back to {dst}{where} {n} times"
        why = f"find why the goal_gate node whose retry target is {dst} keeps failing"
    else:
        gates = f" ({jumps} of them goal-gate jumps)" if jumps else ""
        gates += f" ({fallbacks} of them jumps to {src}'s retry target)" if fallbacks else ""
        taken = f"the back edge {src} -> {dst}{where} was taken {n} times{gates}"
        why = f"find why {src} keeps sending work back to {dst}"
    return (
        f"{taken}; the loop ran for {duration_text(loop_s)}{pct}"
        + unexited
        + (f" until {_STOP_TEXT.get(stopped_by, stopped_by)} ended it" if stopped_by else "")
        + f"; {why} and stop the churn (a cycle breaker, a retry cap, or a fix for the "
        "repeated failure)"
    )


@needs(events=("edge_selected",))  # a back edge is one of them
def retry_loop(ctx: Context) -> list[Finding]:
    """A back edge (a hop to a node entered earlier in the scope) taken repeatedly."""
    findings = []
    endings = scope_endings(ctx)
    rows = ctx.tables.sql(_SQL, min=ctx.config.retry_loop_min)
    for row in rows:
        run_id, scope, src, dst, n, jumps, fallbacks, first_ts, last_ts, end_ts, still, _, work = (
            row
        )
        # While no hop left the loop, every later hop or attempt in the scope is the loop's:
        # its stop is the first ending after all of them (a resumed run that worked on in the
        # loop, even short of a lap, was stopped by its own ending, not the one it resumed from).
        stop = loop_stop(endings.get((run_id, scope), ()), work, work) if still else None
        stopped_by = stop.stopped_by if stop else None
        still = still and stop is None  # a loop_restart or run_completed left it
        facts = facts_of(ctx.facts, run_id)
        loop_s = round((end_ts - first_ts) / 1e9, 3) if end_ts and first_ts else 0.0
        wall = facts.get("wall_s")
        share = round(loop_s / wall, 4) if wall else None
        unexited = _unexited(ctx, run_id, facts.get("_state")) if still else ""
        summary = _summary(
            (scope, src, dst, int(n), int(jumps), int(fallbacks)), loop_s, share, unexited,
            stopped_by,
        )  # fmt: skip
        # A loop that ate most of a run that did not succeed is the incident's failure mode;
        # a run that converged after a few laps, or a short loop, is worth a look only.
        dominant = share is not None and share >= DOMINANT_SHARE
        findings.append(
            Finding(
                code="retry_loop",
                severity=_severity(stopped_by, dominant=dominant, state=facts.get("_state")),
                summary=summary,
                run_id=run_id,
                scope=scope,
                node_id=dst,
                evidence={
                    "from_node": src,
                    "to_node": dst,
                    "traversals": int(n),
                    "goal_gate_jumps": int(jumps),
                    "retry_target_jumps": int(fallbacks),
                    "loop_wall_s": loop_s,
                    "share_of_run": share,
                    "first_entry_at": iso(first_ts),
                    "last_traversal_at": iso(last_ts),
                    "loop_end_at": iso(end_ts),
                    "still_looping": bool(still),
                    "stopped_by": stopped_by,
                },
            )
        )
    return findings
