"""``idle_gap``: stretches with no progress, in one run and across all runs."""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from doctor import Diagnosis, DoctorConfig, Finding, diagnose_path, scan
from doctor._detectors._queue import LEASED, TERMINAL
from doctor._detectors.idle_gap import (
    _TICKET_SPANS_SQL,
    _counted,
    _stretch_counts,
    activity_gaps,
)
from doctor._tables import _COLUMNS, Tables, new_connection
from fixtures._kilroy import KilroyRun

START = "2026-03-01T10:00:00Z"
T0 = datetime(2026, 3, 1, 10, tzinfo=UTC).timestamp()
NOW = T0 + 12 * 3600
H = 3600.0
DEAD = 99999999


def _run(root: Path, run_id: str = "r1", *, pid: int = DEAD, start: str = START) -> KilroyRun:
    run = KilroyRun(root, run_id, start)
    run.run_pid(pid)
    return run


def _progress(run: KilroyRun, *hours: float, scope: str = "") -> None:
    for h in hours:
        run.stream(scope).emit("warning", h * H, message="progress")


def _beats(run: KilroyRun, start_h: float, end_h: float, scope: str = "") -> None:
    h = start_h
    while h <= end_h:
        run.stream(scope).emit("stage_heartbeat", h * H, node_id="impl")
        h += 0.25


def _diagnose(run: KilroyRun, now: float = NOW) -> list[Finding]:
    cfg = DoctorConfig(now=now, checks=("idle_gap",))
    return list(diagnose_path(run.finish(), cfg).findings)


def _scan(root: Path, now: float = NOW) -> list[Finding]:
    return list(scan(DoctorConfig(roots=(root,), now=now, checks=("idle_gap",))).findings)


