"""Queue databases the doctor has not seen: permissions, other schemas, locks, odd URLs.

Each test points the whole ``doctor`` process (or the library) at a real SQLite file or the
real PostgreSQL test server, and expects one clear line with a documented exit code, never a
traceback, and the database unchanged.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest

from doctor import (
    DoctorConfig,
    IngestError,
    Severity,
    _queue_ingest,
    _repair_plan,
    _repair_queue,
    scan,
)
from doctor._detectors import session_desync
from doctor._detectors._queue import same_host
from doctor._queue_ingest import copy_queue, load_queue, parse_queue_url
from doctor._repair import apply_queue_repairs, plan_repairs
from doctor._tables import Tables, new_connection
from executor import SessionInfo, open_queue
from executor._schema import SCHEMA_VERSION
from fixtures import queues
from tests.helpers import PG_URL, REPO, as_a_user, require_postgres


def _doctor(*args: str, tmp_path: Path, user: bool = False) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("RUNDOCTOR_")}
    base["XDG_STATE_HOME"] = str(tmp_path / "state")  # no default runs roots
    prefix = as_a_user() if user else []
    return subprocess.run(
        [*prefix, sys.executable, "-m", "doctor", *args],
        capture_output=True,
        text=True,
        env={**base, "COLUMNS": "100", "PYTHONPATH": str(REPO)},
        cwd=REPO,
        check=False,
        timeout=120,
    )


def _one_line(result: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    return line


@pytest.fixture
def queue_db(tmp_path: Path) -> Path:
    return queues.incident_05(host="elsewhere").write_sqlite(tmp_path / "queue.db")


@pytest.fixture
def hidden(queue_db: Path) -> Iterator[Path]:
    """The queue in a directory nobody but its owner may enter (mode 000)."""
    where = queue_db.parent / "private"
    where.mkdir()
    moved = queue_db.rename(where / "queue.db")
    where.chmod(0)
    try:
        yield moved
    finally:
        where.chmod(0o755)


# --- permissions --------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["scan"], ["repair"], ["repair", "--apply"], ["tickets"]])
def test_a_queue_in_a_directory_that_cannot_be_entered_is_one_line_and_exit_2(
    hidden: Path, tmp_path: Path, command: list[str]
) -> None:
    line = _one_line(_doctor(*command, "--db", str(hidden), tmp_path=tmp_path, user=True))
    assert "cannot be reached (Permission denied)" in line
    assert "permissions of its directories" in line


def test_a_queue_file_that_cannot_be_read_says_permission_denied(
    queue_db: Path, tmp_path: Path
) -> None:
    queue_db.chmod(0)
    try:
        line = _one_line(_doctor("scan", "--db", str(queue_db), tmp_path=tmp_path, user=True))
    finally:
        queue_db.chmod(0o644)
    assert "cannot be read (permission denied)" in line


# --- PostgreSQL URLs ----------------------------------------------------------------------------


def _pg_schema() -> Iterator[str]:
    require_postgres()
    schema = f"rd_hostile_{uuid.uuid4().hex[:12]}"
    queues.incident_05(host="elsewhere").write_postgres(PG_URL, schema)
    try:
        yield schema
    finally:
        import psycopg

        with psycopg.connect(PG_URL, autocommit=True) as con:
            con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


pg_schema = pytest.fixture(_pg_schema)


def _socketless(schema: str) -> str:
    """PG_URL with an empty host part, libpq's form for a local server: host etc. as query."""
    p = urlsplit(PG_URL)
    where = urlencode({"host": p.hostname or "", "port": p.port or 5432, "user": p.username or ""})
    return f"postgresql://{p.path}?{where}&schema={schema}"


def test_a_password_given_as_a_query_parameter_is_never_printed(tmp_path: Path) -> None:
    url = "postgresql://me@127.0.0.1:1/test?password=s3cret-q&sslmode=disable"
    with pytest.raises(IngestError, match="cannot connect") as info:
        load_queue(Tables(new_connection()), url)
    assert "s3cret" not in str(info.value) and "password=***" in str(info.value)
    result = _doctor("scan", "--db", url, tmp_path=tmp_path)
    assert "s3cret" not in _one_line(result)


def test_a_password_the_driver_repeats_in_its_message_is_hidden(tmp_path: Path) -> None:
    # libpq quotes the part of a URL it cannot parse: here, the password is in it.
    url = "postgresql:///test?host=127.0.0.1&password=s3cret-q&bogus=1"
    line = _one_line(_doctor("scan", "--db", url, tmp_path=tmp_path))
    assert "s3cret" not in line


def test_the_schema_shorthand_keeps_an_empty_host_part() -> None:
    source = parse_queue_url("postgresql:///queue?host=/run/postgresql&schema=q1")
    assert source.target == "postgresql:///queue?host=%2Frun%2Fpostgresql"
    assert source.schema == "q1"


