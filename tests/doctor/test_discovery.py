"""``doctor._discovery``: runs kept in groups below a root, at any depth the walk looks, are
scanned and found as runs kept directly under it; what the walk cannot look into is said.

The runs are real Kilroy runs (``fixtures/kilroy/runs``) copied into nested layouts.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from doctor import DoctorConfig, RunNotFound, UnsafeRunId, diagnose, scan
from doctor import _discovery as discovery
from doctor._discovery import MAX_DEPTH, RootWalk, list_run_dirs, locate_run, walk_notes
from doctor._render import render_scan
from tests.helpers import REPO, as_a_user, run_doctor

RUNS = REPO / "fixtures" / "kilroy" / "runs"
NAMES = sorted(p.parent.name for p in RUNS.glob("*/expected.json"))
NOW = time.time()
#: Where the corpus goes in a mixed root: directly under it, and 1 to 4 groups down.
GROUPS = ("", "2026", "proj/team", "2026/12/05", "archive/2026/12/05")


def _copy(name: str, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(RUNS / name, dest, symlinks=True)
    return dest


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The recorded runs twice: flat under one root, grouped up to 4 deep under another."""
    base = tmp_path_factory.mktemp("corpus")
    for i, name in enumerate(NAMES):
        _copy(name, base / "flat" / name)
        _copy(name, base / "nested" / GROUPS[i % len(GROUPS)] / name)
    return base / "flat", base / "nested"


def _config(*roots: Path, **kw: Any) -> DoctorConfig:
    return DoctorConfig(roots=roots, now=NOW, **kw)


def _seen(result: Any) -> dict[str, Any]:
    """Each run's state and findings, and the fleet's findings: what a layout must not change."""
    runs = {
        d.run_id: (
            d.state,
            [(f.code, f.severity, f.scope, f.node_id, f.summary) for f in d.findings],
        )
        for d in result.diagnoses
    }
    return {"runs": runs, "fleet": sorted((f.code, f.summary) for f in result.findings)}


def _notes(result: Any) -> list[str]:
    return list(result.fleet.get("root_notes", []))


def _rendered(result: Any) -> str:
    out = io.StringIO()
    render_scan(Console(file=out, width=300), result, verbose=False)
    return out.getvalue()


# --- a fleet grouped in directories ---------------------------------------------------------------


def test_real_runs_grouped_up_to_four_deep_are_scanned_as_when_flat(
    corpus: tuple[Path, Path],
) -> None:
    flat, nested = corpus
    flat_scan, nested_scan = scan(_config(flat)), scan(_config(nested))
    assert sorted(d.run_id for d in nested_scan.diagnoses) == NAMES
    assert _seen(nested_scan) == _seen(flat_scan)
    assert _notes(nested_scan) == []
    where = {d.run_id: Path(d.path) for d in nested_scan.diagnoses}
    assert where[NAMES[3]] == (nested / "2026/12/05" / NAMES[3]).resolve()


def test_a_nested_run_is_diagnosed_by_its_name_or_its_path_under_the_root(
    corpus: tuple[Path, Path],
) -> None:
    _, nested = corpus
    name = NAMES[4]  # archive/2026/12/05/<name>
    by_name = diagnose(name, _config(nested))
    by_path = diagnose(f"archive/2026/12/05/{name}", _config(nested))
    assert by_name.path == by_path.path == str((nested / "archive/2026/12/05" / name).resolve())
    assert by_name.to_json() == by_path.to_json()


def test_the_cli_diagnoses_a_nested_run_by_its_path_under_the_root(
    corpus: tuple[Path, Path],
) -> None:
    _, nested = corpus
    name = NAMES[2]  # proj/team/<name>
    result = run_doctor("diagnose", "--run-id", f"proj/team/{name}", "--root", nested, "--json")
    assert result.returncode in (0, 1), result.stderr
    assert json.loads(result.stdout)["path"] == str((nested / "proj/team" / name).resolve())


@pytest.mark.parametrize("bad", ["../nested/2026", "2026/../2026", "/etc", "2026//x"])
def test_a_path_that_could_leave_the_root_is_refused(corpus: tuple[Path, Path], bad: str) -> None:
    _, nested = corpus
    with pytest.raises(UnsafeRunId):
        locate_run(bad, [nested])


def test_did_you_mean_names_nested_runs(corpus: tuple[Path, Path]) -> None:
    _, nested = corpus
    name = NAMES[3]
    with pytest.raises(RunNotFound) as info:
        diagnose(name[:-1] + "X", _config(nested))
    assert name in info.value.suggestions
    with pytest.raises(RunNotFound) as info:
        diagnose(f"2026/12/5/{name}", _config(nested))
    assert f"2026/12/05/{name}" in info.value.suggestions


