"""``doctor metrics``: OpenMetrics that Prometheus's own parser reads, with the scan's numbers."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from doctor import DoctorConfig, scan
from doctor._metrics import metrics_document, queue_stats, render_metrics
from fixtures import queues

REPO = Path(__file__).resolve().parents[2]
NOW_FOR_JSON = 1777377600.0  # 2026-04-28T12:00:00Z
CASES = ("back_edge_taken_repeatedly", "resumed_run_completed", "fanout_never_joined")
Samples = dict[str, list[tuple[dict[str, str], float]]]


def _doctor(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNDOCTOR_")}
    env["PYTHONPATH"] = str(REPO)
    cmd = [sys.executable, "-m", "doctor", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def _parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fleet")
    for case in CASES:
        for run in (REPO / "fixtures" / "cases" / case / "run").iterdir():
            shutil.copytree(run, root / run.name)
    return root


def test_runs_by_state_and_findings_by_code_match_doctor_scan(fleet: Path) -> None:
    metrics = _doctor("metrics", "--root", str(fleet))
    assert metrics.returncode == 0, metrics.stderr
    samples = _parse(metrics.stdout)
    scanned = json.loads(_doctor("scan", "--json", "--root", str(fleet)).stdout)

    by_state = {labels["state"]: n for labels, n in samples["rundoctor_runs"]}
    assert {s: n for s, n in by_state.items() if n} == scanned["fleet"]["by_state"]
    assert sum(by_state.values()) == len(scanned["runs"]) == len(CASES)

    expected: dict[tuple[str, str], int] = {}
    for f in [*(f for r in scanned["runs"] for f in r["findings"]), *scanned["findings"]]:
        expected[(f["code"], f["severity"])] = expected.get((f["code"], f["severity"]), 0) + 1
    found = {(lb["code"], lb["severity"]): n for lb, n in samples["rundoctor_findings"]}
    assert found == expected and expected


def test_idle_seconds_count_from_the_latest_progress_of_any_run(fleet: Path) -> None:
    samples = _parse(_doctor("metrics", "--root", str(fleet)).stdout)
    latest = max(
        datetime.fromisoformat(d.facts["last_progress_at"].replace("Z", "+00:00")).timestamp()
        for d in scan(DoctorConfig(roots=(fleet,))).diagnoses
    )
    ((_, last),) = samples["rundoctor_fleet_last_progress_timestamp_seconds"]
    ((_, idle),) = samples["rundoctor_fleet_idle_seconds"]
    ((_, now),) = samples["rundoctor_scan_timestamp_seconds"]
    assert last == pytest.approx(latest, abs=1e-3)
    assert idle == pytest.approx(now - latest, abs=1e-2)


def test_a_progress_after_the_scans_time_is_taken_as_the_scans_time(tmp_path: Path) -> None:
    # A writer whose clock is ahead (or a queue's time moved into this host's clock by an
    # offset known to a few ms) put the fleet's last progress after the scan's own time: the
    # idle time was 0 while the timestamp said "in the future".
    run = tmp_path / "ahead"
    shutil.copytree(REPO / "fixtures/cases/resumed_run_completed/run" / "resume02", run)
    stream = run / "progress.ndjson"
    stream.write_text(
        stream.read_text() + '{"event": "stage_attempt_start", "node_id": "late", "attempt": 1,'
        ' "ts": "2099-01-01T00:00:00Z"}\n'
    )
    samples = _parse(_doctor("metrics", "--root", str(tmp_path)).stdout)
    ((_, last),) = samples["rundoctor_fleet_last_progress_timestamp_seconds"]
    ((_, idle),) = samples["rundoctor_fleet_idle_seconds"]
    ((_, now),) = samples["rundoctor_scan_timestamp_seconds"]
    assert (last, idle) == (now, 0)


def test_no_metric_carries_a_per_run_label(fleet: Path) -> None:
    samples = _parse(_doctor("metrics", "--root", str(fleet)).stdout)
    labels = {k for rows in samples.values() for lb, _ in rows for k in lb}
    assert labels == {"state", "code", "severity", "kind"}  # kind: rundoctor_scan_notes


def _sqlite(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as con:
        return con.execute(sql).fetchall()


def test_the_queue_metrics_are_the_queue_s_own_counts(fleet: Path, tmp_path: Path) -> None:
    db = queues.incident_02(os.getpid(), queues.proc_start_ticks(os.getpid())).write_sqlite(
        tmp_path / "queue.db"
    )
    out = tmp_path / "textfile" / "rundoctor.prom"
    done = _doctor("metrics", "--root", str(fleet), "--db", str(db), "--out", str(out))
    assert (done.returncode, done.stdout) == (0, ""), done.stderr
    samples = _parse(out.read_text())
    statuses = dict(_sqlite(db, "SELECT status, count(*) FROM tickets GROUP BY status"))
    by_status = {lb["status"]: n for lb, n in samples["rundoctor_queue_tickets"]}
    assert {s: n for s, n in by_status.items() if n} == statuses
    reclaims = _sqlite(db, "SELECT count(*) FROM ticket_events WHERE event = 'reclaimed'")[0][0]
    assert samples["rundoctor_queue_reclaims_total"] == [({}, reclaims)] and reclaims >= 13
    quarantines = _sqlite(db, "SELECT count(*) FROM ticket_events WHERE event = 'quarantined'")
    assert samples["rundoctor_queue_quarantines_total"] == [({}, quarantines[0][0])]
    assert not list(out.parent.glob(".*.tmp"))  # written atomically: no temporary left


def test_tickets_done_in_the_last_day_and_the_median_claim_to_done(tmp_path: Path) -> None:
    q = queues.healthy(os.getpid(), queues.proc_start_ticks(os.getpid()))
    db = q.write_sqlite(tmp_path / "queue.db")
    stats = queue_stats(str(db), now=q.now)
    done = [t for t in q.tickets if t["status"] == "done"]
    assert stats.done_last_day == sum(1 for t in done if t["finished_at"] >= q.now - 86400) > 0
    assert stats.claim_to_done_median_s == pytest.approx(
        statistics.median(t["finished_at"] - t["claimed_at"] for t in done)
    )
    assert stats.by_status["done"] == len(done)


def test_an_unwritable_out_is_one_line_and_exit_2(fleet: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    done = _doctor("metrics", "--root", str(fleet), "--out", str(tmp_path / "file" / "m.prom"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "cannot write" in done.stderr


def test_idle_time_of_the_last_day_is_the_overlap_of_the_fleet_s_idle_gaps(tmp_path: Path) -> None:
    q = queues.incident_01()
    db = q.write_sqlite(tmp_path / "queue.db")
    result = scan(DoctorConfig(db=str(db), now=q.now))
    samples = _parse(render_metrics(result, queue_stats(str(db), now=q.now), now=q.now))
    ((_, idle),) = samples["rundoctor_fleet_idle_last_day_seconds"]
    # incident 01: nothing ran for the evening and the night before 05:30, tickets waiting.
    gaps = [f for f in result.findings if f.code == "idle_gap"]
    last = max(gaps, key=lambda f: f.evidence["end"])
    assert last.evidence["ongoing"] is True
    assert idle == pytest.approx(min(86400.0, last.evidence["duration_s"]))
    assert 0 < idle <= 86400


def test_the_json_document_holds_the_texts_families_and_samples(
    fleet: Path, tmp_path: Path
) -> None:
    config = DoctorConfig(roots=(fleet,), now=NOW_FOR_JSON)
    result = scan(config)
    text = render_metrics(result, None, now=config.now)
    doc = metrics_document(result, None, now=config.now)
    assert doc["schema"] == "rundoctor.metrics/1"
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert [f["name"] for f in doc["families"]] == list(families)
    for family in doc["families"]:
        parsed = families[family["name"]]
        assert (family["type"], family["help"], family["unit"] or "") == (
            parsed.type,
            parsed.documentation,
            parsed.unit,
        )
        assert [(s["name"], s["labels"], s["value"]) for s in family["samples"]] == [
            (s.name, dict(s.labels), s.value) for s in parsed.samples
        ]
    # The command: --json on stdout, and with --out written to the file instead.
    printed = _doctor("metrics", "--root", str(fleet), "--json")
    assert printed.returncode == 0, printed.stderr
    assert [f["name"] for f in json.loads(printed.stdout)["families"]] == list(families)
    out = tmp_path / "metrics.json"
    written = _doctor("metrics", "--root", str(fleet), "--json", "--out", str(out))
    assert (written.returncode, written.stdout) == (0, "")
    assert json.loads(out.read_text())["schema"] == "rundoctor.metrics/1"


def test_the_scans_notes_are_counted_by_kind(fleet: Path, tmp_path: Path) -> None:
    quiet = _parse(_doctor("metrics", "--root", str(fleet)).stdout)
    assert {lb["kind"]: n for lb, n in quiet["rundoctor_scan_notes"]} == {"root": 0, "cache": 0}
    # The same run in two groups: the second is left out, and the scan says so.
    run = next(p for p in fleet.iterdir() if p.is_dir())
    for group in ("a", "b"):
        shutil.copytree(run, tmp_path / group / run.name)
    noted = _parse(_doctor("metrics", "--root", str(tmp_path)).stdout)
    notes = json.loads(_doctor("scan", "--json", "--root", str(tmp_path)).stdout)["fleet"]
    assert len(notes["root_notes"]) == 1
    assert {lb["kind"]: n for lb, n in noted["rundoctor_scan_notes"]} == {"root": 1, "cache": 0}


def _doc_table(header: str) -> list[tuple[str, str]]:
    """The (first cell's names, type) rows of the docs/watch.md table under ``header``."""
    text = (REPO / "docs" / "watch.md").read_text()
    rows = text.split(header, 1)[1].split("\n\n", 1)[0].splitlines()[2:]
    return [(r.split("|")[1].strip(" `"), r.split("|")[2].strip()) for r in rows]


def test_docs_watch_md_lists_every_metric_family_with_its_type(tmp_path: Path) -> None:
    db = queues.incident_02(os.getpid(), queues.proc_start_ticks(os.getpid())).write_sqlite(
        tmp_path / "queue.db"
    )
    config = DoctorConfig(roots=(REPO / "fixtures" / "cases" / CASES[0] / "run",), db=str(db))
    result = scan(config)
    doc = metrics_document(result, queue_stats(str(db), now=config.now), now=config.now)
    documented = _doc_table("| metric | type | labels | value |")
    # A counter's table row names the sample, as the text writes it (`…_total`).
    written = [
        (f["name"] + ("_total" if f["type"] == "counter" else ""), f["type"])
        for f in doc["families"]
    ]
    assert written == documented
