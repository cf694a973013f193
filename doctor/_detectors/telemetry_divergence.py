"""``telemetry_divergence``: live.json or checkpoint.json name another node than the stream.

``live.json`` is the last event written (Kilroy overwrites it on every append) and is what
operators poll to see what a run is doing; ``checkpoint.json``'s ``current_node`` is the last
completed node. The stream's own answer, ``actual_node``, is the node of the scope's last
progress event that names one (``coalesce(node_id, to_node)``); for the top level it is the
run's ``current_node`` fact, which is the fan-out node while a fan-out is open. Of the top
level's scopes (the base directory and its ``restart-N/``) only the one the run worked in last
is compared, the one ``current_node`` comes from (its latest row naming a node is the latest in
time): a ``loop_restart`` moves the run to ``restart-N/``, and ``kilroy attractor resume`` of a
restarted run goes on in the base directory, so the documents of a scope it left are history.

* live.json diverges when it names a node (``coalesce(node_id, to_node)``) other than
  ``actual_node`` that has no open attempt in the scope: typically a leaked ``stage_heartbeat``
  of a finished node, which makes a stuck scope look busy on old work. A live.json naming no
  node (``branch_heartbeat``, ``run_completed``) says nothing and is not compared.
* checkpoint.json diverges when its ``current_node`` is neither ``actual_node`` nor the node
  of the scope's last ``stage_attempt_end`` (the checkpoint legitimately trails a running node
  by one), nor, when a stop ended the run during a node's visit, the node completed before it
  (Kilroy does not checkpoint the interrupted node: the checkpoint is the resume point), nor,
  while the last ended attempt's node is retrying (a ``stage_retry_sleep`` of it follows its
  last attempt end) or, when nothing started since that attempt ended and the stream did not
  route on from its node, when the checkpoint was written before that end, the node completed
  before that visit: Kilroy checkpoints a node once its visit ends, not after each failed
  attempt, and saves it after the attempt's end event, before it routes on (a live run shows
  it one node behind in between; a run killed in between keeps it, real run
  ``checkpoint_save_killed``). ``checkpoint_drift`` checks the checkpoint against the stream
  more strictly.

Severity: error when live.json diverges while the scope is stalled or orphaned with an attempt
still open (the run looks busy on old work while it is stuck in another); warning otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from doctor._detectors._context import Context, scope_words
from doctor._detectors._stops import REGIONS_SQL
from doctor._documents import ScopeDocuments, checkpoint_fields
from doctor._facts import RunFacts, scope_state
from doctor._layout import is_top_scope
from doctor._model import Finding, Severity
from doctor._tables import HEARTBEAT_SQL
from doctor._timestamps import parse_iso

__all__ = ["telemetry_divergence"]

_SQL = f"""
WITH per_scope AS (
    SELECT run_id, scope,
           arg_max(coalesce(node_id, to_node), seq) FILTER (
               WHERE NOT {HEARTBEAT_SQL} AND coalesce(node_id, to_node) IS NOT NULL) AS actual,
           arg_max(node_id, seq) FILTER (
               WHERE event = 'stage_attempt_end' AND node_id IS NOT NULL) AS last_end,
           max(seq) FILTER (
               WHERE event = 'stage_attempt_end' AND node_id IS NOT NULL) AS last_end_seq,
           epoch_ns(arg_max(ts, seq) FILTER (
               WHERE event = 'stage_attempt_end' AND node_id IS NOT NULL)) AS last_end_ns,
           max(seq) FILTER (
               WHERE event = 'stage_attempt_start' AND node_id IS NOT NULL) AS last_start_seq
    FROM td_events GROUP BY ALL
),
-- attempt ends inside a concurrent region: Kilroy checkpoints no node of a region, so the
-- checkpoint names the split until the join's is saved
in_region AS (
    SELECT e.run_id, e.scope, e.seq
    FROM td_events e JOIN ({REGIONS_SQL.format(events="td_events")}) r
      ON r.run_id = e.run_id AND r.scope = e.scope AND e.seq > r.from_seq AND e.seq < r.to_seq
    WHERE e.event = 'stage_attempt_end'
),
outside AS (
    SELECT e.run_id, e.scope, arg_max(e.node_id, e.seq) AS last_out
    FROM td_events e ANTI JOIN in_region i USING (run_id, scope, seq)
    WHERE e.event = 'stage_attempt_end' AND e.node_id IS NOT NULL
    GROUP BY ALL
),
open_nodes AS (
    SELECT run_id, scope, list(DISTINCT node_id) AS nodes
    FROM td_attempts WHERE end_seq IS NULL GROUP BY ALL
),
-- The node completed before the last ended attempt's node, and whether that node is still
-- retrying (Kilroy slept before its next attempt): the checkpoint names the node before
-- until the visit ends.
before AS (
    SELECT p.run_id, p.scope,
           (SELECT arg_max(e.node_id, e.seq) FROM td_events e
            WHERE e.run_id = p.run_id AND e.scope = p.scope AND e.seq < p.last_end_seq
              AND e.event = 'stage_attempt_end' AND e.node_id IS NOT NULL
              AND e.node_id <> p.last_end
              AND NOT EXISTS (SELECT 1 FROM in_region i WHERE i.run_id = e.run_id
                              AND i.scope = e.scope AND i.seq = e.seq)) AS before,
           EXISTS (SELECT 1 FROM td_events s
                   WHERE s.run_id = p.run_id AND s.scope = p.scope AND s.seq > p.last_end_seq
                     AND s.event = 'stage_retry_sleep' AND s.node_id = p.last_end) AS retrying,
           -- routing on from the node comes after its checkpoint is saved
           EXISTS (SELECT 1 FROM td_events s
                   WHERE s.run_id = p.run_id AND s.scope = p.scope AND s.seq > p.last_end_seq
                     AND s.event IN ('edge_selected', 'edge_condition_evaluated')
                     AND coalesce(s.from_node, s.node_id) = p.last_end) AS routed
    FROM per_scope p WHERE p.last_end IS NOT NULL
)
SELECT p.run_id, p.scope, p.actual, p.last_end, coalesce(o.nodes, []), b.before, b.retrying,
       CASE WHEN coalesce(p.last_start_seq, -1) < p.last_end_seq AND NOT b.routed
            THEN p.last_end_ns END, x.last_out
