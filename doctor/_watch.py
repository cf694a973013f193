"""``doctor watch``: scan again and again, alert once on what is new, say when it clears.

Each pass is a :func:`doctor.scan` (incremental with a cache directory: finished runs that did
not change are not read again). The findings at ``warning`` or above are *alertable*, keyed by
``(run_id, scope, code)``; a fleet-wide finding has ``run_id`` ``None``. A queue finding
about one ticket (``evidence["ticket_id"]``) is keyed by its ticket too, so two desynced
sessions are two alerts. A key seen for the first time is an ``alert`` event; a key alerted
before and absent now is a ``resolved`` event. A key that persists is never sent again,
whatever its severity or summary become.

``idle_gap`` findings whose stretch has ended (``evidence["ongoing"]`` false) are history, not
alertable: the watch reports idleness while it lasts. The fleet's ongoing ``idle_gap`` (no run
progressed, and with a queue no ticket was claimed or finished while tickets waited, for longer
than ``DoctorConfig.idle_gap_s``) is the *idle watchdog*.

What was alerted lives in a :class:`WatchState` file (``rundoctor.watch-state/1``, written
atomically after every pass), so a restarted watch sends nothing again. The state holds only
the alerts still open, so it (and the watch's memory) is bounded by the findings of one scan.
"""

from __future__ import annotations

import errno
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from doctor._atomic import write_atomic
from doctor._config import DoctorConfig
from doctor._diagnose import ScanResult, scan
from doctor._errors import DoctorError, UsageError
from doctor._model import Finding, Severity, plural
from doctor._notify import Delivery
from doctor._timestamps import iso
from doctor._watch_send import send_pass
from rundoctor import durations
from rundoctor.atomic import check_replaceable
from rundoctor.paths import make_dirs, read_regular_text

__all__ = [
    "WATCH_STATE_SCHEMA",
    "PassReport",
    "WatchConfig",
    "WatchEvent",
    "WatchState",
    "alertable",
    "parse_duration",
    "watch",
    "watch_pass",
]

WATCH_STATE_SCHEMA = "rundoctor.watch-state/1"
#: The largest state file read (256 MiB, some 400,000 open alerts): a larger file is no state
#: a watch saved, and was read whole, twice its size in memory, before being refused.
MAX_STATE_BYTES = 256 * 1024 * 1024
Key = tuple[str | None, str, str, str | None]


def parse_duration(text: str, option: str = "--interval") -> float:
    """The value of ``option`` as seconds, more than zero (:mod:`rundoctor.durations`).

    >>> parse_duration("2h"), parse_duration("90"), parse_duration("1h30m")
    (7200.0, 90.0, 5400.0)
    >>> parse_duration("soon", "--idle-gap")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    doctor._errors.UsageError: --idle-gap: 'soon' is not a duration; write e.g. 90, 250ms, ...
    """
    try:
        seconds = durations.parse_duration(text)
    except durations.DurationError as exc:
        raise UsageError(f"{option}: {exc}") from None
    if seconds <= 0:
        raise UsageError(f"{option} {text!r} must be more than zero, e.g. 60s, 15m or 1h30m")
    return seconds


