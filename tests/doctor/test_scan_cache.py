"""``doctor scan`` with a cache: a rescan gives the cold scan's result, whatever the runs' states.

The runs below cover the states a run can be in when it is scanned again: finished, orphaned
with a dead owner, orphaned with no ``run.pid`` at all (killed by a crash), running and
stalled with a live owner (this test process), and stalled with an unknown owner whose
heartbeats still arrive.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from doctor import (
    DoctorConfig,
    ScanResult,
    _cache,
    _scan,
    _scan_batch,
    _scan_fleet,
    _scan_outcome,
    _scan_plan,
    _scan_pool,
    scan,
)

NOW = 1777377600.0  # 2026-04-28T12:00:00Z
DEAD_PID = "99999999"


def _line(event: str, at: str, **fields: Any) -> str:
    return json.dumps({"event": event, "ts": f"2026-04-28T{at}Z", **fields}) + "\n"


def _attempt(node: str, start: str, end: str, status: str = "success") -> str:
    return _line("stage_attempt_start", start, node_id=node, attempt=1) + _line(
        "stage_attempt_end", end, node_id=node, attempt=1, status=status
    )


def _run(
    root: Path, run_id: str, stream: str, *, pid: str | None, final: str | None = None
) -> Path:
    run = root / run_id
    run.mkdir(parents=True)
    if pid is not None:
        (run / "run.pid").write_text(pid)
    (run / "progress.ndjson").write_text(stream)
    if final is not None:
        (run / "final.json").write_text(json.dumps({"status": final, "run_id": run_id}))
    return run


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    me = str(os.getpid())
    _run(
        root,
        "done",
        _attempt("a", "09:00:00", "09:00:05") + _line("run_completed", "09:00:06"),
        pid=DEAD_PID,
        final="success",
    )
    _run(
        root,
        "dead",
        _attempt("a", "08:00:00", "08:00:01", "fail")
        + _line("stage_attempt_start", "08:00:02", node_id="b"),
        pid=DEAD_PID,
    )
    _run(  # killed by a crash: no final.json, no run.pid, a torn last line
        root,
        "crashed",
        _attempt("a", "07:00:00", "07:00:01") + '{"event":"stage_heartbeat","ts":"2026-0',
        pid=None,
    )
    _run(
        root,
        "running",
        _attempt("a", "11:50:00", "11:51:00")
        + _line("stage_attempt_start", "11:58:00", node_id="b"),
        pid=me,
    )
    _run(
        root,
        "stalled",
        _line("stage_attempt_start", "10:00:00", node_id="c")
        + _line("stage_heartbeat", "11:59:00", node_id="c"),
        pid=me,
    )
    _run(  # an unknown owner whose heartbeats still arrive: stalled, not orphaned
        root,
        "quiet",
        _line("stage_attempt_start", "11:00:00", node_id="d")
        + _line("stage_heartbeat", "11:57:00", node_id="d"),
        pid=None,
    )
    return root


@pytest.fixture
def config(root: Path, tmp_path: Path) -> DoctorConfig:
    return DoctorConfig(roots=(root,), cache_dir=tmp_path / "cache", now=NOW)


@pytest.fixture(params=["partitioned", "partitioned_by_twos", "one_by_one"])
def writer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each way a batch's events files are written: the runs here are small, so by one
    partitioned ``COPY`` (or several, each of at most ``_PARTITIONS_AT_ONCE`` runs); or one
    ``COPY`` per run, as for runs of thousands of events."""
    if request.param == "one_by_one":
        monkeypatch.setattr(_cache, "PARTITIONED_BELOW_ROWS", 0)
    if request.param == "partitioned_by_twos":
        monkeypatch.setattr(_cache, "_PARTITIONS_AT_ONCE", 2)
    return str(request.param)


#: The test runs once per :func:`writer`.
both_writers = pytest.mark.usefixtures("writer")


def _text(result: ScanResult) -> str:
    """The scan's JSON as `doctor scan --json` prints it (the cached runs' findings spliced
    as kept), checked to be the standard library's encoding of :meth:`ScanResult.to_json`."""
    text = result.to_json_text()
    pieces: list[str] = []
    result.write_json_text(pieces.append)  # what the command writes, piece by piece
    assert "".join(pieces) == text
    assert text == json.dumps(result.to_json(), indent=2, default=str)
    return text


def _json(result: ScanResult) -> str:
    """The scan's JSON but for how many runs it read and reused (a cold scan reads them all),
    its printed text checked on the way (:func:`_text`)."""
    _text(result)
    data = result.to_json()
    data["fleet"] = {k: v for k, v in data["fleet"].items() if k not in ("read", "reused")}
    return json.dumps(data, sort_keys=True, indent=1)


def _entry(path: Path) -> tuple[dict[str, Any], bytes]:
    """A cache entry's first line (parsed) and the kept text after it, checked whole."""
    head, _, body = path.read_bytes().partition(b"\n")
    entry = json.loads(head)
    from doctor._kept import SEPARATOR

    layout, n = entry["body"], len(entry["body"]["findings"])
    sizes = sum(size for _, size in layout["findings"]) + len(SEPARATOR) * max(0, n - 1)
    assert len(body) == layout["facts"] + sizes
    return entry, body


def _uncached(config: DoctorConfig) -> str:
    return _json(scan(replace(config, cache_dir=None)))


