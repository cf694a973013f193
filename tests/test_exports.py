"""Each package's front door: ``__all__`` is sorted, unique and complete.

Modelled on encode/httpx ``tests/test_exported_members.py``.
"""

from __future__ import annotations

import importlib
import re
import types

import pytest

PACKAGES = ("rundoctor", "doctor", "executor", "chaos", "reports")


def _package(name: str) -> types.ModuleType:
    return importlib.import_module(name)


def _isort_key(name: str) -> tuple[int, list[int | str]]:
    """Ruff's RUF022 ("isort-style") order: CONSTANTS, then Classes, then functions.

    Within each group a natural sort (digits compare as numbers), so ``__all__`` can be kept
    sorted by ``ruff check --fix`` and this test agrees with it.
    """
    if name.isupper() and len(name) > 1:
        group = 0
    elif name[:1].isupper():
        group = 1
    else:
        group = 2
    natural = [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
    return group, natural


def test_the_sort_key_puts_constants_then_classes_then_functions_first() -> None:
    names = ["scan", "Tables", "DETECTORS", "Context", "check2", "check10", "X"]
    assert sorted(names, key=_isort_key) == [
        "DETECTORS",
        "Context",
        "Tables",
        "X",
        "check2",
        "check10",
        "scan",
    ]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_a_sorted_list_of_strings(name: str) -> None:
    exported = _package(name).__all__
    assert all(isinstance(n, str) for n in exported)
    assert list(exported) == sorted(exported, key=_isort_key)


@pytest.mark.parametrize("name", PACKAGES)
def test_all_has_no_duplicates(name: str) -> None:
    exported = _package(name).__all__
    assert len(set(exported)) == len(exported)


@pytest.mark.parametrize("name", PACKAGES)
def test_every_name_in_all_exists(name: str) -> None:
    package = _package(name)
    missing = [n for n in package.__all__ if not hasattr(package, n)]
    assert missing == []


@pytest.mark.parametrize("name", PACKAGES)
def test_the_package_has_a_docstring(name: str) -> None:
    assert (_package(name).__doc__ or "").strip()


def test_every_public_name_of_doctor_is_exported() -> None:
    package = _package("doctor")
    public = {
        n
        for n, value in vars(package).items()
        if not n.startswith("_")
        # Submodules bound by importing them (doctor._x is private; none is public today).
        and not isinstance(value, types.ModuleType)
        and n != "annotations"
    }
    assert sorted(public - set(package.__all__)) == []


def test_every_public_doctor_name_is_documented_in_its_module() -> None:
    package = _package("doctor")
    undocumented = [
        n
        for n in package.__all__
        if callable(getattr(package, n))
        and isinstance(getattr(package, n), type | types.FunctionType)
        and not (getattr(package, n).__doc__ or "").strip()
    ]
    assert undocumented == []
