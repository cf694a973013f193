"""``doctor watch`` and ``doctor metrics``: thin commands over :mod:`doctor._watch` and
:mod:`doctor._metrics`, mounted on the ``doctor`` app by :mod:`doctor._cli`.

``watch`` exit codes: with ``--once``, 0 when the pass sent no new alert, 1 when it did, 2 on
a usage or input error (or a scan that failed); without ``--once`` it runs until SIGTERM
(exit 0) or Ctrl-C (``error: interrupted``, 130, as every command), 2 for a bad option or a
``--state`` that could never be saved (refused before the first pass).
Either way, a last pass whose state could not be saved ends in one line: exit 74 when alerts
or resolutions were sent since the state was last saved (a watch started again sends them
again), 2 when none were.
``metrics`` exits 0, or 2 on a usage or input error.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import shlex
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from doctor._atomic import write_atomic
from doctor._cli import DbOpt, JsonOpt, RootOpt
from doctor._config import DoctorConfig
from doctor._errors import DoctorError, UsageError
from doctor._metrics import fleet_metrics
from doctor._notify import check_webhook, slack_text
from doctor._watch import WatchConfig, WatchEvent, parse_duration, watch
from executor.console import fail, reported, scan_progress
from rundoctor.errors import INTERRUPTED, OUTPUT_LOST, write_whole
from rundoctor.paths import NoHomeError, expand_user, make_dirs, state_home

__all__ = ["app", "default_state_path"]

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


def _config(
    root: list[Path] | None, *, fallback: dict[str, Any] | None = None, **overrides: Any
) -> DoctorConfig:
    from doctor._cli import config_from_env  # the one place that reads the environment

    return config_from_env(root, fallback=fallback, **overrides)


def default_state_path(config: DoctorConfig) -> Path:
    """``$XDG_STATE_HOME/rundoctor/watch/<digest>.json``: one state per set of roots and
    queue, so two watches over different fleets never share one.

    >>> default_state_path(DoctorConfig(roots=(Path("/runs"),))).parent.name
    'watch'
    """
    what = json.dumps([sorted(_resolved(r) for r in config.roots), config.db or ""])
    digest = hashlib.sha256(what.encode()).hexdigest()[:16]
    return state_home() / "rundoctor" / "watch" / f"{digest}.json"


def _without_unusable_default(
    make: Callable[..., DoctorConfig], root: list[Path] | None, **overrides: Any
) -> DoctorConfig:
    """``make(root, fallback=…, **overrides)`` with the watch's default cache,
    ``$XDG_STATE_HOME/rundoctor/cache``, left off (said once on stderr) when it cannot be
    created or written, or there is no home to put it in. A ``RUNDOCTOR_CACHE`` or
    ``cache_dir`` that cannot be used is the user's mistake (one line, exit 2); the default
    under a read-only home, or with no home at all, is not: the watch then reads every run
    whole each pass, as ``scan`` does without a cache (it ended with exit 2, or 70 with no
    home, before its first pass).
    """
    try:
        path = state_home() / "rundoctor" / "cache"
    except NoHomeError as exc:
        config = make(root, **overrides)
        if config.cache_dir is None:
            _log(f"watch: no scan cache: {exc}")
        return config
    config = make(root, fallback={"cache_dir": path}, **overrides)
    if config.cache_dir != path or os.environ.get("RUNDOCTOR_CACHE"):
        return config
    try:
        for sub in ("runs", "events"):
            make_dirs(path / sub)
            if not os.access(path / sub, os.W_OK | os.X_OK):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path / sub))
    except OSError as exc:
        _log(
            f"watch: no scan cache: the default {str(path)!r} cannot be used "
            f"({exc.strerror or exc}); each pass reads every run whole (set RUNDOCTOR_CACHE "
            "to a writable directory to read only what changed)"
        )
        return dataclasses.replace(config, cache_dir=None)
    return config


def _resolved(root: Path) -> str:
    """``root`` resolved, or as an absolute path when it cannot be (a symlink loop: the scan
    then refuses it in one line; ``Path.resolve`` raised RuntimeError, exit 70)."""
    try:
        return str(root.resolve())
    except (OSError, RuntimeError):
        return os.path.abspath(root)


def _printer(as_json: bool) -> Any:
    def emit(event: WatchEvent) -> None:
        data = event.to_json()
        line = json.dumps(data) if as_json else f"{event.at} {slack_text(data)}"
        write_whole(line + "\n")

    return emit


def _log(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


@app.command("watch")
def watch_cmd(
    root: RootOpt = None,
    db: DbOpt = None,
    interval: Annotated[
        str,
        typer.Option("--interval", metavar="DURATION", help="Time between passes: 60s, 5m, 1h."),
    ] = "60s",
    idle_gap: Annotated[
        str | None,
        typer.Option(
            "--idle-gap",
            metavar="DURATION",
            help="Alert when nothing progressed for this long (idle_gap).  [default: 2h]",
        ),
    ] = None,
    webhook: Annotated[
        list[str] | None,
        typer.Option(
            "--webhook",
            metavar="URL",
            help="POST each event as JSON (with a Slack `text`) here (repeatable).",
        ),
    ] = None,
    exec_cmd: Annotated[
        str | None,
        typer.Option(
            "--exec",
            metavar="CMD",
            help="Run this command per event, the event's JSON on stdin.",
        ),
    ] = None,
    max_sends: Annotated[
        int,
        typer.Option(
            "--max-sends",
            metavar="N",
            min=0,
            help="Events a pass sends one by one to the webhooks and --exec; the rest are one "
            "alerts_held alert (stdout has every event). 0: no limit.",
        ),
    ] = 20,
    state: Annotated[
        Path | None,
        typer.Option(
            "--state",
            metavar="FILE",
            help="What was alerted, kept across restarts. Default: "
            "$XDG_STATE_HOME/rundoctor/watch/<roots digest>.json.",
        ),
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="One pass; exit 0 (nothing new), 1 (alerts) or 2.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per event on stdout.")
    ] = False,
) -> None:
    """Scan every --interval; alert once per new finding (warning or above), say when it clears."""
    stopped = threading.Event()
    with reported(DoctorError):
        gap = None if idle_gap is None else parse_duration(idle_gap, "--idle-gap")
        # Passes are incremental by default (the environment or the config file may say where).
        config = _without_unusable_default(_config, root, db=db, idle_gap_s=gap)
        try:
            argv = tuple(shlex.split(exec_cmd)) if exec_cmd is not None else ()
        except ValueError as exc:  # "No closing quotation"
            raise UsageError(
                f"--exec {exec_cmd!r} cannot be split into words ({exc}); quote it as a shell would"
            ) from None
        if exec_cmd is not None and not argv:
            raise UsageError("--exec needs a command, e.g. --exec 'notify-send doctor'")
        wcfg = WatchConfig(
            state_path=expand_user(state) if state is not None else default_state_path(config),
            interval_s=parse_duration(interval, "--interval"),
            webhooks=tuple(check_webhook(u) for u in webhook or ()),
            exec_argv=argv,
            max_sends=max_sends,
        )
        signals: list[int] = []

        def on_signal(signum: int, _frame: object) -> None:
            signals.append(signum)
            stopped.set()

        if not once:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, on_signal)
        report = watch(
            config,
            wcfg,
            emit=_printer(as_json),
            log=_log,
            once=once,
            stop=stopped.wait,
        )
    if signal.SIGINT in signals:  # Ctrl-C: as for every command (the state was saved)
        fail("interrupted", INTERRUPTED)
    lost = report.unsaved_line(wcfg.state_path)
    if lost is not None:  # sent, but not remembered: 74 (done, output lost); nothing sent: 2
        fail(lost, OUTPUT_LOST if report.unsaved else 2)
    if not once:
        raise typer.Exit(0)
    raise typer.Exit(2 if report.error is not None else 1 if report.alerts else 0)


@app.command("metrics")
def metrics_cmd(
    root: RootOpt = None,
    db: DbOpt = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", metavar="FILE", help="Write atomically to FILE (node_exporter's textfile dir)."
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """The fleet as OpenMetrics text: runs by state, findings, idleness, and the queue."""
    with reported(DoctorError):
        config = _config(root, db=db)
        with scan_progress(not json_out and sys.stderr.isatty()) as progress:
            text = fleet_metrics(config, as_json=json_out, progress=progress)
        if out is not None:
            write_atomic(expand_user(out), text)
    if out is None:
        write_whole(text)
    raise typer.Exit(0)
