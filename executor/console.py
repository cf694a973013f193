"""The command-line kit every Run Doctor program shares: one red line, an exit code, tables.

Used by the executor's commands (``doctor run``, ``worker``, ``tickets``…), the doctor's, the
reports' and chaos's, so that all of them behave alike: library errors end the command with
one line on stderr and a documented exit code (:mod:`rundoctor.errors`), never a traceback.
:class:`OneLineGroup` is the click group of every app: it gives typer's own usage errors the
same one-line shape (exit 2) and is the one interrupt path (Ctrl-C anywhere, DuckDB's "Query
interrupted" included: ``error: interrupted``, exit 130). :func:`fit_columns`,
:func:`one_line_table` and :func:`print_table` lay out the one-line-per-row tables of
``doctor scan`` and ``doctor tickets``.

It lives in the executor, the lowest package with a command line, because it needs typer and
Rich, which the standard-library base :mod:`rundoctor` may not import; the packages above
import it by this public name (``docs/architecture.md``). Importing it loads neither the
executor's queue nor its runner.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal, NoReturn

import typer
from typer._click import exceptions as click_errors
from typer.core import TyperGroup

from rundoctor.errors import BROKEN_PIPE, INTERRUPTED, interrupted, silence_stdout

if TYPE_CHECKING:  # Rich is imported by what prints: `doctor --help` does not need it
    from rich.console import Console
    from rich.progress import Progress, ProgressColumn, TaskID
    from rich.table import Table

__all__ = [
    "DIRECTORY_OPTIONS",
    "PIPE_WIDTH",
    "OneLineGroup",
    "console",
    "fail",
    "fit_columns",
    "is_interrupt",
    "one_line_table",
    "plain",
    "print_pages",
    "print_table",
    "quiet_console",
    "reported",
    "scan_progress",
    "transient_bar",
]

#: The width a table is laid out in when output is not a terminal (as wide as its content).
PIPE_WIDTH = 10_000

#: The fewest cells a free (text) column of a one-line table gets before optional ones go.
_MIN_FREE = 24
#: Rows laid out at a time by :func:`print_pages`.
_PAGE = 500


def plain(text: str) -> str:
    """Text from artifacts or users for a Rich console: markup escaped, control characters
    written as escapes (:func:`rundoctor.terminal.printable`), so it prints as itself.

    >>> print(plain("[red]x\x1b[2J"))
    \\[red]x\\x1b[2J
    """
    from rich.markup import escape

    from rundoctor.terminal import printable

    return escape(printable(text))


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr as one line and exit with ``code``."""
    from rich.console import Console
    from rich.markup import escape

    from rundoctor.terminal import printable

    # The message quotes user input and artifact text: escape it, or "[/x]" in a run id is
    # read as markup (and raises), and a line break or escape sequence in it would break the
    # one line or reach the terminal; soft_wrap keeps it one line whatever the width.
    Console(stderr=True, highlight=False).print(
        f"[red]error:[/red] {escape(printable(message))}", soft_wrap=True
    )
    raise typer.Exit(code)


def is_interrupt(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what it was raised from) is a Ctrl-C
    (:func:`rundoctor.errors.interrupted`), typer's ``Abort`` (a prompt's Ctrl-C) included.

    >>> is_interrupt(KeyboardInterrupt())
    True
    >>> is_interrupt(RuntimeError("Query interrupted"))
    True
    >>> is_interrupt(ValueError("bad"))
    False
    """
    return interrupted(exc, also=(typer.Abort,))


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


@contextmanager
def scan_progress(enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A transient progress bar on stderr for a scan of the fleet (``doctor scan``, ``report
    --fleet``, ``metrics``): the ``progress(done, total)`` callback the scan takes, or None
    when not ``enabled`` (not a terminal, or ``--json``)."""
    if not enabled:
        yield None
        return
    from rich.progress import MofNCompleteColumn

    with transient_bar("diagnosing runs", MofNCompleteColumn()) as (bar, task):
        yield lambda done, total: bar.update(task, completed=done, total=total)