FROM per_scope p LEFT JOIN open_nodes o USING (run_id, scope)
LEFT JOIN before b USING (run_id, scope) LEFT JOIN outside x USING (run_id, scope)
"""


def telemetry_divergence(ctx: Context) -> list[Finding]:
    """live.json or checkpoint.json naming another node than the event stream."""
    # Only scopes with a live.json or a checkpoint can diverge: query just those.
    keys = [
        (run_id, scope)
        for run_id, docs in ctx.tables.documents.items()
        for scope, sd in docs.scopes.items()
        if sd.live is not None or sd.checkpoint is not None
    ]
    if not keys:  # no live.json, no checkpoint: nothing can diverge
        return []
    ctx.restrict("td", keys)
    rows = {
        (r, s): (a, le, [str(n) for n in o], b, bool(rt), ns, out)
        for r, s, a, le, o, b, rt, ns, out in ctx.tables.sql(_SQL)
    }
    cut = ctx.interrupted_visits("td")
    findings: list[Finding] = []
    for run_id, facts in sorted(ctx.facts.items()):
        docs = ctx.documents(run_id)
        # The top level is the current logs root: the top-level scope the run worked in last
        # (in time, as for current_node), not the highest restart-N: a resume of a restarted
        # run goes on in the base directory, and the restart it left says nothing any more.
        current_top = facts.get("_current_scope")
        for scope, sd in sorted(docs.scopes.items()):
            if (run_id, scope) not in rows or (is_top_scope(scope) and scope != current_top):
                continue
            resume = cut.get((run_id, scope), (None, None))[1]
            found = _divergence(facts, sd, rows[(run_id, scope)], resume, scope=scope)
            if found is not None:
                findings.append(_finding(run_id, scope, found))
    return findings


@dataclass(frozen=True)
class _Divergence:
    """What a scope's live.json and checkpoint name against the stream's ``actual`` node."""

    actual: str
    state: Any
    live_node: str | None
    live_event: Any
    ck_node: str | None
    live_off: bool
    ck_off: bool
    open_nodes: list[str]


def _divergence(
    facts: RunFacts,
    sd: ScopeDocuments,
    row: tuple[Any, Any, list[str], Any, bool, Any, Any],
    resume: str | None,
    *,
    scope: str,
) -> _Divergence | None:
    """Compare one scope's documents with its stream ``row`` (actual node, last ended node,
    open nodes, the node completed before the last ended one, whether that one is retrying,
    when it ended); None when they agree.
    ``resume`` is where a stop that cut a visit short resumes (the checkpoint may already name
    it)."""
    actual, last_end, open_nodes, before, retrying, last_end_ns, last_out = row
    if is_top_scope(scope):
        actual = facts.get("current_node") or actual
    state = scope_state(facts, scope)
    live = sd.live
    live_node = None
    if live is not None and live.ok:
        live_node = live.get("node_id") or live.get("to_node")
        live_node = live_node if isinstance(live_node, str) else None
    ck = checkpoint_fields(sd.checkpoint).get("current_node")
    ck_node = ck if isinstance(ck, str) else None
    ck_ns = parse_iso(sd.checkpoint.get("timestamp")) if sd.checkpoint is not None else None
    # The checkpoint names the node completed before the last ended one while that one is
    # retrying, or, when nothing started or routed on since, when it was written before that
    # one ended: Kilroy saves a node's checkpoint after its end (live, it is saving it; dead,
    # it was killed in the save, and a resume runs the node again from the checkpoint).
    saving = ck_ns is not None and last_end_ns is not None
    behind = before if retrying or (saving and ck_ns < last_end_ns) else None
    if actual is None:
        return None
    live_off = live_node is not None and live_node != actual and live_node not in open_nodes
    ck_off = ck_node is not None and ck_node not in (actual, last_end, last_out, resume, behind)
    if not (live_off or ck_off):
        return None
    return _Divergence(
        actual=actual,
        state=state,
        live_node=live_node,
        live_event=live.get("event") if live is not None else None,
        ck_node=ck_node,
        live_off=live_off,
        ck_off=ck_off,
        open_nodes=open_nodes,
    )


def _finding(run_id: str, scope: str, d: _Divergence) -> Finding:
    """The finding of a diverging scope: an error when live.json names dead work while the
    scope is stuck in unfinished work."""
    where = scope_words(scope)
    parts = []
    if d.live_off:
        parts.append(f"live.json shows {d.live_event} on {d.live_node}")
    if d.ck_off:
        parts.append(f"checkpoint.json says current_node {d.ck_node}")
    stuck = d.state in ("stalled", "orphaned")
    return Finding(
        code="telemetry_divergence",
        # A live.json naming dead work while the scope is stuck in unfinished work
        # is what misleads the person deciding whether the run is hung (incident
        # 04, 1.3). In a finished scope it is leftover noise (stale_heartbeat
        # reports the leak itself).
        severity=Severity.ERROR if d.live_off and stuck and d.open_nodes else Severity.WARNING,
        summary=(
            f"In {where}, " + " and ".join(parts) + f", but the stream is at "
            f"{d.actual}"
            + (f" and the scope is {d.state}" if stuck else "")
            + "; go by progress.ndjson, not these files, to judge what it is doing"
        ),
        run_id=run_id,
        scope=scope,
        node_id=d.actual,
        evidence={
            "live_node": d.live_node,
            "checkpoint_node": d.ck_node,
            "actual_node": d.actual,
            "live_event": d.live_event,
            "open_nodes": sorted(d.open_nodes),
            "state": d.state,
        },
    )
