"""A run's state and how it ended (FINDINGS.md, "state"): the liveness rules.

The state of a run (and of each branch, judged the same way from its own stream) follows from
its final.json, its owner process's liveness, its last progress and last event, the stall
timeout and the clock: :func:`run_state`. How a run that failed ended (its terminal reason,
the stop that ended it) follows from its stops and terminal events, of its last ending only:
:func:`_ending`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from doctor._documents import TERMINAL_STATUSES, RunDocuments

__all__ = [
    "OPERATOR_STOP_REASONS",
    "STOP_EVENTS",
    "STOP_EVENTS_SQL",
    "reason_stop",
    "run_state",
    "signal_stop",
]


#: Events that end a Kilroy run loop: its terminal events and the stops that cause them.
STOP_EVENTS = (
    "run_completed",
    "run_failed",
    "deterministic_failure_cycle_breaker",
    "stuck_cycle_breaker",
    "stall_watchdog_timeout",
    "loop_restart_blocked",
    "loop_restart_circuit_breaker",
)
STOP_EVENTS_SQL = "(" + ", ".join(f"'{e}'" for e in STOP_EVENTS) + ")"
_TERMINAL_EVENTS = ("run_completed", "run_failed")


def run_state(
    *,
    final_status: Any,
    owner_alive: bool | None,
    last_progress: int | None,
    last_event: int | None,
    stall_timeout_s: float,
    now: float,
    owner_since: int | None = None,
    owner_stopped: bool = False,
) -> str:
    """The run's state, FINDINGS.md's rules with four readings made explicit.

    * A dead owner means ``orphaned`` even within the stall timeout: nobody is left to write
      ``final.json``.
    * An unknown owner past the stall timeout is ``stalled`` while something (heartbeats)
      still arrives within the timeout, and ``orphaned`` when nothing does.
    * A live owner that took the run (``owner_since``, epoch ns: run.lock.json's
      ``acquired_at``) within the stall timeout is ``running``, though no progress came yet:
      Kilroy runs its preflight, workspace setup and input materialization before its first
      event, and a resume before its first new one (real run ``starting``).
    * A live owner that is stopped (``owner_stopped``: SIGSTOP, a suspended job, state ``T``)
      is ``stalled`` at once, recent progress or not: it can make none until it is
      continued, and waiting out the stall timeout would only hide that.

    >>> run_state(final_status="success", owner_alive=None, last_progress=None,
    ...           last_event=None, stall_timeout_s=600, now=0)
    'succeeded'
    >>> run_state(final_status=None, owner_alive=True, last_progress=None, last_event=None,
    ...           stall_timeout_s=600, now=100, owner_since=99 * 10**9)
    'running'
    >>> run_state(final_status=None, owner_alive=True, last_progress=99 * 10**9, last_event=None,
    ...           stall_timeout_s=600, now=100, owner_stopped=True)
    'stalled'
    """
    if final_status in TERMINAL_STATUSES:
        return {"success": "succeeded", "fail": "failed", "canceled": "canceled"}[final_status]
    if owner_alive is False:
        return "orphaned"
    if owner_alive and owner_stopped:
        return "stalled"

    def fresh(ns: int | None) -> bool:
        return ns is not None and now - ns / 1e9 <= stall_timeout_s

    if fresh(last_progress) or (owner_alive and fresh(owner_since)):
        return "running"
    if owner_alive:
        return "stalled"
    return "stalled" if fresh(last_event) else "orphaned"


@dataclass(frozen=True)
class _Liveness:
    """What a branch's state is judged against: its run's owner, stall timeout and now."""

    alive: bool | None
    stall: float
    now: float
    #: The owner is alive but stopped (state ``T``): its branches make no progress either.
    stopped: bool = False


def _branch_state(
    docs: RunDocuments,
    scope: str,
    live: _Liveness,
    *,
    last_progress: int | None,
    last_event: int | None,
) -> str:
    """A branch scope's state from its own final document and events, like a run's."""
    sd = docs.scopes.get(scope)
    final = sd.final if sd else None
    status = final.get("status") if final is not None and final.ok else None
    return run_state(
        final_status=status,
        owner_alive=live.alive,
        last_progress=last_progress,
        last_event=last_event,
        stall_timeout_s=live.stall,
        now=live.now,
        owner_stopped=live.stopped,
    )


def _ending(
    status: Any, final_reason: Any, events: list[tuple[Any, ...]]
) -> tuple[str | None, str | None]:
    """The run's terminal reason and the stop that ended it.

    The reason is final.json's ``failure_reason``, else the ``run_failed`` ``reason`` of the
    run's last ending; a run that succeeded has none. ``stopped_by`` names the stop event of
    that ending (a breaker, the stall watchdog, a blocked loop_restart), else the stop its
    reason names (:func:`reason_stop`: a signal, the operator), and is null for a run nothing
    stopped. An ending
    before the last one (the watchdog, then ``kilroy attractor resume``, then a signal)
    belongs to an earlier attempt of the run: see :func:`_last_ending`.

    >>> _ending("fail", None, [("stall_watchdog_timeout", None, 1),
    ...                        ("run_failed", "stall watchdog timeout after 3s", 2)])
    ('stall watchdog timeout after 3s', 'stall_watchdog_timeout')
    >>> _ending("success", None, [("run_completed", None, 9)])
    (None, None)
    >>> _ending("fail", "stopped by signal terminated",
    ...         [("stall_watchdog_timeout", None, 1), ("run_failed", "stall …", 2),
    ...          ("run_failed", "stopped by signal terminated", 40)])
    ('stopped by signal terminated', 'signal')
    """
    if status == "success":
        return None, None
    last = _last_ending(events)
    failed_reasons = [r for e, r, *_ in last if e == "run_failed" and r]
    reason = final_reason if isinstance(final_reason, str) and final_reason else None
    if reason is None and failed_reasons:
        reason = failed_reasons[-1]
    stops = [e for e, *_ in last if e not in _TERMINAL_EVENTS]
    return reason, stops[-1] if stops else reason_stop(reason)


#: The failure reasons of the final.json ``kilroy attractor stop`` writes itself, for an
#: engine that died without writing one (its grace ran out, ``--force`` SIGKILLed it): no event
#: records that stop (format doc §3.1; real run ``loop_stop_hung``).
OPERATOR_STOP_REASONS = frozenset({"stopped_by_operator", "stopped_by_operator_forced"})


def reason_stop(reason: object) -> str | None:
    """The stop a failure reason names: ``signal`` for Kilroy's "stopped by signal" ending
    (:func:`signal_stop`), ``operator`` for the final.json ``kilroy attractor stop`` wrote
    itself; else None.

    >>> reason_stop("stopped by signal terminated"), reason_stop("stopped_by_operator_forced")
    ('signal', 'operator')
    >>> reason_stop("exit status 1") is None
    True
    """
    if signal_stop(reason):
        return "signal"
    return "operator" if reason in OPERATOR_STOP_REASONS else None


def signal_stop(reason: object) -> bool:
    """Whether a failure reason is Kilroy's "stopped by signal" ending, said by the run or
    wrapped by the construct the signal ended (a concurrent region: ``concurrent region "c1"
    failed: branch node a failed: stopped by signal terminated``, real run
    ``concurrent_sigterm``; Go wraps errors as ``context: cause``).

    >>> signal_stop("stopped by signal terminated")
    True
    >>> signal_stop('concurrent region "c1" failed: branch node a failed: stopped by signal '
    ...             'interrupt')
    True
    >>> signal_stop("exit status 1"), signal_stop(None)
    (False, False)
    """
    if not isinstance(reason, str):
        return False
    return reason.startswith("stopped by signal") or ": stopped by signal" in reason


def _last_ending(events: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The stops and terminal event of the run's last ending, of its ``events`` in time order.

    A terminal event (``run_completed``, ``run_failed``) closes an ending; the stops before it,
    after the terminal event before, are that ending's. A resumed run appends its own ending
    after the one it resumed from (in the base directory, or after a ``restart-N``'s), so only
    the last counts; stops after the last terminal event (a stop whose ``run_failed`` was never
    written) are the last ending.

    >>> _last_ending([("stuck_cycle_breaker", None, 1), ("run_failed", "x", 2),
    ...               ("run_completed", None, 9)])
    [('run_completed', None, 9)]
    >>> _last_ending([("run_failed", "x", 2), ("stall_watchdog_timeout", None, 9)])
    [('stall_watchdog_timeout', None, 9)]
    """
    ends = [i for i, (event, *_) in enumerate(events) if event in _TERMINAL_EVENTS]
    if not ends:
        return events
    if ends[-1] < len(events) - 1:
        return events[ends[-1] + 1 :]
    return events[ends[-2] + 1 :] if len(ends) > 1 else events
