"""The private cluster's server programs are found whatever PostgreSQL's major version."""

from __future__ import annotations

from pathlib import Path

from tests.executor.private_postgres import find_binaries


def _programs(directory: Path) -> Path:
    directory.mkdir(parents=True)
    for name in ("initdb", "pg_ctl"):
        (directory / name).write_text("#!/bin/sh\n")
        (directory / name).chmod(0o755)
    return directory


def test_the_newest_debian_major_version_is_taken_not_a_fixed_one(tmp_path: Path) -> None:
    # Fixed to /usr/lib/postgresql/15/bin, the tests that restart or stop a database skipped
    # on Debian 13 (17) and GitHub's Ubuntu runners (16), and silently under CI=true.
    debian = tmp_path / "lib/postgresql"
    for major in ("9", "15", "17"):
        _programs(debian / major / "bin")
    (debian / "18/bin").mkdir(parents=True)  # a client-only install: no initdb
    assert find_binaries(debian, path="") == debian / "17/bin"


def test_without_debian_s_layout_the_initdb_on_path_is_taken(tmp_path: Path) -> None:
    bindir = _programs(tmp_path / "pgsql/bin")
    assert find_binaries(tmp_path / "none", path=str(bindir)) == bindir
