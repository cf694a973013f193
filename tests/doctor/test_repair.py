"""``doctor repair``: each action on a copy of a fixture run, idempotence, refusals, the
journal, and the breaker."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tracemalloc
from datetime import datetime
from pathlib import Path

import pytest

from doctor import Diagnosis, DoctorConfig, diagnose
from doctor._journal import JOURNAL, read_journal
from doctor._repair import Action, FindingRef, RepairReport, apply_repairs, plan_repairs
from doctor._timestamps import parse_iso
from fixtures.rogue import RUN_ID as ROGUE_ID
from fixtures.rogue import build_rogue_run
from tests.helpers import fill, tmpfs

CASES = Path(__file__).resolve().parents[2] / "fixtures" / "cases"


def _copy_case(case: str, tmp_path: Path) -> tuple[Path, DoctorConfig, str]:
    spec = json.loads((CASES / case / "expected.json").read_text())
    root = tmp_path / "runs"
    shutil.copytree(CASES / case / "run", root)
    now = datetime.fromisoformat(spec["now"].replace("Z", "+00:00")).timestamp()
    return root / spec["run_id"], DoctorConfig(roots=(root,), now=now), spec["run_id"]


def _plan(run: Path, config: DoctorConfig) -> tuple[Diagnosis, list[Action]]:
    d = diagnose(run.name, config)
    return d, plan_repairs(d, config)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree(run: Path) -> dict[str, str]:
    return {p.relative_to(run).as_posix(): _sha(p) for p in sorted(run.rglob("*")) if p.is_file()}


def _codes(refs: tuple[FindingRef, ...]) -> list[tuple[str, str]]:
    return [(r.code, r.scope) for r in refs]


# ---------------------------------------------------------------- terminalize


def test_terminalize_writes_final_json_with_provenance_for_a_dead_owner(tmp_path: Path) -> None:
    run, config, run_id = _copy_case("fanout_never_joined", tmp_path)
    _d, plan = _plan(run, config)
    assert [(a.kind, a.target, a.blocked) for a in plan] == [("terminalize", "final.json", None)]
    report = apply_repairs(plan, config, run_path=run)
    (result,) = report.results
    assert result.outcome == "applied"
    final = json.loads((run / "final.json").read_text())
    assert final["status"] == "fail"
    assert final["run_id"] == run_id
    assert "owner pid 99999999 is dead" in final["failure_reason"]
    assert final["repaired_by"]["tool"] == "rundoctor doctor repair"
    assert final["repaired_by"]["at"] == "2026-02-10T18:00:00Z"
    assert final["repaired_by"]["finding"] == {
        "code": "missing_final",
        "scope": "",
        "node_id": "fanout",
    }
    assert final["repaired_by"]["version"]
    assert ("missing_final", "") in _codes(result.resolved)
    assert report.state == "failed"


def test_terminalize_resolves_the_branches_missing_final_too(tmp_path: Path) -> None:
    run, config, _ = _copy_case("fanout_never_joined", tmp_path)
    _d, plan = _plan(run, config)
    (result,) = apply_repairs(plan, config, run_path=run).results
    assert sorted(_codes(result.resolved)) == [
        ("missing_final", ""),
        ("missing_final", "parallel/fanout/01-left"),
        ("missing_final", "parallel/fanout/02-right"),
    ]
    assert result.introduced == ()


def test_a_second_apply_of_the_same_plan_does_nothing(tmp_path: Path) -> None:
    run, config, _ = _copy_case("fanout_never_joined", tmp_path)
    _d, plan = _plan(run, config)
    apply_repairs(plan, config, run_path=run)
    before = _tree(run)
    (again,) = apply_repairs(plan, config, run_path=run).results
    assert again.outcome == "noop"
    assert "already done" in again.message
    assert _tree(run) == before  # the journal too: a no-op writes nothing


def test_a_repaired_run_plans_nothing_more(tmp_path: Path) -> None:
    run, config, _ = _copy_case("fanout_never_joined", tmp_path)
    _d, plan = _plan(run, config)
    apply_repairs(plan, config, run_path=run)
    assert _plan(run, config)[1] == []


def test_terminalize_refuses_when_the_owner_came_alive_after_the_plan(tmp_path: Path) -> None:
    run, config, _ = _copy_case("fanout_never_joined", tmp_path)
    _d, plan = _plan(run, config)
    (run / "run.pid").write_text(str(os.getpid()))
    report = apply_repairs(plan, config, run_path=run)
    (result,) = report.results
    assert result.outcome == "refused"
    assert f"owner pid {os.getpid()} is alive" in result.message
    assert not (run / "final.json").exists()
    assert report.exit_code == 1
    (entry,) = read_journal(run)
    assert (entry.outcome, entry.before_sha256, entry.after_sha256) == ("refused", None, None)


def test_a_live_owner_gets_no_terminalize_plan(tmp_path: Path) -> None:
    run, config, _ = _copy_case("fanout_never_joined", tmp_path)
    (run / "run.pid").write_text(str(os.getpid()))
    d, plan = _plan(run, config)
    assert d.state != "orphaned"
    assert [a.kind for a in plan] == []


def test_terminalize_waits_for_the_stall_timeout(tmp_path: Path) -> None:
    run, config, _ = _copy_case("fanout_never_joined", tmp_path)
    # Last event 16:01:3x; a stall timeout of 600 s has not passed at 16:05.
    early = config.with_now(datetime.fromisoformat("2026-02-10T16:05:00+00:00").timestamp())
    d, plan = _plan(run, early)
    assert d.state == "orphaned"  # a dead owner is orphaned at once
    (action,) = plan
    assert action.blocked is not None and "stall timeout" in action.blocked
    (result,) = apply_repairs(plan, early, run_path=run).results
    assert result.outcome == "refused" and "within the 600 s stall timeout" in result.message
    assert not (run / "final.json").exists()


def test_the_diagnosis_hint_says_when_a_terminalize_will_stop_refusing(tmp_path: Path) -> None:
    # The hint offered the repair as if it would act; its plan then said it would refuse.
    from rich.console import Console

    from doctor import DETECTORS
    from doctor._render import render_diagnosis

    run, config, _ = _copy_case("fanout_never_joined", tmp_path)
    early = config.with_now(datetime.fromisoformat("2026-02-10T16:05:00+00:00").timestamp())
    texts = []
    for cfg in (early, config):
        out = io.StringIO()
        d = diagnose(run.name, cfg)
        render_diagnosis(Console(file=out, width=400), d, DETECTORS, verbose=False, config=cfg)
        texts.append(out.getvalue())
    last = parse_iso(diagnose(run.name, early).facts["last_event_at"])
    assert last is not None
    left = 600 - (early.now - last / 1e9)  # the last event (16:05:01) is 1 s after 16:05
    assert left == 601
    assert (
        "plan terminalizing the run (final.json with status fail) with this once its last "
        "event is older than its 600 s stall timeout (in 10m 01s; " in texts[0]
    )
    assert "until then the repair refuses), then run it again with --apply:" in texts[0]
    assert "plan terminalizing the run (final.json with status fail) with this, then" in texts[1]


def test_terminalize_of_a_run_killed_before_its_first_event_says_so(tmp_path: Path) -> None:
    # Real Kilroy killed during its preflight: run.pid and run_config.json, no stream yet.
    run, config, _ = _copy_case("fanout_never_joined", tmp_path)
    for stream in run.rglob("progress.ndjson"):
        stream.unlink()
    _d, plan = _plan(run, config)
    (action,) = plan
    assert "since None" not in action.reason
    assert "never wrote an event" in action.reason


def test_terminalize_of_a_run_without_events_waits_for_the_stall_timeout_from_its_start(
    tmp_path: Path,
) -> None:
    # No event to measure the age from: the run's start documents (run.pid, manifest.json,
    # run_config.json) say when it last wrote, at the plan and again at the write.
    run, config, _ = _copy_case("fanout_never_joined", tmp_path)
    for stream in run.rglob("progress.ndjson"):
        stream.unlink()
    started = config.now - 60
    names = ("run.pid", "manifest.json", "run_config.json")
    starts = [run / n for n in names if (run / n).exists()]
    assert starts
    for path in starts:
        os.utime(path, (started, started))
    _d, plan = _plan(run, config)
    (action,) = plan
    assert action.blocked == (
        "the run wrote no event; its start is 60 s old, within the 600 s stall timeout"
    )
    later = config.with_now(config.now + 600)
    _d, unblocked = _plan(run, later)
    assert [a.blocked for a in unblocked] == [None]
    # Applied while the start is still recent (the plan's check passed later): refused.
    (result,) = apply_repairs(unblocked, config, run_path=run).results
    assert result.outcome == "refused"
    assert "wrote no event and started at" in result.message
    assert not (run / "final.json").exists()
    (result,) = apply_repairs(unblocked, later, run_path=run).results
    assert result.outcome == "applied"


def _hint_text(d: Diagnosis, config: DoctorConfig) -> str:
    from rich.console import Console

    from doctor import DETECTORS
    from doctor._render import render_diagnosis

    out = io.StringIO()
    render_diagnosis(Console(file=out, width=400), d, DETECTORS, verbose=False, config=config)
    return out.getvalue()


def test_the_hint_waits_as_the_plan_does_for_a_run_without_events(tmp_path: Path) -> None:
    # Before: the hint judged the wait by the last event alone, so for a run that wrote none
    # it offered the terminalize as if it would act ("plan … with this, then run it again with
    # --apply"), while the plan, dating the run by its start, refused it for 9 more minutes.
    run, config, _ = _copy_case("fanout_never_joined", tmp_path)
    for stream in run.rglob("progress.ndjson"):
        stream.unlink()
    started = config.now - 60
    for name in ("run.pid", "manifest.json", "run_config.json"):
        if (run / name).exists():
            os.utime(run / name, (started, started))
    d, plan = _plan(run, config)
    (action,) = plan
    assert action.blocked is not None and "its start is 60 s old" in action.blocked
    text = _hint_text(d, config)
    assert (
        "with this once its start (it wrote no event) is older than its 600 s stall timeout "
        "(in 9m 00s; until then the repair refuses)" in text
    ), text
    later = config.with_now(config.now + 601)
    d, plan = _plan(run, later)
    assert [a.blocked for a in plan] == [None]
    assert "once its" not in _hint_text(d, later)


def test_the_hint_waits_as_the_plan_does_without_the_run_s_stall_timeout(
    tmp_path: Path,
) -> None:
    # Before: a diagnosis whose facts carry no stall timeout (one kept by an older version)
    # got no wait in its hint, while the plan fell back to the configured timeout and refused.
    run, config, _ = _copy_case("fanout_never_joined", tmp_path)
    early = config.with_now(datetime.fromisoformat("2026-02-10T16:05:00+00:00").timestamp())
    d = diagnose(run.name, early)
    facts = {k: v for k, v in d.facts.items() if k != "stall_timeout_s"}
    d = dataclasses.replace(d, facts=facts)
    (action,) = plan_repairs(d, early)
    assert action.blocked is not None and "within the 600 s stall timeout" in action.blocked
    assert "once its last event is older than its 600 s stall timeout (in 10m 01s;" in (
        _hint_text(d, early)
    )


def test_terminalize_refuses_when_final_json_appeared(tmp_path: Path) -> None:
    run, config, _ = _copy_case("fanout_never_joined", tmp_path)
    _d, plan = _plan(run, config)
    (run / "final.json").write_text('{"status": "success"}')
    (result,) = apply_repairs(plan, config, run_path=run).results
    assert result.outcome == "refused" and "final.json exists" in result.message
    assert json.loads((run / "final.json").read_text()) == {"status": "success"}


# ---------------------------------------------------------------- ingest_status


def _stranded(tmp_path: Path) -> tuple[Path, DoctorConfig]:
    run, config, _ = _copy_case("branch_status_file_stranded", tmp_path)
    return run, config


def test_ingest_status_replaces_the_engines_missing_status_placeholder_keeping_it(
    tmp_path: Path,
) -> None:
    run, config = _stranded(tmp_path)
    canonical = run / "parallel/fanout/01-impl_x/impl_x/status.json"
    before = canonical.read_bytes()
    assert b"missing status.json" in before
    _d, plan = _plan(run, config)
    (action,) = plan
    assert (action.kind, action.blocked) == ("ingest_status", None)
    (result,) = apply_repairs(plan, config, run_path=run).results
    assert result.outcome == "applied", result.message
    assert json.loads(canonical.read_text())["repaired_by"]["source"] == action.source
    (backup,) = canonical.parent.glob("status.json.replaced-*.bak")
    assert backup.read_bytes() == before


def test_ingest_status_never_overwrites_a_canonical_status_with_a_real_outcome(
    tmp_path: Path,
) -> None:
    run, config = _stranded(tmp_path)
    _d, plan = _plan(run, config)
    canonical = run / "parallel/fanout/01-impl_x/impl_x/status.json"
    canonical.write_text('{"status": "success"}')  # the stage's outcome arrived meanwhile
    (result,) = apply_repairs(plan, config, run_path=run).results
    assert result.outcome == "refused" and "already records an outcome" in result.message
    assert canonical.read_text() == '{"status": "success"}'
    assert not list(canonical.parent.glob("*.bak"))


def test_ingest_status_copies_the_stranded_file_with_provenance(tmp_path: Path) -> None:
    run, config = _stranded(tmp_path)
    (run / "parallel/fanout/01-impl_x/impl_x/status.json").unlink()
    _d, plan = _plan(run, config)
    (action,) = plan
    assert (action.kind, action.blocked) == ("ingest_status", None)
    assert action.source == "parallel/fanout/01-impl_x/worktree/.ai/status.json"
    report = apply_repairs(plan, config, run_path=run)
    (result,) = report.results
    assert result.outcome == "applied"
    written = json.loads((run / action.target).read_text())
    assert written["outcome"] == "SUCCESS"
    assert written["repaired_by"]["source"] == action.source
    assert written["repaired_by"]["source_sha256"] == _sha(run / action.source)
    assert result.after_sha256 == _sha(run / action.target)
    # The stream still records the failure: the finding stays until the run is resumed.
    assert ("status_contract_mismatch", "parallel/fanout/01-impl_x") in _codes(report.remaining)
    (again,) = apply_repairs(plan, config, run_path=run).results
    assert again.outcome == "noop"


def test_ingest_status_never_writes_through_a_symlinked_stage_directory(tmp_path: Path) -> None:
    run, config = _stranded(tmp_path)
    stage = run / "parallel/fanout/01-impl_x/impl_x"
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.rmtree(stage)
    stage.symlink_to(outside, target_is_directory=True)
    _d, plan = _plan(run, config)
    plan = plan or [
        Action(
            "ingest_status",
            "parallel/fanout/01-impl_x/impl_x/status.json",
            FindingRef("status_contract_mismatch", "error", "parallel/fanout/01-impl_x", "x", ""),
            "test",
            source="parallel/fanout/01-impl_x/worktree/.ai/status.json",
        )
    ]
    (result,) = apply_repairs(plan, config, run_path=run).results
    assert result.outcome == "refused" and "symlink" in result.message
    assert list(outside.iterdir()) == []


def test_a_target_outside_the_run_directory_is_refused(tmp_path: Path) -> None:
    run, config, _ = _copy_case("fanout_never_joined", tmp_path)
    _d, plan = _plan(run, config)
    for target in ("../escaped.json", "/tmp/escaped.json", "a/../../escaped.json"):
        bad = dataclasses.replace(plan[0], target=target)
        (result,) = apply_repairs([bad], config, run_path=run).results
        assert result.outcome == "refused", target
        assert "not a path inside the run directory" in result.message
    assert not (tmp_path / "runs" / "escaped.json").exists()
    assert not (run / "final.json").exists()


def test_a_symlinked_journal_stops_every_action(tmp_path: Path) -> None:
    run, config, _ = _copy_case("fanout_never_joined", tmp_path)
    _d, plan = _plan(run, config)
    elsewhere = tmp_path / "elsewhere.ndjson"
    elsewhere.write_text("")
    (run / JOURNAL).symlink_to(elsewhere)
    (result,) = apply_repairs(plan, config, run_path=run).results
    assert result.outcome == "refused" and JOURNAL in result.message
    assert elsewhere.read_text() == "" and not (run / "final.json").exists()


# ---------------------------------------------------------------- truncate_torn_line


def test_truncate_cuts_the_torn_last_line_and_keeps_a_backup(tmp_path: Path) -> None:
    run, config, _ = _copy_case("torn_last_progress_line", tmp_path)
    original = (run / "progress.ndjson").read_bytes()
    _d, plan = _plan(run, config)
    assert [a.kind for a in plan] == ["truncate_torn_line", "terminalize"]
    report = apply_repairs(plan, config, run_path=run)
    cut = report.results[0]
    assert cut.outcome == "applied"
    assert (run / "progress.ndjson").read_bytes() == original[:638]
    assert cut.backup == "progress.ndjson.torn-20260428T120000Z.bak"
    assert (run / cut.backup).read_bytes() == original
    assert ("torn_artifact", "") in _codes(cut.resolved)
    assert [r.outcome for r in report.results] == ["applied", "applied"]
    assert report.exit_code == 0  # only live.json's warning remains


def test_the_journal_records_before_and_after_hashes(tmp_path: Path) -> None:
    run, config, _ = _copy_case("torn_last_progress_line", tmp_path)
    original = _sha(run / "progress.ndjson")
    _d, plan = _plan(run, config)
    apply_repairs(plan, config, run_path=run)
    cut, final = read_journal(run)
    assert (cut.action, cut.target, cut.outcome) == (
        "truncate_torn_line",
        "progress.ndjson",
        "applied",
    )
    assert cut.before_sha256 == original == _sha(run / cut.backup)  # type: ignore[operator]
    assert cut.after_sha256 == _sha(run / "progress.ndjson")
    assert (final.action, final.before_sha256) == ("terminalize", None)
    assert final.after_sha256 == _sha(run / "final.json")
    assert cut.finding["code"] == "torn_artifact" and cut.at == "2026-04-28T12:00:00Z"
    lines = (run / JOURNAL).read_text().splitlines()
    assert [json.loads(line)["schema"] for line in lines] == ["rundoctor.repair/2"] * 4


def test_a_journal_line_nested_too_deeply_is_skipped_as_foreign(tmp_path: Path) -> None:
    # Before: json's RecursionError escaped read_journal: `doctor repair --apply` ended with
    # "internal error (a bug in rundoctor)", exit 70, before any action.
    run, config, _ = _copy_case("torn_last_progress_line", tmp_path)
    (run / JOURNAL).write_text("[" * 100_000 + "]" * 100_000 + "\n")
    _d, plan = _plan(run, config)
    apply_repairs(plan, config, run_path=run)
    assert [e.outcome for e in read_journal(run)] == ["applied", "applied"]


def test_a_journal_ending_in_a_torn_line_still_records_the_next_repair(tmp_path: Path) -> None:
    """A crash (power loss, a full disk another tool left) can end the journal in a torn line.

    Before, the next entry was appended right after the torn bytes: glued to them, its line
    did not parse and was skipped when read, so the repair it recorded was lost to the
    journal, a second apply no longer knew it was done (refused, exit 1, instead of a no-op)
    and the breaker did not count it. Now an append to a journal that does not end in a
    newline starts with one: the torn line stays torn, the new entry whole."""
    run, config = _stranded(tmp_path)
    _d, plan = _plan(run, config)
    (run / JOURNAL).write_bytes(b'{"schema": "rundoctor.repair/1", "at": "2026-02-1')
    (first,) = apply_repairs(plan, config, run_path=run).results
    assert first.outcome == "applied", first.message
    assert [(e.action, e.outcome) for e in read_journal(run)] == [("ingest_status", "applied")]
    (again,) = apply_repairs(plan, config, run_path=run).results
    assert again.outcome == "noop", again.message


def test_a_huge_journal_of_refusals_is_read_without_holding_it(tmp_path: Path) -> None:
    """A journal of years of refusals (a cron job's ``--apply`` refused every minute): before,
    every apply read it whole, then split it and kept an entry per line (a 362 MB journal took
    2 GB of memory and 13 s). A repair reads back only what it counts (``applied`` and
    ``failed``: the breaker, the no-op check), a line at a time; the applied entry after the
    refusals is still found: the second apply is a no-op."""
    run, config = _stranded(tmp_path)
    refusal = {
        "schema": "rundoctor.repair/1",
        "at": "2020-01-01T00:00:00Z",
        "at_s": 1577836800.0,
        "action": "ingest_status",
        "target": "x",
        "outcome": "refused",
        "message": "the owner process is alive " * 8,
    }
    (run / JOURNAL).write_bytes((json.dumps(refusal) + "\n").encode() * 300_000)  # 87 MB
    _d, plan = _plan(run, config)
    (first,) = apply_repairs(plan, config, run_path=run).results
    assert first.outcome == "applied", first.message
    tracemalloc.start()
    try:
        (again,) = apply_repairs(plan, config, run_path=run).results
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert again.outcome == "noop", again.message
    # The journal whole would be 83 MiB; the diagnoses around the actions take about 32.
    assert peak < 48 << 20, f"{peak >> 20} MiB held to apply beside an 87 MB journal"
    assert len(read_journal(run)) == 300_001  # every line is still there to be read


def test_truncate_refuses_when_the_stream_changed_after_the_plan(tmp_path: Path) -> None:
    run, config, _ = _copy_case("torn_last_progress_line", tmp_path)
    _d, plan = _plan(run, config)
    with (run / "progress.ndjson").open("ab") as fh:
        fh.write(b'"}\n')  # the line was completed after all
    (cut, _final) = apply_repairs(plan, config, run_path=run).results
    assert cut.outcome == "refused" and "nothing is torn" in cut.message


def test_truncate_refuses_while_the_owner_is_alive(tmp_path: Path) -> None:
    run, config, _ = _copy_case("torn_last_progress_line", tmp_path)
    _d, plan = _plan(run, config)
    (run / "run.pid").write_text(str(os.getpid()))
    cut = apply_repairs(plan[:1], config, run_path=run).results[0]
    assert cut.outcome == "refused" and "alive" in cut.message
    assert not list(run.glob("*.bak"))


# ---------------------------------------------------------------- the breaker


def test_the_breaker_stops_a_repair_that_keeps_being_undone(tmp_path: Path) -> None:
    run, config, _ = _copy_case("fanout_never_joined", tmp_path)
    _d, plan = _plan(run, config)
    for _ in range(3):
        (result,) = apply_repairs(plan, config, run_path=run).results
        assert result.outcome == "applied"
        (run / "final.json").unlink()  # something undoes the repair
    report = apply_repairs(plan, config, run_path=run)
    (stopped,) = report.results
    assert stopped.outcome == "breaker"
    assert "tried 3 times" in stopped.message and "incident 02" in stopped.message
    assert not (run / "final.json").exists()
    assert report.exit_code == 1
    assert [e.outcome for e in read_journal(run)] == ["applied"] * 3 + ["breaker"]


def test_the_breaker_counts_tries_within_its_window_only(tmp_path: Path) -> None:
    run, config, _ = _copy_case("fanout_never_joined", tmp_path)
    _d, plan = _plan(run, config)
    for _ in range(2):
        apply_repairs(plan, config, run_path=run, breaker_tries=2)
        (run / "final.json").unlink()
    (stopped,) = apply_repairs(plan, config, run_path=run, breaker_tries=2).results
    assert stopped.outcome == "breaker"
    later = config.with_now(config.now + 25 * 3600)
    (again,) = apply_repairs(plan, later, run_path=run, breaker_tries=2).results
    assert again.outcome == "applied"


# ---------------------------------------------------------------- the rogue run


@pytest.fixture(scope="module")
def rogue_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[RepairReport, Path]:
    root = tmp_path_factory.mktemp("runs")
    build_rogue_run(root)
    config = DoctorConfig(
        roots=(root,), now=datetime.fromisoformat("2026-02-11T12:00:00+00:00").timestamp()
    )
    d = diagnose(ROGUE_ID, config)
    return apply_repairs(plan_repairs(d, config), config, run_path=root / ROGUE_ID), root


def test_the_rogue_run_is_terminalized_and_its_stranded_status_ingested(
    rogue_report: tuple[RepairReport, Path],
) -> None:
    report, _root = rogue_report
    ingest, terminalize = report.results
    assert (ingest.action.kind, ingest.outcome) == ("ingest_status", "applied")
    assert (terminalize.action.kind, terminalize.outcome) == ("terminalize", "applied")
    assert sorted(s for c, s in _codes(terminalize.resolved) if c == "missing_final") == [
        "",
        "parallel/fanout/01-impl_dungeon",
        "parallel/fanout/02-impl_combat_items",
        "parallel/fanout/03-impl_monsters",
        "parallel/fanout/04-impl_player_io",
    ]
    assert report.state == "failed"
    remaining = {r.code for r in report.remaining}
    assert {"stale_heartbeat", "retry_loop", "status_contract_mismatch"} <= remaining
    assert report.exit_code == 1


# ---------------------------------------------------------------- the CLI


def _doctor(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "doctor", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_doctor_repair_prints_the_plan_and_applies_it_only_when_asked(tmp_path: Path) -> None:
    run, _config, run_id = _copy_case("torn_last_progress_line", tmp_path)
    dry = _doctor("repair", "--run-id", run_id, "--root", run.parent)
    assert dry.returncode == 1, dry.stderr  # a critical finding is there until applied
    assert "truncate_torn_line" in dry.stdout and "--apply" in dry.stdout
    assert not (run / "final.json").exists() and not (run / JOURNAL).exists()
    done = _doctor("repair", "--run-id", run_id, "--root", run.parent, "--apply", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(done.stdout)
    assert data["schema"] == "rundoctor.repair/1" and data["applied"] is True
    assert [r["outcome"] for r in data["report"]["results"]] == ["applied", "applied"]
    nothing = _doctor("repair", "--run-id", run_id, "--root", run.parent, "--apply")
    assert nothing.returncode == 0 and "0 at error or above" in nothing.stdout


def test_doctor_repair_of_an_unknown_run_exits_2(tmp_path: Path) -> None:
    done = _doctor("repair", "--run-id", "nope", "--root", tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_apply_on_a_full_disk_leaves_no_empty_or_torn_journal_and_says_so_in_one_line(
    tmp_path: Path,
) -> None:
    # Before: a full disk left an empty repairs.ndjson behind (created, then its line refused),
    # and a short write left part of a line in one that was there.
    with tmpfs(tmp_path / "disk", "64k") as mount:
        fresh, kept = mount / "fresh", mount / "kept"
        for run in (fresh, kept):
            run.mkdir()
            (run / "run.pid").write_text("99999999")
            (run / "progress.ndjson").write_text(
                '{"event": "stage_attempt_start", "ts": "2026-04-28T10:00:00Z", '
                '"node_id": "build", "attempt": 1}\n'
            )
        # A journal there before, 96 bytes short of its page: the new line's first 96 bytes
        # fit in it, the rest needs a page the disk no longer has.
        journal = b'{"note": "' + b"x" * (4096 - 96 - 13) + b'"}\n'
        (kept / JOURNAL).write_bytes(journal)
        fill(mount)
        for run in (fresh, kept):
            done = _doctor("repair", "--run-id", run.name, "--root", mount, "--apply")
            assert done.returncode == 1, done.stdout + done.stderr
            assert "Traceback" not in done.stderr, done.stderr
            (failed,) = [line for line in done.stdout.splitlines() if "failed" in line]
            assert "No space left on device" in failed and "not journaled" in failed, (
                run.name,
                failed,
            )
            assert not (run / "final.json").exists()
        assert not (fresh / JOURNAL).exists()
        assert (kept / JOURNAL).read_bytes() == journal


def test_docs_repair_md_names_every_key_of_doctor_repair_json(tmp_path: Path) -> None:
    from fixtures import queues

    run, _config, run_id = _copy_case("torn_last_progress_line", tmp_path)
    planned = json.loads(
        _doctor("repair", "--run-id", run_id, "--root", run.parent, "--json").stdout
    )
    done = _doctor("repair", "--run-id", run_id, "--root", run.parent, "--apply", "--json")
    applied = json.loads(done.stdout)
    pid = os.getpid()
    db = queues.incident_02(pid, queues.proc_start_ticks(pid)).write_sqlite(tmp_path / "q.db")
    queue = json.loads(_doctor("repair", "--db", db, "--apply", "--json").stdout)
    doc = (CASES.parents[1] / "docs" / "repair.md").read_text()
    section = doc.split("## `doctor repair --json`", 1)[1].split("\n## ", 1)[0]
    named = {w for span in re.findall(r"`([^`]*)`", section) for w in re.findall(r"\w+", span)}
    top = {k for d in (planned, applied, queue) for k in d}
    report = {k for d in (applied, queue) for k in d["report"]}
    actions = [a for d in (planned, queue) for a in d["plan"]]
    results = [r for d in (applied, queue) for r in d["report"]["results"]]
    keys = {k for a in [*actions, *results] for k in a}
    findings = {k for a in [*actions, *results] for k in a["finding"]}
    assert queue["plan"] and results and any("ticket_id" in a["finding"] for a in actions)
    assert {"run_id", "path", "queue", "journal"} <= top
    found = top | report | keys | findings
    assert not found - named, sorted(found - named)


def test_apply_terminalizes_a_run_whose_name_is_not_utf8(tmp_path: Path) -> None:
    # Before: `--apply` opened the diagnosis's text path ('r\xe9', the byte written as an
    # escape): "error: '…/r\\xe9' is not a run directory … No such file or directory", exit 2.
    run = tmp_path / os.fsdecode(b"r\xe9")
    run.mkdir()
    (run / "run.pid").write_text("99999999")
    (run / "progress.ndjson").write_text(
        '{"event": "stage_attempt_start", "ts": "2026-04-28T10:00:00Z", '
        '"node_id": "build", "attempt": 1}\n'
    )
    done = _doctor("repair", "--run-id", run.name, "--root", tmp_path, "--apply", "--json")
    assert done.returncode in (0, 1), done.stderr
    assert json.loads((run / "final.json").read_text())["status"] == "fail"
    assert (run / JOURNAL).is_file()
