"""Every ``doctor`` subcommand fed hostile or odd input: one line on stderr and a documented
exit code, never a crash (exit 70), a hang, a traceback or a file of the user's replaced."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from fixtures import queues
from rundoctor.terminal import shell_quote
from tests.helpers import as_a_user, run_doctor

REPO = Path(__file__).resolve().parents[2]
HEALTHY_ROOT = REPO / "fixtures/cases/healthy_tool_run/run"
GRAPH = REPO / "fixtures/pipelines/tool_simple.dot"


def _doctor(
    *args: str | Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return run_doctor(*args, env=env, timeout=timeout)


def _one_line_error(result: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert result.returncode == code, result
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "command",
    [
        ["scan"],
        ["diagnose", "--run-id", "healthy01"],
        ["report", "--fleet"],
        ["watch", "--once"],
        ["metrics"],
        ["worker", "--once"],
    ],
    ids=lambda c: c[0],
)
def test_an_empty_root_is_refused_not_read_as_the_current_directory(command: list[str]) -> None:
    # `--root "$RUNS"` with RUNS unset: a path would read '' as '.', and scan wherever it is.
    line = _one_line_error(_doctor(*command, "--root", ""))
    assert "'--root': is empty; pass a directory" in line


@pytest.mark.parametrize(
    ("option", "command"),
    [
        ("--journal", ["repair", "--db", "{q}", "--apply"]),
        ("--db", ["enqueue", str(GRAPH)]),
        ("--db", ["worker", "--once", "--create-queue"]),
        ("--db", ["scan", "--root", str(HEALTHY_ROOT)]),
        ("--db", ["chaos", "run", "--seed", "1", "--out", "{tmp}/c"]),
        ("--since", ["scan", "--root", str(HEALTHY_ROOT)]),
        ("--out", ["metrics", "--root", str(HEALTHY_ROOT)]),
        ("--out", ["report", "--fleet", "--root", str(HEALTHY_ROOT)]),
        ("--state", ["watch", "--once", "--root", str(HEALTHY_ROOT)]),
        ("--agent-command", ["run", str(GRAPH), "--root", "{tmp}/runs"]),
    ],
    ids=lambda v: v if isinstance(v, str) else v[0],
)
def test_an_empty_value_is_refused_not_read_as_not_given_or_as_here(
    tmp_path: Path, option: str, command: list[str]
) -> None:
    # `--db "$DB"` with DB unset. Before: `repair --journal ''` journaled in the current
    # directory, `enqueue --db ''` queued into the default queue, `scan --since ''` listed
    # every run, `--agent-command ''` fell back to $RUNDOCTOR_AGENT_COMMAND, and `--out ''`,
    # `--state ''`, `chaos run --db ''` named '.' ("--db '' exists").
    q = tmp_path / "q.db"
    assert _doctor("enqueue", GRAPH, "--db", q).returncode == 0
    args = [a.format(q=q, tmp=tmp_path) for a in command]
    here = tmp_path / "here"
    here.mkdir()
    state = tmp_path / "state"
    for value in ("", " "):
        result = run_doctor(
            *args, option, value, env={"XDG_STATE_HOME": str(state)}, cwd=here, timeout=60
        )
        line = _one_line_error(result)
        assert f"'{option}': is empty; pass " in line and "(an unset variable?)" in line
        assert result.stdout == ""
    assert list(here.iterdir()) == [] and not state.exists()  # no journal, no default queue
    assert not (tmp_path / "c").exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "command",
    [["run", "{v}"], ["enqueue", "{v}", "--db", "{tmp}/q.db"], ["chaos", "check", "{v}"]],
    ids=lambda c: c[0],
)
def test_an_empty_argument_is_refused_not_read_as_here(tmp_path: Path, command: list[str]) -> None:
    # `doctor run "$GRAPH"` with GRAPH unset. Before: typer read '' as '.', and the command
    # said "cannot read pipeline graph '.': Is a directory", naming what nobody typed.
    for value in ("", " "):
        args = [a.format(v=value, tmp=tmp_path) for a in command]
        line = _one_line_error(run_doctor(*args, cwd=tmp_path, timeout=60))
        assert line.startswith("error: an argument is empty (an unset variable?)"), line
        assert "'.'" not in line
    assert list(tmp_path.iterdir()) == []  # no queue made


@pytest.mark.parametrize(
    "command",
    [
        ["scan", "--root", str(HEALTHY_ROOT), "--json", "{v}"],
        ["diagnose", "--run-id", "healthy01", "--root", str(HEALTHY_ROOT), "-v", "{v}"],
        ["checks", "--json", "{v}"],
        ["run", "--", "{v}"],
    ],
    ids=["scan-json", "diagnose-v", "checks-json", "after-dashdash"],
)
def test_an_empty_word_after_a_flag_or_dashdash_is_an_empty_argument(
    tmp_path: Path, command: list[str]
) -> None:
    # `doctor scan --json "$X"` with X unset. Before: a blank word after any option was taken
    # as that option's value and left to the command: "got unexpected extra argument(s) ()";
    # after `--`, `doctor run -- ""` read '' as '.' ("cannot read pipeline graph '.'").
    for value in ("", " "):
        args = [a.format(v=value) for a in command]
        line = _one_line_error(run_doctor(*args, cwd=tmp_path, timeout=60))
        assert line.startswith("error: an argument is empty (an unset variable?)"), line
    assert list(tmp_path.iterdir()) == []


def test_watch_refuses_an_interval_past_a_century(tmp_path: Path) -> None:
    # Before: the first pass ran, then Event.wait overflowed time_t (exit 70).
    line = _one_line_error(
        _doctor(
            "watch",
            "--root",
            HEALTHY_ROOT,
            "--state",
            tmp_path / "s.json",
            "--interval",
            "9999999999w",
        )
    )
    assert "--interval" in line and "too long a duration" in line


# -- URLs that urllib cannot split ----------------------------------------------------------


def test_a_db_url_that_is_not_a_url_is_one_line_for_the_doctor_and_the_executor(
    tmp_path: Path,
) -> None:
    # Before: ValueError("Invalid IPv6 URL") from urlsplit, exit 70.
    line = _one_line_error(_doctor("scan", "--root", HEALTHY_ROOT, "--db", "postgresql://[::1"))
    assert "is not a URL" in line and "Invalid IPv6 URL" in line
    line = _one_line_error(_doctor("tickets", "--db", "postgresql://[::1/q?schema=s"))
    assert "is not a URL" in line


@pytest.mark.parametrize("url", ["http://[::1/", "http://hooks.example:abc/x", "https:///x"])
def test_a_webhook_that_is_not_a_url_is_refused_before_the_first_pass(
    tmp_path: Path, url: str
) -> None:
    # Before: the pass ran and printed its alerts, then the POST crashed (exit 70).
    result = _doctor(
        "watch",
        "--root",
        HEALTHY_ROOT,
        "--state",
        tmp_path / "s.json",
        "--once",
        "--webhook",
        url,
    )
    assert "--webhook" in _one_line_error(result) and result.stdout == ""
    assert not (tmp_path / "s.json").exists()


def test_an_exec_command_with_an_open_quote_is_one_line(tmp_path: Path) -> None:
    result = _doctor(
        "watch", "--root", HEALTHY_ROOT, "--state", tmp_path / "s.json", "--once", "--exec", "'"
    )
    assert "--exec" in _one_line_error(result) and "No closing quotation" in result.stderr


# -- --out ------------------------------------------------------------------------------------


def test_report_out_that_names_no_file_is_one_line(tmp_path: Path) -> None:
    # Before: `--out ''` is Path('.'), whose SVG name could not be formed (exit 70).
    args = ("report", "--run-id", "healthy01", "--root", HEALTHY_ROOT, "--out")
    assert "'--out': is empty" in _one_line_error(_doctor(*args, ""))
    assert "is a directory" in _one_line_error(_doctor(*args, tmp_path))


def test_report_and_metrics_out_never_replace_a_fifo(tmp_path: Path) -> None:
    # Before: the atomic rename replaced the named pipe with a regular file.
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    report = _doctor("report", "--run-id", "healthy01", "--root", HEALTHY_ROOT, "--out", fifo)
    assert "not a regular file" in _one_line_error(report)
    metrics = _doctor("metrics", "--root", HEALTHY_ROOT, "--out", fifo)
    assert "not a regular file" in _one_line_error(metrics)
    assert fifo.is_fifo() and not (tmp_path / "pipe.timeline.svg").exists()


def test_out_under_a_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("mine\n")
    line = _one_line_error(
        _doctor("metrics", "--root", HEALTHY_ROOT, "--out", tmp_path / "f" / "m.prom")
    )
    assert f"'{tmp_path / 'f'}' is a file, not a directory" in line
    assert (tmp_path / "f").read_text() == "mine\n"


# -- FIFOs where a file is read -----------------------------------------------------------------


def test_enqueue_run_and_chaos_check_of_a_fifo_refuse_it_instead_of_hanging(
    tmp_path: Path,
) -> None:
    # Before: open() of a FIFO nobody writes blocked forever.
    fifo = tmp_path / "graph.dot"
    os.mkfifo(fifo)
    for args in (
        ("enqueue", fifo, "--db", tmp_path / "q.db"),
        ("run", fifo, "--root", tmp_path / "runs"),
        ("chaos", "check", fifo),
    ):
        assert "not a regular file" in _one_line_error(_doctor(*args, timeout=30))
    assert not (tmp_path / "q.db").exists()


# -- numbers past what a queue or a host can hold --------------------------------------------------


@pytest.mark.parametrize(
    "option", [("--priority", "99999999999999999999999"), ("--max-error-attempts", "2147483648")]
)
def test_enqueue_refuses_numbers_the_queue_cannot_store(
    tmp_path: Path, option: tuple[str, str]
) -> None:
    # Before: OverflowError from sqlite3 (exit 70).
    result = _doctor("enqueue", GRAPH, "--db", tmp_path / "q.db", *option)
    assert "out of range" in _one_line_error(result)


def test_worker_refuses_a_concurrency_that_would_exhaust_memory(tmp_path: Path) -> None:
    # Before: a list of 10**20 threads was built until the OOM killer ended the worker.
    result = _doctor(
        "worker", "--db", tmp_path / "q.db", "--once", "--concurrency", "100000000000000000000"
    )
    assert "--concurrency must be from 1 to 1024" in _one_line_error(result)


# -- the scan cache ---------------------------------------------------------------------------


def test_a_cache_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    # Before: NotADirectoryError from mkdir (exit 70).
    (tmp_path / "cache").write_text("")
    result = _doctor(
        "scan", "--root", HEALTHY_ROOT, env={"RUNDOCTOR_CACHE": str(tmp_path / "cache")}
    )
    assert "RUNDOCTOR_CACHE" in _one_line_error(result)


def test_a_cache_that_cannot_be_written_is_the_scans_error_not_each_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: every changed run got an unreadable_artifact naming DuckDB's failed write.
    from doctor._cache import RunCache
    from doctor._errors import UsageError

    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m: False if "events" in str(p) else real(p, m))
    with pytest.raises(UsageError, match="not writable"):
        RunCache(tmp_path / "cache", "settings")


# -- control characters in names ------------------------------------------------------------


def test_control_characters_in_a_run_id_never_reach_the_terminal(tmp_path: Path) -> None:
    # Before: the escape sequence and the line break were printed raw: a scan row in two.
    name = "esc\x1b[31mred\nx"
    shutil.copytree(HEALTHY_ROOT / "healthy01", tmp_path / name)
    scan = _doctor("scan", "--root", tmp_path)
    assert "\x1b" not in scan.stdout
    [row] = [line for line in scan.stdout.splitlines() if line.startswith("esc")]
    assert row.startswith("esc\\x1b[31mred\\nx ") and "succeeded" in row
    diagnosis = _doctor("diagnose", "--run-id", name, "--root", tmp_path)
    assert "\x1b" not in diagnosis.stdout
    hint = diagnosis.stdout.strip().splitlines()[-1].strip()
    assert hint.startswith("doctor diagnose --run-id $'esc\\x1b[31mred\\nx' --root ")
    words = subprocess.run(
        ["bash", "-c", f"printf '%s\\0' {hint}"], capture_output=True, text=True, check=True
    ).stdout.split("\0")
    assert words[3] == name  # the pasted hint names the very directory


def test_control_characters_in_a_ticket_title_stay_on_its_row(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    assert _doctor("enqueue", GRAPH, "--db", db, "--title", "x\x1b[2J\ny").returncode == 0
    listed = _doctor("tickets", "--db", db)
    assert "\x1b" not in listed.stdout
    row = next(line for line in listed.stdout.splitlines() if line.startswith("t-"))
    assert "x\\x1b[2J\\ny" in row


def test_a_stage_that_prints_colours_does_not_colour_the_progress_lines(tmp_path: Path) -> None:
    # Before: the failure's stderr tail went to the terminal with its escape sequences.
    graph = tmp_path / "red.dot"
    graph.write_text(
        "digraph red {\n"
        '  node [shape=parallelogram, timeout="30s"]\n'
        "  start [shape=Mdiamond]\n  exit [shape=Msquare]\n"
        "  work [tool_command=\"printf '\\\\033[31mboom\\\\033[0m\\\\n' >&2; exit 3\"]\n"
        "  start -> work -> exit\n}\n"
    )
    result = _doctor("run", graph, "--root", tmp_path / "runs")
    assert result.returncode == 1, result.stderr
    assert "\x1b" not in result.stderr and "\\x1b[31mboom" in result.stderr


# -- a reader that goes away --------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [("checks",), ("checks", "--json"), ("chaos", "faults"), ("scan", "--root", HEALTHY_ROOT)],
)
def test_a_reader_that_goes_away_ends_the_command_quietly_with_141(args: tuple[str, ...]) -> None:
    # Before: Rich's default ended it with 1, "findings at error", for a list of checks.
    script = Path(sys.executable).parent / "doctor"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "doctor"]
    with subprocess.Popen(
        [*command, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if not k.startswith("RUNDOCTOR_")},
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # before the command prints its first line
        stderr = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 141, stderr
    assert stderr == ""


# -- small mistakes, clear words --------------------------------------------------------------


def test_an_empty_run_id_is_called_empty() -> None:
    # Before: "run id '' contains a path separator or '..'".
    line = _one_line_error(_doctor("diagnose", "--run-id", "", "--root", HEALTHY_ROOT))
    assert "run id '' is empty" in line


def test_a_mistyped_ticket_status_gets_did_you_mean(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    assert _doctor("enqueue", GRAPH, "--db", db).returncode == 0
    line = _one_line_error(_doctor("tickets", "--db", db, "--status", "don"))
    assert "unknown status 'don' (did you mean 'done'?)" in line


def test_a_repeatable_option_reads_a_comma_separated_list_as_chaos_faults_does(
    tmp_path: Path,
) -> None:
    # Before: "unknown status 'todo,done' (did you mean 'todo'?)", and "unknown check
    # 'idle_gap,missing_final' (did you mean 'missing_final'?)": one of the two, silently.
    db = tmp_path / "q.db"
    first = _doctor("enqueue", GRAPH, "--db", db, "--title", "first").stdout.strip()
    second = _doctor("enqueue", GRAPH, "--db", db, "--title", "second").stdout.strip()
    both = _doctor("enqueue", GRAPH, "--db", db, "--depends-on", f"{first},{second}", "--json")
    assert both.returncode == 0, both.stderr
    (ticket,) = [t for t in json.loads(_doctor("tickets", "--db", db, "--json").stdout)
                 if t["id"] == json.loads(both.stdout)["id"]]  # fmt: skip
    assert ticket["status"] == "blocked"
    listed = _doctor("tickets", "--db", db, "--status", "blocked,todo", "--json")
    assert sorted(t["status"] for t in json.loads(listed.stdout)) == ["blocked", "todo", "todo"]
    assert "'dne' (did you mean 'done'?)" in _one_line_error(
        _doctor("tickets", "--db", db, "--status", "todo,dne")
    )
    frag = REPO / "fixtures/cases/fragmented_verify_failures/run"
    checks = _doctor(
        "diagnose", "--run-id", "frag01", "--root", frag, "--json",
        "--check", "retry_loop,missing_final",
    )  # fmt: skip
    assert checks.returncode == 1, checks.stderr
    found = {f["code"] for f in json.loads(checks.stdout)["findings"]}
    assert found == {"retry_loop", "missing_final"}


@pytest.mark.parametrize("under", ["", "sub"])
def test_a_runs_root_that_is_a_file_is_named_for_run_and_worker(tmp_path: Path, under: str) -> None:
    # Before: `worker` crashed (FileExistsError, exit 70); `run` blamed the run directory
    # ("already exists; pass a new run id").
    (tmp_path / "f").write_text("mine\n")
    root = tmp_path / "f" / under if under else tmp_path / "f"
    for args in (
        ("worker", "--db", tmp_path / "q.db", "--create-queue", "--once", "--root", root),
        ("run", GRAPH, "--root", root),
    ):
        line = _one_line_error(_doctor(*args))
        assert f"runs root '{root}'" in line and "already exists" not in line
    assert (tmp_path / "f").read_text() == "mine\n"


def test_a_config_file_that_is_a_fifo_is_refused_instead_of_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)
    result = _doctor(
        "scan", "--root", HEALTHY_ROOT, env={"RUNDOCTOR_CONFIG": str(fifo)}, timeout=30
    )
    assert "not a regular file" in _one_line_error(result)


def test_a_config_file_over_1_mib_is_refused_unread(tmp_path: Path) -> None:
    # Before: a gigabyte named as the config file was read whole (twice its size in memory)
    # to be found "not valid TOML".
    config = tmp_path / "config.toml"
    with config.open("wb") as f:  # sparse
        f.truncate(1 << 30)
    result = _doctor("scan", "--root", HEALTHY_ROOT, env={"RUNDOCTOR_CONFIG": str(config)})
    assert "is larger than 1 MiB: no config file" in _one_line_error(result)


@pytest.mark.parametrize("args", [("checks",), ("scan", "--root", HEALTHY_ROOT, "--json")])
def test_a_full_standard_output_is_one_line_not_a_crash(args: tuple[str, ...]) -> None:
    # Before: "internal error (a bug in rundoctor): OSError: [Errno 28]", exit 70.
    script = Path(sys.executable).parent / "doctor"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "doctor"]
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [*command, *map(str, args)],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={k: v for k, v in os.environ.items() if not k.startswith("RUNDOCTOR_")},
            check=False,
            timeout=60,
        )
    assert "No space left on device" in _one_line_error(result)


@pytest.mark.parametrize("command", ["diagnose", "repair", "report"])
def test_a_run_id_path_to_a_directory_that_is_no_run_says_so(tmp_path: Path, command: str) -> None:
    # Before: "no run 'empty' under TMP; pass --root DIR …; 3 directories were not looked
    # into", after listing the parent for names alike (`--run-id /etc`: 6 s over all of /).
    (tmp_path / "empty").mkdir()
    line = _one_line_error(_doctor(command, "--run-id", tmp_path / "empty"))
    assert f"--run-id '{tmp_path / 'empty'}' is a directory, not a run directory" in line
    assert f"`doctor scan --root {tmp_path / 'empty'}`" in line


def test_a_symlinked_run_id_says_it_is_a_symlink_and_where_the_run_is(tmp_path: Path) -> None:
    # Before: "no run 'linked' under ROOT", though `ls ROOT` shows it.
    root = tmp_path / "root"
    root.mkdir()
    (root / "linked").symlink_to(HEALTHY_ROOT / "healthy01")
    (root / "out").symlink_to("/etc")
    line = _one_line_error(_doctor("diagnose", "--run-id", "linked", "--root", root))
    assert "is a symlink" in line
    assert f"--run-id {shell_quote(str(HEALTHY_ROOT / 'healthy01'))}" in line
    line = _one_line_error(_doctor("diagnose", "--run-id", "out", "--root", root))
    assert "is a symlink" in line and "not a run directory" in line


_TOO_LONG = "a" * 300  # one name over the file system's 255 bytes


@pytest.mark.parametrize(
    "args",
    [
        ("scan", "--root", _TOO_LONG),
        ("diagnose", "--root", HEALTHY_ROOT, "--run-id", _TOO_LONG),
        ("run", GRAPH, "--root", _TOO_LONG),
        ("repair", "--db", "queue.db", "--journal", _TOO_LONG),
        ("chaos", "run", "--seed", "1", "--duration", "1", "--out", _TOO_LONG),
    ],
    ids=lambda a: "-".join(str(x) for x in a[:1] + a[-2:-1]),
)
def test_a_name_too_long_for_the_file_system_is_one_line_not_a_crash(
    args: tuple[str | Path, ...], tmp_path: Path
) -> None:
    # Before: "internal error (a bug in rundoctor): OSError: [Errno 36] File name too long",
    # exit 70, from whichever Path.exists() or mkdir met it first.
    queues.incident_05(host="elsewhere").write_sqlite(tmp_path / "queue.db")
    result = run_doctor(*args, cwd=tmp_path)
    assert result.returncode == 2 and "internal error" not in result.stderr, result
    line = result.stderr.splitlines()[-1]  # chaos run announces its campaign first
    assert line.startswith("error: file name too long: 'aaa") and "is 300 bytes" in line
    assert not any(p.name.startswith("aaa") for p in tmp_path.iterdir())


@pytest.mark.parametrize("command", ["diagnose", "report", "repair"])
@pytest.mark.parametrize("run_id", ["/", "//"])
def test_a_run_id_naming_the_file_system_s_root_says_so(command: str, run_id: str) -> None:
    # Before: "run id '' is empty", naming a value nobody gave.
    line = _one_line_error(_doctor(command, "--run-id", run_id, "--root", HEALTHY_ROOT))
    assert f"--run-id {run_id!r} is the file system's root, not a run directory" in line


@pytest.mark.parametrize("command", ["diagnose", "report", "repair"])
@pytest.mark.parametrize(
    ("run_id", "where", "says"),
    [
        (".", "run", "is the current directory"),
        ("./", "run", "is the current directory"),
        ("..", "run/build", "is the parent directory"),
        ("build/..", "run", "ends in '..'"),
        ("./.", "run", "ends in '.'"),
    ],
)
def test_a_run_id_of_dots_is_refused_with_the_path_it_names(
    command: str, run_id: str, where: str, says: str, tmp_path: Path
) -> None:
    # Before: `--run-id .` inside a run directory (or `..` in one of its stage directories)
    # diagnosed, reported or repaired the directory the shell stood in, as if it were named.
    run = tmp_path / "runs" / "healthy01"
    shutil.copytree(HEALTHY_ROOT / "healthy01", run)
    cwd = run if where == "run" else run / "build"
    result = run_doctor(command, "--run-id", run_id, cwd=cwd)
    line = _one_line_error(result)
    assert line.startswith(f"error: --run-id {run_id!r} {says}, not a run's name; "), line
    assert f"(--run-id {run.resolve()})" in line
    assert not (run / "repairs.ndjson").exists()


def _as_another_user(top: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``doctor ARGS`` as a user the permissions under ``top`` apply to (root reads anything:
    without the capabilities that let it, :func:`tests.helpers.as_a_user`)."""
    return subprocess.run(
        [*as_a_user(), sys.executable, "-m", "doctor", *args],
        capture_output=True, text=True, timeout=60, cwd=REPO,
        env={**os.environ, "HOME": str(top), "XDG_STATE_HOME": str(top / "state")},
    )  # fmt: skip


