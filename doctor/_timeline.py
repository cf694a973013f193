"""One run's timeline as data: every attempt, and the stretches where nothing moved.

What :func:`run_timeline` returns is what a picture of the run needs (``reports`` draws it as
SVG): one :class:`Bar` per attempt (a ``stage_attempt_start`` with its end, if it has one) in
every scope, each with its node, visit number and outcome, and :class:`Stretch` records:

* ``heartbeat_only``: in one scope, a stretch from a progress event to the next one (or to the
  scope's last heartbeat) longer than the run's stall timeout, during which only heartbeats
  arrived: the run looked alive and did nothing.
* ``idle_gap``: the run's own ``idle_gap`` findings (no progress in any scope).

Times are epoch nanoseconds. An attempt that never ended runs to the last event of its scope,
or to the node's next start in its scope when it started again (a resume superseded it: the
process that ran it died). It is open as the facts say (:data:`doctor._attempts.ATTEMPTS_OPEN_SQL`):
not when superseded, nor when the run went on in another of its top-level scopes after it
started (a resume of a run killed in ``restart-N`` goes on in the base directory).

The timeline is bounded, whatever the size of the run (a picture of a million attempts is
no picture, and a million :class:`Bar` objects do not fit the budget): at most
:data:`MAX_TIMELINE_BARS` attempts, the first and the last half of them in start order, the
others counted in ``Timeline.bars_omitted`` and marked by one ``omitted`` stretch from the
first omitted start to the last; at most :data:`MAX_TIMELINE_STRETCHES` ``heartbeat_only``
stretches (the longest), the others counted in ``Timeline.stretches_omitted``; failure
reasons cut to :data:`MAX_TIMELINE_REASON` characters. It is read within the run's resource budget
(:mod:`doctor._budget`): a run over it is :class:`doctor.OverBudget`, one line, never a crash.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from doctor._attempts import ATTEMPTS_OPEN_SQL
from doctor._budget import exceeded, over_budget_error
from doctor._config import DoctorConfig
from doctor._ingest import load_run
from doctor._layout import discover
from doctor._model import Diagnosis, plural
from doctor._tables import HEARTBEAT_SQL, Tables
from doctor._timestamps import parse_iso

__all__ = [
    "MAX_TIMELINE_BARS",
    "MAX_TIMELINE_REASON",
    "MAX_TIMELINE_STRETCHES",
    "Bar",
    "Stretch",
    "Timeline",
    "run_timeline",
]

#: At most this many attempt bars: the first and the last half of them in start order.
MAX_TIMELINE_BARS = 2_000
#: At most this many ``heartbeat_only`` stretches: the longest.
MAX_TIMELINE_STRETCHES = 500
#: A bar's failure reason is cut to this many characters (the hover text shows 400).
MAX_TIMELINE_REASON = 1_000


@dataclass(frozen=True, slots=True)
class Bar:
    """One attempt of one node in one scope; ``visit`` counts the node's starts in the scope."""

    scope: str
    node_id: str
    visit: int
    attempt: int | None
    start_ns: int
    end_ns: int
    is_open: bool
    status: str | None
    failure_reason: str | None


@dataclass(frozen=True, slots=True)
class Stretch:
    """A shaded stretch: ``heartbeat_only`` in one scope, or an ``idle_gap`` of the whole run
    (``scope`` ``None``), or the stretch whose attempts were ``omitted`` (``scope`` ``None``)."""

    kind: str
    scope: str | None
    start_ns: int
    end_ns: int
    detail: str


@dataclass(frozen=True, slots=True)
class Timeline:
    """The attempts and stretches of one run (bounded: see the module), and the span of its
    events; ``bars_omitted`` and ``stretches_omitted`` count what was left out."""

    run_id: str
    start_ns: int
    end_ns: int
    scopes: tuple[str, ...]
    lanes: tuple[tuple[str, str], ...]
    bars: tuple[Bar, ...]
    stretches: tuple[Stretch, ...]
    bars_omitted: int = 0
    stretches_omitted: int = 0


