"""What a detector declares it needs (``@needs``) is exact: skipped on a batch without it, it
would have found nothing. Every detector (and the facts) runs on the fixture cases and on all
the committed Kilroy runs as one batch, once skipping and once with the skip off, and the
results must be equal."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from doctor._config import DoctorConfig
from doctor._detectors import DETECTORS, Context, Needs, needs
from doctor._detectors._context import NEEDS
from doctor._discovery import list_run_dirs
from doctor._facts import compute_facts
from doctor._ingest import load_runs
from doctor._layout import discover
from doctor._model import Finding

ROOT = Path(__file__).resolve().parents[2] / "fixtures"
CASES = sorted(p.parent for p in (ROOT / "cases").glob("*/expected.json"))
KILROY = ROOT / "kilroy" / "runs"


def _both_ways(roots: tuple[Path, ...], config: DoctorConfig) -> tuple[int, int]:
    """Diagnose the runs under ``roots`` as one batch both ways; (detectors skipped, run)."""
    layouts = [discover(p) for p in list_run_dirs(roots)]
    skipped = ran = 0
    tables = load_runs(layouts, keep_raw=False)
    try:
        facts = compute_facts(tables, config)
        kinds = tables.event_kinds
        assert facts == compute_facts(tables, config, skip_absent=False)
        tables.event_kinds = kinds
        on = Context(tables, facts, config)
        off = Context(tables, facts, config, skip_absent=False)
        for detector in DETECTORS:
            need = NEEDS.get(detector.__name__)
            if need is not None and on.lacks(need):
                skipped += 1
            else:
                ran += 1
            assert _json(detector(on)) == _json(detector(off)), detector.__name__
    finally:
        tables.con.close()
    return skipped, ran


def _json(findings: list[Finding]) -> list[Any]:
    return [f.to_json() for f in findings]


@pytest.mark.parametrize("case", CASES, ids=[p.name for p in CASES])
def test_a_skipped_detector_finds_nothing_on_a_fixture_case(case: Path) -> None:
    spec = json.loads((case / "expected.json").read_text())
    now = datetime.fromisoformat(spec["now"].replace("Z", "+00:00")).timestamp()
    config = DoctorConfig(roots=(case / "run",), now=now, **spec.get("config", {}))
    _both_ways(config.roots, config)


def test_a_skipped_detector_finds_nothing_on_the_kilroy_runs_as_one_batch() -> None:
    config = DoctorConfig(roots=(KILROY,), now=1_800_000_000.0)
    _both_ways(config.roots, config)


def test_the_cases_skip_detectors_and_run_others() -> None:
    """The comparison above has teeth: across the cases some detectors are skipped."""
    totals = [0, 0]
    for case in CASES[:6]:
        spec = json.loads((case / "expected.json").read_text())
        config = DoctorConfig(roots=(case / "run",), now=1_800_000_000.0, **spec.get("config", {}))
        skipped, ran = _both_ways(config.roots, config)
        totals[0] += skipped
        totals[1] += ran
    assert totals[0] > 0 and totals[1] > 0


def test_every_declared_need_names_its_detector() -> None:
    names = {d.__name__ for d in DETECTORS}
    assert set(NEEDS) <= names
    assert {"retry_loop", "torn_artifact", "swallowed_error", "stale_lease"} <= set(NEEDS)


def test_a_need_lacking_returns_at_once_and_the_skip_can_be_turned_off(tmp_path: Path) -> None:
    calls: list[str] = []

    @needs(events=("no_such_event",))
    def probe(ctx: Context) -> list[Finding]:
        """A detector that records being run."""
        calls.append("ran")
        return []

    run = tmp_path / "r1"
    run.mkdir()
    (run / "progress.ndjson").write_text(
        '{"event": "stage_attempt_start", "node_id": "a", "ts": "2026-04-28T10:00:00Z"}\n'
    )
    config = DoctorConfig(roots=(tmp_path,), now=1_800_000_000.0)
    tables = load_runs([discover(run)], keep_raw=False)
    facts = compute_facts(tables, config)
    assert tables.event_kinds == frozenset({"stage_attempt_start"})
    assert probe(Context(tables, facts, config)) == [] and calls == []
    assert probe(Context(tables, facts, config, skip_absent=False)) == [] and calls == ["ran"]
    assert probe.__name__ == "probe" and NEEDS["probe"] == Needs(events=("no_such_event",))
    del NEEDS["probe"]


def test_the_queue_checks_named_for_the_scan_and_the_renderer_are_those_that_need_the_queue() -> (
    None
):
    from doctor._detectors._context import QUEUE_CHECKS

    declared = {d.__name__ for d in DETECTORS if d.__name__ in NEEDS and NEEDS[d.__name__].queue}
    assert set(QUEUE_CHECKS) == declared
