"""The scan's worker processes (``doctor._scan_pool``): they end with the scan's process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rundoctor.liveness import process_state

REPO = Path(__file__).resolve().parents[2]

# A scan's pool as _in_pool starts it (spawn, the worker start and its arguments), holding
# a batch that lasts: the worker's pid on stdout, then the parent waits to be killed.
_PARENT = """
import concurrent.futures as cf, multiprocessing, os, time
from doctor import _scan_pool
ctx = multiprocessing.get_context("spawn")
pool = cf.ProcessPoolExecutor(
    1, mp_context=ctx, initializer=_scan_pool._worker_start, initargs=(ctx.Event(), os.getpid())
)
print(pool.submit(os.getpid).result(), flush=True)
pool.submit(time.sleep, 600)
time.sleep(600)
"""


def _gone(pid: int) -> bool:
    state = process_state(pid)
    return state is None or state.zombie


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_scan_killed_takes_its_worker_processes_with_it(sig: signal.Signals) -> None:
    # `timeout doctor scan` or a service stop sends SIGTERM, which the scan does not catch:
    # its workers went on diagnosing the batches they held, for minutes, for no one.
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    worker = int(parent.stdout.readline())
    try:
        assert not _gone(worker)
        parent.send_signal(sig)
        parent.wait()
        # Not a measure of speed: the worker's batch lasts 600 s; it must not outlive the
        # scan, and the kernel ends it at once.
        deadline = time.monotonic() + 60
        while not _gone(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(worker)
    finally:
        if not _gone(worker):
            os.kill(worker, signal.SIGKILL)
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        parent.stdout.close()


# A scan whose workers each hold their batch until the scan stops (``stop``): a module the
# workers import (they are spawned: the test's functions would not reach them), and the
# scan's command with two batches of the fleet's runs on two workers.
_HOLD = """
import sys
from doctor import _scan_pool

def hold(batch):
    # One write of the whole line: both workers hold a batch, and print's two writes (the text,
    # then the newline) of one were once read between the other's ("holding a batchholding").
    sys.stderr.write("holding a batch\\n")
    sys.stderr.flush()
    _scan_pool._stopping.wait(600)
    return []
"""
_HELD_SCAN = """
import doctor._scan as scan, doctor._scan_batch as batch, doctor._scan_pool as pool, scan_hold
scan.PARALLEL_MIN_BYTES, batch.BATCH_RUNS, pool._unless_stopped = 0, 1, scan_hold.hold
from doctor._cli import main
main()
"""


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="a scan's pool needs two cores")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("batch", ["waits for the scan's stop", "would last 600 s"])
def test_a_scan_stopped_by_a_signal_ends_quietly_and_releases_its_pool(
    tmp_path: Path, sig: signal.Signals, batch: str
) -> None:
    # SIGTERM (`timeout`, a service stop) to the scan's process while its workers diagnosed
    # killed it where it stood: the pool's semaphores were never released, and
    # multiprocessing's resource tracker printed "There appear to be 10 leaked semaphore
    # objects to clean up at shutdown" after the scan had ended. It now stops as Ctrl-C
    # does: no batch more, the pool released, `error: interrupted`, 130.
    # A signal to the scan's process alone reaches no worker (nor does a Ctrl-C that came
    # just before a worker took its batch): the scan waited for the batch a worker held to
    # end, here after 600 s (a scan sent SIGTERM through `| head` hung so). The scan's stop
    # now interrupts it.
    hold, script, said = {
        "waits for the scan's stop": (("scan_hold", _HOLD), [_HELD_SCAN], "holding a batch"),
        "would last 600 s": (
            ("start_hold", _HOLD_START),
            [_START_HELD_SCAN, "started"],
            "diagnosing",
        ),
    }[batch]
    returncode, lines, out = _signalled_scan(
        tmp_path,
        hold,
        script,
        said,
        lambda p: p.send_signal(sig),  # the scan's process alone
    )
    assert (returncode, lines) == (130, ["error: interrupted"])
    assert out == ""


# A scan whose workers each stop in their start (the pool's initializer, before the real
# one) until the scan is ending: as a worker still importing or reading its start from its
# parent.
_HOLD_START = """
import os
from doctor import _scan_pool

def start(stop, parent):
    os.write(2, b"starting\\n")  # one write: two workers' lines do not mix
    stop.wait(600)
    _scan_pool._worker_start(stop, parent)

