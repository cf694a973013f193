"""The postmortem of a huge run (issue 15): its timeline is bounded, and a run over the
resource budget is one line and exit 2, never a crash (exit 70) nor a traceback.

Runs are real files read by the real DuckDB; "huge" comes from the budget made tiny through
the documented environment variables (``RUNDOCTOR_MEMORY_LIMIT``, ``RUNDOCTOR_SPILL_LIMIT``)
or the config, as ``tests/doctor/test_budget.py`` does, not from gigabytes on disk.
"""

from __future__ import annotations

import json
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import doctor._timeline as timeline_module
from doctor import (
    MAX_TIMELINE_BARS,
    DoctorConfig,
    OverBudget,
    diagnose_path,
    run_timeline,
)
from reports import write_postmortem
from tests.doctor.test_budget import TINY, _run, doctor

NODES = 1_500  # three attempts each: 4,500 attempts, over MAX_TIMELINE_BARS


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, result  # an input error, not 70 (a crash)
    (line,) = result.stderr.splitlines()
    return line


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run of 15,000 nodes (19 MB): within the default budget, over :data:`TINY`."""
    root = tmp_path_factory.mktemp("big")
    _run(root, "big", 15_000)
    return root


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    _run(root, "wide", NODES)
    return root


def test_the_timeline_keeps_the_first_and_last_attempts_and_counts_the_rest(wide: Path) -> None:
    timeline = run_timeline(diagnose_path(wide / "wide", DoctorConfig()))
    attempts = NODES * 3
    half = MAX_TIMELINE_BARS // 2
    assert len(timeline.bars) == MAX_TIMELINE_BARS
    assert timeline.bars_omitted == attempts - MAX_TIMELINE_BARS
    # In start order: attempts are node by node, three each.
    kept = [(b.node_id, b.visit) for b in timeline.bars]
    every = [(f"node_{n:07d}", a) for n in range(NODES) for a in (1, 2, 3)]
    assert kept == every[:half] + every[-half:]
    # One lane per node drawn, and one "omitted" stretch over the starts left out.
    assert len(timeline.lanes) == len({b.node_id for b in timeline.bars})
    (omitted,) = [s for s in timeline.stretches if s.kind == "omitted"]
    assert omitted.detail.startswith(f"{attempts - MAX_TIMELINE_BARS:,} attempts omitted")
    assert timeline.bars[half - 1].start_ns <= omitted.start_ns <= omitted.end_ns
    assert omitted.end_ns <= timeline.bars[half].start_ns


def test_a_run_under_the_cap_omits_nothing(tmp_path: Path) -> None:
    _run(tmp_path, "small", 10)
    timeline = run_timeline(diagnose_path(tmp_path / "small", DoctorConfig()))
    assert len(timeline.bars) == 30
    assert timeline.bars_omitted == timeline.stretches_omitted == 0
    assert not [s for s in timeline.stretches if s.kind == "omitted"]


def test_the_html_postmortem_of_a_huge_run_says_how_many_attempts_it_omitted(
    wide: Path, tmp_path: Path
) -> None:
    out = tmp_path / "wide.html"
    result = doctor("report", "--run-id", "wide", "--root", wide, "--html", "--out", out)
    assert result.returncode == 0, result.stderr
    html = out.read_text()
    omitted = NODES * 3 - MAX_TIMELINE_BARS
    main = html.split('<svg xmlns="http://www.w3.org/2000/svg" class="timeline"')[1]
    main = main.split("</svg>")[0]
    assert main.count('class="bar outcome-') == MAX_TIMELINE_BARS
    assert f'data-omitted="{omitted}"' in main
    assert main.count('class="shade omitted"') == 1
    assert f"{omitted:,} attempts not drawn" in main
    assert f"{omitted:,} attempts omitted: the first and last" in html


def test_heartbeat_only_stretches_are_capped_at_the_longest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Node ``n`` starts, beats once, and the next node starts 1200 + 60·n seconds later:
    six ``heartbeat_only`` stretches over the stall timeout (the last node's beat comes too
    soon to make one); only the longest are kept."""
    run = tmp_path / "quiet"
    run.mkdir()
    lines, t = [], datetime(2026, 2, 1, tzinfo=UTC)
    for n in range(7):
        for at, event in (
            (t, "stage_attempt_start"),
            (t + timedelta(seconds=600), "stage_heartbeat"),
        ):
            ts = at.strftime("%Y-%m-%dT%H:%M:%SZ")
            lines.append({"event": event, "ts": ts, "node_id": f"n{n}", "attempt": 1})
        t += timedelta(seconds=1200 + 60 * n)
    (run / "progress.ndjson").write_text("".join(json.dumps(x) + "\n" for x in lines))
    monkeypatch.setattr(timeline_module, "MAX_TIMELINE_STRETCHES", 4)
    timeline = run_timeline(diagnose_path(run, DoctorConfig()))
    quiet = [s for s in timeline.stretches if s.kind == "heartbeat_only"]
    assert len(quiet) == 4
    assert timeline.stretches_omitted == 2
    # The longest four (nodes 2 to 5 waited longest), in time order.
    assert [s.end_ns - s.start_ns for s in quiet] == sorted(s.end_ns - s.start_ns for s in quiet)
    assert min(s.end_ns - s.start_ns for s in quiet) == (1200 + 2 * 60) * 10**9


