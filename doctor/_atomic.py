"""Atomic file writes for the doctor's outputs: :mod:`rundoctor.atomic` with parents created
and errors mapped to :class:`doctor.UsageError`.

A reader (node_exporter's textfile collector, a browser, the next ``doctor watch``) sees the
old file or the new one, never half of one; a crash leaves at most a stray temporary file.
"""

from __future__ import annotations

from pathlib import Path

from doctor._errors import UsageError
from rundoctor.atomic import replace_file

__all__ = ["write_atomic"]


def write_atomic(path: Path, data: bytes | str) -> Path:
    """Replace ``path`` with ``data`` atomically (UTF-8 for text); parents are created.

    Errors are :class:`doctor.UsageError` naming the path and the reason.

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "out" / "metrics.prom"
    >>> write_atomic(target, "up 1\\n").read_text()
    'up 1\\n'
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_file(path, data)
    except OSError as exc:
        raise UsageError(
            f"cannot write {str(path)!r}: {exc.strerror or exc}; pick a writable path"
        ) from exc
    return path
