"""The chaos commands: ``doctor chaos run|faults|check`` (also ``python -m chaos``).

Thin over the library: parse options, call one function, render. Exit codes: 0 every
invariant held, 1 at least one was violated (the replay command is printed), 2 usage or
input error (one red line on stderr, no traceback). Nothing here reads the environment: a
campaign never picks up a production queue from ``$RUNDOCTOR_DB`` by accident.

The hidden ``worker`` command is what a campaign starts for each worker process.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from chaos._campaign import CampaignResult, run_campaign
from chaos._checkers import check
from chaos._config import MAX_WORKERS, CampaignConfig, executor_from_json, parse_duration
from chaos._errors import ChaosError, UsageError
from chaos._evidence import Verdict
from chaos._faults import FAULTS, parse_faults
from chaos._history import read_history
from chaos._recording import serve_worker
from chaos._report import invariants_json, never_fired, report_json
from executor import ExecutorError
from executor.console import OneLineGroup, quiet_console, reported
from rundoctor.errors import done_then_print, write_whole
from rundoctor.paths import expand_user, read_error

__all__ = ["app", "main"]

app = typer.Typer(
    name="chaos",
    help="Kill, freeze and stall the executor from a seed; check that it recovers.",
    no_args_is_help=True,
    add_completion=True,
    cls=OneLineGroup,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_verdicts(console: Console, verdicts: tuple[Verdict, ...]) -> None:
    for v in verdicts:
        mark = "[green]✓[/green]" if v.ok else "[red]✗[/red]"
        console.print(f"{mark} {v.name}: {escape(v.summary)}", soft_wrap=True)


@app.command("run")
def run_cmd(
    seed: Annotated[
        int, typer.Option("--seed", metavar="N", help="Seeds the workload and the schedule.")
    ],
    duration: Annotated[
        str,
        typer.Option(
            "--duration", metavar="DURATION", help="How long faults are injected: 60s, 20m, 1h."
        ),
    ] = "60s",
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            metavar="N",
            help=f"Worker processes, 2 to {MAX_WORKERS} (one must stay awake to reap).",
        ),
    ] = 4,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            metavar="URL",
            help="Queue: postgresql://… (the campaign makes its own schema) or a new SQLite "
            "file. Default: a SQLite file in the campaign directory.",
        ),
    ] = None,
    faults: Annotated[
        str | None,
        typer.Option(
            "--faults", metavar="NAMES", help="Comma-separated fault names (default: all of them)."
        ),
    ] = None,
    db_control: Annotated[
        str | None,
        typer.Option(
            "--db-control",
            metavar="CMD",
            help="Command that restarts/stops/starts the PostgreSQL under test, with {action} "
            "(e.g. 'pg_ctl -D DIR -m fast -w {action}'); without it the database faults "
            "skip on PostgreSQL. Never the shared server.",
        ),
    ] = None,
    runs_tmpfs: Annotated[
        int | None,
        typer.Option(
            "--runs-tmpfs",
            metavar="MB",
            help="Mount a tmpfs of this many MiB as the runs root (root only) so that "
            "disk_full and read_only_root can run; without it they skip.",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", metavar="DIR", help="Campaign directory (default chaos-out/seed-N)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print report.json.")] = False,
) -> None:
    """Run a campaign; write report.md, report.json and history.ndjson to --out."""
    console = quiet_console(stderr=True, highlight=False)  # `2>&1 | head`: 141, never 1
    with reported(ChaosError):
        config = CampaignConfig(
            seed=seed,
            duration_s=parse_duration(duration),
            workers=workers,
            db=db,
            faults=parse_faults(faults),
            db_control=db_control,
            runs_tmpfs_mb=runs_tmpfs,
            out=out or Path("chaos-out") / f"seed-{seed}",
        ).validate()

        def started() -> None:  # not before --out and --db are accepted: a refusal is one line
            console.print(f"chaos: seed {seed}, {workers} workers, {duration}; replay with:")
            console.print(f"  {escape(config.replay_command())}", soft_wrap=True)

        log = None if as_json else (lambda line: console.print(escape(line), soft_wrap=True))
        result = run_campaign(config, log=log, on_start=started)
    _finish(console, result, as_json)


def _finish(console: Console, result: CampaignResult, as_json: bool) -> NoReturn:
    if as_json:
        verdict = "every invariant held" if result.ok else "an invariant was violated"
        with done_then_print(
            f"the campaign ran ({verdict})",
            f"{str(result.out / 'report.json')!r} holds what --json prints",
        ):
            write_whole(json.dumps(report_json(result), indent=2) + "\n")
    else:
        _print_verdicts(console, result.verdicts)
        for kind, why in never_fired(result):  # the verdicts say nothing about these
            console.print(f"[yellow]![/yellow] {kind} never fired: {escape(why)}", soft_wrap=True)
        console.print(f"report: {escape(str(result.out / 'report.md'))}", soft_wrap=True)
    if not result.ok:
        failed = ", ".join(v.name for v in result.verdicts if not v.ok)
        console.print(f"[red]violated:[/red] {escape(failed)}; replay with:", soft_wrap=True)
        console.print(f"  {escape(result.config.replay_command())}", soft_wrap=True)
    raise typer.Exit(0 if result.ok else 1)


@app.command("faults")
def faults_cmd(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the faults as JSON, one object each.")
    ] = False,
) -> None:
    """List the faults and the doctor findings each one may cause."""
    if as_json:
        faults = [
            {
                "name": f.name,
                "summary": f.summary,
                "may_cause": sorted(f.may_cause),
                "reclaims": f.reclaims or None,
            }
            for f in FAULTS
        ]
        write_whole(json.dumps(faults, indent=2) + "\n")
        return
    console = quiet_console(highlight=False)
    for f in FAULTS:
        # One line a fault, never cut at the terminal's width (as `doctor checks`): a wrapped
        # summary went on at the margin, unindented, and `| grep NAME` lost its end.
        console.print(f"[bold]{f.name}[/bold]  {escape(f.summary)}", soft_wrap=True)
        may = ", ".join(sorted(f.may_cause)) or "nothing at error or above"
        console.print(f"    may cause: {escape(may)}", soft_wrap=True)


@app.command("check")
def check_cmd(
    history: Annotated[
        Path, typer.Argument(metavar="HISTORY", help="A campaign's history.ndjson.")
    ],
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print the verdicts as report.json's invariants list."),
    ] = False,
) -> None:
    """Check a recorded history again (the checkers read nothing else)."""
    with reported(ChaosError):
        try:
            verdicts = check(read_history(expand_user(history)))
        except (OSError, UnicodeDecodeError) as exc:
            why = read_error(expand_user(history), exc)
            raise UsageError(f"cannot read history {str(history)!r}: {why}") from exc
        except ValueError as exc:
            raise UsageError(f"cannot read history {str(history)!r}: {exc}") from exc
    if as_json:
        write_whole(json.dumps(invariants_json(verdicts), indent=2) + "\n")
    else:
        _print_verdicts(quiet_console(highlight=False), verdicts)
    raise typer.Exit(0 if all(v.ok for v in verdicts) else 1)


@app.command("worker", hidden=True)
def worker_cmd(
    db: Annotated[str, typer.Option("--db")],
    root: Annotated[Path, typer.Option("--root")],
    name: Annotated[str, typer.Option("--name")],
    config: Annotated[Path, typer.Option("--config")],
    history: Annotated[Path, typer.Option("--history")],
    concurrency: Annotated[int, typer.Option("--concurrency")] = 1,
    campaign: Annotated[int | None, typer.Option("--campaign-pid")] = None,
) -> None:
    """One recorded worker of a campaign (started by `doctor chaos run`)."""
    executor = executor_from_json(json.loads(config.read_text()))
    # A worker that cannot continue (its database stayed away) says why in one line, exit 3.
    with reported(ExecutorError):
        stats = serve_worker(
            db,
            root,
            executor,
            name=name,
            history=history,
            concurrency=concurrency,
            campaign_pid=campaign,
        )
    sys.stdout.write(json.dumps(stats) + "\n")


def main() -> None:
    """Entry point of ``python -m chaos``."""
    app()
