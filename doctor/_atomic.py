"""Atomic file writes: a temporary file beside the target, fsynced, renamed into place.

A reader (node_exporter's textfile collector, a browser, the next ``doctor watch``) sees the
old file or the new one, never half of one; a crash leaves at most a stray temporary file.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from doctor._errors import UsageError

__all__ = ["write_atomic"]


def write_atomic(path: Path, data: bytes | str) -> Path:
    """Replace ``path`` with ``data`` atomically (UTF-8 for text); parents are created.

    Errors are :class:`doctor.UsageError` naming the path and the reason.

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "out" / "metrics.prom"
    >>> write_atomic(target, "up 1\\n").read_text()
    'up 1\\n'
    """
    raw = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644
        )
        try:
            os.write(fd, raw)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise UsageError(
            f"cannot write {str(path)!r}: {exc.strerror or exc}; pick a writable path"
        ) from exc
    with contextlib.suppress(OSError):
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return path
