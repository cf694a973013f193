"""``status_contract_mismatch``: an outcome the engine did not read, or read differently.

Three situations, all about the stage status file (format doc §4.5); the third, a resume that
failed for a status file its killed predecessor had deleted, is in
:mod:`doctor._detectors._lost_status`. The first two:

* **Stranded outcome.** An attempt failed because the engine found no (valid) status file:
  its ``failure_reason`` starts with ``missing status.json`` / ``invalid status.json``, or a
  ``status_ingestion_decision`` inside the attempt says ``source: ""``. Yet a status file the
  agent wrote elsewhere in the same scope's worktree (``worktree/status.json``,
  ``worktree/.ai/status.json`` or ``worktree/.ai/runs/<run_id>/status.json``) holds an outcome.
  The finding names the scope's latest such attempt (the worktree is shared by every stage of
  the scope, and the file belongs to no stage in particular); ``failed_attempts`` counts them.
* **Canonical disagreement.** A node's canonical ``<node>/status.json`` holds another status
  than the ``stage_attempt_end`` of the node's last attempt. Kilroy's own rewrite of an
  outcome it gave up on is not a disagreement: when the last attempt ended on anything but a
  success-like status (``fail``, ``retry``, or a custom outcome no edge condition matched,
  e.g. ``pending``), Kilroy records ``fail`` (``max retries exceeded`` for a custom outcome)
  or, with ``allow_partial``, ``partial_success``. Another is the stop that
  ended the run: when the run is cancelled (a signal, the stall watchdog) right after a node's
  attempt ended, Kilroy records the cancellation in the node's ``status.json`` (``fail`` with
  the run's terminal reason, class ``canceled``) whatever the attempt said, e.g. a fan-out
  whose ``stage_attempt_end`` says ``partial_success``. The stop may have ended only the
  ``restart-N`` the node ran in: a resume goes on in the base directory and the run ends
  there, while ``restart-N/final.json`` keeps the stop's reason. And an attempt that ended
  success-like and then broke the node's output contract (``output_contract_violated``, a
  ``fail`` in the stream) keeps the handler's own outcome in status.json until Kilroy records
  the visit's (real run ``output_contract``, diagnosed while Kilroy sleeps before a retry):
  status.json may say what the ``stage_attempt_end`` said.
"""

from __future__ import annotations

import re
from typing import Any

from doctor._detectors._context import Context, scope_words
from doctor._detectors._lost_status import lost_status
from doctor._documents import Document, RunDocuments, normalize_status
from doctor._facts import facts_of
from doctor._layout import is_top_scope
from doctor._model import Finding, Severity
from doctor._resumable import missing_config, resume_caveat, resume_refusal
from doctor._timestamps import iso, parse_iso

__all__ = ["status_contract_mismatch"]

SUCCESS_LIKE = frozenset({"success", "partial_success", "degraded_success", "skipped"})
#: What Kilroy records for a node whose last attempt ended on a status that is not
#: success-like (fail, retry, a custom outcome no condition matched): fail, or partial_success
#: under allow_partial (real runs custom_outcome_exhausted, retry_partial).
_GAVE_UP = frozenset({"fail", "partial_success"})

