"""Workers and the reaper survive what real infrastructure does (issue 15).

A database that restarts, goes away or stays locked past its busy timeout; a runs root that
fills up or turns read-only; a pipeline file deleted after enqueue; a worker killed half-way
through a line. Real databases (SQLite files, a private PostgreSQL cluster that the test
restarts and stops), real stages, real mounts.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import resource
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest

from executor import (
    ExecutorConfig,
    Queue,
    QueueError,
    SessionInfo,
    Ticket,
    TicketEvent,
    WorkerError,
    open_queue,
)
from executor._reaper import ReapFailed, reap
from executor._resilience import Fleet, logged, persist
from executor._runner import run_pipeline
from executor._stage_mark import STAGE_MARK
from executor._ticket_run import ROOT_REFUSED
from executor._worker import WorkerStats, run_worker
from rundoctor.liveness import process_alive
from tests.executor.conftest import Backend
from tests.executor.private_postgres import PrivatePostgres
from tests.helpers import ReaperSeam, tmpfs, wait_until
from tests.helpers import fill as fill_disk

#: Lease budgets long enough that no worker fences itself during a few seconds of outage.
PATIENT = ExecutorConfig(
    heartbeat_interval_s=0.5,
    heartbeat_misses=2,
    self_fence_s=20.0,
    lease_ttl_s=30.0,
    reaper_interval_s=0.3,
    claim_grace_s=0.0,
    stage_grace_s=0.5,
)


def _graph(tmp: Path, command: str, name: str = "p") -> Path:
    # Not ASCII-escaped: a DOT string knows no \u escape, so a clone under "clône" ran the
    # stage's command as "cl\u00f4ne", a path that is not there.
    path = tmp / f"{name}.dot"
    path.write_text(
        "digraph p { start [shape=Mdiamond]; exit [shape=Msquare];\n"
        f"  work [shape=parallelogram, tool_command={json.dumps(command, ensure_ascii=False)}];\n"
        "  start -> work -> exit }\n"
    )
    return path


def _wait(what: Callable[[], object], timeout: float = 60.0) -> None:
    wait_until(what, timeout)


def _dead_session() -> SessionInfo:
    """The session of a worker that is gone: a pid that exited, on this host."""
    import socket

    proc = subprocess.Popen(["true"])
    proc.wait()
    return SessionInfo("gone", proc.pid, proc.pid, 1, socket.gethostname())


class _WorkerThread:
    """``run_worker`` in a thread; keeps what it returned or raised."""

    def __init__(self, url: str, root: Path, config: ExecutorConfig, concurrency: int) -> None:
        self.stop = threading.Event()
        self.stats: WorkerStats | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(
            target=self._run, args=(url, root, config, concurrency), daemon=True
        )
        self.thread.start()

    def _run(self, url: str, root: Path, config: ExecutorConfig, concurrency: int) -> None:
        try:
            self.stats = run_worker(
                url, root, config, concurrency=concurrency, stop=self.stop, poll_s=0.1
            )
        except BaseException as exc:
            self.error = exc

    def finish(self, timeout: float = 60.0) -> None:
        self.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the worker did not stop"


def _completions(queue: Queue, ticket_id: str) -> list[str]:
    return [e.event for e in queue.events(ticket_id) if e.event in ("claimed", "completed")]


def _retried_lines(capsys: pytest.CaptureFixture[str], seen: list[str]) -> str:
    seen.append(capsys.readouterr().err)
    return "".join(seen)


# -- SQLite -----------------------------------------------------------------------------------

HOLDER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
open(sys.argv[2], "w").close()
time.sleep(float(sys.argv[3]))
conn.execute("ROLLBACK")
"""


