"""A top-level ``final.json`` that the run has since gone past: a resume works on after it.

Two writers, two rules. **The doctor's** (``repaired_by``) is set aside once any stream of the
run has an event after it (below). **Kilroy's own**: ``kilroy attractor resume`` keeps the old
final.json (usually ``fail``: a signal, a breaker) until it finishes, so a resume that is still
working, or that was killed, left a final.json that no longer says how the run ended (the
format reference: "final.json says fail but progress still advancing"). Kilroy's is set aside
only on the evidence of a resume (:func:`resumed_past`): a top-level stage started after its
``timestamp``, and before that start either the run's lock taken after it (``run.lock.json``'s
``acquired_at``: a resume takes the lock) or Kilroy's resume materializing the inputs
(``input_materialization_started``) after it. A leaked heartbeat or a branch's late event
after Kilroy's final.json starts no top-level stage and stays ``post_terminal_activity``; a
resume of a finished run that only materializes its inputs and returns (real run
``resume_after_success``) starts none either.

The doctor's final.json:

``terminalize`` writes final.json (``repaired_by``) for a run whose owner was dead and quiet:
its judgement at one moment, stamped with the run's last event. ``kilroy attractor resume``
accepts such a run: it takes the run's lock, works on from the checkpoint and keeps the old
final.json until it finishes, then rewrites it (real runs, docs/repair.md "Kilroy and a
repaired run"). So once any stream of the run ends with an event after the doctor's
final.json's ``timestamp`` (each stream's last event, as ``terminalize`` stamped it: a
forwarded ``branch_progress`` earlier in a stream may carry a later time), that final.json
no longer says how the run ended: the run is read as if it had none (``running`` while the
resume works, ``orphaned`` once it died, when ``terminalize`` replaces it, keeping it as a
backup).
"""

from __future__ import annotations

from typing import Any

from doctor._timestamps import parse_iso

#: The event a resume starts with (Kilroy materializes the run's inputs, scope ``resume``).
RESUME_MARK = "input_materialization_started"
#: The event of a stage starting.
STAGE_START = "stage_attempt_start"
#: The events that end a run (HEAD builds).
RUN_ENDS = ("run_completed", "run_failed")


def final_ns(value: Any) -> int | None:
    """The ``timestamp`` (epoch ns) of a final.json, whoever wrote it; None without one.

    >>> final_ns({"status": "fail", "timestamp": "2026-12-06T19:17:06Z"})
    1796584626000000000
    """
    return parse_iso(value.get("timestamp")) if isinstance(value, dict) else None


def resumed_past(
    final: int,
    *,
    stage_ns: int | None,
    mark_ns: int | None,
    owner_since: int | None,
    ended_ns: int | None = None,
) -> bool:
    """Whether a resume went on past a final.json stamped ``final`` (epoch ns) and has not
    ended: a top-level stage started after it (``stage_ns``, the first such start), before
    that start a resume took the run's lock (``owner_since``) or materialized the inputs
    (``mark_ns``, the first :data:`RESUME_MARK` after the final.json) after it, and no
    terminal event of the resume follows (``ended_ns``: the last top-level ``run_completed``
    or ``run_failed``). A resume that wrote its end but not its final.json leaves that
    final.json stale, which ``post_terminal_activity`` reports.

    >>> resumed_past(10, stage_ns=30, mark_ns=20, owner_since=None)
    True
    >>> resumed_past(10, stage_ns=30, mark_ns=None, owner_since=5)  # the first run's lock
    False
    >>> resumed_past(10, stage_ns=None, mark_ns=20, owner_since=15)  # no stage: returned
    False
    >>> resumed_past(10, stage_ns=30, mark_ns=20, owner_since=None, ended_ns=40)
    False
    """
    if stage_ns is None or stage_ns <= final:
        return False
    if ended_ns is not None and ended_ns > stage_ns:
        return False
    return any(t is not None and final < t <= stage_ns for t in (mark_ns, owner_since))


__all__ = [
    "RESUME_MARK",
    "STAGE_START",
    "final_ns",
    "repaired_final_ns",
    "resumed_past",
    "superseded",
]


def repaired_final_ns(value: Any) -> int | None:
    """The ``timestamp`` (epoch ns) of a final.json ``doctor repair`` wrote; None for any
    other (Kilroy's, the executor's, one without a readable timestamp).

    >>> repaired_final_ns({"status": "fail", "timestamp": "2026-12-06T19:17:06Z",
    ...                    "repaired_by": {"tool": "rundoctor doctor repair"}})
    1796584626000000000
    >>> repaired_final_ns({"status": "fail", "timestamp": "2026-12-06T19:17:06Z"}) is None
    True
    """
    if not isinstance(value, dict) or not isinstance(value.get("repaired_by"), dict):
        return None
    return parse_iso(value.get("timestamp"))


def superseded(value: Any, last_event_ns: int | None) -> bool:
    """Whether the final.json ``value`` is the doctor's and the run wrote an event after it
    (``last_event_ns``: the latest of its streams' last events): a resume went on past it.

    >>> final = {"timestamp": "2026-12-06T19:17:06Z", "repaired_by": {}}
    >>> superseded(final, 1796584626000000000), superseded(final, 1796584630000000000)
    (False, True)
    """
    ns = repaired_final_ns(value)
    return ns is not None and last_event_ns is not None and last_event_ns > ns
