"""The repair loop: plan safe fixes from a diagnosis, apply them, diagnose again.

:func:`plan_repairs` turns the findings that name a ``repair`` into :class:`Action` records;
:func:`apply_repairs` carries them out and returns a :class:`RepairReport` saying, per action,
what happened and which findings it resolved (or introduced), and which findings remain.

The loop is a few modules, one concept apiece:

* :mod:`doctor._repair_plan`: planning (:func:`plan_repairs`), for run directories and the
  work queue.
* :mod:`doctor._repair_actions`: the actions on run directories (``shared/FINDINGS.md``'s
  ``repair`` values ``terminalize``, ``ingest_status``, ``truncate_torn_line``), what each
  does and the precondition it re-checks right before acting.
* :mod:`doctor._repair_files`: the file operations every such action writes through,
  relative to the run directory's descriptor and never through a symlink; the run's lock and
  the write lease a cut holds.
* :mod:`doctor._repair_queue`: the actions on the work queue (``reclaim``, ``reconcile``;
  target the ticket id), planned from a scan's queue findings and applied by
  :func:`apply_queue_repairs`.
* :mod:`doctor._repair_model`: the records (actions, results, reports) and the breaker.
* this module: applying a run's plan (:func:`apply_repairs`), journaling each action.

This module re-exports the records, the planner and the queue's entry points, so
``from doctor._repair import ...`` names the whole repair loop.

Every action is idempotent (an action found done, by the journal's hash of its last result, is
a no-op), re-checks its precondition from the files right before acting and refuses with the
reason when it no longer holds, writes only inside the run directory (every path walked from
the run's directory descriptor with ``O_NOFOLLOW``, so a symlink swapped in after a check is
never followed; new files created without overwriting), holds the run's own lock while it
writes (so a resuming run and the repair exclude each other), cuts a stream
only under a write lease (no other process has it open, none can open it to append meanwhile;
:func:`doctor._repair_files._sole_open`) — :mod:`doctor._repair_actions` and
:mod:`doctor._repair_files` keep these — and is journaled here in ``repairs.ndjson``
(:mod:`doctor._journal`) with before and after hashes. A breaker stops the same action on the
same target after ``breaker_tries`` applied or failed tries (or unfinished ``started`` ones)
within ``breaker_window_s`` seconds (from the journal): incident 02's recovery loop cannot
happen. A cut a repair left half done (journaled before its move; the repair killed, outrun
by a writer, or failed by the disk: its attempt left unfinished) is finished first
(:func:`_finish_cuts`); :func:`plan_finishing` forecasts it for the plan.
An action that reaches its first write journals a ``started`` line before it (the run's lock
held) and its outcome after, both with one ``attempt`` id: a repair killed between its write
and its outcome's line leaves the ``started`` line, which says the action may have happened
(:mod:`doctor._journal`).
``apply_repairs(..., race_hook=...)`` is the test seam between an action's last check and its
first write, so the race tests hit that window deterministically; ``diagnosed_hook`` (after
the first diagnosis) and ``wrote_hook`` (after a write, before its outcome is journaled) are
the other two.
Queue actions are idempotent by the queue itself (:mod:`doctor._repair_queue`).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from doctor._config import DoctorConfig
from doctor._diagnose import diagnose_path
from doctor._errors import UsageError
from doctor._journal import STARTED, JournalEntry, append_entry, read_journal
from doctor._model import Diagnosis
from doctor._repair_actions import _RUNNERS, _check_done, finish_cut
from doctor._repair_files import _check_rel, _open_run, _sha_rel
from doctor._repair_model import (
    _COUNTED,
    ACTIONS,
    BREAKER_TRIES,
    BREAKER_WINDOW_S,
    QUEUE_ACTIONS,
    TOOL,
    Action,
    ActionResult,
    FindingRef,
    QueueRepairReport,
    RepairReport,
    _breaker,
    _Ctx,
    _diff,
    _Done,
    _journal_unsafe,
    _Refused,
    _version,
)
from doctor._repair_plan import half_done_cuts, plan_finishing, plan_repairs
from doctor._repair_queue import apply_queue_repairs, queue_journal_dir
from doctor._timestamps import iso

__all__ = [
    "ACTIONS",
    "BREAKER_TRIES",
    "BREAKER_WINDOW_S",
    "QUEUE_ACTIONS",
    "Action",
    "ActionResult",
    "FindingRef",
    "QueueRepairReport",
    "RepairReport",
    "apply_queue_repairs",
    "apply_repairs",
    "plan_finishing",
    "plan_repairs",
    "queue_journal_dir",
]


def _run_dir(run_path: Path) -> tuple[Path, int]:
    """The run directory's path (its parents resolved, not itself) and a descriptor opened on
    it without following a symlink: everything the repair writes goes through the descriptor,
    so a run directory swapped for a symlink after this point is never written through."""
    run_path = Path(run_path)
    fd = _open_run(run_path)
    try:
        parent = Path(os.path.realpath(run_path.parent))
    except OSError as exc:
        os.close(fd)
        raise UsageError(f"{str(run_path)!r} is not a run directory: {exc}") from exc
    return parent / run_path.name, fd


def apply_repairs(
    plan: Sequence[Action],
    config: DoctorConfig,
    *,
    run_path: Path,
    breaker_tries: int = BREAKER_TRIES,
    breaker_window_s: float = BREAKER_WINDOW_S,
    race_hook: Callable[[str], None] | None = None,
    diagnosed_hook: Callable[[], None] | None = None,
    wrote_hook: Callable[[str], None] | None = None,
) -> RepairReport:
    """Carry out ``plan`` in the run directory ``run_path`` and diagnose again after each
    applied action; the report says what each action resolved and what remains.

    ``race_hook`` is a test seam, None outside tests: it is called with the action's kind once
    per run-directory action that reaches its write, after every precondition was checked
    (with the run's lock held) and before the
    first byte is written (the backup, or the target). A test changes the run there (swaps a
    directory for a symlink, resumes the run, appends to the stream) to hit the window
    between check and write every time instead of by chance; what the repair writes next
    must still land inside the run and lose nothing.

    ``diagnosed_hook`` is the second test seam, None outside tests: called once, after the
    run was diagnosed and its journal read, before the first action. A test holds one repair
    there while another repairs the same run, so the first acts on a diagnosis the second
    made stale. ``wrote_hook`` (None outside tests) is called with the action's kind after an
    action wrote and released the run's lock, before its outcome is journaled, and with
    ``"truncate_torn_line:moved"`` when a cut (or the finishing of a half-done one) has moved
    bytes down, before its ``ftruncate``: a test kills the repair there, or appends.

    >>> import tempfile
    >>> from doctor import DoctorConfig
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = (Path(d) / "run1").mkdir(), (Path(d) / "run1" / "progress.ndjson").write_text("")
    ...     apply_repairs([], DoctorConfig(now=0.0), run_path=Path(d) / "run1").results
    ()
    """
    run_dir, run_fd = _run_dir(run_path)
    try:
        current = diagnose_path(run_dir, config)
        ctx = _Ctx(
            run_dir,
            current.run_id,
            config,
            read_journal(run_dir, outcomes=_COUNTED),
            run_fd=run_fd,
            race_hook=race_hook,
            wrote_hook=wrote_hook,
        )
        finished = _finish_cuts(ctx)
        if finished:
            current = diagnose_path(run_dir, config)
        if diagnosed_hook is not None:
            diagnosed_hook()
        results, current = _apply_all(ctx, plan, current, breaker_tries, breaker_window_s)
        results = finished + results
    finally:
        os.close(run_fd)
    return RepairReport(
        run_id=current.run_id,
        path=current.path,
        results=tuple(results),
        remaining=tuple(FindingRef.of(f) for f in current.findings),
        state=current.state,
    )


def _apply_all(
    ctx: _Ctx,
    plan: Sequence[Action],
    current: Diagnosis,
    breaker_tries: int,
    breaker_window_s: float,
) -> tuple[list[ActionResult], Diagnosis]:
    config, run_dir = ctx.config, ctx.run_path
    results: list[ActionResult] = []
    stale = False  # an action not applied since the last diagnosis: the run may have moved
    for action in plan:
        ctx.provenance = {
            "tool": TOOL,
            "version": _version(),
            "at": iso(int(config.now * 1e9)),
            "finding": {
                "code": action.finding.code,
                "scope": action.finding.scope,
                "node_id": action.finding.node_id,
            },
        }
        result = _apply_one(ctx, action, breaker_tries, breaker_window_s)
        if result.outcome == "applied":
            after = diagnose_path(run_dir, config)
            resolved, introduced = _diff(current.findings, after.findings)
            result = dataclasses.replace(
                result, resolved=tuple(resolved), introduced=tuple(introduced)
            )
            current = after
        stale = result.outcome != "applied"
        results.append(result)
    if stale:
        # A no-op or a refusal may mean another repair (or the run) changed it since the
        # diagnosis: the report says what remains now, not what remained then.
        current = diagnose_path(run_dir, config)
    return results, current


def _finish_cuts(ctx: _Ctx) -> list[ActionResult]:
    """Finish every cut a repair killed between moving bytes down and cutting left half done
    (an unfinished ``started`` line with a ``cut``: :func:`doctor._repair_actions.finish_cut`),
    each journaled as its attempt's outcome. A refusal is journaled without the attempt, so
    the cut stays unfinished (another repair may be at it) and is tried again next time."""
    results = []
    for attempt, e, action in half_done_cuts(ctx.journal):
        before = _sha_rel(ctx, e.target)
        finished: str | None = None
        try:
            message, outcome = finish_cut(ctx, e.target, e.extra["cut"]), "applied"
            finished = attempt
        except _Refused as refused:
            message, outcome = str(refused), "refused"
        except OSError as exc:
            message, outcome = f"{type(exc).__name__}: {exc}", "failed"
        hashes = (before, _sha_rel(ctx, e.target))
        results.append(
            _record(ctx, action, outcome, message, hashes, backup=None, attempt=finished)
        )
    if results:
        ctx.journal = read_journal(ctx.run_path, outcomes=_COUNTED)
    return results


def _apply_one(ctx: _Ctx, action: Action, tries: int, window_s: float) -> ActionResult:
    """Apply one action unless the journal is unsafe, it is already done, or the breaker
    tripped; journal what happened, with the target's hashes before and after."""
    unsafe = _journal_unsafe(ctx.run_path)
    if unsafe is not None:
        return ActionResult(action, "refused", unsafe)
    # Read again before each action: another repair may have journaled it meanwhile.
    ctx.journal = read_journal(ctx.run_path, outcomes=_COUNTED)
    try:
        _check_rel(action.target)
        hashable = True
    except _Refused:
        hashable = False  # the runner refuses with the reason; nothing is hashed
    before = _sha_rel(ctx, action.target) if hashable else None
    runner = _RUNNERS.get(action.kind)
    backup: str | None = None
    ctx.start, started_id, started = _starter(ctx, action, hashable)
    try:
        if hashable:
            _check_done(ctx, action)
        tripped = _breaker(ctx, action, tries, window_s)
        if runner is None:
            outcome, message = "refused", _unknown(action.kind)
        elif tripped is not None:
            outcome, message = "breaker", tripped
        else:
            message, backup = runner(ctx, action)
            outcome = "applied"
            ctx.wrote(action.kind)
    except _Done as done:
        return ActionResult(action, "noop", str(done), before, before)
    except _Refused as refused:
        outcome, message = "refused", str(refused)
    except FileExistsError as exc:  # a file is only ever created where none is
        outcome, message = (
            "refused",
            (
                f"{exc.filename} appeared after the check (another writer, the executor's reaper "
                "say, got there first): nothing was replaced"
            ),
        )
    except OSError as exc:
        outcome, message = "failed", f"{type(exc).__name__}: {exc}"
    finally:
        ctx.start = None
    hashes = (before, _sha_rel(ctx, action.target) if hashable else None)
    # A cut that journaled a move and did not end applied (outrun by a writer, an error from
    # the disk) may have left the stream half done: its outcome's line leaves the attempt
    # unfinished, so the next repair finishes the cut (:func:`_finish_cuts`).
    half_done = outcome != "applied" and any("cut" in extra for extra in started)
    attempt = started_id if started and not half_done else None
    return _record(ctx, action, outcome, message, hashes, backup=backup, attempt=attempt)


def _unknown(kind: str) -> str:
    """Why an action of ``kind`` is refused in a run directory.

    >>> _unknown("reclaim")
    "unknown action 'reclaim' in a run directory: a queue action is applied with --db URL"
    """
    where = " in a run directory: a queue action is applied with --db URL"
    return f"unknown action {kind!r}" + (where if kind in QUEUE_ACTIONS else "")


def _starter(
    ctx: _Ctx, action: Action, hashable: bool
) -> tuple[Callable[[dict[str, Any]], None], str, list[dict[str, Any]]]:
    """What journals ``action``'s ``started`` lines (``ctx.start``), its attempt id, and the
    list of the lines' extras once journaled (the line of its outcome then carries the id)."""
    attempt = f"{os.getpid()}-{time.time_ns()}"
    started: list[dict[str, Any]] = []

    def start(extra: dict[str, Any]) -> None:  # the run's lock held, before a write
        # A step's line (``extra``) hashes nothing: a stream under its lease is not reopened.
        entry = _journal_entry(
            ctx,
            action,
            outcome=STARTED,
            message="about to write; a line of this attempt says how it ended",
            before=_sha_rel(ctx, action.target) if hashable and not extra else None,
            after=None,
            backup=None,
            attempt=attempt,
        )
        append_entry(ctx.run_path, dataclasses.replace(entry, extra=extra), dir_fd=ctx.run_fd)
        started.append(extra)

    return start, attempt, started


def _record(
    ctx: _Ctx,
    action: Action,
    outcome: str,
    message: str,
    hashes: tuple[str | None, str | None],
    *,
    backup: str | None,
    attempt: str | None,
) -> ActionResult:
    """Journal what ``action`` did (its target's ``hashes`` before and after) and give it as
    the report does: a line the journal refused (a full disk) is said on the message's one
    line, and an action that was applied then counts as ``failed`` (the journal is left as it
    was: no empty file, no torn line)."""
    before, after = hashes
    entry = _journal_entry(
        ctx,
        action,
        outcome=outcome,
        message=message,
        before=before,
        after=after,
        backup=backup,
        attempt=attempt,
    )
    try:
        append_entry(ctx.run_path, entry, dir_fd=ctx.run_fd)
    except OSError as exc:
        message += f" (not journaled, the journal left as it was: {exc.strerror or exc})"
        outcome = "failed" if outcome == "applied" else outcome
    ctx.journal.append(entry)
    return ActionResult(action, outcome, message, before, after, backup)


def _journal_entry(
    ctx: _Ctx,
    action: Action,
    *,
    outcome: str,
    message: str,
    before: str | None,
    after: str | None,
    backup: str | None,
    attempt: str | None = None,
) -> JournalEntry:
    """The journal's record of one action: what was done to which target, for which
    finding, and the target's hashes before and after."""
    return JournalEntry(
        at=iso(int(ctx.config.now * 1e9)) or "",
        at_s=ctx.config.now,
        tool=TOOL,
        version=_version(),
        action=action.kind,
        target=action.target,
        finding={
            "code": action.finding.code,
            "scope": action.finding.scope,
            "node_id": action.finding.node_id,
        },
        outcome=outcome,
        message=message,
        before_sha256=before,
        after_sha256=after,
        backup=backup,
        source=action.source,
        attempt=attempt,
    )
