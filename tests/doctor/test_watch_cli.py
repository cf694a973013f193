"""``doctor watch`` end to end: a real process, a real HTTP receiver, a run that stalls."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.doctor.watch_helpers import LiveRun, receiver, wait_for
from tests.helpers import as_a_user, fill, tmpfs

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNDOCTOR_")}
    env["XDG_STATE_HOME"] = str(tmp_path / "state-home")
    env["PYTHONPATH"] = str(REPO)
    yield env


def _watch(root: Path, state: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "doctor", "watch", "--root", str(root), "--state", str(state),
        "--idle-gap", "2s", "--json", *extra,
    ]  # fmt: skip


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _passes(state: Path) -> int:
    try:
        return int(json.loads(state.read_text())["passes"])
    except (FileNotFoundError, ValueError):
        return 0


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return out


def test_ctrl_c_ends_a_watch_as_every_command_and_sigterm_with_0(
    tmp_path: Path, env: dict[str, str]
) -> None:
    # The README: Ctrl-C stops any command with `error: interrupted` and exit 130; a watch
    # ended silently with 0, as for SIGTERM (systemd's stop, which stays 0).
    root, state = tmp_path / "runs", tmp_path / "watch.json"
    LiveRun(root, "r1").start(time.time())
    for sig, code in ((signal.SIGINT, 130), (signal.SIGTERM, 0)):
        proc = _spawn(_watch(root, state, "--interval", "0.1s"), env)
        wait_for(lambda: _passes(state) >= 1)
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == code, err
        lines = err.splitlines()  # a pass's own line may come before
        assert [x for x in lines if x.startswith("error:")] == (
            ["error: interrupted"] if code else []
        ), err
        assert not code or lines[-1] == "error: interrupted"
        state.unlink()


def test_a_stalled_run_alerts_once_then_resolves_and_a_restart_sends_nothing_again(
    tmp_path: Path, env: dict[str, str]
) -> None:
    root, state = tmp_path / "runs", tmp_path / "watch.json"
    run = LiveRun(root, "r1")
    run.start(time.time())
    with receiver() as rec:
        proc = _spawn(_watch(root, state, "--interval", "0.1s", "--webhook", rec.url), env)
        alert = rec.take()  # the run stops progressing: 2 s later it is an idle gap
        seen = _passes(state)
        wait_for(lambda: _passes(state) >= seen + 5)  # it persists for five more passes
        assert rec.drained() == []  # exactly one alert while it persisted

        run.finish(time.time())  # the run ends
        resolved = rec.take()
        seen = _passes(state)
        wait_for(lambda: _passes(state) >= seen + 3)
        out = _stop(proc)

        assert {k: alert[k] for k in ("event", "run_id", "scope", "code", "severity")} == {
            "event": "alert",
            "run_id": "r1",
            "scope": "",
            "code": "idle_gap",
            "severity": "error",
        }
        assert alert["text"].startswith("[error] idle_gap in run r1: ")
        assert alert["first_seen"] and alert["summary"]
        assert (resolved["event"], resolved["run_id"], resolved["code"]) == (
            "resolved",
            "r1",
            "idle_gap",
        )
        assert resolved["first_seen"] == alert["first_seen"]
        assert resolved["text"] == "resolved: idle_gap in run r1"
        assert [json.loads(line)["event"] for line in out.splitlines()] == ["alert", "resolved"]

        # A restart with the same state file sends nothing again.
        again = _run(_watch(root, state, "--once", "--webhook", rec.url), env)
        assert (again.returncode, again.stdout, again.stderr) == (0, "", "")
        assert rec.drained() == [] and rec.posts == 2


def test_a_restart_while_an_alert_is_open_does_not_send_it_again(
    tmp_path: Path, env: dict[str, str]
) -> None:
    root, state = tmp_path / "runs", tmp_path / "watch.json"
    LiveRun(root, "r1").start(time.time() - 60)
    with receiver() as rec:
        first = _run(_watch(root, state, "--once", "--webhook", rec.url), env)
        second = _run(_watch(root, state, "--once", "--webhook", rec.url), env)
    assert (first.returncode, second.returncode, second.stdout, second.stderr) == (1, 0, "", "")
    assert rec.posts == 1 and rec.take()["event"] == "alert"


def test_once_exits_1_on_a_new_alert_and_logs_one_line(tmp_path: Path, env: dict[str, str]) -> None:
    root, state = tmp_path / "runs", tmp_path / "watch.json"
    LiveRun(root, "r1").start(time.time() - 60)
    done = _run(_watch(root, state, "--once"), env)
    assert done.returncode == 1
    (event,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert (event["event"], event["code"]) == ("alert", "idle_gap")
    assert done.stderr == "watch pass 1: 1 alert, 0 resolved\n"


def test_a_failing_webhook_is_retried_logged_and_does_not_stop_the_watch(
    tmp_path: Path, env: dict[str, str]
) -> None:
    root, state = tmp_path / "runs", tmp_path / "watch.json"
    LiveRun(root, "r1").start(time.time() - 60)
    with receiver() as rec:
        rec.statuses = [500] * 10
        done = _run(_watch(root, state, "--once", "--webhook", rec.url), env)
    assert done.returncode == 1  # the alert still counts, and went to stdout
    assert rec.posts == 4  # the first try and three retries
    assert done.stderr.count("\n") == 1
    assert "failed after 4 tries: HTTP 500" in done.stderr
    assert json.loads(state.read_text())["passes"] == 1


def test_a_pass_sends_at_most_max_sends_events_one_by_one_and_one_alert_for_the_rest(
    tmp_path: Path, env: dict[str, str]
) -> None:
    # A first pass over 10,000 runs sent 8,933 webhook posts (and ran --exec 8,933 times).
    root, state, sink = tmp_path / "runs", tmp_path / "watch.json", tmp_path / "events.ndjson"
    for n in range(6):
        LiveRun(root, f"r{n}").start(time.time() - 60)
    hook = (
        f"{sys.executable} -c 'import sys; open(sys.argv[1], \"a\").write(sys.stdin.read())' {sink}"
    )
    with receiver() as rec:
        args = _watch(
            root, state, "--once", "--webhook", rec.url, "--exec", hook, "--max-sends", "2"
        )
        done = _run(args, env)
        posted = rec.drained()
    assert done.returncode == 1, done.stderr
    printed = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(printed) >= 6 and all(e["code"] != "alerts_held" for e in printed), printed
    assert [e["code"] for e in posted[:2]] == [e["code"] for e in printed[:2]]
    (held,) = posted[2:]
    assert (held["event"], held["code"], held["run_id"]) == ("alert", "alerts_held", None)
    assert held["summary"].startswith(f"{len(printed) - 2} more alerts and 0 resolved"), held
    assert "(at most 2 a pass, --max-sends)" in held["text"]
    piped = [json.loads(line) for line in sink.read_text().splitlines()]
    assert [e["code"] for e in piped] == [e["code"] for e in posted]


def test_a_webhook_that_failed_is_not_tried_again_in_the_pass(
    tmp_path: Path, env: dict[str, str]
) -> None:
    # Each event cost a dead receiver's four tries and their timeouts: 20 events, 15 minutes.
    root, state = tmp_path / "runs", tmp_path / "watch.json"
    for n in range(4):
        LiveRun(root, f"r{n}").start(time.time() - 60)
    with receiver() as rec:
        rec.statuses = [503] * 100
        done = _run(_watch(root, state, "--once", "--webhook", rec.url), env)
    assert done.returncode == 1, done.stderr
    events = len(done.stdout.splitlines())
    assert events >= 4 and rec.posts == 4, (events, rec.posts)  # one event's four tries
    (line,) = done.stderr.splitlines()
    assert "failed after 4 tries: HTTP 503" in line, line
    assert f"; {events - 1} more events not sent to http://127.0.0.1:" in line, line


def test_exec_gets_the_event_on_stdin(tmp_path: Path, env: dict[str, str]) -> None:
    root, state, sink = tmp_path / "runs", tmp_path / "watch.json", tmp_path / "events.ndjson"
    LiveRun(root, "r1").start(time.time() - 60)
    hook = (
        f'{shlex.quote(sys.executable)} -c \'import sys; open(sys.argv[1], "a")'
        f".write(sys.stdin.read())' {shlex.quote(str(sink))}"
    )
    done = _run(_watch(root, state, "--once", "--exec", hook), env)
    assert done.returncode == 1, done.stderr
    (event,) = [json.loads(line) for line in sink.read_text().splitlines()]
    assert (event["event"], event["run_id"], event["code"]) == ("alert", "r1", "idle_gap")


def test_the_default_state_lives_under_the_state_home(tmp_path: Path, env: dict[str, str]) -> None:
    root = tmp_path / "runs"
    LiveRun(root, "r1").start(time.time() - 60)
    args = [sys.executable, "-m", "doctor", "watch", "--root", str(root), "--once"]
    first, second = _run([*args, "--idle-gap", "2s"], env), _run([*args, "--idle-gap", "2s"], env)
    assert (first.returncode, second.returncode, second.stdout) == (1, 0, "")
    (saved,) = (Path(env["XDG_STATE_HOME"]) / "rundoctor" / "watch").glob("*.json")
    assert json.loads(saved.read_text())["passes"] == 2


def test_a_state_home_it_may_not_write_leaves_the_watch_without_a_cache_not_stopped(
    tmp_path: Path, env: dict[str, str]
) -> None:
    # Before: under a read-only home (a locked-down CI user, a service account) `watch --once
    # --state FILE` ended before its first pass, "scan failed: cannot use the scan cache
    # directory '…/rundoctor/cache'", exit 2: a cache nobody asked for stopped the watch.
    root, state = tmp_path / "runs", tmp_path / "watch.json"
    LiveRun(root, "r1").start(time.time() - 60)
    home = Path(env["XDG_STATE_HOME"])
    home.mkdir(mode=0o555)
    try:
        done = _run([*as_a_user(), *_watch(root, state, "--once")], env)
    finally:
        home.chmod(0o755)
    assert done.returncode == 1, done.stderr
    (event,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert (event["event"], event["code"]) == ("alert", "idle_gap")
    note, summary = done.stderr.splitlines()
    assert note.startswith(f"watch: no scan cache: the default '{home / 'rundoctor/cache'}' ")
    assert "set RUNDOCTOR_CACHE" in note and summary == "watch pass 1: 1 alert, 0 resolved"
    assert list(home.iterdir()) == []
    # A cache the user names is still theirs to fix: one line, exit 2.
    given = {**env, "RUNDOCTOR_CACHE": str(home / "mine")}
    home.chmod(0o555)
    try:
        refused = _run([*as_a_user(), *_watch(root, state, "--once")], given)
    finally:
        home.chmod(0o755)
    assert refused.returncode == 2 and "cannot use the scan cache directory" in refused.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--interval", "soon"], "--interval: 'soon' is not a duration"),
        (["--idle-gap", "0s"], "--idle-gap '0s' must be more than zero"),
        (["--webhook", "ftp://x"], "--webhook 'ftp://x' is not an http:// or https:// URL"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(
    tmp_path: Path, env: dict[str, str], args: list[str], message: str
) -> None:
    cmd = [sys.executable, "-m", "doctor", "watch", "--root", str(tmp_path), "--once", *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and message in done.stderr


def test_a_pass_whose_scan_fails_is_one_line_an_alert_once_and_exit_2_with_once(
    tmp_path: Path, env: dict[str, str]
) -> None:
    # Before: a watch whose scan failed (the queue down, a root gone) said so on stderr
    # alone, and the webhook and --exec never learnt that nothing was being watched.
    not_a_queue = tmp_path / "queue.db"
    not_a_queue.write_text("not a database\n")
    state = tmp_path / "watch.json"
    args = _watch(tmp_path, state, "--db", str(not_a_queue), "--once")
    with receiver() as rec:
        done = _run([*args, "--webhook", rec.url], env)
        assert done.returncode == 2
        assert done.stderr.startswith("watch pass 1: scan failed: cannot read queue ")
        assert done.stderr.count("\n") == 1
        [alert] = [json.loads(line) for line in done.stdout.splitlines()]
        assert (alert["event"], alert["code"], alert["severity"], alert["run_id"]) == (
            "alert", "scan_failed", "error", None,
        )  # fmt: skip
        assert "cannot read queue" in alert["summary"]
        assert rec.take()["text"].startswith("[error] scan_failed")

        again = _run([*args, "--webhook", rec.url], env)  # still failing: not sent again
        assert (again.returncode, again.stdout) == (2, "")
        assert again.stderr.startswith("watch pass 2: scan failed: ")

        healed = _run([*_watch(tmp_path, state, "--once"), "--webhook", rec.url], env)
        assert healed.returncode == 0, healed.stderr
        [resolved] = [json.loads(line) for line in healed.stdout.splitlines()]
        assert (resolved["event"], resolved["code"]) == ("resolved", "scan_failed")
        assert resolved["first_seen"] == alert["first_seen"]
        assert rec.take()["event"] == "resolved" and rec.drained() == []


def test_a_missing_root_is_the_one_line_every_command_gives(
    tmp_path: Path, env: dict[str, str]
) -> None:
    done = _run(_watch(tmp_path / "missing", tmp_path / "watch.json", "--once"), env)
    assert done.returncode == 2
    assert done.stderr.startswith("error: runs root ") and "does not exist" in done.stderr
    assert done.stderr.count("\n") == 1
    assert not (tmp_path / "watch.json").exists()


def test_a_damaged_state_file_is_one_line_and_exit_2(tmp_path: Path, env: dict[str, str]) -> None:
    state = tmp_path / "watch.json"
    state.write_text("{not json")
    cmd = [*_watch(tmp_path, state), "--once"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "cannot be read" in done.stderr and done.stderr.count("\n") == 1
    assert state.read_text() == "{not json"  # never overwritten


@pytest.mark.parametrize(
    ("state", "says"),
    [
        ("fifo", "cannot be read (not a regular file (a FIFO, device or socket))"),
        ("under-a-file", "cannot be read (Not a directory); move it aside"),
        ("[" * 100_000 + "]" * 100_000, "cannot be read (JSON nested too deeply)"),
        (
            '{"schema": "rundoctor.watch-state/1", "passes": "x", "active": [], "last_pass_at": 1}',
            'is damaged (passes is "x", not a whole number of passes, 0 or more)',
        ),
        ("huge", "cannot be read (larger than 256 MiB, which no watch's open alerts come to)"),
    ],
    ids=["fifo", "under-a-file", "nested", "wrong-type", "huge"],
)
def test_a_state_file_that_is_no_state_is_one_line_never_a_hang_or_a_crash(
    tmp_path: Path, env: dict[str, str], state: str, says: str
) -> None:
    # Before: a FIFO as --state hung the watch on its first read (Path.read_text); JSON nested
    # 100,000 deep was "internal error … RecursionError", exit 70; a wrong type was "damaged
    # (missing invalid literal …)", the word "missing" before any error.
    path = tmp_path / "watch.json"
    if state == "fifo":
        os.mkfifo(path)
    elif state == "under-a-file":  # "[Errno 20] Not a directory: '…/x'", the path twice
        path.write_text("")
        path = path / "x"
    elif state == "huge":  # sparse: it was read whole (2 GiB of memory) to be found no JSON
        with path.open("wb") as f:
            f.truncate(1 << 30)
    else:
        path.write_text(state)
    cmd = [*_watch(tmp_path, path), "--once"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done
    assert done.stderr.count("\n") == 1 and says in done.stderr, done.stderr


def _state(passes: str, active: str = "[]") -> str:
    return (
        f'{{"schema": "rundoctor.watch-state/1", "passes": {passes}, "active": {active}, '
        '"last_pass_at": "2026-03-02T09:00:00Z"}'
    )


_ALERT = (
    '{"event": "alert", "run_id": "r1", "scope": "", "code": "idle_gap", "severity": "%s", '
    '"summary": "s", "first_seen": "2026-03-02T09:00:00Z", "at": "2026-03-02T09:00:00Z"}'
)


@pytest.mark.parametrize(
    ("state", "says"),
    [
        (_state("-1"), "passes is -1, not a whole number of passes, 0 or more"),
        (_state("1e400"), "passes is Infinity, not a whole number of passes, 0 or more"),
        (_state("2.5"), "passes is 2.5, not a whole number of passes, 0 or more"),
        (_state("true"), "passes is true, not a whole number of passes, 0 or more"),
        (_state("3", "[1]"), "active[0] is 1, not an object"),
        (_state("3", f"[{_ALERT % 'info'}]"), 'active[0].severity is "info", not warning'),
        (_state("3", '{"a": 1}'), "active is an object, not a list of alerts"),
    ],
    ids=["negative", "infinite", "fraction", "boolean", "not-an-object", "info", "not-a-list"],
)
def test_a_state_no_watch_could_have_written_is_refused_and_kept(
    tmp_path: Path, env: dict[str, str], state: str, says: str
) -> None:
    # Before: passes -1, 2.5 or true were taken and counted on from (the next pass was 0, 3
    # or 2), an open alert at "info" was resolved as if sent; 1e400 (infinity) was "internal
    # error … OverflowError", exit 70.
    path = tmp_path / "watch.json"
    path.write_text(state)
    done = _run([*_watch(tmp_path, path), "--once"], env)
    assert done.returncode == 2, done
    assert done.stderr.startswith(f"error: --state {str(path)!r} is damaged ("), done.stderr
    assert says in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert "move it aside to start over" in done.stderr
    assert path.read_text() == state  # never overwritten
    assert done.stdout == ""


def test_a_state_a_watch_wrote_before_ticket_ids_is_still_read(
    tmp_path: Path, env: dict[str, str]
) -> None:
    path = tmp_path / "watch.json"
    path.write_text(_state("7", f"[{_ALERT % 'error'}]"))
    done = _run([*_watch(tmp_path, path), "--once"], env)
    assert done.returncode == 0, done
    assert [json.loads(line)["event"] for line in done.stdout.splitlines()] == ["resolved"]
    assert json.loads(path.read_text())["passes"] == 8


def test_a_runs_root_from_the_environment_that_loops_is_one_line(
    tmp_path: Path, env: dict[str, str]
) -> None:
    # Before: the default --state is named after the resolved roots, and resolving a symlink
    # loop raised RuntimeError: "internal error", exit 70, before the scan could refuse it.
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    done = _run([sys.executable, "-m", "doctor", "watch", "--once"], {
        **env, "RUNDOCTOR_ROOTS": str(tmp_path / "loop"),
    })  # fmt: skip
    assert done.returncode == 2 and "internal error" not in done.stderr, done.stderr
    assert "runs root" in done.stderr and "is not a directory" in done.stderr, done.stderr


def test_a_target_failing_for_every_event_is_said_once_with_the_count(
    tmp_path: Path, env: dict[str, str]
) -> None:
    # It repeated "/nonexistent failed after 1 tries: …" once per event: 41 times on one line.
    root, state = tmp_path / "runs", tmp_path / "watch.json"
    for name in ("r1", "r2", "r3"):
        LiveRun(root, name).start(time.time() - 60)
    done = _run(_watch(root, state, "--once", "--exec", str(tmp_path / "nonexistent")), env)
    assert done.returncode == 1
    alerts = len(done.stdout.splitlines())
    assert alerts >= 2, done.stdout
    (line,) = done.stderr.splitlines()
    assert line.count("nonexistent") == 1, line
    assert f"nonexistent failed for {alerts} events, after 1 try each: " in line


@pytest.mark.parametrize("how", ["a directory of mode 555", "a read-only file system"])
def test_a_state_that_can_never_be_saved_is_refused_before_the_first_pass(
    tmp_path: Path, env: dict[str, str], how: str
) -> None:
    # Before: the watch made its pass, sent its alert (here: ran --exec), and only then found
    # it could not save: exit 74, and every watch started again sent the alert again.
    root, sent = tmp_path / "runs", tmp_path / "sent"
    LiveRun(root, "r1").start(time.time() - 60)
    args = [*as_a_user(), *_watch(root, tmp_path / "ro" / "sub" / "watch.json", "--once")]
    args += ["--exec", f"touch {sent}"]
    if how == "a directory of mode 555":
        (tmp_path / "ro").mkdir(mode=0o555)
        done = _run(args, env)
        (tmp_path / "ro").chmod(0o755)
        why = "Permission denied"
    else:
        with tmpfs(tmp_path / "ro", "64k") as mount:
            subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
            done = _run(args, env)
        why = "Read-only file system"
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    assert done.stderr.splitlines() == [
        f"error: --state '{tmp_path / 'ro/sub/watch.json'}' cannot be written ({why}); no pass "
        "was made and no alert sent, since none could be remembered: pass a writable --state FILE"
    ]
    assert not sent.exists()


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs filled to the last page (as root; skipped otherwise)."""
    with tmpfs(tmp_path / "disk", "64k") as mount:
        fill(mount)
        yield mount


