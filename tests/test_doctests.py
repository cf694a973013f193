"""Every docstring example in every module of the four packages runs and passes.

pytest collects only ``tests/``, so a module's examples run only when a test runs them. This
one walks the packages instead of listing modules, so a new module's examples cannot be
forgotten.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
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


#: Public functions without a runnable example, each with the reason.
NO_EXAMPLE = {
    # A campaign starts worker processes and runs for seconds, under a latency bound measured
    # on the machine's clock: tests/chaos/test_campaign.py runs it, marked `chaos`.
    "chaos.run_campaign",
}


def _front_doors() -> list[str]:
    """The modules whose ``__all__`` is public: each package's front door, the base's own
    modules (``rundoctor`` is imported by module: ``rundoctor.errors``...) and the command-line
    kit ``executor.console``, the one public module of a package."""
    base = importlib.import_module("rundoctor").__path__
    modules = [m.name for m in pkgutil.iter_modules(base) if not m.name.startswith("_")]
    return [*PACKAGES[1:], "executor.console", *(f"rundoctor.{m}" for m in sorted(modules))]


def test_every_public_function_has_a_docstring_example() -> None:
    # STYLE.md 14: "public functions carry a docstring with a runnable example"; some 36 did
    # not (the examples run in the test above).
    missing = []
    for name in _front_doors():
        module = importlib.import_module(name)
        for public in getattr(module, "__all__", ()):
            value = getattr(module, public)
            if inspect.isfunction(value) and ">>>" not in (value.__doc__ or ""):
                missing.append(f"{name}.{public}")
    assert sorted(set(missing) - NO_EXAMPLE) == []
