"""The executor's commands (``doctor run``, ``enqueue``, ``worker``, ``reap``, ``tickets``).

Thin over the library: parse options, call one function, render. Exit codes: 0 success,
1 the run or ticket failed, 2 usage or input error (one red line on stderr, no traceback).
The command modules (this one, the ``doctor`` root and what it mounts) are the only ones
that read the environment; here:
``RUNDOCTOR_DB`` (queue URL), ``RUNDOCTOR_ROOT`` (runs root), ``RUNDOCTOR_AGENT_COMMAND``.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shlex
import signal
import threading
from collections.abc import Generator
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any, NoReturn
from urllib.parse import parse_qsl, urlencode, urlsplit

import typer
from rich.console import Console

from executor._config import MIN_LEASE_TTL_S, ExecutorConfig
from executor._errors import ExecutorError, NoQueueError, QueueError, UsageError
from executor._events import Event
from executor._graph import load_graph
from executor._queue import PRESSING_ORDER, Queue, Ticket, open_queue
from executor._queue_lifecycle import check_column, check_text
from executor._queue_reads import check_statuses
from executor._reaper import ReapFailed, ReapInterrupted, Reclaim, reap_observed
from executor._runner import RunResult, missing_agent_command, new_run_id, run_pipeline
from executor._stage import OUT_OF_FDS, fd_limit
from executor._worker import (
    MAX_CONCURRENCY,
    TicketHook,
    check_root_text,
    make_root,
    run_ticket,
    run_worker,
)
from executor.console import (
    OneLineGroup,
    console,
    fail,
    listed,
    plain,
    print_pages,
    reported,
    while_read,
)
from rundoctor.errors import (
    BROKEN_PIPE,
    INTERRUPTED,
    close_matches,
    did_you_mean,
    done_then_print,
    silence_stdout,
    whole_output,
    write_all,
    write_whole,
)
from rundoctor.passwords import redact
from rundoctor.paths import expand_queue_path, expand_user, make_dirs, state_home
from rundoctor.words import plural

__all__ = ["app", "default_db", "default_root", "main"]

app = typer.Typer(
    name="executor",
    help="Run pipelines durably: queue, workers, reaper.",
    no_args_is_help=True,
    add_completion=True,
    cls=OneLineGroup,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

GraphArg = Annotated[Path, typer.Argument(metavar="GRAPH", help="The pipeline's DOT file.")]
DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="URL",
        help="Queue: a SQLite file, sqlite:///PATH or postgresql://… "
        "(default $RUNDOCTOR_DB, else $XDG_STATE_HOME/rundoctor/queue.db).",
    ),
]
# `doctor run` goes through a queue only when asked: $RUNDOCTOR_DB (set for the workers) never
# turns a foreground run into a ticket.
RunDbOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="URL",
        help="Run it as a ticket of this queue: a SQLite file, sqlite:///PATH or "
        "postgresql://… (never taken from $RUNDOCTOR_DB; without --db nothing is queued).",
    ),
]
RootOpt = Annotated[
    Path | None,
    typer.Option(
        "--root",
        metavar="DIR",
        help="Runs root (default $RUNDOCTOR_ROOT, else $XDG_STATE_HOME/rundoctor/runs).",
    ),
]
BreakerOpt = Annotated[
    int | None,
    typer.Option(
        "--breaker-limit",
        metavar="N",
        help="Deterministic failures of one signature that stop a "
        "run (default 3; a graph's breaker_limit attribute wins).",
    ),
]
AgentOpt = Annotated[
    str | None,
    typer.Option(
        "--agent-command",
        metavar="COMMAND",
        help="Command line for agent (box) nodes, e.g. "
        "'claude -p {prompt_file}' (default $RUNDOCTOR_AGENT_COMMAND).",
    ),
]


def _stderr() -> Console:
    return console(stderr=True)


def default_db() -> str:
    return os.environ.get("RUNDOCTOR_DB") or str(state_home() / "rundoctor" / "queue.db")


def default_root() -> Path:
    env = os.environ.get("RUNDOCTOR_ROOT")
    return expand_user(env) if env else state_home() / "rundoctor" / "runs"


def _seconds(option: str, text: str) -> float:
    """``text`` in the duration grammar (:mod:`rundoctor.durations`), or one line and exit 2."""
    from rundoctor.durations import DurationError, parse_duration

    try:
        seconds = parse_duration(text)
    except DurationError as exc:
        fail(f"{option}: {exc}")
    if seconds <= 0:  # named as given, not as the config field it sets (reaper_interval_s)
        fail(f"{option} {text!r} must be more than zero, e.g. 1s, 500ms or 2m")
    return seconds


def _config(
    breaker_limit: int | None, agent_command: str | None, timing: dict[str, float] | None = None
) -> ExecutorConfig:
    """The flags (``timing``: the worker's lease and reaper flags, in seconds) over the
    environment over the config file's ``[executor]`` over the defaults
    (:mod:`rundoctor.config`), validated: a budget the file set that is out of range (or
    inconsistent with the others) is one line naming the file, as the file's other mistakes
    are, not a bare ``lease_ttl_s = 0.0 must be > 0`` the user could take for a flag's."""
    from rundoctor.config import ConfigError, config_path, file_settings

    try:
        fields = file_settings(os.environ, "executor", ExecutorConfig, exclude=("env",))
    except ConfigError as exc:
        fail(str(exc))
    overridden = set(timing or {})
    from_file = set(fields)
    command = agent_command or os.environ.get("RUNDOCTOR_AGENT_COMMAND")
    if command is not None:
        try:
            fields["agent_command"] = tuple(shlex.split(command))
        except ValueError as exc:
            fail(f"--agent-command {command!r} cannot be split into words: {exc}")
        overridden.add("agent_command")
    if breaker_limit is not None:
        if breaker_limit < 1:
            fail(f"--breaker-limit must be 1 or more failures, got {breaker_limit}")
        fields["breaker_limit"] = breaker_limit
        overridden.add("breaker_limit")
    fields |= timing or {}
    config = ExecutorConfig(**fields)
    try:
        return config.validate()
    except ExecutorError as exc:
        if set(re.findall(r"\w+", str(exc))) & (from_file - overridden):
            fail(f"config file {str(config_path(os.environ))!r}: [executor] {exc}")
        raise


def _check_agents(graph: Path, config: ExecutorConfig) -> None:
    """Refuse a graph with agent nodes when no agent command is set, naming the flag."""
    agents = sorted(n.id for n in load_graph(graph).nodes.values() if n.kind == "agent")
    if agents and not config.agent_command:
        fail(missing_agent_command(agents))


def _schema_url(url: str) -> str:
    """``postgresql://…?schema=NAME`` (as ``doctor scan`` takes it) for libpq: search_path.

    >>> _schema_url("postgresql://u@h/db?schema=q1")
    'postgresql://u@h/db?options=-csearch_path%3Dq1'
    >>> _schema_url("postgresql:///db?host=/run/pg&schema=q1")
    'postgresql:///db?host=%2Frun%2Fpg&options=-csearch_path%3Dq1'
    >>> _schema_url("queue.db")
    'queue.db'
    """
    if not url.startswith(("postgresql://", "postgres://")) or "schema=" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # "Invalid IPv6 URL"
        fail(f"--db {redact(url)!r} is not a URL ({exc})")
    query = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [v for k, v in query if k == "schema"]
    if len(schemas) != 1 or not schemas[0] or any(k == "options" for k, _ in query):
        fail(f"--db {redact(url)!r}: give schema=NAME once, with a name, and no options= beside it")
    rest = [(k, v) for k, v in query if k != "schema"]
    rest.append(("options", f"-csearch_path={schemas[0]}"))
    # Not urlunsplit: it drops the empty host of postgresql:///db (a local socket).
    return url.split("?", 1)[0] + "?" + urlencode(rest)


def _queue_url(db: str | None, *, create: bool = False) -> str:
    """The queue's URL; a SQLite queue that does not exist is created only when ``create``.

    Inspecting commands (``tickets``, ``reap``) and a worker not asked to create one refuse a
    missing file, with the queue files next to it as "did you mean", instead of leaving an
    empty queue (or a directory) behind under a mistyped name.
    """
    url = expand_queue_path(_schema_url(db or default_db()))
    if "://" in url and not url.startswith("sqlite://"):
        return url
    path = expand_user(url.removeprefix("sqlite://"))
    try:
        found = path.exists()
    except OSError:  # a directory on the way that cannot be searched: the queue says so
        return url
    if found or str(path) == ":memory:" or not url.strip():
        return url
    if create:
        try:
            make_dirs(path.parent)
        except OSError as exc:  # a file on the way ($XDG_STATE_HOME a file), a read-only disk
            why = "it is a file" if isinstance(exc, FileExistsError) else exc.strerror or exc
            fail(
                f"cannot create the queue's directory {str(path.parent)!r}: {why}; "
                "pass --db a path whose directory can be created"
            )
        return url
    if path.is_symlink():  # dangling, or a loop: it is not a missing name to correct
        fail(
            f"no queue at {str(path)!r}: it is a symlink to {os.readlink(path)!r}, which "
            "does not resolve to a file; point --db at the queue itself"
        )
    near: list[str] = []
    if path.parent.is_dir():
        names = [p.name for p in path.parent.iterdir() if p.suffix in (".db", ".sqlite")]
        near = [str(path.parent / n) for n in close_matches(path.name, names, n=1)]
    given = shlex.quote(url)
    fail(
        f"no queue at {str(path)!r}{did_you_mean(near)}; `doctor enqueue GRAPH --db {given}` "
        f"or `doctor worker --create-queue --db {given}` creates one (or pass --db a SQLite "
        "file, sqlite:///ABS/PATH or postgresql://…)"
    )


def _no_queue(db: str | None) -> NoReturn:
    """Fail for a queue whose tables (or PostgreSQL schema) do not exist, naming the cure."""
    given = shlex.quote(redact(db or default_db()))
    fail(
        f"no queue at {given}: its tables do not exist (nothing was created); "
        f"`doctor enqueue GRAPH --db {given}` or `doctor worker --create-queue --db {given}` "
        "creates one"
    )


def _open_existing(db: str | None) -> Queue:
    """The queue at ``db`` for an inspecting command: never created, refused when missing."""
    try:
        return open_queue(_queue_url(db), create=False)
    except NoQueueError:
        _no_queue(db)


def _progress(console: Console) -> Any:
    """The run's progress lines on ``console`` (:func:`executor.console.while_read`)."""

    def show(e: Event) -> None:
        data = e.to_json()
        name = data.get("event")
        node = data.get("node_id") or ""
        if name == "stage_attempt_start":
            console.print(
                f"[dim]→[/dim] {plain(node)} attempt {data.get('attempt')}", soft_wrap=True
            )
        elif name == "stage_attempt_end":
            ok = data.get("status") in ("success", "partial_success")
            mark = "[green]✓[/green]" if ok else "[red]✗[/red]"
            reason = data.get("failure_reason") or ""
            console.print(
                f"{mark} {plain(node)} {data.get('status')}"
                + (f": {plain(str(reason)[:160])}" if reason else ""),
                soft_wrap=True,
            )
        elif name == "deterministic_failure_cycle_breaker":  # it carries no reason: its count
            failures = plural(int(data.get("signature_count") or 0), "failure")
            console.print(
                f"[bold]{name}[/bold] on {plain(node)}: {failures} of one signature "
                f"(limit {data.get('signature_limit')}): "
                f"{plain(str(data.get('signature') or '')[:160])}",
                soft_wrap=True,
            )
        elif name in ("run_failed", "run_completed"):
            reason = data.get("reason") or ""
            console.print(
                f"[bold]{name}[/bold]" + (f" {plain(str(reason))}" if reason else ""),
                soft_wrap=True,
            )

    return while_read(console, show)


def _run_here(graph: Path, runs: Path, config: ExecutorConfig, on_event: Any) -> RunResult:
    """``doctor run`` without a queue. A runs root that cannot be made, or that refuses the
    run's directory or files (read-only, full, not this user's), is one line naming it: it was
    "internal error", exit 70 (a worker gives such a ticket back instead: its own rule)."""
    make_root(runs)
    run_id = new_run_id()  # named here: a run the root refused is then named by the error
    try:
        return run_pipeline(graph.resolve(), runs, config, run_id=run_id, on_event=on_event)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        run = runs.resolve() / run_id
        # Whether the run got its final.json (the writer tries three times): without one, the
        # run looks live to whatever waits for it, and the next step is the doctor's repair.
        # A run whose directory could not even be made has no final.json to say why, and
        # needs no repair: nothing of it is there (it was said to have "ended").
        after = (
            f"run {run_id} was not begun: its directory could not be made"
            if not run.is_dir()
            else f"run {run_id} ended (its final.json says why)"
            if (run / "final.json").is_file()
            else f"run {run_id} has no final.json: once the root takes writes and its stall "
            f"timeout has passed, `doctor repair --run-id {run_id} --root "
            f"{shlex.quote(str(runs))} --apply` terminalizes it"
        )
        if exc.errno in OUT_OF_FDS:  # no fault of the runs root: this process's limit
            raise UsageError(
                f"the run could not go on: this process ran out of file descriptors "
                f"({exc.strerror or exc}{where}; it has {fd_limit()}); {after}; raise the limit"
            ) from None
        raise UsageError(
            f"the run could not be written under runs root {str(runs)!r}: "
            f"{exc.strerror or exc}{where}; {after}; {_root_advice(exc)}"
        ) from None


#: What a write meets where the run's own file should be a regular one: a FIFO (``ENXIO``
#: without a reader), a device, socket or directory (``EINVAL``, ``EISDIR``), a symlink
#: (``ELOOP``: never followed). A stage may have made it: it writes in the run's directory.
_NOT_A_FILE = frozenset({errno.ENXIO, errno.EINVAL, errno.EISDIR, errno.ELOOP})


def _root_advice(exc: OSError) -> str:
    """What to do about a write under the runs root that failed: another root (full or
    read-only), or, when the file written is no regular file, that file (another root would
    not help: a stage made it there).

    >>> _root_advice(OSError(errno.ENOSPC, "No space left on device"))
    'pass --root (or set RUNDOCTOR_ROOT to) a writable directory with free space'
    >>> _root_advice(OSError(errno.ENXIO, "No such device or address", "/r/x/progress.ndjson"))
    ... # doctest: +NORMALIZE_WHITESPACE
    "'/r/x/progress.ndjson' is no regular file the run can write (a FIFO, device, socket,
    directory or symlink, which a stage may have made there): remove it"
    """
    if exc.errno in _NOT_A_FILE and exc.filename:
        return (
            f"{str(exc.filename)!r} is no regular file the run can write (a FIFO, device, "
            "socket, directory or symlink, which a stage may have made there): remove it"
        )
    return "pass --root (or set RUNDOCTOR_ROOT to) a writable directory with free space"


def _reason(url: str, ticket_id: str) -> str:
    """Why ``ticket_id`` ended as it did (its ``reason``), as the queue recorded it."""
    queue = open_queue(url)
    try:
        return queue.get(ticket_id).reason or "`doctor tickets` shows it"
    finally:
        queue.close()


@app.command("run")
def run_cmd(
    graph: GraphArg,
    root: RootOpt = None,
    db: RunDbOpt = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print {run_id, path, status, failure_reason} as JSON when the run ends."
        ),
    ] = False,
    breaker_limit: BreakerOpt = None,
    agent_command: AgentOpt = None,
) -> None:
    """Run one pipeline in the foreground with live progress (with --db, as a queued ticket)."""
    console = _stderr()
    graph = expand_user(graph)  # `~/p.dot` quoted, as a script may pass it
    with reported(ExecutorError):
        config = _config(breaker_limit, agent_command)
        load_graph(graph)  # invalid graphs are refused before anything is created
        _check_agents(graph, config)
        runs = expand_user(root) if root else default_root()
        on_event = None if as_json else _progress(console)
        if db is None:
            result = _run_here(graph, runs, config, on_event)
        else:
            check_root_text(runs)  # before the queue is made: a run path it could not keep
            url = _queue_url(db, create=True)
            queue = open_queue(url)
            ticket = queue.enqueue(graph.stem, str(graph.resolve()), priority=1_000_000)
            queue.close()
            got, stats = run_ticket(url, ticket.id, runs, config, on_event=on_event)
            if got is None and stats.claimed:
                fail(f"ticket {ticket.id} failed before its run began: {_reason(url, ticket.id)}")
            if got is None:
                fail(f"ticket {ticket.id} could not be claimed; `doctor tickets` shows it")
            result = got
    if result.status == "canceled" and "SIGINT" in result.failure_reason:
        # Ctrl-C: the run was canceled and terminalized (final.json says so); the one line.
        fail(f"interrupted; run {result.run_id} was canceled ({result.path})", INTERRUPTED)
    if as_json:
        with done_then_print(
            f"run {result.run_id} ended {result.status} ({result.path})",
            "its final.json holds what --json prints",
        ):
            write_whole(
                json.dumps(
                    {k: result.to_json()[k] for k in ("run_id", "path", "status", "failure_reason")}
                )
                + "\n"
            )
    else:
        console.print(
            f"run {plain(result.run_id)}: [bold]{result.status}[/bold] ({plain(str(result.path))})",
            soft_wrap=True,
        )
    raise typer.Exit(0 if result.status == "success" else 1)