@pytest.mark.parametrize("hidden", ["b", "b/build"])
def test_a_directory_the_permissions_hide_is_said_so(hidden: str) -> None:
    # Before: a run directory that cannot be listed was "no run 'b' under …; 1 directory was
    # not looked into"; a stage directory that cannot be listed was left out without a word
    # (its status and logs unread, the run's diagnosis the same as with them).
    top = Path(tempfile.mkdtemp(prefix="rundoctor-perm-"))
    try:
        top.chmod(0o755)
        shutil.copytree(HEALTHY_ROOT / "healthy01", top / "b")
        (top / hidden).chmod(0)
        done = _as_another_user(top, "diagnose", "--run-id", "b", "--root", str(top), "--json")
    finally:
        (top / hidden).chmod(0o755)
        shutil.rmtree(top)
    if hidden == "b":
        line = _one_line_error(done)
        assert line == (
            f"error: '{top / 'b'}' cannot be read (Permission denied); fix its permissions, or "
            "run the doctor as a user who can read it"
        ), line
    else:
        assert done.returncode == 1, done
        (found,) = [
            f for f in json.loads(done.stdout)["findings"] if f["code"] == "unreadable_artifact"
        ]
        assert found["evidence"]["file"] == "build" and "may not list or enter" in found["summary"]


