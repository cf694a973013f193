"""A run's outcome in a scan, and bringing a cached one to the clock.

A :class:`RunOutcome` is what a batch returns for a run (:mod:`doctor._scan_batch`) and what
the cache keeps: its diagnosis, the values its clock-dependent results were computed from
(``clock``, :func:`_clock_inputs`) and its activity for the fleet phase
(:mod:`doctor._scan_fleet`). It is JSON-able, so it crosses processes.

**Bringing a diagnosis to the clock.** Files unchanged, what a run's diagnosis depends on
besides its files is the owner process's liveness and the clock. Both enter through few
values, kept with the entry (``clock``): the owner pid (and start time), final.json's status,
the stall timeout, the last progress and last event times of the run and of each branch.
A rescan checks liveness again and recomputes the run's state and its branches' states; when
all are as cached, every finding is as cached except the ages measured against the clock,
which are recomputed (``idle_s`` from ``last_progress_at``, and the "no progress for …" of a
stalled run); ``idle_gap`` is recomputed in the fleet phase anyway. When one changed (a
running run became stalled, an owner died), the run is diagnosed again (:func:`at_clock`).
So is a run whose diagnosis named processes still working in its directory
(``missing_final``'s ``stage_processes``, kept in ``clock`` with their start times) once one
of them is gone: its advice to stop them first no longer holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from doctor._config import DoctorConfig
from doctor._kept import FINDINGS_LEVEL, KeptFindings
from doctor._run_state import _branch_state, _Liveness, run_state
from doctor._timestamps import parse_iso
from rundoctor.liveness import owner_alive, owner_stopped, started_at

if TYPE_CHECKING:
    from doctor._tables import Tables

__all__ = ["RunOutcome", "at_clock", "named_processes"]


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """One run's result from its batch (or the cache): JSON-able, so it crosses processes."""

    run_id: str
    diagnosis: dict[str, Any]
    clock: dict[str, Any]
    activity: dict[str, Any]
    #: What went wrong with the run's cache entry, when something did (the scan says so in
    #: ``fleet.cache_notes``): the run was diagnosed from its files all the same.
    cache_note: str | None = None


def _clock_inputs(
    tables: Tables, facts: dict[str, Any], config: DoctorConfig, ids: list[str]
) -> dict[str, dict[str, Any]]:
    """Per run, what its clock- and liveness-dependent results were computed from."""
    out: dict[str, dict[str, Any]] = {}
    for run_id in ids:
        rf = facts[run_id]
        last_events = rf["_branch_last_event"]  # the facts read it: no statement of its own
        docs = tables.documents[run_id]
        final = docs.final
        alive = rf.get("owner_alive")
        stopped = bool(rf.get("owner_stopped"))
        stall = rf.get("stall_timeout_s")
        live = _Liveness(alive=alive, stall=stall, now=config.now, stopped=stopped)
        branches = []
        for b in rf.get("branches", []):
            scope = b["scope"]
            sd = docs.scopes.get(scope)
            sfinal = sd.final if sd else None
            status = sfinal.get("status") if sfinal is not None and sfinal.ok else None
            lp, le = parse_iso(b.get("last_progress_at")), last_events.get(scope)
            computed = _branch_state(docs, scope, live, last_progress=lp, last_event=le)
            # A branch state that is not the clock's (the parent's record of it, or its fan-out's
            # results) is fixed by the files.
            fixed = b["state"] if b["state"] != computed else None
            branches.append([scope, lp, le, status, fixed, b["state"]])
        out[run_id] = {
            "final_status": final.get("status") if rf.get("final_json") and final else None,
            "pid": docs.pid,
            "start_time": docs.pid_start_time,
            "pid_recorded_at": docs.pid_recorded_at,
            "owner_since": docs.owner_since,
            "stall": stall,
            "last_progress": parse_iso(rf.get("last_progress_at")),
            "last_event": parse_iso(rf.get("last_event_at")),
            "alive": alive,
            "stopped": stopped,
            "state": rf["_state"],
            "branches": branches,
        }
    return out


def named_processes(findings: Sequence[Any]) -> list[list[float]]:
    """``[pid, start time]`` of each process ``findings`` name as still working in the run
    (``stage_processes``), as this host sees them now: what :func:`at_clock` checks again.

    >>> import os
    >>> named = named_processes([{"evidence": {"stage_processes": [{"pid": os.getpid()}]}}])
    >>> [pid for pid, _ in named] == [os.getpid()]
    True
    >>> named_processes([{"evidence": {"stage_processes": [{"pid": 2**22 + 1}]}}])
    [[4194305, -1.0]]
    """
    out: list[list[float]] = []
    for f in findings:
        evidence = f.get("evidence") if isinstance(f, dict) else None
        for proc in (evidence or {}).get("stage_processes") or ():
            pid = proc.get("pid") if isinstance(proc, dict) else None
            if isinstance(pid, int):
                began = started_at(pid)
                out.append([pid, -1.0 if began is None else began])
    return out


