"""Rendered reports are compared, byte for byte, with ``tests/reports/snapshots/*.md``.

To accept a change: delete the snapshot file and run the test again with
``RUNDOCTOR_UPDATE_SNAPSHOTS=1``; it writes the missing file (it never rewrites an existing
one). Review the new file in the diff like any other change.

Inputs are pinned: fixture cases diagnose at their ``expected.json`` clock, the rogue run and
the fleet are rebuilt from their seeds, and the absolute paths of temporary directories are
replaced by ``/runs/...``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from datetime import datetime
from pathlib import Path

import pytest

from doctor import Diagnosis, DoctorConfig, ScanResult, diagnose, load_runs, scan
from fixtures.fleet import build_fleet
from fixtures.rogue import RUN_ID, build_rogue_run
from reports import queue_throughput, render_fleet, render_postmortem

SNAPSHOTS = Path(__file__).parent / "snapshots"
CASES = Path(__file__).resolve().parents[2] / "fixtures" / "cases"
ROGUE_NOW = datetime.fromisoformat("2026-02-11T12:00:00+00:00").timestamp()
FLEET_NOW = 1_780_000_000.0 + 40 * 3600


def assert_snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / f"{name}.md"
    if not path.exists():
        if os.environ.get("RUNDOCTOR_UPDATE_SNAPSHOTS") == "1":
            SNAPSHOTS.mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
            return
        pytest.fail(
            f"no snapshot {path}; run with RUNDOCTOR_UPDATE_SNAPSHOTS=1 to write it, then review it"
        )
    expected = path.read_text(encoding="utf-8")
    assert text == expected, (
        f"{name} differs from {path}; if the change is intended, delete the file and re-run "
        "with RUNDOCTOR_UPDATE_SNAPSHOTS=1"
    )


def _case(name: str) -> Diagnosis:
    spec = json.loads((CASES / name / "expected.json").read_text())
    now = datetime.fromisoformat(spec["now"].replace("Z", "+00:00")).timestamp()
    d = diagnose(spec["run_id"], DoctorConfig(roots=(CASES / name / "run",), now=now))
    return dataclasses.replace(d, path=f"/runs/{d.run_id}")


@pytest.mark.parametrize(
    "case", ["fanout_never_joined", "healthy_tool_run", "branch_status_file_stranded"]
)
def test_postmortem_of_a_fixture_case_matches_its_snapshot(case: str) -> None:
    assert_snapshot(f"postmortem_{case}", render_postmortem(_case(case)))


#: "run(s)", "class(es)": a count written without deciding its noun.
HEDGED = re.compile(r"[A-Za-z]\((?:s|es)\)")
ONE_OF_MANY = re.compile(r"(?<![\d.,])1 (?:findings|scopes|attempts|times|visits|runs|failures)\b")


@pytest.mark.parametrize(
    "case", sorted(p.name for p in CASES.iterdir() if (p / "expected.json").is_file())
)
def test_counts_agree_with_their_nouns_in_summaries_and_postmortems(case: str) -> None:
    d = _case(case)
    texts = [f.summary for f in d.findings] + [render_postmortem(d)]
    for text in texts:
        assert not HEDGED.search(text), HEDGED.findall(text)
        assert not ONE_OF_MANY.search(text), ONE_OF_MANY.findall(text)


def test_postmortem_of_the_rogue_run_matches_its_snapshot(tmp_path: Path) -> None:
    build_rogue_run(tmp_path)
    d = diagnose(RUN_ID, DoctorConfig(roots=(tmp_path,), now=ROGUE_NOW))
    assert_snapshot("postmortem_rogue", render_postmortem(dataclasses.replace(d, path="/runs/x")))


def _fleet(tmp_path: Path) -> ScanResult:
    build_fleet(tmp_path / "fleet", runs=24, events_per_run=48, seed=7)
    result = scan(DoctorConfig(roots=(tmp_path / "fleet",), now=FLEET_NOW))
    return dataclasses.replace(result, roots=("/runs/fleet",))


def test_fleet_report_without_a_queue_matches_its_snapshot(tmp_path: Path) -> None:
    assert_snapshot("fleet_no_queue", render_fleet(_fleet(tmp_path)))


def test_fleet_report_with_a_queue_matches_its_snapshot(tmp_path: Path) -> None:
    tables = load_runs([], keep_raw=False)
    base = 1_780_000_000.0
    events = []
    for i in range(6):
        created = base + i * 3 * 3600
        events += [(f"t-{i}", created, "created"), (f"t-{i}", created + 1800 * (i + 1), "claimed")]
        events.append(
            (f"t-{i}", created + 1800 * (i + 1) + 2400, "completed" if i % 3 else "failed")
        )
    for n, (ticket, at, event) in enumerate(sorted(events, key=lambda e: e[1]), 1):
        tables.con.execute(
            'INSERT INTO ticket_events (id, ticket_id, "at", event) VALUES (?, ?, ?, ?)',
            [n, ticket, at, event],
        )
    for i in range(6):
        tables.con.execute(
            "INSERT INTO tickets (id, title, status, created_at, updated_at) "
            "VALUES (?, ?, ?, 0, 0)",
            [f"t-{i}", f"ticket {i}", "done" if i % 3 else "failed"],
        )
    throughput = queue_throughput(tables.con, now=FLEET_NOW)
    assert_snapshot("fleet_with_queue", render_fleet(_fleet(tmp_path), throughput=throughput))
