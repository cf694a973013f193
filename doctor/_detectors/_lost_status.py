"""``status_contract_mismatch``'s third situation: a resume that failed for a status file the
killed attempt before it had deleted.

Kilroy deletes a node's ``status.json`` before each attempt and archives the visit before it
under ``<node>/visit_N/``. When a run is killed during a later visit of the node its checkpoint
names (a node routed back to itself, a goal gate whose retry target is the gate), a
``kilroy attractor resume`` reads that node's ``status.json`` to route on, finds none, and
fails at once: ``read last status.json: open <logs_root>/<node>/status.json: no such file or
directory`` (real run ``goal_gate_resume_lost_status``). The outcome it wanted is in the
latest ``visit_N/status.json``; copied back (``ingest_status``), a resume routes on from it
and the run goes on (checked with the real engine, ``tests/doctor/test_repair_real_kilroy.py``).

The same is said *before* a resume: a run not running and not succeeded whose checkpoint (the
run directory's, which ``kilroy attractor resume --logs-root`` reads) names a node with no
``status.json`` will fail so when resumed (real run ``goal_gate_lost_status_killed``); the
finding says so, with the same repair. A checkpoint without ``git_commit_sha`` (Kilroy's no-git
mode) is not judged: its resume fails before it reads the status file.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

from doctor._detectors._context import Context
from doctor._documents import (
    RunDocuments,
    checkpoint_fields,
    normalize_status,
    parse_json,
    read_regular,
)
from doctor._facts import facts_of, scope_state
from doctor._model import Finding, Severity
from doctor._resumable import missing_config, resume_caveat, resume_refusal
from doctor._timestamps import parse_iso

__all__ = ["lost_status"]

_LOST = re.compile(
    r"read last status\.json: open (?P<dir>.+)/status\.json: no such file or directory"
)
_RESTART = re.compile(r"restart-[0-9]+")
_VISIT = re.compile(r"visit_([0-9]+)")
#: A status file is small; more than this is not one to restore.
_MAX_STATUS_BYTES = 1 << 20


def _where(reason: str) -> tuple[str, str] | None:
    """(scope, node) of the status file a failed resume could not read: the node's directory
    is directly in the logs root, or in a ``restart-N`` of it (its absolute path names where
    the run was then; the run directory may have moved since).

    >>> _where("read last status.json: open /r/x/verify/status.json: no such file or directory")
    ('', 'verify')
    >>> _where("read last status.json: open /r/x/restart-2/fix/status.json: no such file or "
    ...        "directory")
    ('restart-2', 'fix')
    >>> _where("exit status 1") is None
    True
    """
    m = _LOST.fullmatch(reason.strip())
    if m is None:
        return None
    parts = Path(m["dir"]).parts
    if len(parts) < 2:
        return None
    scope = parts[-2] if _RESTART.fullmatch(parts[-2]) else ""
    return scope, parts[-1]


def _archived(node_dir: Path) -> tuple[int, str, str | None] | None:
    """The latest ``visit_N/status.json`` of a node that holds an outcome: (N, status,
    failure_reason)."""
    visits: list[tuple[int, Path]] = []
    try:
        for child in node_dir.iterdir():
            m = _VISIT.fullmatch(child.name)
            if m and child.is_dir() and not child.is_symlink():
                visits.append((int(m.group(1)), child / "status.json"))
    except OSError:
        return None
    for n, path in sorted(visits, reverse=True):
        try:
            _st, data, _why = read_regular(path, _MAX_STATUS_BYTES)
        except OSError:
            continue
        if data is None:
            continue
        try:
            status, reason = normalize_status(parse_json(data)[0])
        except ValueError:
            continue
        if status is not None:
            return n, status, reason
    return None


#: The ``N`` of a found outcome that no ``visit_N/`` archive holds: the checkpoint's context
#: recorded it (:func:`_checkpointed`).
_FROM_CHECKPOINT = 0


def _checkpointed(docs: RunDocuments, scope: str, node: str) -> tuple[int, str, str | None] | None:
    """The outcome of ``node``'s visit that the checkpoint of ``scope`` (the base directory or
    a ``restart-N``) recorded, when it names that node: (:data:`_FROM_CHECKPOINT`, status,
    failure_reason) from its context's ``outcome`` and ``failure_reason``. Kilroy builds
    before 2026-03-01 keep no ``visit_N/`` archive (format doc §8), so a status file a killed
    later visit deleted survives only there: the checkpoint is saved after each completed
    node with that node's outcome in its context (format doc §3.3)."""
    sd = docs.scopes.get(scope)
    doc = sd.checkpoint if sd is not None else None
    if checkpoint_fields(doc).get("current_node") != node or doc is None:
        return None
    context = doc.value.get("context")
    if not isinstance(context, dict):
        return None
    try:
        status, reason = normalize_status(
            {"status": context.get("outcome"), "failure_reason": context.get("failure_reason")}
        )
    except ValueError:
        return None
    return (_FROM_CHECKPOINT, status, reason) if status is not None else None


