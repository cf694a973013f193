"""Fault ``stall_database``: hold a lock on the queue longer than a lease lasts.

The harness opens its own connection and takes the tickets' write lock (SQLite: ``BEGIN
EXCLUSIVE``; PostgreSQL: ``LOCK TABLE tickets IN EXCLUSIVE MODE``, which lets plain reads
through), holds it for ``lease_ttl_s + 1`` seconds, then rolls back. No heartbeat can land
meanwhile, so every worker with a running ticket must fence itself (cancel its run, stop its
stages) within ``self_fence_s``, *before* a reaper could hand the ticket to someone else; once
the lock goes, the reapers reclaim the expired leases and the tickets run again.

The hold stays below SQLite's ``busy_timeout`` (5 s) when the lease allows it, so waiting
writers wait instead of failing. Only one stall runs at a time.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from chaos._errors import FaultSkipped
from chaos._injection import (
    Fault,
    Injection,
    Target,
    database_unavailable,
    leases_of,
    require_database_free,
    runs_of,
)

__all__ = ["FAULT", "stall_database"]


def _lock(url: str) -> Any:
    """A connection holding the tickets' write lock; ``.rollback()`` and ``.close()`` free it."""
    if url.startswith(("postgresql://", "postgres://")):
        import psycopg

        conn = psycopg.connect(url, autocommit=False)
        conn.execute("LOCK TABLE tickets IN EXCLUSIVE MODE")
        return conn
    path = url.removeprefix("sqlite://")
    conn2 = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
    conn2.execute("BEGIN EXCLUSIVE")
    return conn2


def _release(conn: Any) -> dict[str, Any]:
    try:
        conn.rollback()
    finally:
        conn.close()
    return {}


def stall_database(target: Target) -> Injection | None:
    """Hold the queue's write lock for longer than the lease: every worker must fence itself."""
    require_database_free(target)  # one at a time: a second lock would wait for the first
    leased = target.leased()
    try:
        conn = _lock(target.url)
    except Exception as exc:  # sqlite3.Error / psycopg.Error: the stall did not happen
        why = database_unavailable(exc, target.url)
        if why is not None:  # already away (a restart's aftermath): nothing to stall
            raise FaultSkipped(why) from exc
        return Injection("the queue database", {"error": f"{type(exc).__name__}: {exc}"})
    hold = target.config.lease_ttl_s + 1.0
    return Injection(
        target="the queue database",
        detail={"held_for_s": hold},
        runs=runs_of(t for t in leased if t.status == "running"),
        held=leases_of(leased),
        undo=lambda: _release(conn),
        undo_after_s=hold,
    )


#: Every running run is canceled by its self-fencing worker (a healthy, terminal run) and
#: its lease reclaimed once the lock goes: nothing at error may follow.
FAULT = Fault(stall_database, may_cause=frozenset())