@pytest.mark.parametrize(
    "args", [(), ("--html",), ("--out", "big.md"), ("--html", "--out", "big.html")]
)
def test_a_postmortem_of_a_run_over_the_budget_is_one_line_and_exit_2(
    big: Path, tmp_path: Path, args: tuple[str, ...]
) -> None:
    out = [str(tmp_path / a) if a.startswith("big.") else a for a in args]
    result = doctor("report", "--run-id", "big", "--root", big, *out, env=TINY)
    line = _one_line_error(result)
    assert line.startswith("error: run 'big' is over the resource budget: DuckDB")
    assert re.search(r"RUNDOCTOR_(SPILL|MEMORY)_LIMIT=SIZE .* and report it again$", line)
    assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_a_timeline_read_over_the_budget_is_over_budget_not_a_crash(big: Path) -> None:
    """The diagnosis fitted the default budget; reading the timeline under a tiny one goes
    over it inside DuckDB: :class:`doctor.OverBudget` naming the limit, from the library too."""
    diagnosis = diagnose_path(big / "big", DoctorConfig())
    assert [f.code for f in diagnosis.findings] == ["missing_final"]
    tiny = DoctorConfig(memory_limit=TINY["RUNDOCTOR_MEMORY_LIMIT"], spill_limit="1MiB")
    with pytest.raises(OverBudget, match=r"^run 'big' is over the resource budget: DuckDB"):
        run_timeline(diagnosis, tiny)
    with pytest.raises(OverBudget):
        write_postmortem(diagnosis, html=True, out=None, config=tiny)


def _long_named_run(root: Path) -> Path:
    """A run whose node id is 200 KB, with a failing branch whose status is Markdown."""
    run = root / "long"
    (run / "parallel/fan/01-a").mkdir(parents=True)
    (run / "run.pid").write_text("99999999")
    node = "n" + "x" * 200_000

    def ev(event: str, second: int, **fields: object) -> str:
        return json.dumps({"event": event, "ts": f"2026-04-28T10:00:{second:02d}Z", **fields})

    lines = [
        ev("stage_attempt_start", 0, node_id=node, attempt=1),
        ev("stage_attempt_end", 1, node_id=node, attempt=1, status="fail", failure_reason="x"),
        ev("edge_selected", 2, from_node=node, to_node=node),
        ev("stage_attempt_start", 3, node_id="fan", attempt=1),
    ]
    (run / "progress.ndjson").write_text("\n".join(lines) + "\n")
    branch = [
        ev("stage_attempt_start", 4, node_id="a", attempt=1),
        ev("stage_attempt_end", 5, node_id="a", attempt=1, status="fail | **b** <script>"),
    ]
    (run / "parallel/fan/01-a/progress.ndjson").write_text("\n".join(branch) + "\n")
    return run


def test_a_200_kb_node_id_is_a_cut_cell_in_the_postmortem_and_whole_in_json(
    tmp_path: Path,
) -> None:
    # Before: the node id was printed whole in the timeline, edge, attempt and reason tables
    # and the facts: a 1.4 MB page of 200 KB lines; and a branch's last status went into the
    # timeline table unescaped, its "|" a new cell.
    _long_named_run(tmp_path)
    result = doctor("report", "--run-id", "long", "--root", tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) < 1_000
    assert any("n" + "x" * 198 + "…" in line for line in lines)
    (row,) = [line for line in lines if "last attempt fail" in line]
    assert row.count("|") - row.count("\\|") == 6  # five cells, none split by the status
    assert "\\<script\\>" in row
    diagnosis = doctor("diagnose", "--run-id", "long", "--root", tmp_path, "--json")
    attempts = json.loads(diagnosis.stdout)["facts"]["attempt_stats"]
    assert "n" + "x" * 200_000 in {a["node_id"] for a in attempts}
