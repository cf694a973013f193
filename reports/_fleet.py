"""Build a :class:`reports.FleetContext` from a :class:`doctor.ScanResult`.

Only the scan is read: each run's state, findings and facts (``failure_reasons``, a report
extra), the fleet facts and the fleet-wide findings. Throughput comes from the queue, when one
is given (:func:`reports.queue_throughput`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

from doctor import Diagnosis, ScanResult, Severity, signature_groups
from reports._context import (
    FleetContext,
    IdleGapRow,
    SignatureRow,
    StateCount,
    WorstRun,
    as_float,
    as_int,
    as_text,
    severity_counts,
)
from reports._escape import Text
from reports._throughput import Throughput

__all__ = ["MAX_IDLE_GAPS", "MAX_SIGNATURES", "MAX_WORST", "fleet_context"]

#: Rows of the worst-runs table.
MAX_WORST = 10
#: Rows of the signature Pareto table.
MAX_SIGNATURES = 10
#: Rows of the idle-gap table.
MAX_IDLE_GAPS = 10


def _worst(diagnoses: Sequence[Diagnosis]) -> list[WorstRun]:
    rows = []
    for d in diagnoses:
        if not d.findings:
            continue
        top = max(d.findings, key=lambda f: f.severity)  # the first of the most severe
        rows.append(
            WorstRun(
                run_id=Text(d.run_id),
                state=Text(d.state),
                severity=top.severity.label,
                code=Text(top.code),
                summary=Text(top.summary),
                errors=sum(1 for f in d.findings if f.severity >= Severity.ERROR),
                findings=len(d.findings),
            )
        )
    rows.sort(key=lambda r: (-Severity.parse(r.severity), -r.errors, -r.findings, r.run_id))
    return rows


def _signatures(diagnoses: Sequence[Diagnosis]) -> tuple[list[SignatureRow], int, int]:
    """The Pareto rows (all of them), the number of failures, the number of classes."""
    texts: list[str] = []
    owners: list[str] = []
    for d in diagnoses:
        for row in d.facts.get("failure_reasons") or []:
            n = as_int(row.get("count"))
            texts.extend([str(row.get("reason") or "")] * n)
            owners.extend([d.run_id] * n)
    labels = signature_groups(texts)
    counts = Counter(labels)
    runs: dict[str, set[str]] = defaultdict(set)
    example: dict[str, str] = {}
    for label, text, run_id in zip(labels, texts, owners, strict=True):
        runs[label].add(run_id)
        example.setdefault(label, text)
    total = len(texts)
    rows = []
    cumulative = 0
    for rank, (label, n) in enumerate(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])), 1):
        cumulative += n
        rows.append(
            SignatureRow(
                rank=rank,
                signature=Text(label),
                count=n,
                share=round(n / total, 4),
                cumulative=round(cumulative / total, 4),
                runs=len(runs[label]),
                example=Text(example[label]),
            )
        )
    return rows, total, len(counts)


def _idle_gaps(scan: ScanResult) -> list[IdleGapRow]:
    found = [
        (f, "queue" if f.evidence.get("source") == "queue" else "all runs") for f in scan.findings
    ]
    found += [(f, d.run_id) for d in scan.diagnoses for f in d.findings]
    rows = [
        IdleGapRow(
            where=Text(where),
            start=as_text(f.evidence.get("start")),
            end=as_text(f.evidence.get("end")),
            duration_s=as_float(f.evidence.get("duration_s")) or 0.0,
            pending=as_int(f.evidence.get("pending")),
            alive_runs=as_int(f.evidence.get("alive_runs")),
        )
        for f, where in found
        if f.code == "idle_gap"
    ]
    rows.sort(key=lambda r: (-r.duration_s, r.start, r.where))
    return rows


def fleet_context(scan: ScanResult, *, throughput: Throughput | None = None) -> FleetContext:
    """The fleet report's context, from one scan (and the queue's throughput, if any).

    >>> from doctor import ScanResult
    >>> ctx = fleet_context(ScanResult(("/runs",), (), {"runs": 0}))
    >>> ctx.runs, ctx.signatures, ctx.throughput is None
    (0, (), True)
    """
    fleet = scan.fleet
    runs = as_int(fleet.get("runs"))
    by_state = fleet.get("by_state") or {}
    states = tuple(
        StateCount(Text(str(s)), as_int(n), round(as_int(n) / runs, 4) if runs else 0.0)
        for s, n in sorted(by_state.items(), key=lambda kv: (-as_int(kv[1]), str(kv[0])))
    )
    worst = _worst(scan.diagnoses)
    signatures, failures, classes = _signatures(scan.diagnoses)
    gaps = _idle_gaps(scan)
    every = [f for d in scan.diagnoses for f in d.findings] + list(scan.findings)
    return FleetContext(
        roots=tuple(Text(r) for r in scan.roots),
        runs=runs,
        events=as_int(fleet.get("events")),
        cost_usd=as_float(fleet.get("cost_usd")),
        read=as_int(fleet.get("read")),
        reused=as_int(fleet.get("reused")),
        states=states,
        counts=severity_counts(every),
        worst=tuple(worst[:MAX_WORST]),
        worst_left_out=max(len(worst) - MAX_WORST, 0),
        failures=failures,
        signatures=tuple(signatures[:MAX_SIGNATURES]),
        signatures_left_out=max(classes - MAX_SIGNATURES, 0),
        idle_gaps=tuple(gaps[:MAX_IDLE_GAPS]),
        idle_gaps_left_out=max(len(gaps) - MAX_IDLE_GAPS, 0),
        throughput=throughput,
        notes=tuple(
            Text(str(n)) for key in ("root_notes", "cache_notes") for n in fleet.get(key) or ()
        ),
    )
