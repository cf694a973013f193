"""Atomic file writes, the one implementation every package uses.

A reader (the doctor, node_exporter's textfile collector, a browser, a worker that wakes up
late) sees the old file or the new one, never half of one; a crash leaves at most a stray
temporary file beside the target, named ``.<name>.<pid>.<random>.tmp``.

The steps, each for a reason:

1. the data goes to a temporary file in the target's own directory (a rename is atomic only
   within one file system), under a name no other writer can pick: the process id and random
   bytes, opened with ``O_EXCL`` so two writers (threads, processes, hosts on NFS) never
   share one;
2. the temporary file is fsynced, so a crash after the rename cannot leave an empty file
   under the real name;
3. it is renamed over the target (:func:`replace_file`) or hard-linked into place, which fails
   when the target exists (:func:`create_file`: the first writer wins, e.g. ``final.json``);
4. the directory is fsynced, so the rename itself survives a crash.

``fsync=False`` skips steps 2 and 4 only, for files whose loss costs nothing but time (the
doctor's scan cache, benchmarks): the temporary name stays unique and the rename atomic.

Errors are the ``OSError`` of the step that failed, after the temporary file is removed; the
caller maps it to its own error type.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

__all__ = ["check_replaceable", "create_file", "fsync_dir", "replace_file", "write_fd"]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_Path = str | os.PathLike[str]


def replace_file(
    path: _Path, data: bytes | str, *, fsync: bool = True, dir_fd: int | None = None
) -> None:
    """Replace ``path`` with ``data`` (UTF-8 for text) atomically; the directory must exist.

    With ``dir_fd``, ``path`` is a bare name in that open directory (the doctor's repairs
    resolve the directory once, symlink-safe, and write inside it).

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "metrics.prom"
    >>> replace_file(target, "up 1\\n"); replace_file(target, "up 0\\n"); target.read_text()
    'up 0\\n'
    """
    tmp = _write_temp(path, data, fsync=fsync, dir_fd=dir_fd)
    try:
        os.replace(tmp, path, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
    if fsync:
        _fsync_parent(path, dir_fd)


def check_replaceable(path: _Path) -> None:
    """Raise the ``OSError`` that :func:`replace_file` would meet at its first step in
    ``path``'s directory (read-only, not this user's, not a directory), before anything is
    done that a later write could not take back: an empty temporary file is made beside
    ``path`` and removed. A full disk is seen only by the bytes of a real write.

    >>> import tempfile
    >>> check_replaceable(Path(tempfile.mkdtemp()) / "state.json")
    >>> check_replaceable(Path("/nonexistent/state.json"))
    Traceback (most recent call last):
    ...
    FileNotFoundError: [Errno 2] No such file or directory: '/nonexistent/.state.json...tmp'
    """
    os.unlink(_write_temp(path, b"", fsync=False, dir_fd=None))


def create_file(
    path: _Path, data: bytes | str, *, fsync: bool = True, dir_fd: int | None = None
) -> bool:
    """Create ``path`` with ``data`` atomically unless it exists; True when this call made it.

    The file is hard-linked into place, which fails when the target exists, so of two writers
    exactly one wins, and a reader never sees a partial file.

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "final.json"
    >>> create_file(target, "first"), create_file(target, "second"), target.read_text()
    (True, False, 'first')
    """
    tmp = _write_temp(path, data, fsync=fsync, dir_fd=dir_fd)
    try:
        os.link(tmp, path, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
    if fsync:
        _fsync_parent(path, dir_fd)
    return True


def fsync_dir(directory: _Path) -> None:
    """fsync a directory (its entries, e.g. a rename, survive a crash); errors are ignored:
    some file systems refuse to fsync a directory and there is nothing better to do.

    >>> import tempfile
    >>> from pathlib import Path
    >>> directory = Path(tempfile.mkdtemp())
    >>> _ = (directory / "new.json").write_text("{}")
    >>> fsync_dir(directory)  # the new name survives a crash from here on
    """
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_parent(path: _Path, dir_fd: int | None) -> None:
    if dir_fd is None:
        fsync_dir(Path(path).parent)
    else:
        with contextlib.suppress(OSError):
            os.fsync(dir_fd)


def write_fd(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to the descriptor ``fd``: ``os.write`` may write part of
    it (a pipe, a signal), and the rest follows.

    >>> r, w = os.pipe()
    >>> write_fd(w, b"whole"); os.close(w); os.read(r, 16)
    b'whole'
    >>> os.close(r)
    """
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _write_temp(path: _Path, data: bytes | str, *, fsync: bool, dir_fd: int | None) -> str:
    """A fresh temporary file beside ``path`` holding ``data``; its path (or name)."""
    raw = data.encode() if isinstance(data, str) else data
    target = Path(path)
    name = f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    tmp = name if dir_fd is not None else str(target.with_name(name))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW
    fd = os.open(tmp, flags, 0o644, dir_fd=dir_fd)
    try:
        write_fd(fd, raw)
        if fsync:
            os.fsync(fd)
    except OSError:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
    os.close(fd)
    return tmp
