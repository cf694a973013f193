"""The ``doctor`` command line: parse options, call one library function, render the result.

Exit codes (FINDINGS.md): 0 nothing at ``error`` or above · 1 at least one ``error`` or
``critical`` finding · 2 usage or input error (one red line on stderr saying what to do).
This module and the command modules it mounts are the only ones that read the environment
(here ``RUNDOCTOR_ROOTS``, ``RUNDOCTOR_CACHE``, ``RUNDOCTOR_DB``). It is the root of every
package's commands; see ``docs/architecture.md``.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from doctor._cli_lazy import LazyGroup, Mount
from doctor._config import DoctorConfig, default_roots
from doctor._discovery import list_run_dirs
from doctor._errors import DoctorError, RootError, UsageError
from doctor._layout import _looks_like_run as looks_like_run
from doctor._layout import name_on_disk
from doctor._version import package_version
from executor.console import (
    console,
    diagnose_progress,
    fail,
    listed,
    plain,
    reported,
    scan_progress,
    while_read,
)
from rundoctor.errors import (
    BROKEN_PIPE,
    crash_guarded,
    done_then_print,
    exit_when_done,
    silence_stdout,
    whole_output,
    write_all,
    write_whole,
)
from rundoctor.paths import expand_queue_path, expand_user, file_kind
from rundoctor.terminal import printable, shell_quote

if TYPE_CHECKING:  # the commands import what they run, so each pays only for its own
    from rich.console import Console

    from doctor._diagnose import ScanResult
    from doctor._model import Diagnosis
    from doctor._repair import Action, QueueRepairReport, RepairReport

__all__ = ["app", "config_from_env", "main"]


class _Root(LazyGroup):
    """``doctor``: its own commands, then the other packages', mounted by name."""

    mounts = (
        # The reports sit above the doctor: their command lives with them.
        Mount(
            "report",
            "reports._cli",
            "Render a Markdown postmortem of one run (--run-id) or a fleet report (--fleet).",
        ),
        # The executor's commands live with the executor, thin over its library.
        Mount(
            "run",
            "executor._cli",
            "Run one pipeline in the foreground with live progress (with --db, as a queued "
            "ticket).",
        ),
        Mount(
            "enqueue",
            "executor._cli",
            "Queue a pipeline run (creating the queue if needed); prints the ticket id.",
        ),
        Mount(
            "worker",
            "executor._cli",
            "Claim and run tickets until SIGTERM/SIGINT (runs are canceled, tickets released).",
        ),
        Mount(
            "reap", "executor._cli", "One reaper pass: reclaim dead or expired workers' tickets."
        ),
        Mount(
            "tickets",
            "executor._cli",
            "List tickets, most pressing first (with --json: every ticket's record, oldest first).",
        ),
        # Watching and metrics live in their own module.
        Mount(
            "watch",
            "doctor._cli_watch",
            "Scan every --interval; alert once per new finding (warning or above), say when it "
            "clears.",
        ),
        Mount(
            "metrics",
            "doctor._cli_watch",
            "The fleet as OpenMetrics text: runs by state, findings, idleness, and the queue.",
        ),
        Mount(
            "cache",
            "doctor._cli_cache",
            "The scan cache ($RUNDOCTOR_CACHE, cache_dir, or watch's default).",
            group=True,
        ),
        # The chaos harness is one sub-app: `doctor chaos run|faults|check` (also `python -m
        # chaos`).
        Mount(
            "chaos",
            "chaos._cli",
            "Kill, freeze and stall the executor from a seed; check that it recovers.",
            group=True,
        ),
    )


app = typer.Typer(
    name="doctor",
    help="Diagnose long unattended pipeline runs from their artifacts.",
    no_args_is_help=True,
    add_completion=True,
    cls=_Root,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

RootOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--root",
        metavar="DIR",
        help="A runs root (repeatable). Default: $RUNDOCTOR_ROOTS, then "
        "Kilroy's and the executor's runs directories.",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (the documented contract).")]
DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar="RUNDOCTOR_DB",
        metavar="URL",
        help="Also read a work queue: a SQLite file, sqlite:///ABS/PATH or postgresql://URL.",
    ),
]
VerboseOpt = Annotated[
    bool, typer.Option("-v", "--verbose", help="Show evidence and list the passing checks.")
]


