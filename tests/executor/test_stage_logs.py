"""Output that never ends (issue 13): each attempt's log keeps its head and its tail, and says
how much it dropped. Real processes print real output; nothing is mocked."""

from __future__ import annotations

import re
from pathlib import Path

from executor._stage import CappedLog, run_process

#: ``seq 1 N`` written out, to compare the kept bytes with what the process printed.
N = 300_000


def _printed() -> bytes:
    return "".join(f"{i}\n" for i in range(1, N + 1)).encode()


def _run(tmp_path: Path, script: str, head: int, tail: int) -> int:
    result = run_process(
        ("sh", "-c", script),
        command=script,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
        attempt_dir=tmp_path,
        timeout_s=120,
        grace_s=1,
        heartbeat_s=0.05,
        canceled=lambda: False,
        on_heartbeat=lambda beat: None,
        head_bytes=head,
        tail_bytes=tail,
    )
    assert result.exit_code == 0, result.describe()
    return result.exit_code


def test_a_stage_printing_far_more_than_the_cap_keeps_its_head_and_tail(tmp_path: Path) -> None:
    _run(tmp_path, f"seq 1 {N}", head=10_000, tail=20_000)
    printed, kept = _printed(), (tmp_path / "stdout.log").read_bytes()
    dropped = len(printed) - 30_000
    line = (
        f"\n[rundoctor: {dropped} bytes of output dropped here; the first 10000 and the last "
        "20000 are kept]\n"
    ).encode()
    assert kept == printed[:10_000] + line + printed[-20_000:]


def test_output_within_the_cap_is_kept_whole(tmp_path: Path) -> None:
    _run(tmp_path, "seq 1 1000; seq 1 10 >&2", head=10_000, tail=20_000)
    assert (tmp_path / "stdout.log").read_bytes() == "".join(
        f"{i}\n" for i in range(1, 1001)
    ).encode()
    assert (tmp_path / "stderr.log").read_text() == "".join(f"{i}\n" for i in range(1, 11))


def test_the_stderr_tail_of_a_failure_comes_from_the_kept_tail(tmp_path: Path) -> None:
    result = run_process(
        ("sh", "-c", f"seq 1 {N} >&2; echo the real cause >&2; exit 4"),
        command="noisy",
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
        attempt_dir=tmp_path,
        timeout_s=120,
        grace_s=1,
        heartbeat_s=0.05,
        canceled=lambda: False,
        on_heartbeat=lambda beat: None,
        head_bytes=1000,
        tail_bytes=1000,
    )
    assert result.exit_code == 4
    assert result.stderr_tail.endswith("the real cause")
    text = (tmp_path / "stderr.log").read_text()
    assert re.search(r"\[rundoctor: \d+ bytes of output dropped here", text)


def test_a_capped_log_rewrites_its_tail_in_place_as_output_grows(tmp_path: Path) -> None:
    log = CappedLog(tmp_path / "x.log", head=2, tail=2)
    log.write(b"ab")
    log.write(b"cd")
    log.flush()
    assert (tmp_path / "x.log").read_bytes() == b"abcd"
    log.write(b"ef")
    log.close()
    assert (
        (tmp_path / "x.log")
        .read_bytes()
        .endswith(b"dropped here; the first 2 and the last 2 are kept]\nef")
    )
    assert (log.received, log.dropped) == (6, 2)
