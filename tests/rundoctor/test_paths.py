"""Directories made on the way to a file the tools write: any depth the file system allows."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from rundoctor.paths import make_dirs
from tests.helpers import REPO, run_doctor

HEALTHY_ROOT = REPO / "fixtures" / "cases" / "healthy_tool_run" / "run"
TOOL_GRAPH = REPO / "fixtures" / "pipelines" / "tool_simple.dot"
#: 1,100 missing directories: past Python's recursion limit, well within PATH_MAX (4,096).
DEPTH = 1100


def _deep(base: Path) -> Path:
    return base.joinpath(*["d"] * DEPTH)


def _remove_deep(top: Path) -> None:
    """Remove ``top`` with ``rm -rf`` (its walk does not recurse): shutil.rmtree recurses
    too, and pytest's own clean-up of an old tmp_path would end a later session in
    RecursionError."""
    subprocess.run(["rm", "-rf", "--", str(top)], check=True)


@pytest.mark.parametrize(
    "command",
    [
        ("report", "--run-id", "healthy01", "--root", HEALTHY_ROOT, "--out", "{deep}/r.md"),
        ("metrics", "--root", HEALTHY_ROOT, "--out", "{deep}/fleet.prom"),
        ("run", TOOL_GRAPH, "--root", "{deep}/runs", "--json"),
        ("enqueue", TOOL_GRAPH, "--db", "{deep}/q.db"),
    ],
    ids=["report", "metrics", "run", "enqueue"],
)
def test_a_command_makes_a_thousand_missing_directories_on_its_way(
    tmp_path: Path, command: tuple[str | Path, ...]
) -> None:
    # Before: Path.mkdir(parents=True) recursed once per missing directory: RecursionError,
    # "internal error (a bug in rundoctor)", exit 70 (report, metrics, run, enqueue, worker,
    # watch --state, scan with RUNDOCTOR_CACHE, chaos run --out).
    deep = _deep(Path("deep"))
    args = [str(a).format(deep=deep) if isinstance(a, str) else a for a in command]
    try:
        done = run_doctor(*args, cwd=tmp_path, env={"XDG_STATE_HOME": str(tmp_path / "state")})
        made = (tmp_path / deep).is_dir()
    finally:
        if (tmp_path / "deep").exists():
            _remove_deep(tmp_path / "deep")
    assert made
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    if command[0] == "enqueue":
        # SQLite's own path limit (512 bytes) refuses the file, in one line, once the
        # directories were made.
        assert done.returncode == 2 and done.stderr.startswith("error: SQLite queue")
    else:
        assert done.returncode == 0, done.stderr
    if command[0] == "run":
        assert json.loads(done.stdout)["status"] == "success"


def test_make_dirs_raises_what_path_mkdir_raises(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError):
        make_dirs(tmp_path / "file" / "below")
    with pytest.raises(FileExistsError):
        make_dirs(tmp_path / "file")
    make_dirs(tmp_path / "a" / "b")
    with pytest.raises(FileExistsError):
        make_dirs(tmp_path / "a" / "b", exist_ok=False)
    make_dirs(tmp_path / "a" / "b" / "c", exist_ok=False)  # its parents may exist
    assert (tmp_path / "a" / "b" / "c").is_dir()


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (("tickets", "--db", "~no-such-user-here/q.db"), {}),
        (("diagnose", "--run-id", "~no-such-user-here/r1", "--root", "."), {}),
        (("scan", "--root", "."), {"RUNDOCTOR_CONFIG": "~no-such-user-here/config.toml"}),
        (("scan", "--root", "."), {"XDG_CONFIG_HOME": "~no-such-user-here"}),
    ],
    ids=["tickets --db", "diagnose --run-id", "RUNDOCTOR_CONFIG", "XDG_CONFIG_HOME"],
)
def test_a_tilde_naming_no_user_is_left_as_it_is_as_a_shell_does(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str]
) -> None:
    # Before: Path.expanduser raised RuntimeError("Could not determine home directory."):
    # "internal error (a bug in rundoctor)", exit 70.
    done = run_doctor(*args, cwd=tmp_path, env={"XDG_STATE_HOME": str(tmp_path), **env})
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert done.returncode in (0, 2), done.stderr
    if done.returncode == 2:
        assert "~no-such-user-here" in done.stderr and len(done.stderr.splitlines()) == 1