def test_an_attempt_archive_the_permissions_hide_is_said_so() -> None:
    # Before: a node directory the permissions hide was an unreadable_artifact, but an attempt
    # or visit archive inside a readable one (check/attempt_2, mode 000) was left out without
    # a word, and so was a FIFO where an archive keeps its status.json.
    top = Path(tempfile.mkdtemp(prefix="rundoctor-perm-"))
    run = top / "r"
    try:
        top.chmod(0o755)
        shutil.copytree(REPO / "fixtures/kilroy/runs/retries_varying", run)
        (run / "check/attempt_5/status.json").unlink()
        os.mkfifo(run / "check/attempt_5/status.json")
        (run / "check/attempt_2").chmod(0)
        done = _as_another_user(top, "diagnose", "--run-id", "r", "--root", str(top), "--json")
    finally:
        (run / "check/attempt_2").chmod(0o755)
        shutil.rmtree(top)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done
    found = {
        f["evidence"]["file"]: f
        for f in json.loads(done.stdout)["findings"]
        if f["code"] == "unreadable_artifact"
    }
    assert set(found) == {"check/attempt_2", "check/attempt_5/status.json"}, found
    hidden, fifo = found["check/attempt_2"], found["check/attempt_5/status.json"]
    assert (hidden["severity"], hidden["evidence"]["kind"]) == ("error", "attempt")
    assert "may not list or enter" in hidden["summary"]
    assert fifo["evidence"]["kind"] == "status" and "a FIFO" in fifo["evidence"]["detail"]


