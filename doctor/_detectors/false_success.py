"""``false_success``: a run that ended ``success`` because Kilroy fell back into its exit.

When a node fails and none of its outgoing edges' conditions match, Kilroy does not stop: when
all its edges are conditional it picks the best of them anyway (``edge_selected`` with
``selection_method: "fallback"``, format doc §2.4 and §6, "Edge selection", step 5). If that
edge leads into the exit node, the exit runs, no goal gate objects, and ``final.json`` says
``success`` although the work the run was for failed.

Reported too (``error``, evidence ``simulated_nodes``) when the run's final.json says
``success`` and stages of the scope it ended in took their outcome from Kilroy's simulated
agent backend (status.json ``context_updates.last_response`` ``[Simulated] Response for
stage: <node>``): Kilroy resumes with it
when the run config its manifest names (``run_config_path``, an absolute path) is gone, so a
copied or moved run resumed "succeeds" with no agent run (checked with the real engine,
``tests/doctor/test_repair_real_kilroy.py``).

Reported too (``error``, evidence ``missing_worktree_nodes``) when the run's final.json says
``success`` and stages of the scope it ended in ran after Kilroy warned that a path inside
the run's git worktree (``manifest.json``'s ``worktree``) does not exist ("no such file or
directory"), one of which shows it ran outside a git checkout (a tool stage's ``diff.patch``
is git saying it found no repository, an agent stage's fallback status path is under
``.ai/runs/unknown_run/``: :func:`doctor._stage_output.ran_outside_git`): the worktree was
gone. A stage that removes ``.kilroy/`` itself gets the same warning before the next stage,
which runs in the worktree (checked with the real engine): it shows neither. Kilroy's
resume does not recreate a removed worktree (checked with the real engine, real run
``resume_worktree_removed``): it warns that it cannot
write ``worktree/.kilroy/CONTEXT.md`` before each stage, runs the stage in an empty directory
that is no git checkout, and ends ``success``.

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

from doctor._detectors._context import Context, more, needs
from doctor._facts import facts_of
from doctor._layout import TOP_SQL
from doctor._model import Finding, Severity
from doctor._stage_output import ran_outside_git, says_nothing, stage_detail
from doctor._timestamps import iso
from rundoctor.markdown import REASON_SHOWN, flatten, flatten_tail

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
        # A bare "exit status 1": what the stage wrote says what failed.
        words = (
            stage_detail(ctx.documents(run_id).path, scope, src)
            if says_nothing(str(reason or ""))
            else None
        )
        told = (
            f"; {src} wrote ({words['file']}): {flatten_tail(words['text'], REASON_SHOWN)}"
            if words
            else ""
        )
        findings.append(
            _finding(
                (
                    f"final.json says success, but {src} failed ({reason or status!r}{told}) "
                    "and no "
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
                    **({"stage_output": words} if words else {}),
                },
            )
        )
    # One finding per run: the last fallback into the exit is the one that ended it.
    last: dict[str, Finding] = {}
    for f in findings:
        last[f.run_id or ""] = f
    return [*last.values(), *_simulated(ctx), *_without_worktree(ctx)]


def _finding(
    summary: str, *, run_id: str, scope: str, node_id: str, evidence: dict[str, object]
) -> Finding:
    return Finding(
        code="false_success",
        severity=Severity.ERROR,
        summary=summary,
        run_id=run_id,
        scope=scope,
        node_id=node_id,
        evidence=evidence,
    )


#: The response Kilroy's simulated agent backend gives every agent stage (its response.md,
#: and the status.json's ``context_updates.last_response``), followed by the node's id.
SIMULATED_RESPONSE = "[Simulated] Response for stage: "


def _is_simulated(status: object) -> bool:
    """Whether a stage's status.json is the outcome of Kilroy's simulated agent backend.

    >>> said = "[Simulated] Response for stage: impl"
    >>> _is_simulated({"status": "success", "context_updates": {"last_response": said}})
    True
    >>> _is_simulated({"status": "success", "context_updates": {"last_response": "done"}})
    False
    """
    updates = status.get("context_updates") if isinstance(status, dict) else None
    response = updates.get("last_response") if isinstance(updates, dict) else None
    return isinstance(response, str) and response.startswith(SIMULATED_RESPONSE)


def _simulated(ctx: Context) -> list[Finding]:
    """Runs whose final.json says success while stages of the scope the run ended in took
    their outcome from Kilroy's simulated agent backend: no agent ran for them."""
    findings = []
    for run_id, docs in ctx.tables.documents.items():
        if not _success(ctx, run_id):
            continue
        current = facts_of(ctx.facts, run_id).get("_current_scope") or ""
        scope = docs.scopes.get(current)
        nodes = sorted(
            {
                st.node_id
                for st in (scope.statuses if scope is not None else [])
                if st.canonical and _is_simulated(st.document.value)
            }
        )
        if not nodes:
            continue
        findings.append(
            _finding(
                (
                    f"final.json says success, but the outcome of {', '.join(nodes)} came from "
                    f"Kilroy's simulated agent backend ({SIMULATED_RESPONSE!r}…): no agent "
                    "ran. Kilroy resumes with it when the "
                    "run config manifest.json's run_config_path names is missing (a copied or "
                    "moved run directory); treat the run as failed, and run it again with its "
                    "config where the manifest says"
                ),
                run_id=run_id,
                scope=current,
                node_id=nodes[0],
                evidence={"simulated_nodes": nodes, "final_status": "success"},
            )
        )
    return findings