@both_writers
def test_a_rescan_with_nothing_changed_reads_no_run_and_gives_the_cold_result(
    config: DoctorConfig,
) -> None:
    cold = _uncached(config)
    first = scan(config)
    again = scan(config)
    assert {d.state for d in first.diagnoses} == {
        "succeeded",
        "orphaned",
        "running",
        "stalled",
    }
    assert (again.fleet["read"], again.fleet["reused"]) == (0, 6)
    assert _json(first) == cold
    assert _json(again) == cold


def _kept_runs(result: ScanResult) -> int:
    """How many of the result's runs are still kept as text (not built into diagnoses)."""
    from doctor._diagnose import _Diagnoses, _KeptRun

    runs = result.diagnoses
    assert isinstance(runs, _Diagnoses)
    return sum(isinstance(item, _KeptRun) for item in runs._items)


def test_a_rescan_prints_the_cold_scans_text_splicing_every_run_kept(
    config: DoctorConfig,
) -> None:
    def printed(result: ScanResult) -> str:
        text = result.to_json_text()
        for key in ("read", "reused"):
            text = text.replace(f'"{key}": {result.fleet[key]}', f'"{key}": -')
        return text

    cold = printed(scan(replace(config, cache_dir=None)))
    scan(config)
    for later in (NOW, NOW + 5):  # ages change: "stalled" and "quiet"'s idle_s
        again = scan(replace(config, now=later))
        assert again.fleet["read"] == 0
        assert _kept_runs(again) == 6  # nothing was parsed into diagnoses to print it
        text = printed(again)
        assert _kept_runs(again) == 6
        if later == NOW:
            assert text == cold
        assert text == printed(scan(replace(config, cache_dir=None, now=later)))
        assert again.exit_code == scan(replace(config, cache_dir=None, now=later)).exit_code
        assert _text(again)  # and the diagnoses, built, encode to the same text


def _finding(code: str, severity: str, **evidence: Any) -> dict[str, Any]:
    return {
        "code": code,
        "severity": severity,
        "scope": "parallel/f/01-é",
        "node_id": None,
        "summary": 'quote " \\ \n tab \t \u2028 \U0001f600 no progress for 2.0 h',
        "evidence": {"n": [1, 2.5, None, True, {"idle_s": 3}], "nan": float("inf"), **evidence},
        "repair": None,
    }


def test_kept_findings_are_the_findings_as_the_standard_library_writes_them() -> None:
    from doctor._json_out import dumps_indented
    from doctor._kept import FINDINGS_LEVEL, KeptFindings

    findings = [_finding("a", "critical", idle_s=1e-300), _finding("b", "info", idle_s=None)]
    kept = KeptFindings.of(findings)
    assert list(kept) == findings and kept[1] == findings[1] and kept[-1] == findings[-1]
    assert kept.ranks == (3, 0) and kept.clocked == (0, 1)
    assert [kept.text(i) for i in (0, 1)] == kept.texts()
    assert kept.json_text().level == FINDINGS_LEVEL - 1

    def printed(findings: Any) -> str:
        return dumps_indented({"runs": [{"findings": findings}]})

    assert printed(kept.json_text()) == json.dumps({"runs": [{"findings": findings}]}, indent=2)
    assert dumps_indented([kept.json_text()]) == json.dumps([findings], indent=2)
    assert printed(KeptFindings.of([]).json_text()) == printed([])
    changed = {**findings[1], "summary": "now"}
    for text in (None, dumps_indented(changed, FINDINGS_LEVEL)):
        again = kept.replaced({1: (changed, text)})
        assert list(again) == [findings[0], changed]
        assert printed(again.json_text()) == printed([findings[0], changed])
        assert again.replaced({0: (findings[0], None)}).block == again.block


@pytest.mark.parametrize(
    ("old", "new"),
    [(16512037.928, 16519237.928), (5, 7205.5), (None, 2.0), (1e-300, 1e300), (0.5, 0.5)],
)
@pytest.mark.parametrize("last", [True, False])
def test_a_clocked_findings_patched_text_is_its_text_written_anew(
    old: Any, new: Any, last: bool
) -> None:
    from doctor._json_out import dumps_indented
    from doctor._kept import FINDINGS_LEVEL

    f = _finding("missing_final", "critical", idle_s=old, last_progress_at="x")
    if last:  # idle_s the evidence's last key
        f["evidence"] = {k: v for k, v in f["evidence"].items() if k != "idle_s"} | {"idle_s": old}
    g = {**f, "summary": f["summary"].replace("2.0 h", "4.0 h"), "evidence": {**f["evidence"]}}
    g["evidence"]["idle_s"] = new
    text = dumps_indented(f, FINDINGS_LEVEL)
    assert _scan_outcome._patched(text, f, g) == dumps_indented(g, FINDINGS_LEVEL)


def test_a_rescan_later_gives_what_a_cold_scan_gives_at_that_clock(config: DoctorConfig) -> None:
    scan(config)
    for later in (NOW + 30, NOW + 3600, NOW + 86400):
        at = replace(config, now=later)
        assert _json(scan(at)) == _uncached(at)


def test_a_rescan_later_rereads_only_the_runs_whose_state_the_clock_changed(
    config: DoctorConfig,
) -> None:
    scan(config)
    later = scan(replace(config, now=NOW + 3600))
    # "running" is stalled an hour later and "quiet" orphaned: both are diagnosed again.
    states = {d.run_id: d.state for d in later.diagnoses}
    assert (states["running"], states["quiet"]) == ("stalled", "orphaned")
    assert later.fleet["read"] == 2


