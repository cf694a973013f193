"""Findings and diagnoses as data: the shapes of ``shared/FINDINGS.md``.

Detectors return :class:`Finding` records; :class:`Diagnosis` is one run's result and renders
to the ``rundoctor.diagnosis/1`` JSON contract with :meth:`Diagnosis.to_json`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Counted nouns are the base's (one way for every package); the doctor's modules take them
# from here with the rest of the model.
from rundoctor.words import noun, plural

__all__ = [
    "DIAGNOSIS_SCHEMA",
    "REPAIRS",
    "RUN_STATES",
    "Diagnosis",
    "Finding",
    "Severity",
    "noun",
    "plural",
]

DIAGNOSIS_SCHEMA = "rundoctor.diagnosis/1"
RUN_STATES = ("running", "succeeded", "failed", "canceled", "stalled", "orphaned")
REPAIRS = ("terminalize", "ingest_status", "reclaim", "reconcile", "truncate_torn_line")


class Severity(enum.IntEnum):
    """Ordered severities; comparisons follow the order below."""

    INFO = 0
    WARNING = 1
    ERROR = 2
    CRITICAL = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        """Parse a lower-case label.

        >>> Severity.parse("error") > Severity.WARNING
        True
        """
        return cls[text.strip().upper()]


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing wrong with a run (or a fleet), with the evidence that shows it.

    ``run_id`` is ``None`` for fleet-wide findings (e.g. an idle gap across all runs).
    """

    code: str
    severity: Severity
    summary: str
    evidence: Mapping[str, Any]
    run_id: str | None = None
    scope: str = ""
    node_id: str | None = None
    repair: str | None = None

    def __post_init__(self) -> None:
        if self.repair is not None and self.repair not in REPAIRS:
            raise ValueError(f"unknown repair {self.repair!r}; expected one of {REPAIRS}")

    def to_json(self) -> dict[str, Any]:
        """The finding object of FINDINGS.md: no ``run_id`` (a scan lists a run's findings
        under that run, and its fleet ``findings`` are those of no run)."""
        return {
            "code": self.code,
            "severity": self.severity.label,
            "scope": self.scope,
            "node_id": self.node_id,
            "summary": self.summary,
            "evidence": dict(self.evidence),
            "repair": self.repair,
        }


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """The diagnosis of one run directory."""

    run_id: str
    path: str
    layout: str
    state: str
    facts: Mapping[str, Any]
    findings: tuple[Finding, ...] = field(default_factory=tuple)

    @property
    def worst(self) -> Severity | None:
        return max((f.severity for f in self.findings), default=None)

    @property
    def exit_code(self) -> int:
        """0 when nothing is at ``error`` or above, else 1 (FINDINGS.md, exit codes)."""
        worst = self.worst
        return 1 if worst is not None and worst >= Severity.ERROR else 0

    def counts(self) -> dict[str, int]:
        """Findings per severity label, every label present."""
        out = {s.label: 0 for s in Severity}
        for f in self.findings:
            out[f.severity.label] += 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": DIAGNOSIS_SCHEMA,
            "run_id": self.run_id,
            "path": self.path,
            "layout": self.layout,
            "state": self.state,
            "facts": dict(self.facts),
            "findings": [f.to_json() for f in self.findings],
        }
