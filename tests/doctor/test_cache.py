"""``doctor.scan`` with a cache directory: what is reused, resumed, or read again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from doctor import DoctorConfig, ScanResult, _ingest, scan
from doctor._layout import RunLayout

DEAD_PID = "99999999"
NOW = 1777377600.0  # 2026-04-28T12:00:00Z


def _line(event: str, second: int, **fields: Any) -> str:
    return json.dumps({"event": event, "ts": f"2026-04-28T10:00:{second:02d}Z", **fields}) + "\n"


def _attempt(node: str, second: int, status: str = "success") -> str:
    return _line("stage_attempt_start", second, node_id=node, attempt=1) + _line(
        "stage_attempt_end", second + 1, node_id=node, attempt=1, status=status
    )


def _run(root: Path, run_id: str, stream: str, *, final: str | None = None) -> Path:
    run = root / run_id
    run.mkdir(parents=True)
    (run / "run.pid").write_text(DEAD_PID)
    (run / "progress.ndjson").write_text(stream)
    if final is not None:
        (run / "final.json").write_text(json.dumps({"status": final, "run_id": run_id}))
    return run


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    _run(root, "done", _attempt("a", 0) + _line("run_completed", 5), final="success")
    _run(root, "dead", _attempt("a", 0) + _line("stage_attempt_start", 5, node_id="b"))
    return root


@pytest.fixture
def config(root: Path, tmp_path: Path) -> DoctorConfig:
    return DoctorConfig(roots=(root,), cache_dir=tmp_path / "cache", now=NOW)


def _runs(result: ScanResult) -> dict[str, dict[str, Any]]:
    return {r["run_id"]: r for r in result.to_json()["runs"]}


def _facts(result: ScanResult, run_id: str) -> dict[str, Any]:
    (d,) = [d for d in result.diagnoses if d.run_id == run_id]
    return dict(d.facts)


def _append(path: Path, text: str) -> None:
    with path.open("a") as fh:
        fh.write(text)


# --- reuse --------------------------------------------------------------------------------------


def test_a_first_scan_reads_every_run(config: DoctorConfig) -> None:
    result = scan(config)
    assert (result.fleet["read"], result.fleet["reused"]) == (2, 0)


def test_a_second_scan_with_nothing_changed_reuses_every_run(
    config: DoctorConfig,
) -> None:
    first = scan(config)
    second = scan(config)
    assert (second.fleet["read"], second.fleet["reused"]) == (0, 2)
    assert json.dumps(_runs(second), sort_keys=True) == json.dumps(_runs(first), sort_keys=True)


def test_a_run_whose_owner_is_alive_is_reused_while_its_files_and_state_hold(
    config: DoctorConfig, root: Path
) -> None:
    (root / "dead/run.pid").write_text(str(os.getpid()))
    first = scan(config)
    second = scan(config)
    assert (second.fleet["read"], second.fleet["reused"]) == (0, 2)
    assert json.dumps(_runs(second), sort_keys=True) == json.dumps(_runs(first), sort_keys=True)


def test_a_reused_orphan_reports_its_idle_time_at_the_new_clock(
    config: DoctorConfig,
) -> None:
    def idle(result: ScanResult) -> float:
        (f,) = [f for f in _runs(result)["dead"]["findings"] if f["code"] == "missing_final"]
        return float(f["evidence"]["idle_s"])

    first = scan(config)
    later = scan(replace(config, now=config.now + 3600))
    assert later.fleet["reused"] == 2
    assert idle(later) == pytest.approx(idle(first) + 3600)


def test_a_scan_without_a_cache_gives_the_same_runs_as_a_cached_one(
    config: DoctorConfig,
) -> None:
    uncached = scan(replace(config, cache_dir=None))
    scan(config)
    cached = scan(config)
    assert json.dumps(_runs(cached), sort_keys=True) == json.dumps(_runs(uncached), sort_keys=True)


def test_a_changed_threshold_invalidates_reuse(config: DoctorConfig) -> None:
    scan(config)
    result = scan(replace(config, breaker_limit=config.breaker_limit + 1))
    assert result.fleet["reused"] == 0


def test_selecting_other_checks_invalidates_reuse(config: DoctorConfig) -> None:
    scan(config)
    result = scan(replace(config, checks=("stale_heartbeat",)))
    assert result.fleet["reused"] == 0


def test_a_touched_document_of_a_finished_run_is_read_again(
    config: DoctorConfig, root: Path
) -> None:
    scan(config)
    (root / "done/final.json").write_text(json.dumps({"status": "fail", "run_id": "done"}))
    result = scan(config)
    assert result.fleet["reused"] == 1  # only the untouched "dead" run
    assert _runs(result)["done"]["state"] == "failed"


# --- resuming streams ---------------------------------------------------------------------------


class Reads:
    """Records which streams ingestion reads whole and which it resumes, and from where."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.whole: list[str] = []
        self.resumed: list[tuple[str, int]] = []
        real_bulk, real_precise = _ingest.read_bulk, _ingest.read_precise

        def read_bulk(con: Any, files: Any, first: int, **kw: Any) -> Any:
            self.whole += [Path(f).parent.name for f in files]
            return real_bulk(con, files, first, **kw)

        def read_precise(con: Any, path: Path, sid: int, key: Any, **kw: Any) -> Any:
            if kw.get("offset", 0):
                self.resumed.append((path.parent.name, kw["offset"]))
            else:
                self.whole.append(path.parent.name)
            return real_precise(con, path, sid, key, **kw)

        monkeypatch.setattr(_ingest, "read_bulk", read_bulk)
        monkeypatch.setattr(_ingest, "read_precise", read_precise)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Reads:
    return Reads(monkeypatch)


