"""``doctor repair`` on runs the real Kilroy engine wrote, and what Kilroy does with the
repaired run afterwards (``kilroy attractor resume``): docs/repair.md, "Kilroy and a repaired
run". Each test drives ``run.sh`` and ``kilroy`` itself; the doctor's clock is pinned past the
stall timeout instead of waiting for it.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from rich.console import Console

from doctor import DETECTORS, Diagnosis, DoctorConfig, Finding, Severity, diagnose
from doctor._render import render_diagnosis
from doctor._repair import apply_repairs, plan_repairs
from doctor._timestamps import iso, parse_iso
from fixtures.kilroy import generate as gen
from fixtures.kilroy import relocate

KILROY = Path(os.environ.get("KILROY_HOME", "/work/shared/kilroy"))
GRAPHS = Path(__file__).resolve().parents[2] / "fixtures" / "kilroy" / "graphs"
RUNS = GRAPHS.parent / "runs"

pytestmark = pytest.mark.skipif(
    not (KILROY / "run.sh").exists(), reason="the real Kilroy engine is not installed"
)


@pytest.fixture
def workspaces() -> Iterator[list[Path]]:
    """run.sh's workspaces kept for a resume (run.sh was killed before it could remove them)."""
    made: list[Path] = []
    yield made
    for work in made:
        shutil.rmtree(work, ignore_errors=True)


