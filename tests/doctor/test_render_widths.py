"""What a person sees at 80 and 160 columns and in a pipe (issue 13): tables that degrade
gracefully, the flutter-doctor shape of ``diagnose``, hints that can be pasted."""

from __future__ import annotations

import dataclasses
import io
import shlex
from typing import Any

import pytest
from rich.console import Console

from doctor import DETECTORS, Diagnosis, Finding, ScanResult, Severity
from doctor._render import QUEUE_CHECKS, render_diagnosis, render_markdown, render_scan
from executor.console import PIPE_WIDTH

ULID = "01KH3DN4STSZ3MVKB58YY6RE57"
LONG = "the run has no final.json and its owner pid 4242 is dead: " + "word " * 40 + "END"
NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def _finding(code: str, severity: Severity, summary: str, run_id: str, **kw: Any) -> Finding:
    return Finding(code, severity, summary, {"n": 1}, run_id=run_id, **kw)


def _run(run_id: str, *findings: Finding, **facts: Any) -> Diagnosis:
    base = {"started_at": "2026-04-28T10:00:00Z", "wall_s": 151.0, "events": 15}
    return Diagnosis(
        run_id, f"/srv/runs root/{run_id}", "native", "failed", base | facts, tuple(findings)
    )


def _scan(*runs: Diagnosis, findings: tuple[Finding, ...] = ()) -> ScanResult:
    fleet = {"runs": len(runs), "by_state": {"failed": len(runs)}, "events": 15 * len(runs)}
    return ScanResult(("/srv/runs root",), runs, fleet, findings)


def _scan_text(result: ScanResult, width: int, **kw: Any) -> str:
    out = io.StringIO()
    render_scan(Console(file=out, width=width), result, verbose=False, now=NOW, **kw)
    return out.getvalue()


def _fleet() -> ScanResult:
    return _scan(
        _run("aaa-healthy"),
        _run(ULID, _finding("missing_final", Severity.CRITICAL, LONG, ULID)),
        _run("mid-run", _finding("retry_loop", Severity.WARNING, "a loop", "mid-run")),
    )


# -- scan -------------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [80, 160])
def test_each_run_is_one_line_with_its_id_whole_at(width: int) -> None:
    text = _scan_text(_fleet(), width)
    rows = [line for line in text.splitlines() if line.split()[:1] in ([ULID], ["mid-run"])]
    assert len(rows) == 2, text  # one line each: nothing wrapped
    assert all(len(line) <= width for line in text.splitlines() if "by code" not in line)
    (ulid_row,) = [r for r in rows if ULID in r]
    assert ulid_row.rstrip().endswith("…")  # the worst finding is cut with an ellipsis
    assert "END" not in text


def test_at_80_columns_no_header_is_cut_even_with_a_ulid_and_a_succeeded_run() -> None:
    # `make demo`'s scan showed "worst findi…": a ULID (26), "succeeded" (9) and the four
    # counts left the worst finding 12 cells at three cells between columns.
    result = _scan(
        _run(ULID, _finding("missing_final", Severity.CRITICAL, LONG, ULID)),
        dataclasses.replace(_run("loop01"), state="succeeded"),
    )
    lines = _scan_text(result, 80).splitlines()
    header = next(line for line in lines if line.startswith("run"))
    assert header.split() == ["run", "state", "crit", "err", "warn", "info", "worst", "finding"]
    assert "…" not in header
    assert all(len(line) <= 80 for line in lines), lines
    (row,) = [line for line in lines if line.startswith(ULID)]
    assert row.rstrip().endswith("…")  # the value is cut, not the header


def test_on_a_terminal_narrower_than_the_ids_the_ids_and_headers_stay_whole() -> None:
    # COLUMNS=40 (a split pane): Rich squeezed every column, so the table read
    # `fanou…   orph…   …     …      worst fin…`: ids cut, whole columns headed `…`.
    text = _scan_text(_fleet(), 40)
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("run"))
    assert header.split()[:6] == ["run", "state", "crit", "err", "warn", "info"], text
    assert "…" not in header
    rows = [line.split() for line in lines if line.split()[:1] in ([ULID], ["mid-run"])]
    assert [r[:2] for r in rows] == [[ULID, "failed"], ["mid-run", "failed"]], text


def test_rows_are_sorted_by_severity_not_by_name() -> None:
    text = _scan_text(_fleet(), 160)
    order = [w for line in text.splitlines() for w in line.split()[:1]]
    assert order.index(ULID) < order.index("mid-run") < order.index("aaa-healthy")


def test_at_160_columns_the_table_shows_started_age_and_wall() -> None:
    text = _scan_text(_fleet(), 160)
    header = next(line for line in text.splitlines() if line.startswith("run"))
    for column in ("state", "started", "age", "wall", "worst finding"):
        assert column in header
    assert "2026-04-28 10:00" in text and "261d 22h" in text and "2m 31s" in text


def test_limit_shows_the_worst_runs_and_says_how_many_are_left_out() -> None:
    text = _scan_text(_fleet(), 100, limit=1)
    assert ULID in text and "mid-run" not in text
    assert "… 2 more runs (worst first; --limit 0 shows all)" in text