def _doomed(ctx: Context, run_id: str) -> tuple[str, bool] | None:
    """The node whose status file a resume of the run would read and not find, or find
    holding a cancellation (True): the node of the run directory's checkpoint, when the run is
    neither live nor succeeded and the checkpoint has a commit to resume from."""
    if scope_state(facts_of(ctx.facts, run_id), "") in ("running", "stalled", "succeeded"):
        return None
    docs = ctx.documents(run_id)
    top = docs.scopes.get("")
    doc = top.checkpoint if top is not None else None
    if doc is None or not doc.ok or not isinstance(doc.value, dict) or resume_refusal(docs):
        return None  # no resume starts without the checkpoint's commit
    node = checkpoint_fields(doc).get("current_node")
    if not (isinstance(node, str) and node.strip()):
        return None
    if Path(node).name != node:
        return None
    status = docs.path / node / "status.json"
    if not os.path.lexists(status):
        return node, False
    saved = parse_iso(doc.value.get("timestamp"))
    if saved is not None and _canceled(status) and _started_after(ctx, run_id, node, saved):
        return node, True
    return None


def _canceled(path: Path) -> bool:
    """Whether the status file at ``path`` is Kilroy's record of a cancelled attempt (format
    doc §3.6: status fail, ``context_updates.failure_class`` ``canceled``), not an outcome."""
    try:
        _st, data, _why = read_regular(path, _MAX_STATUS_BYTES)
        value = parse_json(data)[0] if data is not None else None
        status, _reason = normalize_status(value)
    except (OSError, ValueError):
        return False
    updates = value.get("context_updates") if isinstance(value, dict) else None
    cls = updates.get("failure_class") if isinstance(updates, dict) else None
    return status == "fail" and isinstance(cls, str) and cls.strip().lower() == "canceled"


def _started_after(ctx: Context, run_id: str, node: str, saved_ns: int) -> bool:
    """Whether ``node`` started an attempt in the run's base directory after the checkpoint
    was saved (``saved_ns``): its status file is of a visit the checkpoint did not record."""
    rows = ctx.tables.sql(
        "SELECT max(epoch_ns(start_ts)) FROM attempts "
        "WHERE run_id = $run AND scope = '' AND node_id = $node",
        run=run_id,
        node=node,
    )
    last = rows[0][0] if rows else None
    return last is not None and int(last) > saved_ns


def lost_status(ctx: Context) -> list[Finding]:
    """Runs whose resume failed, or would fail or route on a cancellation, reading a status
    file a killed or stopped attempt had deleted or replaced, while the node's archived visit
    holds the outcome."""
    findings = []
    for run_id in ctx.facts:
        reason = facts_of(ctx.facts, run_id).get("terminal_reason")
        where = _where(reason) if isinstance(reason, str) else None
        doomed = None if where is not None else _doomed(ctx, run_id)
        if doomed is not None:
            where, reason = ("", doomed[0]), None
        if where is None:
            continue
        node_dir = ctx.documents(run_id).path / where[0] / where[1]
        found = _archived(node_dir) or _checkpointed(ctx.documents(run_id), *where)
        if found is None or (doomed is not None and doomed[1] and found[1] == "fail"):
            continue  # a cancellation routes as the archived fail would (class aside)
        restored = os.path.lexists(node_dir / "status.json")
        canceled = doomed is not None and doomed[1]
        finding = _finding(run_id, where, reason, found[:2], restored, canceled)
        findings.append(_with_caveat(finding, ctx.documents(run_id)))
    return findings


def _with_caveat(finding: Finding, docs: RunDocuments) -> Finding:
    """``finding``, whose advice ends in a resume, warned that the resume would not run as
    the run did (:func:`doctor._resumable.resume_caveat`) when that is so."""
    caveat = resume_caveat(docs)
    if caveat is None:
        return finding
    return dataclasses.replace(
        finding,
        summary=f"{finding.summary}; {caveat}",
        evidence={**finding.evidence, "resume_config_missing": missing_config(docs)},
    )


