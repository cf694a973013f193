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
import re
import shlex
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal, NoReturn

import typer
from typer._click import exceptions as click_errors
from typer.core import TyperGroup

from rundoctor.errors import (
    BROKEN_PIPE,
    INTERRUPTED,
    close_matches,
    did_you_mean,
    interrupted,
    silence_stdout,
)
from rundoctor.terminal import quoted

if TYPE_CHECKING:  # Rich is imported by what prints: `doctor --help` does not need it
    from rich.console import Console
    from rich.progress import Progress, ProgressColumn, TaskID
    from rich.table import Table

__all__ = [
    "EMPTY_REFUSED",
    "PIPE_WIDTH",
    "OneLineGroup",
    "console",
    "diagnose_progress",
    "fail",
    "fit_columns",
    "is_interrupt",
    "listed",
    "one_line_table",
    "plain",
    "print_one_line_table",
    "print_pages",
    "print_table",
    "quiet_console",
    "reported",
    "scan_progress",
    "transient_bar",
    "while_read",
]

#: The width a table is laid out in when output is not a terminal (as wide as its content).
PIPE_WIDTH = 10_000

#: The fewest cells a free (text) column of a one-line table gets before optional ones go.
_MIN_FREE = 24
#: Cells between two columns: padding, rule, padding; two (no left padding) when the table
#: needs them to show every header whole, as the scan's at 80 columns with a ULID run id.
_GAP, _NARROW_GAP = 3, 2
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
    """Print ``error: message`` on stderr as one line and exit with ``code``.

    >>> try:
    ...     fail("no run 'r9' under runs")  # on stderr: error: no run 'r9' under runs
    ... except typer.Exit as exc:
    ...     exc.exit_code
    2
    """
    from rich.console import Console
    from rich.markup import escape

    from rundoctor.terminal import printable

    # The message quotes user input and artifact text: escape it, or "[/x]" in a run id is
    # read as markup (and raises), and a line break or escape sequence in it would break the
    # one line or reach the terminal; soft_wrap keeps it one line whatever the width.
    Console(stderr=True, highlight=False, _environ=_sized_environ()).print(
        f"[red]error:[/red] {escape(printable(_bytes_as_shown(message)))}", soft_wrap=True
    )
    raise typer.Exit(code)


#: A byte that is not UTF-8 as ``repr`` writes it (``os.fsdecode``'s surrogate, ``\udcff``),
#: its backslash not itself escaped.
_REPR_SURROGATE = re.compile(r"(?<!\\)((?:\\\\)*)\\udc([89a-f][0-9a-f])")


def _bytes_as_shown(message: str) -> str:
    """``message`` with each byte that is not UTF-8, as a value's ``repr`` quoted it
    (``'\\udcff'``), written ``\\xff``, as every name the tools show is: `unknown check
    '\\udcff'` named a character nobody typed.

    >>> print(_bytes_as_shown(repr("r" + b"\\xff".decode("utf-8", "surrogateescape"))))
    'r\\xff'
    >>> print(_bytes_as_shown(r"'a\\\\udcff'"))  # a backslash typed before 'udcff': kept
    'a\\\\udcff'
    """
    return _REPR_SURROGATE.sub(r"\1\\x\2", message)


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
    """Turn the given library errors into :func:`fail` (their ``exit_code``, else 2).

    >>> try:
    ...     with reported(ValueError):
    ...         raise ValueError("bad value")  # on stderr: error: bad value
    ... except typer.Exit as exc:
    ...     exc.exit_code
    2
    """
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
    when not ``enabled`` (not a terminal, or ``--json``).

    >>> with scan_progress(False) as progress:  # not a terminal, or --json: no bar
    ...     print(progress)
    None
    """
    if not enabled:
        yield None
        return
    from rich.progress import MofNCompleteColumn

    with transient_bar("diagnosing runs", MofNCompleteColumn()) as (bar, task):
        yield lambda done, total: bar.update(task, completed=done, total=total)


#: What a diagnosis's bar says in each phase (doctor._diagnose.Steps).
_PHASES = {"reading": "reading events", "checking": "running checks"}


@contextmanager
def diagnose_progress(enabled: bool) -> Iterator[Callable[[str, int, int], None] | None]:
    """A diagnosis's bar on standard error (``doctor diagnose``, ``report --run-id``,
    ``repair --run-id``): how much of the run's events is read, then how many checks have run
    (a run of a gigabyte takes tens of seconds). Yields the diagnosis's ``steps``, or None
    when not ``enabled``.

    >>> with diagnose_progress(False) as steps:  # not a terminal, or --json: no bar
    ...     print(steps)
    None
    """
    if enabled:
        from rich.progress import TaskProgressColumn

        with transient_bar(_PHASES["reading"], TaskProgressColumn()) as (bar, task):
            yield lambda phase, done, total: bar.update(
                task, description=_PHASES.get(phase, phase), completed=done, total=total
            )
    else:
        yield None


@contextmanager
def transient_bar(what: str, count: ProgressColumn) -> Iterator[tuple[Progress, TaskID]]:
    """A bar on standard error (``what`` it is doing, the bar, ``count``, the time taken),
    gone once the work is done; it may be updated from any thread.

    >>> from rich.progress import MofNCompleteColumn
    >>> with transient_bar("reading events", MofNCompleteColumn()) as (bar, task):
    ...     bar.update(task, completed=2, total=2)
    >>> bar.tasks[0].completed
    2
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        count,
        TimeElapsedColumn(),
        console=Console(stderr=True, _environ=_sized_environ()),
        transient=True,
    )
    task = bar.add_task(what, total=None)
    with bar:
        yield bar, task


