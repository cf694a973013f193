"""The queue contract: every test here runs against SQLite and against PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from executor import (
    BudgetError,
    FencedError,
    Lease,
    NoQueueError,
    Queue,
    QueueError,
    SessionInfo,
    Ticket,
    UsageError,
)
from tests.executor.conftest import Backend, FakeClock

REPO = Path(__file__).resolve().parents[2]
ME = SessionInfo("rd-w1", pid=4242, pgid=4240, proc_start_time=98765, host="box-1")
OTHER = SessionInfo("rd-w2", pid=5151, pgid=5150, proc_start_time=12345, host="box-2")
GRAPH = "/pipelines/build.dot"


def claim(queue: Queue, worker: str = "w1", ttl: float = 30.0, session: SessionInfo = ME) -> Lease:
    lease = queue.claim(worker, lease_ttl_s=ttl, session=session)
    assert lease is not None, "expected a claimable ticket"
    return lease


def reclaim(queue: Queue, lease: Lease, **kw: Any) -> Ticket:
    args: dict[str, Any] = {"reason": "worker died", "quarantine_after": 5, "window_s": 3600}
    return queue.reclaim(lease.ticket_id, expected_epoch=lease.epoch, **{**args, **kw})


def event_names(queue: Queue, ticket_id: str) -> list[str]:
    return [e.event for e in queue.events(ticket_id)]


# -- opening without creating ------------------------------------------------------------------


def test_opening_without_create_refuses_a_missing_queue_and_creates_nothing(
    backend: Backend,
) -> None:
    with pytest.raises(NoQueueError):
        backend.open_existing()
    if backend.name == "sqlite":
        assert not Path(backend.target).exists()
    else:
        assert backend.raw("SELECT to_regclass('tickets') IS NULL") == [(True,)]
    backend.open().close()  # the default creates it; then an inspecting open reads it
    queue = backend.open_existing()
    try:
        assert queue.tickets() == []
    finally:
        queue.close()


# -- enqueue and claim order ------------------------------------------------------------------


def test_an_enqueued_ticket_is_todo_with_a_created_event(queue: Queue, clock: FakeClock) -> None:
    t = queue.enqueue("build", GRAPH, priority=3, max_error_attempts=2)
    assert (t.status, t.priority, t.max_error_attempts, t.lease_epoch) == ("todo", 3, 2, 0)
    assert t.created_at == t.updated_at == clock.now
    [created] = queue.events(t.id)
    assert (created.event, created.at, created.detail["title"]) == ("created", clock.now, "build")


def test_ticket_ids_are_base32_and_sort_by_creation(queue: Queue, clock: FakeClock) -> None:
    ids = []
    for _ in range(20):
        ids.append(queue.enqueue("x", GRAPH).id)
        clock.advance(0.0005)
    assert all(re.fullmatch(r"t-[0-9a-hjkmnp-tv-z]{12}", i) for i in ids)
    assert ids == sorted(ids)
    assert [t.id for t in queue.tickets()] == ids


def test_an_id_another_process_already_took_is_drawn_again(
    queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn = iter(["t-000000000001", "t-000000000001", "t-000000000002"])
    monkeypatch.setattr("executor._queue_lifecycle.new_ticket_id", lambda now: next(drawn))
    first, second = queue.enqueue("a", GRAPH), queue.enqueue("b", GRAPH)
    assert (first.id, second.id) == ("t-000000000001", "t-000000000002")
    assert [t.title for t in queue.tickets()] == ["a", "b"]


def test_claim_returns_none_when_nothing_is_claimable(queue: Queue) -> None:
    assert queue.claim("w1", lease_ttl_s=30, session=ME) is None


def test_claims_take_higher_priority_first_then_the_oldest(queue: Queue, clock: FakeClock) -> None:
    low = queue.enqueue("low", GRAPH, priority=0)
    clock.advance(1)
    high_old = queue.enqueue("high-old", GRAPH, priority=5)
    clock.advance(1)
    high_new = queue.enqueue("high-new", GRAPH, priority=5)
    order = [claim(queue).ticket_id for _ in range(3)]
    assert order == [high_old.id, high_new.id, low.id]


def test_a_claim_for_one_ticket_takes_that_ticket_or_nothing(queue: Queue) -> None:
    high = queue.enqueue("high", "/p.dot", priority=9)
    low = queue.enqueue("low", "/p.dot")
    lease = queue.claim("w1", lease_ttl_s=60, session=ME, ticket_id=low.id)
    assert lease is not None and lease.ticket_id == low.id
    assert queue.claim("w2", lease_ttl_s=60, session=ME, ticket_id=low.id) is None
    assert queue.get(high.id).status == "todo"


def test_equal_priority_and_time_fall_back_to_the_id(queue: Queue) -> None:
    ids = [queue.enqueue(f"t{i}", GRAPH).id for i in range(5)]  # the clock does not move
    assert [claim(queue).ticket_id for _ in ids] == sorted(ids)


def test_a_claim_sets_the_lease_from_the_injected_clock(queue: Queue, clock: FakeClock) -> None:
    queue.enqueue("x", GRAPH)
    clock.advance(10)
    lease = claim(queue, ttl=45)
    t = queue.get(lease.ticket_id)
    assert (t.status, t.lease_owner, t.lease_epoch, lease.epoch) == ("claimed", "w1", 1, 1)
    assert t.claimed_at == t.last_heartbeat_at == clock.now
    assert t.lease_expires_at == clock.now + 45


def test_the_claim_records_the_session_with_the_lease(queue: Queue) -> None:
    queue.enqueue("x", GRAPH)
    t = claim(queue).ticket
    assert (t.session_name, t.pid, t.pgid, t.proc_start_time, t.host) == (
        "rd-w1",
        4242,
        4240,
        98765,
        "box-1",
    )
    claimed = queue.events(t.id)[-1]
    assert (claimed.event, claimed.worker, claimed.epoch) == ("claimed", "w1", 1)
    assert claimed.detail["session"]["session_name"] == "rd-w1"


_REFUSE_CLAIMED_EVENT = {
    "sqlite": [
        "CREATE TRIGGER refuse_claimed BEFORE INSERT ON ticket_events"
        " WHEN NEW.event = 'claimed' BEGIN SELECT RAISE(ABORT, 'refused'); END"
    ],
    "postgres": [
        "CREATE FUNCTION refuse_claimed() RETURNS trigger AS $$ BEGIN"
        " IF NEW.event = 'claimed' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END"
        " $$ LANGUAGE plpgsql",
        "CREATE TRIGGER refuse_claimed BEFORE INSERT ON ticket_events"
        " FOR EACH ROW EXECUTE FUNCTION refuse_claimed()",
    ],
}


def test_a_claim_whose_event_cannot_be_written_leaves_no_trace(
    queue: Queue, backend: Backend
) -> None:
    # Lease, session and event are one transaction: when the last write fails, the row is
    # still todo without a session (incident 02's "claimed but no session_name" cannot be).
    t = queue.enqueue("x", GRAPH)
    for statement in _REFUSE_CLAIMED_EVENT[backend.name]:
        backend.raw(statement)
    with pytest.raises(QueueError) as caught:
        queue.claim("w1", lease_ttl_s=30, session=ME)
    assert isinstance(caught.value.__cause__, backend.error)
    after = queue.get(t.id)
    assert (after.status, after.lease_epoch, after.lease_owner, after.session_name) == (
        "todo",
        0,
        None,
        None,
    )


def test_start_marks_running_with_the_run_and_its_session(queue: Queue) -> None:
    queue.enqueue("x", GRAPH)
    lease = claim(queue)
    t = queue.start(lease, run_id="run-1", run_path="/runs/run-1", session=OTHER)
    assert (t.status, t.run_id, t.run_path, t.session_name, t.pid, t.host) == (
        "running",
        "run-1",
        "/runs/run-1",
        "rd-w2",
        5151,
        "box-2",
    )


def test_bad_budgets_and_names_are_refused(queue: Queue) -> None:
    queue.enqueue("x", GRAPH)
    with pytest.raises(BudgetError, match="lease_ttl_s"):
        queue.claim("w1", lease_ttl_s=0, session=ME)
    with pytest.raises(UsageError, match="worker"):
        queue.claim(" ", lease_ttl_s=5, session=ME)
    with pytest.raises(UsageError, match="relative"):
        queue.enqueue("x", "pipelines/x.dot")
    with pytest.raises(UsageError, match="max_error_attempts"):
        queue.enqueue("x", GRAPH, max_error_attempts=0)


# -- fencing ----------------------------------------------------------------------------------

WRITES: dict[str, Callable[[Queue, Lease], object]] = {
    "heartbeat": lambda q, lease: q.heartbeat(lease, lease_ttl_s=30),
    "start": lambda q, lease: q.start(lease, run_id="r", run_path="/r", session=ME),
    "complete": lambda q, lease: q.complete(lease, result={"status": "success"}),
    "fail": lambda q, lease: q.fail(lease, reason="exit 1", retryable=True),
    "release": lambda q, lease: q.release(lease, "shutting down"),
}


@pytest.mark.parametrize("action", sorted(WRITES))
def test_every_write_with_a_stale_epoch_is_fenced_and_recorded(
    queue: Queue, clock: FakeClock, action: str
) -> None:
    queue.enqueue("x", GRAPH)
    stale = claim(queue)
    clock.advance(60)
    reclaimed = reclaim(queue, stale)
    assert reclaimed.lease_epoch == stale.epoch + 1
    with pytest.raises(FencedError) as caught:
        WRITES[action](queue, stale)
    assert (caught.value.ticket_id, caught.value.epoch) == (stale.ticket_id, stale.epoch)
    assert "epoch moved to 2" in str(caught.value)
    assert queue.get(stale.ticket_id) == reclaimed  # the rejected write changed nothing
    fenced = queue.events(stale.ticket_id)[-1]
    assert (fenced.event, fenced.worker, fenced.epoch) == ("fenced", "w1", 1)
    assert fenced.detail["action"] == action
    assert (fenced.detail["current_epoch"], fenced.detail["current_status"]) == (2, "todo")


@pytest.mark.parametrize("action", sorted(WRITES))
def test_the_old_worker_is_fenced_while_the_new_one_proceeds(
    queue: Queue, clock: FakeClock, action: str
) -> None:
    queue.enqueue("x", GRAPH)
    old = claim(queue, "w1")
    clock.advance(60)
    reclaim(queue, old)
    new = claim(queue, "w2", session=OTHER)
    assert new.epoch == 3
    with pytest.raises(FencedError):
        WRITES[action](queue, old)
    assert queue.get(new.ticket_id).lease_owner == "w2"
    WRITES[action](queue, new)  # the current lease is unaffected


@pytest.mark.parametrize("action", sorted(WRITES))
def test_a_terminal_row_is_never_changed_by_a_worker(queue: Queue, action: str) -> None:
    queue.enqueue("x", GRAPH)
    lease = claim(queue)
    done = queue.complete(lease, result={})
    with pytest.raises(FencedError, match="terminal"):
        WRITES[action](queue, lease)
    assert queue.get(lease.ticket_id) == done


def test_a_terminal_row_is_never_reclaimed_or_canceled(queue: Queue, clock: FakeClock) -> None:
    queue.enqueue("x", GRAPH)
    lease = claim(queue)
    done = queue.complete(lease, result={})
    clock.advance(3600)
    assert queue.expired(clock.now) == []
    with pytest.raises(FencedError, match="done; a terminal ticket never changes"):
        reclaim(queue, lease)
    with pytest.raises(QueueError, match="already done"):
        queue.cancel(lease.ticket_id, "too late")
    assert queue.get(lease.ticket_id) == done


def test_the_database_itself_refuses_to_change_a_terminal_row(
    queue: Queue, backend: Backend
) -> None:
    t = queue.enqueue("x", GRAPH)
    queue.cancel(t.id, "no")
    with pytest.raises(backend.error, match="terminal"):
        backend.raw("UPDATE tickets SET status = 'todo' WHERE id = ?", (t.id,))
    assert queue.get(t.id).status == "canceled"


# -- the reaper's primitives ------------------------------------------------------------------


def test_reclaim_fails_when_the_epoch_moved(queue: Queue, clock: FakeClock) -> None:
    queue.enqueue("x", GRAPH)
    lease = claim(queue)
    clock.advance(60)
    reclaim(queue, lease)
    with pytest.raises(FencedError, match="epoch moved to 2"):
        reclaim(queue, lease)  # a second reaper with the same stale view loses the race
    again = claim(queue, "w2")
    with pytest.raises(FencedError, match="epoch moved to 3"):
        reclaim(queue, lease)
    t = queue.get(again.ticket_id)
    assert (t.status, t.lease_owner, t.crash_recoveries) == ("claimed", "w2", 1)
    assert [e.detail["action"] for e in queue.events(t.id) if e.event == "fenced"] == [
        "reclaim",
        "reclaim",
    ]


def test_a_reclaim_judged_before_a_heartbeat_is_refused_and_stops_nothing(
    queue: Queue, clock: FakeClock
) -> None:
    # The fence comes first: a holder whose heartbeat landed after the reaper judged its lease
    # lost lives, and keeps its lease and its stages (``stop_holder`` is never called).
    queue.enqueue("x", GRAPH)
    lease = claim(queue, ttl=10)
    queue.start(lease, run_id="run-1", run_path="/runs/run-1", session=ME, lease_ttl_s=10)
    clock.advance(11)
    (judged,) = queue.expired(clock.now)
    queue.heartbeat(lease, lease_ttl_s=10)
    stopped: list[Ticket] = []
    with pytest.raises(FencedError, match="renewed the lease since it was judged lost"):
        reclaim(queue, lease, judged=judged, stop_holder=lambda t: stopped.append(t) or "")
    assert stopped == []
    t = queue.get(lease.ticket_id)
    assert (t.status, t.lease_epoch, t.run_id) == ("running", 1, "run-1")


def test_a_holder_that_writes_while_its_reclaim_stops_it_is_fenced(
    queue: Queue, backend: Backend, clock: FakeClock
) -> None:
    # ``stop_holder`` runs once the compare-and-set is known to win, with the row locked: a
    # heartbeat the holder sends meanwhile waits for the reclaim and is fenced, and what
    # ``stop_holder`` returns ends the reason.
    queue.enqueue("x", GRAPH)
    lease = claim(queue, ttl=10)
    clock.advance(11)
    (judged,) = queue.expired(clock.now)
    holder = backend.open(clock)
    beats: list[BaseException | None] = []

    def beat() -> None:
        try:
            holder.heartbeat(lease, lease_ttl_s=10)
            beats.append(None)
        except QueueError as exc:
            beats.append(exc)

    thread = threading.Thread(target=beat)

    def stop(row: Ticket) -> str:
        assert (row.status, row.lease_epoch) == ("claimed", 1)
        thread.start()
        return "; its run was stopped"

    t = reclaim(queue, lease, judged=judged, stop_holder=stop)
    thread.join()
    holder.close()
    assert (t.status, t.reason) == ("todo", "worker died; its run was stopped")
    assert len(beats) == 1 and isinstance(beats[0], FencedError), beats


def test_reclaim_clears_owner_and_session_and_bumps_the_epoch(
    queue: Queue, clock: FakeClock
) -> None:
    queue.enqueue("x", GRAPH)
    lease = claim(queue)
    queue.start(lease, run_id="run-1", run_path="/runs/run-1", session=ME)
    clock.advance(60)
    t = reclaim(queue, lease, reason="pid 4242 is dead")
    assert (t.status, t.lease_epoch, t.lease_owner, t.session_name, t.pid, t.run_id) == (
        "todo",
        2,
        None,
        None,
        None,
        None,
    )
    assert (t.reason, t.crash_recoveries, t.error_attempts) == ("pid 4242 is dead", 1, 0)
    ev = queue.events(t.id)[-1]
    assert (ev.event, ev.worker, ev.epoch) == ("reclaimed", "w1", 1)
    assert (ev.detail["run_id"], ev.detail["session_name"], ev.detail["new_epoch"]) == (
        "run-1",
        "rd-w1",
        2,
    )


def test_expired_lists_lapsed_leases_and_heartbeats_keep_them_alive(
    queue: Queue, clock: FakeClock
) -> None:
    queue.enqueue("a", GRAPH)
    queue.enqueue("b", GRAPH)
    a, b = claim(queue, ttl=10), claim(queue, ttl=10)
    clock.advance(8)
    queue.heartbeat(a, lease_ttl_s=10)
    assert queue.expired(clock.now) == []
    clock.advance(4)
    assert [t.id for t in queue.expired(clock.now)] == [b.ticket_id]
    clock.advance(10)
    assert [t.id for t in queue.expired(clock.now)] == [b.ticket_id, a.ticket_id]


def test_a_start_with_a_ttl_extends_a_lapsed_lease_and_records_the_gap(
    queue: Queue, clock: FakeClock
) -> None:
    # Before: start left the claim's expiry, so a worker frozen between claim and start began
    # its run on a lapsed lease and the next reaper pass killed it; the work was wasted.
    queue.enqueue("x", GRAPH)
    lease = claim(queue, ttl=10)
    clock.advance(15)
    t = queue.start(lease, run_id="r1", run_path="/runs/r1", session=ME, lease_ttl_s=10)
    assert (t.status, t.lease_expires_at, t.last_heartbeat_at) == (
        "running",
        clock.now + 10,
        clock.now,
    )
    assert queue.expired(clock.now) == []
    [gap] = [e for e in queue.events(lease.ticket_id) if e.event == "heartbeat_gap"]
    assert (gap.detail["gap_s"], gap.detail["threshold_s"]) == (15, 10)
    clock.advance(11)
    assert [x.id for x in queue.expired(clock.now)] == [lease.ticket_id]


def test_a_start_without_a_ttl_keeps_the_claims_expiry(queue: Queue, clock: FakeClock) -> None:
    queue.enqueue("x", GRAPH)
    lease = claim(queue, ttl=10)
    clock.advance(15)
    queue.start(lease, run_id="r1", run_path="/runs/r1", session=ME)
    assert [x.id for x in queue.expired(clock.now)] == [lease.ticket_id]
    assert "heartbeat_gap" not in event_names(queue, lease.ticket_id)


def test_a_start_with_a_ttl_on_a_reclaimed_lease_is_fenced(queue: Queue, clock: FakeClock) -> None:
    queue.enqueue("x", GRAPH)
    lease = claim(queue, ttl=10)
    clock.advance(15)
    reclaim(queue, lease)
    with pytest.raises(FencedError):
        queue.start(lease, run_id="r1", run_path="/runs/r1", session=ME, lease_ttl_s=10)
    assert queue.get(lease.ticket_id).status == "todo"


def test_no_reclaim_within_the_claim_grace_period(queue: Queue, clock: FakeClock) -> None:
    queue.enqueue("x", GRAPH)
    lease = claim(queue, ttl=1)
    clock.advance(5)  # the lease lapsed, but the claim is only 5 s old
    assert queue.expired(clock.now, claim_grace_s=10) == []
    with pytest.raises(FencedError, match="inside the 10s claim grace period"):
        reclaim(queue, lease, claim_grace_s=10)
    assert queue.get(lease.ticket_id).status == "claimed"
    clock.advance(5)
    assert [t.id for t in queue.expired(clock.now, claim_grace_s=10)] == [lease.ticket_id]
    assert reclaim(queue, lease, claim_grace_s=10).status == "todo"


def test_a_reclaim_without_a_claim_grace_takes_a_ticket_claimed_after_the_clock_stepped_back(
    queue: Queue, clock: FakeClock
) -> None:
    # A clock stepped back an hour: the claim lies in the queue's future. A reclaim that rests
    # on the queue's clock is refused; one on proof (a dead pid) or a silence the reaper timed
    # itself passes ``claim_grace_s=None`` and does not look at the claim time.
    queue.enqueue("x", GRAPH)
    lease = claim(queue, ttl=1)
    clock.advance(-3600)
    with pytest.raises(FencedError):
        reclaim(queue, lease, claim_grace_s=0.0)
    after = reclaim(queue, lease, claim_grace_s=None)
    assert (after.status, after.lease_epoch) == ("todo", lease.epoch + 1)


def test_a_null_heartbeat_counts_as_the_claim_time(
    queue: Queue, backend: Backend, clock: FakeClock
) -> None:
    # Incident 05: a worker that died before its first heartbeat left NULL, and
    # "heartbeat < now - 5 min" is never true for NULL: the ticket was stuck forever.
    queue.enqueue("x", GRAPH)
    lease = claim(queue, ttl=30)
    backend.raw(
        "UPDATE tickets SET last_heartbeat_at = NULL, lease_expires_at = NULL WHERE id = ?",
        (lease.ticket_id,),
    )
    assert queue.get(lease.ticket_id).last_alive_at == clock.now
    assert queue.expired(clock.now - 1) == []
    clock.advance(20)
    assert [t.id for t in queue.expired(clock.now, claim_grace_s=10)] == [lease.ticket_id]
    assert queue.expired(clock.now, claim_grace_s=30) == []
    queue.heartbeat(lease, lease_ttl_s=30, interval_s=5)  # gap measured from the claim
    [gap] = [e for e in queue.events(lease.ticket_id) if e.event == "heartbeat_gap"]
    assert (gap.detail["gap_s"], gap.detail["previous_at"]) == (20, clock.now - 20)


def test_heartbeat_gaps_are_recorded_only_past_twice_the_interval(
    queue: Queue, clock: FakeClock
) -> None:
    queue.enqueue("x", GRAPH)
    lease = claim(queue, ttl=30)
    for _ in range(5):
        clock.advance(10)
        queue.heartbeat(lease, lease_ttl_s=30, interval_s=10)
    clock.advance(19)
    queue.heartbeat(lease, lease_ttl_s=30, interval_s=10)
    assert "heartbeat_gap" not in event_names(queue, lease.ticket_id)
    clock.advance(21)
    queue.heartbeat(lease, lease_ttl_s=30, interval_s=10)
    gaps = [e for e in queue.events(lease.ticket_id) if e.event == "heartbeat_gap"]
    assert [(g.detail["gap_s"], g.detail["threshold_s"], g.epoch) for g in gaps] == [(21, 20, 1)]
    t = queue.get(lease.ticket_id)
    assert (t.last_heartbeat_at, t.lease_expires_at) == (clock.now, clock.now + 30)


def test_a_step_of_the_queue_s_clock_is_no_heartbeat_gap_when_the_holder_timed_its_beats(
    queue: Queue, clock: FakeClock
) -> None:
    # The queue's clock stepped an hour forward between two beats its holder sent on time
    # (``alive_since``: its monotonic clock when the previous write was acknowledged). Before,
    # every live lease logged a gap of an hour; a late beat by both clocks is still a gap, of
    # the shorter measure.
    queue.enqueue("x", GRAPH)
    lease = claim(queue, ttl=30)
    clock.advance(3600)
    queue.heartbeat(lease, lease_ttl_s=30, interval_s=10, alive_since=time.monotonic())
    started = queue.start(
        lease, run_id="r1", run_path="/r/r1", session=ME, lease_ttl_s=30, alive_since=None
    )
    assert started.status == "running"
    assert "heartbeat_gap" not in event_names(queue, lease.ticket_id)
    clock.advance(3600)
    queue.heartbeat(lease, lease_ttl_s=30, interval_s=10, alive_since=time.monotonic() - 25)
    [gap] = [e for e in queue.events(lease.ticket_id) if e.event == "heartbeat_gap"]
    assert gap.detail["queue_gap_s"] == 3600 and 25 <= gap.detail["holder_gap_s"] < 3600
    assert gap.detail["gap_s"] == gap.detail["holder_gap_s"]


def test_a_start_timed_by_its_claimer_records_no_gap_for_a_step(
    queue: Queue, clock: FakeClock
) -> None:
    queue.enqueue("x", GRAPH)
    lease = claim(queue, ttl=10)
    assert lease.claimed_mono is not None
    clock.advance(3600)
    queue.start(
        lease,
        run_id="r1",
        run_path="/r/r1",
        session=ME,
        lease_ttl_s=10,
        alive_since=lease.claimed_mono,
    )
    assert "heartbeat_gap" not in event_names(queue, lease.ticket_id)


def test_too_many_reclaims_in_the_window_quarantine_the_ticket(
    queue: Queue, clock: FakeClock
) -> None:
    t = queue.enqueue("flaky", GRAPH)
    for _ in range(2):
        lease = claim(queue)
        clock.advance(100)
        assert reclaim(queue, lease, quarantine_after=2, window_s=1000).status == "todo"
    lease = claim(queue)
    clock.advance(100)
    q = reclaim(queue, lease, reason="pid 4242 is dead", quarantine_after=2, window_s=1000)
    assert (q.status, q.crash_recoveries, q.finished_at) == ("quarantined", 3, clock.now)
    assert q.reason == "reclaimed 3 times within 1000s (more than 2); last: pid 4242 is dead"
    last = queue.events(t.id)[-1]
    assert (last.event, last.detail["reason"]) == ("quarantined", q.reason)
    assert queue.claim("w1", lease_ttl_s=30, session=ME) is None


def test_reclaims_older_than_the_window_do_not_count(queue: Queue, clock: FakeClock) -> None:
    queue.enqueue("x", GRAPH)
    for _ in range(4):
        lease = claim(queue)
        clock.advance(600)  # 600 s apart: never more than 2 inside a 1000 s window
        assert reclaim(queue, lease, quarantine_after=2, window_s=1000).status == "todo"


def test_error_attempts_and_crash_recoveries_are_counted_apart(
    queue: Queue, clock: FakeClock
) -> None:
    t = queue.enqueue("x", GRAPH, max_error_attempts=2)
    failed = queue.fail(claim(queue), reason="exit 1", retryable=True)
    assert (failed.status, failed.error_attempts, failed.crash_recoveries) == ("todo", 1, 0)
    lease = claim(queue)
    clock.advance(60)
    back = reclaim(queue, lease)
    assert (back.status, back.error_attempts, back.crash_recoveries) == ("todo", 1, 1)
    released = queue.release(claim(queue), "worker shutting down")
    assert (released.error_attempts, released.crash_recoveries) == (1, 1)
    final = queue.fail(claim(queue), reason="exit 2", retryable=True)
    assert (final.status, final.error_attempts, final.crash_recoveries) == ("failed", 2, 1)
    assert (final.reason, final.finished_at) == ("exit 2", clock.now)
    assert event_names(queue, t.id).count("failed") == 2


def test_a_non_retryable_failure_is_final_at_once(queue: Queue) -> None:
    queue.enqueue("x", GRAPH, max_error_attempts=5)
    t = queue.fail(claim(queue), reason="graph invalid", retryable=False)
    assert (t.status, t.error_attempts, t.reason) == ("failed", 1, "graph invalid")


def test_release_gives_the_ticket_back_without_an_error(queue: Queue) -> None:
    queue.enqueue("x", GRAPH)
    lease = claim(queue)
    t = queue.release(lease, "SIGTERM")
    assert (t.status, t.lease_owner, t.session_name, t.error_attempts) == ("todo", None, None, 0)
    assert queue.events(t.id)[-1].event == "released"
    assert claim(queue, "w2").epoch == 2


# -- dependencies -----------------------------------------------------------------------------


def test_a_dependant_waits_blocked_until_all_its_dependencies_are_done(queue: Queue) -> None:
    a = queue.enqueue("a", GRAPH)
    b = queue.enqueue("b", GRAPH)
    c = queue.enqueue("c", GRAPH, priority=99, depends_on=[a.id, b.id])
    assert (c.status, c.reason) == ("blocked", f"waiting for {a.id} (todo), {b.id} (todo)")
    first = claim(queue)
    assert first.ticket_id == a.id  # c's priority does not matter while it is blocked
    queue.complete(first, result={})
    assert queue.get(c.id).status == "blocked"
    queue.complete(claim(queue), result={})
    unblocked = queue.get(c.id)
    assert (unblocked.status, unblocked.reason) == ("todo", None)
    assert event_names(queue, c.id) == ["created", "blocked", "unblocked"]
    assert claim(queue).ticket_id == c.id


def test_a_dependency_already_done_does_not_block(queue: Queue) -> None:
    a = queue.enqueue("a", GRAPH)
    queue.complete(claim(queue), result={})
    assert queue.enqueue("b", GRAPH, depends_on=[a.id]).status == "todo"


def test_a_failure_blocks_every_dependant_naming_the_failed_ticket(queue: Queue) -> None:
    a = queue.enqueue("a", GRAPH)
    b = queue.enqueue("b", GRAPH, depends_on=[a.id])
    c = queue.enqueue("c", GRAPH, depends_on=[b.id])
    queue.fail(claim(queue), reason="exit 1", retryable=False)
    assert queue.get(b.id).reason == f"dependency {a.id} failed"
    assert queue.get(c.id).reason == f"dependency {a.id} failed (via {b.id})"
    assert {queue.get(x.id).status for x in (b, c)} == {"blocked"}
    assert queue.events(b.id)[-1].detail == {"reason": f"dependency {a.id} failed", "cause": a.id}
    assert queue.claim("w1", lease_ttl_s=30, session=ME) is None
    late = queue.enqueue("d", GRAPH, depends_on=[a.id])
    assert (late.status, late.reason) == ("blocked", f"dependency {a.id} failed")


def test_a_retryable_failure_does_not_block_dependants(queue: Queue) -> None:
    a = queue.enqueue("a", GRAPH, max_error_attempts=2)
    b = queue.enqueue("b", GRAPH, depends_on=[a.id])
    queue.fail(claim(queue), reason="flake", retryable=True)
    assert queue.get(b.id).reason == f"waiting for {a.id} (todo)"


def test_cancel_and_quarantine_block_dependants_too(queue: Queue, clock: FakeClock) -> None:
    a = queue.enqueue("a", GRAPH)
    b = queue.enqueue("b", GRAPH, depends_on=[a.id])
    canceled = queue.cancel(a.id, "not needed")
    assert (canceled.status, canceled.reason, canceled.finished_at) == (
        "canceled",
        "not needed",
        clock.now,
    )
    assert queue.get(b.id).reason == f"dependency {a.id} canceled"
    c = queue.enqueue("c", GRAPH)
    d = queue.enqueue("d", GRAPH, depends_on=[c.id])
    lease = claim(queue)
    assert lease.ticket_id == c.id
    reclaim(queue, lease, quarantine_after=0)
    assert queue.get(d.id).reason == f"dependency {c.id} quarantined"


def test_a_leased_ticket_can_be_canceled_and_its_worker_is_fenced(queue: Queue) -> None:
    queue.enqueue("x", GRAPH)
    lease = claim(queue)
    queue.cancel(lease.ticket_id, "operator")
    with pytest.raises(FencedError, match="canceled"):
        queue.heartbeat(lease, lease_ttl_s=30)


def _race(*actions: Callable[[], Any]) -> list[Any]:
    """Run the actions in threads released by one barrier; their results, or the first error."""
    barrier = threading.Barrier(len(actions))
    results: list[Any] = [None] * len(actions)
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            barrier.wait()
            results[n] = actions[n]()
        except BaseException as exc:  # re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(actions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    if errors:
        raise errors[0]
    return results


def test_two_dependencies_finishing_at_once_still_unblock_the_dependant(
    backend: Backend, clock: FakeClock
) -> None:
    # Each worker has its own connection; neither commit alone sees the other's "done".
    one, two = backend.open(clock), backend.open(clock)
    try:
        for _ in range(15):
            a, b = one.enqueue("a", GRAPH), one.enqueue("b", GRAPH)
            c = one.enqueue("c", GRAPH, depends_on=[a.id, b.id])
            la, lb = claim(one), claim(one)
            _race(partial(one.complete, la, result={}), partial(two.complete, lb, result={}))
            assert one.get(c.id).status == "todo"
            one.cancel(c.id, "next round")
    finally:
        one.close()
        two.close()


def test_enqueueing_a_dependant_while_its_dependency_completes_never_strands_it(
    backend: Backend, clock: FakeClock
) -> None:
    one, two = backend.open(clock), backend.open(clock)
    try:
        for _ in range(15):
            a = one.enqueue("a", GRAPH)
            lease = claim(one)
            _, b = _race(
                partial(one.complete, lease, result={}),
                partial(two.enqueue, "b", GRAPH, depends_on=[a.id]),
            )
            assert one.get(b.id).status == "todo"
            one.cancel(b.id, "next round")
    finally:
        one.close()
        two.close()


# -- lookups, events, errors ------------------------------------------------------------------


def test_an_unknown_ticket_id_suggests_the_close_one(queue: Queue) -> None:
    t = queue.enqueue("x", GRAPH)
    typo = t.id[:-1] + ("0" if t.id[-1] != "0" else "1")
    for call in (
        lambda: queue.get(typo),
        lambda: queue.cancel(typo, "no"),
        lambda: queue.reclaim(typo, expected_epoch=1, reason="r", quarantine_after=1, window_s=60),
        lambda: queue.enqueue("y", GRAPH, depends_on=[typo]),
    ):
        with pytest.raises(
            QueueError, match=rf"no ticket '{typo}' in the queue \(did you mean '{t.id}'\?\)"
        ):
            call()
    assert len(queue.tickets()) == 1  # the refused enqueue left nothing behind


def test_events_are_appended_in_order_and_carry_the_epoch(queue: Queue, clock: FakeClock) -> None:
    t = queue.enqueue("x", GRAPH)
    lease = claim(queue)
    clock.advance(1)
    queue.complete(lease, result={"status": "success", "cost_usd": 0.5})
    events = queue.events()
    assert [(e.event, e.epoch) for e in events] == [
        ("created", None),
        ("claimed", 1),
        ("completed", 1),
    ]
    assert [e.id for e in events] == sorted(e.id for e in events)
    assert events[-1].detail["result"] == {"status": "success", "cost_usd": 0.5}
    assert queue.events(t.id) == events


def test_the_database_refuses_to_rewrite_ticket_events(queue: Queue, backend: Backend) -> None:
    t = queue.enqueue("x", GRAPH)
    with pytest.raises(backend.error, match="append-only"):
        backend.raw("UPDATE ticket_events SET event = 'forged' WHERE ticket_id = ?", (t.id,))
    with pytest.raises(backend.error, match="append-only"):
        backend.raw("DELETE FROM ticket_events WHERE ticket_id = ?", (t.id,))
    assert event_names(queue, t.id) == ["created"]


def test_no_code_updates_or_deletes_ticket_events() -> None:
    pattern = re.compile(r"(UPDATE|DELETE\s+FROM)\s+ticket_events", re.IGNORECASE)
    offenders = [
        f"{path.name}:{n}"
        for path in sorted((REPO / "executor").glob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line) and "ON ticket_events" not in line
    ]
    assert offenders == []


def test_to_json_names_the_fields_the_doctor_reads(queue: Queue) -> None:
    queue.enqueue("x", GRAPH)
    data = claim(queue).ticket.to_json()
    json.dumps(data)
    for key in (
        "id",
        "status",
        "run_id",
        "lease_epoch",
        "lease_owner",
        "pid",
        "host",
        "session_name",
        "error_attempts",
        "crash_recoveries",
        "last_heartbeat_at",
    ):
        assert key in data


def test_a_database_of_another_schema_version_is_refused(queue: Queue, backend: Backend) -> None:
    backend.raw("UPDATE schema_version SET version = 99")
    with pytest.raises(QueueError, match="schema version 99; this executor needs version 1"):
        backend.open()


def test_tickets_filters_by_status_and_rejects_unknown_ones(queue: Queue) -> None:
    a = queue.enqueue("a", GRAPH)
    queue.enqueue("b", GRAPH, depends_on=[a.id])
    assert [t.title for t in queue.tickets(status=["blocked"])] == ["b"]
    with pytest.raises(UsageError, match="in_progress"):
        queue.tickets(status="in_progress")


# -- many processes ---------------------------------------------------------------------------

_WORKER = """
import json, os, socket, sys
from executor import SessionInfo, open_queue
url, name = sys.argv[1], sys.argv[2]
queue = open_queue(url)
me = SessionInfo(name, pid=os.getpid(), pgid=os.getpgid(0), proc_start_time=None,
                 host=socket.gethostname())
