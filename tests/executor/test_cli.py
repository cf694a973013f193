"""The executor's commands, run as a user runs them: ``python -m doctor …`` in a subprocess.

Every test points the queue (``RUNDOCTOR_DB``), the runs root (``RUNDOCTOR_ROOT``) and the
state directory (``XDG_STATE_HOME``) into ``tmp_path``, so nothing lands in the real home.
Exit codes: 0 success, 1 the run or ticket failed, 2 usage or input error (one line on
stderr, no traceback).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import doctor
from executor import SessionInfo, open_queue
from tests.executor.conftest import Backend

REPO = Path(__file__).resolve().parents[2]
PIPELINES = REPO / "fixtures" / "pipelines"
RETRY = PIPELINES / "retry_converges.dot"
LOOP = PIPELINES / "deterministic_loop.dot"
FANOUT = PIPELINES / "fanout.dot"
SIMPLE = PIPELINES / "tool_simple.dot"

#: What ``tickets --json`` must give for every ticket (issue 3), at the least.
TICKET_KEYS = {
    "id",
    "status",
    "run_id",
    "lease_epoch",
    "lease_owner",
    "pid",
    "host",
    "session_name",
    "error_attempts",
    "crash_recoveries",
    "last_heartbeat_at",
}


def _base_env(tmp: Path) -> dict[str, str]:
    # COLUMNS/LINES removed: stderr is a pipe, as under cron or CI, whatever the test's tty.
    drop = {"COLUMNS", "LINES"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNDOCTOR_") and k not in drop}
    env["XDG_STATE_HOME"] = str(tmp / "state")
    env["PYTHONIOENCODING"] = "utf-8"
    return env


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """Queue and runs root in ``tmp_path`` through the environment variables."""
    env = _base_env(tmp_path)
    env["RUNDOCTOR_DB"] = str(tmp_path / "queue.db")
    env["RUNDOCTOR_ROOT"] = str(tmp_path / "runs")
    return env


def _doctor(
    env: dict[str, str], *args: str | Path, module: str = "doctor"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        env=env,
        cwd=env["XDG_STATE_HOME"].rsplit("/", 1)[0],  # tmp_path: nothing may rely on the cwd
        capture_output=True,
        text=True,
        timeout=120,
    )


def _json(proc: subprocess.CompletedProcess[str]) -> Any:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _usage_error(proc: subprocess.CompletedProcess[str]) -> str:
    """Assert exit 2 with one error line on stderr, nothing on stdout; return the line."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{proc.stderr}"
    assert lines[0].startswith("error: "), lines[0]
    assert proc.stdout == ""
    return lines[0]


def _healthy(run_path: Path) -> None:
    d = doctor.diagnose_path(run_path, doctor.DoctorConfig())
    assert d.state == "succeeded" and d.exit_code == 0, d.findings  # nothing at error or above


# -- doctor run -------------------------------------------------------------------------------


def test_run_prints_exactly_four_fields_with_json_and_exits_0_on_success(
    env: dict[str, str], tmp_path: Path
) -> None:
    proc = _doctor(env, "run", RETRY, "--json")
    out = _json(proc)
    assert set(out) == {"run_id", "path", "status", "failure_reason"}
    assert (out["status"], out["failure_reason"]) == ("success", "")
    run_path = Path(out["path"])
    assert run_path == tmp_path / "runs" / out["run_id"]
    final = json.loads((run_path / "final.json").read_text())
    assert (final["status"], final["run_id"]) == ("success", out["run_id"])
    assert proc.stderr == ""  # --json: no progress lines
    _healthy(run_path)


def test_run_exits_1_when_the_breaker_stops_the_pipeline(env: dict[str, str]) -> None:
    proc = _doctor(env, "run", LOOP, "--json")
    assert proc.returncode == 1, proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == "fail"
    assert "deterministic failure cycle" in out["failure_reason"]
    assert "verify" in out["failure_reason"]


def test_run_shows_live_progress_on_stderr_without_json(env: dict[str, str]) -> None:
    proc = _doctor(env, "run", RETRY)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    err = proc.stderr
    for line in ("→ fetch attempt 1", "✗ fetch fail", "→ fetch attempt 3", "✓ fetch success"):
        assert line in err, err
    assert "Connection refused" in err  # a failed attempt says why
    assert err.index("✓ fetch success") < err.index("✓ verify success")
    assert "run_completed" in err
    assert re.search(r"^run [0-9A-Z]{26}: success", err, re.MULTILINE), err