def _check_roots(roots: list[Path]) -> None:
    """A ``--root`` that is missing, a file, or a run directory itself: say which, and what
    to pass instead (every command the same way)."""
    for root in roots:
        problem = _root_problem(root)
        if problem is not None:
            raise RootError(f"runs root '{printable(str(root))}' {problem}")
        if looks_like_run(root) and not list_run_dirs([root]):
            # Shown with a byte that is not UTF-8 as \xNN; the commands quoted to paste back
            # the same name ($'…\xNN'), as every command the doctor prints is.
            raise RootError(
                f"'{printable(str(root))}' is a run directory, not a runs root; diagnose it "
                f"with `doctor diagnose --run-id {shell_quote(str(root))}` or pass --root "
                f"{shell_quote(str(root.resolve().parent))}"
            )


def _root_problem(root: Path) -> str | None:
    """Why ``root`` is no directory to scan, said so that the fix is plain; None when it is one.

    >>> _root_problem(Path("/dev/null"))[:38], _root_problem(Path("/"))
    ('is a character device, not a directory', None)
    """
    try:
        st = os.stat(root)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symlink loop: it never reaches a directory; pass an existing --root DIR"
        if exc.errno == errno.ENOENT and os.path.islink(root):
            return (
                f"is a symlink to {os.readlink(root)!r}, which does not exist; pass an "
                "existing --root DIR"
            )
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return "does not exist; pass an existing --root DIR"
        raise  # permission denied, a name too long: said as every command says them
    if not stat.S_ISDIR(st.st_mode):
        kind = "a file" if stat.S_ISREG(st.st_mode) else file_kind(st.st_mode)
        return (
            f"is {kind}, not a directory; pass --root the directory that holds the run directories"
        )
    return None


def given_run(run_id: str, roots: list[Path] | None) -> tuple[str, list[Path] | None]:
    """``--run-id`` may be a run directory's path: its parent is then the root, its name the id.

    >>> given_run("01KH3DN4", None)
    ('01KH3DN4', None)
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp()) / "r1"
    >>> d.mkdir()
    >>> _ = (d / "progress.ndjson").write_text("")
    >>> given_run(str(d), None) == ("r1", [d.parent.resolve()])
    True
    """
    if not any(sep in run_id for sep in ("/", "\\")) and run_id not in (".", ".."):
        return run_id, roots
    path = expand_user(run_id)
    if not path.is_dir():  # a path as the doctor shows it (a byte not UTF-8 as \xNN)?
        path = expand_user(name_on_disk(run_id))
    if not path.is_dir():
        return run_id, roots  # refused by the run id check, which names the value
    path = path.resolve()
    if not path.name:  # "/" or "//": was "run id '' is empty", naming no value given
        raise UsageError(
            f"--run-id {run_id!r} is the file system's root, not a run directory; pass a run "
            "directory's path or name (`doctor scan --root DIR` lists them)"
        )
    _named_by_dots(run_id, path)
    if not looks_like_run(path):
        if not os.path.isabs(expand_user(run_id)):  # group/run, relative to a root
            return run_id, roots
        # Was "no run 'etc' under /", after seconds spent listing the parent for names alike.
        raise UsageError(
            f"--run-id '{printable(run_id)}' is a directory, not a run directory (no "
            "progress.ndjson, manifest.json or final.json in it); pass a run directory's path, "
            f"or `doctor scan --root {shell_quote(str(path))}` lists the runs under it"
        )
    return path.name, [path.parent]