def listed(values: Iterable[str] | None) -> list[str]:
    """A repeatable option's values with each split at its commas (``--status todo,done`` is
    ``--status todo --status done``, as ``chaos run --faults a,b`` reads): a name never holds
    a comma, and one value naming two was "unknown status 'todo,done' (did you mean 'todo'?)".
    An empty part stays, for the option's own check to name.

    >>> listed(["todo,done", " failed "]), listed(None), listed(["a,"])
    (['todo', 'done', 'failed'], [], ['a', ''])
    """
    return [part.strip() for value in values or () for part in value.split(",")]


#: Options whose empty value (``--root "$UNSET"``) is refused, each with what to pass instead.
#: Taken as it is, the value was read as something nobody asked for: a path ``''`` is the
#: current directory (``--journal ''`` journaled there, ``--out ''`` was "cannot write '.'"),
#: and an empty ``--db`` or ``--since`` read as not given (``enqueue --db ''`` queued into the
#: default queue; ``scan --since ''`` listed every run; ``--agent-command ''`` fell back to
#: ``$RUNDOCTOR_AGENT_COMMAND``). Options whose own check already names the flag (``--title``,
#: ``--exec``, ``--webhook``, ``--faults``, ``--depends-on``) keep it.
EMPTY_REFUSED = {
    "--root": "a directory",
    "--journal": "a directory",
    "--out": "a path",
    "--state": "a file",
    "--db": "a SQLite file, sqlite:///ABS/PATH or postgresql://…",
    "--since": "an age like 24h or a date like 2026-02-10",
    "--agent-command": "a command line, or leave the option out",
}


def _empty_value(args: Sequence[str]) -> str | None:
    """The first of :data:`EMPTY_REFUSED` given an empty (or blank) value in ``args``, else
    None. Only before ``--``; the value is the next word, or what follows ``=``.

    >>> _empty_value(["scan", "--root", "", "--json"]), _empty_value(["--root=runs"])
    ('--root', None)
    >>> _empty_value(["enqueue", "g.dot", "--db= "]), _empty_value(["--", "--db", ""])
    ('--db', None)
    """
    for i, arg in enumerate(args):
        if arg == "--":
            break
        name, eq, value = arg.partition("=")
        if name not in EMPTY_REFUSED:
            continue
        given = value if eq else (args[i + 1] if i + 1 < len(args) else None)
        if given is not None and not given.strip():
            return name
    return None


