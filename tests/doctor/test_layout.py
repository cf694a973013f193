"""``doctor._layout``: which streams and documents make up a run directory, and what stays out."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from doctor import DoctorConfig, diagnose, scan
from doctor._discovery import check_run_id, list_run_dirs, locate_run
from doctor._errors import RootError, RunNotFound, UnsafeRunId
from doctor._layout import discover, is_top_scope, stage_dirs
from rundoctor.liveness import process_alive

DEAD_PID = "99999999"
TS = "2026-04-28T10:00:00Z"


def _events(*names: str, node: str = "a") -> str:
    return "".join(
        json.dumps({"event": n, "node_id": node, "ts": f"2026-04-28T10:00:0{i}Z"}) + "\n"
        for i, n in enumerate(names)
    )


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _run(root: Path, run_id: str = "r1", *, progress: str | None = None) -> Path:
    run = root / run_id
    _write(run / "run.pid", DEAD_PID)
    _write(run / "progress.ndjson", progress if progress is not None else _events("run_started"))
    return run


def _scopes(run: Path) -> list[str]:
    return [s.scope for s in discover(run).scopes]


# --- scopes -------------------------------------------------------------------------------------


def test_a_run_without_branches_has_only_the_top_scope(tmp_path: Path) -> None:
    run = _run(tmp_path)
    assert _scopes(run) == [""]
    assert discover(run).top.progress == run / "progress.ndjson"


def test_branches_without_a_pass_level_are_scopes(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _write(run / "parallel/fanout/01-impl_a/progress.ndjson", _events("stage_attempt_start"))
    _write(run / "parallel/fanout/02-impl_b/progress.ndjson", _events("stage_attempt_start"))
    assert _scopes(run) == ["", "parallel/fanout/01-impl_a", "parallel/fanout/02-impl_b"]


def test_branches_under_a_pass_level_are_scopes(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _write(run / "parallel/fan/pass1/01-a/progress.ndjson", _events("stage_attempt_start"))
    _write(run / "parallel/fan/pass2/01-a/progress.ndjson", _events("stage_attempt_start"))
    assert _scopes(run) == ["", "parallel/fan/pass1/01-a", "parallel/fan/pass2/01-a"]


def test_a_branch_worktree_is_never_searched_for_nested_streams(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _write(run / "parallel/fan/01-a/progress.ndjson", _events("stage_attempt_start"))
    _write(run / "parallel/fan/02-b/worktree/x/progress.ndjson", _events("stage_attempt_start"))
    assert _scopes(run) == ["", "parallel/fan/01-a"]


def test_restart_directories_are_top_scopes_in_numeric_order(tmp_path: Path) -> None:
    run = _run(tmp_path)
    for n in (10, 2, 1):
        _write(run / f"restart-{n}/progress.ndjson", _events("run_started"))
    assert _scopes(run) == ["", "restart-1", "restart-2", "restart-10"]
    assert all(is_top_scope(s) for s in _scopes(run))


def test_branches_inside_a_restart_carry_the_restart_prefix(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _write(run / "restart-1/progress.ndjson", _events("run_started"))
    _write(run / "restart-1/parallel/fan/pass1/01-a/progress.ndjson", _events("x"))
    scopes = _scopes(run)
    assert scopes == ["", "restart-1", "restart-1/parallel/fan/pass1/01-a"]
    assert not is_top_scope("restart-1/parallel/fan/pass1/01-a")
    layout = discover(run)
    assert layout.scope("restart-1/parallel/fan/pass1/01-a").path == (
        run / "restart-1/parallel/fan/pass1/01-a"
    )


def test_a_directory_merely_named_like_a_restart_is_not_a_branch_or_a_node(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _write(run / "restart-1/progress.ndjson", _events("run_started"))
    _write(run / "restart-1/build/status.json", '{"status": "success"}')
    assert [s.node_id for s in stage_dirs(run)] == []


# --- layout marker ------------------------------------------------------------------------------


def test_a_manifest_with_the_native_layout_key_marks_a_native_run(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _write(run / "manifest.json", json.dumps({"run_id": "r1", "layout": "rundoctor-native/1"}))
    assert discover(run).layout == "native"


def test_a_kilroy_manifest_is_the_kilroy_layout(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _write(run / "manifest.json", json.dumps({"run_id": "r1", "graph_name": "g"}))
    assert discover(run).layout == "kilroy"


def test_a_run_without_a_manifest_is_the_kilroy_layout(tmp_path: Path) -> None:
    assert discover(_run(tmp_path)).layout == "kilroy"


def test_the_native_marker_text_elsewhere_in_a_kilroy_manifest_does_not_make_it_native(
    tmp_path: Path,
) -> None:
    run = _run(tmp_path)
    goal = "port the pipeline to the rundoctor-native/1 layout"
    _write(run / "manifest.json", json.dumps({"run_id": "r1", "goal": goal, "layout": "x"}))
    assert discover(run).layout == "kilroy"


def test_the_native_layout_key_is_honoured_after_a_long_manifest_prefix(tmp_path: Path) -> None:
    run = _run(tmp_path)
    manifest = {"goal": "g" * 10_000, "layout": "rundoctor-native/1"}
    _write(run / "manifest.json", json.dumps(manifest))
    assert discover(run).layout == "native"


def test_a_torn_manifest_is_the_kilroy_layout(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _write(run / "manifest.json", '{"layout": "rundoctor-nat')
    assert discover(run).layout == "kilroy"


# --- stage directories --------------------------------------------------------------------------


def _status(path: Path, status: str = "success") -> Path:
    return _write(path / "status.json", json.dumps({"status": status}))


def test_the_canonical_status_comes_first_then_kilroy_attempt_archives_in_numeric_order(
    tmp_path: Path,
) -> None:
    node = tmp_path / "build"
    for k in (10, 2, 1):
        _status(node / f"attempt_{k}", "fail")
    _status(node)
    (stage,) = stage_dirs(tmp_path)
    assert stage.node_id == "build"
    rels = [p.relative_to(node).as_posix() for p in stage.status_files]
    assert rels == [
        "status.json",
        "attempt_1/status.json",
        "attempt_2/status.json",
        "attempt_10/status.json",
    ]


def test_visit_archives_are_status_files_of_the_node(tmp_path: Path) -> None:
    node = tmp_path / "verify"
    _status(node)
    _status(node / "visit_1", "fail")
    _status(node / "visit_2", "fail")
    (stage,) = stage_dirs(tmp_path)
    rels = [p.relative_to(node).as_posix() for p in stage.status_files]
    assert rels[0] == "status.json"
    assert sorted(rels[1:]) == ["visit_1/status.json", "visit_2/status.json"]
    assert rels.index("visit_1/status.json") < rels.index("visit_2/status.json")


def test_a_visit_s_own_attempt_archives_come_just_before_the_visit(tmp_path: Path) -> None:
    # Kilroy moves the whole node directory, attempt_<K>/ included, into visit_<N>/.
    node = tmp_path / "verify"
    _status(node)
    _status(node / "visit_1/attempt_1", "fail")
    _write(node / "visit_1/attempt_1/stdout.log", "first\n")
    _status(node / "visit_1", "fail")
    _status(node / "attempt_1", "fail")
    (stage,) = stage_dirs(tmp_path)
    rels = [p.relative_to(node).as_posix() for p in stage.status_files]
    assert rels[0] == "status.json"
    assert set(rels) == {
        "status.json",
        "visit_1/attempt_1/status.json",
        "visit_1/status.json",
        "attempt_1/status.json",
    }
    assert rels.index("visit_1/attempt_1/status.json") < rels.index("visit_1/status.json")
    assert node / "visit_1/attempt_1/stdout.log" in stage.stdout_logs


def test_executor_attempt_directories_are_status_files_of_the_node(tmp_path: Path) -> None:
    node = tmp_path / "build"
    _status(node / "attempt-2", "fail")
    _status(node / "attempt-1", "fail")
    _write(node / "attempt-1/stdout.log", "x\n")
    (stage,) = stage_dirs(tmp_path)
    rels = [p.relative_to(node).as_posix() for p in stage.status_files]
    assert rels == ["attempt-1/status.json", "attempt-2/status.json"]
    assert stage.stdout_logs == (node / "attempt-1/stdout.log",)


def test_a_node_with_only_archives_has_no_canonical_status(tmp_path: Path) -> None:
    node = tmp_path / "build"
    _status(node / "attempt_1", "fail")
    (stage,) = stage_dirs(tmp_path)
    assert stage.status_files == (node / "attempt_1/status.json",)


def test_a_directory_with_no_stage_files_is_not_a_stage(tmp_path: Path) -> None:
    _write(tmp_path / "notes/readme.txt", "hi")
    _status(tmp_path / "worktree")
    _status(tmp_path / "parallel")
    _write(tmp_path / "agent/prompt.md", "do it")
    assert [s.node_id for s in stage_dirs(tmp_path)] == ["agent"]


def test_stage_dirs_of_a_missing_directory_is_empty(tmp_path: Path) -> None:
    assert stage_dirs(tmp_path / "nope") == []


# --- stranded worktree status files -------------------------------------------------------------


def test_every_stranded_worktree_status_location_is_found(tmp_path: Path) -> None:
    run = _run(tmp_path, "r1")
    _status(run / "worktree")
    _status(run / "worktree/.ai")
    _status(run / "worktree/.ai/runs/r1")
    _status(run / "worktree/.ai/runs/another_run")
    found = discover(run).top.worktree_status_files("r1")
    rels = [p.relative_to(run).as_posix() for p in found]
    assert rels == [
        "worktree/status.json",
        "worktree/.ai/status.json",
        "worktree/.ai/runs/r1/status.json",
    ]


def test_a_branch_has_its_own_stranded_worktree_status(tmp_path: Path) -> None:
    run = _run(tmp_path, "r1")
    branch = run / "parallel/fan/01-a"
    _write(branch / "progress.ndjson", _events("stage_attempt_start"))
    _status(branch / "worktree/.ai/runs/r1")
    layout = discover(run)
    assert layout.top.worktree_status_files("r1") == []
    assert layout.scope("parallel/fan/01-a").worktree_status_files("r1") == [
        branch / "worktree/.ai/runs/r1/status.json"
    ]


# --- run ids ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "..",
        ".",
        "../x",
        "/etc",
        "a//b",
        "a/./b",
        "a/",
        "a\\b",
        "a\\x41",
        "a\x00b",
        "x/..",
        "a..b",
    ],
)
def test_a_run_id_that_could_leave_the_root_is_refused(bad: str) -> None:
    with pytest.raises(UnsafeRunId):
        check_run_id(bad)


@pytest.mark.parametrize(
    "good",
    ["01KH3DN4STSZ3MVKB58YY6RE57", "linear-test", "a.b", "run_1", "2026/12/05/r1", "r\\xfe"],
)
def test_an_ordinary_run_id_is_accepted(good: str) -> None:
    assert check_run_id(good) == good


def test_locate_run_refuses_an_unsafe_id_before_touching_the_disk(tmp_path: Path) -> None:
    with pytest.raises(UnsafeRunId):
        locate_run("../etc", [tmp_path / "missing"])


# --- locating runs ------------------------------------------------------------------------------


def test_locate_run_finds_the_run_under_the_first_root_that_has_it(tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    _run(second, "r1")
    _run(first, "r1")
    assert locate_run("r1", [tmp_path / "missing", first, second]) == first / "r1"


def test_an_unknown_run_id_suggests_close_ids(tmp_path: Path) -> None:
    _run(tmp_path, "01KH3DN4STSZ3MVKB58YY6RE57")
    _run(tmp_path, "unrelated")
    with pytest.raises(RunNotFound) as info:
        locate_run("01KH3DN4STSZ3MVKB58YY6RE75", [tmp_path])
    assert info.value.suggestions == ["01KH3DN4STSZ3MVKB58YY6RE57"]
    assert "did you mean '01KH3DN4STSZ3MVKB58YY6RE57'" in str(info.value)


def test_an_unknown_run_id_with_nothing_close_has_no_suggestion(tmp_path: Path) -> None:
    _run(tmp_path, "abc")
    with pytest.raises(RunNotFound) as info:
        locate_run("zzzzzzzzzzzz", [tmp_path])
    assert info.value.suggestions == []
    assert "did you mean" not in str(info.value)


def test_a_renamed_run_directory_is_found_by_the_run_id_its_manifest_names(
    tmp_path: Path,
) -> None:
    moved = _run(tmp_path, "fo1-copy")
    _write(moved / "manifest.json", json.dumps({"run_id": "fo1", "logs_root": "/elsewhere/fo1"}))
    _run(tmp_path, "other")
    assert locate_run("fo1", [tmp_path]) == moved


def test_two_directories_whose_manifests_name_one_run_are_named_not_guessed(
    tmp_path: Path,
) -> None:
    for name in ("fo1-a", "fo1-b"):
        _write(_run(tmp_path, name) / "manifest.json", json.dumps({"run_id": "fo1"}))
    with pytest.raises(RunNotFound) as info:
        locate_run("fo1", [tmp_path])
    assert "manifests of 2 run directories name that run" in str(info.value)
    assert "fo1-a" in str(info.value) and "fo1-b" in str(info.value)


def test_a_directory_without_run_files_is_not_a_run(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    _write(tmp_path / "notes/readme.txt", "x")
    with pytest.raises(RunNotFound):
        locate_run("empty", [tmp_path])
    assert list_run_dirs([tmp_path]) == []


def test_missing_roots_are_a_root_error(tmp_path: Path) -> None:
    with pytest.raises(RootError):
        locate_run("r1", [tmp_path / "a", tmp_path / "b"])
    with pytest.raises(RootError):
        list_run_dirs([tmp_path / "a"])


def test_a_file_given_as_a_root_is_a_root_error(tmp_path: Path) -> None:
    with pytest.raises(RootError):
        list_run_dirs([_write(tmp_path / "file", "x")])


def test_list_run_dirs_lists_runs_sorted_by_root_then_name(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for root, name in ((a, "z"), (a, "m"), (b, "c")):
        _run(root, name)
    assert list_run_dirs([a, b]) == [a / "m", a / "z", b / "c"]


# --- symlinks -----------------------------------------------------------------------------------


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory outside the root holding a complete-looking run and its pieces."""
    out = tmp_path / "outside"
    _run(out, "elsewhere", progress=_events("outside_event", "outside_event"))
    _write(out / "elsewhere/final.json", json.dumps({"status": "fail"}))
    _write(out / "branch/progress.ndjson", _events("outside_event"))
    _write(out / "parallel/fan/01-x/progress.ndjson", _events("outside_event"))
    return out