def test_executor_runs_written_into_groups_are_scanned_beside_kilroy_runs(tmp_path: Path) -> None:
    graph = REPO / "fixtures" / "pipelines" / "tool_simple.dot"
    written = []
    for group in ("team-a/2026-12", "team-b"):
        done = run_doctor("run", graph, "--root", tmp_path / group, "--json", timeout=120)
        assert done.returncode == 0, done.stderr
        written.append(json.loads(done.stdout))
    kilroy = _copy(NAMES[0], tmp_path / "team-b" / "kilroy" / NAMES[0])
    result = scan(_config(tmp_path))
    assert sorted((d.path, d.layout) for d in result.diagnoses) == sorted(
        [*((w["path"], "native") for w in written), (str(kilroy.resolve()), "kilroy")]
    )
    assert diagnose(written[0]["run_id"], _config(tmp_path)).path == written[0]["path"]


def test_a_nested_run_renamed_is_found_by_the_run_id_its_manifest_names(tmp_path: Path) -> None:
    name = NAMES[0]
    moved = _copy(name, tmp_path / "proj" / "2026-12" / f"{name}-copy")
    assert diagnose(name, _config(tmp_path)).path == str(moved.resolve())


def test_a_run_kept_inside_another_run_is_not_a_run_of_its_own(tmp_path: Path) -> None:
    # fanout_nested has branch directories with their own progress streams, and worktrees.
    outer = _copy("fanout_nested", tmp_path / "team" / "fanout_nested")
    _copy("fanout_all_ok", outer / "archive" / "fanout_all_ok")
    _copy("fanout_one_fails", outer / "node" / "attempt-1" / "fanout_one_fails")
    result = scan(_config(tmp_path))
    assert [d.run_id for d in result.diagnoses] == ["fanout_nested"]
    assert _notes(result) == []
    with pytest.raises(RunNotFound):
        locate_run("fanout_all_ok", [tmp_path])
    with pytest.raises(RunNotFound):
        locate_run("team/fanout_nested/archive/fanout_all_ok", [tmp_path])


def test_hidden_directories_and_the_scan_cache_under_a_root_are_not_walked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _copy(NAMES[0], tmp_path / "g" / NAMES[0])
    _copy(NAMES[1], tmp_path / ".trash" / "old" / NAMES[1])
    config = _config(tmp_path, cache_dir=tmp_path / "cache")
    scan(config)  # fills the cache: cache/events/run=<key>/…, cache/runs/<key>.json
    assert (tmp_path / "cache" / "events").is_dir()
    monkeypatch.setattr(discovery, "MAX_DEPTH", 2)  # the cache's partitions are 3 deep
    again = scan(config)
    assert [d.run_id for d in again.diagnoses] == [NAMES[0]]
    assert _notes(again) == []


def test_runs_with_names_that_are_not_utf8_are_found_in_groups(tmp_path: Path) -> None:
    group = os.fsdecode(b"grp\xff")
    run = os.fsdecode(b"run\xfe")
    _copy(NAMES[0], tmp_path / group / run)
    result = scan(_config(tmp_path))
    assert [d.run_id for d in result.diagnoses] == ["run\\xfe"]
    assert [p.name for p in list_run_dirs([tmp_path])] == [run]


# --- the same name in two groups ------------------------------------------------------------------


def test_the_same_name_in_two_groups_is_scanned_once_and_the_other_is_named(tmp_path: Path) -> None:
    first = _copy("fanout_all_ok", tmp_path / "a" / "dup")
    second = _copy("fanout_one_fails", tmp_path / "b" / "2026" / "dup")
    result = scan(_config(tmp_path))
    assert [d.path for d in result.diagnoses] == [str(first.resolve())]
    assert _notes(result) == [
        f"1 run under {second.parent} not scanned: dup is also under {first.parent}, which "
        f"comes first (as for diagnose); scan --root {second.parent} alone to see it, or "
        f"diagnose it: doctor diagnose --run-id b/2026/dup --root {tmp_path}"
    ]
    assert "roots: 1 run under" in _rendered(result)
    # diagnose picks the run the scan picks; the other is read by its path, or a narrower root
    assert diagnose("dup", _config(tmp_path)).path == str(first.resolve())
    assert diagnose("b/2026/dup", _config(tmp_path)).path == str(second.resolve())
    (alone,) = scan(_config(second.parent)).diagnoses
    assert alone.path == str(second.resolve())


