"""The chaos report: ``report.md`` (through the ``reports`` templates) and ``report.json``.

``report.json`` (schema ``rundoctor.chaos/1``) holds at least ``seed``, ``duration_s``,
``faults`` (one object per injected fault: ``kind``, ``target``, ``at`` in seconds after the
start, plus ``time``, ``detail``, ``runs`` and ``held``; a failed one's ``detail`` has its
``error``), ``skipped`` (every fault that did not fire: ``kind``, ``at``, ``time``,
``outcome`` — ``skipped``, it found no target, ``unavailable``, the queue's database was
away, or ``not_applicable``, the campaign cannot apply it — and ``reason``: ``no candidate``,
the driver's line or what the fault needs), ``fault_kinds`` (per selected fault:
``injected``, ``failed``, ``skipped`` for want of a target, ``unavailable``,
``not_applicable``, counting the same records), ``never_fired`` (each selected fault that hit
nothing, and why), ``tickets`` (counts by final status)
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
from chaos._injection import DATABASE_UNAVAILABLE, NOT_APPLICABLE
from reports import (
    ChaosContext,
    FaultKindRow,
    FaultRow,
    InvariantView,
    LatencyRow,
    NeverFiredRow,
    RecoveryRow,
    SkipRow,
    Text,
    TicketCount,
    render_chaos,
)
from rundoctor.atomic import replace_file
from rundoctor.passwords import redact
from rundoctor.terminal import printable

if TYPE_CHECKING:
    from chaos._campaign import CampaignResult

__all__ = [
    "OUTCOMES",
    "REPORT_SCHEMA",
    "chaos_context",
    "invariants_json",
    "never_fired",
    "report_json",
    "write_report",
]

REPORT_SCHEMA = "rundoctor.chaos/1"
#: Queue events that show a recovery (or a refusal that protected one).
RECOVERIES = ("reclaimed", "fenced", "quarantined", "released", "heartbeat_gap", "canceled")
_TIMELINE_ROWS = 60
#: How a scheduled fault ended, as ``fault_kinds`` counts it (:func:`_outcome`).
OUTCOMES = ("injected", "failed", "skipped", "unavailable", "not_applicable")


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
    """The campaign as the ``report.json`` document.

    >>> import tempfile
    >>> from pathlib import Path
    >>> from chaos import CampaignConfig, CampaignResult, History, check
    >>> out = Path(tempfile.mkdtemp())
    >>> result = CampaignResult(CampaignConfig(seed=7, out=out), History(()), check(History(())),
    ...                         1.5, out)
    >>> data = report_json(result)
    >>> data["schema"], data["seed"], data["ok"]
    ('rundoctor.chaos/1', 7, True)
    """
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
            name: {k: n[k] for k in OUTCOMES} for name, n in _fault_counts(result).items()
        },
        "never_fired": [{"kind": kind, "why": why} for kind, why in never_fired(result)],
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
    """The report template's context for a finished campaign.

    >>> import tempfile
    >>> from pathlib import Path
    >>> from chaos import CampaignConfig, CampaignResult, History, check
    >>> out = Path(tempfile.mkdtemp())
    >>> result = CampaignResult(CampaignConfig(seed=7, out=out), History(()), check(History(())),
    ...                         1.5, out)
    >>> context = chaos_context(result)
    >>> context.seed, context.ok
    (7, True)
    """
    cfg = result.config
    meta = result.history.meta
    injected = _injected(result)
    return ChaosContext(
        seed=cfg.seed,
        duration_s=cfg.duration_s,
        elapsed_s=round(result.elapsed_s, 3),
        workers=cfg.workers,
        db=Text(printable(redact(meta.db, drop=True)) if meta is not None else ""),
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
        never_fired=tuple(NeverFiredRow(kind, Text(why)) for kind, why in never_fired(result)),
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
    ``skipped`` (no target), ``unavailable`` (skipped: the database was away),
    ``not_applicable`` (skipped: the campaign cannot apply it), or None."""
    if r.phase == "inject":
        return "failed" if "error" in r.detail else "injected"
    if r.phase == "skip":
        kinds = {DATABASE_UNAVAILABLE: "unavailable", NOT_APPLICABLE: "not_applicable"}
        return kinds.get(r.target, "skipped")
    return None


def never_fired(result: CampaignResult) -> list[tuple[str, str]]:
    """Each selected fault that hit nothing in the whole campaign (no injection, failed or
    not), with why: the campaign cannot apply it (what it needs), it found no target, the
    database was away, or it was never tried (the campaign stopped first). A campaign whose
    invariants held says nothing about these faults, and its report says so."""
    reasons: dict[str, list[str]] = {}
    for r in result.history.of(FaultRecord):
        if r.phase == "skip":
            why = str(r.detail.get("reason", ""))
            if r.target == NOT_APPLICABLE:
                text = f"not applicable: {why}"
            elif r.target == DATABASE_UNAVAILABLE:
                text = f"skipped while the database was unavailable ({why})"
            else:
                text = "no target turned up while the campaign ran"
            reasons.setdefault(r.fault, []).append(text)
    meta = result.history.meta
    drawn = {p.fault for p in meta.schedule} if meta is not None else set()
    out: list[tuple[str, str]] = []
    for name, n in _fault_counts(result).items():
        if n["injected"] or n["failed"]:
            continue
        said = list(dict.fromkeys(reasons.get(name, ())))
        if not said:
            said = ["scheduled, but never tried" if name in drawn else "never scheduled"]
        out.append((name, "; ".join(said)))
    return out


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
        FaultKindRow(
            name,
            n["injected"],
            n["failed"],
            n["skipped"],
            n["unavailable"],
            n["not_applicable"],
            causes[name],
        )
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
    """Write ``history.ndjson``, ``report.json`` and ``report.md`` into the campaign's ``out``.

    >>> import tempfile
    >>> from pathlib import Path
    >>> from chaos import CampaignConfig, CampaignResult, History, check
    >>> out = Path(tempfile.mkdtemp())
    >>> result = CampaignResult(CampaignConfig(seed=7, out=out), History(()), check(History(())),
    ...                         1.5, out)
    >>> [p.name for p in write_report(result)]
    ['history.ndjson', 'report.json', 'report.md']
    """
    out = result.out
    write_history(out / "history.ndjson", result.history.records)
    replace_file(out / "report.json", json.dumps(report_json(result), indent=2, default=str) + "\n")
    # A byte that was not UTF-8 (a path's) is written as an escape, never left to fail the write.
    report = render_chaos(chaos_context(result)).encode("utf-8", "backslashreplace")
    replace_file(out / "report.md", report)
    return out / "history.ndjson", out / "report.json", out / "report.md"
