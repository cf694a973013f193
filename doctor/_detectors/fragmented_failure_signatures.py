"""``fragmented_failure_signatures``: one failure written many ways, so no breaker counts it.

Per node and scope, over its failures (attempt ends with status ``fail`` or ``retry``):
``unique_reasons`` distinct raw reasons, ``canonical_signatures`` distinct
:func:`rundoctor.signature.canonical_signature` values. Reported when

* ``failures >= config.fragmentation_min_failures``,
* ``unique_reasons >= config.fragmentation_ratio * canonical_signatures``, and
* ``top_signature_count >= breaker_limit``: a breaker counting canonical signatures would
  have tripped,

where ``breaker_limit`` is the run's own limit (the largest ``signature_limit`` of its
``[subgraph_]deterministic_failure_cycle_check`` events), else ``config.breaker_limit``.

Not reported when the run's own breaker did count them as one: its cycle-check events for the
node name a single signature (a stage's ``failure_signature``, or Kilroy's own normalisation)
and count each check as one more of it (never starting again) up to ``breaker_limit``; the
reasons vary, the engine's signatures did not.

Not reported either when a retry budget bounded them: the node's failures fall in fewer than
``breaker_limit`` visits and its last failure was followed by Kilroy's ``retry_decision`` with
``will_retry: false`` (as ``deterministic_retry_loop`` reads it). Kilroy's breaker counts a
visit once, however many attempts its ``max_retries`` allowed (format doc §4.3): retries of
one visit whose reasons differ (a fresh temp path each attempt, real run
``retries_varying``) are no loop a signature breaker was meant to stop.

``max_signature_count_seen`` is what the run's breaker counted for the top signature when its
events record the doctor's own ``SIGNATURE_VERSION`` (signatures are only compared within one
version); otherwise, and when no event names that signature, the largest count on the node.

Severity: ``error`` when no breaker could trip and nothing stopped the loop (incident 04);
``warning`` when the run's own breaker tripped anyway; ``info`` when a designed stop ended the
loop (``stopped_by``: ``stuck_cycle_breaker`` for ``max_node_visits``, a cycle breaker, the
``loop_restart`` circuit breaker, the stall watchdog): the loop was bounded as designed, and the
finding only says why the signature breaker did not get there first. The loop's stop is the
scope's first ending after the node's last failure, when the node had no attempt after it
(:func:`doctor._detectors._stops.loop_stop`): a resumed run that ran the node again was not
stopped by the stop it resumed from.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from doctor._detectors._context import Context, in_scope, needs
from doctor._detectors._stops import (
    NODE_WORK_SQL,
    Ending,
    exhausted_budgets,
    loop_stop,
    scope_endings,
)
from doctor._detectors.deterministic_retry_loop import BREAKER_EVENTS, visits_sql
from doctor._model import Finding, Severity, plural

__all__ = ["fragmented_failure_signatures"]

_CHECK_EVENTS = ("deterministic_failure_cycle_check", "subgraph_deterministic_failure_cycle_check")
_CHECKS = "(" + ", ".join(f"'{e}'" for e in _CHECK_EVENTS) + ")"

_FAILURES_SQL = f"""
SELECT run_id, scope, node_id, failure_reason, count(*), min(end_seq), max(end_seq),
       list(DISTINCT visit)
FROM ({visits_sql()})
WHERE end_seq IS NOT NULL AND lower(status) IN ('fail', 'retry')
GROUP BY run_id, scope, node_id, failure_reason ORDER BY run_id, scope, node_id, failure_reason
"""
_BREAKERS = "(" + ", ".join(f"'{e}'" for e in BREAKER_EVENTS) + ")"
_CHECKS_SQL = f"""
SELECT run_id, scope, node_id, max(signature_count) FILTER (WHERE event IN {_CHECKS}),
       max(seq) FILTER (WHERE event IN {_BREAKERS}),
       count(DISTINCT signature) FILTER (WHERE event IN {_CHECKS}),
       count(*) FILTER (WHERE event IN {_CHECKS})
FROM progress_events
WHERE (event IN {_CHECKS} OR event IN {_BREAKERS}) AND node_id IS NOT NULL
GROUP BY ALL
"""


def _same_version_sql() -> str:
    """Counts per breaker signature, only from events signed with the doctor's own version
    (imported here: the signature rules are only needed once a node has failures)."""
    from rundoctor.signature import SIGNATURE_VERSION

    return f"""
