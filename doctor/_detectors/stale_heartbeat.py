"""``stale_heartbeat``: heartbeats that fake liveness for work that is no longer running."""

from __future__ import annotations

from doctor._attempts import LATEST_ATTEMPTS_SQL
from doctor._detectors._context import Context, needs, scope_words
from doctor._model import Finding, Severity
from doctor._tables import heartbeat_sql
from doctor._timestamps import iso

__all__ = ["stale_heartbeat"]

# Stage heartbeats with no open attempt of their node: the latest start of that node before
# the heartbeat (ASOF), when it has no end or ended later. Keyed on the integer stream_id:
# these joins see every heartbeat of the fleet.
_STALE_ASOF = """
beats AS (
    SELECT h.stream_id, h.node_id, h.seq,
           a.start_seq IS NULL OR (a.end_seq IS NOT NULL AND a.end_seq < h.seq) AS stale
    FROM (SELECT stream_id, node_id, rowid AS seq FROM events_base
          WHERE event = 'stage_heartbeat' AND node_id IS NOT NULL) h
    ASOF LEFT JOIN (SELECT stream_id, node_id, start_seq, end_seq FROM attempts) a
      ON h.stream_id = a.stream_id AND h.node_id = a.node_id AND h.seq > a.start_seq
),
stale AS (
    SELECT st.run_id, st.scope, b.node_id, count(*) AS n, max(b.seq) AS last_seq
    FROM beats b JOIN streams st USING (stream_id) WHERE b.stale GROUP BY ALL
),
"""
# The same set when each node has few attempts: every attempt covers the seqs after its
# start, up to its end and before the node's next start (the start the ASOF join would pick
# then), exclusive; a heartbeat outside all its node's spans is stale. The spans of a node are
# disjoint, so a heartbeat matches at most one: a hash join on the node, with no sort of the
# heartbeats (several times cheaper), but one comparison per heartbeat and attempt of its node.
_STALE_SPANS = """
spans AS (
    SELECT stream_id, node_id, start_seq AS lo,
           least(coalesce(end_seq + 1, 9223372036854775807),
                 coalesce(lead(start_seq) OVER (PARTITION BY stream_id, node_id
                                                ORDER BY start_seq), 9223372036854775807)) AS hi
    FROM attempts
),
stale AS (
    SELECT st.run_id, st.scope, h.node_id, count(*) AS n, max(h.seq) AS last_seq
    FROM (SELECT stream_id, node_id, rowid AS seq FROM events_base
          WHERE event = 'stage_heartbeat' AND node_id IS NOT NULL) h
    LEFT JOIN spans a
      ON a.stream_id = h.stream_id AND a.node_id = h.node_id AND h.seq > a.lo AND h.seq < a.hi
    JOIN streams st ON st.stream_id = h.stream_id
    WHERE a.lo IS NULL
    GROUP BY ALL
),
"""
#: Above this many attempts of one node in one stream, the ASOF join is the cheaper one.
#: Measured on 400,000 heartbeats of one node (CPU seconds, spans / ASOF): 8 attempts 0.027 /
#: 0.094, 64 attempts 0.061 / 0.083, 128 attempts 0.111 / 0.077; the ASOF join costs the same
#: whatever the attempts, the spans' comparisons grow with them. (A fleet of retry loops of
#: 42 attempts per node: 0.059 / 0.143 per 64 runs.)
MAX_SPANS_PER_NODE = 64

