"""Each checker on hand-made histories: a clean one passes, a violation names its witness."""

from __future__ import annotations

import pytest

from chaos import (
    CHECKERS,
    Bounds,
    FaultRecord,
    History,
    Op,
    QueueEvent,
    RunRecord,
    TicketRecord,
    WorkerRecord,
    at_most_one_completion,
    breaker_within_limit,
    check,
    diagnosis_explained,
    every_worker_exit_explained,
    final_json_in_time,
    no_heartbeat_after_end,
    no_stale_write_accepted,
    no_succeeded_run_rerun,
    no_ticket_lost,
    no_worker_crashed,
    reclaim_latency,
)
from tests.chaos.conftest import Story, finding


def clean() -> Story:
    """Two tickets done; the second one's first lease was reclaimed after its worker died."""
    s = Story(Bounds())
    s.lease("t-1", 1, "w1/0", at=10, end=12)
    s.ticket("t-1", "done", 1)
    s.worker("w2", "start")
    s.fault(20.0, "sigkill_worker", runs=("/runs/r1",), held=(("t-2", 1),))
    s.lease("t-2", 1, "w2/0", at=19, end=20.4, ending="reclaimed")
    s.lease("t-2", 2, "w1/0", at=21, end=25)
    s.ticket("t-2", "done", 2)
    s.worker("w2", "exit")
    s.run("r1", "t-2", 1, final_status="fail", final_by="reaper", final_at=20.3)
    s.run("r2", "t-2", 2, final_at=24.9)
    return s


@pytest.mark.parametrize("checker", CHECKERS, ids=lambda c: c.__name__)
def test_a_clean_history_passes_every_checker(checker: object) -> None:
    verdict = checker(clean().history())  # type: ignore[operator]
    assert verdict.ok, verdict.summary
    assert verdict.witness == () and verdict.violations == 0


def test_an_empty_history_passes_every_checker() -> None:
    assert [v.name for v in check(History(())) if not v.ok] == []


def test_a_ticket_still_running_after_the_drain_is_lost_and_its_last_events_are_the_witness() -> (
    None
):
    s = clean()
    s.lease("t-3", 1, "w1/0", at=30, end=31, ending="none")
    lost = s.ticket("t-3", "running", 1)
    v = no_ticket_lost(s.history())
    assert not v.ok and v.violations == 1
    assert v.summary.startswith("1 of 3 tickets not terminal after the drain; first: t-3")
    assert v.witness[0] == lost
    assert [r.event for r in v.witness[1:] if isinstance(r, QueueEvent)] == ["created", "claimed"]


def test_a_ticket_that_vanished_from_the_queue_is_lost() -> None:
    s = clean()
    created = s.event(5.0, "t-9", "created")
    v = no_ticket_lost(s.history())
    assert not v.ok and v.witness == (created,)


def test_two_accepted_completions_of_one_ticket_are_both_in_the_witness() -> None:
    s = clean()
    first = next(e for e in s.records if isinstance(e, QueueEvent) and e.event == "completed")
    again = s.event(13.0, "t-1", "completed", "w2/0", 1)
    v = at_most_one_completion(s.history())
    assert not v.ok and v.summary == "t-1 was completed 2 times"
    assert v.witness == (first, again)


def test_a_completion_under_another_workers_epoch_is_a_stale_write() -> None:
    s = clean()
    claim = next(
        e
        for e in s.records
        if isinstance(e, QueueEvent) and e.event == "claimed" and e.ticket == "t-2" and e.epoch == 2
    )
    stale = s.event(24.0, "t-2", "failed", "w2/0", 2)
    v = no_stale_write_accepted(s.history())
    assert not v.ok
    assert v.summary.startswith("w2/0 wrote t-2 under epoch 2, which w1/0 holds")
    assert v.witness == (claim, stale)


def test_a_heartbeat_accepted_after_its_lease_was_reclaimed_is_a_stale_write() -> None:
    s = clean()
    s.op(20.6, "invoke", "heartbeat", "w2/0", "t-2", 1)
    ok = s.op(20.7, "ok", "heartbeat", "w2/0", "t-2", 1)
    v = no_stale_write_accepted(s.history())
    assert not v.ok and "after it was reclaimed" in v.summary
    assert isinstance(v.witness[0], QueueEvent) and v.witness[0].event == "reclaimed"
    assert v.witness[1] == ok


def test_a_fenced_write_after_the_reclaim_is_no_violation() -> None:
    s = clean()
    s.op(20.6, "invoke", "complete", "w2/0", "t-2", 1)
    s.event(20.65, "t-2", "fenced", "w2/0", 1, action="complete")
    s.op(20.7, "fail", "complete", "w2/0", "t-2", 1)
    v = no_stale_write_accepted(s.history())
    assert v.ok and v.summary.endswith("1 stale one fenced")


