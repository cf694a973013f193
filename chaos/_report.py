"""The chaos report: ``report.md`` (through the ``reports`` templates) and ``report.json``.

``report.json`` (schema ``rundoctor.chaos/1``) holds at least ``seed``, ``duration_s``,
``faults`` (one object per injected fault: ``kind``, ``target``, ``at`` in seconds after the
start, plus ``time``, ``detail``, ``runs`` and ``held``; a failed one's ``detail`` has its
``error``), ``skipped`` (every fault that did not fire: ``kind``, ``at``, ``time``,
``outcome`` — ``skipped``, it found no target, or ``unavailable``, the queue's database was
away — and ``reason``: ``no candidate`` or the driver's line), ``fault_kinds`` (per selected
fault: ``injected``, ``failed``, ``skipped`` for want of a target, ``unavailable``, counting
the same records), ``tickets`` (counts by final status)
and ``invariants`` (``name``, ``ok``, ``summary``, ``violations``, ``witness``: the history
records that prove the first violation), and the ``replay`` command. ``report.md`` is the same
campaign for people. Both are written next to ``history.ndjson``, each atomically.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chaos._evidence import Verdict
from chaos._faults import FAULTS
from chaos._history import FaultRecord, QueueEvent, TicketRecord, to_json, to_line, write_history
from chaos._injection import DATABASE_UNAVAILABLE
from reports import (
    ChaosContext,
    FaultKindRow,
    FaultRow,
    InvariantView,
    LatencyRow,
    RecoveryRow,
    SkipRow,
    Text,
    TicketCount,
    render_chaos,
)
from rundoctor.atomic import replace_file
from rundoctor.passwords import redact

if TYPE_CHECKING:
    from chaos._campaign import CampaignResult

__all__ = ["REPORT_SCHEMA", "chaos_context", "invariants_json", "report_json", "write_report"]

REPORT_SCHEMA = "rundoctor.chaos/1"
#: Queue events that show a recovery (or a refusal that protected one).
RECOVERIES = ("reclaimed", "fenced", "quarantined", "released", "heartbeat_gap", "canceled")
_TIMELINE_ROWS = 60


def _start(result: CampaignResult) -> float:
    meta = result.history.meta
    return meta.time if meta is not None else 0.0


def _injected(result: CampaignResult) -> list[FaultRecord]:
    return [f for f in result.history.of(FaultRecord) if f.phase == "inject"]


def _tickets(result: CampaignResult) -> dict[str, int]:
    return dict(sorted(Counter(t.status for t in result.history.of(TicketRecord)).items()))


def _recoveries(result: CampaignResult) -> dict[str, int]:
    counts = Counter(e.event for e in result.history.of(QueueEvent) if e.event in RECOVERIES)
    return {name: counts[name] for name in RECOVERIES}


def _latency(verdicts: tuple[Verdict, ...]) -> dict[str, Any]:
    return next((v.stats for v in verdicts if v.name == "reclaim_latency"), {})


def report_json(result: CampaignResult) -> dict[str, Any]:
    """The campaign as the ``report.json`` document."""
    cfg, t0 = result.config, _start(result)
    meta = result.history.meta
    return {
        "schema": REPORT_SCHEMA,
        "seed": cfg.seed,
        "duration_s": cfg.duration_s,
        "elapsed_s": round(result.elapsed_s, 3),
        "workers": cfg.workers,
        "db": redact(meta.db, drop=True) if meta is not None else "",
        "faults_selected": list(cfg.fault_list),
        "ok": result.ok,
        "replay": cfg.replay_command(),
        "faults": [
            {
                "kind": f.fault,
                "target": f.target,
                "at": round(f.time - t0, 3),
                "time": f.time,
                "detail": f.detail,
                "runs": list(f.runs),
                "held": [{"ticket": h.ticket, "epoch": h.epoch} for h in f.held],
            }
            for f in _injected(result)
        ],
        "skipped": [
            {
                "kind": f.fault,
                "at": round(f.time - t0, 3),
                "time": f.time,
                "outcome": _outcome(f),
                "reason": f.detail.get("reason", f.target),
            }
            for f in result.history.of(FaultRecord)
            if f.phase == "skip"
        ],
        "fault_kinds": {
            name: {k: n[k] for k in ("injected", "failed", "skipped", "unavailable")}
            for name, n in _fault_counts(result).items()
        },
        "schedule": []
        if meta is None
        else [{"at": p.at, "fault": p.fault, "pick": p.pick} for p in meta.schedule],
        "tickets": _tickets(result),
        "recoveries": _recoveries(result),
        "latency": _latency(result.verdicts),
        "invariants": invariants_json(result.verdicts),
    }


def invariants_json(verdicts: tuple[Verdict, ...]) -> list[dict[str, Any]]:
    """The verdicts as ``report.json``'s ``invariants`` (also ``doctor chaos check --json``)."""
    return [
        {
            "name": v.name,
            "ok": v.ok,
            "summary": v.summary,
            "violations": v.violations,
            "witness": [to_json(r) for r in v.witness],
        }
        for v in verdicts
    ]


