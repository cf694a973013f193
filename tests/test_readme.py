"""The README's tables and field lists held to what the commands really do.

A user trusts the README's environment table ("used by") and the fields it lists for a
command's ``--json``; each test reads the README itself, so a row or a list that drifts from
the code fails here. Real processes, real files.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from chaos import FAULTS
from doctor._detectors import DETECTORS
from tests.helpers import run_doctor

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
HEALTHY = REPO / "fixtures/cases/healthy_tool_run/run"  # one run, healthy01
TOOL_GRAPH = REPO / "fixtures/pipelines/tool_simple.dot"


def _users(variable: str) -> list[str]:
    """The "used by" cell of the README's environment table for ``variable``."""
    for line in README.read_text().splitlines():
        if line.startswith("| ") and f"`{variable}`" in line.split("|")[1]:
            return [c.strip() for c in line.split("|")[2].split(",")]
    raise AssertionError(f"no row for {variable} in the README's environment table")


def _readme_list(after: str) -> list[str]:
    """The backticked names of the ``{…}`` list that follows ``after`` in the README."""
    text = " ".join(README.read_text().split())
    start = text.index(after) + len(after)
    return re.findall(r"\w+", text[start : text.index("}", start)])


#: A way to run each doctor command that reads runs, with no --root.
_READERS = {
    "diagnose": ("diagnose", "--run-id", "healthy01"),
    "scan": ("scan",),
    "report": ("report", "--run-id", "healthy01"),
    "report --fleet": ("report", "--fleet"),
    "repair": ("repair", "--run-id", "healthy01"),
    "watch": ("watch", "--once"),
    "metrics": ("metrics",),
}


def _env(tmp_path: Path, **more: str) -> dict[str, str]:
    return {"XDG_STATE_HOME": str(tmp_path / "state"), "HOME": str(tmp_path), **more}


def test_every_command_the_readme_says_reads_rundoctor_roots_finds_its_runs_there(
    tmp_path: Path,
) -> None:
    users = _users("RUNDOCTOR_ROOTS")
    assert {"report", "repair"} <= set(users)  # left out of the table before
    for user in users:
        args = _READERS[user]
        without = run_doctor(*args, env=_env(tmp_path))
        assert without.returncode == 2 and "no runs root found" in without.stderr, user
        done = run_doctor(*args, env=_env(tmp_path, RUNDOCTOR_ROOTS=str(HEALTHY)))
        assert done.returncode == 0, (user, done.stderr)


def test_every_command_the_readme_says_reads_rundoctor_cache_keeps_runs_there(
    tmp_path: Path,
) -> None:
    users = _users("RUNDOCTOR_CACHE")
    assert {"metrics", "report --fleet"} <= set(users)
    for i, user in enumerate(users):
        cache = tmp_path / f"cache-{i}"
        env = _env(tmp_path, RUNDOCTOR_ROOTS=str(HEALTHY), RUNDOCTOR_CACHE=str(cache))
        done = run_doctor(*_READERS[user], env=env)
        assert done.returncode == 0, (user, done.stderr)
        assert list((cache / "runs").iterdir()), user


def test_every_command_the_readme_says_reads_the_memory_limit_refuses_a_bad_one(
    tmp_path: Path,
) -> None:
    users = _users("RUNDOCTOR_MEMORY_LIMIT")
    assert {"repair", "watch", "metrics"} <= set(users)
    for variable in ("RUNDOCTOR_MEMORY_LIMIT", "RUNDOCTOR_SPILL_LIMIT"):
        for user in users:
            env = _env(tmp_path, RUNDOCTOR_ROOTS=str(HEALTHY), **{variable: "lots"})
            done = run_doctor(*_READERS[user], env=env)
            assert done.returncode == 2, (user, done.stderr)
            assert done.stderr.startswith(f"error: {variable} 'lots' is not a size"), user


def test_reap_json_has_the_fields_the_readme_lists(tmp_path: Path) -> None:
    from executor import Reclaim

    listed = _readme_list("Prints one line per ticket (`--json`: a list of {")
    fields = Reclaim("t-1", "dead", "todo", (), terminalized=False).to_json()
    assert listed == list(fields)


def test_worker_json_has_the_fields_the_readme_lists(tmp_path: Path) -> None:
    env = _env(tmp_path)
    queue = tmp_path / "q.db"
    assert run_doctor("enqueue", TOOL_GRAPH, "--db", queue, env=env).returncode == 0
    done = run_doctor(
        "worker", "--db", queue, "--root", tmp_path / "r", "--once", "--json", env=env
    )
    assert done.returncode == 0, done.stderr
    text = " ".join(README.read_text().split())
    said = text[text.index("On exit it prints what it did: ") :][:120]
    listed = re.findall(r"`(\w+)`", said.split("(", 1)[0])
    assert listed == list(json.loads(done.stdout))


