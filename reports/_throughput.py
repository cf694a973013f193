"""Queue throughput: tickets closed per day, time to done, idle hours, created vs closed.

Read from the ``tickets`` and ``ticket_events`` tables of a DuckDB connection holding the
executor's queue schema (``doctor.Tables.con`` after a scan with a queue; times are epoch
seconds). Definitions, all per UTC day:

* **created**: ``created`` events. **done**: ``completed`` events. **closed**: transitions to
  a terminal status: ``completed``, ``canceled``, ``quarantined``, and a ``failed`` that is
  not followed by another claim of the same ticket (a retryable failure goes back to ``todo``).
* **time to done**: from a ticket's last ``claimed`` event before its ``completed`` event to
  that event (the time it was in progress for the last time).
* **idle hours**: time during which at least one ticket was pending (created, unblocked,
  released or reclaimed, and not claimed since) while no ticket was in progress (claimed and
  not yet completed, failed, released, reclaimed, canceled or quarantined) — incident 01's
  idle execution gap. Counted up to ``now``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb

from reports._errors import ReportError
from reports._escape import Text

__all__ = [
    "DayRow",
    "DurationStats",
    "StatusCount",
    "Throughput",
    "queue_throughput",
    "queue_throughput_at",
]

_DAY = 86_400.0
_TERMINAL = frozenset({"completed", "canceled", "quarantined"})
_BACK_TO_TODO = frozenset({"created", "unblocked", "released", "reclaimed"})


@dataclass(frozen=True, slots=True)
class StatusCount:
    """Tickets in one status now."""

    status: Text
    count: int


@dataclass(frozen=True, slots=True)
class DayRow:
    """One UTC day of the queue."""

    day: str
    created: int
    closed: int
    done: int
    idle_h: float


@dataclass(frozen=True, slots=True)
class DurationStats:
    """Order statistics of a set of durations, in seconds (p90 by nearest rank)."""

    count: int
    median_s: float
    p90_s: float
    max_s: float


@dataclass(frozen=True, slots=True)
class Throughput:
    """The queue's throughput over ``window_days`` UTC days ending with the last one seen."""

    tickets: int
    by_status: tuple[StatusCount, ...]
    days: tuple[DayRow, ...]
    window_days: int
    created_per_day: float
    closed_per_day: float
    done_total: int
    idle_h_total: float
    time_to_done: DurationStats | None


def _stats(values: list[float]) -> DurationStats | None:
    """Median, nearest-rank p90 and max.

    >>> _stats([1.0, 2.0, 3.0, 4.0])
    DurationStats(count=4, median_s=2.5, p90_s=4.0, max_s=4.0)
    >>> _stats([]) is None
    True
    """
    if not values:
        return None
    xs = sorted(values)
    n = len(xs)
    median = xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2
    p90 = xs[max(math.ceil(0.9 * n) - 1, 0)]
    return DurationStats(n, round(median, 3), round(p90, 3), round(xs[-1], 3))


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def _rows(con: Any, sql: str) -> list[tuple[Any, ...]]:
    try:
        return list(con.execute(sql).fetchall())
    except duckdb.Error as exc:
        raise ReportError(
            f"the queue tables cannot be read ({exc}); pass a queue the doctor has "
            "loaded (tickets and ticket_events)"
        ) from exc


def queue_throughput(con: Any, *, now: float, days: int = 14) -> Throughput:
    """Throughput of the queue in ``con`` (a DuckDB connection), over at most ``days`` days.

    >>> import duckdb
    >>> con = duckdb.connect()
    >>> _ = con.execute("CREATE TABLE tickets (id VARCHAR, status VARCHAR)")
    >>> _ = con.execute('CREATE TABLE ticket_events '
    ...                 '(id BIGINT, ticket_id VARCHAR, "at" DOUBLE, event VARCHAR)')
    >>> _ = con.execute("INSERT INTO tickets VALUES ('t-1', 'done')")
    >>> _ = con.execute("INSERT INTO ticket_events VALUES (1, 't-1', 0, 'created'), "
    ...                 "(2, 't-1', 3600, 'claimed'), (3, 't-1', 5400, 'completed')")
    >>> t = queue_throughput(con, now=7200.0)
    >>> t.done_total, t.time_to_done.median_s, t.days[0].idle_h
    (1, 1800.0, 1.0)
    """
    tickets = _rows(con, "SELECT status, count(*) FROM tickets GROUP BY ALL ORDER BY 2 DESC, 1")
    events = _rows(
        con,
        'SELECT ticket_id, "at", event FROM ticket_events WHERE "at" IS NOT NULL ORDER BY "at", id',
    )
    per_ticket: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for ticket, at, event in events:
        per_ticket[str(ticket)].append((float(at), str(event)))
    tally = _Tally()
    for evs in per_ticket.values():
        _replay(evs, tally)
    created, closed, done, to_done = tally.created, tally.closed, tally.done, tally.to_done
    idle = _idle_seconds(tally.changes, now)

    seen = sorted({*created, *closed, *done, *idle})
    window = _calendar(seen[0], seen[-1])[-days:] if seen else []
    rows = tuple(
        DayRow(d, created[d], closed[d], done[d], round(idle[d] / 3600, 2)) for d in window
    )
    n = len(rows) or 1
    return Throughput(
        tickets=sum(int(c) for _s, c in tickets),
        by_status=tuple(StatusCount(Text(str(s)), int(c)) for s, c in tickets),
        days=rows,
        window_days=len(rows),
        created_per_day=round(sum(r.created for r in rows) / n, 2),
        closed_per_day=round(sum(r.closed for r in rows) / n, 2),
        done_total=sum(r.done for r in rows),
        idle_h_total=round(sum(r.idle_h for r in rows), 2),
        time_to_done=_stats([s for d, s in to_done if d in window]),
    )


