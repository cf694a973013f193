"""Shared test configuration: where fixtures live, and a pinned clock."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.helpers import unavailable

if TYPE_CHECKING:
    from doctor import Diagnosis
    from tests.executor.private_postgres import PrivatePostgres

# pytest-xdist starts its worker processes with COLUMNS=80 and LINES=24 (``make test`` runs the
# suite in two), which a serial run in a pipe (cron, CI) does not have: the commands the tests
# start would take them for a terminal's width. The workers run as the serial run does.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _name in ("COLUMNS", "LINES"):
        os.environ.pop(_name, None)

# Started from a script in the background (`bash .ci/run &`), the suite inherits SIGINT
# ignored, and so would every command it starts: Python then installs no KeyboardInterrupt
# handler, and a test that interrupts a command (Ctrl-C) would find it deaf whenever the signal
# missed one of DuckDB's queries (DuckDB installs its own while a query runs). The commands
# start as from a terminal.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

REPO = Path(__file__).resolve().parent.parent
CASES = REPO / "fixtures" / "cases"


@pytest.fixture
def cases_dir() -> Path:
    return CASES


#: The clock the detector tests diagnose incident 04's generated run at.
ROGUE_NOW = datetime(2026, 2, 11, 9, tzinfo=UTC).timestamp()


@pytest.fixture(scope="session")
def rogue_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Incident 04's run, generated once per session (``fixtures/rogue.py``). Read only: a test
    that changes the run builds its own."""
    from fixtures.rogue import build_rogue_run

    return build_rogue_run(tmp_path_factory.mktemp("rogue"))


@pytest.fixture(scope="session")
def rogue_diagnosis(rogue_run: Path) -> Diagnosis:
    """``rogue_run`` diagnosed once, with every check, at ``ROGUE_NOW``. Each detector's
    findings are the same as diagnosing with that check alone (checked when this was shared)."""
    from doctor import DoctorConfig, diagnose_path

    return diagnose_path(rogue_run, DoctorConfig(now=ROGUE_NOW))


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivatePostgres]:
    """A private PostgreSQL cluster of the module's own (``tests/executor/private_postgres.py``),
    for the tests that restart, stall or stop the database: never the shared server."""
    from tests.executor import private_postgres

    why = private_postgres.unavailable()
    if why is not None:  # under CI=true a failure: these tests once skipped there unseen
        unavailable(f"no private PostgreSQL cluster: {why}")
    pg = private_postgres.PrivatePostgres()
    try:
        yield pg
    finally:
        pg.destroy()
