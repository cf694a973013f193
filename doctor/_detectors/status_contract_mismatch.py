"""``status_contract_mismatch``: an outcome the engine did not read, or read differently.

Two situations, both about the stage status file (format doc §4.5):

* **Stranded outcome.** An attempt failed because the engine found no (valid) status file:
  its ``failure_reason`` starts with ``missing status.json`` / ``invalid status.json``, or a
  ``status_ingestion_decision`` inside the attempt says ``source: ""``. Yet a status file the
  agent wrote elsewhere in the same scope's worktree (``worktree/status.json``,
  ``worktree/.ai/status.json`` or ``worktree/.ai/runs/<run_id>/status.json``) holds an outcome.
  The finding names the scope's latest such attempt (the worktree is shared by every stage of
  the scope, and the file belongs to no stage in particular); ``failed_attempts`` counts them.
* **Canonical disagreement.** A node's canonical ``<node>/status.json`` holds another status
  than the ``stage_attempt_end`` of the node's last attempt. Two rewrites Kilroy does on
  purpose are not disagreements: an exhausted ``retry`` recorded as ``fail``, and an exhausted
  ``fail`` accepted as ``partial_success`` (``allow_partial``). A third is the stop that
  ended the run: when the run is cancelled (a signal, the stall watchdog) right after a node's
  attempt ended, Kilroy records the cancellation in the node's ``status.json`` (``fail`` with
  the run's terminal reason, class ``canceled``) whatever the attempt said, e.g. a fan-out
  whose ``stage_attempt_end`` says ``partial_success``.
"""

from __future__ import annotations

from typing import Any

from doctor._detectors._context import Context
from doctor._documents import Document, normalize_status
from doctor._facts import facts_of
from doctor._model import Finding, Severity

__all__ = ["status_contract_mismatch"]

SUCCESS_LIKE = frozenset({"success", "partial_success", "degraded_success", "skipped"})
#: (event status, canonical status) pairs Kilroy produces itself after the last attempt.
_DELIBERATE = frozenset({("retry", "fail"), ("fail", "partial_success")})

# Attempts that ended fail/retry because no usable status file was found.
_MISSING_SQL = """
SELECT a.run_id, a.scope, a.node_id, a.attempt, a.failure_reason, a.end_seq
FROM attempts a
WHERE a.end_seq IS NOT NULL AND a.status IN ('fail', 'retry') AND (
    a.failure_reason LIKE 'missing status.json%'
    OR a.failure_reason LIKE 'invalid status.json%'
    OR EXISTS (
        SELECT 1 FROM progress_events d
        WHERE d.run_id = a.run_id AND d.scope = a.scope AND d.node_id = a.node_id
          AND d.event = 'status_ingestion_decision' AND coalesce(d.source, '') = ''
          AND d.seq > a.start_seq AND d.seq < a.end_seq))
ORDER BY a.run_id, a.scope, a.end_seq
"""
# The last attempt of every node in every scope.
_LAST_SQL = """
SELECT run_id, scope, node_id, arg_max(attempt, start_seq), arg_max(end_seq IS NULL, start_seq),
       arg_max(status, start_seq), arg_max(failure_reason, start_seq)
FROM attempts GROUP BY ALL
"""


def _rel(scope: str, *parts: str) -> str:
    return "/".join(p for p in (scope, *parts) if p)


def _stranded_outcome(docs: list[Document]) -> tuple[str, str, list[dict[str, Any]]] | None:
    """(path, outcome) of the best stranded status file, and all of them; success-like first."""
    found = []
    for doc in docs:
        status, _reason = normalize_status(doc.value) if doc.ok else (None, None)
        if status is not None:
            found.append({"path": doc.rel, "outcome": status})
    if not found:
        return None
    best = next((f for f in found if f["outcome"] in SUCCESS_LIKE), found[0])
    return best["path"], best["outcome"], found


def status_contract_mismatch(ctx: Context) -> list[Finding]:
    """Attempts failed for want of a status file that exists elsewhere, or status.json vs stream."""
    return [*_stranded_status(ctx), *_disagreeing_status(ctx)]