def test_a_database_locked_past_the_busy_timeout_at_completion_neither_kills_the_slot_nor_runs_the_ticket_twice(  # noqa: E501
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "queue.db"
    holder = tmp_path / "holder.py"
    holder.write_text(HOLDER)
    flag = tmp_path / "locked"
    # The stage leaves behind a process that holds the queue's write lock for 6.5 s, longer
    # than SQLite's 5 s busy timeout: the worker's `complete` meets "database is locked". It
    # drops the stage's mark, or the end of the attempt would kill it with the stage.
    # Quoted: a clone or TMPDIR whose path has a space left the holder unstarted and the
    # stage waiting for its flag until the test's timeout.
    python, holder_, db_, flag_ = (shlex.quote(str(p)) for p in (sys.executable, holder, db, flag))
    stage = (
        f"env -u {STAGE_MARK} setsid {python} {holder_} {db_} {flag_} 6.5 "
        "</dev/null >/dev/null 2>&1 & "
        # At most 60 s: a holder that never started failed the test, not looped on for good.
        f"for _ in $(seq 3000); do [ -f {flag_} ] && break; sleep 0.02; done"
    )
    queue = open_queue(str(db))
    ticket = queue.enqueue("locked-at-completion", str(_graph(tmp_path, stage)))
    follower = queue.enqueue("behind-it", str(_graph(tmp_path, "true", "q")))
    stats = run_worker(str(db), tmp_path / "runs", PATIENT, once=True, reaper=False)
    err = capsys.readouterr().err
    assert "database is locked" in err and "retrying" in err  # the scenario did happen
    assert "Traceback" not in err and "Exception in thread" not in err
    assert (stats.completed, stats.fenced) == (2, 0)
    assert [queue.get(t.id).status for t in (ticket, follower)] == ["done", "done"]
    assert _completions(queue, ticket.id) == ["claimed", "completed"]
    assert len(list((tmp_path / "runs").iterdir())) == 2  # each ticket ran once
    queue.close()


def test_a_complete_that_committed_before_its_connection_dropped_is_checked_not_repeated(
    tmp_path: Path,
) -> None:
    queue = open_queue(str(tmp_path / "queue.db"))
    ticket = queue.enqueue("x", "/p.dot")
    lease = queue.claim("w", lease_ttl_s=30, session=SessionInfo("s", 1, 1, None, "h"))
    assert lease is not None

    def committed_then_lost() -> object:
        queue.complete(lease, result={"status": "success"})
        raise QueueError("server closed the connection unexpectedly")  # the ack never came

    got = persist(
        committed_then_lost,
        "completion",
        PATIENT,
        Fleet(),
        landed=lambda: logged(queue, lease, "completed"),
    )
    assert got is None
    assert queue.get(ticket.id).status == "done"
    events = [e.event for e in queue.events(ticket.id)]
    assert events.count("completed") == 1 and "fenced" not in events
    queue.close()


def test_a_pipeline_deleted_or_broken_after_enqueue_fails_its_ticket_and_the_healthy_ones_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    queue = open_queue(str(tmp_path / "queue.db"))
    gone_graph = _graph(tmp_path, "true", "gone")
    broken_graph = _graph(tmp_path, "true", "broken")
    gone = queue.enqueue("gone", str(gone_graph), priority=9)
    broken = queue.enqueue("broken", str(broken_graph), priority=9)
    healthy = [queue.enqueue(f"ok{i}", str(_graph(tmp_path, "true", f"ok{i}"))) for i in range(3)]
    gone_graph.unlink()
    broken_graph.write_text("digraph p { start -> }")
    stats = run_worker(
        str(tmp_path / "queue.db"), tmp_path / "runs", PATIENT, concurrency=2, once=True
    )
    assert "Traceback" not in capsys.readouterr().err
    assert (stats.completed, stats.failed) == (3, 2)
    for t in (gone, broken):
        after = queue.get(t.id)
        assert after.status == "failed"
        assert after.reason is not None and "pipeline" in after.reason
        assert str(tmp_path / t.title) in after.reason and "cannot be run" in after.reason
    assert {queue.get(t.id).status for t in healthy} == {"done"}
    queue.close()


def test_the_reaper_starts_its_run_failed_line_on_a_fresh_line_after_a_torn_one(
    tmp_path: Path,
) -> None:
    queue = open_queue(str(tmp_path / "queue.db"))
    queue.enqueue("torn", "/p.dot")
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    whole = json.dumps({"event": "stage_attempt_start", "run_id": "r1"})
    (run / "progress.ndjson").write_text(whole + "\n" + whole[: len(whole) // 2])
    lease = queue.claim("w", lease_ttl_s=30, session=_dead_session())
    assert lease is not None
    queue.start(lease, run_id="r1", run_path=run, session=_dead_session())
    (reclaim,) = reap(queue, PATIENT)
    assert reclaim.status == "todo" and reclaim.terminalized
    lines = (run / "progress.ndjson").read_bytes().splitlines()
    assert len(lines) == 3 and lines[1] == whole[: len(whole) // 2].encode()
    assert json.loads(lines[2])["event"] == "run_failed"
    queue.close()


def test_a_lost_worker_whose_run_had_succeeded_gets_its_ticket_completed_not_run_again(
    tmp_path: Path,
) -> None:
    queue = open_queue(str(tmp_path / "queue.db"))
    t = queue.enqueue("done-but-unacknowledged", str(_graph(tmp_path, "true")))
    lease = queue.claim("w", lease_ttl_s=30, session=_dead_session())
    assert lease is not None
    queue.start(lease, run_id="r1", run_path=tmp_path / "runs" / "r1", session=_dead_session())
    # The worker finished the run (final.json success at its epoch), then died before
    # `complete` reached the queue.
    result = run_pipeline(
        Path(t.graph_path), tmp_path / "runs", PATIENT, run_id="r1", epoch=lease.epoch
    )
    assert result.status == "success"
    (reclaim,) = reap(queue, PATIENT)
    assert reclaim.status == "done" and "had succeeded" in reclaim.reason
    after = queue.get(t.id)
    assert (after.status, after.lease_epoch, after.crash_recoveries) == ("done", 1, 0)
    assert [e.event for e in queue.events(t.id)].count("completed") == 1
    final = json.loads((tmp_path / "runs" / "r1" / "final.json").read_text())
    assert final["status"] == "success" and "repaired_by" not in final
    queue.close()


# -- full and read-only disks -----------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (root only), unmounted afterwards."""
    with tmpfs(tmp_path / "disk", "1m") as mount:
        yield mount


#: Refusals of the runs root: two releases per ticket, short pauses between claims.
REFUSING = replace(PATIENT, root_refusal_releases=2, root_refusal_backoff_s=0.05)


def _root_releases(queue: Queue, ticket_id: str) -> list[str]:
    return [
        str(e.detail["reason"])
        for e in queue.events(ticket_id)
        if e.event == "released" and str(e.detail.get("reason", "")).startswith(ROOT_REFUSED)
    ]


def _refusing_worker(
    tmp_path: Path, disk: Path, on_ticket: Callable[[str, Ticket, object], None]
) -> WorkerStats:
    """A worker (:data:`REFUSING`) over the queue in ``tmp_path`` and the runs root on
    ``disk``, until nothing is claimable."""
    return run_worker(
        str(tmp_path / "queue.db"), disk / "runs", REFUSING, once=True, on_ticket=on_ticket
    )


def test_a_full_runs_root_gives_the_ticket_back_and_it_runs_once_space_is_freed(
    tmp_path: Path, tiny_disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    queue = open_queue(str(tmp_path / "queue.db"))
    ticket = queue.enqueue("waits-for-space", str(_graph(tmp_path, "true")))
    (tiny_disk / "runs").mkdir()
    filler = fill_disk(tiny_disk)
    seen: list[tuple[str, str]] = []

    def free_space_after_the_first_release(what: str, t: Ticket, _: object) -> None:
        seen.append((what, queue.get(t.id).status))
        if what == "finished":
            filler.unlink(missing_ok=True)  # the disk was full for a while only

    stats = _refusing_worker(tmp_path, tiny_disk, free_space_after_the_first_release)
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Exception in thread" not in err
    assert seen[:2] == [("claimed", "claimed"), ("finished", "todo")]  # given back, not failed
    (released,) = _root_releases(queue, ticket.id)
    assert "No space left on device" in released and "1 of 2 releases" in released
    assert "back to todo" in err
    after = queue.get(ticket.id)
    assert (after.status, after.error_attempts) == ("done", 0)
    assert (stats.claimed, stats.released, stats.completed, stats.failed) == (2, 1, 1, 0)
    events = [e.event for e in queue.events(ticket.id)]
    assert events.count("claimed") == 2 and events.count("completed") == 1
    queue.close()


def _fills_once(tmp_path: Path, disk: Path) -> Path:
    """A pipeline whose stage fills ``disk`` the first time it runs, and does nothing after."""
    marker = tmp_path / "filled"
    fill = f"[ -f {marker} ] || {{ touch {marker}; dd if=/dev/zero of={disk}/filler bs=64k; }}"
    return _graph(tmp_path, fill)


def test_a_run_the_full_runs_root_refused_gets_its_final_json_once_the_root_takes_writes(
    tmp_path: Path, tiny_disk: Path
) -> None:
    # The first run's directory was made, then the full root refused the rest, final.json
    # included: its ticket went back to todo and ran again once space was freed, but the
    # refused run stayed without final.json for good (the doctor's missing_final).
    queue = open_queue(str(tmp_path / "queue.db"))
    queue.enqueue("fills-once", str(_fills_once(tmp_path, tiny_disk)))

    def free_space_after_the_release(what: str, t: Ticket, _: object) -> None:
        if what == "finished":
            (tiny_disk / "filler").unlink(missing_ok=True)

    stats = _refusing_worker(tmp_path, tiny_disk, free_space_after_the_release)
    assert (stats.released, stats.completed) == (1, 1)
    finals = [json.loads((r / "final.json").read_text()) for r in (tiny_disk / "runs").iterdir()]
    assert sorted(f["status"] for f in finals) == ["fail", "success"]
    (refused,) = [f for f in finals if f["status"] == "fail"]
    assert refused["failure_reason"].startswith(f"{ROOT_REFUSED}: the run directory ")
    assert "No space left on device" in refused["failure_reason"]
    assert refused["repaired_by"]["tool"] == "executor.worker"
    queue.close()


def test_a_worker_that_stops_gives_the_runs_the_root_refused_their_final_json_if_it_can(
    tmp_path: Path, tiny_disk: Path
) -> None:
    # Every run of the ticket is refused (the disk stays full) until it fails; no later run
    # of the worker writes a final.json, so the refused ones are finished as the worker stops
    # (chaos seed 137: a worker stopped at the end of the campaign left three such runs).
    queue = open_queue(str(tmp_path / "queue.db"))
    ticket = queue.enqueue("refused-to-the-end", str(_fills_once(tmp_path, tiny_disk)))

    def free_space_once_it_failed(what: str, t: Ticket, _: object) -> None:
        if what == "finished" and queue.get(t.id).status == "failed":
            (tiny_disk / "filler").unlink(missing_ok=True)

    stats = _refusing_worker(tmp_path, tiny_disk, free_space_once_it_failed)
    assert (stats.released, stats.failed, stats.completed) == (2, 1, 0)
    assert queue.get(ticket.id).status == "failed"
    runs = list((tiny_disk / "runs").iterdir())
    assert runs, "the first run's directory was made before the disk filled up"
    for run in runs:
        final = json.loads((run / "final.json").read_text())
        assert final["status"] == "fail" and final["failure_reason"].startswith(ROOT_REFUSED)
    queue.close()


def test_a_runs_root_that_stays_full_fails_each_ticket_after_its_releases_and_the_worker_goes_on(
    tmp_path: Path, tiny_disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    queue = open_queue(str(tmp_path / "queue.db"))
    fill = f"dd if=/dev/zero of={tiny_disk}/filler bs=64k 2>/dev/null; true"
    filler = queue.enqueue("fills-the-disk", str(_graph(tmp_path, fill, "fill")), priority=9)
    after_it = queue.enqueue("after-it", str(_graph(tmp_path, "true", "after")))
    stats = run_worker(str(tmp_path / "queue.db"), tiny_disk / "runs", REFUSING, once=True)
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Exception in thread" not in err
    # Each ticket: given back twice with the reason, failed at its third refusal.
    assert (stats.claimed, stats.released, stats.failed, stats.completed) == (6, 4, 2, 0)
    for t in (filler, after_it):
        assert len(_root_releases(queue, t.id)) == 2
        final = queue.get(t.id)
        assert final.status == "failed"
        assert final.reason is not None and "No space left on device" in final.reason
        assert "refused 3 times, released 2" in final.reason
    queue.close()


def test_a_runs_root_that_fills_up_under_a_running_stage_stops_the_stage_with_its_run(
    tmp_path: Path, tiny_disk: Path
) -> None:
    # The stage fills the runs root, then lives on: the next heartbeat cannot be written, the
    # run ends with ENOSPC (a worker gives its ticket back). The stage must end with it: left
    # running, it went on beside the ticket's next execution.
    pid_file = tmp_path / "stage.pid"
    fill = f"echo $$ > {pid_file}; dd if=/dev/zero of={tiny_disk}/filler bs=64k; exec sleep 600"
    with pytest.raises(OSError) as raised:
        run_pipeline(_graph(tmp_path, fill), tiny_disk / "runs", PATIENT)
    assert raised.value.errno == errno.ENOSPC
    stage = int(pid_file.read_text())
    try:
        assert not process_alive(stage)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(stage, 9)


def test_a_read_only_runs_root_gives_tickets_back_then_fails_them_and_the_reaper_still_reclaims(
    tmp_path: Path, tiny_disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    queue = open_queue(str(tmp_path / "queue.db"))
    lost_run = tiny_disk / "runs" / "r-lost"
    lost_run.mkdir(parents=True)
    (lost_run / "progress.ndjson").write_text('{"event": "run_started"}\n')
    lost = queue.enqueue("lost", str(_graph(tmp_path, "true", "lost")))
    lease = queue.claim("w", lease_ttl_s=30, session=_dead_session())
    assert lease is not None
    queue.start(lease, run_id="r-lost", run_path=lost_run, session=_dead_session())
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_disk)], check=True)
    (reclaim,) = reap(queue, PATIENT)  # no traceback: the queue learns why
    assert reclaim.status == "todo" and not reclaim.terminalized
    assert "could not be terminalized" in reclaim.reason and "Read-only" in reclaim.reason
    assert queue.get(lost.id).reason == reclaim.reason
    # A worker on the read-only root gives the ticket back (twice), then fails it with the
    # reason, instead of dying.
    stats = run_worker(str(tmp_path / "queue.db"), tiny_disk / "runs", REFUSING, once=True)
    assert "Traceback" not in capsys.readouterr().err
    after = queue.get(lost.id)
    assert (stats.released, stats.failed, after.status) == (2, 1, "failed")
    assert after.reason is not None and "Read-only file system" in after.reason
    assert all("Read-only file system" in r for r in _root_releases(queue, lost.id))
    queue.close()


def test_claims_pause_longer_on_each_refusal_of_the_runs_root_until_a_run_writes() -> None:
    fleet, config = Fleet(), ExecutorConfig(root_refusal_backoff_s=5.0)
    assert fleet.claim_pause() == 0.0
    assert [fleet.root_refused(config) for _ in range(6)] == [5, 10, 20, 40, 60, 60]
    assert fleet.claim_pause() > 0
    fleet.root_took_writes()
    assert (fleet.claim_pause(), fleet.root_refused(config)) == (0.0, 5)


# -- PostgreSQL: a private cluster, restarted and stopped -------------------------------------


@pytest.fixture
def pg_url(private_pg: PrivatePostgres) -> Iterator[str]:
    with contextlib.suppress(subprocess.CalledProcessError):  # already running
        private_pg.start()  # a previous test may have left it stopped
    schema = f"rdq_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(private_pg.url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    yield f"{private_pg.url}?options=-csearch_path%3D{schema}"


def _parked_tickets(url: str, tmp_path: Path, n: int) -> tuple[Queue, list[str], Path]:
    """``n`` tickets whose stages announce they started, then wait for the file ``go``."""
    stage = (
        f"mktemp {tmp_path}/started.XXXXXX >/dev/null; "
        f"while [ ! -f {tmp_path}/go ]; do sleep 0.05; done"
    )
    graph = _graph(tmp_path, stage)
    queue = open_queue(url)
    ids = [queue.enqueue(f"t{i}", str(graph)).id for i in range(n)]
    return queue, ids, tmp_path / "go"


def _started(tmp_path: Path) -> int:
    return len(list(tmp_path.glob("started.*")))


def _all_done(url: str, ids: list[str]) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with open_queue(url) as q:
                return all(q.get(i).status == "done" for i in ids)
        except QueueError:
            return False  # the server is still coming back

    return check


@pytest.mark.postgres
def test_a_reaper_pass_the_database_fails_half_way_still_reports_what_it_reclaimed(
    pg_url: str, private_pg: PrivatePostgres
) -> None:
    # Three dead workers' tickets; the server stops as the second reclaim is about to act.
    # Before, the pass raised the queue's error alone: `doctor reap` said `error: … connection
    # …`, exit 2, and never reported the first reclaim, made (its stages killed, its run
    # terminalized) and committed.
    dead = SessionInfo("rd-gone", 99_999_999, 99_999_999, 1, socket.gethostname())
    with open_queue(pg_url) as q:
        ids = [q.enqueue(f"t{i}", "/p/t.dot").id for i in range(3)]
        for i in range(3):
            assert q.claim(f"w{i}", lease_ttl_s=60, session=dead) is not None
    acted: list[str] = []

    def stop_at_the_second(ticket_id: str) -> None:
        acted.append(ticket_id)
        if len(acted) == 2:
            private_pg.stop()

    try:
        with open_queue(pg_url) as q, pytest.raises(ReapFailed) as failed:
            reap(ReaperSeam(q, acting=stop_at_the_second), ExecutorConfig())
    finally:
        private_pg.start()
    assert [(r.ticket_id, r.status) for r in failed.value.found] == [(acted[0], "todo")]
    assert "connection" in str(failed.value), failed.value
    with open_queue(pg_url) as q:
        states = {i: (q.get(i).status, q.get(i).lease_epoch) for i in ids}
    assert states[acted[0]] == ("todo", 2)
    assert sorted(states.values()) == [("claimed", 1), ("claimed", 1), ("todo", 2)]


@pytest.mark.postgres
def test_a_postgres_restart_while_runs_finish_leaves_every_ticket_done_exactly_once(
    pg_url: str, private_pg: PrivatePostgres, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    queue, ids, go = _parked_tickets(pg_url, tmp_path, 3)
    queue.close()
    worker = _WorkerThread(pg_url, tmp_path / "runs", PATIENT, concurrency=3)
    _wait(lambda: _started(tmp_path) == 3)
    private_pg.restart()  # every session gets AdminShutdown; the next call meets it
    go.touch()
    _wait(_all_done(pg_url, ids))
    worker.finish()
    err = capsys.readouterr().err
    assert worker.error is None, worker.error
    assert worker.stats is not None and (worker.stats.completed, worker.stats.fenced) == (3, 0)
    assert "retrying" in err and "Traceback" not in err  # the restart was met and ridden out
    with open_queue(pg_url) as q:
        for i in ids:
            assert _completions(q, i) == ["claimed", "completed"]
    assert len(list((tmp_path / "runs").iterdir())) == 3


@pytest.mark.postgres
def test_a_postgres_outage_while_runs_finish_is_ridden_out_and_no_ticket_runs_twice(
    pg_url: str, private_pg: PrivatePostgres, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    queue, ids, go = _parked_tickets(pg_url, tmp_path, 3)
    queue.close()
    worker = _WorkerThread(pg_url, tmp_path / "runs", PATIENT, concurrency=3)
    _wait(lambda: _started(tmp_path) == 3)
    private_pg.stop()
    go.touch()
    seen: list[str] = []
    # Every run ends while the server is down: each completion fails and is retried.
    _wait(lambda: _retried_lines(capsys, seen).count("completion of ticket") == 3)
    assert len(list((tmp_path / "runs").glob("*/final.json"))) == 3
    private_pg.start()
    _wait(_all_done(pg_url, ids))
    worker.finish()
    err = "".join(seen) + capsys.readouterr().err
    assert worker.error is None, worker.error
    assert worker.stats is not None and (worker.stats.completed, worker.stats.fenced) == (3, 0)
    assert "Traceback" not in err
    with open_queue(pg_url) as q:
        for i in ids:
            assert _completions(q, i) == ["claimed", "completed"]


@pytest.mark.postgres
def test_a_worker_whose_database_stays_away_exits_saying_why_and_its_succeeded_run_is_kept(
    pg_url: str, private_pg: PrivatePostgres, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dataclasses import replace

    queue, (tid,), go = _parked_tickets(pg_url, tmp_path, 1)
    queue.close()
    short = replace(PATIENT, database_outage_s=2.0)
    worker = _WorkerThread(pg_url, tmp_path / "runs", short, concurrency=2)
    _wait(lambda: _started(tmp_path) == 1)
    private_pg.stop()
    go.touch()
    worker.thread.join(60)  # it gives up by itself, without being told to stop
    assert not worker.thread.is_alive()
    assert isinstance(worker.error, WorkerError), worker.error
    assert "cannot continue" in str(worker.error) and "unavailable" in str(worker.error)
    assert "Traceback" not in capsys.readouterr().err
    private_pg.start()
    # The next reaper pass (here: once its lease expired, by a queue whose clock is that far
    # ahead) keeps the succeeded run.
    later = lambda: time.time() + PATIENT.lease_ttl_s + 1  # noqa: E731
    with open_queue(pg_url, clock=later, server_clock=False) as q:
        assert q.get(tid).status == "running"  # the completion never reached the queue
        (reclaim,) = reap(q, PATIENT)
        assert reclaim.status == "done"
        assert _completions(q, tid) == ["claimed", "completed"]


@pytest.mark.postgres
def test_a_worker_process_whose_database_stays_away_exits_3_with_one_line_saying_why(
    pg_url: str, private_pg: PrivatePostgres, tmp_path: Path
) -> None:
    from dataclasses import replace

    queue, (tid,), go = _parked_tickets(pg_url, tmp_path, 1)
    queue.close()
    config = tmp_path / "executor.json"
    config.write_text(json.dumps(replace(PATIENT, database_outage_s=2.0).to_json()))
    # The campaign's worker entry point: the executor's run_worker behind the same
    # error reporting as `doctor worker`, with a configuration file for the short budget.
    command = [sys.executable, "-m", "chaos", "worker", "--db", pg_url]
    command += ["--root", str(tmp_path / "runs"), "--name", "w1", "--config", str(config)]
    command += ["--history", str(tmp_path / "w1.ndjson")]
    worker = subprocess.Popen(
        command, cwd=Path(__file__).resolve().parents[2], stderr=subprocess.PIPE, text=True
    )
    try:
        _wait(lambda: _started(tmp_path) == 1)
        private_pg.stop()
        go.touch()
        _, err = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    lines = [line for line in err.splitlines() if line.strip()]
    assert worker.returncode == 3, err
    assert "Traceback" not in err
    assert lines[-1].startswith("error: worker w1 cannot continue: completion of ticket")
    assert "unavailable for 2 s" in " ".join(lines[-2:])
    private_pg.start()
    with open_queue(pg_url) as q:
        assert q.get(tid).status == "running"  # left to the reaper, which keeps the success


def test_a_final_json_write_that_fails_once_is_tried_again_and_lands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from executor import _artifacts
    from rundoctor.atomic import create_file

    writer = _artifacts.RunWriter(tmp_path / "r1", run_id="r1")
    writer.create()
    tries: list[str] = []

    def full_once(path: Path, data: bytes, *, fsync: bool = True) -> bool:
        # The first try runs into a full disk (a log rotated a moment later frees it).
        tries.append(str(path))
        if len(tries) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return create_file(path, data, fsync=fsync)

    monkeypatch.setattr(_artifacts, "create_file", full_once)
    record, won = writer.write_final("success", "", wall_s=1.0)
    assert won and record["status"] == "success" and len(tries) == 2
    assert json.loads((writer.path / "final.json").read_text())["status"] == "success"
    assert not [p.name for p in writer.path.iterdir() if p.name.endswith(".tmp")]


def test_the_reaper_thread_logs_a_failed_pass_and_reclaims_at_a_later_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from executor._resilience import ClockNotice
    from executor._worker import _reaper_loop

    home = tmp_path / "not-yet"  # the queue's directory does not exist at first
    url = str(home / "queue.db")
    stop, stats = threading.Event(), WorkerStats()
    thread = threading.Thread(
        target=_reaper_loop,
        args=(lambda: open_queue(url), PATIENT, stop, stats, time.time, ClockNotice()),
    )
    thread.start()
    seen: list[str] = []
    try:
        _wait(lambda: "reaper pass failed" in _retried_lines(capsys, seen))
        home.mkdir()
        with open_queue(url) as q:
            q.enqueue("lost", "/p.dot")
            assert q.claim("w", lease_ttl_s=30, session=_dead_session()) is not None
        _wait(lambda: stats.reclaimed == 1)
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    err = "".join(seen) + capsys.readouterr().err
    assert err.count("reaper pass failed") == 1 and "Traceback" not in err


@pytest.mark.postgres
def test_a_claim_that_committed_before_its_connection_dropped_is_taken_up_not_left_claimed(
    pg_url: str, private_pg: PrivatePostgres, tmp_path: Path
) -> None:
    # The claim's COMMIT waits for a synchronous standby that never answers; its session is
    # ended meanwhile: the claim has committed (locally), and the worker heard an error only.
    # Its retry claimed again and the first ticket stayed claimed by a live worker that never
    # ran it, until its lease expired (a crash recovery counted, towards quarantine).
    queue = open_queue(pg_url + "%20-csynchronous_commit%3Dlocal")
    ticket = queue.enqueue("claimed-in-the-dark", str(_graph(tmp_path, "true")))
    name = f"rdlost_{uuid.uuid4().hex[:12]}"
    done: list[WorkerStats] = []
    with psycopg.connect(private_pg.url, autocommit=True) as admin:
        admin.execute("ALTER SYSTEM SET synchronous_standby_names = 'nobody'")
        admin.execute("SELECT pg_reload_conf()")
        try:
            worker = threading.Thread(
                target=lambda: done.append(
                    run_worker(
                        f"{pg_url}&application_name={name}",
                        tmp_path / "runs",
                        PATIENT,
                        once=True,
                        reaper=False,
                    )
                ),
                daemon=True,
            )
            worker.start()
            waiting = (
                "SELECT pid FROM pg_stat_activity"
                " WHERE application_name = %s AND wait_event = 'SyncRep'"
            )
            _wait(lambda: admin.execute(waiting, (name,)).fetchall())  # the claim's COMMIT
            (pid,) = admin.execute(waiting, (name,)).fetchone() or ()
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        finally:
            admin.execute("ALTER SYSTEM RESET synchronous_standby_names")
            admin.execute("SELECT pg_reload_conf()")
    worker.join(timeout=60)
    assert done, "the worker did not finish"
    after = queue.get(ticket.id)
    assert (after.status, after.crash_recoveries, done[0].claimed) == ("done", 0, 1)
    assert _completions(queue, ticket.id) == ["claimed", "completed"]
    queue.close()


@pytest.mark.parametrize("other", ["{torn", "[" * 100_000], ids=["torn", "nested"])
def test_a_final_json_already_there_that_does_not_parse_loses_to_no_one(
    tmp_path: Path, other: str
) -> None:
    # Before: write_final read the final.json it lost to with json.loads unguarded, and a torn
    # or tampered one ended the run with a ValueError or RecursionError.
    from executor import _artifacts

    writer = _artifacts.RunWriter(tmp_path / "r1", run_id="r1")
    writer.create()
    (writer.path / "final.json").write_text(other)
    record, won = writer.write_final("success", "", wall_s=1.0)
    assert (record, won) == ({}, False)
    assert (writer.path / "final.json").read_text() == other  # never overwritten


# --- a database no retry can mend ----------------------------------------------------------------


def test_a_lasting_queue_error_is_not_retried() -> None:
    calls: list[int] = []
    fleet = Fleet()

    def damaged() -> None:
        calls.append(1)
        fleet.doomed.set()  # a second try would end the retries at once: no hour-long wait
        error = QueueError("database disk image is malformed")
        error.lasting = True
        raise error

    with pytest.raises(WorkerError, match=r"malformed .*retrying cannot help"):
        persist(damaged, "claim", ExecutorConfig(database_outage_s=3600), fleet)
    assert calls == [1]


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("damage", "says"),
    [
        ("DROP TABLE ticket_events", 'relation "ticket_events" does not exist'),
        ("ALTER TABLE tickets DROP COLUMN lease_epoch", 'column "lease_epoch" does not exist'),
    ],
)
def test_a_worker_on_a_postgres_queue_that_is_not_the_executor_s_stops_at_once(
    postgres_backend: Backend, tmp_path: Path, damage: str, says: str
) -> None:
    # Before: SQLite's missing table stopped the worker at once, PostgreSQL's was retried as
    # an outage for the whole budget (an hour here: the test's timeout would end it).
    from tests.executor.test_cli import SIMPLE

    with open_queue(postgres_backend.url) as queue:
        queue.enqueue("x", str(SIMPLE))
    postgres_backend.raw(damage)
    env = _patient_env(tmp_path)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "doctor",
            "worker",
            "--once",
            "--db",
            postgres_backend.url,
            "--root",
            str(tmp_path / "runs"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3, done.stderr
    assert "retrying with backoff" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert says in last and "retrying cannot help" in last, last


def _patient_env(tmp_path: Path) -> dict[str, str]:
    """The CLI's environment with a config file that rides out outages for an hour."""
    from tests.executor.test_cli import _base_env

    env = _base_env(tmp_path)
    folder = tmp_path / "config" / "rundoctor"
    folder.mkdir(parents=True)
    (folder / "config.toml").write_text("[executor]\ndatabase_outage_s = 3600\n")
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    return env


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        ("DROP TABLE ticket_events", "no such table: ticket_events"),
        ("UPDATE tickets SET created_at = 'yesterday'", "holds 'yesterday' in created_at"),
    ],
)
def test_a_worker_on_a_queue_no_retry_can_mend_stops_at_once_with_one_line(
    tmp_path: Path, damage: str, says: str
) -> None:
    # Before: the worker took a damaged database (or a row another program wrote) for an
    # outage and retried it for its whole budget, 300 s by default (an hour here: the hang
    # guard below would end the test), printing "retrying with backoff".
    import sqlite3

    from tests.executor.test_cli import SIMPLE, _doctor

    db = tmp_path / "q.db"
    with open_queue(str(db)) as queue:
        queue.enqueue("x", str(SIMPLE))
    with sqlite3.connect(db) as conn:
        conn.execute(damage)
    conn.close()
    env = _patient_env(tmp_path)
    done = _doctor(env, "worker", "--once", "--db", db, "--root", tmp_path / "runs")
    assert done.returncode == 3, done.stderr
    assert "retrying with backoff" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: worker ") and says in last and "retrying cannot help" in last


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr, result
    (line,) = result.stderr.splitlines()
    return line


@pytest.mark.parametrize("refusal", ["full", "read-only"])
def test_doctor_run_on_a_root_that_refuses_writes_is_one_line_naming_it(
    tiny_disk: Path, refusal: str
) -> None:
    # Before: a read-only runs root was "internal error … OSError: [Errno 30] Read-only file
    # system", exit 70; a full one "cannot write: … (standard output, or a file the command
    # writes)", which named neither the root nor what to do.
    from tests.executor.test_cli import SIMPLE
    from tests.helpers import run_doctor

    if refusal == "full":
        fill_disk(tiny_disk)
    else:
        subprocess.run(["mount", "-o", "remount,ro", str(tiny_disk)], check=True)
    line = _one_line(run_doctor("run", SIMPLE, "--root", tiny_disk))
    assert line.startswith(f"error: the run could not be written under runs root '{tiny_disk}': ")
    why = "No space left on device" if refusal == "full" else "Read-only file system"
    assert why in line and "a writable directory with free space" in line
    if refusal == "read-only":  # not even its directory: it was said to have "ended (its
        # final.json says why)", a final.json that was nowhere
        assert "was not begun: its directory could not be made;" in line
        assert "final.json" not in line and not list(tiny_disk.iterdir())


def test_doctor_run_on_a_root_that_cannot_be_made_is_one_line_naming_it() -> None:
    # Before: "internal error … PermissionError: [Errno 1] Operation not permitted", exit 70.
    from tests.executor.test_cli import SIMPLE
    from tests.helpers import run_doctor

    line = _one_line(run_doctor("run", SIMPLE, "--root", "/sys/rundoctor-runs"))
    assert line.startswith("error: runs root '/sys/rundoctor-runs' cannot be created: ")


def test_doctor_run_db_says_why_the_ticket_failed_not_that_it_was_never_claimed(
    tiny_disk: Path, tmp_path: Path
) -> None:
    # Before: "ticket t-… could not be claimed", when it was claimed and failed: its run
    # directory could not be written. Then: that line came after the worker's own line saying
    # the same ("rundoctor worker PID: ticket t-… failed: …"), two lines for one error.
    from tests.executor.test_cli import SIMPLE
    from tests.helpers import run_doctor

    subprocess.run(["mount", "-o", "remount,ro", str(tiny_disk)], check=True)
    db = tmp_path / "q.db"
    done = run_doctor("run", SIMPLE, "--db", db, "--root", tiny_disk)
    assert done.returncode == 2
    last = _one_line(done)
    assert last.startswith("error: ticket t-") and "rundoctor worker" not in last, last
    assert "failed before its run began: the run directory" in last, last
    assert "Read-only file system" in last and "could not be claimed" not in last


def test_a_queue_on_a_full_disk_says_the_disk_is_full(tiny_disk: Path) -> None:
    # Before: "SQLite queue … (open): disk I/O error: the queue database refused the
    # statement" (SQLite cannot make its -shm file there, even to read): no cause named.
    from tests.executor.test_cli import SIMPLE
    from tests.helpers import run_doctor

    db = tiny_disk / "q.db"
    assert run_doctor("enqueue", SIMPLE, "--db", db).returncode == 0
    fill_disk(tiny_disk)
    for args in (("tickets", "--db", db), ("enqueue", SIMPLE, "--db", tiny_disk / "new.db")):
        line = _one_line(run_doctor(*args))
        assert line.endswith(": the file system holding it is full; free space there, then retry")


def _run_cli(
    tmp_path: Path, graph: Path, root: Path, environ: dict[str, str] | None = None, **kw: Any
) -> subprocess.CompletedProcess[str]:
    """``doctor run GRAPH --root ROOT`` as a process, none of this environment's settings
    (but ``environ``'s)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("RUNDOCTOR_")}
    return subprocess.run(
        [sys.executable, "-m", "doctor", "run", graph, "--root", root],
        env={**base, "XDG_STATE_HOME": str(tmp_path / "state"), **(environ or {})},
        capture_output=True,
        text=True,
        timeout=300,
        **kw,
    )


def _toml(config: ExecutorConfig) -> str:
    """``config``'s lease and heartbeat budgets as a config file's ``[executor]`` lines."""
    keys = ("heartbeat_interval_s", "heartbeat_misses", "self_fence_s", "lease_ttl_s")
    return "".join(f"{k} = {getattr(config, k)!r}\n" for k in keys)


def _two_stages(tmp_path: Path, second: str) -> Path:
    """A graph: a stage that reports a cost of $0.50, then ``second``."""
    graph = tmp_path / "p.dot"
    paid = 'echo \'{"status": "success", "cost_usd": 0.5}\' > status.json'
    graph.write_text(
        "digraph p { start [shape=Mdiamond]; exit [shape=Msquare];\n"
        f"  paid [shape=parallelogram, tool_command={json.dumps(paid, ensure_ascii=False)}];\n"
        f"  then [shape=parallelogram, tool_command={json.dumps(second, ensure_ascii=False)}];\n"
        "  start -> paid -> then -> exit }\n"
    )
    return graph


def _file_size_limit() -> None:
    """In the child: files stop at 1 MiB (EFBIG, as a full disk's ENOSPC), no SIGXFSZ."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))


def test_a_run_its_root_refused_keeps_its_attempts_and_costs_in_final_json(
    tmp_path: Path,
) -> None:
    # Before: a run the runs root stopped half-way (an executor error: here a stage log past
    # the file size limit, as on a full disk) wrote final.json with "attempts": 0 and
    # "cost_usd": 0.0, though stages had run and one had reported its cost.
    graph = _two_stages(tmp_path, "head -c 3000000 /dev/zero")
    result = _run_cli(tmp_path, graph, tmp_path / "runs", preexec_fn=_file_size_limit)
    assert result.returncode == 2 and "File too large" in result.stderr, result
    (run,) = (tmp_path / "runs").iterdir()
    assert f"run {run.name} ended (its final.json says why)" in result.stderr
    final = json.loads((run / "final.json").read_text())
    assert final["status"] == "fail" and "File too large" in final["failure_reason"]
    assert (final["cost_usd"], final["attempts"]) == (0.5, 2)  # start and paid
    for line in (run / "progress.ndjson").read_bytes().splitlines():
        json.loads(line)


def test_a_run_a_full_disk_left_without_final_json_is_named_with_its_repair(
    tmp_path: Path, tiny_disk: Path
) -> None:
    # The disk stays full: final.json cannot be written (three tries). Before, the error
    # said only that the root refused the run, as if it had ended.
    fill = f"dd if=/dev/zero of={tiny_disk}/filler bs=64k 2>/dev/null; exec sleep 600"
    # The stage's heartbeats fill what is left of the stream's last page, then one is refused
    # (maybe part-written): at 0.2 s apart, seconds; at the default 10 s, up to two minutes.
    config = tmp_path / "config.toml"
    config.write_text(f"[executor]\n{_toml(replace(PATIENT, heartbeat_interval_s=0.2))}")
    result = _run_cli(
        tmp_path,
        _two_stages(tmp_path, fill),
        tiny_disk / "runs",
        environ={"RUNDOCTOR_CONFIG": str(config)},
    )
    assert result.returncode == 2 and "No space left on device" in result.stderr, result
    (run,) = (tiny_disk / "runs").iterdir()
    assert not (run / "final.json").exists()
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error: ")]
    assert f"run {run.name} has no final.json" in line
    assert f"`doctor repair --run-id {run.name} --root {tiny_disk / 'runs'} --apply`" in line
    for event in (run / "progress.ndjson").read_bytes().splitlines():
        json.loads(event)  # whole lines only: the full disk cut none


def _few_open_files(n: int) -> Callable[[], None]:
    """In the child: at most ``n`` open files (``ulimit -n``)."""
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))


def test_a_worker_out_of_file_descriptors_gives_the_ticket_back_and_another_runs_it(
    tmp_path: Path,
) -> None:
    # Before: a worker whose `ulimit -n` was too low failed every ticket it claimed, for good
    # ("the ticket's pipeline cannot be run: … Too many open files", "could not start"): one
    # misconfigured host emptied the queue into `failed`. The limit is the worker's, not the
    # ticket's: it gives the ticket back, says why, and a worker with room runs it.
    db = tmp_path / "q.db"
    env = _patient_env(tmp_path)
    after, left, (code, err) = _cramped_worker(tmp_path, env, _graph(tmp_path, "true"), 12)
    assert (after.status, after.error_attempts, left.event) == ("todo", 0, "released"), after
    reason = str(left.detail["reason"])
    assert reason.startswith("this worker ran out of file descriptors (1 of 5 releases)"), reason
    assert "a limit of 12 open files, `ulimit -n`" in reason and "Too many open files" in reason
    assert code == 0 and "Traceback" not in err, err
    assert "back to todo: this worker ran out of file descriptors" in err
    from tests.executor.test_cli import _doctor

    done = _doctor(env, "worker", "--once", "--db", db, "--root", tmp_path / "runs")
    assert done.returncode == 0, done.stderr
    with open_queue(str(db)) as queue:
        assert (queue.get(after.id).status, queue.get(after.id).error_attempts) == ("done", 0)


def test_doctor_run_out_of_file_descriptors_says_so_not_that_the_root_is_full(
    tmp_path: Path,
) -> None:
    # Before: "the run could not be written under runs root …: Too many open files; … pass
    # --root (or set RUNDOCTOR_ROOT to) a writable directory with free space".
    result = _run_cli(
        tmp_path, _graph(tmp_path, "true"), tmp_path / "runs", preexec_fn=_few_open_files(9)
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result
    line = result.stderr.strip().splitlines()[-1]
    assert "this process ran out of file descriptors (Too many open files" in line, line
    assert "a limit of 9 open files, `ulimit -n`" in line and line.endswith("raise the limit")
    assert "free space" not in line and "--root" not in line


def _fan_out_of_two(tmp_path: Path) -> Path:
    """A pipeline whose fan-out runs two branches of one stage each at once."""
    path = tmp_path / "fan.dot"
    path.write_text(
        "digraph p { start [shape=Mdiamond]; exit [shape=Msquare]; fan [shape=component];\n"
        '  a [shape=parallelogram, tool_command="true"];\n'
        '  b [shape=parallelogram, tool_command="true"];\n'
        "  join [shape=tripleoctagon];\n"
        "  start -> fan; fan -> a -> join; fan -> b -> join; join -> exit }\n"
    )
    return path


def test_a_fan_out_branch_out_of_file_descriptors_ends_the_run_with_the_error(
    tmp_path: Path,
) -> None:
    # Before: each branch whose stage could not start for the limit failed as the branch's
    # own error ("all parallel branches failed: a: executor error in branch a: OSError:
    # [Errno 24] …"), the run failed as the pipeline's failure (exit 1), and a worker failed
    # the ticket for good; one branch that got through made the run a success. Now the run
    # ends with the error, as an unbranched stage's: the limit named, exit 2.
    result = _run_cli(
        tmp_path, _fan_out_of_two(tmp_path), tmp_path / "runs", preexec_fn=_few_open_files(12)
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result
    line = result.stderr.strip().splitlines()[-1]
    assert "this process ran out of file descriptors (Too many open files" in line, line
    assert "a limit of 12 open files, `ulimit -n`" in line and line.endswith("raise the limit")
    (run,) = (tmp_path / "runs").iterdir()
    final = json.loads((run / "final.json").read_text())
    assert final["status"] == "fail" and "all parallel branches" not in final["failure_reason"]
    assert "Too many open files" in final["failure_reason"], final


def test_a_worker_whose_fan_out_branch_runs_out_of_file_descriptors_gives_the_ticket_back(
    tmp_path: Path,
) -> None:
    # Before: the branches' "executor error in branch …: Too many open files" failed the
    # fan-out as the pipeline's failure (feeding the breaker's signature loop), and the
    # worker failed the ticket for good, as it no longer does for an unbranched stage.
    env = _patient_env(tmp_path)
    after, left, (code, err) = _cramped_worker(tmp_path, env, _fan_out_of_two(tmp_path), 14)
    assert (after.status, after.error_attempts, left.event) == ("todo", 0, "released"), after
    assert str(left.detail["reason"]).startswith("this worker ran out of file descriptors")
    for run in (tmp_path / "runs").iterdir():
        assert "all parallel branches failed" not in (run / "progress.ndjson").read_text()
    assert code == 0 and "Traceback" not in err, err


def _cramped_worker(
    tmp_path: Path, env: dict[str, str], graph: Path, open_files: int
) -> tuple[Ticket, TicketEvent, tuple[int, str]]:
    """A ``doctor worker`` limited to ``open_files`` runs one ticket of ``graph`` until it
    releases or fails it; the ticket then, that event, and the worker's exit status and
    stderr once sent SIGTERM."""
    db = tmp_path / "q.db"
    with open_queue(str(db)) as queue:
        ticket = queue.enqueue("x", str(graph))
    cramped = subprocess.Popen(
        [sys.executable, "-m", "doctor", "worker", "--db", db, "--root", tmp_path / "runs"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_few_open_files(open_files),
    )
    try:
        with open_queue(str(db)) as queue:
            _wait(lambda: any(e.event in ("released", "failed") for e in queue.events(ticket.id)))
            after = queue.get(ticket.id)
            (left,) = [e for e in queue.events(ticket.id) if e.event in ("released", "failed")]
    finally:
        cramped.terminate()
        _, err = cramped.communicate(timeout=60)
    return after, left, (cramped.returncode, err)


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_worker_whose_sqlite_queue_file_is_deleted_or_replaced_stops_and_says_so(
    tmp_path: Path, how: str
) -> None:
    # Before: the worker's connections held the old file open and went on claiming and
    # completing tickets in it, though no other process could read it (its results lost); its
    # reaper made an empty queue in its place, and a queue put there was a second queue that
    # this worker never looked at.
    db = tmp_path / "q.db"
    go = tmp_path / "go"
    with open_queue(str(db)) as queue:
        ticket = queue.enqueue(
            "x", str(_graph(tmp_path, f"while [ ! -e {go} ]; do sleep 0.05; done"))
        )
        queue.enqueue("y", str(_graph(tmp_path, "true", name="q")))
    worker = subprocess.Popen(
        [sys.executable, "-m", "doctor", "worker", "--db", db, "--root", tmp_path / "runs"],
        env=_patient_env(tmp_path),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with open_queue(str(db)) as queue:
            _wait(lambda: queue.get(ticket.id).status == "running")
        for name in ("q.db", "q.db-wal", "q.db-shm"):
            (tmp_path / name).unlink(missing_ok=True)
        if how == "replaced":
            with open_queue(str(tmp_path / "new.db")) as other:
                fresh = other.enqueue("z", str(_graph(tmp_path, "true", name="z")))
            os.replace(tmp_path / "new.db", db)
        go.touch()  # the run ends: its completion meets the missing file
        _, err = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    assert worker.returncode == 3, err
    last = err.strip().splitlines()[-1]
    what = "deleted or moved away" if how == "deleted" else "replaced by another file"
    assert last.startswith("error: worker ") and f"the file was {what}" in last, last
    assert "retrying cannot help" in last and "Traceback" not in err
    if how == "deleted":
        assert not db.exists()  # no empty queue made in its place
    else:
        with open_queue(str(db), create=False) as queue:  # the queue put there is untouched
            assert [(t.id, t.status) for t in queue.tickets()] == [(fresh.id, "todo")]