#: Kilroy's warnings that name a missing path (Go's ``*PathError`` for ENOENT ends so), and
#: the node of the first attempt that started after each in its scope.
_MISSING_PATH_SQL = f"""
SELECT w.run_id, w.scope, w.message,
       (SELECT s.node_id FROM progress_events s
        WHERE s.run_id = w.run_id AND s.scope = w.scope AND s.seq > w.seq
          AND s.event = 'stage_attempt_start'
        ORDER BY s.seq LIMIT 1)
FROM progress_events w
WHERE {TOP_SQL} AND w.event = 'warning' AND w.message LIKE '%: no such file or directory%'
ORDER BY w.run_id, w.seq
"""


def _names_a_path_in(message: str, directory: str) -> bool:
    """Whether a warning names a path inside ``directory`` (not the directory beside it).

    >>> msg = "write CONTEXT.md: open /l/r/worktree/.kilroy/CONTEXT.md: no such file or directory"
    >>> _names_a_path_in(msg, "/l/r/worktree"), _names_a_path_in(msg, "/l/r/work")
    (True, False)
    """
    return bool(directory) and f" {directory.rstrip('/')}/" in message


def _without_worktree(ctx: Context) -> list[Finding]:
    """Runs whose final.json says success while stages of the scope the run ended in ran
    after Kilroy found a path inside the run's worktree missing: the worktree was gone."""
    found: dict[str, tuple[str, str, list[str], str]] = {}
    for run_id, scope, message, node in ctx.tables.sql(_MISSING_PATH_SQL):
        if node is None or not _success(ctx, run_id) or not _ended_in(ctx, run_id, scope):
            continue
        manifest = ctx.documents(run_id).manifest
        worktree = manifest.get("worktree") if manifest is not None and manifest.ok else None
        if not isinstance(worktree, str) or not _names_a_path_in(str(message), worktree):
            continue
        _, _, nodes, _ = found.setdefault(run_id, (scope, worktree, [], str(message)))
        if node not in nodes:
            nodes.append(node)
    findings = []
    for run_id, (scope, worktree, nodes, message) in found.items():
        # A stage can remove .kilroy/ itself (the same warning follows, checked with the
        # real engine): the worktree was gone when a stage after it ran outside git.
        path = ctx.documents(run_id).path
        shown = next(
            (f"{n}/{file}" for n in nodes if (file := ran_outside_git(path, scope, n))), None
        )
        if shown is None:
            continue
        findings.append(
            _finding(
                (
                    f"final.json says success, but {more(nodes)} ran after the run's "
                    f"worktree was gone (Kilroy: {flatten(message, REASON_SHOWN)!r}; "
                    f"{shown} shows no git checkout there): they ran in a directory "
                    "without the run's files, outside its git checkout (Kilroy's resume does "
                    "not recreate a removed worktree); treat the run as failed and run it again"
                ),
                run_id=run_id,
                scope=scope,
                node_id=nodes[0],
                evidence={
                    "missing_worktree_nodes": sorted(nodes),
                    "worktree": worktree,
                    "warning": message,
                    "outside_git": f"{scope}/{shown}".lstrip("/"),
                    "final_status": "success",
                },
            )
        )
    return findings
