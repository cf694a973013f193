"""``doctor cache prune``: the scan cache forgets runs that are gone, and only those.

The cache keeps an entry and an events partition for every run it ever diagnosed; a watch
over a fleet whose runs come and go grew it without end (found by fleet9: 50 runs scanned, 10
deleted and 20 added, 70 entries).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from doctor._cache_prune import GRACE_S, prune_cache
from tests.helpers import run_doctor

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
    assert result.left == (f"{partition}: not a directory, left",)
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