def test_run_with_db_records_the_run_as_a_done_ticket(env: dict[str, str], tmp_path: Path) -> None:
    db = tmp_path / "other.db"
    out = _json(_doctor(env, "run", FANOUT, "--db", db, "--json"))
    assert out["status"] == "success"
    assert not (tmp_path / "queue.db").exists()  # --db wins over RUNDOCTOR_DB
    (ticket,) = _json(_doctor(env, "tickets", "--db", db, "--json"))
    assert (ticket["status"], ticket["run_id"], ticket["lease_epoch"]) == (
        "done",
        out["run_id"],
        1,
    )
    assert ticket["run_path"] == out["path"] and ticket["title"] == "fanout"
    assert ticket["host"] == socket.gethostname() and ticket["session_name"]
    _healthy(Path(out["path"]))


# -- enqueue, worker, tickets, reap -----------------------------------------------------------


def test_enqueue_prints_the_ticket_id(env: dict[str, str], tmp_path: Path) -> None:
    proc = _doctor(env, "enqueue", SIMPLE)
    assert proc.returncode == 0, proc.stderr
    ticket_id = proc.stdout.strip()
    assert proc.stdout == ticket_id + "\n" and ticket_id.startswith("t-") and len(ticket_id) == 14
    with open_queue(tmp_path / "queue.db") as queue:
        ticket = queue.get(ticket_id)
    assert (ticket.status, ticket.graph_path, ticket.title) == ("todo", str(SIMPLE), "tool_simple")


def test_enqueue_json_prints_the_ticket(env: dict[str, str]) -> None:
    out = _json(_doctor(env, "enqueue", SIMPLE, "--json", "--priority", "7", "--title", "pkg"))
    assert out["id"].startswith("t-")
    assert (out["status"], out["priority"], out["title"], out["lease_epoch"]) == (
        "todo",
        7,
        "pkg",
        0,
    )


def test_worker_once_runs_the_queue_and_tickets_json_shows_the_records(
    env: dict[str, str], tmp_path: Path
) -> None:
    ids = [_doctor(env, "enqueue", g).stdout.strip() for g in (RETRY, FANOUT, LOOP)]
    stats = _json(_doctor(env, "worker", "--once", "--json"))
    assert stats == {
        "claimed": 3,
        "completed": 2,
        "failed": 1,
        "released": 0,
        "fenced": 0,
        "reclaimed": 0,
    }
    tickets = _json(_doctor(env, "tickets", "--json"))
    assert isinstance(tickets, list) and [t["id"] for t in tickets] == ids
    for t in tickets:
        assert isinstance(t, dict) and set(t) >= TICKET_KEYS, TICKET_KEYS - set(t)
        assert t["lease_epoch"] == 1 and t["crash_recoveries"] == 0
        assert t["host"] == socket.gethostname() and isinstance(t["pid"], int)
        assert t["session_name"] and t["lease_owner"] and t["run_id"]
        assert isinstance(t["last_heartbeat_at"], float)
        assert (tmp_path / "runs" / t["run_id"] / "final.json").is_file()
    assert [t["status"] for t in tickets] == ["done", "done", "failed"]
    assert [t["error_attempts"] for t in tickets] == [0, 0, 1]
    for t in tickets[:2]:
        _healthy(tmp_path / "runs" / t["run_id"])
    only_failed = _json(_doctor(env, "tickets", "--json", "--status", "failed"))
    assert [t["id"] for t in only_failed] == ids[2:]


def test_tickets_table_without_json(env: dict[str, str]) -> None:
    ticket_id = _doctor(env, "enqueue", SIMPLE).stdout.strip()
    proc = _doctor(env, "tickets")
    assert proc.returncode == 0, proc.stderr
    assert "1 ticket\n" in proc.stdout and "todo" in proc.stdout
    assert ticket_id in proc.stdout  # piped, an id is whole: it is pasted into other commands