def test_once_whose_state_cannot_be_saved_says_its_alerts_will_be_sent_again_exit_74(
    tmp_path: Path, env: dict[str, str], full_disk: Path
) -> None:
    # Before: the alert went out, then `error: cannot write …; pick a writable path`, exit 2
    # ("nothing was done"), and the next pass sent the same alert again without a word why.
    root, state = tmp_path / "runs", full_disk / "watch.json"
    LiveRun(root, "r1").start(time.time() - 60)
    for _ in range(2):  # not remembered: sent again, and said again
        done = _run(_watch(root, state, "--once"), env)
        assert done.returncode == 74, done.stderr
        assert [json.loads(line)["event"] for line in done.stdout.splitlines()] == ["alert"]
        assert done.stderr.splitlines() == [
            "watch pass 1: 1 alert, 0 resolved",
            f"error: watch sent 1 alert, 0 resolved, but could not save its state to "
            f"{str(state)!r} (No space left on device): a watch started again on it sends them "
            "again; free space there or pass another --state FILE",
        ]
    (full_disk / "filler").unlink()
    saved = _run(_watch(root, state, "--once"), env)
    assert saved.returncode == 1 and _passes(state) == 1
    again = _run(_watch(root, state, "--once"), env)
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")


def test_a_watch_whose_state_cannot_be_saved_goes_on_remembering_and_ends_with_74(
    tmp_path: Path, env: dict[str, str], full_disk: Path
) -> None:
    # The long-running watch keeps what it sent in memory (the alert is not sent again each
    # pass), says every pass that the state is not saved, and ends on the same line as --once.
    root, state = tmp_path / "runs", full_disk / "watch.json"
    LiveRun(root, "r1").start(time.time() - 60)
    proc = _spawn(_watch(root, state, "--interval", "0.1s"), env)
    assert proc.stderr is not None
    lines = []
    while not any(line.startswith("watch pass 3:") for line in lines):
        line = proc.stderr.readline()
        assert line, lines  # the watch ended early
        lines.append(line.rstrip("\n"))
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    lines += err.splitlines()
    assert proc.returncode == 74, lines
    assert [json.loads(line)["event"] for line in out.splitlines()] == ["alert"]
    not_saved = (
        "state not saved (No space left on device): 1 event sent since it was last saved "
        "would be sent again by a watch started again"
    )
    assert lines[:2] == [
        f"watch pass 1: 1 alert, 0 resolved; {not_saved}",
        f"watch pass 2: 0 alerts, 0 resolved; {not_saved}",
    ], lines
    assert lines[-1].startswith("error: watch sent 1 alert, 0 resolved, but could not save"), lines
    assert [p.name for p in full_disk.iterdir()] == ["filler"]  # nor a temporary file left
