"""Every fixture case under ``fixtures/cases/`` diagnoses to what its ``expected.json`` says.

A case is ``fixtures/cases/<name>/run/<run_id>/`` (a run directory) plus ``expected.json``:

``run_id``, ``now`` (the pinned clock, RFC 3339), optional ``config`` (DoctorConfig fields),
optional ``state``, ``findings`` (each must match some finding on ``code`` and, when given,
``scope``, ``node_id``, ``severity``, ``repair`` and a subset of ``evidence``), optional
``absent`` (codes that must not be reported) and ``max_severity`` (nothing above it).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from doctor import DoctorConfig, Severity, diagnose

CASES = Path(__file__).resolve().parents[2] / "fixtures" / "cases"
CASE_DIRS = sorted(p.parent for p in CASES.glob("*/expected.json"))


def _matches(expected: dict[str, Any], actual: dict[str, Any]) -> bool:
    for key in ("code", "scope", "node_id", "severity", "repair"):
        if key in expected and expected[key] != actual[key]:
            return False
    return all(actual["evidence"].get(k) == v for k, v in expected.get("evidence", {}).items())


def test_there_are_fixture_cases() -> None:
    assert len(CASE_DIRS) >= 1


@pytest.mark.parametrize("case", CASE_DIRS, ids=[p.name for p in CASE_DIRS])
def test_case_diagnoses_as_expected(case: Path) -> None:
    spec = json.loads((case / "expected.json").read_text())
    now = datetime.fromisoformat(spec["now"].replace("Z", "+00:00")).timestamp()
    config = DoctorConfig(roots=(case / "run",), now=now, **spec.get("config", {}))
    result = diagnose(spec["run_id"], config).to_json()
    findings = result["findings"]
    if "state" in spec:
        assert result["state"] == spec["state"]
    for want in spec["findings"]:
        assert any(_matches(want, got) for got in findings), (
            f"no finding matches {want}; got {json.dumps(findings, indent=1)}"
        )
    reported = {f["code"] for f in findings}
    for code in spec.get("absent", []):
        assert code not in reported, f"{code} reported: {findings}"
    if "max_severity" in spec:
        limit = Severity.parse(spec["max_severity"])
        over = [f for f in findings if Severity.parse(f["severity"]) > limit]
        assert not over, f"findings above {spec['max_severity']}: {over}"
