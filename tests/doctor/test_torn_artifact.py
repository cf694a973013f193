"""``torn_artifact``: progress lines and JSON documents that do not parse."""

from __future__ import annotations

import os
from pathlib import Path

from doctor import DoctorConfig, Finding, Severity, diagnose_path
from fixtures._kilroy import KilroyRun

START = "2026-04-28T09:00:00Z"


def _run(tmp_path: Path, *, pid: int = 99999999) -> KilroyRun:
    run = KilroyRun(tmp_path, "r1", START)
    run.run_pid(pid)
    s = run.stream()
    s.emit("stage_attempt_start", 1, node_id="a", attempt=1, max=4)
    s.emit("stage_attempt_end", 2, node_id="a", attempt=1, max=4, status="success")
    s.emit("stage_attempt_start", 3, node_id="b", attempt=1, max=4)
    return run


def _findings(path: Path) -> dict[str, Finding]:
    diagnosis = diagnose_path(path, DoctorConfig(now=1777377600, checks=("torn_artifact",)))
    return {str(f.evidence["file"]): f for f in diagnosis.findings}


def _append(path: Path, data: bytes) -> int:
    """Append ``data``; returns the byte offset it starts at."""
    size = path.stat().st_size
    with path.open("ab") as fh:
        fh.write(data)
    return size


def test_a_torn_last_line_is_a_warning_to_truncate(tmp_path: Path) -> None:
    path = _run(tmp_path).finish()
    offset = _append(path / "progress.ndjson", b'{"event":"stage_attempt_end","node_id":"b","st')

    finding = _findings(path)["progress.ndjson"]

    assert finding.severity is Severity.WARNING
    assert finding.repair == "truncate_torn_line"
    assert finding.evidence == dict(finding.evidence) | {
        "line": 4,
        "byte_offset": offset,
        "count": 1,
        "last_line": True,
    }
    assert str(finding.evidence["detail"]).startswith("not JSON")


def test_a_whole_object_with_no_event_and_no_newline_is_cut_but_not_called_a_crash(
    tmp_path: Path,
) -> None:
    # It was "a half-written append from a crash": the object is whole, only no event, and
    # with no newline after it the engine's next append would be glued onto it.
    from doctor._ndjson import NOT_AN_EVENT
    from doctor._repair import plan_repairs

    path = _run(tmp_path).finish()
    offset = _append(path / "progress.ndjson", b'{"note": "another writer"}')
    config = DoctorConfig(now=1777377600, checks=("torn_artifact",))
    diagnosis = diagnose_path(path, config)
    (finding,) = diagnosis.findings

    assert (finding.repair, finding.evidence["detail"]) == ("truncate_torn_line", NOT_AN_EVENT)
    assert "half-written" not in finding.summary
    assert (
        "the last line is a whole JSON object but no event, with no newline after it, so the "
        f"next append would be glued onto it; truncate it at byte {offset}" in finding.summary
    )
    (action,) = plan_repairs(diagnosis, config)
    assert "half-written" not in action.reason and "glued onto it" in action.reason


def test_an_unterminated_line_of_a_live_writer_is_not_torn(tmp_path: Path) -> None:
    path = _run(tmp_path, pid=os.getpid()).finish()
    _append(path / "progress.ndjson", b'{"event":"stage_heartbeat","node_id":"b","el')

    assert "progress.ndjson" not in _findings(path)


def test_torn_lines_inside_a_stream_are_one_error_with_a_count(tmp_path: Path) -> None:
    path = _run(tmp_path).finish()
    progress = path / "progress.ndjson"
    lines = progress.read_bytes().split(b"\n")
    lines[0] = lines[0][:30]
    lines[2] = b"[1, 2]"
    progress.write_bytes(b"\n".join(lines))

    finding = _findings(path)["progress.ndjson"]

    assert finding.severity is Severity.ERROR
    assert finding.repair is None
    assert finding.evidence == dict(finding.evidence) | {"line": 1, "byte_offset": 0, "count": 2}


def test_a_torn_final_json_is_an_error(tmp_path: Path) -> None:
    run = _run(tmp_path)
    run.write_text("final.json", '{\n  "status": "fail",\n  "run_id')
    path = run.finish()

    finding = _findings(path)["final.json"]

    assert finding.severity is Severity.ERROR
    assert finding.evidence["line"] == 3
    assert finding.evidence["count"] == 1


def test_an_empty_live_json_is_a_warning(tmp_path: Path) -> None:
    path = _run(tmp_path).finish()
    (path / "live.json").write_text("")

    finding = _findings(path)["live.json"]

    assert finding.severity is Severity.WARNING
    assert finding.evidence["detail"] == "empty file"


def test_a_torn_branch_status_file_names_the_branch(tmp_path: Path) -> None:
    run = _run(tmp_path)
    run.stream("parallel/fan/01-a").emit("stage_attempt_start", 4, node_id="x", attempt=1, max=4)
    run.write_text("parallel/fan/01-a/x/status.json", '{"status": ')
    path = run.finish()

    finding = _findings(path)["parallel/fan/01-a/x/status.json"]

    assert finding.scope == "parallel/fan/01-a"
    assert finding.severity is Severity.ERROR


def test_intact_files_are_not_reported(tmp_path: Path) -> None:
    assert _findings(_run(tmp_path).finish()) == {}