SELECT run_id, scope, node_id, signature, max(signature_count) FROM progress_events
WHERE event IN {_CHECKS} AND signature_version = {SIGNATURE_VERSION} AND node_id IS NOT NULL
GROUP BY ALL
"""


#: The stops that bound a loop as designed.
_DESIGNED_STOP_EVENTS = frozenset(
    {
        "deterministic_failure_cycle_breaker",
        "subgraph_deterministic_failure_cycle_breaker",
        "stuck_cycle_breaker",
        "loop_restart_circuit_breaker",
        "stall_watchdog_timeout",
    }
)
_LIMITS_SQL = f"""
SELECT run_id, max(signature_limit) FROM progress_events
WHERE event IN {_CHECKS} AND signature_limit > 0 GROUP BY ALL
"""


@needs(failed_attempts=True)
def fragmented_failure_signatures(ctx: Context) -> list[Finding]:
    """A node's failures are many distinct strings but few canonical signatures."""
    cfg = ctx.config
    reasons: dict[tuple[str, str, str], Counter[str | None]] = defaultdict(Counter)
    spans: dict[tuple[str, str, str], tuple[int, int]] = {}
    visits: dict[tuple[str, str, str], set[int]] = defaultdict(set)
    for run_id, scope, node, reason, n, first, last, seen in ctx.tables.sql(_FAILURES_SQL):
        reasons[(run_id, scope, node)][reason] += int(n)
        key = (run_id, scope, node)
        was = spans.get(key, (int(first), int(last)))
        spans[key] = (min(was[0], int(first)), max(was[1], int(last)))
        visits[key].update(int(v) for v in seen)
    candidates = {k: c for k, c in reasons.items() if c.total() >= cfg.fragmentation_min_failures}
    if not candidates:
        return []
    breakers = _read_breakers(ctx, spans, {k: len(visits[k]) for k in candidates})
    findings = []
    for key, counts in sorted(candidates.items()):
        fragmented = _fragmented(ctx, key, counts, breakers)
        if fragmented is not None:
            findings.append(_finding(key, fragmented))
    return findings


@dataclass(frozen=True)
class _Breakers:
    """What the runs' own cycle breakers did: their limits, the checks they made per node,
    the counts they reached per signature, each scope's endings, and per node its first and
    last failure and its last attempt."""

    limits: dict[str, int]
    checks: dict[tuple[str, str, str], tuple[Any, Any, int, int]]
    same_version: dict[tuple[str, str, str, str], int]
    endings: dict[tuple[str, str], list[Ending]]
    failures: dict[tuple[str, str, str], tuple[int, int]]
    last_work: dict[tuple[str, str, str], int]
    #: Per node, the visits it failed in, and where Kilroy's retry budget last ran out.
    visits: dict[tuple[str, str, str], int]
    exhausted: dict[tuple[str, str, str], int]

    def budget_bounded(self, key: tuple[str, str, str], limit: int) -> bool:
        """Whether the node's failures are retries of fewer than ``limit`` visits that its
        retry budget ended (a ``retry_decision`` with ``will_retry: false`` after the last, or
        the last is the visit's last allowed attempt)."""
        spent = self.exhausted.get(key)
        return spent is not None and spent >= self.failures[key][1] and self.visits[key] < limit


def _read_breakers(
    ctx: Context,
    failures: dict[tuple[str, str, str], tuple[int, int]],
    visits: dict[tuple[str, str, str], int],
) -> _Breakers:
    """Phase 1: the breaker queries, over the runs with enough failures (each skipped when
    the batch has none of the events it reads)."""
    same_version: dict[tuple[str, str, str, str], int] = {}
    checks = _CHECK_EVENTS
    for r, s, n, sig, mx in ctx.rows_of(checks, _same_version_sql()):
        # The breaker's signature is "<node>|<failure_class>|<canonical signature>".
        key = (r, s, n, str(sig).split("|", 2)[-1])
        same_version[key] = max(same_version.get(key, 0), int(mx or 0))
    return _Breakers(
        limits={r: int(lim) for r, lim in ctx.rows_of(checks, _LIMITS_SQL)},
        checks={
            (r, s, n): (mx, br, int(kinds or 0), int(made or 0))
            for r, s, n, mx, br, kinds, made in ctx.rows_of((*checks, *BREAKER_EVENTS), _CHECKS_SQL)
        },
        same_version=same_version,
        endings=scope_endings(ctx),
        failures=failures,
        last_work={(r, s, n): int(seq) for r, s, n, seq in ctx.tables.sql(NODE_WORK_SQL)},
        visits=visits,
        exhausted=exhausted_budgets(ctx),
    )