@pytest.fixture
def running(root: Path) -> Path:
    """The unfinished run, with this test process as its live owner: a stream that grows.

    (Runs whose owner is gone have their diagnosis cached instead, and are read from scratch
    if their files ever change.)
    """
    (root / "dead/run.pid").write_text(str(os.getpid()))
    return root


def test_lines_appended_to_a_running_run_are_read_from_the_last_byte_offset(
    config: DoctorConfig, running: Path, reads: Reads
) -> None:
    scan(config)
    size = (running / "dead/progress.ndjson").stat().st_size
    reads.whole.clear()
    _append(running / "dead/progress.ndjson", _line("run_completed", 10))
    scan(config)
    assert reads.resumed == [("dead", size)]
    assert "dead" not in reads.whole


def test_lines_appended_to_a_running_run_are_read_once(config: DoctorConfig, running: Path) -> None:
    first = scan(config)
    assert _facts(first, "dead")["events"] == 3
    _append(running / "dead/progress.ndjson", _line("stage_attempt_end", 9, node_id="b", attempt=1))
    _append(running / "dead/progress.ndjson", _line("run_completed", 10))
    second = scan(config)
    facts = _facts(second, "dead")
    assert facts["events"] == 5
    assert facts["events_by_type"] == {
        "stage_attempt_end": 2,
        "stage_attempt_start": 2,
        "run_completed": 1,
    }
    assert facts["attempts_ended"] == 2
    assert facts["last_event_at"] == "2026-04-28T10:00:10Z"
    third = scan(config)
    assert _facts(third, "dead")["events"] == 5


def test_a_resumed_stream_keeps_its_rows_in_line_order(config: DoctorConfig, running: Path) -> None:
    scan(config)
    _append(running / "dead/progress.ndjson", _line("stage_attempt_end", 9, node_id="b", attempt=1))
    result = scan(config)
    assert _facts(result, "dead")["attempt_stats"] == [
        {
            "scope": "",
            "node_id": "b",
            "attempts": 1,
            "min_s": 4.0,
            "median_s": 4.0,
            "max_s": 4.0,
            "total_s": 4.0,
        },
        {
            "scope": "",
            "node_id": "a",
            "attempts": 1,
            "min_s": 1.0,
            "median_s": 1.0,
            "max_s": 1.0,
            "total_s": 1.0,
        },
    ]


def test_findings_follow_lines_appended_after_the_last_scan(
    config: DoctorConfig, running: Path
) -> None:
    first = scan(config)
    assert not any(f["code"] == "stale_heartbeat" for f in _runs(first)["dead"]["findings"])
    # The open attempt of b ends; heartbeats naming b after that are stale.
    _append(running / "dead/progress.ndjson", _line("stage_attempt_end", 9, node_id="b", attempt=1))
    for s in (20, 30, 40):
        _append(running / "dead/progress.ndjson", _line("stage_heartbeat", s, node_id="b"))
    second = scan(config)
    (stale,) = [f for f in _runs(second)["dead"]["findings"] if f["code"] == "stale_heartbeat"]
    assert stale["evidence"]["stale_heartbeats"] == 3