def test_a_run_without_final_json_violates_and_names_the_run() -> None:
    s = clean()
    run = s.run("r3", "t-1", 1, final_status=None, final_at=None, final_problem="no final.json")
    v = final_json_in_time(s.history())
    assert not v.ok and v.summary == "run r3: no final.json" and v.witness == (run,)


def test_a_final_json_written_long_after_the_lease_ended_violates_the_bound() -> None:
    s = clean()
    late = s.run("r4", "t-1", 1, final_at=12.0 + 9.0)
    v = final_json_in_time(s.history())
    assert not v.ok and "final.json 9.00s after its lease ended (bound 5s)" in v.summary
    end, run = v.witness
    assert isinstance(end, QueueEvent) and end.event == "completed" and run == late


def test_a_heartbeat_begun_after_the_lease_ended_and_accepted_violates() -> None:
    s = clean()
    invoke = s.op(12.5, "invoke", "heartbeat", "w1/0", "t-1", 1)
    ok = s.op(12.6, "ok", "heartbeat", "w1/0", "t-1", 1)
    v = no_heartbeat_after_end(s.history())
    assert not v.ok and v.witness[1:] == (invoke, ok)


def test_a_stage_heartbeat_after_its_attempt_ended_violates() -> None:
    s = clean()
    run = s.run("r5", "t-1", 1, late_heartbeats=("run: work attempt 1 at 2026-01-01T00:00:00Z",))
    v = no_heartbeat_after_end(s.history())
    assert not v.ok and v.witness == (run,)
    assert v.summary == "run r5: run: work attempt 1 at 2026-01-01T00:00:00Z"


def test_a_signature_counted_beyond_the_breaker_limit_violates() -> None:
    s = clean()
    run = s.run(
        "r6",
        "t-1",
        1,
        workload="deterministic",
        final_status="fail",
        signature_limit=3,
        max_signature_count=4,
        breaker_trips=1,
    )
    v = breaker_within_limit(s.history())
    assert not v.ok and v.witness == (run,) and "counted 4 (limit 3)" in v.summary


def test_a_deterministic_loop_that_failed_on_its_own_without_a_trip_violates() -> None:
    s = clean()
    s.run(
        "r7",
        "t-1",
        1,
        workload="deterministic",
        final_status="fail",
        signature_limit=3,
        max_signature_count=2,
    )
    v = breaker_within_limit(s.history())
    assert not v.ok and v.summary == "deterministic run r7 failed without a breaker trip"


def test_a_deterministic_loop_cut_short_by_a_fault_need_not_trip() -> None:
    s = clean()
    s.run("r7", "t-1", 1, workload="deterministic", final_status="fail", max_signature_count=1)
    s.fault(11.0, "sigkill_stage", runs=("/runs/r7",))
    assert breaker_within_limit(s.history()).ok


def test_a_transient_only_run_that_tripped_the_breaker_violates() -> None:
    s = clean()
    s.run(
        "r8",
        "t-1",
        1,
        workload="transient",
        breaker_trips=1,
        signature_limit=3,
        max_signature_count=3,
    )
    v = breaker_within_limit(s.history())
    assert not v.ok and v.summary == "transient-only run r8 tripped the breaker"


def test_reclaim_latency_reports_p50_and_p99_of_each_kind() -> None:
    v = reclaim_latency(clean().history())
    assert v.ok
    assert v.stats["sigkill"]["n"] == 1 and v.stats["sigkill"]["p50_s"] == pytest.approx(0.4)
    assert v.stats["sigstop"]["n"] == 0
    assert v.summary.startswith("sigkill: n=1 p50 0.40s p99 0.40s; sigstop: no samples")


def test_a_slow_reclaim_after_sigstop_violates_its_bound_with_fault_and_event_as_witness() -> None:
    s = clean()
    fault = s.fault(40.0, "sigstop_worker", held=(("t-5", 1),))
    s.lease("t-5", 1, "w1/0", at=39, end=40.0 + 30.0, ending="reclaimed")
    s.ticket("t-5", "done", 1)
    v = reclaim_latency(s.history())
    assert not v.ok and "sigstop reclaim latency p99 30.00s exceeds its bound 6s" in v.summary
    assert v.witness[0] == fault and isinstance(v.witness[1], QueueEvent)


def test_one_reclaim_between_the_p50_and_p99_bounds_is_held_to_the_p99_bound_only() -> None:
    s = clean()
    s.fault(40.0, "sigstop_worker", held=(("t-5", 1),))
    s.lease("t-5", 1, "w1/0", at=39, end=45.0, ending="reclaimed")
    v = reclaim_latency(s.history())
    assert v.ok and v.stats["sigstop"]["p50_s"] == pytest.approx(5.0)


def test_five_reclaims_whose_median_is_over_the_p50_bound_violate_it() -> None:
    s = clean()
    for i in range(5):
        s.fault(40.0 + 10 * i, "sigstop_worker", held=((f"t-s{i}", 1),))
        s.lease(f"t-s{i}", 1, "w1/0", at=39 + 10 * i, end=45.0 + 10 * i, ending="reclaimed")
    v = reclaim_latency(s.history())
    assert not v.ok and "sigstop reclaim latency p50 5.00s exceeds its bound 4s" in v.summary


