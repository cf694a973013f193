"""The package as a user installs it: a wheel built from the repository (``pip install .``),
installed into an environment of its own, run from a directory that is not the repository.

The suite otherwise runs the editable install, where the repository is on ``sys.path``: a
template left out of the package data, or an import of ``tests``, ``bench`` or ``fixtures``
from the library, would pass there and fail for every user.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.helpers import REPO, unavailable

pytestmark = pytest.mark.slow

UV = REPO / ".tools" / "uv" / "bin" / "uv"
PACKAGES = ("chaos", "doctor", "executor", "reports", "rundoctor")
#: uv as the Makefile runs it: the machine's interpreters only.
UV_ENV = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
#: What a copy of the repository to build from leaves out: environments, caches, outputs,
#: and the recorded Kilroy corpus (30 MB that no build reads).
NOT_SOURCE = shutil.ignore_patterns(
    ".venv*", ".tools", ".git", ".*cache", "__pycache__", "*.egg-info", "build", "dist",
    "demo-out", ".bench", "artifacts", "kilroy",
)  # fmt: skip


def _run(*argv: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, (argv, done.stdout, done.stderr)
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel ``uv build`` makes from a copy of the repository, with the locked backend."""
    if not UV.is_file():
        unavailable(f"no {UV.relative_to(REPO)}: run `make install`")
    tmp = tmp_path_factory.mktemp("wheel")
    shutil.copytree(REPO, tmp / "src", ignore=NOT_SOURCE)
    build_lock = REPO / "requirements-build.lock"
    # With this interpreter, never a downloaded one: a user whose PATH's python3 is older than
    # requires-python made uv fetch a Python of its own (and fail where it cannot).
    _run(UV, "build", "-q", "--wheel", "--python", sys.executable, "--build-constraints",
         build_lock, "--out-dir", tmp / "dist", tmp / "src", cwd=tmp, env=UV_ENV)  # fmt: skip
    (built,) = (tmp / "dist").glob("*.whl")
    return built


def test_the_wheel_holds_the_packages_their_templates_and_type_markers_only(wheel: Path) -> None:
    # Before: only doctor had a py.typed, so mypy skipped executor, chaos, reports and
    # rundoctor in a user's code ("module is installed, but missing library stubs or py.typed
    # marker") although all five are typed (mypy --strict) and documented as a library.
    names = set(zipfile.ZipFile(wheel).namelist())
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == set(PACKAGES)  # no tests, bench, fixtures or notebooks
    assert {f"{p}/py.typed" for p in PACKAGES} <= names
    templates = {f"reports/templates/{t.name}" for t in (REPO / "reports/templates").iterdir()}
    assert templates and templates <= names
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert {p.split(".")[0] for p in declared["packages"]} == set(PACKAGES)


def test_the_installed_doctor_helps_and_diagnoses_without_the_source_tree(
    wheel: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    _run(UV, "venv", "-q", "--python", sys.executable, venv, cwd=tmp_path, env=UV_ENV)
    python = venv / "bin" / "python"
    _run(UV, "pip", "sync", "-q", "--python", python, REPO / "requirements.lock", cwd=tmp_path,
         env=UV_ENV)  # fmt: skip
    _run(UV, "pip", "install", "-q", "--no-deps", "--python", python, wheel, cwd=tmp_path,
         env=UV_ENV)  # fmt: skip
    runs = tmp_path / "elsewhere" / "runs"  # the fixture runs, as `make demo` lays them out
    for case in sorted((REPO / "fixtures" / "cases").glob("*/run/*")):
        if not (runs / case.name).exists():  # two cases may share a run
            shutil.copytree(case, runs / case.name, symlinks=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNDOCTOR_", "PYTHON"))}
    env["COLUMNS"] = "100"
    doctor = venv / "bin" / "doctor"
    cwd = runs.parent

    def commands(*words: str) -> list[str]:
        text = _run(doctor, *words, "--help", cwd=cwd, env=env)
        return re.findall(r"^  (\w+)  ", text.split("Commands:")[1], re.M)

    top = commands()
    assert {"diagnose", "scan", "report", "worker", "chaos"} <= set(top)
    for words in [[c] for c in top] + [["chaos", c] for c in commands("chaos")]:
        assert _run(doctor, *words, "--help", cwd=cwd, env=env).startswith("Usage: doctor")
    _run(doctor, "checks", cwd=cwd, env=env)
    scan = subprocess.run([doctor, "scan", "--root", "runs"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert scan.returncode == 1 and scan.stderr == "", scan.stderr  # findings, no crash
    assert f"{len(list(runs.iterdir()))} runs" in scan.stdout
    assert "fanjoin01" in _run(doctor, "diagnose", "--run-id", "fanjoin01", "--root", "runs",
                            cwd=cwd, env=env)  # fmt: skip
    _run(doctor, "report", "--run-id", "loop01", "--root", "runs", "--html", "--out", "r.html",
         cwd=cwd, env=env)  # fmt: skip
    assert (cwd / "r.html").read_text().lstrip().lower().startswith("<!doctype html")
    assert "# Postmortem" in _run(doctor, "report", "--run-id", "resume01", "--root", "runs",
                                  cwd=cwd, env=env)  # fmt: skip
