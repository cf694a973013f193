"""Rendering for people: the only module of the doctor that knows how output looks.

Library functions return data; the CLI hands it here with a ``rich.console.Console``. Tests
render to ``Console(file=io.StringIO(), width=100)``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from doctor._detectors import Detector, describe
from doctor._diagnose import ScanResult
from doctor._model import Diagnosis, Finding, Severity

__all__ = ["render_checks", "render_diagnosis", "render_markdown", "render_scan"]

_MARK = {
    None: "[green][✓][/green]",
    Severity.INFO: "[green][✓][/green]",
    Severity.WARNING: "[yellow][!][/yellow]",
    Severity.ERROR: "[red][✗][/red]",
    Severity.CRITICAL: "[bold red][✗][/bold red]",
}
_HINTS = {
    "stale_heartbeat": "do not read these heartbeats as liveness; check the owner and final.json",
    "missing_final": "if the owner is gone, `doctor repair --run-id ID` can terminalize the run",
    "unjoined_fanout": "the fan-out never joined: inspect its branches and cancel or rejoin them",
    "status_contract_mismatch": "the work may be done: ingest the stranded status file",
    "fragmented_failure_signatures": "these failures are one class: break the loop on the "
    "canonical signature",
    "retry_loop": "a back edge dominates the run: cap visits or fix what the check rejects",
    "deterministic_retry_loop": "the same failure repeats: stop retrying and fix the cause",
    "lost_failure_reason": "the real cause is upstream: read the upstream reason",
    "checkpoint_drift": "do not resume from this checkpoint without checking it",
    "telemetry_divergence": "live.json/checkpoint are stale: trust progress.ndjson",
    "idle_gap": "nothing ran while work was pending: check the executor and its schedule",
    "swallowed_error": "the failure text carries nothing: capture exit code, stderr and command",
    "torn_artifact": "a write was cut short: the run crashed mid-write",
    "post_terminal_activity": "something kept writing after the end: look for a second process",
}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(seconds)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h {m:02d}m" if h else f"{m}m {sec:02d}s"


def _evidence_lines(evidence: dict[str, Any], limit: int = 200) -> list[str]:
    lines = []
    for key, value in evidence.items():
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        if len(text) > limit:
            text = text[:limit] + " …"
        lines.append(f"{key}: {text}")
    return lines


def render_diagnosis(
    console: Console, diagnosis: Diagnosis, detectors: Sequence[Detector], *, verbose: bool
) -> None:
    """``flutter doctor``-style: one line per check, hints, evidence under ``verbose``."""
    facts = diagnosis.facts
    console.print(
        f"[bold]{escape(diagnosis.run_id)}[/bold] ({diagnosis.layout}) · "
        f"state [bold]{diagnosis.state}[/bold] · started {facts.get('started_at') or '?'} · "
        f"wall {_duration(facts.get('wall_s'))} · {facts.get('events', 0)} events"
    )
    reason = facts.get("terminal_reason")
    if reason:
        stop = facts.get("stopped_by")
        console.print(
            f"terminal reason: [bold]{escape(str(reason))}[/bold]"
            + (f" [dim](stopped by {escape(str(stop))})[/dim]" if stop else "")
        )
    by_code: dict[str, list[Finding]] = {}
    for f in diagnosis.findings:
        by_code.setdefault(f.code, []).append(f)
    # Findings whose code names no listed detector (a detector may report several codes)
    # are shown after the checks rather than dropped.
    rows: list[tuple[str, Detector | None]] = [(d.__name__, d) for d in detectors]
    rows += [(c, None) for c in by_code if c not in {d.__name__ for d in detectors}]
    for code, detector in rows:
        found = by_code.pop(code, [])
        worst = max((f.severity for f in found), default=None)
        label = f"{code}: {describe(detector)}" if not found and detector else code
        console.print(f"{_MARK[worst]} {escape(label)}")
        for f in found:
            where = f" [dim]({escape(f.scope or 'top level')})[/dim]"
            console.print(
                f"    • [{_style(f.severity)}]{f.severity.label}[/]{where} {escape(f.summary)}"
            )
            if verbose:
                for line in _evidence_lines(dict(f.evidence)):
                    console.print(f"        [dim]{escape(line)}[/dim]")
        if found and worst is not None and worst >= Severity.WARNING and code in _HINTS:
            console.print(f"    [cyan]→ {escape(_HINTS[code])}[/cyan]")
    counts = diagnosis.counts()
    total = sum(counts.values())
    if total == 0 and diagnosis.state in ("failed", "canceled"):
        console.print(
            f"[yellow]![/yellow] No findings, but the run {diagnosis.state}: see its terminal "
            "reason above."
        )
    elif total == 0:
        console.print("[green]•[/green] No issues found.")
    else:
        parts = ", ".join(f"{n} {label}" for label, n in reversed(counts.items()) if n)
        mark = "[red]✗[/red]" if diagnosis.exit_code else "[yellow]![/yellow]"
        console.print(f"{mark} Doctor found {total} finding{'s' * (total != 1)}: {parts}.")


def _style(sev: Severity) -> str:
    return {
        Severity.INFO: "dim",
        Severity.WARNING: "yellow",
        Severity.ERROR: "red",
        Severity.CRITICAL: "bold red",
    }[sev]


def _md(text: Any) -> str:
    """Escape artifact text for a Markdown table cell."""
    s = str(text).replace("\\", "\\\\").replace("|", "\\|")
    # CommonMark ends a line at \n, \r\n and a bare \r: any of them would end the row.
    s = s.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")
    for ch in "`*_[]<>":
        s = s.replace(ch, "\\" + ch)
    return s


def render_markdown(diagnosis: Diagnosis) -> str:
    """A compact Markdown diagnosis (the full postmortem is ``doctor report``)."""
    f = diagnosis.facts
    lines = [
        f"# Diagnosis of run {_md(diagnosis.run_id)}",
        "",
        f"- state: **{diagnosis.state}** ({diagnosis.layout} layout)",
        f"- started: {f.get('started_at')}, last event: {f.get('last_event_at')}, "
        f"last progress: {f.get('last_progress_at')}",
        f"- events: {f.get('events')}, attempts started/ended: "
        f"{f.get('attempts_started')}/{f.get('attempts_ended')}, final.json: {f.get('final_json')}",
        "",
        "| severity | code | scope | node | summary |",
        "|---|---|---|---|---|",
    ]
    for x in diagnosis.findings:
        lines.append(
            f"| {x.severity.label} | {x.code} | {_md(x.scope or '(top)')} | "
            f"{_md(x.node_id or '')} | {_md(x.summary)} |"
        )
    if not diagnosis.findings:
        lines.append("| | | | | no findings |")
    return "\n".join(lines) + "\n"


def render_scan(console: Console, result: ScanResult, *, verbose: bool) -> None:
    table = Table(title=f"{len(result.diagnoses)} runs", expand=False)
    for col in ("run", "state", "crit", "err", "warn", "info", "worst finding"):
        table.add_column(col, overflow="fold")
    for d in result.diagnoses:
        c = d.counts()
        worst = d.findings[0] if d.findings else None
        table.add_row(
            escape(d.run_id),
            d.state,
            str(c["critical"] or ""),
            str(c["error"] or ""),
            str(c["warning"] or ""),
            str(c["info"] or ""),
            "" if worst is None else escape(f"{worst.code}: {worst.summary}")[:120],
        )
    console.print(table)
    fleet = result.fleet
    states = ", ".join(f"{n} {s}" for s, n in sorted(fleet.get("by_state", {}).items()))
    console.print(
        f"fleet: {fleet.get('runs', 0)} runs ({states or 'none'}), {fleet.get('events', 0)} events"
    )
    for f in result.findings:
        console.print(f"  {_MARK[f.severity]} {f.code}: {escape(f.summary)}")
        if verbose:
            for line in _evidence_lines(dict(f.evidence)):
                console.print(f"        [dim]{escape(line)}[/dim]")
    bad = sum(1 for d in result.diagnoses if d.exit_code)
    fleet_bad = sum(1 for f in result.findings if f.severity >= Severity.ERROR)
    mark = "[red]✗[/red]" if result.exit_code else "[green]•[/green]"
    console.print(
        f"{mark} {bad} of {len(result.diagnoses)} runs have findings at error or above"
        + (f"; {fleet_bad} fleet or queue finding(s) at error or above." if fleet_bad else ".")
    )


def render_checks(console: Console, detectors: Sequence[Detector]) -> None:
    """One line per detector, never wrapped, so ``doctor checks | grep`` sees whole lines."""
    width = max(len(d.__name__) for d in detectors)
    for d in detectors:
        console.print(f"{d.__name__:<{width}}  {escape(describe(d))}", soft_wrap=True)
