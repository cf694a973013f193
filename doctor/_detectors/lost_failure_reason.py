"""``lost_failure_reason``: a generic failure that hides the concrete one just upstream of it.

A failure is *generic* when its reason is swallowed (empty, ``None``, ``Subprocess failed:
None``) or a placeholder (``failure_reason must be non-empty when status="fail"``, ``max
retries exceeded``, a lone ``error``/``failed``); see :mod:`doctor._detectors.swallowed_error`.
Its *upstream* is the latest failure with a concrete reason on another node of the same scope
that ended after the generic node's previous non-generic attempt end (a success or a concrete
failure) and before the generic failure: the failure that led the generic node to run and fail
again. ``all parallel branches failed`` is not generic here: it is an accurate summary whose
causes live in the branch scopes (Kilroy keeps them in the status file's failure signature).

A *canceled* failure (``signal: killed``, ``context canceled``) loses its cause the same way
when another node of its scope failed concretely while it ran: in a concurrent region Kilroy
cancels the running siblings of a node that fails, and the region's reason, so the run's
(``run_failed``, final.json), names the first canceled node's ``context canceled`` instead of
the failure (real run ``concurrent_sibling_fails``). The finding is on the canceled node; its
``reason`` is the run's recorded reason when that names the node, else the attempt's.
"""

from __future__ import annotations

from typing import Any

from doctor._detectors._context import Context, in_scope, needs
from doctor._detectors.swallowed_error import generic_sql
from doctor._model import Finding, Severity, plural
from doctor._timestamps import iso

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


#: What Kilroy records for an attempt it ended because its run context was canceled.
CANCELED_RE = r"(?is).*\b(context canceled|signal: killed)\b.*"

# Canceled attempts during which another node of the scope failed with a concrete reason (the
# latest such failure): the sibling failure that canceled them.
_CANCELED_SQL = f"""
WITH ends AS (
    SELECT run_id, scope, node_id, start_seq, end_seq, end_ts, failure_reason AS reason,
           lower(status) IN ('fail', 'retry') AS failed,
           regexp_full_match(coalesce(failure_reason, ''), '{CANCELED_RE}') AS canceled,
           {generic_sql("failure_reason")} AS generic
    FROM attempts WHERE end_seq IS NOT NULL
),
matched AS (
    SELECT g.run_id, g.scope, g.node_id, g.reason, g.end_seq, g.end_ts,
           arg_max(u.node_id, u.end_seq) AS up_node, arg_max(u.reason, u.end_seq) AS up_reason
    FROM ends g
    JOIN ends u ON u.run_id = g.run_id AND u.scope = g.scope AND u.node_id <> g.node_id
     AND u.end_seq > g.start_seq AND u.end_seq < g.end_seq
     AND u.failed AND NOT u.generic AND NOT u.canceled
    WHERE g.failed AND g.canceled
    GROUP BY g.run_id, g.scope, g.node_id, g.reason, g.end_seq, g.end_ts
)
SELECT run_id, scope, node_id, reason, count(*) AS n,
       arg_max(up_node, end_seq), arg_max(up_reason, end_seq),
       epoch_ns(min(end_ts)), epoch_ns(max(end_ts)), count(DISTINCT up_reason)
FROM matched
GROUP BY ALL ORDER BY run_id, scope, node_id, reason
"""


def _run_reason(ctx: Context, run_id: str, node_id: str) -> str | None:
    """The run's recorded reason when it names ``node_id`` canceled, else None."""
    facts = ctx.facts.get(run_id)
    reason = facts.get("terminal_reason") if facts is not None else None
    if isinstance(reason, str) and f"node {node_id} failed: context canceled" in reason:
        return reason
    return None


@needs(failed_attempts=True)
def lost_failure_reason(ctx: Context) -> list[Finding]:
    """Generic, empty or canceled failure reasons that hide a concrete failure in the scope."""
    rows: list[tuple[Any, ...]] = [(*row, False) for row in ctx.tables.sql(_SQL)]
    for row in ctx.tables.sql(_CANCELED_SQL):
        run_reason = _run_reason(ctx, row[0], row[2])
        rows.append((*row[:3], run_reason or row[3], *row[4:], True))
    rows.sort(key=lambda r: (r[0], r[1], r[2], r[3] or ""))
    return [_finding(*row) for row in rows]


def _summary(node_id: str, where: str, reason: str | None, n: int, up: tuple[str, str]) -> str:
    shown = "an empty reason" if not (reason or "").strip() else repr(reason)
    return (
        f"{node_id}{where} failed {plural(n, 'time')} with {shown} right after {up[0]} failed "
        f"with {up[1]!r}; act on that upstream reason, and make {node_id} carry it through "
        "instead of a generic one"
    )


def _canceled_summary(node_id: str, where: str, reason: str | None, up: tuple[str, str]) -> str:
    return (
        f"{node_id}{where} was canceled ({reason!r}) because {up[0]} failed with {up[1]!r} "
        f"while it ran; act on {up[0]}'s reason, not {node_id}'s cancellation"
    )


def _finding(*row: Any) -> Finding:
    run_id, scope, node_id, reason, n, up_node, up_reason, first, last, n_up, canceled = row
    where = in_scope(scope)
    up = (up_node, up_reason)
    return Finding(
        code="lost_failure_reason",
        # Retry policy, cycle breakers and people all read the generic text, not the cause:
        # the incident's check nodes hid every branch's real failure this way.
        severity=Severity.ERROR,
        summary=(
            _canceled_summary(node_id, where, reason, up)
            if canceled
            else _summary(node_id, where, reason, int(n), up)
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
