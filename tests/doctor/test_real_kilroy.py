"""Every run the real Kilroy engine wrote in ``fixtures/kilroy/runs/`` is diagnosed as its
``expected.json`` says (see ``fixtures/kilroy/scenarios.py`` for the keys), and a run that went
well or was stopped as designed gets no finding at warning or above.
"""

from __future__ import annotations

import contextlib
import functools
import io
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from rich.console import Console

from doctor import (
    DETECTORS,
    Diagnosis,
    DoctorConfig,
    Severity,
    diagnose,
    resumed_past_lines,
    scan,
)
from doctor._facts import compute_facts
from doctor._ingest import load_runs
from doctor._layout import discover
from doctor._render import render_diagnosis, render_markdown
from doctor._repair import apply_repairs, plan_repairs
from doctor._timeline import run_timeline
from doctor._timestamps import parse_iso
from fixtures.kilroy.scenarios import SCENARIOS
from reports import render_postmortem
from rundoctor.liveness import start_ticks
from tests.helpers import documented_names

RUNS = Path(__file__).resolve().parents[2] / "fixtures" / "kilroy" / "runs"
RUN_DIRS = sorted(p.parent for p in RUNS.glob("*/expected.json"))


@functools.cache
def _diagnosed(name: str) -> Diagnosis:
    """The diagnosis of a committed run, made once per test session: several tests check
    different properties of the same (frozen) diagnosis of the same unchanging files."""
    return diagnose(name, DoctorConfig(roots=(RUNS,)))


def _diagnosis(run: Path) -> dict[str, Any]:
    result: dict[str, Any] = _diagnosed(run.name).to_json()
    return result


def _show(findings: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{f['severity']} {f['code']} {f['scope']!r} {f['node_id']}: {f['summary']}"
        for f in findings
    )


def test_every_scenario_has_a_committed_real_run() -> None:
    assert sorted(p.name for p in RUN_DIRS) == sorted(s.name for s in SCENARIOS)


def test_the_committed_runs_were_written_by_kilroy_itself() -> None:
    for run in RUN_DIRS:
        if not (run / "manifest.json").exists():
            # A detached run Kilroy gave up on before its start: its launcher's files only.
            assert sorted(p.name for p in run.iterdir()) == ["expected.json", "run.out", "run.pid"]
            continue
        manifest = json.loads((run / "manifest.json").read_text())
        assert manifest["kilroy_v1"] is True and manifest["run_id"] == run.name


@pytest.mark.parametrize("run", RUN_DIRS, ids=[p.name for p in RUN_DIRS])
def test_real_run_is_diagnosed_as_expected(run: Path) -> None:
    spec = json.loads((run / "expected.json").read_text())
    result = _diagnosis(run)
    findings = result["findings"]
    shown = _show(findings)
    assert result["state"] == spec["state"], shown
    codes = {f["code"] for f in findings}
    for code in spec["codes_present"]:
        assert code in codes, f"{code} missing:\n{shown}"
    for code in spec["codes_absent"]:
        assert code not in codes, f"{code} reported:\n{shown}"
    if spec["healthy"]:
        loud = [f for f in findings if Severity.parse(f["severity"]) >= Severity.WARNING]
        assert not loud, f"a run that went well or stopped as designed was flagged:\n{shown}"
    for key, value in spec["facts"].items():
        assert result["facts"][key] == value, (key, result["facts"].get(key))
    states = {b["scope"].rsplit("/", 1)[-1]: b["state"] for b in result["facts"]["branches"]}
    for suffix, state in spec["branches"].items():
        assert states.get(suffix) == state, (suffix, states)
    for want in spec["evidence"]:
        got = [f["evidence"].get(want["key"]) for f in findings if f["code"] == want["code"]]
        assert want["value"] in got, (want, got, shown)


@pytest.mark.parametrize("run", RUN_DIRS, ids=[p.name for p in RUN_DIRS])
def test_a_failed_run_never_reads_no_issues_found(run: Path) -> None:
    result = _diagnosed(run.name)
    console = Console(file=io.StringIO(), width=100)
    render_diagnosis(console, result, DETECTORS, verbose=False)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    if result.state == "failed":
        assert "No issues found" not in text
        assert "terminal reason" in text, text


def test_a_scan_of_the_corpus_agrees_with_each_diagnosis() -> None:
    result = scan(DoctorConfig(roots=(RUNS,)))
    by_run = {d.run_id: d for d in result.diagnoses}
    for run in RUN_DIRS:
        one = _diagnosed(run.name)
        assert by_run[run.name].state == one.state
        assert {f.code for f in by_run[run.name].findings} == {f.code for f in one.findings}


FINDINGS_DOC = RUNS.parents[2] / "docs" / "findings.md"


def test_every_evidence_key_the_real_runs_show_is_documented_under_its_code() -> None:
    # docs/findings.md is the contract scripts are built on: an evidence key a real run
    # carries and its code's section never names (`lost_by_resume` was only in a sentence,
    # branches' `started_at` nowhere) is one a user cannot know the meaning of.
    result = scan(DoctorConfig(roots=(RUNS, RUNS.parents[1] / "cases")))
    seen: dict[str, set[str]] = {}
    branches: set[str] = set()
    for f in [*result.findings, *(f for d in result.diagnoses for f in d.findings)]:
        seen.setdefault(f.code, set()).update(f.evidence)
    for d in result.diagnoses:
        for branch in d.facts.get("branches") or []:
            branches.update(branch)
    assert len(seen) >= 15, sorted(seen)  # the corpus shows most codes
    undocumented = {c: sorted(keys - documented_names(c)) for c, keys in seen.items()}
    assert not {c: k for c, k in undocumented.items() if k}, undocumented
    facts = FINDINGS_DOC.read_text().split("### Facts", 1)[1].split("\n### ", 1)[0]
    extras = {"last_status", "started_at"}  # beyond FINDINGS.md's branch keys
    assert extras <= branches and all(f"`{k}` (extra)" in facts for k in extras)


def test_branch_outcomes_come_from_parallel_results_when_the_parent_stream_lacks_them(
    tmp_path: Path,
) -> None:
    run = tmp_path / "fanout_one_fails"
    shutil.copytree(RUNS / "fanout_one_fails", run)
    progress = run / "progress.ndjson"
    lines = progress.read_text().splitlines(keepends=True)
    kept = [line for line in lines if '"branch_subgraph_done"' not in line]
    assert len(kept) == len(lines) - 2
    progress.write_text("".join(kept))
    result = diagnose(run.name, DoctorConfig(roots=(tmp_path,))).to_json()
    states = {b["scope"].rsplit("/", 1)[-1]: b["state"] for b in result["facts"]["branches"]}
    assert states == {"01-impl_a": "succeeded", "02-impl_b": "failed"}


def test_the_postmortem_of_a_failed_run_states_its_terminal_reason() -> None:
    text = render_postmortem(_diagnosed("stall_watchdog"))
    summary = text[text.index("## Executive summary") : text.index("## Run facts")]
    assert "stall watchdog timeout after 3s with no progress" in summary
    assert "`stall_watchdog_timeout`" in summary


def test_the_markdown_diagnosis_states_the_terminal_reason_as_the_terminal_does() -> None:
    result = _diagnosed("stall_watchdog")
    reason, stop = result.facts["terminal_reason"], result.facts["stopped_by"]
    assert reason and stop, result.facts
    shown = [
        line.replace("\\", "")  # Markdown escapes, as in stall\_watchdog
        for line in render_markdown(result).splitlines()
        if line.startswith("- terminal reason:")
    ]
    assert shown == [f"- terminal reason: **{reason}** (stopped by {stop})"]


def test_a_run_ended_by_a_bare_exit_code_shows_what_the_failed_stage_wrote() -> None:
    # verify fails with no fail edge and no retry target: final.json and run_failed say only
    # "exit status 1"; verify's stderr.log says which tests failed.
    result = _diagnosed("no_retry_target")
    assert result.facts["terminal_reason"] == "exit status 1"
    console = Console(file=io.StringIO(), width=200)
    render_diagnosis(console, result, DETECTORS, verbose=False)
    said = "verify wrote (verify/stderr.log): verify: 2 tests failed (test_parse, test_emit)"
    assert said in console.file.getvalue()  # type: ignore[attr-defined]
    assert said.replace("_", "\\_") in render_markdown(result)
    assert said.replace("_", "\\_") in render_postmortem(result)


def test_a_run_a_goal_gate_ended_shows_why_the_gate_s_stage_failed() -> None:
    # final.json and run_failed say "goal gate unsatisfied (build) and no retry target": the
    # gate, not why build failed (a bare "exit status 1"); build's stderr ends with why, after
    # an 80 KiB line, and the line under the terminal reason ends as the stage's output does.
    result = _diagnosed("goal_gate_long_output")
    (detail,) = result.facts["terminal_detail"]
    assert (detail["node_id"], detail["file"]) == ("build", "build/stderr.log")
    why = "ld: error: undefined symbol: main (referenced by crt1.o)"
    assert detail["text"].endswith("\n" + why)
    console = Console(file=io.StringIO(), width=400)
    render_diagnosis(console, result, DETECTORS, verbose=False)
    (line,) = [x for x in console.file.getvalue().splitlines() if "build wrote" in x]  # type: ignore[attr-defined]
    assert line.startswith("  build wrote (build/stderr.log): …W") and line.endswith(why)
    assert why in render_markdown(result)
    assert why in render_postmortem(result)


def test_a_goal_gate_whose_stage_said_why_is_quoted_by_its_last_failure_reason(
    tmp_path: Path,
) -> None:
    # impl's agent left its status where Kilroy does not read it: its failure reason is
    # Kilroy's "missing status.json …", which says why; build's stage in
    # goal_gate_stage_killed was killed by a signal on both attempts.
    facts = _diagnosed("agent_dotai_status").facts
    (detail,) = facts["terminal_detail"]
    assert (detail["node_id"], detail["file"]) == ("impl", None)
    assert detail["text"].startswith("missing status.json (auto_status=false)")
    # A status.json whose reason is none of the stage's failures (not its last) is not
    # taken: the stage's one failure reason is.
    run = tmp_path / "goal_gate_stage_killed"
    shutil.copytree(RUNS / run.name, run)
    status = json.loads((run / "link" / "status.json").read_text())
    assert status["failure_reason"] == "signal: killed"
    status["failure_reason"] = "signal: segmentation fault"
    (run / "link" / "status.json").write_text(json.dumps(status))
    facts = diagnose(run.name, DoctorConfig(roots=(tmp_path,))).facts
    (detail,) = facts["terminal_detail"]
    assert detail == {"scope": "", "node_id": "link", "file": None, "text": "signal: killed"}