def test_heartbeats_alone_do_not_end_an_idle_gap(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _progress(run, 0, 0.5)
    _beats(run, 0.75, 3.5)
    (f,) = _diagnose(run)
    assert f.run_id == "r1"
    assert (f.evidence["start"], f.evidence["end"]) == (
        "2026-03-01T10:30:00Z",
        "2026-03-01T13:30:00Z",
    )
    assert f.evidence["duration_s"] == 3 * H
    assert (f.evidence["alive_runs"], f.evidence["pending"]) == (1, 1)
    assert f.severity.label == "warning"


def test_a_gap_shorter_than_the_threshold_is_not_reported(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _progress(run, 0, 1.9, 3.8)
    assert _diagnose(run) == []


def test_the_threshold_comes_from_the_config(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _progress(run, 0, 1.5)
    path = run.finish()
    cfg = DoctorConfig(now=NOW, checks=("idle_gap",), idle_gap_s=3600)
    (f,) = diagnose_path(path, cfg).findings
    assert f.evidence["duration_s"] == 1.5 * H


def test_progress_in_a_branch_is_progress_of_the_run(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _progress(run, 0)
    _beats(run, 0.25, 5)  # the parent only beats…
    _progress(run, 1, 2.5, 4, scope="parallel/fan/01-a")  # …while a branch works
    assert _diagnose(run) == []


def test_nothing_after_a_terminal_run_ended_is_a_gap(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _progress(run, 0, 1)
    run.final("success", at=1 * H + 2)
    _beats(run, 1.25, 6)  # leaked heartbeats after the end
    assert _diagnose(run) == []


def test_a_terminal_run_idle_until_final_json_was_written_has_a_gap(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _progress(run, 0, 1)
    run.final("fail", "stopped_by_operator", at=5 * H)  # `attractor stop` after a long hang
    (f,) = _diagnose(run)
    assert f.evidence["end"] == "2026-03-01T15:00:00Z"


def test_a_final_timestamp_with_an_offset_is_read_in_utc(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _progress(run, 0, 1)
    run.write_json("final.json", {"timestamp": "2026-03-01T16:00:00+01:00", "status": "fail"})
    (f,) = _diagnose(run)
    assert f.evidence["end"] == "2026-03-01T15:00:00Z"


def test_a_dead_owners_run_is_not_idle_past_its_last_event(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _progress(run, 0, 1)  # then nothing: killed; missing_final's business, not an idle gap
    assert _diagnose(run) == []


def test_a_live_owners_idle_gap_runs_to_now_and_is_an_error(tmp_path: Path) -> None:
    run = _run(tmp_path, pid=os.getpid())
    _progress(run, 0, 1)
    (f,) = _diagnose(run)
    assert f.evidence["end"] == "2026-03-01T22:00:00Z"
    assert f.evidence["ongoing"] is True
    assert f.severity.label == "error"


def test_one_run_gets_no_fleet_finding(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _progress(run, 0, 0.5)
    _beats(run, 0.75, 4)
    run.finish()
    assert [f.run_id for f in _scan(tmp_path)] == []  # scan keeps per-run findings per run


def test_a_fleet_gap_while_a_run_was_alive_is_an_error(tmp_path: Path) -> None:
    hung = _run(tmp_path, "hung")
    _progress(hung, 0)
    _beats(hung, 0.25, 6)  # alive (beating) but no progress until 16:00
    other = _run(tmp_path, "other")
    _progress(other, 0, 0.5)
    other.final("success", at=0.5 * H)  # ends where the gap begins: not alive during it
    late = _run(tmp_path, "late", start="2026-03-01T15:00:00Z")
    _progress(late, 0, 0.5)
    late.final("success", at=0.5 * H + 1)
    for r in (hung, other, late):
        r.finish()
    fleet = _scan(tmp_path)
    (f,) = fleet
    assert f.run_id is None and f.scope == ""
    assert (f.evidence["start"], f.evidence["end"]) == (
        "2026-03-01T10:30:00Z",
        "2026-03-01T15:00:00Z",
    )
    assert f.evidence["alive_runs"] == 1  # only "hung" lived through it
    assert f.evidence["pending"] == 1
    assert f.severity.label == "error"


def test_no_fleet_gap_between_runs_when_nothing_was_pending(tmp_path: Path) -> None:
    first = _run(tmp_path, "first")
    _progress(first, 0, 1)
    first.final("success", at=1 * H)
    second = _run(tmp_path, "second", start="2026-03-01T18:00:00Z")
    _progress(second, 0, 1)
    second.final("success", at=1 * H)
    first.finish()
    second.finish()
    assert _scan(tmp_path) == []


def test_an_orphaned_run_keeps_work_pending_across_a_fleet_gap(tmp_path: Path) -> None:
    orphan = _run(tmp_path, "orphan")
    _progress(orphan, 0, 0.5)  # killed at 10:30, never finished
    later = _run(tmp_path, "later", start="2026-03-01T14:00:00Z")
    _progress(later, 0, 1)
    later.final("success", at=1 * H)
    orphan.finish()
    later.finish()
    (f,) = _scan(tmp_path)
    assert (f.evidence["alive_runs"], f.evidence["pending"]) == (0, 1)
    assert f.severity.label == "warning"


@pytest.fixture(scope="module")
def rogue(rogue_diagnosis: Diagnosis) -> list[Finding]:
    """Incident 04's run (``fixtures/rogue.py``), built and diagnosed once per session
    (tests/conftest.py): this check's findings, the same as diagnosing with it alone."""
    return [f for f in rogue_diagnosis.findings if f.code == "idle_gap"]


@pytest.mark.slow
def test_incident_04_never_stood_still_for_two_hours(rogue: list[Finding]) -> None:
    assert rogue == []


class _Compared(int):
    """An int that counts the comparisons made with it (on the left or the right)."""

    made = 0

    def __lt__(self, other: object) -> bool:
        _Compared.made += 1
        return int(self) < other  # type: ignore[operator]

    def __le__(self, other: object) -> bool:
        _Compared.made += 1
        return int(self) <= other  # type: ignore[operator]

    def __gt__(self, other: object) -> bool:
        _Compared.made += 1
        return int(self) > other  # type: ignore[operator]

    def __ge__(self, other: object) -> bool:
        _Compared.made += 1
        return int(self) >= other  # type: ignore[operator]


def _spread_fleet(runs: int, *, wrap: type[int] = int) -> list[tuple[str, int, int, bool]]:
    """Runs an hour apart, each ten minutes long: every pair of neighbours is a fleet gap."""
    hour = 3600 * 10**9
    return [
        (f"r{i:05d}", wrap(i * hour), wrap(i * hour + hour // 6), i % 3 != 0) for i in range(runs)
    ]


def test_the_fleet_gaps_counts_grow_with_the_fleet_not_its_square() -> None:
    # A fleet of 10,000 runs has about as many gaps between them; counting each gap's alive
    # and pending runs over every life took 7.5 s of a 10,000-run rescan's 20.
    cfg = DoctorConfig(now=1e9, idle_gap_s=1800)
    counts = {}
    for runs in (500, 1000):
        lives = _spread_fleet(runs, wrap=_Compared)
        _Compared.made = 0
        found = activity_gaps(lives, {r: [s, e] for r, s, e, _ in lives}, cfg)
        counts[runs] = _Compared.made
        assert len(found) == runs - 1  # the fleet's gaps; the runs themselves progressed
    assert counts[1000] < 100 * 1000  # it was 2 comparisons per gap and life: 2 million
    assert counts[1000] < 2.5 * counts[500]


def _brute(
    gaps: list[tuple[str | None, int, int]], lives: list[tuple[str, int, int, bool]]
) -> list[tuple[str | None, int, int, int, int]]:
    rows = []
    for owner, a, b in gaps:
        alive = sum(1 for _, s, e, _ in lives if s < b and e > a)
        pending = sum(1 for _, s, e, fin in lives if s < b and not (fin and e <= a))
        if owner is not None or alive or pending:
            rows.append((owner, a, b, alive, pending))
    rows.sort(key=lambda row: (row[0] is None, row[0] or "", row[1]))
    return rows


@pytest.mark.parametrize("seed", range(20))
def test_the_counted_gaps_are_those_of_every_life_compared(seed: int) -> None:
    # Ties, empty lives and lives that end before they start (a final.json stamped by a
    # clock behind) included.
    rng = random.Random(seed)
    lives = []
    for i in range(rng.randint(0, 40)):
        s = rng.randint(0, 60)
        lives.append((f"r{i}", s, s + rng.randint(-5, 20), rng.random() < 0.5))
    gaps: list[tuple[str | None, int, int]] = []
    for _ in range(rng.randint(0, 40)):
        a = rng.randint(-5, 70)
        gaps.append((rng.choice([None, "r1", "r2"]), a, a + rng.randint(1, 15)))
    assert _counted(gaps, lives) == _brute(gaps, lives)


# --- the queue's stretches: counted in one sweep, as the join of every stretch with every
# ticket counted them ------------------------------------------------------------------------

#: The query _queue_gaps ran before (stretches cross joined with tickets), as the reference;
#: but for a blocked ticket, never pending (it was pending at its creation: counted when made
#: inside a stretch).
_JOINED_STRETCH_SQL = f"""
WITH stretches AS (SELECT unnest($starts) AS a, unnest($ends) AS b),
tickets_x AS (
    SELECT t.*, created_at AS p_start,
           CASE WHEN status IN {TERMINAL} THEN coalesce(finished_at, updated_at)
                WHEN status = 'blocked' THEN NULL ELSE $now END AS p_end,
           CASE WHEN status IN {TERMINAL} THEN coalesce(finished_at, updated_at)
                WHEN status IN {LEASED} THEN $now ELSE claimed_at END AS l_end,
           status IN {LEASED} AND (run_id IS NOT NULL OR run_path IS NOT NULL) AND NOT EXISTS (
               SELECT 1 FROM runs r WHERE r.run_id = t.run_id OR r.path = t.run_path
           ) AS unseen
    FROM tickets t
)
SELECT s.a, s.b,
       count(*) FILTER (WHERE x.p_start < s.b AND x.p_end > s.a) AS pending,
       count(*) FILTER (WHERE x.claimed_at < s.b AND x.l_end > s.a) AS leases,
       count(*) FILTER (WHERE x.unseen AND x.claimed_at < s.b
                        AND coalesce(x.last_heartbeat_at, x.claimed_at) >= s.b - $stale) AS unseen
FROM stretches s CROSS JOIN tickets_x x
GROUP BY s.a, s.b ORDER BY s.a
"""

_STATUSES = [None, "todo", "blocked", "claimed", "running", "done", "failed", "canceled"]
_TIME = st.one_of(st.none(), st.integers(0, 20).map(float))


@st.composite
def _queue(draw: st.DrawFn) -> tuple[list[tuple[Any, ...]], list[tuple[float, float]]]:
    tickets = []
    for i in range(draw(st.integers(1, 25))):
        status = draw(st.sampled_from(_STATUSES))
        run_id = draw(st.sampled_from([None, "r1", "r2"]))
        run_path = draw(st.sampled_from([None, "/runs/r1", "/runs/r3"]))
        row: dict[str, Any] = dict.fromkeys(name for name, _ in _COLUMNS["tickets"])
        row.update(id=f"t{i}", status=status, run_id=run_id, run_path=run_path)
        for name in ("last_heartbeat_at", "claimed_at", "created_at", "updated_at", "finished_at"):
            row[name] = draw(_TIME)
        tickets.append(tuple(row.values()))
    # The stretches as _overlaps makes them: sorted, disjoint, each longer than nothing.
    cuts = sorted(draw(st.sets(st.integers(-2, 24), min_size=0, max_size=12)))
    stretches = [(float(a), float(b)) for a, b in zip(cuts[::2], cuts[1::2], strict=False)]
    return tickets, stretches


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(queue=_queue(), stale=st.sampled_from([0.0, 2.0, 7.5]))
def test_the_queue_stretches_count_as_the_join_of_every_stretch_with_every_ticket(
    queue: tuple[list[tuple[Any, ...]], list[tuple[float, float]]], stale: float
) -> None:
    # A stretch per idle hour and a ticket per job: the join was stretches times tickets.
    # Ties, missing times, blocked tickets, spans ending before they start, leases whose run
    # is in the tables by id or by path or not at all.
    tickets, stretches = queue
    tables = Tables(new_connection())
    try:
        tables.add_rows("tickets", tickets)
        tables.add_rows("runs", [("r1", "/runs/r1", "kilroy", None)])
        now = 22.0
        joined = tables.sql(
            _JOINED_STRETCH_SQL,
            starts=[a for a, _ in stretches],
            ends=[b for _, b in stretches],
            now=now,
            stale=stale,
        )
        swept = _stretch_counts(stretches, tables.sql(_TICKET_SPANS_SQL, now=now), stale)
    finally:
        tables.con.close()
    assert swept == [tuple(row) for row in joined]