def _finding(
    run_id: str,
    where: tuple[str, str],
    reason: str | None,
    found: tuple[int, str],
    restored: bool,
    canceled: bool = False,
) -> Finding:
    """The finding for ``where`` (scope, node), whose archived visit ``found`` (N, status)
    holds the outcome; ``reason``: the failed resume's, None before any resume; ``restored``:
    the status file is back (the repair was applied); ``canceled``: before a resume, it holds
    a cancellation instead."""
    scope, node = where
    n, status = found
    expected = (Path(scope) / node / "status.json").as_posix()
    source = _source(scope, node, n)
    if reason is None:
        return _doomed_finding(run_id, node, (expected, source), status, canceled)
    held = (
        f"{node}'s archived visit {n} holds outcome {status!r}"
        if n != _FROM_CHECKPOINT
        else f"no visit archive keeps it (Kilroy builds before 2026-03-01 make none), but "
        f"{source} recorded {node}'s outcome {status!r} in its context"
    )
    if restored:
        advice = (
            f"{expected} is there again now; run `kilroy attractor resume` so that the run "
            f"routes on from {node}'s outcome"
        )
    elif n == _FROM_CHECKPOINT:
        advice = _WRITE_BACK.format(expected=expected, status=status) + (
            ", then run `kilroy attractor resume`"
        )
    else:
        advice = (
            f"restore it from {source} (doctor repair --apply: ingest_status), then run "
            "`kilroy attractor resume`"
        )
    return Finding(
        code="status_contract_mismatch",
        severity=Severity.ERROR,
        summary=(
            f"The run's resume failed at once: it reads {node}'s status.json to route on, and "
            f"the attempt killed before it had deleted that file (Kilroy deletes it before each "
            f"attempt), while {held}; " + advice
        ),
        run_id=run_id,
        scope=scope,
        node_id=node,
        evidence={
            "node_id": node,
            "attempt": None,
            "failure_reason": reason,
            "expected_path": expected,
            "found_path": source,
            "found_outcome": status,
            "lost_by_resume": True,
        },
        repair=None if restored or n == _FROM_CHECKPOINT else "ingest_status",
    )


#: What to do when no file holds the lost outcome, only the checkpoint's context: nothing
#: for ``ingest_status`` to copy, so the status file is written by hand.
_WRITE_BACK = (
    'write {expected} by hand as {{"status": "{status}"}} (nothing to copy for doctor repair)'
)


def _source(scope: str, node: str, n: int) -> str:
    """Where the lost outcome was found: the node's ``visit_N/status.json``, or the
    checkpoint of its scope.

    >>> _source("", "verify", 1), _source("restart-1", "fix", _FROM_CHECKPOINT)
    ('verify/visit_1/status.json', 'restart-1/checkpoint.json')
    """
    if n == _FROM_CHECKPOINT:
        return (Path(scope) / "checkpoint.json").as_posix()
    return (Path(scope) / node / f"visit_{n}" / "status.json").as_posix()


def _doomed_finding(
    run_id: str, node: str, paths: tuple[str, str], status: str, canceled: bool
) -> Finding:
    """The finding before any resume: the checkpoint names ``node``, whose status file
    (``paths``: it and the archived visit's) is gone, or holds a cancellation (``canceled``),
    while its archived visit holds ``status``."""
    expected, source = paths
    if canceled:
        what = (
            f"A resume of this run will route on a cancellation: the checkpoint names {node}, "
            f"and its status.json, which the resume reads to route on, now records that a stop "
            f"cancelled {node}'s next visit (fail, class canceled), not the outcome of the "
            "visit the checkpoint recorded"
        )
    else:
        what = (
            f"A resume of this run will fail at once: the checkpoint names {node}, whose "
            f"status.json it reads to route on, and the attempt killed in {node}'s next visit "
            "had deleted it (Kilroy deletes it before each attempt)"
        )
    if source.endswith("checkpoint.json"):
        summary = (
            f"{what}; no visit archive keeps it (Kilroy builds before 2026-03-01 make none), "
            f"but {source} recorded {node}'s outcome {status!r} in its context: "
            + _WRITE_BACK.format(expected=expected, status=status)
            + " before `kilroy attractor resume`"
        )
    else:
        summary = (
            f"{what}, while {source} holds outcome {status!r}; restore it from there "
            "(doctor repair --apply: ingest_status) before `kilroy attractor resume`"
        )
    return Finding(
        code="status_contract_mismatch",
        severity=Severity.ERROR,
        summary=summary,
        run_id=run_id,
        scope="",
        node_id=node,
        evidence={
            "node_id": node,
            "attempt": None,
            "failure_reason": None,
            "expected_path": expected,
            "found_path": source,
            "found_outcome": status,
            "lost_by_resume": False,
            "resume_would_fail": not canceled,
            "canceled_status": canceled,
        },
        repair=None if source.endswith("checkpoint.json") else "ingest_status",
    )
