"""Queue throughput from the ``tickets`` / ``ticket_events`` tables the doctor loads.

The tables are the doctor's own (``doctor.load_runs([])`` creates them with the executor's
columns); rows are written directly, times in epoch seconds.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest

from doctor import Tables, load_runs
from reports import ReportError, queue_throughput, queue_throughput_at, render_fleet

DAY0 = 1_780_012_800.0  # 2026-05-29T00:00:00Z
H = 3600.0
DOCTOR = (sys.executable, "-m", "doctor")


def _queue(events: list[tuple[str, float, str]], statuses: dict[str, str]) -> Tables:
    tables = load_runs([], keep_raw=False)
    for i, (ticket, at, event) in enumerate(events, 1):
        tables.con.execute(
            'INSERT INTO ticket_events (id, ticket_id, "at", event) VALUES (?, ?, ?, ?)',
            [i, ticket, at, event],
        )
    for ticket, status in statuses.items():
        tables.con.execute(
            "INSERT INTO tickets (id, title, status, created_at, updated_at) "
            "VALUES (?, ?, ?, 0, 0)",
            [ticket, ticket, status],
        )
    return tables


def test_a_completed_ticket_counts_as_created_closed_and_done() -> None:
    tables = _queue(
        [
            ("t-a", DAY0, "created"),
            ("t-a", DAY0 + H, "claimed"),
            ("t-a", DAY0 + 3 * H, "completed"),
        ],
        {"t-a": "done"},
    )
    t = queue_throughput(tables.con, now=DAY0 + 4 * H)
    assert [(d.day, d.created, d.closed, d.done) for d in t.days] == [("2026-05-29", 1, 1, 1)]
    assert t.time_to_done is not None and t.time_to_done.median_s == 2 * H
    assert t.tickets == 1 and [(s.status, s.count) for s in t.by_status] == [("done", 1)]


def test_time_to_done_starts_at_the_last_claim_not_the_first() -> None:
    tables = _queue(
        [
            ("t-a", DAY0, "created"),
            ("t-a", DAY0 + H, "claimed"),
            ("t-a", DAY0 + 2 * H, "reclaimed"),
            ("t-a", DAY0 + 5 * H, "claimed"),
            ("t-a", DAY0 + 6 * H, "completed"),
        ],
        {"t-a": "done"},
    )
    t = queue_throughput(tables.con, now=DAY0 + 7 * H)
    assert t.time_to_done is not None and t.time_to_done.max_s == H


def test_a_retried_failure_is_not_closed_but_a_final_one_is() -> None:
    tables = _queue(
        [
            ("t-a", DAY0, "created"),
            ("t-a", DAY0 + H, "claimed"),
            ("t-a", DAY0 + 2 * H, "failed"),
            ("t-a", DAY0 + 3 * H, "claimed"),
            ("t-a", DAY0 + 4 * H, "failed"),
        ],
        {"t-a": "failed"},
    )
    t = queue_throughput(tables.con, now=DAY0 + 5 * H)
    assert [(d.closed, d.done) for d in t.days] == [(1, 0)]
    assert t.time_to_done is None


def test_idle_hours_count_pending_work_with_nothing_in_progress() -> None:
    tables = _queue(
        [
            ("t-a", DAY0, "created"),  # pending 0h-2h: idle
            ("t-a", DAY0 + 2 * H, "claimed"),  # running 2h-3h: not idle
            ("t-a", DAY0 + 3 * H, "completed"),
            ("t-b", DAY0 + 5 * H, "created"),  # blocked from the start: not pending work
            ("t-b", DAY0 + 5 * H, "blocked"),
            ("t-c", DAY0 + 22 * H, "created"),  # pending 22h-28h, across midnight
        ],
        {"t-a": "done", "t-b": "blocked", "t-c": "todo"},
    )
    t = queue_throughput(tables.con, now=DAY0 + 28 * H)
    assert [(d.day, d.idle_h) for d in t.days] == [("2026-05-29", 4.0), ("2026-05-30", 4.0)]
    assert t.idle_h_total == 8.0


def test_days_without_events_inside_the_window_still_count() -> None:
    tables = _queue(
        [("t-a", DAY0, "created"), ("t-a", DAY0 + 2 * 86400 + H, "canceled")],
        {"t-a": "canceled"},
    )
    t = queue_throughput(tables.con, now=DAY0 + 2 * 86400 + 2 * H)
    assert [d.day for d in t.days] == ["2026-05-29", "2026-05-30", "2026-05-31"]
    assert t.created_per_day == round(1 / 3, 2)


def test_the_window_keeps_the_last_days_only() -> None:
    events = [(f"t-{i}", DAY0 + i * 86400, "created") for i in range(20)]
    t = queue_throughput(_queue(events, {}).con, now=DAY0 + 20 * 86400, days=7)
    assert t.window_days == 7 and t.days[0].day == "2026-06-11"


def test_a_connection_without_queue_tables_is_a_report_error() -> None:
    with pytest.raises(ReportError, match="queue tables cannot be read"):
        queue_throughput(duckdb.connect(), now=0.0)


def test_the_fleet_report_shows_throughput_or_says_no_queue_was_given() -> None:
    from doctor import ScanResult

    scan = ScanResult(("/runs",), (), {"runs": 0})
    assert "No queue given" in render_fleet(scan)
    tables = _queue(
        [
            ("t-a", DAY0, "created"),
            ("t-a", DAY0 + H, "claimed"),
            ("t-a", DAY0 + 2 * H, "completed"),
        ],
        {"t-a": "done"},
    )
    text = render_fleet(scan, throughput=queue_throughput(tables.con, now=DAY0 + 3 * H))
    assert "No queue given" not in text
    assert "| 2026-05-29 | 1 | 1 | 1 | 1.00 |" in text  # pending for an hour first
    assert "median\n`1h 00m 00s`" in text


# The executor's queue schema (notes/executor-design.md), for a queue file on disk.
_SCHEMA = """
CREATE TABLE tickets (id TEXT PRIMARY KEY, title TEXT NOT NULL, graph_path TEXT NOT NULL,
  status TEXT NOT NULL, priority INTEGER NOT NULL DEFAULT 0,
  error_attempts INTEGER NOT NULL DEFAULT 0, crash_recoveries INTEGER NOT NULL DEFAULT 0,
  max_error_attempts INTEGER NOT NULL DEFAULT 1, lease_owner TEXT,
  lease_epoch INTEGER NOT NULL DEFAULT 0, lease_expires_at REAL, last_heartbeat_at REAL,
  claimed_at REAL, session_name TEXT, pid INTEGER, pgid INTEGER, proc_start_time INTEGER,
  host TEXT, run_id TEXT, run_path TEXT, reason TEXT, created_at REAL NOT NULL,
  updated_at REAL NOT NULL, finished_at REAL);
