"""``idle_gap``: long stretches with no execution progress while work was alive or pending.

A run's *life* runs from its first event to its *end*: for a terminal run (valid
``final.json``) the later of its last progress event and ``final.json``'s ``timestamp``; for a
run whose owner process is alive, ``config.now``; otherwise (owner dead or unknown) its last
event of any kind, heartbeats included (beyond that nothing is known). *Progress* is any
non-heartbeat event in any scope of the run (branches included).

* Per run: the gaps between consecutive progress events of the run, and from its last one to
  its end, longer than ``config.idle_gap_s``.
* Fleet (``run_id`` null, scope ``""``), only when the tables hold more than one run (for one
  run it would repeat the per-run gaps): the gaps between consecutive progress events of all
  runs together, up to the latest end of any run, during which some run was alive or pending.

A scan gives the detector every run as its *activity* (tables ``cached_lives`` and
``cached_progress``: its life and its progress points thinned to the first and last of each
half-threshold bucket, which keeps every gap longer than the threshold), not its events; both
kinds of run give the same gaps.

``alive_runs``: runs whose life overlaps the gap. ``pending``: runs started before the gap
ended and not terminal before it began (an orphaned run stays pending for ever). For run
directories this is the only notion of pending work.

* Queue (``run_id`` null, scope ``""``, ``evidence["source"] == "queue"``), when a queue was
  read (``doctor scan --db``): stretches longer than ``config.idle_gap_s`` during which some
  ticket was pending and nothing executed. Progress here is a ``claimed``, ``completed`` or
  ``failed`` ticket event, or a progress event of any run in the tables (its time moved into
  the queue's clock by :attr:`Context.queue_offset_s`). A ticket is pending
  from its ``created_at`` until it reached a terminal status (``finished_at``, else
  ``updated_at``), or until the queue's now while open (``Context.queue_now``: the clock the
  tickets were stamped in, a PostgreSQL server's); ``blocked`` tickets wait on other tickets
  and are not pending work. ``pending``: tickets pending during the stretch; ``alive_runs``:
  tickets whose latest lease (``claimed_at`` to ``finished_at``, or to the queue's now while
  claimed or running) overlaps it. ``error``; ``warning`` when a lease
  heartbeated until the stretch's end but the run it names is not in the tables (its progress
  is invisible: ``unseen_leases``).
"""

from __future__ import annotations

import bisect
import itertools
from typing import TYPE_CHECKING, Any

from doctor._detectors._context import Context
from doctor._detectors._queue import LEASED, PROGRESS_EVENTS, TERMINAL, iso_s
from doctor._detectors.retry_loop import duration_text
from doctor._model import Finding, Severity, noun, plural
from doctor._tables import HEARTBEAT_SQL
from doctor._timestamps import iso, parse_iso

if TYPE_CHECKING:
    from doctor._config import DoctorConfig

__all__ = ["activity_gaps", "idle_gap"]


