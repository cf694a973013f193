"""Ctrl-C stops a running DuckDB statement at once (``doctor._interrupts``), and a scan's
worker pool starts no batch once the scan is ending."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time

import duckdb
import pytest

import doctor._scan_pool as scan_pool
from doctor._config import DoctorConfig
from doctor._errors import IngestError
from doctor._interrupts import interruptible
from doctor._layout import discover
from doctor._scan_batch import _Batch
from rundoctor.errors import interrupted
from tests.doctor.test_cli import HEALTHY_ROOT


def _running(con: duckdb.DuckDBPyConnection, deadline: float) -> bool:
    """Wait until ``con`` runs a statement (``query_progress`` leaves -1 then; it needs the
    progress bar on)."""
    while con.query_progress() == -1:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def test_a_sigint_stops_a_statement_duckdb_would_run_for_hours() -> None:
    """DuckDB 2 alone does not stop this statement on SIGINT; relayed, it stops. Should the
    relay fail, the helper interrupts it itself after a long while, and the test fails."""
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # (tests/conftest.py)
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = true; SET enable_progress_bar_print = false")
    # An event loop an earlier test in this process left open may hold the wakeup descriptor
    # (the relay leaves one in use alone): this test is about the relay, so it gets it.
    signal.set_wakeup_fd(-1)
    interruptible(con)
    caught: list[int] = []
    fallback: list[bool] = []

    def ctrl_c_once_running() -> None:
        if _running(con, time.monotonic() + 120):
            os.kill(os.getpid(), signal.SIGINT)
        if not stopped.wait(timeout=300):
            fallback.append(True)
            con.interrupt()

    stopped = threading.Event()
    # Python's own handler would raise KeyboardInterrupt into pytest: this one only counts.
    # The relay is set up already (interruptible, under the default handler) and hears the
    # signal whatever Python-level handler runs.
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    helper = threading.Thread(target=ctrl_c_once_running)
    try:
        helper.start()
        # DuckDB says InterruptException, or "Query interrupted" when it saw the signal too.
        with pytest.raises((duckdb.InterruptException, RuntimeError)) as stopped_by:
            con.execute("SELECT count(*) FROM range(100000000000) t WHERE t.range % 7 = 3")
        assert interrupted(stopped_by.value), stopped_by.value
        stopped.set()
        helper.join()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert caught == [signal.SIGINT]
    assert not fallback, "the SIGINT did not stop the statement"
    # The connection works on.
    assert con.execute("SELECT 42").fetchall() == [(42,)]


def test_the_relay_takes_the_wakeup_descriptor_back_once_an_event_loop_gave_it_back() -> None:
    """An event loop (a notebook kernel's client, a test before this one) takes the wakeup
    descriptor and, done, sets it to none: the next connection points it at the relay again."""
    con = duckdb.connect()
    interruptible(con)
    signal.set_wakeup_fd(-1)  # what an event loop leaves when it closes
    interruptible(duckdb.connect())
    mine = signal.set_wakeup_fd(-1)
    try:
        assert mine != -1  # the relay's again
    finally:
        signal.set_wakeup_fd(mine, warn_on_full_buffer=False)


def test_an_interrupt_is_told_apart_wherever_it_was_wrapped() -> None:
    try:
        try:
            raise duckdb.InterruptException("INTERRUPT Error: Interrupted!")
        except duckdb.Error as exc:
            raise IngestError(f"DuckDB could not parse x: {exc}") from exc
    except IngestError as wrapped:
        assert interrupted(wrapped)
    assert not interrupted(IngestError("DuckDB could not parse x: syntax"))
    assert not interrupted(duckdb.IOException("no room"))


def test_a_worker_starts_no_batch_once_the_scan_is_ending() -> None:
    """A batch a worker already holds when Ctrl-C ends the scan is dropped, not diagnosed
    (a pool's own exit ran every batch left: a minute after Ctrl-C on 1,000 runs)."""
    batch = _Batch(DoctorConfig(), "", (discover(HEALTHY_ROOT / "healthy01"),), {}, {}, 1)
    ending = multiprocessing.get_context("spawn").Event()
    scan_pool._worker_start(ending)
    try:
        assert [o.run_id for o in scan_pool._unless_stopped(batch)] == ["healthy01"]
        ending.set()
        assert scan_pool._unless_stopped(batch) == []
    finally:
        scan_pool._stopping = None