def test_a_lease_of_a_killed_worker_that_is_never_reclaimed_violates() -> None:
    s = clean()
    fault = s.fault(40.0, "sigkill_worker", held=(("t-6", 1),))
    s.lease("t-6", 1, "w3/0", at=39, end=0, ending="none")
    v = reclaim_latency(s.history())
    assert not v.ok and "lease t-6 epoch 1 was not reclaimed (never ended)" in v.summary
    assert v.witness == (fault,)


def test_time_the_database_was_stalled_is_not_counted_as_reclaim_latency() -> None:
    s = clean()
    s.fault(39.5, "stall_database")
    s.fault(40.0, "sigkill_worker", held=(("t-7", 1),))
    s.fault(43.5, "stall_database", "recover")
    s.lease("t-7", 1, "w3/0", at=39, end=43.8, ending="reclaimed")
    v = reclaim_latency(s.history())
    assert v.ok and v.stats["sigkill"]["max_s"] == pytest.approx(0.4)


def test_an_error_finding_a_touching_fault_declares_is_explained() -> None:
    s = clean()
    s.run("r9", "t-1", 1, findings=(finding("torn_artifact"),))
    s.fault(11.0, "torn_write", runs=("/runs/r9",))
    v = diagnosis_explained(s.history())
    assert v.ok and "1 fault-explained" in v.summary


def test_an_error_finding_no_fault_explains_violates_with_the_run_as_witness() -> None:
    s = clean()
    run = s.run(
        "r9", "t-1", 1, findings=(finding("torn_artifact"), finding("retry_loop", "warning"))
    )
    v = diagnosis_explained(s.history())
    assert not v.ok and v.violations == 1 and v.witness == (run,)
    assert v.summary == "run r9: error torn_artifact (no fault touched it): torn_artifact seen"


def test_a_finding_the_touching_fault_does_not_declare_is_not_explained() -> None:
    s = clean()
    s.run("r9", "t-1", 1, findings=(finding("missing_final", "critical"),))
    fault = s.fault(11.0, "sigterm_worker", runs=("/runs/r9",))
    v = diagnosis_explained(s.history())
    assert not v.ok and v.witness[1] == fault and "(sigterm_worker touched it)" in v.summary


def test_a_worker_that_exited_unasked_is_a_crash() -> None:
    s = clean()
    crash = s.worker("w9", "exit", expected=False)
    v = no_worker_crashed(s.history())
    assert not v.ok and v.witness == (crash,)
    assert v.summary == "worker w9 (pid 42) exited by itself with status -9"


def test_a_ticket_claimed_again_after_its_run_succeeded_is_succeeded_work_run_twice() -> None:
    s = clean()
    ran = s.run("r7", "t-3", 1)  # final.json success, by the executor
    s.lease("t-3", 1, "w1/0", at=30, end=31, ending="reclaimed")  # the database blinked
    s.lease("t-3", 2, "w1/0", at=32, end=33)
    v = no_succeeded_run_rerun(s.history())
    assert not v.ok and v.witness[0] == ran
    assert (
        v.summary == "ticket t-3 was claimed again (epoch 2) after its run r7 (epoch 1) succeeded"
    )


def test_a_run_the_reaper_failed_may_run_again() -> None:
    assert no_succeeded_run_rerun(clean().history()).ok  # r1 (reaper, fail) then r2


def test_a_worker_that_gave_up_saying_why_is_explained_one_that_exited_silently_is_not() -> None:
    s = clean()
    said = "error: worker w8 cannot continue: the queue stayed unavailable for 300 s"
    s.add(WorkerRecord(5.0, "w8", 43, "exit", 3, expected=False, said=said))
    assert every_worker_exit_explained(s.history()).ok
    silent = s.add(WorkerRecord(6.0, "w9", 44, "exit", 0, expected=False, said="done"))
    v = every_worker_exit_explained(s.history())
    assert not v.ok and v.witness == (silent,)
    assert v.summary == "worker w9 (pid 44) exited with status 0 unexplained: 'done'"


def test_a_traceback_in_a_worker_log_is_never_explained() -> None:
    s = clean()
    s.add(WorkerRecord(6.0, "w9", 44, "exit", -15, expected=True, said="X", traceback=True))
    v = every_worker_exit_explained(s.history())
    assert not v.ok and "wrote a traceback" in v.summary


def test_every_checker_has_a_docstring_and_a_unique_name() -> None:
    names = [c.__name__ for c in CHECKERS]
    assert len(set(names)) == len(names)
    assert all((c.__doc__ or "").strip() for c in CHECKERS)


def test_records_of_every_kind_appear_in_the_clean_story() -> None:
    kinds = {type(r) for r in clean().history().records}
    assert {Op, QueueEvent, TicketRecord, RunRecord, FaultRecord} <= kinds
