"""A SQLite queue whose write lock another process holds: the error names that process, and
says when it is stopped (a writer frozen inside its transaction holds the whole queue)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from executor import QueueError, open_queue
from executor._sqlite import SqliteQueue
from tests.executor.test_cli import SIMPLE, _base_env, _doctor, _usage_error

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="F_GETLK's struct and /proc")

#: Takes the queue's write lock in a transaction, says so, then waits (or stops itself).
HOLDER = """
import os, signal, sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
conn.execute("UPDATE tickets SET title = title")
print("locked", flush=True)
if sys.argv[2] == "stop":
    os.kill(os.getpid(), signal.SIGSTOP)
sys.stdin.read()
"""


@contextmanager
def writer_holding(path: Path, *, stopped: bool) -> Iterator[int]:
    """A real process holding ``path``'s write lock, stopped by SIGSTOP when ``stopped``."""
    yield from _holder([sys.executable], path, stopped=stopped)


def _holder(python: list[str], path: Path, *, stopped: bool) -> Iterator[int]:
    with subprocess.Popen(
        [*python, "-c", HOLDER, str(path), "stop" if stopped else "wait"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
            if stopped:  # returns once the child has stopped: no sleep
                _, status = os.waitpid(proc.pid, os.WUNTRACED)
                assert os.WIFSTOPPED(status)
            yield proc.pid
        finally:
            proc.kill()


@pytest.fixture
def queue_path(tmp_path: Path) -> Path:
    path = tmp_path / "queue.db"
    with open_queue(str(path)) as queue:
        queue.enqueue("x", str(SIMPLE))
    return path


def test_a_lock_held_by_a_stopped_writer_names_it_and_how_to_free_it(queue_path: Path) -> None:
    # Before: "another process held the write lock longer than busy_timeout=100 ms; retry":
    # retrying never helps while the holder is frozen, and nothing said which process it was.
    with SqliteQueue(str(queue_path), busy_timeout_ms=100) as queue:
        with writer_holding(queue_path, stopped=True) as pid, pytest.raises(QueueError) as err:
            queue.enqueue("y", str(SIMPLE))
        message = str(err.value)
        assert f"process {pid} (python" in message and "is stopped" in message, message
        assert f"`kill -CONT {pid}`" in message
        assert queue.enqueue("y", str(SIMPLE)).status == "todo"  # usable once it is gone


def test_a_lock_held_by_a_running_writer_names_it(queue_path: Path) -> None:
    with SqliteQueue(str(queue_path), busy_timeout_ms=100) as queue:
        with writer_holding(queue_path, stopped=False) as pid, pytest.raises(QueueError) as err:
            queue.enqueue("y", str(SIMPLE))
        assert f"process {pid} (python" in str(err.value), err.value
        assert "stopped" not in str(err.value)


def test_enqueue_behind_a_frozen_writer_is_one_line_naming_it(
    tmp_path: Path, queue_path: Path
) -> None:
    env = _base_env(tmp_path)
    with writer_holding(queue_path, stopped=True) as pid:
        line = _usage_error(_doctor(env, "enqueue", SIMPLE, "--db", queue_path))
        # Reads go on: WAL gives them the last committed state.
        listed = _doctor(env, "tickets", "--db", queue_path)
    assert f"process {pid} (python" in line and "is stopped" in line, line
    assert listed.returncode == 0 and " x " in listed.stdout, listed


def test_an_unlocked_queue_has_no_holder(queue_path: Path) -> None:
    from executor._sqlite_lock import write_lock_holder

    assert write_lock_holder(str(queue_path)) is None


def test_the_holders_name_is_read_whole_with_spaces_and_parentheses(
    tmp_path: Path, queue_path: Path
) -> None:
    # /proc/PID/stat is "pid (comm) state …": a name like "a) b" must not be cut at its ")".
    renamed = tmp_path / "a) b"
    renamed.symlink_to(sys.executable)
    with SqliteQueue(str(queue_path), busy_timeout_ms=100) as queue:
        holder = contextmanager(_holder)([str(renamed)], queue_path, stopped=True)
        with holder as pid, pytest.raises(QueueError) as err:
            queue.enqueue("y", str(SIMPLE))
        assert f"process {pid} (a) b) holds its write lock and is stopped" in str(err.value)
