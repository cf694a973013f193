"""Every docstring example in every module of the four packages runs and passes.

pytest collects only ``tests/``, so a module's examples run only when a test runs them. This
one walks the packages instead of listing modules, so a new module's examples cannot be
forgotten.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

PACKAGES = ("rundoctor", "doctor", "executor", "chaos", "reports")


def _modules() -> list[str]:
    names = []
    for package in PACKAGES:
        names.append(package)
        path = importlib.import_module(package).__path__
        found = pkgutil.walk_packages(path, prefix=f"{package}.")
        # ``__main__`` runs its command line when imported; it holds no examples.
        names += [m.name for m in found if not m.name.endswith(".__main__")]
    return sorted(names)


def test_every_package_has_docstring_examples() -> None:
    attempted = {p: 0 for p in PACKAGES}
    for name in _modules():
        finder = doctest.DocTestFinder()
        tests = finder.find(importlib.import_module(name))
        attempted[name.split(".")[0]] += sum(len(t.examples) for t in tests)
    assert all(attempted.values()), attempted


@pytest.mark.parametrize("name", _modules())
def test_the_docstring_examples_of_the_module_pass(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