@app.command("enqueue")
def enqueue_cmd(
    graph: GraphArg,
    db: DbOpt = None,
    root: Annotated[
        Path | None,
        typer.Option(
            "--root",
            metavar="DIR",
            help="Accepted and ignored: the worker that runs the ticket decides where runs go.",
        ),
    ] = None,
    title: Annotated[
        str | None,
        typer.Option("--title", metavar="TEXT", help="A name for people (default: the file's)."),
    ] = None,
    priority: Annotated[
        int,
        typer.Option(
            "--priority",
            metavar="N",
            show_default=False,
            help="Higher is claimed first (default 0; a 32-bit integer).",
        ),
    ] = 0,
    depends_on: Annotated[
        list[str] | None,
        typer.Option(
            "--depends-on",
            metavar="TICKET",
            help="A ticket id that must be done first (repeatable, or comma-separated).",
        ),
    ] = None,
    max_error_attempts: Annotated[
        int,
        typer.Option(
            "--max-error-attempts",
            metavar="N",
            show_default=False,
            help="Failed runs a ticket may have, stored on it (default 1; workers fail a "
            "ticket on its first failed run for now).",
        ),
    ] = 1,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the whole ticket record as JSON, not its id.")
    ] = False,
) -> None:
    """Queue a pipeline run (creating the queue if needed); prints the ticket id."""
    graph = expand_user(graph)
    depends_on = listed(depends_on) or None
    with reported(ExecutorError):
        # Each value is named by the flag it came from, not by the queue column it sets.
        if title is not None and not title.strip():
            fail("--title is empty; give the ticket a name, or leave --title out for the file's")
        if title is not None:
            check_text("title", title, "--title")
        check_column("priority", priority, "--priority")
        check_column("max_error_attempts", max_error_attempts, "--max-error-attempts")
        for dep in depends_on or ():
            if not dep.strip():
                fail("--depends-on is empty; give a ticket id (`doctor tickets` lists them)")
            check_text("depends_on", dep, "--depends-on")
        load_graph(graph)
        queue = open_queue(_queue_url(db, create=True))
        try:
            ticket = queue.enqueue(
                title or graph.stem,
                str(graph.resolve()),
                priority=priority,
                depends_on=tuple(depends_on or ()),
                max_error_attempts=max_error_attempts,
            )
        except QueueError as exc:
            if str(exc).startswith("no ticket "):  # one of --depends-on: say which flag
                fail(f"--depends-on: {exc}; `doctor tickets` lists the ids")
            raise
        finally:
            queue.close()
    del root  # accepted for symmetry with `worker`: runs are placed by the worker
    with done_then_print(
        f"ticket {ticket.id} was queued",
        "`doctor tickets` lists it; enqueue again only for a second run",
    ):
        write_whole((json.dumps(ticket.to_json()) if as_json else ticket.id) + "\n")