def _empty_argument(args: Sequence[str], group: Any = None) -> bool:
    """Whether ``args`` hold an empty (or blank) word that no option takes as its value: an
    argument (``doctor run "$GRAPH"`` with ``GRAPH`` unset), which typer would read as the
    current directory, ``.``. Which options take a value is read from the commands' own
    parameters below ``group`` (a flag's next word is an argument: ``doctor scan --json ""``
    was "got unexpected extra argument(s) ()"); an option the command does not have is taken
    to have a value, for click to name it. After ``--`` every word is an argument.

    >>> _empty_argument(["run", ""]), _empty_argument(["chaos", "check", " "])
    (True, True)
    >>> _empty_argument(["enqueue", "g.dot", "--title", ""]), _empty_argument(["--", ""])
    (False, True)
    """
    if all(arg.strip() for arg in args):
        return False  # the common case: nothing to look up, no command module imported
    command, flags = group, _flags(group)
    words = iter(args)
    for arg in words:
        if arg == "--":
            return any(not rest.strip() for rest in words)
        if not arg.strip():
            return True
        if arg.startswith("-") and len(arg) > 1:
            if "=" not in arg and arg not in flags:
                next(words, None)  # the option's value: its own check names it
            continue
        sub = _subcommand(command, arg)
        if sub is not None:
            command, flags = sub, _flags(sub)
    return False


def _repeated_option(args: Sequence[str], group: Any = None) -> str | None:
    """The error for an option that takes one value given two different ones (``doctor
    diagnose --run-id a --run-id b`` diagnosed ``b`` alone, saying nothing of ``a``), else
    None. Options the commands below ``group`` take many times (``--root``, ``--check``),
    flags, and one value given twice are no error.

    >>> app = typer.Typer()
    >>> @app.command()
    ... def tickets(db: str = typer.Option(""), status: list[str] = typer.Option([])) -> None:
    ...     pass
    >>> @app.command()
    ... def reap() -> None:
    ...     pass
    >>> group = typer.main.get_command(app)
    >>> _repeated_option(["tickets", "--db", "a", "--db", "b"], group)
    "--db is given twice ('a' and 'b'); it takes one value"
    >>> _repeated_option(["tickets", "--db=a", "--db", "a", "--status", "x", "--status", "y"],
    ...                  group)
    """
    names = [arg.partition("=")[0] for arg in args if arg.startswith("--") and arg != "--"]
    if len(names) == len(set(names)):
        return None  # the common case: no option twice, no command module imported
    command, params = group, _params(group)
    seen: dict[str, tuple[str, str]] = {}
    words = iter(args)
    for arg in words:
        if arg == "--":
            break
        if arg.startswith("-") and len(arg) > 1:
            name, eq, value = arg.partition("=")
            param = params.get(name)
            if param is not None and (
                getattr(param, "is_flag", False) or getattr(param, "count", False)
            ):
                continue
            if not eq:
                value = next(words, None)  # type: ignore[assignment]
                if value is None:
                    break
            if param is None or getattr(param, "multiple", False):
                continue
            first = seen.setdefault(param.name, (name, value))
            if first[1] != value:
                return (
                    f"{first[0]} is given twice ({quoted(first[1])} and {quoted(value)}); it "
                    "takes one value"
                )
            continue
        sub = _subcommand(command, arg)
        if sub is not None:
            command, params, seen = sub, _params(sub), {}
    return None


def _params(command: Any) -> dict[str, Any]:
    """``command``'s parameters by each of their option names (``{}`` for None)."""
    return {
        name: param
        for param in getattr(command, "params", ())
        for name in (*getattr(param, "opts", ()), *getattr(param, "secondary_opts", ()))
    }


def _subcommand(group: Any, name: str) -> Any:
    """The command ``name`` of ``group``, or None (no group, no such command)."""
    commands = getattr(group, "commands", None)
    if commands is None:
        return None
    try:
        return commands[name]
    except (KeyError, LookupError, ImportError):
        return None


#: The options every command has that take no value (context_settings' help names).
_HELP_FLAGS = frozenset({"-h", "--help"})


