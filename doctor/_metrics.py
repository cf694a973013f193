"""``doctor metrics``: the fleet as OpenMetrics text, for Prometheus or node_exporter.

Every figure comes from one :func:`doctor.scan` (and, with a queue, one read of its tables), so
the numbers are the scan's: ``rundoctor_runs{state}`` is ``fleet.by_state`` of
``doctor scan --json`` (every state present, zeros included), ``rundoctor_findings{code,
severity}`` counts the findings of every run plus the fleet's. Labels are bounded: run states,
finding codes, severities and ticket statuses are closed sets; no metric has a per-run label.

With a queue (``--db``), the metrics incident 01 asks to track: tickets by status, tickets that
moved to ``done`` in the last day, the median time from claim (in progress) to done, reclaims
and quarantines (``reclaimed`` and ``quarantined`` ticket events, as counters), and
``rundoctor_fleet_idle_seconds``: how long since anything progressed (a run's progress event,
or a ticket claimed, completed or failed).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from doctor._config import DoctorConfig
from doctor._detectors._queue import PROGRESS_EVENTS
from doctor._diagnose import ScanResult, scan
from doctor._model import RUN_STATES
from doctor._queue_ingest import load_queue
from doctor._tables import Tables, new_connection
from doctor._timestamps import parse_iso
from rundoctor.clock import Clock

__all__ = [
    "METRICS_SCHEMA",
    "TICKET_STATUSES",
    "QueueStats",
    "fleet_metrics",
    "idle_last_day",
    "metrics_document",
    "queue_stats",
    "render_metrics",
]

#: The ``schema`` of ``doctor metrics --json`` (:func:`metrics_document`).
METRICS_SCHEMA = "rundoctor.metrics/1"

#: The executor's ticket statuses (every one is reported, zeros included).
TICKET_STATUSES = (
    "todo",
    "blocked",
    "claimed",
    "running",
    "done",
    "failed",
    "canceled",
    "quarantined",
)
_DAY_S = 86400.0


@dataclass(frozen=True, slots=True)
class QueueStats:
    """The queue's figures for the metrics (times in epoch seconds, this host's clock)."""

    by_status: dict[str, int]
    done_last_day: int
    claim_to_done_median_s: float | None
    reclaims: int
    quarantines: int
    last_progress_s: float | None


_STATS_SQL = f"""
SELECT
    (SELECT count(*) FROM tickets WHERE status = 'done'
        AND coalesce(finished_at, updated_at) >= $since),
    (SELECT list(finished_at - claimed_at) FROM tickets WHERE status = 'done'
        AND finished_at IS NOT NULL AND claimed_at IS NOT NULL),
    (SELECT count(*) FROM ticket_events WHERE event = 'reclaimed'),
    (SELECT count(*) FROM ticket_events WHERE event = 'quarantined'),
    (SELECT max("at") FROM ticket_events WHERE event IN {PROGRESS_EVENTS} AND "at" <= $now)
"""


def queue_stats(url: str, *, now: float, clock: Clock | None = None) -> QueueStats:
    """Read the queue at ``url`` (SQLite file or PostgreSQL URL) and sum it up at ``now``.

    With ``clock`` (this host's, ``now`` not pinned) a PostgreSQL queue is summed up at the
    server's time read with its rows, the clock its times were stamped in (docs/queue.md,
    "Time: one clock per queue"), and ``last_progress_s`` is moved into this host's clock by
    the offset measured then, so that it compares with the runs' and with ``now``.
    """
    tables = Tables(new_connection())
    try:
        server = load_queue(tables, url, clock or time.time)
        at, offset = (now, 0.0)
        if clock is not None and server is not None:
            at, offset = server[0], server[1].offset_s
        by_status = dict.fromkeys(TICKET_STATUSES, 0)
        for status, count in tables.sql("SELECT status, count(*) FROM tickets GROUP BY ALL"):
            by_status[str(status)] = int(count)
        done, spans, reclaims, quarantines, last = tables.sql(
            _STATS_SQL, since=at - _DAY_S, now=at
        )[0]
    finally:
        tables.con.close()
    spans = [float(s) for s in spans or [] if s is not None and s >= 0]
    return QueueStats(
        by_status=by_status,
        done_last_day=int(done),
        claim_to_done_median_s=statistics.median(spans) if spans else None,
        reclaims=int(reclaims),
        quarantines=int(quarantines),
        last_progress_s=None if last is None else float(last) - offset,
    )


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> int | float:
    """A sample's value as written: an integer when it is one (``3``, not ``3.0``)."""
    return int(value) if float(value).is_integer() else float(value)