CREATE TABLE ticket_deps (ticket_id TEXT, depends_on TEXT, PRIMARY KEY (ticket_id, depends_on));
CREATE TABLE ticket_events (id INTEGER PRIMARY KEY AUTOINCREMENT, ticket_id TEXT NOT NULL,
  at REAL NOT NULL, event TEXT NOT NULL, worker TEXT, epoch INTEGER, detail TEXT);
CREATE TABLE schema_version (version INTEGER);
"""


def _sqlite_queue(path: Path) -> Path:
    con = sqlite3.connect(path)
    con.executescript(_SCHEMA)
    rows: list[tuple[Any, ...]] = [
        ("t-a", "a", "/g.dot", "done", DAY0, DAY0 + 2 * H, DAY0 + 2 * H),
        ("t-b", "b", "/g.dot", "todo", DAY0 + H, DAY0 + H, None),
    ]
    con.executemany(
        "INSERT INTO tickets (id, title, graph_path, status, created_at, updated_at, "
        "finished_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    con.executemany(
        "INSERT INTO ticket_events (ticket_id, at, event) VALUES (?, ?, ?)",
        [
            ("t-a", DAY0, "created"),
            ("t-b", DAY0 + H, "created"),
            ("t-a", DAY0 + 1.5 * H, "claimed"),
            ("t-a", DAY0 + 2 * H, "completed"),
        ],
    )
    con.commit()
    con.close()
    return path


def test_a_sqlite_queue_is_read_through_the_doctors_queue_reader(tmp_path: Path) -> None:
    t = queue_throughput_at(str(_sqlite_queue(tmp_path / "queue.db")), now=DAY0 + 3 * H)
    assert t.tickets == 2 and t.done_total == 1
    assert t.time_to_done is not None and t.time_to_done.median_s == 0.5 * H
    # Pending from 0h; t-a runs 1.5h-2h; t-b still pending until now (3h).
    assert t.idle_h_total == 2.5


def test_doctor_report_fleet_with_db_prints_throughput(tmp_path: Path) -> None:
    queue = _sqlite_queue(tmp_path / "queue.db")
    runs = tmp_path / "runs"
    runs.mkdir()
    done = subprocess.run(
        [*DOCTOR, "report", "--fleet", "--root", str(runs), "--db", str(queue)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "## Throughput" in done.stdout and "2 tickets in the queue" in done.stdout


def test_doctor_report_fleet_with_a_missing_queue_exits_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [*DOCTOR, "report", "--fleet", "--root", str(tmp_path), "--db", str(tmp_path / "x.db")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "does not exist" in done.stderr and "Traceback" not in done.stderr