# Attempts that ended fail/retry because no usable status file was found, in the scopes with
# a stranded status file (``scm_attempts``, :meth:`Context.restrict`): kept in DuckDB, so a
# stream of a million such failures is never a million rows in Python.
_MISSING_SQL = """
CREATE OR REPLACE TEMP TABLE _scm_missing AS
SELECT a.run_id, a.scope, a.node_id, a.attempt, a.failure_reason, a.end_seq
FROM scm_attempts a
WHERE a.end_seq IS NOT NULL AND a.status IN ('fail', 'retry') AND (
    a.failure_reason LIKE 'missing status.json%'
    OR a.failure_reason LIKE 'invalid status.json%'
    OR EXISTS (
        SELECT 1 FROM progress_events d
        WHERE d.run_id = a.run_id AND d.scope = a.scope AND d.node_id = a.node_id
          AND d.event = 'status_ingestion_decision' AND coalesce(d.source, '') = ''
          AND d.seq > a.start_seq AND d.seq < a.end_seq))
"""
# Per scope: how many failed so, and the latest of them.
_LATEST_SQL = """
SELECT run_id, scope, count(*) OVER (PARTITION BY run_id, scope), node_id, attempt,
       failure_reason
FROM _scm_missing
QUALIFY row_number() OVER (PARTITION BY run_id, scope ORDER BY end_seq DESC) = 1
"""
# Per scope and node: how many, in order of each node's first such failure.
_BY_NODE_SQL = """
SELECT run_id, scope, node_id, count(*) FROM _scm_missing
GROUP BY ALL ORDER BY run_id, scope, min(end_seq)
"""
# The last attempt of every node in every scope.
_LAST_SQL = """
SELECT run_id, scope, node_id, arg_max(attempt, start_seq), arg_max(end_seq IS NULL, start_seq),
       arg_max(status, start_seq), arg_max(failure_reason, start_seq),
       arg_max(end_status, start_seq)
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
    return [*_stranded_status(ctx), *_disagreeing_status(ctx), *lost_status(ctx)]


def _missing(
    ctx: Context, keys: list[tuple[str, str]]
) -> tuple[dict[tuple[str, str], tuple[Any, ...]], dict[tuple[str, str], dict[str, int]]]:
    """For the scopes ``keys``: (count, node, attempt, reason) of the latest attempt that
    failed for want of a status file, and how many did per node (in order of first failure).
    """
    ctx.restrict("scm", keys)
    con = ctx.tables.con
    con.execute(_MISSING_SQL)
    try:
        latest = {
            (r, s): (int(n), node, a, fr) for r, s, n, node, a, fr in ctx.tables.sql(_LATEST_SQL)
        }
        counts: dict[tuple[str, str], dict[str, int]] = {}
        for r, s, node, n in ctx.tables.sql(_BY_NODE_SQL):
            counts.setdefault((r, s), {})[str(node)] = int(n)
    finally:
        con.execute("DROP TABLE IF EXISTS _scm_missing")
    return latest, counts


def _stranded_status(ctx: Context) -> list[Finding]:
    """Attempts that failed for want of a status.json while the agent wrote its outcome in
    another file of the scope (ingested by repair when the outcome is success-like)."""
    stranded_in = {
        (run_id, scope): found
        for run_id, docs in ctx.tables.documents.items()
        for scope, sd in docs.scopes.items()
        if (found := _stranded_outcome(sd.stranded)) is not None
    }
    if not stranded_in or not ctx.has_failed_attempts():
        return []  # nothing stranded anywhere, or no attempt failed: nothing to look at
    latest, counts = _missing(ctx, sorted(stranded_in))
    findings: list[Finding] = []
    for (run_id, scope), (n_failed, node, attempt, reason) in sorted(latest.items()):
        found_path, outcome, all_found = stranded_in[(run_id, scope)]
        ingested = _ingested_at(ctx.tables.documents[run_id], scope, str(node))
        if ingested is not None and _went_on_after(ctx, (run_id, scope, str(node)), ingested):
            continue  # the engine read the ingested status on resume and went on from it
        # A resume of a run that succeeded runs nothing (real run resume_after_success): an
        # ingested status would never be read (real run fanout_agent_dotai: the join took the
        # other branch).
        succeeded = facts_of(ctx.facts, run_id).get("_state") == "succeeded"
        docs = ctx.tables.documents[run_id]
        refused = None if succeeded else resume_refusal(docs)
        ingest, advice, resumes = _remedy(docs, (scope, str(node)), outcome, ingested, succeeded)
        if refused is not None:
            ingest, advice, resumes = False, _refused_advice(ingested, refused), False
        caveat = resume_caveat(docs) if resumes else None
        if caveat is not None:
            advice = f"{advice}; {caveat}"
        where = scope_words(scope)
        others = f" ({n_failed} attempts in {where} failed the same way)" if n_failed > 1 else ""
        findings.append(
            Finding(
                code="status_contract_mismatch",
                severity=Severity.ERROR,
                summary=(
                    f"{node} attempt {attempt} failed with {reason!r}{others}, but {found_path} "
                    f"holds outcome {outcome!r}: the agent wrote its status where this engine "
                    f"does not look; {advice}"
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
                    "failed_attempts": n_failed,
                    "failed_by_node": counts[(run_id, scope)],
                    "stranded": all_found,
                    **({"ingested_after": iso(ingested)} if ingested is not None else {}),
                    **({"resume_refused": refused} if refused is not None else {}),
                    **({"resume_config_missing": missing_config(docs)} if caveat else {}),
                },
            )
        )
    return findings


#: A stranded status of a Kilroy branch: a resume starts from the run's checkpoint, before
#: the fan-out when it had not joined, and dispatches it again, which runs every branch from
#: its start (deleting each stage's status.json before its attempt); a fan-out that joined is
#: never run again. Either way no ingested status is read (real run fanout_dotai_killed).
#: Known of the builds that number their dispatches (``parallel/<node>/passN/``, since
#: 2026-03-02, the engine's layout at hand); older branch layouts (the February rogue runs)
#: keep the ingest, their resume unverified.
_DISPATCHED = re.compile(r"(?:^|/)parallel/[^/]+/pass\d+/")
_BRANCH_ADVICE = (
    "a resume would dispatch the fan-out again and run the branch from its start (or, the "
    "fan-out joined, not run it at all), so the engine would never read an ingested status; "
    "fix the agent's status path"
)


def _remedy(
    docs: RunDocuments,
    where: tuple[str, str],
    outcome: str,
    ingested: int | None,
    succeeded: bool,
) -> tuple[bool, str, bool]:
    """Whether to ingest the stranded outcome of node ``where[1]`` in scope ``where[0]``, the
    advice, and whether it asks for a resume: no ingest when it is no success, was ingested,
    the run succeeded, the node is in a branch a resume dispatches again, or the run went on
    past it."""
    scope, node = where
    past = _routed_past(docs, scope, node)
    branch = docs.layout == "kilroy" and _DISPATCHED.search(scope) is not None
    restart = docs.layout == "kilroy" and scope != "" and is_top_scope(scope)
    ingest = outcome in SUCCESS_LIKE and ingested is None and not (succeeded or branch)
    ingest = ingest and past is None and not restart
    advice = _advice(ingest, ingested, succeeded, _rel(scope, node, "status.json"))
    # Ingest and re-route, or resume what was ingested.
    resumes = ingest or (ingested is not None and not succeeded)
    if branch and not succeeded:
        advice, resumes = _BRANCH_ADVICE, False
    elif restart and ingested is None and not succeeded:
        advice = _restart_advice(docs, scope)
    if past is not None and ingested is None and not succeeded:
        advice = (
            f"the run went on past {node} (its checkpoint, where a resume starts, is at "
            f"{past}), so a resume would not read an ingested status; fix the agent's "
            "status path"
        )
    return ingest, advice, resumes


def _refused_advice(ingested: int | None, refused: str) -> str:
    """The advice for a stranded outcome of a run Kilroy will not resume (``refused``, its
    reason, :func:`doctor._resumable.resume_refusal`): no resume reads an ingested status, and
    one tried only replaces the run's final.json with the refusal.

    >>> _refused_advice(None, "checkpoint missing git_commit_sha")  # doctest: +ELLIPSIS
    "`kilroy attractor resume` refuses this run ('checkpoint missing git_commit_sha': ...
    """
    done = (
        f"doctor repair ingested it (the run's last event then: {iso(ingested)}), but "
        if ingested is not None
        else ""
    )
    return (
        f"{done}`kilroy attractor resume` refuses this run ({refused!r}: its checkpoint was "
        "saved by a resumed engine or in no-git mode, and a resume tried would only replace "
        "final.json's reason with that), so the engine will never read an ingested status; "
        "fix the agent's status path and run the graph again"
    )


def _restart_advice(docs: RunDocuments, scope: str) -> str:
    """The advice for a stranded outcome in a Kilroy ``restart-N`` scope: ``kilroy attractor
    resume`` goes on from the base directory's checkpoint, never in a restart (real run
    ``loop_restart_agent_dotai``: its impl/status.json ingested by hand into restart-1, a
    resume ran prepare, fetch and impl again in the base directory and never read it)."""
    base = docs.scopes.get("")
    cp = base.checkpoint if base is not None else None
    at = cp.get("current_node") if cp is not None and cp.ok else None
    where = f" (at {at})" if isinstance(at, str) and at else ""
    return (
        f"a resume goes on from the base directory's checkpoint{where}, not in {scope}, so "
        "it would never read a status ingested there; fix the agent's status path"
    )


def _routed_past(docs: RunDocuments, scope: str, node: str) -> str | None:
    """The node the run's checkpoint holds when it is not ``node``, for the base directory's
    scope: ``kilroy attractor resume`` starts from the checkpoint's last completed node and
    routes on with that node's status.json, so a status ingested for a node the run had gone
    on from is never read (real run ``agent_routed_past_killed``: impl's fail edge ran fixup,
    the run was killed in build; the resume ran build and ended). Other scopes: None (a
    branch is never ingested, :data:`_BRANCH_ADVICE`; a restart is left for the base
    directory)."""
    sd = docs.scopes.get(scope)
    cp = sd.checkpoint if scope == "" and sd is not None else None
    current = cp.get("current_node") if cp is not None and cp.ok else None
    return current if isinstance(current, str) and current != node else None


def _advice(ingest: bool, ingested: int | None, succeeded: bool, canonical: str) -> str:
    """What to do about a stranded outcome: ingest it and re-route the run, resume the run
    that was ingested, or (a run that succeeded without it, which no resume runs again, or an
    outcome that is no success) fix the agent's status path."""
    if ingested is not None:
        done = (
            f"doctor repair ingested it as {canonical} (the run's last event then: {iso(ingested)})"
        )
        if succeeded:
            return (
                f"{done}, but the run had succeeded without it and a resume of a finished run "
                "runs nothing, so the engine will never read it; fix the agent's status path"
            )
        return (
            f"{done}; resume the run (kilroy attractor resume) so that the engine reads it "
            "and routes on from it"
        )
    if ingest:
        return "ingest that file as the stage's status and re-route the run"
    if succeeded:
        return (
            "the run succeeded without it and a resume of a finished run runs nothing, so no "
            "repair can bring it back; fix the agent's status path"
        )
    return "fix the agent's status path"