def _named_by_dots(run_id: str, path: Path) -> None:
    """Refuse a ``--run-id`` that ends in ``.`` or ``..`` (``.``, ``..``, ``./``, ``runs/r1/..``):
    it names a directory by where the shell stands, not a run by its name, and was taken as the
    run (the current directory, or its parent) without a word. The message gives its path.

    >>> _named_by_dots("..", Path("/srv/runs"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    doctor._errors.UsageError: --run-id '..' is the parent directory, not a run's name; ...
    """
    parts = [p for p in run_id.replace("\\", "/").split("/") if p]
    if not parts or parts[-1] not in (".", ".."):
        return
    what = {".": "is the current directory", "..": "is the parent directory"}[parts[-1]]
    if len(parts) > 1 or run_id.startswith(("/", "\\")):
        what = f"ends in {parts[-1]!r}"
    raise UsageError(
        f"--run-id {run_id!r} {what}, not a run's name; pass the run directory's path "
        f"(--run-id {shell_quote(str(path))}) or its name (`doctor scan --root DIR` lists them)"
    )


def config_from_env(
    roots: list[Path] | None, *, fallback: dict[str, Any] | None = None, **overrides: Any
) -> DoctorConfig:
    """The flags (``roots`` and ``overrides``; None is "not given") over the environment over
    the config file's ``[doctor]`` (:mod:`rundoctor.config`) over the command's own defaults
    (``fallback``) over :class:`DoctorConfig`'s.

    Roots from the flag, else ``$RUNDOCTOR_ROOTS`` (``:``-separated), else the config file's
    ``roots``, else the default directories that exist.

    >>> import tempfile
    >>> from pathlib import Path
    >>> runs = Path(tempfile.mkdtemp())
    >>> config = config_from_env([runs], stale_lease_s=300.0)
    >>> config.roots == (runs,), config.stale_lease_s
    (True, 300.0)
    """
    from rundoctor.config import ConfigError, config_path, file_settings

    try:
        settings = file_settings(
            os.environ, "doctor", DoctorConfig, exclude=("checks", "now", "clock")
        )
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    overrides = {k: v for k, v in overrides.items() if v is not None}
    for given in (settings, overrides):  # `~/q.db` in the file, or quoted or after `=`
        if isinstance(given.get("db"), str):
            given["db"] = expand_queue_path(given["db"])
    if roots:
        roots = [expand_user(r) for r in roots]
        _check_roots(roots)
        chosen = tuple(roots)
    elif os.environ.get("RUNDOCTOR_ROOTS"):
        chosen = tuple(expand_user(p) for p in os.environ["RUNDOCTOR_ROOTS"].split(os.pathsep) if p)
    elif settings.get("roots"):
        chosen = settings["roots"]
    else:
        chosen = tuple(p for p in default_roots() if p.is_dir())
        if not chosen and not (overrides.get("db") or settings.get("db")):  # a queue alone
            raise UsageError(
                "no runs root found (looked in "
                + ", ".join(str(p) for p in default_roots())
                + "); pass --root DIR, set RUNDOCTOR_ROOTS or roots in the config file"
            )
    cache = os.environ.get("RUNDOCTOR_CACHE")
    if cache and "cache_dir" not in overrides:
        overrides["cache_dir"] = expand_user(cache)
    _budget_from_env(settings)
    config = DoctorConfig(**{**(fallback or {}), **settings, "roots": chosen, **overrides})
    try:
        return config.validate()
    except UsageError as exc:  # the thresholds have no flags: a bad one is the file's
        raise UsageError(f"config file {str(config_path(os.environ))!r}: [doctor] {exc}") from None


def _budget_from_env(settings: dict[str, Any]) -> None:
    """DuckDB's memory and spill limits: the environment over the config file, checked."""
    from doctor._budget import MEMORY_ENV, SPILL_ENV, check_size

    for key, env in (("memory_limit", MEMORY_ENV), ("spill_limit", SPILL_ENV)):
        if os.environ.get(env):
            settings[key] = check_size(env, os.environ[env])
        elif key in settings:
            settings[key] = check_size(key, settings[key])


def diagnose(
    run_id: str, config: DoctorConfig, steps: Callable[[str, int, int], None] | None = None
) -> Diagnosis:
    """:func:`doctor.diagnose`, imported when a command runs it."""
    from doctor._diagnose import diagnose as diagnose_run

    return diagnose_run(run_id, config, steps)


