"""``rundoctor.liveness``: one answer to "is that process alive?" for the doctor and the reaper.

Processes are real: this test process, a child that exited (a zombie until reaped), a child
that was reaped, and pids that cannot exist.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from executor._reaper import _why
from executor._records import Ticket
from rundoctor.liveness import (
    PID_MAX,
    YOUNGER_BY_S,
    owner_alive,
    process_alive,
    process_state,
    run_owner_alive,
    start_ticks,
    started_at,
    valid_pid,
    works_elsewhere,
)
from tests.doctor.watch_helpers import wait_for

HOST = socket.gethostname()


def _my_ticks() -> int:
    ticks = start_ticks(os.getpid())
    if ticks is None:
        pytest.skip("no /proc/PID/stat on this host")
    return ticks


def _ticket(pid: int | None, start: int | None) -> Ticket:
    now = time.time()
    return Ticket(
        id="t-1", title="", graph_path="g.dot", status="running", priority=0,
        error_attempts=0, crash_recoveries=0, max_error_attempts=3, lease_owner="w-1",
        lease_epoch=1, lease_expires_at=now + 60, last_heartbeat_at=now, claimed_at=now,
        session_name=None, pid=pid, pgid=pid, proc_start_time=start, host=HOST, run_id=None,
        run_path=None, reason=None, created_at=now, updated_at=now, finished_at=None,
    )  # fmt: skip


def test_a_live_pid_whose_start_time_was_not_recorded_counts_as_alive() -> None:
    # The one documented answer for an unknown start time: dead needs proof.
    assert process_alive(os.getpid(), None) is True
    assert owner_alive(os.getpid(), None) is True


def test_the_reaper_agrees_with_the_doctor_on_an_unknown_start_time() -> None:
    # Before: the doctor said alive and the reaper reclaimed the ticket of the same process.
    assert _why(_ticket(os.getpid(), None), HOST, time.time()) is None
    assert owner_alive(os.getpid(), None) is True


def test_the_reaper_reclaims_a_dead_owner_and_a_reused_pid() -> None:
    assert _why(_ticket(PID_MAX + 1, None), HOST, time.time()) is not None
    assert _why(_ticket(os.getpid(), _my_ticks() + 1), HOST, time.time()) is not None
    assert _why(_ticket(os.getpid(), _my_ticks()), HOST, time.time()) is None


def test_pid_1_is_unknown_as_an_owner_and_never_reclaimed() -> None:
    assert process_alive(1) is True  # init is alive...
    assert owner_alive(1) is None  # ...but proves nothing about a run's owner
    assert _why(_ticket(1, None), HOST, time.time()) is None


@pytest.mark.parametrize("pid", [0, -1, 2**31, 2**63, PID_MAX + 1])
def test_a_pid_that_cannot_exist_is_dead_without_asking_the_kernel(pid: int) -> None:
    assert process_alive(pid) is False
    assert owner_alive(pid) is False


@pytest.mark.parametrize("value", [True, "12", 1.5, None, 2**63])
def test_values_that_are_not_pids_are_refused(value: object) -> None:
    assert valid_pid(value) is None


def test_a_reused_pid_with_another_start_time_is_dead() -> None:
    assert process_alive(os.getpid(), _my_ticks() + 1) is False
    assert process_alive(os.getpid(), _my_ticks()) is True


def test_a_zombie_is_dead_and_a_reaped_child_is_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        while True:  # wait for the exit, however long it takes (no time limit)
            stat = Path(f"/proc/{child.pid}/stat").read_bytes()
            if stat[stat.rfind(b")") + 2 :].startswith(b"Z"):
                break
            time.sleep(0.01)
        assert process_alive(child.pid) is False
    finally:
        child.wait()
    assert process_alive(child.pid) is False


def test_the_doctor_command_does_not_take_its_own_pid_as_an_owner() -> None:
    # In a child: the exclusion is process-wide and must not leak into this test process.
    code = (
        "import os\n"
        "from rundoctor.liveness import exclude_self_as_owner, owner_alive, start_ticks\n"
        "exclude_self_as_owner()\n"
        "me = os.getpid()\n"
        "print(owner_alive(me), owner_alive(me, start_ticks(me)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["False", "True"]


def test_a_process_younger_than_its_recorded_pid_is_not_the_owner() -> None:
    # A real child started now; its pid "recorded" an hour ago names another, gone, process.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        now = time.time()
        assert owner_alive(child.pid, recorded_at=now - 3600) is False
        assert owner_alive(child.pid, recorded_at=now) is True  # recorded after it started
        assert owner_alive(child.pid, recorded_at=now - YOUNGER_BY_S / 2) is True  # within slack
        # A recorded start time decides alone: it is exact.
        assert owner_alive(child.pid, start_ticks(child.pid), recorded_at=now - 3600) is True
        assert abs((started_at(child.pid) or 0) - now) < 30
    finally:
        child.kill()
        child.wait()


def _sleeper(tmp_path: Path, name: str | bytes) -> subprocess.Popen[bytes]:
    """``sleep 60`` run under ``name`` (a symlink to it): the kernel's command name."""
    link = os.path.join(os.fsencode(tmp_path), os.fsencode(name))
    os.symlink(b"/bin/sleep", link)
    return subprocess.Popen([link, b"60"])


