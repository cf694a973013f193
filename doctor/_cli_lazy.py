"""Commands mounted by name, imported only when invoked: the ``doctor`` root stays thin.

The ``doctor`` console script carries every package's commands (the executor's ``run``,
``worker``…, ``watch``, the ``chaos`` group), but a command pays only for the modules it
needs: ``doctor --help`` and ``doctor checks`` load neither the executor nor chaos, and
``doctor diagnose`` not chaos. A :class:`Mount` names a command, the module whose typer
``app`` defines it and the command's one-line help, so the top-level help and shell completion
list every command without importing any of them (a test keeps those lines equal to the
commands' own). :class:`LazyGroup` is the :class:`~executor.console.OneLineGroup` that
resolves them (see click's "Lazily Loading Subcommands").
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, get_args, get_origin

import typer.main
from typer._click import Command, Context, HelpFormatter, Parameter
from typer._click.shell_completion import CompletionItem
from typer.core import TyperCommand
from typer.models import TyperInfo

from executor.console import OneLineGroup

__all__ = ["LazyGroup", "Mount"]


try:  # typer's own parameter coercion (0.29): private, so a typer without it is no error
    from typer._coercion import RuntimeParam, build_runtime_param
    from typer.core import _TyperParameter
except ImportError:  # pragma: no cover - nothing to defer: every command is only slower
    _DEFERRABLE = False
else:
    _DEFERRABLE = True

    @dataclass(frozen=True)
    class _Deferred(RuntimeParam):
        """typer's coercion of a parameter, built when a value needs it (not for an absent one).

        typer 0.29 builds a Pydantic ``TypeAdapter`` for every parameter a command processes,
        even a flag left out (``--help``, ``--install-completion``: value ``None``), so any
        command would import Pydantic (about as long as the rest of ``doctor checks``). An
        absent value is ``None`` whatever the type; a given one gets typer's own coercion.
        """

        def _coerce_value(self, value: Any, param: _TyperParameter, ctx: Context) -> Any:
            done, plain = _plain_value(self.annotation, self.parameter_info, value, param, ctx)
            if done:
                return plain
            real = param._runtime_param = build_runtime_param(param.type_descriptor)
            return real._coerce_value(value, param=param, ctx=ctx)

    def _text(value: object) -> bool:
        """A non-empty str Pydantic takes as it is (valid UTF-8, no NUL)."""
        if type(value) is not str or not value or "\0" in value:
            return False
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # surrogate-escaped bytes: Pydantic's own error message
            return False
        return True

    def _plain_int(value: object) -> int | None:
        """An int, or the int of plain decimal digits (``--limit 5``); None for anything
        else (signs, spaces, underscores, other digits: typer's own coercion takes those)."""
        if type(value) is int:
            return value
        if type(value) is str and 0 < len(value) <= 18 and value.isascii() and value.isdigit():
            return int(value)
        return None

    def _plain_value(
        annotation: Any, info: Any, value: Any, param: _TyperParameter, ctx: Context
    ) -> tuple[bool, Any]:
        """typer's result for the values it gives back unchanged, without Pydantic.

        A ``str`` option given text, a ``bool`` flag, an ``int`` option given an int or
        plain digits within its ``min``/``max`` (``scan --limit``, whose default 0 is
        coerced too), and a ``list[Path]`` option given
        text that passes typer's own path checks: the value (the ``Path`` of each item),
        exactly what typer's Pydantic adapters return, at none of their import cost (about
        a quarter of ``doctor diagnose --json`` of a large run). Anything else (``(False,
        None)``), including any value typer would refuse, goes through typer itself.
        """
        if getattr(info, "parser", None) is not None or getattr(info, "path_type", None):
            return False, None
        if annotation is bool and type(value) is bool:
            return True, value
        if annotation is str and _text(value):
            return True, value
        if annotation is int and not getattr(info, "clamp", False):
            number = _plain_int(value)
            low, high = getattr(info, "min", None), getattr(info, "max", None)
            if (
                number is not None
                and (low is None or number >= low)
                and (high is None or number <= high)
            ):
                return True, number
        if (
            get_origin(annotation) is list
            and get_args(annotation) == (Path,)
            and isinstance(value, (list, tuple))
            and all(_text(v) for v in value)
        ):
            from typer._param_types import coerce_cli_path

            try:
                paths = [
                    coerce_cli_path(Path(v), info, path_type=Path, param=param, ctx=ctx)
                    for v in value
                ]
            except Exception:  # typer's own coercion says why, in its own words
                return False, None
            return True, paths
        return False, None


def _defer_coercion(params: list[Parameter]) -> None:
    """Make typer build each parameter's coercion only when a value needs it."""
    if not _DEFERRABLE:  # pragma: no cover
        return
    for param in params:
        if isinstance(param, _TyperParameter) and param._runtime_param is None:
            info = param.type_descriptor
            param._runtime_param = _Deferred(info.parameter_info, info.annotation)


@dataclass(frozen=True, slots=True)
class Mount:
    """One command of another module, mounted on a group by name.

    ``module`` defines a typer ``app``; the mount is that app's command ``name``, or, with
    ``group``, the whole app as a sub-group called ``name``. ``help`` is the first paragraph
    of the command's help, what listings show without importing ``module``.

    >>> Mount("reap", "executor._cli", "One reaper pass.").listing().get_short_help_str()
    'One reaper pass.'
    """

    name: str
    module: str
    help: str
    group: bool = False

    def listing(self) -> Command:
        """A stand-in that lists like the command (name and help) and cannot be run."""
        return TyperCommand(self.name, help=self.help)

    def load(self, parent: LazyGroup) -> Command:
        """Import the module and build the command as ``parent``'s own would be."""
        app = importlib.import_module(self.module).app
        group = typer.main.get_group_from_info(
            TyperInfo(app, name=self.name if self.group else None),
            pretty_exceptions_short=True,
            suggest_commands=parent.suggest_commands,
            rich_markup_mode=parent.rich_markup_mode,
        )
        if self.group:
            return group
        command = group.commands.get(self.name)
        if command is None:  # a mount naming a command its module lost: a bug, said plainly
            raise LookupError(f"{self.module}.app has no command {self.name!r}")
        return command


class _Commands(MutableMapping[str, Command]):
    """A group's commands: the built ones, then the mounted ones, built on first access."""

    def __init__(self, built: MutableMapping[str, Command], group: LazyGroup) -> None:
        self._built = dict(built)
        self._mounts = {m.name: m for m in group.mounts if m.name not in self._built}
        self._order = [*self._built, *self._mounts]
        self._group = group

    def __getitem__(self, name: str) -> Command:
        command = self._built.get(name)
        if command is None:
            mount = self._mounts[name]  # KeyError: no such command
            command = self._built[name] = mount.load(self._group)
        return command

    def __setitem__(self, name: str, command: Command) -> None:
        if name not in self._built and name not in self._mounts:
            self._order.append(name)
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        if name not in self._built and name not in self._mounts:
            raise KeyError(name)
        self._built.pop(name, None)
        self._mounts.pop(name, None)
        self._order.remove(name)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._order))

    def __len__(self) -> int:
        return len(self._order)

    def listed(self, name: str) -> Command:
        """The command as listings show it, without importing a mounted one."""
        built = self._built.get(name)
        return built if built is not None else self._mounts[name].listing()