@pytest.mark.postgres
@pytest.mark.parametrize("command", ["scan", "tickets"])
def test_a_url_with_an_empty_host_part_reads_the_queue(
    pg_schema: str, tmp_path: Path, command: str
) -> None:
    result = _doctor(command, "--db", _socketless(pg_schema), tmp_path=tmp_path)
    assert result.returncode in (0, 1), result.stderr
    assert "stale_lease" in result.stdout or "running" in result.stdout


@pytest.mark.postgres
def test_a_repair_plan_reads_a_url_with_an_empty_host_part(pg_schema: str, tmp_path: Path) -> None:
    url = _socketless(pg_schema)
    result = _doctor("repair", "--db", url, "--root", str(tmp_path), tmp_path=tmp_path)
    assert result.returncode in (0, 1), result.stderr
    assert "reclaim" in result.stdout


# --- locks --------------------------------------------------------------------------------------


def test_a_sqlite_writer_holding_its_lock_makes_the_read_give_up_in_one_line(
    queue_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_queue_ingest, "LOCK_TIMEOUT_S", 0.2)
    writer = sqlite3.connect(queue_db, isolation_level=None)
    writer.execute("PRAGMA journal_mode = DELETE")  # a writer outside WAL locks readers out
    writer.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        with pytest.raises(IngestError, match=r"held a lock on the queue for over 0\.2 s"):
            load_queue(Tables(new_connection()), str(queue_db))
        assert time.monotonic() - started < 5
    finally:
        writer.execute("ROLLBACK")
        writer.close()


