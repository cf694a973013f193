"""``rundoctor.atomic``: the one atomic writer (temp file beside the target, fsync, rename)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from rundoctor.atomic import create_file, replace_file

WRITER = """
import json, sys
from rundoctor.atomic import replace_file
target, who = sys.argv[1], sys.argv[2]
for i in range(200):
    replace_file(target, json.dumps({"who": who, "i": i, "pad": "x" * 4000}), fsync=False)
"""


def _stray(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_replace_file_leaves_the_new_content_and_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "doc.json"
    replace_file(target, b"old")
    replace_file(target, "new")
    assert target.read_text() == "new"
    assert _stray(tmp_path) == []


def test_concurrent_writer_processes_never_collide_nor_tear_the_file(tmp_path: Path) -> None:
    # The cache's writer used one fixed temporary name: two scans renamed each other's halves.
    target = tmp_path / "index.json"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(target), str(n)], env=env)
        for n in range(3)
    ]
    while any(p.poll() is None for p in procs):
        if target.exists():
            doc = json.loads(target.read_text())  # always one whole document
            assert doc["pad"] == "x" * 4000
    assert [p.wait() for p in procs] == [0, 0, 0]
    assert json.loads(target.read_text())["i"] == 199
    assert _stray(tmp_path) == []


def test_concurrent_writer_threads_of_one_process_never_collide(tmp_path: Path) -> None:
    target = tmp_path / "live.json"
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for i in range(100):
                replace_file(target, json.dumps([n, i]))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert json.loads(target.read_text())[1] == 99
    assert _stray(tmp_path) == []


def test_create_file_lets_exactly_one_of_many_writers_win(tmp_path: Path) -> None:
    target = tmp_path / "final.json"
    wins: list[int] = []

    def write(n: int) -> None:
        if create_file(target, json.dumps({"writer": n})):
            wins.append(n)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert json.loads(target.read_text()) == {"writer": wins[0]}
    assert _stray(tmp_path) == []


def test_a_failed_write_raises_the_os_error_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    # The target is a directory: the rename fails after the temporary file was written.
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("keep")
    with pytest.raises(OSError):
        replace_file(tmp_path / "taken", "data")
    assert _stray(tmp_path) == []
    with pytest.raises(FileNotFoundError):
        replace_file(tmp_path / "missing" / "doc.json", "data")


def test_writes_inside_an_open_directory_descriptor(tmp_path: Path) -> None:
    dfd = os.open(tmp_path, os.O_RDONLY)
    try:
        replace_file("status.json", "one", dir_fd=dfd)
        assert create_file("status.json", "two", dir_fd=dfd) is False
        assert create_file("backup.bak", "three", dir_fd=dfd) is True
    finally:
        os.close(dfd)
    assert (tmp_path / "status.json").read_text() == "one"
    assert (tmp_path / "backup.bak").read_text() == "three"
    assert _stray(tmp_path) == []


def test_create_file_never_follows_a_symlink_at_the_target(tmp_path: Path) -> None:
    outside = tmp_path / "outside.json"
    (tmp_path / "final.json").symlink_to(outside)
    assert create_file(tmp_path / "final.json", "x") is False
    assert not outside.exists()