class _Writer:
    """The metric families, as OpenMetrics lines and as JSON objects (one walk, two forms)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.families: list[dict[str, Any]] = []

    def family(
        self,
        name: str,
        kind: str,
        help_text: str,
        samples: Iterable[tuple[dict[str, str], float]],
        unit: str = "",
    ) -> None:
        self.lines.append(f"# TYPE {name} {kind}")
        if unit:
            self.lines.append(f"# UNIT {name} {unit}")
        self.lines.append(f"# HELP {name} {help_text}")
        suffix = "_total" if kind == "counter" else ""
        listed = []
        for labels, value in samples:
            number = _number(value)
            text = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            self.lines.append(
                f"{name}{suffix}{{{text}}} {number!r}" if text else f"{name}{suffix} {number!r}"
            )
            listed.append({"name": name + suffix, "labels": dict(labels), "value": number})
        self.families.append(
            {"name": name, "type": kind, "unit": unit or None, "help": help_text, "samples": listed}
        )


def fleet_last_progress(result: ScanResult, queue: QueueStats | None) -> float | None:
    """The latest progress of any run (or ticket), in epoch seconds; None when none is known.

    >>> from doctor import Diagnosis, ScanResult
    >>> d = Diagnosis("r", "/r", "kilroy", "running", {"last_progress_at": "2026-03-01T10:00:00Z"})
    >>> fleet_last_progress(ScanResult((), (d,), {}), None)
    1772359200.0
    """
    points = [parse_iso(d.facts.get("last_progress_at")) for d in result.diagnoses]
    seconds = [p / 1e9 for p in points if p is not None]
    if queue is not None and queue.last_progress_s is not None:
        seconds.append(queue.last_progress_s)
    return max(seconds, default=None)


def idle_last_day(result: ScanResult, *, now: float) -> float:
    """Seconds of the last 24 hours inside the fleet's idle gaps (``idle_gap`` findings of the
    fleet and the queue; of the run itself when the scan holds one run), overlaps counted once.

    >>> from doctor import Finding, ScanResult, Severity
    >>> gap = Finding("idle_gap", Severity.ERROR, "s", {"start": "2026-03-01T00:00:00Z",
    ...     "end": "2026-03-01T12:00:00Z"})
    >>> idle_last_day(ScanResult((), (), {}, (gap,)), now=1772323200.0 + 30 * 3600)
    21600.0
    """
    gaps = [f for f in result.findings if f.code == "idle_gap"]
    if len(result.diagnoses) == 1:
        gaps += [f for f in result.diagnoses[0].findings if f.code == "idle_gap"]
    spans = []
    for f in gaps:
        a, b = parse_iso(f.evidence.get("start")), parse_iso(f.evidence.get("end"))
        if a is not None and b is not None:
            lo, hi = max(a / 1e9, now - _DAY_S), min(b / 1e9, now)
            if hi > lo:
                spans.append((lo, hi))
    total, reach = 0.0, float("-inf")
    for lo, hi in sorted(spans):
        lo = max(lo, reach)
        if hi > lo:
            total += hi - lo
            reach = hi
    return round(total, 3)


def render_metrics(result: ScanResult, queue: QueueStats | None, *, now: float) -> str:
    """The OpenMetrics exposition of a scan (and a queue's stats), ending with ``# EOF``.

    >>> from doctor import ScanResult
    >>> text = render_metrics(ScanResult((), (), {"by_state": {}}), None, now=0.0)
    >>> 'rundoctor_runs{state="running"} 0' in text.splitlines(), text.endswith("# EOF\\n")
    (True, True)
    """
    w = _written(result, queue, now=now)
    return "\n".join([*w.lines, "# EOF"]) + "\n"


def metrics_document(result: ScanResult, queue: QueueStats | None, *, now: float) -> dict[str, Any]:
    """:func:`render_metrics`'s families as a JSON document (``doctor metrics --json``): each
    family's name, type, unit (None without one), help and samples (the sample's name as the
    text writes it, its labels and its value).

    >>> from doctor import ScanResult
    >>> doc = metrics_document(ScanResult((), (), {"by_state": {}}), None, now=0.0)
    >>> doc["schema"], doc["families"][0]["samples"][0]
    ('rundoctor.metrics/1', {'name': 'rundoctor_runs', 'labels': {'state': 'running'}, 'value': 0})
    """
    w = _written(result, queue, now=now)
    return {"schema": METRICS_SCHEMA, "families": w.families}


def _written(result: ScanResult, queue: QueueStats | None, *, now: float) -> _Writer:
    w = _Writer()
    _run_families(w, result)
    _fleet_families(w, result, queue, now=now)
    if queue is not None:
        _queue_families(w, queue)
    return w


def _run_families(w: _Writer, result: ScanResult) -> None:
    """Runs by state and findings by code and severity."""
    by_state = dict.fromkeys(RUN_STATES, 0)
    for d in result.diagnoses:
        by_state[d.state] = by_state.get(d.state, 0) + 1
    w.family(
        "rundoctor_runs",
        "gauge",
        "Runs under the roots, by state.",
        [({"state": s}, n) for s, n in by_state.items()],
    )
    counts: dict[tuple[str, str], int] = {}
    for f in [*(f for d in result.diagnoses for f in d.findings), *result.findings]:
        key = (f.code, f.severity.label)
        counts[key] = counts.get(key, 0) + 1
    w.family(
        "rundoctor_findings",
        "gauge",
        "Findings of every run and of the fleet, by code and severity.",
        [({"code": c, "severity": s}, n) for (c, s), n in sorted(counts.items())],
    )


def _fleet_families(
    w: _Writer, result: ScanResult, queue: QueueStats | None, *, now: float
) -> None:
    """When the scan ran, the fleet's last progress and its idle time. A queue's progress is
    moved into this host's clock by an offset known to within half a round trip to its
    server: a moment after ``now`` by that estimate is taken as ``now``, as the idle time
    (never negative) already took it."""
    last = fleet_last_progress(result, queue)
    if last is not None:
        last = min(last, now)
    w.family(
        "rundoctor_scan_timestamp_seconds",
        "gauge",
        "When the doctor scanned (epoch seconds).",
        [({}, round(now, 3))],
        unit="seconds",
    )
    w.family(
        "rundoctor_scan_notes",
        "gauge",
        "What the scan says it left out under the roots, and what it could not cache "
        "(doctor scan --json: fleet.root_notes, fleet.cache_notes), by kind.",
        [
            ({"kind": kind}, len(result.fleet.get(f"{kind}_notes") or ()))
            for kind in ("root", "cache")
        ],
    )
    if last is not None:
        w.family(
            "rundoctor_fleet_last_progress_timestamp_seconds",
            "gauge",
            "The latest progress of any run or ticket (epoch seconds).",
            [({}, round(last, 3))],
            unit="seconds",
        )
        w.family(
            "rundoctor_fleet_idle_seconds",
            "gauge",
            "Seconds since any run or ticket progressed.",
            [({}, round(now - last, 3))],
            unit="seconds",
        )
    w.family(
        "rundoctor_fleet_idle_last_day_seconds",
        "gauge",
        "Seconds of the last 24 hours in the fleet's idle gaps (work pending, nothing ran).",
        [({}, idle_last_day(result, now=now))],
        unit="seconds",
    )


def _queue_families(w: _Writer, queue: QueueStats) -> None:
    """The queue's tickets by status, throughput, reclaims and quarantines."""
    w.family(
        "rundoctor_queue_tickets",
        "gauge",
        "Tickets in the queue, by status.",
        [({"status": s}, n) for s, n in queue.by_status.items()],
    )
    w.family(
        "rundoctor_queue_tickets_done_last_day",
        "gauge",
        "Tickets that moved to done in the last 24 hours.",
        [({}, queue.done_last_day)],
    )
    if queue.claim_to_done_median_s is not None:
        w.family(
            "rundoctor_queue_claim_to_done_median_seconds",
            "gauge",
            "Median time from claim (in progress) to done over done tickets.",
            [({}, round(queue.claim_to_done_median_s, 3))],
            unit="seconds",
        )
    w.family(
        "rundoctor_queue_reclaims",
        "counter",
        "Leases the reaper took back (reclaimed ticket events).",
        [({}, queue.reclaims)],
    )
    w.family(
        "rundoctor_queue_quarantines",
        "counter",
        "Tickets quarantined after repeated reclaims.",
        [({}, queue.quarantines)],
    )


def fleet_metrics(
    config: DoctorConfig,
    *,
    as_json: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> str:
    """Scan the roots (and the queue at ``config.db``) and render the metrics at
    ``config.now``: OpenMetrics text, or with ``as_json`` :func:`metrics_document`'s JSON.
    ``progress(done, total)`` is called as the scan goes, as :func:`doctor.scan` does.

    >>> from fixtures.example import example_root
    >>> root = example_root()  # one run, r1: node a's attempt, started and failed
    >>> text = fleet_metrics(DoctorConfig(roots=(root,)))
    >>> [line for line in text.splitlines() if line.startswith('rundoctor_runs{state="orph')]
    ['rundoctor_runs{state="orphaned"} 1']
    """
    result = scan(config, progress=progress)
    clock = None if config.now_pinned else config.clock
    queue = queue_stats(config.db, now=config.now, clock=clock) if config.db else None
    if as_json:
        from doctor._json_out import dumps_indented

        return dumps_indented(metrics_document(result, queue, now=config.now)) + "\n"
    return render_metrics(result, queue, now=config.now)
