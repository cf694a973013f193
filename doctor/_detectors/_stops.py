"""How Kilroy ended a scope: shared by the detectors that must not mistake a stop for a fault.

When an attempt ends the run (``run_failed`` after a signal, the stall watchdog, the
deterministic-failure cycle breaker), Kilroy deliberately saves no checkpoint for that node:
``checkpoint.json`` keeps the last node that completed before it, which is exactly where a
resume must start (format doc §3.3: "a breaker trip aborts before saving"). So in such a scope
the checkpoint's ``current_node`` is right when it names the node completed before the
interrupted one.
"""

from __future__ import annotations

from doctor._facts import STOP_EVENTS
from doctor._tables import Tables

__all__ = ["SCOPE_STOPS", "interrupted_visits"]

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
# attempt) and a stop or terminal event followed; and the node that completed before it.
_SQL = f"""
WITH last_end AS (
    SELECT run_id, scope, max(seq) AS seq, arg_max(node_id, seq) AS node
    FROM {{view}} WHERE event = 'stage_attempt_end' AND node_id IS NOT NULL GROUP BY ALL
),
cut AS (
    SELECT l.* FROM last_end l
    WHERE EXISTS (SELECT 1 FROM {{view}} x WHERE x.run_id = l.run_id AND x.scope = l.scope
                  AND x.seq > l.seq AND x.event IN {_SCOPE_STOPS_SQL})
      AND NOT EXISTS (SELECT 1 FROM {{view}} x WHERE x.run_id = l.run_id
                      AND x.scope = l.scope AND x.seq > l.seq
                      AND x.event IN ('edge_selected', 'stage_attempt_start', 'run_completed'))
)
SELECT c.run_id, c.scope, c.node,
       (SELECT arg_max(x.node_id, x.seq) FROM {{view}} x
        WHERE x.run_id = c.run_id AND x.scope = c.scope AND x.seq < c.seq
          AND x.event = 'stage_attempt_end' AND x.node_id IS NOT NULL
          AND x.node_id <> c.node) AS resume_node
FROM cut c
"""


def interrupted_visits(
    tables: Tables, view: str = "progress_events"
) -> dict[tuple[str, str], tuple[str, str | None]]:
    """``{(run_id, scope): (interrupted_node, resume_node)}`` for scopes a stop ended mid-visit.

    ``view`` is the events table (by default its non-heartbeat rows: the events this reads) or
    a detector's restricted view of it.
    """
    rows = tables.sql(_SQL.format(view=view))
    return {(r, s): (str(node), None if prev is None else str(prev)) for r, s, node, prev in rows}
