"""Where Run Doctor keeps its state on a host: one answer for every package.

The executor's default queue and runs directory, the doctor's default roots and the watch
state all live under :func:`state_home`. Only command lines call it; library code takes paths.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

__all__ = ["expand_user", "make_dirs", "read_regular_text", "state_home"]


def expand_user(path: str | os.PathLike[str]) -> Path:
    """``~`` and ``~user`` expanded as a shell does: a user that does not exist leaves the path
    as it is (``Path.expanduser`` raises ``RuntimeError`` there, and ``--run-id
    ~nosuchuser/r``, ``--db``, ``RUNDOCTOR_CONFIG`` or a config file's path ended commands
    with "internal error", exit 70; the path as given is then refused as missing).

    >>> expand_user("~no-such-user-here/q.db")
    PosixPath('~no-such-user-here/q.db')
    >>> expand_user("/srv/runs")
    PosixPath('/srv/runs')
    """
    return Path(os.path.expanduser(os.fspath(path)))


def make_dirs(path: Path, *, exist_ok: bool = True) -> None:
    """``Path.mkdir(parents=True, exist_ok=...)`` without its recursion: Python's climbs one
    call per missing directory, and a path of 1,000 of them (well within ``PATH_MAX``) ended
    ``doctor run --root``, ``report --out`` and six other commands with ``RecursionError``,
    exit 70. The same errors otherwise, raised as ``Path.mkdir`` raises them.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     deep = Path(tmp, "a", "b", "c")
    ...     make_dirs(deep)
    ...     make_dirs(deep)  # exists already: fine
    ...     deep.is_dir()
    True
    """
    chain = [Path(path)]
    while True:  # climb while the parent is missing: the last of chain is then made
        try:
            _mkdir(chain[-1], exist_ok=exist_ok or len(chain) > 1)
            break
        except FileNotFoundError:
            parent = chain[-1].parent
            if parent == chain[-1]:
                raise
            chain.append(parent)
    for index in range(len(chain) - 2, -1, -1):  # then each child below it, once
        _mkdir(chain[index], exist_ok=exist_ok or index > 0)


def _mkdir(path: Path, *, exist_ok: bool) -> None:
    try:
        path.mkdir()
    except OSError:
        if not exist_ok or not path.is_dir():
            raise


def read_regular_text(path: Path) -> str:
    """The UTF-8 text of the regular file at ``path`` (symlinks followed), never blocking: a
    FIFO, device, socket or directory is ``OSError`` (``EINVAL``/``EISDIR``) before any read,
    where ``Path.read_text`` would wait forever on a FIFO nobody writes.

    >>> read_regular_text(Path("/dev/null"))
    Traceback (most recent call last):
    ...
    OSError: [Errno 22] not a regular file (a FIFO, device or socket): '/dev/null'
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, "not a regular file (a FIFO, device or socket)", str(path))
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb") as f:
            fd = -1
            return f.read().decode("utf-8")
    finally:
        if fd >= 0:
            os.close(fd)


def state_home() -> Path:
    """``$XDG_STATE_HOME`` or ``~/.local/state`` (the CLI's default; the library never calls it).

    >>> state_home().is_absolute()
    True
    """
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
