"""`make demo` (README's first command): it ends with 0, and the commands it shows paste."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_demo_succeeds_and_every_command_it_shows_is_one_pasteable_line(
    tmp_path: Path,
) -> None:
    # Rich cut the commands it showed at 80 columns ("--root \n/work/…/runs --json | less"),
    # so a command copied from the demo's output broke in two. The out dir has a space.
    out = tmp_path / "demo out"
    code = f"import sys, pathlib, fixtures.demo as d; sys.exit(d.main(pathlib.Path({str(out)!r})))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True, text=True, cwd=REPO, timeout=600, check=False,
        env={**os.environ, "COLUMNS": "80", "NO_COLOR": "1", "TERM": "dumb"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "executor runs succeeded" in done.stdout
    lines = done.stdout.splitlines()
    shown = [line[2:] for line in lines if line.startswith("$ doctor ")]
    (tried,) = [line.removeprefix("Try: ") for line in lines if line.startswith("Try: ")]
    assert len(shown) == 4 and tried.endswith(" --json | less"), done.stdout
    for command in shown[2:]:  # the worker and tickets commands again: they read the queue
        again = subprocess.run(
            ["bash", "-c", command],
            capture_output=True, text=True, cwd=REPO, check=False,
            env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
        )  # fmt: skip
        assert again.returncode == 0, (command, again.stderr)
    pasted = subprocess.run(
        ["bash", "-c", tried.replace(" | less", "").replace(".venv/bin/doctor", "doctor", 1)],
        capture_output=True, text=True, cwd=REPO, check=False,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
    )  # fmt: skip
    assert pasted.returncode == 1, pasted.stderr  # the rogue run has findings
    assert '"run_id": "01KH3DN4STSZ3MVKB58YY6RE57"' in pasted.stdout
