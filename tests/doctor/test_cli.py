"""The ``doctor`` console script, run as a real subprocess: contract, exit codes, errors."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from doctor import DETECTORS

REPO = Path(__file__).resolve().parents[2]
HEALTHY_ROOT = REPO / "fixtures/cases/healthy_tool_run/run"
DEAD_PID = "99999999"

#: FINDINGS.md, "facts": every key is required (values may be null).
FACT_KEYS = {
    "started_at",
    "last_event_at",
    "last_progress_at",
    "wall_s",
    "events",
    "events_by_type",
    "attempts_started",
    "attempts_ended",
    "final_json",
    "owner_pid",
    "owner_alive",
    "current_node",
    "edges",
    "phases",
    "branches",
    "attempt_stats",
    "cost_usd",
}
EDGE_KEYS = {"from", "to", "count"}
PHASE_KEYS = {"node", "first_start", "last_end", "wall_s", "share"}
BRANCH_KEYS = {"scope", "state", "final_json", "last_progress_at", "attempts_started", "failures"}
STAT_KEYS = {"node_id", "attempts", "min_s", "median_s", "max_s", "total_s"}
FINDING_KEYS = {"code", "severity", "scope", "node_id", "summary", "evidence", "repair"}
STATES = {"running", "succeeded", "failed", "canceled", "stalled", "orphaned"}


def _command() -> list[str]:
    script = Path(sys.executable).parent / "doctor"
    return [str(script)] if script.exists() else [sys.executable, "-m", "doctor"]


def doctor(
    *args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("RUNDOCTOR_")}
    return subprocess.run(
        [*_command(), *map(str, args)],
        capture_output=True,
        text=True,
        env={**base, "COLUMNS": "100", **(env or {})},
        cwd=cwd or REPO,
        check=False,
    )


def _line(event: str, second: int, **fields: Any) -> str:
    return json.dumps({"event": event, "ts": f"2026-04-28T10:00:{second:02d}Z", **fields}) + "\n"


def _write_run(root: Path, run_id: str, lines: list[str], *, final: str | None = None) -> Path:
    run = root / run_id
    run.mkdir(parents=True)
    (run / "run.pid").write_text(DEAD_PID)
    (run / "progress.ndjson").write_text("".join(lines))
    if final is not None:
        (run / "final.json").write_text(json.dumps({"status": final, "run_id": run_id}))
    return run


def _stale_run(root: Path, run_id: str = "stale01", node: str = "build") -> Path:
    """Heartbeats keep naming a node after its attempt ended: a stale_heartbeat error."""
    lines = [
        _line("stage_attempt_start", 0, node_id=node, attempt=1),
        _line("stage_attempt_end", 5, node_id=node, attempt=1, status="success"),
    ] + [_line("stage_heartbeat", s, node_id=node) for s in (20, 30, 40)]
    return _write_run(root, run_id, lines, final="success")


def _assert_one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


# --- diagnose --json ----------------------------------------------------------------------------


def test_diagnose_json_of_the_healthy_case_follows_the_diagnosis_contract() -> None:
    result = doctor("diagnose", "--run-id", "healthy01", "--root", HEALTHY_ROOT, "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["schema"] == "rundoctor.diagnosis/1"
    assert data["run_id"] == "healthy01"
    assert data["path"] == str((HEALTHY_ROOT / "healthy01").resolve())
    assert data["layout"] == "kilroy"
    assert data["state"] == "succeeded"
    assert set(data["facts"]) >= FACT_KEYS
    facts = data["facts"]
    assert facts["final_json"] is True
    assert facts["events"] == 15
    assert all(set(e) >= EDGE_KEYS for e in facts["edges"]) and facts["edges"]
    assert all(set(p) >= PHASE_KEYS for p in facts["phases"]) and facts["phases"]
    assert all(set(s) >= STAT_KEYS for s in facts["attempt_stats"]) and facts["attempt_stats"]
    for f in data["findings"]:
        assert set(f) == FINDING_KEYS
        assert f["severity"] in {"info", "warning"}


def test_diagnose_json_of_a_broken_run_has_findings_in_the_contract_shape(
    tmp_path: Path,
) -> None:
    _stale_run(tmp_path)
    branch = tmp_path / "stale01/parallel/fan/01-a"
    branch.mkdir(parents=True)
    (branch / "progress.ndjson").write_text(_line("stage_attempt_start", 1, node_id="x"))
    result = doctor("diagnose", "--run-id", "stale01", "--root", tmp_path, "--json")
    data = json.loads(result.stdout)
    assert set(data["facts"]) >= FACT_KEYS
    assert data["state"] in STATES
    (branch_row,) = data["facts"]["branches"]
    assert set(branch_row) >= BRANCH_KEYS
    assert data["findings"]
    for f in data["findings"]:
        assert set(f) == FINDING_KEYS
        assert f["severity"] in {"info", "warning", "error", "critical"}
        assert isinstance(f["evidence"], dict)
        assert f["repair"] in {
            None,
            "terminalize",
            "ingest_status",
            "reclaim",
            "reconcile",
            "truncate_torn_line",
        }


def test_diagnose_exits_0_on_the_healthy_case() -> None:
    result = doctor("diagnose", "--run-id", "healthy01", "--root", HEALTHY_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_diagnose_exits_1_on_a_run_with_an_error_finding(tmp_path: Path) -> None:
    _stale_run(tmp_path)
    result = doctor(
        "diagnose", "--run-id", "stale01", "--root", tmp_path, "--check", "stale_heartbeat"
    )
    assert result.returncode == 1, result.stdout + result.stderr
    json_result = doctor(
        "diagnose",
        "--run-id",
        "stale01",
        "--root",
        tmp_path,
        "--check",
        "stale_heartbeat",
        "--json",
    )
    assert json_result.returncode == 1
    (finding,) = json.loads(json_result.stdout)["findings"]
    assert (finding["code"], finding["severity"]) == ("stale_heartbeat", "error")


def test_check_runs_only_the_named_detector(tmp_path: Path) -> None:
    _stale_run(tmp_path)
    other = next(d.__name__ for d in DETECTORS if d.__name__ != "stale_heartbeat")
    result = doctor(
        "diagnose", "--run-id", "stale01", "--root", tmp_path, "--check", other, "--json"
    )
    assert result.returncode in (0, 1), result.stderr
    assert {f["code"] for f in json.loads(result.stdout)["findings"]} <= {other}


# --- usage and input errors ---------------------------------------------------------------------


def test_an_unknown_run_id_is_one_line_with_did_you_mean() -> None:
    line = _assert_one_line_error(
        doctor("diagnose", "--run-id", "healthy0", "--root", HEALTHY_ROOT)
    )
    assert "did you mean 'healthy01'" in line


@pytest.mark.parametrize("typed", ["R1", "r2", "1r"])
def test_a_short_run_id_in_other_case_or_one_letter_off_gets_did_you_mean(
    tmp_path: Path, typed: str
) -> None:
    # difflib alone finds 'r2' only half like 'r1' and 'R1' not at all: no suggestion was made.
    shutil.copytree(HEALTHY_ROOT / "healthy01", tmp_path / "r1")
    line = _assert_one_line_error(doctor("diagnose", "--run-id", typed, "--root", tmp_path))
    assert "did you mean 'r1'" in line


def test_a_run_id_that_climbs_out_of_the_root_is_refused() -> None:
    # A --run-id naming an existing directory is that run's path (given_run), so the id must
    # name nothing: CI once had a /tmp/x beside its clone in /tmp.
    bad = f"../no-such-run-{uuid.uuid4().hex}"
    line = _assert_one_line_error(doctor("diagnose", "--run-id", bad, "--root", HEALTHY_ROOT))
    assert f"'{bad}'" in line and "outside a root" in line


def test_a_missing_root_is_one_line(tmp_path: Path) -> None:
    line = _assert_one_line_error(doctor("diagnose", "--run-id", "r1", "--root", tmp_path / "nope"))
    assert str(tmp_path / "nope") in line


def test_a_missing_root_fails_scan_too(tmp_path: Path) -> None:
    _assert_one_line_error(doctor("scan", "--root", tmp_path / "nope"))


def test_an_unknown_check_suggests_the_close_one() -> None:
    result = doctor(
        "diagnose", "--run-id", "healthy01", "--root", HEALTHY_ROOT, "--check", "stale_hartbeat"
    )
    line = _assert_one_line_error(result)
    assert "did you mean 'stale_heartbeat'" in line


def test_an_unknown_check_with_nothing_close_points_at_doctor_checks() -> None:
    result = doctor("diagnose", "--run-id", "healthy01", "--root", HEALTHY_ROOT, "--check", "bogus")
    line = _assert_one_line_error(result)
    assert "'bogus'" in line
    assert "doctor checks" in line


def test_json_and_markdown_together_are_refused() -> None:
    result = doctor(
        "diagnose", "--run-id", "healthy01", "--root", HEALTHY_ROOT, "--json", "--markdown"
    )
    line = _assert_one_line_error(result)
    assert "--json" in line and "--markdown" in line
    assert result.stdout == ""


def test_an_unparsable_since_is_refused() -> None:
    line = _assert_one_line_error(doctor("scan", "--root", HEALTHY_ROOT, "--since", "yesterdayish"))
    assert "'yesterdayish'" in line


def test_a_since_too_long_says_so_not_that_it_is_no_age() -> None:
    line = _assert_one_line_error(doctor("scan", "--root", HEALTHY_ROOT, "--since", "99999999w"))
    assert line == (
        "error: --since '99999999w' is too long a duration: at most 5218w (about a hundred years)"
    )


def test_a_run_id_with_markup_characters_is_printed_literally(tmp_path: Path) -> None:
    _stale_run(tmp_path)
    for run_id in ("a[/x]b", "[bold]zz"):
        line = _assert_one_line_error(doctor("diagnose", "--run-id", run_id, "--root", tmp_path))
        assert repr(run_id) in line


# --- roots from the environment -----------------------------------------------------------------


def test_rundoctor_roots_is_used_when_no_root_is_given(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {
        "RUNDOCTOR_ROOTS": os.pathsep.join([str(empty), str(HEALTHY_ROOT)]),
        "XDG_STATE_HOME": str(tmp_path / "state"),
    }
    result = doctor("diagnose", "--run-id", "healthy01", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["run_id"] == "healthy01"


def test_a_root_flag_wins_over_rundoctor_roots(tmp_path: Path) -> None:
    env = {"RUNDOCTOR_ROOTS": str(HEALTHY_ROOT), "XDG_STATE_HOME": str(tmp_path / "state")}
    (tmp_path / "other").mkdir()
    result = doctor("diagnose", "--run-id", "healthy01", "--root", tmp_path / "other", env=env)
    _assert_one_line_error(result)


def test_no_root_anywhere_is_one_line_that_says_what_to_do(tmp_path: Path) -> None:
    env = {"XDG_STATE_HOME": str(tmp_path / "state")}
    line = _assert_one_line_error(doctor("diagnose", "--run-id", "x", env=env))
    assert "RUNDOCTOR_ROOTS" in line


# --- checks -------------------------------------------------------------------------------------


def test_checks_lists_every_detector() -> None:
    result = doctor("checks")
    assert result.returncode == 0
    names = [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
    assert names == [d.__name__ for d in DETECTORS]


def test_checks_json_lists_every_detector_with_its_description() -> None:
    result = doctor("checks", "--json")
    assert result.returncode == 0
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == [d.__name__ for d in DETECTORS]
    assert all(r["description"] for r in rows)


# --- scan ---------------------------------------------------------------------------------------


def test_scan_json_has_one_row_per_run(tmp_path: Path) -> None:
    _stale_run(tmp_path, "b_stale")
    _write_run(tmp_path, "a_done", [_line("run_completed", 1)], final="success")
    result = doctor("scan", "--root", tmp_path, "--json")
    data = json.loads(result.stdout)
    assert data["schema"] == "rundoctor.scan/1"
    assert [r["run_id"] for r in data["runs"]] == ["a_done", "b_stale"]
    for row in data["runs"]:
        assert row["state"] in STATES
        assert set(row["counts"]) == {"info", "warning", "error", "critical"}
        for f in row["findings"]:
            assert set(f) == FINDING_KEYS
    assert data["fleet"]["runs"] == 2
    assert result.returncode == (1 if any(r["counts"]["error"] for r in data["runs"]) else 0)
    # No run reported a cost: the fleet's is null, as each run's is (it was 0.0, "$0").
    assert data["fleet"]["cost_usd"] is None


def test_scan_json_sums_the_costs_runs_reported(tmp_path: Path) -> None:
    _write_run(tmp_path, "a", [_line("run_completed", 1)], final="success")
    _write_run(tmp_path, "b", [_line("run_completed", 1)], final="success")
    final = json.loads((tmp_path / "b" / "final.json").read_text())
    (tmp_path / "b" / "final.json").write_text(json.dumps({**final, "cost_usd": 0.125}))
    data = json.loads(doctor("scan", "--root", tmp_path, "--json").stdout)
    assert [r["run_id"] for r in data["runs"]] == ["a", "b"]
    assert data["fleet"]["cost_usd"] == 0.125


def test_scan_json_takes_no_boolean_for_a_cost(tmp_path: Path) -> None:
    # JSON's `true` is a Python int: final.json's `"cost_usd": true` was a $1.00 run.
    _write_run(tmp_path, "a", [_line("run_completed", 1)], final="success")
    final = json.loads((tmp_path / "a" / "final.json").read_text())
    (tmp_path / "a" / "final.json").write_text(json.dumps({**final, "cost_usd": True}))
    data = json.loads(doctor("scan", "--root", tmp_path, "--json").stdout)
    assert data["fleet"]["cost_usd"] is None


def test_scan_since_leaves_out_runs_started_before(tmp_path: Path) -> None:
    _write_run(tmp_path, "old", [_line("run_completed", 1)], final="success")
    _write_run(tmp_path, "new", [_line("run_completed", 1).replace("04-28", "04-30")])
    result = doctor("scan", "--root", tmp_path, "--json", "--since", "2026-04-29")
    assert [r["run_id"] for r in json.loads(result.stdout)["runs"]] == ["new"]


@pytest.mark.parametrize("fraction", [".5", ".25", ".123", ".000001", ".123456789"])
def test_scan_since_reads_start_times_with_any_number_of_fraction_digits(
    tmp_path: Path, fraction: str
) -> None:
    line = json.dumps({"event": "run_completed", "ts": f"2026-04-28T10:00:00{fraction}Z"})
    _write_run(tmp_path, "old", [line + "\n"], final="success")
    result = doctor("scan", "--root", tmp_path, "--json", "--since", "2026-04-29")
    assert json.loads(result.stdout)["runs"] == []


# --- markdown -----------------------------------------------------------------------------------

_UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")


def test_markdown_escapes_pipes_and_backticks_from_artifacts(tmp_path: Path) -> None:
    node = "build|`rm`"
    reason = "make | grep `oops` failed"
    lines = []
    for i in range(1, 5):
        lines.append(_line("stage_attempt_start", i * 2, node_id=node, attempt=i))
        lines.append(
            _line(
                "stage_attempt_end",
                i * 2 + 1,
                node_id=node,
                attempt=i,
                status="fail",
                failure_reason=reason,
            )
        )
    lines.append(_line("stage_heartbeat", 30, node_id=node))
    _write_run(tmp_path, "md01", lines)
    result = doctor("diagnose", "--run-id", "md01", "--root", tmp_path, "--markdown")
    assert result.returncode in (0, 1), result.stderr
    table = [line for line in result.stdout.splitlines() if line.startswith("|")]
    assert len(table) >= 3
    for row in table:
        # | severity | code | scope | node | summary |  -> six unescaped pipes, five cells.
        assert len(_UNESCAPED_PIPE.findall(row)) == 6, row
    assert "`" not in result.stdout.replace("\\`", "")
    assert "build\\|\\`rm\\`" in result.stdout
    assert reason not in result.stdout


def _stderr_on_a_terminal(*args: str) -> tuple[int, str]:
    """``doctor ARGS`` with its standard error on a pseudo-terminal: the exit code and what
    the terminal was sent."""
    import pty

    master, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "doctor", *args],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=terminal,
        env={k: v for k, v in os.environ.items() if not k.startswith("RUNDOCTOR_")},
    )
    os.close(terminal)
    sent = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the process closed its end (it exited)
            break
        if not chunk:
            break
        sent.append(chunk)
    os.close(master)
    return proc.wait(timeout=60), b"".join(sent).decode("utf-8", "replace")


@pytest.mark.parametrize(
    "args",
    [("scan",), ("report", "--fleet"), ("metrics",)],
    ids=lambda a: "-".join(a),
)
def test_every_scan_of_the_fleet_shows_its_progress_on_a_terminal(args: tuple[str, ...]) -> None:
    # Before: only `scan` did; `report --fleet` and `metrics` read the whole fleet silently.
    code, sent = _stderr_on_a_terminal(*args, "--root", str(REPO / "fixtures/cases"))
    assert code in (0, 1) and "diagnosing runs" in sent, sent