def _ticket_line(console: Console) -> TicketHook:
    """One line on stderr per ticket claimed and per ticket finished (``while_read``)."""

    def show(event: str, ticket: Ticket, result: RunResult | None) -> None:
        name = f"{plain(ticket.id)} ({plain(ticket.title)})"
        if event == "claimed":
            console.print(f"[dim]→[/dim] claimed {name}", soft_wrap=True)
        elif result is None and ticket.status == "failed":  # its pipeline could not be run
            console.print(
                f"[red]✗[/red] {name} failed: {plain(ticket.reason or '')}", soft_wrap=True
            )
        elif result is None:
            console.print(f"[yellow]![/yellow] {name}: lease lost before the run", soft_wrap=True)
        else:
            mark = "[green]✓[/green]" if result.status == "success" else "[red]✗[/red]"
            reason = f": {plain(result.failure_reason[:160])}" if result.failure_reason else ""
            console.print(
                f"{mark} {name} {result.status} in {result.wall_s:.1f}s, "
                f"run {plain(result.run_id)}{reason}",
                soft_wrap=True,
            )

    return while_read(console, show)


@app.command("worker")
def worker_cmd(
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency",
            metavar="N",
            show_default=False,
            help=f"Tickets run at once, 1 to {MAX_CONCURRENCY:,} (default 1).",
        ),
    ] = 1,
    db: DbOpt = None,
    root: RootOpt = None,
    once: Annotated[bool, typer.Option("--once", help="Exit when nothing is claimable.")] = False,
    create_queue: Annotated[
        bool,
        typer.Option(
            "--create-queue",
            help="Create the queue if missing (a SQLite file and its directory, or "
            "PostgreSQL tables and the schema=NAME schema).",
        ),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("-q", "--quiet", help="No line per ticket claimed and finished.")
    ] = False,
    reaper_interval: Annotated[
        str | None,
        typer.Option(
            "--reaper-interval",
            metavar="DURATION",
            help="Time between reaper passes (default 1s): 1s, 500ms.",
        ),
    ] = None,
    lease_ttl: Annotated[
        str | None,
        typer.Option(
            "--lease-ttl",
            metavar="DURATION",
            help="Lease time-to-live (default 60s, at least 1s): 60s, 2m.",
        ),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print what the worker did as one JSON object when it stops."),
    ] = False,
    breaker_limit: BreakerOpt = None,
    agent_command: AgentOpt = None,
) -> None:
    """Claim and run tickets until SIGTERM/SIGINT (runs are canceled, tickets released)."""
    stop = threading.Event()
    signals: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        signals.append(signum)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    console = _stderr()
    with reported(ExecutorError):
        timing: dict[str, float] = {}
        if reaper_interval is not None:
            timing["reaper_interval_s"] = _seconds("--reaper-interval", reaper_interval)
        if lease_ttl is not None:
            lease_ttl_s = _seconds("--lease-ttl", lease_ttl)
            if lease_ttl_s < MIN_LEASE_TTL_S:
                fail(
                    f"--lease-ttl {lease_ttl} is shorter than the {MIN_LEASE_TTL_S:g} s a lease "
                    "needs: the worker heartbeats it every sixth of it through the queue "
                    "database and would fence every ticket it claims; use 1s or more"
                )
            # Keep the budget consistent: self-fence at 3/4 of the TTL, heartbeats every 1/6.
            timing |= {
                "lease_ttl_s": lease_ttl_s,
                "self_fence_s": lease_ttl_s * 0.75,
                "heartbeat_interval_s": lease_ttl_s / 6,
            }
        config = _config(breaker_limit, agent_command, timing)
        if not 1 <= concurrency <= MAX_CONCURRENCY:  # before the queue is looked at
            fail(
                f"--concurrency must be from 1 to {MAX_CONCURRENCY}, got {concurrency}; run "
                "more workers for more"
            )
        try:
            stats = run_worker(
                _queue_url(db, create=create_queue),
                expand_user(root) if root else default_root(),
                config,
                concurrency=concurrency,
                once=once,
                stop=stop,
                on_ticket=None if quiet else _ticket_line(console),
                create=create_queue,
            )
        except NoQueueError:
            _no_queue(db)
    summary = "worker stopped: " + ", ".join(f"{k} {v}" for k, v in stats.to_json().items())
    if as_json:
        with done_then_print(summary, "`doctor tickets` shows the tickets"):
            write_whole(json.dumps(stats.to_json()) + "\n")
    if signal.SIGINT in signals:
        fail(f"interrupted; {summary} (running tickets were released)", INTERRUPTED)
    if not as_json:
        console.print(summary, soft_wrap=True)