_HUGE = "x" * 100_000


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ("tickets", "--db", "queue.db", "--status", _HUGE),
            "error: --status: unknown status 'xxx",
        ),
        (
            ("diagnose", "--run-id", "healthy01", "--root", HEALTHY_ROOT, "--check", _HUGE),
            "error: unknown check 'xxx",
        ),
        (
            ("enqueue", GRAPH, "--db", "queue.db", "--depends-on", _HUGE),
            "error: --depends-on: no ticket 'xxx",
        ),
        (("chaos", "run", "--seed", "1", "--faults", _HUGE), "error: unknown fault 'xxx"),
    ],
    ids=["status", "check", "ticket", "fault"],
)
def test_an_unknown_name_of_any_length_is_named_in_a_short_line(
    args: tuple[str | Path, ...], says: str, tmp_path: Path
) -> None:
    # Before: each error line repeated the value whole: 100 KB on stderr.
    queues.incident_05(host="elsewhere").write_sqlite(tmp_path / "queue.db")
    line = _one_line_error(run_doctor(*args, cwd=tmp_path))
    assert line.startswith(says) and "x…" in line and len(line) < 400, line[:500]


@pytest.fixture(scope="module")
def fleet_of_100(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hundred small runs: a scan's JSON of some 175 KB, more than a pipe holds."""
    from fixtures.fleet import build_fleet

    root = tmp_path_factory.mktemp("fleet")
    build_fleet(root, runs=100, events_per_run=100, seed=7)
    return root


def _read_until_the_pipe_is_full(fd: int) -> bytes:
    """The first bytes a writer sent, once it has filled the pipe again (it then blocks in its
    write: the readiness signal, not a guessed sleep)."""
    import fcntl
    import termios
    import time

    first = os.read(fd, 1000)
    size = fcntl.fcntl(fd, 1032)  # F_GETPIPE_SZ
    held = bytearray(4)
    end = time.monotonic() + 60
    while time.monotonic() < end:
        fcntl.ioctl(fd, termios.FIONREAD, held)
        # Full, but for what is left of the page read from (a writer never appends to it).
        if int.from_bytes(held, sys.byteorder) > size - 4096:
            return first
        time.sleep(0.01)
    raise AssertionError("the doctor never filled the pipe")


@pytest.mark.parametrize("unbuffered", ["1", ""], ids=["PYTHONUNBUFFERED", "buffered"])
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_while_the_json_goes_out_leaves_it_whole(
    fleet_of_100: Path, sig: str, unbuffered: str
) -> None:
    # Before: Ctrl-C while `scan --json` wrote into a pipe its reader drained slowly cut the
    # document where it landed (and, with PYTHONUNBUFFERED, as in many containers, dropped
    # 12 KB from its middle: a write the signal interrupted part-way lost its rest); SIGTERM
    # killed the doctor mid-document, exit -15. The document now goes out whole, then the
    # command stops: `error: interrupted`, exit 130.
    import signal

    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNDOCTOR_")}
    env["PYTHONUNBUFFERED"] = unbuffered
    with subprocess.Popen(
        [sys.executable, "-m", "doctor", "scan", "--root", str(fleet_of_100), "--json"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    ) as proc:  # fmt: skip
        assert proc.stdout is not None and proc.stderr is not None
        try:
            pieces = [_read_until_the_pipe_is_full(proc.stdout.fileno())]
        finally:
            proc.send_signal(getattr(signal, sig))
        while piece := os.read(proc.stdout.fileno(), 1 << 16):
            pieces.append(piece)
        err = proc.stderr.read().decode()
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "error: interrupted"
    doc = json.loads(b"".join(pieces))
    assert len(doc["runs"]) == 100


def test_a_terminal_reason_of_100_kb_is_cut_where_people_read_it(tmp_path: Path) -> None:
    # Before: a run whose run_failed reason held 100 KB (and a node id of 200 KB) printed them
    # whole, each on one line: the diagnosis's header, the --markdown facts and findings
    # table, the postmortem's terminal reason. They are cut with "…" there; --json keeps them.
    run = tmp_path / "runs" / "healthy01"
    shutil.copytree(HEALTHY_ROOT / "healthy01", run)
    (run / "final.json").unlink()
    reason, node = "r" * 100_000, "n" * 200_000
    with (run / "progress.ndjson").open("a") as stream:
        stream.write(json.dumps({"event": "run_failed", "reason": reason,
                                 "ts": "2026-04-28T10:02:38Z"}) + "\n")  # fmt: skip
        stream.write(json.dumps({"event": "stage_attempt_start", "node_id": node, "attempt": 1,
                                 "ts": "2026-04-28T10:02:39Z"}) + "\n")  # fmt: skip
    root = tmp_path / "runs"
    for args in ((), ("--markdown",)):
        done = _doctor("diagnose", "--run-id", "healthy01", "--root", root, *args)
        assert done.returncode == 1, done.stderr
        assert max(len(line) for line in done.stdout.splitlines()) < 3000, args
        assert "terminal reason: " in done.stdout and "r…" in done.stdout
    report = _doctor("report", "--run-id", "healthy01", "--root", root)
    (line,) = [x for x in report.stdout.splitlines() if x.startswith("Terminal reason: `rrr")]
    assert report.returncode == 0 and len(line) < 400, len(line)
    whole = _doctor("diagnose", "--run-id", "healthy01", "--root", root, "--json")
    assert json.loads(whole.stdout)["facts"]["terminal_reason"] == reason


def test_a_run_directory_passed_as_root_whose_name_is_not_utf8_gets_a_pasteable_command(
    tmp_path: Path,
) -> None:
    # Before: "'…/r\udcfe' is a run directory …; diagnose it with `doctor diagnose --run-id
    # '…/r\xfe'`": Python's repr of the name, and a command naming a file that is not there.
    root = os.fsencode(tmp_path) + b"/r\xfe"
    os.mkdir(root)
    with open(root + b"/progress.ndjson", "w") as fh:
        fh.write('{"event": "stage_attempt_start", "node_id": "a", "ts": "2026-01-01T00:00:00Z"}\n')
    done = run_doctor("scan", "--root", root)
    assert done.returncode == 2, done
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"error: '{tmp_path}/r\\xfe' is a run directory, not a runs root")
    command = re.search(r"`(doctor diagnose --run-id [^`]+)`", line)
    assert command is not None and f"$'{tmp_path}/r\\xfe'" in command[1], line
    pasted = subprocess.run(
        ["bash", "-c", f"{command[1]} --json"],
        capture_output=True,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
        check=False,
    )
    assert pasted.returncode in (0, 1), pasted
    assert json.loads(pasted.stdout)["run_id"] == "r\\xfe"


def test_a_run_id_not_utf8_as_the_doctor_shows_it_names_the_run(tmp_path: Path) -> None:
    # `scan --json` gives such a run's id and path as text (`r\xfe`); passed back, the id was
    # refused ("could name something outside a root") and the path was no run; the repair
    # command `diagnose` printed (`doctor repair --run-id 'r\xfe' …`) did not paste.
    run = os.fsencode(tmp_path) + b"/r\xfe"
    os.mkdir(run)
    with open(run + b"/progress.ndjson", "w") as fh:
        fh.write('{"event": "stage_attempt_start", "node_id": "a", "ts": "2026-01-01T00:00:00Z"}\n')
    scanned = run_doctor("scan", "--root", tmp_path, "--json")
    (listed,) = json.loads(scanned.stdout)["runs"]
    assert listed["run_id"] == "r\\xfe", listed
    for args in (("--run-id", listed["run_id"], "--root", tmp_path), ("--run-id", listed["path"])):
        done = run_doctor("diagnose", *args, "--json")
        assert done.returncode == 1, done
        assert json.loads(done.stdout)["state"] == "orphaned"
    shown = run_doctor("diagnose", "--run-id", "r\\xfe", "--root", tmp_path)
    command = re.search(r"^\s*(doctor repair --run-id .+)$", shown.stdout, re.M)
    assert command is not None, shown.stdout
    pasted = subprocess.run(
        ["bash", "-c", command[1]],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
        check=False,
    )
    assert pasted.stdout.startswith("r\\xfe · state orphaned · 1 repair planned"), pasted


# -- a group without its command, an unknown command or option --------------------------------


@pytest.mark.parametrize(
    ("args", "commands", "where"),
    [
        ((), "the commands are diagnose, scan, checks, repair, report, run, enqueue, worker, "
         "reap, tickets, watch, metrics, cache, chaos", "doctor"),
        (("chaos",), "the commands are run, faults, check", "doctor chaos"),
        (("cache",), "the command is prune", "doctor cache"),
    ],
    ids=["doctor", "chaos", "cache"],
)  # fmt: skip
def test_a_group_without_its_command_is_one_line_listing_the_commands(
    args: tuple[str, ...], commands: str, where: str
) -> None:
    # `doctor $CMD` with CMD unset. Before: the whole help (26 lines for `doctor`) on stderr,
    # exit 2: the one usage error not in the one-line shape.
    result = _doctor(*args)
    line = _one_line_error(result)
    assert line == f"error: missing command; {commands} (see `{where} --help`)"
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("scna",), "error: no such command 'scna' (did you mean 'scan'?) (see `doctor --help`)"),
        (("cache", "prne"), "error: no such command 'prne' (did you mean 'prune'?)"),
        (("chaos", "workr"), "error: no such command 'workr'; the commands are run, faults, check"),
        (("frobnicate",), "error: no such command 'frobnicate'; the commands are diagnose, scan,"),
        (("scan", "--jsn"), "error: no such option '--jsn' (did you mean '--json'"),
        (("tickets", "--stat", "x"), "error: no such option '--stat' (did you mean '--status'?)"),
        (("--verison",), "error: no such option '--verison' (did you mean '--version'?)"),
        (("scan", "--check", "x"), "error: no such option '--check' (see `doctor scan --help`)"),
    ],
    ids=["command", "cache", "hidden", "none-close", "option", "tickets", "version", "no-help"],
)
def test_an_unknown_command_or_option_gets_did_you_mean_in_the_tools_words(
    args: tuple[str, ...], says: str
) -> None:
    # Before: "no such command 'scna'. Did you mean 'scan'?", "(Possible options: --json,
    # --since)", the hidden `chaos worker` offered for `workr`, and for a name close to none
    # nothing of what there is; `scan --check` is offered no `--help`.
    assert _one_line_error(_doctor(*args)).startswith(says)


