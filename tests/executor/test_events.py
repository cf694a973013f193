"""The event vocabulary: one class per event name, and the published schema matches it."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from doctor._timestamps import parse_iso
from executor import EVENTS
from executor._events import BranchProgress, StageAttemptEnd, rfc3339, schema_markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "executor-artifacts.md"


def test_every_event_class_has_its_own_name_and_a_meaning() -> None:
    names = [cls.EVENT for cls in EVENTS]
    assert len(set(names)) == len(names) and all(names)
    assert all(cls.DOC for cls in EVENTS)
    assert all(f.name in {"ts", "run_id", "id", "epoch"} for f in fields(EVENTS[0])[:4])


def test_optional_fields_are_left_out_when_unknown() -> None:
    line = BranchProgress(branch_key="a", branch_logs_root="/r", branch_event="x").to_json()
    assert "branch_node_id" not in line and line["branch_key"] == "a"
    end = StageAttemptEnd(
        node_id="n",
        attempt=1,
        max=1,
        status="success",
        failure_reason="",
        failure_class="",
        attempt_dir="n/attempt-1",
        duration_s=0.1,
        exit_code=0,
    )
    assert end.to_json()["exit_code"] == 0 and "signal" not in end.to_json()


def test_timestamps_are_rfc3339_utc_that_the_doctor_reads_back() -> None:
    assert parse_iso(rfc3339(1770741731.818881)) == 1770741731818881000


def test_the_published_schema_is_the_one_the_code_writes() -> None:
    assert schema_markdown() in DOC.read_text(), (
        "regenerate the table in docs/executor-artifacts.md"
    )
