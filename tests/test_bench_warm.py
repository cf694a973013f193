"""``bench.scan.warm_page_cache``: every stream of a fleet read once before the baselines."""

from __future__ import annotations

from pathlib import Path

from bench.scan import warm_page_cache


def test_it_reads_every_stream_whole_and_nothing_else(tmp_path: Path) -> None:
    sizes = {"a": 3, "b": (1 << 20) + 5, "c": 0}
    for name, size in sizes.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "progress.ndjson").write_bytes(b"x" * size)
    (tmp_path / "a" / "final.json").write_bytes(b"{}" * 100)  # not a stream: not counted
    assert warm_page_cache(tmp_path) == sum(sizes.values())
