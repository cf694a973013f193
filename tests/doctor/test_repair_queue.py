"""``doctor repair --db``: ``reclaim`` and ``reconcile`` on real queues built with
``executor.open_queue`` (SQLite; one test on PostgreSQL), through the reaper's own functions.

Processes are real: a dead owner is a pid above Linux's ``PID_MAX_LIMIT``, a live session or an
orphaned stage is a ``sleep`` in its own process group, killed by the test if it survives.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from doctor import DoctorConfig, UsageError, scan
from doctor._errors import IngestError
from doctor._journal import JOURNAL, read_journal
from doctor._repair import (
    Action,
    FindingRef,
    QueueRepairReport,
    apply_queue_repairs,
    apply_repairs,
    plan_repairs,
    queue_journal_dir,
)
from executor import ExecutorConfig, Queue, SessionInfo, open_queue
from executor._reaper import reap
from fixtures import queues
from rundoctor.liveness import start_ticks as proc_start_ticks
from tests.executor.private_postgres import PrivatePostgres
from tests.helpers import PG_URL, require_postgres, run_doctor

NOW = 1_780_000_000.0  # 2026-05-28T20:26:40Z
DEAD_PID = 99_999_999  # above PID_MAX_LIMIT (2**22): never a live process
HOST = socket.gethostname()


class Clock:
    """The queue's clock, moved by hand; the doctor's ``now`` follows it."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _session(pid: int, name: str = "rd-w1") -> SessionInfo:
    return SessionInfo(name, pid=pid, pgid=pid, proc_start_time=proc_start_ticks(pid), host=HOST)


DEAD = SessionInfo("rd-w1", pid=DEAD_PID, pgid=DEAD_PID, proc_start_time=1, host=HOST)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "queues" / "queue.db"