# The latest event of a scope naming the node (its edges evaluated, an attempt run again);
# a resume's preamble (format doc §2.7: inputs materialized again, setup commands) is not.
_WENT_ON_SQL = """
SELECT max(epoch_ns(ts)) FROM progress_events
WHERE run_id = $run AND scope = $scope AND node_id = $node
  AND NOT starts_with(event, 'input_materialization_')
  AND NOT starts_with(event, 'setup_command_')
"""


def _ingested_at(docs: RunDocuments, scope: str, node: str) -> int | None:
    """When ``doctor repair`` ingested a stranded status file as ``node``'s canonical
    status.json in ``scope`` (:func:`_repaired_at`); None when it did not."""
    sd = docs.scopes.get(scope)
    for st in sd.statuses if sd is not None else ():
        if st.canonical and st.node_id == node and (at := _repaired_at(st.document)):
            return at
    return None


def _repaired_at(doc: Document) -> int | None:
    """When a status file doctor repair wrote was ingested (epoch ns), else None: the run's
    last event then (``repaired_by.run_last_event_at``, the engine's clock, as the events
    it is compared with), else the repair's time (``repaired_by.at``, older repairs)."""
    by = doc.get("repaired_by")
    if not isinstance(by, dict):
        return None
    return parse_iso(by.get("run_last_event_at")) or parse_iso(by.get("at"))


