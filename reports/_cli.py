"""The reports' command: ``doctor report`` (a postmortem of one run, or a fleet report).

Thin over the library: parse options, call the doctor for the diagnoses, render them here.
It lives with the reports, not the doctor, because the doctor sits below the reports (the
``doctor`` root mounts it by name; see ``docs/architecture.md``). Exit codes: 0 written, 2
usage or input error (one red line on stderr, no traceback). ``--json`` prints what was
written (:func:`reports._written.report_record`) instead of the report.
"""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Literal

import typer

from doctor import DoctorError, UsageError, config_from_env, given_run
from executor.console import OneLineGroup, diagnose_progress, reported, scan_progress
from rundoctor.errors import done_then_print, write_whole
from rundoctor.paths import expand_user

__all__ = ["app"]

app = typer.Typer(
    name="report",
    add_completion=False,
    cls=OneLineGroup,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.command("report")
def report_cmd(
    run_id: Annotated[
        str | None,
        typer.Option(
            "--run-id", metavar="ID", help="One run's postmortem: the run's name (or path)."
        ),
    ] = None,
    fleet: Annotated[bool, typer.Option("--fleet", help="A report over every run.")] = False,
    root: Annotated[
        list[Path] | None,
        typer.Option(
            "--root",
            metavar="DIR",
            help="A runs root (repeatable). Default: $RUNDOCTOR_ROOTS, then "
            "Kilroy's and the executor's runs directories.",
        ),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            envvar="RUNDOCTOR_DB",
            metavar="URL",
            help="With --fleet: the work queue, for throughput (SQLite file or postgresql://URL).",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", metavar="FILE", help="Write the report to FILE, not stdout."),
    ] = None,
    html: Annotated[
        bool,
        typer.Option("--html", help="With --run-id: one self-contained HTML page (SVG timeline)."),
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print what was written as JSON (rundoctor.report/1): kind, format, run_id, "
            "files, bytes, and the report's text when there is no --out.",
        ),
    ] = False,
) -> None:
    """Render a Markdown postmortem of one run (--run-id) or a fleet report (--fleet)."""
    from doctor import diagnose, scan, write_atomic
    from reports._html import write_postmortem
    from reports._render import render_fleet
    from reports._throughput import queue_throughput_at
    from reports._written import report_record

    out = None if out is None else expand_user(out)  # `--out=~/r.md`: no shell expands it
    with reported(DoctorError):
        if fleet == (run_id is not None):
            raise UsageError("pass either --run-id ID (a postmortem) or --fleet (all runs)")
        if html and fleet:
            raise UsageError("--html goes with --run-id; the fleet report is Markdown only")
        if fleet:
            config = config_from_env(root, db=db)
            with scan_progress(not as_json and sys.stderr.isatty()) as progress:
                result = scan(config, progress=progress)
            throughput = (
                queue_throughput_at(config.db, now=config.now) if db and config.db else None
            )
            text = render_fleet(result, throughput=throughput)
        else:
            if db:
                raise UsageError("--db goes with --fleet; a postmortem reads one run")
            run_id, root = given_run(str(run_id), root)
            config = config_from_env(root)
            # The postmortem writes its own --out (and, for Markdown, the SVG beside it).
            with diagnose_progress(not as_json and sys.stderr.isatty()) as steps:
                diagnosis = diagnose(run_id, config, steps)
            run_id = diagnosis.run_id
            text = write_postmortem(diagnosis, html=html, out=out, config=config)
        if out is not None and fleet:
            write_atomic(out, text)  # whole or not at all: Ctrl-C leaves no half report
    if as_json:
        kind: Literal["postmortem", "fleet"] = "fleet" if fleet else "postmortem"
        record = report_record(kind, html=html, run_id=run_id, out=out, text=text)
        # With --out the report is written by now: a lost standard output is no "nothing done".
        written = f"the report was written to {str(out)!r}"
        with nullcontext() if out is None else done_then_print(written, "open it there"):
            write_whole(json.dumps(record, indent=2) + "\n")
    elif out is None:
        write_whole(text)
    raise typer.Exit(0)