@app.command("reap")
def reap_cmd(
    db: DbOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the tickets reclaimed as a JSON list.")
    ] = False,
) -> None:
    """One reaper pass: reclaim dead or expired workers' tickets."""
    interrupted, failed = False, ""
    with reported(ExecutorError):
        queue = _open_existing(db)
        try:
            notice = _stderr()
            done = reap_observed(
                queue,
                ExecutorConfig(),
                say=while_read(notice, lambda line: notice.print(line, soft_wrap=True)),
            )
        except ReapInterrupted as exc:  # Ctrl-C while it watched: report what it reclaimed
            done, interrupted = exc.found, True
        except ReapFailed as exc:  # the queue failed mid-pass: report what it reclaimed
            if not exc.found:
                raise
            done, failed = exc.found, str(exc)
        finally:
            queue.close()
    if interrupted and not done:
        fail("interrupted", INTERRUPTED)
    _print_reclaims(done, as_json)
    if interrupted:
        fail("interrupted", INTERRUPTED)
    if failed:
        fail(failed)


def _print_reclaims(done: list[Reclaim], as_json: bool) -> None:
    """What a reaper pass reclaimed, as ``doctor reap`` prints it."""
    what = plural(len(done), "ticket") + " reclaimed"
    with (
        done_then_print(f"the reaper ran: {what}", "`doctor tickets` shows them")
        if done
        else nullcontext()
    ):
        if as_json:
            write_whole(json.dumps([r.to_json() for r in done]) + "\n")
            return
        out = console()
        for r in done:
            out.print(f"{plain(r.ticket_id)}: {r.status or 'not reclaimed'} ({plain(r.reason)})")
        out.print(what)