def _went_on_after(ctx: Context, where: tuple[str, str, str], ns: int) -> bool:
    """Whether the engine wrote an event naming the node ``where`` (run, scope, node) after
    ``ns``: a resume read the ingested status and routed on from it (real runs: Kilroy
    evaluates the node's edges with its status.json's outcome, docs/repair.md), or ran the
    node again. A resume that went on from a later node (the run had routed past the failed
    one) never names it: the ingested status was not used, and the finding stays."""
    run_id, scope, node = where
    ((last,),) = ctx.tables.sql(_WENT_ON_SQL, run=run_id, scope=scope, node=node)
    return last is not None and last > ns


def _stops(ending: Any, docs: RunDocuments, scope: str) -> set[str]:
    """The reasons a stop recorded on a node of ``scope`` may carry: the run's terminal
    reason, and that of the final.json of the top-level scope ``scope`` lies in. A
    ``restart-N`` stopped by a signal and left by a resume that went on in the base directory
    keeps its own (real run ``loop_restart_sigterm_resumed``: the run's final.json is the
    base one, ``success``, while ``restart-1/final.json`` records the signal). A fan-out the
    signal caught there just after its attempt ended ``partial_success`` keeps a status.json
    saying ``fail`` with that reason (a real run too large for the corpus showed it)."""
    own = docs.top_final_of(scope)
    reasons = (ending, own.get("failure_reason") if own is not None and own.ok else None)
    return {r for r in reasons if isinstance(r, str) and r}


