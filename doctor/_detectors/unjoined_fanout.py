"""``unjoined_fanout``: a fan-out node whose attempt opened and never closed.

A fan-out node is a node with branch scopes under ``<scope>/parallel/<node>/`` (with or
without the ``passN/`` level), or with that directory at all: Kilroy makes the branches'
directories as it sets them up, before their streams (:func:`doctor._layout.fanout_dirs`).
Its ``stage_attempt_start`` opens when it dispatches the branches and its ``stage_attempt_end``
comes when it has joined them. An attempt of such a node that is still open (the latest start
of that node in its scope, with no end) while the scope is no longer running means, once its
owner is dead, nobody will ever join the branches: their work sits in their own directories
and the parent waits (or waited) for nothing. While the owner lives (a stalled scope, or an
owner stopped by SIGSTOP) the join is pending, and the finding says so instead.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from doctor._attempts import ATTEMPTS_OPEN_SQL, LATEST_ATTEMPTS_SQL
from doctor._branch_records import BRANCH_LIFECYCLE_SQL
from doctor._detectors._context import Context, more, needs, scope_words
from doctor._documents import graph_successors
from doctor._facts import RunFacts, scope_state
from doctor._layout import fanout_dirs, has_parallel_dir, is_top_scope
from doctor._model import Finding, Severity
from doctor._timestamps import iso

__all__ = ["unjoined_fanout"]

#: Final statuses a branch can end on (Kilroy's success-like set plus fail).
_FINISHED_STATUSES = ("success", "partial_success", "degraded_success", "skipped", "fail")
_PASS = re.compile(r"pass(\d+)")
_BRANCH_DIR = re.compile(r"\d+-(.+)")

# The latest attempt of every node in every scope, when it is open.
_OPEN_SQL = f"""
SELECT run_id, scope, node_id, attempt, epoch_ns(start_ts)
FROM ({LATEST_ATTEMPTS_SQL})
WHERE is_open
ORDER BY run_id, scope, start_seq
"""
# Per scope: whether an attempt is open (ATTEMPTS_OPEN_SQL: a node's latest start without an
# end; a start a resume superseded is not, as when a resume dispatches a killed fan-out again
# into the same branch directories), and whether the last attempt to start ended on a final
# status with no retry coming: a failed attempt Kilroy sleeps before retrying
# (``stage_retry_sleep``, ``retry_decision`` with ``will_retry``) ended no branch (real run
# ``fanout_retry_sleep_killed``). Nor did a lap of a loop: an edge condition that matched and
# leads to a node the branch ran (``matched``, ``edge_to``), chosen after the last start, is
# the branch routing back into itself; the join is no node of the branch (real run
# ``fanout_loop_between_laps``: SIGKILL between verify_b's edge back to impl_b and impl_b's
# next start).
_BRANCH_SQL = f"""
WITH going_on AS (
    SELECT run_id, scope, max(seq) AS seq FROM progress_events
    WHERE event = 'stage_retry_sleep' OR (event = 'retry_decision' AND will_retry)
       OR (event = 'edge_condition_evaluated' AND matched
           AND edge_to IN (SELECT node_id FROM attempts b
                           WHERE b.run_id = progress_events.run_id
                             AND b.scope = progress_events.scope))
    GROUP BY ALL
)
SELECT a.run_id, a.scope, bool_or(is_open) AS has_open,
       arg_max(status, start_seq) IN {_FINISHED_STATUSES}
           AND coalesce(any_value(r.seq) < max(start_seq), true) AS last_done,
       arg_max(node_id, start_seq) AS last_node