#: Tickets ``doctor tickets`` shows on a terminal unless told otherwise (--limit, --all).
TICKETS_LIMIT = 50


@app.command("tickets")
def tickets_cmd(
    db: DbOpt = None,
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status",
            metavar="STATUS",
            help="Only tickets in this status (repeatable, or comma-separated): todo, blocked, "
            "claimed, running, done, failed, canceled, quarantined.",
        ),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            metavar="N",
            help=f"Show at most N tickets (default {TICKETS_LIMIT}; with --json: every one).",
        ),
    ] = None,
    show_all: Annotated[bool, typer.Option("--all", help="Show every ticket.")] = False,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print every ticket's record (oldest first) as one JSON list."),
    ] = False,
) -> None:
    """List tickets, most pressing first (with --json: every ticket's record, oldest first)."""
    status = listed(status) or None
    if limit is not None and limit < 1:
        fail(f"--limit must be 1 or more tickets, got {limit}; --all shows every ticket")
    if limit is not None and show_all:
        fail(f"--limit {limit} and --all contradict each other; give one of them")
    try:
        check_statuses(status)
    except UsageError as exc:  # named by the flag it came from
        fail(f"--status: {exc}")
    with reported(ExecutorError):
        queue = _open_existing(db)
        try:
            wanted = tuple(status) if status else None
            if as_json:
                _write_json_list(queue.iter_tickets(status=wanted, limit=limit))
            else:
                _print_tickets(queue, wanted, None if show_all else limit or TICKETS_LIMIT)
        finally:
            queue.close()