@pytest.mark.parametrize(("command", "names"), [("checks", DETECTORS), ("chaos faults", FAULTS)])
def test_the_listing_commands_json_is_what_the_readme_says(
    command: str, names: tuple[object, ...]
) -> None:
    done = run_doctor(*command.split(), "--json")
    assert done.returncode == 0, done.stderr
    listed = _readme_list(f"`doctor {command} --json` prints a list of {{")
    rows = json.loads(done.stdout)
    assert [list(r) for r in rows] == [listed] * len(names)


def test_scan_limit_cuts_the_table_not_the_json_as_the_readme_and_help_say() -> None:
    root = REPO / "fixtures" / "kilroy" / "runs"
    text = " ".join(README.read_text().split())
    assert "(default 0: all; the table only: `--json` lists every run)" in text
    assert "--json lists every run" in " ".join(run_doctor("scan", "--help").stdout.split())
    table = run_doctor("scan", "--root", root, "--limit", "1")
    assert "more runs (worst first; --limit 0 shows all)" in table.stdout
    data = json.loads(run_doctor("scan", "--root", root, "--limit", "1", "--json").stdout)
    assert len(data["runs"]) == data["fleet"]["runs"] > 1


def _command_sections() -> dict[str, tuple[str, str]]:
    """Each ``### `doctor CMD …``` heading of the README: CMD -> (its synopsis, its text)."""
    readme = README.read_text()
    out: dict[str, tuple[str, str]] = {}
    for m in re.finditer(r"^### `doctor ([a-z]+(?: [a-z]+)?)(.*)`$", readme, re.M):
        end = readme.find("\n### ", m.end())
        head, body = out.get(m.group(1).strip(), ("", ""))
        out[m.group(1).strip()] = (head + m.group(2), body + readme[m.end() : end])
    return out


@pytest.mark.parametrize("command", sorted(_command_sections()))
def test_the_readme_synopsis_names_only_real_options_and_the_help_only_documented_ones(
    command: str,
) -> None:
    head, body = _command_sections()[command]
    done = run_doctor(*command.split(), "--help", env={"COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    options = re.findall(r"^ +(?:(-\w), )?(--[\w-]+)", done.stdout, re.M)
    assert options, done.stdout
    names = {o for pair in options for o in pair if o}
    assert set(re.findall(r"-[\w-]+", head)) <= names, head
    for short, long in options:
        if long != "--help":
            assert long in head + body or (short and short in head), (command, long)


def test_the_readme_library_example_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fixtures.rogue import build_rogue_run

    (block,) = README.read_text().split("```python\n")[1:]
    code = block.split("```", 1)[0]
    build_rogue_run(tmp_path / "runs")  # the example reads runs/01KH3DN4STSZ3MVKB58YY6RE57
    monkeypatch.chdir(tmp_path)
    names: dict[str, object] = {}
    exec(compile(code, str(README), "exec"), names)
    assert names["d"].state == "orphaned"  # type: ignore[attr-defined]
    listed = re.findall(r'"(\w+)"', code.split("tables.arrow", 1)[1].split("tables.frame")[0])
    assert {"events", "attempts", "unreadable"} <= set(listed)
    for table in listed:  # every table the comment names is one `arrow` exports
        names["tables"].arrow(table)  # type: ignore[attr-defined]


def test_every_command_the_readme_says_reads_the_config_file_stops_at_a_bad_one(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "config.toml"
    bad.write_text("[doctor]\nnot_a_key = 1\n[executor]\nnot_a_key = 1\n")
    env = _env(tmp_path, RUNDOCTOR_CONFIG=str(bad), RUNDOCTOR_ROOTS=str(HEALTHY))
    executor = {
        "run": ("run", TOOL_GRAPH, "--root", tmp_path / "r"),
        "worker": ("worker", "--db", tmp_path / "q.db", "--create-queue", "--once"),
    }
    for user in _users("RUNDOCTOR_CONFIG"):
        done = run_doctor(*(executor[user] if user in executor else _READERS[user]), env=env)
        assert done.returncode == 2, (user, done.stderr)
        assert done.stderr.startswith(f"error: config file {str(bad)!r}: unknown key"), user


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_link_of_the_readme_and_docs_reaches_a_file_and_a_heading() -> None:
    files = [README, *sorted((REPO / "docs").glob("*.md"))]
    anchors = {
        f.resolve(): {_slug(h) for h in re.findall(r"^#+ (.*)$", f.read_text(), re.M)}
        for f in files
    }
    broken = []
    for f in files:
        text = re.sub(r"`[^`\n]*`", "", f.read_text())  # links shown as code are examples
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, anchor = target.partition("#")
            linked = (f.parent / path).resolve() if path else f.resolve()
            if not linked.exists() or (anchor and anchor not in anchors.get(linked, {anchor})):
                broken.append(f"{f.name}: {target}")
    assert not broken, broken