def test_a_rollup_line_counts_the_findings_per_code_worst_first() -> None:
    idle = Finding("idle_gap", Severity.WARNING, "quiet", {}, run_id=None)
    result = _scan(*_fleet().diagnoses, findings=(idle,))
    text = _scan_text(result, 100)
    assert "by code: missing_final 1 · idle_gap 1 · retry_loop 1" in text


def test_piped_the_table_is_never_hard_wrapped_and_has_no_trailing_padding() -> None:
    out = io.StringIO()
    console = Console(file=out, width=PIPE_WIDTH, soft_wrap=True)
    render_scan(console, _fleet(), verbose=False, now=NOW)
    text = out.getvalue()
    assert LONG in text  # whole: grep finds it
    assert all(line == line.rstrip() for line in text.splitlines())
    # The rule under the header is the header's length, not the longest row's.
    lines = text.splitlines()
    (rule,) = [i for i, line in enumerate(lines) if line and set(line) == {"─"}]
    assert len(lines[rule]) == len(lines[rule - 1]) < len(LONG)


# -- diagnose --------------------------------------------------------------------------------


def _diagnose_text(diagnosis: Diagnosis, width: int, *, verbose: bool = False) -> str:
    out = io.StringIO()
    render_diagnosis(Console(file=out, width=width), diagnosis, DETECTORS, verbose=verbose)
    return out.getvalue()


def _broken() -> Diagnosis:
    return _run(
        ULID,
        _finding("stale_heartbeat", Severity.WARNING, "leaked beats", ULID),
        _finding("missing_final", Severity.CRITICAL, LONG, ULID, repair="terminalize"),
        wall_s=24146820.0,
    )


@pytest.mark.parametrize("width", [80, 160])
def test_failing_checks_come_first_worst_first_and_passing_ones_fold(width: int) -> None:
    text = _diagnose_text(_broken(), width)
    lines = text.splitlines()
    marks = [line for line in lines if line.startswith("[")]
    assert marks[0] == "[✗] missing_final" and marks[1] == "[!] stale_heartbeat"
    # Every check but the two failing ones and the queue checks passed.
    assert (
        f"[✓] {len(DETECTORS) - 2 - len(QUEUE_CHECKS)} other checks passed (-v lists them)" in lines
    )
    assert "idle_gap" not in text  # a passing check is not described
    assert any(f"{len(QUEUE_CHECKS)} queue checks do not apply" in line for line in lines)


def test_one_queue_check_selected_does_not_apply_in_the_singular() -> None:
    # `doctor diagnose --check stale_lease` printed "1 queue check do not apply here".
    out = io.StringIO()
    (stale_lease,) = [d for d in DETECTORS if d.__name__ == "stale_lease"]
    render_diagnosis(Console(file=out, width=100), _run(ULID), [stale_lease], verbose=False)
    assert "[-] 1 queue check does not apply here (a scan with --db runs them)" in out.getvalue()


def test_a_long_summary_wraps_under_its_own_first_character() -> None:
    lines = _diagnose_text(_broken(), 80).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("    • critical"))
    assert lines[start + 1].startswith("      ") and not lines[start + 1].startswith("       ")
    # Only a command is longer: it is never broken, so that it can be pasted.
    assert all(len(line) <= 80 for line in lines if not line.lstrip().startswith("doctor "))


def _commands(text: str) -> list[list[str]]:
    return [shlex.split(line) for line in text.splitlines() if line.lstrip().startswith("doctor ")]


@pytest.mark.parametrize("width", [80, 160])
def test_every_command_printed_can_be_pasted_with_the_real_run_id_and_root(width: int) -> None:
    commands = _commands(_diagnose_text(_broken(), width))
    assert ["doctor", "repair", "--run-id", ULID, "--root", "/srv/runs root"] in commands
    assert ["doctor", "diagnose", "--run-id", ULID, "--root", "/srv/runs root", "-v"] in commands
    assert all("ID" not in c and "…" not in " ".join(c) for c in commands)


def test_no_repair_is_offered_for_a_finding_that_has_none() -> None:
    finding = _finding("missing_final", Severity.ERROR, "branch without final.json", ULID)
    text = _diagnose_text(_run(ULID, finding), 160)
    assert "doctor repair" not in text


def test_the_retry_loop_hint_does_not_claim_the_loop_dominates() -> None:
    finding = _finding("retry_loop", Severity.ERROR, "(0% of the run)", ULID)
    assert "dominates" not in _diagnose_text(_run(ULID, finding), 160)


def test_durations_read_in_days_hours_and_minutes() -> None:
    text = _diagnose_text(_broken(), 160)
    assert "wall 279d 11h 27m" in text and "6707h" not in text


def test_counts_agree_with_their_nouns() -> None:
    text = _diagnose_text(_run("r1", events=1), 160)
    assert "· 1 event" in text and "1 events" not in text
    scan = _scan_text(_scan(_run("r1", _finding("retry_loop", Severity.ERROR, "x", "r1"))), 160)
    assert "1 run" in scan and "1 runs" not in scan and "the one run has findings" in scan


def test_markdown_says_whether_final_json_is_present() -> None:
    text = render_markdown(_run("r1", final_json=False))
    assert "final.json: missing" in text and "False" not in text
    assert "final.json: present" in render_markdown(_run("r1", final_json=True))
