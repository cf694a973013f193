"""The examples in the runner's docstrings run (pytest collects only ``tests/``)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = (
    "executor._artifacts",
    "executor._config",
    "executor._events",
    "executor._graph",
    "executor._runner",
    "executor._stage",
    "fixtures.fake_agent",
)


@pytest.mark.parametrize("name", MODULES)
def test_the_docstring_examples_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
