"""``doctor cache prune``: the scan cache forgets runs that are gone, and only those.

The cache keeps an entry and an events partition for every run it ever diagnosed; a watch
over a fleet whose runs come and go grew it without end (found by fleet9: 50 runs scanned, 10
deleted and 20 added, 70 entries).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from doctor._cache import MAX_ENTRY_BYTES
from doctor._cache_prune import GRACE_S, prune_cache
from tests.helpers import as_a_user, run_doctor

REPO = Path(__file__).resolve().parents[2]

DAY = 86400.0


def _fleet(tmp_path: Path, names: tuple[str, ...] = ("a", "b", "c")) -> Path:
    """Runs under ``tmp_path/root``, each a dead run of two stages."""
    root = tmp_path / "root"
    for name in names:
        run = root / name
        run.mkdir(parents=True)
        lines = [
            {"event": "stage_attempt_start", "node_id": "build", "attempt": 1},
            {"event": "stage_attempt_end", "node_id": "build", "attempt": 1, "status": "success"},
            {"event": "stage_attempt_start", "node_id": "test", "attempt": 1},
        ]
        text = "".join(
            json.dumps({**line, "ts": f"2026-04-28T10:0{i}:00Z"}) + "\n"
            for i, line in enumerate(lines)
        )
        (run / "progress.ndjson").write_text(text)
    return root


def _scan(tmp_path: Path, cache: Path) -> dict[str, object]:
    """``doctor scan --root root --json`` from ``tmp_path`` (a relative root, as people type
    it) with the cache; its ``fleet`` object."""
    done = run_doctor(
        "scan", "--root", "root", "--json", env={"RUNDOCTOR_CACHE": str(cache)}, cwd=tmp_path
    )
    assert done.returncode in (0, 1), done.stderr
    fleet = json.loads(done.stdout)["fleet"]
    assert isinstance(fleet, dict)
    return fleet


def _keys(cache: Path) -> dict[str, str]:
    """Entry key by the run directory's name."""
    return {p.stem.rsplit("-", 1)[0]: p.stem for p in (cache / "runs").glob("*.json")}


def _tree(cache: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(cache)), p.stat().st_size) for p in cache.rglob("*"))


def test_prune_forgets_the_runs_whose_directory_is_gone_and_the_rescan_keeps_the_rest(
    tmp_path: Path,
) -> None:
    cache = tmp_path / "cache"
    root = _fleet(tmp_path)
    _scan(tmp_path, cache)
    keys = _keys(cache)
    assert sorted(keys) == ["a", "b", "c"]
    shutil.rmtree(root / "b")

    # From another directory: the entries name the runs as the scan was given them (a
    # relative root), and prune finds them by where they really were.
    done = run_doctor("cache", "prune", "--cache", cache, "--json", cwd=tmp_path / "root")
    assert done.returncode == 0, done.stderr
    said = json.loads(done.stdout)
    assert [(p["key"], p["reason"]) for p in said["removed"]] == [(keys["b"], "gone")]
    assert said["removed"][0]["run_path"] == str(root.resolve() / "b")
    assert said["kept"] == 2 and said["freed_bytes"] > 0 and not said["dry_run"]
    assert sorted(_keys(cache)) == ["a", "c"]
    assert not (cache / "events" / f"run={keys['b']}").exists()
    assert (cache / "events" / f"run={keys['a']}").is_dir()

    fleet = _scan(tmp_path, cache)  # what was kept is still used: no run read again
    assert (fleet["read"], fleet["reused"]) == (0, 2)


