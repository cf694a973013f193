"""How every command line of the project reports a failure: one red line, an exit code.

Shared by ``doctor``'s own commands and the executor's and chaos's sub-commands, so that all of
them behave alike: library errors (and Ctrl-C) end the command with one line on stderr and a
documented exit code, never a traceback.
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

__all__ = ["CRASH_EXIT_CODE", "crash_guarded", "fail", "reported"]

#: The exit code of a crash of the tool itself (an unexpected exception): ``EX_SOFTWARE``
#: from ``sysexits.h``, distinct from 1 ("findings at error") and 2 (usage or input error).
CRASH_EXIT_CODE = 70


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr as one line and exit with ``code``."""
    # The message quotes user input and artifact text: escape it, or "[/x]" in a run id is
    # read as markup (and raises); soft_wrap keeps it one line whatever the width.
    Console(stderr=True, highlight=False).print(
        f"[red]error:[/red] {escape(message)}", soft_wrap=True
    )
    raise typer.Exit(code)


@contextmanager
def reported(*errors: type[Exception]) -> Iterator[None]:
    """Turn the given library errors into :func:`fail` (their ``exit_code``, else 2)."""
    try:
        yield
    except errors as exc:
        fail(str(exc), int(getattr(exc, "exit_code", 2)))
    except KeyboardInterrupt:
        fail("interrupted", 130)


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


def crash_guarded(main: Callable[[], object]) -> Callable[[], None]:
    """Wrap a console-script entry point: an unexpected exception (a bug of the tool, not an
    input error) ends it with one line naming the exception and the file holding the
    traceback, and exit code :data:`CRASH_EXIT_CODE`. ``RUNDOCTOR_DEBUG=1`` prints the
    traceback instead.

    >>> crash_guarded(lambda: None)()
    """

    def run() -> None:
        try:
            main()
        except (SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:
            if os.environ.get("RUNDOCTOR_DEBUG", "") not in ("", "0"):
                traceback.print_exc()
                raise SystemExit(CRASH_EXIT_CODE) from None
            where = _crash_report(exc)
            detail = f"details in {where}" if where else "set RUNDOCTOR_DEBUG=1 for details"
            first = str(exc).splitlines()[0] if str(exc) else ""
            sys.stderr.write(
                f"error: internal error (a bug in rundoctor): {type(exc).__name__}"
                f"{': ' + first[:200] if first else ''}; {detail}; "
                "RUNDOCTOR_DEBUG=1 prints the traceback\n".encode(
                    "utf-8", "backslashreplace"
                ).decode("utf-8")
            )
            raise SystemExit(CRASH_EXIT_CODE) from None

    return run