def test_a_shallower_run_of_a_name_comes_before_a_deeper_one(tmp_path: Path) -> None:
    shallow = _copy("fanout_all_ok", tmp_path / "zz" / "dup")
    _copy("fanout_one_fails", tmp_path / "aa" / "x" / "dup")
    result = scan(_config(tmp_path))
    assert [d.path for d in result.diagnoses] == [str(shallow.resolve())]
    assert diagnose("dup", _config(tmp_path)).path == str(shallow.resolve())


def test_one_group_given_as_a_root_beside_its_parent_is_scanned_once_silently(
    tmp_path: Path,
) -> None:
    _copy(NAMES[0], tmp_path / "g" / NAMES[0])
    result = scan(_config(tmp_path, tmp_path / "g"))
    assert [d.run_id for d in result.diagnoses] == [NAMES[0]]
    assert _notes(result) == []


# --- the walk's bounds ----------------------------------------------------------------------------


def test_runs_below_the_depth_bound_are_named_not_dropped_silently(tmp_path: Path) -> None:
    deepest = tmp_path.joinpath(*[f"l{i}" for i in range(1, MAX_DEPTH)])
    _copy("fanout_all_ok", deepest / "found")
    _copy("fanout_one_fails", deepest / "lower" / "missed")
    result = scan(_config(tmp_path))
    assert [d.run_id for d in result.diagnoses] == ["found"]
    assert _notes(result) == [
        f"1 directory {MAX_DEPTH} levels under {tmp_path} not looked into (runs are looked for "
        f"at most {MAX_DEPTH} levels down): {deepest / 'lower'}; pass one as --root to scan "
        "the runs in it"
    ]
    assert "roots: 1 directory 5 levels under" in _rendered(result)
    (missed,) = scan(_config(deepest / "lower")).diagnoses
    assert missed.run_id == "missed"
    with pytest.raises(RunNotFound) as info:
        diagnose("missed", _config(tmp_path))
    assert "1 directory was not looked into, and `doctor scan` names them" in str(info.value)
    deep = "/".join(deepest.relative_to(tmp_path).parts)
    assert diagnose(f"{deep}/lower/missed", _config(tmp_path)).run_id == "missed"


def test_a_walk_stopped_by_the_listing_bound_says_where_it_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for group in ("a", "b", "c", "d"):
        _copy("fanout_all_ok", tmp_path / group / f"run-{group}")
    monkeypatch.setattr(discovery, "MAX_LISTED", 3)  # the root, a and b
    result = scan(_config(tmp_path))
    assert [d.run_id for d in result.diagnoses] == ["run-a", "run-b"]
    assert _notes(result) == [
        f"the doctor stopped after listing 3 directories under {tmp_path}; 2 directories not "
        f"looked into, where runs may be: {tmp_path / 'c'}, {tmp_path / 'd'}; pass a narrower "
        "--root"
    ]


# --- symlinks and unreadable groups ---------------------------------------------------------------


def test_one_symlink_loop_is_said_in_the_singular() -> None:
    # "1 symlink under R never resolve" read as a typo in the scan's root notes.
    walk = RootWalk(Path("/r"), (), links=((Path("/r/loop"), None),))
    assert walk_notes(walk, ["/r"]) == [
        "1 symlink under /r never resolves (a symlink loop), not followed: /r/loop"
    ]


def test_a_directory_whose_only_run_file_is_no_regular_file_is_said_not_passed_over(
    tmp_path: Path,
) -> None:
    # Before: a directory whose progress.ndjson is a FIFO (or whose final.json is a symlink)
    # was neither a run nor a note: the scan said nothing of it (found by fleet9).
    root = tmp_path / "root"
    _copy("fanout_all_ok", root / "real")
    (root / "fifo").mkdir()
    os.mkfifo(root / "fifo" / "progress.ndjson")
    (root / "g" / "linked").mkdir(parents=True)
    (root / "g" / "linked" / "final.json").symlink_to(tmp_path / "elsewhere.json")
    _copy("fanout_one_fails", root / "fifo" / "below")  # still walked into: runs may be below
    result = run_doctor("scan", "--root", root, "--json", timeout=120)
    assert "Traceback" not in result.stderr and result.returncode in (0, 1), result.stderr
    data = json.loads(result.stdout)
    assert sorted(r["run_id"] for r in data["runs"]) == ["below", "real"]
    assert data["fleet"]["root_notes"] == [
        f"2 directories under {root} would be runs but for a run's file that is not a regular "
        f"file (fifo/progress.ndjson is a FIFO), not read as runs: {root / 'fifo'}, "
        f"{root / 'g' / 'linked'}"
    ]


