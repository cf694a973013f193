"""How every Run Doctor program ends on bad input: exit codes, "did you mean", crash lines.

The parts of the one-line error contract that need no terminal library: the documented exit
codes, the one way close matches are found and written (unknown run ids, checks, faults,
ticket ids, graph nodes, queue files), and the guard that turns a crash of the tool into one
line and a file holding the traceback. Printing the red ``error:`` line itself is the command
lines' business (``executor.console``, which needs Rich and typer).

>>> did_you_mean(close_matches("stale_hartbeat", ["stale_heartbeat", "idle_gap"]))
" (did you mean 'stale_heartbeat'?)"
"""

from __future__ import annotations

import atexit
import contextlib
import difflib
import errno
import os
import select
import signal
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NoReturn

from rundoctor.paths import NoHomeError

__all__ = [
    "BROKEN_PIPE",
    "CRASH_EXIT_CODE",
    "INTERRUPTED",
    "OUTPUT_LOST",
    "SUGGESTION_CUTOFF",
    "USAGE_EXIT_CODE",
    "close_matches",
    "crash_guarded",
    "did_you_mean",
    "done_then_print",
    "exit_when_done",
    "interrupted",
    "silence_stdout",
    "whole_output",
    "write_all",
    "write_whole",
]

#: The exit code of bad input: a usage error, an unknown name, an unreadable file.
USAGE_EXIT_CODE = 2

#: The exit code of a crash of the tool itself (an unexpected exception): ``EX_SOFTWARE``
#: from ``sysexits.h``, distinct from 1 ("findings at error") and 2 (usage or input error).
CRASH_EXIT_CODE = 70

#: The exit code of a command stopped by Ctrl-C (SIGINT), as shells report it.
INTERRUPTED = 130

#: The exit code of a command whose standard output's reader went away (``doctor scan |
#: head``): 128 + SIGPIPE, what a shell reports for a tool the signal ended, and never 1
#: ("findings at error"), which Rich's default would give.
BROKEN_PIPE = 141

#: The exit code of a command that changed something (queued a ticket, ran a pipeline,
#: applied a repair, wrote a report) and then could not print what it did (``>/dev/full``, an
#: I/O error): ``EX_IOERR`` from ``sysexits.h``. Never 2, which says nothing was done: a script
#: that retried on it would queue the ticket twice. Its one line says what was done.
OUTPUT_LOST = 74

#: Write errors that say the disk (or the quota, or the file size limit) is full.
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})

#: How much of a too-long name an error line quotes.
_NAME_SHOWN = 80


def silence_stdout() -> None:
    """Point file descriptor 1 at ``/dev/null``: once the reader of standard output is gone,
    what is still buffered (and the interpreter's last flush) goes nowhere, without a
    second ``BrokenPipeError`` on the way out. Standard error goes there too when its reader
    is gone as well (``2>&1 | head``): what a failed write left in its buffer was written
    again at every later write and at the exit, whose failed flush made the exit code 120,
    not :data:`BROKEN_PIPE` (unless ``PYTHONUNBUFFERED`` was set).

    >>> import subprocess, sys
    >>> code = ("from rundoctor.errors import silence_stdout; print('kept', flush=True); "
    ...         "silence_stdout(); print('dropped')")
    >>> subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    'kept\\n'
    """
    _to_devnull(sys.stdout.fileno() if sys.stdout is not None else 1)
    if sys.stderr is not None:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):  # its reader is gone too (or it is closed)
            with contextlib.suppress(OSError, ValueError):
                _to_devnull(sys.stderr.fileno())


def _to_devnull(fd: int) -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except (OSError, ValueError):
        pass


#: How alike a known name must be to be suggested (:func:`difflib.get_close_matches`'s own
#: default): one typo in a short check name, a few in a 26-character run id, never a
#: different word that happens to share letters.
SUGGESTION_CUTOFF = 0.6


