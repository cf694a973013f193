"""Reading a queue (``doctor scan --db``): URLs, read-only access, and one-line errors."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from doctor import DoctorConfig, IngestError, RootError, UsageError, scan
from doctor._queue_ingest import QUEUE_TABLES, load_queue, parse_queue_url
from doctor._tables import Tables, new_connection
from fixtures import queues
from tests.helpers import PG_URL, require_postgres

REPO = Path(__file__).resolve().parents[2]


def _queue_file(tmp_path: Path) -> tuple[Path, queues.QueueRows]:
    q = queues.incident_05(host="elsewhere")
    return q.write_sqlite(tmp_path / "queue.db"), q


def _tables() -> Tables:
    return Tables(new_connection())


def _count(tables: Tables, table: str) -> int:
    return int(tables.sql(f"SELECT count(*) FROM {table}")[0][0])


def _pg() -> None:
    require_postgres()


def _drop(schema: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as con:
        con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')  # type: ignore[arg-type]


# --- tables ---------------------------------------------------------------------------------------


def test_without_a_queue_the_queue_tables_exist_and_are_empty() -> None:
    tables = _tables()
    for table in QUEUE_TABLES:
        assert _count(tables, table) == 0
    columns = [r[0] for r in tables.sql("DESCRIBE tickets")]
    assert columns[:4] == ["id", "title", "graph_path", "status"]
    assert "proc_start_time" in columns and "finished_at" in columns


def test_a_sqlite_queue_fills_all_three_tables(tmp_path: Path) -> None:
    path, q = _queue_file(tmp_path)
    tables = _tables()
    load_queue(tables, str(path))
    assert _count(tables, "tickets") == len(q.tickets)
    assert _count(tables, "ticket_events") == len(q.events)
    statuses = dict(tables.sql("SELECT status, count(*) FROM tickets GROUP BY status"))
    assert statuses["running"] == 5


def test_a_sqlite_url_names_the_same_file(tmp_path: Path) -> None:
    path, q = _queue_file(tmp_path)
    tables = _tables()
    load_queue(tables, f"sqlite://{path.resolve()}")
    assert _count(tables, "tickets") == len(q.tickets)


def test_loading_twice_replaces_the_rows(tmp_path: Path) -> None:
    path, q = _queue_file(tmp_path)
    tables = _tables()
    load_queue(tables, str(path))
    load_queue(tables, str(path))
    assert _count(tables, "tickets") == len(q.tickets)


def test_reading_a_sqlite_queue_changes_nothing_in_it(tmp_path: Path) -> None:
    path, _ = _queue_file(tmp_path)
    before = path.read_bytes()
    load_queue(_tables(), str(path))
    assert path.read_bytes() == before
    # A WAL reader may create the -wal/-shm companions, but writes no frame.
    wal = path.with_name(path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0


# --- errors -------------------------------------------------------------------------------------


def test_a_missing_file_is_a_root_error_and_no_database_is_created(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    with pytest.raises(RootError, match="does not exist; pass --db"):
        load_queue(_tables(), str(missing))
    assert not missing.exists()


def test_a_file_that_is_not_sqlite_is_an_ingest_error(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.db"
    bogus.write_text("this is not a database, just some text that is long enough\n" * 20)
    with pytest.raises(IngestError, match="cannot read queue"):
        load_queue(_tables(), str(bogus))


def test_a_sqlite_file_without_the_queue_tables_is_not_a_queue(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE tickets (id TEXT)")
    con.commit()
    con.close()
    with pytest.raises(IngestError, match=r"not a queue database \(no table ticket_deps"):
        load_queue(_tables(), str(other))


def test_a_tickets_table_missing_columns_names_them(tmp_path: Path) -> None:
    path, _ = _queue_file(tmp_path)
    con = sqlite3.connect(path)
    con.execute("ALTER TABLE tickets DROP COLUMN proc_start_time")
    con.commit()
    con.close()
    with pytest.raises(IngestError, match=r"table tickets has no column proc_start_time"):
        load_queue(_tables(), str(path))


def test_a_value_of_the_wrong_type_names_its_column(tmp_path: Path) -> None:
    path, _ = _queue_file(tmp_path)
    con = sqlite3.connect(path)
    # A hand-edited database: the executor's trigger would refuse to touch terminal rows.
    con.execute("DROP TRIGGER tickets_terminal_frozen")
    con.execute("UPDATE tickets SET pid = 'tmux-3' WHERE pid IS NOT NULL")
    con.commit()
    con.close()
    with pytest.raises(IngestError, match=r"column tickets\.pid holds a value that is not BIGINT"):
        load_queue(_tables(), str(path))


def test_an_unknown_url_scheme_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown scheme 'mysql'"):
        parse_queue_url("mysql://db/queue")


def test_an_unreachable_server_is_an_ingest_error_that_hides_the_password() -> None:
    with pytest.raises(IngestError, match="cannot connect to the queue") as info:
        load_queue(_tables(), "postgresql://me:s3cret@127.0.0.1:1/test")
    assert "s3cret" not in str(info.value)
    assert "\n" not in str(info.value)


def test_scan_without_roots_or_db_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--db"):
        scan(DoctorConfig())


# --- PostgreSQL ---------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.parametrize("style", ["options", "schema"])
def test_a_postgres_queue_in_its_own_schema_is_read_with_either_url_style(style: str) -> None:
    _pg()
    q = queues.incident_05(host="elsewhere")
    schema = f"rd_ingest_{uuid.uuid4().hex[:12]}"
    try:
        url = q.write_postgres(PG_URL, schema)
        if style == "schema":
            url = f"{PG_URL}?schema={schema}"
        tables = _tables()
        load_queue(tables, url)
        assert _count(tables, "tickets") == len(q.tickets)
        assert _count(tables, "ticket_events") == len(q.events)
    finally:
        _drop(schema)


@pytest.mark.postgres
def test_a_postgres_schema_without_a_queue_says_how_to_name_the_schema() -> None:
    _pg()
    with pytest.raises(IngestError, match=r"not a queue database .*schema=NAME"):
        load_queue(_tables(), f"{PG_URL}?schema=rd_no_such_schema")


# --- the command line ---------------------------------------------------------------------------


def _doctor(
    *args: str, tmp_path: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("RUNDOCTOR_")}
    # No default runs roots: the queue alone is scanned.
    base["XDG_STATE_HOME"] = str(tmp_path / "state")
    return subprocess.run(
        [sys.executable, "-m", "doctor", *args],
        capture_output=True,
        text=True,
        env={**base, "COLUMNS": "100", **(env or {})},
        cwd=REPO,
        check=False,
    )


def test_scan_db_on_the_command_line_reports_queue_findings_and_exits_1(tmp_path: Path) -> None:
    import json

    path, _ = _queue_file(tmp_path)
    result = _doctor("scan", "--db", str(path), "--json", tmp_path=tmp_path)
    assert result.returncode == 1, result.stderr
    codes = {f["code"] for f in json.loads(result.stdout)["findings"]}
    assert "stale_lease" in codes


def test_the_db_can_come_from_rundoctor_db(tmp_path: Path) -> None:
    path, _ = _queue_file(tmp_path)
    result = _doctor("scan", tmp_path=tmp_path, env={"RUNDOCTOR_DB": str(path)})
    assert result.returncode == 1, result.stderr
    assert "stale_lease" in result.stdout


def test_a_missing_queue_file_is_one_red_line_and_exit_2(tmp_path: Path) -> None:
    result = _doctor("scan", "--db", str(tmp_path / "missing.db"), tmp_path=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: queue database") and "pass --db" in line