def test_symlink_loops_are_never_followed_and_say_so(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    _copy("fanout_all_ok", root / "g" / "real")
    _copy("fanout_one_fails", outside / "elsewhere")
    (root / "g" / "up").symlink_to(root, target_is_directory=True)  # back to the root
    (root / "g" / "ping").symlink_to(root / "g" / "pong")  # a loop that never resolves
    (root / "g" / "pong").symlink_to(root / "g" / "ping")
    (root / "latest").symlink_to(root / "g" / "real", target_is_directory=True)
    (root / "out").symlink_to(outside, target_is_directory=True)
    result = run_doctor("scan", "--root", root, "--json", timeout=120)
    assert "Traceback" not in result.stderr and result.returncode in (0, 1), result.stderr
    data = json.loads(result.stdout)
    assert [r["run_id"] for r in data["runs"]] == ["real"]
    g = root / "g"
    assert data["fleet"]["root_notes"] == [
        f"2 symlinks under {root} never resolve (a symlink loop), not followed: "
        f"{g / 'ping'}, {g / 'pong'}",
        f"1 symlink under {root} to directories outside the roots not followed (the doctor "
        f"never follows symlinks): {root / 'out'}; pass a target as --root to scan the runs "
        "there",
    ]
    text = run_doctor("scan", "--root", root, timeout=120)
    assert "roots: 2 symlinks under" in " ".join(text.stdout.split())


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[Path]:
    """A root with a readable group and a group nobody but its owner may list (mode 000),
    and a mount point's ``lost+found`` (mode 700, its owner another user's)."""
    root = tmp_path / "root"
    _copy("fanout_all_ok", root / "open" / "seen")
    _copy("fanout_one_fails", root / "locked" / "hidden-run")
    for name in ("locked", "lost+found"):
        (root / name).mkdir(exist_ok=True)
        (root / name).chmod(0)
    try:
        yield root
    finally:
        for name in ("locked", "lost+found"):
            (root / name).chmod(0o755)


def test_an_unreadable_group_is_a_note_not_a_traceback(locked: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNDOCTOR_")}
    result = subprocess.run(
        [*as_a_user(), sys.executable, "-m", "doctor", "scan", "--root", str(locked), "--json"],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(REPO)},
        cwd=REPO,
        check=False,
        timeout=120,
    )
    assert "Traceback" not in result.stderr and result.returncode in (0, 1), result.stderr
    data = json.loads(result.stdout)
    assert [r["run_id"] for r in data["runs"]] == ["seen"]
    assert data["fleet"]["root_notes"] == [
        f"1 directory under {locked} could not be listed (Permission denied); runs in it are "
        f"not scanned: {locked / 'locked'}"
    ]


def test_a_nested_symlink_named_as_the_run_says_it_is_a_symlink(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    target = _copy("fanout_all_ok", outside / "fanout_all_ok")
    (root / "team").mkdir(parents=True)
    (root / "team" / "linked").symlink_to(target, target_is_directory=True)
    with pytest.raises(RunNotFound) as info:
        diagnose("linked", _config(root))
    assert f"{str(root / 'team' / 'linked')!r} is a symlink" in str(info.value)
    assert f"--run-id {target}" in str(info.value)


def test_a_run_removed_while_the_scan_reads_the_fleet_is_left_out_and_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A retention job's `rm -rf` of a run while a scan read the fleet: the run was diagnosed
    # from what was left (found by fleet11: 1,000 of 3,000 runs removed during a scan, 490
    # runs that had succeeded or failed came out orphaned with a missing_final error, 232
    # with an unreadable_artifact error advising to restore their streams).
    from doctor import _scan_batch
    from fixtures.fleet import build_fleet

    root = build_fleet(tmp_path / "fleet", runs=3, events_per_run=20)
    monkeypatch.setattr(_scan_batch, "BATCH_RUNS", 1)  # a batch a run, in this process
    cold = {d.run_id: d.state for d in scan(DoctorConfig(roots=(root,))).diagnoses}
    assert cold == dict.fromkeys(["fleet-0000", "fleet-0001", "fleet-0002"], "succeeded")

    def removed_once_the_first_is_read(done: int, total: int) -> None:
        if done == 1 and (root / "fleet-0001").exists():
            shutil.rmtree(root / "fleet-0001")  # before its batch reads it

    result = scan(DoctorConfig(roots=(root,)), progress=removed_once_the_first_is_read)
    assert {d.run_id: d.state for d in result.diagnoses} == {
        "fleet-0000": "succeeded",
        "fleet-0002": "succeeded",
    }
    assert result.fleet["runs"] == 2 and result.fleet["by_state"] == {"succeeded": 2}
    assert result.fleet["root_notes"] == [
        f"1 run removed while the scan read it, left out: {root / 'fleet-0001'}"
    ]
