"""Shared test configuration: where fixtures live, and a pinned clock."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CASES = REPO / "fixtures" / "cases"


@pytest.fixture
def cases_dir() -> Path:
    return CASES