@contextlib.contextmanager
def whole_output() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) and SIGTERM off while a document goes to standard output, so that
    its reader gets it whole: a document written in pieces (a scan's JSON is megabytes, into
    a pipe its reader drains as it can) was cut where the signal landed, and ``--json`` was
    no longer JSON. The signal is acted on once the document is out, as its handler would
    have (Python's default: ``KeyboardInterrupt``, ``error: interrupted``, exit 130; SIGTERM
    unhandled: the same; a command's own handler, as ``doctor watch``'s: called); a second
    one is acted on at once, so that a reader that never reads cannot keep the command from
    stopping. Outside the main thread, nothing is held.

    >>> with whole_output():
    ...     print("[1, 2]")
    [1, 2]
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous: dict[int, Any] = {}

    def hold(signum: int, _frame: object) -> None:
        if held:
            _act_on(signum, previous[signum])
        else:
            held.append(signum)

    for held_off in (signal.SIGINT, signal.SIGTERM):
        previous[held_off] = signal.signal(held_off, hold)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
    if held:
        _act_on(held[0], previous[held[0]])


def _act_on(signum: int, handler: Any) -> None:
    """Do what ``handler`` (as :func:`signal.signal` returned it) does with ``signum``;
    the default action of SIGTERM (death, no word) is Ctrl-C's instead, as for a campaign."""
    if handler is signal.SIG_IGN:
        return
    if callable(handler):
        handler(signum, None)
        return
    raise KeyboardInterrupt


def write_all(text: str) -> None:
    """Write ``text`` to standard output, every byte of it. With ``PYTHONUNBUFFERED`` (as set
    in many containers and CI runners) ``sys.stdout`` writes through to the file itself, a
    write that a signal interrupts part-way returns the bytes it wrote, and ``sys.stdout``
    drops the rest without a word: a scan's JSON lost 12 KB from its middle when Ctrl-C
    landed while a slow reader held the pipe full. Here each partial write is followed by
    the rest. A stream without a binary layer (a test's ``StringIO``) is written as it is.

    >>> write_all("{}\\n")
    {}
    """
    out = sys.stdout
    raw = getattr(out, "buffer", None)
    if raw is None:
        out.write(text)
        return
    out.flush()
    view = memoryview(text.encode(out.encoding or "utf-8", out.errors or "strict"))
    while view:
        written = raw.write(view)
        if written is None:  # a non-blocking descriptor that is full: wait until it is not
            select.select([], [raw], [])
            continue
        view = view[written:]
    raw.flush()


def write_whole(text: str) -> None:
    """Write ``text``, a whole document, to standard output: every byte (:func:`write_all`),
    with Ctrl-C and SIGTERM held off until it is out (:func:`whole_output`).

    >>> write_whole("[]\\n")
    []
    """
    with whole_output():
        write_all(text)


@contextlib.contextmanager
def done_then_print(done: str, then: str) -> Iterator[None]:
    r"""Print, inside this block, the output of a command that has already changed something
    (``done`` says what, for a person: ``ticket t-0123456789ab was queued``; ``then``, where to
    see it: ``\`doctor tickets\` lists it; queue it again only if you want two``). A write to
    standard output that fails (a full disk, ``>/dev/full``, an I/O error) ends the process
    with one line saying what was done and that its output was lost, and exit
    :data:`OUTPUT_LOST`, not :data:`USAGE_EXIT_CODE`, which would say nothing was done. A
    reader that went away (``| head``) stays :data:`BROKEN_PIPE`, as for every command.

    >>> with done_then_print("ticket t-1 was queued", "`doctor tickets` lists it"):
    ...     print("t-1")
    t-1
    """
    try:
        yield
        if sys.stdout is not None:
            sys.stdout.flush()  # what is still buffered fails here, not at the exit
    except BrokenPipeError:
        raise
    except OSError as exc:
        if exc.filename is not None:  # a file the command writes, not its standard output
            raise
        silence_stdout()
        sys.stderr.write(
            f"error: {done}, but the command's output could not be written to standard output "
            f"({exc.strerror or exc}); {then}\n"
        )
        raise SystemExit(OUTPUT_LOST) from None


