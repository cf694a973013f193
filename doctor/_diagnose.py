"""Diagnose one run, or scan every run under the roots."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from doctor._config import DoctorConfig
from doctor._detectors import Context, select
from doctor._errors import UsageError
from doctor._facts import compute_facts
from doctor._ingest import load_runs
from doctor._layout import discover, list_run_dirs, locate_run
from doctor._model import Diagnosis, Finding, Severity

__all__ = ["SCAN_SCHEMA", "ScanResult", "diagnose", "diagnose_path", "scan"]

SCAN_SCHEMA = "rundoctor.scan/1"
Progress = Callable[[int, int], None]


def _order(findings: Sequence[Finding]) -> tuple[Finding, ...]:
    return tuple(sorted(findings, key=lambda f: (-f.severity, f.scope, f.code, f.node_id or "")))


def _run_detectors(ctx: Context) -> list[Finding]:
    findings: list[Finding] = []
    for detector in select(ctx.config.checks):
        findings.extend(detector(ctx))
    return findings


def diagnose_path(path: Path, config: DoctorConfig) -> Diagnosis:
    """Diagnose the run directory at ``path``."""
    layout = discover(path)
    tables = load_runs([layout], keep_raw=True, threads=config.threads)
    facts = compute_facts(tables, config)
    findings = _run_detectors(Context(tables, facts, config))
    run_facts = facts[layout.run_id]
    return Diagnosis(
        run_id=layout.run_id,
        path=str(layout.path.resolve()),
        layout=layout.layout,
        state=run_facts["_state"],
        facts=run_facts.public(),
        findings=_order([f for f in findings if f.run_id in (layout.run_id, None)]),
    )


def diagnose(run_id: str, config: DoctorConfig) -> Diagnosis:
    """Diagnose the run called ``run_id`` under ``config.roots``.

    Unknown ids raise :class:`doctor.RunNotFound` with the closest ids; ids that could name
    something outside a root raise :class:`doctor.UnsafeRunId`.
    """
    if not config.roots:
        raise UsageError("no runs root: pass --root DIR or set RUNDOCTOR_ROOTS")
    return diagnose_path(locate_run(run_id, config.roots), config)


@dataclass(frozen=True)
class ScanResult:
    """Every run under the roots, fleet facts, and cross-run findings."""

    roots: tuple[str, ...]
    diagnoses: tuple[Diagnosis, ...]
    fleet: dict[str, Any]
    findings: tuple[Finding, ...] = field(default_factory=tuple)

    @property
    def exit_code(self) -> int:
        worst = max(
            [f.severity for d in self.diagnoses for f in d.findings]
            + [f.severity for f in self.findings],
            default=None,
        )
        return 1 if worst is not None and worst >= Severity.ERROR else 0

    def to_json(self) -> dict[str, Any]:
        runs = []
        for d in self.diagnoses:
            worst = d.findings[0] if d.findings else None
            runs.append(
                {
                    "run_id": d.run_id,
                    "path": d.path,
                    "layout": d.layout,
                    "state": d.state,
                    "counts": d.counts(),
                    "worst": None
                    if worst is None
                    else {"code": worst.code, "severity": worst.severity.label,
                          "summary": worst.summary},
                    "findings": [f.to_json() for f in d.findings],
                }
            )
        return {
            "schema": SCAN_SCHEMA,
            "roots": list(self.roots),
            "runs": runs,
            "fleet": self.fleet,
            "findings": [f.to_json() for f in self.findings],
        }


def scan(
    config: DoctorConfig, *, since: float | None = None, progress: Progress | None = None
) -> ScanResult:
    """Diagnose every run under ``config.roots`` (started at or after ``since``, if given)."""
    if not config.roots:
        raise UsageError("no runs root: pass --root DIR or set RUNDOCTOR_ROOTS")
    layouts = [discover(p) for p in list_run_dirs(config.roots)]
    tables = load_runs(layouts, keep_raw=False, threads=config.threads, progress=progress)
    facts = compute_facts(tables, config)
    findings = _run_detectors(Context(tables, facts, config))
    by_run: dict[str | None, list[Finding]] = {}
    for f in findings:
        by_run.setdefault(f.run_id, []).append(f)
    diagnoses = []
    for layout in layouts:
        rf = facts[layout.run_id]
        if since is not None and _started_before(rf.get("started_at"), since):
            continue
        diagnoses.append(
            Diagnosis(
                run_id=layout.run_id,
                path=str(layout.path.resolve()),
                layout=layout.layout,
                state=rf["_state"],
                facts=rf.public(),
                findings=_order(by_run.get(layout.run_id, [])),
            )
        )
    by_state: dict[str, int] = {}
    for d in diagnoses:
        by_state[d.state] = by_state.get(d.state, 0) + 1
    fleet = {
        "runs": len(diagnoses),
        "by_state": by_state,
        "events": sum(int(d.facts.get("events") or 0) for d in diagnoses),
        "cost_usd": round(sum(float(d.facts.get("cost_usd") or 0) for d in diagnoses), 8),
    }
    return ScanResult(
        roots=tuple(str(r) for r in config.roots),
        diagnoses=tuple(diagnoses),
        fleet=fleet,
        findings=_order(by_run.get(None, [])),
    )


def _started_before(started_at: Any, since: float) -> bool:
    from datetime import datetime

    if not isinstance(started_at, str):
        return False
    try:
        ts = datetime.fromisoformat(started_at.replace("Z", "+00:00")[:26] + "+00:00"
                                    if "." in started_at else started_at.replace("Z", "+00:00"))
    except ValueError:
        return False
    return ts.timestamp() < since
