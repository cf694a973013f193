"""Fault ``restart_database``: restart the queue's database under the workers' feet.

PostgreSQL: the campaign's ``--db-control`` command restarts the database under test (e.g.
``pg_ctl -D DIR -m fast -w {action}`` for a private cluster, ``docker {action} ID`` for a
service container; ``{action}`` becomes ``restart``). Every session is terminated
(``AdminShutdown``); the next queue call of every worker meets a dead connection. Without a
control command the fault is not applicable (a skip that says so): the harness never restarts
a server it was not handed.

SQLite has no server to restart; its equivalent is a lock storm: for a few seconds the harness
takes the write lock again and again (held 0.4 s, freed for 20 ms), so every write queues
behind it and heartbeats land late.

The executor promises that no call is lost and no slot dies: every queue call is retried
with backoff, a write that may have committed is checked, not repeated; every ticket ends
terminal and none whose run succeeded runs again.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any

from chaos._injection import (
    Fault,
    Injection,
    Target,
    control_database,
    require_database_free,
    require_db_control,
    runs_of,
)

__all__ = ["FAULT", "restart_database"]

#: How long the SQLite lock storm lasts, how long each lock is held and freed.
STORM_S, HOLD_S, GAP_S = 3.0, 0.4, 0.02


def _storm(path: str, stop: threading.Event) -> None:
    conn = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
    try:
        while not stop.is_set():
            try:
                conn.execute("BEGIN EXCLUSIVE")
                stop.wait(HOLD_S)
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # a worker held it this time: try again after the gap
            time.sleep(GAP_S)
    finally:
        conn.close()


def _end_storm(stop: threading.Event, thread: threading.Thread) -> dict[str, Any]:
    stop.set()
    thread.join()
    return {}


def _restarted() -> dict[str, Any]:
    return {}


def restart_database(target: Target) -> Injection | None:
    """Restart the queue's database (PostgreSQL via --db-control; SQLite: a lock storm)."""
    postgres = target.url.startswith(("postgresql://", "postgres://"))
    control = require_db_control(target) if postgres else None
    require_database_free(target)  # one at a time: a second lock would wait for the first
    running = [t for t in target.leased() if t.status == "running"]
    if control is not None:
        detail = control_database(control, "restart")
        # The control command returns once the server is back (pg_ctl -w): the undo, due at
        # once, records when, so the restart is a window of its own, not one left open.
        undo = None if "error" in detail else _restarted
        return Injection("the queue database (restart)", detail, runs_of(running), undo=undo)
    stop = threading.Event()
    thread = threading.Thread(
        target=_storm, args=(target.url.removeprefix("sqlite://"), stop), daemon=True
    )
    thread.start()
    return Injection(
        target="the queue database (lock storm)",
        detail={"storm_s": STORM_S, "hold_s": HOLD_S, "gap_s": GAP_S},
        runs=runs_of(running),
        undo=lambda: _end_storm(stop, thread),
        undo_after_s=STORM_S,
    )


#: A running run may self-fence behind the storm (canceled, a healthy terminal run) and be
#: reclaimed: nothing at error may follow.
FAULT = Fault(restart_database, may_cause=frozenset())