def test_a_run_that_filled_its_disk_says_so_before_advising_a_terminalize(
    tmp_path: Path,
) -> None:
    # build's output filled the run's disk: Kilroy could not write a file, wrote run_failed
    # ("… no space left on device") and no final.json. A terminalize writes to that disk.
    (finding,) = [f for f in _diagnosed("disk_full").findings if f.code == "missing_final"]
    assert finding.repair == "terminalize"
    assert finding.evidence["disk_full"].endswith(": no space left on device")
    assert "the disk is full" in finding.summary and "free space there first" in finding.summary
    # As another run on such a disk left it: the stream torn before any of those words (build
    # still open), which only live.json (Kilroy's copy of the latest event) kept.
    run = tmp_path / "disk_full"
    shutil.copytree(RUNS / run.name, run)
    lines = (run / "progress.ndjson").read_bytes().splitlines(keepends=True)
    first = next(i for i, line in enumerate(lines) if b"no space left on device" in line)
    (run / "progress.ndjson").write_bytes(b"".join(lines[:first]) + b'{"event":"warning","i')
    (finding,) = [
        f
        for f in diagnose(run.name, DoctorConfig(roots=(tmp_path,))).findings
        if f.code == "missing_final"
    ]
    live = json.loads((run / "live.json").read_text())
    assert (live["event"], finding.evidence["disk_full"]) == ("run_failed", live["reason"])
    # A run killed for another reason says nothing of a disk.
    (other,) = [f for f in _diagnosed("sigkill_mid_stage").findings if f.code == "missing_final"]
    assert "disk_full" not in other.evidence and "disk" not in other.summary


def _without_logs(tmp_path: Path, name: str, logs: str) -> Path:
    """A copy of the committed run ``name`` under ``tmp_path`` without the stage output files
    the glob ``logs`` matches."""
    run = tmp_path / name
    shutil.copytree(RUNS / name, run)
    for log in run.glob(logs):
        log.unlink()
    return run


def test_the_stage_words_come_from_the_failure_dossier_when_its_logs_are_gone(
    tmp_path: Path,
) -> None:
    run = _without_logs(tmp_path, "no_retry_target", "verify/std*.log")
    facts = diagnose(run.name, DoctorConfig(roots=(tmp_path,))).facts
    assert facts["terminal_detail"] == [
        {
            "scope": "",
            "node_id": "verify",
            "file": "failure_dossier.json",
            "text": "verify: 2 tests failed (test_parse, test_emit)",
        }
    ]
    (run / "failure_dossier.json").unlink()
    assert diagnose(run.name, DoctorConfig(roots=(tmp_path,))).facts["terminal_detail"] == []


def test_a_false_success_quotes_the_end_of_what_its_stage_wrote(tmp_path: Path) -> None:
    # verify's stderr as a long build log leaves it: a long line, then the one that says why.
    run = tmp_path / "fallback_success"
    shutil.copytree(RUNS / run.name, run)
    why = "verify: 3 tests failed (test_parse, test_emit, test_join)"
    (run / "verify" / "stderr.log").write_text("W" * 5000 + "\n" + why + "\n")
    config = DoctorConfig(roots=(tmp_path,), checks=("false_success",))
    (finding,) = diagnose(run.name, config).findings
    assert finding.evidence["stage_output"]["text"].endswith(why)
    assert f"{why}) and no edge condition matched" in finding.summary, finding.summary


def test_a_run_whose_branches_all_failed_shows_what_each_failed_stage_wrote() -> None:
    # The join fails with "all parallel branches failed", which the run ends with; each
    # branch's stage failed with a bare "exit status 1" and said why on stderr.
    result = _diagnosed("fanout_all_fail")
    console = Console(file=io.StringIO(), width=200)
    render_diagnosis(console, result, DETECTORS, verbose=False)
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert "impl_a in parallel/par/pass1/01-impl_a wrote " in shown
    assert ": a: compile error" in shown and ": b: tests failed" in shown


def test_a_failed_branch_without_output_is_quoted_by_its_failure_reason(tmp_path: Path) -> None:
    run = _without_logs(
        tmp_path, "fanout_all_fail", "parallel/par/pass1/01-impl_a/impl_a/**/std*.log"
    )
    (run / "parallel" / "par" / "pass1" / "01-impl_a" / "failure_dossier.json").unlink()
    facts = diagnose(run.name, DoctorConfig(roots=(tmp_path,))).facts
    assert facts["terminal_detail"][0] == {
        "scope": "parallel/par/pass1/01-impl_a",
        "node_id": "impl_a",
        "file": None,
        "text": "exit status 1",
    }


def test_a_bare_exit_code_is_explained_by_the_failure_dossier_when_the_logs_are_gone(
    tmp_path: Path,
) -> None:
    run = _without_logs(tmp_path, "retry_exhausted", "verify/**/std*.log")
    config = DoctorConfig(roots=(tmp_path,), checks=("swallowed_error",))
    assert diagnose(run.name, config).findings == ()
    (run / "failure_dossier.json").unlink()
    (finding,) = diagnose(run.name, config).findings
    assert (finding.node_id, finding.evidence["kind"]) == ("verify", "bare_exit_code")


@pytest.mark.parametrize("cut", [0, 60])
def test_a_torn_live_json_of_a_run_that_ended_is_no_warning(tmp_path: Path, cut: int) -> None:
    # loop_restart_resumed: killed in restart-1, resumed to success in the run directory.
    # Kilroy writes live.json with plain writes (truncate, then write): a kill there leaves it
    # empty or cut. Nothing reads it once the run has ended: `kilroy attractor status` of an
    # ended run goes by final.json, and reads only the run directory's live.json otherwise.
    run = tmp_path / "loop_restart_resumed"
    shutil.copytree(RUNS / run.name, run)
    for live in (run / "restart-1" / "live.json", run / "live.json"):
        live.write_bytes(live.read_bytes()[:cut])
    found = diagnose(run.name, DoctorConfig(roots=(tmp_path,)))
    assert found.state == "succeeded"
    torn = [f for f in found.findings if f.code == "torn_artifact"]
    assert sorted(f.evidence["file"] for f in torn) == ["live.json", "restart-1/live.json"]
    assert {f.severity for f in torn} == {Severity.INFO}
    # A run that has not ended: its live.json is what a watcher of the live run reads.
    killed = tmp_path / "loop_restart_resumed_killed"
    shutil.copytree(RUNS / killed.name, killed)
    live = killed / "restart-1" / "live.json"
    live.write_bytes(live.read_bytes()[:cut])
    found = diagnose(killed.name, DoctorConfig(roots=(tmp_path,)))
    assert found.state == "orphaned"
    (torn_live,) = [f for f in found.findings if f.code == "torn_artifact"]
    assert torn_live.severity == Severity.WARNING


KILROY_RUN = Path(os.environ.get("KILROY_HOME", "/work/shared/kilroy")) / "run.sh"


def _diagnose_live(tmp_path: Path, graph: str, run_id: str, marker: str) -> dict[str, Any]:
    """Run the real engine on ``graph`` and diagnose the run as soon as its stream holds
    ``marker`` (the engine still running), then kill the engine and its stages."""
    with _live_run(tmp_path, graph, run_id, marker):
        return diagnose(run_id, DoctorConfig(roots=(tmp_path,))).to_json()