def _flags(command: Any) -> frozenset[str]:
    """The option names of ``command`` that take no value (flags, counts, help).

    >>> sorted(_flags(None))
    ['--help', '-h']
    """
    names = set(_HELP_FLAGS)
    for param in getattr(command, "params", ()):
        if getattr(param, "is_flag", False) or getattr(param, "count", False):
            names.update(getattr(param, "opts", ()), getattr(param, "secondary_opts", ()))
    return frozenset(names)


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

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        """The command ``args[0]`` names; an unknown one is named with the closest commands
        (hidden ones never offered), else with the whole list: `error: no such command
        'scna' (did you mean 'scan'?)`, where click said "No such command 'scna'. Did you
        mean 'scan'?" and, with none close, nothing of what there is."""
        try:
            return super().resolve_command(ctx, args)
        except click_errors.UsageError as exc:
            if (
                args
                and not isinstance(exc, click_errors.NoSuchOption)
                and exc.message.startswith("No such command")
            ):
                exc.message = _unknown_command(args[0], self.shown_commands(ctx))
            raise

    def shown_commands(self, ctx: Any) -> list[str]:
        """The names of the commands the help lists (not the hidden ones), in its order."""
        return [
            name
            for name in self.list_commands(ctx)
            if not getattr(self.get_command(ctx, name), "hidden", False)
        ]

    def _path(self, prog_name: str | None, args: Sequence[str]) -> str:
        """The command ``args`` name below this group, as ``doctor chaos run``.

        >>> OneLineGroup(name="doctor")._path(None, ["--root", "x"])
        'doctor'
        """
        words = [prog_name or self.name or "doctor"]
        group: Any = self
        for arg in args:
            commands = getattr(group, "commands", None)
            if arg.startswith("-") or commands is None:
                break
            try:
                group = commands[arg]
            except (KeyError, LookupError, ImportError):
                break
            words.append(arg)
        return " ".join(words)

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            empty = _empty_value(sys.argv[1:] if args is None else args)
            if empty is not None:
                raise click_errors.BadParameter(
                    f"is empty; pass {EMPTY_REFUSED[empty]} (an unset variable?)",
                    param_hint=f"'{empty}'",
                )
            if _empty_argument(sys.argv[1:] if args is None else args, self):
                raise click_errors.UsageError("an argument is empty (an unset variable?)")
            repeated = _repeated_option(sys.argv[1:] if args is None else args, self)
            if repeated is not None:
                raise click_errors.UsageError(repeated)
            rv = super().main(
                args=args,
                prog_name=prog_name,
                complete_var=complete_var,
                standalone_mode=False,
                **extra,
            )
            code = rv if isinstance(rv, int) else 0
        except click_errors.NoArgsIsHelpError as exc:
            # `doctor` or `doctor chaos` alone: a usage error like any other (a script's
            # `doctor $CMD` with CMD unset must not pass), in one line that lists the commands.
            exc.message = "missing command; " + _command_list(_shown(exc.ctx))
            code = _usage_line(exc)
        except click_errors.ClickException as exc:
            argv = sys.argv[1:] if args is None else args
            code = _usage_line(exc, argv, self._path(prog_name, argv))
        except typer.Exit as exc:
            code = exc.exit_code
        except BaseException as exc:
            if not is_interrupt(exc):
                raise
            code = _interrupted_line()
        if standalone_mode:
            sys.exit(code)
        return code


def _shown(ctx: Any) -> list[str]:
    """The commands the help of ``ctx``'s group lists (:meth:`OneLineGroup.shown_commands`;
    for another click group, the ones that are not hidden)."""
    group = ctx.command
    if isinstance(group, OneLineGroup):
        return group.shown_commands(ctx)
    return [n for n in group.list_commands(ctx) if not group.get_command(ctx, n).hidden]


def _unknown_command(name: str, commands: Sequence[str]) -> str:
    """An unknown command's error: the closest commands, else all of them.

    >>> _unknown_command("scna", ["scan", "checks"])
    "no such command 'scna' (did you mean 'scan'?)"
    >>> _unknown_command("frobnicate", ["scan", "checks"])
    "no such command 'frobnicate'; the commands are scan, checks"
    """
    close = close_matches(name, commands)
    if close:
        return f"no such command {quoted(name)}{did_you_mean(close)}"
    return f"no such command {quoted(name)}; {_command_list(commands)}"