def close_matches(name: str, known: Iterable[str], *, n: int = 3) -> list[str]:
    """The known names closest to ``name``, best first (at most ``n``; none when none is close).

    Closest first: the name itself, the same name in other letter case, then one edit away
    (a letter wrong, missing, extra, or two swapped: in a name of two letters or more), then
    what difflib finds alike ignoring case. A short id had no suggestion: ``r2`` is only half
    like ``r1`` by difflib's measure, and ``R1`` not at all like ``r1``.

    >>> close_matches("sigkill_wroker", ["sigkill_worker", "torn_write"])
    ['sigkill_worker']
    >>> close_matches("exti", ["start", "exit"], n=1)
    ['exit']
    >>> close_matches("zzz", ["start", "exit"])
    []
    >>> close_matches("R1", ["r1", "r12"]), close_matches("r2", ["r1", "x9"])
    (['r1', 'r12'], ['r1'])
    """
    names = list(dict.fromkeys(known))
    folded = name.casefold()
    same = [k for k in names if k.casefold() == folded]  # the name itself first, if known
    same.sort(key=lambda k: k != name)
    edits = [k for k in names if len(name) >= 2 and _one_edit(folded, k.casefold())]
    by_fold: dict[str, list[str]] = {}
    for k in names:
        by_fold.setdefault(k.casefold(), []).append(k)
    alike = difflib.get_close_matches(folded, list(by_fold), n=n, cutoff=SUGGESTION_CUTOFF)
    ranked = same + edits + [k for f in alike for k in by_fold[f]]
    return list(dict.fromkeys(ranked))[:n]


def _one_edit(a: str, b: str) -> bool:
    """Whether ``b`` is ``a`` with one letter changed, added, removed, or two adjacent
    letters swapped.

    >>> [_one_edit("ab", x) for x in ("ax", "abc", "b", "ba", "ab", "xy")]
    [True, True, True, True, False, False]
    """
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
        return len(diff) == 1 or (
            len(diff) == 2
            and diff[1] == diff[0] + 1
            and a[diff[0]] == b[diff[1]]
            and a[diff[1]] == b[diff[0]]
        )
    short, long = (a, b) if len(a) < len(b) else (b, a)
    i = next((i for i, (x, y) in enumerate(zip(short, long, strict=False)) if x != y), len(short))
    return short[i:] == long[i + 1 :]


def did_you_mean(suggestions: Iterable[str]) -> str:
    """Close matches as a message suffix, empty when there are none.

    >>> did_you_mean(["stale_heartbeat"])
    " (did you mean 'stale_heartbeat'?)"
    >>> did_you_mean(["a1", "a2"])
    " (did you mean 'a1' or 'a2'?)"
    >>> did_you_mean([])
    ''
    """
    names = list(suggestions)
    if not names:
        return ""
    return " (did you mean " + " or ".join(repr(n) for n in names) + "?)"