def test_reap_json_reclaims_a_dead_workers_ticket(env: dict[str, str], tmp_path: Path) -> None:
    with open_queue(tmp_path / "queue.db") as queue:
        ticket = queue.enqueue("orphan", str(SIMPLE))
        # This process, but with another start time: a worker whose pid was reused, i.e. dead.
        ghost = SessionInfo("ghost", os.getpid(), os.getpgid(0), 1, socket.gethostname())
        assert queue.claim("ghost-worker", lease_ttl_s=600, session=ghost) is not None
    (reclaim,) = _json(_doctor(env, "reap", "--json"))
    assert (reclaim["ticket_id"], reclaim["status"]) == (ticket.id, "todo")
    assert "ghost-worker" in reclaim["reason"] and "is dead" in reclaim["reason"]
    (after,) = _json(_doctor(env, "tickets", "--json"))
    assert (after["status"], after["crash_recoveries"], after["lease_owner"]) == ("todo", 1, None)


def test_reap_watches_a_lease_expired_by_the_clock_alone_before_taking_it_and_says_so(
    env: dict[str, str], tmp_path: Path
) -> None:
    # A worker on another host, nothing proves it dead: its lease, expired by the queue's
    # clock, is taken once `doctor reap` saw no heartbeat for half its TTL (one second here);
    # stderr says what the pass waits for. Before, it was taken at once: after a step of the
    # clock forward, every live lease was.
    with open_queue(tmp_path / "queue.db", clock=lambda: time.time() - 100) as queue:
        ticket = queue.enqueue("far", str(SIMPLE))
        far = SessionInfo("far", 4242, 4242, 1, "another-host")
        assert queue.claim("far-worker", lease_ttl_s=2, session=far) is not None
    proc = _doctor(env, "reap", "--json")
    (reclaim,) = _json(proc)
    assert (reclaim["ticket_id"], reclaim["status"]) == (ticket.id, "todo")
    assert "none came in the" in reclaim["reason"] and "the reaper watched" in reclaim["reason"]
    assert (
        "1 lease looks expired by the queue's clock alone: watching for a heartbeat for up to 1 s"
        in proc.stderr
    )


