"""Run facts (FINDINGS.md, "facts"), for many runs at once: the ``facts`` record of a run.

Every query groups by ``run_id``, so facts for a fleet cost one pass per query, not one per
run. The *top-level stream* of a run is its ``progress.ndjson`` plus those of its
``restart-N/`` directories (one logical run loop); branches are reported under ``branches``.

:func:`compute_facts` works in two phases: the queries, once over every run
(:mod:`doctor._fact_queries`), then per run its :class:`RunFacts` from their rows. What the
record is made of lives beside it: timestamps (:mod:`doctor._timestamps`), the attempts and
which are open (:mod:`doctor._attempts`), the state and ending of a run and its branches
(:mod:`doctor._run_state`) and the outcomes a parent recorded for its branches
(:mod:`doctor._branch_records`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from doctor._attempts import (
    ATTEMPTS_OPEN_SQL,
    LATEST_ATTEMPTS_SQL,
    _attempt_spans,
    _attempt_stats,
    _failure_reasons,
    _phase_rows,
    family_of,
)
from doctor._branch_records import BRANCH_LIFECYCLE_SQL, _DoneRecords, _recorded_state
from doctor._config import DoctorConfig
from doctor._documents import RunDocuments
from doctor._fact_queries import RESUME_ROW, _FleetRows, _query_fleet
from doctor._layout import TOP_SQL, is_top_scope
from doctor._resumed_past import resumed_past
from doctor._run_state import (
    STOP_EVENTS,
    STOP_EVENTS_SQL,
    _branch_state,
    _ending,
    _Liveness,
    run_state,
    signal_stop,
)
from doctor._stage_output import terminal_detail
from doctor._tables import Tables
from doctor._timestamps import _seconds, iso, parse_iso

# Besides its own names, this module re-exports those it defined before they moved to the
# modules above (the constants, family_of, iso, parse_iso, signal_stop): doctor._repair_queue
# imports iso from here. Other code imports them from their homes.
__all__ = [
    "ATTEMPTS_OPEN_SQL",
    "BRANCH_LIFECYCLE_SQL",
    "LATEST_ATTEMPTS_SQL",
    "STOP_EVENTS",
    "STOP_EVENTS_SQL",
    "TOP_SQL",
    "RunFacts",
    "compute_facts",
    "facts_of",
    "family_of",
    "iso",
    "parse_iso",
    "scope_state",
    "signal_stop",
]


class RunFacts(dict[str, Any]):
    """The ``facts`` object of one run, plus private keys (prefixed ``_``) for detectors."""

    def public(self) -> dict[str, Any]:
        return {k: v for k, v in self.items() if not k.startswith("_")}


def compute_facts(
    tables: Tables, config: DoctorConfig, *, skip_absent: bool = True
) -> dict[str, RunFacts]:
    """Facts and state of every run in ``tables`` (recording its event kinds in
    ``tables.event_kinds``). ``skip_absent=False`` runs even the queries over event kinds the
    runs do not have, which return no row (a test compares)."""
    rows = _query_fleet(tables, skip_absent=skip_absent)
    facts = {
        run_id: _run_facts(run_id, docs, rows, config) for run_id, docs in tables.documents.items()
    }
    for run_id, resumes in resumed_past(tables).items():
        facts[run_id]["resumed_past"] = resumes
    return facts


def _run_facts(run_id: str, docs: RunDocuments, rows: _FleetRows, config: DoctorConfig) -> RunFacts:
    """Phase 2, per run: the public facts from its rows, then its ending, state, branches
    and the private keys the detectors read."""
    started, last_event, last_progress, n, starts, ends, node, last_hb = rows.summary.get(
        run_id, (None, None, None, 0, 0, 0, None, None)
    )
    alive, stopped, final = docs.owner_alive(), docs.owner_stopped(), docs.final
    facts = RunFacts(
        started_at=iso(started),
        last_event_at=iso(last_event),
        last_progress_at=iso(last_progress),
        wall_s=_seconds(started, last_event),
        events=int(n),
        events_by_type={e: int(c) for e, c in rows.by_type.get(run_id, [])},
        attempts_started=int(starts),
        attempts_ended=int(ends),
        final_json=final is not None and final.ok and isinstance(final.value, dict),
        owner_pid=docs.pid,
        owner_alive=alive,
        owner_stopped=stopped,
        current_node=_current_node(node, rows.open_attempts.get(run_id, []), docs),
        edges=[{"from": f, "to": t, "count": int(c)} for f, t, c in rows.edges.get(run_id, [])],
        phases=_phase_rows(rows.phases.get(run_id, []), started, last_event),
        branches=[],
        attempt_stats=_attempt_stats(rows.stats.get(run_id, [])),
        cost_usd=docs.cost_usd,
        attempt_spans=_attempt_spans(rows.spans.get(run_id, [])),
        failure_reasons=_failure_reasons(rows.reasons.get(run_id, [])),
    )
    stall = docs.stall_timeout_s or config.stall_timeout_s
    facts["stall_timeout_s"] = stall
    final_status = final.get("status") if facts["final_json"] and final else None
    facts["terminal_reason"], facts["stopped_by"] = _ending(
        final_status,
        final.get("failure_reason") if facts["final_json"] and final else None,
        _own_endings(rows.endings.get(run_id, []), docs.resumed_ns, docs.owner_since),
    )
    facts["_state"] = run_state(
        final_status=final_status,
        owner_alive=alive,
        last_progress=last_progress,
        last_event=last_event,
        stall_timeout_s=stall,
        now=config.now,
        owner_since=docs.owner_since,
        owner_stopped=stopped,
    )
    facts["branches"] = _branch_facts(
        docs, rows, run_id, _Liveness(alive=alive, stall=stall, now=config.now, stopped=stopped)
    )
    facts["_last_heartbeat_at"] = iso(last_hb)
    facts["_open_attempts"] = [a[0] for a in rows.open_attempts.get(run_id, [])]
    # The top-level scope ("" or "restart-N") the run worked in last: its current logs root,
    # where current_node was taken from; None when no top-level event names a node.
    facts["_current_scope"] = rows.current_scope.get(run_id)
    facts["terminal_detail"] = _terminal_detail(docs, rows.reasons.get(run_id, []), facts)
    # For a scan's cache (doctor._scan): the run's times over all its scopes, and each
    # branch's last event (either would be a statement of its own there).
    facts["_activity"] = rows.activity.get(run_id, (None, None, None))
    facts["_branch_last_event"] = {b[0]: b[2] for b in rows.branches.get(run_id, [])}
    if run_id in rows.omitted:
        facts["rows_omitted"] = rows.omitted[run_id]
    return facts


def _terminal_detail(
    docs: RunDocuments, reasons: list[tuple[Any, ...]], facts: RunFacts
) -> list[dict[str, str | None]]:
    """``terminal_detail``: for a bare "exit status 1" ending (or a fan-in's "all parallel
    branches failed"), what the stages that failed so wrote about it."""
    return terminal_detail(
        docs.path,
        facts["terminal_reason"],
        [(r[0], r[1], r[2]) for r in reasons],
        (facts["_current_scope"], facts["current_node"]),
        [b["scope"] for b in facts["branches"] if b["state"] == "failed"],
    )


def _branch_facts(
    docs: RunDocuments, rows: _FleetRows, run_id: str, live: _Liveness
) -> list[dict[str, Any]]:
    """``branches``: each branch scope's state (as its parent recorded it, else its own
    liveness) and its progress."""
    done = _DoneRecords(rows.branch_done.get(run_id, []))
    return [
        {
            "scope": scope,
            "state": _recorded_state(docs, done, scope, last_start, last_status)
            or _branch_state(docs, scope, live, last_progress=lp, last_event=le),
            "final_json": _scope_final_ok(docs, scope),
            "last_progress_at": iso(lp),
            "started_at": iso(first),
            "attempts_started": int(bs),
            "failures": int(bf),
            "last_status": last_status,
        }
        for scope, lp, le, first, bs, bf, last_status, last_start in rows.branches.get(run_id, [])
    ]


def _scope_final_ok(docs: RunDocuments, scope: str) -> bool:
    sd = docs.scopes.get(scope)
    return bool(sd and sd.final and sd.final.ok and isinstance(sd.final.value, dict))


def _current_node(
    node: str | None, open_attempts: list[tuple[Any, ...]], docs: RunDocuments
) -> str | None:
    # An open fan-out is where the run is, whatever its branches or stale heartbeats say.
    # The fan-out is the directory after "parallel" in [restart-N/]parallel/<fan>/[passN/]<NN>-<k>.
    fanouts = {
        parts[i + 1]
        for parts in (s.split("/") for s in docs.scopes)
        for i in range(len(parts) - 1)
        if parts[i] == "parallel"
    }
    for nid, _ts in reversed(open_attempts):
        if nid in fanouts:
            return str(nid)
    return node


def scope_state(facts: RunFacts, scope: str) -> Any:
    """The state of the run's top level (a restart's is the run's), or of one of its
    branches (None for a scope the facts do not list)."""
    if is_top_scope(scope):
        return facts.get("_state")
    return next((b.get("state") for b in facts.get("branches", []) if b["scope"] == scope), None)


def facts_of(facts: Mapping[str, RunFacts], run_id: str) -> RunFacts:
    return facts.get(run_id, RunFacts())


def _own_endings(
    endings: list[tuple[Any, ...]], resumed_ns: int | None, owner_since: int | None = None
) -> list[tuple[Any, ...]]:
    """The run's stops and terminal events (``event, reason, seq, ts_ns``, in time order) of
    the attempt of the run its final.json is about: without those before its last resume.

    ``kilroy attractor resume`` goes on from the run's ending (a signal, the watchdog, a
    breaker) and appends its own after it; a resume that never wrote one (killed, or hung and
    forced to stop) left the run's final.json to ``doctor repair``'s ``terminalize`` or to
    ``kilroy attractor stop``, and the stop before the resume did not end that attempt (real
    run ``watchdog_resumed_repaired``: the watchdog, a resume SIGKILLed in build, then
    terminalized). A resume starts with a :data:`~doctor._fact_queries.RESUME_ROW` row (the
    inputs materialized for the whole run, ``scope: "resume"``; the run's own start, ``scope:
    "run_startup"``, comes before any ending), or took the run's lock (``owner_since``, after
    the ending: the first run's lock comes before its events); ``resumed_ns`` is the first
    stage a resume started past a final.json of Kilroy's (:mod:`doctor._superseded`).

    >>> _own_endings([("run_failed", "stopped by signal terminated", 9, 50)], 60)
    []
    >>> _own_endings([("run_failed", "x", 9, 50)], None)
    [('run_failed', 'x', 9, 50)]
    >>> _own_endings([("stall_watchdog_timeout", None, 4, 40), ("run_failed", "stall", 5, 41),
    ...               ("resume", None, 6, 50)], None)
    []
    >>> _own_endings([("run_failed", "x", 5, 41), ("resume", None, 6, 50),
    ...               ("run_failed", "y", 9, 70)], None)
    [('run_failed', 'y', 9, 70)]
    >>> _own_endings([("run_failed", "x", 5, 41)], None, owner_since=45)
    []
    """
    starts = [x[3] for x in endings if x[0] == RESUME_ROW and x[3] is not None]
    since = max([t for t in (resumed_ns, owner_since, *starts) if t is not None], default=None)
    return [
        x
        for x in endings
        if x[0] != RESUME_ROW and (since is None or x[3] is None or x[3] >= since)
    ]