@dataclass(frozen=True)
class _Fragmented:
    """One node's fragmented failures: its reasons, their canonical signatures, the top one,
    and what its run's breaker saw of them."""

    counts: Counter[str | None]
    signatures: Counter[str]
    top: str
    top_n: int
    limit: int
    seen: int | None
    tripped: Any
    could_not_trip: bool
    stopped_by: str | None


def _fragmented(
    ctx: Context,
    key: tuple[str, str, str],
    counts: Counter[str | None],
    breakers: _Breakers,
) -> _Fragmented | None:
    """Phase 2: group a node's reasons by canonical signature; None unless they fragment
    (many reasons per signature) and the top signature reached the breaker's limit."""
    cfg = ctx.config
    run_id, scope, node = key
    signatures: Counter[str] = Counter()
    for reason, n in counts.items():
        signatures[ctx.signature(reason)] += n
    top, top_n = min(signatures.items(), key=lambda kv: (-kv[1], kv[0]))
    limit = breakers.limits.get(run_id, cfg.breaker_limit)
    if not (len(counts) >= cfg.fragmentation_ratio * len(signatures) and top_n >= limit):
        return None
    if breakers.budget_bounded(key, limit):
        return None  # retries of fewer visits than the limit, ended by max_retries
    seen, breaker_seq, engine_signatures, made = breakers.checks.get(key, (None, None, 0, 0))
    if engine_signatures == 1 and seen is not None and int(seen) == made >= limit:
        # The run's own breaker counted each failure it checked as one more of one signature
        # (a stage's failure_signature, or its own normalisation) up to its limit: the
        # reasons vary, the engine's signatures did not fragment.
        return None
    first, last = breakers.failures[key]
    # A breaker of the node before its first failure (a resume went on from it) is not this
    # loop's.
    tripped = breaker_seq is not None and int(breaker_seq) > first
    seen = int(seen) if seen is not None else None
    seen = breakers.same_version.get((run_id, scope, node, top), seen)
    stop = loop_stop(
        breakers.endings.get((run_id, scope), ()), last, breakers.last_work.get(key, last)
    )
    stopped_by = stop.stopped_by if stop else None
    return _Fragmented(
        counts=counts,
        signatures=signatures,
        top=top,
        top_n=top_n,
        limit=limit,
        seen=seen,
        tripped=tripped,
        could_not_trip=not tripped and (seen is None or seen < limit),
        stopped_by=stopped_by if stopped_by in _DESIGNED_STOP_EVENTS else None,
    )


def _finding(key: tuple[str, str, str], f: _Fragmented) -> Finding:
    """Phase 3: the finding; an error when the run's breaker could not trip, a warning
    when it did, information when a stop ended the loop anyway."""
    run_id, scope, node = key
    counts, seen, stopped_by = f.counts, f.seen, f.stopped_by
    where = in_scope(scope)
    summary = (
        f"{node}{where} failed {counts.total()} times with {len(counts)} different reasons "
        f"that are only {plural(len(f.signatures), 'canonical failure')}; the top one repeated "
        f"{f.top_n} times (limit {f.limit})"
        + (
            f" yet the run's own breaker counted at most {seen}"
            if f.could_not_trip and seen is not None
            else " and no breaker counted it"
            if f.could_not_trip
            else ""
        )
        + (f"; {stopped_by} stopped the loop" if stopped_by else "")
        + "; count failures by canonical signature (strip ids, paths, numbers) "
        "so the cycle breaker can trip"
    )
    if stopped_by is not None:
        severity = Severity.INFO
    else:
        severity = Severity.ERROR if f.could_not_trip else Severity.WARNING
    return Finding(
        code="fragmented_failure_signatures",
        # The breaker that should have stopped the loop could not: the incident's
        # scaffold churn. When the run's own breaker tripped anyway it is a warning.
        severity=severity,
        summary=summary,
        run_id=run_id,
        scope=scope,
        node_id=node,
        evidence={
            "failures": counts.total(),
            "unique_reasons": len(counts),
            "canonical_signatures": len(f.signatures),
            "top_signature": f.top,
            "top_signature_count": f.top_n,
            "breaker_limit": f.limit,
            "max_signature_count_seen": seen,
            "breaker_tripped": bool(f.tripped),
            "stopped_by": stopped_by,
        },
    )