def _crash_report(exc: BaseException) -> Path | None:
    """Write the traceback to a private temp file; its path (None when none could be written)."""
    text = "".join(traceback.format_exception(exc))
    try:
        fd, name = tempfile.mkstemp(prefix="rundoctor-crash-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as fh:
            fh.write(f"argv: {sys.argv!r}\n{text}")
    except OSError:
        return None
    return Path(name)


def interrupted(exc: BaseException | None, also: tuple[type[BaseException], ...] = ()) -> bool:
    """Whether ``exc``, or what it was raised from, is a Ctrl-C: Python's ``KeyboardInterrupt``,
    DuckDB's ``InterruptException`` (its engine's: a scan may have loaded only ``_duckdb``),
    DuckDB's ``RuntimeError: Query interrupted`` (its own handler saw the signal), or one of
    ``also``. Library code may wrap them in its own errors; every one of them is an interrupt.

    >>> interrupted(KeyboardInterrupt()), interrupted(RuntimeError("Query interrupted"))
    (True, True)
    >>> interrupted(ValueError("bad"))
    False
    """
    # DuckDB's exception only exists once DuckDB is loaded: a command that never queried it
    # (`doctor --help`) must not pay for importing it here.
    engine = sys.modules.get("_duckdb") or sys.modules.get("duckdb")
    kinds: tuple[type[BaseException], ...] = (KeyboardInterrupt, *also)
    if engine is not None:
        kinds += (engine.InterruptException,)
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, kinds) or (
            isinstance(exc, RuntimeError) and str(exc).strip() == "Query interrupted"
        ):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _encodable_streams() -> None:
    """Let standard output and error write any text whatever their encoding: a character
    the encoding lacks is written as its escape (``\\u2713``) instead of ending the command.

    Under a locale that is not UTF-8 (``LANG=en_US.ISO-8859-1``, ``PYTHONIOENCODING=ascii``,
    ``PYTHONUTF8=0`` with ``LC_ALL=C``), ``doctor diagnose`` ended with "internal error …
    UnicodeEncodeError: 'latin-1' codec can't encode character '\\u2713'", exit 70, at the
    first ``[✓]``, and ``scan`` at its first ``·``. Rich already draws its tables in ASCII
    there; the marks, dots and ellipses are ours. UTF-8 streams are left as they are.

    >>> _encodable_streams()
    """
    import codecs
    import io

    for stream in (sys.stdout, sys.stderr):
        encoding = getattr(stream, "encoding", None) or "utf-8"
        with contextlib.suppress(LookupError):
            if codecs.lookup(encoding).name == "utf-8":
                continue
        if isinstance(stream, io.TextIOWrapper):
            with contextlib.suppress(ValueError, OSError):  # a closed or detached stream
                stream.reconfigure(errors="backslashreplace")


def crash_guarded(main: Callable[[], object]) -> Callable[[], None]:
    """Wrap a console-script entry point: an unexpected exception (a bug of the tool, not an
    input error) ends it with one line naming the exception and the file holding the
    traceback, and exit code :data:`CRASH_EXIT_CODE`. ``RUNDOCTOR_DEBUG=1`` prints the
    traceback instead.

    >>> crash_guarded(lambda: None)()
    """

    def run() -> None:
        try:
            _encodable_streams()
            main()
        except (SystemExit, KeyboardInterrupt):
            raise
        except NoHomeError as exc:  # a default location asked for where there is none
            sys.stderr.write(f"error: {exc}\n")
            raise SystemExit(USAGE_EXIT_CODE) from None
        except BrokenPipeError:  # the reader went away: nothing to say, nobody to say it to
            silence_stdout()
            raise SystemExit(BROKEN_PIPE) from None
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG and exc.filename is not None:
                _name_too_long(exc.filename)
            if exc.filename is not None or exc.errno not in _NO_ROOM:
                _crashed(exc)
            # A write with no file named: standard output (`>/dev/full`) or a descriptor the
            # command holds, on a full disk or over quota. The machine's state, not a bug.
            sys.stderr.write(
                f"error: cannot write: {exc.strerror or exc} (standard output, or a file the "
                "command writes); free space or redirect standard output elsewhere\n"
            )
            silence_stdout()
            raise SystemExit(USAGE_EXIT_CODE) from None
        except Exception as exc:
            _crashed(exc)

    return run


