"""Queue fixtures: every contract test runs once on SQLite and once on PostgreSQL.

PostgreSQL is the server at 127.0.0.1:5432 (user ``postgres``, database ``test``); each test
gets a fresh schema, named in the queue URL's ``search_path``, dropped afterwards, so tests
never see each other's rows. When the server cannot be reached the PostgreSQL tests skip
locally and FAIL under ``CI=true`` (start it with ``pg_ctlcluster --skip-systemctl-redirect
$(ls /etc/postgresql) main start``).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from executor import Queue, open_queue
from tests.helpers import PG_URL, require_postgres

START = 1_700_000_000.0


class FakeClock:
    """A clock the test moves by hand: ``clock.advance(5)``."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@dataclass
class Backend:
    """One queue database, reachable by URL, plus a side door for raw SQL (its own connection)."""

    name: str
    url: str
    target: str  # the SQLite path, or the libpq URL
    error: type[Exception]  # what the driver raises

    def open(self, clock: FakeClock | None = None) -> Queue:
        """The queue; with ``clock``, pinned to it exactly (PostgreSQL's too: no server clock)."""
        if clock is None:
            return open_queue(self.url)
        return open_queue(self.url, clock=clock, server_clock=False)

    def open_existing(self) -> Queue:
        """Open the queue as inspecting commands do: never created."""
        return open_queue(self.url, create=False)

    def raw(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement outside the queue (``?`` placeholders), committed at once."""
        if self.name == "sqlite":
            # closing(): a sqlite3 connection's own ``with`` commits but never closes.
            conn = sqlite3.connect(self.target, isolation_level=None, timeout=5)
            with closing(conn):
                cursor = conn.execute(statement, tuple(params))
                return cursor.fetchall() if cursor.description else []
        with psycopg.connect(self.target, autocommit=True) as pg:
            cur = pg.execute(statement.replace("?", "%s"), tuple(params) or None)
            return cur.fetchall() if cur.description else []


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sqlite_backend(tmp_path: Path) -> Backend:
    path = tmp_path / "queue.db"
    return Backend("sqlite", str(path), str(path), sqlite3.Error)


@pytest.fixture
def postgres_backend() -> Iterator[Backend]:
    require_postgres()
    schema = f"rdq_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    # libpq passes ``options`` to the server: every connection of this queue (the queue's
    # own, the raw side door, worker subprocesses) lands in the test's schema.
    url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    try:
        yield Backend("postgres", url, url, psycopg.Error)
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> Backend:
    found: Backend = request.getfixturevalue(f"{request.param}_backend")
    return found


@pytest.fixture
def queue(backend: Backend, clock: FakeClock) -> Iterator[Queue]:
    q = backend.open(clock)
    try:
        yield q
    finally:
        q.close()
