"""Phase 3 of a scan: the fleet.

The detectors that look across runs (``idle_gap`` and the queue's, :data:`FLEET_DETECTORS`)
run once per scan over every run's *activity* (first event, last progress, last event,
final.json's time, and its progress points thinned to the first and last of each
half-threshold bucket, which keeps every gap longer than the threshold) and the queue, at the
current clock. A batch records each run's activity (:func:`_activity`), and the cache keeps
it, so a run that was not read is seen through it all the same.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from doctor._config import DoctorConfig
from doctor._detectors import Context
from doctor._detectors._context import QUEUE_CHECKS
from doctor._facts import compute_facts
from doctor._layout import RunLayout, display_name
from doctor._model import Finding
from doctor._tables import HEARTBEAT_SQL
from doctor._timestamps import parse_iso

if TYPE_CHECKING:
    from doctor._queue_ingest import ServerTime
    from doctor._scan_outcome import RunOutcome
    from doctor._tables import Tables

__all__ = ["FLEET_DETECTORS", "fleet_findings", "queue_clock_notes"]


#: Detectors that look across runs or at the queue: run once per scan, in the fleet phase.
FLEET_DETECTORS = ("idle_gap", *QUEUE_CHECKS)


# Per run, the first and last progress point in each bucket of half the threshold: two kept
# points in a row are either in one bucket (closer than the threshold) or were neighbours
# already, so the gaps longer than the threshold are exactly those of all the points.
_BUCKET_SQL = f"""
SELECT run_id, list(DISTINCT t ORDER BY t) FROM (
    SELECT run_id, min(epoch_ns(ts)) AS lo, max(epoch_ns(ts)) AS hi
    FROM events WHERE ts IS NOT NULL AND NOT {HEARTBEAT_SQL} AND run_id IN (SELECT unnest($ids))
    GROUP BY run_id, epoch_ns(ts) // $width
) UNPIVOT (t FOR side IN (lo, hi)) GROUP BY run_id
"""


def _activity(
    tables: Tables, facts: dict[str, Any], config: DoctorConfig, ids: list[str]
) -> dict[str, dict[str, Any]]:
    """Per run, what the fleet phase needs of its events (see the module docstring); its
    first, last progress and last event times are the facts' (``_activity``)."""
    width = max(1, int(config.idle_gap_s * 1e9) // 2)
    points = dict(tables.sql(_BUCKET_SQL, ids=ids, width=width))
    out: dict[str, dict[str, Any]] = {}
    for r in ids:
        final = tables.documents[r].final
        finished = bool(facts[r].get("final_json"))
        first, last_event, last_progress = facts[r]["_activity"]
        out[r] = {
            "first": first,
            "last_progress": last_progress,
            "last_event": last_event,
            "finished": finished,
            "final_ns": parse_iso(final.get("timestamp"))
            if finished and final is not None
            else None,
            "points": [int(t) for t in points.get(r, [])],
        }
    return out


_LEASED_RUNS_SQL = """
SELECT DISTINCT r.run_id FROM tickets t JOIN runs r ON r.run_id = t.run_id OR r.path = t.run_path
WHERE t.status IN {leased}
"""


def _run_rows(
    layouts: Sequence[RunLayout], outcomes: dict[str, RunOutcome]
) -> list[tuple[Any, ...]]:
    return [
        (x.run_id, display_name(str(x.path)), x.layout, outcomes[x.run_id].clock.get("pid"))
        for x in layouts
    ]


def fleet_findings(
    config: DoctorConfig, layouts: Sequence[RunLayout], outcomes: dict[str, RunOutcome]
) -> tuple[list[Finding], list[str]]:
    """Phase 3: the fleet detectors over every run's activity and the queue, at the clock;
    and the notes on the queue's clock (``fleet.queue_notes``).

    A run a lease of the queue names is read again here (its events are what
    ``no_progress_lease`` counts); every other run is seen through its activity. The queue's
    rows are judged at the queue's clock (:attr:`Context.queue_now`), the runs at
    ``config.now``.
    """
    if not config.db:
        # Without a queue only idle_gap has anything to see: in Python, over the runs'
        # activity, so a rescan loads neither DuckDB nor Arrow, nor (every check selected, no
        # name to check) the catalog of detectors.
        if config.checks and not any(d.__name__ == "idle_gap" for d in _fleet(config)):
            return [], []
        from doctor._detectors.idle_gap import activity_gaps

        lives, points = _lives(config, layouts, outcomes)
        return activity_gaps(lives, points, config), []
    detectors = _fleet(config)
    if not detectors:
        return [], []
    return _fleet_in_duckdb(config, layouts, outcomes, detectors)


def queue_clock_notes(config: DoctorConfig, server: ServerTime | None) -> list[str]:
    """What a scan says of the queue's clock: that this host's is off from the PostgreSQL
    server's by more than :data:`~rundoctor.clock.SKEW_NOTICE_S` (beyond the measurement's
    uncertainty), and what that means for a pinned ``now``.

    >>> from rundoctor.clock import ClockOffset
    >>> queue_clock_notes(DoctorConfig(now=1.0), (61.0, ClockOffset(60.0, 0.001)))[0][:56]
    "this host's clock is 60 s behind the queue's database se"
    >>> queue_clock_notes(DoctorConfig(now=1.0), (1.0, ClockOffset(0.2, 0.001)))
    []
    """
    if server is None or not server[1].skewed():
        return []
    from doctor._detectors._queue import iso_s

    judged = (
        f"the queue was judged at the pinned now, {iso_s(config.now)}, as given"
        if config.now_pinned
        else f"its leases are judged at the server's clock ({iso_s(server[0])})"
    )
    return [
        f"{server[1].describe()}: {judged}, the runs' files at this host's; synchronize the "
        "clocks (NTP)"
    ]


def _fleet(config: DoctorConfig) -> list[Callable[[Context], list[Finding]]]:
    from doctor._detectors import select

    return [d for d in select(config.checks) if d.__name__ in FLEET_DETECTORS]


def _lives(
    config: DoctorConfig, layouts: Sequence[RunLayout], outcomes: dict[str, RunOutcome]
) -> tuple[list[tuple[str, int, int, bool]], dict[str, list[int]]]:
    """Each run's life (run, start_ns, end_ns, finished) and progress points (run -> t)."""
    now_ns = int(config.now * 1e9)
    lives: list[tuple[str, int, int, bool]] = []
    points: dict[str, list[int]] = {}
    for x in layouts:
        outcome = outcomes[x.run_id]
        a = outcome.activity
        first = a.get("first")
        if first is None:
            continue
        # As idle_gap's lives: a finished run lives to its final.json, one whose owner is
        # alive to now, any other to its last event of any kind.
        if a["finished"]:
            end = max(a["last_progress"] or first, a["final_ns"] or first)
        elif outcome.clock.get("alive") is True:
            end = max(a["last_event"], now_ns)
        else:
            end = a["last_event"]
        lives.append((x.run_id, int(first), int(end), bool(a["finished"])))
        points[x.run_id] = [int(t) for t in a["points"]]
    return lives, points


def _fleet_in_duckdb(
    config: DoctorConfig,
    layouts: Sequence[RunLayout],
    outcomes: dict[str, RunOutcome],
    detectors: Sequence[Callable[[Context], list[Finding]]],
) -> tuple[list[Finding], list[str]]:
    from doctor._detectors._queue import LEASED
    from doctor._ingest import load_runs
    from doctor._queue_ingest import copy_queue, load_queue

    linked: set[str] = set()
    server: ServerTime | None = None
    probe = load_runs([], keep_raw=False, threads=config.threads)
    try:
        if config.db:  # read once: the runs to read in full, then a copy of the same snapshot
            server = load_queue(probe, config.db, config.clock)
            probe.add_rows("runs", _run_rows(layouts, outcomes))
            linked = {r for (r,) in probe.sql(_LEASED_RUNS_SQL.format(leased=LEASED))}
        tables = load_runs(
            [x for x in layouts if x.run_id in linked], keep_raw=False, threads=config.threads
        )
        if config.db:
            copy_queue(probe, tables)
    finally:
        probe.con.close()
    try:
        others = [x for x in layouts if x.run_id not in linked]
        tables.add_rows("runs", _run_rows(others, outcomes))
        lives, points = _lives(config, others, outcomes)
        tables.add_rows("cached_lives", lives)
        tables.add_rows("cached_progress", [(r, t) for r, ts in points.items() for t in ts])
        # The queue's rows at the queue's clock: a PostgreSQL server's, unless now is pinned.
        at = None if server is None or config.now_pinned else server[0]
        offset = 0.0 if server is None or at is None else server[1].offset_s
        facts = compute_facts(tables, config)
        ctx = Context(tables, facts, config, queue_at=at, queue_offset_s=offset)
        return [f for d in detectors for f in d(ctx)], queue_clock_notes(config, server)
    finally:
        tables.con.close()