def _stranded_status(ctx: Context) -> list[Finding]:
    """Attempts that failed for want of a status.json while the agent wrote its outcome in
    another file of the scope (ingested by repair when the outcome is success-like)."""
    findings: list[Finding] = []
    if not ctx.has_failed_attempts():
        return findings
    by_scope: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    for run_id, scope, node, attempt, reason, _end in ctx.tables.sql(_MISSING_SQL):
        by_scope.setdefault((run_id, scope), []).append((node, attempt, reason))
    for (run_id, scope), failed in sorted(by_scope.items()):
        if run_id not in ctx.tables.documents:
            continue
        sd = ctx.documents(run_id).scopes.get(scope)
        stranded = _stranded_outcome(sd.stranded) if sd is not None else None
        if stranded is None:
            continue
        found_path, outcome, all_found = stranded
        node, attempt, reason = failed[-1]
        counts: dict[str, int] = {}
        for n, _a, _r in failed:
            counts[str(n)] = counts.get(str(n), 0) + 1
        ingest = outcome in SUCCESS_LIKE
        where = f"branch {scope}" if scope else "the top level"
        others = f" ({len(failed)} attempts in {where} failed the same way)" if failed[1:] else ""
        findings.append(
            Finding(
                code="status_contract_mismatch",
                severity=Severity.ERROR,
                summary=(
                    f"{node} attempt {attempt} failed with {reason!r}{others}, but {found_path} "
                    f"holds outcome {outcome!r}: the agent wrote its status where this engine "
                    "does not look; "
                    + (
                        "ingest that file as the stage's status and re-route the run"
                        if ingest
                        else "fix the agent's status path"
                    )
                ),
                run_id=run_id,
                scope=scope,
                node_id=str(node),
                repair="ingest_status" if ingest else None,
                evidence={
                    "node_id": str(node),
                    "attempt": int(attempt) if attempt is not None else None,
                    "failure_reason": reason,
                    "expected_path": _rel(scope, str(node), "status.json"),
                    "found_path": found_path,
                    "found_outcome": outcome,
                    "failed_attempts": len(failed),
                    "failed_by_node": counts,
                    "stranded": all_found,
                },
            )
        )
    return findings


def _disagreeing_status(ctx: Context) -> list[Finding]:
    """A canonical status.json whose outcome the stream's last ended attempt of the node
    contradicts (deliberate rewrites and the run's own stop excepted)."""
    findings: list[Finding] = []
    last = {(r, s, n): (a, bool(o), st, fr) for r, s, n, a, o, st, fr in ctx.tables.sql(_LAST_SQL)}
    for run_id, docs in sorted(ctx.tables.documents.items()):
        ending = facts_of(ctx.facts, run_id).get("terminal_reason")
        for scope, sd in sorted(docs.scopes.items()):
            for st in sd.statuses:
                if not st.canonical or st.status is None:
                    continue
                row = last.get((run_id, scope, st.node_id))
                if row is None:
                    continue  # the exit node runs without attempt events
                attempt, is_open, ev_status, reason = row
                if is_open or ev_status is None:
                    continue  # the engine deletes status.json before an attempt; not ours yet
                ev = str(ev_status).strip().lower()
                if ev == st.status or (ev, st.status) in _DELIBERATE:
                    continue
                if st.status == "fail" and st.failure_reason and st.failure_reason == ending:
                    continue  # Kilroy recorded the stop that ended the run on the node
                findings.append(
                    Finding(
                        code="status_contract_mismatch",
                        severity=Severity.ERROR,
                        summary=(
                            f"{st.document.rel} says {st.status!r} but the stream ended "
                            f"{st.node_id} attempt {attempt} with {ev!r}: the record and the "
                            "stream disagree on the outcome; check what the node really "
                            "produced before resuming or trusting either"
                        ),
                        run_id=run_id,
                        scope=scope,
                        node_id=st.node_id,
                        evidence={
                            "node_id": st.node_id,
                            "attempt": int(attempt) if attempt is not None else None,
                            "failure_reason": reason,
                            "expected_path": _rel(scope, st.node_id, "status.json"),
                            "found_path": st.document.rel,
                            "found_outcome": st.status,
                            "event_status": ev,
                        },
                    )
                )
    return findings
