"""``rundoctor.errors``: the one way every package finds and writes "did you mean"."""

from __future__ import annotations

import ast
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

from rundoctor.errors import SUGGESTION_CUTOFF, close_matches, did_you_mean

REPO = Path(__file__).resolve().parents[2]


def test_one_typo_in_a_run_id_is_suggested_and_another_run_is_not() -> None:
    runs = ["01KH3DN4STSZ3MVKB58YY6RE57", "01KH3F0000000000000000ZZZZ"]
    assert close_matches("01KH3DN4STSZ3MVKB58YY6RE75", runs) == [runs[0]]
    assert close_matches("healthy01", runs) == []


def test_at_most_three_suggestions_best_first() -> None:
    known = ["idle_gap", "idle_gaps", "idle_gap2", "idle_grip", "torn_artifact"]
    found = close_matches("idle_gap", known)
    assert found[0] == "idle_gap" and len(found) == 3
    assert close_matches("idle_gap", known, n=1) == ["idle_gap"]


def test_the_cutoff_is_difflibs_own_default() -> None:
    # One cutoff for every caller; difflib's default is the documented choice.
    assert SUGGESTION_CUTOFF == 0.6


def test_the_suffix_quotes_each_name_and_is_empty_without_any() -> None:
    assert did_you_mean(["a b", "c'd"]) == " (did you mean 'a b' or \"c'd\"?)"
    assert did_you_mean([]) == ""


def test_difflib_is_imported_by_the_base_alone() -> None:
    users = sorted(
        str(path.relative_to(REPO))
        for package in ("rundoctor", "executor", "doctor", "reports", "chaos")
        for path in (REPO / package).rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if (isinstance(node, ast.Import) and any(a.name == "difflib" for a in node.names))
        or (isinstance(node, ast.ImportFrom) and node.module == "difflib")
    )
    assert users == ["rundoctor/errors.py"]


# --- exit_when_done: the entry point's quick exit ------------------------------------------------


def _entry(body: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """A process whose entry point is ``main`` (``body``, indented) run by exit_when_done."""
    script = "\n".join(
        [
            "import atexit, pathlib, sys, threading",
            "from rundoctor.errors import exit_when_done",
            f"OUT = pathlib.Path({str(tmp_path)!r})",
            "def main():",
            *("    " + line for line in textwrap.dedent(body).splitlines()),
            "exit_when_done(main)",
        ]
    )
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_atexit_functions_run_and_buffered_output_is_written(tmp_path: Path) -> None:
    result = _entry(
        """
        atexit.register(lambda: (OUT / "cleaned").write_text("yes"))
        sys.stdout.write("no newline, still buffered")
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "no newline, still buffered"
    assert (tmp_path / "cleaned").read_text() == "yes"


def test_the_exit_code_is_mains_and_a_message_exits_1(tmp_path: Path) -> None:
    assert _entry("sys.exit(3)", tmp_path).returncode == 3
    assert _entry("sys.exit(None)", tmp_path).returncode == 0
    said = _entry("sys.exit('cannot go on')", tmp_path)
    assert (said.returncode, said.stderr) == (1, "cannot go on\n")


def test_a_thread_still_running_is_waited_for(tmp_path: Path) -> None:
    # The thread writes only after main has returned: a process ended at once would lose it.
    result = _entry(
        """
        done = threading.Event()
        def later():
            done.wait()
            (OUT / "written").write_text("by the thread")
        threading.Thread(target=later).start()
        done.set()
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "written").read_text() == "by the thread"


def test_a_closed_standard_output_runs_nothing_and_exits_2(tmp_path: Path) -> None:
    script = "\n".join(
        [
            "import pathlib",
            "from rundoctor.errors import exit_when_done",
            f"exit_when_done(lambda: pathlib.Path({str(tmp_path / 'ran')!r}).write_text('x'))",
        ]
    )
    line = f"{shlex.quote(sys.executable)} -c {shlex.quote(script)}"
    closed = subprocess.run(["bash", "-c", f"{line} >&-"], capture_output=True, text=True)
    assert (closed.returncode, closed.stderr) == (
        2,
        "error: standard output is closed; nothing could be printed\n",
    )
    assert not (tmp_path / "ran").exists()
    both = subprocess.run(["bash", "-c", f"{line} >&- 2>&-"], capture_output=True, text=True)
    assert both.returncode == 2  # nothing to say it on, and still no crash