_SQL = f"""
WITH given AS (
    SELECT unnest($ids) AS run_id, unnest($finished) AS finished,
           unnest($final_ns) AS final_ns, unnest($alive) AS alive
),
spans AS (
    SELECT run_id, epoch_ns(min(ts)) AS first_ns, epoch_ns(max(ts)) AS last_ns,
           epoch_ns(max(ts) FILTER (WHERE NOT {HEARTBEAT_SQL})) AS last_progress
    FROM events WHERE ts IS NOT NULL GROUP BY run_id
),
lives AS (
    SELECT s.run_id, s.first_ns AS start_ns, g.finished,
           CASE WHEN g.finished
                    THEN greatest(coalesce(s.last_progress, s.first_ns),
                                  coalesce(g.final_ns, s.first_ns))
                WHEN g.alive THEN greatest(s.last_ns, $now_ns)
                ELSE s.last_ns END AS end_ns
    FROM spans s JOIN given g USING (run_id)
),
progress AS (
    SELECT e.run_id, epoch_ns(e.ts) AS t FROM progress_events e JOIN lives l USING (run_id)
    WHERE e.ts IS NOT NULL
      AND epoch_ns(e.ts) <= l.end_ns
),
kept_progress AS (
    SELECT p.run_id, p.t FROM cached_progress p JOIN cached_lives c USING (run_id)
    WHERE p.t <= c.end_ns
),
run_points AS (
    SELECT run_id, t FROM progress
    UNION ALL SELECT run_id, start_ns FROM lives
    UNION ALL SELECT run_id, end_ns FROM lives
    UNION ALL SELECT run_id, t FROM kept_progress
    UNION ALL SELECT run_id, start_ns FROM cached_lives
    UNION ALL SELECT run_id, end_ns FROM cached_lives
),
all_lives AS (
    SELECT run_id, start_ns, finished, end_ns FROM lives
    UNION ALL SELECT run_id, start_ns, finished, end_ns FROM cached_lives
),
fleet_points AS (
    SELECT t FROM progress UNION ALL SELECT t FROM kept_progress
    UNION ALL SELECT max(end_ns) FROM all_lives
),
gaps AS (
    SELECT run_id, start_ns, end_ns FROM (
        SELECT run_id, lag(t) OVER (PARTITION BY run_id ORDER BY t) AS start_ns, t AS end_ns
        FROM run_points)
    WHERE end_ns - start_ns > $gap_ns
    UNION ALL
    SELECT NULL, start_ns, end_ns FROM (
        SELECT lag(t) OVER (ORDER BY t) AS start_ns, t AS end_ns FROM fleet_points)
    WHERE end_ns - start_ns > $gap_ns AND $fleet
)
-- The gaps, then the lives: each gap's alive and pending runs are counted in Python
-- (_counted), in O((gaps + runs) log runs); a join of every gap with every life was
-- quadratic in the fleet (10,000 runs: 10,000 fleet gaps times 10,000 lives).
SELECT true AS is_gap, run_id, start_ns, end_ns, NULL::BOOLEAN AS finished FROM gaps
UNION ALL SELECT false, run_id, start_ns, end_ns, finished FROM all_lives
"""


def _final_ns(ctx: Context, run_id: str) -> int | None:
    """``final.json``'s ``timestamp`` in epoch nanoseconds (None when absent or unparsable)."""
    final = ctx.tables.documents[run_id].final
    return parse_iso(final.get("timestamp")) if final is not None and final.ok else None


def idle_gap(ctx: Context) -> list[Finding]:
    """No execution progress for longer than the threshold while runs or tickets were pending."""
    ids = [r for r in ctx.tables.run_ids if r in ctx.facts]
    cached = ctx.cached_runs()
    if not ids and not cached:
        return _queue_gaps(ctx)
    now_ns = int(ctx.config.now * 1e9)
    rows = ctx.tables.sql(
        _SQL,
        ids=ids,
        finished=[bool(ctx.facts[r].get("final_json")) for r in ids],
        final_ns=[_final_ns(ctx, r) if ctx.facts[r].get("final_json") else None for r in ids],
        alive=[ctx.facts[r].get("owner_alive") is True for r in ids],
        now_ns=now_ns,
        gap_ns=int(ctx.config.idle_gap_s * 1e9),
        fleet=len(ids) + cached > 1,
    )
    gaps = [(r, int(a), int(b)) for is_gap, r, a, b, _ in rows if is_gap]
    lives = [(r, int(a), int(b), bool(f)) for is_gap, r, a, b, f in rows if not is_gap]
    return _findings(_counted(gaps, lives), now_ns) + _queue_gaps(ctx)


def activity_gaps(
    lives: list[tuple[str, int, int, bool]],
    points: dict[str, list[int]],
    config: DoctorConfig,
) -> list[Finding]:
    """:func:`idle_gap` (without a queue) over runs' activity alone, in Python: what a scan's
    fleet phase runs when no DuckDB is needed otherwise. ``lives`` are (run, start_ns,
    end_ns, finished); ``points`` each run's thinned progress points. Gives what the SQL
    gives over ``cached_lives`` and ``cached_progress`` (a test checks both on one fleet).
    """
    gap = int(config.idle_gap_s * 1e9)
    kept = {r: [t for t in points.get(r, []) if t <= end] for r, _, end, _ in lives}

    def gaps(ts: list[int]) -> list[tuple[int, int]]:
        ts = sorted(ts)
        return [(a, b) for a, b in itertools.pairwise(ts) if b - a > gap]

    found: list[tuple[str | None, int, int]] = []
    for run_id, start, end, _ in sorted(lives):
        found += [(run_id, a, b) for a, b in gaps([*kept[run_id], start, end])]
    if len(lives) > 1:
        fleet = [t for ts in kept.values() for t in ts] + [max(e for _, _, e, _ in lives)]
        found += [(None, a, b) for a, b in gaps(fleet)]
    return _findings(_counted(found, lives), int(config.now * 1e9))


