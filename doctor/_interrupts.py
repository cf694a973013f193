"""Ctrl-C stops a running DuckDB statement at once.

DuckDB 2 looks at a SIGINT only when a statement ends: a bulk read of a gigabyte of events went
on for 12 s after Ctrl-C, and a long aggregate never stopped. Its connections' ``interrupt()``,
called from another thread, stops a statement within milliseconds. Python runs its own SIGINT
handler only between two bytecodes of the main thread, which is inside DuckDB, so the signal is
relayed: :func:`signal.set_wakeup_fd` has the C-level handler write the signal's number to a
pipe the moment it arrives, and a thread reading that pipe interrupts every connection
:func:`interruptible` registered. The statement then raises DuckDB's ``InterruptException``,
and Python's handler raises ``KeyboardInterrupt`` as ever once the main thread runs again.

The relay's thread is started once per process; each connection made on the main thread points
the wakeup descriptor at it (again, after an event loop took it and gave it back), and only
where Ctrl-C is Python's default (not ignored, as in a background job) and the descriptor is not
an event loop's in use. An interrupted statement is never a run's finding:
:func:`rundoctor.errors.interrupted` tells the code that turns DuckDB's errors into findings
or retries to let it through.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

__all__ = ["interruptible"]

_connections: weakref.WeakSet[duckdb.DuckDBPyConnection] = weakref.WeakSet()
_lock = threading.Lock()
_pipe: tuple[int, int] | None = None  # the relay's (read end, write end), made once
_relaying = False  # its thread is started


def interruptible(con: duckdb.DuckDBPyConnection) -> None:
    """Have Ctrl-C interrupt ``con``'s running statement from now on (for as long as it lives)."""
    with _lock:
        _connections.add(con)
    _start_relay()


def _start_relay() -> None:
    """Point the wakeup descriptor at the relay's pipe (again: an event loop that ran in
    between, as a notebook's kernel client does, may have taken it and given it back), and
    start the relay's thread the first time."""
    global _pipe, _relaying
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return  # Ctrl-C ignored here, or someone else's to handle
    with _lock:
        if _pipe is None:
            read_end, write_end = os.pipe()
            os.set_blocking(write_end, False)
            _pipe = (read_end, write_end)
        read_end, write_end = _pipe
        previous = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        if previous not in (-1, write_end):  # an event loop's, in use: left as it was
            signal.set_wakeup_fd(previous)
            return
        if _relaying:
            return
        _relaying = True
    threading.Thread(target=_relay, args=(read_end,), name="rundoctor-ctrl-c", daemon=True).start()


def _relay(read_end: int) -> None:
    """Interrupt every registered connection each time a SIGINT arrives (the pipe carries
    the number of every signal Python handles; the others are let be)."""
    while True:
        try:
            got = os.read(read_end, 512)
        except InterruptedError:
            continue
        except OSError:
            return
        if not got:
            return
        if signal.SIGINT in got:
            with _lock:
                live = list(_connections)
            for con in live:
                with contextlib.suppress(Exception):  # closed meanwhile: nothing to stop
                    con.interrupt()
