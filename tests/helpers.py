"""Helpers every test package shares: the one "skip locally, fail under CI" rule, the
``doctor`` command line as a whole process (:func:`run_doctor`), the names
docs/findings.md gives under a code (:func:`documented_names`), and the wait for a condition
that real processes bring about (:func:`wait_until`).

A test that needs something outside the repository (the PostgreSQL server at 127.0.0.1:5432,
a headless Chromium, actionlint) skips on a laptop that lacks it, and FAILS under ``CI=true``,
where a skipped test would hide that it never ran. Every such test goes through
:func:`unavailable`; PostgreSQL tests call :func:`require_postgres`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from executor import Queue, Ticket

__all__ = [
    "NEEDS_ROOT_FOR_TMPFS",
    "PG_URL",
    "REPO",
    "ReaperSeam",
    "as_a_user",
    "documented_names",
    "fill",
    "require_postgres",
    "run_doctor",
    "tmpfs",
    "unavailable",
    "wait_until",
]

#: The test server (user ``postgres``, database ``test``); ``RUNDOCTOR_TEST_POSTGRES`` names
#: another. Start it with ``pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main
#: start``.
PG_URL = os.environ.get("RUNDOCTOR_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
#: The repository's root: where ``run_doctor`` runs.
REPO = Path(__file__).resolve().parents[1]
#: Why a test that mounts a file system of its own skips for any user but root: a tmpfs it
#: fills to the last page (ENOSPC) or remounts read-only, which only root may mount (a user
#: namespace's mount would be invisible to the test process itself). CI runs them as root.
NEEDS_ROOT_FOR_TMPFS = (
    "needs root to mount a tmpfs of its own (filled, or remounted read-only); no other user"
    " may, and CI runs it as root (README.md, Tests without root)"
)


def run_doctor(
    *args: str | bytes | Path,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """``doctor ARGS`` as a whole process from ``cwd`` (default: the repository's root) with
    the installed script (else ``python -m doctor``), with no ``RUNDOCTOR_*`` variable of the
    caller's but ``env``'s, 100 columns wide, its output captured as text (bytes that are not
    UTF-8 as ``\\x..``). ``args`` may be bytes: a name that is not UTF-8."""
    script = Path(sys.executable).parent / "doctor"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "doctor"]
    base = {k: v for k, v in os.environ.items() if not k.startswith("RUNDOCTOR_")}
    return subprocess.run(
        [*command, *[a if isinstance(a, bytes) else str(a) for a in args]],
        capture_output=True,
        text=True,
        errors="backslashreplace",
        env={**base, "COLUMNS": "100", **(env or {})},
        cwd=cwd or REPO,
        check=False,
        timeout=timeout,
    )


def unavailable(message: str, *, required: bool = False) -> NoReturn:
    """Skip the test saying ``message``; fail it instead under ``CI=true`` or ``required``."""
    if required or os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI=true: this test must run, never skip)")
    pytest.skip(message)


def as_a_user() -> list[str]:
    """The prefix that runs a command with file permissions enforced: nothing for a user,
    and for root (who ignores them) ``setpriv`` dropping the two capabilities that let it.

    Root stays root, so the interpreter runs wherever it is installed: switching to
    ``nobody`` (as these tests once did) failed before the test began where Python lives in
    root's own home (pyenv's ``/root/.pyenv``, mode 700: "libpython3.13.so.1.0: cannot open
    shared object file"). A directory a test hides from the doctor must then be hidden from
    its owner too (mode 000, not 700).
    """
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        unavailable("running as root without setpriv: file permissions cannot be enforced")
    caps = "-dac_override,-dac_read_search"
    return [setpriv, "--bounding-set", caps, "--inh-caps", caps]


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


def documented_names(code: str) -> set[str]:
    """The names docs/findings.md writes in backticks in the section of finding ``code``:
    every evidence key a finding of that code carries must be among them."""
    doc = (REPO / "docs" / "findings.md").read_text()
    start = doc.index(f"\n## `{code}`\n")
    end = doc.find("\n## ", start + 1)
    return set(re.findall(r"`([a-z_]+)", doc[start : end if end > 0 else None]))


@contextlib.contextmanager
def tmpfs(mount: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (``mount -o size=``: ``64k``, ``1m``) on ``mount`` (made if
    missing) for the ``with`` block, unmounted lazily after it; the test is skipped when not
    root, who alone may mount one."""
    if os.geteuid() != 0:
        pytest.skip(NEEDS_ROOT_FOR_TMPFS)
    mount.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Fill the file system at ``disk`` to its last page (ENOSPC); the filler file."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        with contextlib.suppress(OSError):  # written until the disk refuses
            while os.write(fd, b"\0" * 4096):
                pass
    finally:
        os.close(fd)
    return filler


def wait_until(what: Callable[[], object], timeout: float = 30.0) -> None:
    """Poll ``what`` every 50 ms until it is true; fail after ``timeout`` seconds (a bound on
    a condition that never comes, not on how fast it comes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class ReaperSeam(Queue):
    """The queue as a reaper pass uses it (``now``, ``tickets``, ``expired``, ``reclaim``,
    ``complete``), each call handed to ``inner``, with a test's hooks at the pass's two
    windows: ``judged()`` once the pass has read the leases it judges (``read``, from
    ``tickets``; then ``expired``, its last read), ``acting(ticket_id)`` as each reclaim is
    about to act. A seam, not a stand-in: the queue, its database and the processes are
    real."""

    def __init__(
        self,
        inner: Queue,
        *,
        judged: Callable[[], None] = lambda: None,
        acting: Callable[[str], None] = lambda _: None,
    ) -> None:
        super().__init__(clock=inner.now)
        self.inner, self.judged, self.acting = inner, judged, acting
        self.read: list[Ticket] = []

    def now(self) -> float:
        return self.inner.now()

    def tickets(self, *, status: Any = None) -> list[Ticket]:
        self.read = self.inner.tickets(status=status)  # the rows the pass judges
        return self.read

    def expired(self, now: float, *, claim_grace_s: float = 0.0) -> list[Ticket]:
        found = self.inner.expired(now, claim_grace_s=claim_grace_s)
        self.judged()
        return found

    def reclaim(self, ticket_id: str, **kw: Any) -> Ticket:
        self.acting(ticket_id)
        return self.inner.reclaim(ticket_id, **kw)

    def complete(self, lease: Any, *, result: Any) -> Ticket:
        return self.inner.complete(lease, result=result)

    def _transaction(self, *, write: bool = True) -> contextlib.AbstractContextManager[Any]:
        raise AssertionError("only the inner queue runs transactions")

    def close(self) -> None:
        """The inner queue is the test's to close."""
