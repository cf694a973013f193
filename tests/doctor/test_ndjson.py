"""``doctor._ndjson`` and ``load_runs``: event streams in, ordered rows and torn lines out."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from doctor import _ndjson
from doctor._ingest import load_runs
from doctor._layout import discover
from doctor._tables import Tables
from doctor._timestamps import parse_iso

DEAD_PID = "99999999"


def _line(event: str = "e", **fields: Any) -> bytes:
    return (json.dumps({"event": event, "ts": "2026-04-28T10:00:00Z", **fields}) + "\n").encode()


def _run(root: Path, run_id: str, data: bytes, *, pid: str = DEAD_PID) -> Path:
    run = root / run_id
    run.mkdir(parents=True)
    (run / "run.pid").write_text(pid)
    (run / "progress.ndjson").write_bytes(data)
    return run


def _load(*runs: Path, keep_raw: bool = True, threads: int | None = None) -> Tables:
    return load_runs([discover(r) for r in runs], keep_raw=keep_raw, threads=threads)


def _torn(tables: Tables) -> list[tuple[Any, ...]]:
    return tables.sql("SELECT rel, line, byte_offset, detail FROM torn ORDER BY rel, line")


def _values(tables: Tables, column: str, run_id: str | None = None) -> list[Any]:
    where = "WHERE run_id = $run_id" if run_id is not None else ""
    params = {"run_id": run_id} if run_id is not None else {}
    rows = tables.sql(f"SELECT {column} FROM events {where} ORDER BY seq", **params)
    return [r[0] for r in rows]


@pytest.fixture(params=["raw", "objects", "typed"])
def keep_raw(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Each way a stream is read in bulk, as ``keep_raw``: whole lines kept (``raw``), and
    without them small files as JSON objects (``objects``) and larger ones through typed
    columns (``typed``: every file here is small, so the size limit is set to 0)."""
    if request.param == "typed":
        monkeypatch.setattr(_ndjson, "OBJECTS_BELOW_BYTES", 0)
    return bool(request.param == "raw")


#: The test takes ``keep_raw`` from the fixture above: it runs once per reader.
both_paths = pytest.mark.usefixtures("keep_raw")


# --- order --------------------------------------------------------------------------------------


@both_paths
def test_rows_keep_line_order_per_stream_across_a_multi_file_bulk_scan(
    tmp_path: Path, keep_raw: bool
) -> None:
    runs = []
    for r in range(20):
        # Lines of varying length so that DuckDB's buffers split files at different places.
        data = b"".join(_line("e", attempt=i, message="x" * (i * 7 % 300)) for i in range(3000))
        runs.append(_run(tmp_path, f"r{r:02d}", data))
    tables = _load(*runs, keep_raw=keep_raw, threads=4)
    assert tables.sql("SELECT count(*) FROM events") == [(60_000,)]
    for r in range(20):
        assert _values(tables, "attempt", f"r{r:02d}") == list(range(3000))
    out_of_order = tables.sql("""
        SELECT count(*) FROM (
            SELECT attempt - lag(attempt) OVER (PARTITION BY run_id, scope ORDER BY seq) AS step
            FROM events) WHERE step <> 1""")
    assert out_of_order == [(0,)]


@both_paths
def test_branch_streams_of_one_run_keep_their_own_order(tmp_path: Path, keep_raw: bool) -> None:
    run = _run(tmp_path, "r1", b"".join(_line(attempt=i) for i in range(500)))
    for b in ("01-a", "02-b"):
        branch = run / "parallel/fan" / b
        branch.mkdir(parents=True)
        (branch / "progress.ndjson").write_bytes(b"".join(_line(attempt=i) for i in range(700)))
    tables = _load(run, keep_raw=keep_raw)
    for scope, n in (("", 500), ("parallel/fan/01-a", 700), ("parallel/fan/02-b", 700)):
        rows = tables.sql("SELECT attempt FROM events WHERE scope = $s ORDER BY seq", s=scope)
        assert [r[0] for r in rows] == list(range(n))


# --- torn lines ---------------------------------------------------------------------------------


