"""The rogue run's postmortem carries incident 04's key figures, taken from the diagnosis.

Each figure is looked up in the diagnosis first (so the test fails if the report prints a
number the diagnosis does not hold), then found where the postmortem puts it.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from doctor import Diagnosis, DoctorConfig, Finding, diagnose
from fixtures.rogue import RUN_ID
from reports import render_postmortem

NOW = datetime.fromisoformat("2026-02-11T12:00:00+00:00").timestamp()


@pytest.fixture(scope="module")
def rogue(rogue_run: Path) -> Diagnosis:
    return diagnose(RUN_ID, DoctorConfig(roots=(rogue_run.parent,), now=NOW))


@pytest.fixture(scope="module")
def report(rogue: Diagnosis) -> str:
    return render_postmortem(rogue)


def _finding(d: Diagnosis, code: str, scope: str = "", **match: Any) -> Finding:
    return next(
        f
        for f in d.findings
        if f.code == code
        and f.scope == scope
        and all(f.evidence.get(k) == v or getattr(f, k, None) == v for k, v in match.items())
    )


def _section(report: str, title: str) -> str:
    start = report.index(title)
    nxt = report.find("\n## ", start + len(title))
    return report[start : nxt if nxt != -1 else None]


def test_the_postmortem_has_the_incidents_sections_in_order(report: str) -> None:
    titles = [
        "## Scope",
        "## Executive summary",
        "## Run facts (observed)",
        "## Timeline (UTC)",
        "## Deep dive",
        "### Layer 0: observable incident",
        "### Layer 1: proximate causes by phase",
        "### Layer 2: mechanism failures",
        "## Improvement plan",
        "### P0: must fix first",
        "## Validation matrix (regression tests)",
        "## Appendix: evidence counts",
    ]
    positions = [report.index(t) for t in titles]
    assert positions == sorted(positions)


def test_39166_heartbeats_in_the_appendix(rogue: Diagnosis, report: str) -> None:
    n = rogue.facts["events_by_type"]["stage_heartbeat"]
    assert n == 39_166
    assert "| stage\\_heartbeat | 39,166 |" in _section(report, "## Appendix")


def test_7944_heartbeats_over_2890_s_after_the_fanout_in_layer_0(
    rogue: Diagnosis, report: str
) -> None:
    ev = _finding(rogue, "stale_heartbeat").evidence
    assert (ev["heartbeats_after_last_progress"], round(ev["span_after_last_progress_s"])) == (
        7_944,
        2_890,
    )
    layer0 = report[report.index("### Layer 0") : report.index("### Layer 1")]
    assert "generated **7,944** heartbeats over **2,890 s** after its last progress event" in layer0
    assert "`impl_scaffold` (3,514), `verify_scaffold` (3,470)" in layer0


def test_35_back_edges_in_the_edge_table(rogue: Diagnosis, report: str) -> None:
    loop = _finding(rogue, "retry_loop", from_node="check_scaffold")
    assert loop.evidence["traversals"] == 35
    assert "| check\\_scaffold | impl\\_scaffold | 35 | yes |" in report
    assert "| impl\\_scaffold | verify\\_scaffold | 36 |  |" in report


def test_31_unique_reasons_among_35_failures(rogue: Diagnosis, report: str) -> None:
    ev = _finding(rogue, "fragmented_failure_signatures", node_id="verify_scaffold").evidence
    assert (ev["failures"], ev["unique_reasons"]) == (35, 31)
    assert re.search(
        r"\*\*fragmented\\_failure\\_signatures\*\* \(error, node `verify_scaffold`\): "
        r"verify\\_scaffold failed 35 times with 31 different reasons",
        report,
    )
    assert "`failures` `35` · `unique_reasons` `31` · `canonical_signatures` `2`" in report


def test_89_7_percent_of_the_run_was_before_the_fanout(rogue: Diagnosis, report: str) -> None:
    fanout = next(p for p in rogue.facts["phases"] if p["node"] == "fanout")
    assert round((1 - fanout["share"]) * 100, 1) == 89.7
    facts = _section(report, "## Run facts")
    assert "- Pre-fan-out span: `6h 59m 45s` (~89.7% of the observed runtime" in facts
    assert "span from `2026-02-10T16:21:49.878354873Z`: `48m 10s` (~10.3%)" in facts
    assert "- Wall-clock span in artifacts: `7h 47m 56s`" in facts


def test_attempt_statistics_match_the_incident(report: str) -> None:
    assert "| impl\\_scaffold | 36 | 171 s | 294 s | 1,188 s | 3.62 h |" in report
    assert "| verify\\_scaffold | 36 | 132 s | 230 s | 299 s | 2.25 h |" in report


def test_the_branches_and_the_cost_are_reported(rogue: Diagnosis, report: str) -> None:
    assert rogue.facts["cost_usd"] == pytest.approx(7.88421675)
    assert "Cost reported in artifacts: $7.88421675" in report
    assert "140 heartbeats after progress :crit, done" in report
    assert "last of 140 heartbeats after the last progress event (27m 41s)" in report
    snapshot = _section(report, "## Appendix")
    assert "| parallel/fanout/02-impl\\_combat\\_items | orphaned | fail | 6 | 6 | missing |" in (
        snapshot
    )


def test_the_timeline_has_a_gantt_block_of_phases_attempts_and_branches(report: str) -> None:
    block = report.split("```mermaid\n", 1)[1].split("\n```", 1)[0]
    lines = block.splitlines()
    assert lines[0] == "gantt"
    assert "    dateFormat YYYY-MM-DD HH:mm:ss" in lines
    assert "    section Phases" in lines
    assert "    section 01-impl\\_dungeon" not in lines and "    section 01-impl_dungeon" in lines
    task = re.compile(
        r"^    [^:#;]+ :(?:crit, )?(?:done|active), t\d+, "
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d, \d{4}-\d\d-\d\d \d\d:\d\d:\d\d$"
    )
    tasks = [line for line in lines if " :" in line]
    assert tasks and all(task.match(line) for line in tasks), tasks
    assert "    fanout :active, t9, 2026-02-10 16:21:49, 2026-02-10 17:10:00" in lines


def test_the_plan_puts_terminalization_first_with_its_acceptance_check(report: str) -> None:
    p0 = report[report.index("### P0") : report.index("### P1")]
    assert p0.index("**Guaranteed terminalization**") < p0.index("**Canonical failure signatures**")
    assert f"`doctor diagnose --run-id {RUN_ID} --check missing_final` reports no" in p0


def test_every_number_follows_the_diagnosis_not_the_files(rogue: Diagnosis) -> None:
    facts = dict(rogue.facts)
    facts["events_by_type"] = {**facts["events_by_type"], "stage_heartbeat": 12_345}
    text = render_postmortem(dataclasses.replace(rogue, facts=facts, path=str(Path("/x"))))
    assert "| stage\\_heartbeat | 12,345 |" in text
    assert "39,166" not in text