@dataclass(frozen=True, slots=True)
class WatchConfig:
    """How a watch runs and where its events go (the scan's own settings are a DoctorConfig)."""

    state_path: Path
    interval_s: float = 60.0
    webhooks: tuple[str, ...] = ()
    exec_argv: tuple[str, ...] = ()
    #: A failed webhook POST is tried again this many times, after backoff_s, 2x, 4x...
    retries: int = 3
    backoff_s: float = 1.0
    timeout_s: float = 10.0
    #: Events of a pass sent one by one to the webhooks and command; the rest are one
    #: ``alerts_held`` alert (:mod:`doctor._watch_send`); 0: no bound. stdout has them all.
    max_sends: int = 20


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One ``alert`` or ``resolved`` event, as printed, posted and piped (``to_json``)."""

    event: str
    run_id: str | None
    scope: str
    code: str
    severity: str
    summary: str
    first_seen: str
    at: str
    #: The ticket a queue finding is about (``None`` for run findings).
    ticket_id: str | None = None

    @property
    def key(self) -> Key:
        return (self.run_id, self.scope, self.code, self.ticket_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "run_id": self.run_id,
            "scope": self.scope,
            "code": self.code,
            "severity": self.severity,
            "summary": self.summary,
            "first_seen": self.first_seen,
            "at": self.at,
            "ticket_id": self.ticket_id,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WatchEvent:
        return cls(
            **{f.name: data[f.name] for f in fields(cls) if f.name != "ticket_id"},
            ticket_id=data.get("ticket_id"),
        )


@dataclass(frozen=True, slots=True)
class WatchState:
    """The alerts still open (by key), and how many passes the watch has made."""

    active: dict[Key, WatchEvent] = field(default_factory=dict)
    passes: int = 0
    last_pass_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": WATCH_STATE_SCHEMA,
            "passes": self.passes,
            "last_pass_at": self.last_pass_at,
            "active": [e.to_json() for e in self.active.values()],
        }

    @classmethod
    def load(cls, path: Path) -> WatchState:
        """The state in ``path``; an empty state when the file does not exist yet.

        >>> WatchState.load(Path("/nonexistent/watch.json")).passes
        0
        """
        try:  # never Path.read_text: a FIFO named as the state would hang the watch
            data = json.loads(read_regular_text(path, max_bytes=MAX_STATE_BYTES))
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError, RecursionError) as exc:
            why: object = exc
            if isinstance(exc, RecursionError):
                why = "JSON nested too deeply"
            elif isinstance(exc, OSError) and exc.errno == errno.EFBIG:
                why = "larger than 256 MiB, which no watch's open alerts come to"
            elif isinstance(exc, OSError):  # "Not a directory", not "[Errno 20] …: 'PATH'"
                why = exc.strerror or exc
            raise UsageError(
                f"--state {str(path)!r} cannot be read ({why}); move it aside or pass another "
                "--state FILE"
            ) from exc
        if not isinstance(data, dict) or data.get("schema") != WATCH_STATE_SCHEMA:
            raise UsageError(
                f"--state {str(path)!r} is not a watch state ({WATCH_STATE_SCHEMA}); pass "
                "another --state FILE"
            )
        problem = _state_problem(data)
        if problem is not None:
            raise UsageError(
                f"--state {str(path)!r} is damaged ({problem}); move it aside to start over"
            )
        events = [WatchEvent.from_json(e) for e in data["active"]]
        return cls({e.key: e for e in events}, data["passes"], data["last_pass_at"])

    def save(self, path: Path) -> None:
        write_atomic(path, json.dumps(self.to_json(), indent=2) + "\n")


def _shown(value: object) -> str:
    """``value`` as the state file spells it, or its JSON type when that would be long.

    >>> _shown(-1), _shown(1.5), _shown("7"), _shown([1, 2]), _shown(True)
    ('-1', '1.5', '"7"', 'a list', 'true')
    """
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float | str) and len(text := json.dumps(value)) <= 40:
        return text
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return "a long string" if isinstance(value, str) else "a number too long to show"


_EVENT_TEXT = ("scope", "code", "summary", "first_seen", "at")


def _event_problem(where: str, event: object) -> str | None:
    """Why ``event`` (at ``where`` in the file) is no open alert a watch could have saved.

    >>> _event_problem("active[0]", {"event": "alert", "severity": "error"})
    'active[0] has no scope'
    """
    if not isinstance(event, dict):
        return f"{where} is {_shown(event)}, not an object"
    if event.get("event") != "alert":
        kind = _shown(event.get("event"))
        return f'{where}.event is {kind}, not "alert" (only open alerts are kept)'
    for name in (*_EVENT_TEXT, "severity", "run_id"):  # older states have no ticket_id
        if name not in event:
            return f"{where} has no {name}"
    for name in _EVENT_TEXT:
        if not isinstance(event[name], str):
            return f"{where}.{name} is {_shown(event[name])}, not a string"
    for name in ("run_id", "ticket_id"):
        if not isinstance(event.get(name), str | None):
            return f"{where}.{name} is {_shown(event[name])}, not a string or null"
    labels = [s.label for s in Severity if s >= Severity.WARNING]
    if event["severity"] not in labels:
        return f"{where}.severity is {_shown(event['severity'])}, not {', '.join(labels)}"
    return None


def _state_problem(data: dict[str, Any]) -> str | None:
    """Why ``data`` (a watch state's JSON, its schema checked) is no state a watch could have
    written, or None: a count of passes that is negative, fractional, a string or a boolean
    was taken before, and then counted on from.

    >>> _state_problem({"passes": -1, "last_pass_at": None, "active": []})
    'passes is -1, not a whole number of passes, 0 or more'
    >>> _state_problem({"passes": 3, "last_pass_at": None, "active": [{"event": "resolved"}]})
    'active[0].event is "resolved", not "alert" (only open alerts are kept)'
    """
    missing = [k for k in ("passes", "last_pass_at", "active") if k not in data]
    if missing:
        return f"missing {', '.join(repr(k) for k in missing)}"
    passes = data["passes"]
    if type(passes) is not int or passes < 0:
        return f"passes is {_shown(passes)}, not a whole number of passes, 0 or more"
    if not isinstance(data["last_pass_at"], str | None):
        return f"last_pass_at is {_shown(data['last_pass_at'])}, not a time or null"
    if not isinstance(data["active"], list):
        return f"active is {_shown(data['active'])}, not a list of alerts"
    for i, event in enumerate(data["active"]):
        why = _event_problem(f"active[{i}]", event)
        if why is not None:
            return why
    return None


def _closed_gap(f: Finding) -> bool:
    return f.code == "idle_gap" and f.evidence.get("ongoing") is False


def _ticket(f: Finding) -> str | None:
    ticket = f.evidence.get("ticket_id") if f.run_id is None else None
    return None if ticket is None else str(ticket)


def alertable(result: ScanResult) -> dict[Key, Finding]:
    """The scan's findings at ``warning`` or above, one per key (the worst), closed idle gaps
    left out.

    >>> from doctor import Diagnosis, Finding, ScanResult, Severity
    >>> f = Finding("stale_heartbeat", Severity.WARNING, "s", {}, run_id="r1")
    >>> d = Diagnosis("r1", "/r1", "kilroy", "stalled", {}, (f, f))
    >>> list(alertable(ScanResult((), (d,), {})))
    [('r1', '', 'stale_heartbeat', None)]
    """
    out: dict[Key, Finding] = {}
    everything: Iterable[Finding] = [f for d in result.diagnoses for f in d.findings]
    for f in [*everything, *result.findings]:
        if f.severity < Severity.WARNING or _closed_gap(f):
            continue
        key = (f.run_id, f.scope, f.code, _ticket(f))
        if key not in out or f.severity > out[key].severity:
            out[key] = f
    return out


def watch_pass(config: DoctorConfig, state: WatchState) -> tuple[WatchState, list[WatchEvent]]:
    """One pass at ``config.now``: the next state and the events to send (alerts first).

    >>> import tempfile
    >>> cfg = DoctorConfig(roots=(Path(tempfile.mkdtemp()),))
    >>> state, events = watch_pass(cfg, WatchState())
    >>> state.passes, events
    (1, [])
    """
    state, events, _ = _pass(config, state)
    return state, events


def _pass(
    config: DoctorConfig, state: WatchState
) -> tuple[WatchState, list[WatchEvent], tuple[str, ...]]:
    """:func:`watch_pass`, and what the scan said of the roots (``fleet.root_notes``) and of
    the queue's clock (``fleet.queue_notes``), each prefixed with what it is about."""
    result = scan(config)
    now = iso(int(config.now * 1e9))
    assert now is not None
    current = alertable(result)
    events: list[WatchEvent] = []
    active = dict(state.active)
    for key, f in current.items():
        if key not in active:
            event = WatchEvent(
                "alert", f.run_id, f.scope, f.code, f.severity.label, f.summary, now, now, key[3]
            )
            active[key] = event
            events.append(event)
    for key in [k for k in active if k not in current]:
        events.append(replace(active.pop(key), event="resolved", at=now))
    notes = tuple(f"roots: {n}" for n in result.fleet.get("root_notes", ())) + tuple(
        f"queue clock: {n}" for n in result.fleet.get("queue_notes", ())
    )
    return WatchState(active, state.passes + 1, now), events, notes


#: The watch's own code (never a finding's) for a pass whose scan failed.
SCAN_FAILED = "scan_failed"


def _blind(state: WatchState, error: str, now_s: float) -> tuple[WatchState, list[WatchEvent]]:
    """The state after a pass whose scan failed with ``error``, and its events: a
    :data:`SCAN_FAILED` alert for the fleet unless one is open (the next pass whose scan
    succeeds resolves it, as a finding that cleared). Every other alert stays open as it
    was: nothing was learnt of them.

    >>> state, events = _blind(WatchState(), "cannot read queue 'q.db'", 0.0)
    >>> [(e.event, e.code, e.severity, e.run_id) for e in events], state.passes
    ([('alert', 'scan_failed', 'error', None)], 1)
    >>> _blind(state, "again", 60.0)[1]
    []
    """
    now = iso(int(now_s * 1e9))
    assert now is not None
    key: Key = (None, "", SCAN_FAILED, None)
    active, events = dict(state.active), []
    if key not in active:
        summary = (
            f"The watch cannot scan, so it sees nothing: {error}; "
            "nothing is watched until a scan succeeds"
        )
        event = WatchEvent("alert", None, "", SCAN_FAILED, "error", summary, now, now)
        active[key] = event
        events.append(event)
    return WatchState(active, state.passes + 1, now), events


def _unmeasured(notes: tuple[str, ...]) -> tuple[str, ...]:
    """``notes`` without what differs at every reading of a clock (an offset's uncertainty,
    the time read): what the watch compares with the last pass's to decide whether to log
    them again.

    >>> _unmeasured(("clock: 60 s ahead (±0.0004 s): judged at (2026-12-06T21:07:09.52Z); …",))
    ('clock: 60 s ahead: judged at; …',)
    """
    return tuple(re.sub(r" \((±|\d{4}-\d\d-\d\dT)[^)]*\)", "", n) for n in notes)


@dataclass(frozen=True, slots=True)
class PassReport:
    """What one pass did: its events, failed deliveries, or the error that stopped it; and,
    when its state could not be saved, why (``state_error``) and how many alerts and
    resolutions were sent since the state was last saved (``unsaved``, ``unsaved_alerts``):
    a watch started again on that state sends them again."""

    passes: int
    events: tuple[WatchEvent, ...] = ()
    failures: tuple[Delivery, ...] = ()
    error: str | None = None
    state_error: str | None = None
    unsaved: int = 0
    unsaved_alerts: int = 0

    @property
    def alerts(self) -> int:
        return sum(1 for e in self.events if e.event == "alert")

    def log_line(self) -> str | None:
        """The pass's one stderr line, or None when there is nothing to say.

        A target that failed alike for many events is said once, with how many:

        >>> PassReport(3, failures=(Delivery("http://h/…", False, 4, "HTTP 500"),)).log_line()
        'watch pass 3: 0 alerts, 0 resolved; http://h/… failed after 4 tries: HTTP 500'
        >>> PassReport(1, failures=(Delivery("/bin/x", False, 1, "gone"),) * 41).log_line()
        'watch pass 1: 0 alerts, 0 resolved; /bin/x failed for 41 events, after 1 try each: gone'

        A webhook not tried again in the pass (:func:`doctor._watch_send.send_pass`):

        >>> PassReport(2, failures=(Delivery("http://h/…", False, 4, "timed out"),)
        ...            + (Delivery("http://h/…", False, 0, "not tried"),) * 9).log_line()
        'watch pass 2: 0 alerts, 0 resolved; http://h/… failed after 4 tries: timed out; 9 more \
events not sent to http://h/…, which had failed'

        A state that could not be saved is said on the same line, every pass it is not:

        >>> PassReport(5, state_error="No space left on device", unsaved=2).log_line()
        'watch pass 5: 0 alerts, 0 resolved; state not saved (No space left on device): 2 events \
sent since it was last saved would be sent again by a watch started again'
        """
        if self.error is not None:
            line = f"watch pass {self.passes}: scan failed: {self.error}"
        elif self.events or self.failures or self.state_error is not None:
            line = f"watch pass {self.passes}: {plural(self.alerts, 'alert')}, "
            line += f"{len(self.events) - self.alerts} resolved"
        else:
            return None
        alike = Counter((d.target, d.tries, d.error) for d in self.failures if d.tries)
        untried = Counter(d.target for d in self.failures if not d.tries)
        for (target, tries, error), n in alike.items():
            if n == 1:
                line += f"; {target} failed after {plural(tries, 'try', 'tries')}: {error}"
            else:
                line += (
                    f"; {target} failed for {n:,} events, after "
                    f"{plural(tries, 'try', 'tries')} each: {error}"
                )
        for target, n in untried.items():
            line += f"; {plural(n, 'more event')} not sent to {target}, which had failed"
        if self.state_error is not None:
            line += f"; state not saved ({self.state_error})"
            if self.unsaved:
                line += (
                    f": {plural(self.unsaved, 'event')} sent since it was last saved would be "
                    "sent again by a watch started again"
                )
        return line

    def unsaved_line(self, state_path: Path) -> str | None:
        """The one line a watch ends with when its last pass could not save the state, or
        None when it could.

        >>> PassReport(1, state_error="No space left on device", unsaved=3, unsaved_alerts=2
        ...            ).unsaved_line(Path("w.json"))
        "watch sent 2 alerts, 1 resolved, but could not save its state to 'w.json' (No space \
left on device): a watch started again on it sends them again; free space there or pass \
another --state FILE"
        """
        if self.state_error is None:
            return None
        where = f"its state to {str(state_path)!r} ({self.state_error})"
        if not self.unsaved:
            return f"watch could not save {where}; free space there or pass another --state FILE"
        return (
            f"watch sent {plural(self.unsaved_alerts, 'alert')}, "
            f"{self.unsaved - self.unsaved_alerts} resolved, but could not save {where}: a "
            "watch started again on it sends them again; free space there or pass another "
            "--state FILE"
        )


def _check_state(path: Path) -> None:
    """Refuse, before the first pass, a state that could never be saved (its directory
    read-only, not this user's, or not to be made): the first pass would send its alerts, and
    every watch started again would send them again. A full disk is not refused: it may have
    room by the end of the pass, and is said after each pass it has none
    (:meth:`PassReport.log_line`).

    >>> _check_state(Path("/proc/1/state.json"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    doctor._errors.UsageError: --state '/proc/1/state.json' cannot be written (...); no pass ...
    """
    try:
        make_dirs(path.parent)
        check_replaceable(path)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return
        raise UsageError(
            f"--state {str(path)!r} cannot be written ({exc.strerror or exc}); no pass was made "
            "and no alert sent, since none could be remembered: pass a writable --state FILE"
        ) from exc


def _sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return False


def watch(
    config: DoctorConfig,
    wcfg: WatchConfig,
    *,
    emit: Callable[[WatchEvent], None],
    log: Callable[[str], None],
    once: bool = False,
    stop: Callable[[float], bool] | None = None,
) -> PassReport:
    """Watch until ``stop(interval)`` returns true (it waits: default a plain sleep; an
    event's ``wait`` lets a signal handler end it), or for one pass with ``once``. Returns
    the last pass's report.

    Each pass scans at the current time, hands each event to ``emit`` (stdout) and the
    webhooks and command, saves the state, and logs at most one line, after what the scan
    says of the roots (runs it could not look into, ``fleet.root_notes``) and of the queue's
    clock (this host's off from a PostgreSQL server's, ``fleet.queue_notes``) when that changed.
    A pass whose scan fails (a root gone, a queue down) is logged, alerted once as
    :data:`SCAN_FAILED` (resolved by the next pass whose scan succeeds), and the watch goes
    on, except with ``once``. A state that cannot be saved (a full disk) is said on the pass's
    line and the watch goes on, its memory of what it sent intact; the report returned says
    so (:meth:`PassReport.unsaved_line`) when the last pass's save failed.

    >>> import tempfile
    >>> from pathlib import Path
    >>> from doctor import DoctorConfig, WatchConfig
    >>> wcfg = WatchConfig(state_path=Path(tempfile.mkdtemp()) / "state.json")
    >>> events = []
    >>> report = watch(DoctorConfig(roots=(Path(tempfile.mkdtemp()),)), wcfg, emit=events.append,
    ...                log=print, once=True)
    >>> events
    []
    """
    state = WatchState.load(wcfg.state_path)
    _check_state(wcfg.state_path)
    said: tuple[str, ...] = ()  # the notes last logged: logged again when they change
    unsaved = unsaved_alerts = 0  # sent since the state was last saved
    while True:
        error: str | None = None
        pass_config = config.at_host_clock()
        try:
            state, events, notes = _pass(pass_config, state)
        except DoctorError as exc:
            # The watch is blind: said once, as an alert (the other alerts stay as they were).
            error, notes = str(exc), said
            state, events = _blind(state, error, pass_config.now)
        for event in events:
            emit(event)
        failures = send_pass(events, wcfg)
        report = PassReport(state.passes, tuple(events), tuple(failures), error)
        unsaved, unsaved_alerts = unsaved + len(events), unsaved_alerts + report.alerts
        try:
            state.save(wcfg.state_path)
            unsaved = unsaved_alerts = 0
        except UsageError as exc:
            # A full disk under the state: what was sent is not lost from this watch's memory
            # (it goes on, and tries again next pass), but a watch started again on the old
            # state sends it again; the pass's line and the watch's end say so.
            cause = exc.__cause__
            why = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(exc)
            report = replace(
                report, state_error=why, unsaved=unsaved, unsaved_alerts=unsaved_alerts
            )
        if _unmeasured(notes) != said:
            for note in notes:
                log(f"watch pass {state.passes}: {note}")
        said = _unmeasured(notes)
        # One pass: the caller ends on the report's unsaved_line, not on two lines saying it.
        line = (replace(report, state_error=None) if once else report).log_line()
        if line:
            log(line)
        if once or (stop or _sleep)(wcfg.interval_s):
            return report
