"""Rendering for people: the only module of the doctor that knows how output looks.

Library functions return data; the CLI hands it here with a ``rich.console.Console``. Tests
render to ``Console(file=io.StringIO(), width=100)``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from doctor._detectors import Detector
from doctor._detectors._context import QUEUE_CHECKS
from doctor._model import Diagnosis, Finding, Severity
from doctor._model import plural as _plural
from doctor._ndjson import LINE_COMPLETE, MAX_LINE_BYTES, NOT_AN_EVENT, too_long
from doctor._notes import (
    STOPPED_OWNER_HINT,
    continue_command,
    resumed_past_lines,
    terminal_detail_lines,
)
from executor.console import fit_columns, print_one_line_table
from rundoctor.markdown import REASON_SHOWN, flatten
from rundoctor.markdown import md as _md
from rundoctor.terminal import printable, shell_quote
from rundoctor.words import noun

if TYPE_CHECKING:
    from doctor._config import DoctorConfig
    from doctor._diagnose import ScanResult

__all__ = [
    "QUEUE_CHECKS",
    "render_checks",
    "render_diagnosis",
    "render_markdown",
    "render_scan",
    "run_command",
]

_MARK = {
    None: "[green][✓][/green]",
    Severity.INFO: "[green][✓][/green]",
    Severity.WARNING: "[yellow][!][/yellow]",
    Severity.ERROR: "[red][✗][/red]",
    Severity.CRITICAL: "[bold red][✗][/bold red]",
}
_HINTS = {
    "stale_heartbeat": "do not read these heartbeats as liveness; check the owner process and "
    "final.json",
    "missing_final": "inspect the owner process and stop it, so that the run terminalizes",
    "unjoined_fanout": "the fan-out never joined: inspect its branches and cancel or rejoin them",
    "status_contract_mismatch": "the work may be done: read the stranded status file",
    "fragmented_failure_signatures": "these failures are one class: break the loop on the "
    "canonical signature",
    "retry_loop": "a back edge was taken again and again: cap its visits or fix what the check "
    "rejects",
    "deterministic_retry_loop": "the same failure repeats: stop retrying and fix the cause",
    "lost_failure_reason": "the real cause is upstream: read the upstream reason",
    "checkpoint_drift": "do not resume from this checkpoint without checking it",
    "telemetry_divergence": "live.json/checkpoint are stale: trust progress.ndjson",
    "idle_gap": "nothing ran while work was pending: check the executor and its schedule",
    "swallowed_error": "the failure text carries nothing: capture exit code, stderr and command",
    "torn_artifact": "a write was cut short: the run crashed mid-write",
    "post_terminal_activity": "something kept writing after the end: look for a second process",
}
#: What ``doctor repair`` does for a finding's ``repair``, for the hint that offers it.
_REPAIR_WORDS = {
    "terminalize": "terminalizing the run (final.json with status fail)",
    "ingest_status": "copying the status file the finding names into place",
    "truncate_torn_line": "cutting the torn last line",
}


def _text(value: str) -> str:
    """Artifact text for the console: markup escaped, control characters made visible."""
    return escape(printable(value))


def run_command(command: str, diagnosis: Diagnosis, *extra: str) -> str:
    """A command line for this run that can be pasted: the real run id and its root, quoted.

    >>> d = Diagnosis("r 1", "/runs/r 1", "native", "failed", {})
    >>> run_command("repair", d, "--apply")
    "doctor repair --run-id 'r 1' --root /runs --apply"
    """
    root = str(PurePath(diagnosis.path).parent)
    words = ["doctor", command, "--run-id", diagnosis.run_id, "--root", root, *extra]
    return " ".join(shell_quote(w) for w in words)


def _hint(
    code: str, found: Sequence[Finding], diagnosis: Diagnosis, config: DoctorConfig | None = None
) -> tuple[str, str | None]:
    """The hint under a failing check, and the command it offers (a repair when a finding
    has one). With ``config`` (the diagnosis's), a terminalize the repair would still refuse
    says when it will not."""
    pid = diagnosis.facts.get("owner_pid")
    if code in _OWNER_CODES and diagnosis.facts.get("owner_stopped") and pid is not None:
        return STOPPED_OWNER_HINT, continue_command(int(pid))
    stops = [str(f.evidence["stop_command"]) for f in found if f.evidence.get("stop_command")]
    if code == "missing_final" and stops:
        return (
            "inspect the owner, then stop it with this, and Kilroy writes its final.json:",
            stops[0],
        )
    if code == "unjoined_fanout" and diagnosis.facts.get("owner_alive") is True:
        return _LIVE_FANOUT_HINT, None
    repairs = sorted({f.repair for f in found if f.repair in _REPAIR_WORDS})
    if repairs:
        what = " and ".join(_REPAIR_WORDS[r] for r in repairs)
        wait = _terminalize_wait(diagnosis, config) if "terminalize" in repairs else None
        when = (
            ""
            if wait is None
            else f" once its {wait[2]} is older than its {wait[0]:.0f} s stall timeout "
            f"(in {_duration(wait[1])}; until then the repair refuses)"
        )
        return f"plan {what} with this{when}, then run it again with --apply:", run_command(
            "repair", diagnosis
        )
    if code == "missing_final" and all(_damaged_final(f) for f in found):
        return _DAMAGED_FINAL_HINT, None
    details = [str(f.evidence.get("detail")) for f in found] if code == "torn_artifact" else []
    if details and all(d.removesuffix(f"; {LINE_COMPLETE}") == NOT_AN_EVENT for d in details):
        return _NOT_EVENTS_HINT, None
    if details and all(d.endswith(LINE_COMPLETE) for d in details):
        return (_WHOLE_LONG_LINE_HINT if all(too_long(d) for d in details) else _WHOLE_HINT), None
    return _HINTS.get(code, ""), None


def _terminalize_wait(
    diagnosis: Diagnosis, config: DoctorConfig | None
) -> tuple[float, float, str] | None:
    """(stall timeout, seconds left, what dates the run) while ``doctor repair`` would refuse
    to terminalize a run whose owner is dead because it last wrote within the stall timeout;
    None otherwise. The plan's own rule (:func:`doctor._repair_plan.terminalize_clock`), so
    the hint and the plan cannot disagree.

    >>> from doctor import DoctorConfig
    >>> d = Diagnosis("r", "/runs/r", "kilroy", "orphaned", {"owner_alive": False,
    ...     "stall_timeout_s": 600.0, "last_event_at": "2026-01-01T00:00:00Z"})
    >>> [_terminalize_wait(d, DoctorConfig(now=t)) for t in (1767225614.0, 1767226214.0)]
    [(600.0, 586.0, 'last event'), None]
    """
    from doctor._repair_plan import terminalize_clock  # the repair's modules, when a hint asks

    if config is None or diagnosis.facts.get("owner_alive") is not False:
        return None
    clock = terminalize_clock(diagnosis.facts, Path(diagnosis.path), config)
    what = "start (it wrote no event)" if clock.from_start else "last event"
    return None if clock.left_s is None else (clock.stall_timeout_s, clock.left_s, what)


def _damaged_final(f: Finding) -> bool:
    """A run's missing_final whose final.json is there but records no end, its owner dead:
    no repair is planned, since the doctor never overwrites a final.json."""
    ev = f.evidence
    return (
        f.repair is None and bool(ev.get("final_json_present")) and ev.get("owner_alive") is False
    )


#: The checks whose hint is about the run's owner: when it is stopped, continuing it is the
#: step (terminalizing or resuming the run of a live owner would race it once it goes on).
_OWNER_CODES = ("missing_final", "unjoined_fanout")


#: The hint under unjoined_fanout when the owner is alive and running: it may still join.
_LIVE_FANOUT_HINT = (
    "the owner is alive, so the join may still come: inspect the owner and the branches it "
    "waits for before collecting their results"
)

#: The hint under missing_final when the final.json is there but records no end.
_DAMAGED_FINAL_HINT = (
    "the final.json there records no end and the doctor never overwrites one: move it aside "
    "(keep it), then `doctor repair` plans the terminalize"
)


#: The hint when every torn line is JSON without an event name: no crash cut those short.
_NOT_EVENTS_HINT = (
    "the first torn line is a JSON object but no event: another log format, or a writer "
    'that leaves out the event name (each line needs an "event" and a "ts")'
)


#: The hint when every torn line was written whole (a newline ends it), not all overlong.
_WHOLE_HINT = (
    "a line was written whole (a newline ends it) but is no event: no write was cut short; "
    "look at what wrote it"
)


#: The hint when every torn line is a whole line over the doctor's line limit.
_WHOLE_LONG_LINE_HINT = (
    f"a line was written whole but is over the doctor's {MAX_LINE_BYTES >> 20} MiB line "
    "limit: no write was cut short; look at what writes lines that long"
)


def _duration(seconds: float | None) -> str:
    """Days, hours, minutes (seconds only under an hour).

    >>> [_duration(s) for s in (None, 42, 151, 7380, 24146820)]
    ['?', '42s', '2m 31s', '2h 03m', '279d 11h 27m']
    """
    if seconds is None:
        return "?"
    s = int(seconds)
    d, rem = divmod(s, 86400)
    h, rem = divmod(rem, 3600)
    m, sec = divmod(rem, 60)
    if d:
        return f"{d}d {h}h {m:02d}m"
    if h:
        return f"{h}h {m:02d}m"
    return f"{m}m {sec:02d}s" if m else f"{sec}s"


def _evidence_lines(evidence: dict[str, Any], limit: int = 200) -> list[str]:
    lines = []
    for key, value in evidence.items():
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        if len(text) > limit:
            text = text[:limit] + " …"
        lines.append(f"{key}: {text}")
    return lines


def _hanging(console: Console, lead: str, text: str) -> None:
    """``lead`` then ``text``; wrapped lines of ``text`` start under its first character.

    No padding is added at line ends; with a soft-wrapping console (output is not a
    terminal) the whole is one line.
    """
    head, body = Text.from_markup(lead), Text.from_markup(text)
    indent = head.cell_len + 1
    if console.soft_wrap or console.width < indent + 20:
        console.print(Text.assemble(head, " ", body), soft_wrap=True)
        return
    for i, line in enumerate(body.wrap(console, console.width - indent)):
        line.rstrip()
        console.print(Text.assemble(head if i == 0 else " " * (indent - 1), " ", line))


def _command_line(console: Console, indent: str, command: str) -> None:
    """A command on a line of its own, never broken by a newline, so it can be pasted."""
    console.print(f"{indent}[bold]{_text(command)}[/bold]", soft_wrap=True)


def render_diagnosis(
    console: Console,
    diagnosis: Diagnosis,
    detectors: Sequence[Detector],
    *,
    verbose: bool,
    config: DoctorConfig | None = None,
) -> None:
    """``flutter doctor``-style: failing checks first (worst first) with a runnable hint,
    passing checks folded into one line (``verbose`` lists them and shows evidence), checks
    that do not apply to one run directory (the queue's) said so in one line. ``config`` (the
    diagnosis's: its clock and stall timeout) says when a repair the hint offers will stop
    refusing."""
    _diagnosis_head(console, diagnosis)
    by_code: dict[str, list[Finding]] = {}
    for f in diagnosis.findings:
        by_code.setdefault(f.code, []).append(f)
    _failing_checks(console, diagnosis, detectors, by_code, verbose=verbose, config=config)
    _passing_checks(console, detectors, by_code, verbose=verbose)
    _diagnosis_total(console, diagnosis, verbose=verbose)


def _diagnosis_head(console: Console, diagnosis: Diagnosis) -> None:
    """The run's id, layout, state, start, wall time and events; its terminal reason."""
    facts = diagnosis.facts
    _hanging(
        console,
        f"[bold]{_text(diagnosis.run_id)}[/bold]",
        f"({diagnosis.layout}) · state [bold]{diagnosis.state}[/bold] · started "
        f"{facts.get('started_at') or '?'} · wall {_duration(facts.get('wall_s'))} · "
        f"{_plural(facts.get('events') or 0, 'event')}",
    )
    reason = facts.get("terminal_reason")
    if reason:
        stop = facts.get("stopped_by")
        console.print(
            f"terminal reason: [bold]{_text(flatten(reason, REASON_SHOWN))}[/bold]"
            + (f" [dim](stopped by {_text(str(stop))})[/dim]" if stop else "")
        )
        for detail in terminal_detail_lines(facts):
            console.print(f"  {_text(detail)}")
    for line in resumed_past_lines(facts):
        console.print(f"[yellow]{_text(line)}[/yellow]")


def _failing_checks(
    console: Console,
    diagnosis: Diagnosis,
    detectors: Sequence[Detector],
    by_code: dict[str, list[Finding]],
    *,
    verbose: bool,
    config: DoctorConfig | None = None,
) -> None:
    """Each check with findings, worst first: its findings, then a hint and a command."""
    order = {d.__name__: i for i, d in enumerate(detectors)}
    # Failing checks worst first; codes that name no listed detector are shown, not dropped.
    failing = sorted(
        by_code, key=lambda c: (-max(f.severity for f in by_code[c]), order.get(c, len(order)))
    )
    for code in failing:
        found = by_code[code]
        worst = max(f.severity for f in found)
        console.print(f"{_MARK[worst]} {_text(code)}")
        for f in found:
            where = f"[dim]({_text(f.scope or 'top level')})[/dim]"
            _hanging(
                console,
                "    •",
                f"[{_style(f.severity)}]{f.severity.label}[/] {where} {_text(f.summary)}",
            )
            if verbose:
                for line in _evidence_lines(dict(f.evidence)):
                    _hanging(console, "       ", f"[dim]{_text(line)}[/dim]")
        if worst >= Severity.WARNING:
            advice, command = _hint(code, found, diagnosis, config)
            if advice:
                _hanging(console, "    [cyan]→[/cyan]", f"[cyan]{_text(advice)}[/cyan]")
            if command:
                _command_line(console, "      ", command)


def _passing_checks(
    console: Console,
    detectors: Sequence[Detector],
    by_code: dict[str, list[Finding]],
    *,
    verbose: bool,
) -> None:
    """The checks without findings folded into one line, and the queue's checks apart."""
    passed = [d.__name__ for d in detectors if d.__name__ not in by_code]
    apart = [name for name in passed if name in QUEUE_CHECKS]
    passed = [name for name in passed if name not in QUEUE_CHECKS]
    if passed:
        if verbose:
            for name in passed:
                console.print(f"{_MARK[None]} {name}: no findings")
        else:
            others = "other " if by_code else ""
            console.print(
                f"{_MARK[None]} {_plural(len(passed), others + 'check')} passed (-v lists them)"
            )
    if apart:
        listed = f": {', '.join(apart)}" if verbose else ""
        console.print(
            f"[dim][-] {_plural(len(apart), 'queue check')} {noun(len(apart), 'does', 'do')} "
            f"not apply here{listed} "
            "(a scan with --db runs them)[/dim]",
            soft_wrap=True,
        )


def _diagnosis_total(console: Console, diagnosis: Diagnosis, *, verbose: bool) -> None:
    """The closing line: no issues, or the findings by severity and where the evidence is."""
    counts = diagnosis.counts()
    total = sum(counts.values())
    if total == 0 and diagnosis.state in ("failed", "canceled"):
        console.print(
            f"[yellow]![/yellow] No findings, but the run {diagnosis.state}: see its terminal "
            "reason above."
        )
    elif total == 0 and diagnosis.facts.get("resumed_past"):
        console.print(
            f"[yellow]![/yellow] No findings, but the run {diagnosis.state} on a route a "
            "resume took past an interrupted visit: see above."
        )
    elif total == 0:
        console.print("[green]•[/green] No issues found.")
    else:
        parts = ", ".join(f"{n} {label}" for label, n in reversed(counts.items()) if n)
        mark = "[red]✗[/red]" if diagnosis.exit_code else "[yellow]![/yellow]"
        console.print(f"{mark} Doctor found {_plural(total, 'finding')}: {parts}.")
        if not verbose:
            console.print("  The evidence of each finding:")
            _command_line(console, "    ", run_command("diagnose", diagnosis, "-v"))


def _style(sev: Severity) -> str:
    return {
        Severity.INFO: "dim",
        Severity.WARNING: "yellow",
        Severity.ERROR: "red",
        Severity.CRITICAL: "bold red",
    }[sev]


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
        f"{f.get('attempts_started')}/{f.get('attempts_ended')}, "
        f"final.json: {'present' if f.get('final_json') else 'missing'}",
    ]
    if f.get("terminal_reason"):  # as the human output prints it, when the run says why
        stop = f" (stopped by {_md(str(f['stopped_by']))})" if f.get("stopped_by") else ""
        reason = _md(f["terminal_reason"], REASON_SHOWN)
        lines.append(f"- terminal reason: **{reason}**{stop}")
        lines += [f"  - {_md(detail, 2000)}" for detail in terminal_detail_lines(f)]
    lines += [f"- {_md(line, 2000)}" for line in resumed_past_lines(f)]
    lines += [
        "",
        "| severity | code | scope | node | summary |",
        "|---|---|---|---|---|",
    ]
    for x in diagnosis.findings:
        lines.append(
            f"| {x.severity.label} | {x.code} | {_md(x.scope or '(top)', 300)} | "
            f"{_md(x.node_id or '', 200)} | {_md(x.summary, 2000)} |"
        )
    if not diagnosis.findings:
        lines.append("| | | | | no findings |")
    return "\n".join(lines) + "\n"


def _started(started_at: Any) -> str:
    """``2026-04-28 10:00`` from an ISO time (what a person scans a column for)."""
    if not isinstance(started_at, str) or len(started_at) < 16:
        return "?"
    return started_at[:10] + " " + started_at[11:16]


def _age(started_at: Any, now: float | None) -> str:
    if now is None or not isinstance(started_at, str):
        return "?"
    try:
        ts = datetime.fromisoformat(started_at.replace("Z", "+00:00"))
    except ValueError:
        return "?"
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return " ".join(_duration(max(0.0, now - ts.timestamp())).split()[:2])


def _severity_key(d: Diagnosis) -> tuple[int, int, int, int, str]:
    c = d.counts()
    worst = -1 if d.worst is None else int(d.worst)
    return (-worst, -c["critical"], -c["error"], -c["warning"], d.run_id)


_COUNTS = ("crit", "err", "warn", "info")
#: Scan columns in order; the optional ones go first when the width runs short.
_SCAN_COLUMNS = ("run", "state", "started", "age", "wall", *_COUNTS, "worst finding")
_OPTIONAL = ("started", "wall", "age")


def render_scan(
    console: Console,
    result: ScanResult,
    *,
    verbose: bool,
    limit: int | None = None,
    now: float | None = None,
) -> None:
    """One line per run, worst first, whatever the width: ids whole, the worst finding cut
    with an ellipsis; ``limit`` rows at most; a per-code rollup; the fleet's findings."""
    runs = sorted(result.diagnoses, key=_severity_key)
    shown = runs if not limit else runs[:limit]
    rows = [_scan_row(d, now) for d in shown]
    columns = fit_columns(
        rows, _SCAN_COLUMNS, console.width, free=["worst finding"], optional=_OPTIONAL
    )
    print_one_line_table(console, _plural(len(runs), "run"), rows, columns, right=_COUNTS)
    if len(shown) < len(runs):
        console.print(
            f"… {_plural(len(runs) - len(shown), 'more run')} (worst first; --limit 0 shows all)"
        )
    _scan_rollup(console, runs, result)
    _scan_fleet(console, result, verbose=verbose)


def _scan_row(d: Diagnosis, now: float | None) -> dict[str, str]:
    """One run's row of the scan table."""
    c = d.counts()
    worst = d.findings[0] if d.findings else None
    started = d.facts.get("started_at")
    return {
        "run": d.run_id,
        "state": d.state,
        "started": _started(started),
        "age": _age(started, now),
        "wall": " ".join(_duration(d.facts.get("wall_s")).split()[:2]),
        "crit": str(c["critical"] or ""),
        "err": str(c["error"] or ""),
        "warn": str(c["warning"] or ""),
        "info": str(c["info"] or ""),
        "worst finding": ""
        if worst is None
        else " ".join(f"{worst.code}: {worst.summary}".split()),
    }


def _scan_rollup(console: Console, runs: list[Diagnosis], result: ScanResult) -> None:
    """How many findings of each code, worst code first."""
    codes: dict[str, list[Finding]] = {}
    for f in [f for d in runs for f in d.findings] + list(result.findings):
        codes.setdefault(f.code, []).append(f)
    if codes:
        rollup = sorted(
            codes.items(), key=lambda kv: (-max(f.severity for f in kv[1]), -len(kv[1]), kv[0])
        )
        console.print(
            "by code: " + " · ".join(f"{code} {len(found)}" for code, found in rollup),
            soft_wrap=True,
        )


#: Fleet findings of one code shown in the terminal; a queue of 200,000 tickets may have tens
#: of thousands (``scan --json`` has every one).
FLEET_SHOWN_PER_CODE = 20


def _scan_fleet(console: Console, result: ScanResult, *, verbose: bool) -> None:
    """The fleet's runs and events, its own findings, and the closing verdict."""
    fleet = result.fleet
    states = ", ".join(f"{n} {s}" for s, n in sorted(fleet.get("by_state", {}).items()))
    console.print(
        f"fleet: {_plural(int(fleet.get('runs', 0)), 'run')} ({states or 'none'}), "
        f"{_plural(int(fleet.get('events', 0)), 'event')}"
    )
    for note in fleet.get("root_notes", ()):  # runs the scan did not read, and why
        _hanging(console, f"  {_MARK[Severity.WARNING]}", f"roots: {_text(str(note))}")
    for note in fleet.get("queue_notes", ()):  # this host's clock and the queue server's
        _hanging(console, f"  {_MARK[Severity.WARNING]}", f"queue clock: {_text(str(note))}")
    for note in fleet.get("cache_notes", ()):  # the cache's trouble: the runs are diagnosed
        _hanging(console, f"  {_MARK[Severity.WARNING]}", f"cache: {_text(str(note))}")
    shown: dict[str, int] = {}
    for f in result.findings:
        shown[f.code] = shown.get(f.code, 0) + 1
        if shown[f.code] > FLEET_SHOWN_PER_CODE:
            continue
        _hanging(console, f"  {_MARK[f.severity]}", f"{f.code}: {_text(f.summary)}")
        if verbose:
            for line in _evidence_lines(dict(f.evidence)):
                _hanging(console, "       ", f"[dim]{_text(line)}[/dim]")
    for code, n in shown.items():
        if n > FLEET_SHOWN_PER_CODE:
            more = n - FLEET_SHOWN_PER_CODE
            console.print(f"  … and {more} more {code} (scan --json lists them all)")
    bad = sum(1 for d in result.diagnoses if d.exit_code)
    fleet_bad = sum(1 for f in result.findings if f.severity >= Severity.ERROR)
    mark = "[red]✗[/red]" if result.exit_code else "[green]•[/green]"
    n = len(result.diagnoses)
    console.print(
        f"{mark} {_runs_at_error(bad, n)}"
        + (
            f"; {_plural(fleet_bad, 'fleet or queue finding')} at error or above."
            if fleet_bad
            else "."
        )
    )


def _runs_at_error(bad: int, n: int) -> str:
    """How many of the ``n`` runs have findings at error or above, in words that agree.

    >>> for bad, n in ((0, 0), (0, 1), (1, 1), (0, 3), (1, 3), (2, 3), (3, 3)):
    ...     print(_runs_at_error(bad, n))
    no run has findings at error or above
    the one run has no findings at error or above
    the one run has findings at error or above
    none of the 3 runs has findings at error or above
    1 of 3 runs has findings at error or above
    2 of 3 runs have findings at error or above
    all 3 runs have findings at error or above
    """
    what = "findings at error or above"
    if n == 0:
        return f"no run has {what}"
    if n == 1:
        return f"the one run has {what if bad else 'no ' + what}"
    if bad == 0:
        return f"none of the {n:,} runs has {what}"
    if bad == n:
        return f"all {n:,} runs have {what}"
    return f"{bad:,} of {n:,} runs {'has' if bad == 1 else 'have'} {what}"


def render_checks(console: Console, detectors: Sequence[Detector]) -> None:
    """One line per detector, never wrapped, so ``doctor checks | grep`` sees whole lines
    (:func:`~doctor._detectors._catalog.check_lines`, which the command writes without Rich)."""
    from doctor._detectors._catalog import check_lines

    for line in check_lines(detectors):
        console.print(escape(line), soft_wrap=True)