# Per scope: the last progress event, heartbeats after it, and stage heartbeats whose node had
# no open attempt at that moment ({stale}: one of the two above).
_TEMPLATE = f"""
WITH last_progress AS (
    SELECT run_id, scope, max(seq) AS seq, arg_max(event, seq) AS event,
           epoch_ns(arg_max(ts, seq)) AS ts
    FROM progress_events GROUP BY ALL
),
after_nodes AS (
    SELECT e.run_id, e.scope, coalesce(e.node_id, e.branch_key, '') AS node, count(*) AS n,
           epoch_ns(max(e.ts)) AS last_ts
    FROM events e LEFT JOIN last_progress p USING (run_id, scope)
    -- Nothing before the earliest of the streams' last progress events is after its own:
    -- those rows (most of them) are dropped before the join. A stream without any keeps all.
    WHERE e.seq > (SELECT min(coalesce(l.seq, -1))
                   FROM streams LEFT JOIN last_progress l USING (run_id, scope))
      AND {heartbeat_sql("e.event")} AND e.seq > coalesce(p.seq, -1)
    GROUP BY ALL
),
after AS (
    SELECT run_id, scope, sum(n) AS n, max(last_ts) AS last_ts,
           map(list(node ORDER BY n DESC, node), list(n ORDER BY n DESC, node)) AS nodes
    FROM after_nodes GROUP BY ALL
),
-- A scope's latest starts without an end. One the run left behind in a restart-N scope (is_open
-- false: the run went on elsewhere) still counts: that scope did not finish, its process died,
-- and the heartbeats after its last progress came from that attempt before it did.
{{stale}}open_at_end AS (
    SELECT run_id, scope, count(*) AS n FROM ({LATEST_ATTEMPTS_SQL})
    WHERE end_seq IS NULL GROUP BY ALL
)
SELECT s.run_id, s.scope, list(s.node_id ORDER BY s.n DESC, s.node_id), list(s.n ORDER BY s.n
       DESC, s.node_id), max(s.last_seq) > coalesce(any_value(p.seq), -1) AS after_progress,
       coalesce(any_value(a.n), 0), any_value(a.last_ts), any_value(p.event), any_value(p.ts),
       coalesce(any_value(o.n), 0), any_value(a.nodes)
FROM stale s
LEFT JOIN last_progress p USING (run_id, scope)
LEFT JOIN after a USING (run_id, scope)
LEFT JOIN open_at_end o USING (run_id, scope)
GROUP BY s.run_id, s.scope
UNION ALL
-- A finished scope (no open attempt) that still receives heartbeats of any kind.
SELECT a.run_id, a.scope, [], [], true, a.n, a.last_ts, p.event, p.ts, 0, a.nodes
FROM after a
LEFT JOIN last_progress p USING (run_id, scope)
LEFT JOIN open_at_end o USING (run_id, scope)
WHERE coalesce(o.n, 0) = 0 AND NOT EXISTS (
    SELECT 1 FROM stale s WHERE s.run_id = a.run_id AND s.scope = a.scope)
ORDER BY 1, 2
"""


def _stale_sql(ctx: Context) -> str:
    """The cheaper of the two (they find the same heartbeats), from the most attempts of one
    node in one scope: the facts' ``attempt_spans`` count them (and keep the largest counts
    when they cut a run's rows), so DuckDB need not be asked."""
    most = max(
        (int(s["attempts"]) for f in ctx.facts.values() for s in f.get("attempt_spans", [])),
        default=0,
    )
    return _STALE_SPANS if most <= MAX_SPANS_PER_NODE else _STALE_ASOF


def _has_heartbeats(ctx: Context) -> bool:
    """Whether the batch may have heartbeats (of any kind, forwarded ones included:
    :func:`doctor._tables.heartbeat_sql`)."""
    kinds = ctx.tables.event_kinds
    return kinds is None or any(
        k in ("branch_stale_warning", "branch_liveness", "branch_progress")
        or k.endswith("_heartbeat")
        for k in kinds
    )


@needs(when=_has_heartbeats)
def stale_heartbeat(ctx: Context) -> list[Finding]:
    """Heartbeats naming a node with no open attempt, or arriving after a scope finished."""
    findings = []
    for (
        run_id,
        scope,
        nodes,
        counts,
        after_progress,
        n_after,
        last_hb,
        lp_event,
        lp_ts,
        _open,
        after_nodes,
    ) in ctx.tables.sql(_TEMPLATE.replace("{stale}", _stale_sql(ctx))):
        stale_nodes = {str(n): int(c) for n, c in zip(nodes, counts, strict=True)}
        total = sum(stale_nodes.values())
        span = round((last_hb - lp_ts) / 1e9, 3) if last_hb is not None and lp_ts else 0.0
        where = scope_words(scope)
        if total:
            top = ", ".join(f"{n} ({c})" for n, c in list(stale_nodes.items())[:3])
            summary = (
                f"{total} stage heartbeats in {where} name nodes with no open attempt ({top}); "
                f"they fake liveness, so do not read them as progress"
            )
        else:
            summary = f"{n_after} heartbeats arrived in {where} after its work finished"
        if n_after:
            summary += f"; {n_after} came in the {span:.0f} s after the last progress event"
        findings.append(
            Finding(
                code="stale_heartbeat",
                # Stale beats still arriving after the last progress hide a dead or finished
                # scope from every watchdog; leaked beats that stopped are only noise.
                severity=Severity.ERROR if after_progress and n_after else Severity.WARNING,
                summary=summary,
                run_id=run_id,
                scope=scope,
                node_id=next(iter(stale_nodes), None),
                evidence={
                    "heartbeats_after_last_progress": int(n_after),
                    "span_after_last_progress_s": span,
                    "stale_heartbeats": total,
                    "stale_nodes": stale_nodes,
                    "last_progress_event": lp_event,
                    "last_progress_at": iso(lp_ts),
                    # Which nodes the heartbeats after the last progress event name.
                    "nodes_after_last_progress": {
                        str(k): int(v) for k, v in (after_nodes or {}).items()
                    },
                },
            )
        )
    return findings