@contextmanager
def transient_bar(what: str, count: ProgressColumn) -> Iterator[tuple[Progress, TaskID]]:
    """A bar on standard error (``what`` it is doing, the bar, ``count``, the time taken),
    gone once the work is done; it may be updated from any thread."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        count,
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task(what, total=None)
    with bar:
        yield bar, task


#: Options naming a directory to read: an empty value (``--root "$UNSET"``) is refused, where
#: a path would take it for the current directory and read that instead.
DIRECTORY_OPTIONS = ("--root",)


def _empty_directory(args: Sequence[str]) -> str | None:
    """The first of :data:`DIRECTORY_OPTIONS` given an empty value in ``args``, else None.

    >>> _empty_directory(["scan", "--root", "", "--json"]), _empty_directory(["--root=runs"])
    ('--root', None)
    """
    for i, arg in enumerate(args):
        if arg == "--":
            break
        name, eq, value = arg.partition("=")
        if name not in DIRECTORY_OPTIONS:
            continue
        given = value if eq else (args[i + 1] if i + 1 < len(args) else None)
        if given is not None and not given.strip():
            return name
    return None


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
            empty = _empty_directory(sys.argv[1:] if args is None else args)
            if empty is not None:
                raise click_errors.BadParameter(
                    "is empty; pass a directory (an unset variable?)", param_hint=f"'{empty}'"
                )
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

    >>> import os, sys
    >>> console().soft_wrap == (not sys.stdout.isatty() and not os.environ.get("COLUMNS"))
    True
    """

    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty() or os.environ.get("COLUMNS"):
        return quiet_console(highlight=False, stderr=stderr)
    return quiet_console(highlight=False, stderr=stderr, soft_wrap=True, width=PIPE_WIDTH)


def quiet_console(**options: Any) -> Console:
    """A Rich ``Console(**options)`` that ends the command quietly with
    :data:`~rundoctor.errors.BROKEN_PIPE` (141) when the reader of its output goes away
    (``| head``), where Rich's own ends it with 1, the code of "findings at error".

    >>> quiet_console(highlight=False).on_broken_pipe.__qualname__
    '_quiet_class.<locals>.Quiet.on_broken_pipe'
    """
    return _quiet_class()(**options)


