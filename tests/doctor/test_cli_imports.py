"""Each command imports what it needs: the ``doctor`` root mounts the others' commands lazily.

A fresh interpreter runs one command in-process and reports the modules it loaded; the speed
itself is measured by ``make bench`` (bench/startup.py), never asserted here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command

from doctor._cli import _Root, app
from doctor._cli_lazy import Mount

REPO = Path(__file__).resolve().parents[2]
HEALTHY_RUN = REPO / "fixtures/cases/healthy_tool_run/run/healthy01"

# Runs the CLI as the console script does, then writes the loaded modules' names to argv[1].
_PROBE = """
import json, sys
import doctor._cli as cli
out, args = sys.argv[1], sys.argv[2:]
code = cli.app(args=args, prog_name="doctor", standalone_mode=False)
with open(out, "w") as fh:
    json.dump({"code": code, "modules": sorted(sys.modules)}, fh)
"""

#: What neither `doctor --help` nor `doctor checks` may load.
HEAVY = ("duckdb", "polars", "pyarrow", "numpy", "pydantic", "chaos", "reports")

#: Of the executor they load only its (lazy) front door and the command-line kit every
#: command line shares: no queue, no runner, no executor command.
EXECUTOR_KIT = {"executor", "executor.console"}


def _executor_modules(modules: set[str]) -> set[str]:
    return {m for m in modules if m.split(".")[0] == "executor"}


def _loaded(tmp_path: Path, *args: str) -> tuple[int, set[str]]:
    out = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(out), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    return report["code"], set(report["modules"])


def _packages(modules: set[str], names: tuple[str, ...]) -> list[str]:
    """The ``names`` of which ``modules`` holds the package or any of its submodules."""
    return [n for n in names if any(m == n or m.startswith(n + ".") for m in modules)]


def test_the_top_level_help_loads_no_command_module_and_nothing_heavy(tmp_path: Path) -> None:
    code, modules = _loaded(tmp_path, "--help")
    assert code == 0
    assert _packages(modules, HEAVY) == []
    assert _executor_modules(modules) <= EXECUTOR_KIT
    assert "doctor._cli_watch" not in modules and "doctor._detectors" not in modules


def test_checks_loads_its_listing_but_no_detector_and_nothing_heavy(tmp_path: Path) -> None:
    code, modules = _loaded(tmp_path, "checks")
    assert code == 0
    assert "doctor._detectors._listing" in modules  # really ran
    # The written-out listing (tests/doctor/test_checks_listing.py holds it to the detectors):
    # no detector, and so none of the context, tables, facts or cache they import.
    assert not {m for m in modules if m.startswith("doctor._detectors.")} - {
        "doctor._detectors._listing"
    }
    assert not {"doctor._tables", "doctor._facts", "doctor._cache"} & modules
    assert _packages(modules, HEAVY) == []
    assert _executor_modules(modules) <= EXECUTOR_KIT


def test_diagnose_loads_duckdbs_engine_but_not_chaos_the_runner_reports_polars_or_arrow(
    tmp_path: Path,
) -> None:
    code, modules = _loaded(
        tmp_path, "diagnose", "--run-id", HEALTHY_RUN.name, "--root", str(HEALTHY_RUN.parent)
    )
    assert code == 0
    assert "_duckdb" in modules  # really diagnosed
    # Its detectors only run statements: not the `duckdb` package's relation layer (88 to 120
    # ms of its start here, its version lookup through importlib.metadata and email included).
    assert _packages(modules, ("duckdb",)) == []
    assert _packages(modules, ("chaos", "executor._runner", "reports", "polars")) == []
    # Rows reach DuckDB as list parameters, not Arrow tables: no Arrow, so no NumPy either.
    assert _packages(modules, ("pyarrow", "numpy", "pandas")) == []


def test_diagnose_json_reading_torn_lines_precisely_loads_no_arrow_and_no_rich(
    tmp_path: Path,
) -> None:
    # A line torn mid-stream sends the stream to the precise (Python) read.
    run = tmp_path / "runs" / HEALTHY_RUN.name
    shutil.copytree(HEALTHY_RUN, run)
    lines = (run / "progress.ndjson").read_bytes().splitlines(keepends=True)
    (run / "progress.ndjson").write_bytes(
        b"".join([*lines[:2], b'{"event": "x", "ts\n', *lines[2:]])
    )
    args = ("diagnose", "--run-id", run.name, "--root", str(run.parent), "--json")
    code, modules = _loaded(tmp_path, *args)
    assert code == 1  # the torn line is an error finding: the run really was read
    assert _packages(modules, ("pyarrow", "numpy", "pandas", "polars")) == []
    assert _packages(modules, ("rich",)) == []  # JSON out: no console, no renderers
    # A text option, a flag and --root DIR: typer's result without its Pydantic adapters.
    assert _packages(modules, ("pydantic",)) == []


def test_scans_load_duckdbs_engine_not_its_python_layer_and_a_rescan_neither(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A scan's batches only run statements: `_duckdb`, not the `duckdb` package's relation
    # layer (doctor._engine). Both reads are covered: the bulk scan of a healthy run, the
    # precise one of a stream torn mid-way, then a grown stream resumed from its offset.
    root = tmp_path / "runs"
    shutil.copytree(HEALTHY_RUN, root / "healthy")
    torn = root / "torn"
    shutil.copytree(HEALTHY_RUN, torn)
    lines = (torn / "progress.ndjson").read_bytes().splitlines(keepends=True)
    (torn / "progress.ndjson").write_bytes(
        b"".join([*lines[:2], b'{"event": "x", "ts\n', *lines[2:]])
    )
    monkeypatch.setenv("RUNDOCTOR_CACHE", str(tmp_path / "cache"))
    args = ("scan", "--root", str(root), "--json")
    code, modules = _loaded(tmp_path, *args)
    assert code == 1  # the torn line is an error finding
    assert "_duckdb" in modules  # runs were really read
    assert _packages(modules, ("duckdb", "pyarrow", "numpy", "polars")) == []
    # The rescan resumes this stream from its cached offset, in the warm child
    # (doctor._scan_child: its imports are below): this process loads no DuckDB at all.
    with (root / "healthy/progress.ndjson").open("ab") as fh:
        fh.write(lines[-1])
    code, modules = _loaded(tmp_path, *args)
    assert code == 1
    assert _packages(modules, ("_duckdb", "duckdb", "pyarrow", "numpy", "polars")) == []
    # Nothing changed: no DuckDB at all, and of the detectors only the fleet's idle_gap (and
    # what words an age): not the catalog that imports them all.
    code, modules = _loaded(tmp_path, *args)
    assert code == 1
    assert _packages(modules, ("_duckdb", "duckdb", "pyarrow", "numpy", "polars")) == []
    assert "doctor._detectors.idle_gap" in modules
    assert "doctor._detectors._catalog" not in modules
    assert "doctor._detectors.stale_heartbeat" not in modules
    # Nor the failure-text signer: the cache's settings take its version from the code's
    # hash, and no text is signed (compiling its rules took 11 ms of a 0.5 s rescan).
    assert "rundoctor.signature" not in modules


def test_the_warm_child_loads_duckdbs_engine_not_its_python_layer() -> None:
    probe = (
        "import json, sys; from doctor._scan_child import _warm_up; _warm_up(); "
        "print(json.dumps(sorted(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True
    )
    modules = set(json.loads(done.stdout))
    assert "_duckdb" in modules and "doctor._detectors._catalog" in modules
    assert _packages(modules, ("duckdb", "pyarrow", "numpy", "polars")) == []


def test_a_mounted_command_is_loaded_when_invoked(tmp_path: Path) -> None:
    code, modules = _loaded(tmp_path, "chaos", "faults", "--json")
    assert code == 0
    assert "chaos._cli" in modules


@pytest.mark.parametrize("mount", _Root.mounts, ids=lambda m: m.name)
def test_a_mounts_listed_help_is_the_commands_own(mount: Mount) -> None:
    root = get_command(app)
    assert isinstance(root, _Root)
    real, listed = root.commands[mount.name], mount.listing()
    for limit in (20, 45, 80, 1000):
        assert listed.get_short_help_str(limit) == real.get_short_help_str(limit)
    assert not real.hidden


def test_every_command_is_listed_once_in_order_the_roots_own_first() -> None:
    root = get_command(app)
    assert isinstance(root, _Root)
    names = list(root.commands)
    assert names[:4] == ["diagnose", "scan", "checks", "repair"]
    assert names[4:] == [m.name for m in _Root.mounts]
    assert len(set(names)) == len(names)


def _typer_param(command_name: str, name: str) -> tuple[Any, Any]:
    from typer._click import Context
    from typer.core import _TyperParameter

    root = get_command(app)
    assert isinstance(root, _Root)
    command = root.get_command(Context(root), command_name)
    assert command is not None
    (param,) = [p for p in command.params if p.name == name]
    assert isinstance(param, _TyperParameter)
    return param, Context(command)


@pytest.mark.parametrize(
    ("command_name", "values"),
    [
        ("diagnose", {"run_id": "r1"}),
        ("diagnose", {"run_id": "a b é"}),
        ("diagnose", {"run_id": "-"}),
        ("diagnose", {"root": ("/tmp",)}),
        ("diagnose", {"root": (".", "/nonexistent/dir", "-", "/etc/hostname", "rel/../x")}),
        ("scan", {"limit": 0}),  # the default: coerced on every scan
        ("scan", {"limit": "5"}),
        ("scan", {"limit": "007"}),
        ("scan", {"limit": 2**40}),
        ("scan", {"limit": "123456789012345678"}),
    ],
)
def test_plain_values_coerce_exactly_as_typer_does(
    command_name: str, values: dict[str, object]
) -> None:
    from typer._coercion import build_runtime_param

    from doctor._cli_lazy import _plain_value

    for name, value in values.items():
        param, ctx = _typer_param(command_name, name)
        desc = param.type_descriptor
        typer_says = build_runtime_param(desc)._coerce_value(value, param=param, ctx=ctx)
        done, ours = _plain_value(desc.annotation, desc.parameter_info, value, param, ctx)
        assert done
        assert ours == typer_says
        assert [type(v) for v in (ours if isinstance(ours, list) else [ours])] == [
            type(v) for v in (typer_says if isinstance(typer_says, list) else [typer_says])
        ]


@pytest.mark.parametrize(
    "value", [-1, "-1", " 5", "5_0", "+5", "5.0", "\u0663", True, "", "1" * 19]
)
def test_numbers_typer_refuses_or_reads_its_own_way_are_left_to_typer(value: object) -> None:
    from doctor._cli_lazy import _plain_value

    param, ctx = _typer_param("scan", "limit")
    desc = param.type_descriptor
    assert _plain_value(desc.annotation, desc.parameter_info, value, param, ctx) == (False, None)


@pytest.mark.parametrize("value", ["", "bad\udcff", "nul\0"])
def test_text_pydantic_may_refuse_is_left_to_typer(value: str) -> None:
    from doctor._cli_lazy import _plain_value

    assert _plain_value(str, None, value, None, None) == (False, None)  # type: ignore[arg-type]


def _help(*words: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "doctor", *words, "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "COLUMNS": "200"},
        timeout=120,
        check=True,
    )
    return done.stdout


def _subcommands(text: str) -> list[str]:
    """The names a help text lists under ``Commands:``."""
    listed = text.split("\nCommands:\n", 1)[1] if "\nCommands:\n" in text else ""
    return [line.split()[0] for line in listed.splitlines() if line.startswith("  ")]


def test_every_option_that_takes_a_value_names_it_not_its_python_type() -> None:
    # typer shows an option without a metavar by its annotation: `doctor watch --help` read
    # `--interval <str>`, `--webhook <list[str]>` and `--state <path>`.
    todo, seen, typed = [()], 0, []
    while todo:
        words = todo.pop()
        text = _help(*words)
        seen += 1
        todo += [(*words, name) for name in _subcommands(text)]
        typed += [
            f"doctor {' '.join(words)}: {line.strip()}"
            for line in text.splitlines()
            if re.match(r"\s+(-\w, )?--[\w-]+ <[^>]+>", line)
        ]
    assert seen > 15  # the root, its commands, and the chaos group's
    assert typed == []