@dataclass(frozen=True)
class _Tally:
    """Per UTC day: tickets created, closed and done; each done ticket's claim-to-done
    time by its day; and the ``(time, Δpending, Δin progress)`` changes to sweep."""

    created: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    closed: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    done: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    to_done: list[tuple[str, float]] = field(default_factory=list)
    changes: list[tuple[float, int, int]] = field(default_factory=list)


def _replay(evs: list[tuple[float, str]], tally: _Tally) -> None:
    """Walk one ticket's events in time order through none, pending, running, blocked and
    closed, counting into ``tally`` (a failure followed by a claim goes back to pending)."""
    created, closed, done = tally.created, tally.closed, tally.done
    state = "none"  # none | pending | running | blocked | closed
    claimed_at: float | None = None
    for i, (at, event) in enumerate(evs):
        new = state
        if event == "created":
            created[_day(at)] += 1
            new = "pending"
        elif event in _BACK_TO_TODO:
            new = "pending"
        elif event == "blocked":
            new = "blocked"
        elif event == "claimed":
            new, claimed_at = "running", at
        elif event == "failed":
            again = any(e == "claimed" for _t, e in evs[i + 1 :])
            new = "pending" if again else "closed"
            if not again:
                closed[_day(at)] += 1
        elif event in _TERMINAL:
            new = "closed"
            closed[_day(at)] += 1
            if event == "completed":
                done[_day(at)] += 1
                if claimed_at is not None:
                    tally.to_done.append((_day(at), at - claimed_at))
        if new != state:
            tally.changes.append(
                (
                    at,
                    (new == "pending") - (state == "pending"),
                    (new == "running") - (state == "running"),
                )
            )
            state = new


def _idle_seconds(changes: list[tuple[float, int, int]], now: float) -> dict[str, float]:
    """Per UTC day, the seconds in which work was pending and none was in progress, swept
    over ``changes`` in time order up to ``now``."""
    idle: dict[str, float] = defaultdict(float)
    changes.sort(key=lambda c: c[0])
    pending = running = 0
    prev: float | None = None
    for at, dp, dr in [*changes, (now, 0, 0)]:
        if prev is not None and pending > 0 and running == 0 and at > prev:
            _spread(idle, prev, min(at, now))
        pending, running = pending + dp, running + dr
        prev = at if prev is None else max(prev, at)
    return idle


def _calendar(first: str, last: str) -> list[str]:
    """Every UTC day from ``first`` to ``last``, both included.

    >>> _calendar("2026-02-27", "2026-03-01")
    ['2026-02-27', '2026-02-28', '2026-03-01']
    """
    start = datetime.fromisoformat(first).replace(tzinfo=UTC).timestamp()
    stop = datetime.fromisoformat(last).replace(tzinfo=UTC).timestamp()
    return [_day(start + i * _DAY) for i in range(int((stop - start) // _DAY) + 1)]


def _spread(acc: dict[str, float], start: float, end: float) -> None:
    """Add the seconds of ``[start, end)`` to the UTC days they fall on."""
    t = start
    while t < end:
        day_end = (math.floor(t / _DAY) + 1) * _DAY
        stop = min(day_end, end)
        acc[_day(t)] += stop - t
        t = stop


def queue_throughput_at(url: str, *, now: float, days: int = 14) -> Throughput:
    """Read the queue at ``url`` with the doctor's queue reader (``doctor scan --db``'s URL
    forms) and compute its throughput; the doctor's errors (exit 2) when it cannot be read.

    >>> import tempfile
    >>> from executor import open_queue
    >>> path = tempfile.mkdtemp() + "/queue.db"
    >>> queue = open_queue(path, clock=lambda: 1_800_000_000.0)
    >>> _ = queue.enqueue("build", "/p/build.dot")
    >>> queue.close()
    >>> throughput = queue_throughput_at(path, now=1_800_000_000.0, days=2)
    >>> throughput.tickets, [(s.status, s.count) for s in throughput.by_status]
    (1, [('todo', 1)])
    """
    # The doctor's queue reader is the one place that knows queue URLs and backends.
    from doctor import queue_tables

    return queue_throughput(queue_tables(url).con, now=now, days=days)