@functools.cache
def _quiet_class() -> type[Console]:
    from rich.console import Console

    class Quiet(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            silence_stdout()
            raise SystemExit(BROKEN_PIPE)

    return Quiet


def fit_columns(
    rows: Sequence[dict[str, str]],
    columns: Sequence[str],
    width: int,
    *,
    free: Sequence[str],
    optional: Sequence[str] = (),
) -> list[tuple[str, int]]:
    """Column widths for one line per row in ``width`` cells. The ``free`` columns (text)
    share what the others leave and end in an ellipsis where cut; every other column (ids,
    counts) is whole. The ``optional`` ones are dropped, in order, while the free columns
    would get fewer than 24 cells each.

    >>> columns = ("run", "state", "started", "age", "wall", "crit", "err", "warn", "info",
    ...            "worst finding")
    >>> row = {c: "x" for c in columns} | {"run": "r" * 26, "worst finding": "w" * 90}
    >>> def fit(width):
    ...     return dict(fit_columns([row], columns, width, free=["worst finding"],
    ...                            optional=("started", "wall", "age")))
    >>> fit(80)["worst finding"], "started" in fit(80)
    (16, False)
    >>> fit(160)["worst finding"], "started" in fit(160)
    (73, True)
    """
    from rundoctor.terminal import printable

    # As wide as one_line_table shows them: a control character takes its escape's cells.
    natural = {c: max([len(c), *(len(printable(r[c])) for r in rows)]) for c in columns}
    names = list(columns)

    def rest() -> int:  # three cells between columns: padding, rule, padding
        return width - sum(natural[c] for c in names if c not in free) - 3 * (len(names) - 1)

    wanted = sum(min(natural[c], _MIN_FREE) for c in free)
    for drop in optional:
        if rest() >= wanted:
            break
        names.remove(drop)
    widths = {c: natural[c] for c in names if c not in free}
    left = rest()
    # Narrow free columns take what they need; the rest is shared by the wide ones.
    for i, c in enumerate(sorted(free, key=lambda c: natural[c])):
        share = left // (len(free) - i)
        widths[c] = max(min(natural[c], share), min(len(c), natural[c]), 1)
        left -= widths[c]
    return [(c, widths[c]) for c in names]


def one_line_table(
    title: str,
    rows: Sequence[dict[str, str]],
    columns: Sequence[tuple[str, int]],
    *,
    right: Sequence[str] = (),
) -> Table:
    """A table whose rows are one line each, in the widths :func:`fit_columns` chose."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from rundoctor.terminal import printable

    table = Table(
        title=title,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        expand=False,
        title_justify="left",
    )
    for name, width in columns:
        justify: Literal["left", "right"] = "right" if name in right else "left"
        table.add_column(name, no_wrap=True, overflow="ellipsis", width=width, justify=justify)
    for row in rows:  # cells hold artifact text: markup and control characters shown as such
        table.add_row(*(escape(printable(row[name])) for name, _ in columns))
    return table


def print_table(console: Console, table: Table) -> None:
    """Piped, a table is as wide as its content, with no padding after the last column; the
    rule under its header is as long as the header (a long last cell, a failure reason of a
    few hundred characters, drew it across the whole of them).

    On a terminal narrower than the table's whole columns (ids, states, counts) and the free
    ones' headers need (``COLUMNS=40``, a split pane), the table is laid out as wide as they
    need and the terminal wraps its lines: Rich would otherwise squeeze every column, cutting
    the ids a reader pastes into the next command, and the headers, down to ``…``.

    >>> import io
    >>> from rich.console import Console
    >>> narrow = Console(file=io.StringIO(), width=20)
    >>> row = {"id": "t-d2a17pahway6", "state": "succeeded", "what": "a long reason"}
    >>> columns = fit_columns([row], ("id", "state", "what"), 20, free=("what",))
    >>> print_table(narrow, one_line_table("", [row], columns))
    >>> narrow.file.getvalue().splitlines()[-1].split()[:2], narrow.width
    (['t-d2a17pahway6', 'succeeded'], 20)
    """
    if not console.soft_wrap:
        needed = sum(c.width or 0 for c in table.columns) + 3 * (len(table.columns) - 1)
        if needed <= console.width:
            console.print(table)
        else:  # laid out wider than the console, then written as it is
            from rich.segment import Segments

            options = console.options.update_width(needed)
            laid = console.render_lines(table, options, pad=False, new_lines=True)
            console.print(Segments(s for line in laid for s in line), crop=False)
        return
    with console.capture() as captured:
        console.print(table)
    lines = [line.rstrip() for line in captured.get().splitlines()]
    console.out("\n".join(_rule_as_header(lines)))


def _rule_as_header(lines: list[str]) -> list[str]:
    """``lines`` with the header's rule (the first line of only ``─``) cut to the longest
    line above it, the title's and the header's.

    >>> _rule_as_header(["2 runs", "run  reason", "─" * 30, "r1   " + "x" * 25])
    ['2 runs', 'run  reason', '───────────', 'r1   xxxxxxxxxxxxxxxxxxxxxxxxx']
    """
    for i, line in enumerate(lines):
        if line and set(line) == {"─"}:
            width = max((len(above) for above in lines[:i]), default=len(line))
            return [*lines[:i], line[: max(width, 1)], *lines[i + 1 :]]
    return lines


def print_pages(
    console: Console,
    title: str,
    rows: Iterable[dict[str, str]],
    columns: Sequence[str],
    *,
    free: Sequence[str],
    optional: Sequence[str] = (),
    right: Sequence[str] = (),
) -> int:
    """Print ``rows`` as one one-line-per-row table (:func:`fit_columns`), laid out a page of
    rows at a time so that a listing of any length is never held whole; return how many rows
    were printed.

    The title is a line of its own above the table. The first page decides the columns and
    carries the header; a later page
    keeps those columns and is fitted with the widest cell seen so far, so widths never shrink
    and whole columns (ids) stay whole.

    >>> import io
    >>> from rich.console import Console
    >>> out = Console(file=io.StringIO(), width=40)
    >>> rows = ({"id": f"t-{n}", "what": "word " * n} for n in range(1200))
    >>> print_pages(out, "1,200 rows", rows, ("id", "what"), free=("what",))
    1200
    >>> lines = out.file.getvalue().splitlines()
    >>> lines[0], lines[1].split(), lines[-1].split()[0], len(lines)
    ('1,200 rows', ['id', 'what'], 't-1199', 1203)
    """
    from rundoctor.terminal import printable

    widest = dict.fromkeys(columns, "")
    names: Sequence[str] = columns
    shown = 0
    for page in _pages(rows):
        for row in page:
            for c in columns:
                if len(printable(row[c])) > len(printable(widest[c])):
                    widest[c] = row[c]
        drop = optional if shown == 0 else ()
        fitted = fit_columns([*page, widest], names, console.width, free=free, optional=drop)
        names = [c for c, _ in fitted]
        if shown == 0:  # a line of its own: never wrapped to the table's width
            console.print(title, soft_wrap=True, markup=False, highlight=False)
        table = one_line_table("", page, fitted, right=right)
        table.show_header = shown == 0
        print_table(console, table)
        shown += len(page)
    if shown == 0:
        fitted = fit_columns([], columns, console.width, free=free, optional=optional)
        console.print(title, soft_wrap=True, markup=False, highlight=False)
        print_table(console, one_line_table("", [], fitted, right=right))
    return shown


def _pages(rows: Iterable[dict[str, str]]) -> Iterator[list[dict[str, str]]]:
    page: list[dict[str, str]] = []
    for row in rows:
        page.append(row)
        if len(page) == _PAGE:
            yield page
            page = []
    if page:
        yield page