def _command_list(commands: Sequence[str]) -> str:
    """``the commands are a, b, c`` (``the command is a``).

    >>> _command_list(["prune"])
    'the command is prune'
    """
    return ("the command is " if len(commands) == 1 else "the commands are ") + ", ".join(commands)


def _unknown_option(exc: click_errors.NoSuchOption) -> str:
    """An unknown option's error, with the closest of the command's options: `no such option
    '--jsn' (did you mean '--json'?)`, where click said "(Possible options: --json,
    --since)", and for `--verison` offered the one option `doctor` has."""
    ctx = getattr(exc, "ctx", None)
    known: list[str] = [
        opt
        for param in getattr(getattr(ctx, "command", None), "params", ())
        if not getattr(param, "hidden", False)
        for opt in (*getattr(param, "opts", ()), *getattr(param, "secondary_opts", ()))
    ]
    close = close_matches(exc.option_name, known)  # never --help for --check
    return f"no such option {quoted(exc.option_name)}{did_you_mean(close)}"


def _usage_line(
    exc: click_errors.ClickException, argv: Sequence[str] = (), path: str = "doctor"
) -> int:
    """typer's usage errors as one ``error:`` line naming the command's ``--help``, or the
    option a stray argument belongs to (:func:`_stray_hint`). The command is the error's own,
    else ``path``: an option missing its value is raised before the command has a context."""
    if isinstance(exc, click_errors.BadParameter):
        exc.message = _plain_value_error(exc) or exc.message
    if isinstance(exc, click_errors.NoSuchOption):
        exc.message, exc.possibilities = _unknown_option(exc), None
    message = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    hint = _stray_hint(exc, ctx, argv) if ctx is not None else None
    where = ctx.command_path if ctx is not None else path
    message = message.rstrip(".") + (hint or f" (see `{where} --help`)")
    try:
        fail(message[:1].lower() + message[1:], exc.exit_code)
    except typer.Exit as done:
        return done.exit_code


#: typer's checks of a number (Pydantic's, by error type) in words that name the value.
_VALUE_WORDS = {
    "int_parsing": "is not a whole number",
    "int_from_float": "is not a whole number",
    "float_parsing": "is not a number",
    "finite_number": "is not a finite number",
    "greater_than_equal": "is less than {ge}",
    "greater_than": "must be more than {gt}",
    "less_than_equal": "is more than {le}",
    "less_than": "must be less than {lt}",
}


def _plain_value_error(exc: click_errors.BadParameter) -> str | None:
    """The value a number option was refused for, said plainly ("'abc' is not a whole
    number"), where typer says "Input should be a valid integer, unable to parse string as an
    integer" without the value; None for any other error (it keeps its own words).

    >>> from pydantic import TypeAdapter, ValidationError
    >>> try:
    ...     TypeAdapter(int).validate_python("1e3")
    ... except ValidationError as cause:
    ...     exc = click_errors.BadParameter(str(cause))
    ...     exc.__cause__ = cause
    >>> _plain_value_error(exc), _plain_value_error(click_errors.BadParameter("no"))
    ("'1e3' is not a whole number", None)
    """
    errors = getattr(exc.__cause__, "errors", None)
    if not callable(errors):
        return None
    found = errors()
    words = _VALUE_WORDS.get(found[0].get("type", "")) if found else None
    if words is None:
        return None
    return f"{str(found[0].get('input'))!r} {words.format(**found[0].get('ctx', {}))}"


