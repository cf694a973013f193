"""The examples in the chaos docstrings run (pytest collects only ``tests/``)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import chaos

MODULES = sorted(
    f"chaos.{m.name}" for m in pkgutil.iter_modules(chaos.__path__) if m.name != "__main__"
)
WITHOUT_EXAMPLES = {
    # Fault modules: each is one function against a running campaign (tests/chaos/test_faults.py).
    "chaos._sigkill_stage",
    "chaos._sigkill_worker",
    "chaos._sigstop_worker",
    "chaos._sigterm_worker",
    "chaos._stall_database",
    "chaos._torn_write",
    "chaos._restart_database",
    "chaos._database_outage",
    "chaos._remove_pipeline",
    "chaos._kill_mid_write",
    "chaos._disk_full",
    "chaos._read_only_root",
    # Processes and whole campaigns: tests/chaos/test_campaign.py.
    "chaos._campaign",
    "chaos._cli",
    "chaos._collect",
    "chaos._report",
}


@pytest.mark.parametrize("name", [*MODULES, "reports._chaos"])
def test_the_docstring_examples_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0 or name in WITHOUT_EXAMPLES
