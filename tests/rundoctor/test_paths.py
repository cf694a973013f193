"""Directories made on the way to a file the tools write: any depth the file system allows."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from rundoctor.paths import make_dirs, read_regular_bytes, remove_tree
from tests.helpers import REPO, as_a_user, run_doctor

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


def test_a_tilde_in_every_path_option_and_variable_is_the_home_directory(tmp_path: Path) -> None:
    # The README: "A path given as `~/…` (an option, a variable, the config file) is expanded
    # as a shell does". A shell expands neither `--root=~/runs` nor a quoted or crontab
    # `RUNDOCTOR_ROOTS=~/runs`; the doctor took them literally: `--root`, RUNDOCTOR_ROOTS were
    # "does not exist", and RUNDOCTOR_CACHE, `--out`, `--state`, `--db` of a new queue,
    # `run --root` and RUNDOCTOR_ROOT made a directory named `~` where the command ran.
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    cwd.mkdir()
    shutil.copytree(HEALTHY_ROOT, home / "runs")
    shutil.copy(TOOL_GRAPH, home / "tool.dot")
    (home / "c.toml").write_text('[doctor]\ndb = "~/q.db"\n')  # a str field, not a Path
    env = {"HOME": str(home), "XDG_STATE_HOME": str(tmp_path / "state")}
    commands: list[tuple[dict[str, str], tuple[str, ...]]] = [
        ({}, ("scan", "--root=~/runs")),
        ({"RUNDOCTOR_ROOTS": "~/runs"}, ("diagnose", "--run-id", "healthy01")),
        ({"RUNDOCTOR_ROOTS": "~/runs", "RUNDOCTOR_CACHE": "~/cache"}, ("scan",)),
        ({}, ("report", "--run-id", "healthy01", "--root", "~/runs", "--out", "~/out/r.md")),
        ({}, ("metrics", "--root", "~/runs", "--out", "~/out/m.prom")),
        ({}, ("watch", "--once", "--root", "~/runs", "--state", "~/out/w.json")),
        ({}, ("enqueue", "~/tool.dot", "--db", "~/q.db")),
        ({"RUNDOCTOR_DB": "~/q.db"}, ("tickets",)),
        ({"RUNDOCTOR_ROOT": "~/worker-runs"}, ("worker", "--db", "~/q.db", "--once")),
        ({}, ("scan", "--db=~/q.db", "--root", "~/worker-runs")),
        ({"RUNDOCTOR_CONFIG": str(home / "c.toml")}, ("scan", "--root", "~/worker-runs")),
        ({}, ("run", "~/tool.dot", "--root", "~/run-runs")),
    ]
    for more, args in commands:
        done = run_doctor(*args, cwd=cwd, env={**env, **more})
        assert done.returncode == 0, (args, more, done.stderr)
    assert not list(cwd.iterdir())  # no `~` directory, nothing else
    for made in ("cache/runs", "out/r.md", "out/m.prom", "out/w.json", "q.db", "run-runs"):
        assert (home / made).exists(), made
    assert len(list((home / "worker-runs").iterdir())) == 1


def _nest(top: Path, depth: int) -> None:
    """``top/d/d/…/d/f``, ``depth`` directories below ``top``, each holding a file, made by
    names relative to an open directory: the deepest paths are past PATH_MAX (4,096)."""
    make_dirs(top)
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.close(os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
            os.mkdir("d", dir_fd=fd)
            fd, old = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd), fd
            os.close(old)
    finally:
        os.close(fd)


def test_remove_tree_removes_a_tree_past_the_recursion_and_path_limits(tmp_path: Path) -> None:
    # shutil.rmtree (Python 3.11) recursed once per level: RecursionError at about 1,000.
    top = tmp_path / "top"
    try:
        _nest(top, 2500)
        (top / "wide").mkdir()
        for i in range(50):
            (top / "wide" / f"sub{i}").mkdir()
            (top / "wide" / f"sub{i}" / "f").write_text("x")
        remove_tree(top)
        assert not top.exists()
    finally:
        _remove_deep(top)


def test_remove_tree_removes_a_symlink_never_what_it_points_at(tmp_path: Path) -> None:
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "precious").write_text("x")
    top = tmp_path / "top"
    (top / "a").mkdir(parents=True)
    (top / "a" / "out").symlink_to(kept)
    (tmp_path / "link").symlink_to(kept)
    remove_tree(tmp_path / "link")
    remove_tree(top)
    remove_tree(tmp_path / "missing")  # nothing to remove
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]
    assert (kept / "precious").read_text() == "x"


_REMOVE_AS_USER = """
import sys
from pathlib import Path
from rundoctor.paths import remove_tree
top = Path(sys.argv[1])
try:
    remove_tree(top)
except PermissionError:
    print("refused")