@both_paths
def test_a_torn_line_mid_file_is_reported_with_its_line_and_byte_offset(
    tmp_path: Path, keep_raw: bool
) -> None:
    lines = [_line(attempt=1), _line(attempt=2), b'{"event": "x", "ts\n', _line(attempt=4)]
    run = _run(tmp_path, "r1", b"".join(lines))
    tables = _load(run, keep_raw=keep_raw)
    ((rel, line, offset, detail),) = _torn(tables)
    assert (rel, line, offset) == ("progress.ndjson", 3, len(lines[0]) + len(lines[1]))
    assert detail.startswith("not JSON")
    assert _values(tables, "attempt") == [1, 2, 4]


@both_paths
def test_a_torn_last_line_of_a_dead_run_is_reported(tmp_path: Path, keep_raw: bool) -> None:
    lines = [_line(attempt=1), _line(attempt=2), b'{"event": "stage_attempt_en']
    run = _run(tmp_path, "r1", b"".join(lines))
    tables = _load(run, keep_raw=keep_raw)
    assert [t[:3] for t in _torn(tables)] == [("progress.ndjson", 3, len(lines[0]) + len(lines[1]))]
    assert _values(tables, "attempt") == [1, 2]


@both_paths
def test_several_torn_lines_are_each_reported_and_every_good_line_is_ingested(
    tmp_path: Path, keep_raw: bool
) -> None:
    good = [_line(attempt=i) for i in range(6)]
    lines = [good[0], b"{oops\n", good[1], good[2], b"nonsense\n", good[3], good[4], good[5]]
    run = _run(tmp_path, "r1", b"".join(lines))
    tables = _load(run, keep_raw=keep_raw)
    offsets = [sum(len(x) for x in lines[:i]) for i in range(len(lines))]
    assert [t[1:3] for t in _torn(tables)] == [(2, offsets[1]), (5, offsets[4])]
    assert _values(tables, "attempt") == list(range(6))


@both_paths
def test_a_line_that_is_not_utf8_is_torn(tmp_path: Path, keep_raw: bool) -> None:
    lines = [_line(attempt=1), b'{"event": "e", "message": "\xff\xfe"}\n', _line(attempt=3)]
    run = _run(tmp_path, "r1", b"".join(lines))
    tables = _load(run, keep_raw=keep_raw)
    ((_rel, line, offset, detail),) = _torn(tables)
    assert (line, offset) == (2, len(lines[0]))
    assert "UTF-8" in detail
    assert _values(tables, "attempt") == [1, 3]


@both_paths
def test_a_json_array_line_is_torn(tmp_path: Path, keep_raw: bool) -> None:
    lines = [_line(attempt=1), b'[{"event": "e"}]\n', _line(attempt=3)]
    tables = _load(_run(tmp_path, "r1", b"".join(lines)), keep_raw=keep_raw)
    ((_rel, line, offset, detail),) = _torn(tables)
    assert (line, offset) == (2, len(lines[0]))
    assert "not an object" in detail
    assert _values(tables, "attempt") == [1, 3]


@both_paths
def test_an_object_without_an_event_is_torn(tmp_path: Path, keep_raw: bool) -> None:
    lines = [_line(attempt=1), b"{}\n", _line(attempt=3)]
    tables = _load(_run(tmp_path, "r1", b"".join(lines)), keep_raw=keep_raw)
    ((_rel, line, offset, detail),) = _torn(tables)
    assert (line, offset) == (2, len(lines[0]))
    assert "without an event" in detail
    assert _values(tables, "attempt") == [1, 3]


@both_paths
def test_blank_lines_are_skipped_without_being_torn(tmp_path: Path, keep_raw: bool) -> None:
    data = b"\n" + _line(attempt=1) + b"\n   \n" + _line(attempt=2) + b"\n"
    tables = _load(_run(tmp_path, "r1", data), keep_raw=keep_raw)
    assert _torn(tables) == []
    assert _values(tables, "attempt") == [1, 2]


@both_paths
def test_blank_lines_still_count_for_the_line_number_of_a_torn_line(
    tmp_path: Path, keep_raw: bool
) -> None:
    data = _line(attempt=1) + b"\n\n" + b"{torn\n" + _line(attempt=2)
    tables = _load(_run(tmp_path, "r1", data), keep_raw=keep_raw)
    assert [t[1:3] for t in _torn(tables)] == [(4, len(_line(attempt=1)) + 2)]