def at_clock(outcome: RunOutcome, config: DoctorConfig) -> RunOutcome | None:
    """``outcome`` (from the cache) at ``config.now``, or None when it may have changed.

    See the module docstring: liveness, the run's state and its branches' states must be as
    cached; ages are then recomputed.
    """
    clock = outcome.clock
    alive = owner_alive(clock["pid"], clock["start_time"], recorded_at=clock.get("pid_recorded_at"))
    if alive != clock["alive"]:
        return None
    # Stopped or continued since (``kill -STOP``/``-CONT``): its state and findings changed.
    stopped = owner_stopped(
        clock["pid"], clock["start_time"], recorded_at=clock.get("pid_recorded_at")
    )
    if stopped != clock.get("stopped", False):
        return None
    stall = float(clock["stall"])

    def state(final_status: Any, lp: int | None, le: int | None) -> str:
        return run_state(
            final_status=final_status,
            owner_alive=alive,
            last_progress=lp,
            last_event=le,
            stall_timeout_s=stall,
            now=config.now,
            owner_stopped=stopped,
        )

    top = run_state(
        final_status=clock["final_status"],
        owner_alive=alive,
        last_progress=clock["last_progress"],
        last_event=clock["last_event"],
        stall_timeout_s=stall,
        now=config.now,
        owner_since=clock.get("owner_since"),  # absent from older entries
        owner_stopped=stopped,
    )
    if top != clock["state"]:
        return None
    for pid, began in clock.get("processes", ()):
        if started_at(pid) != began:  # gone (or its pid taken by another process)
            return None
    for _scope, lp, le, status, fixed, was in clock["branches"]:
        if fixed is None and state(status, lp, le) != was:
            return None
    d = outcome.diagnosis
    kept = d["findings"]
    findings: Sequence[dict[str, Any]]
    if isinstance(kept, KeptFindings):  # only the findings with an age are parsed
        findings = _kept_at_clock(kept, config.now)
    else:
        findings = [_finding_at_clock(f, config.now) for f in kept]
    return RunOutcome(outcome.run_id, {**d, "findings": findings}, clock, outcome.activity)


def _finding_at_clock(f: dict[str, Any], now: float) -> dict[str, Any]:
    ev = f["evidence"]
    last = parse_iso(ev.get("last_progress_at"))
    if "idle_s" not in ev or last is None:
        return f
    from doctor._detectors.missing_final import _span

    old, new = ev["idle_s"], round(now - last / 1e9, 3)
    summary = f["summary"]
    if f["code"] == "missing_final" and isinstance(old, int | float):
        summary = summary.replace(
            f"no progress for {_span(old)}", f"no progress for {_span(new)}", 1
        )
    return {**f, "summary": summary, "evidence": {**ev, "idle_s": new}}


def _kept_at_clock(kept: KeptFindings, now: float) -> KeptFindings:
    """Kept findings at ``now``: those with an age parsed, brought to the clock and their
    text patched where it changed (written anew when the patch does not apply)."""
    changed: dict[int, tuple[dict[str, Any], str | None]] = {}
    for i in kept.clocked:
        f = kept.parsed(i)
        g = _finding_at_clock(f, now)
        if g is not f:
            changed[i] = (g, _patched(kept.text(i), f, g))
    return kept.replaced(changed)


def _patched(text: str, old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """``old``'s kept text with the values :func:`_finding_at_clock` changes (the summary,
    the evidence's ``idle_s``) as ``new`` has them; None when it cannot be done exactly."""
    from json.encoder import encode_basestring_ascii

    from doctor._json_out import scalar_text

    pad = "\n" + "  " * (FINDINGS_LEVEL + 1)  # the finding's keys; its evidence's one deeper
    was, now = scalar_text(old["evidence"]["idle_s"]), scalar_text(new["evidence"]["idle_s"])
    if not (isinstance(old["summary"], str) and isinstance(new["summary"], str)):
        return None
    if was is None or now is None:
        return None
    swaps = [
        (f'{pad}  "idle_s": {was}', f'{pad}  "idle_s": {now}'),
        (
            f'{pad}"summary": {encode_basestring_ascii(old["summary"])}',
            f'{pad}"summary": {encode_basestring_ascii(new["summary"])}',
        ),
    ]
    for before, after in swaps:
        # The key's whole line: followed by the next key (",") or the object's end.
        for tail in (",", "\n"):
            if text.count(before + tail) == 1:
                text = text.replace(before + tail, after + tail)
                break
        else:
            return None
    return text