def test_a_stalled_run_reused_later_says_how_long_it_has_been_stalled_now(
    config: DoctorConfig,
) -> None:
    def missing(result: ScanResult) -> dict[str, Any]:
        (f,) = [
            f.to_json()
            for d in result.diagnoses
            if d.run_id == "stalled"
            for f in d.findings
            if f.code == "missing_final"
        ]
        return f

    first = missing(scan(config))
    at = replace(config, now=NOW + 7200)
    later = scan(at)
    assert later.fleet["reused"] >= 1
    assert missing(later)["evidence"]["idle_s"] == first["evidence"]["idle_s"] + 7200
    assert "no progress for 4.0 h" in missing(later)["summary"]
    assert _json(later) == _uncached(at)


@both_writers
def test_a_rescan_after_one_run_grew_rereads_that_run_only(
    config: DoctorConfig, root: Path
) -> None:
    scan(config)
    with (root / "running/progress.ndjson").open("a") as fh:
        fh.write(_line("stage_heartbeat", "11:59:30", node_id="b"))
    again = scan(config)
    assert again.fleet["read"] == 1
    assert _json(again) == _uncached(config)


def test_the_run_that_grew_is_diagnosed_on_a_thread_while_the_others_are_planned(
    config: DoctorConfig, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scan(config)
    on_thread: list[tuple[str, ...]] = []
    real = _scan_plan._on_thread

    def spy(batch: Any) -> Any:
        on_thread.append(tuple(x.run_id for x in batch.layouts))
        return real(batch)

    monkeypatch.setattr(_scan_plan, "_on_thread", spy)
    assert scan(config).fleet["read"] == 0
    assert on_thread == []  # nothing written since the entries were
    with (root / "running/progress.ndjson").open("a") as fh:
        fh.write(_line("stage_heartbeat", "11:59:30", node_id="b"))
    again = scan(config)
    assert on_thread == [("running",)]
    assert again.fleet["read"] == 1
    assert _json(again) == _uncached(config)


def test_a_plan_that_fails_waits_for_the_batch_on_its_thread(
    config: DoctorConfig, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from doctor._diagnose import _settings_key
    from doctor._layout import discover

    scan(config)
    with (root / "running/progress.ndjson").open("a") as fh:
        fh.write(_line("stage_heartbeat", "11:59:30", node_id="b"))
    finished: list[bool] = []
    real_thread, real_plan = _scan_plan._on_thread, _scan_plan._plan

    def on_thread(batch: Any) -> Any:
        future = real_thread(batch)
        future.add_done_callback(lambda f: finished.append(f.exception() is None))
        return future

    def plan(*args: Any, **kwargs: Any) -> None:
        if kwargs.get("progress") is not None:  # the other runs' plan, after the thread starts
            raise RuntimeError("the plan failed")
        real_plan(*args, **kwargs)

    monkeypatch.setattr(_scan_plan, "_on_thread", on_thread)
    monkeypatch.setattr(_scan_plan, "_plan", plan)
    layouts = [discover(p) for p in sorted(root.iterdir())]
    with pytest.raises(RuntimeError, match="the plan failed"):
        _scan.scan_runs(config, layouts, _settings_key(config), progress=lambda d, t: None)
    assert finished == [True]  # the batch was done before the failure went on


@both_writers
def test_a_rescan_after_a_dead_run_was_touched_rereads_it_with_the_same_result(
    config: DoctorConfig, root: Path
) -> None:
    scan(config)
    path = root / "dead/progress.ndjson"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    again = scan(config)
    assert again.fleet["read"] == 1
    assert _json(again) == _uncached(config)


def test_a_rescan_after_an_owner_died_rereads_its_run(config: DoctorConfig, root: Path) -> None:
    scan(config)
    cache = config.cache_dir
    assert cache is not None
    # The owner's pid is recorded as it was; it is the owner that died, not the file.
    (entry_path,) = (cache / "runs").glob("stalled-*.json")
    entry, body = _entry(entry_path)
    entry["clock"]["pid"] = int(DEAD_PID)
    entry_path.write_bytes(json.dumps(entry).encode() + b"\n" + body)
    assert scan(config).fleet["read"] == 1


def test_a_rescan_after_a_named_stage_process_ended_rereads_its_run(tmp_path: Path) -> None:
    # A killed engine's stage still working in its run is named by missing_final (kill it
    # before a resume). Files unchanged, the rescan kept that advice after the process ended.
    import time
    from datetime import UTC, datetime

    root = tmp_path / "runs"
    run = _run(root, "left", "", pid=DEAD_PID)
    code = "import time; time.sleep(600)"
    with subprocess.Popen([sys.executable, "-c", code], cwd=run, start_new_session=True) as child:
        try:
            at = datetime.now(UTC).strftime("%H:%M:%S")
            day = datetime.now(UTC).strftime("%Y-%m-%d")
            stream = _line("stage_attempt_start", at, node_id="build", attempt=1)
            (run / "progress.ndjson").write_text(stream.replace("2026-04-28", day))
            config = DoctorConfig(roots=(root,), cache_dir=tmp_path / "cache", now=time.time())

            def named(result: ScanResult) -> list[int]:
                (d,) = result.diagnoses
                (f,) = [f for f in d.to_json()["findings"] if f["code"] == "missing_final"]
                return [p["pid"] for p in f["evidence"].get("stage_processes", [])]

            assert named(scan(config)) == [child.pid]
            assert scan(config).fleet["read"] == 0  # the process still works: kept
        finally:
            child.kill()
    again = scan(config)
    assert again.fleet["read"] == 1 and named(again) == []
    assert _json(again) == _uncached(config)


def test_facts_of_a_kept_run_whose_entry_went_are_a_doctor_error_not_a_crash(
    config: DoctorConfig,
) -> None:
    # A kept run's facts are read from its entry when looked into (`doctor metrics`, `report
    # --fleet`); a prune that removed the entry meanwhile was a ValueError, which the
    # command line shows as an internal error, exit 70 (found by fleet11).
    from doctor._errors import DoctorError

    scan(config)
    again = scan(config)
    assert again.fleet["read"] == 0
    cache = config.cache_dir
    assert cache is not None
    for entry in (cache / "runs").glob("*.json"):
        entry.unlink()
    with pytest.raises(DoctorError, match="replaced or removed since the scan read it") as err:
        [dict(d.facts) for d in again.diagnoses]  # as `doctor metrics` reads them
    assert err.value.exit_code == 2 and isinstance(err.value, ValueError)


def test_batches_of_any_size_give_the_same_result(
    config: DoctorConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = _uncached(config)
    monkeypatch.setattr(_scan_batch, "BATCH_RUNS", 1)
    assert _uncached(config) == whole
    monkeypatch.setattr(_scan_batch, "BATCH_RUNS", 4)
    assert _json(scan(config)) == whole
    assert _json(scan(config)) == whole


def test_small_batches_run_on_one_duckdb_thread_with_the_same_result(
    config: DoctorConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[int | None] = []
    real = _scan_pool.diagnose_batch

    def spy(batch: Any) -> Any:
        threads.append(batch.threads)
        return real(batch)

    monkeypatch.setattr(_scan_pool, "diagnose_batch", spy)
    small = _uncached(config)
    monkeypatch.setattr(_scan_batch, "ONE_THREAD_BYTES", 0)  # every batch on DuckDB's default
    assert _uncached(config) == small
    assert threads == [1, None]
    # --threads (config.threads) is the user's word, whatever the batch's size.
    monkeypatch.setattr(_scan_batch, "ONE_THREAD_BYTES", 1 << 40)
    _uncached(replace(config, threads=2))
    assert threads[-1] == 2


@pytest.mark.parametrize(
    ("sizes", "batches"),
    [
        ([1_430_000] * 1000, 16),  # the benchmark's fleet: 14.3 full batches, 16 even ones
        ([5 << 20] * 10, 1),  # one batch: no worker waits
        ([300 << 20] + [1 << 20] * 200, None),  # one run larger than a batch
        ([0] * 1200, 3),  # empty streams: batches of BATCH_RUNS (512) runs
    ],
)
def test_batches_are_even_and_as_many_as_a_multiple_of_the_workers(
    sizes: list[int], batches: int | None
) -> None:
    from types import SimpleNamespace

    layouts: Any = [SimpleNamespace(run_id=f"r{i}") for i in range(len(sizes))]
    by_run = {x.run_id: n for x, n in zip(layouts, sizes, strict=True)}
    cut = list(_scan_batch._batches(layouts, by_run, workers=2))
    assert [x for b in cut for x in b] == layouts  # every run once, in order
    assert all(len(b) <= _scan_batch.BATCH_RUNS for b in cut)
    totals = [sum(by_run[x.run_id] for x in b) for b in cut]
    limit = _scan_batch.BATCH_BYTES
    assert all(t <= limit or len(b) == 1 for t, b in zip(totals, cut, strict=True))
    if batches is not None:
        assert len(cut) == batches
    if batches and batches > 1 and sum(sizes):
        assert max(totals) - min(totals) <= max(sizes)  # even: within a run of each other


def _pools(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The worker counts of the scan's process pools, one per pool started, as they start."""
    pools: list[int] = []
    real = _scan._in_pool

    def in_pool(batches: Any, workers: int, *args: Any) -> Any:
        pools.append(workers)
        return real(batches, workers, *args)

    monkeypatch.setattr(_scan, "_in_pool", in_pool)
    return pools


def test_batches_diagnosed_by_worker_processes_give_the_same_result(
    config: DoctorConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = _uncached(config)
    monkeypatch.setattr(_scan_batch, "BATCH_RUNS", 2)
    monkeypatch.setattr(_scan, "PARALLEL_MIN_BYTES", 0)
    seen = _pools(monkeypatch)
    assert _json(scan(config)) == whole
    assert seen and seen[0] >= 1
    if (os.cpu_count() or 1) > 1:
        assert seen == [2]


@pytest.mark.parametrize("run_cost", [0, _scan.PARALLEL_MIN_BYTES // 4])
def test_many_small_runs_take_both_cores_though_their_bytes_are_few(
    config: DoctorConfig, monkeypatch: pytest.MonkeyPatch, run_cost: int
) -> None:
    """Whether worker processes are started counts each run's own cost, not only its
    streams' bytes (the six runs here are a few KB: by their bytes alone, one process)."""
    monkeypatch.setattr(_scan_batch, "BATCH_RUNS", 2)
    monkeypatch.setattr(_scan, "RUN_COST_BYTES", run_cost)
    pools = _pools(monkeypatch)
    scan(config)
    # Six runs at a quarter of the threshold each: workers, as many as the cores (up to 2).
    assert pools == (
        [min(2, os.cpu_count() or 1)] if run_cost and (os.cpu_count() or 1) > 1 else []
    )


def test_progress_reaches_the_total_only_when_every_run_is_diagnosed(
    config: DoctorConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_scan_batch, "BATCH_RUNS", 2)
    calls: list[tuple[int, int]] = []
    scan(config, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (6, 6)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert (2, 6) in calls and (4, 6) in calls  # one step per diagnosed batch


# --- the cache as a dataset ---------------------------------------------------------------------


@both_writers
def test_the_cached_events_are_a_parquet_dataset_partitioned_by_run(
    config: DoctorConfig,
) -> None:
    import duckdb

    result = scan(config)
    assert config.cache_dir is not None
    rows = duckdb.sql(
        f"SELECT run, count(*) FROM read_parquet('{config.cache_dir}/events/*/*.parquet', "
        "hive_partitioning = true) GROUP BY run"
    ).fetchall()
    counts = {run.split("-")[0]: n for run, n in rows}
    assert counts == {d.run_id: d.facts["events"] for d in result.diagnoses}


def test_small_runs_share_one_partitioned_write_and_larger_ones_get_one_each(
    config: DoctorConfig, writer: str
) -> None:
    scan(config)
    assert config.cache_dir is not None
    files = sorted(config.cache_dir.glob("events/run=*/*.parquet"))
    assert len(files) == 6
    # The partitioned COPY names a partition's files part-<batch>-<i>; a run's own COPY
    # part-<batch>. One batch here: one name.
    stems = {f.stem for f in files}
    assert len(stems) == 1
    assert stems.pop().endswith("-0") == writer.startswith("partitioned")


def test_duckdb_names_partitions_after_every_key_the_partitioned_write_takes(
    tmp_path: Path,
) -> None:
    """Keys of letters, digits and ``_.-`` only go through the partitioned write, which finds
    each run's file under ``run=<key>``: DuckDB must write such values as they are (a key it
    escaped would leave its run's entry naming a file that is elsewhere)."""
    import duckdb

    keys = ["v1.2-0a1b", "a_b-c", "UPPER.x", "..dots", ".hidden", "0-9_", "x."]
    assert all(_cache._HIVE_SAFE_KEY.fullmatch(k) for k in keys)
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT unnest($k) AS run, 1 AS v", {"k": keys})
    con.execute(
        f"COPY t TO '{tmp_path}' (FORMAT parquet, PARTITION_BY (run), "
        "WRITE_PARTITION_COLUMNS false, FILENAME_PATTERN 'p-{i}', OVERWRITE_OR_IGNORE)"
    )
    assert sorted(os.listdir(tmp_path)) == sorted(f"run={k}" for k in keys)


def test_a_partitioned_write_that_left_a_run_two_files_is_written_run_by_run(
    config: DoctorConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should DuckDB split a run's rows over two files (it reopens a partition's file past
    ``partitioned_write_max_open_files``), the batch's files go and each run gets its own
    ``COPY``: one file per run, whose rows the rescan resumes from."""
    import uuid

    fixed = uuid.UUID(int=42)
    monkeypatch.setattr(_cache.uuid, "uuid4", lambda: fixed)
    cold = _uncached(config)
    assert config.cache_dir is not None
    for key in ("dead", "running"):  # a second file of the batch, as a reopened partition's
        folder = config.cache_dir / "events" / f"run={_cache.RunCache.key(_layout_of(config, key))}"
        folder.mkdir(parents=True)
        (folder / f"part-{fixed.hex}-1.parquet").write_bytes(b"")
    assert _json(scan(config)) == cold
    per_run = [sorted(d.iterdir()) for d in (config.cache_dir / "events").iterdir()]
    assert [[f.name for f in files] for files in per_run] == [[f"part-{fixed.hex}.parquet"]] * 6
    again = scan(config)
    assert (again.fleet["read"], _json(again)) == (0, cold)


def test_a_file_a_concurrent_prune_took_during_the_partitioned_write_is_read_again(
    config: DoctorConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The partitioned COPY writes a batch's files together; another scan's prune can delete
    one before the COPY lists them. The run's entry still names its file, so the next scan
    reads the run again (an entry without a file would be a run without events, forever)."""
    cold = _uncached(config)
    listdir = os.listdir

    def pruned_meanwhile(path: Any) -> list[str]:
        names = listdir(path)
        if "run=dead-" in str(path):
            for name in names:
                if name.startswith("part-"):
                    os.unlink(os.path.join(path, name))
            return listdir(path)
        return names

    monkeypatch.setattr(_cache.os, "listdir", pruned_meanwhile)
    assert _json(scan(config)) == cold
    monkeypatch.undo()
    assert config.cache_dir is not None
    (entry,) = (config.cache_dir / "runs").glob("dead-*.json")
    assert _entry(entry)[0]["events"] is not None
    again = scan(config)
    assert (again.fleet["read"], _json(again)) == (1, cold)
    assert len(list(config.cache_dir.glob("events/run=dead-*/*.parquet"))) == 1


def _layout_of(config: DoctorConfig, run_id: str) -> Any:
    from doctor._layout import discover

    return discover(config.roots[0] / run_id)


# --- concurrent scans ---------------------------------------------------------------------------


def _without_ages(text: str) -> Any:
    """A scan's JSON without what depends on when it ran (the processes' clocks differ)."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("idle_s", "read", "reused")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(json.loads(text))


def test_two_scans_at_once_on_one_cache_both_give_the_cold_result(tmp_path: Path) -> None:
    from fixtures.fleet import build_fleet

    root = build_fleet(tmp_path / "runs", runs=40, events_per_run=400, kilroy=True, crashed=0.5)
    cache = tmp_path / "cache"
    doctor = [sys.executable, "-m", "doctor", "scan", "--root", str(root), "--json"]
    env = {k: v for k, v in os.environ.items() if k != "RUNDOCTOR_CACHE"}
    cold = subprocess.run(doctor, env=env, capture_output=True, text=True, check=False)
    assert cold.returncode in (0, 1), cold.stderr
    cached_env = {**env, "RUNDOCTOR_CACHE": str(cache)}
    procs = [
        subprocess.Popen(doctor, env=cached_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    outs = [p.communicate() for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == cold.returncode, err.decode()
        assert _without_ages(out.decode()) == _without_ages(cold.stdout)
    # The cache is whole: every entry reads, no temporary file is left, a third scan gives
    # the same (reading again the runs whose events file the other scan pruned, if any), and
    # a fourth reuses every run, each with one events file.
    assert not list(cache.rglob("*.tmp"))
    for entry in (cache / "runs").glob("*.json"):
        _entry(entry)
    for _ in range(2):
        again = subprocess.run(doctor, env=cached_env, capture_output=True, text=True)
        assert _without_ages(again.stdout) == _without_ages(cold.stdout)
    assert json.loads(again.stdout)["fleet"]["reused"] == 40
    runs = list((cache / "events").iterdir())
    assert len(runs) == 40 and all(len(list(d.glob("*.parquet"))) == 1 for d in runs)


# --- the fleet phase ----------------------------------------------------------------------------


@pytest.mark.parametrize("alive", [False, True])
def test_fleet_idle_gaps_in_python_are_those_of_the_sql(tmp_path: Path, alive: bool) -> None:
    from doctor._detectors import select
    from doctor._discovery import list_run_dirs
    from doctor._layout import discover
    from fixtures.fleet import build_fleet

    root = build_fleet(tmp_path / "runs", runs=8, events_per_run=300, kilroy=True, crashed=0.5)
    for i in (5, 6, 7):  # a month later: nothing ran in between
        p = root / f"fleet-{i:04d}" / "progress.ndjson"
        p.write_text(p.read_text().replace("2026-05-2", "2026-06-2"))
    if alive:  # one owner alive: its run lives until now
        (root / "fleet-0007" / "run.pid").write_text(str(os.getpid()))
    # Progress every 32 s in each run (heartbeats between), runs an hour apart.
    config = DoctorConfig(roots=(root,), now=1.9e9, idle_gap_s=20)
    layouts = [discover(p) for p in list_run_dirs([root])]
    outcomes, _ = _scan.scan_runs(config, layouts, "x", None)
    found, notes = _scan.fleet_findings(config, layouts, outcomes)
    in_python = [f.to_json() | {"run": f.run_id} for f in found]
    found, notes_sql = _scan_fleet._fleet_in_duckdb(config, layouts, outcomes, select(["idle_gap"]))
    in_sql = [f.to_json() | {"run": f.run_id} for f in found]
    assert in_python == in_sql
    assert notes == notes_sql == []  # no queue, no note on its clock
    assert any(f["run"] is None for f in in_sql), "the month is a fleet gap"
    assert any(f["run"] is not None for f in in_sql), "and a gap of some runs"


DOC = Path(__file__).resolve().parents[2] / "docs" / "artifacts.md"


def _dataset_doc() -> str:
    text = DOC.read_text()
    start = text.index("### The events dataset")
    return text[start : text.index("\n## ", start)]


def _blocks(lang: str) -> list[str]:
    parts = _dataset_doc().split(f"```{lang}\n")[1:]
    return [p.split("```", 1)[0] for p in parts]


@both_writers
def test_the_documented_dataset_queries_run_on_a_real_cache(
    config: DoctorConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    import duckdb

    scan(config)
    cache = str(config.cache_dir)
    (sql,) = _blocks("sql")
    rows = duckdb.sql(sql.replace("DIR", cache)).fetchall()
    assert rows and rows[0][0] == "dead" and rows[0][2] == 1  # its one failed attempt
    (python,) = _blocks("python")
    exec(compile(python.replace("DIR", cache), str(DOC), "exec"), {})
    printed = capsys.readouterr().out
    assert "stalled" in printed and "heartbeats" in printed


@both_writers
def test_the_documented_dataset_schema_is_the_one_written(config: DoctorConfig) -> None:
    import duckdb

    scan(config)
    columns = [
        name
        for name, *_ in duckdb.sql(
            f"DESCRIBE SELECT * FROM read_parquet('{config.cache_dir}/events/*/*.parquet', "
            "hive_partitioning = true)"
        ).fetchall()
    ]
    table = _dataset_doc().split("| column |", 1)[1].split("\n\n", 1)[0]
    first_cells = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    documented = [c for cell in first_cells for c in cell.split("`")[1::2]]
    assert sorted(documented) == sorted(columns)


def test_duckdb_draws_no_progress_bar_that_would_corrupt_json_output() -> None:
    # A batch's query over 2 s (a busy machine) drew DuckDB's bar on stdout, before `--json`.
    from doctor._tables import new_connection

    con = new_connection(1)
    assert con.sql("SELECT current_setting('enable_progress_bar')").fetchall() == [(False,)]


@both_writers
def test_the_dataset_holds_one_file_per_run_after_rereads_and_interrupted_scans(
    config: DoctorConfig, root: Path
) -> None:
    scan(config)
    assert config.cache_dir is not None
    events = config.cache_dir / "events"
    (first,) = (events).glob("run=dead-*")
    stray = first / "part-left-by-an-interrupted-scan.parquet"
    stray.write_bytes(b"")
    with (root / "dead/progress.ndjson").open("a") as fh:
        fh.write(_line("run_failed", "08:00:09", reason="gave up"))
    scan(config)
    assert [len(list(d.glob("*.parquet"))) for d in events.iterdir()] == [1] * 6
    assert not stray.exists()


@both_writers
def test_a_run_whose_events_file_went_is_read_again(config: DoctorConfig) -> None:
    scan(config)
    assert config.cache_dir is not None
    (gone,) = config.cache_dir.glob("events/run=done-*/*.parquet")
    gone.unlink()  # what a concurrent scan's prune can do
    again = scan(config)
    assert again.fleet["read"] == 1
    assert list(gone.parent.glob("*.parquet"))


def test_a_rescan_after_a_resume_rewrote_a_restarted_run_s_base_final_json_reads_its_end(
    tmp_path: Path,
) -> None:
    # loop_restart_sigterm_resumed while its resume ran: the base final.json was still the
    # copy of restart-1's (Kilroy saves a stop to both), so the run read failed with events
    # after its end. The resume's success, written to the base directory only, is its end.
    runs = Path(__file__).resolve().parents[2] / "fixtures" / "kilroy" / "runs"
    real = runs / "loop_restart_sigterm_resumed"
    root = tmp_path / "runs"
    run = root / real.name
    shutil.copytree(real, run)
    (run / "final.json").write_bytes((real / "restart-1" / "final.json").read_bytes())
    later = 1796572800.0  # 2026-12-06T16:00:00Z, after the run
    config = DoctorConfig(roots=(root,), cache_dir=tmp_path / "cache", now=later)
    (stale,) = scan(config).diagnoses
    assert stale.state == "failed"
    assert [f.code for f in stale.findings] == ["post_terminal_activity"]
    (run / "final.json").write_bytes((real / "final.json").read_bytes())
    again = scan(config)
    assert again.fleet["read"] == 1
    (ended,) = again.diagnoses
    assert (ended.state, ended.findings) == ("succeeded", ())
    assert _json(again) == _uncached(config)


# --- a cache that cannot take a batch, or be resumed from ---------------------------------------


def _no_space(*args: Any, **kwargs: Any) -> None:
    raise OSError(28, "No space left on device")


def _noted(result: ScanResult) -> tuple[list[str], str]:
    """The scan's cache notes, and its :func:`_json` without them."""
    notes = result.fleet.pop("cache_notes", [])
    return notes, _json(result)


@both_writers
def test_a_full_cache_leaves_every_run_s_diagnosis_as_without_one_and_says_so(
    config: DoctorConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    cold = _uncached(config)
    monkeypatch.setattr(_cache.RunCache, "save", _no_space)
    notes, full = _noted(scan(config))
    assert notes == [
        "6 runs not saved to the cache: No space left on device; the next scan reads them again"
    ]
    assert full == cold
    # No events file is left that no entry names: on a full disk it would keep it full.
    assert config.cache_dir is not None
    assert list(config.cache_dir.glob("events/*/*.parquet")) == []


def test_a_cache_whose_events_cannot_be_written_is_a_note_not_each_run_s_finding(
    config: DoctorConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    import duckdb

    def write_fails(*args: Any, **kwargs: Any) -> None:
        raise duckdb.IOException("IO Error: Could not write file: No space left on device")

    cold = _uncached(config)
    monkeypatch.setattr(_cache.RunCache, "_write_events", write_fails)
    notes, result = _noted(scan(config))
    assert notes == [
        "6 runs not saved to the cache: IOException: IO Error: Could not write file: No space "
        "left on device; the next scan reads them again"
    ]
    assert result == cold
    monkeypatch.undo()
    assert scan(config).fleet["read"] == 6  # nothing was kept: every run is read again


def test_a_truncated_events_file_is_read_around_and_the_scan_says_so(
    config: DoctorConfig, root: Path
) -> None:
    scan(config)
    assert config.cache_dir is not None
    for path in config.cache_dir.glob("events/*/*.parquet"):
        path.write_bytes(path.read_bytes()[:100])
    with (root / "dead" / "progress.ndjson").open("a") as fh:  # resumed from its events file
        fh.write(_line("stage_heartbeat", "08:00:03", node_id="b"))
    (note,), again = _noted(scan(config))
    assert note.startswith("1 run read again from the run directory: the cached events could not")
    assert again == _uncached(config)


def test_a_cache_written_by_other_code_is_read_as_empty(
    config: DoctorConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another release, or an edited install whose version did not move: its entries are stale.
    scan(config)
    assert (scan(config).fleet["read"], scan(config).fleet["reused"]) == (0, 6)
    monkeypatch.setattr(_cache, "code_key", lambda packages=(): "another0release0")
    again = scan(config)
    assert (again.fleet["read"], again.fleet["reused"]) == (6, 0)
    assert _json(again) == _uncached(config)
    assert scan(config).fleet["reused"] == 6  # refilled for this code


def test_the_code_key_moves_with_any_module_of_the_packages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "rdcodekey"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "rules.py").write_text("LIMIT = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = _cache.code_key(("rdcodekey",))
    _cache.code_key.cache_clear()
    assert _cache.code_key(("rdcodekey",)) == before  # the same code, the same key
    (package / "sub" / "rules.py").write_text("LIMIT = 4\n")
    _cache.code_key.cache_clear()
    assert _cache.code_key(("rdcodekey",)) != before
    _cache.code_key.cache_clear()


def _wide_fleet(root: Path, runs: int, nodes: int = 150) -> Path:
    """Finished runs of ``nodes`` stages each: facts of tens of KB a run (per node and per
    attempt), one finding at most."""
    for r in range(runs):
        stream = "".join(
            _attempt(
                f"stage_{n:03d}", f"09:{n // 60:02d}:{n % 60:02d}", f"09:{n // 60:02d}:{n % 60:02d}"
            )
            for n in range(nodes)
        )
        _run(root, f"wide-{r:03d}", stream, pid=DEAD_PID, final="success")
    return root


def _rescan_held(tmp_path: Path, runs: int) -> tuple[float, float]:
    """What a rescan of ``runs`` wide runs holds at its peak and keeps in its result (bytes
    allocated, tracemalloc), and the mean size of a cached run's facts."""
    import gc
    import tracemalloc

    root = _wide_fleet(tmp_path / f"runs-{runs}", runs)
    config = DoctorConfig(roots=(root,), cache_dir=tmp_path / f"cache-{runs}", now=NOW)
    scan(config)
    facts = [
        json.loads(path.read_bytes().split(b"\n", 1)[0])["body"]["facts"]
        for path in (tmp_path / f"cache-{runs}" / "runs").glob("*.json")
    ]
    gc.collect()
    tracemalloc.start()
    try:
        result = scan(config)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (result.fleet["runs"], result.fleet["read"]) == (runs, 0)
    return peak, sum(facts) / len(facts)


def test_a_rescan_holds_no_runs_facts(tmp_path: Path) -> None:
    # A rescan kept every cached run's facts as text (most of an entry) until the scan
    # ended, for a table or JSON that prints none of them but the head: 169 MiB at 10,000
    # runs, growing with the size of each run's facts. They are read again from the entry
    # when looked into. Measured over two fleet sizes: what each run more costs the
    # rescan's peak is a fraction of its facts (it was more than all of them).
    small, facts = _rescan_held(tmp_path, 10)
    large, _ = _rescan_held(tmp_path, 30)
    per_run = (large - small) / 20
    assert facts > 20_000  # the runs are as wide as meant
    assert per_run < facts / 4, (per_run, facts)


def test_facts_looked_into_after_a_rescan_are_read_from_the_entry(tmp_path: Path) -> None:
    # The facts are not kept: looked into, they are read again, and are those the cold
    # scan computed; an entry replaced since by another diagnosis of the run gives that
    # one's, and an entry gone says so.
    root = _wide_fleet(tmp_path / "runs", 2, nodes=3)
    config = DoctorConfig(roots=(root,), cache_dir=tmp_path / "cache", now=NOW)
    cold = {d.run_id: dict(d.facts) for d in scan(config).diagnoses}
    again = scan(config)
    assert again.fleet["read"] == 0
    assert {d.run_id: dict(d.facts) for d in again.diagnoses} == cold
    first, second = scan(config).diagnoses  # facts not looked into yet
    # The first run grew and a scan wrote its entry anew: its facts are the new ones.
    with (root / first.run_id / "progress.ndjson").open("a") as fh:
        fh.write(_attempt("late", "10:00:00", "10:00:01"))
    scan(config)
    assert first.facts["events"] == cold[first.run_id]["events"] + 2
    assert first.facts["last_event_at"].startswith("2026-04-28T10:00:01")
    for entry in (tmp_path / "cache" / "runs").glob(f"{second.run_id}-*.json"):
        entry.unlink()
    with pytest.raises(ValueError, match="was replaced or removed since the scan read it"):
        second.facts["attempt_spans"]


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="a scan's pool needs two cores")
def test_runs_resumed_by_workers_after_a_prune_removed_their_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A rescan sent each grown run's cache entry to a worker with its batch, the cached
    # diagnosis too, whose facts are read again from the entry's file: a `doctor cache
    # prune` (or another scan) that had removed or replaced the entry since crashed the
    # scan, "internal error: ValueError: the scan cache entry … was replaced or removed"
    # (found by fleet11: two scans and a loop of prunes on one cache).
    from fixtures.fleet import build_fleet

    root = build_fleet(tmp_path / "fleet", runs=4, events_per_run=40)
    cache = tmp_path / "cache"
    config = DoctorConfig(roots=(root,), cache_dir=cache, now=1_790_000_000.0)
    scan(config)
    for run in root.iterdir():  # every run grew: each is resumed from its entry
        with (run / "progress.ndjson").open("a") as fh:
            fh.write(_line("stage_heartbeat", "23:00:00", node_id="node_1"))
    expected = _uncached(config)
    monkeypatch.setattr(_scan, "PARALLEL_MIN_BYTES", 0)  # two worker processes
    monkeypatch.setattr(_scan_batch, "BATCH_RUNS", 1)

    def pruned_once_planned(done: int, total: int) -> None:
        for entry in (cache / "runs").glob("*.json"):  # as a prune does, after the plan
            entry.unlink()

    result = scan(config, progress=pruned_once_planned)
    assert result.fleet["read"] == 4
    assert _json(result) == expected
