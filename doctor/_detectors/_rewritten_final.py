"""``final_stream_mismatch``'s second situation: a final.json written after the run's own end.

Kilroy writes a run's final.json, then its terminal event (``run_completed``/``run_failed``,
format doc §2.8): the final.json of the run's own ending is older than its terminal event. A
``kilroy attractor resume`` that fails before its engine starts writes a minimal final.json
of its own (``fail``, its reason, format doc §3.1) and no event, replacing the one the run
ended with. It always does so for a checkpoint without ``git_commit_sha``
(``checkpoint missing git_commit_sha``: a run in no-git mode, or one a resume already worked
on, :mod:`doctor._resumable`): a run that had *succeeded* then holds a final.json saying
``fail`` (real run ``no_git_succeeded_resumed``: no-git mode, ``run_completed``, then a
resume), and one that had failed holds the refusal instead of its own reason
(``agent_dotai_status_resumed`` resumed again, ``tests/doctor/test_repair_real_kilroy.py``).

Reported when Kilroy's final.json (not ``doctor repair``'s) says ``fail``, the run's last
top-level event (heartbeats aside) is a terminal event older than that final.json, and that
event records another ending: ``run_completed``, or a ``run_failed`` with another reason. The
state stays what final.json says (FINDINGS.md); the finding says how the run itself ended.
Runs of builds before 2026-04-27 write no terminal event and are not judged.
"""

from __future__ import annotations

from typing import Any

from doctor._detectors._context import Context
from doctor._layout import TOP_SQL
from doctor._model import Finding, Severity
from doctor._resumable import NO_COMMIT
from doctor._tables import HEARTBEAT_SQL
from doctor._timestamps import iso, parse_iso

__all__ = ["failed_finals", "rewritten_final"]

# Per run: its last top-level event (heartbeats aside), with the reason and status it records.
_LAST_SQL = f"""
SELECT run_id, arg_max(event, (ts, seq)), arg_max(reason, (ts, seq)),
       arg_max(status, (ts, seq)), epoch_ns(max(ts))
FROM progress_events
WHERE run_id IN (SELECT unnest($runs::VARCHAR[])) AND {TOP_SQL} AND NOT ({HEARTBEAT_SQL})
GROUP BY run_id
"""


def failed_finals(ctx: Context) -> dict[str, tuple[int, str | None]]:
    """Per Kilroy run whose final.json Kilroy wrote and says ``fail``: its time (epoch ns) and
    its ``failure_reason``."""
    out: dict[str, tuple[int, str | None]] = {}
    for run_id, docs in ctx.tables.documents.items():
        final = docs.final
        if docs.layout != "kilroy" or final is None or not final.ok:
            continue
        if final.get("status") != "fail" or final.get("repaired_by") is not None:
            continue
        at, reason = parse_iso(final.get("timestamp")), final.get("failure_reason")
        if at is not None:
            out[run_id] = (at, reason if isinstance(reason, str) else None)
    return out


def rewritten_final(ctx: Context) -> list[Finding]:
    """Runs whose ``fail`` final.json was written after their own terminal event, which
    recorded another ending."""
    finals = failed_finals(ctx)
    if not finals:
        return []
    findings = []
    for run_id, event, reason, status, at in ctx.tables.sql(_LAST_SQL, runs=list(finals)):
        final_at, final_reason = finals[run_id]
        if event not in ("run_completed", "run_failed") or at is None or int(at) >= final_at:
            continue  # not ended by its own terminal event, or that final.json is its own
        if event == "run_failed" and reason == final_reason:
            continue
        findings.append(_finding(run_id, (final_at, final_reason), event, reason, status, at))
    return findings


#: What to add when the refusal is one every later resume meets too.
_AGAIN = {
    NO_COMMIT: ", and do not resume it again: Kilroy refuses every resume of a checkpoint "
    "without git_commit_sha",
}


def _finding(
    run_id: str,
    final: tuple[int, str | None],
    event: str,
    reason: Any,
    status: Any,
    at: Any,
) -> Finding:
    final_at, final_reason = final
    completed = event == "run_completed"
    again = _AGAIN.get(final_reason or "", "")
    ended = (
        f"completed ({event}, status {status or 'success'!r})"
        if completed
        else f"failed with {reason!r} ({event})"
    )
    return Finding(
        code="final_stream_mismatch",
        severity=Severity.ERROR if completed else Severity.WARNING,
        summary=(
            f"final.json says fail ({final_reason!r}, written {iso(final_at)}), but the run "
            f"had {ended} at {iso(int(at))} and wrote nothing after: a later `kilroy "
            "attractor resume` that failed before its engine started replaced the run's own "
            f"final.json with its refusal; judge the run by that ending{again}"
        ),
        run_id=run_id,
        scope="",
        node_id=None,
        evidence={
            "final_status": "fail",
            "final_at": iso(final_at),
            "final_reason": final_reason,
            "last_progress_event": event,
            "last_progress_at": iso(int(at)),
            "stream_status": status if completed else "fail",
            "stream_failure_reason": None if completed else reason,
        },
    )
