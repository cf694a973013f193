"""The base package stands on the standard library alone: importing every module of it loads
no other package (not ours, not a dependency)."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import rundoctor

CODE = """
import importlib, json, sys
before = set(sys.modules)
for name in sys.argv[1:]:
    importlib.import_module(name)
loaded = {m.split(".")[0] for m in set(sys.modules) - before}
print(json.dumps(sorted(loaded - set(sys.stdlib_module_names) - {"rundoctor"})))
"""


def test_every_rundoctor_module_imports_only_the_standard_library() -> None:
    names = [m.name for m in pkgutil.walk_packages(rundoctor.__path__, prefix="rundoctor.")]
    assert {"rundoctor.atomic", "rundoctor.liveness", "rundoctor.durations"} <= set(names)
    done = subprocess.run(
        [sys.executable, "-c", CODE, *names], capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout) == []
