"""A private PostgreSQL cluster that a test may restart and stop (never the shared server).

The shared server at 127.0.0.1:5432 serves other people's tests: it is never restarted or
stopped. A test that needs a database to go away starts its own cluster here: ``initdb`` into
a temporary directory, a free port, trust authentication, sockets in the cluster's own
directory; :meth:`PrivatePostgres.destroy` stops it and removes the directory. As root the
cluster belongs to the ``postgres`` OS user (initdb and the server refuse root); as any other
user it is that user's own, so these tests run without root too (they once skipped there).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg


def find_binaries(debian: Path = Path("/usr/lib/postgresql"), path: str | None = None) -> Path:
    """The directory of PostgreSQL's server programs (``initdb``, ``pg_ctl``): the newest of
    Debian's ``/usr/lib/postgresql/N/bin``, else the one of the ``initdb`` on ``path`` (default
    ``$PATH``). Fixed to 15's, the private-cluster tests skipped on any machine with another
    major version (Debian 13 has 17, GitHub's Ubuntu runners 16), and silently under CI=true.

    >>> find_binaries(Path("/nonexistent"), path="")
    PosixPath('/nonexistent/bin')
    """
    majors = [
        d for d in debian.glob("*/bin") if d.parent.name.isdigit() and (d / "initdb").is_file()
    ]
    if majors:
        return max(majors, key=lambda d: int(d.parent.name))
    initdb = shutil.which("initdb", path=path)
    return Path(initdb).parent if initdb else debian / "bin"


BIN = find_binaries()


def unavailable() -> str | None:
    """Why a private cluster cannot be started here, or None."""
    if not (BIN / "initdb").is_file():
        return f"no PostgreSQL server programs (initdb, pg_ctl) in {BIN} nor on PATH"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "no postgres OS user (as root, the cluster must belong to another user)"
    return None


def _owner() -> list[str]:
    """The prefix that runs a cluster command as its owner: ``postgres`` for root, who may not
    own a cluster; nothing for any other user, who owns their own."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivatePostgres:
    """One throw-away cluster: ``url``, ``restart()``, ``stop()``, ``start()``, ``destroy()``."""

    def __init__(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="rd-private-pg-"))
        self.data = self.home / "data"
        self.port = _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.home, user.pw_uid, user.pw_gid)
        self._as_postgres(
            str(BIN / "initdb"), "-D", str(self.data), "--auth=trust", "-U", "postgres"
        )
        self.start()

    def _as_postgres(self, *argv: str) -> None:
        subprocess.run(
            [*_owner(), *argv],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.home,
        )

    def _pg_ctl(self, action: str, *extra: str) -> list[str]:
        # pg_ctl hands -o to a shell: the socket directory is quoted (a TMPDIR with a space).
        socket_dir = shlex.quote(str(self.home))
        options = f"-p {self.port} -k {socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.home / "server.log")
        return [
            str(BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            log,
            "-o",
            options,
            "-w",
            *extra,
            action,
        ]

    def control(self, action: str, *extra: str) -> None:
        """``pg_ctl ACTION`` on this cluster only (waits for it to finish)."""
        self._as_postgres(*self._pg_ctl(action, *extra))

    def control_command(self) -> str:
        """This cluster's control as a command template (``{action}``: restart, stop, start),
        the form ``doctor chaos run --db-control`` takes."""
        argv = [*_owner(), *self._pg_ctl("{action}", "-m", "fast")]
        return shlex.join(argv)

    def start(self) -> None:
        self.control("start")

    def stop(self) -> None:
        """A fast shutdown: sessions are terminated (``AdminShutdown``), as in a restart."""
        self.control("stop", "-m", "fast")

    def restart(self) -> None:
        self.control("restart", "-m", "fast")

    def terminate_others(self) -> None:
        """End every other session on the server (what a restart does to connections)."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'"
            )

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self.control("stop", "-m", "immediate")
        shutil.rmtree(self.home, ignore_errors=True)
