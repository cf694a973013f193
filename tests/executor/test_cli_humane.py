"""The executor's commands as a person meets them (issue 13): Ctrl-C, mistakes, progress, help.

Real subprocesses, real SIGINT: a test waits for the stage to say it started (a file it
writes) before sending the signal, and the command must end with one line and exit 130.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from executor import open_queue
from tests.executor.conftest import PG_URL, require_postgres
from tests.executor.test_cli import LOOP, PIPELINES, SIMPLE, _base_env, _doctor, _json, _usage_error

AGENTS = PIPELINES / "agent_status.dot"

LONG = """digraph long {{
  start [shape=Mdiamond]
  exit [shape=Msquare]
  wait [shape=parallelogram, timeout="300s", tool_command="touch {ready} && sleep 120"]
  start -> wait -> exit
}}
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = _base_env(tmp_path)
    env["RUNDOCTOR_DB"] = str(tmp_path / "queue.db")
    env["RUNDOCTOR_ROOT"] = str(tmp_path / "runs")
    return env


def _long_graph(tmp_path: Path) -> tuple[Path, Path]:
    ready = tmp_path / "stage-started"
    graph = tmp_path / "long.dot"
    graph.write_text(LONG.format(ready=ready))
    return graph, ready


def _interrupt_when(proc: subprocess.Popen[str], ready: Path, within: float = 60.0) -> None:
    """Send SIGINT once ``ready`` exists (the readiness signal), not after a guessed sleep."""
    end = time.monotonic() + within
    while not ready.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, f"{ready} never appeared"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)


def _start(env: dict[str, str], *args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "doctor", *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _one_interrupted_line(proc: subprocess.Popen[str]) -> tuple[str, str]:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (proc.returncode, out, err)
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: interrupted"), err
    assert "Traceback" not in err
    return out, lines[-1]


# -- Ctrl-C -------------------------------------------------------------------------------------


def test_ctrl_c_during_doctor_run_cancels_the_run_and_exits_130(
    env: dict[str, str], tmp_path: Path
) -> None:
    graph, ready = _long_graph(tmp_path)
    proc = _start(env, "run", graph, "--json")
    _interrupt_when(proc, ready)
    out, line = _one_interrupted_line(proc)
    assert out == ""  # nothing half-written on stdout
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name in line
    assert json.loads((run / "final.json").read_text())["status"] == "canceled"


def test_ctrl_c_stops_a_worker_releases_its_ticket_and_exits_130(
    env: dict[str, str], tmp_path: Path
) -> None:
    graph, ready = _long_graph(tmp_path)
    ticket_id = _doctor(env, "enqueue", graph).stdout.strip()
    proc = _start(env, "worker", "--quiet")
    _interrupt_when(proc, ready)
    _out, line = _one_interrupted_line(proc)
    assert "worker stopped" in line and "released 1" in line
    (ticket,) = _json(_doctor(env, "tickets", "--json"))
    assert (ticket["id"], ticket["status"]) == (ticket_id, "todo")


# -- mistakes never create anything ----------------------------------------------------------


def test_tickets_with_a_mistyped_db_creates_nothing_and_suggests_the_real_queue(
    env: dict[str, str], tmp_path: Path
) -> None:
    _doctor(env, "enqueue", SIMPLE)
    typo = tmp_path / "queu.db"
    for command in ("tickets", "reap"):
        line = _usage_error(_doctor(env, command, "--db", typo))
        assert f"no queue at '{typo}'" in line
        assert f"did you mean '{tmp_path / 'queue.db'}'" in line
        assert "doctor enqueue GRAPH --db" in line
        assert not typo.exists()


def test_a_missing_sqlite_queue_names_both_commands_that_create_one(
    env: dict[str, str], tmp_path: Path
) -> None:
    # The README: a missing queue is refused "with one line naming `doctor enqueue` and
    # `doctor worker --create-queue`". A missing SQLite file named only the first, though a
    # worker refused for it has the flag at hand.
    missing = tmp_path / "nowhere.db"
    for command in ("tickets", "reap", "worker"):
        line = _usage_error(_doctor(env, command, "--db", missing))
        assert f"`doctor enqueue GRAPH --db {missing}`" in line, command
        assert f"`doctor worker --create-queue --db {missing}`" in line, command
        assert not missing.exists()


def test_a_queue_name_too_long_asks_for_a_shorter_path_not_for_permissions(
    env: dict[str, str], tmp_path: Path
) -> None:
    # "it cannot be reached (File name too long); check the permissions of its directories"
    # sent the user to chmod for a name over NAME_MAX (255 bytes).
    long = tmp_path / ("q" * 300 + ".db")
    for command in (("enqueue", SIMPLE), ("tickets",), ("scan",)):
        line = _usage_error(_doctor(env, *command, "--db", long))
        assert line.endswith("(File name too long); pass a shorter path"), line


def test_a_queue_that_is_a_dangling_symlink_is_called_one_not_suggested_as_itself(
    env: dict[str, str], tmp_path: Path
) -> None:
    # Before: "no queue at 'q.db' (did you mean 'q.db'?)": the symlink's own name, suggested.
    link = tmp_path / "q.db"
    link.symlink_to(tmp_path / "moved" / "queue.db")
    for command in ("tickets", "reap"):
        line = _usage_error(_doctor(env, command, "--db", link))
        assert "did you mean" not in line
        assert f"it is a symlink to '{tmp_path / 'moved' / 'queue.db'}'" in line
    assert not (tmp_path / "moved").exists()


def test_a_worker_on_a_missing_directory_creates_nothing(
    env: dict[str, str], tmp_path: Path
) -> None:
    missing = tmp_path / "nonexistent" / "dir" / "q.db"
    line = _usage_error(_doctor(env, "worker", "--db", missing, "--once"))
    assert str(missing) in line
    assert not (tmp_path / "nonexistent").exists()


def test_a_worker_creates_its_queue_when_asked(env: dict[str, str], tmp_path: Path) -> None:
    fresh = tmp_path / "new" / "q.db"
    proc = _doctor(env, "worker", "--db", fresh, "--once", "--create-queue", "--json")
    assert _json(proc)["claimed"] == 0
    assert fresh.is_file()


def test_reap_takes_a_schema_parameter_as_scan_does(env: dict[str, str]) -> None:
    require_postgres()
    schema = f"rd13_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        open_queue(f"{PG_URL}?options=-csearch_path%3D{schema}").close()
        proc = _doctor(env, "reap", "--db", f"{PG_URL}?schema={schema}", "--json")
        assert _json(proc) == []
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def _schema_exists(schema: str) -> bool:
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        found = admin.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
        return bool(found.fetchall())


def _tables_in(schema: str) -> list[str]:
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        found = admin.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
        )
        return sorted(str(row[0]) for row in found.fetchall())


