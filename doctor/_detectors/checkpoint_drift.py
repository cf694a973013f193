"""``checkpoint_drift``: a checkpoint.json that disagrees with its scope's event stream.

Kilroy saves ``checkpoint.json`` after every completed node (format doc §3.3): ``current_node``
is the last completed node, ``completed_nodes`` the visit history (repeats are legitimate: a
retry loop revisits nodes), and ``node_retries`` the retries used per node, reset to 0 when the
node succeeds. So none of "repeats in completed_nodes", "node_retries smaller than the retries
seen" or "current_node is not where the stream is" is drift by itself. Three conditions are:

* **lost retries** (error): a node was retried (``stage_attempt_start`` with ``attempt > 1``)
  after its last success, its last attempt is closed, the checkpoint was written after that
  attempt ended, and ``node_retries`` records 0 (or nothing) for it. The engine would resume
  with a fresh retry budget for a node that already used it.
* **duplicate-heavy history** (warning): ``completed_nodes`` holds at least
  ``DUP_MIN_ENTRIES`` entries and more than ``DUP_RATIO`` entries per distinct node, in a scope
  that has not succeeded: a loop that kept going long enough to bloat every checkpoint and
  resume context. A scope that succeeded is resumed by nobody, so the same history is only
  the record of its loops (real run ``goal_gate_loop_resumed``: a goal-gate loop killed in a
  later lap and resumed to success, 22 entries for 4 nodes, each one a visit of the stream).
* **lagging node** (warning): ``current_node`` is neither the stream's last completed node nor
  the node the stream moved to after it without attempt events (the exit node: an
  ``edge_selected`` into it, or its inputs materialized, which is all a resume that routes
  into it writes), nor,
  when a stop ended the run during a node's visit (a signal, the stall watchdog, a cycle
  breaker), the node completed before that one: Kilroy does not checkpoint the interrupted
  node, so the checkpoint is the correct resume point (``_stops.interrupted_visits``); nor,
  when the checkpoint was written before the last completed node ended and the scope did
  nothing since but what Kilroy writes before that node's save (no start, no edge evaluated
  or selected from it), the node completed before it: Kilroy saves a node's checkpoint after
  its attempt end (after its git commit; for a fan-out, after the fan-in), so a live run
  shows this between the two, and a run killed in between keeps it: the last checkpoint
  saved, from which a resume runs the node again (real run ``checkpoint_save_killed``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from doctor._detectors._context import Context, more, scope_words
from doctor._detectors._stops import REGIONS_SQL
from doctor._documents import Document, checkpoint_fields
from doctor._facts import scope_state
from doctor._model import Finding, Severity
from doctor._tables import HEARTBEAT_SQL
from doctor._timestamps import parse_iso

__all__ = ["DUP_MIN_ENTRIES", "DUP_RATIO", "checkpoint_drift"]

#: completed_nodes with at least this many entries ...
DUP_MIN_ENTRIES = 20
#: ... and more than this many entries per distinct node is duplicate-heavy.
DUP_RATIO = 4.0

_SUCCESS_LIKE = "('success', 'partial_success', 'degraded_success', 'skipped')"


# Per scope: retries observed, the node of the last progress event naming one, and the last
# *settled* completed node: the node of the latest stage_attempt_end after which the node's
# visit is over (a success-like status, the last allowed attempt, a following start of another
# node or of a new visit, or a later event that closes the visit).
_SCOPE_SQL = f"""
WITH ends AS (
    SELECT run_id, scope, seq, node_id, attempt, "max" AS mx, status, ts
    FROM ck_events WHERE event = 'stage_attempt_end' AND node_id IS NOT NULL
),
starts AS (
    SELECT run_id, scope, seq, node_id AS next_node, attempt AS next_attempt
    FROM ck_events WHERE event = 'stage_attempt_start' AND node_id IS NOT NULL
),
closers AS (
    SELECT run_id, scope, seq, coalesce(from_node, node_id) AS node, event
    FROM ck_events
    WHERE event IN ('edge_selected', 'stage_retry_blocked', 'run_completed', 'run_failed',
                    'loop_restart', 'deterministic_failure_cycle_check',
                    'deterministic_failure_cycle_breaker',
                    'subgraph_deterministic_failure_cycle_check',
                    'subgraph_deterministic_failure_cycle_breaker', 'stuck_cycle_breaker')
),
settled AS (
    SELECT e.run_id, e.scope, e.seq, e.node_id, e.ts
    FROM ends e ASOF LEFT JOIN starts s
      ON e.run_id = s.run_id AND e.scope = s.scope AND e.seq < s.seq
    -- Kilroy checkpoints no node of a concurrent region: the join's checkpoint records them
    WHERE NOT EXISTS (SELECT 1 FROM ({REGIONS_SQL.format(events="ck_events")}) r
                      WHERE r.run_id = e.run_id AND r.scope = e.scope
                        AND e.seq > r.from_seq AND e.seq < r.to_seq)
      AND (e.status IN {_SUCCESS_LIKE}
       OR (e.mx IS NOT NULL AND e.attempt >= e.mx)
       OR (s.next_node IS NOT NULL
           AND NOT (s.next_node = e.node_id AND s.next_attempt > e.attempt))
       OR EXISTS (SELECT 1 FROM closers c
                  WHERE c.run_id = e.run_id AND c.scope = e.scope AND c.seq > e.seq
                    AND (c.node = e.node_id OR c.event IN ('run_completed', 'run_failed',
                                                           'loop_restart'))))
),
last_settled AS (
    SELECT run_id, scope, max(seq) AS seq, arg_max(node_id, seq) AS node,
           epoch_ns(arg_max(ts, seq)) AS end_ns
    FROM settled GROUP BY ALL
),
-- the node settled before the last one (another node): what a checkpoint written before the
-- last one ended names
before_last AS (
    SELECT s.run_id, s.scope, arg_max(s.node_id, s.seq) AS node
    FROM settled s JOIN last_settled l USING (run_id, scope)
    WHERE s.seq < l.seq AND s.node_id <> l.node
    GROUP BY ALL
),
moved_to AS (
    -- where the stream went after the last completed node, when that node ran no attempts:
    -- an edge_selected into it, or Kilroy materializing its inputs (it does so on entering
    -- every node, the exit node included; a resume routes with edge evaluations only and
    -- writes no edge_selected, real run checkpoint_saved_killed_resumed)
    SELECT e.run_id, e.scope, arg_max(e.node, e.seq) AS node
    FROM (SELECT run_id, scope, seq, to_node AS node FROM ck_events
          WHERE event = 'edge_selected'
          UNION ALL
          SELECT run_id, scope, seq, node_id FROM ck_events
          WHERE event = 'input_materialization_started' AND node_id IS NOT NULL) e
    JOIN last_settled l USING (run_id, scope)
    WHERE e.seq > l.seq
      AND NOT EXISTS (SELECT 1 FROM starts s WHERE s.run_id = e.run_id AND s.scope = e.scope
                      AND s.next_node = e.node AND s.seq > l.seq)
    GROUP BY ALL
),
scopes AS (
    SELECT run_id, scope,
           count(*) FILTER (WHERE event = 'stage_attempt_start' AND attempt > 1) AS retries,
           arg_max(coalesce(node_id, to_node), seq) FILTER (
               WHERE NOT {HEARTBEAT_SQL} AND coalesce(node_id, to_node) IS NOT NULL) AS actual
    FROM ck_events GROUP BY ALL
)
SELECT s.run_id, s.scope, s.retries, s.actual, l.node, m.node, b.node, l.end_ns,
       -- Kilroy saves a node's checkpoint before it routes on from it (edge evaluation,
       -- edge_selected) or starts anything: after either, the save is done
       EXISTS (SELECT 1 FROM ck_events n WHERE n.run_id = s.run_id AND n.scope = s.scope
               AND n.seq > l.seq
               AND (n.event = 'stage_attempt_start'
                    OR (n.event IN ('edge_selected', 'edge_condition_evaluated')
                        AND coalesce(n.from_node, n.node_id) = l.node))) AS moved_on
