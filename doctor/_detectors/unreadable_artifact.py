"""``unreadable_artifact``: an artifact the doctor could not read as it was written.

A FIFO, device, socket or directory where a run keeps a regular file (``progress.ndjson``,
``final.json``, ``checkpoint.json``, ``run.pid``, …; never opened for reading), a node or
branch directory whose name is not UTF-8, an event line over the per-line budget, a stream or
run whose reading failed, duplicate keys in a JSON document (read last-wins, as the engines
read it: Go's encoding/json in Kilroy, Python's json in the executor), and a ``final.json``
whose status is none of a final's (it parses, but ends nothing) or whose ``timestamp`` is
no readable time (a warning: the rest of it is read), and a stream with events whose ``ts``
is no readable time (a warning: the events are read, without a time). One finding per
artifact.
Whatever the doctor could not read is missing from the diagnosis: the run's state and facts
rest on the rest. Duplicate keys, and files that hold nothing the state depends on, are
warnings; the rest are errors.
"""

from __future__ import annotations

from doctor._detectors._context import Context, needs
from doctor._model import Finding, Severity
from doctor._ndjson import UNTIMED

__all__ = ["unreadable_artifact"]

#: Kinds whose loss changes what the doctor can say about the run.
_VITAL = (
    "progress",
    "final",
    "checkpoint",
    "status",
    "node",
    "attempt",
    "branch",
    "restart",
    "run",
    "lock",
    "pid",
)

_SQL = """
SELECT run_id, scope, rel, kind, detail FROM unreadable
ORDER BY run_id, scope, rel, detail
"""


@needs(tables=("unreadable",))
def unreadable_artifact(ctx: Context) -> list[Finding]:
    """Artifacts the doctor could not read as written: not regular files, undecodable names."""
    findings: list[Finding] = []
    seen: set[tuple[str, str, str]] = set()
    for run_id, scope, rel, kind, detail in ctx.tables.sql(_SQL):
        if (run_id, rel, detail) in seen:
            continue
        seen.add((run_id, rel, detail))
        duplicate = detail.startswith("duplicate key")
        # The events were read, only their times were not: the rest of the run stands.
        untimed = detail.startswith(UNTIMED)
        # final.json was read, only its recorded time was not: its status stands.
        unstamped = kind == "final" and detail.startswith("its timestamp")
        partial = duplicate or untimed or unstamped
        severity = Severity.ERROR if kind in _VITAL and not partial else Severity.WARNING
        if duplicate:
            advice = "fix the writer; until then the doctor reads the last value, as the engines do"
        elif untimed:
            advice = (
                "the doctor read those events without a time; fix the writer's ts "
                "(RFC 3339, e.g. 2026-04-28T10:00:00Z)"
            )
        elif unstamped:
            advice = (
                "the doctor read the rest of final.json; fix the writer's timestamp "
                "(RFC 3339, e.g. 2026-04-28T10:00:00Z)"
            )
        elif kind == "final" and detail.startswith("its status"):
            advice = "the run's state rests on its owner and events instead; fix the writer"
        else:
            advice = (
                "the doctor left it out, so the diagnosis does not account for it; "
                "look at the file and restore it from the run's other records"
            )
        findings.append(
            Finding(
                code="unreadable_artifact",
                severity=severity,
                summary=f"{rel} ({kind}) could not be read as written: {detail}; {advice}",
                run_id=run_id,
                scope=scope,
                evidence={"file": rel, "kind": kind, "detail": detail},
            )
        )
    return findings
