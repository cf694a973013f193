"""``torn_artifact``: a progress line or JSON document that does not parse.

One finding per file: its first torn line (``line``, ``byte_offset``, ``detail``) and how many
there are (``count``). A progress stream's *last* line being torn is what a crash in the middle
of an append leaves (Kilroy appends with plain writes): the events before it are intact and
truncating the line repairs the file. A torn line in the middle of a stream, or a torn
``final.json`` / ``checkpoint.json`` / ``status.json`` (all written atomically since the
Feb-2026 hardening), is lost or corrupted data. ``live.json`` is rewritten non-atomically on
every event, so a torn one is expected now and then. Once the run has ended (a final.json:
``succeeded``, ``failed`` or ``canceled``) a torn ``live.json`` anywhere in it is only
``info``: Kilroy reads none of an ended run (``kilroy attractor status`` goes by final.json and
otherwise reads only the run directory's own, never a ``restart-N/`` one), a resume rewrites
the run directory's whole on its first event and never writes a superseded ``restart-N/``
again, and every event it mirrored is in the stream (checked with the real engine on
``loop_restart_resumed``, killed in ``restart-1/`` and resumed to success in the run
directory).

A stream's last line is recognized by counting: every non-blank line of a stream is either an
event or a torn line, so the last torn line is the file's last line when its number equals
the stream's events plus torn lines (Kilroy writes no blank lines; a stream that has some is
read as torn mid-file, the safe side).
"""

from __future__ import annotations

from doctor._detectors._context import Context, needs
from doctor._facts import facts_of
from doctor._model import Finding, Severity, plural
from doctor._ndjson import LINE_COMPLETE, NOT_AN_EVENT, too_long

__all__ = ["torn_artifact"]

#: Document kinds whose corruption loses the run's record (the others are warnings).
_VITAL = ("final", "checkpoint", "status")
#: States of a run that has ended (its final.json says so).
_ENDED = ("succeeded", "failed", "canceled")

_SQL = """
WITH lines AS (
    SELECT run_id, scope, count(*) AS n FROM events GROUP BY ALL
),
kinds AS (
    SELECT run_id, rel, any_value(kind) AS kind FROM files GROUP BY ALL
),
grouped AS (
    SELECT run_id, scope, rel, count(*) AS n, max(line) AS last_line,
           arg_min(line, coalesce(line, 0)) AS line,
           arg_min(byte_offset, coalesce(line, 0)) AS byte_offset,
           arg_min(detail, coalesce(line, 0)) AS detail
    FROM torn GROUP BY ALL
)
SELECT g.run_id, g.scope, g.rel, coalesce(k.kind, 'unknown'), g.n, g.line, g.byte_offset,
       g.detail, g.last_line IS NOT NULL AND g.last_line = coalesce(l.n, 0) + g.n AS ends_file
FROM grouped g
LEFT JOIN kinds k ON k.run_id = g.run_id AND k.rel = g.rel
LEFT JOIN lines l ON l.run_id = g.run_id AND l.scope = g.scope
ORDER BY g.run_id, g.scope, g.rel
"""


# Most runs have nothing torn: then no stream's lines need counting (a pass over them all).
@needs(tables=("torn",))
def torn_artifact(ctx: Context) -> list[Finding]:
    """Progress lines and JSON documents that do not parse, one finding per file."""
    findings: list[Finding] = []
    for run_id, scope, rel, kind, n, line, offset, detail, ends_file in ctx.tables.sql(_SQL):
        stream = kind == "progress"
        last_only = stream and n == 1 and bool(ends_file)
        # A last line a newline ends was written whole (a cut write never ends with its
        # newline): nothing to cut, and `repair --apply` would refuse to.
        whole = last_only and str(detail).endswith(LINE_COMPLETE)
        ended = kind == "live" and facts_of(ctx.facts, run_id).get("_state") in _ENDED
        if stream:
            severity = Severity.WARNING if last_only else Severity.ERROR
        elif ended:
            severity = Severity.INFO
        else:
            severity = Severity.ERROR if kind in _VITAL else Severity.WARNING
        at = f"line {line}" if line is not None else "the file"
        if offset is not None:
            at += f" (byte {offset})"
        advice = _advice(kind, int(n), offset, last_only=last_only, whole=whole, detail=detail)
        if ended:
            advice = (
                "live.json is rewritten non-atomically, and the run has ended: Kilroy reads no "
                "live.json of an ended run and every event is in progress.ndjson, so nothing "
                "is lost and nothing needs repairing"
            )
        findings.append(
            Finding(
                code="torn_artifact",
                severity=severity,
                summary=f"{rel} does not parse at {at}: {detail}; {advice}",
                run_id=run_id,
                scope=scope,
                repair="truncate_torn_line" if last_only and not whole else None,
                evidence={
                    "file": rel,
                    "line": int(line) if line is not None else None,
                    "byte_offset": int(offset) if offset is not None else None,
                    "detail": detail,
                    "count": int(n),
                    "kind": kind,
                    "last_line": bool(last_only),
                },
            )
        )
    return findings


def _advice(
    kind: str, n: int, offset: int | None, *, last_only: bool, whole: bool, detail: object
) -> str:
    """What the finding's summary says to do about its file."""
    if whole and too_long(str(detail)):
        return (
            "the last line was written whole but is over the doctor's line limit, so it "
            "was not read; the events before it are intact, and nothing is to be cut"
        )
    if whole:
        return (
            "the last line was written whole but is no event, so no crash cut it short; "
            "the events before it are intact, and nothing is to be cut"
        )
    if last_only and detail == NOT_AN_EVENT:
        # A whole object, no newline after it: no crash need have cut it, but it is no event,
        # and the engine's next append would run on from it into one line that parses as none.
        return (
            "the last line is a whole JSON object but no event, with no newline after it, so "
            f"the next append would be glued onto it; truncate it at byte {offset} (the "
            "repair keeps a copy), the events before it are intact"
        )
    if last_only:
        return (
            "the last line is a half-written append from a crash; truncate it "
            f"at byte {offset}, the events before it are intact"
        )
    if kind == "progress":
        return (
            f"{plural(n, 'torn line')} inside the stream: events there are lost or corrupted; "
            "keep a copy before repairing and do not trust counts around them"
        )
    if kind == "live":
        return "live.json is rewritten non-atomically; read the last progress line instead"
    if kind in _VITAL:
        return (
            f"the {kind} record is unreadable, so the doctor cannot use it; restore it "
            "from the event stream (or run.tgz)"
        )
    return "the doctor falls back to defaults for what it holds"
