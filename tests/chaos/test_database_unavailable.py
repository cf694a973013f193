"""Faults that cannot fire because the queue's database is away are skips, not errors.

The campaign runs on a private PostgreSQL cluster (``tests/executor/private_postgres.py``),
stopped here the way ``database_outage`` stops it through ``--db-control``; the shared server
at 127.0.0.1:5432 is never stopped or restarted.
"""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest

from chaos import (
    CHAOS_EXECUTOR,
    FAULTS,
    Bounds,
    CampaignConfig,
    FaultRecord,
    FaultSkipped,
    Planned,
    chaos_context,
    report_json,
)
from chaos._campaign import _Campaign
from chaos._collect import prepare_out
from chaos._history import read_records
from reports import render_chaos
from tests.chaos.conftest import Story
from tests.chaos.test_checkers import clean
from tests.chaos.test_faults import Campaign
from tests.chaos.test_report import result
from tests.executor.private_postgres import PrivatePostgres

BY_NAME = {f.name: f for f in FAULTS}
#: Faults that read or write the queue before they hit anything.
QUEUE_READERS = ("sigkill_stage", "torn_write", "stall_database", "remove_pipeline")


def _campaign(pg: PrivatePostgres, out: Path, lines: list[str]) -> _Campaign:
    cfg = CampaignConfig(seed=1, db=pg.url, out=out, db_control=pg.control_command())
    prepare_out(out)
    return _Campaign(cfg, pg.url, CHAOS_EXECUTOR, time.time, lines.append)


def _faults(camp: _Campaign) -> list[FaultRecord]:
    camp.recorder.close()
    return [r for r in read_records(camp.dir / "harness.ndjson") if isinstance(r, FaultRecord)]


@pytest.mark.postgres
def test_faults_fired_while_postgresql_is_stopped_are_skipped_with_the_reason(
    private_pg: PrivatePostgres, tmp_path: Path
) -> None:
    lines: list[str] = []
    camp = _campaign(private_pg, tmp_path / "c", lines)
    try:
        private_pg.stop()  # what database_outage's `--db-control … stop` does
        for n, name in enumerate(QUEUE_READERS):
            camp.inject(Planned(float(n), name, 0), BY_NAME[name])
    finally:
        private_pg.start()
        camp.queue.close()
    records = _faults(camp)
    assert [(r.fault, r.phase, r.target) for r in records] == [
        (name, "skip", "database unavailable") for name in QUEUE_READERS
    ]
    for r in records:
        assert "error" not in r.detail and set(r.detail) == {"reason"}
        assert r.detail["reason"].startswith("the queue database is unavailable: "), r.detail
    assert sum("skipped: the queue database is unavailable" in line for line in lines) == 4


@pytest.mark.postgres
def test_a_fault_after_a_postgresql_restart_is_not_skipped_for_the_connection_it_dropped(
    private_pg: PrivatePostgres, tmp_path: Path
) -> None:
    # The harness's own connection dies with the restart; the server is back at once.
    camp = _campaign(private_pg, tmp_path / "c", [])
    try:
        assert camp.leased() == []  # the connection is open before the restart
        camp.inject(Planned(1.0, "restart_database", 0), BY_NAME["restart_database"])
        camp.undo_due()
        for n, name in enumerate(("sigkill_stage", "torn_write", "remove_pipeline")):
            camp.inject(Planned(2.0 + n, name, 0), BY_NAME[name])
    finally:
        camp.queue.close()
    records = _faults(camp)[2:]  # after the restart's inject and recover
    assert [(r.fault, r.phase, r.target) for r in records][:2] == [
        ("sigkill_stage", "skip", "no candidate"),  # nothing runs: no stage to kill
        ("torn_write", "skip", "no candidate"),
    ]
    assert [(r.fault, r.phase) for r in records][2:] == [("remove_pipeline", "inject")]


@pytest.mark.postgres
def test_stall_database_on_a_stopped_server_raises_fault_skipped_not_an_error_injection(
    private_pg: PrivatePostgres,
) -> None:
    # The stand-in campaign of test_faults.py reads no queue: the stall's own lock meets it.
    stand_in = Campaign(url=private_pg.url)
    private_pg.stop()
    try:
        with pytest.raises(FaultSkipped, match="the queue database is unavailable: ") as got:
            BY_NAME["stall_database"].inject(stand_in)
    finally:
        private_pg.start()
    assert isinstance(got.value.__cause__, psycopg.OperationalError)


@pytest.mark.postgres
def test_a_fault_that_fails_with_the_database_up_is_still_an_error(
    private_pg: PrivatePostgres, tmp_path: Path
) -> None:
    camp = _campaign(private_pg, tmp_path / "c", [])
    camp.db_control = "false {action}"  # a control command that fails: the fault's own error
    try:
        camp.inject(Planned(1.0, "restart_database", 0), BY_NAME["restart_database"])
    finally:
        camp.queue.close()
    (record,) = _faults(camp)
    assert (record.phase, record.detail["action"]) == ("inject", "restart")
    assert record.detail["exit_status"] == 1 and "error" in record.detail