def _write_json_list(tickets: Generator[Ticket, None, None]) -> None:
    """The tickets as one JSON list (the layout of ``json.dumps(..., indent=2)``), written one
    record at a time as the queue streams them: never the whole queue in memory."""
    try:
        with whole_output():  # Ctrl-C ends the command once the list is whole
            opened = "\n  "
            write_all("[")
            for t in tickets:
                write_all(opened + json.dumps(t.to_json(), indent=2).replace("\n", "\n  "))
                opened = ",\n  "
            write_all("]\n" if opened == "\n  " else "\n]\n")
    except BrokenPipeError:  # the reader went away (`| head`): quietly, as the tables do
        silence_stdout()
        raise typer.Exit(BROKEN_PIPE) from None
    finally:
        tickets.close()  # stopped early (a closed pipe): the read transaction ends here


def _print_tickets(queue: Queue, wanted: tuple[str, ...] | None, limit: int | None) -> None:
    """The table, most pressing first, at most ``limit`` rows, then how many were left out."""
    tickets = queue.iter_tickets(status=wanted, pressing_first=True, limit=limit)
    try:
        counts = queue.count_tickets()
        total = sum(n for s, n in counts.items() if wanted is None or s in wanted)
        title = plural(total, "ticket", shown=f"{total:,}")
        if limit is not None and total > limit:  # what the rows left out hold, by status
            held = [s for s in PRESSING_ORDER if counts.get(s) and (wanted is None or s in wanted)]
            title += " (" + ", ".join(f"{counts[s]:,} {s}" for s in held) + ")"
        out = console()
        rows = (_ticket_row(t) for t in tickets)
        printed = print_pages(
            out,
            title,
            rows,
            ("id", "status", "title", "epoch", "owner", "run", "reason"),
            free=("title", "owner", "reason"),  # ids are pasted into other commands: whole
            optional=("epoch", "owner"),
            right=("epoch",),
        )
    finally:
        tickets.close()
    if printed < total:
        out.print(f"… and {total - printed:,} more (--limit/--all)", soft_wrap=True)


def _ticket_row(t: Ticket) -> dict[str, str]:
    return {
        "id": t.id,
        "status": t.status,
        "title": t.title,
        "epoch": str(t.lease_epoch),
        "owner": t.lease_owner or "",
        "run": t.run_id or "",
        "reason": " ".join((t.reason or "").split()),
    }


def main() -> None:
    """Entry point of ``python -m executor``."""
    app()