def test_a_torn_line_found_before_a_resume_is_still_reported_after_it(
    config: DoctorConfig, running: Path
) -> None:
    assert config.cache_dir is not None
    _append(running / "dead/progress.ndjson", "{torn\n")
    scan(config)
    offset = len(_attempt("a", 0) + _line("stage_attempt_start", 5, node_id="b"))
    assert _cached_torn(config.cache_dir, "dead") == [[4, offset]]
    _append(running / "dead/progress.ndjson", _line("stage_heartbeat", 20, node_id="b"))
    second = scan(config)
    assert _cached_torn(config.cache_dir, "dead") == [[4, offset]]
    assert _facts(second, "dead")["events"] == 4


def test_a_partial_last_line_of_a_writer_that_died_is_reported_torn_after_a_resume(
    tmp_path: Path,
) -> None:
    root = tmp_path / "runs"
    run = _run(root, "r1", _attempt("a", 0) + '{"event": "stage_attempt_start", "node_id": "b", ')
    (run / "run.pid").write_text(str(os.getpid()))  # the writer is alive: mid-line
    cache = tmp_path / "cache"
    config = DoctorConfig(roots=(root,), cache_dir=cache, now=NOW)
    scan(config)
    (run / "run.pid").write_text(DEAD_PID)  # it died without finishing the line
    result = scan(config)
    (torn,) = [f for f in _runs(result)["r1"]["findings"] if f["code"] == "torn_artifact"]
    assert (torn["evidence"]["line"], torn["evidence"]["byte_offset"]) == (
        3,
        len(_attempt("a", 0)),
    )


def _entry(path: Path) -> dict[str, Any]:
    """A cache entry's first line: everything but the facts and findings kept as text."""
    head: dict[str, Any] = json.loads(path.read_bytes().partition(b"\n")[0])
    return head


def _rewrite_entry(path: Path, entry: dict[str, Any]) -> None:
    """Replace the entry's first line, keeping the text after it."""
    body = path.read_bytes().partition(b"\n")[2]
    path.write_bytes(json.dumps(entry).encode() + b"\n" + body)


def _cached_torn(cache: Path, run_id: str) -> list[list[Any]]:
    """The torn lines the cache recorded for ``run_id``'s streams: (line, byte offset)."""
    (entry,) = [_entry(p) for p in (cache / "runs").glob(f"{run_id}-*.json")]
    return [t[:2] for s in entry["streams"] for t in s["torn"]]


# --- rewritten streams --------------------------------------------------------------------------