def chaos_context(result: CampaignResult) -> ChaosContext:
    """The report template's context for a finished campaign."""
    cfg = result.config
    meta = result.history.meta
    injected = _injected(result)
    return ChaosContext(
        seed=cfg.seed,
        duration_s=cfg.duration_s,
        elapsed_s=round(result.elapsed_s, 3),
        workers=cfg.workers,
        db=Text(redact(meta.db, drop=True) if meta is not None else ""),
        faults_selected=cfg.fault_list,
        ok=result.ok,
        violated=sum(1 for v in result.verdicts if not v.ok),
        replay=Text(cfg.replay_command()),
        tickets=tuple(TicketCount(s, n) for s, n in _tickets(result).items()),
        fault_kinds=_fault_kinds(result),
        faults=_fault_rows(injected[:_TIMELINE_ROWS], _start(result)),
        faults_left_out=max(0, len(injected) - _TIMELINE_ROWS),
        skips=tuple(
            SkipRow(round(f.time - _start(result), 3), f.fault, Text(f.detail.get("reason", "")))
            for f in _skips(result)[:_TIMELINE_ROWS]
        ),
        recoveries=tuple(RecoveryRow(e, n) for e, n in _recoveries(result).items()),
        latencies=_latency_rows(result.verdicts),
        invariants=tuple(
            InvariantView(
                v.name,
                v.ok,
                Text(v.summary),
                v.violations,
                tuple(Text(to_line(r).strip()) for r in v.witness),
            )
            for v in result.verdicts
        ),
    )


def _outcome(r: FaultRecord) -> str | None:
    """What a fault record counts as: ``injected``, ``failed`` (its injection met an error),
    ``skipped`` (no target), ``unavailable`` (skipped: the database was away), or None."""
    if r.phase == "inject":
        return "failed" if "error" in r.detail else "injected"
    if r.phase == "skip":
        return "unavailable" if r.target == DATABASE_UNAVAILABLE else "skipped"
    return None


def _fault_counts(result: CampaignResult) -> dict[str, Counter[str]]:
    """Per selected fault, in catalog order: its records counted by :func:`_outcome`."""
    counts: dict[str, Counter[str]] = {
        f.name: Counter() for f in FAULTS if f.name in result.config.fault_list
    }
    for r in result.history.of(FaultRecord):
        outcome = _outcome(r)
        if outcome is not None and r.fault in counts:
            counts[r.fault][outcome] += 1
    return counts


def _fault_kinds(result: CampaignResult) -> tuple[FaultKindRow, ...]:
    """Each selected fault: how often it hit, failed, was skipped; what it may cause."""
    causes = {f.name: tuple(sorted(f.may_cause)) for f in FAULTS}
    return tuple(
        FaultKindRow(name, n["injected"], n["failed"], n["skipped"], n["unavailable"], causes[name])
        for name, n in _fault_counts(result).items()
    )


def _skips(result: CampaignResult) -> list[FaultRecord]:
    """The faults the database's absence kept from firing."""
    return [r for r in result.history.of(FaultRecord) if _outcome(r) == "unavailable"]


def _fault_rows(injected: Sequence[FaultRecord], t0: float) -> tuple[FaultRow, ...]:
    """The injections, seconds after the start, with their targets and details."""
    return tuple(
        FaultRow(
            round(f.time - t0, 3),
            f.fault,
            Text(f.target),
            Text(json.dumps(f.detail, sort_keys=True)),
        )
        for f in injected
    )


def _latency_rows(verdicts: tuple[Verdict, ...]) -> tuple[LatencyRow, ...]:
    """The reclaim latency checker's statistics, one row per kind."""
    return tuple(
        LatencyRow(
            kind,
            int(row.get("n", 0)),
            row.get("p50_s"),
            row.get("p99_s"),
            row.get("max_s"),
            float(row.get("bound_p50_s", 0.0)),
            float(row.get("bound_p99_s", 0.0)),
        )
        for kind, row in _latency(verdicts).items()
    )


def write_report(result: CampaignResult) -> tuple[Path, Path, Path]:
    """Write ``history.ndjson``, ``report.json`` and ``report.md`` into the campaign's ``out``."""
    out = result.out
    write_history(out / "history.ndjson", result.history.records)
    replace_file(out / "report.json", json.dumps(report_json(result), indent=2, default=str) + "\n")
    replace_file(out / "report.md", render_chaos(chaos_context(result)))
    return out / "history.ndjson", out / "report.json", out / "report.md"