FROM ({ATTEMPTS_OPEN_SQL}) a LEFT JOIN going_on r USING (run_id, scope) GROUP BY ALL
"""
# Branches the parent saw finish (branch_progress, or the older branch_liveness, lifecycle step).
_DONE_SQL = f"""
SELECT DISTINCT run_id, scope, branch_key FROM progress_events
WHERE event IN {BRANCH_LIFECYCLE_SQL} AND branch_event = 'branch_subgraph_done'
"""


@dataclass
class _FanOut:
    parent: str
    node: str
    passes: dict[int, list[str]] = field(default_factory=dict)  # 0 = no passN level

    def branches(self) -> list[str]:
        """Branch scopes of the latest dispatch (the highest pass; all without pass dirs)."""
        return sorted(self.passes[max(self.passes)]) if self.passes else []


def _fanouts(scopes: list[str]) -> dict[tuple[str, str], _FanOut]:
    """(parent scope, fan-out node) -> its branch scopes, from the scope names."""
    out: dict[tuple[str, str], _FanOut] = {}
    for scope in scopes:
        parts = scope.split("/")
        if "parallel" not in parts:
            continue
        i = len(parts) - 1 - parts[::-1].index("parallel")
        rest = parts[i + 1 :]
        if len(rest) < 2:
            continue
        parent, node = "/".join(parts[:i]), rest[0]
        m = _PASS.fullmatch(rest[1]) if len(rest) == 3 else None
        n = int(m.group(1)) if m else 0
        fan = out.setdefault((parent, node), _FanOut(parent, node))
        fan.passes.setdefault(n, []).append(scope)
    return out


def _branch_key(scope: str) -> str:
    last = scope.rsplit("/", 1)[-1]
    m = _BRANCH_DIR.fullmatch(last)
    return m.group(1) if m else last


def _inner_nodes(graph: dict[str, set[str]] | None, node: str) -> set[str]:
    """The nodes a branch of the fan-out ``node`` runs and hands on to another of its own:
    those reachable from one of its branch starts (``graph``: each node's successors) but not
    from all of them. The join, and what follows it, is reachable from every branch (Kilroy's
    join is the nearest node they share, format doc §6); empty without a graph."""
    starts = (graph or {}).get(node, set())
    if graph is None or len(starts) < 2:
        return set()
    reach = []
    for start in starts:
        seen, todo = {start}, [start]
        while todo:
            for nxt in graph.get(todo.pop(), set()) - seen:
                seen.add(nxt)
                todo.append(nxt)
        reach.append(seen)
    every: set[str] = set().union(*reach)
    return every - reach[0].intersection(*reach[1:])


def _goes_on(graph: dict[str, set[str]] | None, inner: set[str], last: str | None) -> bool:
    """Whether ``last`` hands on to another node of its branch: its every successor is one
    (``inner``, :func:`_inner_nodes`), so the branch would have run it next."""
    nexts = (graph or {}).get(last or "", set())
    return bool(nexts) and nexts <= inner


def _finished(
    branches: list[str],
    run_id: str,
    branch_rows: dict[tuple[str, str], tuple[bool, bool, str | None]],
    done: set[str],
    goes_on: Callable[[str | None], bool],
) -> list[str]:
    """The branches that finished: no open attempt, and a last attempt that ended done on a
    node that does not hand on to another node of its branch (``goes_on``), or a ``done``
    record (the branch keys the parent saw finish)."""
    finished = []
    for b in branches:
        has_open, last_done, last_node = branch_rows.get((run_id, b), (False, False, None))
        seen_done = _branch_key(b) in done
        if not has_open and ((last_done and not goes_on(last_node)) or seen_done):
            finished.append(b)
    return finished


def _has_fanouts(ctx: Context) -> bool:
    """Whether a run has a fan-out (a ``parallel/`` scope, or a top-level scope's
    ``parallel/`` directory): only a fan-out node is reported."""
    for run_id in ctx.facts:
        docs = ctx.documents(run_id)
        if _fanouts(list(docs.scopes)) or any(
            has_parallel_dir(docs.path, s) for s in docs.scopes if is_top_scope(s)
        ):
            return True
    return False


def _fanout(
    fanouts: dict[tuple[str, str], _FanOut], run_path: Path, scope: str, node: str
) -> _FanOut | None:
    """The fan-out ``node`` of ``scope``: from the branch scopes, else from its branch
    directories, which a fan-out stopped while it set its branches up has without streams."""
    fan = fanouts.get((scope, node))
    if fan is None and (dirs := fanout_dirs(run_path, scope, node)) is not None:
        fan = _FanOut(scope, node, {0: dirs})
    return fan


def _left(unfinished: list[str], total: int, started: int) -> str:
    """What became of a fan-out's ``total`` branches, ``started`` of them with a directory.

    >>> _left(["parallel/fan/pass1/01-a"], 3, 2)
    '1 still unfinished (a); 1 never started'
    """
    parts = []
    if unfinished:
        keys = more([_branch_key(b) for b in unfinished], 3)
        parts.append(f"{len(unfinished)} still unfinished ({keys})")
    if total > started:
        parts.append(f"{total - started} never started")
    return "; ".join(parts) or "all of them finished"


def _summary(head: str, state: str, facts: RunFacts, *, closed: bool) -> str:
    """The finding's summary after ``head`` (which says when the fan-out started): what to
    do, for a terminalized (``closed``) run or an open one, by its owner (``facts``): alive,
    the join may still come; stopped, it comes once the owner is continued; dead or unknown
    in a scope that is not running, nobody will join."""
    if closed:
        return (
            f"{head} and never ended before the run was terminalized (its scope is {state}): "
            "nobody joined the branches, so collect their results from their directories"
        )
    pid = facts.get("owner_pid")
    if facts.get("owner_alive") is True and facts.get("owner_stopped"):
        return (
            f"{head} and has not ended, and its scope is {state}: its owner pid {pid} is "
            "stopped (state T), so the join is pending until the owner is continued; "
            f"`kill -CONT {pid}` lets it go on"
        )
    if facts.get("owner_alive") is True:
        return (
            f"{head} and has not ended, and its scope is {state} while its owner pid {pid} "
            "is alive: the join may still come; inspect the owner and the branches it waits "
            "for before collecting their results"
        )
    return (
        f"{head} and never ended, and its scope is {state}: nobody will join the branches, "
        "so collect their results from their directories and terminalize the run"
    )


@needs(events=("stage_attempt_start",), when=_has_fanouts)
def unjoined_fanout(ctx: Context) -> list[Finding]:
    """Fan-out nodes whose attempt never ended although their scope stopped running."""
    branch_rows = {(r, s): (bool(o), bool(d), n) for r, s, o, d, n in ctx.tables.sql(_BRANCH_SQL)}
    done_keys: dict[tuple[str, str], set[str]] = {}
    for run_id, scope, key in ctx.tables.sql(_DONE_SQL):
        done_keys.setdefault((run_id, scope), set()).add(str(key))
    fanouts = {run_id: _fanouts(list(ctx.documents(run_id).scopes)) for run_id in ctx.facts}

    findings: list[Finding] = []
    for run_id, scope, node, attempt, start_ns in ctx.tables.sql(_OPEN_SQL):
        fan = _fanout(fanouts.get(run_id, {}), ctx.documents(run_id).path, scope, node)
        if fan is None:
            continue
        facts = ctx.facts[run_id]
        state = scope_state(facts, scope)
        if state == "running":
            continue
        branches = fan.branches()
        graph = graph_successors(ctx.documents(run_id).path)
        goes_on = functools.partial(_goes_on, graph, _inner_nodes(graph, node))
        done = done_keys.get((run_id, scope), set())
        finished = _finished(branches, run_id, branch_rows, done, goes_on)
        unfinished = [b for b in branches if b not in finished]
        # The graph says how many branches the dispatch has; Kilroy starts at most
        # max_parallel at a time, so the others have no directory yet.
        planned = len((graph or {}).get(node, ()))
        total = max(planned, len(branches))
        # In a terminalized run (a final.json: the reaper's or a repair's) the fan-out is
        # closed by that end, which its own findings explain; open, it is a hang. (FINDINGS.md
        # sets no severity per code; an error here would fail a run `doctor repair` has just
        # terminalized for the hang it closed.)
        closed = bool(facts.get("final_json"))
        head = (
            f"Fan-out {node} in {scope_words(scope)} started at {iso(start_ns)} with {total} "
            f"branch{'es' if total != 1 else ''} ({_left(unfinished, total, len(branches))})"
        )
        findings.append(
            Finding(
                code="unjoined_fanout",
                severity=Severity.WARNING if closed else Severity.ERROR,
                summary=_summary(head, state, facts, closed=closed),
                run_id=run_id,
                scope=scope,
                node_id=node,
                evidence={
                    "fanout_node": node,
                    "started_at": iso(start_ns),
                    "branches": total,
                    "branches_finished": len(finished),
                    "branches_started": len(branches),
                    "attempt": int(attempt) if attempt is not None else None,
                    "branch_scopes": branches,
                    "unfinished_branches": unfinished,
                    "state": state,
                },
            )
        )
    return findings
