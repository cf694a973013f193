"""The queue detectors' edges, on small hand-built queues (SQLite; the incidents in
``test_queue_incidents.py`` run on PostgreSQL too)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from doctor import DoctorConfig, Finding, Severity, scan
from fixtures._kilroy import KilroyRun
from fixtures.queues import DEAD_PID, QueueRows, finish, lease, proc_start_ticks

NOW = 1_780_000_000.0  # 2026-05-28T20:26:40Z
M = 60.0
H = 3600.0
DAY = 86_400.0
PID = os.getpid()
HOST = "box-under-test"


def _scan(q: QueueRows, tmp_path: Path, code: str, *roots: Path, **config: object) -> list[Finding]:
    path = q.write_sqlite(tmp_path / "queue.db")
    cfg = DoctorConfig(roots=roots, db=str(path), now=NOW, checks=(code,), **config)  # type: ignore[arg-type]
    return list(scan(cfg).findings)


# --- stale_lease ----------------------------------------------------------------------------------


def test_a_lease_heartbeating_within_the_threshold_is_not_stale(tmp_path: Path) -> None:
    q = QueueRows(NOW)
    t = q.ticket("fresh", NOW - H)
    lease(q, t, NOW - 50 * M, "w", heartbeat=NOW - 299)
    assert _scan(q, tmp_path, "stale_lease") == []


def test_a_lease_silent_past_the_threshold_is_stale(tmp_path: Path) -> None:
    q = QueueRows(NOW)
    t = q.ticket("silent", NOW - H)
    lease(q, t, NOW - 50 * M, "w", heartbeat=NOW - 301)
    (f,) = _scan(q, tmp_path, "stale_lease")
    assert f.evidence["age_s"] == 301
    assert f.evidence["worker"] == "w"


def test_the_stale_lease_threshold_comes_from_the_config(tmp_path: Path) -> None:
    q = QueueRows(NOW)
    t = q.ticket("silent", NOW - H)
    lease(q, t, NOW - 50 * M, "w", heartbeat=NOW - 301)
    assert _scan(q, tmp_path, "stale_lease", stale_lease_s=600.0) == []


def test_a_finished_ticket_with_an_old_heartbeat_holds_no_lease(tmp_path: Path) -> None:
    q = QueueRows(NOW)
    t = q.ticket("done long ago", NOW - DAY)
    lease(q, t, NOW - DAY + M, "w")
    finish(q, t, NOW - DAY + 10 * M)
    assert _scan(q, tmp_path, "stale_lease") == []


# --- no_progress_lease --------------------------------------------------------------------------


def test_a_lease_whose_run_progresses_is_not_reported(tmp_path: Path) -> None:
    q = QueueRows(NOW)
    t = q.ticket("busy", NOW - 3 * H)
    lease(q, t, NOW - 3 * H, "w", heartbeat=NOW - 10, run_id="busy-run")
    run = KilroyRun(tmp_path / "runs", "busy-run", "2026-05-28T17:26:40Z")  # the claim
    run.run_pid(PID)
    for minute in range(0, 180, 4):  # a stage every 4 minutes, the last 4 minutes ago
        run.stream().emit("stage_attempt_start", minute * M + 1, node_id=f"n{minute}", attempt=1)
        run.stream().emit("stage_heartbeat", minute * M + 2, node_id=f"n{minute}")
    run.finish()
    assert _scan(q, tmp_path, "no_progress_lease", tmp_path / "runs") == []


def test_a_claimed_ticket_without_a_run_is_reported_after_the_stall_timeout(
    tmp_path: Path,
) -> None:
    q = QueueRows(NOW)
    t = q.ticket("stub", NOW - H)
    lease(q, t, NOW - 11 * M, "w", status="claimed", heartbeat=NOW - 20)
    (f,) = _scan(q, tmp_path, "no_progress_lease")
    assert f.evidence["in_progress_s"] == 11 * M
    assert f.evidence["progress_events"] == 0
    assert f.evidence["heartbeats"] == 1  # the latest heartbeat, after the claim
    assert f.severity is Severity.ERROR


def test_a_claimed_ticket_without_a_run_within_the_stall_timeout_is_fine(tmp_path: Path) -> None:
    q = QueueRows(NOW)
    t = q.ticket("starting", NOW - H)
    lease(q, t, NOW - 9 * M, "w", status="claimed", heartbeat=NOW - 20)
    assert _scan(q, tmp_path, "no_progress_lease") == []


def test_a_stale_lease_is_left_to_stale_lease(tmp_path: Path) -> None:
    q = QueueRows(NOW)
    t = q.ticket("dead", NOW - DAY)
    lease(q, t, NOW - DAY, "w", heartbeat=NOW - H)
    assert _scan(q, tmp_path, "no_progress_lease") == []


# --- session_desync -----------------------------------------------------------------------------


def test_a_running_ticket_with_no_session_recorded_at_all_is_desynced(tmp_path: Path) -> None:
    q = QueueRows(NOW)
    t = q.ticket("untracked", NOW - H)
    lease(q, t, NOW - 30 * M, "w", heartbeat=NOW - 5)
    (f,) = _scan(q, tmp_path, "session_desync")
    assert (f.evidence["session_name"], f.evidence["pid"], f.evidence["pid_alive"]) == (
        None,
        None,
        None,
    )
    assert f.evidence["kind"] == "no_session"
    assert f.severity is Severity.ERROR


def test_a_live_pid_that_started_at_another_time_is_a_reused_pid(tmp_path: Path) -> None:
    start = proc_start_ticks(PID)
    assert start is not None
    q = QueueRows(NOW)
    t = q.ticket("reused", NOW - H)
    here = socket.gethostname()
    lease(q, t, NOW - 30 * M, "w", pid=PID, proc_start_time=start + 1, host=here, session_name="s")
    (f,) = _scan(q, tmp_path, "session_desync")
    assert f.evidence["pid_alive"] is False
    assert f.evidence["kind"] == "dead_session"


def test_a_running_ticket_whose_session_lives_here_is_in_sync(tmp_path: Path) -> None:
    q = QueueRows(NOW)
    t = q.ticket("alive", NOW - H)
    here = socket.gethostname()
    start = proc_start_ticks(PID)
    lease(q, t, NOW - 30 * M, "w", pid=PID, proc_start_time=start, host=here, session_name="s")
    assert _scan(q, tmp_path, "session_desync") == []


def test_a_done_ticket_whose_session_lingers_is_a_warning(tmp_path: Path) -> None:
    q = QueueRows(NOW)
    t = q.ticket("lingering", NOW - H)
    here = socket.gethostname()
    start = proc_start_ticks(PID)
    lease(q, t, NOW - 30 * M, "w", pid=PID, proc_start_time=start, host=here, session_name="s")
    finish(q, t, NOW - 10 * M)
    (f,) = _scan(q, tmp_path, "session_desync")
    assert f.evidence["kind"] == "live_after_terminal"
    assert f.severity is Severity.WARNING


def test_sessions_on_another_host_are_only_information(tmp_path: Path) -> None:
    q = QueueRows(NOW)
    t = q.ticket("remote", NOW - H)
    lease(q, t, NOW - 30 * M, "w", pid=DEAD_PID, host=HOST, session_name="s")
    (f,) = _scan(q, tmp_path, "session_desync")
    assert f.evidence["pid_alive"] is None
    assert f.severity is Severity.INFO


# --- recovery_loop ------------------------------------------------------------------------------


def _reclaims(q: QueueRows, tid: str, times: list[float]) -> None:
    for i, at in enumerate(times, start=1):
        q.event(tid, at - 10 * M, "claimed", "w", i)
        q.event(tid, at, "reclaimed", "reaper", i, reason="lease expired")


def test_three_reclaims_within_a_day_are_a_loop(tmp_path: Path) -> None:
    q = QueueRows(NOW)
    t = q.ticket("flaky", NOW - 2 * DAY)
    _reclaims(q, t, [NOW - 20 * H, NOW - 10 * H, NOW - H])
    (f,) = _scan(q, tmp_path, "recovery_loop")
    assert f.evidence["recoveries"] == 3
    assert f.severity is Severity.ERROR


def test_three_reclaims_spread_over_three_days_are_not_a_loop(tmp_path: Path) -> None:
    q = QueueRows(NOW)
    t = q.ticket("unlucky", NOW - 4 * DAY)
    _reclaims(q, t, [NOW - 3 * DAY, NOW - 2 * DAY + H, NOW - H])
    assert _scan(q, tmp_path, "recovery_loop") == []


def test_a_loop_the_breaker_quarantined_is_a_warning(tmp_path: Path) -> None:
    q = QueueRows(NOW)
    t = q.ticket("quarantined", NOW - 2 * DAY, status="quarantined", finished_at=NOW - H)
    _reclaims(q, t, [NOW - 4 * H, NOW - 3 * H, NOW - 2 * H, NOW - H - M])
    (f,) = _scan(q, tmp_path, "recovery_loop")
    assert f.evidence["recoveries"] == 4
    assert f.severity is Severity.WARNING


# --- backlog_growth -----------------------------------------------------------------------------


def _created(q: QueueRows, per_day: int, days: int, closed_per_day: int = 0) -> None:
    for d in range(days):
        for i in range(per_day):
            at = NOW - (d + 1) * DAY + (i + 1) * 10 * M
            t = q.ticket(f"t{d}-{i}", at)
            if i < closed_per_day:
                lease(q, t, at + M, "w")
                finish(q, t, at + 5 * M)


def test_a_backlog_growing_by_a_ticket_a_day_is_reported_and_by_less_is_not(
    tmp_path: Path,
) -> None:
    q = QueueRows(NOW)
    _created(q, per_day=3, days=7, closed_per_day=2)  # 21 created, 14 closed: +1 a day
    (f,) = _scan(q, tmp_path, "backlog_growth")
    assert f.evidence["created_per_day"] - f.evidence["closed_per_day"] == 1
    q.tickets.pop()  # the last open ticket: 20 created, just under a ticket a day
    assert _scan(q, tmp_path / "again", "backlog_growth") == []


def test_closing_that_lags_behind_creation_is_a_warning(tmp_path: Path) -> None:
    q = QueueRows(NOW)
    _created(q, per_day=6, days=7, closed_per_day=3)
    (f,) = _scan(q, tmp_path, "backlog_growth")
    assert (f.evidence["created_per_day"], f.evidence["closed_per_day"]) == (6, 3)
    assert f.severity is Severity.WARNING


def test_the_backlog_window_comes_from_the_config(tmp_path: Path) -> None:
    q = QueueRows(NOW)
    _created(q, per_day=4, days=2)
    (f,) = _scan(q, tmp_path, "backlog_growth", window_days=2)
    assert f.evidence["window_days"] == 2
    assert f.evidence["created_per_day"] == 4
    assert f.severity is Severity.ERROR


# --- idle_gap across tickets ----------------------------------------------------------------------


def test_blocked_tickets_are_not_pending_work(tmp_path: Path) -> None:
    q = QueueRows(NOW)
    q.ticket("waits on a failed dependency", NOW - DAY, status="blocked")
    assert _scan(q, tmp_path, "idle_gap") == []


def test_a_todo_ticket_nobody_claims_for_hours_is_an_idle_gap(tmp_path: Path) -> None:
    q = QueueRows(NOW)
    q.ticket("waiting", NOW - 5 * H)
    (f,) = _scan(q, tmp_path, "idle_gap")
    assert f.evidence["duration_s"] == 5 * H
    assert f.evidence["pending"] == 1
    assert f.evidence["ongoing"] is True
    assert f.severity is Severity.ERROR


def test_an_idle_queue_with_nothing_pending_has_no_gap(tmp_path: Path) -> None:
    q = QueueRows(NOW)
    t = q.ticket("done", NOW - 2 * DAY)
    lease(q, t, NOW - 2 * DAY + M, "w")
    finish(q, t, NOW - 2 * DAY + 30 * M)
    assert _scan(q, tmp_path, "idle_gap") == []


def test_a_lease_on_a_run_the_doctor_cannot_see_makes_the_gap_a_warning(tmp_path: Path) -> None:
    q = QueueRows(NOW)
    q.ticket("waiting", NOW - 5 * H)
    t = q.ticket("long job", NOW - 5 * H)
    lease(q, t, NOW - 5 * H + M, "w", heartbeat=NOW - 10, run_id="not-scanned")
    (f,) = _scan(q, tmp_path, "idle_gap")
    assert f.evidence["unseen_leases"] == 1
    assert f.severity is Severity.WARNING


def test_a_blocked_ticket_made_during_an_idle_stretch_is_not_counted_pending(
    tmp_path: Path,
) -> None:
    # A blocked ticket's pending span was its creation alone, compared strictly: one made
    # inside the stretch was counted among the tickets that waited (2, not 1).
    q = QueueRows(NOW)
    q.ticket("waiting", NOW - 5 * H)
    q.ticket("waits on a failed dependency", NOW - 2 * H, status="blocked")
    (f,) = _scan(q, tmp_path, "idle_gap")
    assert f.evidence["pending"] == 1
    assert "while 1 ticket waited" in f.summary
