"""``doctor._render``: what a person sees, rendered to a 100-column in-memory console."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console

from doctor import DETECTORS, Diagnosis, Finding, ScanResult, Severity
from doctor._detectors import describe
from doctor._render import (
    QUEUE_CHECKS,
    render_checks,
    render_diagnosis,
    render_markdown,
    render_scan,
)

HEALTHY_FACTS: dict[str, Any] = {
    "started_at": "2026-04-28T10:00:00Z",
    "wall_s": 151.0,
    "events": 15,
}


def _finding(code: str, severity: Severity, summary: str, **kw: Any) -> Finding:
    evidence = kw.pop("evidence", {"stale_heartbeats": 3, "stale_nodes": {"build": 3}})
    return Finding(code, severity, summary, evidence, run_id="r1", **kw)


def _diagnosis(*findings: Finding, run_id: str = "r1", state: str = "succeeded") -> Diagnosis:
    return Diagnosis(run_id, "/runs/r1", "kilroy", state, HEALTHY_FACTS, tuple(findings))


def _render(diagnosis: Diagnosis, *, verbose: bool = False) -> str:
    out = io.StringIO()
    render_diagnosis(Console(file=out, width=100), diagnosis, DETECTORS, verbose=verbose)
    return out.getvalue()


def test_a_healthy_diagnosis_says_no_issues_found() -> None:
    text = _render(_diagnosis())
    assert "No issues found" in text
    assert "[✗]" not in text
    assert "r1 (kilroy)" in text


def test_a_failed_run_without_findings_shows_its_terminal_reason_not_no_issues() -> None:
    facts = {**HEALTHY_FACTS, "terminal_reason": "stopped by signal terminated"}
    facts["stopped_by"] = "signal"
    text = _render(Diagnosis("r1", "/runs/r1", "kilroy", "failed", facts, ()))
    assert "terminal reason: stopped by signal terminated (stopped by signal)" in text
    assert "No issues found" not in text
    assert "No findings, but the run failed" in text


def test_a_healthy_diagnosis_folds_the_passing_checks_into_one_line() -> None:
    text = _render(_diagnosis())
    assert f"[✓] {len(DETECTORS) - len(QUEUE_CHECKS)} checks passed (-v lists them)" in text
    for detector in DETECTORS:
        assert f"[✓] {detector.__name__}" not in text


def test_verbose_lists_every_passing_check_by_name_without_its_description() -> None:
    text = _render(_diagnosis(), verbose=True)
    for detector in DETECTORS:
        if detector.__name__ not in QUEUE_CHECKS:
            assert f"[✓] {detector.__name__}: no findings" in text
    assert describe(DETECTORS[0]) not in text  # a description reads like an alarm


def test_an_error_finding_is_a_cross_line_with_its_summary_and_hint() -> None:
    finding = _finding(
        "stale_heartbeat", Severity.ERROR, "3 heartbeats name build after it ended", node_id="build"
    )
    text = _render(_diagnosis(finding))
    assert "[✗] stale_heartbeat" in text
    assert "• error (top level) 3 heartbeats name build after it ended" in text
    assert "→ do not read these heartbeats as liveness" in text
    assert "No issues found" not in text
    assert "Doctor found 1 finding: 1 error." in text


def test_a_critical_finding_in_a_branch_names_the_branch() -> None:
    finding = _finding(
        "missing_final", Severity.CRITICAL, "no final.json", scope="parallel/fan/01-a"
    )
    text = _render(_diagnosis(finding))
    assert "[✗] missing_final" in text
    assert "critical (parallel/fan/01-a) no final.json" in text


def test_a_warning_is_an_exclamation_line_and_an_info_finding_gets_no_hint() -> None:
    warning = _finding("stale_heartbeat", Severity.WARNING, "leaked beats")
    info = _finding("torn_artifact", Severity.INFO, "one torn line")
    text = _render(_diagnosis(warning, info))
    assert "[!] stale_heartbeat" in text
    assert "→ do not read these heartbeats" in text
    assert "a write was cut short" not in text
    assert "Doctor found 2 findings: 1 warning, 1 info." in text


def test_evidence_is_shown_only_when_verbose() -> None:
    finding = _finding("stale_heartbeat", Severity.ERROR, "stale")
    quiet = _render(_diagnosis(finding))
    loud = _render(_diagnosis(finding), verbose=True)
    assert "stale_heartbeats: 3" not in quiet
    assert "stale_heartbeats: 3" in loud
    assert 'stale_nodes: {"build": 3}' in loud


def test_long_evidence_values_are_cut_short() -> None:
    finding = _finding("stale_heartbeat", Severity.ERROR, "stale", evidence={"examples": "x" * 500})
    text = "".join(line.strip() for line in _render(_diagnosis(finding), verbose=True).splitlines())
    assert "x" * 200 in text and "x" * 201 not in text
    assert "x" * 200 + "…" in text or "x" * 200 + " …" in text


def test_markup_in_artifact_text_is_printed_literally() -> None:
    finding = _finding(
        "stale_heartbeat",
        Severity.ERROR,
        "reason [bold]boom[/bold] and [/x] stray",
        scope="parallel/[red]fan[/red]/01-a",
        evidence={"failure_reason": "[link=http://x]click[/link]"},
    )
    text = _render(_diagnosis(finding, run_id="[bold]r1[/bold]"), verbose=True)
    assert "reason [bold]boom[/bold] and [/x] stray" in text
    assert "(parallel/[red]fan[/red]/01-a)" in text
    assert "failure_reason: [link=http://x]click[/link]" in text
    assert "[bold]r1[/bold] (kilroy)" in text


def test_a_finding_whose_code_has_no_detector_is_still_shown() -> None:
    finding = _finding("stale_lease", Severity.ERROR, "ticket T-1 lease expired")
    text = _render(_diagnosis(finding))
    assert "ticket T-1 lease expired" in text
    assert "Doctor found 1 finding: 1 error." in text


def test_markdown_of_a_healthy_diagnosis_says_no_findings() -> None:
    text = render_markdown(_diagnosis())
    assert "| | | | | no findings |" in text


def test_markdown_escapes_markdown_in_artifact_text() -> None:
    finding = _finding("stale_heartbeat", Severity.ERROR, "a | b `c` *d* <e>\nf", node_id="n|1")
    row = next(r for r in render_markdown(_diagnosis(finding)).splitlines() if "stale_" in r)
    assert "a \\| b \\`c\\` \\*d\\* \\<e\\> f" in row
    assert "n\\|1" in row


def test_scan_output_prints_artifact_text_literally() -> None:
    finding = _finding("stale_heartbeat", Severity.ERROR, "[bold]loud[/bold]")
    result = ScanResult(
        roots=("/runs",),
        diagnoses=(_diagnosis(finding, run_id="[i]r1[/i]"),),
        fleet={"runs": 1, "by_state": {"failed": 1}, "events": 15},
        findings=(Finding("idle_gap", Severity.WARNING, "[u]idle[/u]", {}, run_id=None),),
    )
    out = io.StringIO()
    render_scan(Console(file=out, width=200), result, verbose=False)
    text = out.getvalue()
    assert "[i]r1[/i]" in text
    assert "stale_heartbeat: [bold]loud[/bold]" in text
    assert "idle_gap: [u]idle[/u]" in text
    assert "the one run has findings at error or above." in text


def test_checks_prints_one_whole_line_per_detector_even_in_a_narrow_console() -> None:
    out = io.StringIO()
    render_checks(Console(file=out, width=40), DETECTORS)
    lines = out.getvalue().splitlines()
    assert [line.split()[0] for line in lines] == [d.__name__ for d in DETECTORS]


def test_markdown_keeps_a_row_on_one_line_whatever_the_line_endings_in_artifact_text() -> None:
    # CommonMark ends a line at \n, at \r\n and at a bare \r: any of them would break the row.
    finding = _finding("stale_heartbeat", Severity.ERROR, "one\r\ntwo\rthree\nfour")
    text = render_markdown(_diagnosis(finding))
    (row,) = [r for r in text.split("\n") if "stale_heartbeat" in r]
    assert "\r" not in row
    assert row.endswith(" |")
    assert "one two three four" in row


def test_lines_that_are_json_but_no_events_are_not_called_a_crash() -> None:
    # Before: a stream of another log format ({"timestamp", "type"} lines) was torn with the
    # hint "a write was cut short: the run crashed mid-write"; no crash cut those lines.
    other = _finding(
        "torn_artifact",
        Severity.ERROR,
        "progress.ndjson does not parse at line 1",
        evidence={"file": "progress.ndjson", "detail": "a JSON object without an event name"},
    )
    text = _render(_diagnosis(other, state="orphaned"))
    assert "→ the first torn line is a JSON object but no event: another log format" in text
    assert "crashed mid-write" not in text
    cut = _finding(
        "torn_artifact",
        Severity.ERROR,
        "progress.ndjson does not parse at line 3",
        evidence={"file": "progress.ndjson", "detail": "not JSON: Unterminated string"},
    )
    assert "→ a write was cut short" in _render(_diagnosis(other, cut, state="orphaned"))


def test_a_whole_line_over_the_limit_is_not_called_a_cut_write() -> None:
    whole = _finding(
        "torn_artifact",
        Severity.WARNING,
        "progress.ndjson does not parse at line 9",
        evidence={
            "file": "progress.ndjson",
            "detail": "line of 16777300 bytes exceeds the 16777216-byte limit; it ends with a "
            "newline: complete, not cut short",
        },
    )
    text = _render(_diagnosis(whole, state="orphaned"))
    assert "→ a line was written whole but is over the doctor's 16 MiB line limit" in text
    assert "crashed mid-write" not in text


@pytest.mark.parametrize(
    ("bad", "runs", "says"),
    [
        (0, 1, "the one run has no findings at error or above."),
        (0, 2, "none of the 2 runs has findings at error or above."),
        (1, 2, "1 of 2 runs has findings at error or above."),
        (2, 2, "all 2 runs have findings at error or above."),
    ],
)
def test_the_scan_summary_counts_runs_in_words_that_agree(bad: int, runs: int, says: str) -> None:
    # It printed "0 of 1 run have findings at error or above".
    finding = _finding("stale_heartbeat", Severity.ERROR, "stale")
    diagnoses = tuple(
        _diagnosis(*([finding] if i < bad else []), run_id=f"r{i}") for i in range(runs)
    )
    result = ScanResult(roots=("/runs",), diagnoses=diagnoses, fleet={"runs": runs}, findings=())
    out = io.StringIO()
    render_scan(Console(file=out, width=100), result, verbose=False)
    assert out.getvalue().splitlines()[-1].endswith(says), out.getvalue()
