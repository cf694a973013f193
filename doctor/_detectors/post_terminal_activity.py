"""``post_terminal_activity``: events written after the run (or a native branch) ended.

The end of a run is its last terminal event (``run_completed`` / ``run_failed``, HEAD builds
only; the latest in time over its top-level streams) and the ``timestamp`` of its
``final.json`` (every build; the top-level one it wrote last). Kilroy writes ``final.json``
first, then ``run.tgz``, then ``git_push_*`` events and the terminal event (format doc §1.2,
§2.7, §2.8), so those events are allowed after final.json's timestamp; nothing is allowed
after the last terminal event. More of that terminal bookkeeping writes events: the graph's
declared ``outputs`` are copied after final.json, a missing one reported as a ``warning``
(real run ``graph_outputs``). So every event of a stream between final.json's time and the
terminal event that closes it belongs to the ending, whatever its name. That event is the
run's first terminal event at or after final.json's time in its top-level streams, if it
says final.json's outcome (``run_completed`` for success): a resume's later one, or one in
another stream, closes nothing of this final.json; an event after final.json with no
terminal event after it (older builds) is activity unless it is one of the ``git_push_*``
events. For Kilroy branches (which have no final.json) the run's final.json is the
reference; native branches have their own.

A terminal event earlier than the final.json is an earlier ending's: the final.json, written
after it (``doctor repair`` terminalizing a resume that was killed, ``kilroy attractor stop``),
is the end, and the work between them is the run's (real run ``sigterm_resumed_killed``,
terminalized). A resume that went on past the run's final.json (set aside at ingestion,
:mod:`doctor._superseded`) has not ended: the terminal events before it are not ends.

A resume of a run that had already ended is not activity: ``kilroy attractor resume`` first
materializes the run's inputs again (``input_materialization_*``, ``scope: "resume"``; and runs
the config's ``setup_command_*``), then finds the checkpoint at the exit and returns, writing
nothing else and keeping final.json (real run ``resume_after_success``). Those preamble events
are not counted; whatever work a resume does after them is.

Activity after the end means another writer: an *overlapping resume* (``resume`` keeps the old
final.json until it finishes, so "final.json says fail but progress advances", format doc §7,
§9), a process that never exited, or branch work scheduled after cancellation.
"""

from __future__ import annotations

from typing import Any

from doctor._detectors._context import Context, scope_words
from doctor._layout import TOP_SQL
from doctor._model import Finding, Severity
from doctor._tables import HEARTBEAT_SQL
from doctor._timestamps import iso, parse_iso
from rundoctor.words import plural

__all__ = ["post_terminal_activity"]

_ALLOWED_AFTER_FINAL = ("git_push_start", "git_push_ok", "git_push_failed", "run_completed",
                        "run_failed")  # fmt: skip
# What a resume writes before it reads the checkpoint (format doc §2.7): no stage work.
_RESUME_PREAMBLE_SQL = (
    "(starts_with(e.event, 'input_materialization_') OR starts_with(e.event, 'setup_command_'))"
)

# The run's last terminal event: the latest in time over its top-level streams (seq orders a
# stream, not streams: a resume of a restarted run ends in the base directory, after the
# restart-N's own end, real run loop_restart_sigterm_resumed), the last in its stream on a tie.
# A terminal event before a resume that went on past the run's final.json ($resumed, $at:
# RunDocuments.resumed_ns) is the ending it resumed from: the run has not ended since.
_LAST_TERMINAL_SQL = f"""
    SELECT run_id, scope, seq, event, ts FROM progress_events p
    WHERE {TOP_SQL} AND event IN ('run_completed', 'run_failed')
      AND NOT EXISTS (SELECT 1 FROM (SELECT unnest($resumed::VARCHAR[]) AS r,
                                            unnest($at::BIGINT[]) AS ns) x
                      WHERE x.r = p.run_id AND epoch_ns(p.ts) < x.ns)
    QUALIFY row_number() OVER (PARTITION BY run_id ORDER BY ts DESC NULLS LAST, seq DESC) = 1"""
_E_TOP_SQL = TOP_SQL.replace("scope", "e.scope")
# $runs/$scopes/$finals/$statuses: each scope's reference final.json timestamp (epoch ns, NULL
# if none) and status.
_SQL = f"""
WITH refs AS (
    SELECT unnest($runs) AS run_id, unnest($scopes) AS scope, unnest($finals) AS final_ns,
           unnest($statuses) AS final_status
),
terminal AS ({_LAST_TERMINAL_SQL}),
-- The terminal event that closes final.json: the run's first at or after its time, in any
-- top-level scope (a resume's later one in another scope closes nothing of this final.json),
-- and only if it says the same outcome.
closing AS (
    SELECT e.run_id, e.scope, e.seq, e.event, r.final_status
    FROM events e JOIN refs r ON r.run_id = e.run_id AND r.scope = e.scope
    WHERE e.event IN ('run_completed', 'run_failed') AND {_E_TOP_SQL} AND r.final_ns IS NOT NULL
      AND epoch_ns(e.ts) >= r.final_ns
    QUALIFY row_number() OVER (PARTITION BY e.run_id ORDER BY e.ts, e.seq) = 1
),
closes AS (
    SELECT run_id, scope, seq FROM closing
    WHERE (event = 'run_completed') = (final_status = 'success')
),
after AS (
    SELECT e.run_id, e.scope, e.seq, e.ts, e.event, e.branch_event, e.node_id
    FROM events e
    LEFT JOIN terminal t ON t.run_id = e.run_id AND t.scope = e.scope
    LEFT JOIN refs r ON r.run_id = e.run_id AND r.scope = e.scope
    LEFT JOIN closes c ON c.run_id = e.run_id AND c.scope = e.scope
    WHERE ((t.seq IS NOT NULL AND e.seq > t.seq
            AND (r.final_ns IS NULL OR epoch_ns(t.ts) >= r.final_ns))
           OR (r.final_ns IS NOT NULL AND epoch_ns(e.ts) > r.final_ns
               AND e.event NOT IN {_ALLOWED_AFTER_FINAL}
               AND NOT coalesce(e.seq < c.seq, false)))
      AND NOT {_RESUME_PREAMBLE_SQL}
)
SELECT run_id, scope, count(*), count(*) FILTER (WHERE NOT {HEARTBEAT_SQL}),
       epoch_ns(arg_min(ts, seq)), arg_min(event, seq), arg_min(node_id, seq)
FROM after GROUP BY ALL ORDER BY run_id, scope
"""
_TERMINAL_SQL = f"SELECT run_id, event, epoch_ns(ts) FROM ({_LAST_TERMINAL_SQL})"