def test_a_symlinked_run_directory_is_not_a_run(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "linked").symlink_to(outside / "elsewhere", target_is_directory=True)
    assert list_run_dirs([root]) == []
    with pytest.raises(RunNotFound):
        locate_run("linked", [root])


def test_a_scan_beside_a_symlinked_run_diagnoses_only_the_real_run(
    tmp_path: Path, outside: Path
) -> None:
    root = tmp_path / "root"
    _run(root, "real", progress=_events("run_started", "run_completed"))
    (root / "linked").symlink_to(outside / "elsewhere", target_is_directory=True)
    result = scan(DoctorConfig(roots=(root,), now=1.78e9))
    assert [d.run_id for d in result.diagnoses] == ["real"]
    assert result.fleet["events"] == 2
    assert "outside_event" not in json.dumps(result.to_json())


def test_a_symlinked_progress_stream_is_not_read_but_the_run_still_diagnoses(
    tmp_path: Path, outside: Path
) -> None:
    root = tmp_path / "root"
    run = root / "r1"
    _write(run / "run.pid", DEAD_PID)
    _write(run / "final.json", json.dumps({"status": "success"}))
    (run / "progress.ndjson").symlink_to(outside / "elsewhere/progress.ndjson")
    result = diagnose("r1", DoctorConfig(roots=(root,), now=1.78e9)).to_json()
    assert result["state"] == "succeeded"
    assert result["facts"]["events"] == 0
    assert "outside_event" not in json.dumps(result)