def _counted(
    gaps: list[tuple[str | None, int, int]], lives: list[tuple[str, int, int, bool]]
) -> list[tuple[str | None, int, int, int, int]]:
    """Each gap (owner, a, b) with its alive runs (``s < b and e > a``) and pending runs
    (``s < b and not (finished and e <= a)``), those of a run or with either count kept,
    sorted by owner (the fleet's last) and start.

    Both counts are the runs started before ``b`` less those of them over by ``a`` (all of
    them, or the finished ones), counted in one sweep of the gaps by ``a`` with the lives
    added by end to a Fenwick tree over their starts: O((gaps + runs) log runs), where a
    count over every life for every gap was quadratic (a fleet of 10,000 runs has about as
    many gaps between them). A life may end before it starts (a ``final.json`` stamped by a
    clock behind): it is counted as the comparisons say, as before.

    >>> lives = [("r1", 0, 10, True), ("r2", 5, 30, False), ("r3", 40, 50, True)]
    >>> _counted([(None, 10, 40), ("r2", 6, 30)], lives)
    [('r2', 6, 30, 2, 2), (None, 10, 40, 1, 1)]
    """
    starts = sorted(s for _, s, _, _ in lives)
    by_end = sorted(lives, key=lambda life: life[2])
    over, over_finished = _Fenwick(len(starts)), _Fenwick(len(starts))
    counts: dict[int, tuple[int, int]] = {}
    i = 0
    for k in sorted(range(len(gaps)), key=lambda k: gaps[k][1]):
        _, a, b = gaps[k]
        while i < len(by_end) and by_end[i][2] <= a:
            _, s, _, finished = by_end[i]
            rank = bisect.bisect_left(starts, s)
            over.add(rank)
            if finished:
                over_finished.add(rank)
            i += 1
        before = bisect.bisect_left(starts, b)  # lives started before b
        counts[k] = (before - over.prefix(before), before - over_finished.prefix(before))
    rows = [(*gap, *counts[k]) for k, gap in enumerate(gaps)]
    rows = [row for row in rows if row[0] is not None or row[3] or row[4]]
    rows.sort(key=lambda row: (row[0] is None, row[0] or "", row[1]))
    return rows


class _Fenwick:
    """Counts at ranks 0..n-1: ``add`` one at a rank, ``prefix(k)`` the count below rank k.

    >>> tree = _Fenwick(4)
    >>> tree.add(1); tree.add(3); tree.add(1)
    >>> tree.prefix(0), tree.prefix(2), tree.prefix(4)
    (0, 2, 3)
    """

    def __init__(self, n: int) -> None:
        self._tree = [0] * (n + 1)

    def add(self, rank: int) -> None:
        i = rank + 1
        while i < len(self._tree):
            self._tree[i] += 1
            i += i & -i

    def prefix(self, k: int) -> int:
        total = 0
        while k > 0:
            total += self._tree[k]
            k -= k & -k
        return total


def _findings(rows: list[tuple[Any, ...]], now_ns: int) -> list[Finding]:
    findings = []
    for run_id, start, end, alive, pending in rows:
        duration = round((end - start) / 1e9, 3)
        ongoing = end >= now_ns
        span = duration_text(duration)
        if run_id is not None:
            # A gap the run came back from may be one long silent stage; one still open with
            # the owner alive is a hung run now.
            severity = Severity.ERROR if ongoing else Severity.WARNING
            summary = (
                f"the run made no progress in any scope for {span} ({iso(start)} to {iso(end)})"
                + (" and still has not" if ongoing else "")
                + "; check what it was waiting on (a hung stage, a lost branch, a dead worker)"
            )
        else:
            # Nothing ran while a run was alive: execution stood still with work in hand.
            severity = Severity.ERROR if alive else Severity.WARNING
            summary = (
                f"no run made progress for {span} ({iso(start)} to {iso(end)}) while "
                f"{plural(alive, 'run')} {noun(alive, 'was', 'were')} alive and {pending} "
                "unfinished; make sure something executes pending work (a worker, a scheduler) "
                "and alerts when it stops"
            )
        findings.append(
            Finding(
                code="idle_gap",
                severity=severity,
                summary=summary,
                run_id=run_id,
                scope="",
                evidence={
                    "start": iso(start),
                    "end": iso(end),
                    "duration_s": duration,
                    "pending": int(pending),
                    "alive_runs": int(alive),
                    "ongoing": ongoing,
                },
            )
        )
    return findings