def _killed_mid_stage(
    root: Path,
    graph: str,
    run_id: str,
    kept: list[Path],
    sig: signal.Signals = signal.SIGKILL,
    when: str = "started:build",
) -> Path:
    """A real run killed by ``sig`` while its ``build`` stage runs (or once ``when`` holds, a
    ``kill_when`` of the corpus generator), its workspace kept for a resume (SIGTERM: Kilroy
    writes its own final.json, "stopped by signal terminated")."""
    logs = root / run_id
    proc = subprocess.Popen(
        [str(KILROY / "run.sh"), str(GRAPHS / graph), run_id, str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    gen._wait_for(when, gen._condition(logs, when), proc)
    marks = {
        "resume.dot": ".resumed",
        "goal_gate_resume_lost_status.dot": ".slow",
        "self_loop_sigterm.dot": ".slow",
    }
    if graph in marks:  # its stage marks its long try before the sleep
        marked = logs / "worktree" / marks[graph]
        gen._wait_for("the stage's mark", marked.exists, proc)  # else a resume sleeps 60 s too
    pid = gen._kilroy_pid(logs)
    proc.send_signal(signal.SIGKILL)  # run.sh first: it removes the workspace as it returns
    proc.wait()
    kept.append(Path(json.loads((logs / "run_config.json").read_text())["repo"]["path"]).parent)
    _kill(pid, sig)
    return logs


def _kill(pid: int, sig: signal.Signals = signal.SIGKILL) -> None:
    stages = gen._kill_tree(pid, sig)
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        time.sleep(0.05)  # not our child: polled until it is gone
    gen._reap(stages)


def _resume(logs: Path) -> subprocess.Popen[bytes]:
    ws = Path(json.loads((logs / "run_config.json").read_text())["repo"]["path"])
    return subprocess.Popen(
        [str(KILROY / "kilroy"), "attractor", "resume", "--logs-root", str(logs)],
        cwd=ws,
        env=dict(os.environ, XDG_STATE_HOME=str(ws.parent / "state")),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _late(root: Path, run_id: str) -> DoctorConfig:
    """The doctor a day after the run's last event: past any stall timeout."""
    last = diagnose(run_id, DoctorConfig(roots=(root,))).facts["last_event_at"]
    return DoctorConfig(roots=(root,), now=(parse_iso(last) or 0) / 1e9 + 86400)


def _terminalized(root: Path, logs: Path) -> None:
    config = _late(root, logs.name)
    plan = plan_repairs(diagnose(logs.name, config), config)
    assert [(a.kind, a.blocked) for a in plan] == [("terminalize", None)]
    (done,) = apply_repairs(plan, config, run_path=logs).results
    assert done.outcome == "applied", done.message


def _resumed_then_killed(root: Path, logs: Path) -> Diagnosis:
    """``kilroy attractor resume`` the run, diagnosed while it runs build again, then killed
    there; the diagnosis while it ran."""
    resume = _resume(logs)
    try:
        gen._wait_for("build again", gen._condition(logs, "started:build#2"), resume)
        return diagnose(logs.name, DoctorConfig(roots=(root,)))
    finally:
        _kill(resume.pid)
        resume.wait(timeout=60)


def _terminalized_again(
    root: Path, logs: Path, superseded: dict[str, Any], whose: str
) -> Diagnosis:
    """The killed resume read as orphaned, its superseded final.json replaced by the
    doctor's (``superseded``, written by ``whose``, kept as the backup), and nothing left
    after; the orphaned diagnosis."""
    config = _late(root, logs.name)
    after = diagnose(logs.name, config)
    assert after.state == "orphaned"
    (missing,) = after.findings
    assert (missing.code, missing.repair) == ("missing_final", "terminalize")
    assert missing.evidence["superseded_final"] == "final.json"
    plan = plan_repairs(after, config)
    assert [(a.kind, a.blocked) for a in plan] == [("terminalize", None)]
    (done,) = apply_repairs(plan, config, run_path=logs).results
    assert done.outcome == "applied", done.message
    assert f"over the one {whose} wrote, which a resume went on past" in done.message
    assert done.backup is not None
    assert json.loads((logs / done.backup).read_text()) == superseded
    again = diagnose(logs.name, config)
    assert (again.state, again.findings) == ("failed", ())
    assert plan_repairs(again, config) == []
    return after


def test_a_run_resumed_after_the_doctor_terminalized_it_reads_as_the_resume_left_it(
    tmp_path: Path, workspaces: list[Path]
) -> None:
    logs = _killed_mid_stage(tmp_path, "long_stage.dot", "resumed_after_repair", workspaces)
    _terminalized(tmp_path, logs)
    repaired = json.loads((logs / "final.json").read_text())
    # Kilroy accepts the run the doctor terminalized: the resume runs build again.
    live = _resumed_then_killed(tmp_path, logs)
    assert live.state == "running", [f.summary for f in live.findings]
    assert not [f for f in live.findings if f.code == "post_terminal_activity"]
    assert live.facts["terminal_reason"] is None
    # The resume died too: the doctor's final.json (still on disk) no longer ends the run.
    after = _terminalized_again(tmp_path, logs, repaired, "an earlier repair")
    final = json.loads((logs / "final.json").read_text())
    assert final["timestamp"] == after.facts["last_event_at"] != repaired["timestamp"]


def test_a_resume_past_kilroys_own_final_json_is_running_and_once_killed_is_terminalized(
    tmp_path: Path, workspaces: list[Path]
) -> None:
    # Kilroy's resume keeps the old final.json (here its own "stopped by signal") until it
    # finishes. Before: a resume at work read `failed` with a post_terminal_activity warning
    # and its terminal reason; killed, `failed` with a post_terminal_activity error and two
    # checkpoint warnings, and the repair refused to terminalize ("a top-level final.json
    # exists"), so nothing could ever end it. Real run `sigterm_resumed_killed` in the corpus.
    logs = _killed_mid_stage(tmp_path, "long_stage.dot", "resumed_past", workspaces, signal.SIGTERM)
    kilroys = json.loads((logs / "final.json").read_text())
    assert (kilroys["status"], kilroys["failure_reason"]) == (
        "fail",
        "stopped by signal terminated",
    )
    live = _resumed_then_killed(tmp_path, logs)
    assert (live.state, live.findings) == ("running", ()), [f.summary for f in live.findings]
    assert live.facts["terminal_reason"] is None
    after = _terminalized_again(tmp_path, logs, kilroys, "Kilroy")
    (missing,) = after.findings
    assert "Kilroy's final.json, which a resume went on past, is set aside" in missing.summary


def test_kilroy_resumes_a_run_the_doctor_terminalized_and_rewrites_its_final_json(
    tmp_path: Path, workspaces: list[Path]
) -> None:
    logs = _killed_mid_stage(tmp_path, "resume.dot", "resumed_to_success", workspaces)
    _terminalized(tmp_path, logs)
    resume = _resume(logs)
    assert resume.wait(timeout=600) == 0
    final = json.loads((logs / "final.json").read_text())
    assert final["status"] == "success" and "repaired_by" not in final
    result = diagnose(logs.name, DoctorConfig(roots=(tmp_path,)))
    assert (result.state, result.findings) == ("succeeded", ())


def test_kilroy_routes_on_from_an_ingested_status_on_resume_and_the_run_reads_so(
    tmp_path: Path, workspaces: list[Path]
) -> None:
    # The agent writes its status to the worktree's .ai/status.json, where this Kilroy does
    # not look: impl fails "missing status.json" and the goal gate fails the run.
    run = subprocess.run(
        [str(KILROY / "run.sh"), str(GRAPHS / "agent_one.dot"), "ingested", str(tmp_path),
         "--agent", "legacy_dotai"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600, check=False,
    )  # fmt: skip
    assert run.returncode != 0
    logs = tmp_path / "ingested"
    config = DoctorConfig(roots=(tmp_path,))
    plan = plan_repairs(diagnose(logs.name, config), config)
    assert [(a.kind, a.target, a.blocked) for a in plan] == [
        ("ingest_status", "impl/status.json", None)
    ]
    report = apply_repairs(plan, config, run_path=logs)
    (done,) = report.results
    assert (done.outcome, done.introduced) == ("applied", ()), done
    # Until a resume reads it, the run still failed for want of that status: one finding,
    # which says it was ingested and asks for the resume, and nothing more to repair.
    (pending,) = diagnose(logs.name, config).findings
    assert pending.code == "status_contract_mismatch" and pending.repair is None
    assert "ingested_after" in pending.evidence and "kilroy attractor resume" in pending.summary
    assert plan_repairs(diagnose(logs.name, config), config) == []
    # Kilroy's resume reads impl/status.json, routes on from impl and passes the goal gate.
    work = tmp_path / "resume-work"
    work.mkdir()
    workspaces.append(work)
    resumed = subprocess.run(
        [str(KILROY / "kilroy"), "attractor", "resume", "--logs-root", str(logs)],
        cwd=logs, env=dict(os.environ, XDG_STATE_HOME=str(work / "state")),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        timeout=600, check=False,
    )  # fmt: skip
    assert resumed.returncode == 0
    assert json.loads((logs / "final.json").read_text())["status"] == "success"
    after = diagnose(logs.name, config)
    assert (after.state, after.findings) == ("succeeded", ())


def test_a_torn_last_line_cut_by_the_repair_lets_kilroy_resume_into_a_clean_stream(
    tmp_path: Path, workspaces: list[Path]
) -> None:
    logs = _killed_mid_stage(tmp_path, "resume.dot", "torn_resumed", workspaces)
    stream = logs / "progress.ndjson"
    whole = stream.read_bytes()
    last = whole.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    stream.write_bytes(whole[: len(whole) - len(last) - 1] + last[: len(last) // 2])  # torn
    config = _late(tmp_path, logs.name)
    plan = plan_repairs(diagnose(logs.name, config), config)
    assert [(a.kind, a.blocked) for a in plan] == [
        ("truncate_torn_line", None),
        ("terminalize", None),
    ]
    report = apply_repairs(plan, config, run_path=logs)
    assert [r.outcome for r in report.results] == ["applied", "applied"], report
    assert (report.state, report.remaining) == ("failed", ())
    resume = _resume(logs)
    assert resume.wait(timeout=600) == 0
    # Kilroy appended to the cut stream: every line is whole, and the run reads as it ended.
    lines = stream.read_bytes().splitlines()
    assert all(isinstance(json.loads(line), dict) for line in lines)
    result = diagnose(logs.name, DoctorConfig(roots=(tmp_path,)))
    assert (result.state, result.findings) == ("succeeded", ())


def test_a_killed_run_with_a_stranded_status_is_rerouted_by_kilroy_from_the_ingested_one(
    tmp_path: Path, workspaces: list[Path]
) -> None:
    # impl's status is stranded (fail, "missing status.json"); the run took the fail edge to
    # fixup and was killed there. Both repairs apply; the resume routes from impl again, the
    # checkpoint's last completed node, with the ingested success: ship, then exit.
    logs = tmp_path / "rerouted"
    proc = subprocess.Popen(
        [str(KILROY / "run.sh"), str(GRAPHS / "agent_then_long.dot"), logs.name, str(tmp_path),
         "--agent", "legacy_dotai"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    gen._wait_for("fixup", gen._condition(logs, "started:fixup"), proc)
    pid = gen._kilroy_pid(logs)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    workspaces.append(
        Path(json.loads((logs / "run_config.json").read_text())["repo"]["path"]).parent
    )
    _kill(pid)
    config = _late(tmp_path, logs.name)
    plan = plan_repairs(diagnose(logs.name, config), config)
    assert [(a.kind, a.blocked) for a in plan] == [("ingest_status", None), ("terminalize", None)]
    report = apply_repairs(plan, config, run_path=logs)
    assert [r.outcome for r in report.results] == ["applied", "applied"], report
    # Once, under heavy load, a torn_artifact remained too: the message names what was torn.
    assert [f.code for f in report.remaining] == ["status_contract_mismatch"], [
        (f.code, f.scope, f.summary) for f in report.remaining
    ]
    resume = _resume(logs)
    assert resume.wait(timeout=600) == 0
    ran = [json.loads(line) for line in (logs / "progress.ndjson").read_text().splitlines()]
    assert any(e.get("event") == "stage_attempt_end" and e.get("node_id") == "ship" for e in ran)
    result = diagnose(logs.name, DoctorConfig(roots=(tmp_path,)))
    assert (result.state, result.findings) == ("succeeded", ())


def test_a_terminalized_run_whose_stream_went_back_in_time_stays_terminalized(
    tmp_path: Path,
) -> None:
    # A parent stream forwards branch events as they come, so a line may carry a later time
    # than the stream's last one (test_real_kilroy's quirks). terminalize stamps the streams'
    # last events; such a line is no resume going on past the doctor's final.json.
    runs = Path(__file__).resolve().parents[2] / "fixtures" / "kilroy" / "runs"
    run = tmp_path / "sigkill_mid_stage"
    shutil.copytree(runs / run.name, run)
    stream = run / "progress.ndjson"
    events = [json.loads(line) for line in stream.read_text().splitlines()]
    last_ns = parse_iso(events[-1]["ts"]) or 0
    events[-3]["ts"] = iso(last_ns + 1_000_000)  # forwarded late: written before the last line
    stream.write_text("".join(json.dumps(e) + "\n" for e in events))
    config = DoctorConfig(roots=(tmp_path,), now=last_ns / 1e9 + 86400)
    plan = plan_repairs(diagnose(run.name, config), config)
    assert [(a.kind, a.blocked) for a in plan] == [("terminalize", None)]
    (done,) = apply_repairs(plan, config, run_path=run).results
    assert done.outcome == "applied", done.message
    assert json.loads((run / "final.json").read_text())["timestamp"] == events[-1]["ts"]
    after = diagnose(run.name, config)
    assert after.state == "failed", [f.summary for f in after.findings]
    assert plan_repairs(after, config) == []


def _copied(logs: Path, to: Path, *, pointed: bool) -> Path:
    """A copy of the run directory ``logs`` under ``to``; ``pointed``: its checkpoint's
    ``extra.base_logs_root`` names the copy (docs/repair.md, "A resume of a copy")."""
    copy = to / logs.name
    shutil.copytree(logs, copy, symlinks=True)
    if pointed:
        checkpoint = json.loads((copy / "checkpoint.json").read_text())
        checkpoint["extra"]["base_logs_root"] = str(copy)
        (copy / "checkpoint.json").write_text(json.dumps(checkpoint))
    return copy


def test_a_resume_of_a_copy_writes_its_final_json_into_the_original_unless_pointed(
    tmp_path: Path, workspaces: list[Path]
) -> None:
    # Kilroy works in the --logs-root it is given but saves the run's outcome to the
    # checkpoint's base_logs_root too: a copy's resume ends the original it was copied from.
    logs = _killed_mid_stage(tmp_path / "runs", "resume.dot", "r1", workspaces)
    stream = (logs / "progress.ndjson").read_bytes()
    pointed = _copied(logs, tmp_path / "pointed", pointed=True)
    unpointed = _copied(logs, tmp_path / "unpointed", pointed=False)

    assert _resume(pointed).wait(timeout=120) == 0
    assert json.loads((pointed / "final.json").read_text())["status"] == "success"
    assert not (logs / "final.json").exists()

    assert _resume(unpointed).wait(timeout=120) == 0
    final = json.loads((logs / "final.json").read_text())
    assert final == json.loads((unpointed / "final.json").read_text())
    assert final["status"] == "success"
    assert (logs / "progress.ndjson").read_bytes() == stream  # its stream never ran on
    # The original's final.json is the copy's: succeeded, but not plainly.
    result = diagnose(logs.name, _late(tmp_path / "runs", logs.name))
    assert result.state == "succeeded"
    assert [(f.code, f.severity.name) for f in result.findings] == [
        ("final_stream_mismatch", "ERROR")
    ], [f.summary for f in result.findings]
    assert result.findings[0].evidence["open_attempts"] == ["build"]
    assert diagnose(pointed.name, _late(tmp_path / "pointed", pointed.name)).findings == ()


def _copy_resumed_denied(logs: Path, tmp_path: Path) -> Finding:
    """Resume an unpointed copy of ``logs`` to success; the original, holding the copy's
    final.json, reads succeeded with one finding, ``final_stream_mismatch`` (returned), and
    the copy that ran it plainly succeeded."""
    unpointed = _copied(logs, tmp_path / "unpointed", pointed=False)
    assert _resume(unpointed).wait(timeout=120) == 0
    assert json.loads((logs / "final.json").read_text())["status"] == "success"
    result = diagnose(logs.name, _late(logs.parent, logs.name))
    assert result.state == "succeeded"
    (finding,) = result.findings
    assert finding.code == "final_stream_mismatch", finding.summary
    assert diagnose(unpointed.name, _late(unpointed.parent, unpointed.name)).findings == ()
    return finding


def test_a_resume_of_a_copy_of_a_run_a_signal_stopped_leaves_the_original_denying_success(
    tmp_path: Path, workspaces: list[Path]
) -> None:
    # SIGTERM: the original's stream ends in its own run_failed, its final.json said fail;
    # the copy's resume then overwrites that final.json with its success.
    logs = _killed_mid_stage(tmp_path / "runs", "resume.dot", "r1", workspaces, signal.SIGTERM)
    assert json.loads((logs / "final.json").read_text())["status"] == "fail"
    finding = _copy_resumed_denied(logs, tmp_path)
    assert finding.evidence["open_attempts"] == []
    assert finding.evidence["last_progress_event"] == "run_failed"
    assert finding.evidence["stream_failure_reason"] == "stopped by signal terminated"


def test_a_resume_of_a_copy_of_a_run_killed_mid_fanout_leaves_the_original_denying_success(
    tmp_path: Path, workspaces: list[Path]
) -> None:
    # SIGKILL once branch a finished while branch b (started before a finished) works: the
    # original's stream stops in the fan-out's attempt and b's, with a's end after b's start.
    graph, when = "fanout_copy_resumed.dot", "branch_done:impl_a"
    logs = _killed_mid_stage(tmp_path / "runs", graph, "r1", workspaces, when=when)
    finding = _copy_resumed_denied(logs, tmp_path)
    assert finding.evidence["open_attempts"] == ["par", "impl_b"]


def test_a_resume_that_lost_its_status_file_goes_on_once_the_archived_visit_is_restored(
    tmp_path: Path, workspaces: list[Path]
) -> None:
    # Killed during verify's second visit (a goal gate whose retry target is verify itself):
    # Kilroy deleted verify/status.json for it, so a resume, which reads the status.json of
    # the checkpoint's node to route on, fails at once; verify/visit_1/ keeps the outcome.
    graph, when = "goal_gate_resume_lost_status.dot", "started:verify#2"
    logs = _killed_mid_stage(tmp_path, graph, "r1", workspaces, when=when)
    assert _resume(logs).wait(timeout=120) != 0
    assert (
        "read last status.json" in json.loads((logs / "final.json").read_text())["failure_reason"]
    )
    config = _late(tmp_path, logs.name)
    failed = diagnose(logs.name, config)
    assert failed.state == "failed"
    plan = plan_repairs(failed, config)
    assert [(a.kind, a.target, a.source) for a in plan] == [
        ("ingest_status", "verify/status.json", "verify/visit_1/status.json")
    ]
    (done,) = apply_repairs(plan, config, run_path=logs).results
    assert done.outcome == "applied", done.message
    (restored,) = diagnose(logs.name, config).findings  # restored, the resume still to run
    assert (restored.code, restored.repair) == ("status_contract_mismatch", None)
    assert _resume(logs).wait(timeout=120) == 0
    after = diagnose(logs.name, DoctorConfig(roots=(tmp_path,)))
    assert (after.state, after.findings) == ("succeeded", ())


def test_a_killed_run_whose_resume_would_lose_its_status_file_is_restored_before_it(
    tmp_path: Path, workspaces: list[Path]
) -> None:
    # The same kill, diagnosed before any resume: the checkpoint names verify, whose
    # status.json Kilroy deleted for its second visit. The diagnosis says a resume would fail
    # and plans the restore with the terminalize; applied, the first resume goes on.
    graph, when = "goal_gate_resume_lost_status.dot", "started:verify#2"
    logs = _killed_mid_stage(tmp_path, graph, "r1", workspaces, when=when)
    config = _late(tmp_path, logs.name)
    killed = diagnose(logs.name, config)
    assert killed.state == "orphaned"
    (doomed,) = [f for f in killed.findings if f.code == "status_contract_mismatch"]
    assert doomed.evidence["resume_would_fail"] is True
    plan = plan_repairs(killed, config)
    assert [(a.kind, a.target, a.source, a.blocked) for a in plan] == [
        ("ingest_status", "verify/status.json", "verify/visit_1/status.json", None),
        ("terminalize", "final.json", None, None),
    ]
    report = apply_repairs(plan, config, run_path=logs)
    assert [r.outcome for r in report.results] == ["applied", "applied"], report.results
    assert not any(
        f.code == "status_contract_mismatch" for f in diagnose(logs.name, config).findings
    )
    assert _resume(logs).wait(timeout=120) == 0
    after = diagnose(logs.name, DoctorConfig(roots=(tmp_path,)))
    assert (after.state, after.findings) == ("succeeded", ())


def test_a_stopped_run_whose_resume_would_route_on_a_cancellation_is_restored_before_it(
    tmp_path: Path, workspaces: list[Path]
) -> None:
    # SIGTERM during count's second visit (count routes to itself with `again`): Kilroy
    # writes the cancellation to count/status.json, the checkpoint names count's first visit.
    # Unrepaired, a resume routes on the cancellation to report (real run
    # self_loop_sigterm_resumed); with visit_1's outcome restored it runs count again.
    graph, when = "self_loop_sigterm.dot", "started:count#2"
    logs = _killed_mid_stage(tmp_path, graph, "r1", workspaces, signal.SIGTERM, when)
    config = _late(tmp_path, logs.name)
    stopped = diagnose(logs.name, config)
    assert stopped.state == "failed"
    (finding,) = stopped.findings
    assert finding.evidence["canceled_status"] is True
    plan = plan_repairs(stopped, config)
    assert [(a.kind, a.target, a.source, a.blocked) for a in plan] == [
        ("ingest_status", "count/status.json", "count/visit_1/status.json", None),
    ]
    (done,) = apply_repairs(plan, config, run_path=logs).results
    assert done.outcome == "applied", done.message
    assert diagnose(logs.name, config).findings == ()
    assert _resume(logs).wait(timeout=120) == 0
    after = diagnose(logs.name, DoctorConfig(roots=(tmp_path,)))
    assert (after.state, after.findings) == ("succeeded", ())
    ran = [s["node_id"] for s in after.facts["attempt_spans"]]
    assert "report" not in ran and [
        s["attempts"] for s in after.facts["attempt_spans"] if s["node_id"] == "count"
    ] == [3]


def test_a_lost_status_file_no_visit_archive_keeps_is_read_from_the_checkpoint(
    tmp_path: Path, workspaces: list[Path]
) -> None:
    # The same kill and failed resume, as a Kilroy build before 2026-03-01 leaves them: no
    # verify/visit_1/ archive (those builds make none). The outcome the resume wanted is still
    # in the checkpoint's context; the finding names it and, with nothing for ingest_status to
    # copy, says to write the file by hand. Written so, the resume goes on.
    graph, when = "goal_gate_resume_lost_status.dot", "started:verify#2"
    logs = _killed_mid_stage(tmp_path, graph, "r1", workspaces, when=when)
    shutil.rmtree(logs / "verify" / "visit_1")
    config = _late(tmp_path, logs.name)
    (doomed,) = [
        f for f in diagnose(logs.name, config).findings if f.code == "status_contract_mismatch"
    ]
    assert (doomed.repair, doomed.evidence["resume_would_fail"]) == (None, True)
    assert (doomed.evidence["found_path"], doomed.evidence["found_outcome"]) == (
        "checkpoint.json",
        "fail",
    )
    assert 'write verify/status.json by hand as {"status": "fail"}' in doomed.summary
    assert _resume(logs).wait(timeout=120) != 0  # as warned: the resume fails at once
    failed = diagnose(logs.name, config)
    (lost,) = [f for f in failed.findings if f.code == "status_contract_mismatch"]
    assert (lost.repair, lost.evidence["lost_by_resume"]) == (None, True)
    assert "checkpoint.json recorded verify's outcome 'fail'" in lost.summary
    assert [a.kind for a in plan_repairs(failed, config)] == []
    (logs / "verify" / "status.json").write_text('{"status": "fail"}')
    assert _resume(logs).wait(timeout=120) == 0
    after = diagnose(logs.name, DoctorConfig(roots=(tmp_path,)))
    assert (after.state, after.findings) == ("succeeded", ())


@pytest.mark.parametrize("name", ["agent_dotai_status_resumed", "agent_dotai_status_no_git"])
def test_kilroy_refuses_to_resume_a_run_whose_checkpoint_has_no_commit_so_nothing_is_ingested(
    tmp_path: Path, name: str
) -> None:
    # The committed real run: impl's success stranded in worktree/.ai/status.json, the goal
    # gate failed the run, and its checkpoint has no git_commit_sha (saved by a resumed
    # engine; in no-git mode). The doctor used to plan ingest_status and "re-route the run".
    logs = relocate.copy_run(RUNS / name, tmp_path / name)
    config = DoctorConfig(roots=(tmp_path,))
    (finding,) = diagnose(name, config).findings
    assert (finding.code, finding.repair) == ("status_contract_mismatch", None)
    assert finding.evidence["resume_refused"] == "checkpoint missing git_commit_sha"
    assert plan_repairs(diagnose(name, config), config) == []
    # What the ingest would have done, by hand; then the resume the old advice asked for.
    shutil.copyfile(logs / "worktree" / ".ai" / "status.json", logs / "impl" / "status.json")
    work = tmp_path / "resume-work"
    work.mkdir()
    resumed = subprocess.run(
        [str(KILROY / "kilroy"), "attractor", "resume", "--logs-root", str(logs)],
        cwd=logs, env=dict(os.environ, XDG_STATE_HOME=str(work / "state")),
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    # Kilroy refuses before its engine starts: no event, and final.json's reason replaced.
    assert resumed.returncode != 0
    assert "checkpoint missing git_commit_sha" in resumed.stdout + resumed.stderr
    final = json.loads((logs / "final.json").read_text())
    assert (final["status"], final["failure_reason"]) == (
        "fail",
        finding.evidence["resume_refused"],
    )
    # The doctor says how the run itself ended, which the refusal's final.json now hides.
    after = diagnose(name, config)
    (rewritten,) = [f for f in after.findings if f.code == "final_stream_mismatch"]
    assert rewritten.evidence["stream_failure_reason"] == (
        "goal gate unsatisfied (impl) and no retry target"
    )
    assert rewritten.severity == Severity.WARNING


def _stalled_stop(root: Path, logs: Path) -> str:
    """The stop command (evidence ``stop_command``) of the stalled run's ``missing_final``
    (the doctor an hour after the run's last event, its owner alive)."""
    last = parse_iso(diagnose(logs.name, DoctorConfig(roots=(root,))).facts["last_event_at"])
    later = DoctorConfig(roots=(root,), now=(last or 0) / 1e9 + 3600)
    stalled = diagnose(logs.name, later)
    assert stalled.state == "stalled"
    (missing,) = [f for f in stalled.findings if f.code == "missing_final"]
    command = missing.evidence["stop_command"]
    assert f"`{command}`" in missing.summary
    # The console offers it under the check as a line to paste.
    console = Console(file=io.StringIO(), width=400)
    render_diagnosis(console, stalled, DETECTORS, verbose=False, config=later)
    lines = [line.strip() for line in console.file.getvalue().splitlines()]  # type: ignore[attr-defined]
    assert command in lines
    return str(command)


def _run_advice(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The doctor's printed command, run as a user pastes it (kilroy on PATH)."""
    env = dict(os.environ, PATH=f"{KILROY}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip


def test_the_stop_advised_for_a_stalled_resume_is_one_kilroy_does_not_refuse(
    tmp_path: Path, workspaces: list[Path]
) -> None:
    # A resume owns the run (run.lock.json names it; run.pid still the killed engine). The
    # doctor said "inspect the owner and stop it"; Kilroy's own stop refuses such a run.
    logs = _killed_mid_stage(tmp_path, "long_stage.dot", "stalled_resume", workspaces)
    resume = _resume(logs)
    try:
        gen._wait_for("build again", gen._condition(logs, "started:build#2"), resume)
        command = _stalled_stop(tmp_path, logs)
        assert command == f"kill -TERM {resume.pid}"
        refused = _run_advice(f"kilroy attractor stop --logs-root {logs} --force", tmp_path)
        assert refused.returncode != 0 and "refusing to stop" in refused.stderr + refused.stdout
        assert resume.poll() is None and not (logs / "final.json").exists()
        assert _run_advice(command, tmp_path).returncode == 0
        resume.wait(timeout=60)
    finally:
        if resume.poll() is None:
            _kill(resume.pid)
            resume.wait(timeout=60)
    final = json.loads((logs / "final.json").read_text())
    assert final["failure_reason"] == "stopped by signal terminated"
    after = diagnose(logs.name, DoctorConfig(roots=(tmp_path,)))
    assert after.state == "failed" and "missing_final" not in [f.code for f in after.findings]


def test_the_stop_advised_for_a_stalled_run_ends_it_through_kilroys_own_stop(
    tmp_path: Path,
) -> None:
    logs = tmp_path / "stalled_run"
    proc = subprocess.Popen(
        [str(KILROY / "run.sh"), str(GRAPHS / "long_stage.dot"), logs.name, str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        gen._wait_for("build", gen._condition(logs, "started:build"), proc)
        command = _stalled_stop(tmp_path, logs)
        assert command.startswith("kilroy attractor stop --logs-root ")
        stopped = _run_advice(command, tmp_path)
        assert stopped.returncode == 0, stopped.stderr
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            _kill(gen._kilroy_pid(logs))
            proc.wait(timeout=60)
    assert json.loads((logs / "final.json").read_text())["status"] == "fail"
    after = diagnose(logs.name, DoctorConfig(roots=(tmp_path,)))
    assert after.state == "failed" and "missing_final" not in [f.code for f in after.findings]


def _resume_copy(logs: Path, work: Path) -> subprocess.CompletedProcess[str]:
    """``kilroy attractor resume`` a copied committed run, in the run directory (its
    workspace is gone), Kilroy's state under ``work``."""
    work.mkdir()
    return subprocess.run(
        [str(KILROY / "kilroy"), "attractor", "resume", "--logs-root", str(logs)],
        cwd=logs, env=dict(os.environ, XDG_STATE_HOME=str(work / "state")),
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


def test_a_copied_committed_agent_run_resumes_with_its_agent_only_once_relocated(
    tmp_path: Path,
) -> None:
    # A committed run's manifest names its config and model catalogue in the generator's
    # temporary directory, long gone. Copied as it is, Kilroy resumed it with its simulated
    # agent backend: impl "succeeded" at once ("[Simulated] Response for stage: impl") and the
    # run ended `success`, which the run itself never could. Relocated, the resume uses the
    # run's own config, as a resume of the original in place does: its test_shim profile,
    # which Kilroy's resume refuses (it takes no --allow-test-shim), fails impl, and the goal
    # gate fails the run as it did.
    name = "loop_restart_agent_dotai"
    plain = tmp_path / "plain" / name
    shutil.copytree(RUNS / name, plain, symlinks=True)
    # Only its base_logs_root pointed at the copy (docs/repair.md, "A resume of a copy").
    _point_base_at(plain)
    assert _resume_copy(plain, tmp_path / "plain-work").returncode == 0
    assert relocate.simulated_stages(plain) == ["impl"]
    assert json.loads((plain / "final.json").read_text())["status"] == "success"
    # The doctor does not take that success at its word.
    simulated = diagnose(name, DoctorConfig(roots=(plain.parent,)))
    (false,) = [f for f in simulated.findings if f.code == "false_success"]
    assert (false.severity, false.evidence["simulated_nodes"]) == (Severity.ERROR, ["impl"])
    assert "Kilroy's simulated agent backend" in false.summary

    logs = relocate.copy_run(RUNS / name, tmp_path / "relocated" / name)
    resumed = _resume_copy(logs, tmp_path / "relocated-work")
    assert resumed.returncode != 0
    assert relocate.simulated_stages(logs) == []
    assert "false_success" not in [
        f.code for f in diagnose(name, DoctorConfig(roots=(logs.parent,))).findings
    ]
    final = json.loads((logs / "final.json").read_text())
    assert (final["status"], final["failure_reason"]) == (
        "fail",
        "goal gate unsatisfied (impl) and no retry target",
    )
    stream = [json.loads(line) for line in (logs / "progress.ndjson").read_text().splitlines()]
    impl = [e for e in stream if e["event"] == "stage_attempt_end"][-1]
    assert (impl["node_id"], impl["status"], impl["failure_reason"]) == (
        "impl",
        "fail",
        "llm.cli_profile=test_shim requires --allow-test-shim",
    )
    # The outcome went into the copy: every checkpoint's base_logs_root names it, none the
    # generator's directory (where a plain copy's resume recreates it under /tmp).
    for checkpoint in logs.rglob("checkpoint.json"):
        base = json.loads(checkpoint.read_text()).get("extra", {}).get("base_logs_root")
        assert base is None or base == str(logs), checkpoint
    # Only what the doctor's resume caveat names pointed at a copy is enough too.
    pointed = tmp_path / "pointed" / name
    shutil.copytree(RUNS / name, pointed, symlinks=True)
    _point_as_the_caveat_says(pointed)
    assert _resume_copy(pointed, tmp_path / "pointed-work").returncode != 0
    assert relocate.simulated_stages(pointed) == []
    ended = json.loads((pointed / "final.json").read_text())
    assert (ended["status"], ended["failure_reason"]) == (final["status"], final["failure_reason"])


@pytest.mark.parametrize("name", ["agent_dotai_status", "goal_gate_lost_status_killed"])
def test_resume_advice_for_a_moved_run_warns_that_kilroy_would_resume_it_without_its_config(
    tmp_path: Path, name: str
) -> None:
    # Committed real runs whose diagnosis asks for a resume (ingest impl's stranded success
    # and re-route the run; restore verify's status file before the resume). Copied as they
    # are, their manifest names a run config in the generator's directory, long gone: Kilroy
    # would resume them on its simulated agent backend (the test above). The advice said
    # nothing of it; false_success caught the "success" only afterwards.
    plain = tmp_path / "plain" / name
    shutil.copytree(RUNS / name, plain, symlinks=True)
    named = json.loads((plain / "manifest.json").read_text())["run_config_path"]
    assert not os.path.lexists(named)
    found = diagnose(name, DoctorConfig(roots=(plain.parent,)))
    (advice,) = [f for f in found.findings if f.code == "status_contract_mismatch"]
    assert advice.repair == "ingest_status"
    assert advice.evidence["resume_config_missing"] == named
    assert "point manifest.json's run_config_path at the run_config.json beside it" in (
        advice.summary
    )
    assert "simulated agent backend" in advice.summary
    # With what the warning names pointed at the copy, the advice stands alone.
    _point_as_the_caveat_says(plain)
    pointed = diagnose(name, DoctorConfig(roots=(plain.parent,)))
    (advice,) = [f for f in pointed.findings if f.code == "status_contract_mismatch"]
    assert advice.repair == "ingest_status"
    assert "resume_config_missing" not in advice.evidence
    assert "simulated" not in advice.summary


def _point_as_the_caveat_says(run: Path) -> None:
    """The edits the resume caveat names, and no other: manifest.json's run_config_path at
    the run_config.json beside it, its model catalogue path at a copy of the catalogue, the
    checkpoint's extra.base_logs_root at the run directory."""
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["run_config_path"] = str(run / "run_config.json")
    catalogue = run / "modeldb" / "openrouter_models.json"
    catalogue.parent.mkdir(exist_ok=True)
    shutil.copyfile(KILROY / "openrouter_models.json", catalogue)
    manifest["modeldb"]["openrouter_model_info_path"] = str(catalogue)
    (run / "manifest.json").write_text(json.dumps(manifest))
    _point_base_at(run)


def _point_base_at(run: Path) -> None:
    """The run's checkpoint's extra.base_logs_root pointed at the run directory itself."""
    checkpoint = json.loads((run / "checkpoint.json").read_text())
    checkpoint["extra"]["base_logs_root"] = str(run)
    (run / "checkpoint.json").write_text(json.dumps(checkpoint))


def test_kilroy_never_reads_a_status_ingested_into_a_restart_so_none_is_planned(
    tmp_path: Path,
) -> None:
    # The committed real run: impl ran in restart-1, its agent stranded its success in the
    # run's one worktree (<base>/worktree/.ai/status.json), the goal gate failed the run.
    # The doctor said nothing (it looked for a worktree in restart-1/); now it reports the
    # stranded outcome, with no ingest_status.
    name = "loop_restart_agent_dotai"
    logs = relocate.copy_run(RUNS / name, tmp_path / name)
    config = DoctorConfig(roots=(tmp_path,))
    (finding,) = diagnose(name, config).findings
    assert (finding.code, finding.scope, finding.repair) == (
        "status_contract_mismatch",
        "restart-1",
        None,
    )
    assert plan_repairs(diagnose(name, config), config) == []
    # What an ingest into restart-1 would have done, by hand; then a resume.
    shutil.copyfile(
        logs / "worktree" / ".ai" / "status.json", logs / "restart-1" / "impl" / "status.json"
    )
    before = len((logs / "progress.ndjson").read_text().splitlines())
    _resume_copy(logs, tmp_path / "resume-work")
    # Kilroy went on in the base directory from its checkpoint (prepare, fetch and impl ran
    # again there, impl with the run's own config, not Kilroy's simulated backend) and wrote
    # nothing in restart-1: the ingested file was never read, and the run failed again.
    assert relocate.simulated_stages(logs) == []
    resumed = [json.loads(line) for line in (logs / "progress.ndjson").read_text().splitlines()]
    starts = [e.get("node_id") for e in resumed[before:] if e["event"] == "stage_attempt_start"]
    assert starts == ["prepare", "fetch", "impl"]
    assert json.loads((logs / "final.json").read_text())["status"] == "fail"
    restart_stream = (logs / "restart-1" / "progress.ndjson").read_text()
    assert restart_stream == (RUNS / name / "restart-1" / "progress.ndjson").read_text()