def test_process_state_reads_a_name_with_parentheses_whole_and_sees_it_stop_and_die(
    tmp_path: Path,
) -> None:
    # /proc/PID/stat is "pid (comm) state …": the name "a) b (c" must not move the state.
    child = _sleeper(tmp_path, "a) b (c")
    try:
        state = process_state(child.pid)
        assert state is not None
        assert (state.pid, state.name, state.stopped, state.zombie) == (
            child.pid, "a) b (c", False, False,
        )  # fmt: skip
        assert state.start_ticks == start_ticks(child.pid) is not None
        os.kill(child.pid, signal.SIGSTOP)
        wait_for(lambda: getattr(process_state(child.pid), "state", "") == "T")
        assert process_alive(child.pid, state.start_ticks)  # stopped is alive
        os.kill(child.pid, signal.SIGKILL)
        wait_for(lambda: getattr(process_state(child.pid), "zombie", False))
        assert not process_alive(child.pid)
    finally:
        child.kill()
        child.wait()
    assert process_state(child.pid) is None


def test_process_state_escapes_a_name_that_is_not_utf8(tmp_path: Path) -> None:
    child = _sleeper(tmp_path, b"run-\xff\xfe")
    try:
        state = process_state(child.pid)
        assert state is not None and state.name == "run-\\xff\\xfe"
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize("pid", [0, -1, 2**31, PID_MAX + 1])
def test_process_state_of_what_cannot_be_a_live_pid_is_none(pid: int) -> None:
    assert process_state(pid) is None


def test_a_stopped_sqlite_write_lock_holder_is_named_from_its_process_state(
    tmp_path: Path,
) -> None:
    from executor._sqlite_lock import _describe

    child = _sleeper(tmp_path, "a) b (c")
    try:
        os.kill(child.pid, signal.SIGSTOP)
        wait_for(lambda: getattr(process_state(child.pid), "stopped", False))
        said = _describe(child.pid)
    finally:
        child.kill()
        child.wait()
    assert said.startswith(f"process {child.pid} (a) b (c) holds its write lock and is stopped")


def _started_on(argv_tail: list[str], cwd: Path) -> subprocess.Popen[bytes]:
    """A live process whose command line ends with ``argv_tail`` (as Kilroy's engine is called
    with ``--logs-root DIR``), started in ``cwd``, once it runs."""
    code = "import time; print('up', flush=True); time.sleep(60)"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *argv_tail], cwd=cwd, stdout=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
    return proc


def test_an_owner_works_elsewhere_only_when_its_logs_root_is_another_directory(
    tmp_path: Path,
) -> None:
    run, copy = tmp_path / "runs" / "r1", tmp_path / "copies" / "r1"
    run.mkdir(parents=True)
    copy.mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "runs")
    relative = _started_on(["--logs-root", "runs/r1"], tmp_path)
    through_link = _started_on(["--logs-root=" + str(tmp_path / "link" / "r1")], tmp_path)
    no_flag = _started_on([], tmp_path)
    try:
        for proc in (relative, through_link):
            assert works_elsewhere(proc.pid, run) is None  # the same directory by its inode
            assert works_elsewhere(proc.pid, copy) is not None
            assert run_owner_alive(proc.pid, start_ticks(proc.pid), copy) is False
            assert run_owner_alive(proc.pid, start_ticks(proc.pid), run) is True
        assert works_elsewhere(no_flag.pid, copy) is None  # names no directory: unknown
        assert run_owner_alive(no_flag.pid, None, copy) is True
        # Moved away from under it: the directory it names is gone, this one is not its own.
        run.rename(tmp_path / "moved")
        assert works_elsewhere(relative.pid, tmp_path / "moved") == "runs/r1"
    finally:
        for proc in (relative, through_link, no_flag):
            proc.kill()
            proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()