def _stray_hint(exc: click_errors.ClickException, ctx: Any, argv: Sequence[str]) -> str | None:
    """For one argument given without its option (``doctor scan ./runs``, ``doctor diagnose
    r1``): "did you mean" the line with the option, else None.

    The argument is the one click found extra, or, when a required option is missing, the
    one positional argument the command's line holds. A database file or URL goes to
    ``--db``, a name (no ``/``) to ``--run-id``, a directory to ``--root``: the first of these
    the command has and the line did not already give (for a missing option: that option).
    """
    command = ctx.command
    if isinstance(exc, click_errors.MissingParameter) and exc.param is not None:
        wanted = [o for o in exc.param.opts if o.startswith("--")]
        rest = _positional(ctx, argv)
        if len(rest) != 1 or not wanted:
            return None
        arg = rest[0]
    else:
        stray = re.fullmatch(
            r"Got unexpected extra argument(?:\(s\))? \((.+)\)", exc.format_message()
        )
        if stray is None:
            return None
        arg, wanted = stray[1], []
    named = {o: p.name for p in command.params for o in getattr(p, "opts", ())}
    for flag in _options_for(arg):
        given = ctx.params.get(named.get(flag, "")) not in (None, (), [])
        if (flag in wanted) if wanted else (flag in named and not given):
            own = _own_args(ctx, argv) or [arg]
            at = own.index(arg) if arg in own else len(own)
            line = [*ctx.command_path.split(), *own[:at], flag, arg, *own[at + 1 :]]
            return f"; did you mean `{shlex.join(line)}`?"
    return None


def _options_for(arg: str) -> list[str]:
    """The options an argument given alone may belong to, likeliest first.

    >>> _options_for("q.db"), _options_for("r1"), _options_for("/no/such/dir")
    (['--db', '--run-id'], ['--run-id'], [])
    """
    options = []
    if arg.startswith(("sqlite:", "postgresql:", "postgres:")) or arg.endswith(
        (".db", ".sqlite", ".sqlite3")
    ):
        options.append("--db")
    if os.sep not in arg and arg not in (".", ".."):
        options.append("--run-id")  # a name: an id, for a command that takes one
    if os.path.isdir(arg):
        options.append("--root")
    return options


def _own_args(ctx: Any, argv: Sequence[str]) -> list[str]:
    """The part of ``argv`` after the command's name ([] when it is not there)."""
    args = [str(a) for a in argv]
    return args[args.index(ctx.info_name) + 1 :] if ctx.info_name in args else []


def _positional(ctx: Any, argv: Sequence[str]) -> list[str]:
    """The positional arguments of the command's own part of ``argv`` (after its name), as
    its parser reads them; [] when that part cannot be found or parsed."""
    own = _own_args(ctx, argv)
    try:
        _, rest, _ = ctx.command.make_parser(ctx).parse_args(args=own)
    except click_errors.ClickException:
        return []
    return [str(a) for a in rest]


def _interrupted_line() -> int:
    try:
        fail("interrupted", INTERRUPTED)
    except typer.Exit as done:
        return done.exit_code


def while_read(console: Console, show: Callable[..., None]) -> Callable[..., None]:
    """``show`` (a callback that prints on ``console``, a :func:`quiet_console`), silenced
    once the console's reader goes away (``doctor run G 2>&1 | head -1``), so that the work
    it reports on goes on to its own end. The quiet console's broken-pipe exit (141) was
    raised inside the library calling back: a run that would have succeeded ended failed
    (``executor error: SystemExit: 141``), a worker's slot thread ended without a word, its
    other tickets left unclaimed.

    >>> import io
    >>> out = quiet_console(file=io.StringIO())
    >>> say = while_read(out, lambda line: out.print(line))
    >>> say("kept"); out.quiet = True; say("dropped")
    >>> out.file.getvalue().splitlines()
    ['kept']
    """

    def guarded(*args: Any) -> None:
        if console.quiet:
            return
        try:
            show(*args)
        except SystemExit as exc:  # the quiet console's broken pipe: it is quiet from now on
            if exc.code != BROKEN_PIPE:
                raise

    return guarded


def console(*, stderr: bool = False) -> Console:
    """A console for a command's output: wrapped to the terminal, never hard-wrapped in a pipe.

    Piped (cron, CI, ``| grep``), a line stays one line and a table is as wide as its content,
    unless ``COLUMNS`` asks for a width.

    >>> import os, sys
    >>> console().soft_wrap == (not sys.stdout.isatty() and not _columns(os.environ))
    True
    """

    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty() or _columns(os.environ):
        return quiet_console(highlight=False, stderr=stderr)
    return quiet_console(highlight=False, stderr=stderr, soft_wrap=True, width=PIPE_WIDTH)