@pytest.fixture
def queue(db: Path, clock: Clock) -> Iterator[Queue]:
    db.parent.mkdir()
    q = open_queue(db, clock=clock)
    try:
        yield q
    finally:
        q.close()


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A live process leading its own process group (a session, or a stage attempt)."""
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _config(db: str | Path, clock: Clock, **kw: object) -> DoctorConfig:
    return DoctorConfig(db=str(db), now=clock.now, **kw)  # type: ignore[arg-type]


def _plan(db: str | Path, clock: Clock, **kw: object) -> tuple[DoctorConfig, list[Action]]:
    config = _config(db, clock, **kw)
    return config, plan_repairs(scan(config), config)


def _codes(refs: tuple[FindingRef, ...]) -> set[tuple[str, str | None]]:
    return {(r.code, r.ticket_id) for r in refs}


def _lost_run(tmp_path: Path, stage: subprocess.Popen[bytes]) -> Path:
    """A run directory whose one stage attempt (``stage``) still runs."""
    run = tmp_path / "runs" / "run-1"
    (run / "build").mkdir(parents=True)
    (run / "progress.ndjson").write_text('{"event": "run_started", "ts": "2026-05-28T20:16Z"}\n')
    info = {"pid": stage.pid, "pgid": stage.pid, "pid_start_time": proc_start_ticks(stage.pid)}
    (run / "build" / "process.json").write_text(json.dumps(info))
    return run


# ---------------------------------------------------------------- reclaim


def test_reclaim_kills_orphaned_stages_terminalizes_the_run_and_requeues(
    tmp_path: Path, db: Path, queue: Queue, clock: Clock, sleeper: subprocess.Popen[bytes]
) -> None:
    t = queue.enqueue("build", "/p/build.dot")
    lease = queue.claim("w1", lease_ttl_s=60, session=DEAD)
    assert lease is not None
    run = _lost_run(tmp_path, sleeper)
    queue.start(lease, run_id="run-1", run_path=run, session=DEAD)
    clock.now += 600  # no heartbeat for ten minutes, the lease expired, the owner is dead

    config, plan = _plan(db, clock)
    # stale_lease and session_desync (dead_session) both name it: one action, with the epoch.
    assert [(a.kind, a.target, a.lease_epoch, a.blocked) for a in plan] == [
        ("reclaim", t.id, 1, None)
    ]
    report = apply_queue_repairs(plan, config)
    (result,) = report.results
    assert result.outcome == "applied", result.message
    assert "is dead" in result.message and "final.json" in result.message

    after = queue.get(t.id)
    assert (after.status, after.lease_epoch, after.crash_recoveries) == ("todo", 2, 1)
    assert (after.pid, after.session_name, after.lease_owner) == (None, None, None)
    assert sleeper.wait(timeout=10) == -signal.SIGKILL  # the orphaned stage group was killed
    final = json.loads((run / "final.json").read_text())
    assert final["status"] == "fail" and "lost worker" in final["failure_reason"]
    assert final["repaired_by"]["tool"] == "executor.reaper"
    assert [e.event for e in queue.events(t.id)][-1] == "reclaimed"

    assert {("stale_lease", t.id), ("session_desync", t.id)} <= _codes(result.resolved)
    assert result.introduced == ()
    assert isinstance(report, QueueRepairReport) and report.exit_code == 0
    assert report.journal == str(db.parent / JOURNAL)
    (entry,) = read_journal(db.parent)
    assert (entry.action, entry.target, entry.outcome) == ("reclaim", t.id, "applied")
    assert entry.before_sha256 and entry.after_sha256
    assert entry.before_sha256 != entry.after_sha256
    line = json.loads((db.parent / JOURNAL).read_text())
    assert line["queue"] == str(db) and line["lease_epoch"] == 1
    assert line["before"] == {"status": "running", "lease_epoch": 1}
    assert line["after"] == {"status": "todo", "lease_epoch": 2}


def test_a_second_apply_is_a_noop_and_writes_nothing(db: Path, queue: Queue, clock: Clock) -> None:
    t = queue.enqueue("build", "/p/build.dot")
    queue.claim("w1", lease_ttl_s=60, session=DEAD)
    clock.now += 600
    config, plan = _plan(db, clock)
    apply_queue_repairs(plan, config)
    journal, events = (db.parent / JOURNAL).read_bytes(), queue.events(t.id)

    (again,) = apply_queue_repairs(plan, config).results
    assert again.outcome == "noop"
    assert "already reclaimed" in again.message and "epoch 1" in again.message
    assert (db.parent / JOURNAL).read_bytes() == journal
    assert queue.events(t.id) == events
    assert _plan(db, clock)[1] == []  # the repaired queue plans nothing more


def test_a_lease_the_reaper_reclaimed_first_is_a_noop(db: Path, queue: Queue, clock: Clock) -> None:
    t = queue.enqueue("build", "/p/build.dot")
    queue.claim("w1", lease_ttl_s=60, session=DEAD)
    clock.now += 600
    config, plan = _plan(db, clock)
    [reclaimed] = reap(queue, ExecutorConfig(), host=HOST, clock=clock)
    assert reclaimed.status == "todo"

    report = apply_queue_repairs(plan, config)
    (result,) = report.results
    assert result.outcome == "noop" and "already reclaimed" in result.message
    assert queue.get(t.id).lease_epoch == 2  # not reclaimed twice
    assert report.exit_code == 0
    assert not (db.parent / JOURNAL).exists()


def test_reclaim_refuses_when_the_worker_heartbeats_again(
    db: Path, queue: Queue, clock: Clock
) -> None:
    t = queue.enqueue("build", "/p/build.dot")
    lease = queue.claim("w1", lease_ttl_s=60, session=_session(os.getpid()))
    assert lease is not None
    clock.now += 600  # stale and expired: planned
    config, plan = _plan(db, clock)
    assert [(a.kind, a.blocked) for a in plan] == [("reclaim", None)]
    queue.heartbeat(lease, lease_ttl_s=3600)  # ... but the worker was only slow

    report = apply_queue_repairs(plan, config)
    (result,) = report.results
    assert result.outcome == "refused"
    assert "no longer looks lost" in result.message and "is alive" in result.message
    assert (queue.get(t.id).status, queue.get(t.id).lease_epoch) == ("claimed", 1)
    assert report.exit_code == 1
    (entry,) = read_journal(db.parent)
    assert entry.outcome == "refused" and entry.before_sha256 == entry.after_sha256


def test_reclaim_refuses_a_lease_that_ended_otherwise(db: Path, queue: Queue, clock: Clock) -> None:
    t = queue.enqueue("build", "/p/build.dot")
    lease = queue.claim("w1", lease_ttl_s=60, session=DEAD)
    assert lease is not None
    clock.now += 600
    config, plan = _plan(db, clock)
    queue.complete(lease, result={"status": "success"})  # the worker finished after all

    (result,) = apply_queue_repairs(plan, config).results
    assert result.outcome == "refused"
    assert "no longer holds the lease of epoch 1" in result.message and "done" in result.message
    assert queue.get(t.id).status == "done"


def test_a_dead_session_is_reclaimed_at_its_epoch_without_waiting_for_expiry(
    db: Path, queue: Queue, clock: Clock
) -> None:
    t = queue.enqueue("build", "/p/build.dot")
    queue.claim("w1", lease_ttl_s=3600, session=DEAD)
    clock.now += 5  # neither stale nor expired: only session_desync (dead_session) names it
    config, plan = _plan(db, clock)
    ((action),) = plan
    # session_desync carries the lease epoch: the reclaim compares-and-sets on it.
    assert (action.kind, action.finding.code, action.lease_epoch) == (
        "reclaim",
        "session_desync",
        1,
    )
    assert (action.worker, action.pid) == ("w1", DEAD_PID)
    (result,) = apply_queue_repairs(plan, config).results
    assert result.outcome == "applied", result.message
    assert queue.get(t.id).status == "todo"


def test_the_breaker_stops_a_reclaim_that_keeps_being_undone(
    db: Path, queue: Queue, clock: Clock
) -> None:
    t = queue.enqueue("build", "/p/build.dot")
    for _ in range(3):
        queue.claim("w1", lease_ttl_s=3600, session=DEAD)  # a worker that dies at once, again
        config, plan = _plan(db, clock)
        (result,) = apply_queue_repairs(plan, config).results
        assert result.outcome == "applied", result.message
        clock.now += 60
    queue.claim("w1", lease_ttl_s=3600, session=DEAD)
    config, plan = _plan(db, clock)
    report = apply_queue_repairs(plan, config)
    (stopped,) = report.results
    assert stopped.outcome == "breaker"
    assert "tried 3 times" in stopped.message and "incident 02" in stopped.message
    assert queue.get(t.id).status == "claimed"  # not reclaimed a fourth time
    assert report.exit_code == 1
    assert [e.outcome for e in read_journal(db.parent)] == ["applied"] * 3 + ["breaker"]
    later = _config(db, Clock(clock.now + 25 * 3600))
    (again,) = apply_queue_repairs(plan, later).results
    assert again.outcome == "applied"  # tries older than the window stop counting


# ---------------------------------------------------------------- reconcile


def test_a_live_session_of_a_failed_ticket_needs_a_person(
    db: Path, queue: Queue, clock: Clock, sleeper: subprocess.Popen[bytes]
) -> None:
    t = queue.enqueue("build", "/p/build.dot")
    lease = queue.claim("w1", lease_ttl_s=60, session=_session(sleeper.pid))
    assert lease is not None
    queue.fail(lease, reason="exit 1", retryable=False)  # marked failed; the session lives on
    config, plan = _plan(db, clock)
    (action,) = plan
    assert (action.kind, action.target) == ("reconcile", t.id)
    assert action.blocked is not None and action.blocked.startswith("needs a person")
    row, events = queue.get(t.id), queue.events(t.id)

    report = apply_queue_repairs(plan, config)
    (result,) = report.results
    assert result.outcome == "refused"
    assert result.message.startswith("needs a person") and "kills nothing" in result.message
    assert f"pid {sleeper.pid}" in result.message
    assert sleeper.poll() is None  # nothing was killed
    assert queue.get(t.id) == row and queue.events(t.id) == events  # the row cannot change
    assert report.exit_code == 1
    (entry,) = read_journal(db.parent)
    assert (entry.action, entry.outcome) == ("reconcile", "refused")
    assert entry.message == result.message


def test_reconcile_reclaims_a_leased_ticket_whose_pid_is_dead(
    db: Path, queue: Queue, clock: Clock
) -> None:
    t = queue.enqueue("build", "/p/build.dot")
    queue.claim("w1", lease_ttl_s=3600, session=DEAD)
    ref = FindingRef("session_desync", "warning", "", None, "test", ticket_id=t.id)
    action = Action("reconcile", t.id, ref, "the record disagrees with the process table")
    (result,) = apply_queue_repairs([action], _config(db, clock)).results
    assert result.outcome == "applied", result.message
    assert (queue.get(t.id).status, queue.get(t.id).lease_epoch) == ("todo", 2)


def test_reconcile_of_a_record_that_agrees_now_is_a_noop(
    db: Path, queue: Queue, clock: Clock, sleeper: subprocess.Popen[bytes]
) -> None:
    t = queue.enqueue("build", "/p/build.dot")
    lease = queue.claim("w1", lease_ttl_s=60, session=_session(sleeper.pid))
    assert lease is not None
    queue.fail(lease, reason="exit 1", retryable=False)
    config, plan = _plan(db, clock)
    os.killpg(sleeper.pid, signal.SIGKILL)  # a person stopped it
    sleeper.wait()
    (result,) = apply_queue_repairs(plan, config).results
    assert result.outcome == "noop" and "no longer runs" in result.message
    assert queue.get(t.id).status == "failed"


# ---------------------------------------------------------------- boundaries


def test_a_run_directory_repair_refuses_a_queue_action(tmp_path: Path) -> None:
    run = tmp_path / "run1"
    run.mkdir()
    (run / "progress.ndjson").write_text("")
    ref = FindingRef("stale_lease", "error", "", None, "x", ticket_id="t-0")
    action = Action("reclaim", "t-0", ref, "x", lease_epoch=1)
    (result,) = apply_repairs([action], DoctorConfig(now=NOW), run_path=run).results
    assert result.outcome == "refused" and "--db" in result.message


def test_where_the_queue_journal_lives(tmp_path: Path) -> None:
    sqlite = DoctorConfig(db=str(tmp_path / "q.db"))
    assert queue_journal_dir(sqlite) == tmp_path.resolve()
    (tmp_path / "j").mkdir()
    assert queue_journal_dir(sqlite, tmp_path / "j" / JOURNAL) == (tmp_path / "j").resolve()
    with pytest.raises(UsageError, match="does not exist"):
        queue_journal_dir(sqlite, tmp_path / "nope")
    pg = DoctorConfig(db=PG_URL)
    with pytest.raises(UsageError, match="--journal"):
        queue_journal_dir(pg)
    assert queue_journal_dir(DoctorConfig(db=PG_URL, roots=(tmp_path,))) == tmp_path.resolve()
    with pytest.raises(UsageError, match=":memory:"):
        queue_journal_dir(DoctorConfig(db=":memory:"))


# ---------------------------------------------------------------- the CLI


def _doctor(*args: object) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RUNDOCTOR_DB", "RUNDOCTOR_ROOTS")}
    env["XDG_STATE_HOME"] = str(Path(str(args[-1])).parent / "state")  # no default roots
    return subprocess.run(
        [sys.executable, "-m", "doctor", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )


def test_doctor_repair_db_plans_then_applies(tmp_path: Path) -> None:
    db = tmp_path / "queue.db"
    with open_queue(db) as q:  # real time: the CLI's clock
        t = q.enqueue("build", "/p/build.dot")
        q.claim("w1", lease_ttl_s=3600, session=DEAD)
    dry = _doctor("repair", "--db", db)
    assert dry.returncode == 1, dry.stderr  # an error-level finding until applied
    assert f"reclaim: take ticket {t.id}'s lease back" in dry.stdout and "--apply" in dry.stdout
    assert not (tmp_path / JOURNAL).exists()

    done = _doctor("repair", "--apply", "--json", "--db", db)
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(done.stdout)
    assert data["schema"] == "rundoctor.repair/1" and data["applied"] is True
    assert data["queue"] == str(db) and data["journal"] == str(tmp_path.resolve() / JOURNAL)
    assert [r["outcome"] for r in data["report"]["results"]] == ["applied"]
    with open_queue(db) as q:
        assert q.get(t.id).status == "todo"
    nothing = _doctor("repair", "--apply", "--db", db)
    assert nothing.returncode == 0 and "0 at error or above" in nothing.stdout


def test_doctor_repair_wants_a_run_or_a_queue(tmp_path: Path) -> None:
    both = _doctor("repair", "--run-id", "r1", "--db", tmp_path / "queue.db")
    neither = _doctor("repair", "--root", tmp_path)
    for done in (both, neither):
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert "--db URL" in done.stderr


# ---------------------------------------------------------------- PostgreSQL


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh schema (tests/executor/conftest.py's pattern); skipped locally, failed under
    ``CI=true``, when the server cannot be reached."""
    require_postgres()
    with psycopg.connect(PG_URL, connect_timeout=3, autocommit=True) as admin:
        schema = f"rd_repair_{uuid.uuid4().hex[:12]}"
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield schema
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.mark.postgres
def test_reclaim_on_postgresql_journals_where_it_is_told(
    tmp_path: Path, clock: Clock, pg_schema: str
) -> None:
    url = f"{PG_URL}?options=-csearch_path%3D{pg_schema}"
    with open_queue(url, clock=clock, server_clock=False) as q:
        t = q.enqueue("build", "/p/build.dot")
        q.claim("w1", lease_ttl_s=60, session=DEAD)
    clock.now += 600
    # The doctor's ?schema= shorthand: the repair hands the executor libpq's search_path.
    config, plan = _plan(f"{PG_URL}?schema={pg_schema}", clock)
    assert [(a.kind, a.lease_epoch) for a in plan] == [("reclaim", 1)]
    journal = tmp_path / "journal"
    journal.mkdir()
    report = apply_queue_repairs(plan, config, journal=journal)
    (result,) = report.results
    assert result.outcome == "applied", result.message
    assert report.journal == str(journal.resolve() / JOURNAL)
    with open_queue(url, clock=clock, server_clock=False) as q:
        after = q.get(t.id)
    assert (after.status, after.lease_epoch, after.crash_recoveries) == ("todo", 2, 1)
    (again,) = apply_queue_repairs(plan, config, journal=journal).results
    assert again.outcome == "noop"
    assert [e.outcome for e in read_journal(journal)] == ["applied"]


