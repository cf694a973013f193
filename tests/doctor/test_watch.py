"""The watch's passes as a library: what is alertable, what is new, what cleared."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from doctor import DoctorConfig, UsageError
from doctor._watch import WatchConfig, WatchState, watch, watch_pass
from fixtures import queues
from fixtures._kilroy import KilroyRun

START = "2026-03-01T10:00:00Z"
T0 = datetime(2026, 3, 1, 10, tzinfo=UTC).timestamp()
H = 3600.0
DEAD = 99999999


def _stalled(root: Path, run_id: str) -> KilroyRun:
    run = KilroyRun(root, run_id, START)
    run.run_pid(DEAD)
    run.stream().emit("warning", 0.0, message="progress")
    return run


def _cfg(root: Path, now: float) -> DoctorConfig:
    return DoctorConfig(roots=(root,), now=now, checks=("idle_gap", "missing_final"))


def test_a_new_finding_is_alerted_once_and_a_persisting_one_never_again(tmp_path: Path) -> None:
    _stalled(tmp_path, "r1").finish()
    state, first = watch_pass(_cfg(tmp_path, T0 + 3 * H), WatchState())
    state, second = watch_pass(_cfg(tmp_path, T0 + 4 * H), state)
    assert sorted((e.event, e.run_id, e.code) for e in first) == [("alert", "r1", "missing_final")]
    assert second == []
    assert state.passes == 2
    assert [e.first_seen for e in state.active.values()] == ["2026-03-01T13:00:00Z"]


def test_a_finding_that_clears_is_resolved_and_forgotten(tmp_path: Path) -> None:
    run = _stalled(tmp_path, "r1")
    run.finish()
    state, _ = watch_pass(_cfg(tmp_path, T0 + 3 * H), WatchState())
    run.stream().emit("run_completed", 3 * H, status="success")
    run.final(status="success")
    run.finish()
    state, events = watch_pass(_cfg(tmp_path, T0 + 3 * H + 60), state)
    assert [(e.event, e.code, e.first_seen) for e in events] == [
        ("resolved", "missing_final", "2026-03-01T13:00:00Z")
    ]
    assert state.active == {}  # the state keeps only what is still open: it stays bounded


def test_a_closed_idle_gap_is_history_not_an_alert(tmp_path: Path) -> None:
    run = KilroyRun(tmp_path, "r1", START)
    run.run_pid(DEAD)
    run.stream().emit("warning", 0.0, message="progress")
    run.stream().emit("run_completed", 3 * H, status="success")
    run.final(status="success")
    run.finish()
    cfg = DoctorConfig(roots=(tmp_path,), now=T0 + 4 * H, checks=("idle_gap",))
    assert watch_pass(cfg, WatchState())[1] == []


def test_the_state_survives_a_save_and_load(tmp_path: Path) -> None:
    _stalled(tmp_path / "runs", "r1").finish()
    state, events = watch_pass(_cfg(tmp_path / "runs", T0 + 3 * H), WatchState())
    state.save(tmp_path / "state.json")
    assert WatchState.load(tmp_path / "state.json") == state
    assert events


def test_a_state_file_of_another_kind_is_refused(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text('{"schema": "rundoctor.scan/1"}')
    with pytest.raises(UsageError, match="is not a watch state"):
        WatchState.load(tmp_path / "s.json")


def test_the_idle_watchdog_alerts_while_queued_work_waits_and_nothing_runs(tmp_path: Path) -> None:
    q = queues.incident_01()
    db = q.write_sqlite(tmp_path / "queue.db")
    cfg = DoctorConfig(db=str(db), now=q.now)
    state, events = watch_pass(cfg, WatchState())
    (watchdog,) = [e for e in events if (e.run_id, e.code) == (None, "idle_gap")]
    assert watchdog.event == "alert" and watchdog.severity == "error"
    assert " tickets waited" in watchdog.summary or " ticket waited" in watchdog.summary
    assert watch_pass(cfg.with_now(q.now + 60), state)[1] == []  # still idle: not sent again


def test_queue_findings_about_two_tickets_are_two_alerts(tmp_path: Path) -> None:
    pid = os.getpid()
    q = queues.incident_02(pid, queues.proc_start_ticks(pid))
    db = q.write_sqlite(tmp_path / "queue.db")
    _, events = watch_pass(DoctorConfig(db=str(db), now=q.now), WatchState())
    desynced = sorted(e.ticket_id or "" for e in events if e.code == "session_desync")
    assert len(desynced) == 2 and len(set(desynced)) == 2
    assert all(e.run_id is None for e in events if e.code == "session_desync")


def test_docs_watch_md_lists_every_key_of_an_event(tmp_path: Path) -> None:
    # The table of docs/watch.md missed `ticket_id`, which a queue finding's alert carries.
    pid = os.getpid()
    q = queues.incident_02(pid, queues.proc_start_ticks(pid))
    _, events = watch_pass(
        DoctorConfig(db=str(q.write_sqlite(tmp_path / "queue.db")), now=q.now), WatchState()
    )
    doc = (Path(__file__).resolve().parents[2] / "docs" / "watch.md").read_text()
    table = doc.split("| key | meaning |", 1)[1].split("\n\n", 1)[0].splitlines()[2:]
    documented = [name for row in table for name in row.split("|")[1].split("`")[1::2]]
    assert any(e.ticket_id for e in events)
    assert sorted(documented) == sorted(events[0].to_json())


def test_what_a_root_leaves_out_is_logged_when_it_changes_not_every_pass(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for group in ("a", "b"):  # one run id in two groups: b's is not scanned, and the scan says so
        _stalled(root / group, "dup").finish()
    lines: list[str] = []
    passes: list[float] = []

    def stop(interval: float) -> bool:
        passes.append(interval)
        if len(passes) == 2:  # after the second pass, b's run goes: the scan says nothing
            os.rename(root / "b" / "dup", tmp_path / "dup")
        return len(passes) == 3

    watch(
        _cfg(root, T0),
        WatchConfig(state_path=tmp_path / "watch.json", interval_s=0.0),
        emit=lambda _: None,
        log=lines.append,
        stop=stop,
    )
    assert [line for line in lines if "roots:" in line] == [
        f"watch pass 1: roots: 1 run under {root / 'b'} not scanned: dup is also under "
        f"{root / 'a'}, which comes first (as for diagnose); scan --root {root / 'b'} alone to "
        f"see it, or diagnose it: doctor diagnose --run-id b/dup --root {root}"
    ]