def quiet_console(**options: Any) -> Console:
    """A Rich ``Console(**options)`` that ends the command quietly with
    :data:`~rundoctor.errors.BROKEN_PIPE` (141) when the reader of its output goes away
    (``| head``), where Rich's own ends it with 1, the code of "findings at error". A
    ``COLUMNS`` or ``LINES`` that is no size (``0``, ``-5``, ``abc``) is read as unset.

    >>> quiet_console(highlight=False).on_broken_pipe.__qualname__
    '_quiet_class.<locals>.Quiet.on_broken_pipe'
    """
    return _quiet_class()(**{"_environ": _sized_environ(), **options})


def _columns(environ: Any) -> int | None:
    """``COLUMNS`` when it is a width (a whole number of 1 or more), else None.

    >>> _columns({"COLUMNS": "100"}), _columns({"COLUMNS": "0"}), _columns({"COLUMNS": "-5"})
    (100, None, None)
    """
    value = str(environ.get("COLUMNS", "")).strip()
    return int(value) if value.isascii() and value.isdigit() and int(value) > 0 else None


def _sized_environ(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment Rich reads its size from, without a ``COLUMNS`` or ``LINES`` that is
    no size: Rich took ``COLUMNS=0`` as a width of 0, and a scan's table, the tickets'
    table and a diagnosis printed nothing at all, exit 0.

    >>> _sized_environ({"COLUMNS": "0", "LINES": "40", "TERM": "dumb"})
    {'LINES': '40', 'TERM': 'dumb'}
    """
    sized = dict(os.environ if environ is None else environ)
    for name in ("COLUMNS", "LINES"):
        if name in sized and _columns({"COLUMNS": sized[name]}) is None:
            del sized[name]
    return sized


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
    would get fewer than 24 cells each. A header is never cut: when what is left cannot show
    the free columns' headers whole, the columns are two cells apart instead of three
    (:func:`one_line_table` is given the same ``width`` and does the same).

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
    >>> wide = row | {"state": "succeeded", "crit": "1", "err": "12"}
    >>> fitted = fit_columns([wide], columns, 80, free=["worst finding"],
    ...                      optional=("started", "wall", "age"))
    >>> dict(fitted)["worst finding"], sum(w for _, w in fitted) + 2 * (len(fitted) - 1)
    (18, 80)
    """
    from rundoctor.terminal import printable

    # As wide as one_line_table shows them: a control character takes its escape's cells.
    natural = {c: max([len(c), *(len(printable(r[c])) for r in rows)]) for c in columns}
    names = list(columns)

    gap = _GAP

    def rest() -> int:
        return width - sum(natural[c] for c in names if c not in free) - gap * (len(names) - 1)

    wanted = sum(min(natural[c], _MIN_FREE) for c in free)
    for drop in optional:
        if rest() >= wanted:
            break
        names.remove(drop)
    if rest() < sum(min(len(c), natural[c]) for c in free):  # a header would be cut
        gap = _NARROW_GAP
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
    width: int | None = None,
) -> Table:
    """A table whose rows are one line each, in the widths :func:`fit_columns` chose for
    ``width`` cells: when they need columns two cells apart to fit it, they are.

    >>> import io
    >>> from rich.console import Console
    >>> rows = [{"id": "t-1", "reason": "exit status 1 " * 9}]
    >>> columns = fit_columns(rows, ("id", "reason"), 30, free=("reason",))
    >>> out = Console(file=io.StringIO(), width=30)
    >>> out.print(one_line_table("1 ticket", rows, columns, width=30))
    >>> print(out.file.getvalue().splitlines()[-1])
    t-1   exit status 1 exit stat…
    """
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from rundoctor.terminal import printable

    needed = sum(w for _, w in columns) + _GAP * (len(columns) - 1)
    table = Table(
        title=title,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        expand=False,
        title_justify="left",
        # No left padding: the rule's cell and the right padding keep columns two apart.
        padding=(0, 1, 0, 0) if width is not None and needed > width else (0, 1),
    )
    for name, width in columns:
        justify: Literal["left", "right"] = "right" if name in right else "left"
        table.add_column(name, no_wrap=True, overflow="ellipsis", width=width, justify=justify)
    for row in rows:  # cells hold artifact text: markup and control characters shown as such
        # (as Text, not escaped markup: Rich shows an escaped trailing backslash doubled)
        table.add_row(*(Text(printable(row[name])) for name, _ in columns))
    return table