FROM scopes s
LEFT JOIN last_settled l USING (run_id, scope)
LEFT JOIN moved_to m USING (run_id, scope)
LEFT JOIN before_last b USING (run_id, scope)
"""
# Per node: retries since its last success, whether its last attempt is open, when it ended.
_NODE_SQL = f"""
WITH nodes AS (
    SELECT run_id, scope, node_id,
           max(end_seq) FILTER (WHERE status IN {_SUCCESS_LIKE}) AS success_seq,
           arg_max(end_seq IS NULL, start_seq) AS last_open,
           epoch_ns(arg_max(end_ts, start_seq)) AS last_end
    FROM ck_attempts GROUP BY ALL
)
SELECT a.run_id, a.scope, a.node_id, count(*), any_value(n.last_open), any_value(n.last_end)
FROM ck_attempts a JOIN nodes n USING (run_id, scope, node_id)
WHERE a.attempt > 1 AND a.start_seq > coalesce(n.success_seq, -1)
GROUP BY ALL
"""


def checkpoint_drift(ctx: Context) -> list[Finding]:
    """Checkpoints that lost retries, bloat with repeats, or lag behind their event stream."""
    keys = [
        (run_id, scope)
        for run_id, docs in ctx.tables.documents.items()
        for scope, sd in docs.scopes.items()
        if sd.checkpoint is not None and sd.checkpoint.ok
    ]
    if not keys:  # no checkpoint that parsed: nothing to compare, and no query to plan
        return []
    ctx.restrict("ck", keys)
    stream = _read_stream(ctx)
    findings: list[Finding] = []
    for run_id, docs in sorted(ctx.tables.documents.items()):
        for scope, sd in sorted(docs.scopes.items()):
            doc = sd.checkpoint
            if doc is None or not doc.ok or not isinstance(doc.value, dict):
                continue  # absent, or torn (torn_artifact reports it)
            state = scope_state(ctx.facts[run_id], scope) if run_id in ctx.facts else None
            drift = _drift_of(doc, stream, (run_id, scope), state=state)
            if drift.lost or drift.bloated or drift.lagging:
                findings.append(_finding(run_id, scope, drift))
    return findings


@dataclass(frozen=True)
class _Stream:
    """What the checkpointed scopes' event streams say: per scope its retries and nodes
    (``_SCOPE_SQL``), per node its retries after its last success (``_NODE_SQL``), and the
    visits a stop interrupted."""

    scopes: dict[tuple[str, str], list[Any]]
    pending: dict[tuple[str, str], list[tuple[str, int, bool, int | None]]]
    cut: dict[tuple[str, str], tuple[str, str | None]]


def _read_stream(ctx: Context) -> _Stream:
    """Phase 1: the queries over the checkpointed scopes (``ck_events``)."""
    scopes = {(r, s): row for r, s, *row in ctx.tables.sql(_SCOPE_SQL)}
    pending: dict[tuple[str, str], list[tuple[str, int, bool, int | None]]] = {}
    for run_id, scope, node, n, last_open, last_end in ctx.tables.sql(_NODE_SQL):
        pending.setdefault((run_id, scope), []).append(
            (str(node), int(n), bool(last_open), last_end)
        )
    return _Stream(scopes, pending, ctx.interrupted_visits("ck"))


@dataclass(frozen=True)
class _Drift:
    """How one scope's checkpoint disagrees with its stream (nothing when all three are
    false): ``lost`` retries, ``bloated`` completed_nodes, a ``lagging`` current_node."""

    lost: dict[str, int]
    bloated: bool
    lagging: bool
    entries: int
    unique: int
    recorded: dict[str, int]
    ck_node: str | None
    retries: Any
    actual: Any
    last_done: Any

    def reasons(self) -> list[str]:
        """One clause per disagreement, for the summary."""
        reasons = []
        if self.lost:
            shown = more([f"{k} ({v})" for k, v in sorted(self.lost.items())], 3)
            reasons.append(
                f"node_retries records no retries for {shown} although the stream retried "
                "them after their last success, so a resume would grant a fresh budget"
            )
        if self.bloated:
            reasons.append(
                f"completed_nodes holds {self.entries} entries for {self.unique} distinct nodes"
            )
        if self.lagging:
            reasons.append(
                f"current_node is {self.ck_node} while the stream last completed {self.last_done}"
            )
        return reasons


def _drift_of(doc: Document, stream: _Stream, key: tuple[str, str], *, state: Any) -> _Drift:
    """Phase 2, per scope: compare the checkpoint ``doc`` of ``key`` with its stream
    (``state``: the scope's state, ``running``, ``succeeded``, ...)."""
    fields = checkpoint_fields(doc)
    completed: list[str] = list(fields["completed_nodes"])
    recorded: dict[str, int] = dict(fields["node_retries"])
    ck_node = fields["current_node"] if isinstance(fields["current_node"], str) else None
    ck_ns = parse_iso(doc.get("timestamp"))
    retries, actual, last_done, moved, before, done_ns, moved_on = stream.scopes.get(
        key, (0, None, None, None, None, None, False)
    )
    lost = {
        node: n
        for node, n, last_open, last_end in stream.pending.get(key, [])
        if not last_open
        and recorded.get(node, 0) == 0
        and (ck_ns is None or last_end is None or ck_ns >= last_end)
    }
    entries, unique = len(completed), len(set(completed))
    cut = stream.cut
    lagging = (
        ck_node is not None
        and last_done is not None
        and ck_node != last_done
        and ck_node != moved
        and not (key in cut and cut[key][0] == last_done and ck_node == cut[key][1])
        # the last completed node's checkpoint save had not happened: Kilroy saves it after
        # the attempt's end, before it routes on or starts anything. A live scope is saving
        # it; a dead one was killed in the save, and its checkpoint, the node completed
        # before, is the last one saved: a resume runs the node again from there
        and not (
            ck_node == before
            and not moved_on
            and ck_ns is not None
            and done_ns is not None
            and ck_ns < done_ns
        )
    )
    return _Drift(
        lost=lost,
        # a scope that succeeded is resumed by nobody: its history is the finished record of
        # its loops (a resumed goal-gate loop's laps), not a resume context to rebuild
        bloated=state != "succeeded"
        and entries >= DUP_MIN_ENTRIES
        and entries > DUP_RATIO * unique,
        lagging=lagging,
        entries=entries,
        unique=unique,
        recorded=recorded,
        ck_node=ck_node,
        retries=retries,
        actual=actual,
        last_done=last_done,
    )


def _finding(run_id: str, scope: str, drift: _Drift) -> Finding:
    """Phase 3: the finding of a drifted checkpoint; lost retries make it an error."""
    where = scope_words(scope)
    return Finding(
        code="checkpoint_drift",
        severity=Severity.ERROR if drift.lost else Severity.WARNING,
        summary=(
            f"The checkpoint of {where} disagrees with its event stream: "
            + "; ".join(drift.reasons())
            + "; rebuild it from progress.ndjson before resuming"
        ),
        run_id=run_id,
        scope=scope,
        node_id=next(iter(sorted(drift.lost)), drift.ck_node),
        evidence={
            "completed_nodes_entries": drift.entries,
            "completed_nodes_unique": drift.unique,
            "node_retries_recorded": sum(drift.recorded.values()),
            "retries_observed": int(drift.retries),
            "checkpoint_node": drift.ck_node,
            "actual_node": drift.actual,
            "last_completed_node": drift.last_done,
            "lost_retries": dict(sorted(drift.lost.items())),
            "duplicate_heavy": drift.bloated,
        },
    )