def test_a_stream_that_grew_while_it_was_read_is_resumed_where_the_read_ended(
    config: DoctorConfig, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A live writer the doctor does not know of (no run.pid says so) appends while the bulk
    # scan reads: the rows went past the size the stream was planned at, and the rescan
    # resumed from that size, counting the appended line twice.
    stream = root / "dead" / "progress.ndjson"
    (root / "dead" / "run.pid").unlink()
    bulk = _ingest.read_bulk

    def grows_as_it_is_read(*args: Any, **kwargs: Any) -> list[int]:
        def append(files: Any) -> None:
            with stream.open("a") as fh:
                fh.write(_line("stage_heartbeat", 6, node_id="b"))

        return bulk(*args, **{**kwargs, "race_hook": append})

    monkeypatch.setattr(_ingest, "read_bulk", grows_as_it_is_read)
    scan(config)
    monkeypatch.undo()
    again = _facts(scan(config), "dead")["events_by_type"]
    assert again == _facts(scan(replace(config, cache_dir=None)), "dead")["events_by_type"]
    assert again["stage_heartbeat"] == 1


def test_a_truncated_stream_is_read_from_scratch(
    config: DoctorConfig, root: Path, reads: Reads
) -> None:
    scan(config)
    (root / "dead/progress.ndjson").write_text(_line("run_started", 0))
    reads.whole.clear()
    result = scan(config)
    assert _facts(result, "dead")["events_by_type"] == {"run_started": 1}
    assert reads.resumed == []
    assert "dead" in reads.whole


def test_a_rewritten_stream_of_the_same_size_is_read_from_scratch(
    config: DoctorConfig, root: Path, reads: Reads
) -> None:
    scan(config)
    path = root / "dead/progress.ndjson"
    old = path.read_text()
    new = old.replace("stage_attempt_start", "stage_attempt_START")
    assert len(new) == len(old)
    with path.open("r+") as fh:  # same inode, same size, other content
        fh.write(new)
    reads.whole.clear()
    result = scan(config)
    assert _facts(result, "dead")["events_by_type"] == {
        "stage_attempt_START": 2,
        "stage_attempt_end": 1,
    }
    assert "dead" in reads.whole


def test_a_stream_whose_early_line_was_corrupted_in_place_is_read_from_scratch(
    config: DoctorConfig, running: Path
) -> None:
    path = running / "dead/progress.ndjson"
    for s in range(10, 30):  # enough lines that the first one is far from the end
        _append(path, _line("stage_heartbeat", s, node_id="b"))
    scan(config)
    data = bytearray(path.read_bytes())
    data[0:1] = b"X"  # a flipped byte in line 1, the rest untouched
    with path.open("r+b") as fh:
        fh.write(data)
    scan(config)
    assert _cached_torn(config.cache_dir or Path(), "dead") == [[1, 0]]


def test_a_stream_replaced_by_another_file_is_read_from_scratch(
    config: DoctorConfig, root: Path
) -> None:
    scan(config)
    path = root / "dead/progress.ndjson"
    replacement = path.with_name("new.ndjson")
    replacement.write_text(path.read_text() + _line("run_completed", 59))
    os.replace(replacement, path)  # another inode, and the old content as its prefix
    result = scan(config)
    assert _facts(result, "dead")["events"] == 4


# --- documents appearing later ------------------------------------------------------------------


def test_a_run_whose_final_json_appears_later_is_read_again(
    config: DoctorConfig, root: Path
) -> None:
    first = scan(config)
    assert _runs(first)["dead"]["state"] == "orphaned"
    (root / "dead/final.json").write_text(json.dumps({"status": "fail", "run_id": "dead"}))
    second = scan(config)
    assert _runs(second)["dead"]["state"] == "failed"
    assert _facts(second, "dead")["final_json"] is True
    third = scan(config)
    assert third.fleet["reused"] == 2


# --- a damaged cache ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "damage",
    [
        "not json at all",
        '{"key": ',
        "[]",
        "null",
        '"a string"',
        '{"settings": 5}',
    ],
    ids=["garbage", "truncated", "array", "null", "string", "wrong-types"],
)
def test_a_corrupt_cache_entry_is_ignored(config: DoctorConfig, damage: str) -> None:
    first = scan(config)
    assert config.cache_dir is not None
    entries = sorted((config.cache_dir / "runs").glob("*.json"))
    assert len(entries) == 2
    for p in entries:
        p.write_text(damage)
    second = scan(config)
    assert second.fleet["reused"] == 0
    assert json.dumps(_runs(second), sort_keys=True) == json.dumps(_runs(first), sort_keys=True)


@pytest.mark.parametrize(
    "damage",
    ["not json at all", '{"key": ', "[]\n", "null\n", "first line cut"],
    ids=["garbage", "truncated", "array", "null", "body-cut"],
)
def test_a_damaged_cache_entry_is_read_again_and_the_scan_says_so(
    config: DoctorConfig, damage: str
) -> None:
    first = scan(config)
    assert config.cache_dir is not None
    for p in (config.cache_dir / "runs").glob("*.json"):
        text = damage
        if damage == "first line cut":
            text = p.read_text().partition("\n")[0] + "\n{"  # a body shorter than it says
        p.write_text(text)
    second = scan(config)
    assert second.fleet["cache_notes"] == [
        "2 runs read again from the run directory: the cache entry was damaged"
    ]
    assert json.dumps(_runs(second), sort_keys=True) == json.dumps(_runs(first), sort_keys=True)
    assert "cache_notes" not in scan(config).fleet  # the entries were written anew


