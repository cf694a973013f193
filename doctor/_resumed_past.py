"""A resume that routed on an interrupted attempt instead of running it again.

``kilroy attractor resume`` goes on from the run's checkpoint and routes on the status the
checkpoint's node left (format doc §3.9; docs/repair.md). When a signal stopped the run
during a node's later visit, Kilroy recorded that visit's cancellation as the node's status
(``fail``, ``failure_class`` ``canceled``, "stopped by signal …"), and the resume routes on
*that*: down the node's failure edge, without running the interrupted visit again. The run
may then end ``success`` on a route the work never chose (real run
``fixtures/kilroy/runs/self_loop_sigterm_resumed``: ``count`` routed to itself, SIGTERM in its
second visit, the resume went on at ``report``, the graph's failure path, and succeeded).

No finding code of FINDINGS.md means this (``false_success`` is a fallback hop into the
exit; the cancellation is a real ``fail`` the graph routes), so it is the fact
``resumed_past`` (extra), which the human and Markdown diagnoses print under the state:
a success reached this way does not read as a plain one.

The rule, per resume of the run (an engine start after its first, in its top-level streams:
``input_materialization_started`` naming no node, :data:`doctor._superseded.RESUME_MARK`):
the run's last top-level attempt started before the resume ended as a stop (a
``canceled`` failure class or a "stopped by signal" reason), the resume started attempts, and
none of them is that node's: its interrupted visit was never run again. A resume that goes on
from an earlier checkpoint and reaches the node again (real run
``loop_restart_sigterm_resumed``: stopped in ``restart-1/``'s build, resumed in the base
directory from fetch, build ran again) redid the work: no note.

A visit whose engine was killed (SIGKILL, the OOM killer) never ended and recorded no stop, but
its stage may have left a status.json in its stage directory (written before it was done, or
after the engine died: the stage outlives it). A resume whose checkpoint names the node's
previous visit routes on that file (real run ``self_loop_sigkill_resumed``). Such an unended
attempt counts when the resume evaluated or took one of the node's edges before its first
attempt (``killed: true``); one the resume routed on no status of (a concurrent region run
again as branches, ``concurrent_killed_resumed``) does not.

Either kind needs that routing in the scope the visit ran in: a resume of a run stopped in
``restart-N/`` goes on in the base directory from the checkpoint there, which may name an
earlier visit of the same node (real runs ``loop_restart_fetch_killed_resumed_killed``,
``loop_restart_fetch_sigterm_resumed_killed``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from doctor._layout import TOP_SQL
from doctor._run_state import signal_stop
from doctor._superseded import RESUME_MARK
from doctor._timestamps import iso

if TYPE_CHECKING:
    from doctor._tables import Tables

__all__ = ["resumed_past"]

# Per run and resume (every engine start in the top-level streams but the first): the last
# top-level attempt started before it, the node of the first one started after it, and
# whether the resume started that interrupted node again at all.
_SQL = f"""
WITH starts AS (
    SELECT run_id, ts, row_number() OVER (PARTITION BY run_id ORDER BY ts, seq) AS k
    FROM progress_events
    WHERE {TOP_SQL} AND event = '{RESUME_MARK}' AND node_id IS NULL
),
top AS (SELECT * FROM attempts WHERE {TOP_SQL}),
resumes AS (
    SELECT r.run_id, r.ts,
           (SELECT arg_max([node_id, status, failure_reason, failure_class,
                            CAST(end_seq IS NULL AS VARCHAR), scope], start_ts)
            FROM top a WHERE a.run_id = r.run_id AND a.start_ts < r.ts) AS before,
           (SELECT arg_min([node_id, CAST(epoch_ns(start_ts) AS VARCHAR)], start_ts) FROM top a
            WHERE a.run_id = r.run_id AND a.start_ts > r.ts) AS next
    FROM starts r WHERE r.k > 1
)
SELECT run_id, epoch_ns(ts), before, next[1],
       EXISTS (SELECT 1 FROM top a WHERE a.run_id = resumes.run_id AND a.start_ts > resumes.ts
               AND a.node_id = resumes.before[1]) AS again,
       -- the resume routed on that visit's status: it evaluated or took one of the node's
       -- edges, in the scope the visit ran in, before its first attempt
       EXISTS (SELECT 1 FROM progress_events e
               WHERE e.run_id = resumes.run_id AND e.scope = resumes.before[6]
                 AND e.ts >= resumes.ts
                 AND epoch_ns(e.ts) <= CAST(resumes.next[2] AS BIGINT)
                 AND ((e.event = 'edge_condition_evaluated' AND e.node_id = resumes.before[1])
                      OR (e.event = 'edge_selected' AND e.from_node = resumes.before[1])))
           AS routed
FROM resumes
ORDER BY run_id, ts
"""


def _stopped(status: Any, reason: Any, failure_class: Any) -> bool:
    """Whether an attempt end is a stop's record of an interrupted visit, not its outcome.

    >>> _stopped("fail", "stopped by signal terminated", "canceled"), _stopped("fail", "x", None)
    (True, False)
    """
    return status == "fail" and (failure_class == "canceled" or signal_stop(reason))


def resumed_past(tables: Tables) -> dict[str, list[dict[str, Any]]]:
    """Per run id, each resume that went on at another node than the one a stop interrupted:
    ``resumed_at`` (RFC 3339), ``node`` (the interrupted one), ``failure_reason`` (its
    stop's), ``next_node`` (where the resume went on). Runs without one are absent."""
    if tables.event_kinds is not None and RESUME_MARK not in tables.event_kinds:
        return {}
    out: dict[str, list[dict[str, Any]]] = {}
    for run_id, at_ns, before, next_node, again, routed in tables.sql(_SQL):
        if before is None or next_node is None or again:
            continue
        node, status, reason, failure_class, open_, _scope = before
        # The resume must have routed on that visit's status (the node's edges, in its scope):
        # a resume of a run stopped in restart-N/ goes on in the base directory from the
        # checkpoint there, and may route on an earlier visit of the same node.
        if not routed:
            continue
        # A visit whose engine was killed (SIGKILL, OOM) never ended: the resume routed past it
        # on the status.json the visit's own stage had left.
        killed = open_ == "true"
        if not killed and not _stopped(status, reason, failure_class):
            continue
        entry: dict[str, Any] = {
            "resumed_at": iso(at_ns),
            "node": node,
            "failure_reason": reason,
            "next_node": next_node,
        }
        if killed:
            entry["killed"] = True
        out.setdefault(str(run_id), []).append(entry)
    return out
