"""How far a diagnosis has got: bytes of events read, then checks run (``doctor diagnose``'s
bar on a terminal)."""

from __future__ import annotations

import threading
from pathlib import Path

import duckdb
import pytest

from doctor import DoctorConfig, diagnose_path
from doctor._detectors import DETECTORS
from doctor._read_progress import ReadProgress
from executor import open_queue
from tests.doctor.test_cli import HEALTHY_ROOT, _stderr_on_a_terminal

REAL_RUN = Path(__file__).resolve().parents[2] / "fixtures/kilroy/runs/agent_heartbeats"
NOW = 1_900_000_000.0


def test_blocks_read_add_up_to_the_total_and_never_go_back() -> None:
    seen: list[tuple[int, int]] = []
    read = ReadProgress(lambda done, total: seen.append((done, total)), 100)
    read.advance(30)
    read.advance(0)  # nothing new: nothing reported
    read.advance(50)
    read.advance(40)  # past the plan (a stream that grew): held at the total
    read.done()
    assert seen == [(30, 100), (80, 100), (100, 100)]


def test_a_statement_reports_its_share_while_duckdb_works_through_it() -> None:
    """DuckDB's own estimate of a running statement, polled from a thread: the statement is
    interrupted once a share between none and all of it has been reported."""
    seen: list[tuple[int, int]] = []
    partway = threading.Event()

    def report(done: int, total: int) -> None:
        seen.append((done, total))
        if 0 < done < total:
            partway.set()

    con = duckdb.connect()
    read = ReadProgress(report, 1_000)

    def interrupt_partway() -> None:
        partway.wait(timeout=300)
        con.interrupt()

    helper = threading.Thread(target=interrupt_partway)
    helper.start()
    with pytest.raises(duckdb.InterruptException), read.statement(con, 1_000):
        con.execute("SELECT count(*) FROM range(100000000000) t WHERE t.range % 7 = 3").fetchall()
    helper.join()
    assert partway.is_set(), seen
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert all(total == 1_000 and done < total for done, total in seen), seen
    # DuckDB's progress bar is off again (and was never printed).
    (setting,) = con.execute("SELECT current_setting('enable_progress_bar')").fetchone() or ()
    assert setting is False


def test_a_diagnosis_reports_the_bytes_read_then_each_check() -> None:
    steps: list[tuple[str, int, int]] = []
    config = DoctorConfig(now=NOW)
    followed = diagnose_path(REAL_RUN, config, lambda *step: steps.append(step))
    assert followed.to_json() == diagnose_path(REAL_RUN, config).to_json()

    size = sum(p.stat().st_size for p in REAL_RUN.rglob("progress.ndjson"))
    reading = [(d, t) for phase, d, t in steps if phase == "reading"]
    checking = [(d, t) for phase, d, t in steps if phase == "checking"]
    assert [phase for phase, *_ in steps] == ["reading"] * len(reading) + ["checking"] * len(
        checking
    )
    assert reading[-1] == (size, size) and size > 0
    assert [d for d, _ in reading] == sorted(d for d, _ in reading)
    assert checking == [(0, 1)] + [(i, len(DETECTORS)) for i in range(1, len(DETECTORS) + 1)]


def test_diagnose_on_a_terminal_shows_what_it_is_doing() -> None:
    code, shown = _stderr_on_a_terminal(
        "diagnose", "--run-id", "healthy01", "--root", str(HEALTHY_ROOT)
    )
    assert code == 0, shown
    assert "reading events" in shown, shown


@pytest.mark.parametrize("command", ["report", "repair"])
def test_every_diagnosis_of_one_run_shows_what_it_is_doing(command: str) -> None:
    # Before: only `diagnose` did; `report --run-id` and `repair --run-id` diagnosed a run of
    # a gigabyte (tens of seconds) without a word.
    code, shown = _stderr_on_a_terminal(
        command, "--run-id", "healthy01", "--root", str(HEALTHY_ROOT)
    )
    assert code in (0, 1), shown
    assert "reading events" in shown, shown


def test_a_repair_of_the_queue_shows_its_scan(tmp_path: Path) -> None:
    # Before: `repair --db` scanned the whole fleet with the queue and said nothing meanwhile.
    with open_queue(tmp_path / "q.db") as queue:
        queue.enqueue("build", "/p/build.dot")
    code, shown = _stderr_on_a_terminal(
        "repair", "--db", str(tmp_path / "q.db"), "--root", str(HEALTHY_ROOT)
    )
    assert code in (0, 1), shown
    assert "diagnosing runs" in shown, shown


@pytest.mark.parametrize("option", ["--json", "--markdown"])
def test_diagnose_for_a_program_shows_no_bar(option: str) -> None:
    code, shown = _stderr_on_a_terminal(
        "diagnose", "--run-id", "healthy01", "--root", str(HEALTHY_ROOT), option
    )
    assert code == 0, shown
    assert shown == ""