def print_one_line_table(
    console: Console,
    title: str,
    rows: Sequence[dict[str, str]],
    columns: Sequence[tuple[str, int]],
    *,
    right: Sequence[str] = (),
    header: bool = True,
) -> None:
    """:func:`one_line_table` of ``rows`` in ``console``'s width, printed
    (:func:`print_table`). Rich lays out each row in about 0.4 ms (a scan of 10,000 runs
    spent 4 s of CPU on its table); when every cell's character takes one cell, the rows after
    the first are written as text, laid out as Rich lays them out (padded or cut with ``…`` to
    their column, right-justified where asked, the columns' gap apart).

    >>> import io
    >>> from rich.console import Console
    >>> out = Console(file=io.StringIO(), width=30, soft_wrap=True)
    >>> rows = [{"id": f"t-{n}", "n": str(n), "reason": "exit status 1 " * n} for n in (1, 12)]
    >>> columns = fit_columns(rows, ("id", "n", "reason"), 30, free=("reason",))
    >>> print_one_line_table(out, "2 tickets", rows, columns, right=("n",))
    >>> print(out.file.getvalue())
    2 tickets
    id      n   reason
    ──────────────────
    t-1     1   exit status 1
    t-12   12   exit status 1 exi…
    <BLANKLINE>
    """
    from rundoctor.terminal import printable

    texts = [[printable(row[name]) for name, _ in columns] for row in rows[1:]]
    simple = all(cell_len_is_len(text) for row in texts for text in row)
    table = one_line_table(
        title, rows if not simple else rows[:1], columns, right=right, width=console.width
    )
    table.show_header = header
    print_table(console, table)
    if not simple or not texts:
        return
    gap = " " * (_GAP if table.padding[3] else _NARROW_GAP)
    lines = []
    for row in texts:
        cells = []
        for (name, width), text in zip(columns, row, strict=True):
            flush = name in right
            if flush:  # as Rich justifies: trailing spaces go before the cut
                text = text.rstrip()
            if len(text) > width:
                text = text[: width - 1] + "…"
            cells.append(text.rjust(width) if flush else text.ljust(width))
        line = gap.join(cells)
        lines.append(line.rstrip() if console.soft_wrap else line)
    console.out("\n".join(lines), highlight=False)  # one write: Rich's each cost ~60 µs


def cell_len_is_len(text: str) -> bool:
    """Whether every character of ``text`` takes one cell of a terminal (no wide, no
    zero-width one), so that its cells are its characters.

    >>> cell_len_is_len("r1 failed"), cell_len_is_len("失败"), cell_len_is_len("e\u0301")
    (True, False, False)
    """
    if text.isascii():
        return True
    from rich.cells import get_character_cell_size

    # Each character: a wide one and a zero-width one would add up to as many cells as both
    return all(c.isascii() or get_character_cell_size(c) == 1 for c in text)


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
    >>> rows = [{"id": "t-1", "reason": "boom"}]
    >>> out = Console(file=io.StringIO(), width=PIPE_WIDTH, soft_wrap=True)  # a pipe's
    >>> print_table(out, one_line_table("", rows, fit_columns(rows, ("id", "reason"), PIPE_WIDTH,
    ...                                                        free=("reason",))))
    >>> out.file.getvalue().splitlines()
    ['id    reason', '────────────', 't-1   boom']
    """
    if not console.soft_wrap:
        gap = _GAP if table.padding[3] else _NARROW_GAP  # no left padding: two apart
        needed = sum(c.width or 0 for c in table.columns) + gap * (len(table.columns) - 1)
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
        print_one_line_table(console, "", page, fitted, right=right, header=shown == 0)
        shown += len(page)
    if shown == 0:
        fitted = fit_columns([], columns, console.width, free=free, optional=optional)
        console.print(title, soft_wrap=True, markup=False, highlight=False)
        print_table(console, one_line_table("", [], fitted, right=right, width=console.width))
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