# The run's attempts numbered in start order (k), n in all.
_RANKED = f"""
WITH last AS (SELECT scope, epoch_ns(max(ts)) AS last_ns FROM events
              WHERE run_id = $run AND ts IS NOT NULL GROUP BY scope),
ranked AS (
    SELECT a.scope, a.node_id, a.start_no, a.attempt, epoch_ns(a.start_ts) AS start_ns,
           epoch_ns(a.end_ts) AS end_ns, a.status, left(a.failure_reason, $reason) AS reason,
           l.last_ns, a.is_open, row_number() OVER (ORDER BY a.start_ts, a.start_seq) AS k,
           epoch_ns(lead(a.start_ts) OVER (
               PARTITION BY a.scope, a.node_id ORDER BY a.start_seq)) AS next_ns,
           count(*) OVER () AS n
    FROM ({ATTEMPTS_OPEN_SQL}) a JOIN last l USING (scope)
    WHERE a.run_id = $run AND a.start_ts IS NOT NULL
)
"""
_ATTEMPTS_SQL = f"""{_RANKED}
SELECT scope, node_id, start_no, attempt, start_ns, end_ns, status, reason, last_ns, next_ns,
       is_open
FROM ranked
WHERE k <= $half OR k > n - $half ORDER BY k
"""
# The attempts left out: how many, and the stretch they started in.
_OMITTED_SQL = f"""{_RANKED}
SELECT count(*), min(start_ns), max(start_ns) FROM ranked WHERE k > $half AND k <= n - $half
"""

_QUIET_SQL = f"""
WITH e AS (
    SELECT scope, epoch_ns(ts) AS t, {HEARTBEAT_SQL} AS hb FROM events
    WHERE run_id = $run AND ts IS NOT NULL
),
p AS (
    SELECT scope, t AS a,
           coalesce(lead(t) OVER (PARTITION BY scope ORDER BY t),
                    (SELECT max(t) FROM e e2 WHERE e2.scope = e.scope)) AS b
    FROM e WHERE NOT hb
)
SELECT scope, a, b, beats, count(*) OVER () AS n FROM (
    SELECT p.scope, p.a, p.b, count(*) AS beats
    FROM p JOIN e ON e.scope = p.scope AND e.hb AND e.t > p.a AND e.t <= p.b
    WHERE p.b - p.a > $min_ns
    GROUP BY ALL
)
QUALIFY row_number() OVER (ORDER BY b - a DESC, scope, a) <= $cap
ORDER BY scope, a
"""


