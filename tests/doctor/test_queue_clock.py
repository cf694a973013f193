"""The doctor judges a PostgreSQL queue at the queue's clock: the database server's.

Every lease time of a PostgreSQL queue is stamped in the server's clock (``executor._clocks``),
so the doctor ages them at the server's time, read in the snapshot it reads the rows from, not
at its own host's. A doctor whose clock runs a minute ahead of the server (twelve times the
stale-lease threshold used here) reported a live lease as ``stale_lease`` and ``repair
--apply`` reclaimed it; one a minute behind reported ``clock_skew`` for every live lease. Real
worker processes, the real server, the doctor's clock injected into the library call
(``DoctorConfig.clock``); SQLite and a pinned ``now`` keep the doctor's clock as given.
"""

from __future__ import annotations

import contextlib
import io
import json
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from rich.console import Console

from doctor import DoctorConfig, scan
from doctor._metrics import fleet_metrics
from doctor._queue_ingest import load_queue
from doctor._render import render_scan
from doctor._repair import apply_queue_repairs, plan_repairs
from doctor._tables import Tables, new_connection
from doctor._watch import WatchConfig, watch
from executor import ExecutorConfig, Queue, SessionInfo, Ticket, open_queue
from tests.executor.test_queue_clock import _spawn_worker, _wait, _waiting_pipeline
from tests.helpers import PG_URL, require_postgres

#: How far the doctor's clock is off from the server's: far more than the thresholds below.
SKEW_S = 60.0
#: The doctor's stale-lease threshold (``DoctorConfig.stale_lease_s``) in these tests.
STALE_S = 5.0
#: A session on another host: its pid cannot be looked at from here, only its lease.
ELSEWHERE = SessionInfo("rd-w1", pid=4242, pgid=4242, proc_start_time=1, host="elsewhere")
#: How long ago the dead lease's worker died, in the server's clock: its 30 s lease ended
#: 20 s ago, less than the doctor's clock is off.
DIED_S = 50.0
#: The findings a clock decides (``session_desync`` says ``other_host`` of such a lease).
QUEUE_CODES = {"stale_lease", "clock_skew", "no_progress_lease"}


def _offset(seconds: float) -> Callable[[], float]:
    return lambda: time.time() + seconds