print("ready", flush=True)
sys.stdin.readline()
claimed = []
while (lease := queue.claim(name, lease_ttl_s=60, session=me)) is not None:
    claimed.append(lease.ticket_id)
    queue.complete(lease, result={"by": name})
print(json.dumps(claimed), flush=True)
"""


def test_concurrent_worker_processes_claim_every_ticket_exactly_once(
    queue: Queue, backend: Backend
) -> None:
    ids = {queue.enqueue(f"t{i}", GRAPH).id for i in range(300)}
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, backend.url, f"w{n}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
        )
        for n in range(4)
    ]
    claims: list[str] = []
    try:
        for w in workers:  # every worker is connected before any claims: real contention
            assert w.stdout is not None and w.stdout.readline().strip() == "ready"
        for w in workers:
            assert w.stdin is not None
            w.stdin.write("go\n")
            w.stdin.flush()
        for w in workers:
            out, _ = w.communicate(timeout=120)
            assert w.returncode == 0
            claims.extend(json.loads(out.strip().splitlines()[-1]))
    finally:
        for w in workers:  # a failed assertion must not leave workers behind
            if w.poll() is None:
                w.kill()
            w.communicate()
    assert sorted(claims) == sorted(ids)  # every ticket claimed, none twice
    assert {t.status for t in queue.tickets()} == {"done"}
    claimed_events = Counter(e.ticket_id for e in queue.events() if e.event == "claimed")
    assert set(claimed_events.values()) == {1}
    assert {t.lease_epoch for t in queue.tickets()} == {1}