def test_an_agent_command_that_is_not_utf8_is_refused_before_anything_runs(
    tmp_path: Path,
) -> None:
    # Before: `doctor run --agent-command $'\xff'` crashed writing run_config.json
    # ("internal error (a bug in rundoctor): UnicodeEncodeError", exit 70), leaving a run
    # directory with no final.json; RUNDOCTOR_AGENT_COMMAND the same for a worker's runs.
    runs = tmp_path / "runs"
    done = run_doctor("run", GRAPH, "--root", runs, "--agent-command", b"claude \xff")
    assert "agent_command element '\\xff' is not UTF-8 text" in _one_line_error(done)
    worker = run_doctor(
        "worker", "--once", "--create-queue", "--db", tmp_path / "q.db", "--root", runs,
        env={"RUNDOCTOR_AGENT_COMMAND": os.fsdecode(b"x\xff")},
    )  # fmt: skip
    assert "is not UTF-8 text" in _one_line_error(worker)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("columns", ["0", "-5", "abc", " "])
def test_a_columns_that_is_no_width_is_read_as_unset(columns: str, tmp_path: Path) -> None:
    # Before: COLUMNS=0 was a width of 0 to Rich: `scan`, `tickets` and `diagnose` printed
    # nothing at all, exit 0; `-5` or `abc` laid a piped table out at 80 columns, cut.
    db = tmp_path / "q.db"
    assert _doctor("enqueue", GRAPH, "--db", db, "--title", "t" * 120).returncode == 0
    env = {"COLUMNS": columns}
    scan = _doctor("scan", "--root", HEALTHY_ROOT, env=env)
    (row,) = [line for line in scan.stdout.splitlines() if line.startswith("healthy01 ")]
    assert "succeeded" in row and not row.endswith("…"), scan.stdout
    tickets = _doctor("tickets", "--db", db, env=env)
    assert "t" * 120 in tickets.stdout, tickets.stdout
    diagnosis = _doctor("diagnose", "--run-id", "healthy01", "--root", HEALTHY_ROOT, env=env)
    assert diagnosis.stdout.startswith("healthy01 (kilroy) · state succeeded"), diagnosis.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("diagnose", "--run-id", "nope", "--run-id", "healthy01", "--root", str(HEALTHY_ROOT)),
        ("scan", "--root", str(HEALTHY_ROOT), "--since=1h", "--since", "2h"),
        ("chaos", "run", "--seed", "1", "--seed", "2", "--out", "{tmp}/c"),
    ],
    ids=["diagnose", "scan", "chaos"],
)
def test_an_option_of_one_value_given_two_is_refused(args: tuple[str, ...], tmp_path: Path) -> None:
    # Before: the last one won without a word: `diagnose --run-id nope --run-id healthy01`
    # diagnosed healthy01, exit 0, and `chaos run --seed 1 --seed 2` ran seed 2.
    result = _doctor(*(a.format(tmp=tmp_path) for a in args))
    line = _one_line_error(result)
    assert re.match(r"error: --(run-id|since|seed) is given twice \('.+' and '.+'\); it takes "
                    r"one value \(see `doctor [a-z ]+ --help`\)$", line), line  # fmt: skip
    assert result.stdout == "" and list(tmp_path.iterdir()) == []


