"""``final_stream_mismatch``: a final.json that the run's own stream denies.

Two situations; the second, a ``fail`` final.json written after the run's own terminal event
by a resume that failed before its engine started, is in
:mod:`doctor._detectors._rewritten_final`. The first, a final.json saying ``success``:

The process that writes a ``success`` final.json has ended every attempt it ran, and it writes
its ``run_completed`` after it (format doc §2.8). A run directory whose top-level streams, up
to that final.json's ``timestamp``, still have an attempt open, or end in a ``run_failed``
with nothing after it, did not get there by its own work: another process wrote the file.
``kilroy attractor resume`` of a *copy* of the run directory does that: it works in the copy,
but saves the run's outcome to the checkpoint's ``extra.base_logs_root`` too, which a copy's
checkpoint still names the original by (docs/repair.md, "A resume of a copy"; real runs of the
engine: SIGKILL or SIGTERM in ``build``, the directory copied, the copy resumed to success).
The original then holds a final.json that says ``success`` over a stream that stops in
``build``'s open attempt, or in the signal's ``run_failed``.

The run's state stays ``succeeded`` (FINDINGS.md: a valid final.json decides it, and Kilroy
did record that outcome for the run), but not plainly: reported as an ``error``, since this
directory does not record how the run succeeded, and what it holds (stage logs, status files,
worktree, checkpoint) is the killed process's. The final.json ``doctor repair`` wrote
(``repaired_by``) is not Kilroy's and is not judged here; nor a final.json that does not say
``success`` (a signal, ``kilroy attractor stop`` and a resume that fails before its engine
starts all write a ``fail`` over open attempts).
"""

from __future__ import annotations

from typing import Any

from doctor._detectors._context import Context, needs
from doctor._detectors._rewritten_final import failed_finals, rewritten_final
from doctor._layout import TOP_SQL
from doctor._model import Finding, Severity
from doctor._tables import HEARTBEAT_SQL
from doctor._timestamps import iso, parse_iso

__all__ = ["final_stream_mismatch"]


# Per run (``f``: the run and its final.json's time): the attempts the run's streams stop in
# before that time, the nodes whose latest start in their scope (any scope) has no end and
# came no earlier than every attempt start or end and terminal event of the run's top-level
# scopes up to that time: its run loop did nothing after them. A resume that went on did, in
# place (its nodes' new attempts) or as branches (a concurrent region killed and resumed runs
# as a fan-out, whose top-level attempt follows: real run ``concurrent_killed_resumed``); a
# branch's attempt is followed by its fan-out's end once the fan-out joined or cancelled it,
# but not by its siblings' ends (a copy of a run killed mid-fan-out, resumed). And the last
# top-level progress event before that time with its reason.
_SQL = f"""
WITH f AS (SELECT unnest($runs::VARCHAR[]) AS run_id, unnest($ats::BIGINT[]) AS at_ns),
went_on AS (
    SELECT f.run_id, max(t.ts) AS ts FROM f JOIN (
        SELECT run_id, start_ts AS ts FROM attempts WHERE {TOP_SQL}
        UNION ALL
        SELECT run_id, end_ts FROM attempts WHERE {TOP_SQL} AND end_ts IS NOT NULL
        UNION ALL
        SELECT run_id, ts FROM progress_events
        WHERE {TOP_SQL} AND event IN ('run_completed', 'run_failed')
    ) t ON t.run_id = f.run_id AND epoch_ns(t.ts) <= f.at_ns
    GROUP BY ALL
),
open AS (
    SELECT a.run_id, list(a.node_id ORDER BY a.start_ts, a.node_id) AS nodes
    FROM (SELECT * FROM attempts QUALIFY row_number() OVER (
              PARTITION BY run_id, scope, node_id ORDER BY start_seq DESC) = 1) a
    JOIN f USING (run_id) LEFT JOIN went_on w USING (run_id)
    WHERE a.end_seq IS NULL AND epoch_ns(a.start_ts) <= f.at_ns
      AND (w.ts IS NULL OR a.start_ts >= w.ts)
    GROUP BY ALL
),
last AS (
    SELECT e.run_id, arg_max(e.event, (e.ts, e.seq)) AS event,
           arg_max(e.reason, (e.ts, e.seq)) AS reason, epoch_ns(max(e.ts)) AS at
    FROM progress_events e JOIN f USING (run_id)
    WHERE {TOP_SQL} AND NOT ({HEARTBEAT_SQL}) AND epoch_ns(e.ts) <= f.at_ns
    GROUP BY ALL
)
SELECT f.run_id, coalesce(o.nodes, []), l.event, l.reason, l.at
FROM f LEFT JOIN open o USING (run_id) LEFT JOIN last l USING (run_id)
WHERE o.nodes IS NOT NULL OR l.event = 'run_failed'
ORDER BY f.run_id
"""


def _success_at(ctx: Context, run_id: str) -> int | None:
    """The time of the run's final.json when Kilroy wrote it and it says success, else None."""
    final = ctx.documents(run_id).final
    if final is None or not final.ok or final.get("status") != "success":
        return None
    if final.get("repaired_by") is not None:
        return None
    return parse_iso(final.get("timestamp"))


def _successes(ctx: Context) -> dict[str, int]:
    out: dict[str, int] = {}
    for run_id in ctx.tables.documents:
        at = _success_at(ctx, run_id)
        if at is not None:
            out[run_id] = at
    return out


def _judged(ctx: Context) -> bool:
    return bool(_successes(ctx)) or bool(failed_finals(ctx))


@needs(when=_judged)
def final_stream_mismatch(ctx: Context) -> list[Finding]:
    """A final.json its run's stream denies: success over unfinished work, or a later fail."""
    runs = _successes(ctx)
    rows = ctx.tables.sql(_SQL, runs=list(runs), ats=list(runs.values())) if runs else []
    denied = [_finding(runs[run_id], run_id, list(nodes), event, reason, at)
              for run_id, nodes, event, reason, at in rows]  # fmt: skip
    return [*denied, *rewritten_final(ctx)]


def _finding(
    final_ns: int, run_id: str, nodes: list[str], event: Any, reason: Any, at: Any
) -> Finding:
    if nodes:
        denial = f"stops with {', '.join(nodes)} still open and no run_completed"
    else:
        denial = f"ends in run_failed ({reason!r})" if reason else "ends in run_failed"
    return Finding(
        code="final_stream_mismatch",
        severity=Severity.ERROR,
        summary=(
            f"final.json says success (written {iso(final_ns)}), but the run's own stream "
            f"{denial}: another process wrote that outcome here, such as a resume of a copy "
            "of this directory (Kilroy saves final.json to the directory the copy's checkpoint "
            "names); this directory does not record how the run succeeded, so judge it by "
            "the directory that ran it, or point a copy's checkpoint at the copy before "
            "resuming it (docs/repair.md)"
        ),
        run_id=run_id,
        scope="",
        node_id=nodes[-1] if nodes else None,
        evidence={
            "final_status": "success",
            "final_at": iso(final_ns),
            "open_attempts": nodes,
            "last_progress_event": event,
            "last_progress_at": iso(int(at)) if at is not None else None,
            "stream_failure_reason": reason if event == "run_failed" else None,
        },
    )