# Queue: candidate gaps between execution points (ticket events and run progress), from the
# first ticket's creation to now; pending intervals cut them to when work was waiting.
_QUEUE_GAPS_SQL = f"""
WITH points AS (
    SELECT "at" AS t FROM ticket_events WHERE event IN {PROGRESS_EVENTS}
    UNION ALL SELECT epoch_ns(ts) / 1e9 + $offset FROM progress_events WHERE ts IS NOT NULL
    UNION ALL SELECT t / 1e9 + $offset FROM cached_progress
    UNION ALL SELECT min(created_at) FROM tickets
    UNION ALL SELECT $now
)
SELECT start_s, end_s FROM (
    SELECT lag(t) OVER (ORDER BY t) AS start_s, t AS end_s FROM points
    WHERE t IS NOT NULL AND t <= $now)
WHERE end_s - start_s > $gap ORDER BY start_s
"""
_PENDING_SQL = f"""
SELECT created_at,
       CASE WHEN status IN {TERMINAL} THEN coalesce(finished_at, updated_at) ELSE $now END AS e
FROM tickets
WHERE status <> 'blocked' AND created_at IS NOT NULL
ORDER BY created_at
"""
# Each ticket's spans, for counting those over each stretch (_stretch_counts): pending from
# created_at to p_end (never, for a blocked ticket: it waits on others, it is no pending work),
# leased from claimed_at to l_end, and, for a lease whose run is not in the tables,
# heartbeating until seen_until.
_TICKET_SPANS_SQL = f"""
SELECT created_at,
       CASE WHEN status IN {TERMINAL} THEN coalesce(finished_at, updated_at)
            WHEN status = 'blocked' THEN NULL ELSE $now END AS p_end,
       claimed_at,
       CASE WHEN status IN {TERMINAL} THEN coalesce(finished_at, updated_at)
            WHEN status IN {LEASED} THEN $now ELSE claimed_at END AS l_end,
       CASE WHEN status IN {LEASED} AND (run_id IS NOT NULL OR run_path IS NOT NULL)
                 AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.run_id = t.run_id)
                 AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.path = t.run_path)
            THEN coalesce(last_heartbeat_at, claimed_at) END AS seen_until
FROM tickets t
"""