CLOCKS = pytest.mark.parametrize("skew", [SKEW_S, -SKEW_S], ids=["doctor-ahead", "doctor-behind"])


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A queue URL in a fresh schema (tests/executor/conftest.py's pattern)."""
    require_postgres()
    schema = f"rd_qclock_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, connect_timeout=3, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def _server_now() -> float:
    with psycopg.connect(PG_URL, autocommit=True) as con:
        row = con.execute("SELECT extract(epoch FROM clock_timestamp())::float8").fetchone()
    assert row is not None
    return float(row[0])


def _queue_findings(config: DoctorConfig) -> list[tuple[str, str | None]]:
    result = scan(config)
    return sorted(
        (f.code, f.evidence.get("ticket_id")) for f in result.findings if f.code in QUEUE_CODES
    )


@contextlib.contextmanager
def _worker_running(
    pg_url: str, tmp_path: Path, clock: str = "time.time()"
) -> Iterator[tuple[Queue, Ticket]]:
    """A real worker process (its clock the Python expression ``clock``) running a ticket
    whose stage waits; stopped at the end."""
    go = tmp_path / "go"
    queue = open_queue(pg_url)
    ticket = queue.enqueue("wait", str(_waiting_pipeline(tmp_path, go)))
    worker = _spawn_worker(pg_url, tmp_path / "runs", clock)
    try:
        _wait(lambda: queue.get(ticket.id).status == "running")
        yield queue, queue.get(ticket.id)
    finally:
        go.touch()
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
        try:
            worker.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.communicate()
        queue.close()


@pytest.fixture
def running(pg_url: str, tmp_path: Path) -> Iterator[tuple[Queue, Ticket]]:
    """A real worker process (this host's clock) running a ticket whose stage waits."""
    with _worker_running(pg_url, tmp_path) as both:
        yield both


@pytest.mark.postgres
@CLOCKS
def test_a_doctor_whose_clock_is_off_reports_nothing_of_a_real_workers_live_lease(
    running: tuple[Queue, Ticket], pg_url: str, skew: float
) -> None:
    queue, ticket = running
    beat = ticket.last_heartbeat_at
    _wait(lambda: queue.get(ticket.id).last_heartbeat_at != beat)  # it heartbeats
    config = DoctorConfig(db=pg_url, clock=_offset(skew), stale_lease_s=STALE_S)
    assert not config.now_pinned
    result = scan(config)
    assert [f.code for f in result.findings if f.code in QUEUE_CODES] == []
    # The doctor says its clock is off, once, in the fleet section.
    way = "ahead of" if skew > 0 else "behind"
    (note,) = result.fleet["queue_notes"]
    assert f"this host's clock is 60 s {way} the queue's database server" in note, note
    assert "leases are judged at the server's clock" in note
    out = io.StringIO()
    render_scan(Console(file=out, width=300), result, verbose=False)
    assert f"queue clock: this host's clock is 60 s {way}" in out.getvalue()
    assert queue.get(ticket.id).status == "running"


def _dead_and_live(url: str) -> tuple[str, str]:
    """Two leases stamped by the executor (the server's clock), both held on another host:
    one whose worker died 50 s ago (its heartbeat and lease end moved back by as much, in the
    server's clock: its lease ended 20 s ago, less than the doctor's clock is off), one
    heartbeating now with a 30 s lease."""
    with open_queue(url) as q:
        dead = q.enqueue("dead", "/p/dead.dot")
        lease = q.claim("w-dead", lease_ttl_s=30, session=ELSEWHERE)
        assert lease is not None and lease.ticket.id == dead.id
        live = q.enqueue("live", "/p/live.dot")
        held = q.claim("w-live", lease_ttl_s=30, session=ELSEWHERE)
        assert held is not None and held.ticket.id == live.id
        q.heartbeat(held, lease_ttl_s=30)
    with psycopg.connect(url, autocommit=True) as con:
        con.execute(
            "UPDATE tickets SET claimed_at = claimed_at - %s,"
            " last_heartbeat_at = coalesce(last_heartbeat_at, claimed_at) - %s,"
            " lease_expires_at = lease_expires_at - %s, updated_at = updated_at - %s"
            " WHERE id = %s",
            (DIED_S, DIED_S, DIED_S, DIED_S, dead.id),
        )
    return dead.id, live.id


@pytest.mark.postgres
@CLOCKS
def test_repair_apply_on_a_doctor_whose_clock_is_off_reclaims_the_dead_lease_only(
    pg_url: str, tmp_path: Path, skew: float
) -> None:
    dead, live = _dead_and_live(pg_url)
    config = DoctorConfig(db=pg_url, clock=_offset(skew), stale_lease_s=STALE_S)
    assert _queue_findings(config) == [("stale_lease", dead)]
    plan = plan_repairs(scan(config), config)
    assert [(a.kind, a.target, a.lease_epoch) for a in plan] == [("reclaim", dead, 1)]
    report = apply_queue_repairs(
        plan, config, journal=tmp_path, executor_config=ExecutorConfig(claim_grace_s=0.0)
    )
    (result,) = report.results
    assert result.outcome == "applied", result.message
    assert [r.code for r in report.remaining if r.code in QUEUE_CODES] == []
    with open_queue(pg_url) as q:
        gone, kept = q.get(dead), q.get(live)
        kept_events = [e.event for e in q.events(live)]
    assert (gone.status, gone.lease_epoch, gone.crash_recoveries) == ("todo", 2, 1)
    assert (kept.status, kept.lease_epoch) == ("claimed", 1)
    assert "reclaimed" not in kept_events


@pytest.mark.postgres
def test_a_pinned_now_is_used_as_given_for_a_postgresql_queue(pg_url: str) -> None:
    dead, live = _dead_and_live(pg_url)
    now = _server_now()
    # Pinned a minute ahead of the server: the live lease is aged at the pinned time.
    ahead = DoctorConfig(db=pg_url, now=now + SKEW_S, stale_lease_s=STALE_S)
    assert ahead.now_pinned
    assert _queue_findings(ahead) == [("stale_lease", dead), ("stale_lease", live)]
    # Pinned a minute behind: both heartbeats lie ahead of it.
    behind = DoctorConfig(db=pg_url, now=now - SKEW_S, stale_lease_s=STALE_S)
    assert set(_queue_findings(behind)) == {("clock_skew", dead), ("clock_skew", live)}


@CLOCKS
def test_a_sqlite_queue_is_judged_at_the_doctors_own_clock(tmp_path: Path, skew: float) -> None:
    db = tmp_path / "queue.db"
    with open_queue(db) as q:  # stamped with this machine's clock, the queue's one clock
        t = q.enqueue("live", "/p/live.dot")
        q.claim("w", lease_ttl_s=30, session=ELSEWHERE)
    config = DoctorConfig(db=str(db), clock=_offset(skew), stale_lease_s=STALE_S)
    result = scan(config)
    found = sorted(
        (f.code, f.evidence.get("ticket_id")) for f in result.findings if f.code in QUEUE_CODES
    )
    assert found == [("stale_lease" if skew > 0 else "clock_skew", t.id)]
    assert "queue_notes" not in result.fleet


@pytest.mark.postgres
def test_the_queue_is_read_with_the_servers_time_of_its_snapshot(pg_url: str) -> None:
    with open_queue(pg_url) as q:
        q.enqueue("x", "/p.dot")
    tables = Tables(new_connection())
    local = _offset(-2 * SKEW_S)
    before = _server_now()
    server = load_queue(tables, pg_url, local)
    after = _server_now()
    assert server is not None
    at, offset = server
    assert before <= at <= after
    assert 2 * SKEW_S - 1 < offset.offset_s < 2 * SKEW_S + 1 and offset.skewed()


#: How far the worker's and the doctor's host (one clock) are off from the server's.
HOSTS_OFF_S = 600.0
#: How long before the run began the lease was claimed, in the server's clock.
CLAIMED_BEFORE_S = 100.0


def _lease_findings(config: DoctorConfig) -> list[str]:
    return [f.code for f in scan(config).findings if f.code == "no_progress_lease"]


@pytest.mark.postgres
@pytest.mark.parametrize("skew", [HOSTS_OFF_S, -HOSTS_OFF_S], ids=["hosts-ahead", "hosts-behind"])
def test_a_runs_progress_is_compared_with_its_lease_in_one_clock(
    pg_url: str, tmp_path: Path, skew: float
) -> None:
    # The run's events are stamped by its worker (this host's clock), its lease by the server.
    # Before: compared as they were, a run progressing a moment ago whose host ran 10 min
    # behind the server was a no_progress_lease error (its events fell "before" the claim),
    # and a stuck run on a host 10 min ahead was never one (its last progress lay in the
    # future). Now the run's times move by the offset measured when the rows are read.
    with _worker_running(pg_url, tmp_path, f"time.time() + {skew}") as (_, ticket):
        with psycopg.connect(pg_url, autocommit=True) as con:
            con.execute(
                "UPDATE tickets SET claimed_at = claimed_at - %s WHERE id = %s",
                (CLAIMED_BEFORE_S, ticket.id),
            )
        common = {"roots": (tmp_path / "runs",), "db": pg_url, "clock": _offset(skew)}
        patient = DoctorConfig(**common, stale_lease_s=30.0, stall_timeout_s=30.0)
        assert _lease_findings(patient) == []
        # Its one stage waits: no progress after it began. Past a 2 s stall it is found.
        strict = DoctorConfig(**common, stale_lease_s=30.0, stall_timeout_s=2.0)
        _wait(lambda: _lease_findings(strict) == ["no_progress_lease"], timeout=30)


@pytest.mark.postgres
def test_the_watch_logs_what_the_scan_says_of_the_queues_clock_once(
    pg_url: str, tmp_path: Path
) -> None:
    # Before: only the roots' notes were logged; a watch on a host a minute off said nothing.
    with open_queue(pg_url) as q:
        q.enqueue("x", "/p.dot")
    lines: list[str] = []
    passes: list[float] = []

    def stop(interval: float) -> bool:
        passes.append(interval)
        return len(passes) == 2

    watch(
        DoctorConfig(db=pg_url, clock=_offset(SKEW_S), stale_lease_s=STALE_S),
        WatchConfig(state_path=tmp_path / "watch.json", interval_s=0.0),
        emit=lambda _: None,
        log=lines.append,
        stop=stop,
    )
    (line,) = [x for x in lines if "queue clock:" in x]
    assert line.startswith("watch pass 1: queue clock: this host's clock is 60 s ahead of the")


@pytest.mark.postgres
@pytest.mark.parametrize("skew", [2 * 86400.0, -2 * 86400.0], ids=["doctor-ahead", "doctor-behind"])
def test_the_metrics_sum_a_queue_up_at_the_servers_time(pg_url: str, skew: float) -> None:
    # Before: summed up at the doctor's time, a host two days ahead counted no ticket done in
    # the last day, and one two days behind saw no progress ever (every event in its future).
    with open_queue(pg_url) as q:
        q.enqueue("x", "/p.dot")
        lease = q.claim("w", lease_ttl_s=30, session=ELSEWHERE)
        assert lease is not None
        q.complete(lease, result={"status": "success"})
    config = DoctorConfig(db=pg_url, clock=_offset(skew))
    doc = json.loads(fleet_metrics(config, as_json=True))
    value = {f["name"]: f["samples"][0]["value"] for f in doc["families"] if f["samples"]}
    assert value["rundoctor_queue_tickets_done_last_day"] == 1
    # The last progress is moved into this host's clock: a moment ago, by it.
    idle = value["rundoctor_fleet_idle_seconds"]
    assert 0 <= idle < 30, idle
    assert value["rundoctor_fleet_last_progress_timestamp_seconds"] <= config.now