def post_terminal_activity(ctx: Context) -> list[Finding]:
    """Events after the run's terminal event or final.json (overlapping resume, leaked work)."""
    runs, scopes, finals, final_docs = _ends(ctx)
    if not runs:
        return []
    ends = ("run_completed", "run_failed")
    resumed = {r: d.resumed_ns for r, d in ctx.tables.documents.items() if d.resumed_ns}
    since = {"resumed": list(resumed), "at": list(resumed.values())}
    terminal = {r: (e, ts) for r, e, ts in ctx.rows_of(ends, _TERMINAL_SQL, **since)}
    if not terminal and all(ns is None for ns in finals):
        return []  # nothing ended: no event can come after an end (and no scan of them all)
    statuses = [_status(final_docs[key][0]) for key in zip(runs, scopes, strict=True)]
    rows = ctx.tables.sql(_SQL, runs=runs, scopes=scopes, finals=finals, statuses=statuses, **since)

    findings: list[Finding] = []
    for run_id, scope, n, n_progress, first_ns, first_event, first_node in rows:
        facts = ctx.facts.get(run_id)
        alive = facts.get("owner_alive") if facts is not None else None
        ref, final_ns = final_docs.get((run_id, scope), (None, None))
        term_event, term_ns = terminal.get(run_id, (None, None))
        final_status = ref.get("status") if ref is not None else None
        end = (
            f"final.json (status {final_status}, {iso(final_ns)})"
            if final_ns is not None
            else f"the {term_event} event ({iso(term_ns)})"
        )
        where = scope_words(scope)
        severity, advice = _advice(n_progress, alive)
        findings.append(
            Finding(
                code="post_terminal_activity",
                severity=severity,
                summary=(
                    f"{plural(n, 'event')} in {where} came after {end}, the first "
                    f"({first_event}) at "
                    f"{iso(first_ns)}: {advice}"
                ),
                run_id=run_id,
                scope=scope,
                node_id=first_node,
                evidence={
                    "events_after": int(n),
                    "first_after_at": iso(first_ns),
                    "first_after_event": first_event,
                    "progress_events_after": int(n_progress),
                    "final_status": final_status,
                    "final_at": iso(final_ns),
                    "terminal_event": term_event,
                    "terminal_at": iso(term_ns),
                    "owner_alive": alive,
                },
            )
        )
    return findings


def _ends(
    ctx: Context,
) -> tuple[list[str], list[str], list[int | None], dict[tuple[str, str], tuple[Any, int | None]]]:
    """Where each scope ended: parallel lists of run, scope and final.json time (a native
    scope's own final.json, else its run's) for the query, and per scope the final.json
    document and its time."""
    runs: list[str] = []
    scopes: list[str] = []
    finals: list[int | None] = []
    final_docs: dict[tuple[str, str], tuple[Any, int | None]] = {}
    for run_id, docs in ctx.tables.documents.items():
        run_final = docs.final if docs.final is not None and docs.final.ok else None
        for scope, sd in docs.scopes.items():
            own = sd.final if sd.final is not None and sd.final.ok else None
            ref = own if own is not None and docs.layout == "native" else run_final
            ns = parse_iso(ref.get("timestamp")) if ref is not None else None
            runs.append(run_id)
            scopes.append(scope)
            finals.append(ns)
            final_docs[(run_id, scope)] = (ref, ns)
    return runs, scopes, finals, final_docs


def _status(final: Any) -> str | None:
    status = final.get("status") if final is not None else None
    return status if isinstance(status, str) else None


def _advice(n_progress: int, alive: bool | None) -> tuple[Severity, str]:
    """How bad late events are and what to do: progress while the owner lives is an
    overlapping resume; progress after it died is unrecorded work; heartbeats only are a
    leaked ticker."""
    if n_progress and alive:
        return Severity.WARNING, (
            "an overlapping resume (or a second process) is still working, so final.json "
            "is stale until it finishes; make sure only one process owns the run and "
            "diagnose again when it ends"
        )
    if n_progress:
        return Severity.ERROR, (
            "work went on after the run ended (an overlapping resume or branch work "
            "scheduled after cancellation) and nobody recorded its outcome, so final.json "
            "is stale; re-terminalize the run from its event stream"
        )
    return Severity.WARNING, (
        "only heartbeats, from a process or ticker that outlived the run; "
        "they fake liveness, so stop that process"
    )
