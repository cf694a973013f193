"""Where Run Doctor keeps its state on a host: one answer for every package.

The executor's default queue and runs directory, the doctor's default roots and the watch
state all live under :func:`state_home`. Only command lines call it; library code takes paths.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from io import BufferedReader
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "NoHomeError",
    "display_name",
    "expand_queue_path",
    "expand_user",
    "file_kind",
    "make_dirs",
    "open_regular_file",
    "read_error",
    "read_regular_bytes",
    "read_regular_text",
    "remove_tree",
    "state_home",
]

#: How a directory is opened on the way down: never through a symlink, never inherited.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def display_name(name: str) -> str:
    """A file name as text: bytes that are not UTF-8 (held as surrogates) written ``\\xNN``.

    >>> display_name("node" + b"\\xff".decode("utf-8", "surrogateescape"))
    'node\\\\xff'
    >>> display_name("build")
    'build'
    """
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def file_kind(mode: int) -> str:
    """What a ``st_mode`` is, as a message names it.

    >>> file_kind(stat.S_IFIFO | 0o644), file_kind(stat.S_IFREG | 0o644)
    ('a FIFO', 'a regular file')
    """
    for test, name in (
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISLNK, "a symlink"),
    ):
        if test(mode):
            return name
    return "not a regular file"


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


def expand_queue_path(url: str) -> str:
    """A queue given as a SQLite file path (``--db``, ``$RUNDOCTOR_DB``) with ``~`` expanded
    as :func:`expand_user` does; a URL (``sqlite:///ABS/PATH``, ``postgresql://…``) as given.
    Unexpanded, ``--db '~/q.db'`` opened ``./~/q.db``: ``enqueue`` made a directory named
    ``~`` there, ``tickets`` found no queue.

    >>> import os
    >>> expand_queue_path("~/q.db") == os.path.join(os.path.expanduser("~"), "q.db")
    True
    >>> expand_queue_path("postgresql://u@h/db"), expand_queue_path("sqlite:///srv/q.db")
    ('postgresql://u@h/db', 'sqlite:///srv/q.db')
    """
    return url if "://" in url or not url.startswith("~") else str(expand_user(url))


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


def remove_tree(path: str | os.PathLike[str], *, ignore_errors: bool = False) -> None:
    """Remove ``path`` and all below it, as ``rm -rf`` does: ``shutil.rmtree`` without its
    recursion. Python 3.11's climbs one call, and holds one descriptor, per level: a tree
    1,000 directories deep (a stage's worktree in a chaos ``--out``) ended ``chaos run`` with
    ``RecursionError``, exit 70, and ``ignore_errors`` does not catch that. Here the walk holds
    at most two descriptors whatever the depth, works by names relative to them (no path grows
    past ``PATH_MAX``), and never follows a symlink: a symlink, at ``path`` or below, is
    removed, not what it points at. A ``path`` that does not exist is nothing to remove.
    ``ignore_errors`` goes on past what cannot be removed (as ``shutil.rmtree``'s does).

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     deep = Path(tmp, "top", *["d"] * 1500)
    ...     make_dirs(deep)
    ...     _ = (deep / "f").write_text("x")
    ...     remove_tree(Path(tmp, "top"))
    ...     remove_tree(Path(tmp, "top"))  # gone already: fine
    ...     sorted(Path(tmp).iterdir())
    []
    """

    def fail(exc: OSError) -> None:
        if not ignore_errors:
            raise exc

    try:
        fd = os.open(path, _DIR_FLAGS)
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.ELOOP):  # a file, or a symlink: itself alone
            _remove(os.unlink, os.fspath(path), None, fail)
        else:
            fail(exc)
        return
    _empty(fd, fail)
    _remove(os.rmdir, os.fspath(path), None, fail)


def _remove(
    op: Callable[..., None], name: str, dir_fd: int | None, fail: Callable[[OSError], None]
) -> None:
    """``op(name, dir_fd=dir_fd)`` (``os.unlink`` or ``os.rmdir``); gone already is done."""
    try:
        op(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except OSError as exc:
        fail(exc)


def _identity(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def _clear(fd: int, fail: Callable[[OSError], None]) -> list[str]:
    """Unlink what is not a directory in ``fd``; the names of its subdirectories."""
    try:
        with os.scandir(fd) as it:
            entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
    except OSError as exc:
        fail(exc)
        return []
    for name, is_dir in entries:
        if not is_dir:
            _remove(os.unlink, name, fd, fail)
    return [name for name, is_dir in entries if is_dir]


def _empty(top: int, fail: Callable[[OSError], None]) -> None:
    """Empty the directory open at ``top`` (and close it), depth first, by a loop: one level
    per directory on the way down (its identity and the subdirectories left to remove), and
    back up through ``..``, checked to be the directory the walk came from."""
    fd = top
    try:
        levels = [("", _identity(fd), _clear(fd, fail))]
        while True:
            name, _, pending = levels[-1]
            if pending:
                child_name = pending.pop()
                try:
                    child = os.open(child_name, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:  # since replaced by a file or symlink, or unreadable
                    if exc.errno in (errno.ENOTDIR, errno.ELOOP):
                        _remove(os.unlink, child_name, fd, fail)
                    elif exc.errno != errno.ENOENT:
                        fail(exc)
                    continue
                os.close(fd)
                fd = child
                levels.append((child_name, _identity(fd), _clear(fd, fail)))
                continue
            levels.pop()
            if not levels:
                return
            up = os.open("..", _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = up
            if _identity(fd) != levels[-1][1]:  # renamed meanwhile: this is no longer the tree
                fail(OSError(errno.EBUSY, "moved while it was being removed", name))
                return
            _remove(os.rmdir, name, fd, fail)
    finally:
        os.close(fd)


def read_regular_text(path: Path, *, max_bytes: int | None = None) -> str:
    """The UTF-8 text of the regular file at ``path`` (:func:`read_regular_bytes`).

    >>> read_regular_text(Path("/dev/null"))
    Traceback (most recent call last):
    ...
    OSError: [Errno 22] not a regular file (a FIFO, device or socket): '/dev/null'
    """
    return read_regular_bytes(path, max_bytes=max_bytes).decode("utf-8")


def open_regular_file(path: Path) -> BinaryIO:
    """The regular file at ``path`` (symlinks followed) opened for buffered reading, never
    blocking: a FIFO, device, socket or directory is ``OSError`` (``EINVAL``/``EISDIR``)
    before any read, where ``open`` would wait forever on a FIFO nobody writes.

    >>> open_regular_file(Path("/dev/null"))
    Traceback (most recent call last):
    ...
    OSError: [Errno 22] not a regular file (a FIFO, device or socket): '/dev/null'
    """
    return _opened(path)[0]


def _opened(path: Path) -> tuple[BufferedReader, int]:
    """:func:`open_regular_file` and the size its one ``fstat`` saw."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file (a FIFO, device or socket)", str(path))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb"), st.st_size
    except BaseException:
        os.close(fd)
        raise


def read_regular_bytes(path: Path, *, max_bytes: int | None = None) -> bytes:
    """The bytes of the regular file at ``path`` (:func:`open_regular_file`). A file of more
    than ``max_bytes`` is ``OSError`` ``EFBIG``, and no more than that is ever read of it.

    >>> read_regular_bytes(Path(__file__), max_bytes=10)
    Traceback (most recent call last):
    ...
    OSError: [Errno 27] larger than 10 bytes: '...paths.py'
    """
    f, size = _opened(path)
    with f:
        if max_bytes is not None and size > max_bytes:
            raise OSError(errno.EFBIG, f"larger than {max_bytes:,} bytes", str(path))
        # As much as the file holds and a byte more: ``read(max_bytes + 1)`` would allocate
        # the whole bound for every file (64 MiB per scan-cache entry made a rescan's 1,000
        # reads 3.5 times slower). A file that grew since is read on.
        data = f.read(size + 1)
        if len(data) > size:
            rest = None if max_bytes is None else max(0, max_bytes + 1 - len(data))
            data += f.read(rest)
    if max_bytes is not None and len(data) > max_bytes:
        raise OSError(errno.EFBIG, f"larger than {max_bytes:,} bytes", str(path))
    return data


def read_error(path: Path, exc: OSError | UnicodeDecodeError) -> str:
    """Why the file at ``path`` could not be read, as a message's clause: for a missing one,
    ``no such file`` and the closest names beside it with its suffix ("did you mean"), not
    Python's ``[Errno 2] No such file or directory: 'p.dto'``, which repeats the name.

    >>> import tempfile
    >>> home = Path(tempfile.mkdtemp())
    >>> _ = (home / "deploy.dot").write_text("")
    >>> try:
    ...     read_regular_text(home / "deploy.dto")
    ... except OSError as exc:
    ...     print(read_error(home / "deploy.dto", exc))
    no such file (did you mean '.../deploy.dot'?)
    """
    from rundoctor.errors import close_matches, did_you_mean

    if isinstance(exc, UnicodeDecodeError):
        return f"it is not UTF-8 text ({exc.reason} at byte {exc.start})"
    if not isinstance(exc, FileNotFoundError):
        return exc.strerror or str(exc)
    try:
        names = [p.name for p in path.parent.iterdir() if p.is_file()]
    except OSError:  # the directory is missing too, or may not be listed
        names = []
    # As the name was given: bare beside a bare name, else with its directory.
    shown = (lambda n: n) if path.parent == Path() else (lambda n: str(path.parent / n))
    return "no such file" + did_you_mean(shown(n) for n in close_matches(path.name, names))


def state_home() -> Path:
    """``$XDG_STATE_HOME`` or ``~/.local/state`` (the CLI's default; the library never calls it);
    :class:`NoHomeError` when there is no home to put it in.

    >>> state_home().is_absolute()
    True
    """
    state = os.environ.get("XDG_STATE_HOME")
    if state:
        return Path(state)
    try:
        return Path.home() / ".local" / "state"
    except RuntimeError:  # no HOME, and a user id with no passwd entry (`docker run -u 12345`)
        raise NoHomeError(
            f"no home directory: HOME is unset and user id {os.getuid()} has no entry in the "
            "password database, so the default locations (~/.local/state/rundoctor) do not "
            "exist; set HOME or XDG_STATE_HOME, or pass the paths (--db, --root, --state)"
        ) from None


class NoHomeError(LookupError):
    """:func:`state_home` found no home: the console scripts' guard
    (:func:`rundoctor.errors.crash_guarded`) makes it one line, exit 2."""