def test_a_symlinked_parallel_directory_is_not_searched_for_branches(
    tmp_path: Path, outside: Path
) -> None:
    root = tmp_path / "root"
    run = _run(root, "r1", progress=_events("run_started", "run_completed"))
    (run / "parallel").symlink_to(outside / "parallel", target_is_directory=True)
    assert _scopes(run) == [""]
    result = diagnose("r1", DoctorConfig(roots=(root,), now=1.78e9)).to_json()
    assert result["facts"]["branches"] == []
    assert "outside_event" not in json.dumps(result)


def test_a_symlinked_branch_directory_is_not_a_scope(tmp_path: Path, outside: Path) -> None:
    run = _run(tmp_path / "root")
    (run / "parallel/fan").mkdir(parents=True)
    (run / "parallel/fan/01-a").symlink_to(outside / "branch", target_is_directory=True)
    assert _scopes(run) == [""]


def test_symlinked_documents_outside_the_run_are_not_read(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "root"
    run = root / "r1"
    _write(run / "progress.ndjson", _events("run_started"))
    secret = _write(outside / "secret.json", json.dumps({"status": "success", "pid": os.getpid()}))
    _write(outside / "pid", str(os.getpid()))
    for name in ("final.json", "checkpoint.json", "live.json", "run_config.json", "run.lock.json"):
        (run / name).symlink_to(secret)
    (run / "run.pid").symlink_to(outside / "pid")
    result = diagnose("r1", DoctorConfig(roots=(root,), now=1.78e9)).to_json()
    assert result["facts"]["final_json"] is False
    assert result["facts"]["owner_pid"] is None
    assert result["state"] != "succeeded"


def test_a_symlinked_worktree_is_not_searched_for_stranded_status(
    tmp_path: Path, outside: Path
) -> None:
    run = _run(tmp_path / "root", "r1")
    _status(outside / "wt")
    _status(outside / "wt/.ai/runs/r1")
    (run / "worktree").symlink_to(outside / "wt", target_is_directory=True)
    assert discover(run).top.worktree_status_files("r1") == []


def test_a_symlinked_stage_status_is_not_a_status_file(tmp_path: Path, outside: Path) -> None:
    secret = _status(outside / "node", "fail")
    (tmp_path / "build").mkdir()
    (tmp_path / "build/status.json").symlink_to(secret)
    _write(tmp_path / "build/tool_invocation.json", "{}")
    (stage,) = stage_dirs(tmp_path)
    assert stage.status_files == ()


def test_the_test_process_itself_counts_as_a_live_owner() -> None:
    # The symlink tests above rely on a symlinked run.pid naming a live process being ignored.
    assert process_alive(os.getpid()) is True


def test_a_run_with_a_branch_inside_a_restart_diagnoses(tmp_path: Path) -> None:
    run = _run(tmp_path, "r1", progress=_events("loop_restart"))
    _write(run / "restart-1/progress.ndjson", _events("stage_attempt_start", node="fan"))
    _write(run / "restart-1/final.json", json.dumps({"status": "success"}))
    _write(run / "restart-1/parallel/fan/pass1/01-a/progress.ndjson", _events("x", node="a"))
    result = diagnose("r1", DoctorConfig(roots=(tmp_path,), now=1.78e9)).to_json()
    assert result["state"] == "succeeded"
    assert [b["scope"] for b in result["facts"]["branches"]] == [
        "restart-1/parallel/fan/pass1/01-a"
    ]


@pytest.mark.parametrize(
    ("restart", "branch"),
    [
        ("", "parallel/fan/01-a"),
        ("", "parallel/fan/pass1/01-a"),
        ("restart-1/", "parallel/fan/01-a"),
        ("restart-1/", "parallel/fan/pass1/01-a"),
    ],
)
def test_an_open_fan_out_is_the_current_node_in_every_branch_layout(
    tmp_path: Path, restart: str, branch: str
) -> None:
    run = _run(tmp_path, "r1", progress=_events("loop_restart") if restart else "")
    top = _events("stage_attempt_start", node="fan") + json.dumps(
        {"event": "early_termination", "node_id": "review", "ts": "2026-04-28T10:00:05Z"}
    )
    _write(run / f"{restart}progress.ndjson", top + "\n")
    _write(run / restart / branch / "progress.ndjson", _events("stage_attempt_start", node="x"))
    facts = diagnose("r1", DoctorConfig(roots=(tmp_path,), now=1.78e9)).facts
    assert facts["current_node"] == "fan"


def test_the_branches_of_a_fanout_nested_in_a_branch_are_scopes(tmp_path: Path) -> None:
    # Kilroy runs a branch's own fan-out under the branch: <branch>/parallel/<node>/passN/…
    run = _run(tmp_path)
    _write(run / "parallel/par/pass1/01-a/progress.ndjson", _events("stage_attempt_start"))
    _write(run / "parallel/par/pass1/01-a/parallel/in/pass1/01-x/progress.ndjson", _events("y"))
    _write(run / "parallel/par/pass1/01-a/parallel/in/pass1/02-z/progress.ndjson", _events("y"))
    _write(run / "parallel/par/pass1/02-b/progress.ndjson", _events("stage_attempt_start"))
    assert _scopes(run) == [
        "",
        "parallel/par/pass1/01-a",
        "parallel/par/pass1/01-a/parallel/in/pass1/01-x",
        "parallel/par/pass1/01-a/parallel/in/pass1/02-z",
        "parallel/par/pass1/02-b",
    ]


# --- what a scan of several roots, or of a root of groups, leaves out ---------------------------


def test_a_run_whose_id_an_earlier_root_has_is_named_by_the_scan_not_dropped_silently(
    tmp_path: Path,
) -> None:
    for root in ("a", "b"):
        _run(tmp_path / root, "r1")
    _run(tmp_path / "b", "r2")
    result = scan(DoctorConfig(roots=(tmp_path / "a", tmp_path / "b"), now=1_800_000_000.0))
    assert [d.path for d in result.diagnoses] == [
        str(tmp_path / "a" / "r1"),
        str(tmp_path / "b" / "r2"),
    ]
    assert result.fleet["root_notes"] == [
        f"1 run under {tmp_path / 'b'} not scanned: r1 is also under {tmp_path / 'a'}, which "
        f"comes first (as for diagnose); scan --root {tmp_path / 'b'} alone to see it, or "
        f"diagnose it: doctor diagnose --run-id r1 --root {tmp_path / 'b'}"
    ]


def test_one_root_given_twice_scans_each_run_once_and_says_nothing(tmp_path: Path) -> None:
    _run(tmp_path / "a", "r1")
    result = scan(DoctorConfig(roots=(tmp_path / "a", tmp_path / "a"), now=1_800_000_000.0))
    assert len(result.diagnoses) == 1
    assert "root_notes" not in result.fleet


def test_a_root_whose_runs_are_one_level_down_scans_them(tmp_path: Path) -> None:
    # Runs kept in groups are runs of the root (tests/doctor/test_discovery.py for the rest).
    _run(tmp_path / "runs" / "2026-12", "r1")
    _run(tmp_path / "runs" / "2026-12", "r2")
    (tmp_path / "runs" / "empty").mkdir()
    result = scan(DoctorConfig(roots=(tmp_path / "runs",), now=1_800_000_000.0))
    assert [d.run_id for d in result.diagnoses] == ["r1", "r2"]
    assert "root_notes" not in result.fleet
