"""The executor's commands (``doctor run``, ``enqueue``, ``worker``, ``reap``, ``tickets``).

Thin over the library: parse options, call one function, render. Exit codes: 0 success,
1 the run or ticket failed, 2 usage or input error (one red line on stderr, no traceback).
This module and :mod:`doctor._cli` are the only ones that read the environment:
``RUNDOCTOR_DB`` (queue URL), ``RUNDOCTOR_ROOT`` (runs root), ``RUNDOCTOR_AGENT_COMMAND``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from doctor._cli_errors import fail, reported
from doctor._config import state_home
from executor._config import ExecutorConfig
from executor._errors import ExecutorError
from executor._events import Event
from executor._graph import load_graph
from executor._queue import open_queue
from executor._reaper import reap
from executor._runner import run_pipeline
from executor._worker import run_ticket, run_worker

__all__ = ["app", "default_db", "default_root", "main"]

app = typer.Typer(
    name="executor",
    help="Run pipelines durably: queue, workers, reaper.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Queue: a SQLite file, sqlite:///PATH or postgresql://… "
        "(default $RUNDOCTOR_DB, else $XDG_STATE_HOME/rundoctor/queue.db).",
    ),
]
RootOpt = Annotated[
    Path | None,
    typer.Option(
        "--root", help="Runs root (default $RUNDOCTOR_ROOT, else $XDG_STATE_HOME/rundoctor/runs)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
BreakerOpt = Annotated[
    int | None,
    typer.Option(
        "--breaker-limit",
        help="Deterministic failures of one signature that stop a "
        "run (default 3; a graph's breaker_limit attribute wins).",
    ),
]
AgentOpt = Annotated[
    str | None,
    typer.Option(
        "--agent-command",
        help="Command line for agent (box) nodes, e.g. "
        "'claude -p {prompt_file}' (default $RUNDOCTOR_AGENT_COMMAND).",
    ),
]


def default_db() -> str:
    return os.environ.get("RUNDOCTOR_DB") or str(state_home() / "rundoctor" / "queue.db")


def default_root() -> Path:
    env = os.environ.get("RUNDOCTOR_ROOT")
    return Path(env) if env else state_home() / "rundoctor" / "runs"


def _config(breaker_limit: int | None, agent_command: str | None) -> ExecutorConfig:
    command = agent_command or os.environ.get("RUNDOCTOR_AGENT_COMMAND") or ""
    fields: dict[str, Any] = {"agent_command": tuple(shlex.split(command))}
    if breaker_limit is not None:
        fields["breaker_limit"] = breaker_limit
    return ExecutorConfig(**fields)


def _queue_url(db: str | None) -> str:
    url = db or default_db()
    if "://" not in url:
        Path(url).expanduser().parent.mkdir(parents=True, exist_ok=True)
    return url


def _progress(console: Console) -> Any:
    def show(e: Event) -> None:
        data = e.to_json()
        name = data.get("event")
        node = data.get("node_id") or ""
        if name == "stage_attempt_start":
            console.print(f"[dim]→[/dim] {escape(node)} attempt {data.get('attempt')}")
        elif name == "stage_attempt_end":
            ok = data.get("status") in ("success", "partial_success")
            mark = "[green]✓[/green]" if ok else "[red]✗[/red]"
            reason = data.get("failure_reason") or ""
            console.print(
                f"{mark} {escape(node)} {data.get('status')}"
                + (f": {escape(str(reason))[:160]}" if reason else "")
            )
        elif name in ("deterministic_failure_cycle_breaker", "run_failed", "run_completed"):
            console.print(
                f"[bold]{escape(str(name))}[/bold] {escape(str(data.get('reason') or ''))}"
            )

    return show


@app.command("run")
def run_cmd(
    graph: Annotated[Path, typer.Argument(help="The pipeline's DOT file.")],
    root: RootOpt = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
    breaker_limit: BreakerOpt = None,
    agent_command: AgentOpt = None,
) -> None:
    """Run one pipeline in the foreground with live progress (with --db, as a queued ticket)."""
    console = Console(stderr=True, highlight=False)
    with reported(ExecutorError):
        config = _config(breaker_limit, agent_command)
        load_graph(graph)  # invalid graphs are refused before anything is created
        runs = root or default_root()
        on_event = None if as_json else _progress(console)
        if db is None:
            result = run_pipeline(graph.resolve(), runs, config, on_event=on_event)
        else:
            queue = open_queue(_queue_url(db))
            ticket = queue.enqueue(graph.stem, str(graph.resolve()), priority=1_000_000)
            queue.close()
            got, _stats = run_ticket(_queue_url(db), ticket.id, runs, config, on_event=on_event)
            if got is None:
                fail(f"ticket {ticket.id} could not be claimed; `doctor tickets` shows it")
            result = got
    if as_json:
        sys.stdout.write(
            json.dumps(
                {k: result.to_json()[k] for k in ("run_id", "path", "status", "failure_reason")}
            )
            + "\n"
        )
    else:
        console.print(f"run {result.run_id}: [bold]{result.status}[/bold] ({result.path})")
    raise typer.Exit(0 if result.status == "success" else 1)


@app.command("enqueue")
def enqueue_cmd(
    graph: Annotated[Path, typer.Argument(help="The pipeline's DOT file.")],
    db: DbOpt = None,
    root: RootOpt = None,
    title: Annotated[str | None, typer.Option("--title")] = None,
    priority: Annotated[int, typer.Option("--priority")] = 0,
    depends_on: Annotated[list[str] | None, typer.Option("--depends-on")] = None,
    max_error_attempts: Annotated[int, typer.Option("--max-error-attempts")] = 1,
    as_json: JsonOpt = False,
) -> None:
    """Queue a pipeline run; prints the ticket id."""
    with reported(ExecutorError):
        load_graph(graph)
        queue = open_queue(_queue_url(db))
        try:
            ticket = queue.enqueue(
                title or graph.stem,
                str(graph.resolve()),
                priority=priority,
                depends_on=tuple(depends_on or ()),
                max_error_attempts=max_error_attempts,
            )
        finally:
            queue.close()
    del root  # accepted for symmetry with `worker`: runs are placed by the worker
    sys.stdout.write((json.dumps(ticket.to_json()) if as_json else ticket.id) + "\n")


@app.command("worker")
def worker_cmd(
    concurrency: Annotated[int, typer.Option("--concurrency", help="Tickets run at once.")] = 1,
    db: DbOpt = None,
    root: RootOpt = None,
    once: Annotated[bool, typer.Option("--once", help="Exit when nothing is claimable.")] = False,
    reaper_interval: Annotated[
        float | None, typer.Option("--reaper-interval", help="Seconds between reaper passes.")
    ] = None,
    lease_ttl: Annotated[
        float | None, typer.Option("--lease-ttl", help="Lease time-to-live in seconds.")
    ] = None,
    as_json: JsonOpt = False,
    breaker_limit: BreakerOpt = None,
    agent_command: AgentOpt = None,
) -> None:
    """Claim and run tickets until SIGTERM/SIGINT (runs are canceled, tickets released)."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with reported(ExecutorError):
        config = _config(breaker_limit, agent_command)
        timing: dict[str, Any] = {}
        if reaper_interval is not None:
            timing["reaper_interval_s"] = reaper_interval
        if lease_ttl is not None:
            # Keep the budget consistent: self-fence at 3/4 of the TTL, heartbeats every 1/6.
            timing |= {
                "lease_ttl_s": lease_ttl,
                "self_fence_s": lease_ttl * 0.75,
                "heartbeat_interval_s": lease_ttl / 6,
            }
        config = dataclasses.replace(config, **timing) if timing else config
        stats = run_worker(
            _queue_url(db),
            root or default_root(),
            config,
            concurrency=concurrency,
            once=once,
            stop=stop,
        )
    if as_json:
        sys.stdout.write(json.dumps(stats.to_json()) + "\n")
    else:
        Console(stderr=True).print(
            "worker stopped: " + ", ".join(f"{k} {v}" for k, v in stats.to_json().items())
        )


