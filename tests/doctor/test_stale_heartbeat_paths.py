"""``stale_heartbeat``'s two plans (an ASOF join, or spans for nodes with few attempts) agree.

The detector picks the spans plan when no node has more than ``MAX_SPANS_PER_NODE`` attempts in
one stream; both must find the same stale heartbeats on every shape of attempts: overlapping
starts, an attempt never ended, heartbeats before any start, after an end, of another node.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest

from doctor._config import DoctorConfig
from doctor._detectors import Context
from doctor._facts import compute_facts
from doctor._ingest import load_runs
from doctor._layout import discover

detector = importlib.import_module("doctor._detectors.stale_heartbeat")


def _write(run: Path, events: list[tuple[str, str | None]]) -> None:
    run.mkdir(parents=True)
    (run / "run.pid").write_text("99999999")
    lines = []
    for i, (event, node) in enumerate(events):
        fields: dict[str, Any] = {
            "event": event,
            "ts": f"2026-04-28T10:{i // 60:02d}:{i % 60:02d}Z",
        }
        if node is not None:
            fields["node_id"] = node
        lines.append(json.dumps(fields) + "\n")
    (run / "progress.ndjson").write_text("".join(lines))


def _shape(attempts_of_a: int) -> list[tuple[str, str | None]]:
    hb = "stage_heartbeat"
    ev: list[tuple[str, str | None]] = [(hb, "a"), (hb, "b")]  # before any start: stale
    ev += [("stage_attempt_start", "a"), (hb, "a"), ("stage_attempt_start", "a"), (hb, "a")]
    ev += [("stage_attempt_end", "a"), (hb, "a"), (hb, "b")]  # overlapping starts, one end
    for _ in range(attempts_of_a):
        ev += [("stage_attempt_start", "a"), (hb, "a"), ("stage_attempt_end", "a"), (hb, "a")]
    ev += [("stage_attempt_start", "b"), (hb, "b"), (hb, "a")]  # b never ends
    ev += [("edge_selected", None), (hb, "a"), (hb, "b"), (hb, None)]
    return ev


@pytest.mark.parametrize("attempts_of_a", [1, 3, detector.MAX_SPANS_PER_NODE + 2])
def test_both_plans_find_the_same_stale_heartbeats(tmp_path: Path, attempts_of_a: int) -> None:
    run = tmp_path / "r1"
    _write(run, _shape(attempts_of_a))
    config = DoctorConfig(roots=(tmp_path,), now=1_800_000_000.0)
    tables = load_runs([discover(run)], keep_raw=False)
    ctx = Context(tables, compute_facts(tables, config), config)
    asof = tables.sql(detector._TEMPLATE.replace("{stale}", detector._STALE_ASOF))
    spans = tables.sql(detector._TEMPLATE.replace("{stale}", detector._STALE_SPANS))
    assert asof == spans
    ((_run, _scope, nodes, counts, *_rest),) = asof
    # a: before its first start, after the overlapping pair's end, after each later attempt's
    # end, and twice after its last; b: twice before its start (never after: it never ends).
    assert dict(zip(nodes, counts, strict=True)) == {"a": 4 + attempts_of_a, "b": 2}
    chosen = detector._stale_sql(ctx)
    many = attempts_of_a + 2 > detector.MAX_SPANS_PER_NODE
    assert chosen is (detector._STALE_ASOF if many else detector._STALE_SPANS)
    (finding,) = detector.stale_heartbeat(ctx)
    assert finding.evidence["stale_nodes"] == {"a": 4 + attempts_of_a, "b": 2}


def test_heartbeats_after_the_last_progress_are_counted_per_stream_in_a_fleet(
    tmp_path: Path,
) -> None:
    """Heartbeats before the earliest stream's last progress event are skipped before the join;
    each stream's own last progress still decides, and a stream without one keeps them all."""
    hb, start, end = "stage_heartbeat", "stage_attempt_start", "stage_attempt_end"
    runs = {
        # Ends early: its last progress event has the smallest seq of the fleet.
        "r1": [(start, "a"), (hb, "a"), (end, "a"), (hb, "a"), (hb, "a")],
        # Heartbeats after r1's last progress but before its own: none count.
        "r2": [(start, "b"), (hb, "b"), (hb, "b"), (hb, "b"), (end, "b"), (hb, "b")],
        # No progress event at all: every heartbeat is after it.
        "r3": [(hb, "c"), (hb, "c"), (hb, "c")],
    }
    for name, events in runs.items():
        _write(tmp_path / name, events)
    config = DoctorConfig(roots=(tmp_path,), now=1_800_000_000.0)
    tables = load_runs([discover(tmp_path / n) for n in runs], keep_raw=False)
    ctx = Context(tables, compute_facts(tables, config), config)
    after = {
        f.run_id: (
            f.evidence["heartbeats_after_last_progress"],
            f.evidence["nodes_after_last_progress"],
        )
        for f in detector.stale_heartbeat(ctx)
    }
    assert after == {"r1": (2, {"a": 2}), "r2": (1, {"b": 1}), "r3": (3, {"c": 3})}


def test_a_start_a_resume_superseded_does_not_keep_a_finished_scope_open(tmp_path: Path) -> None:
    """Killed mid-stage, resumed, the node started again and ended: the scope is finished,
    so heartbeats still arriving after its last progress are stale, although the first start
    never got its end (a node's latest start is its open attempt, not an older one)."""
    run = tmp_path / "r1"
    hb, start, end = "stage_heartbeat", "stage_attempt_start", "stage_attempt_end"
    _write(run, [(start, "a"), (hb, "a"), (start, "a"), (hb, "a"), (end, "a")] + [(hb, None)] * 3)
    config = DoctorConfig(roots=(tmp_path,), now=1_800_000_000.0)
    tables = load_runs([discover(run)], keep_raw=False)
    (finding,) = detector.stale_heartbeat(Context(tables, compute_facts(tables, config), config))
    assert finding.evidence["heartbeats_after_last_progress"] == 3
    assert finding.evidence["stale_heartbeats"] == 0