def _dead_leases(
    pg: PrivatePostgres, clock: Clock, n: int
) -> tuple[str, DoctorConfig, list[Action]]:
    """``n`` tickets leased by a dead worker, in a new schema on the private cluster (its
    tests share one database), ten minutes later: the executor's URL, the doctor's config and
    the plan, one reclaim each."""
    schema = f"rd_repair_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg.url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    url = f"{pg.url}?options=-csearch_path%3D{schema}"
    with open_queue(url, clock=clock, server_clock=False) as q:
        ids = [q.enqueue(f"t{i}", "/p/t.dot").id for i in range(n)]
        for i in range(n):
            q.claim(f"w{i}", lease_ttl_s=60, session=DEAD)
    clock.now += 600
    config, plan = _plan(f"{pg.url}?schema={schema}", clock)
    assert sorted(a.target for a in plan) == sorted(ids)
    return url, config, plan


def _at(point: str, fault: Callable[[], None]) -> Callable[[str], None]:
    """A repair's ``race_hook`` that brings ``fault`` at ``point`` (a ticket's id: as its
    reclaim is about to act; ``""``: once the queue is open)."""
    return lambda ticket_id: fault() if ticket_id == point else None


@pytest.mark.postgres
def test_a_queue_that_goes_away_mid_repair_still_reports_what_was_applied(
    tmp_path: Path, clock: Clock, private_pg: PrivatePostgres
) -> None:
    # The server stopped (`pg_ctl stop`) after the first of two reclaims committed. Before,
    # the scan that verifies the repairs failed and `doctor repair --db --apply` ended with
    # `error: cannot connect to the queue …` alone, exit 2: the reclaim it had made (and
    # journaled) was never reported, as if nothing had been done.
    url, config, plan = _dead_leases(private_pg, clock, 2)
    stop = _at(plan[1].target, private_pg.stop)  # as the second reclaim is about to act
    try:
        report = apply_queue_repairs(plan, config, journal=tmp_path, race_hook=stop)
    finally:
        private_pg.start()
    assert [r.outcome for r in report.results] == ["applied", "failed"], report.results
    assert report.unverified is not None
    assert report.unverified.startswith("the queue could not be scanned again"), report.unverified
    assert (report.remaining, report.exit_code) == ((), 2)
    assert report.to_json()["unverified"] == report.unverified
    assert [e.outcome for e in read_journal(tmp_path)] == ["applied", "failed"]
    with open_queue(url, clock=clock, server_clock=False) as q:
        done, left = q.get(plan[0].target), q.get(plan[1].target)
    assert (done.status, done.lease_epoch) == ("todo", 2)
    assert (left.status, left.lease_epoch) == ("claimed", 1)