@both_paths
def test_crlf_line_endings_parse(tmp_path: Path, keep_raw: bool) -> None:
    data = b"".join(_line(attempt=i).replace(b"\n", b"\r\n") for i in range(3))
    tables = _load(_run(tmp_path, "r1", data), keep_raw=keep_raw)
    assert _torn(tables) == []
    assert _values(tables, "attempt") == [0, 1, 2]


@both_paths
def test_crlf_line_endings_keep_exact_offsets_of_a_torn_line(
    tmp_path: Path, keep_raw: bool
) -> None:
    first = _line(attempt=1).replace(b"\n", b"\r\n")
    data = first + b"{torn\r\n" + _line(attempt=3).replace(b"\n", b"\r\n")
    tables = _load(_run(tmp_path, "r1", data), keep_raw=keep_raw)
    assert [t[1:3] for t in _torn(tables)] == [(2, len(first))]
    assert _values(tables, "attempt") == [1, 3]


@both_paths
def test_a_five_megabyte_line_is_ingested_whole(tmp_path: Path, keep_raw: bool) -> None:
    big = "y" * (5 * 1024 * 1024)
    data = _line(attempt=1) + _line("big", message=big) + _line(attempt=3)
    tables = _load(_run(tmp_path, "r1", data), keep_raw=keep_raw)
    assert _torn(tables) == []
    assert _values(tables, "event") == ["e", "big", "e"]
    assert _values(tables, "length(message)") == [None, len(big), None]


@both_paths
def test_a_five_megabyte_line_beside_a_torn_line_is_still_ingested(
    tmp_path: Path, keep_raw: bool
) -> None:
    big = "y" * (5 * 1024 * 1024)
    data = _line("big", message=big) + b"{torn\n" + _line(attempt=3)
    tables = _load(_run(tmp_path, "r1", data), keep_raw=keep_raw)
    assert [t[1:3] for t in _torn(tables)] == [(2, len(_line("big", message=big)))]
    assert _values(tables, "event") == ["big", "e"]


@both_paths
def test_an_empty_stream_has_no_events_and_no_torn_lines(tmp_path: Path, keep_raw: bool) -> None:
    tables = _load(_run(tmp_path, "r1", b""), keep_raw=keep_raw)
    assert tables.sql("SELECT count(*) FROM events") == [(0,)]
    assert _torn(tables) == []
    assert tables.sql("SELECT rel, size, ok FROM files WHERE kind = 'progress'") == [
        ("progress.ndjson", 0, True)
    ]


def test_an_empty_stream_beside_full_ones_does_not_disturb_them(tmp_path: Path) -> None:
    full = _run(tmp_path, "a", b"".join(_line(attempt=i) for i in range(50)))
    empty = _run(tmp_path, "b", b"")
    tables = _load(full, empty, keep_raw=False)
    assert _values(tables, "attempt", "a") == list(range(50))
    assert _values(tables, "attempt", "b") == []


def test_the_files_table_marks_a_stream_with_torn_lines_not_ok(tmp_path: Path) -> None:
    run = _run(tmp_path, "r1", _line() + b"{torn\n" + _line())
    tables = _load(run)
    assert tables.sql("SELECT ok, detail FROM files WHERE kind = 'progress'") == [(False, "1 torn")]


# --- raw ----------------------------------------------------------------------------------------


def test_keep_raw_keeps_each_whole_line(tmp_path: Path) -> None:
    data = _line(attempt=1, extra="kept")
    tables = _load(_run(tmp_path, "r1", data), keep_raw=True)
    (raw,) = _values(tables, "raw")
    assert json.loads(raw) == json.loads(data)


@pytest.mark.parametrize(
    "data",
    [
        _line(attempt=1) + _line(attempt=2),
        _line(attempt=1) + b"{torn\n" + _line(attempt=2),
    ],
    ids=["clean", "with-a-torn-line"],
)
def test_without_keep_raw_the_raw_column_stays_null(tmp_path: Path, data: bytes) -> None:
    tables = _load(_run(tmp_path, "r1", data), keep_raw=False)
    assert _values(tables, "raw") == [None, None]


def test_without_keep_raw_a_live_run_leaves_raw_null(tmp_path: Path) -> None:
    run = _run(tmp_path, "r1", _line(attempt=1) + _line(attempt=2), pid=str(os.getpid()))
    tables = _load(run, keep_raw=False)
    assert _values(tables, "raw") == [None, None]


# --- timestamps ---------------------------------------------------------------------------------


