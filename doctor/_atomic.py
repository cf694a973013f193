"""Atomic file writes for the doctor's outputs: :mod:`rundoctor.atomic` with parents created
and errors mapped to :class:`doctor.UsageError`.

A reader (node_exporter's textfile collector, a browser, the next ``doctor watch``) sees the
old file or the new one, never half of one; a crash leaves at most a stray temporary file.
"""

from __future__ import annotations

import stat
from pathlib import Path

from doctor._errors import UsageError
from rundoctor.atomic import replace_file
from rundoctor.paths import make_dirs

__all__ = ["check_output", "write_atomic"]


def check_output(path: Path) -> Path:
    """``path`` when a file may be written there; else :class:`doctor.UsageError` saying why.

    Refused: a path that names no file (``--out ''``, ``.``, ``..``, ``/``), an existing
    directory, and an existing FIFO, device or socket (an atomic write would replace it with
    a regular file), and a parent that is a file.

    >>> check_output(Path(""))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    doctor._errors.UsageError: cannot write '.': it names a directory, not a file; pick a ...
    """
    if path.name in ("", ".", ".."):
        raise UsageError(f"cannot write {str(path)!r}: it names a directory, not a file; {_NEXT}")
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        mode = None
    except NotADirectoryError:
        mode = None  # a parent that is a file: found below, with its name
    except OSError as exc:
        raise UsageError(f"cannot write {str(path)!r}: {exc.strerror or exc}; {_NEXT}") from None
    if mode is not None and stat.S_ISDIR(mode):
        raise UsageError(f"cannot write {str(path)!r}: it is a directory; {_NEXT}")
    if mode is not None and not stat.S_ISREG(mode):
        raise UsageError(
            f"cannot write {str(path)!r}: it is not a regular file (a FIFO, device or socket "
            f"would be replaced); {_NEXT}"
        )
    for parent in path.parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise UsageError(
                    f"cannot write {str(path)!r}: {str(parent)!r} is a file, not a directory; "
                    f"{_NEXT}"
                )
            break
    return path


_NEXT = "pick a writable file path"


def write_atomic(path: Path, data: bytes | str) -> Path:
    """Replace ``path`` with ``data`` atomically (UTF-8 for text); parents are created.

    Errors are :class:`doctor.UsageError` naming the path and the reason.

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "out" / "metrics.prom"
    >>> write_atomic(target, "up 1\\n").read_text()
    'up 1\\n'
    """
    check_output(path)
    try:
        make_dirs(path.parent)
        replace_file(path, data)
    except OSError as exc:
        raise UsageError(
            f"cannot write {str(path)!r}: {exc.strerror or exc}; pick a writable path"
        ) from exc
    return path
