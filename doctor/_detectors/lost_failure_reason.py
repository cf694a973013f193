"""``lost_failure_reason``: a generic failure that hides the concrete one just upstream of it.

A failure is *generic* when its reason is swallowed (empty, ``None``, ``Subprocess failed:
None``) or a placeholder (``failure_reason must be non-empty when status="fail"``, ``max
retries exceeded``, a lone ``error``/``failed``); see :mod:`doctor._detectors.swallowed_error`.
Its *upstream* is the latest failure with a concrete reason on another node of the same scope
that ended after the generic node's previous non-generic attempt end (a success or a concrete
failure) and before the generic failure: the failure that led the generic node to run and fail
again. ``all parallel branches failed`` is not generic here: it is an accurate summary whose
causes live in the branch scopes (Kilroy keeps them in the status file's failure signature).
"""

from __future__ import annotations

from doctor._detectors._context import Context, in_scope, needs
from doctor._detectors.swallowed_error import generic_sql
from doctor._facts import iso
from doctor._model import Finding, Severity, plural

__all__ = ["lost_failure_reason"]

_SQL = f"""
WITH ends AS (
    SELECT run_id, scope, node_id, end_seq, end_ts, failure_reason AS reason,
           lower(status) IN ('fail', 'retry') AS failed,
           lower(status) IN ('fail', 'retry') AND {generic_sql("failure_reason")} AS generic
    FROM attempts WHERE end_seq IS NOT NULL
),
lost AS (
    SELECT *, max(end_seq) FILTER (WHERE NOT generic) OVER (
               PARTITION BY run_id, scope, node_id ORDER BY end_seq
               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS since
    FROM ends
),
matched AS (
    SELECT g.run_id, g.scope, g.node_id, g.reason, g.end_seq, g.end_ts,
           arg_max(u.node_id, u.end_seq) AS up_node, arg_max(u.reason, u.end_seq) AS up_reason
    FROM lost g
    JOIN ends u ON u.run_id = g.run_id AND u.scope = g.scope AND u.node_id <> g.node_id
     AND u.end_seq < g.end_seq AND u.end_seq > coalesce(g.since, -1)
     AND u.failed AND NOT u.generic
    WHERE g.generic
    GROUP BY g.run_id, g.scope, g.node_id, g.reason, g.end_seq, g.end_ts
)
SELECT run_id, scope, node_id, reason, count(*) AS n,
       arg_max(up_node, end_seq), arg_max(up_reason, end_seq),
       epoch_ns(min(end_ts)), epoch_ns(max(end_ts)), count(DISTINCT up_reason)
FROM matched
GROUP BY ALL ORDER BY run_id, scope, node_id, reason
"""


@needs(failed_attempts=True)
def lost_failure_reason(ctx: Context) -> list[Finding]:
    """Generic or empty failure reasons that hide a concrete upstream failure in the scope."""
    findings: list[Finding] = []
    for run_id, scope, node_id, reason, n, up_node, up_reason, first, last, n_up in ctx.tables.sql(
        _SQL
    ):
        where = in_scope(scope)
        shown = "an empty reason" if not (reason or "").strip() else repr(reason)
        findings.append(
            Finding(
                code="lost_failure_reason",
                # Retry policy, cycle breakers and people all read the generic text, not the
                # cause: the incident's check nodes hid every branch's real failure this way.
                severity=Severity.ERROR,
                summary=(
                    f"{node_id}{where} failed {plural(n, 'time')} with {shown} right after "
                    f"{up_node} failed with {up_reason!r}; act on that upstream reason, and make "
                    f"{node_id} carry it through instead of a generic one"
                ),
                run_id=run_id,
                scope=scope,
                node_id=node_id,
                evidence={
                    "reason": reason,
                    "occurrences": int(n),
                    "upstream_node": up_node,
                    "upstream_reason": up_reason,
                    "upstream_reasons": int(n_up),
                    "first_at": iso(first),
                    "last_at": iso(last),
                },
            )
        )
    return findings