def _drop_schema(schema: str) -> None:
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


INSPECTING = (("tickets",), ("reap",), ("worker", "--once"))


@pytest.mark.postgres
def test_inspecting_a_postgres_schema_that_does_not_exist_creates_nothing(
    env: dict[str, str],
) -> None:
    require_postgres()
    schema = f"rd13_{uuid.uuid4().hex[:12]}"
    try:
        for command in INSPECTING:
            line = _usage_error(_doctor(env, *command, "--db", f"{PG_URL}?schema={schema}"))
            assert f"no queue at '{PG_URL}?schema={schema}'" in line, command
            assert "doctor enqueue GRAPH --db" in line and "doctor worker --create-queue" in line
            assert not _schema_exists(schema), command
    finally:
        _drop_schema(schema)


@pytest.mark.postgres
def test_inspecting_an_empty_postgres_schema_creates_no_tables(env: dict[str, str]) -> None:
    require_postgres()
    schema = f"rd13_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        for command in INSPECTING:
            line = _usage_error(_doctor(env, *command, "--db", f"{PG_URL}?schema={schema}"))
            assert "doctor worker --create-queue" in line, command
            assert _tables_in(schema) == [], command
    finally:
        _drop_schema(schema)


@pytest.mark.postgres
def test_enqueue_and_create_queue_make_the_schema_the_hint_names(env: dict[str, str]) -> None:
    require_postgres()
    made, asked = (f"rd13_{uuid.uuid4().hex[:12]}" for _ in range(2))
    try:
        ticket_id = _doctor(env, "enqueue", SIMPLE, "--db", f"{PG_URL}?schema={made}").stdout
        found = _json(_doctor(env, "tickets", "--db", f"{PG_URL}?schema={made}", "--json"))
        assert [t["id"] for t in found] == [ticket_id.strip()]
        proc = _doctor(
            env, "worker", "--once", "--create-queue", "--json", "--db", f"{PG_URL}?schema={asked}"
        )
        assert _json(proc)["claimed"] == 0
        assert "tickets" in _tables_in(asked)
    finally:
        _drop_schema(made)
        _drop_schema(asked)


