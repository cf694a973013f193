"""Fault ``database_outage``: the queue's database goes away for longer than a lease.

PostgreSQL: the campaign's ``--db-control`` command stops the database under test
(``{action}`` becomes ``stop``) and starts it again ``lease_ttl_s + 2`` seconds later. Without
a control command the fault is not applicable (a skip that says so): the harness never stops a
server it was not handed.

SQLite: the harness holds the write lock for SQLite's busy timeout plus one second, so every
write in flight fails with ``database is locked`` (what a slot met with 16 workers × 4 slots,
issue 15) instead of only waiting.

The executor promises: running runs fence themselves (their leases cannot be renewed), every
failed queue call is retried until the database is back, a completion that may have
committed is checked rather than repeated, and no worker dies: every ticket ends terminal,
none completed twice, none whose run succeeded runs again.
"""

from __future__ import annotations

import sqlite3
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
from executor import BUSY_TIMEOUT_MS

__all__ = ["FAULT", "database_outage"]


def _unlock(conn: sqlite3.Connection) -> dict[str, Any]:
    try:
        conn.rollback()
    finally:
        conn.close()
    return {}


def database_outage(target: Target) -> Injection | None:
    """Take the queue's database away for longer than a lease (PostgreSQL stop; SQLite lock)."""
    postgres = target.url.startswith(("postgresql://", "postgres://"))
    control = require_db_control(target) if postgres else None
    require_database_free(target)  # one at a time: a second lock would wait for the first
    running = [t for t in target.leased() if t.status == "running"]
    if control is not None:
        hold = target.config.lease_ttl_s + 2.0
        detail = control_database(control, "stop") | {"down_for_s": hold}
        return Injection(
            target="the queue database (stopped)",
            detail=detail,
            runs=runs_of(running),
            undo=lambda: control_database(control, "start"),
            undo_after_s=hold,
        )
    hold = BUSY_TIMEOUT_MS / 1000 + 1.0
    conn = sqlite3.connect(target.url.removeprefix("sqlite://"), isolation_level=None, timeout=30)
    conn.execute("BEGIN EXCLUSIVE")
    return Injection(
        target="the queue database (locked past the busy timeout)",
        detail={"held_for_s": hold},
        runs=runs_of(running),
        undo=lambda: _unlock(conn),
        undo_after_s=hold,
    )


#: Running runs fence themselves and are canceled (healthy terminal runs), then reclaimed.
FAULT = Fault(database_outage, may_cause=frozenset())