@app.command("reap")
def reap_cmd(db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """One reaper pass: reclaim dead or expired workers' tickets."""
    with reported(ExecutorError):
        queue = open_queue(_queue_url(db))
        try:
            done = reap(queue, ExecutorConfig())
        finally:
            queue.close()
    if as_json:
        sys.stdout.write(json.dumps([r.to_json() for r in done]) + "\n")
        return
    console = Console(highlight=False)
    for r in done:
        console.print(f"{escape(r.ticket_id)}: {r.status or 'not reclaimed'} ({escape(r.reason)})")
    console.print(f"{len(done)} ticket(s) reclaimed")


@app.command("tickets")
def tickets_cmd(
    db: DbOpt = None,
    status: Annotated[list[str] | None, typer.Option("--status")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List tickets (with --json: the queue's records, one object each)."""
    with reported(ExecutorError):
        queue = open_queue(_queue_url(db))
        try:
            found = queue.tickets(status=tuple(status) if status else None)
        finally:
            queue.close()
    if as_json:
        sys.stdout.write(json.dumps([t.to_json() for t in found], indent=2) + "\n")
        return
    table = Table(title=f"{len(found)} tickets")
    for col in ("id", "status", "title", "epoch", "owner", "run", "reason"):
        table.add_column(col, overflow="fold")
    for t in found:
        table.add_row(
            t.id,
            t.status,
            escape(t.title),
            str(t.lease_epoch),
            escape(t.lease_owner or ""),
            t.run_id or "",
            escape((t.reason or "")[:80]),
        )
    Console(highlight=False).print(table)


def main() -> None:
    app()
