"""``doctor report --json``: what was written, as a record a script can use (a real run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RUNS = REPO / "fixtures" / "kilroy" / "runs"
RUN = "retry_exhausted"


def _report(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNDOCTOR_")}
    env["PYTHONPATH"] = str(REPO)
    cmd = [sys.executable, "-m", "doctor", "report", "--root", str(RUNS), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def test_a_postmortem_to_stdout_is_the_records_text() -> None:
    plain = _report("--run-id", RUN)
    done = _report("--run-id", RUN, "--json")
    assert (done.returncode, done.stderr) == (0, "")
    record = json.loads(done.stdout)
    assert record["schema"] == "rundoctor.report/1"
    assert (record["kind"], record["format"], record["run_id"]) == ("postmortem", "markdown", RUN)
    assert record["files"] == [] and record["text"] == plain.stdout
    assert record["bytes"] == len(plain.stdout.encode())


def test_a_postmortem_written_out_lists_its_files(tmp_path: Path) -> None:
    out = tmp_path / "pm.md"
    done = _report("--run-id", RUN, "--json", "--out", str(out))
    assert (done.returncode, done.stderr) == (0, "")
    record = json.loads(done.stdout)
    assert record["files"] == [str(out), str(tmp_path / "pm.timeline.svg")]
    assert all(Path(f).is_file() for f in record["files"])
    assert record["text"] is None and record["bytes"] == out.stat().st_size
    page = tmp_path / "pm.html"
    html = json.loads(_report("--run-id", RUN, "--json", "--html", "--out", str(page)).stdout)
    assert (html["format"], html["files"]) == ("html", [str(page)])


def test_the_fleet_report_as_json() -> None:
    done = _report("--fleet", "--json")
    record = json.loads(done.stdout)
    assert (record["kind"], record["run_id"], record["files"]) == ("fleet", None, [])
    assert record["text"].startswith("# Fleet report:")


def test_an_error_stays_one_line_with_json() -> None:
    done = _report("--run-id", "retry_exhaustd", "--json")
    assert done.returncode == 2 and done.stdout == "" and done.stderr.count("\n") == 1
    assert "retry_exhausted" in done.stderr  # did you mean