@pytest.mark.parametrize(
    "cut", ["short", "long", "not-ascii", "ranks", "clocked", "nested", "same-length"]
)
def test_a_cache_entry_whose_kept_text_is_not_what_its_first_line_says_is_ignored(
    config: DoctorConfig, cut: str
) -> None:
    first = scan(config)
    assert config.cache_dir is not None
    untouched = 0  # a run without findings has no rank to damage
    for p in (config.cache_dir / "runs").glob("*.json"):
        head, _, body = p.read_bytes().partition(b"\n")
        entry = json.loads(head)
        untouched += cut == "ranks" and not entry["body"]["findings"]
        if cut == "short":
            body = body[:-1]
        elif cut == "long":
            body += b" "
        elif cut == "not-ascii":
            body = body[:-1] + "é".encode()
        elif cut == "nested":
            # Before: read as the entry's facts; `report --fleet` and `metrics` met a
            # RecursionError when they looked into them (an internal error, exit 70).
            body = b"[" * len(body)
        elif cut == "same-length":
            # Before: spliced into `scan --json` as it was: JSON that does not parse.
            body = body.replace(b'"', b"'", 1)
        elif cut == "ranks":
            entry["body"]["findings"] = [[7, n] for _, n in entry["body"]["findings"]]
        else:
            entry["body"]["clocked"] = [len(entry["body"]["findings"])]
        p.write_bytes(json.dumps(entry).encode() + b"\n" + body)
    second = scan(config)
    assert second.fleet["reused"] == untouched < 2
    assert json.dumps(_runs(second), sort_keys=True) == json.dumps(_runs(first), sort_keys=True)


def test_a_cache_entry_with_a_damaged_diagnosis_is_ignored(config: DoctorConfig) -> None:
    first = scan(config)
    assert config.cache_dir is not None
    for p in (config.cache_dir / "runs").glob("*.json"):
        entry = _entry(p)
        if entry["diagnosis"] is not None:
            entry["diagnosis"] = {"run_id": entry["diagnosis"]["run_id"]}
            _rewrite_entry(p, entry)
    second = scan(config)
    assert json.dumps(_runs(second), sort_keys=True) == json.dumps(_runs(first), sort_keys=True)


def test_a_cache_entry_with_damaged_stream_states_is_ignored(
    config: DoctorConfig, root: Path
) -> None:
    scan(config)
    assert config.cache_dir is not None
    for p in (config.cache_dir / "runs").glob("*.json"):
        entry = _entry(p)
        entry["streams"] = [{"scope": ""}]
        entry["fingerprint"] = {}
        _rewrite_entry(p, entry)
    _append(root / "dead/progress.ndjson", _line("run_completed", 30))
    result = scan(config)
    assert _facts(result, "dead")["events"] == 4


def test_a_torn_line_appended_after_a_scan_is_numbered_from_the_start_of_the_file(
    config: DoctorConfig, running: Path
) -> None:
    assert config.cache_dir is not None
    path = running / "dead/progress.ndjson"
    scan(config)
    size = path.stat().st_size
    _append(path, "\n" + _line("stage_heartbeat", 20, node_id="b") + "{torn\n")
    scan(config)
    heartbeat = len(_line("stage_heartbeat", 20, node_id="b"))
    assert _cached_torn(config.cache_dir, "dead") == [[6, size + 1 + heartbeat]]


def test_fleet_idle_gap_is_the_same_when_runs_come_from_the_cache(tmp_path: Path) -> None:
    from fixtures.fleet import build_fleet

    root = build_fleet(tmp_path / "runs", runs=6, events_per_run=200)
    for i in (3, 4, 5):  # a month later: nothing ran in between
        p = root / f"fleet-{i:04d}" / "progress.ndjson"
        p.write_text(p.read_text().replace("2026-05-2", "2026-06-2"))
    uncached = scan(DoctorConfig(roots=(root,), now=1.9e9))
    cached = DoctorConfig(roots=(root,), cache_dir=tmp_path / "cache", now=1.9e9)
    scan(cached)
    again = scan(cached)
    assert again.fleet["reused"] == 6
    gaps = [f.to_json() for f in uncached.findings if f.code == "idle_gap"]
    assert gaps, "the month without progress is a fleet idle gap"
    assert [f.to_json() for f in again.findings if f.code == "idle_gap"] == gaps