@contextlib.contextmanager
def _live_run(root: Path, graph: str, run_id: str, marker: str) -> Iterator[Path]:
    """Run the real engine on ``graph`` in ``root``; yield its run directory as soon as its
    stream holds ``marker`` (the engine still running); then kill the engine and its stages."""
    logs = root / run_id
    with subprocess.Popen(
        [str(KILROY_RUN), str(RUNS.parent / "graphs" / graph), run_id, str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as proc:
        try:
            while marker not in _text(logs / "progress.ndjson"):
                assert proc.poll() is None, f"kilroy ended before {marker} was written"
                time.sleep(0.1)
            yield logs
        finally:
            kilroy = psutil.Process(int((logs / "run.pid").read_text()))
            stages = kilroy.children(recursive=True)
            kilroy.kill()
            for p in stages:
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.kill()
            proc.wait(timeout=60)


@pytest.mark.skipif(not KILROY_RUN.exists(), reason="the real Kilroy engine is not installed")
def test_a_copy_of_a_live_run_is_not_owned_by_the_engine_that_runs_the_original(
    tmp_path: Path,
) -> None:
    # A run copied while its engine works in build: the copy's run.pid and run.lock.json name
    # that live engine, whose --logs-root is the original. Read as its owner, the copy was
    # "stalled" once past its stall timeout, and the advice `kilroy attractor stop
    # --logs-root COPY --force` stopped the original run (checked with the real engine).
    runs, copies = tmp_path / "runs", tmp_path / "copies"
    copies.mkdir()
    with _live_run(
        runs, "long_stage.dot", "copied", '"node_id":"build","resolved_file_count"'
    ) as logs:
        copy = copies / logs.name
        shutil.copytree(logs, copy, symlinks=True, ignore=shutil.ignore_patterns(".tmp-*"))
        original = diagnose(logs.name, DoctorConfig(roots=(runs,)))
        assert (original.state, original.facts["owner_alive"]) == ("running", True)
        late = (parse_iso(original.facts["last_event_at"]) or 0) / 1e9 + 601
        config = DoctorConfig(roots=(copies,), now=late)
        copied = diagnose(copy.name, config)
        assert (copied.state, copied.facts["owner_alive"]) == ("orphaned", False)
        (finding,) = [f for f in copied.findings if f.code == "missing_final"]
        assert finding.evidence["owner_elsewhere"] == str(logs)
        assert "stop_command" not in finding.evidence and "never stop that pid" in finding.summary
        # Its repair terminalizes the copy, not the run its owner works on.
        report = apply_repairs(plan_repairs(copied, config), config, run_path=copy)
        assert [r.outcome for r in report.results] == ["applied"], report.results
        assert (copy / "final.json").is_file() and not (logs / "final.json").exists()
        again = diagnose(logs.name, DoctorConfig(roots=(runs,)))
        assert (again.state, again.facts["owner_alive"]) == ("running", True)


@pytest.mark.skipif(not KILROY_RUN.exists(), reason="the real Kilroy engine is not installed")
def test_a_stage_a_killed_engine_left_running_is_named_before_a_resume(tmp_path: Path) -> None:
    # `kill -9` of the engine alone (not its process group) leaves the tool stage's bash and
    # sleep working in the run's worktree: a resume would run build again beside them.
    logs = tmp_path / "left"
    with subprocess.Popen(
        [str(KILROY_RUN), str(RUNS.parent / "graphs" / "long_stage.dot"), "left", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as proc:
        marker = '"node_id":"build","resolved_file_count"'
        while marker not in _text(logs / "progress.ndjson"):
            assert proc.poll() is None, "kilroy ended before build started"
            time.sleep(0.1)
        kilroy = psutil.Process(int((logs / "run.pid").read_text()))
        deadline = time.monotonic() + 30
        while not [p for p in kilroy.children(recursive=True) if p.name() == "sleep"]:
            assert time.monotonic() < deadline, "build's sleep never started"
            time.sleep(0.05)
        stage = kilroy.children(recursive=True)
        kilroy.kill()  # the engine alone: run.sh then removes its workspace and ends
        proc.wait(timeout=60)
        try:
            result = diagnose("left", DoctorConfig(roots=(tmp_path,)))
            (finding,) = [f for f in result.findings if f.code == "missing_final"]
            left = finding.evidence["stage_processes"]
            assert {p["pid"] for p in left} == {p.pid for p in stage}
            group = os.getpgid(stage[0].pid)
            assert f"kill -TERM -- -{group}" in finding.summary
        finally:
            for p in stage:
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.kill()
                    p.wait(timeout=60)
    (finding,) = [
        f
        for f in diagnose("left", DoctorConfig(roots=(tmp_path,))).findings
        if f.code == "missing_final"
    ]
    assert "stage_processes" not in finding.evidence


@pytest.mark.skipif(not KILROY_RUN.exists(), reason="the real Kilroy engine is not installed")
def test_a_finished_branch_of_a_live_fanout_is_succeeded_while_its_sibling_runs(
    tmp_path: Path,
) -> None:
    result = _diagnose_live(tmp_path, "fanout_killed.dot", "live_fanout", '"branch_subgraph_done"')
    states = {b["scope"].rsplit("/", 1)[-1]: b["state"] for b in result["facts"]["branches"]}
    assert result["state"] == "running"
    assert states == {"01-impl_a": "succeeded", "02-impl_b": "running"}
    assert not [f for f in result["findings"] if f["code"] == "missing_final"]


@pytest.mark.skipif(not KILROY_RUN.exists(), reason="the real Kilroy engine is not installed")
def test_a_live_run_sleeping_before_a_retry_is_running_with_nothing_to_report(
    tmp_path: Path,
) -> None:
    # Between attempts no attempt is open and checkpoint.json still names the node before the
    # retried one (Kilroy checkpoints a node when its visit ends): neither is a divergence.
    result = _diagnose_live(tmp_path, "retry_sleep.dot", "live_retry", '"stage_retry_sleep"')
    assert result["state"] == "running"
    assert result["findings"] == [], _show(result["findings"])


@pytest.mark.skipif(not KILROY_RUN.exists(), reason="the real Kilroy engine is not installed")
def test_a_live_run_sleeping_before_retrying_a_broken_output_contract_has_nothing_to_report(
    tmp_path: Path,
) -> None:
    # build/status.json still holds the handler's "success" while Kilroy sleeps: the stream's
    # attempt failed by output_contract_violated is not a disagreement with it.
    result = _diagnose_live(
        tmp_path, "output_contract_retry_sleep.dot", "live_contract", '"stage_retry_sleep"'
    )
    assert result["state"] == "running"
    assert result["findings"] == [], _show(result["findings"])
    assert (
        result["facts"]["failure_reasons"][0]["reason"] == "output contract: missing dist/app.bin"
    )


#: What Kilroy has written into a run directory before its first event: it takes the run
#: (run.pid, run.lock.json), writes its config and runs its preflight; the worktree, the
#: manifest and progress.ndjson come after (about 20 ms later on this machine).
_BEFORE_THE_FIRST_EVENT = ("run.pid", "run.lock.json", "run_config.json", "preflight_report.json")


@pytest.mark.skipif(not KILROY_RUN.exists(), reason="the real Kilroy engine is not installed")
def test_a_run_whose_live_owner_took_it_within_the_stall_timeout_is_starting_not_stalled(
    tmp_path: Path,
) -> None:
    # The window before Kilroy's first event is too short to diagnose in reliably, so the
    # files Kilroy wrote in it are copied beside the run, and the copy's lock names a live
    # stand-in started on the copy (the engine itself works on the original: a copy is no
    # run of its owner's), with the lock's own acquired_at.
    live, copy = tmp_path / "live", tmp_path / "copy"
    starting = copy / "starting"
    starting.mkdir(parents=True)
    with _live_run(live, "long_stage.dot", "starting", '"build"') as logs:
        for name in _BEFORE_THE_FIRST_EVENT:
            shutil.copy2(logs / name, starting / name)
    code = "import time; print('up', flush=True); time.sleep(120)"
    argv = [sys.executable, "-c", code, "--logs-root", str(starting)]
    with subprocess.Popen(argv, stdout=subprocess.PIPE) as owner:
        try:
            assert owner.stdout is not None and owner.stdout.readline() == b"up\n"
            lock = json.loads((starting / "run.lock.json").read_text())
            lock.update(pid=owner.pid, pid_start_time=start_ticks(owner.pid))
            (starting / "run.lock.json").write_text(json.dumps(lock))
            (starting / "run.pid").write_text(str(owner.pid))
            config = DoctorConfig(roots=(copy,))
            took = (parse_iso(lock["acquired_at"]) or 0) / 1e9
            result = diagnose("starting", config.with_now(took + 5)).to_json()
            assert result["state"] == "running", _show(result["findings"])
            assert result["findings"] == [], _show(result["findings"])
            stall = result["facts"]["stall_timeout_s"]
            late = diagnose("starting", config.with_now(took + stall + 5)).to_json()
            assert late["state"] == "stalled"
            assert [f["code"] for f in late["findings"]] == ["missing_final"]
        finally:
            owner.kill()


def _text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def test_the_corpus_holds_the_quirks_the_format_reference_does_not_mention() -> None:
    # branch_progress timestamps that go back (the parent forwards branch events as they come)
    backwards = 0
    for stream in RUNS.glob("*/progress.ndjson"):
        stamps = [
            parse_iso(json.loads(line)["ts"]) or 0 for line in stream.read_text().splitlines()
        ]
        backwards += sum(1 for a, b in itertools.pairwise(stamps) if b < a)
    assert backwards >= 1
    # final.json escapes '<' as \u003c, and reads back as the engine's reason
    raw = (RUNS / "deterministic_breaker" / "final.json").read_text()
    assert "\\u003cn\\u003e" in raw
    assert "<n>" in json.loads(raw)["failure_reason"]
    # a resumed run may end with an empty final_git_commit_sha: still a valid final.json
    final = json.loads((RUNS / "resume_after_kill" / "final.json").read_text())
    assert final["final_git_commit_sha"] == ""
    assert _diagnosed("resume_after_kill").state == "succeeded"


def test_unknown_events_leave_a_real_diagnosis_unchanged(tmp_path: Path) -> None:
    run = tmp_path / "sigterm_mid_stage"
    shutil.copytree(RUNS / "sigterm_mid_stage", run)
    before = diagnose(run.name, DoctorConfig(roots=(tmp_path,))).to_json()
    progress = run / "progress.ndjson"
    lines = progress.read_text().splitlines(keepends=True)
    novel = (
        '{"event":"some_future_event","node_id":"build","will_retry":"maybe",'
        '"selection_method":7,"run_id":"sigterm_mid_stage","ts":"2026-12-05T23:13:55Z"}\n'
    )
    progress.write_text("".join([*lines[:-1], novel, lines[-1]]))
    after = diagnose(run.name, DoctorConfig(roots=(tmp_path,))).to_json()
    assert after["state"] == before["state"] == "failed"
    assert after["findings"] == before["findings"] == []
    assert after["facts"]["terminal_reason"] == "stopped by signal terminated"
    assert after["facts"]["events_by_type"]["some_future_event"] == 1


#: Events builds before 2026-04-27 did not write (format doc §8): the terminal events, then
#: (before 2026-04-01) ``retry_decision``.
_NEWER_EVENTS = frozenset({"run_completed", "run_failed", "retry_decision"})


def _as_an_older_build_wrote_it(run: Path) -> None:
    """Rewrite a real run's streams as a February/March 2026 build wrote them: no terminal
    event, no ``retry_decision``, no ``id`` envelope field; final.json alone ends the run."""
    for stream in run.rglob("progress.ndjson"):
        events = [json.loads(line) for line in stream.read_text().splitlines()]
        kept = [{k: v for k, v in e.items() if k != "id"} for e in events]
        stream.write_text(
            "".join(json.dumps(e) + "\n" for e in kept if e["event"] not in _NEWER_EVENTS)
        )


def _diagnosed_as_an_older_build_wrote_it(
    tmp_path: Path, name: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The diagnosis of a copy of real run ``name`` rewritten as an older build wrote it, and
    the run's ``expected.json``."""
    run = tmp_path / name
    shutil.copytree(RUNS / name, run)
    _as_an_older_build_wrote_it(run)
    expected = json.loads((RUNS / name / "expected.json").read_text())
    return diagnose(name, DoctorConfig(roots=(tmp_path,))).to_json(), expected


@pytest.mark.parametrize(
    "name", ["sigterm_mid_stage", "stall_watchdog", "operator_stop", "sigterm_mid_fanout"]
)
def test_a_stop_is_read_from_final_json_in_a_run_without_terminal_events(
    tmp_path: Path, name: str
) -> None:
    # Before 2026-04-27 a stopped run's stream just ends (a signal writes no event; the
    # watchdog's event comes before the attempt it cancels ends): final.json says it stopped.
    # The checkpoint at the node before the interrupted one is still the resume point.
    result, expected = _diagnosed_as_an_older_build_wrote_it(tmp_path, name)
    assert result["state"] == expected["state"] == "failed"
    assert _show(result["findings"]) == ""
    stop = {k: result["facts"][k] for k in ("terminal_reason", "stopped_by")}
    assert stop == {k: expected["facts"][k] for k in stop}


_LIVENESS_KEYS = ("event", "ts", "run_id", "branch_key", "branch_logs_root", "branch_event")


def _as_a_february_10_build_wrote_it(run: Path) -> None:
    """Rewrite a real fan-out run as the builds of 2026-02-10/11 wrote it (format doc §1.5,
    §2.6): as :func:`_as_an_older_build_wrote_it`, branch directories without the ``passN``
    level, and the parent forwarding its branches' lifecycle and events as ``branch_liveness``
    (``branch_key``, ``branch_logs_root``, ``branch_event`` only) instead of
    ``branch_progress``, and keeping each running branch alive with a ``branch_liveness``
    whose ``branch_event`` is ``branch_active`` (their ticker's keepalive) instead of
    ``branch_heartbeat`` and ``branch_stale_warning``."""
    _as_an_older_build_wrote_it(run)
    for pass_dir in run.glob("parallel/*/pass1"):
        for branch in pass_dir.iterdir():
            branch.rename(pass_dir.parent / branch.name)
        pass_dir.rmdir()
    progress = run / "progress.ndjson"
    events = []
    for e in map(json.loads, progress.read_text().splitlines()):
        if e["event"] in ("branch_heartbeat", "branch_stale_warning"):
            e = e | {"event": "branch_liveness", "branch_event": "branch_active"}
        if e["event"] in ("branch_progress", "branch_liveness"):
            e = {k: e[k] for k in _LIVENESS_KEYS if k in e} | {"event": "branch_liveness"}
            e["branch_logs_root"] = e["branch_logs_root"].replace("/pass1/", "/")
        events.append(e)
    progress.write_text("".join(json.dumps(e) + "\n" for e in events))


@pytest.mark.parametrize(
    "name", ["fanout_killed", "fanout_one_fails", "sigterm_mid_fanout", "fanout_output_contract"]
)
def test_branches_a_february_10_build_reported_done_by_branch_liveness_are_finished(
    tmp_path: Path, name: str
) -> None:
    # branch_liveness branch_subgraph_done says the branch finished, without its status: the
    # branch's outcome is its last attempt's, as with branch_progress.
    run = tmp_path / name
    shutil.copytree(RUNS / name, run)
    _as_a_february_10_build_wrote_it(run)
    expected = json.loads((RUNS / name / "expected.json").read_text())
    result = diagnose(name, DoctorConfig(roots=(tmp_path,))).to_json()
    assert result["state"] == expected["state"]
    states = {b["scope"].rsplit("/", 1)[-1]: b["state"] for b in result["facts"]["branches"]}
    assert states == expected["branches"]
    codes = sorted({f["code"] for f in result["findings"] if f["severity"] != "info"})
    assert codes == expected["codes_present"], _show(result["findings"])


#: What a branch's parent stream says of it that is no progress: its keepalives, and the
#: heartbeats of its stages it forwards.
_NO_PROGRESS = ("branch_heartbeat", "branch_stale_warning")


def _no_progress(e: dict[str, Any]) -> bool:
    return e["event"] in _NO_PROGRESS or (
        e["event"] == "branch_progress" and e["branch_event"] == "stage_heartbeat"
    )


def _cut_live(run: Path, key: str, branch_event: str, stall_ms: int | None = None) -> str:
    """Cut a finished fan-out run's stream just before branch ``key`` forwards
    ``branch_event``, as if its owner still worked there (no final.json; the stall timeout
    ``stall_ms`` when given). Returns the time of its last progress event."""
    progress = run / "progress.ndjson"
    lines = progress.read_text().splitlines(keepends=True)
    events = [json.loads(line) for line in lines]
    cut = min(
        i
        for i, e in enumerate(events)
        if e["event"] == "branch_progress"
        and e["branch_event"] == branch_event
        and e["branch_key"] == key
    )
    progress.write_text("".join(lines[:cut]))
    (run / "live.json").write_text(lines[cut - 1])
    (run / "final.json").unlink()
    if stall_ms is not None:
        config = json.loads((run / "run_config.json").read_text())
        config["runtime_policy"]["stall_timeout_ms"] = stall_ms
        (run / "run_config.json").write_text(json.dumps(config))
    return next(e["ts"] for e in reversed(events[:cut]) if not _no_progress(e))


def _diagnosed_live(run: Path) -> dict[str, Any]:
    """The diagnosis of a cut run (:func:`_cut_live`) a second after its last event, its
    owner a live process."""
    now = parse_iso(json.loads((run / "live.json").read_text())["ts"])
    assert now is not None
    with subprocess.Popen(["sleep", "60"]) as owner:
        try:
            (run / "run.pid").write_text(str(owner.pid))
            config = DoctorConfig(roots=(run.parent,), now=now / 1e9 + 1)
            return diagnose(run.name, config).to_json()
        finally:
            owner.kill()


@pytest.mark.parametrize("build", ["head", "february_10"])
def test_keepalives_of_a_hung_branch_are_no_progress_in_either_build(
    tmp_path: Path, build: str
) -> None:
    # fanout_stale_branch cut while branch b has been idle for five minutes: the parent's
    # stream holds only keepalives since, branch_heartbeat and branch_stale_warning at HEAD,
    # branch_liveness "branch_active" in the builds of 2026-02-10/11. Past the stall timeout
    # (2 minutes here) with its owner alive, the run is stalled in both.
    run = tmp_path / "fanout_stale_branch"
    shutil.copytree(RUNS / "fanout_stale_branch", run)
    last_progress = _cut_live(run, "impl_b", "stage_attempt_end", stall_ms=120_000)
    if build == "february_10":
        _as_a_february_10_build_wrote_it(run)
    result = _diagnosed_live(run)
    assert result["facts"]["last_progress_at"] == last_progress
    assert result["state"] == "stalled", _show(result["findings"])


@pytest.mark.parametrize("build", ["head", "february_10"])
def test_a_silent_agent_s_forwarded_heartbeats_are_no_progress(tmp_path: Path, build: str) -> None:
    # fanout_slow_agent cut while branch b's agent has been silent 8 s under a 3 s stall
    # timeout: the parent's stream holds branch_heartbeat ticks and the agent's stage_heartbeat
    # forwarded as branch_progress (branch_liveness in the February 10 builds) every second,
    # which Kilroy counts as branch activity (branch_idle_ms stays under a second). Forwarded
    # heartbeats are heartbeats: the run is stalled, not running.
    run = tmp_path / "fanout_slow_agent"
    shutil.copytree(RUNS / "fanout_slow_agent", run)
    last_progress = _cut_live(run, "impl_b", "status_ingestion_decision")
    if build == "february_10":
        _as_a_february_10_build_wrote_it(run)
    result = _diagnosed_live(run)
    assert result["facts"]["last_progress_at"] == last_progress
    assert result["state"] == "stalled", _show(result["findings"])


def test_stage_output_behind_a_symlink_is_never_read(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "verify").mkdir(parents=True)
    (outside / "verify" / "stderr.log").write_text("a detail from outside the run\n")
    runs = tmp_path / "runs"
    run = runs / "retry_exhausted"
    shutil.copytree(RUNS / "retry_exhausted", run)
    shutil.rmtree(run / "verify")
    (run / "failure_dossier.json").unlink()
    (run / "verify").symlink_to(outside / "verify", target_is_directory=True)
    config = DoctorConfig(roots=(runs,), checks=("swallowed_error",))
    (finding,) = diagnose(run.name, config).findings
    assert finding.evidence["kind"] == "bare_exit_code"


def test_a_start_a_resume_superseded_is_not_open_in_phases_spans_or_the_timeline() -> None:
    # resume_after_kill: build's first start was killed with its owner; the resume started it
    # again and it ended. Neither the phase nor the spans may treat the dead start as open
    # work that lasts to the run's last event.
    result = _diagnosed("resume_after_kill")
    assert result.state == "succeeded"
    (span,) = [s for s in result.facts["attempt_spans"] if s["node_id"] == "build"]
    assert (span["attempts"], span["open"]) == (2, 0)
    (phase,) = [p for p in result.facts["phases"] if p["node"] == "build"]
    assert phase["last_end"] == span["last_end"] != result.facts["last_event_at"]
    bars = [b for b in run_timeline(result).bars if b.node_id == "build"]
    assert [b.is_open for b in bars] == [False, False]
    assert bars[0].end_ns == bars[1].start_ns  # the dead start's bar ends where it restarted


def test_a_start_a_resume_never_ran_again_where_it_was_is_not_open_once_the_run_ended() -> None:
    # concurrent_killed_resumed: a and b were killed in the concurrent region (top-level
    # stream); the resume ran them as a fan-out, in branch directories, and the run completed.
    # Their top-level starts never ended and nothing started them there again, but the process
    # that wrote run_completed had ended every attempt it ran: not open in the spans, the
    # phases or the timeline.
    result = _diagnosed("concurrent_killed_resumed")
    assert result.state == "succeeded"
    spans = {(s["scope"], s["node_id"]): s for s in result.facts["attempt_spans"]}
    assert [spans["", n]["open"] for n in ("a", "b")] == [0, 0]
    phases = {p["node"]: p for p in result.facts["phases"]}
    assert all(phases[n]["last_end"] != result.facts["last_event_at"] for n in ("a", "b"))
    bars = [b for b in run_timeline(result).bars if b.scope == "" and b.node_id in ("a", "b")]
    assert [b.is_open for b in bars] == [False, False]


def test_a_final_json_written_without_a_terminal_event_closes_the_killed_attempt() -> None:
    # resume_no_git: build was killed mid-stage; the resume failed before the engine started
    # (no-git mode: "checkpoint missing git_commit_sha") and wrote final.json, no event. The
    # run ended after build started, so build's start is not open work.
    result = _diagnosed("resume_no_git")
    assert result.state == "failed"
    spans = {(s["scope"], s["node_id"]): s for s in result.facts["attempt_spans"]}
    assert spans["", "build"]["open"] == 0
    bars = [b for b in run_timeline(result).bars if b.scope == "" and b.node_id == "build"]
    assert [b.is_open for b in bars] == [False]


def test_a_start_after_the_final_json_was_written_stays_open(tmp_path: Path) -> None:
    # An overlapping resume's own start, after the final.json it did not write yet: open.
    run = tmp_path / "resume_no_git"
    shutil.copytree(RUNS / "resume_no_git", run)
    final_ts = json.loads((run / "final.json").read_text())["timestamp"]
    later = final_ts.replace("Z", "1Z") if "." in final_ts else final_ts[:-1] + ".1Z"
    start = {"event": "stage_attempt_start", "run_id": run.name, "ts": later,
             "node_id": "build", "attempt": 1, "max": 1}  # fmt: skip
    with (run / "progress.ndjson").open("a") as f:
        f.write(json.dumps(start) + "\n")
    result = diagnose(run.name, DoctorConfig(roots=(tmp_path,)))
    spans = {(s["scope"], s["node_id"]): s for s in result.facts["attempt_spans"]}
    assert spans["", "build"]["open"] == 1


def _rewound_to_the_end_of(run: Path, node: str, before: str) -> None:
    """Cut ``run``'s stream just after ``node``'s last attempt end and put back the checkpoint
    Kilroy had then: ``before`` completed (Kilroy saves a node's checkpoint after its end)."""
    progress = run / "progress.ndjson"
    lines = progress.read_text().splitlines(keepends=True)
    events = [json.loads(line) for line in lines]
    cut = max(
        i
        for i, e in enumerate(events)
        if e["event"] == "stage_attempt_end" and e.get("node_id") == node
    )
    progress.write_text("".join(lines[: cut + 1]))
    (run / "live.json").write_text(lines[cut])
    before_end = max(
        e["ts"]
        for e in events[:cut]
        if e["event"] == "stage_attempt_end" and e.get("node_id") == before
    )
    checkpoint = json.loads((run / "checkpoint.json").read_text())
    checkpoint.update(timestamp=before_end, current_node=before, completed_nodes=[before])
    checkpoint["node_retries"] = {}
    (run / "checkpoint.json").write_text(json.dumps(checkpoint, indent=2))
    (run / "final.json").unlink()


def test_a_checkpoint_not_yet_saved_for_the_node_that_just_ended_is_no_drift(
    tmp_path: Path,
) -> None:
    # Kilroy appends a node's stage_attempt_end, then saves its checkpoint (after the fan-in
    # and git commit of a fan-out: ~80 ms with 14 branches). A live run diagnosed in between
    # has a checkpoint one node behind that is being brought up to date. One killed there
    # keeps it: the last checkpoint saved, from which its resume runs the node again (real
    # runs checkpoint_save_killed and checkpoint_save_killed_resumed), no drift either.
    run = tmp_path / "fanout_all_ok"
    shutil.copytree(RUNS / "fanout_all_ok", run)
    _rewound_to_the_end_of(run, "par", before="start")
    with subprocess.Popen(["sleep", "60"]) as owner:
        try:
            (run / "run.pid").write_text(str(owner.pid))
            now = parse_iso(json.loads((run / "live.json").read_text())["ts"])
            assert now is not None
            live = DoctorConfig(roots=(tmp_path,), now=now / 1e9 + 1)
            result = diagnose(run.name, live).to_json()
        finally:
            owner.kill()
    assert result["state"] == "running"
    assert result["findings"] == [], _show(result["findings"])
    dead = diagnose(run.name, DoctorConfig(roots=(tmp_path,))).to_json()
    codes = {f["code"] for f in dead["findings"]}
    assert dead["state"] == "orphaned"
    assert codes == {"missing_final"}, _show(dead["findings"])


def test_an_attempt_of_a_restart_scope_a_resume_left_is_not_open() -> None:
    # loop_restart_resumed: fetch was killed in restart-1/; the resume went on in the base
    # directory (prepare, fetch, exit). restart-1's fetch never ended, but the run went on
    # after it: not open in the spans, the phases or the timeline.
    result = _diagnosed("loop_restart_resumed")
    assert result.state == "succeeded"
    spans = {(s["scope"], s["node_id"]): s for s in result.facts["attempt_spans"]}
    assert (spans["restart-1", "fetch"]["last_end"], spans["restart-1", "fetch"]["open"]) == (
        None,
        0,
    )
    (phase,) = [p for p in result.facts["phases"] if p["node"] == "fetch"]
    assert phase["last_end"] == spans["", "fetch"]["last_end"] != result.facts["last_event_at"]
    (bar,) = [
        b for b in run_timeline(result).bars if (b.scope, b.node_id) == ("restart-1", "fetch")
    ]
    assert (bar.status, bar.is_open) == (None, False)


def test_a_fanout_of_a_restart_scope_a_resume_left_is_neither_current_nor_unjoined() -> None:
    result = _diagnosed("loop_restart_fanout_resumed")
    assert result.state == "succeeded"
    assert result.facts["current_node"] == "exit"
    assert not [f for f in result.findings if f.code == "unjoined_fanout"], result.findings
    left = [s for s in result.facts["attempt_spans"] if s["scope"].startswith("restart-1")]
    assert {(s["scope"], s["node_id"]) for s in left if s["last_end"] is None} == {
        ("restart-1", "par"),
        ("restart-1/parallel/par/pass1/01-impl_a", "impl_a"),
        ("restart-1/parallel/par/pass1/02-impl_b", "impl_b"),
    }
    assert [s["open"] for s in left] == [0] * len(left)


def test_a_resumed_restart_killed_again_has_only_its_last_stage_open() -> None:
    # loop_restart_resumed_killed: impl killed in restart-1/ while heartbeating, the resume
    # killed in build in the base directory. build is the open attempt, not impl; and impl's
    # heartbeats came before its process died, so they are not stale.
    result = _diagnosed("loop_restart_resumed_killed")
    (finding,) = [f for f in result.findings if f.code == "missing_final"]
    assert (finding.node_id, finding.evidence["open_attempts"]) == ("build", ["build"])
    assert not [f for f in result.findings if f.code == "stale_heartbeat"], result.findings
    assert result.facts["events_by_type"]["stage_heartbeat"] >= 1


def test_a_restart_a_resume_left_is_not_the_top_levels_telemetry() -> None:
    # loop_restart_retry_resumed: killed in restart-1/ while Kilroy slept before flaky's
    # retry (its live.json: stage_retry_sleep on flaky, whose attempt had ended), resumed in
    # the base directory to exit. restart-1's documents are history, not the run's telemetry.
    result = _diagnosed("loop_restart_retry_resumed")
    assert (
        json.loads((RUNS / result.run_id / "restart-1" / "live.json").read_text())["event"]
        == "stage_retry_sleep"
    )
    assert not [f for f in result.findings if f.code == "telemetry_divergence"], result.findings


def test_the_base_directory_a_resumed_restart_went_on_in_is_the_top_levels_telemetry(
    tmp_path: Path,
) -> None:
    # loop_restart_resumed with the base directory's live.json a leaked heartbeat of prepare
    # (ended in the resume): that is where the run worked last, so it is compared.
    run = tmp_path / "loop_restart_resumed"
    shutil.copytree(RUNS / "loop_restart_resumed", run)
    last = json.loads((run / "live.json").read_text())
    leak = {"event": "stage_heartbeat", "node_id": "prepare", "elapsed_s": 60, "ts": last["ts"]}
    (run / "live.json").write_text(json.dumps({**leak, "run_id": run.name}) + "\n")
    config = DoctorConfig(roots=(tmp_path,), checks=("telemetry_divergence",))
    (finding,) = diagnose(run.name, config).findings
    assert (finding.scope, finding.evidence["live_node"], finding.evidence["actual_node"]) == (
        "",
        "prepare",
        "exit",
    )


def test_a_fanout_a_resume_dispatched_again_is_read_from_the_latest_dispatch() -> None:
    # fanout_resumed_killed: the resume dispatches par again into the same pass1 directories.
    # Open: par's second start and impl_a's (b's killed start was superseded and ended);
    # impl_a's earlier branch_subgraph_done is of the dispatch before.
    result = _diagnosed("fanout_resumed_killed")
    spans = {
        (s["scope"], s["node_id"]): (s["attempts"], s["open"])
        for s in result.facts["attempt_spans"]
    }
    assert spans == {
        ("", "start"): (1, 0),
        ("", "par"): (2, 1),
        ("parallel/par/pass1/01-impl_a", "impl_a"): (2, 1),
        ("parallel/par/pass1/02-impl_b", "impl_b"): (2, 0),
    }
    assert result.facts["current_node"] == "par"


def test_an_attempt_killed_in_a_restart_scope_stays_open_until_the_run_goes_on(
    tmp_path: Path,
) -> None:
    # loop_restart_resumed as it was before its resume: the base stream ends with the
    # loop_restart event and no final.json. Nothing went on after restart-1's fetch: it is open.
    run = tmp_path / "loop_restart_resumed"
    shutil.copytree(RUNS / "loop_restart_resumed", run)
    progress = run / "progress.ndjson"
    lines = progress.read_text().splitlines(keepends=True)
    cut = next(i for i, line in enumerate(lines) if '"event":"loop_restart"' in line)
    progress.write_text("".join(lines[: cut + 1]))
    (run / "final.json").unlink()
    result = diagnose(run.name, DoctorConfig(roots=(tmp_path,)))
    assert result.state == "orphaned"
    (finding,) = [f for f in result.findings if f.code == "missing_final"]
    assert (finding.node_id, finding.evidence["open_attempts"]) == ("fetch", ["fetch"])
    spans = {(s["scope"], s["node_id"]): s["open"] for s in result.facts["attempt_spans"]}
    assert spans["restart-1", "fetch"] == 1
    assert result.facts["current_node"] == "fetch"


def test_a_restart_stopped_by_a_signal_and_resumed_in_the_base_directory_ended_there() -> None:
    # loop_restart_sigterm_resumed: SIGTERM in restart-1/ (Kilroy saves "stopped by signal"
    # to restart-1/final.json and the base one), then the resume went on in the base directory
    # to success and rewrote the base final.json only. The run's end is the one written last.
    run = RUNS / "loop_restart_sigterm_resumed"
    stopped = json.loads((run / "restart-1" / "final.json").read_text())
    ended = json.loads((run / "final.json").read_text())
    assert (stopped["status"], stopped["failure_reason"]) == (
        "fail",
        "stopped by signal terminated",
    )
    assert ended["status"] == "success"
    assert (parse_iso(ended["timestamp"]) or 0) > (parse_iso(stopped["timestamp"]) or 0)
    result = _diagnosed(run.name)
    assert result.state == "succeeded"
    assert result.findings == (), _show([f.to_json() for f in result.findings])
    assert (result.facts["terminal_reason"], result.facts["stopped_by"]) == (None, None)
    assert result.facts["current_node"] == "exit"
    assert plan_repairs(result, DoctorConfig(roots=(RUNS,))) == []
    console = Console(file=io.StringIO(), width=100)
    render_diagnosis(console, result, DETECTORS, verbose=False)
    assert "terminal reason" not in console.file.getvalue()  # type: ignore[attr-defined]


def test_a_restarted_run_a_resume_left_unfinished_is_terminalized_in_the_base_directory(
    tmp_path: Path,
) -> None:
    # loop_restart_resumed_killed: killed in restart-1/, resumed in the base directory, killed
    # again: no final.json anywhere. The repair writes the base one (Kilroy's base logs root)
    # and the run is read from it; restart-1/ keeps none.
    run = tmp_path / "loop_restart_resumed_killed"
    shutil.copytree(RUNS / run.name, run)
    last = _diagnosed(run.name).facts["last_event_at"]
    config = DoctorConfig(roots=(tmp_path,), now=(parse_iso(last) or 0) / 1e9 + 86400)
    plan = plan_repairs(diagnose(run.name, config), config)
    assert [(a.kind, a.target, a.blocked) for a in plan] == [("terminalize", "final.json", None)]
    (done,) = apply_repairs(plan, config, run_path=run).results
    assert done.outcome == "applied"
    assert not (run / "restart-1" / "final.json").exists()
    final = json.loads((run / "final.json").read_text())
    assert final["timestamp"] == last
    after = diagnose(run.name, config)
    assert after.state == "failed"
    assert after.facts["terminal_reason"] == final["failure_reason"]
    assert plan_repairs(after, config) == []


def test_every_real_run_s_final_json_is_that_of_the_scope_it_worked_in_last() -> None:
    # The run's final.json (the top-level one with the latest timestamp) and the facts'
    # current logs root (the top-level scope whose latest event naming a node is the latest)
    # are read from different records of the same run: they must agree on real runs.
    tables = load_runs([discover(run) for run in RUN_DIRS], keep_raw=False)
    facts = compute_facts(tables, DoctorConfig(roots=(RUNS,)))
    ended = {}
    for run_id, docs in tables.documents.items():
        final = docs.final
        if final is not None:
            scope = facts[run_id]["_current_scope"]
            # No stage ran (setup_failed: a setup command failed): the run's own directory.
            current = docs.scopes[scope if scope is not None else ""]
            ended[run_id] = (final.rel, current.final.rel if current.final else None)
    assert "loop_restart_sigterm_resumed" in ended
    assert {r: rel for r, (rel, own) in ended.items() if rel != own} == {}


def _events_of(run: Path) -> list[tuple[int, str, Any]]:
    """``(seq, event, node_id or reason)`` of a run's top-level stream."""
    rows = [json.loads(line) for line in (run / "progress.ndjson").read_text().splitlines()]
    return [(i, e["event"], e.get("node_id") or e.get("reason")) for i, e in enumerate(rows)]


def test_a_loop_a_resume_took_up_after_the_breaker_was_stopped_by_the_signal() -> None:
    # loop_breaker_resumed_sigterm: the signature breaker ended the run, `kilroy attractor
    # resume` looped on with another failure until SIGTERM. Not the breaker's loop any more.
    run = RUNS / "loop_breaker_resumed_sigterm"
    events = _events_of(run)
    breaker = next(i for i, ev, _ in events if ev == "deterministic_failure_cycle_breaker")
    laps = [i for i, ev, _ in events if ev == "edge_selected"]
    assert sum(i > breaker for i in laps) >= 3
    assert events[-1][1:] == ("run_failed", "stopped by signal terminated")
    findings = {f.code: f for f in _diagnosed(run.name).findings}
    loop, det = findings["retry_loop"], findings["deterministic_retry_loop"]
    assert (loop.evidence["stopped_by"], loop.severity.label) == ("signal", "warning")
    assert det.evidence["signature"] == "verify failed: cannot open <path>"
    assert (det.evidence["breaker_tripped"], det.evidence["stopped_by"]) == (False, "signal")


def test_a_node_a_resume_ran_again_after_max_node_visits_was_not_stopped_by_it() -> None:
    # loop_visits_resumed: max_node_visits ended the run after verify's 5th failure; the
    # resume ran verify again and it passed: the breaker did not bound verify's failures.
    run = RUNS / "loop_visits_resumed"
    events = _events_of(run)
    stop = next(i for i, ev, _ in events if ev == "stuck_cycle_breaker")
    assert any(i > stop and ev == "stage_attempt_start" and n == "verify" for i, ev, n in events)
    findings = {f.code: f for f in _diagnosed(run.name).findings}
    fragmented = findings["fragmented_failure_signatures"]
    assert (fragmented.evidence["stopped_by"], fragmented.severity.label) == (None, "error")
    assert findings["retry_loop"].evidence["stopped_by"] is None


@pytest.mark.parametrize("name", ["loop_breaker_resumed_sigterm", "loop_stop_hung"])
def test_a_loop_s_stop_is_read_from_final_json_in_a_run_without_terminal_events(
    tmp_path: Path, name: str
) -> None:
    # Without a terminal event the run's final.json is the loop's ending: a resume that looped
    # on until SIGTERM (an older build's stream: no run_failed), an engine `kilroy attractor
    # stop` had to SIGKILL (no event at all). The loop was stopped, it is not still looping.
    result, expected = _diagnosed_as_an_older_build_wrote_it(tmp_path, name)
    (loop,) = [f for f in result["findings"] if f["code"] == "retry_loop"]
    assert loop["severity"] == "warning"
    assert loop["evidence"]["still_looping"] is False
    assert loop["evidence"]["stopped_by"] == expected["facts"]["stopped_by"]
    assert result["facts"]["stopped_by"] == expected["facts"]["stopped_by"]


def test_branch_directories_behind_a_symlink_make_no_fanout(tmp_path: Path) -> None:
    # fanout_setup_killed: par's branch directories, no stream yet, are what shows par fanned
    # out. Reached through a symlink they are not read: no unjoined_fanout from them.
    run = tmp_path / "fanout_setup_killed"
    shutil.copytree(RUNS / run.name, run)
    elsewhere = tmp_path / "elsewhere"
    (run / "parallel").rename(elsewhere)
    (run / "parallel").symlink_to(elsewhere, target_is_directory=True)
    codes = {f.code for f in diagnose(run.name, DoctorConfig(roots=(tmp_path,))).findings}
    assert "missing_final" in codes and "unjoined_fanout" not in codes
    assert "unjoined_fanout" in {f.code for f in _diagnosed(run.name).findings}


@pytest.mark.parametrize(
    ("name", "why", "planned"),
    [
        ("fanout_agent_dotai", "runs nothing", []),
        ("agent_routed_past_killed", "at fixup", ["terminalize"]),
        ("fanout_dotai_killed", "dispatch the fan-out again", ["terminalize"]),
        ("agent_dotai_status_no_git", "refuses this run", []),
        ("agent_dotai_status_resumed", "refuses this run", []),
        ("loop_restart_agent_dotai", "not in restart-1", []),
    ],
)
def test_a_stranded_status_no_resume_would_read_is_not_ingested(
    name: str, why: str, planned: list[str]
) -> None:
    # fanout_agent_dotai: branch b's outcome sits in its worktree's .ai/status.json, the join
    # took branch a and the run succeeded; a resume of a finished run runs nothing.
    # agent_routed_past_killed: impl's fail edge ran fixup, checkpointed, and the run was
    # killed in build; a resume starts from fixup. fanout_dotai_killed: branch b failed so,
    # the run was killed while branch a worked; a resume dispatches the fan-out again and runs
    # b from its start (a resume of a copy, after an ingest, ran b again over the ingested
    # file). agent_dotai_status_no_git / _resumed: the checkpoint has no git_commit_sha
    # (no-git mode; a resumed engine's), so Kilroy refuses any resume of the run. Either way
    # nothing would read an ingested status: no ingest_status, and no advice to resume.
    # loop_restart_agent_dotai: impl ran in restart-1 and stranded its status in the run's one
    # worktree; a resume goes on from the base directory's checkpoint, never in restart-1.
    result = _diagnosed(name)
    (finding,) = [f for f in result.findings if f.code == "status_contract_mismatch"]
    assert finding.repair is None
    asks = ("resume the run", "run `kilroy attractor resume`", "before `kilroy attractor resume`")
    assert not any(a in finding.summary for a in asks) and why in finding.summary
    config = DoctorConfig(roots=(RUNS,), now=time.time() + 3600)
    assert [a.kind for a in plan_repairs(diagnose(name, config), config)] == planned


def test_a_stranded_status_with_duplicate_keys_is_read_last_wins_as_kilroy_reads_it() -> None:
    # agent_dup_keys: Kilroy read the same bytes at the path it looks at as "fail" (Go's
    # encoding/json: the last value wins) and routed on that. agent_dup_keys_dotai: written
    # where Kilroy does not look, the file's outcome is "fail" too, so no ingest_status would
    # make it the success its first "status" key says.
    stream = (RUNS / "agent_dup_keys" / "progress.ndjson").read_text().splitlines()
    ends = [e for e in map(json.loads, stream) if e["event"] == "stage_attempt_end"]
    assert [e["status"] for e in ends if e["node_id"] == "impl"] == ["fail"]
    canonical = json.loads((RUNS / "agent_dup_keys" / "impl" / "status.json").read_text())
    assert canonical["status"] == "fail"
    result = _diagnosed("agent_dup_keys_dotai")
    (finding,) = [f for f in result.findings if f.code == "status_contract_mismatch"]
    assert finding.evidence["found_outcome"] == "fail" and finding.repair is None
    config = DoctorConfig(roots=(RUNS,), now=time.time() + 3600)
    assert plan_repairs(diagnose("agent_dup_keys_dotai", config), config) == []


def test_retries_of_one_visit_with_varying_reasons_are_bounded_by_max_retries() -> None:
    # retries_varying: 6 attempts of one visit, each failing with another temp path (one
    # canonical signature). Kilroy's cycle breaker counts a visit once and max_retries ended
    # it (retry_decision will_retry=false): no fragmented-signature loop to report.
    stream = (RUNS / "retries_varying" / "progress.ndjson").read_text().splitlines()
    events = [json.loads(line) for line in stream]
    ends = [e for e in events if e["event"] == "stage_attempt_end" and e["node_id"] == "check"]
    assert len(ends) == 6 and len({e["failure_reason"] for e in ends}) == 6
    checks = [e for e in events if e["event"] == "deterministic_failure_cycle_check"]
    assert [c["signature_count"] for c in checks] == [1]
    codes = {f.code for f in _diagnosed("retries_varying").findings}
    assert "fragmented_failure_signatures" not in codes


def test_a_loop_a_goal_gate_closes_is_a_retry_loop_though_no_edge_names_the_jump() -> None:
    # goal_gate_loop: fix -> verify -> exit three times, the goal gate on verify sending the
    # run back to fix each time; Kilroy writes edge_selected for verify -> exit only.
    stream = (RUNS / "goal_gate_loop" / "progress.ndjson").read_text().splitlines()
    hops = [
        (e["from_node"], e["to_node"])
        for e in map(json.loads, stream)
        if e["event"] == "edge_selected"
    ]
    assert ("exit", "fix") not in hops and hops.count(("verify", "exit")) == 4
    (finding,) = [f for f in _diagnosed("goal_gate_loop").findings if f.code == "retry_loop"]
    assert finding.severity is Severity.WARNING
    assert finding.summary.startswith("a goal gate sent the run from exit back to fix 3 times")


@pytest.mark.parametrize(
    ("name", "target"),
    [
        ("retry_target_loop", "fix"),
        ("fallback_retry_target", "fix"),
        ("graph_retry_target", "prepare"),
    ],
)
def test_a_loop_through_a_failed_nodes_retry_target_is_a_retry_loop(name: str, target: str) -> None:
    # verify fails with no outgoing edge: Kilroy writes no_matching_fail_edge_fallback and
    # starts the retry target (the node's, its fallback, or the graph's), with no edge_selected
    # for the jump. The doctor saw no loop at all before.
    stream = [
        json.loads(line) for line in (RUNS / name / "progress.ndjson").read_text().splitlines()
    ]
    jumps = [
        (e["node_id"], e["retry_target"])
        for e in stream
        if e["event"] == "no_matching_fail_edge_fallback"
    ]
    assert jumps == [("verify", target)] * 3
    hops = [(e["from_node"], e["to_node"]) for e in stream if e["event"] == "edge_selected"]
    assert ("verify", target) not in hops
    (finding,) = [f for f in _diagnosed(name).findings if f.code == "retry_loop"]
    assert (finding.severity, finding.evidence["retry_target_jumps"]) == (Severity.INFO, 3)
    assert finding.summary.startswith(
        f"verify failed with no outgoing edge to take and Kilroy sent the run to its retry "
        f"target {target} 3 times"
    )


def test_a_false_success_says_a_retry_target_would_not_have_been_taken() -> None:
    # fallback_over_retry_target: verify has retry_target=fix and one edge (outcome=success)
    # into exit; it fails and Kilroy falls back to that edge, never to fix.
    stream = (RUNS / "fallback_over_retry_target" / "progress.ndjson").read_text()
    assert "no_matching_fail_edge_fallback" not in stream
    (finding,) = _diagnosed("fallback_over_retry_target").findings
    assert finding.code == "false_success"
    assert "a retry_target alone is not taken" in finding.summary


def test_each_lap_of_a_goal_gate_sending_a_node_back_to_itself_is_a_new_visit() -> None:
    # goal_gate_transient: verify's attempts follow each other with no other node between,
    # but each after a hop (verify -> exit, then the gate's jump back): visits, not retries
    # of one visit that max_retries=0 would have bounded.
    stream = (RUNS / "goal_gate_transient" / "progress.ndjson").read_text().splitlines()
    starts = [
        e
        for e in map(json.loads, stream)
        if e["event"] == "stage_attempt_start" and e["node_id"] == "verify"
    ]
    assert len(starts) >= 6 and {e["attempt"] for e in starts} == {1}
    result = _diagnosed("goal_gate_transient")
    (finding,) = [f for f in result.findings if f.code == "deterministic_retry_loop"]
    assert finding.severity is Severity.ERROR
    assert finding.evidence["visits"] == finding.evidence["count"] >= len(starts) - 1


def _as_while_its_resume_built(tmp_path: Path, owner: str) -> DoctorConfig:
    """resume_long as it was 8 s into the resumed build: the stream up to that build's start,
    no final.json, and run.lock.json naming this (live) process as the ``owner``: the resume
    (run.pid keeps the first run's pid) or the first run (run.pid names it too)."""
    run = tmp_path / "resume_long"
    shutil.copytree(RUNS / "resume_long", run)
    (run / "final.json").unlink()
    lines = (run / "progress.ndjson").read_text().splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if '"stage_attempt_start"' in line]
    resumed = json.loads(lines[starts[-2]])  # the resumed build's start (exit's is last)
    assert resumed["node_id"] == "build"
    (run / "progress.ndjson").write_text("".join(lines[: starts[-2] + 1]))
    began = (parse_iso(resumed["ts"]) or 0) / 1e9
    pid = os.getpid()
    lock = {"pid": pid, "pid_start_time": start_ticks(pid), "run_id": "resume_long"}
    (run / "run.lock.json").write_text(json.dumps({**lock, "acquired_at": resumed["ts"]}))
    if owner == "run":
        (run / "run.pid").write_text(str(pid))
    return DoctorConfig(roots=(tmp_path,)).with_now(began + 8)


@pytest.mark.parametrize(("owner", "state"), [("resume", "running"), ("run", "stalled")])
def test_a_resumed_run_is_judged_without_the_stall_timeout_its_resume_does_not_apply(
    tmp_path: Path, owner: str, state: str
) -> None:
    # resume_long: Kilroy's resume ran a silent 15 s build to success under a 3 s policy
    # (it does not apply runtime_policy). 8 s into that build, the run owned by the resume
    # is running (the doctor's own 600 s default), not stalled; owned by `kilroy attractor
    # run`, whose watchdog would have ended it after 3 s, it is stalled.
    config = _as_while_its_resume_built(tmp_path, owner)
    result = diagnose("resume_long", config).to_json()
    assert result["state"] == state, _show(result["findings"])
    assert result["facts"]["stall_timeout_s"] == (600.0 if owner == "resume" else 3.0)
    codes = [f["code"] for f in result["findings"]]
    assert ("missing_final" in codes) is (owner == "run")


def test_each_lap_of_a_branch_node_routed_back_to_itself_is_a_new_visit() -> None:
    # fanout_self_loop: branch streams carry no edge_selected; the edges Kilroy evaluated
    # after each of probe_b's visits tell the laps from retries.
    result = _diagnosed("fanout_self_loop")
    (finding,) = [f for f in result.findings if f.code == "deterministic_retry_loop"]
    assert finding.scope == "parallel/par/pass1/02-probe_b"
    assert finding.evidence["visits"] == finding.evidence["count"] >= 6


def test_a_branch_killed_while_kilroy_slept_before_its_retry_is_unfinished() -> None:
    # fanout_retry_sleep_killed: flaky_b's attempt ended fail, then stage_retry_sleep; the
    # kill came during the sleep. An attempt ended, the branch did not.
    (finding,) = [
        f for f in _diagnosed("fanout_retry_sleep_killed").findings if f.code == "unjoined_fanout"
    ]
    assert "1 still unfinished (flaky_b)" in finding.summary


def test_a_resume_that_routed_past_an_interrupted_visit_does_not_read_as_a_plain_success() -> None:
    # SIGTERM in count's second visit recorded its cancellation as count's status; the resume
    # routed on it down the failure edge to report and the run succeeded (the graph's
    # failure path), without running count's visit again.
    result = _diagnosed("self_loop_sigterm_resumed")
    assert result.state == "succeeded"
    assert result.facts["resumed_past"] == [
        {
            "resumed_at": result.facts["resumed_past"][0]["resumed_at"],
            "node": "count",
            "failure_reason": "stopped by signal terminated",
            "next_node": "report",
        }
    ]
    console = Console(file=io.StringIO(), width=300)
    render_diagnosis(console, result, DETECTORS, verbose=False)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "No issues found" not in text
    assert "past count's interrupted visit" in text and "to report instead" in text
    assert "past count's interrupted visit" in render_markdown(result)
    # The postmortem says it in its executive summary, in the same words.
    (line,) = resumed_past_lines(result.facts)
    summary = render_postmortem(result).split("## Executive summary")[1].split("## ")[0]
    assert "The run **succeeded**" in summary
    assert f"Resumed past an interrupted visit: {line}." in summary


def test_a_resume_that_routed_past_a_sigkilled_visit_does_not_read_as_a_plain_success() -> None:
    # SIGKILL in count's second visit, after its stage wrote a provisional `fail` into its
    # stage directory: the attempt never ended and no cancellation was recorded, but the
    # status.json outlived the engine. The resume (its checkpoint names count's first visit)
    # routed on it: it evaluated count's edges, went down the failure edge to report and
    # succeeded, count's second visit never run again (4 attempt starts: start, count twice,
    # report). The fact said nothing before: it only knew a stop's cancellation record.
    result = _diagnosed("self_loop_sigkill_resumed")
    assert result.state == "succeeded" and result.facts["attempts_started"] == 4
    assert result.facts["resumed_past"] == [
        {
            "resumed_at": result.facts["resumed_past"][0]["resumed_at"],
            "node": "count",
            "failure_reason": None,
            "next_node": "report",
            "killed": True,
        }
    ]
    (line,) = resumed_past_lines(result.facts)
    assert "(its engine was killed mid-attempt)" in line
    assert "routed on the status.json that visit left to report" in line
    console = Console(file=io.StringIO(), width=300)
    render_diagnosis(console, result, DETECTORS, verbose=False)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert line in text and "No issues found" not in text


def test_resumes_that_ran_the_interrupted_node_again_or_routed_on_an_outcome_note_nothing() -> None:
    # A resume that ran the stopped node again, routed on a real failure, or went on from a
    # node a stop did not interrupt: no note (every other resumed run of the corpus). Among
    # them the engine's usual answer to a SIGKILL mid-attempt: a first visit is run again from
    # the checkpoint before it (resume_after_kill); a later visit whose stage left no
    # status.json fails the resume at once (goal_gate_resume_lost_status); a killed concurrent
    # region's nodes are run again as branches (concurrent_killed_resumed: its top-level
    # attempts of a and b stay unended, but the resume routed on no node's status, so no
    # visit was routed past). Nor a resume that routed on an earlier visit of the node in
    # another scope: fetch interrupted in restart-1/ (SIGKILL, or SIGTERM's cancellation), the
    # resume goes on in the base directory from fetch's first visit, back to prepare, and is
    # killed there (loop_restart_fetch_killed_resumed_killed,
    # loop_restart_fetch_sigterm_resumed_killed: both noted as routed past fetch before).
    noted = {r.name for r in RUN_DIRS if _diagnosed(r.name).facts.get("resumed_past")}
    assert noted == {"self_loop_sigterm_resumed", "self_loop_sigkill_resumed"}
    # The engine's answer to a SIGKILL of a first visit, as a fact that would change with it:
    # build, killed mid-attempt, is started again by the resume and ends.
    builds = [
        e
        for e in map(
            json.loads, (RUNS / "resume_after_kill" / "progress.ndjson").read_text().splitlines()
        )
        if e.get("node_id") == "build" and e["event"].startswith("stage_attempt_")
    ]
    assert [e["event"] for e in builds] == ["stage_attempt_start"] * 2 + ["stage_attempt_end"]


def _stream(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_nested_fanout_killed_after_an_inner_branch_failed_reads_as_its_artifacts_say() -> None:
    # Branch a_pre fans out again (inner: a1 works, a2 fails); outer branch b succeeded;
    # SIGKILL while a1 works. Every verdict is checked against what the engine wrote.
    run = RUNS / "fanout_nested_inner_failed_killed"
    a_pre = "parallel/par/pass1/01-a_pre"
    a1, a2 = f"{a_pre}/parallel/inner/pass1/01-a1", f"{a_pre}/parallel/inner/pass1/02-a2"
    top, pre = _stream(run / "progress.ndjson"), _stream(run / a_pre / "progress.ndjson")

    def last_attempt(events: list[dict[str, Any]], node: str) -> list[str]:
        return [
            e["event"] for e in events if e.get("node_id") == node and "attempt_" in e["event"]
        ][-2:]

    def done(events: list[dict[str, Any]], key: str) -> list[str]:
        return [
            e["branch_status"]
            for e in events
            if e["event"] == "branch_progress"
            and e["branch_key"] == key
            and e["branch_event"] == "branch_subgraph_done"
        ]

    result = _diagnosed(run.name)
    got = {
        (f["code"], f["scope"], f["severity"], f["node_id"]) for f in result.to_json()["findings"]
    }
    assert got == {
        # No final.json anywhere (a SIGKILL writes none), the owner is dead: the run can never
        # finish, and par's attempt started and never ended.
        ("missing_final", "", "critical", "par"),
        # par never ended; of its two branches the top stream records b done (success) and
        # a_pre not.
        ("unjoined_fanout", "", "error", "par"),
        # a_pre: no final.json (Kilroy branches never write one), nothing records it done,
        # the owner is dead: not running, so missing_final (today's reading of FINDINGS.md),
        # its inner attempt open.
        ("missing_final", a_pre, "error", "inner"),
        # inner, a fan-out in branch a_pre, never ended; a2's work finished (it failed, and
        # a_pre's stream records it done), a1's did not.
        ("unjoined_fanout", a_pre, "error", "inner"),
        # a1: its attempt started and never ended, nobody recorded it done.
        ("missing_final", a1, "error", "a1"),
    }, _show([f.to_json() for f in result.findings])
    # The owner recorded in run.lock.json (pid and start time) is gone.
    assert not (run / "final.json").exists() and result.facts["owner_alive"] is False
    assert last_attempt(top, "par") == ["stage_attempt_start"]
    assert done(top, "b") == ["success"] and done(top, "a_pre") == []
    assert last_attempt(pre, "inner") == ["stage_attempt_start"]
    assert done(pre, "a2") == ["fail"] and done(pre, "a1") == []
    assert last_attempt(_stream(run / a1 / "progress.ndjson"), "a1") == ["stage_attempt_start"]
    assert last_attempt(_stream(run / a2 / "progress.ndjson"), "a2")[-1] == "stage_attempt_end"
    assert not list(run.glob("parallel/**/final.json"))
    # a2 failed and b succeeded, as their parents recorded them: finished, no missing_final.
    states = {b["scope"]: b["state"] for b in result.facts["branches"]}
    assert states == {
        a_pre: "orphaned",
        a1: "orphaned",
        a2: "failed",
        "parallel/par/pass1/02-b": "succeeded",
    }
    fanouts = {f.node_id: f.evidence for f in result.findings if f.code == "unjoined_fanout"}
    assert (fanouts["par"]["branches"], fanouts["par"]["branches_finished"]) == (2, 1)
    assert fanouts["par"]["unfinished_branches"] == [a_pre]
    assert (fanouts["inner"]["branches"], fanouts["inner"]["branches_finished"]) == (2, 1)
    assert fanouts["inner"]["unfinished_branches"] == [a1]
    # a2 failed with a concrete reason its stderr explains: no swallowed or lost reason.
    assert (run / a2 / "a2/stderr.log").read_text() == "a2: tests failed\n"


@pytest.mark.parametrize("name", ["resume_worktree_removed", "resume_worktree_deleted"])
def test_a_resume_whose_worktree_was_removed_does_not_read_as_a_plain_success(name: str) -> None:
    # SIGKILL in build, worktree/ removed (with `git worktree prune` or without), then
    # `kilroy attractor resume`: Kilroy does not recreate the worktree, warns before each stage
    # that it cannot write worktree/.kilroy/CONTEXT.md, runs build and test in an empty
    # directory outside git and ends success.
    run = RUNS / name
    result = _diagnosed(name)
    assert result.state == "succeeded"
    assert json.loads((run / "final.json").read_text())["status"] == "success"
    assert sorted(p.name for p in (run / "worktree").iterdir()) == [".ai", ".resumed"]
    (finding,) = [f for f in result.findings if f.code == "false_success"]
    worktree = json.loads((run / "manifest.json").read_text())["worktree"]
    assert finding.severity == Severity.ERROR and finding.node_id == "build"
    assert finding.evidence == {
        "missing_worktree_nodes": ["build", "test"],
        "worktree": worktree,
        "warning": f"write CONTEXT.md: open {worktree}/.kilroy/CONTEXT.md: "
        "no such file or directory",
        "outside_git": "build/diff.patch",
        "final_status": "success",
    }
    console = Console(file=io.StringIO(), width=300)
    render_diagnosis(console, result, DETECTORS, verbose=False)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "No issues found" not in text and "worktree was gone" in text


def test_an_agent_stage_a_resume_ran_without_the_worktree_is_no_plain_success() -> None:
    # An agent stage writes no diff.patch: its fallback status path says it, .ai/runs/
    # unknown_run/ where the killed attempt's (in the checkout) named the run.
    run = RUNS / "agent_resume_worktree_removed"

    def fallback(cli: Path) -> str:
        return str(json.loads(cli.read_text())["status_fallback_path"])

    assert fallback(run / "impl" / "visit_1" / "cli_invocation.json").endswith(
        "/.ai/runs/agent_resume_worktree_removed/status.json"
    )
    assert fallback(run / "impl" / "cli_invocation.json").endswith(
        "/.ai/runs/unknown_run/status.json"
    )
    assert not (run / "impl" / "diff.patch").exists()
    (finding,) = [f for f in _diagnosed(run.name).findings if f.code == "false_success"]
    assert finding.node_id == "impl" and finding.evidence["missing_worktree_nodes"] == ["impl"]
    assert finding.evidence["outside_git"] == "impl/cli_invocation.json"


def test_a_stage_that_removes_kilroys_context_directory_is_no_missing_worktree() -> None:
    # The same warning before test and impl, which still ran in the git worktree (README
    # there, test's diff a patch, impl's fallback status path naming the run): the worktree
    # was not gone.
    run = RUNS / "kilroy_dir_removed"
    messages = [e.get("message") for e in _stream(run / "progress.ndjson")]
    assert any(".kilroy/CONTEXT.md: no such file or directory" in str(m) for m in messages)
    assert json.loads((run / "test" / "status.json").read_text())["status"] == "success"
    assert (run / "test" / "diff.patch").read_text().startswith("diff --git a/clean.log")
    cli = json.loads((run / "impl" / "cli_invocation.json").read_text())
    assert cli["status_fallback_path"].endswith("/.ai/runs/kilroy_dir_removed/status.json")
    result = _diagnosed("kilroy_dir_removed")
    assert result.state == "succeeded"
    assert not [f for f in result.findings if f.code == "false_success"]
