"""How every command line of the project reports a failure: one red line, an exit code.

Shared by ``doctor``'s own commands and the executor's and chaos's sub-commands, so that all of
them behave alike: library errors (and Ctrl-C) end the command with one line on stderr and a
documented exit code, never a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

__all__ = ["fail", "reported"]


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