@pytest.fixture
def non_utc_host(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run as if this host's local time zone were not UTC."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _ts_ns(tmp_path: Path, keep_raw: bool, *stamps: str) -> list[int | None]:
    data = b"".join((json.dumps({"event": "e", "ts": s}) + "\n").encode() for s in stamps)
    tables = _load(_run(tmp_path, "r1", data), keep_raw=keep_raw)
    return _values(tables, "epoch_ns(ts)")


@both_paths
def test_a_z_timestamp_keeps_its_nanoseconds(tmp_path: Path, keep_raw: bool) -> None:
    stamps = ("2026-02-10T16:42:11.818881199Z", "2026-02-10T04:00:25Z")
    assert _ts_ns(tmp_path, keep_raw, *stamps) == [1770741731818881199, 1770696025000000000]


@both_paths
def test_a_timestamp_with_an_offset_is_converted_to_utc(tmp_path: Path, keep_raw: bool) -> None:
    got = _ts_ns(tmp_path, keep_raw, "2026-02-10T18:42:11.818881+02:00", "2026-02-10T04:00:25Z")
    assert got == [1770741731818881000, 1770696025000000000]


@both_paths
def test_a_timestamp_with_an_offset_is_utc_whatever_the_host_time_zone(
    tmp_path: Path, keep_raw: bool, non_utc_host: None
) -> None:
    got = _ts_ns(tmp_path, keep_raw, "2026-02-10T18:42:11+02:00", "2026-02-10T16:42:11Z")
    assert got == [1770741731000000000, 1770741731000000000]


@both_paths
def test_an_unparsable_timestamp_is_null_and_the_event_is_kept(
    tmp_path: Path, keep_raw: bool
) -> None:
    assert _ts_ns(tmp_path, keep_raw, "yesterday", "2026-02-10T04:00:25Z") == [
        None,
        1770696025000000000,
    ]


# --- live and dead owners -----------------------------------------------------------------------


def test_a_live_owner_s_unterminated_last_line_is_left_unread_and_not_torn(
    tmp_path: Path,
) -> None:
    lines = [_line(attempt=1), _line(attempt=2), b'{"event": "stage_attempt_end", "ts": "2026']
    run = _run(tmp_path, "r1", b"".join(lines), pid=str(os.getpid()))
    tables = _load(run)
    assert _torn(tables) == []
    assert _values(tables, "attempt") == [1, 2]
    state = tables.stream_states[("r1", "")]
    assert state.offset == len(lines[0]) + len(lines[1])


def test_a_live_owner_s_torn_line_mid_file_is_still_reported(tmp_path: Path) -> None:
    lines = [_line(attempt=1), b"{torn\n", _line(attempt=3)]
    run = _run(tmp_path, "r1", b"".join(lines), pid=str(os.getpid()))
    tables = _load(run)
    assert [t[1:3] for t in _torn(tables)] == [(2, len(lines[0]))]
    assert _values(tables, "attempt") == [1, 3]


def test_a_dead_owner_s_unterminated_last_line_is_torn(tmp_path: Path) -> None:
    lines = [_line(attempt=1), _line(attempt=2), b'{"event": "stage_attempt_end", "ts": "2026']
    run = _run(tmp_path, "r1", b"".join(lines), pid=DEAD_PID)
    tables = _load(run)
    assert [t[1:3] for t in _torn(tables)] == [(3, len(lines[0]) + len(lines[1]))]
    assert _values(tables, "attempt") == [1, 2]


def test_a_dead_owner_s_complete_last_line_without_a_newline_is_ingested(tmp_path: Path) -> None:
    data = _line(attempt=1) + _line(attempt=2).rstrip(b"\n")
    tables = _load(_run(tmp_path, "r1", data, pid=DEAD_PID))
    assert _torn(tables) == []
    assert _values(tables, "attempt") == [1, 2]


@both_paths
def test_more_streams_than_one_scan_batch_each_keep_their_own_rows(
    tmp_path: Path, keep_raw: bool
) -> None:
    runs = [
        _run(tmp_path, f"r{r:03d}", b"".join(_line(f"e{r}", attempt=i) for i in range(40)))
        for r in range(150)
    ]
    tables = _load(*runs, keep_raw=keep_raw)
    rows = tables.sql(
        "SELECT run_id, list(event ORDER BY seq), list(attempt ORDER BY seq) "
        "FROM events GROUP BY run_id ORDER BY run_id"
    )
    assert len(rows) == 150
    for run_id, events, attempts in rows:
        assert set(events) == {f"e{int(run_id[1:])}"}
        assert attempts == list(range(40))


@both_paths
def test_run_directories_named_like_glob_patterns_keep_their_own_events(
    tmp_path: Path, keep_raw: bool
) -> None:
    # DuckDB expands *, ? and [..] in file names: "run[1]" must not read "run1".
    names = ["run[1]", "run1", "a*b", "axb", "q?x", "qyx"]
    runs = [_run(tmp_path, n, _line(f"event of {n}") + _line(f"event of {n}")) for n in names]
    tables = _load(*runs, keep_raw=keep_raw)
    rows = tables.sql("SELECT run_id, list(event ORDER BY seq) FROM events GROUP BY 1")
    assert dict(rows) == {n: [f"event of {n}"] * 2 for n in names}
    assert _torn(tables) == []


def test_a_glob_named_run_still_reports_its_torn_lines(tmp_path: Path) -> None:
    data = _line(attempt=1) + b"{torn\n" + _line(attempt=3)
    tables = _load(_run(tmp_path, "run[1]", data), _run(tmp_path, "run1", _line(attempt=9)))
    assert [t[1:3] for t in _torn(tables)] == [(2, len(_line(attempt=1)))]
    assert _values(tables, "attempt", "run[1]") == [1, 3]
    assert _values(tables, "attempt", "run1") == [9]


# --- the two bulk readers -----------------------------------------------------------------------

#: Event objects whose fields have the wrong type, twice the same key, nesting, escapes: every
#: line is an event, so the bulk read keeps them all (no precise read), with what it can type.
_AWKWARD = [
    {"event": "stage_attempt_end", "node_id": "a", "attempt": "2", "ts": "2026-01-01T00:00:01Z"},
    {"event": "stage_attempt_end", "node_id": "a", "attempt": "x", "ts": "2026-01-01T00:00:02Z"},
    {"event": "x", "node_id": {"nested": 1}, "attempt": [1, 2], "ts": 1767225600},
    {
        "event": "x",
        "node_id": 5,
        "will_retry": "yes",
        "max": True,
        "ts": "2026-01-01T02:00:03+02:00",
    },
    {"event": "x\u0000y", "message": "caf\u00e9 \U0001f600 a\nb", "ts": "2026-01-01T00:00:04Z"},
    {"event": "x", "will_retry": 1, "epoch": "7", "signature_count": 1e3, "ts": "garbage"},
    {"event": "x", "attempt": 99999999999999999999, "ts": "2026-01-01T00:00:06.123456789Z"},
]


def _awkward_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, below: int) -> list[Any]:
    from doctor import _ingest

    def no_precise_read(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a stream of event objects was read line by line")

    monkeypatch.setattr(_ndjson, "OBJECTS_BELOW_BYTES", below)
    monkeypatch.setattr(_ingest, "read_precise", no_precise_read)
    data = b"".join(json.dumps(x).encode() + b"\n" for x in _AWKWARD)
    data += b'{"event": "dup", "event": "twice", "ts": "2026-01-01T00:00:07Z"}\n'
    tables = _load(_run(tmp_path / str(below), "r1", data), keep_raw=False)
    assert _torn(tables) == []
    return tables.sql("SELECT * EXCLUDE (seq, raw) FROM events ORDER BY seq")


def test_small_and_large_files_are_read_alike_by_their_two_readers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files under ``OBJECTS_BELOW_BYTES`` are read as JSON objects, larger ones through
    typed columns: the same lines give the same rows either way."""
    typed = _awkward_rows(tmp_path, monkeypatch, 0)
    objects = _awkward_rows(tmp_path, monkeypatch, 1 << 30)
    assert typed == objects
    from doctor._ndjson import EVENT_COLUMNS

    names = [c for c in EVENT_COLUMNS if c not in ("seq", "raw")]
    got = [{k: v for k, v in zip(names, row, strict=True) if v is not None} for row in objects]
    assert [(r["event"], r.get("attempt")) for r in got] == [
        ("stage_attempt_end", 2),  # a number in a string is the number
        ("stage_attempt_end", None),  # text that is not one is no attempt
        ("x", None),
        ("x", None),
        ("x\x00y", None),
        ("x", None),
        ("x", None),  # past BIGINT: none
        ("dup", None),  # a repeated key: the first
    ]
    assert got[2]["node_id"] == '{"nested":1}' and "ts" not in got[2]  # epoch numbers: no ts
    assert got[3]["node_id"] == "5" and got[3]["ts"].hour == 0  # +02:00 read as UTC
    assert got[4]["message"] == "caf\u00e9 \U0001f600 a\nb"
    assert "ts" not in got[5] and got[5]["epoch"] == 7


def test_docs_artifacts_md_lists_every_column_of_the_canonical_tables() -> None:
    # A user queries these tables by the names docs/artifacts.md gives: a column added or
    # renamed in the code and not there (or the reverse) is a query that fails.
    repo = Path(__file__).resolve().parents[2]
    doc = (repo / "docs" / "artifacts.md").read_text()
    run = repo / "fixtures" / "cases" / "fanout_never_joined" / "run" / "fanout01"
    tables = load_runs([discover(run)], keep_raw=True)
    try:
        for name in ("events", "attempts", "files", "runs", "torn", "unreadable"):
            section = doc.split(f"### `{name}` — ", 1)[1].split("\n#", 1)[0]
            if "| column |" in section:  # a table: the first cells' names
                cells = [r.split("|")[1] for r in section.splitlines() if r.startswith("| `")]
                documented = [c for cell in cells for c in cell.split("`")[1::2]]
            else:  # a paragraph that starts with the list: `a`, `b` (what b is), `c`. …
                text = re.sub(r"\([^()]*\)", "", section.split("\n\n", 2)[1])
                lead = re.match(r"(?:`\w+`[,\s]*)+", text)
                documented = re.findall(r"`(\w+)`", lead.group(0) if lead else "")
            assert sorted(documented) == sorted(tables.arrow(name).column_names), name
    finally:
        tables.con.close()


@both_paths
def test_an_offset_of_a_day_or_more_is_no_offset_and_the_time_unreadable(
    tmp_path: Path, keep_raw: bool
) -> None:
    # DuckDB's cast took "+99:00" for 99 hours: a run's start moved four days back, and a
    # fake idle gap with it. RFC 3339 offsets run from -23:59 to +23:59 (parse_iso agrees).
    got = _ts_ns(
        tmp_path,
        keep_raw,
        "2026-04-28T10:02:37+99:00",
        "2026-04-28T10:02:37+24:00",
        "2026-04-28T10:02:37+05:60",
        "2026-04-28T10:02:37+23:59",
        "2026-04-28T10:02:37-05:30",
    )
    assert got[:3] == [None, None, None]
    assert got[3:] == [
        parse_iso("2026-04-28T10:02:37+23:59"),
        parse_iso("2026-04-28T10:02:37-05:30"),
    ]


@both_paths
def test_duckdb_s_words_and_a_date_alone_are_no_event_time(tmp_path: Path, keep_raw: bool) -> None:
    # DuckDB's casts read "epoch" as 1970, "infinity" (and a Python writer's float('inf'),
    # "ts": Infinity) as the year 9999, a date alone as its midnight, and ignore a zone name:
    # a run that began at "epoch" was 56 years long, with a 56-year idle gap.
    words = ["epoch", "infinity", "-infinity", "Infinity", "inf", "2026-04-28", "2026-04-28Z"]
    # A word before the Z, after a space: DuckDB's cast took it for a zone and dropped it.
    zoned = ["2026-04-28T10:00:00 EST", "2026-04-28T10:00:00 America/New_York"]
    zoned += ["2026-04-28T10:00:00 ESTZ", "2026-04-28T10:00:00.5 e5Z"]
    lines = [json.dumps({"event": "e", "ts": s}) for s in [*words, *zoned]]
    lines += ['{"event": "e", "ts": Infinity}', '{"event": "e", "ts": -Infinity}']
    good = ["2026-04-28T10:00:00Z", "2026-04-28 10:00:00.5z", "2026-04-28T12:00:00+02:00"]
    lines += [json.dumps({"event": "e", "ts": s}) for s in good]
    data = "".join(line + "\n" for line in lines).encode()
    got = _values(_load(_run(tmp_path, "r1", data), keep_raw=keep_raw), "epoch_ns(ts)")
    assert got == [None] * (len(lines) - 3) + [parse_iso(s) for s in good]