def test_a_sqlite_file_without_a_queue_is_left_untouched(
    env: dict[str, str], tmp_path: Path
) -> None:
    other = tmp_path / "other.db"
    other.write_bytes(b"")
    for command in INSPECTING:
        line = _usage_error(_doctor(env, *command, "--db", other))
        assert "doctor worker --create-queue" in line, command
        assert other.read_bytes() == b"", command
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("other")) == [
            "other.db"
        ]


def test_a_worker_ticket_missing_its_agent_command_names_the_flag_and_the_variable(
    env: dict[str, str],
) -> None:
    ticket_id = _doctor(env, "enqueue", AGENTS).stdout.strip()
    proc = _doctor(env, "worker", "--once")
    assert proc.returncode == 0, proc.stderr
    (ticket,) = _json(_doctor(env, "tickets", "--json"))
    assert ticket["id"] == ticket_id and ticket["status"] == "failed"
    line = _usage_error(_doctor(env, "run", AGENTS)).removeprefix("error: ")
    assert line in ticket["reason"]  # the same words as `doctor run`
    assert "--agent-command" in line and "RUNDOCTOR_AGENT_COMMAND" in line
    assert "config." not in ticket["reason"] and "('" not in ticket["reason"]
    shown = [ln for ln in proc.stderr.splitlines() if ln.startswith(f"✗ {ticket_id}")]
    assert len(shown) == 1 and line in shown[0], proc.stderr


def test_a_missing_agent_command_names_the_flag_and_the_variable(
    env: dict[str, str], tmp_path: Path
) -> None:
    line = _usage_error(_doctor(env, "run", AGENTS))
    assert "--agent-command" in line and "RUNDOCTOR_AGENT_COMMAND" in line
    assert "config." not in line and "('" not in line  # no library field, no Python tuple
    assert not (tmp_path / "runs").exists()


def test_typer_usage_errors_are_one_line_like_the_tools_own(env: dict[str, str]) -> None:
    line = _usage_error(_doctor(env, "worker", "--concurency", "2"))
    assert "--concurency" in line and "doctor worker --help" in line
    line = _usage_error(_doctor(env, "enqueue"))
    assert "GRAPH" in line


# -- progress, help, completion ------------------------------------------------------------------


def test_a_worker_prints_a_line_per_ticket_claimed_and_finished(env: dict[str, str]) -> None:
    ticket_id = _doctor(env, "enqueue", SIMPLE).stdout.strip()
    proc = _doctor(env, "worker", "--once")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert any(f"claimed {ticket_id}" in x for x in lines), proc.stderr
    assert any(ticket_id in x and "success" in x for x in lines), proc.stderr
    assert lines[-1].startswith("worker stopped: claimed 1")


