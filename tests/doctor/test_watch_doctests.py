"""The examples in the docstrings of the watch, metrics and timeline modules run (pytest
collects only ``tests/``)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = (
    "doctor._atomic",
    "doctor._cli_watch",
    "doctor._metrics",
    "doctor._notify",
    "doctor._timeline",
    "doctor._watch",
    "reports._html",
    "reports._svg",
)


@pytest.mark.parametrize("name", MODULES)
def test_the_docstring_examples_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