# --- fingerprints -------------------------------------------------------------------------------

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def _every_named_file(layout: RunLayout) -> dict[str, list[int]]:
    """The fingerprint the plain way: every file the layout names, looked up one by one."""
    from doctor._cache import _FANOUT_SCOPE
    from doctor._layout import stage_dirs

    paths = [layout.manifest, layout.run_config, layout.run_pid, layout.run_lock, layout.graph]
    if not layout.top.progress.exists():  # read only for a run without events
        paths.append(layout.run_out)
    for scope in layout.scopes:
        paths += [scope.progress, scope.final, scope.checkpoint, scope.live]
        for stage in stage_dirs(scope.path):
            paths += [*stage.status_files, *stage.stdout_logs]
        paths += scope.worktree_status_files(layout.run_id)
        m = _FANOUT_SCOPE.fullmatch(scope.scope)
        if m is not None:
            fanout = layout.path / m["prefix"] if m["prefix"] else layout.path
            paths.append(fanout / m["fanout"] / "parallel_results.json")
    out = {}
    for p in paths:
        try:
            st = p.lstat()
        except OSError:
            continue
        out[os.path.relpath(p, layout.path)] = [st.st_size, st.st_mtime_ns, st.st_ino]
    return out


def test_a_fingerprint_is_every_file_the_layout_names_looked_up_one_by_one() -> None:
    from doctor._cache import fingerprint
    from doctor._discovery import list_run_dirs
    from doctor._layout import discover

    roots = sorted({p.parent.parent for p in FIXTURES.glob("**/progress.ndjson")})
    runs = [discover(p) for p in list_run_dirs([r for r in roots if r.is_dir()])]
    assert len(runs) > 20
    assert any(len(x.scopes) > 2 for x in runs)  # branches and restarts
    assert any(k.count("/") > 1 for x in runs for k in fingerprint(x))  # stage status files
    for layout in runs:
        assert fingerprint(layout) == _every_named_file(layout), layout.path


def test_a_runs_key_resolving_its_root_once_is_the_key_of_its_resolved_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from doctor._cache import RunCache
    from doctor._layout import discover

    real = tmp_path / "real"
    (real / "r1").mkdir(parents=True)
    (real / "elsewhere").mkdir()
    (real / "linked").symlink_to(real / "elsewhere")  # a run directory that is a symlink
    (tmp_path / "root").symlink_to(real)  # a root that is one
    monkeypatch.chdir(tmp_path)
    cache = RunCache(tmp_path / "cache", "x")
    paths = [
        real / "r1",
        tmp_path / "root" / "r1",
        Path("root/r1"),
        Path("real/../root/r1"),
        tmp_path / "root" / "linked",
        Path("r1-missing"),
    ]
    for path in paths:
        layout = discover(path)
        assert cache.key_of(layout) == RunCache.key(layout), path
    assert len({cache.key_of(discover(p)) for p in paths[:4]}) == 1


def test_a_run_key_keeps_letters_digits_and_dashes_as_every_earlier_cache_did() -> None:
    # Keys name the entries earlier scans wrote: the same key for every run name, or a
    # rescan reads the fleet again. The earlier rule, character by character:
    from doctor._cache import RunCache

    def earlier(name: str) -> str:
        return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:64]

    names = ["".join(map(chr, range(start, start + 64))) for start in range(0, 0x30000, 64)]
    names += ["fleet-0001", "a b/c", "\udcff\udc80", "ｒｕｎ①", "x" * 100]
    for name in names:
        layout = RunLayout(run_id=name, path=Path("/runs") / "r", layout="kilroy", scopes=())
        assert RunCache.key(layout, "/runs/r").rsplit("-", 1)[0] == earlier(name)


