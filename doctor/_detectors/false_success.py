"""``false_success``: a run that ended ``success`` because Kilroy fell back into its exit.

When a node fails and none of its outgoing edges' conditions match, Kilroy does not stop: when
all its edges are conditional it picks the best of them anyway (``edge_selected`` with
``selection_method: "fallback"``, format doc §2.4 and §6, "Edge selection", step 5). If that
edge leads into the exit node, the exit runs, no goal gate objects, and ``final.json`` says
``success`` although the work the run was for failed.

The node's retry target does not prevent it: Kilroy goes to the retry target
(``no_matching_fail_edge_fallback``) only when no edge at all is left to take, so a failed node
with such a fallback edge never reaches it (real run ``fallback_over_retry_target``); the
advice says so.

Reported (``error``) when the run's final.json says ``success`` and, in the top-level scope
the run ended in, the last ``edge_selected`` into a node that then ran no attempt there (the
exit node) was a fallback leaving a node whose last attempt before it failed (``fail`` or
``retry``). That scope is the one the run worked in last (the facts' ``_current_scope``: the
base directory or a ``restart-N/``), the one whose ending final.json records. A hop in another
top-level scope did not end the run: Kilroy writes the edge of a ``loop_restart`` into the
scope it leaves and runs its target in ``restart-N/``, so there the target "ran no attempt".
"""

from __future__ import annotations

from doctor._detectors._context import Context, needs
from doctor._facts import facts_of
from doctor._layout import TOP_SQL
from doctor._model import Finding, Severity
from doctor._timestamps import iso

__all__ = ["false_success"]

_SQL = f"""
WITH hops AS (
    SELECT run_id, scope, seq, ts, from_node, to_node, condition FROM progress_events
    WHERE {TOP_SQL} AND event = 'edge_selected' AND selection_method = 'fallback'
      AND from_node IS NOT NULL AND to_node IS NOT NULL
),
into_exit AS (
    SELECT h.* FROM hops h
    WHERE NOT EXISTS (SELECT 1 FROM progress_events s
                      WHERE s.run_id = h.run_id AND s.scope = h.scope AND s.seq > h.seq
                        AND s.event = 'stage_attempt_start' AND s.node_id = h.to_node)
)
SELECT h.run_id, h.scope, h.from_node, h.to_node, h.condition, epoch_ns(h.ts),
       a.status, a.failure_reason, a.attempt, a.max
FROM into_exit h
ASOF JOIN (SELECT run_id, scope, seq, node_id, status, failure_reason, attempt, "max"
           FROM progress_events WHERE event = 'stage_attempt_end') a
  ON a.run_id = h.run_id AND a.scope = h.scope AND a.seq < h.seq
WHERE a.node_id = h.from_node AND lower(a.status) IN ('fail', 'retry')
ORDER BY h.run_id, h.seq
"""


def _says_success(ctx: Context) -> bool:
    """Whether a run's final.json says success: only such a run can be falsely successful."""
    return any(_success(ctx, run_id) for run_id in ctx.tables.documents)


def _success(ctx: Context, run_id: str) -> bool:
    final = ctx.documents(run_id).final
    return final is not None and final.ok and final.get("status") == "success"


def _ended_in(ctx: Context, run_id: str, scope: str) -> bool:
    """Whether ``scope`` is the top-level scope the run worked in last (any, when unknown)."""
    current = facts_of(ctx.facts, run_id).get("_current_scope")
    return current is None or current == scope


@needs(events=("edge_selected", "stage_attempt_end"), when=_says_success)
def false_success(ctx: Context) -> list[Finding]:
    """Runs whose final.json says success because a failed node fell back into the exit."""
    findings: list[Finding] = []
    for run_id, scope, src, dst, cond, at, status, reason, attempt, mx in ctx.tables.sql(_SQL):
        if not _success(ctx, run_id) or not _ended_in(ctx, run_id, scope):
            continue
        findings.append(
            Finding(
                code="false_success",
                severity=Severity.ERROR,
                summary=(
                    f"final.json says success, but {src} failed ({reason or status!r}) and no "
                    f"edge condition matched, so Kilroy fell back to the edge into {dst} and "
                    f"ended the run; treat the run as failed and give {src} an edge for "
                    "failure (or make it a goal gate): a retry_target alone is not taken, "
                    "Kilroy falls back to such an edge first"
                ),
                run_id=run_id,
                scope=scope,
                node_id=src,
                evidence={
                    "from_node": src,
                    "to_node": dst,
                    "selection_method": "fallback",
                    "condition": cond,
                    "failed_status": status,
                    "failure_reason": reason,
                    "attempt": attempt,
                    "max_attempts": mx,
                    "edge_at": iso(at),
                    "final_status": "success",
                },
            )
        )
    # One finding per run: the last fallback into the exit is the one that ended it.
    last: dict[str, Finding] = {}
    for f in findings:
        last[f.run_id or ""] = f
    return list(last.values())
