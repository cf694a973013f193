"""Text a ticket or a pipeline carries: what no queue could store alike, and what no stage could
run, is refused before anything is queued; what a stage says is stored the same on both backends.

PostgreSQL refuses a NUL character in text and SQLite keeps it: a graph whose command held one
was queued by ``enqueue``, then failed on SQLite with the NUL in its reason, and on PostgreSQL
could not be failed at all (the worker retried the write until its lease ran out, four times,
and the ticket ended quarantined). A 200 MB ``tool_command`` was queued and copied into every
run directory, to fail with "Argument list too long". The PostgreSQL cases run on a private
cluster (``tests/executor/private_postgres.py``), never the shared server.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from executor import SessionInfo, UsageError, open_queue
from executor._graph import MAX_COMMAND_BYTES
from tests.executor.private_postgres import PrivatePostgres
from tests.executor.test_cli import SIMPLE, _base_env, _doctor, _json, _usage_error


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    where = {"RUNDOCTOR_DB": tmp_path / "queue.db", "RUNDOCTOR_ROOT": tmp_path / "runs"}
    return {**_base_env(tmp_path), **{k: str(v) for k, v in where.items()}}


def _graph(tmp_path: Path, command: str, name: str = "p") -> Path:
    path = tmp_path / f"{name}.dot"
    quoted = command.replace("\\", "\\\\").replace('"', '\\"')
    path.write_text(
        f'digraph {name} {{ start [shape=Mdiamond]; step [shape=parallelogram, tool_command="'
        f'{quoted}"]; exit [shape=Msquare]; start -> step -> exit }}'
    )
    return path


def _nothing_created(tmp_path: Path) -> None:
    assert not (tmp_path / "queue.db").exists()
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("command", ["enqueue", "run"])
def test_a_graph_holding_a_nul_character_is_refused_before_anything_is_created(
    env: dict[str, str], tmp_path: Path, command: str
) -> None:
    graph = _graph(tmp_path, "echo a\x00b")
    line = _usage_error(_doctor(env, command, graph))
    assert "line 1: a NUL character (\\x00)" in line and "p.dot" in line
    _nothing_created(tmp_path)


def test_a_tool_command_longer_than_a_program_argument_is_refused_naming_its_node(
    env: dict[str, str], tmp_path: Path
) -> None:
    graph = _graph(tmp_path, ": " + "x" * MAX_COMMAND_BYTES)
    line = _usage_error(_doctor(env, "enqueue", graph))
    assert f"tool node 'step': tool_command is {MAX_COMMAND_BYTES + 2:,} bytes" in line
    _nothing_created(tmp_path)


def test_the_longest_tool_command_allowed_runs(env: dict[str, str], tmp_path: Path) -> None:
    graph = _graph(tmp_path, ": " + "x" * (MAX_COMMAND_BYTES - 2))
    result = _json(_doctor(env, "run", graph, "--json"))
    assert result["status"] == "success"


def test_a_graph_file_over_4_mib_is_refused_unread(env: dict[str, str], tmp_path: Path) -> None:
    graph = tmp_path / "huge.dot"
    with graph.open("wb") as f:  # sparse: its size is all that is looked at
        f.truncate(200 * 1024 * 1024)
    line = _usage_error(_doctor(env, "enqueue", graph))
    assert "larger than 4 MiB, the most a pipeline graph may be" in line
    _nothing_created(tmp_path)


def test_a_title_past_1000_characters_is_refused_naming_the_flag(
    env: dict[str, str], tmp_path: Path
) -> None:
    line = _usage_error(_doctor(env, "enqueue", SIMPLE, "--title", "t" * 1001))
    assert line.startswith("error: --title is 1,001 characters long; a title may have at most")
    _nothing_created(tmp_path)
    assert _doctor(env, "enqueue", SIMPLE, "--title", "t" * 1000).returncode == 0


# -- the queue itself, on both backends -------------------------------------------------------


@pytest.fixture
def private_url(private_pg: PrivatePostgres) -> Iterator[str]:
    schema = f"rdq_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(private_pg.url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    yield f"{private_pg.url}?options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def queue_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "queue.db")
    url: str = request.getfixturevalue("private_url")
    return url


@pytest.mark.parametrize(
    ("title", "path", "deps", "named"),
    [
        ("a\x00b", "/p.dot", (), "title 'a\\x00b'"),
        ("a", "/p\x00.dot", (), "graph_path '/p\\x00.dot'"),
        ("a", "/p.dot", ("t-\x00",), "depends_on 't-\\x00'"),
    ],
    ids=["title", "graph_path", "depends_on"],
)
def test_the_queue_refuses_a_nul_character_on_either_backend(
    queue_url: str, title: str, path: str, deps: tuple[str, ...], named: str
) -> None:
    with open_queue(queue_url) as q:
        with pytest.raises(UsageError, match="holds a NUL character") as caught:
            q.enqueue(title, path, depends_on=deps)
        assert named in str(caught.value)
        assert q.tickets() == []


def test_a_stage_that_prints_a_nul_fails_its_ticket_with_the_same_reason_on_either_backend(
    queue_url: str, env: dict[str, str], tmp_path: Path
) -> None:
    graph = _graph(tmp_path, "printf 'bad\\000thing' >&2; exit 1")
    env["RUNDOCTOR_DB"] = queue_url
    ticket = _doctor(env, "enqueue", graph).stdout.strip()
    worker = _doctor(env, "worker", "--once", "-q", "--json")
    assert _json(worker)["failed"] == 1, worker.stderr
    with open_queue(queue_url) as q:
        failed = q.get(ticket)
    assert failed.status == "failed"
    assert failed.reason is not None and "stderr tail: bad\\x00thing;" in failed.reason


# -- bytes that are not UTF-8 (a Latin-1 file name) -------------------------------------------

LATIN1 = os.fsdecode(b"caf\xe9")


def test_a_graph_whose_path_is_not_utf8_is_refused_before_a_queue_is_made(
    env: dict[str, str], tmp_path: Path
) -> None:
    # Before: "internal error … UnicodeEncodeError", exit 70 (enqueue, run --db), and `run`
    # wrote a final.json saying "executor error: UnicodeEncodeError" (its manifest).
    (tmp_path / LATIN1).mkdir()
    graph = _graph(tmp_path / LATIN1, "true")
    for args in (("enqueue", graph), ("run", graph, "--db", tmp_path / "queue.db"), ("run", graph)):
        line = _usage_error(_doctor(env, *args))
        assert line.startswith(
            f"error: pipeline graph '{tmp_path}/caf\\xe9/p.dot': its path is not UTF-8 text"
        )
    _nothing_created(tmp_path)


def test_a_title_that_is_not_utf8_is_refused_naming_the_flag(
    env: dict[str, str], tmp_path: Path
) -> None:
    line = _usage_error(_doctor(env, "enqueue", SIMPLE, "--title", LATIN1))
    assert line.startswith("error: --title 'caf\\xe9' is not UTF-8 text")
    _nothing_created(tmp_path)


def test_a_runs_root_a_queue_cannot_keep_is_refused_before_any_ticket_is_claimed(
    env: dict[str, str], tmp_path: Path
) -> None:
    # Before: the worker claimed each ticket and failed it, "executor error:
    # UnicodeEncodeError" (its run path could not be stored); `run --db` ended in exit 70.
    root = tmp_path / LATIN1 / "runs"
    ticket = _doctor(env, "enqueue", SIMPLE).stdout.strip()
    said = f"error: runs root '{tmp_path}/caf\\xe9/runs' is not UTF-8 text"
    assert _usage_error(_doctor(env, "worker", "--once", "--root", root)).startswith(said)
    for db in (("--db", env["RUNDOCTOR_DB"]), ()):  # its manifest records its paths, too
        assert _usage_error(_doctor(env, "run", SIMPLE, *db, "--root", root)).startswith(said)
    with open_queue(env["RUNDOCTOR_DB"]) as q:
        assert [(t.id, t.status) for t in q.tickets()] == [(ticket, "todo")]
    assert not root.exists()


def test_text_a_worker_writes_is_stored_alike_whatever_it_holds(queue_url: str) -> None:
    # What a stage said (its stderr, in a failure reason) may hold a NUL or a byte that is not
    # UTF-8: written as the terminal shows it, on either backend, never the write's failure.
    with open_queue(queue_url) as q:
        q.enqueue("t", "/p.dot")
        lease = q.claim("w", lease_ttl_s=60, session=SessionInfo("s", 1, 1, None, "h"))
        assert lease is not None
        failed = q.fail(lease, reason=f"a\x00b {LATIN1}", retryable=False)
        assert failed.reason == "a\\x00b caf\\xe9" == q.get(failed.id).reason