def test_quiet_silences_the_worker_progress_lines(env: dict[str, str]) -> None:
    ticket_id = _doctor(env, "enqueue", SIMPLE).stdout.strip()
    proc = _doctor(env, "worker", "--once", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert ticket_id not in proc.stderr
    assert proc.stderr.startswith("worker stopped: claimed 1")


@pytest.mark.parametrize("command", ["run", "enqueue", "worker", "reap", "tickets"])
def test_every_option_has_help_and_a_plain_metavar(env: dict[str, str], command: str) -> None:
    proc = _doctor(env, command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "<list[" not in proc.stdout, proc.stdout
    options = re.findall(r"^  (-[-\w, ]+?)( [A-Z]+)?(?:\s{2,}(\S.*))?$", proc.stdout, re.M)
    assert options, proc.stdout
    for flags, _metavar, text in options:
        assert text.strip(), f"{flags} has no help text:\n{proc.stdout}"
    for line in proc.stdout.splitlines():
        if line.startswith("  -"):
            assert "<" not in line.split("  ")[1], line  # METAVAR, not <type>


def test_doctor_run_queues_only_with_db_as_its_help_and_the_readme_say(
    env: dict[str, str], tmp_path: Path
) -> None:
    # `run --help` said "--db … (default $RUNDOCTOR_DB, else $XDG_STATE_HOME/rundoctor/queue.db)"
    # and the README's table listed `run` among RUNDOCTOR_DB's readers, but a foreground run is
    # queued only with --db: the variable set for the workers never makes it a ticket.
    queue = tmp_path / "workers-queue.db"
    proc = _doctor({**env, "RUNDOCTOR_DB": str(queue)}, "run", SIMPLE, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "success"
    assert not queue.exists()
    help_text = " ".join(_doctor(env, "run", "--help").stdout.split())
    assert "never taken from $RUNDOCTOR_DB" in help_text
    readme = (PIPELINES.parents[1] / "README.md").read_text()
    (row,) = [line for line in readme.splitlines() if line.startswith("| `RUNDOCTOR_DB` |")]
    readers = [c.strip() for c in row.split("|")[2].split(",")]
    assert "run" not in readers and {"enqueue", "worker", "reap", "tickets"} <= set(readers)


def test_doctor_run_names_the_breaker_that_stopped_it_and_no_line_ends_in_a_space(
    env: dict[str, str],
) -> None:
    # The README: progress ends with "the breaker or the terminal event". The breaker's line
    # was its bare name and a space (the event has no reason), `run_completed` too.
    proc = _doctor(env, "run", LOOP)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.splitlines()
    (breaker,) = [x for x in lines if x.startswith("deterministic_failure_cycle_breaker")]
    assert breaker.startswith(
        "deterministic_failure_cycle_breaker on verify: 3 failures of one signature (limit 3): "
        "verify|deterministic|exit status <n>"
    )
    done = _doctor(env, "run", SIMPLE).stderr.splitlines()
    assert "run_completed" in done
    assert not [x for x in lines + done if x.endswith(" ")]


def test_a_breaker_of_limit_one_counts_its_failure_in_the_singular(
    env: dict[str, str], tmp_path: Path
) -> None:
    # It printed "1 failures of one signature (limit 1)".
    graph = tmp_path / "loop1.dot"
    graph.write_text(LOOP.read_text().replace("breaker_limit=3", "breaker_limit=1"))
    proc = _doctor(env, "run", graph)
    assert proc.returncode == 1, proc.stderr
    (breaker,) = [x for x in proc.stderr.splitlines() if x.startswith("deterministic_failure")]
    assert ": 1 failure of one signature (limit 1): " in breaker, breaker


def test_shell_completion_completes_command_names(env: dict[str, str]) -> None:
    script = Path(sys.executable).parent / "doctor"  # completion is keyed on the script's name
    proc = subprocess.run(
        [str(script)],
        env={
            **env,
            "_DOCTOR_COMPLETE": "complete_bash",
            "COMP_WORDS": "doctor tick",
            "COMP_CWORD": "1",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "tickets" in proc.stdout.split(), (proc.stdout, proc.stderr)


def test_piped_progress_of_doctor_run_is_never_hard_wrapped(
    env: dict[str, str], tmp_path: Path
) -> None:
    graph = tmp_path / "noisy.dot"
    graph.write_text(
        "digraph noisy { start [shape=Mdiamond]; exit [shape=Msquare];"
        ' boom [shape=parallelogram, tool_command="echo'
        ' the compiler could not find the header file it was told to include >&2; exit 1"];'
        " start -> boom -> exit }"
    )
    proc = _doctor(env, "run", graph)  # stderr is a pipe; COLUMNS is unset
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.splitlines()
    assert any(
        line.startswith("✗ boom fail: exit status 1") and "it was told to include;" in line
        for line in lines
    ), proc.stderr
    assert re.search(r"^run \S+: fail \(/\S+\)$", proc.stderr, re.M), proc.stderr


@pytest.mark.parametrize("width", ["60", "160"])
def test_the_tickets_table_is_one_line_per_ticket_with_ids_whole(
    env: dict[str, str], width: str
) -> None:
    long_title = "a title far longer than any narrow terminal would show on one line " * 2
    ids = [_doctor(env, "enqueue", SIMPLE, "--title", long_title).stdout.strip() for _ in range(2)]
    proc = _doctor({**env, "COLUMNS": width}, "tickets")
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if "todo" in line]
    assert len(rows) == 2, proc.stdout
    # Most recently changed first: the second ticket's line comes first.
    for ticket_id, row in zip(reversed(ids), rows, strict=True):
        assert ticket_id in row and len(row) <= int(width)
        assert "…" in row  # the title is cut, not wrapped