def test_a_runs_events_file_holds_its_rows_of_the_events_table_in_seq_order(
    tmp_path: Path,
) -> None:
    # Streams of runs interleaved (a run's ids not consecutive), rows of one stream deleted
    # and appended again after the others (a stream re-read precisely), a row without an
    # event (a torn line): each run's file is its rows of `events`, in `seq` order.
    import duckdb

    from doctor._cache import RunCache
    from doctor._ndjson import EVENT_COLUMNS, register_streams
    from doctor._tables import new_connection

    con = new_connection(2)
    streams = [("A", ""), ("B", ""), ("A", "parallel/x/01-k"), ("A", "restart-1"), ("C", "")]
    ids = register_streams(con, [(r, s, tmp_path / f"{i}") for i, (r, s) in enumerate(streams)])
    con.execute(
        "INSERT INTO events_base (stream_id, ts, event, node_id) "
        "SELECT $ids[1 + (i * 7) % 5], TIMESTAMP_NS '2026-04-28 10:00:00' + to_seconds(i), "
        "CASE WHEN i % 97 = 0 THEN NULL ELSE 'e' || (i % 5) END, 'n' || (i % 3) "
        "FROM range(20000) t(i)",
        {"ids": ids},
    )
    con.execute("DELETE FROM events_base WHERE stream_id = $s AND rowid < 5000", {"s": ids[0]})
    con.execute(
        "INSERT INTO events_base (stream_id, ts, event) SELECT $s, ts, 'again' FROM events_base "
        "WHERE stream_id = $t LIMIT 3000",
        {"s": ids[0], "t": ids[2]},
    )
    cache = RunCache(tmp_path / "cache", "x")
    files = cache.write_events(con, {"A": "A-1", "B": "B-1", "C": "C-1"})
    cols = ", ".join(f'"{k}"' for k in EVENT_COLUMNS if k != "raw")
    for run_id, rel in files.items():
        path = str(tmp_path / "cache" / rel)
        written = duckdb.sql(
            f"SELECT * FROM read_parquet('{path}', hive_partitioning = false)"
        ).fetchall()
        expected = con.execute(
            f"SELECT {cols} FROM events WHERE run_id = $r ORDER BY seq", {"r": run_id}
        ).fetchall()
        assert written == expected and written
    assert sorted(files) == ["A", "B", "C"]


@pytest.mark.parametrize("swap", ["fifo", "huge"])
def test_a_cache_entry_that_is_no_file_a_scan_wrote_is_read_again_never_waited_on(
    root: Path, tmp_path: Path, swap: str
) -> None:
    # Before: a FIFO in an entry's place hung every scan on its read; a 1 GiB file there was
    # read whole (1.3 GiB of memory).
    env = {**os.environ, "RUNDOCTOR_CACHE": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "doctor", "scan", "--root", str(root), "--json"]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    entries = sorted((tmp_path / "cache" / "runs").glob("*.json"))
    assert len(entries) == 2, first.stderr
    for p in entries:
        p.unlink()
        if swap == "fifo":
            os.mkfifo(p)
        else:
            with p.open("wb") as f:
                f.truncate(1 << 30)
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert second.returncode == first.returncode, second.stderr
    assert json.loads(second.stdout)["fleet"]["cache_notes"] == [
        "2 runs read again from the run directory: the cache entry was damaged"
    ]

    def runs(out: str) -> list[tuple[str, str, list[str]]]:  # ages move with the clock
        return [
            (r["run_id"], r["state"], [f["code"] for f in r["findings"]])
            for r in json.loads(out)["runs"]
        ]

    assert runs(second.stdout) == runs(first.stdout)


def test_one_fact_of_every_cached_run_keeps_little_of_their_parsed_facts(tmp_path: Path) -> None:
    # doctor metrics reads last_progress_at of every run, the fleet report failure_reasons:
    # each parsed the run's cached facts whole and kept them, 250 MB for 10,000 runs.
    import tracemalloc

    from fixtures.fleet import build_fleet

    root = build_fleet(tmp_path / "fleet", runs=40, events_per_run=300, kilroy=True)
    config = DoctorConfig(roots=(root,), now=NOW, cache_dir=tmp_path / "cache")
    scan(config)
    rescan = scan(config)
    assert rescan.fleet["reused"] == 40
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        seen = [
            (d.facts.get("last_progress_at"), d.facts.get("failure_reasons"))
            for d in rescan.diagnoses
        ]
        kept = tracemalloc.get_traced_memory()[0] - base
        whole = [len(d.facts) for d in rescan.diagnoses]  # looking into them all keeps them
        every = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert all(at is not None for at, _ in seen) and any(reasons for _, reasons in seen)
    assert all(n > 10 for n in whole)
    assert kept < every / 3