remove_tree(top, ignore_errors=True)  # removes what it can, raises nothing
print(sorted(p.name for p in top.iterdir()))
"""


def test_remove_tree_says_what_it_could_not_remove_unless_told_to_go_on() -> None:
    # As a user the permissions apply to: root removes anything, so without the capabilities
    # that let it (tests.helpers.as_a_user).
    as_other = as_a_user()
    base = Path(tempfile.mkdtemp(prefix="rundoctor-rm-"))
    top = base / "top"
    try:
        base.chmod(0o755)
        (top / "locked" / "inner").mkdir(parents=True)
        (top / "free").mkdir()
        (top / "free" / "f").write_text("x")
        (top / "locked").chmod(0o500)
        done = subprocess.run(
            [*as_other, sys.executable, "-c", _REMOVE_AS_USER, str(top)],
            capture_output=True, text=True, timeout=60, cwd=REPO,
        )  # fmt: skip
    finally:
        (top / "locked").chmod(0o700)
    remove_tree(base)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["refused", "['locked']"]


@pytest.mark.parametrize("left", ["deep", "symlink"])
def test_chaos_run_clears_a_previous_campaign_however_deep_never_through_a_symlink(
    tmp_path: Path, left: str
) -> None:
    # Before: prepare_out's shutil.rmtree of the old campaign/ ended `chaos run` with
    # "internal error … RecursionError", exit 70; and a symlink named report.md to a
    # directory was "internal error … Cannot call rmtree on a symbolic link", exit 70.
    out = tmp_path / "out"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious").write_text("x")
    try:
        if left == "deep":
            _nest(out / "campaign" / "runs", DEPTH)
        else:
            out.mkdir()
            (out / "report.md").symlink_to(elsewhere)
        # What `chaos run` does once every input is accepted (a refused --db now leaves
        # --out as it was, so the clearing is driven here, without running a campaign).
        from chaos._collect import prepare_out

        prepare_out(out)
        cleared = sorted(p.name for p in out.iterdir())
        runs = [p.name for p in (out / "campaign" / "runs").iterdir()]
    finally:
        _remove_deep(out)
    assert cleared == ["campaign"] and runs == []
    assert (elsewhere / "precious").read_text() == "x"


def _without_a_home(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """``doctor ARGS`` with no HOME, as a user id with no passwd entry (``docker run -u
    54321``): a user namespace maps it, so the interpreter stays readable wherever it is."""
    unshare = shutil.which("unshare")
    probe = [unshare or "unshare", "--user", "--map-user=54321", "--map-group=54321", "true"]
    if unshare is None or subprocess.run(probe, capture_output=True).returncode != 0:
        pytest.skip("cannot be a user id with no passwd entry here (unshare --user refused)")
    env = {k: v for k, v in os.environ.items() if k != "HOME" and not k.startswith("XDG_")}
    env = {k: v for k, v in env.items() if not k.startswith("RUNDOCTOR_")}
    return subprocess.run(
        [*probe[:-1], sys.executable, "-m", "doctor", *map(str, args)],
        capture_output=True, text=True, timeout=120, cwd=REPO, env=env,
    )  # fmt: skip


def test_with_no_home_a_default_location_is_one_line_and_given_paths_work(
    tmp_path: Path,
) -> None:
    # Before: `doctor worker --once` with HOME unset as a user id with no passwd entry was
    # "internal error … RuntimeError: Could not determine home directory.", exit 70, and so
    # were enqueue, tickets, scan and watch.
    for args in (("worker", "--once"), ("tickets",), ("scan",)):
        done = _without_a_home(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.startswith("error: no home directory: HOME is unset and user id "), (
            done.stderr
        )
        assert done.stderr.count("\n") == 1
    runs = REPO / "fixtures/cases/fanout_never_joined/run"
    watched = _without_a_home("watch", "--once", "--root", runs, "--state", tmp_path / "w.json")
    assert watched.returncode == 1, watched.stderr  # alerts, without a cache
    assert watched.stderr.startswith("watch: no scan cache: no home directory: ")
    queue = tmp_path / "q.db"
    assert _without_a_home("worker", "--once", "--create-queue", "--db", queue, "--root",
                           tmp_path / "runs").returncode == 0  # fmt: skip


def test_a_small_file_read_under_a_large_bound_allocates_its_size_not_the_bound(
    tmp_path: Path,
) -> None:
    # Every scan-cache entry (a few KB) was read as ``read(64 MiB + 1)``: 64 MiB allocated
    # for each, and a rescan's 1,000 reads took 3.5 times as long.
    import tracemalloc

    small = tmp_path / "entry.json"
    small.write_bytes(b"x" * 5000)
    tracemalloc.start()
    try:
        assert read_regular_bytes(small, max_bytes=64 << 20) == b"x" * 5000
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak


def test_a_file_that_grew_since_it_was_opened_is_read_on_up_to_the_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "grows"
    path.write_bytes(b"a" * 10)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    real_fstat = os.fstat

    def fstat_then_grow(n: int) -> os.stat_result:  # the file grows right after its stat
        st = real_fstat(n)
        if n != fd:
            os.write(fd, b"b" * 10)
        return st

    try:
        with monkeypatch.context() as patch:
            patch.setattr(os, "fstat", fstat_then_grow)
            assert read_regular_bytes(path) == b"a" * 10 + b"b" * 10
        os.write(fd, b"c" * 10)  # 30 bytes now, the bound 25
        with pytest.raises(OSError, match="larger than 25 bytes"):
            read_regular_bytes(path, max_bytes=25)
    finally:
        os.close(fd)
