"""Where Run Doctor keeps its state on a host: one answer for every package.

The executor's default queue and runs directory, the doctor's default roots and the watch
state all live under :func:`state_home`. Only command lines call it; library code takes paths.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

__all__ = ["read_regular_text", "state_home"]


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
