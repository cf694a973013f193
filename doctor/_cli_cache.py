"""``doctor cache prune``: a thin command over :mod:`doctor._cache_prune`, mounted on the
``doctor`` app by :mod:`doctor._cli` as the group ``cache``.

Exit codes: 0 (pruned, or nothing to prune; files it could not read or remove are listed as
``left``), 2 on a usage error (no cache to prune, a directory that is not a scan cache or
whose ``runs/`` or ``events/`` is a symlink, a cache this user may not prune, a bad
``--older-than``), before anything is removed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from doctor._cache_prune import PruneResult, prune_cache
from doctor._cli import JsonOpt
from doctor._config import DoctorConfig
from doctor._errors import UsageError
from executor.console import OneLineGroup, reported
from rundoctor.durations import DurationError, parse_duration
from rundoctor.errors import write_whole
from rundoctor.paths import NoHomeError, expand_user, state_home
from rundoctor.terminal import printable

__all__ = ["app"]

app = typer.Typer(
    cls=OneLineGroup,  # its usage errors and unknown commands in the one-line shape
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    no_args_is_help=True,
    help="The scan cache ($RUNDOCTOR_CACHE, cache_dir, or watch's default).",
)


@app.command("prune")
def prune_cmd(
    cache: Annotated[
        Path | None,
        typer.Option(
            "--cache",
            metavar="DIR",
            help="The cache directory (default: $RUNDOCTOR_CACHE, the config file's "
            "cache_dir, else watch's $XDG_STATE_HOME/rundoctor/cache).",
        ),
    ] = None,
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            metavar="DURATION",
            help="Also forget runs not scanned for DURATION (30d); they are read again.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be removed; remove nothing.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Forget the cached runs whose directory is gone.

    Removes their entries and events (and, with --older-than, those of runs not scanned
    for that long; the next scan reads them again), events no entry names and a killed
    scan's temporary files, once an hour old. Nothing outside the cache directory is
    touched, nor anything through a symlink.
    """
    with reported(UsageError):
        where = _cache_dir(cache)
        age = None
        if older_than is not None:
            try:
                age = parse_duration(older_than)
            except DurationError as exc:
                raise UsageError(f"--older-than: {exc}") from None
        try:
            result = prune_cache(where, older_than_s=age, dry_run=dry_run)
        except OSError as exc:
            raise UsageError(_cannot(where, exc)) from None
    write_whole(json.dumps(result.as_json(), indent=2) + "\n" if json_out else _said(result))
    raise typer.Exit(0)


def _cache_dir(given: Path | None) -> Path:
    """``--cache``, else ``$RUNDOCTOR_CACHE``, else the config file's ``cache_dir``, else
    watch's default when it exists."""
    if given is not None:
        return expand_user(given)
    if os.environ.get("RUNDOCTOR_CACHE"):
        return expand_user(Path(os.environ["RUNDOCTOR_CACHE"]))
    from rundoctor.config import ConfigError, file_settings

    try:
        settings = file_settings(
            os.environ, "doctor", DoctorConfig, exclude=("checks", "now", "clock")
        )
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    if settings.get("cache_dir"):
        return Path(settings["cache_dir"])
    try:
        default = state_home() / "rundoctor" / "cache"
    except NoHomeError:
        default = None
    if default is not None and default.is_dir():
        return default
    raise UsageError(
        "no scan cache to prune: pass --cache DIR, or set RUNDOCTOR_CACHE (or cache_dir in "
        "the config file)"
    )


def _cannot(where: Path, exc: OSError) -> str:
    """Why ``where`` cannot be pruned, naming the directory at fault when it is another.

    >>> import errno
    >>> _cannot(Path("c"), PermissionError(errno.EACCES, "Permission denied", "c/runs"))
    "cannot prune 'c': Permission denied (c/runs); prune as the user the scans run as"
    """
    said = f"cannot prune {printable(repr(str(where)))}: {exc.strerror or exc}"
    if exc.filename is not None and str(exc.filename) != str(where):
        said += f" ({printable(exc.filename)})"
    if isinstance(exc, PermissionError):
        said += "; prune as the user the scans run as"
    return said


def _said(result: PruneResult) -> str:
    """One line: what was (or would be) removed, by reason, and what is kept."""
    kept = f"{result.kept:,} {'entry' if result.kept == 1 else 'entries'} kept in "
    kept += printable(result.cache)
    left = "".join(f"\nleft: {printable(why)}" for why in result.left)
    if not result.removed:
        return f"nothing to prune; {kept}{left}\n"
    counts: dict[str, int] = {}
    for p in result.removed:
        counts[p.reason] = counts.get(p.reason, 0) + 1
    reasons = ", ".join(f"{n:,} {reason}" for reason, n in counts.items())
    verb = "would prune" if result.dry_run else "pruned"
    return f"{verb} {len(result.removed):,} ({reasons}), {_size(result.freed)}; {kept}{left}\n"


def _size(n: int) -> str:
    """Bytes as people read them.

    >>> _size(512), _size(4_200_000)
    ('512 B', '4.0 MiB')
    """
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"