def started(stop, parent):  # the first batch lasts until Ctrl-C stops it, the others none
    import time
    _scan_pool._worker_start(stop, parent)
    def batch(b):
        try:
            first = os.path.join(b.layouts[0].path, "..", "..", "first")
            os.close(os.open(first, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return []
        os.write(2, b"diagnosing\\n")
        time.sleep(600)
    _scan_pool._safely = batch

def caught_ctrl_c(pid):
    with open(f"/proc/{pid}/status") as f:
        caught = next(line for line in f if line.startswith("SigCgt:")).split()[1]
    return int(caught, 16) & (1 << (2 - 1))  # SIGINT's bit: Python's handler is installed

def takes_signals(taking):
    import signal, time
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    taking.set()
    time.sleep(600)

def spawning():  # the scan holds after it spawned its first worker, before it sends its start
    import sys, threading, time
    from multiprocessing import util
    spawn, held = util.spawnv_passfds, []
    def hold(path, args, passfds):
        pid = spawn(path, args, passfds)
        if not held and "spawn_main" in " ".join(map(str, args)):
            held.append(pid)
            while not caught_ctrl_c(pid):  # the worker's Python is up, reading its start
                time.sleep(0.01)
            # A thread that takes signals, as DuckDB's or the Ctrl-C relay's do: the kernel
            # may hand it the scan's Ctrl-C, whose handler then runs on this thread.
            taking = threading.Event()
            threading.Thread(target=takes_signals, args=(taking,), daemon=True).start()
            taking.wait()
            os.write(2, b"spawned\\n")
            sys.stdin.readline()  # until the test has sent Ctrl-C
        return pid
    util.spawnv_passfds = hold
"""
_START_HELD_SCAN = """
import sys
import doctor._scan as scan, doctor._scan_batch as batch, doctor._scan_pool as pool, start_hold
scan.PARALLEL_MIN_BYTES, batch.BATCH_RUNS = 0, 1
mode = sys.argv.pop(1)
if mode == "spawning":
    start_hold.spawning()
else:
    pool._worker_start = getattr(start_hold, mode)
from doctor._cli import main
main()
"""


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="a scan's pool needs two cores")
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/status")
@pytest.mark.parametrize(
    ("start", "said"),
    [("start", "starting"), ("spawning", "spawned"), ("started", "diagnosing")],
)
def test_ctrl_c_while_a_worker_starts_ends_the_scan_quietly(
    tmp_path: Path, start: str, said: str
) -> None:
    # Ctrl-C goes to the scan and its workers alike (the terminal's process group). A worker
    # still starting printed a traceback ("Exception in initializer: ... KeyboardInterrupt",
    # or a KeyboardInterrupt or EOFError out of multiprocessing's bootstrap). It is now born
    # with Ctrl-C blocked and drops one that came while it started: the scan says
    # `error: interrupted`, 130, and nothing else. Ctrl-C to the scan while it spawns a
    # worker cut what the worker reads from it short (EOFError in the worker): it is held
    # until the workers are spawned. A worker diagnosing a batch still takes Ctrl-C at once
    # (its batch here would last 600 s).
    returncode, lines, out = _signalled_scan(
        tmp_path,
        ("start_hold", _HOLD_START),
        [_START_HELD_SCAN, start],
        said,
        lambda p: os.killpg(p.pid, signal.SIGINT),  # Ctrl-C: to the scan and its workers
    )
    assert (returncode, lines) == (130, ["error: interrupted"])
    assert out == ""


def _signalled_scan(
    tmp_path: Path,
    hold: tuple[str, str],
    script: list[str],
    said: str,
    send: Callable[[subprocess.Popen[str]], object],
) -> tuple[int, list[str], str]:
    """A real scan of 4 runs by ``python -c SCRIPT...`` with the module ``hold`` (name,
    text) importable, in its own process group (a terminal's job); once its first line on
    stderr is ``said``, ``send`` signals it and a line goes to its stdin. Its exit code, its
    other stderr lines and its stdout."""
    from fixtures.fleet import build_fleet

    root = build_fleet(tmp_path / "fleet", runs=4, events_per_run=20)
    (tmp_path / "hold").mkdir()
    (tmp_path / "hold" / f"{hold[0]}.py").write_text(hold[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNDOCTOR_")}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "hold"), str(REPO)])
    scan = subprocess.Popen(
        [sys.executable, "-c", *script, "scan", "--root", str(root)],
        cwd=REPO,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert scan.stderr is not None
    try:
        first = scan.stderr.readline()
        assert first == f"{said}\n", first
        send(scan)
        # Until every writer of its standard error is gone: the resource tracker's too.
        out, err = scan.communicate("\n", timeout=300)
    finally:
        if scan.poll() is None:
            os.killpg(scan.pid, signal.SIGKILL)
            scan.communicate()
    return scan.returncode, [line for line in err.splitlines() if line != said], out
