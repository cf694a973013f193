"""How far the reading of a run's event streams has got, in bytes, while it goes on.

A run of a gigabyte of events takes tens of seconds to read, most of it inside one DuckDB
statement (the bulk read: :func:`doctor._ndjson.read_bulk`) and the rest in the line-by-line
reads of live or damaged streams (:func:`doctor._ndjson.read_precise`). :class:`ReadProgress`
turns both into one figure, bytes read of the bytes planned, reported to a callback:

* during a DuckDB statement, a thread asks the connection how far the statement is
  (``query_progress``, a percentage; DuckDB computes it only with its progress bar on, which
  is turned on without its printing) every :data:`POLL_S` seconds and reports that share of
  the statement's bytes (:meth:`ReadProgress.statement`);
* a line-by-line read reports each block it takes (:meth:`ReadProgress.advance`).

The figure never goes back (a statement's percentage is DuckDB's estimate, which can), and it
reaches the total when the reading is done (:meth:`ReadProgress.done`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

__all__ = ["POLL_S", "ReadProgress", "Reported"]

#: What a reader reports: ``(bytes read, bytes to read)``.
Reported = Callable[[int, int], None]

#: Seconds between two questions to DuckDB about a running statement.
POLL_S = 0.2


class ReadProgress:
    """Bytes read of ``total``, reported to ``report`` as they grow (never backwards)."""

    def __init__(self, report: Reported, total: int) -> None:
        self._report = report
        self.total = max(0, total)
        self._done = 0  # bytes of the statements and blocks finished
        self._shown = -1  # the last figure reported
        self._lock = threading.Lock()

    def _show(self, at: int) -> None:
        with self._lock:
            at = min(max(at, self._shown), self.total)
            if at != self._shown:
                self._shown = at
                self._report(at, self.total)

    def advance(self, nbytes: int) -> None:
        """``nbytes`` more read (a block of a line-by-line read)."""
        self._done += nbytes
        self._show(self._done)

    @contextlib.contextmanager
    def statement(self, con: duckdb.DuckDBPyConnection, nbytes: int) -> Iterator[None]:
        """Around DuckDB statements that read ``nbytes``: their share reported as they run,
        all of it once they are done."""
        con.execute("SET enable_progress_bar = true; SET enable_progress_bar_print = false")
        stop = threading.Event()
        base = self._done

        def poll() -> None:
            while not stop.wait(POLL_S):
                share = con.query_progress()  # -1: no statement running, or not known yet
                if share > 0:
                    self._show(base + int(nbytes * min(share, 100.0) / 100))

        watcher = threading.Thread(target=poll, name="read-progress", daemon=True)
        watcher.start()
        try:
            yield
        finally:
            stop.set()
            watcher.join()
            con.execute("SET enable_progress_bar = false")
        self.advance(nbytes)

    def done(self) -> None:
        """Everything planned is read (or was found unreadable): the figure is the total."""
        self._done = self.total
        self._show(self.total)