@pytest.mark.postgres
def test_a_postgres_table_locked_by_a_migration_makes_the_read_give_up_not_hang(
    pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    monkeypatch.setattr(_queue_ingest, "LOCK_TIMEOUT_S", 0.5)
    with psycopg.connect(PG_URL) as migration:
        migration.execute(f'LOCK TABLE "{pg_schema}".ticket_events IN ACCESS EXCLUSIVE MODE')
        started = time.monotonic()
        with pytest.raises(IngestError, match=r"held a lock on the queue for over 0\.5 s"):
            load_queue(Tables(new_connection()), f"{PG_URL}?schema={pg_schema}")
        assert time.monotonic() - started < 10
        migration.rollback()


# --- workers on other hosts ---------------------------------------------------------------------


def test_a_full_host_name_in_another_domain_is_another_host() -> None:
    assert not same_host("build.east.example", "build.west.example")
    assert same_host("build", "build.west.example") and same_host("BUILD.lan.", "build.lan")


def test_repair_leaves_alone_the_live_lease_of_a_worker_on_a_namesake_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This host is build.west; the worker runs on build.east, where its pid may well live:
    # this host's process table says nothing about it, and its lease is fresh.
    for module in (session_desync, _repair_queue, _repair_plan):
        monkeypatch.setattr(module, "this_host", lambda: "build.west.example")
    now = 1_780_000_000.0
    db = tmp_path / "queue.db"
    with open_queue(db, clock=lambda: now) as queue:
        t = queue.enqueue("build", "/p/build.dot")
        remote = SessionInfo("rd-w1", pid=4_000_000, pgid=4_000_000, proc_start_time=1,
                             host="build.east.example")  # fmt: skip
        queue.claim("w1", lease_ttl_s=3600, session=remote)
        config = DoctorConfig(db=str(db), now=now + 5)
        plan = plan_repairs(scan(config), config)
        report = apply_queue_repairs(plan, config)
        assert all(r.outcome != "applied" for r in report.results), report.results
        after = queue.get(t.id)
    assert (after.status, after.lease_epoch) == ("claimed", 1)


# --- other schemas ------------------------------------------------------------------------------


def test_the_doctor_reads_the_executors_schema_version() -> None:
    assert _queue_ingest.QUEUE_SCHEMA_VERSION == SCHEMA_VERSION


def test_a_sqlite_queue_of_a_newer_schema_version_is_refused_in_one_line(
    queue_db: Path, tmp_path: Path
) -> None:
    con = sqlite3.connect(queue_db)
    con.execute("UPDATE schema_version SET version = 2")
    con.commit()
    con.close()
    before = queue_db.read_bytes()
    line = _one_line(_doctor("scan", "--db", str(queue_db), tmp_path=tmp_path))
    assert "has schema version 2; this doctor reads version 1" in line
    assert queue_db.read_bytes() == before


def test_a_sqlite_queue_without_a_schema_version_is_read_as_it_is(queue_db: Path) -> None:
    con = sqlite3.connect(queue_db)
    con.execute("DROP TABLE schema_version")
    con.commit()
    con.close()
    tables = Tables(new_connection())
    load_queue(tables, str(queue_db))
    assert tables.sql("SELECT count(*) FROM tickets")[0][0] > 0


@pytest.mark.postgres
def test_a_postgres_queue_of_a_newer_schema_version_is_refused(pg_schema: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as con:
        con.execute(f'UPDATE "{pg_schema}".schema_version SET version = 3')
    with pytest.raises(IngestError, match="has schema version 3; this doctor reads version 1"):
        load_queue(Tables(new_connection()), f"{PG_URL}?schema={pg_schema}")


# --- size ---------------------------------------------------------------------------------------


def test_a_scan_reads_the_queue_database_once(
    queue_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[str] = []
    real = _queue_ingest._read_sqlite

    def counting(*args: Any) -> None:
        reads.append("read")
        real(*args)

    monkeypatch.setattr(_queue_ingest, "_read_sqlite", counting)
    found = scan(DoctorConfig(db=str(queue_db), now=1_780_000_000.0)).findings
    assert reads == ["read"]
    assert any(f.code == "stale_lease" for f in found)


def test_the_queue_goes_into_duckdb_a_batch_at_a_time(
    queue_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_queue_ingest, "_BATCH", 3)
    sizes: list[int] = []
    real = _queue_ingest._insert

    def counting(tables: Tables, table: str, batch: Any) -> None:
        sizes.append(batch.num_rows)
        real(tables, table, batch)

    monkeypatch.setattr(_queue_ingest, "_insert", counting)
    tables = Tables(new_connection())
    load_queue(tables, str(queue_db))
    events = tables.sql("SELECT count(*) FROM ticket_events")[0][0]
    assert max(sizes) == 3 and sum(sizes) >= events > 3


def test_a_copy_of_the_queue_holds_the_same_rows(queue_db: Path) -> None:
    a, b = Tables(new_connection()), Tables(new_connection())
    load_queue(a, str(queue_db))
    copy_queue(a, b)
    for table in _queue_ingest.QUEUE_TABLES:
        query = f"SELECT * FROM {table} ORDER BY ALL"
        assert a.sql(query) == b.sql(query)


def test_repairing_many_leases_scans_the_queue_once_after_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = 1_780_000_000.0
    db = tmp_path / "queue.db"
    dead = SessionInfo("rd-w1", pid=99_999_999, pgid=99_999_999, proc_start_time=1, host="gone")
    with open_queue(db, clock=lambda: now - 7200) as queue:
        ids = [queue.enqueue(f"t{i}", "/p.dot").id for i in range(4)]
        for _ in ids:
            queue.claim("w1", lease_ttl_s=60, session=dead)
    scans: list[int] = []
    real = scan

    def counting(config: DoctorConfig) -> Any:
        scans.append(1)
        return real(config)

    monkeypatch.setattr(_repair_queue, "scan", counting)
    config = DoctorConfig(db=str(db), now=now)
    plan = plan_repairs(scan(config), config)
    report = apply_queue_repairs(plan, config)
    assert [r.outcome for r in report.results] == ["applied"] * 4
    assert len(scans) == 2  # before the actions, and once after them all
    for r in report.results:  # each action is credited with its own ticket's findings
        assert {ref.ticket_id for ref in r.resolved} == {r.action.target}
    assert report.remaining == () or all(ref.ticket_id is None for ref in report.remaining)


def test_the_terminal_shows_twenty_fleet_findings_of_a_code_and_counts_the_rest(
    tmp_path: Path,
) -> None:
    db = tmp_path / "queue.db"
    dead = SessionInfo("rd-w1", pid=99_999_999, pgid=99_999_999, proc_start_time=1, host="gone")
    with open_queue(db, clock=lambda: time.time() - 7200) as queue:
        for i in range(25):
            queue.enqueue(f"t{i}", "/p.dot")
            queue.claim("w1", lease_ttl_s=60, session=dead)
    result = _doctor("scan", "--db", str(db), tmp_path=tmp_path)
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert sum("stale_lease: ticket" in line for line in lines) == 20
    assert "  … and 5 more stale_lease (scan --json lists them all)" in lines
    listed = _doctor("scan", "--db", str(db), "--json", tmp_path=tmp_path)
    assert listed.stdout.count('"code": "stale_lease"') == 25


@pytest.mark.postgres
def test_a_server_that_drops_the_doctor_mid_read_is_one_line_and_the_queue_is_intact(
    pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    name = f"rd_doctor_{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(_queue_ingest, "_BATCH", 2)
    real = _queue_ingest._insert

    def then_drop(tables: Tables, table: str, batch: Any) -> None:
        real(tables, table, batch)
        # Only the doctor's own backend, from another connection: the server keeps running.
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s",
                (name,),
            )

    monkeypatch.setattr(_queue_ingest, "_insert", then_drop)
    url = f"{PG_URL}?schema={pg_schema}&application_name={name}"
    with pytest.raises(IngestError, match="cannot read queue") as info:
        load_queue(Tables(new_connection()), url)
    assert "\n" not in str(info.value)
    with psycopg.connect(PG_URL) as con:
        count = con.execute(f'SELECT count(*) FROM "{pg_schema}".tickets').fetchone()
    assert count is not None and count[0] == len(queues.incident_05(host="elsewhere").tickets)


# --- odd timestamps -----------------------------------------------------------------------------

_ODD_TIMES = {
    "infinite heartbeat": "last_heartbeat_at = 9e999",
    "minus infinite heartbeat": "last_heartbeat_at = -9e999",
    "heartbeat past year 9999": "last_heartbeat_at = 1e300",
    "heartbeat before year 1": "last_heartbeat_at = -1e300",
    "claim before year 1": "claimed_at = -1e13, last_heartbeat_at = NULL",
    "creation before year 1": "created_at = -1e13",
}


@pytest.mark.parametrize("assignment", _ODD_TIMES.values(), ids=list(_ODD_TIMES))
def test_a_lease_time_no_calendar_holds_neither_crashes_nor_breaks_the_json(
    queue_db: Path, tmp_path: Path, assignment: str
) -> None:
    con = sqlite3.connect(queue_db)
    con.execute(f"UPDATE tickets SET {assignment} WHERE status = 'running'")
    con.commit()
    con.close()
    before = queue_db.read_bytes()
    for command in (["scan", "--json"], ["repair"]):
        result = _doctor(*command, "--db", str(queue_db), tmp_path=tmp_path)
        assert result.returncode in (0, 1), result.stderr
        assert "Traceback" not in result.stderr and "internal error" not in result.stderr
        if "--json" in command:  # strict JSON: no NaN or Infinity for jq to choke on
            json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"JSON has {c}"))
    assert queue_db.read_bytes() == before


# --- clock skew ---------------------------------------------------------------------------------


def _lease_heartbeat_at(tmp_path: Path, heartbeat: float) -> Path:
    """A queue with one running lease whose worker recorded its heartbeat at ``heartbeat``."""
    db = tmp_path / "skew.db"
    with open_queue(db, clock=lambda: heartbeat) as queue:
        queue.enqueue("build", "/p.dot")
        queue.claim("w1", lease_ttl_s=60, session=SessionInfo("s", 4_000_000, 4_000_000, 1, "b"))
    return db


def _codes(db: Path, now: float) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for f in scan(DoctorConfig(db=str(db), now=now)).findings:
        out.setdefault(f.code, []).append(f)
    return out


def test_a_dead_worker_whose_clock_ran_an_hour_ahead_is_a_clock_skew(tmp_path: Path) -> None:
    now = 1_780_000_000.0
    codes = _codes(_lease_heartbeat_at(tmp_path, now + 3600), now)
    # Its lease cannot be aged: stale_lease is silent, however long the worker has been dead.
    assert "stale_lease" not in codes
    (skew,) = codes["clock_skew"]
    assert skew.severity == Severity.WARNING and skew.repair is None
    assert skew.evidence["ahead_s"] == 3600.0 and skew.evidence["worker"] == "w1"
    assert "60 min ahead of the queue's clock" in skew.summary


def test_a_worker_a_little_ahead_is_within_the_stale_threshold(tmp_path: Path) -> None:
    now = 1_780_000_000.0
    assert "clock_skew" not in _codes(_lease_heartbeat_at(tmp_path, now + 120), now)


def test_milliseconds_recorded_as_seconds_are_a_clock_skew(tmp_path: Path) -> None:
    now = 1_780_000_000.0
    (skew,) = _codes(_lease_heartbeat_at(tmp_path, now * 1000), now)["clock_skew"]
    assert skew.evidence["last_heartbeat_at"] is None  # no calendar holds it


def test_a_queue_whose_path_is_not_utf8_is_read(tmp_path: Path) -> None:
    # Before: scan, metrics, watch, report --fleet and repair --db on a queue in a Latin-1
    # directory ended in "internal error … UnicodeEncodeError", exit 70: the file URI was
    # quoted from the path's text; the executor's own commands read it.
    where = tmp_path / os.fsdecode(b"caf\xe9")
    where.mkdir()
    db = queues.incident_05(host="elsewhere").write_sqlite(where / "queue.db")
    for args in (("scan", "--json"), ("metrics",), ("repair", "--json")):
        done = _doctor(*args, "--db", str(db), tmp_path=tmp_path)
        assert done.returncode in (0, 1), done.stderr
    scan = json.loads(_doctor("scan", "--json", "--db", str(db), tmp_path=tmp_path).stdout)
    assert any(f["code"] == "stale_lease" for f in scan["findings"]), scan["findings"]