def _name_too_long(name: object) -> NoReturn:
    """End the process for a path the system refused as too long (``ENAMETOOLONG``).

    No file can have such a name, so it came from the command line, the environment or the
    config file, never from a run: bad input (exit 2) wherever the command first touched it
    (``--root``, ``--run-id``, ``--out``, ``--journal``…), not a crash of the tool. The line
    quotes the part that is too long: one name over 255 bytes, else the whole path.
    """
    from rundoctor.terminal import printable

    path = os.fsencode(name) if isinstance(name, (str, bytes, os.PathLike)) else b""
    part = max(path.split(b"/"), key=len, default=b"")
    what, limit = ("a name", 255) if len(part) > 255 else ("a path", 4095)
    text = os.fsdecode(part if len(part) > 255 else path)
    shown = printable(text if len(text) <= _NAME_SHOWN else text[:_NAME_SHOWN] + "…")
    message = (
        f"error: file name too long: '{shown}' is {len(os.fsencode(text)):,} bytes, and "
        f"{what} may have at most {limit:,}; pass a shorter path or run id\n"
    )
    sys.stderr.write(message.encode("utf-8", "backslashreplace").decode("utf-8"))
    raise SystemExit(USAGE_EXIT_CODE) from None


def _crashed(exc: Exception) -> NoReturn:
    """End the process for an unexpected exception (see :func:`crash_guarded`)."""
    if os.environ.get("RUNDOCTOR_DEBUG", "") not in ("", "0"):
        traceback.print_exception(exc)
        raise SystemExit(CRASH_EXIT_CODE) from None
    where = _crash_report(exc)
    detail = f"details in {where}" if where else "set RUNDOCTOR_DEBUG=1 for details"
    first = str(exc).splitlines()[0] if str(exc) else ""
    sys.stderr.write(
        f"error: internal error (a bug in rundoctor): {type(exc).__name__}"
        f"{': ' + first[:200] if first else ''}; {detail}; "
        "RUNDOCTOR_DEBUG=1 prints the traceback\n".encode("utf-8", "backslashreplace").decode(
            "utf-8"
        )
    )
    raise SystemExit(CRASH_EXIT_CODE) from None


def exit_when_done(main: Callable[[], object]) -> NoReturn:
    """Run a console-script entry point, then end the process without tearing it down.

    A process that exits normally frees every object and unloads every module first: after a
    scan that is a thousand runs' cached entries and DuckDB's library, about 20 ms of a 0.5 s
    rescan, for nothing the process still does. Here, once ``main`` returns (or exits), the
    ``atexit`` functions run (the libraries' clean-ups: temporary directories, worker
    processes), standard output and error are flushed, and the process ends with ``main``'s
    exit code. While another thread is still running, or when a flush fails (a closed pipe),
    the process exits the normal way, which joins the thread or reports the failed write as
    it always has. Only for a process's entry point: a caller never gets control back.

    A process started with its standard output closed (``doctor scan >&-``: Python's
    ``sys.stdout`` is then None) cannot print what it was asked for: ``main`` is not run, and
    the process says so in one line and exits :data:`USAGE_EXIT_CODE`, as ``ls >&-`` does.

    >>> import subprocess, sys
    >>> code = "from rundoctor.errors import exit_when_done; exit_when_done(lambda: exit(3))"
    >>> subprocess.run([sys.executable, "-c", code], check=False).returncode
    3
    """
    if sys.stderr is None:  # closed too: nothing can be said, but nothing may crash on it
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (the process's, until it ends)
    code = 0
    try:
        if sys.stdout is None:
            print("error: standard output is closed; nothing could be printed", file=sys.stderr)
            raise SystemExit(USAGE_EXIT_CODE)
        main()
    except SystemExit as exc:
        if isinstance(exc.code, int):
            code = exc.code
        elif exc.code is not None:  # as the interpreter does with sys.exit("message")
            print(exc.code, file=sys.stderr)
            code = 1
    if threading.active_count() > 1:
        raise SystemExit(code)
    # What the interpreter's exit would run first, and only once: the functions run are
    # unregistered, so the normal exit below (a failed flush) does not run them again.
    atexit._run_exitfuncs()
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except BrokenPipeError:
        silence_stdout()
        os._exit(BROKEN_PIPE)
    except (OSError, ValueError):
        raise SystemExit(code) from None
    os._exit(code)
