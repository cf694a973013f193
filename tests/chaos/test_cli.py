"""The chaos commands through both front doors: ``doctor chaos`` and ``python -m chaos``."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from chaos import FAULTS
from executor import open_queue
from tests.chaos.test_checkers import clean
from tests.helpers import NEEDS_ROOT_FOR_TMPFS

REPO = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "entry", [("-m", "doctor", "chaos"), ("-m", "chaos")], ids=["doctor", "chaos"]
)
def test_faults_lists_every_fault_with_what_it_may_cause(entry: tuple[str, ...]) -> None:
    done = run(*entry, "faults")
    assert done.returncode == 0, done.stderr
    for f in FAULTS:
        assert f.name in done.stdout
    assert "may cause: stale_heartbeat, torn_artifact" in done.stdout
    assert "may cause: nothing at error or above" in done.stdout


def test_faults_keeps_each_fault_on_one_line_however_narrow_the_terminal() -> None:
    # Before: at 80 columns (a pipe) and narrower, a summary was cut into lines that went on
    # at the margin: "sigstop_worker  SIGSTOP a worker … (it must stay" / "fenced).".
    done = subprocess.run(
        [sys.executable, "-m", "doctor", "chaos", "faults"],
        cwd=REPO, capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "40"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for f in FAULTS:
        assert f"{f.name}  {f.summary}" in lines
    assert len(lines) == 2 * len(FAULTS)


def test_an_unknown_fault_is_one_red_line_and_exit_2(tmp_path: Path) -> None:
    done = run(
        "-m",
        "doctor",
        "chaos",
        "run",
        "--seed",
        "1",
        "--faults",
        "sigkil_worker",
        "--out",
        str(tmp_path),
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "unknown fault 'sigkil_worker' (did you mean 'sigkill_worker'" in done.stderr
    assert list(tmp_path.iterdir()) == []  # refused before anything ran


@pytest.mark.parametrize("selection", ["", " , ", ","])
def test_a_faults_selection_naming_no_fault_is_refused_not_read_as_all(
    selection: str, tmp_path: Path
) -> None:
    done = run(
        "-m", "doctor", "chaos", "run", "--seed", "1", "--faults", selection, "--out", str(tmp_path)
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"--faults {selection!r} names no fault" in lines[0]
    assert "leave --faults out to run all of them" in lines[0]
    assert list(tmp_path.iterdir()) == []  # refused before anything ran


def test_an_unknown_fault_beside_a_blank_entry_still_gets_did_you_mean(tmp_path: Path) -> None:
    out = str(tmp_path)
    done = run("-m", "chaos", "run", "--seed", "1", "--faults", " ,torn_wrte,", "--out", out)
    assert done.returncode == 2
    assert "unknown fault 'torn_wrte' (did you mean 'torn_write'?)" in done.stderr


def test_a_bad_duration_is_a_usage_error() -> None:
    done = run("-m", "chaos", "run", "--seed", "1", "--duration", "soon")
    assert done.returncode == 2 and "--duration: 'soon' is not a duration" in done.stderr


def test_a_negative_seed_is_refused_in_one_line(tmp_path: Path) -> None:
    done = run("-m", "chaos", "run", "--seed", "-1", "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert "--seed must be 0 or more, got -1" in line
    assert not (tmp_path / "out").exists()


def test_an_out_dir_holding_other_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    done = run("-m", "chaos", "run", "--seed", "1", "--duration", "5s", "--out", str(tmp_path))
    assert done.returncode == 2 and "holds other files (notes.txt)" in done.stderr


def test_check_rechecks_a_saved_history_and_exits_1_on_a_violation(tmp_path: Path) -> None:
    from chaos import write_history

    s = clean()
    s.event(13.0, "t-1", "completed", "w2/0", 1)
    write_history(tmp_path / "history.ndjson", s.history().records)
    done = run("-m", "chaos", "check", str(tmp_path / "history.ndjson"))
    assert done.returncode == 1
    assert "✗ at_most_one_completion: t-1 was completed 2 times" in done.stdout
    assert "✓ no_ticket_lost" in done.stdout


def test_faults_json_lists_every_fault_with_what_it_may_cause() -> None:
    import json

    done = run("-m", "doctor", "chaos", "faults", "--json")
    assert done.returncode == 0, done.stderr
    faults = json.loads(done.stdout)
    assert [f["name"] for f in faults] == [f.name for f in FAULTS]
    assert all(set(f) == {"name", "summary", "may_cause", "reclaims"} for f in faults)


def test_check_json_prints_the_verdicts_and_keeps_the_exit_code(tmp_path: Path) -> None:
    import json

    from chaos import write_history

    s = clean()
    s.event(13.0, "t-1", "completed", "w2/0", 1)
    write_history(tmp_path / "history.ndjson", s.history().records)
    done = run("-m", "doctor", "chaos", "check", str(tmp_path / "history.ndjson"), "--json")
    assert done.returncode == 1
    verdicts = {v["name"]: v for v in json.loads(done.stdout)}
    assert verdicts["at_most_one_completion"]["ok"] is False
    assert verdicts["at_most_one_completion"]["witness"]
    assert verdicts["no_ticket_lost"]["ok"] is True


def _replay(printed: str) -> list[str]:
    """The printed replay command (``doctor chaos run …``) as ``python -m chaos run …``."""
    line = next(x for x in printed.splitlines() if x.strip().startswith("doctor chaos run "))
    return ["-m", "chaos", *shlex.split(line)[2:]]


def _schedule(out: Path) -> list[object]:
    with (out / "history.ndjson").open() as f:
        meta = json.loads(f.readline())
    assert meta["kind"] == "meta"
    return list(meta["schedule"])


@pytest.mark.chaos
def test_the_printed_replay_of_a_campaign_on_a_sqlite_db_file_runs_the_same_schedule(
    tmp_path: Path,
) -> None:
    # Before: the replay command named the same --db, which the first campaign had filled,
    # and was refused ("exists; a campaign needs a fresh queue file", exit 2).
    db, out = tmp_path / "q.db", tmp_path / "out"
    first = run(
        "-m", "chaos", "run", "--seed", "6", "--duration", "3s", "--workers", "2",
        "--faults", "torn_write", "--db", str(db), "--out", str(out),
    )  # fmt: skip
    assert first.returncode == 0, first.stdout + first.stderr
    schedule = _schedule(out)
    again = run(*_replay(first.stdout + first.stderr))
    assert again.returncode == 0, again.stdout + again.stderr
    assert _schedule(out) == schedule


def test_a_sqlite_db_file_that_is_not_a_previous_campaigns_queue_is_refused_untouched(
    tmp_path: Path,
) -> None:
    db = tmp_path / "q.db"
    queue = open_queue(f"sqlite:///{db}")
    queue.enqueue("mine", str(tmp_path / "pipelines" / "mine.dot"))
    queue.close()
    before = db.read_bytes()
    done = run("-m", "chaos", "run", "--seed", "1", "--db", str(db), "--out", str(tmp_path / "o"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "exists; a campaign needs a fresh queue file" in done.stderr
    assert db.read_bytes() == before


@pytest.mark.parametrize("kind", ["mysql", "fifo", "directory"])
def test_a_db_no_campaign_can_use_is_refused_before_the_campaign_starts(
    tmp_path: Path, kind: str
) -> None:
    # Before: the queue refused it once the campaign had printed its start and written its
    # workload to --out: three lines, the last saying "cannot open" twice.
    db = {"mysql": "mysql://me@db/q", "fifo": str(tmp_path / "fifo"), "directory": str(tmp_path)}
    os.mkfifo(tmp_path / "fifo")
    out = tmp_path / "o"
    done = run("-m", "chaos", "run", "--seed", "1", "--db", db[kind], "--out", str(out))
    assert done.returncode == 2 and done.stdout == "", done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"error: --db {db[kind]!r} is ") and "pass " in line, line
    assert not out.exists()


def test_a_postgresql_url_naming_a_schema_is_refused_in_one_line_before_connecting(
    tmp_path: Path,
) -> None:
    # Port 9 has no server: the refusal comes before any connection is tried.
    url = "postgresql://me:s3cret@127.0.0.1:9/db?schema=mine"
    done = run("-m", "chaos", "run", "--seed", "1", "--db", url, "--out", str(tmp_path / "o"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "a campaign makes a schema of its own" in done.stderr
    assert "s3cret" not in done.stderr + done.stdout


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("?foo=bar", "is no PostgreSQL URL libpq reads: invalid URI query parameter"),
        ("?schema=", "a campaign makes a schema of its own"),
        ("?sslmode=bogus", "invalid sslmode value"),
        ("?options=-csearch_path%3D{schema}", "names no schema that exists"),
        ("", "cannot create schema chaos_1_"),  # a server that refuses (port 9 has none)
    ],
    ids=["parameter", "empty-schema", "sslmode", "no-such-search-path", "unreachable"],
)
def test_a_postgresql_db_no_campaign_can_use_leaves_out_as_it_was(
    tmp_path: Path, query: str, says: str
) -> None:
    # Before: `--out/campaign` was made, and a previous campaign in --out cleared away, before
    # the URL failed at the schema (`?foo=bar`, `?schema=`), or once the campaign had printed
    # its replay (`options=` naming no schema).
    from tests.helpers import PG_URL, require_postgres

    if "options" in query:
        require_postgres()
    base = PG_URL if "options" in query else "postgresql://postgres@127.0.0.1:9/test"
    schema = f"no_such_schema_{os.getpid()}_{tmp_path.name}".lower()
    out = tmp_path / "o"
    out.mkdir()
    (out / "report.md").write_text("the previous campaign's report\n")
    url = base + query.format(schema=schema)
    try:
        done = run("-m", "chaos", "run", "--seed", "1", "--duration", "1", "--db", url,
                   "--out", str(out))  # fmt: skip
    finally:
        if "options" in query:  # a campaign that ran (the bug) made the schema its queue's
            import psycopg

            with psycopg.connect(PG_URL, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    assert done.returncode == 2 and done.stdout == "", done
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: ") and says in line, line
    assert [p.name for p in out.iterdir()] == ["report.md"]
    assert (out / "report.md").read_text() == "the previous campaign's report\n"


def test_a_password_in_the_db_urls_query_is_never_printed(tmp_path: Path) -> None:
    # Port 9 has no server: the campaign stops at its schema, in one line (its replay command
    # is printed only once the database was accepted).
    from chaos import CampaignConfig

    url = "postgresql://me@127.0.0.1:9/db?password=s3cret&connect_timeout=5"
    done = run("-m", "chaos", "run", "--seed", "1", "--db", url, "--out", str(tmp_path / "o"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and "replay with" not in done.stderr, done.stderr
    assert "s3cret" not in done.stdout + done.stderr
    replay = CampaignConfig(seed=1, db=url).replay_command()
    assert "s3cret" not in replay and "connect_timeout=5" in replay  # the rest is kept


def test_check_of_a_history_with_a_wrong_typed_field_is_one_line_exit_2(tmp_path: Path) -> None:
    # Before: "internal error (a bug in rundoctor): TypeError: '<' not supported between
    # instances of 'str' and 'float'", exit 70, from the checker that read the field.
    from chaos import write_history

    path = tmp_path / "history.ndjson"
    write_history(path, clean().history().records)
    lines = path.read_text().splitlines()
    lines[-1] = lines[-1].replace('"time": ', '"time": "at noon", "was": ', 1)
    path.write_text("\n".join(lines) + "\n")
    done = run("-m", "doctor", "chaos", "check", str(path), "--json")
    assert done.returncode == 2 and done.stdout == "", done
    assert done.stderr.count("\n") == 1 and f"line {len(lines)}: " in done.stderr
    assert '.time: expected a finite number, got "at noon"' in done.stderr


def _running(pid: int) -> bool:
    """Whether ``pid`` is a process that still runs (a zombie waiting for init does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _long_campaign(out: Path, *extra: str) -> tuple[subprocess.Popen[str], list[int]]:
    """A ten-minute campaign of two workers, once both have started, and their pids."""
    import time

    args = ["-m", "chaos", "run", "--seed", "5", "--duration", "10m", "--workers", "2", *extra]
    proc = subprocess.Popen(
        [sys.executable, *args, "--faults", "torn_write", "--out", str(out)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    harness = out / "campaign" / "harness.ndjson"
    pids: list[int] = []
    end = time.monotonic() + 60
    while len(pids) < 2:  # both workers started: the readiness signal, not a guessed sleep
        assert proc.poll() is None and time.monotonic() < end, proc.communicate()
        time.sleep(0.05)
        lines = harness.read_text().splitlines() if harness.exists() else []
        records = [json.loads(line) for line in lines if line.endswith("}")]
        pids = [r["pid"] for r in records if r["kind"] == "worker" and r["phase"] == "start"]
    return proc, pids


def test_sigterm_stops_a_campaign_with_its_workers_as_ctrl_c_does(tmp_path: Path) -> None:
    # Before: SIGTERM (a CI job's timeout, `timeout`) ended the driver alone; its workers run
    # until told to stop, and ran on, orphaned, with the campaign's queue.
    import signal

    proc, pids = _long_campaign(tmp_path / "out")
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "error: interrupted"
    assert not [pid for pid in pids if _running(pid)]


def test_the_workers_of_a_campaign_killed_outright_stop_too(tmp_path: Path) -> None:
    # Before: SIGKILL of the harness (the OOM killer, `timeout -s KILL`, a CI runner giving up)
    # left its workers running, orphaned, polling the campaign's queue forever.
    import signal
    import time

    proc, pids = _long_campaign(tmp_path / "out")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    end = time.monotonic() + 30
    while [pid for pid in pids if _running(pid)] and time.monotonic() < end:
        time.sleep(0.1)
    left = [pid for pid in pids if _running(pid)]
    for pid in left:  # never leave them behind, even when the test fails
        os.kill(pid, signal.SIGKILL)
    assert not left, f"workers {left} outlived their campaign"


def test_the_tmpfs_of_a_campaign_killed_outright_is_kept_and_unmounted(tmp_path: Path) -> None:
    # Before: a SIGKILLed campaign's --runs-tmpfs stayed mounted, holding its memory, until
    # someone ran umount; its guard now keeps the runs (runs.kept) and unmounts it.
    import signal
    import time

    if os.geteuid() != 0:
        pytest.skip(NEEDS_ROOT_FOR_TMPFS)
    out = tmp_path / "out"
    runs = out / "campaign" / "runs"
    proc, pids = _long_campaign(out, "--runs-tmpfs", "16")
    try:
        assert os.path.ismount(runs)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        end = time.monotonic() + 60  # a bound for a failure, not a measured time
        while os.path.ismount(runs) and time.monotonic() < end:
            time.sleep(0.1)
        assert not os.path.ismount(runs), "the tmpfs outlived its campaign"
        assert (out / "campaign" / "runs.kept").is_dir()
    finally:
        for pid in pids:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["umount", "-l", str(runs)], capture_output=True, check=False)


@pytest.mark.chaos
def test_a_campaign_with_a_relative_out_and_db_run_from_elsewhere_keeps_its_workers(
    tmp_path: Path,
) -> None:
    # Before: the workers (started from the checkout) were handed `--config out/campaign/…`
    # and `--root out/campaign/runs` as given: every one died with FileNotFoundError ("no
    # worker crashed" and "no ticket lost" violated, exit 1) unless the command ran from the
    # checkout; a relative --db was a queue the workers made in the checkout.
    db = f"q-{tmp_path.name}.db"
    done = subprocess.run(
        [sys.executable, "-m", "doctor", "chaos", "run", "--seed", "6", "--duration", "3s",
         "--workers", "2", "--faults", "torn_write", "--db", db, "--out", "out", "--json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert all(v["ok"] for v in report["invariants"]), report["invariants"]
    assert (tmp_path / db).is_file() and not (REPO / db).exists()
    assert (tmp_path / "out" / "campaign" / "executor.json").is_file()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--workers", "65"), "--workers must be at most 64, got 65"),
        (("--out", "loop"), "--out 'loop' cannot be resolved: "),
        (("--out", "out", "--db", "loop"), "it cannot be reached (Too many levels of symbolic"),
        (("--out", "out", "--db", "mysql://x"), "--db 'mysql://x' is no queue URL: pass "),
        (
            ("--out", "out", "--duration", "5218w"),
            "--duration 5218w would schedule 1,051,948,800 faults, one every 3s; a campaign "
            "schedules at most 100,000 (--duration 3d11h20m): run several campaigns",
        ),
        (
            ("--out", "out", "--faults", "torn_write", "--runs-tmpfs", "1" + "0" * 30),
            "--runs-tmpfs 100000000000… (31 digits) MiB is more than half the memory",
        ),
    ],
    ids=["workers", "out-loop", "db-loop", "db-scheme", "century", "runs-tmpfs-past-memory"],
)
def test_a_campaign_refuses_what_it_cannot_run_in_one_line(
    tmp_path: Path, args: tuple[str, ...], says: str
) -> None:
    # Before: --workers 99999 forked workers until the machine gave out; an --out or a --db
    # that is a symlink loop was "internal error … RuntimeError: Symlink loop", exit 70; a
    # --runs-tmpfs of 31 digits was mounted (as root), and disk_full filled it from memory; a
    # --duration of 5218w planned a billion faults, taking the machine's memory (1 GB in 40 s).
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    # One --duration: an option of one value given two is refused before anything else.
    short = () if "--duration" in args else ("--duration", "1")
    done = subprocess.run(
        [sys.executable, "-m", "doctor", "chaos", "run", "--seed", "1", *short, *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.returncode == 2 and "internal error" not in done.stderr, done.stderr
    assert says in done.stderr.splitlines()[-1], done.stderr


def test_check_of_a_mistyped_history_suggests_the_file_beside_it(tmp_path: Path) -> None:
    # It printed "[Errno 2] No such file or directory: '…/histroy.ndjson'".
    (tmp_path / "history.ndjson").write_text("")
    p = run("-m", "chaos", "check", str(tmp_path / "histroy.ndjson"))
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "no such file (did you mean '" + str(tmp_path / "history.ndjson") + "'?)" in p.stderr
    assert "Errno" not in p.stderr


def test_an_out_that_is_a_file_is_one_line_without_the_campaigns_banner(tmp_path: Path) -> None:
    # The "chaos: seed 1, …; replay with:" banner and the replay command were printed before
    # --out was looked at: three lines on stderr for one refusal.
    (tmp_path / "afile").write_text("")
    p = run("-m", "chaos", "run", "--seed", "1", "--out", str(tmp_path / "afile"))
    assert p.returncode == 2
    assert p.stderr.splitlines() == [
        f"error: --out '{tmp_path / 'afile'}' is a file; pass a directory"
    ]


def test_the_workers_help_names_the_range_the_campaign_accepts() -> None:
    p = run("-m", "chaos", "run", "--help")
    assert "2 to 64" in " ".join(p.stdout.split()), p.stdout


def test_a_campaign_whose_log_reader_goes_away_exits_141_not_1(tmp_path: Path) -> None:
    # `doctor chaos run … 2>&1 | head -2` exited 1, "an invariant was violated": Rich's own
    # console ends a command with 1 when its reader goes away.
    args = [
        "run",
        "--seed",
        "2",
        "--duration",
        "2s",
        "--workers",
        "2",
        "--faults",
        "sigterm_worker",
        "--out",
    ]
    command = [sys.executable, "-m", "chaos", *args, str(tmp_path / "o")]
    # Without PYTHONUNBUFFERED, as a user's shell runs it: standard error then keeps what a
    # failed write left in its buffer, and its failed flush at the exit made it 120 (CI's
    # environment sets the variable, which hid that).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    with subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("chaos: seed 2")
        proc.stdout.close()  # the reader goes away, as `| head -1` does
        assert proc.wait(timeout=120) == 141


def test_an_out_whose_path_is_not_utf8_is_refused_before_the_campaign(tmp_path: Path) -> None:
    # Before: the campaign started, queued its first pipeline by a path the queue could not
    # store, and ended in "the campaign lost its queue" (an --out given on a Latin-1 system).
    out = tmp_path / os.fsdecode(b"caf\xe9")
    p = run("-m", "chaos", "run", "--seed", "1", "--duration", "5s", "--out", str(out))
    assert p.returncode == 2
    assert p.stderr.splitlines() == [
        f"error: --out '{tmp_path}/caf\\xe9' is not UTF-8 text (a byte such as \\xff in a name "
        "is no character): the campaign queues the pipelines it writes there by their path, "
        "which a queue stores as text; pass a directory whose path is UTF-8"
    ]
    assert not out.exists()


@pytest.mark.chaos
def test_a_campaign_whose_db_path_is_not_utf8_reports_it_and_prints_a_replay_that_pastes(
    tmp_path: Path,
) -> None:
    # Before: the campaign ran, then writing report.md met the path's byte and ended in
    # "internal error … UnicodeEncodeError", exit 70; the replay it printed said 'caf\udce9',
    # which names no file when pasted.
    db, out = tmp_path / os.fsdecode(b"caf\xe9") / "q.db", tmp_path / "out"
    db.parent.mkdir()
    first = run(
        "-m", "chaos", "run", "--seed", "6", "--duration", "3s", "--workers", "2",
        "--faults", "torn_write", "--db", str(db), "--out", str(out),
    )  # fmt: skip
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"--db $'{tmp_path}/caf\\xe9/q.db'" in first.stderr
    assert f"| queue | `{tmp_path}/caf\\xe9/q.db` |" in (out / "report.md").read_text()
    pasted = subprocess.run(["bash", "-c", f"test -f $'{tmp_path}/caf\\xe9/q.db'"], check=False)
    assert pasted.returncode == 0  # pasted into bash, the replay's --db names the same file
