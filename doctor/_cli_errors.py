"""How every command line of the project reports a failure: one red line, an exit code.

Shared by ``doctor``'s own commands and the executor's and chaos's sub-commands, so that all of
them behave alike: library errors end the command with one line on stderr and a documented
exit code, never a traceback. :class:`OneLineGroup` is the click group of all three apps: it
gives typer's own usage errors the same one-line shape (exit 2) and is the one interrupt path
(Ctrl-C anywhere, DuckDB's "Query interrupted" included: ``error: interrupted``, exit 130).
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from typer._click import exceptions as click_errors
from typer.core import TyperGroup

if TYPE_CHECKING:  # Rich is imported by what prints: `doctor --help` does not need it
    from rich.console import Console

__all__ = [
    "CRASH_EXIT_CODE",
    "INTERRUPTED",
    "PIPE_WIDTH",
    "OneLineGroup",
    "console",
    "crash_guarded",
    "fail",
    "is_interrupt",
    "reported",
]

#: The exit code of a crash of the tool itself (an unexpected exception): ``EX_SOFTWARE``
#: from ``sysexits.h``, distinct from 1 ("findings at error") and 2 (usage or input error).
CRASH_EXIT_CODE = 70

#: The exit code of a command stopped by Ctrl-C (SIGINT), as shells report it.
INTERRUPTED = 130


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr as one line and exit with ``code``."""
    from rich.console import Console
    from rich.markup import escape

    # The message quotes user input and artifact text: escape it, or "[/x]" in a run id is
    # read as markup (and raises); soft_wrap keeps it one line whatever the width.
    Console(stderr=True, highlight=False).print(
        f"[red]error:[/red] {escape(message)}", soft_wrap=True
    )
    raise typer.Exit(code)


def is_interrupt(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what it was raised from) is a Ctrl-C.

    DuckDB turns a SIGINT that lands inside a query into ``InterruptException`` (older
    releases: ``RuntimeError: Query interrupted``), and library code may wrap that in its own
    error; every one of them is an interrupt.

    >>> is_interrupt(KeyboardInterrupt())
    True
    >>> is_interrupt(RuntimeError("Query interrupted"))
    True
    >>> is_interrupt(ValueError("bad"))
    False
    """
    # DuckDB's exception only exists once DuckDB is loaded (a command that never queried it,
    # such as `doctor --help`, must not pay for importing it here).
    duckdb = sys.modules.get("duckdb")
    kinds: tuple[type[BaseException], ...] = (KeyboardInterrupt, typer.Abort)
    if duckdb is not None:
        kinds += (duckdb.InterruptException,)
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, kinds):
            return True
        if isinstance(exc, RuntimeError) and str(exc).strip() == "Query interrupted":
            return True
        exc = exc.__cause__ or exc.__context__
    return False


@contextmanager
def reported(*errors: type[Exception]) -> Iterator[None]:
    """Turn the given library errors into :func:`fail` (their ``exit_code``, else 2)."""
    try:
        yield
    except (typer.Exit, click_errors.ClickException):
        raise  # already reported (fail), or typer's own
    except BaseException as exc:
        if is_interrupt(exc):
            fail("interrupted", INTERRUPTED)
        if errors and isinstance(exc, errors):
            fail(str(exc), int(getattr(exc, "exit_code", 2)))
        raise


class OneLineGroup(TyperGroup):
    """The click group of every app: one-line usage errors, one interrupt path."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, click_errors.ClickException):
            raise
        except BaseException as exc:
            if is_interrupt(exc):
                fail("interrupted", INTERRUPTED)
            raise

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            rv = super().main(
                args=args,
                prog_name=prog_name,
                complete_var=complete_var,
                standalone_mode=False,
                **extra,
            )
            code = rv if isinstance(rv, int) else 0
        except click_errors.NoArgsIsHelpError as exc:
            sys.stderr.write(exc.format_message() + "\n")
            code = 2
        except click_errors.ClickException as exc:
            code = _usage_line(exc)
        except typer.Exit as exc:
            code = exc.exit_code
        except BaseException as exc:
            if not is_interrupt(exc):
                raise
            code = _interrupted_line()
        if standalone_mode:
            sys.exit(code)
        return code


def _usage_line(exc: click_errors.ClickException) -> int:
    """typer's usage errors as one ``error:`` line naming the command's ``--help``."""
    message = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        message = message.rstrip(".") + f" (see `{ctx.command_path} --help`)"
    try:
        fail(message[:1].lower() + message[1:], exc.exit_code)
    except typer.Exit as done:
        return done.exit_code


def _interrupted_line() -> int:
    try:
        fail("interrupted", INTERRUPTED)
    except typer.Exit as done:
        return done.exit_code


def console(*, stderr: bool = False) -> Console:
    """A console for a command's output: wrapped to the terminal, never hard-wrapped in a pipe.

    Piped (cron, CI, ``| grep``), a line stays one line and a table is as wide as its content,
    unless ``COLUMNS`` asks for a width.

    >>> import sys
    >>> console().soft_wrap == (not sys.stdout.isatty())
    True
    """
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty() or os.environ.get("COLUMNS"):
        return Console(highlight=False, stderr=stderr)
    return Console(highlight=False, stderr=stderr, soft_wrap=True, width=PIPE_WIDTH)


#: The width a table is laid out in when output is not a terminal (as wide as its content).
PIPE_WIDTH = 10_000


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