def _span(seconds: float) -> str:
    s = round(seconds)
    h, m = divmod(s // 60, 60)
    return f"{h}h {m:02d}m" if h else f"{m}m {s % 60:02d}s"


#: The run's first and last event times, and its scopes.
_SPAN_SQL = (
    "SELECT epoch_ns(min(ts)), epoch_ns(max(ts)), list(DISTINCT scope ORDER BY scope) "
    "FROM events WHERE run_id = $run AND ts IS NOT NULL"
)


def _stretches(diagnosis: Diagnosis, quiet: list[tuple[Any, ...]]) -> list[Stretch]:
    """The shaded stretches: heartbeats without progress (the ``quiet`` rows), then the
    diagnosis's idle gaps of this run."""
    stretches = [
        Stretch(
            "heartbeat_only",
            str(scope),
            int(a),
            int(b),
            f"{plural(int(beats), 'heartbeat')} and no progress for {_span((b - a) / 1e9)}",
        )
        for scope, a, b, beats in quiet
    ]
    for f in diagnosis.findings:
        if f.code != "idle_gap" or f.run_id not in (diagnosis.run_id, None):
            continue
        a, b = parse_iso(f.evidence.get("start")), parse_iso(f.evidence.get("end"))
        if a is not None and b is not None:
            stretches.append(Stretch("idle_gap", None, a, b, f.summary))
    return stretches


def run_timeline(diagnosis: Diagnosis, config: DoctorConfig | None = None) -> Timeline:
    """The timeline of the run a diagnosis describes (read again from ``diagnosis.path``).

    >>> import tempfile
    >>> from doctor import diagnose_path
    >>> run = Path(tempfile.mkdtemp()) / "r1"
    >>> run.mkdir()
    >>> head = '{"run_id": "r1", "node_id": "a", "attempt": 1, '
    >>> _ = (run / "progress.ndjson").write_text(
    ...     head + '"event": "stage_attempt_start", "ts": "2026-03-01T10:00:00Z"}\\n'
    ...     + head + '"event": "stage_attempt_end", "ts": "2026-03-01T10:01:00Z", '
    ...     '"status": "fail", "failure_reason": "boom"}\\n')
    >>> timeline = run_timeline(diagnose_path(run, DoctorConfig()))
    >>> [(b.node_id, b.status, b.failure_reason, b.is_open) for b in timeline.bars]
    [('a', 'fail', 'boom', False)]
    """
    config = config or DoctorConfig()
    layout = discover(Path(diagnosis.path))
    stall = float(diagnosis.facts.get("stall_timeout_s") or config.stall_timeout_s)
    try:
        tables = load_run(layout, config)
        try:
            bars, omitted = _bars(tables, layout.run_id)
            quiet = tables.sql(
                _QUIET_SQL, run=layout.run_id, min_ns=int(stall * 1e9), cap=MAX_TIMELINE_STRETCHES
            )
            span = tables.sql(_SPAN_SQL, run=layout.run_id)[0]
        finally:
            tables.con.close()
    except Exception as exc:  # over the budget: one line (doctor._budget), not a crash
        limit = exceeded(exc)
        if limit is None:
            raise
        raise over_budget_error(diagnosis.run_id, limit, config) from exc
    return _assemble(diagnosis, bars, omitted, quiet, span)


def _bars(tables: Tables, run: str) -> tuple[list[Bar], tuple[int, Stretch] | None]:
    """The kept attempts' bars (see the module), and how many were omitted with the
    ``omitted`` stretch, if any were."""
    rows = tables.sql(
        _ATTEMPTS_SQL, run=run, half=MAX_TIMELINE_BARS // 2, reason=MAX_TIMELINE_REASON
    )
    bars = [
        Bar(
            scope=str(scope),
            node_id=str(node),
            visit=int(visit),
            attempt=None if attempt is None else int(attempt),
            start_ns=int(start),
            end_ns=int(end if end is not None else max(nxt if nxt is not None else last, start)),
            is_open=bool(is_open),
            status=None if status is None else str(status),
            failure_reason=None if reason is None else str(reason),
        )
        for scope, node, visit, attempt, start, end, status, reason, last, nxt, is_open in rows
    ]
    if len(bars) < MAX_TIMELINE_BARS:
        return bars, None
    n, first, last = tables.sql(_OMITTED_SQL, run=run, half=MAX_TIMELINE_BARS // 2, reason=0)[0]
    if not n:
        return bars, None
    count = plural(int(n), "attempt", shown=f"{int(n):,}")
    what = f"{count} omitted (the first and last {MAX_TIMELINE_BARS // 2:,} are drawn)"
    return bars, (int(n), Stretch("omitted", None, int(first), int(last), what))


def _assemble(
    diagnosis: Diagnosis,
    bars: list[Bar],
    omitted: tuple[int, Stretch] | None,
    quiet: list[tuple[Any, ...]],
    span: tuple[Any, ...],
) -> Timeline:
    """The timeline from what was read: lanes in order of first start within each scope."""
    stretches = _stretches(diagnosis, [row[:4] for row in quiet])
    if omitted is not None:
        stretches.append(omitted[1])
    start = int(span[0]) if span[0] is not None else 0
    end = int(span[1]) if span[1] is not None else start
    scopes = sorted(set(span[2] or []) | {b.scope for b in bars}, key=lambda s: (s != "", s))
    by_scope: dict[str, dict[tuple[str, str], None]] = {}
    for b in bars:  # in start order: a lane's place is its node's first start
        by_scope.setdefault(b.scope, {})[(b.scope, b.node_id)] = None
    lanes = [lane for scope in scopes for lane in by_scope.get(scope, {})]
    return Timeline(
        run_id=diagnosis.run_id,
        start_ns=start,
        end_ns=max(end, start + 1),
        scopes=tuple(scopes),
        lanes=tuple(lanes),
        bars=tuple(bars),
        stretches=tuple(stretches),
        bars_omitted=0 if omitted is None else omitted[0],
        stretches_omitted=int(quiet[0][4]) - len(quiet) if quiet else 0,
    )
