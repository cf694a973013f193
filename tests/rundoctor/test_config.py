"""The config file: flag > environment > file > default, for the doctor and the executor.

The command lines run as real processes with a real TOML file named by ``RUNDOCTOR_CONFIG``.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from doctor import DoctorConfig
from executor import ExecutorConfig
from rundoctor.config import ConfigError, config_path, file_settings
from tests.helpers import as_a_user, run_doctor

REPO = Path(__file__).resolve().parents[2]
HEALTHY = REPO / "fixtures/cases/healthy_tool_run/run"  # one run, healthy01
TOOL_GRAPH = REPO / "fixtures/pipelines/tool_simple.dot"


def _doctor(*args: str | Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_doctor(*args, env=env)


def _file(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return {"RUNDOCTOR_CONFIG": str(path)}


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# --- the library -------------------------------------------------------------------------------


def test_no_file_is_no_settings(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    assert config_path(env) is None
    assert file_settings(env, "doctor", DoctorConfig) == {}


def test_the_default_location_is_under_xdg_config_home(tmp_path: Path) -> None:
    (tmp_path / "rundoctor").mkdir()
    (tmp_path / "rundoctor" / "config.toml").write_text("[doctor]\nstale_lease_s = 60\n")
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    assert file_settings(env, "doctor", DoctorConfig) == {"stale_lease_s": 60.0}


def test_values_take_the_field_types(tmp_path: Path) -> None:
    env = _file(
        tmp_path,
        '[doctor]\nroots = ["/a", "~/b"]\nbreaker_limit = 5\ncache_dir = "/c"\n'
        '[executor]\nagent_command = ["claude", "-p", "{prompt_file}"]\nfsync = false\n',
    )
    doctor = file_settings(env, "doctor", DoctorConfig)
    assert doctor == {
        "roots": (Path("/a"), Path("~/b").expanduser()),
        "breaker_limit": 5,
        "cache_dir": Path("/c"),
    }
    executor = file_settings(env, "executor", ExecutorConfig)
    assert executor == {"agent_command": ("claude", "-p", "{prompt_file}"), "fsync": False}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[doctor\n", "is not valid TOML"),
        ("[docter]\n", "unknown section [docter]"),
        ("[doctor]\nidle_gap = 60\n", "unknown key 'idle_gap' in [doctor]"),
        ('[doctor]\nidle_gap_s = "2h"\n', "idle_gap_s: '2h' is not a number"),
        ("[doctor]\nbreaker_limit = true\n", "breaker_limit: True is not a whole number"),
        ("[doctor]\nnow = 5\n", "unknown key 'now'"),
    ],
)
def test_a_bad_file_is_one_error_naming_file_and_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    env = _file(tmp_path, text)
    with pytest.raises(ConfigError, match="config file") as info:
        file_settings(env, "doctor", DoctorConfig, exclude=("now",))
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_a_named_file_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        file_settings({"RUNDOCTOR_CONFIG": str(tmp_path / "nope.toml")}, "doctor", DoctorConfig)


# --- the doctor's command line -----------------------------------------------------------------


def _scanned_roots(result: subprocess.CompletedProcess[str]) -> set[str]:
    assert result.returncode in (0, 1), result.stderr
    return {run["run_id"] for run in json.loads(result.stdout)["runs"]}


def test_scan_reads_its_roots_from_the_file(tmp_path: Path) -> None:
    env = _file(tmp_path, f'[doctor]\nroots = ["{HEALTHY}"]\n')
    assert _scanned_roots(_doctor("scan", "--json", env=env)) == {"healthy01"}


def test_the_environment_beats_the_file_and_the_flag_beats_both(tmp_path: Path) -> None:
    empty = tmp_path / "empty-root"
    empty.mkdir()
    env = _file(tmp_path, f'[doctor]\nroots = ["{empty}"]\n')
    assert _scanned_roots(_doctor("scan", "--json", env=env)) == set()
    by_env = {**env, "RUNDOCTOR_ROOTS": str(HEALTHY)}
    assert _scanned_roots(_doctor("scan", "--json", env=by_env)) == {"healthy01"}
    by_flag = {**env, "RUNDOCTOR_ROOTS": str(empty)}
    flagged = _doctor("scan", "--json", "--root", HEALTHY, env=by_flag)
    assert _scanned_roots(flagged) == {"healthy01"}


def test_a_bad_file_stops_a_doctor_command_with_one_line(tmp_path: Path) -> None:
    env = _file(tmp_path, "[doctor]\nidle_gap = 60\n")
    line = _one_line_error(_doctor("scan", "--root", HEALTHY, env=env))
    assert "unknown key 'idle_gap'" in line and str(tmp_path / "config.toml") in line


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ("idle_gap_s = nan", "idle_gap_s = nan must be a number of seconds above 0"),
        ("idle_gap_s = 1e300", "idle_gap_s = 1e+300 must be a number of seconds above 0"),
        ("stale_lease_s = -5", "stale_lease_s = -5.0 must be a number of seconds above 0"),
        ("fragmentation_ratio = inf", "fragmentation_ratio = inf must be a number above 0"),
        ("threads = -1", "threads = -1 must be 1 or more"),
        ("threads = 100000000", "threads = 100000000 must be at most 1,024"),
        ("breaker_limit = 0", "breaker_limit = 0 must be 1 or more"),
    ],
)
def test_a_doctor_threshold_no_detector_can_use_is_one_line(
    tmp_path: Path, setting: str, says: str
) -> None:
    # Before: nan, 1e300 and threads = -1 ended diagnose and scan with "internal error"
    # (ValueError, OverflowError, DuckDB's "Must have at least 1 thread!"), exit 70; a
    # negative threshold was taken, and every lease was stale. threads = 100000000: DuckDB
    # started threads until the host had none left ("can't start new thread", exit 70).
    env = _file(tmp_path, f"[doctor]\n{setting}\n")
    for command in (("scan",), ("diagnose", "--run-id", "healthy01")):
        line = _one_line_error(_doctor(*command, "--root", HEALTHY, env=env))
        assert line.startswith(f"error: config file {str(tmp_path / 'config.toml')!r}: [doctor] ")
        assert says in line


# --- the executor's command line ---------------------------------------------------------------


def _breaker_limit(tmp_path: Path, env: dict[str, str], *flags: str) -> int:
    root = tmp_path / f"runs-{len(list(tmp_path.iterdir()))}"
    done = _doctor("run", TOOL_GRAPH, "--root", root, "--json", *flags, env=env)
    assert done.returncode == 0, done.stderr
    (run,) = root.iterdir()
    return int(json.loads((run / "run_config.json").read_text())["executor"]["breaker_limit"])


def test_run_takes_executor_settings_from_the_file_under_its_flags(tmp_path: Path) -> None:
    env = _file(tmp_path, "[executor]\nbreaker_limit = 7\n")
    assert _breaker_limit(tmp_path, {"XDG_CONFIG_HOME": str(tmp_path / "none")}) == 3
    assert _breaker_limit(tmp_path, env) == 7
    assert _breaker_limit(tmp_path, env, "--breaker-limit", "5") == 5


def test_a_bad_executor_section_stops_run_with_one_line(tmp_path: Path) -> None:
    env = _file(tmp_path, '[executor]\nlease_ttl_s = "long"\n')
    line = _one_line_error(_doctor("run", TOOL_GRAPH, "--root", tmp_path / "r", env=env))
    assert "lease_ttl_s: 'long' is not a number" in line


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ("lease_ttl_s = 0", "lease_ttl_s = 0.0 must be > 0"),
        ("lease_ttl_s = 0.5", "lease_ttl_s = 0.5 s is shorter than the 1 s a lease needs"),
        ("breaker_limit = 0", "breaker_limit = 0 must be >= 1"),
        ("self_fence_s = 100", "must be below self_fence_s = 100 s"),
    ],
)
def test_an_executor_budget_out_of_range_in_the_file_names_the_file(
    tmp_path: Path, setting: str, says: str
) -> None:
    # The README: a bad value in the config file "stops the command with one line naming the
    # file and the key"; the executor's budgets said only `error: lease_ttl_s = 0.0 must be
    # > 0`, which reads like a flag's mistake though no flag of that name exists.
    env = {**_file(tmp_path, f"[executor]\n{setting}\n"), "XDG_STATE_HOME": str(tmp_path)}
    prefix = f"error: config file {str(tmp_path / 'config.toml')!r}: [executor] "
    for args in (
        ("run", TOOL_GRAPH, "--root", tmp_path / "r"),
        ("worker", "--db", tmp_path / "q.db", "--create-queue", "--once"),
    ):
        line = _one_line_error(_doctor(*args, env=env))
        assert line.startswith(prefix) and says in line, line
    assert not (tmp_path / "r").exists()


def test_a_flag_that_replaces_a_bad_file_budget_wins_and_its_own_mistake_names_no_file(
    tmp_path: Path,
) -> None:
    env = _file(tmp_path, "[executor]\nbreaker_limit = 0\n")
    assert _breaker_limit(tmp_path, env, "--breaker-limit", "2") == 2
    line = _one_line_error(_doctor("run", TOOL_GRAPH, "--breaker-limit", "0", env=env))
    assert line == "error: --breaker-limit must be 1 or more failures, got 0"  # the flag's


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[doctor]\nx = " + "[" * 100_000 + "]" * 100_000 + "\n", "values nested too deeply"),
        ("[executor]\nlease_ttl_s = 1e400\n", "lease_ttl_s = inf s is too long: at most"),
        ("[executor]\nstage_timeout_s = 1e300\n", "stage_timeout_s = 1e+300 s is too long"),
    ],
    ids=["nested", "infinite-lease", "century-past-timeout"],
)
def test_a_config_file_past_what_can_be_read_or_waited_is_one_line(
    tmp_path: Path, text: str, says: str
) -> None:
    # Before: arrays nested 100,000 deep were "internal error … RecursionError", exit 70; a
    # lease or a stage timeout of 1e400 (infinity to TOML) or 1e300 s was taken, where the
    # flags stop at 5218w: a worker whose tickets no reaper would ever take back.
    env = {**_file(tmp_path, text), "XDG_STATE_HOME": str(tmp_path / "state")}
    args = ("worker", "--db", tmp_path / "q.db", "--create-queue", "--once")
    line = _one_line_error(_doctor(*args, env=env))
    assert says in line, line


def test_a_default_location_the_permissions_hide_is_one_line(tmp_path: Path) -> None:
    # Before: `sudo -u nobody doctor scan` (sudo keeps HOME) was "internal error (a bug in
    # rundoctor): PermissionError: … '/root/.config/rundoctor/config.toml'", exit 70: the
    # default location could not even be looked at. The file may be there, so it is an error
    # that says where, not a silent "no settings".
    import os
    import sys

    home = tmp_path / "home"
    (home / ".config" / "rundoctor").mkdir(parents=True)
    home.chmod(0)  # a user (root without the capabilities that ignore modes) may not enter
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNDOCTOR_", "XDG_"))}
    try:
        done = subprocess.run(
            [*as_a_user(), sys.executable, "-m", "doctor", "scan", "--root", str(HEALTHY)],
            capture_output=True, text=True, timeout=60, cwd=REPO, env={**env, "HOME": str(home)},
        )  # fmt: skip
    finally:
        home.chmod(0o700)
    line = _one_line_error(done)
    assert line == (
        f"error: config file '{home / '.config/rundoctor/config.toml'}' cannot be looked for "
        "(Permission denied); fix the permissions on its directories, or set XDG_CONFIG_HOME "
        "(or RUNDOCTOR_CONFIG) to where your config file is"
    ), line