def _reap_watching(env: dict[str, str], db: Path) -> tuple[subprocess.Popen[str], str]:
    """A ``doctor reap --json`` process that reclaimed a dead worker's ticket at its first
    pass and now watches another host's lease; the process and the dead ticket's id, once
    it says it watches."""
    with open_queue(db, clock=lambda: time.time() - 100) as queue:
        dead = queue.enqueue("orphan", str(SIMPLE))
        ghost = SessionInfo("ghost", os.getpid(), os.getpgid(0), 1, socket.gethostname())
        assert queue.claim("ghost-worker", lease_ttl_s=600, session=ghost) is not None
        queue.enqueue("far", str(SIMPLE))
        far = SessionInfo("far", 4242, 4242, 1, "another-host")
        assert queue.claim("far-worker", lease_ttl_s=60, session=far) is not None
    reaper = subprocess.Popen(
        [sys.executable, "-m", "doctor", "reap", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert reaper.stderr is not None
    watching = reaper.stderr.readline()
    assert "1 lease looks expired by the queue's clock alone" in watching, watching
    return reaper, dead.id


def test_reap_that_loses_its_queue_while_it_watches_still_reports_what_it_reclaimed(
    env: dict[str, str], tmp_path: Path
) -> None:
    # A dead worker's ticket is reclaimed at the first pass; another host's lease is watched.
    # The queue fails meanwhile (here its file is deleted): the reclaim done is still printed,
    # the watched lease is said to be left. Before the watch, the pass ended before it failed.
    db = tmp_path / "queue.db"
    reaper, dead = _reap_watching(env, db)
    db.unlink()
    out, err = reaper.communicate(timeout=60)
    assert reaper.returncode == 0, err
    (reclaim,) = json.loads(out)
    assert (reclaim["ticket_id"], reclaim["status"]) == (dead, "todo")
    assert "was deleted or moved away" in err and "1 lease watched is left untaken" in err, err


def test_reap_interrupted_while_it_watches_still_reports_what_it_reclaimed(
    env: dict[str, str], tmp_path: Path
) -> None:
    # As above, but Ctrl-C ends the watch. Before: `error: interrupted` alone, and the dead
    # worker's ticket, already back in `todo`, was never reported.
    db = tmp_path / "queue.db"
    reaper, dead = _reap_watching(env, db)
    reaper.send_signal(signal.SIGINT)
    out, err = reaper.communicate(timeout=60)
    assert reaper.returncode == 130, err
    (reclaim,) = json.loads(out)
    assert (reclaim["ticket_id"], reclaim["status"]) == (dead, "todo")
    assert err.strip().splitlines() == ["error: interrupted"], err


# -- usage and input errors: exit 2, one line, no traceback -----------------------------------


def test_a_missing_graph_file_is_a_usage_error(env: dict[str, str], tmp_path: Path) -> None:
    missing = tmp_path / "nope.dot"
    for command in ("run", "enqueue"):
        line = _usage_error(_doctor(env, command, missing))
        assert str(missing) in line
    assert not (tmp_path / "runs").exists() and not (tmp_path / "queue.db").exists()


def test_an_invalid_graph_is_refused_with_its_line_and_reason(
    env: dict[str, str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.dot"
    bad.write_text("digraph bad {\n  start [shape=Mdiamond]\n  start -> ghost\n}\n")
    for command in ("run", "enqueue"):
        line = _usage_error(_doctor(env, command, bad))
        assert f"pipeline graph {str(bad)!r}, line 3" in line and "ghost" in line, line
    runs = tmp_path / "runs"
    assert not runs.exists() or not any(runs.iterdir())  # refused before anything ran
    assert not (tmp_path / "queue.db").exists()


BAD_URLS = [
    "mysql://db/queue",  # not a queue URL at all
    "sqlite://relative/queue.db",  # sqlite:// needs an absolute path
    "postgresql://postgres@127.0.0.1:1/test?connect_timeout=3",  # nothing listens there
]


@pytest.mark.parametrize("url", BAD_URLS)
@pytest.mark.parametrize("command", ["tickets", "enqueue", "worker", "reap"])
def test_a_bad_db_url_is_a_usage_error(env: dict[str, str], command: str, url: str) -> None:
    args: dict[str, tuple[str | Path, ...]] = {"enqueue": (SIMPLE,), "worker": ("--once",)}
    line = _usage_error(_doctor(env, command, *args.get(command, ()), "--db", url))
    assert url in line and "postgresql://" in line, line


def test_concurrency_zero_is_a_usage_error(env: dict[str, str]) -> None:
    line = _usage_error(_doctor(env, "worker", "--once", "--concurrency", "0"))
    assert "--concurrency" in line and "0" in line


# -- defaults and entry points ----------------------------------------------------------------


def test_defaults_live_under_xdg_state_home(tmp_path: Path) -> None:
    env = _base_env(tmp_path)  # no flag, no RUNDOCTOR_DB / RUNDOCTOR_ROOT
    home = tmp_path / "state" / "rundoctor"
    out = _json(_doctor(env, "run", SIMPLE, "--json"))
    assert Path(out["path"]) == home / "runs" / out["run_id"]
    ticket_id = _doctor(env, "enqueue", SIMPLE).stdout.strip()
    assert (home / "queue.db").is_file()
    _json(_doctor(env, "worker", "--once", "--json"))
    (ticket,) = _json(_doctor(env, "tickets", "--json"))
    assert (ticket["id"], ticket["status"]) == (ticket_id, "done")
    assert ticket["run_path"] == str(home / "runs" / ticket["run_id"])
    assert sorted(p.name for p in home.iterdir()) == ["queue.db", "runs"]


def test_python_dash_m_executor_help(env: dict[str, str]) -> None:
    proc = _doctor(env, "--help", module="executor")
    assert proc.returncode == 0, proc.stderr
    for command in ("run", "enqueue", "worker", "reap", "tickets"):
        assert f"  {command} " in proc.stdout
    sub = _doctor(env, "worker", "--help", module="executor")
    assert sub.returncode == 0 and "--concurrency" in sub.stdout and "--once" in sub.stdout


# -- the same commands against PostgreSQL -----------------------------------------------------


@pytest.mark.postgres
def test_enqueue_worker_tickets_on_postgresql(
    env: dict[str, str], tmp_path: Path, postgres_backend: Backend
) -> None:
    # The fixture skips locally and FAILS under CI=true when the server is unreachable; it
    # creates a fresh schema, named in the URL's search_path, and drops it afterwards.
    url = postgres_backend.url
    ticket_id = _json(_doctor(env, "enqueue", RETRY, "--db", url, "--json"))["id"]
    blocked = _json(
        _doctor(env, "enqueue", FANOUT, "--db", url, "--depends-on", ticket_id, "--json")
    )
    assert blocked["status"] == "blocked"
    stats = _json(_doctor(env, "worker", "--once", "--json", "--db", url))
    assert (stats["claimed"], stats["completed"], stats["failed"]) == (2, 2, 0)
    tickets = _json(_doctor(env, "tickets", "--db", url, "--json"))
    assert [t["id"] for t in tickets] == [ticket_id, blocked["id"]]
    for t in tickets:
        assert set(t) >= TICKET_KEYS and t["status"] == "done" and t["lease_epoch"] == 1
        _healthy(tmp_path / "runs" / t["run_id"])
    assert not (tmp_path / "queue.db").exists()  # nothing fell back to SQLite
    assert postgres_backend.raw("SELECT count(*) FROM tickets") == [(2,)]


def test_worker_refuses_a_lease_too_short_to_keep_and_keeps_the_shortest_it_takes(
    env: dict[str, str],
) -> None:
    # Before: ``--lease-ttl 1ms`` was taken, and the worker fenced every ticket it claimed
    # (a heartbeat every 0.17 ms through the database, a fence after 0.75 ms).
    ticket = _doctor(env, "enqueue", SIMPLE).stdout.strip()
    refused = _doctor(env, "worker", "--once", "--lease-ttl", "1ms")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.count("\n") == 1 and "--lease-ttl 1ms" in refused.stderr
    tickets = _json(_doctor(env, "tickets", "--json"))
    assert [(t["id"], t["status"]) for t in tickets] == [(ticket, "todo")]  # nothing claimed
    stats = _json(_doctor(env, "worker", "--once", "--json", "--lease-ttl", "1s"))
    assert (stats["completed"], stats["fenced"]) == (1, 0), stats


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--db", "/etc/passwd/q.db"), "cannot create the queue's directory '/etc/passwd': it is"),
        (("--db", "{tmp}/a-file/sub/q.db"), "sub': Not a directory"),
        ((), "rundoctor': Not a directory"),  # $XDG_STATE_HOME names a file
    ],
)
def test_enqueue_where_the_queue_s_directory_cannot_be_made_is_one_line(
    tmp_path: Path, args: tuple[str, ...], says: str
) -> None:
    # Before: NotADirectoryError from making the directory: "internal error", exit 70.
    (tmp_path / "a-file").write_text("")
    env = _base_env(tmp_path)
    if not args:
        env["XDG_STATE_HOME"] = str(tmp_path / "a-file")
    flags = [a.format(tmp=tmp_path) for a in args]
    line = _usage_error(_doctor(env, "enqueue", SIMPLE, *flags))
    assert says in line, line


# -- costs JSON cannot write -------------------------------------------------------------------


def _strict_json(data: bytes) -> Any:
    """JSON as every other reader takes it: ``Infinity`` and ``NaN`` are no numbers."""

    def refuse(word: str) -> Any:
        raise ValueError(f"{word} is not JSON")

    return json.loads(data, parse_constant=refuse)


def test_costs_no_double_holds_never_stop_a_run_nor_reach_its_json(
    env: dict[str, str], tmp_path: Path
) -> None:
    # Before: a stage reporting a 400-digit cost stopped the run ("executor error:
    # OverflowError"), exit 70; Infinity (which Python's json reads), or two costs of 1e308,
    # went into every event and document after it as `Infinity`: the doctor read final.json as
    # torn and the successful run as never ended (critical).
    costs = ["9" * 400, "Infinity", "1e308", "1.7e308"]
    stages = "\n".join(
        f"  s{i} [shape=parallelogram, tool_command=\"printf '%s' "
        f'\'{{\\"status\\": \\"success\\", \\"cost_usd\\": {c}}}\' > status.json"]'
        for i, c in enumerate(costs)
    )
    chain = " -> ".join(f"s{i}" for i in range(len(costs)))
    dot = tmp_path / "costs.dot"
    dot.write_text(
        f"digraph costs {{\n  start [shape=Mdiamond]\n  exit [shape=Msquare]\n{stages}\n"
        f"  start -> {chain} -> exit\n}}\n"
    )
    out = _json(_doctor(env, "run", dot, "--json"))
    assert out["status"] == "success"
    run_path = Path(out["path"])
    final = _strict_json((run_path / "final.json").read_bytes())
    assert final["status"] == "success" and final["cost_usd"] is None  # 1e308 + 1.7e308
    for line in (run_path / "progress.ndjson").read_bytes().splitlines():
        _strict_json(line)
    _healthy(run_path)


def test_a_stage_status_file_holding_infinity_or_nan_is_kept_as_valid_json(
    env: dict[str, str], tmp_path: Path
) -> None:
    # Before: the stage's file was moved into the attempt directory unchanged, so
    # stage_status.json (and an ignored one, .ignored.json) kept `Infinity`: no file of a run
    # was to hold one, and no reader but Python's json takes it.
    won = '{"status": "success", "cost_usd": Infinity, "meta": {"n": [NaN, -1e999, 2.5]}}'
    lost = '{"status": "fail", "notes": "x", "cost_usd": -Infinity}'
    command = f"printf '%s' '{won}' > $STAGE_STATUS_PATH; printf '%s' '{lost}' > status.json"
    dot = tmp_path / "nan.dot"
    quoted = command.replace('"', '\\"')
    dot.write_text(
        f'digraph nan {{ start [shape=Mdiamond]; s [shape=parallelogram, tool_command="{quoted}"];'
        " exit [shape=Msquare]; start -> s -> exit }"
    )
    out = _json(_doctor(env, "run", dot, "--json"))
    attempt = Path(out["path"]) / "s" / "attempt-1"
    assert _strict_json((attempt / "stage_status.json").read_bytes()) == {
        "status": "success",
        "cost_usd": None,
        "meta": {"n": [None, None, 2.5]},
    }
    ignored = _strict_json((attempt / "stage_status.worktree.ignored.json").read_bytes())
    assert ignored == {"status": "fail", "notes": "x", "cost_usd": None}
    for path in Path(out["path"]).rglob("*.json"):
        _strict_json(path.read_bytes())


def test_a_queue_on_proc_is_not_said_to_be_on_a_full_disk(env: dict[str, str]) -> None:
    # Before: "disk I/O error: the file system holding it is full; free space there": /proc
    # has no free block, as it has no block at all.
    line = _usage_error(_doctor(env, "enqueue", SIMPLE, "--db", "/proc/self/mem"))
    assert "it is on a file system that stores nothing (/proc, /sys)" in line
    assert "full" not in line


@pytest.mark.parametrize(
    ("fifo", "code", "says"),
    [
        ("$KILROY_STAGE_LOGS_DIR/stderr.log", 1, "stderr tail: (stderr.log unreadable: not a"),
        ("$KILROY_LOGS_ROOT/progress.ndjson", 2, "No such device or address (/"),
    ],
    ids=["stderr.log", "progress.ndjson"],
)
def test_a_fifo_a_stage_leaves_in_its_run_is_never_waited_on(
    env: dict[str, str], tmp_path: Path, fifo: str, code: int, says: str
) -> None:
    # Before: the executor opened the path the stage had made a FIFO (to read stderr's tail,
    # to append an event) and waited for a partner for good; SIGTERM could not end it.
    dot = tmp_path / "fifo.dot"
    command = f'rm -f \\"{fifo}\\"; mkfifo \\"{fifo}\\"; exit 1'
    dot.write_text(
        f"digraph p {{ start [shape=Mdiamond]; s [shape=parallelogram, max_retries=0, "
        f'tool_command="{command}"]; exit [shape=Msquare]; start -> s -> exit }}'
    )
    done = _doctor(env, "run", dot)
    assert done.returncode == code, done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr
    if code == 2:  # the root is not what failed: no advice to pass another one
        assert "progress.ndjson' is no regular file the run can write" in done.stderr
        assert "remove it" in done.stderr and "free space" not in done.stderr