def _merged(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The union of intervals sorted by start, as disjoint intervals.

    >>> _merged([(0, 2), (1, 3), (5, 6)])
    [(0, 3), (5, 6)]
    """
    out: list[tuple[float, float]] = []
    for s, e in intervals:
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        elif e > s:
            out.append((s, e))
    return out


def _overlaps(
    gaps: list[tuple[Any, ...]], pending: list[tuple[float, float]], min_s: float
) -> list[tuple[float, float]]:
    """Where the gaps without execution overlap stretches with pending tickets, longer than
    ``min_s``; both lists sorted and disjoint, so one pass."""
    stretches: list[tuple[float, float]] = []
    i = 0
    for gs, ge in gaps:
        while i < len(pending) and pending[i][1] <= gs:
            i += 1
        j = i
        while j < len(pending) and pending[j][0] < ge:
            a, b = max(gs, pending[j][0]), min(ge, pending[j][1])
            if b - a > min_s:
                stretches.append((a, b))
            j += 1
    return stretches


def _stretch_counts(
    stretches: list[tuple[float, float]], tickets: list[tuple[Any, ...]], stale_s: float
) -> list[tuple[float, float, int, int, int]]:
    """Each stretch (a, b) with its tickets pending (``created_at < b and p_end > a``),
    leased (``claimed_at < b and l_end > a``) and leased unseen (``claimed_at < b and
    seen_until >= b - stale_s``), of the rows of :data:`_TICKET_SPANS_SQL` (a comparison with
    NULL holds for none).

    Each count is one sweep of the stretches by ``b`` (:func:`_crossing`): O((stretches +
    tickets) log tickets). It was a query joining every stretch with every ticket, quadratic
    in a busy queue (a stretch per idle hour, a ticket per job).

    >>> tickets = [(0.0, 30.0, 5.0, 15.0, 19.0), (25.0, 40.0, None, None, None)]
    >>> _stretch_counts([(10.0, 20.0), (26.0, 28.0)], tickets, 5.0)
    [(10.0, 20.0, 1, 1, 1), (26.0, 28.0, 2, 0, 0)]
    """

    def spans(i: int, j: int) -> list[tuple[float, float]]:
        return [(t[i], t[j]) for t in tickets if t[i] is not None and t[j] is not None]

    ends = [b for _, b in stretches]
    pending = _crossing(spans(0, 1), [(b, a) for a, b in stretches])
    leases = _crossing(spans(2, 3), [(b, a) for a, b in stretches])
    unseen = _crossing(spans(2, 4), [(b, b - stale_s) for b in ends], closed=True)
    return [(a, b, pending[k], leases[k], unseen[k]) for k, (a, b) in enumerate(stretches)]


def _crossing(
    spans: list[tuple[float, float]], queries: list[tuple[float, float]], *, closed: bool = False
) -> list[int]:
    """For each query (b, c), the spans (s, e) with ``s < b and e > c`` (``e >= c`` when
    ``closed``): those started before ``b`` less those of them over by ``c``, in one sweep of
    the queries by ``b`` with the spans added by start to a Fenwick tree over their ends. A
    span may end before it starts (a clock stepped back): it is counted as the comparisons say.

    >>> _crossing([(0, 5), (2, 9), (6, 7), (8, 1)], [(6, 4), (9, 5), (9, 7)])
    [2, 2, 1]
    >>> _crossing([(0, 5), (2, 9)], [(9, 5)], closed=True)
    [2]
    """
    ends = sorted(e for _, e in spans)
    by_start = sorted(spans)
    tree = _Fenwick(len(ends))
    out = [0] * len(queries)
    i = 0
    for k in sorted(range(len(queries)), key=lambda k: queries[k][0]):
        b, c = queries[k]
        while i < len(by_start) and by_start[i][0] < b:
            tree.add(bisect.bisect_left(ends, by_start[i][1]))
            i += 1
        # A span's rank is below this one exactly when it is over by c.
        over = bisect.bisect_left(ends, c) if closed else bisect.bisect_right(ends, c)
        out[k] = i - tree.prefix(over)
    return out


def _queue_gaps(ctx: Context) -> list[Finding]:
    """Stretches with pending tickets and no execution (see the module docstring)."""
    if not ctx.has_rows("tickets"):
        return []
    cfg, now = ctx.config, ctx.queue_now  # the tickets' own clock (a PostgreSQL server's)
    offset = ctx.queue_offset_s  # runs' progress, moved into the tickets' clock
    gaps = ctx.tables.sql(_QUEUE_GAPS_SQL, now=now, gap=cfg.idle_gap_s, offset=offset)
    pending = _merged([(s, e) for s, e in ctx.tables.sql(_PENDING_SQL, now=now)])
    stretches = _overlaps(gaps, pending, cfg.idle_gap_s)
    if not stretches:
        return []
    rows = _stretch_counts(stretches, ctx.tables.sql(_TICKET_SPANS_SQL, now=now), cfg.stale_lease_s)
    findings = []
    for a, b, waiting, leases, unseen in rows:
        duration = round(b - a, 3)
        ongoing = b >= now
        start, end = iso_s(a), iso_s(b)
        summary = (
            f"no ticket was claimed or finished and no run progressed for "
            f"{duration_text(duration)} ({start} to {end})"
            + (" and still none has" if ongoing else "")
            + f" while {plural(waiting, 'ticket')} waited; make sure a worker executes the queue "
            "and alerts when nothing closes"
        )
        if unseen:
            summary += (
                f" ({plural(unseen, 'lease')} heartbeated through it whose runs are not in the "
                "scanned roots: scan with --root to see their progress)"
            )
        findings.append(
            Finding(
                code="idle_gap",
                # Claimable work stood still; unless a lease the doctor cannot see into worked.
                severity=Severity.WARNING if unseen else Severity.ERROR,
                summary=summary,
                run_id=None,
                scope="",
                evidence={
                    "start": start,
                    "end": end,
                    "duration_s": duration,
                    "pending": int(waiting),
                    "alive_runs": int(leases),
                    "ongoing": ongoing,
                    "source": "queue",
                    "unseen_leases": int(unseen),
                },
            )
        )
    return findings