def test_options_given_many_times_or_one_value_twice_are_no_error() -> None:
    same = _doctor("diagnose", "--run-id", "healthy01", "--run-id=healthy01", "--root",
                   HEALTHY_ROOT, "--root", HEALTHY_ROOT, "--json", "--json", "--check",
                   "idle_gap", "--check", "swallowed_error")  # fmt: skip
    assert same.returncode == 0, same.stderr


def test_a_markdown_report_out_of_any_name_links_its_timeline(tmp_path: Path) -> None:
    # Before: `report --out $'\xff.md'` wrote the SVG, then crashed writing the report
    # (UnicodeEncodeError, exit 70); `--out 'my report (1).md'` linked `](my report
    # (1).timeline.svg)`, which no Markdown reader takes as a link.
    from urllib.parse import unquote_to_bytes

    out = os.fsencode(tmp_path) + b"/my r\xff (1).md"
    done = run_doctor("report", "--run-id", "healthy01", "--root", HEALTHY_ROOT, "--out", out)
    assert done.returncode == 0 and done.stderr == "", done
    with open(out, encoding="utf-8") as fh:
        text = fh.read()
    (target,) = re.findall(r"!\[Timeline of run healthy01\]\(([^()\s]+)\)", text)
    assert os.path.isfile(os.fsencode(tmp_path) + b"/" + unquote_to_bytes(target)), target