class LazyGroup(OneLineGroup):
    """A :class:`OneLineGroup` whose :attr:`mounts` are imported only when invoked."""

    #: The mounted commands, listed after the group's own in this order.
    mounts: ClassVar[tuple[Mount, ...]] = ()

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = _Commands(self.commands, self)

    def _listed(self, name: str) -> Command:
        commands = self.commands
        assert isinstance(commands, _Commands)
        return commands.listed(name)

    def get_params(self, ctx: Context) -> list[Parameter]:
        params = super().get_params(ctx)
        _defer_coercion(params)
        return params

    def resolve_command(
        self, ctx: Context, args: list[str]
    ) -> tuple[str | None, Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        if command is not None:
            _defer_coercion(command.get_params(ctx))
        return name, command, rest

    def shown_commands(self, ctx: Context) -> list[str]:
        """The commands the help lists, without importing the mounted ones."""
        return [n for n in self.list_commands(ctx) if not self._listed(n).hidden]

    def list_commands(self, ctx: Context) -> list[str]:
        """The commands' names in order (typer's own would build every command to list them)."""
        return list(self.commands)

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        """The help's command list, as typer writes it, from the mounts' one-line help."""
        rows = [(n, c) for n in self.list_commands(ctx) if not (c := self._listed(n)).hidden]
        if not rows:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in rows)
        with formatter.section("Commands"):
            formatter.write_dl([(name, c.get_short_help_str(limit)) for name, c in rows])

    def shell_complete(self, ctx: Context, incomplete: str) -> list[CompletionItem]:
        """Complete command names (with their help) without importing the mounted ones."""
        results = [
            CompletionItem(name, help=command.get_short_help_str())
            for name in self.list_commands(ctx)
            if name.startswith(incomplete) and not (command := self._listed(name)).hidden
        ]
        results.extend(Command.shell_complete(self, ctx, incomplete))  # the group's options
        return results