def test_the_report_counts_unavailable_skips_apart_from_failures_and_says_why() -> None:
    s = clean()
    why = "the queue database is unavailable: connection refused"
    s.add(FaultRecord(22.0, "sigkill_worker", "skip", "database unavailable", {"reason": why}))
    s.add(FaultRecord(23.0, "sigkill_worker", "skip", "no candidate"))
    s.add(FaultRecord(24.0, "sigkill_worker", "inject", "nothing", {"error": "QueueError: boom"}))
    done = result(s)
    doc = report_json(done)
    # Every skip is listed, its outcome the key fault_kinds counts it under.
    assert doc["skipped"] == [
        {
            "kind": "sigkill_worker",
            "at": 22.0,
            "time": 22.0,
            "outcome": "unavailable",
            "reason": why,
        },
        {
            "kind": "sigkill_worker",
            "at": 23.0,
            "time": 23.0,
            "outcome": "skipped",
            "reason": "no candidate",
        },
    ]
    counts = {"injected": 1, "failed": 1, "skipped": 1, "unavailable": 1, "not_applicable": 0}
    assert doc["fault_kinds"]["sigkill_worker"] == counts
    assert [f["detail"] for f in doc["faults"]][-1] == {"error": "QueueError: boom"}
    assert doc["never_fired"] == []  # it hit something (if with an error)
    text = render_chaos(chaos_context(done))
    assert "| sigkill_worker | 1 | 1 | 1 | 1 | 0 | nothing |" in text
    assert f"| 22.00s | sigkill_worker | {why} |" in text
    assert "never fired" not in text


def test_a_fault_the_campaign_cannot_apply_is_one_skip_saying_what_it_needs(
    tmp_path: Path,
) -> None:
    """Before: disk_full on a runs root that is no file system of its own returned "no
    candidate" at every try, was tried again every 0.5 s to the campaign's end and counted as
    "skipped (no target)", as if a target might have turned up; nothing said it needed
    ``--runs-tmpfs``, and a campaign that never applied it read "Every invariant held"."""
    out = tmp_path / "c"
    url = f"sqlite:///{out / 'campaign' / 'queue.db'}"
    lines: list[str] = []
    cfg = CampaignConfig(seed=1, out=out, faults=("disk_full", "read_only_root"))
    prepare_out(out)
    camp = _Campaign(cfg, url, CHAOS_EXECUTOR, time.time, lines.append)
    try:
        for n, name in enumerate(("disk_full", "read_only_root")):
            planned = Planned(3.0 + n, name, 0)
            assert camp.inject(planned, BY_NAME[name], last_try=False) is True  # not again
    finally:
        camp.queue.close()
    records = _faults(camp)
    assert [(r.fault, r.phase, r.target) for r in records] == [
        ("disk_full", "skip", "not applicable"),
        ("read_only_root", "skip", "not applicable"),
    ]
    assert all("pass --runs-tmpfs MB" in r.detail["reason"] for r in records), records
    assert sum("skipped: the runs root is not a file system of its own" in x for x in lines) == 2


def test_the_report_says_which_selected_faults_never_fired_and_why() -> None:
    s = Story(Bounds())  # no fault hit anything
    needs = "the runs root is not a file system of its own, …: pass --runs-tmpfs MB"
    s.add(FaultRecord(22.0, "sigkill_worker", "skip", "not applicable", {"reason": needs}))
    done = result(s)
    doc = report_json(done)
    assert doc["skipped"][0]["outcome"] == "not_applicable"
    counts = {"injected": 0, "failed": 0, "skipped": 0, "unavailable": 0, "not_applicable": 1}
    assert doc["fault_kinds"]["sigkill_worker"] == counts
    assert doc["never_fired"] == [{"kind": "sigkill_worker", "why": f"not applicable: {needs}"}]
    text = render_chaos(chaos_context(done))
    assert "| sigkill_worker | 0 | 0 | 0 | 0 | 1 | nothing |" in text
    assert "1 selected fault never fired, so the invariants say nothing about it:" in text
    assert f"- sigkill_worker: not applicable: {needs}" in text


def test_a_fault_with_no_candidate_yet_is_tried_again_and_recorded_only_on_its_last_try(
    tmp_path: Path,
) -> None:
    """No running run to tear: before the campaign's end the fault waits for another try
    (nothing recorded), and only its last try records the skip ("no candidate")."""
    out = tmp_path / "c"
    url = f"sqlite:///{out / 'campaign' / 'queue.db'}"
    cfg = CampaignConfig(seed=1, out=out)
    prepare_out(out)
    camp = _Campaign(cfg, url, CHAOS_EXECUTOR, time.time, [].append)
    try:
        planned = Planned(19.0, "torn_write", 0)
        assert camp.inject(planned, BY_NAME["torn_write"], last_try=False) is False
        assert camp.inject(planned, BY_NAME["torn_write"], last_try=True) is True
    finally:
        camp.queue.close()
    assert [(r.fault, r.phase, r.target) for r in _faults(camp)] == [
        ("torn_write", "skip", "no candidate")
    ]
