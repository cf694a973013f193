"""``rundoctor.errors``: the one way every package finds and writes "did you mean"."""

from __future__ import annotations

import ast
from pathlib import Path

from rundoctor.errors import SUGGESTION_CUTOFF, close_matches, did_you_mean

REPO = Path(__file__).resolve().parents[2]


def test_one_typo_in_a_run_id_is_suggested_and_another_run_is_not() -> None:
    runs = ["01KH3DN4STSZ3MVKB58YY6RE57", "01KH3F0000000000000000ZZZZ"]
    assert close_matches("01KH3DN4STSZ3MVKB58YY6RE75", runs) == [runs[0]]
    assert close_matches("healthy01", runs) == []


def test_at_most_three_suggestions_best_first() -> None:
    known = ["idle_gap", "idle_gaps", "idle_gap2", "idle_grip", "torn_artifact"]
    found = close_matches("idle_gap", known)
    assert found[0] == "idle_gap" and len(found) == 3
    assert close_matches("idle_gap", known, n=1) == ["idle_gap"]


def test_the_cutoff_is_difflibs_own_default() -> None:
    # One cutoff for every caller; difflib's default is the documented choice.
    assert SUGGESTION_CUTOFF == 0.6


def test_the_suffix_quotes_each_name_and_is_empty_without_any() -> None:
    assert did_you_mean(["a b", "c'd"]) == " (did you mean 'a b' or \"c'd\"?)"
    assert did_you_mean([]) == ""


def test_difflib_is_imported_by_the_base_alone() -> None:
    users = sorted(
        str(path.relative_to(REPO))
        for package in ("rundoctor", "executor", "doctor", "reports", "chaos")
        for path in (REPO / package).rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if (isinstance(node, ast.Import) and any(a.name == "difflib" for a in node.names))
        or (isinstance(node, ast.ImportFrom) and node.module == "difflib")
    )
    assert users == ["rundoctor/errors.py"]