def _with_stderr_gone(*args: str | Path) -> int:
    """``doctor ARGS`` whose standard error's reader goes away before its first line."""
    script = Path(sys.executable).parent / "doctor"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "doctor"]
    with subprocess.Popen(
        [*command, *map(str, args)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO,
        env={k: v for k, v in os.environ.items() if not k.startswith("RUNDOCTOR_")},
    ) as proc:  # fmt: skip
        assert proc.stderr is not None
        proc.stderr.close()
        return proc.wait(timeout=60)


def test_a_run_whose_progress_reader_goes_away_runs_to_its_own_end(tmp_path: Path) -> None:
    # `doctor run G 2>&1 | head -1`. Before: the broken pipe was raised inside the runner, and
    # a run that would have succeeded ended failed, "executor error: SystemExit: 141".
    runs = tmp_path / "runs"
    assert _with_stderr_gone("run", GRAPH, "--root", runs) == 0
    (run,) = runs.iterdir()
    final = json.loads((run / "final.json").read_text())
    assert (final["status"], final["failure_reason"]) == ("success", "")


def test_a_worker_whose_reader_goes_away_runs_every_ticket(tmp_path: Path) -> None:
    # `doctor worker --once 2>&1 | head -1`. Before: the broken pipe ended the slot's thread
    # without a word after its first line, and the worker stopped with tickets still to do
    # (or, its first line lost, holding a claimed ticket it never ran).
    db = tmp_path / "q.db"
    for _ in range(2):
        assert _doctor("enqueue", GRAPH, "--db", db).returncode == 0
    assert _with_stderr_gone("worker", "--once", "--db", db, "--root", tmp_path / "runs") == 0
    tickets = json.loads(_doctor("tickets", "--db", db, "--json").stdout)
    assert [t["status"] for t in tickets] == ["done", "done"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("diagnose", "--run-id", "healthy01", "--root", HEALTHY_ROOT, "--check", b"x\xff"),
         "error: unknown check 'x\\xff'"),
        (("scan", "--root", HEALTHY_ROOT, "--since", b"\xff"), "error: --since '\\xff' is neither"),
        (("chaos", "run", "--seed", "1", "--faults", b"\xfe"), "error: unknown fault '\\xfe'"),
    ],
    ids=["check", "since", "fault"],
)  # fmt: skip
def test_a_value_that_is_not_utf8_is_named_as_the_tools_show_such_bytes(
    args: tuple[str | bytes | Path, ...], says: str
) -> None:
    # Before: "unknown check 'x\udcff'": Python's repr of the byte, a character nobody typed,
    # where every name the tools show writes such a byte \xff.
    line = _one_line_error(run_doctor(*args))
    assert line.startswith(says) and "\\udc" not in line, line
