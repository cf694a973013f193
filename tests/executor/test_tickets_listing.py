"""``doctor tickets`` on a long queue: a bounded table, most pressing first, and a --json that
streams every record without holding the queue (SQLite and PostgreSQL alike)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from executor import open_queue
from executor._schema import TICKET_COLUMNS
from tests.executor.conftest import Backend
from tests.executor.test_cli import _base_env, _doctor, _json, _usage_error

START = 1_700_000_000


def _row(n: int, status: str) -> tuple[object, ...]:
    """Ticket ``n`` in ``status``: created at START + n, last changed 1000 s later."""
    values: dict[str, object] = dict.fromkeys(TICKET_COLUMNS)
    values |= {
        "id": f"t-{n:06d}",
        "title": f"pipeline {n}",
        "graph_path": "/p/x.dot",
        "status": status,
        "priority": 0,
        "error_attempts": 0,
        "crash_recoveries": 0,
        "max_error_attempts": 1,
        "lease_epoch": 1,
        "reason": "exit status 1" if status == "failed" else None,
        "created_at": float(START + n),
        "updated_at": float(START + 1000 + n),
    }
    return tuple(values[c] for c in TICKET_COLUMNS)


_INSERT = (
    f"INSERT INTO tickets ({', '.join(TICKET_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(TICKET_COLUMNS))})"
)


def _fill(backend: Backend, statuses: list[str]) -> None:
    """A queue holding one ticket per status given, the first created first."""
    open_queue(backend.url).close()
    for n, status in enumerate(statuses):
        backend.raw(_INSERT, _row(n, status))


#: 66 tickets: 60 done first, then what needs attention.
QUEUE = ["done"] * 60 + ["failed", "todo", "failed", "quarantined", "todo", "failed"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return _base_env(tmp_path)


def _table_rows(stdout: str) -> list[str]:
    return [line.split()[0] for line in stdout.splitlines() if line.startswith("t-")]


def test_a_long_queue_shows_the_most_pressing_fifty_and_says_how_many_more(
    env: dict[str, str], backend: Backend
) -> None:
    _fill(backend, QUEUE)
    proc = _doctor(env, "tickets", "--db", backend.url)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "66 tickets (1 quarantined, 3 failed, 2 todo, 60 done)"
    rows = _table_rows(proc.stdout)
    # Quarantined, then failed and todo (each most recently changed first), then done.
    pressing = ["t-000063", "t-000065", "t-000062", "t-000060", "t-000064", "t-000061"]
    assert rows[:6] == pressing
    assert rows[6:] == [f"t-{n:06d}" for n in range(59, 15, -1)] and len(rows) == 50
    assert lines[-1] == "… and 16 more (--limit/--all)"


def test_limit_and_all_choose_how_many_and_status_which(
    env: dict[str, str], backend: Backend
) -> None:
    _fill(backend, QUEUE)
    few = _doctor(env, "tickets", "--db", backend.url, "--limit", "4")
    assert _table_rows(few.stdout) == ["t-000063", "t-000065", "t-000062", "t-000060"]
    assert few.stdout.splitlines()[-1] == "… and 62 more (--limit/--all)"
    every = _doctor(env, "tickets", "--db", backend.url, "--all")
    assert len(_table_rows(every.stdout)) == 66 and "more (--limit/--all)" not in every.stdout
    assert every.stdout.splitlines()[0] == "66 tickets"
    done = _doctor(env, "tickets", "--db", backend.url, "--status", "done", "--limit", "2")
    assert done.stdout.splitlines()[0] == "60 tickets (60 done)"
    assert _table_rows(done.stdout) == ["t-000059", "t-000058"]
    assert done.stdout.splitlines()[-1] == "… and 58 more (--limit/--all)"


def test_json_is_every_record_oldest_first_unless_a_limit_is_given(
    env: dict[str, str], backend: Backend
) -> None:
    _fill(backend, QUEUE)
    proc = _doctor(env, "tickets", "--db", backend.url, "--json")
    with backend.open_existing() as queue:
        expected = json.dumps([t.to_json() for t in queue.tickets()], indent=2) + "\n"
    assert proc.returncode == 0 and proc.stdout == expected  # the layout it always had
    assert [t["id"] for t in json.loads(proc.stdout)] == [f"t-{n:06d}" for n in range(66)]
    failed = _json(
        _doctor(env, "tickets", "--db", backend.url, "--json", "--status", "failed", "--limit", "2")
    )
    assert [t["id"] for t in failed] == ["t-000060", "t-000062"]


def test_a_limit_past_what_a_database_can_count_lists_every_ticket(
    env: dict[str, str], backend: Backend
) -> None:
    # Before: "internal error (a bug in rundoctor): OverflowError: Python int too large to
    # convert to SQLite INTEGER", exit 70, for a user asking for "all of them" by number.
    _fill(backend, QUEUE[-6:])
    huge = str(10**30)
    table = _doctor(env, "tickets", "--db", backend.url, "--limit", huge)
    assert table.returncode == 0, table.stderr
    assert len(_table_rows(table.stdout)) == 6 and "more (--limit/--all)" not in table.stdout
    listed = _json(_doctor(env, "tickets", "--db", backend.url, "--json", "--limit", huge))
    assert [t["id"] for t in listed] == [f"t-{n:06d}" for n in range(6)]


def test_tickets_and_reap_read_a_sqlite_queue_whose_write_lock_another_process_holds(
    env: dict[str, str], sqlite_backend: Backend, tmp_path: Path
) -> None:
    # Before: opening the queue took the write lock to check its schema, so `doctor tickets`
    # waited out the busy timeout behind a worker's long write and failed ("database is
    # locked", exit 2), where WAL lets a reader read.
    _fill(sqlite_backend, QUEUE[-6:])
    writer = sqlite3.connect(tmp_path / "queue.db", isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")
    try:
        listed = _json(_doctor(env, "tickets", "--db", sqlite_backend.url, "--json"))
        reaped = _doctor(env, "reap", "--db", sqlite_backend.url)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert [t["id"] for t in listed] == [f"t-{n:06d}" for n in range(6)]
    assert reaped.returncode == 0, reaped.stderr


def test_an_empty_selection_is_an_empty_list_and_a_table_of_none(
    env: dict[str, str], sqlite_backend: Backend
) -> None:
    _fill(sqlite_backend, ["done"])
    assert (
        _doctor(env, "tickets", "--db", sqlite_backend.url, "--json", "--status", "todo").stdout
        == "[]\n"
    )
    proc = _doctor(env, "tickets", "--db", sqlite_backend.url, "--status", "todo")
    assert proc.returncode == 0 and proc.stdout.splitlines()[0] == "0 tickets"
    assert "more (--limit/--all)" not in proc.stdout


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--limit", "0"), "--limit must be 1 or more tickets, got 0; --all shows every ticket"),
        (("--limit", "-3"), "--limit must be 1 or more tickets, got -3"),
        (("--limit", "2", "--all"), "--limit 2 and --all contradict each other"),
        (("--limit", "many"), "invalid value for '--limit'"),
        (("--status", "faild"), "unknown status 'faild' (did you mean 'failed'?)"),
    ],
)
def test_a_bad_limit_or_status_is_one_line_and_exit_2(
    env: dict[str, str], sqlite_backend: Backend, args: tuple[str, ...], said: str
) -> None:
    _fill(sqlite_backend, ["done"])
    for json_flag in ((), ("--json",)):
        line = _usage_error(_doctor(env, "tickets", "--db", sqlite_backend.url, *args, *json_flag))
        assert said in line


def _peak_rss_kib(env: dict[str, str], *args: str) -> int:
    """The largest resident set of ``doctor ARGS`` (a wrapper process of its own measures its
    only child, so no earlier command's peak counts)."""
    measure = (
        "import resource, subprocess, sys;"
        "subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True);"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    done = subprocess.run(
        [sys.executable, "-c", measure, sys.executable, "-m", "doctor", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return int(done.stdout)


def test_neither_the_table_nor_the_json_holds_a_queue_of_50000_tickets(
    env: dict[str, str], tmp_path: Path
) -> None:
    small, big = tmp_path / "small.db", tmp_path / "big.db"
    for path, n in ((small, 1), (big, 50_000)):
        open_queue(path).close()
        with closing(sqlite3.connect(path)) as conn, conn:
            conn.executemany(_INSERT, (_row(i, "done" if i % 7 else "failed") for i in range(n)))
    for args in (("--json",), ()):
        base = _peak_rss_kib(env, "tickets", "--db", str(small), *args)
        grown = _peak_rss_kib(env, "tickets", "--db", str(big), *args) - base
        # Held whole, 50,000 records take hundreds of MiB (the table: gigabytes).
        assert grown < 60 * 1024, (args, grown)