def _disagreeing_status(ctx: Context) -> list[Finding]:
    """A canonical status.json whose outcome the stream's last ended attempt of the node
    contradicts (deliberate rewrites and the run's own stop excepted)."""
    findings: list[Finding] = []
    if not any(
        st.canonical and st.status is not None
        for docs in ctx.tables.documents.values()
        for sd in docs.scopes.values()
        for st in sd.statuses
    ):
        return findings  # no status.json to compare with the stream: no query to plan
    last = {
        (r, s, n): (a, bool(o), st, fr, raw)
        for r, s, n, a, o, st, fr, raw in ctx.tables.sql(_LAST_SQL)
    }
    for run_id, docs in sorted(ctx.tables.documents.items()):
        ending = facts_of(ctx.facts, run_id).get("terminal_reason")
        for scope, sd in sorted(docs.scopes.items()):
            for st in sd.statuses:
                if not st.canonical or st.status is None:
                    continue
                row = last.get((run_id, scope, st.node_id))
                if row is None:
                    continue  # the exit node runs without attempt events
                attempt, is_open, ev_status, reason, raw_status = row
                if is_open or ev_status is None:
                    continue  # the engine deletes status.json before an attempt; not ours yet
                if isinstance(st.document.get("repaired_by"), dict):
                    continue  # doctor repair's ingest: the stranded finding tells its story
                ev = str(ev_status).strip().lower()
                if ev == st.status or (ev not in SUCCESS_LIKE and st.status in _GAVE_UP):
                    continue  # the same, or Kilroy's own record of an outcome it gave up on
                if st.status == str(raw_status or "").strip().lower():
                    continue  # the handler's outcome an output contract failed, mid-visit
                if st.status == "fail" and st.failure_reason in _stops(ending, docs, scope):
                    continue  # Kilroy recorded the stop that ended the run (or restart) on the node
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