def scan(config: DoctorConfig, **options: Any) -> ScanResult:
    """:func:`doctor.scan`, imported when a command runs it."""
    from doctor._diagnose import scan as scan_runs

    return scan_runs(config, **options)


def _emit_json(data: Any) -> None:
    from doctor._json_out import dumps_indented  # json.dumps(indent=2), twice as fast

    _write_out(dumps_indented(data) + "\n")


def _write_out(text: str) -> None:
    """``text`` to standard output, flushed; a reader that went away (``| head``) ends the
    command quietly with :data:`~rundoctor.errors.BROKEN_PIPE` (141), as a Rich console does,
    not with click's 1 ("findings at error")."""
    try:
        write_whole(text)
    except BrokenPipeError:
        silence_stdout()
        raise SystemExit(BROKEN_PIPE) from None


@app.command("diagnose")
def diagnose_cmd(
    run_id: Annotated[
        str,
        typer.Option(
            "--run-id",
            metavar="ID",
            help="The run directory's name (or its path: then its parent is the root).",
        ),
    ],
    root: RootOpt = None,
    as_json: JsonOpt = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print Markdown.")] = False,
    check: Annotated[
        list[str] | None,
        typer.Option(
            "--check",
            metavar="NAME",
            help="Run only this check (repeatable, or comma-separated).",
        ),
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Diagnose one run: failing checks first with a runnable hint, passing ones folded."""
    from doctor._detectors import select

    with reported(DoctorError):
        if as_json and markdown:
            raise UsageError("--json and --markdown exclude each other; pick one")
        checks = tuple(listed(check))
        detectors = select(checks)
        run_id, root = given_run(run_id, root)
        config = config_from_env(root, checks=checks)
        with diagnose_progress(not as_json and not markdown and sys.stderr.isatty()) as steps:
            result = diagnose(run_id, config, steps)
    if as_json:  # Rich and the renderers are imported only for text output
        _emit_json(result.to_json())
    elif markdown:
        from doctor._render import render_markdown

        _write_out(render_markdown(result))
    else:
        from doctor._render import render_diagnosis

        render_diagnosis(console(), result, detectors, verbose=verbose, config=config)
    raise typer.Exit(result.exit_code)


def parse_since(text: str, now: float) -> float:
    """An age (a duration, :mod:`rundoctor.durations`: ``24h``, ``7d``, ``1h30m``) or an
    ISO date/time, as epoch seconds.

    >>> parse_since("2h", 10_000.0), parse_since("1h30m", 10_000.0)
    (2800.0, 4600.0)
    >>> parse_since("2026-02-10", 1.8e9)
    1770681600.0
    >>> parse_since("2026-02-10", 0.0)
    Traceback (most recent call last):
    ...
    doctor._errors.UsageError: --since '2026-02-10' is in the future (2026-02-10T00:00:00Z): ...
    >>> parse_since("0s", 0.0)
    Traceback (most recent call last):
    ...
    doctor._errors.UsageError: --since '0s' is no age: no run can have started since now; ...
    >>> parse_since("99999999w", 0.0)
    Traceback (most recent call last):
    ...
    doctor._errors.UsageError: --since '99999999w' is too long a duration: at most 5218w ...
    """
    from datetime import UTC, datetime

    from rundoctor.durations import DurationError, parse_duration

    try:
        age = parse_duration(text)
    except DurationError as exc:
        why = str(exc)
    else:
        if age <= 0:  # since now: no run can have started, and an empty table reads "all well"
            raise UsageError(
                f"--since {text!r} is no age: no run can have started since now; give an age "
                "like 24h or a past date like 2026-02-10"
            )
        return now - age
    try:
        ts = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        if " is not a duration" not in why:  # a duration, but out of range: say so
            raise UsageError(f"--since {why}") from None
        raise UsageError(
            f"--since {text!r} is neither an age like 24h, 7d or 1h30m nor an ISO date like "
            "2026-02-10"
        ) from None
    since = (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp()
    if since > now:  # no run started after now: an empty table would read as "all is well"
        at = datetime.fromtimestamp(since, UTC).isoformat().replace("+00:00", "Z")
        raise UsageError(
            f"--since {text!r} is in the future ({at}): no run can have started since then; "
            "give a past date or an age like 24h"
        )
    return since


@app.command("scan")
def scan_cmd(
    root: RootOpt = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            metavar="WHEN",
            help="Only runs started since, and fleet findings still going on then: 24h, 7d, "
            "2026-02-10.",
        ),
    ] = None,
    limit: Annotated[
        int,
        typer.Option(
            "--limit",
            metavar="N",
            min=0,
            help="Show the N worst runs (default 0: all of them; --json lists every run).",
        ),
    ] = 0,
    as_json: JsonOpt = False,
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="Show the fleet findings' evidence.")
    ] = False,
    db: DbOpt = None,
) -> None:
    """Diagnose every run under the roots: one row each (worst first), fleet findings."""
    with reported(DoctorError):
        config = config_from_env(root, db=db)
        cutoff = parse_since(since, time.time()) if since else None
        with scan_progress(not as_json and sys.stderr.isatty()) as progress:
            result = scan(config, since=cutoff, progress=progress)
    if as_json:  # cached runs' findings are spliced as kept, not parsed and encoded again
        from doctor._json_out import Chunked

        # Piece by piece, in chunks: a large fleet's text is megabytes (doctor._json_out).
        with whole_output():
            out = Chunked(write_all)
            result.write_json_text(out)
            out("\n")
            out.flush()
    else:
        from doctor._render import render_scan  # here: --json output needs no Rich

        render_scan(console(), result, verbose=verbose, limit=limit, now=config.now)
    raise typer.Exit(result.exit_code)


@app.command("checks")
def checks_cmd(as_json: JsonOpt = False) -> None:
    """List the detectors, one line each."""
    # From the written-out listing: importing the detectors took half the command's time.
    from doctor._detectors._listing import CHECKS, check_lines

    if as_json:
        _emit_json([{"name": name, "description": text} for name, text in CHECKS])
    else:
        # Plain lines, never wrapped (`doctor checks | grep`): no Rich console to import,
        # which took about as long as the rest of the command.
        _write_out("".join(f"{line}\n" for line in check_lines()))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def _print_plan(
    console: Console,
    plan: list[Action],
    header: str,
    journal: str = "repairs.ndjson",
    *,
    finishing: Sequence[Action] = (),
) -> None:

    console.print(f"{header} · {_count(len(plan), 'repair')} planned")
    if finishing:
        console.print(
            f"First, --apply finishes {_count(len(finishing), 'cut')} a repair left half done:",
            soft_wrap=True,
        )
    for action in finishing:
        where = f"{action.target} at byte {action.byte_offset}"
        console.print(f"  - {plain(where)} — {plain(action.reason)}", soft_wrap=True)
        if action.blocked:
            console.print(f"     [yellow]expected to refuse:[/yellow] {plain(action.blocked)}")
    for i, action in enumerate(plan, 1):
        console.print(f"  {i}. {plain(action.summary)}", soft_wrap=True)
        if action.blocked:
            console.print(f"     [yellow]expected to refuse:[/yellow] {plain(action.blocked)}")
    if plan or finishing:
        console.print(
            f"Run again with --apply to carry out the plan (journaled in {plain(journal)}).",
            soft_wrap=True,
        )


def _print_repair(console: Console, report: RepairReport | QueueRepairReport, again: str) -> None:

    from doctor._repair import QueueRepairReport

    marks = {"applied": "[green][✓][/green]", "noop": "[green][=][/green]"}
    for r in report.results:
        console.print(
            f"{marks.get(r.outcome, '[red][✗][/red]')} {plain(r.summary)}", soft_wrap=True
        )
        for label, refs in (("resolved", r.resolved), ("introduced", r.introduced)):
            for ref in refs:
                where = ref.scope or "top level"
                console.print(f"    {label}: {ref.code} ({plain(where)})", soft_wrap=True)
    errors = sum(1 for f in report.remaining if f.severity in ("error", "critical"))
    if isinstance(report, QueueRepairReport) and report.unverified:
        return  # the findings left are unknown: the error line after this says why
    if isinstance(report, QueueRepairReport):
        console.print(
            f"The queue has {_count(len(report.remaining), 'finding')} left, {errors} at error "
            "or above "
            f"(`{plain(again)}`); journal: {plain(report.journal)}.",
            soft_wrap=True,
        )
        return
    console.print(
        f"State now [bold]{report.state}[/bold]; {_count(len(report.remaining), 'finding')} "
        "left, "
        f"{errors} at error or above (`{plain(again)}`).",
        soft_wrap=True,
    )


@app.command("repair")
def repair_cmd(
    run_id: Annotated[
        str | None,
        typer.Option(
            "--run-id",
            metavar="ID",
            help="The run directory's name (or its path: then its parent is the root).",
        ),
    ] = None,
    root: RootOpt = None,
    apply: Annotated[
        bool, typer.Option("--apply", help="Carry out the plan (default: only print it).")
    ] = False,
    as_json: JsonOpt = False,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            metavar="URL",
            help="Repair the work queue instead of a run (reclaim, reconcile): a SQLite "
            "file, sqlite:///ABS/PATH or postgresql://URL. Never read from $RUNDOCTOR_DB.",
        ),
    ] = None,
    journal: Annotated[
        Path | None,
        typer.Option(
            "--journal",
            metavar="DIR",
            help="With --db: the directory of the queue's repairs.ndjson (default: the "
            "SQLite file's directory; for PostgreSQL, the first runs root).",
        ),
    ] = None,
) -> None:
    """Plan safe repairs for one run (or the queue, --db); --apply carries them out, journaled."""

    from doctor._diagnose import diagnose_path, run_path
    from doctor._repair import apply_repairs, plan_finishing, plan_repairs

    if db is not None or run_id is None or journal is not None:
        _repair_queue(db, root, apply, as_json, journal, run_id)
    with reported(DoctorError):
        run_id, root = given_run(run_id, root)
        config = config_from_env(root)
        # The run's real path, not the diagnosis's text (a name's byte that is not UTF-8 is
        # `\xNN` there: --apply was "not a run directory … No such file or directory").
        where = run_path(run_id, config)
        with diagnose_progress(not as_json and sys.stderr.isatty()) as steps:
            diagnosis = diagnose_path(where, config, steps)
        plan = plan_repairs(diagnosis, config)
        finishing = plan_finishing(diagnosis, where)
        report = apply_repairs(plan, config, run_path=where) if apply else None
    if report is None:
        blocked = any(a.blocked for a in (*finishing, *plan))
        code = 1 if diagnosis.exit_code or blocked else 0
    else:
        code = report.exit_code
    changed = report is not None and bool(report.results)
    with _repaired(f"run {diagnosis.run_id!r}") if changed else nullcontext():
        _print_run_repair(diagnosis, plan, finishing, report, apply, as_json)
    raise typer.Exit(code)


def _repaired(what: str) -> AbstractContextManager[None]:
    """Printing after ``repair --apply`` carried out the plan on ``what``: a standard output
    that fails then is :data:`~rundoctor.errors.OUTPUT_LOST` (74), not "nothing was done"."""
    return done_then_print(
        f"the repairs of {what} were carried out and journaled",
        "`repair` without --apply shows what remains to do",
    )


def _print_run_repair(
    diagnosis: Diagnosis,
    plan: list[Action],
    finishing: list[Action],
    report: RepairReport | None,
    apply: bool,
    as_json: bool,
) -> None:
    from doctor._render import run_command

    if as_json:
        _emit_json(
            {
                "schema": "rundoctor.repair/1",
                "run_id": diagnosis.run_id,
                "path": diagnosis.path,
                "applied": apply,
                "finishing": [a.to_json() for a in finishing],
                "plan": [a.to_json() for a in plan],
                "report": None if report is None else report.to_json(),
            }
        )
    elif report is None:
        header = f"[bold]{plain(diagnosis.run_id)}[/bold] · state [bold]{diagnosis.state}[/bold]"
        _print_plan(console(), plan, header, finishing=finishing)
    else:
        _print_repair(console(), report, run_command("diagnose", diagnosis))


def _repair_queue(
    db: str | None,
    root: list[Path] | None,
    apply: bool,
    as_json: bool,
    journal: Path | None,
    run_id: str | None,
) -> NoReturn:
    """``doctor repair --db URL``: plan from a scan with the queue (roots optional)."""

    from doctor._model import Severity
    from doctor._queue_ingest import parse_queue_url
    from doctor._repair import apply_queue_repairs, plan_repairs, queue_journal_dir

    with reported(DoctorError):
        if db is None or run_id is not None:
            raise UsageError(
                "pass --run-id ID to repair a run, or --db URL (and --journal) to repair the "
                "queue; not both"
            )
        db, journal = expand_queue_path(db), journal and expand_user(journal)
        queue = parse_queue_url(db).display
        config = config_from_env(root, db=db)
        with scan_progress(not as_json and sys.stderr.isatty()) as progress:
            result = scan(config, progress=progress)
        plan = plan_repairs(result, config)
        where: str | None = None
        with suppress(UsageError):  # printing a plan needs no journal; --apply does
            where = str(queue_journal_dir(config, journal) / "repairs.ndjson")
        report = (
            # What a repair waits for goes to stderr, never into --json's output.
            apply_queue_repairs(plan, config, journal=journal, say=_say) if apply else None
        )
    if report is None:
        worst = any(f.severity >= Severity.ERROR for f in result.findings)
        code = 1 if worst or any(a.blocked for a in plan) else 0
    else:
        code = report.exit_code
    changed = report is not None and bool(report.results)
    with _repaired(f"queue {queue!r}") if changed else nullcontext():
        _print_queue_repair(
            queue, where, report, plan, apply=apply, as_json=as_json, db=db, config=config
        )
    if report is not None and report.unverified:  # after what was done: it is reported
        fail(report.unverified, code)
    raise typer.Exit(code)


def _say(line: str) -> None:
    """One line on stderr (what a command waits for, while it waits); a reader gone away
    silences it, and the repair goes on (:func:`executor.console.while_read`)."""
    notice = console(stderr=True)
    while_read(notice, lambda text: notice.print(plain(text), soft_wrap=True))(line)


def _print_queue_repair(
    queue: str,
    where: str | None,
    report: QueueRepairReport | None,
    plan: list[Action],
    *,
    apply: bool,
    as_json: bool,
    db: str,
    config: DoctorConfig,
) -> None:
    if as_json:
        _emit_json(
            {
                "schema": "rundoctor.repair/1",
                "queue": queue,
                "journal": where if report is None else report.journal,
                "applied": apply,
                "plan": [a.to_json() for a in plan],
                "report": None if report is None else report.to_json(),
            }
        )
    elif report is None:
        header = f"queue [bold]{plain(queue)}[/bold]"
        _print_plan(console(), plan, header, where or "repairs.ndjson")
    else:
        again = ["doctor", "scan", "--db", db] + [
            w for r in config.roots for w in ("--root", str(r))
        ]
        _print_repair(console(), report, " ".join(shell_quote(w) for w in again))


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"doctor (rundoctor) {package_version()}\n")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            is_eager=True,
            callback=_version,
            help="Print the installed version and exit.",
        ),
    ] = False,
) -> None:
    """Diagnose long unattended pipeline runs from their artifacts."""


def main() -> None:
    """Console-script entry point (a crash of the tool exits 70 with one line, no traceback)."""
    from rundoctor.liveness import exclude_self_as_owner

    exclude_self_as_owner()  # a run.pid naming this very process is a reused pid
    exit_when_done(crash_guarded(app))