@pytest.mark.postgres
def test_a_queue_that_goes_away_before_the_first_repair_is_one_error_and_changes_nothing(
    tmp_path: Path, clock: Clock, private_pg: PrivatePostgres
) -> None:
    # The connection dropped (a restart) once the repair had opened the queue, before it
    # looked for live holders: `internal error (a bug in rundoctor): QueueError …`, exit 70.
    url, config, plan = _dead_leases(private_pg, clock, 1)
    with pytest.raises(IngestError, match=r"failed before any repair was made: .*connection"):
        apply_queue_repairs(plan, config, journal=tmp_path, race_hook=_at("", private_pg.restart))
    assert read_journal(tmp_path) == []
    with open_queue(url, clock=clock, server_clock=False) as q:
        after = q.get(plan[0].target)
    assert (after.status, after.lease_epoch) == ("claimed", 1)


@pytest.mark.parametrize(
    ("make", "says"),
    [
        ("file", "is a file, not a directory"),
        ("symlink", "is a symlink"),
        ("none", "does not exist"),
    ],
)
def test_a_journal_that_is_no_directory_is_named_for_what_it_is(
    tmp_path: Path, make: str, says: str
) -> None:
    # Before: a regular file given as --journal "does not exist (or is a symlink)".
    journal = tmp_path / "journal"
    if make == "file":
        journal.write_text("")
    elif make == "symlink":
        (tmp_path / "real").mkdir()
        journal.symlink_to(tmp_path / "real")
    queues.incident_05(host="elsewhere").write_sqlite(tmp_path / "queue.db")
    done = run_doctor("repair", "--db", tmp_path / "queue.db", "--journal", journal, "--apply")
    assert done.returncode == 2, done
    assert done.stderr == (
        f"error: the repair journal's directory {str(journal)!r} {says}; pass --journal DIR\n"
    ), done.stderr