def test_a_dry_run_says_what_would_go_and_removes_nothing(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    root = _fleet(tmp_path)
    _scan(tmp_path, cache)
    shutil.rmtree(root / "a")
    before = _tree(cache)
    done = run_doctor("cache", "prune", "--cache", cache, "--dry-run")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("would prune 1 (1 gone), ") and "2 entries kept" in done.stdout
    assert _tree(cache) == before
    done = run_doctor("cache", "prune", "--cache", cache)
    assert done.stdout.startswith("pruned 1 (1 gone), ")
    done = run_doctor("cache", "prune", "--cache", cache)
    assert done.stdout == f"nothing to prune; 2 entries kept in {cache}\n"


def test_older_than_also_forgets_runs_not_scanned_for_that_long(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _fleet(tmp_path)
    _scan(tmp_path, cache)
    keys = _keys(cache)
    now = (cache / "runs" / f"{keys['a']}.json").stat().st_mtime + 40 * DAY
    os.utime(cache / "runs" / f"{keys['a']}.json", (now - 31 * DAY, now - 31 * DAY))
    for name in ("b", "c"):
        os.utime(cache / "runs" / f"{keys[name]}.json", (now - 29 * DAY, now - 29 * DAY))

    assert prune_cache(cache, now=now).removed == ()  # every run is still there
    result = prune_cache(cache, older_than_s=30 * DAY, now=now)
    assert [(p.key, p.reason) for p in result.removed] == [(keys["a"], "older")]
    assert result.kept == 2 and sorted(_keys(cache)) == ["b", "c"]


def test_leftovers_of_a_killed_scan_go_once_older_than_the_grace(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _fleet(tmp_path, ("a",))
    _scan(tmp_path, cache)
    now = (cache / "runs").stat().st_mtime + 2 * GRACE_S
    old, fresh = now - GRACE_S - 60, now - 60
    leftovers = {
        "old": cache / "events" / "run=old-0123456789ab" / "part-1.parquet",
        "fresh": cache / "events" / "run=fresh-0123456789ab" / "part-1.parquet",
        "old tmp": cache / "runs" / ".x-0123456789ab.json.7.abcd1234.tmp",
        "fresh tmp": cache / "runs" / ".y-0123456789ab.json.7.abcd1234.tmp",
    }
    for what, path in leftovers.items():
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"PAR1")
        at = old if what.startswith("old") else fresh
        os.utime(path, (at, at))
        os.utime(path.parent, (at, at))

    result = prune_cache(cache, now=now)
    assert sorted((p.key, p.reason) for p in result.removed) == [
        (".x-0123456789ab.json.7.abcd1234.tmp", "temporary"),
        ("old-0123456789ab", "orphan"),
    ]
    assert not leftovers["old"].parent.exists() and not leftovers["old tmp"].exists()
    assert leftovers["fresh"].exists() and leftovers["fresh tmp"].exists()
    assert result.kept == 1 and len(_keys(cache)) == 1


def test_prune_follows_no_symlink_and_removes_only_files_of_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    root = _fleet(tmp_path, ("a", "b"))
    _scan(tmp_path, cache)
    keys = _keys(cache)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.parquet").write_bytes(b"mine")
    (outside / "entry.json").write_text(json.dumps({"run_path": "/nowhere"}))
    # The gone run's events partition replaced by a symlink to a directory of someone else's,
    # and an entry that is a symlink to a file naming a run that is not there.
    partition = cache / "events" / f"run={keys['b']}"
    shutil.rmtree(partition)
    partition.symlink_to(outside)
    (cache / "runs" / "linked-0123456789ab.json").symlink_to(outside / "entry.json")
    shutil.rmtree(root / "b")

    result = prune_cache(cache)
    assert [(p.key, p.reason) for p in result.removed] == [(keys["b"], "gone")]
    assert sorted(result.left) == [
        f"{partition}: not a directory, left",
        f"{cache}/runs/linked-0123456789ab.json: a symlink, not an entry, left",
    ]
    assert sorted(p.name for p in outside.iterdir()) == ["entry.json", "keep.parquet"]
    assert (cache / "runs" / "linked-0123456789ab.json").is_symlink()


def test_an_entry_that_is_not_one_is_pruned(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _fleet(tmp_path, ("a",))
    _scan(tmp_path, cache)
    for name, text in (("cut-0123456789ab", '{"run_pa'), ("list-0123456789ab", "[1, 2]\n")):
        (cache / "runs" / f"{name}.json").write_text(text)
    result = prune_cache(cache)
    assert sorted((p.key, p.reason) for p in result.removed) == [
        ("cut-0123456789ab", "damaged"),
        ("list-0123456789ab", "damaged"),
    ]
    assert result.kept == 1


def test_prune_without_a_cache_or_with_bad_input_is_one_line_exit_2(tmp_path: Path) -> None:
    home = {"XDG_STATE_HOME": str(tmp_path / "state"), "XDG_CONFIG_HOME": str(tmp_path)}
    cases = {
        "no cache": ((), "no scan cache to prune: pass --cache DIR"),
        "not a cache": (("--cache", str(tmp_path)), "not a scan cache directory"),
        "missing": (("--cache", str(tmp_path / "nope")), "not a scan cache directory"),
        "duration": (("--cache", str(tmp_path), "--older-than", "soon"), "'soon' is not a"),
    }
    for what, (args, words) in cases.items():
        done = run_doctor("cache", "prune", *args, env=home)
        assert done.returncode == 2, (what, done.stderr)
        assert done.stderr.startswith("error: ") and words in done.stderr, (what, done.stderr)
        assert done.stderr.count("\n") == 1 and done.stdout == "", what
    # RUNDOCTOR_CACHE is the default, as for scan
    cache = tmp_path / "cache"
    (cache / "runs").mkdir(parents=True)
    done = run_doctor("cache", "prune", env={**home, "RUNDOCTOR_CACHE": str(cache)})
    assert done.returncode == 0 and done.stdout == f"nothing to prune; 0 entries kept in {cache}\n"


def _as_a_user(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """``doctor ARGS`` with file permissions enforced (root drops the capabilities)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNDOCTOR_")}
    return subprocess.run(
        [*as_a_user(), sys.executable, "-m", "doctor", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=False,
    )


# A real `doctor scan` that stops before it saves its first entry (its events are written by
# then), says so on stderr and waits for a line on stdin: a prune runs while it writes.
_HELD_SCAN = """
import sys
from doctor import _cache
save = _cache.RunCache.save
held = []
def hold(self, entry):
    if not held:
        held.append(entry.key)
        print("held " + entry.key, file=sys.stderr, flush=True)
        sys.stdin.readline()
    save(self, entry)
_cache.RunCache.save = hold
from doctor._cli import main
main()
"""


@contextlib.contextmanager
def _held_scan(tmp_path: Path, cache: Path, script: str, said: str) -> Iterator[list[str]]:
    """``doctor scan --root root --json`` with the cache, run by ``python -c script`` from
    ``tmp_path``; the block runs once its first line on stderr is ``said``, then a line goes
    to its stdin. The list yielded holds the scan's stdout after the block."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNDOCTOR_")}
    scan = subprocess.Popen(
        [sys.executable, "-c", script, "scan", "--root", "root", "--json"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(REPO), "RUNDOCTOR_CACHE": str(cache)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert scan.stdin is not None and scan.stderr is not None
    out: list[str] = []
    try:
        assert scan.stderr.readline() == said
        yield out
        stdout, err = scan.communicate("\n", timeout=300)
    finally:
        if scan.poll() is None:
            scan.kill()
            scan.communicate()
    assert scan.returncode in (0, 1), err
    out.append(stdout)


def test_a_prune_while_a_scan_writes_leaves_what_the_scan_is_saving(tmp_path: Path) -> None:
    # A prune removed every file of a pruned run's events partition: a scan writing that run
    # anew (its entry was damaged) lost the events it had just written, and its entry named
    # a file that was gone, so the next scan read the run again.
    cache = tmp_path / "cache"
    root = _fleet(tmp_path)
    _scan(tmp_path, cache)
    keys = _keys(cache)
    (cache / "runs" / f"{keys['a']}.json").write_text('{"run_pa')  # damaged: read again
    shutil.rmtree(root / "c")
    with _held_scan(tmp_path, cache, _HELD_SCAN, f"held {keys['a']}\n") as out:
        files = (cache / "events" / f"run={keys['a']}").iterdir()
        newest = max(files, key=lambda p: p.stat().st_mtime_ns)  # the scan's, written now
        pruned = run_doctor("cache", "prune", "--cache", cache, "--json")
        assert pruned.returncode == 0, pruned.stderr
        said = json.loads(pruned.stdout)
        assert sorted((p["key"], p["reason"]) for p in said["removed"]) == [
            (keys["a"], "damaged"),
            (keys["c"], "gone"),
        ]
        assert newest.exists()
    assert sorted(r["run_id"] for r in json.loads(out[0])["runs"]) == ["a", "b"]
    fleet = _scan(tmp_path, cache)  # what the scan saved is whole: nothing read again
    assert (fleet["read"], fleet["reused"]) == (0, 2)


# A real `doctor scan` that stops once it has made a run's events partition, before it
# writes the run's events into it: says so on stderr, waits for a line on stdin.
_MKDIR_HELD_SCAN = """
import pathlib, sys
mkdir = pathlib.Path.mkdir
def hold(self, *args, **kwargs):
    mkdir(self, *args, **kwargs)
    if self.name.startswith("run="):
        print("made " + self.name, file=sys.stderr, flush=True)
        sys.stdin.readline()
pathlib.Path.mkdir = hold
from doctor._cli import main
main()
"""


def test_a_prune_leaves_the_partition_a_scan_made_to_write_into(tmp_path: Path) -> None:
    # A prune that removed a run's last events files (its entry older than --older-than)
    # then removed the emptied folder, the one a scan reading the run again had just made
    # to write its new events into: the scan's COPY failed, and its batch was "not saved to
    # the cache" (the next scan read it again).
    cache = tmp_path / "cache"
    root = _fleet(tmp_path, ("a",))
    _scan(tmp_path, cache)
    keys = _keys(cache)
    stream = root / "a" / "progress.ndjson"
    text = stream.read_text()
    stream.unlink()
    stream.write_text(text)  # rewritten: read from scratch, its events written anew
    month_ago = stream.stat().st_mtime - 31 * DAY
    for path in (cache / "runs" / f"{keys['a']}.json", *(cache / "events").rglob("*.parquet")):
        os.utime(path, (month_ago, month_ago))
    with _held_scan(tmp_path, cache, _MKDIR_HELD_SCAN, f"made run={keys['a']}\n") as out:
        pruned = run_doctor("cache", "prune", "--cache", cache, "--older-than", "30d", "--json")
        assert pruned.returncode == 0, pruned.stderr
        said = json.loads(pruned.stdout)
        assert [(p["key"], p["reason"]) for p in said["removed"]] == [(keys["a"], "older")]
        assert (cache / "events" / f"run={keys['a']}").is_dir()  # left, empty, to the scan
    assert "cache_notes" not in json.loads(out[0])["fleet"]
    fleet = _scan(tmp_path, cache)  # what the scan saved is whole: nothing read again
    assert (fleet["read"], fleet["reused"]) == (0, 1)


def test_an_entry_a_scan_saves_after_prune_judged_the_old_one_stays(tmp_path: Path) -> None:
    # Prune judged an entry (damaged), then removed whatever file had its name: a scan that
    # saved the run's new entry in between lost it.
    cache = tmp_path / "cache"
    _fleet(tmp_path, ("a", "b"))
    _scan(tmp_path, cache)
    keys = _keys(cache)
    (cache / "runs" / f"{keys['a']}.json").write_text("[1, 2]\n")

    def a_scan_saves_it_anew(key: str) -> None:
        assert key == keys["a"]
        assert _scan(tmp_path, cache)["read"] == 1

    result = prune_cache(cache, race_hook=a_scan_saves_it_anew)
    assert (result.removed, result.kept) == ((), 2)
    assert sorted(p.name for p in (cache / "runs").iterdir()) == sorted(
        f"{k}.json" for k in keys.values()
    )
    fleet = _scan(tmp_path, cache)
    assert (fleet["read"], fleet["reused"]) == (0, 2)


def test_hostile_cache_contents_are_judged_or_left_never_a_crash(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _fleet(tmp_path, ("a",))
    _scan(tmp_path, cache)
    runs = cache / "runs"
    (runs / "deep-0123456789ab.json").write_text("[" * 200_000 + "\n")  # past json's depth
    with (runs / "huge-0123456789ab.json").open("wb") as f:  # over what a scan reads (sparse)
        f.truncate(MAX_ENTRY_BYTES + 1)
    (runs / "nul-0123456789ab.json").write_text(json.dumps({"resolved_path": "/a\0b"}) + "\n")
    os.mkfifo(runs / "fifo-0123456789ab.json")  # never opened: it would block
    odd = os.fsencode(cache / "events") + b"/run=new\nline\xff"
    os.makedirs(odd + b"/sub")
    hour_ago = (cache / "runs").stat().st_mtime - 2 * GRACE_S
    for path in (odd + b"/sub", odd):
        os.utime(path, (hour_ago, hour_ago))

    done = run_doctor("cache", "prune", "--cache", cache)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # The partition holding a directory is left, not counted as pruned
    assert lines[0].startswith("pruned 3 (3 damaged), ") and "1 entry kept" in lines[0]
    assert lines[1:] == [
        f"left: {runs}/fifo-0123456789ab.json: a FIFO, not an entry, left",
        f"left: {cache}/events/run=new\\nline\\xff: holds what is no file (a directory), left",
    ]
    assert done.stderr == ""
    assert (runs / "fifo-0123456789ab.json").exists() and os.path.isdir(odd + b"/sub")


def test_a_cache_whose_runs_or_events_is_a_symlink_is_refused_untouched(tmp_path: Path) -> None:
    for sub in ("runs", "events"):
        cache = tmp_path / sub / "cache"
        root = _fleet(tmp_path / sub, ("a", "b"))
        _scan(tmp_path / sub, cache)
        shutil.rmtree(root / "a")
        elsewhere = tmp_path / sub / "elsewhere"
        (cache / sub).rename(elsewhere)
        (cache / sub).symlink_to(elsewhere)
        before = _tree(elsewhere)
        done = run_doctor("cache", "prune", "--cache", cache)
        assert (done.returncode, done.stdout) == (2, ""), sub
        assert done.stderr == (
            f"error: cannot prune '{cache}': {sub}/ is a symlink, not followed ({cache / sub})\n"
        )
        assert _tree(elsewhere) == before


def test_a_cache_this_user_may_not_prune_is_refused_or_its_files_left(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    root = _fleet(tmp_path)
    _scan(tmp_path, cache)
    keys = _keys(cache)
    shutil.rmtree(root / "a")
    before = _tree(cache)
    (cache / "runs").chmod(0o555)
    try:
        done = _as_a_user("cache", "prune", "--cache", cache)
        assert (done.returncode, done.stdout) == (2, "")
        assert done.stderr == (
            f"error: cannot prune '{cache}': Permission denied ({cache}/runs); prune as the "
            "user the scans run as\n"
        )
        assert _tree(cache) == before
        dry = _as_a_user("cache", "prune", "--cache", cache, "--dry-run")
        assert dry.returncode == 0 and dry.stdout.startswith("would prune 1 (1 gone)"), dry
    finally:
        (cache / "runs").chmod(0o755)

    # An entry it cannot read is left (not damaged); events it cannot remove are left.
    (cache / "runs" / f"{keys['b']}.json").chmod(0)
    partition = cache / "events" / f"run={keys['a']}"
    partition.chmod(0o555)
    try:
        done = _as_a_user("cache", "prune", "--cache", cache)
    finally:
        partition.chmod(0o755)
        (cache / "runs" / f"{keys['b']}.json").chmod(0o644)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("pruned 1 (1 gone), ") and "1 entry kept" in lines[0]
    (part,) = partition.iterdir()
    assert lines[1:] == [
        f"left: {part}: cannot be removed (Permission denied), left",
        f"left: {cache}/runs/{keys['b']}.json: cannot be read (Permission denied), left",
    ]
    assert sorted(_keys(cache)) == ["b", "c"]


def test_a_run_is_gone_only_when_its_directory_is_not_there(tmp_path: Path) -> None:
    # Names with a space and a byte that is not UTF-8, a root reached through a symlink, and
    # runs behind a directory this user may not enter: taken for gone, they were pruned.
    base = os.fsencode(tmp_path)
    real = base + b"/real runs \xff"
    os.makedirs(real)
    for name in (b"a", b"b", b"c"):
        os.makedirs(real + b"/" + name)
        with open(real + b"/" + name + b"/progress.ndjson", "w") as f:
            f.write('{"event":"stage_attempt_start","node_id":"x","ts":"2026-04-28T10:00:00Z"}\n')
    os.symlink(real, base + b"/link")
    cache = tmp_path / "cache"
    done = run_doctor(
        "scan", "--root", base + b"/link", env={"RUNDOCTOR_CACHE": str(cache)}, cwd=tmp_path
    )
    assert done.returncode in (0, 1), done.stderr
    keys = _keys(cache)
    os.unlink(base + b"/link")  # the way the scan took is gone, the runs are not
    assert prune_cache(cache).removed == ()
    shutil.rmtree(real + b"/a")
    os.chmod(real, 0)  # the runs cannot be looked at: none is taken for gone
    try:
        done = _as_a_user("cache", "prune", "--cache", cache, "--json")
    finally:
        os.chmod(real, 0o755)
    assert done.returncode == 0, done.stderr
    assert (json.loads(done.stdout)["removed"], json.loads(done.stdout)["kept"]) == ([], 3)
    said = prune_cache(cache).as_json()
    assert [(p["key"], p["reason"]) for p in said["removed"]] == [(keys["a"], "gone")]
    assert said["removed"][0]["run_path"] == os.fsdecode(real + b"/a")
    assert said["kept"] == 2
