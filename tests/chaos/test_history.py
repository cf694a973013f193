"""The history format: every record kind survives NDJSON, appends are whole lines."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from chaos import (
    Bounds,
    FaultRecord,
    FindingFact,
    Held,
    History,
    Meta,
    Op,
    Planned,
    QueueEvent,
    Record,
    RunRecord,
    TicketRecord,
    WorkerRecord,
    read_history,
    write_history,
)
from chaos._history import Recorder, from_line, read_records, to_line

EVERY_KIND: tuple[Record, ...] = (
    Meta(
        1.0,
        7,
        60.0,
        4,
        "sqlite:///q.db",
        ("torn_write",),
        (Planned(2.5, "torn_write", 9),),
        Bounds(),
        "doctor chaos run --seed 7",
        {"lease_ttl_s": 2.5},
    ),
    Op(2.0, "invoke", "heartbeat", "w1/0", "w1", "t-1", 3, {"x": 1}, ""),
    FaultRecord(
        3.0, "sigkill_worker", "inject", "worker w1", {"pid": 4}, ("/r/1",), (Held("t-1", 3),)
    ),
    WorkerRecord(4.0, "w1", 4, "exit", -9, True),
    QueueEvent(5.0, 12, "t-1", "reclaimed", "w1/0", 3, {"reason": "dead"}),
    TicketRecord(6.0, "t-1", "long_01", "long", "done", 4, 0, 1, ""),
    RunRecord(
        7.0,
        "r1",
        "/r/1",
        "t-1",
        3,
        "long",
        "fail",
        "",
        6.5,
        "reaper",
        3,
        2,
        0,
        ("run: work attempt 1",),
        (FindingFact("torn_artifact", "error", "torn"),),
    ),
)


def test_every_record_kind_round_trips_through_one_ndjson_line() -> None:
    for record in EVERY_KIND:
        line = to_line(record)
        assert line.endswith("\n") and line.count("\n") == 1
        assert json.loads(line)["kind"] == type(record).KIND
        assert from_line(line) == record


def test_a_history_file_reads_back_equal(tmp_path: Path) -> None:
    path = tmp_path / "history.ndjson"
    write_history(path, EVERY_KIND)
    assert read_history(path) == History(EVERY_KIND)
    assert read_history(path).meta == EVERY_KIND[0]


def test_a_last_line_torn_by_a_crash_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "w1.ndjson"
    path.write_text(to_line(EVERY_KIND[1]) + to_line(EVERY_KIND[3])[:20])
    assert list(read_records(path)) == [EVERY_KIND[1]]


def test_an_unknown_record_kind_is_refused_by_name() -> None:
    try:
        from_line('{"kind": "opp", "time": 1}')
    except ValueError as exc:
        assert "unknown record kind 'opp'" in str(exc)
    else:
        raise AssertionError("an unknown kind was accepted")


def test_recorders_in_many_threads_append_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "h.ndjson"
    with Recorder(path) as rec:

        def write(n: int) -> None:
            for i in range(200):
                rec.record(Op(float(i), "ok", "heartbeat", f"w{n}/0", f"w{n}", "t-1", i))

        threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(list(read_records(path))) == 800


def test_sorted_puts_meta_first_then_time_order() -> None:
    h = History((EVERY_KIND[2], EVERY_KIND[1], EVERY_KIND[0])).sorted()
    assert [type(r).__name__ for r in h.records] == ["Meta", "Op", "FaultRecord"]


def _one_field(record: Record, field: str, value: object) -> str:
    data = json.loads(to_line(record))
    data[field] = value
    return json.dumps(data)


@pytest.mark.parametrize(
    ("record", "field", "value", "says"),
    [
        (EVERY_KIND[1], "time", "2026-01-01", "op.time: expected a finite number"),
        (EVERY_KIND[1], "time", float("nan"), "op.time: expected a finite number, got NaN"),
        (EVERY_KIND[1], "ticket", {}, "op.ticket: expected a string, got {}"),
        (EVERY_KIND[1], "epoch", True, "op.epoch: expected an integer, got true"),
        (EVERY_KIND[2], "held", [None], "fault.held[0]: expected an object, got null"),
        (EVERY_KIND[2], "detail", None, "fault.detail: expected an object, got null"),
        (EVERY_KIND[4], "event", ["completed"], "ticket_event.event: expected a string"),
        (EVERY_KIND[6], "findings", True, "run.findings: expected a list, got true"),
    ],
)
def test_a_field_of_the_wrong_type_is_refused_by_record_and_field(
    record: Record, field: str, value: object, says: str
) -> None:
    # Before: accepted as it was, then a checker failed on it (TypeError, AttributeError:
    # `doctor chaos check` crashed, exit 70).
    with pytest.raises(ValueError, match=re.escape(says)):
        from_line(_one_field(record, field, value))


def test_a_record_missing_a_field_names_the_fields() -> None:
    # Before: TypeError from the dataclass's constructor.
    with pytest.raises(ValueError, match=r"^meta: missing field\(s\) time, seed, "):
        from_line('{"kind": "meta"}')


def test_json_nested_too_deeply_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="nested too deeply"):
        from_line('{"kind": "op", "value": ' + "[" * 100_000 + "]" * 100_000 + "}")


def test_a_bad_line_is_named_by_its_number(tmp_path: Path) -> None:
    path = tmp_path / "history.ndjson"
    path.write_text(to_line(EVERY_KIND[0]) + "\n" + _one_field(EVERY_KIND[1], "f", 7) + "\n")
    with pytest.raises(ValueError, match=r"^line 3: op\.f: expected a string, got 7$"):
        read_history(path)


def test_a_history_without_a_record_is_refused_not_passed(tmp_path: Path) -> None:
    # Before: every invariant held over no evidence, exit 0.
    path = tmp_path / "history.ndjson"
    path.write_text("\n")
    with pytest.raises(ValueError, match="holds no record"):
        read_history(path)


def test_an_unknown_record_kind_of_any_length_is_named_in_a_short_line(tmp_path: Path) -> None:
    # Before: `chaos check` printed the whole kind: a line of 100 MB on stderr.
    meta = to_line(EVERY_KIND[0])
    path = tmp_path / "history.ndjson"
    path.write_text(meta + '{"kind": "' + "x" * 1_000_000 + '", "time": 1}\n')
    done = subprocess.run(
        [sys.executable, "-m", "doctor", "chaos", "check", str(path)],
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert done.returncode == 2, done
    (line,) = done.stderr.splitlines()
    assert "line 2: unknown record kind 'xxx" in line and len(line) < 400, line[:500]


def test_a_file_that_is_no_history_is_refused_at_its_first_line_not_read_whole(
    tmp_path: Path,
) -> None:
    # Before: `chaos check` read the whole file, then decoded it, before its first line was
    # looked at: a 256 MiB file passed by mistake took 512 MiB of memory to be refused.
    import tracemalloc

    path = tmp_path / "big.log"
    with path.open("wb") as f:
        f.write(b"not a record\n")
        f.truncate(256 << 20)  # sparse: no disk taken
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"^line 1: "):
            read_history(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, peak


def test_a_history_line_over_the_bound_is_refused_without_reading_on(tmp_path: Path) -> None:
    from chaos._history import MAX_RECORD_BYTES

    path = tmp_path / "history.ndjson"
    with path.open("wb") as f:
        f.write(to_line(EVERY_KIND[0]).encode())  # a whole line, its newline included
        f.truncate(MAX_RECORD_BYTES * 4)  # a second "line" of NULs and no newline
    with pytest.raises(ValueError, match=r"^line 2 is longer than 16,777,216 bytes$"):
        read_history(path)
