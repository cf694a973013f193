"""The scan's worker processes (``doctor._scan_pool``): they end with the scan's process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
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
