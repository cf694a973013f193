"""``doctor repair`` cannot be steered: real races against symlink swaps, a resuming run and
an appending writer.

Two kinds of test. The deterministic ones change the run exactly inside the window between an
action's last check and its first write, through ``apply_repairs``'s ``race_hook`` seam (no
module attribute is patched): each of them fails on the repair code before issue 15 (commit
fdba52a) with the same hook placed at the same point of its actions. The randomized ones run
the real repair while another process changes the run at moments of its own choosing, a
bounded number of tries each (no wall-clock assertion). Both assert the same invariants:
nothing is written outside the run, no ``final.json`` appears under a live run's lock, no
appended line is lost.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from doctor import DoctorConfig, diagnose
from doctor._errors import UsageError
from doctor._journal import JOURNAL, read_journal
from doctor._repair import Action, FindingRef, apply_repairs, plan_finishing, plan_repairs
from doctor._repair_model import _COUNTED, _breaker, _Ctx
from tests.helpers import run_doctor

CASES = Path(__file__).resolve().parents[2] / "fixtures" / "cases"
# 20 in every test run (the deterministic tests pin each window; these sample the rest);
# RUNDOCTOR_RACE_TRIES=1000 for the figures in docs/repair.md.
TRIES = int(os.environ.get("RUNDOCTOR_RACE_TRIES", "20"))


def _copy_case(case: str, tmp_path: Path) -> tuple[Path, DoctorConfig]:
    spec = json.loads((CASES / case / "expected.json").read_text())
    root = tmp_path / "runs"
    shutil.copytree(CASES / case / "run", root)
    now = datetime.fromisoformat(spec["now"].replace("Z", "+00:00")).timestamp()
    return root / spec["run_id"], DoctorConfig(roots=(root,), now=now)


def _files(path: Path) -> list[str]:
    return sorted(p.name for p in path.rglob("*"))


def _swap_forever(real: str, outside: str, go: Any, idle: Any, done: Any, swaps: Any) -> None:
    """Keep swapping directory ``real`` for a symlink to ``outside`` and back while ``go``."""
    aside = real + ".aside"
    while not done.is_set():
        if not go.is_set():
            idle.set()
            go.wait(0.05)
            continue
        idle.clear()
        os.rename(real, aside)
        os.symlink(outside, real, target_is_directory=True)
        with swaps.get_lock():
            swaps.value += 1
        for _ in range(random.randrange(500)):  # a symlink for a moment ...
            pass
        os.unlink(real)
        os.rename(aside, real)
        for _ in range(random.randrange(50_000)):  # ... the real directory for longer
            pass
    idle.set()


class _Swapper:
    """Another process (real parallelism, no GIL between them) swapping a directory."""

    def __init__(self, real: Path, outside: Path) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.go, self.idle, self.done = ctx.Event(), ctx.Event(), ctx.Event()
        self.counter = ctx.Value("i", 0)
        self.process = ctx.Process(
            target=_swap_forever,
            args=(str(real), str(outside), self.go, self.idle, self.done, self.counter),
            daemon=True,
        )

    @property
    def swaps(self) -> int:
        return int(self.counter.value)

    def start(self) -> None:
        self.process.start()
        self.idle.wait()

    def pause(self) -> None:
        self.go.clear()
        self.idle.wait()

    def resume(self) -> None:
        self.idle.clear()
        self.go.set()

    def stop(self) -> None:
        self.done.set()
        self.go.set()
        self.process.join()


def _apply(plan: list[Action], config: DoctorConfig, run: Path) -> str:
    try:
        (result,) = apply_repairs(plan, config, run_path=run).results
    except UsageError:
        return "refused"  # the run directory was a symlink when the repair opened it
    return result.outcome


def test_ingest_status_never_writes_outside_while_the_stage_directory_is_swapped(
    tmp_path: Path,
) -> None:
    run, config = _copy_case("branch_status_file_stranded", tmp_path)
    stage = run / "parallel/fanout/01-impl_x/impl_x"
    placeholder = (stage / "status.json").read_bytes()
    plan = plan_repairs(diagnose(run.name, config), config)
    assert [a.kind for a in plan] == ["ingest_status"]
    outside = tmp_path / "outside"
    outside.mkdir()
    outcomes: Counter[str] = Counter()
    swapper = _Swapper(stage, outside)
    swapper.start()
    try:
        for _ in range(TRIES):
            swapper.pause()
            (stage / "status.json").write_bytes(placeholder)
            for bak in stage.glob("*.bak"):
                bak.unlink()
            (run / "repairs.ndjson").unlink(missing_ok=True)
            swapper.resume()
            outcomes[_apply(plan, config, run)] += 1
            swapper.pause()
            assert _files(outside) == [], outcomes
    finally:
        swapper.stop()
    assert sum(outcomes.values()) == TRIES
    print(
        f"ingest_status under a swapping stage directory: {dict(outcomes)}, {swapper.swaps} swaps"
    )


def test_ingest_status_writes_inside_the_run_when_the_stage_is_swapped_between_check_and_write(
    tmp_path: Path,
) -> None:
    """The stage directory becomes a symlink to a directory outside the run after every check.

    Before issue 15 the repair checked the target's path (``_inside`` resolved it inside the
    run) and then wrote it by that path (``_create``/``_replace``): the write followed the new
    symlink and ``status.json`` landed in ``outside`` (fails the first assertion below). Now
    the stage directory was opened ``O_NOFOLLOW`` before the check and the write goes through
    that descriptor: into the real directory, wherever it has moved inside the run.
    """
    run, config = _copy_case("branch_status_file_stranded", tmp_path)
    stage = run / "parallel/fanout/01-impl_x/impl_x"
    aside = stage.with_name(stage.name + ".aside")
    plan = plan_repairs(diagnose(run.name, config), config)
    assert [a.kind for a in plan] == ["ingest_status"]
    outside = tmp_path / "outside"
    outside.mkdir()
    hooked: list[str] = []

    def swap_stage_for_a_symlink(kind: str) -> None:
        hooked.append(kind)
        stage.rename(aside)
        stage.symlink_to(outside, target_is_directory=True)

    try:
        (result,) = apply_repairs(
            plan, config, run_path=run, race_hook=swap_stage_for_a_symlink
        ).results
    finally:
        if aside.exists():
            stage.unlink()
            aside.rename(stage)
    assert hooked == ["ingest_status"]
    assert _files(outside) == [], "the repair wrote through the swapped-in symlink"
    assert result.outcome == "applied", result.message
    repaired = json.loads((stage / "status.json").read_text())
    assert repaired["repaired_by"]["source"] == plan[0].source
    assert [p.name for p in stage.glob("status.json.replaced-*.bak")] != []


def test_terminalize_never_writes_outside_while_the_run_directory_is_swapped(
    tmp_path: Path,
) -> None:
    run, config = _copy_case("fanout_never_joined", tmp_path)
    plan = plan_repairs(diagnose(run.name, config), config)
    assert [a.kind for a in plan] == ["terminalize"]
    outside = tmp_path / "outside"
    outside.mkdir()
    outcomes: Counter[str] = Counter()
    swapper = _Swapper(run, outside)
    swapper.start()
    try:
        for _ in range(TRIES):
            swapper.pause()
            for name in ("final.json", "repairs.ndjson"):
                (run / name).unlink(missing_ok=True)
            swapper.resume()
            outcomes[_apply(plan, config, run)] += 1
            swapper.pause()
            assert _files(outside) == [], outcomes
    finally:
        swapper.stop()
    assert sum(outcomes.values()) == TRIES
    print(f"terminalize under a swapping run directory: {dict(outcomes)}, {swapper.swaps} swaps")


def test_a_nul_in_a_node_id_is_refused_not_a_crash(tmp_path: Path) -> None:
    run, config = _copy_case("branch_status_file_stranded", tmp_path)
    finding = FindingRef("status_contract_mismatch", "error", "", "a\x00b", "")
    for target, source in (
        ("a\x00b/status.json", "parallel/fanout/01-impl_x/worktree/.ai/status.json"),
        ("parallel/fanout/01-impl_x/impl_x/status.json", "a\x00b/worktree/status.json"),
    ):
        action = Action("ingest_status", target, finding, "test", source=source)
        (result,) = apply_repairs([action], config, run_path=run).results
        assert result.outcome == "refused", result
        assert "not a path inside the run directory" in result.message


# --- a resuming run and terminalize exclude each other ---------------------------------------

_RESUMER = r"""
import json, os, sys, time
run = sys.argv[1]
lock = os.path.join(run, "run.lock.json")
tmp = os.path.join(run, f".resume-{os.getpid()}.tmp")
with open(tmp, "w") as fh:
    json.dump({"pid": os.getpid(), "run_id": "resume"}, fh)
took = False
for _ in range(200):
    try:
        os.link(tmp, lock)
        took = True
        break
    except FileExistsError:
        pass
    try:
        held = json.load(open(lock))
    except (OSError, ValueError):
        continue
    pid = held.get("pid")
    try:
        os.kill(pid, 0)
        alive = True
    except (ProcessLookupError, OverflowError, TypeError):
        alive = False
    if alive:
        time.sleep(0.002)  # held by a live process (the repair): wait for it
        continue
    try:  # stale: set it aside and take the lock
        os.rename(lock, lock + f".stale-{os.getpid()}")
    except FileNotFoundError:
        pass
os.unlink(tmp)
if not took:
    sys.exit(3)
final = os.path.join(run, "final.json")
terminal = os.path.exists(final)
if not terminal:
    with open(os.path.join(run, "progress.ndjson"), "a") as fh:
        fh.write(json.dumps({"event": "run_resumed", "ts": "2026-02-10T00:00:00Z"}) + "\n")
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        if os.path.exists(final):
            os.unlink(lock)
            sys.exit(1)  # final.json written under a live run
        time.sleep(0.001)
os.unlink(lock)
sys.exit(0)
"""


_RESUME_ONCE = r"""
import json, os, sys
run = sys.argv[1]
lock = os.path.join(run, "run.lock.json")
tmp = os.path.join(run, f".resume-{os.getpid()}.tmp")
with open(tmp, "w") as fh:
    json.dump({"pid": os.getpid(), "run_id": "resume"}, fh)
try:
    os.link(tmp, lock)  # Kilroy's protocol: the lock is created exclusively
except FileExistsError:
    sys.exit(3)  # held by a live process: the resume refuses
finally:
    os.unlink(tmp)
with open(os.path.join(run, "progress.ndjson"), "a") as fh:
    fh.write(json.dumps({"event": "run_resumed", "ts": "2026-02-10T00:00:00Z"}) + "\n")
if len(sys.argv) > 2:  # the resumed engine runs the stage again: its real outcome
    with open(sys.argv[2] + ".resume.tmp", "w") as fh:
        fh.write('{"status": "success", "notes": "written by the resume"}')
    os.replace(sys.argv[2] + ".resume.tmp", sys.argv[2])
print("resumed", flush=True)
sys.stdin.read()  # the run goes on until the test ends it
os.unlink(lock)
"""


def test_a_run_resuming_between_terminalize_check_and_write_gets_no_final_json(
    tmp_path: Path,
) -> None:
    """The run resumes (takes ``run.lock.json`` and appends ``run_resumed``) after every check.

    Before issue 15 the repair took no lock: the resume succeeded inside the window and the
    repair then wrote ``final.json`` "fail" under the live run (fails the first assertion
    below). Now the repair checks and writes holding the run's lock, so the resume finds it
    held by a live process and refuses; the repair's ``final.json`` is then right.
    """
    run, config = _copy_case("fanout_never_joined", tmp_path)
    (run / "run.lock.json").unlink(missing_ok=True)
    plan = plan_repairs(diagnose(run.name, config), config)
    assert [a.kind for a in plan] == ["terminalize"]
    resumers: list[subprocess.Popen[str]] = []
    resumed: list[bool] = []

    def resume_the_run(kind: str) -> None:
        resumer = subprocess.Popen(
            [sys.executable, "-c", _RESUME_ONCE, str(run)], stdin=-1, stdout=-1, text=True
        )
        resumers.append(resumer)
        assert resumer.stdout is not None
        resumed.append(resumer.stdout.readline().strip() == "resumed")  # or it exited

    try:
        (result,) = apply_repairs(plan, config, run_path=run, race_hook=resume_the_run).results
        final_under_live_run = bool(resumed and resumed[0]) and (run / "final.json").exists()
    finally:
        for resumer in resumers:
            resumer.communicate("")
    assert len(resumers) == 1
    assert not final_under_live_run, "final.json was written under a live run"
    assert resumers[0].returncode == 3  # the repair held the lock: the resume refused
    assert result.outcome == "applied", result.message
    assert json.loads((run / "final.json").read_text())["status"] == "fail"
    assert not (run / "run.lock.json").exists()  # the repair released its lock


def test_terminalize_and_a_resuming_run_exclude_each_other(tmp_path: Path) -> None:
    run, config = _copy_case("fanout_never_joined", tmp_path)
    plan = plan_repairs(diagnose(run.name, config), config)
    progress = (run / "progress.ndjson").read_bytes()
    outcomes: Counter[str] = Counter()
    resumes: Counter[int] = Counter()
    for _ in range(TRIES // 2):
        for name in ("final.json", "repairs.ndjson", "run.lock.json"):
            (run / name).unlink(missing_ok=True)
        for stale in run.glob("run.lock.json.stale-*"):
            stale.unlink()
        (run / "progress.ndjson").write_bytes(progress)
        resumer = subprocess.Popen([sys.executable, "-c", _RESUMER, str(run)])
        outcomes[_apply(plan, config, run)] += 1
        code = resumer.wait()
        resumes[code] += 1
        assert code != 1, f"final.json was written under a live run ({dict(outcomes)})"
        assert not (run / "run.lock.json").exists()  # each side released what it took
    print(f"terminalize racing a resume: repair {dict(outcomes)}, resumer exits {dict(resumes)}")


# --- truncation racing an append ---------------------------------------------------------------


_APPENDER = r"""
import os, sys
run, stream, line = sys.argv[1], sys.argv[2], sys.argv[3].encode() + b"\n"
open(os.path.join(run, ".appender-ready"), "w").close()
# Append the moment the repair has checked the stream and written its backup.
for _ in range(2_000_000):
    if any(n.startswith("progress.ndjson.torn-") for n in os.listdir(run)):
        break
fd = os.open(stream, os.O_WRONLY | os.O_APPEND)
os.write(fd, line)
os.close(fd)
"""


def test_truncation_never_drops_a_line_appended_after_its_check(tmp_path: Path) -> None:
    run, config = _copy_case("torn_last_progress_line", tmp_path)
    plan = plan_repairs(diagnose(run.name, config), config)[:1]
    assert [a.kind for a in plan] == ["truncate_torn_line"]
    stream = run / "progress.ndjson"
    original = stream.read_bytes()
    outcomes: Counter[str] = Counter()
    lost = 0
    for i in range(TRIES // 2):
        stream.write_bytes(original)
        for path in [*run.glob("*.bak"), run / "repairs.ndjson", run / ".appender-ready"]:
            path.unlink(missing_ok=True)
        line = json.dumps({"event": "appended", "n": i})
        writer = subprocess.Popen([sys.executable, "-c", _APPENDER, str(run), str(stream), line])
        while not (run / ".appender-ready").exists():
            if writer.poll() is not None:
                break
        outcomes[_apply(plan, config, run)] += 1
        writer.wait()
        lost += line.encode() not in stream.read_bytes()
    print(f"truncation racing an append: {dict(outcomes)}, lines lost: {lost}")
    assert lost == 0, outcomes


def test_a_line_appended_between_truncation_check_and_cut_is_kept(tmp_path: Path) -> None:
    """A writer appends a whole line after the torn tail was checked, before anything is cut.

    Before issue 15 the repair had read the file, then wrote the backup and replaced the file
    with the bytes it had read up to the torn line: the appended line was lost (fails the first
    assertion below). Now the cut is made in place on the descriptor it checked, and whatever
    follows the bytes it read is moved down over the torn bytes and kept.
    """
    run, config = _copy_case("torn_last_progress_line", tmp_path)
    plan = plan_repairs(diagnose(run.name, config), config)[:1]
    assert [a.kind for a in plan] == ["truncate_torn_line"]
    stream = run / "progress.ndjson"
    original = stream.read_bytes()
    offset = plan[0].byte_offset
    assert offset is not None
    line = (json.dumps({"event": "appended", "ts": "2026-02-10T00:00:00Z"}) + "\n").encode()

    def append_a_line(kind: str) -> None:
        fd = os.open(stream, os.O_WRONLY | os.O_APPEND)  # another open file, as a writer's
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    (result,) = apply_repairs(plan, config, run_path=run, race_hook=append_a_line).results
    after = stream.read_bytes()
    assert line in after, "the appended line was lost"
    assert result.outcome == "applied", result.message
    assert after == original[:offset] + line  # the torn bytes are gone, nothing else
    assert result.backup is not None and (run / result.backup).read_bytes() == original


def test_a_writer_holding_the_stream_open_makes_truncation_refuse(tmp_path: Path) -> None:
    """A writer opens the stream after the check and keeps it open across the repair.

    Before issue 15 the repair replaced the stream (a new file renamed over it): the writer's
    descriptor still named the old file, so the line it wrote next was lost from the stream
    (fails the first assertion below). Now the cut needs the stream to itself (a write lease,
    granted only while no other process has the file open): the repair refuses, the file is
    untouched, and the writer's line lands in it.
    """
    run, config = _copy_case("torn_last_progress_line", tmp_path)
    plan = plan_repairs(diagnose(run.name, config), config)[:1]
    stream = run / "progress.ndjson"
    original = stream.read_bytes()
    line = (json.dumps({"event": "appended", "ts": "2026-02-10T00:00:00Z"}) + "\n").encode()
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys; fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND); "
            "print('open', flush=True); os.write(fd, sys.stdin.buffer.read())",
            str(stream),
        ],
        stdin=-1,
        stdout=-1,
    )

    def a_writer_opens_the_stream(kind: str) -> None:
        assert writer.stdout is not None
        assert writer.stdout.readline() == b"open\n"

    try:
        (result,) = apply_repairs(
            plan, config, run_path=run, race_hook=a_writer_opens_the_stream
        ).results
    finally:
        writer.communicate(line)
    assert line in stream.read_bytes(), "the writer's line was lost"
    assert result.outcome == "refused", result.message
    assert "open in another process" in result.message
    assert stream.read_bytes() == original + line
    assert list(run.glob("*.bak")) == []


# --- the run's lock ------------------------------------------------------------------------------


def test_terminalize_takes_a_stale_lock_and_puts_it_back(tmp_path: Path) -> None:
    run, config = _copy_case("fanout_never_joined", tmp_path)
    plan = plan_repairs(diagnose(run.name, config), config)
    (run / "run.pid").unlink()
    stale = json.dumps({"pid": 99999999, "pid_start_time": 5, "run_id": run.name}).encode()
    (run / "run.lock.json").write_bytes(stale)
    (result,) = apply_repairs(plan, config, run_path=run).results
    assert result.outcome == "applied", result.message
    assert (
        "owner pid 99999999 is dead"
        in json.loads((run / "final.json").read_text())["failure_reason"]
    )
    assert (run / "run.lock.json").read_bytes() == stale  # the crashed owner's record stays
    assert not list(run.glob(".run.lock.json*"))


def test_terminalize_refuses_while_a_live_process_holds_the_lock(tmp_path: Path) -> None:
    run, config = _copy_case("fanout_never_joined", tmp_path)
    plan = plan_repairs(diagnose(run.name, config), config)
    holder = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=-1)
    try:
        lock = json.dumps({"pid": holder.pid, "run_id": run.name}).encode()
        (run / "run.lock.json").write_bytes(lock)
        (result,) = apply_repairs(plan, config, run_path=run).results
    finally:
        holder.communicate(b"")
    assert result.outcome == "refused"
    assert f"pid {holder.pid}" in result.message
    assert not (run / "final.json").exists()
    assert (run / "run.lock.json").read_bytes() == lock


# --- a resuming run and ingest_status exclude each other -------------------------------------


def test_a_run_resuming_between_ingest_check_and_write_keeps_its_own_status(
    tmp_path: Path,
) -> None:
    """The run resumes after the ingest's last check: it takes ``run.lock.json`` and writes
    the stage's real ``status.json``.

    Before, ``ingest_status`` took no lock and never looked at the owner: the resume went
    ahead inside the window and the repair then renamed the stranded copy over the status the
    resume had just written, which was lost (not even in the backup, which holds the
    placeholder the check read). Now the ingest checks and writes holding the run's lock, as
    terminalize does: the resume finds it held by a live process and refuses.
    """
    run, config = _copy_case("branch_status_file_stranded", tmp_path)
    canonical = run / "parallel/fanout/01-impl_x/impl_x/status.json"
    plan = plan_repairs(diagnose(run.name, config), config)
    assert [(a.kind, a.blocked) for a in plan] == [("ingest_status", None)]
    resumers: list[subprocess.Popen[str]] = []
    resumed: list[bool] = []

    def resume_the_run(kind: str) -> None:
        resumer = subprocess.Popen(
            [sys.executable, "-c", _RESUME_ONCE, str(run), str(canonical)],
            stdin=-1,
            stdout=-1,
            text=True,
        )
        resumers.append(resumer)
        assert resumer.stdout is not None
        resumed.append(resumer.stdout.readline().strip() == "resumed")  # or it exited

    try:
        (result,) = apply_repairs(plan, config, run_path=run, race_hook=resume_the_run).results
        kept = [canonical, *canonical.parent.glob("status.json.*.bak")]
        resume_status_kept = any(b"written by the resume" in p.read_bytes() for p in kept)
    finally:
        for resumer in resumers:
            resumer.communicate("")
    assert len(resumers) == 1
    assert not (resumed[0] and not resume_status_kept), "the resume's status.json was lost"
    assert resumers[0].returncode == 3  # the repair held the lock: the resume refused
    assert result.outcome == "applied", result.message
    assert json.loads(canonical.read_text())["repaired_by"]["source"] == plan[0].source
    assert not (run / "run.lock.json").exists()  # the repair released its lock


def test_ingest_status_refuses_a_run_resumed_after_the_plan(tmp_path: Path) -> None:
    """A resume (a live process holding ``run.lock.json``) started after the plan: the
    ingest refuses and writes nothing into the live run (before, it copied the stranded
    status over the placeholder while the resumed engine worked on the stage)."""
    run, config = _copy_case("branch_status_file_stranded", tmp_path)
    canonical = run / "parallel/fanout/01-impl_x/impl_x/status.json"
    before = canonical.read_bytes()
    plan = plan_repairs(diagnose(run.name, config), config)
    assert [(a.kind, a.blocked) for a in plan] == [("ingest_status", None)]
    resumer = subprocess.Popen(
        [sys.executable, "-c", _RESUME_ONCE, str(run)], stdin=-1, stdout=-1, text=True
    )
    try:
        assert resumer.stdout is not None
        assert resumer.stdout.readline().strip() == "resumed"
        (result,) = apply_repairs(plan, config, run_path=run).results
    finally:
        resumer.communicate("")
    assert result.outcome == "refused", result.message
    assert f"held by pid {resumer.pid} (alive)" in result.message
    assert canonical.read_bytes() == before
    assert not list(canonical.parent.glob("status.json.*.bak"))


_APPLY_THEN_DIE = r"""
import os, signal, sys
from pathlib import Path
from doctor import DoctorConfig, diagnose
from doctor._repair import apply_repairs, plan_repairs
root, name, now, seam = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]), sys.argv[4]
config = DoctorConfig(roots=(root,), now=now)
plan = plan_repairs(diagnose(name, config), config)
print(os.getpid(), flush=True)
# SIGKILL at the seam: race_hook once every check passed, holding the run's lock, before the
# first write; wrote_hook once the action wrote, before its outcome is journaled.
die = lambda kind: os.kill(os.getpid(), signal.SIGKILL)
apply_repairs(plan, config, run_path=root / name, **{seam: die})
"""


def _apply_then_die(
    run: Path, config: DoctorConfig, seam: str = "race_hook"
) -> subprocess.CompletedProcess[str]:
    """Plan and apply the run's repairs in a real process that SIGKILLs itself at ``seam``."""
    return _killed(_APPLY_THEN_DIE, run, config, seam)


def _killed(
    script: str, run: Path, config: DoctorConfig, arg: str
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (the run's root, name, now and ``arg``) in a real process that must end
    SIGKILLed."""
    killed = subprocess.run(
        [sys.executable, "-c", script, str(run.parent), run.name, str(config.now), arg],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert killed.returncode == -9, killed.stderr
    return killed


def test_a_repair_killed_holding_the_run_s_lock_gives_the_run_its_own_lock_back(
    tmp_path: Path,
) -> None:
    """``doctor repair --apply`` SIGKILLed while it holds the run's lock, with the crashed
    owner's stale lock set aside: the next repair puts the owner's lock back.

    Before, the killed repair's own lock (its dead pid) was left as ``run.lock.json`` and the
    owner's hidden in ``.run.lock.json.stale-<pid>``; the next repair took the killed repair
    for the run's owner: its ``final.json`` named the repair's pid as the dead owner, and it
    put the repair's lock back, so the run recorded the repair as its owner for good."""
    run, config = _copy_case("fanout_never_joined", tmp_path)
    (run / "run.pid").unlink()
    stale = json.dumps({"pid": 99999999, "pid_start_time": 5, "run_id": run.name}).encode()
    (run / "run.lock.json").write_bytes(stale)
    killed = _apply_then_die(run, config)
    killed_pid = int(killed.stdout.split()[0])
    assert json.loads((run / "run.lock.json").read_text())["pid"] == killed_pid
    assert not (run / "final.json").exists()
    plan = plan_repairs(diagnose(run.name, config), config)
    (result,) = apply_repairs(plan, config, run_path=run).results
    assert result.outcome == "applied", result.message
    reason = json.loads((run / "final.json").read_text())["failure_reason"]
    assert "owner pid 99999999 is dead" in reason, reason
    assert (run / "run.lock.json").read_bytes() == stale  # the crashed owner's record
    assert not list(run.glob(".run.lock.json*"))


def test_a_repair_killed_holding_the_run_s_lock_leaves_no_lock_the_run_never_had(
    tmp_path: Path,
) -> None:
    """The same kill in a run that had no ``run.lock.json`` (its owner recorded in
    ``run.pid``): the next repair removes the killed repair's lock instead of keeping it as
    the run's (before, ``final.json`` named the repair's pid as the dead owner, and the lock
    stayed)."""
    run, config = _copy_case("fanout_never_joined", tmp_path)
    (run / "run.lock.json").unlink(missing_ok=True)
    owner = (run / "run.pid").read_text().strip()
    _apply_then_die(run, config)
    assert (run / "run.lock.json").exists()  # the killed repair's
    plan = plan_repairs(diagnose(run.name, config), config)
    (result,) = apply_repairs(plan, config, run_path=run).results
    assert result.outcome == "applied", result.message
    reason = json.loads((run / "final.json").read_text())["failure_reason"]
    assert f"owner pid {owner} is dead" in reason, reason
    assert not (run / "run.lock.json").exists()
    assert not list(run.glob(".run.lock.json*"))


_APPLY_HELD_AFTER_DIAGNOSIS = r"""
import json, sys
from pathlib import Path
from doctor import DoctorConfig, diagnose
from doctor._repair import apply_repairs, plan_repairs
root, name, now = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
config = DoctorConfig(roots=(root,), now=now)
plan = plan_repairs(diagnose(name, config), config)

def hold() -> None:  # diagnosed, the journal read: wait here until the test says go
    print("diagnosed", flush=True)
    sys.stdin.readline()

report = apply_repairs(plan, config, run_path=root / name, diagnosed_hook=hold)
print(json.dumps({**report.to_json(), "exit_code": report.exit_code}), flush=True)
"""


def test_a_repair_that_lost_the_race_to_another_reports_the_run_as_it_is_now(
    tmp_path: Path,
) -> None:
    """Two ``doctor repair --apply`` on one run at once: one (a real process) diagnoses the run
    and is held there; the other applies every action meanwhile; the first goes on.

    Before, the first found its action already done by the other (or refused it: the other's
    ``final.json`` was there) and, having applied nothing, did not diagnose again: its report
    listed as remaining the findings the other had already repaired, and exited 1. Now it
    diagnoses again before reporting: its remaining findings are the run's now."""
    run, config = _copy_case("fanout_never_joined", tmp_path)
    plan = plan_repairs(diagnose(run.name, config), config)
    assert [a.kind for a in plan] == ["terminalize"]
    held = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _APPLY_HELD_AFTER_DIAGNOSIS,
            str(run.parent),
            run.name,
            str(config.now),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert held.stdout is not None
    assert held.stdout.readline() == "diagnosed\n"
    (won,) = apply_repairs(plan, config, run_path=run).results
    assert won.outcome == "applied", won.message
    out, _ = held.communicate("go\n")
    assert held.returncode == 0, out
    report = json.loads(out)
    now = diagnose(run.name, config)
    assert [f["code"] for f in report["remaining"]] == [f.code for f in now.findings]
    assert "missing_final" not in [f["code"] for f in report["remaining"]]
    assert report["state"] == now.state
    (lost,) = report["results"]
    assert lost["outcome"] == "noop", lost["message"]
    assert report["exit_code"] == now.exit_code


def test_a_repair_killed_between_its_write_and_its_journal_line_leaves_a_started_line(
    tmp_path: Path,
) -> None:
    """``doctor repair --apply`` SIGKILLed after ``ingest_status`` wrote the stage's status,
    before the outcome's journal line.

    Before, an action was journaled only once it was done: the kill left no journal line at
    all, and nothing told that the canonical status file was the repair's. Now a ``started``
    line is journaled before the first write (the run's lock held): it names the action, the
    target and its hash before, and, with no line finishing its attempt, it reads as an action
    that may have happened. The next repair is no no-op on its word: it decides from the
    files (the status now records an outcome: refused, the file left as it is)."""
    run, config = _copy_case("branch_status_file_stranded", tmp_path)
    canonical = run / "parallel/fanout/01-impl_x/impl_x/status.json"
    placeholder = canonical.read_bytes()
    plan = plan_repairs(diagnose(run.name, config), config)
    assert [a.kind for a in plan] == ["ingest_status"]
    _apply_then_die(run, config, "wrote_hook")
    written = canonical.read_bytes()
    assert "repaired_by" in json.loads(written)  # the write happened
    (started,) = read_journal(run)
    assert (started.action, started.target, started.outcome) == (
        "ingest_status",
        plan[0].target,
        "started",
    )
    assert started.before_sha256 == hashlib.sha256(placeholder).hexdigest()
    assert started.attempt is not None and started.after_sha256 is None
    (again,) = apply_repairs(plan, config, run_path=run).results
    assert again.outcome == "refused" and "already records an outcome" in again.message
    assert canonical.read_bytes() == written
    assert [e.outcome for e in read_journal(run)] == ["started", "refused"]


def test_a_started_line_is_finished_by_the_line_of_its_outcome(tmp_path: Path) -> None:
    """A repair that runs to the end journals its ``started`` line and its outcome with one
    ``attempt``; read back, only the outcome remains (the started line is finished)."""
    run, config = _copy_case("branch_status_file_stranded", tmp_path)
    plan = plan_repairs(diagnose(run.name, config), config)
    (result,) = apply_repairs(plan, config, run_path=run).results
    assert result.outcome == "applied", result.message
    lines = [json.loads(line) for line in (run / JOURNAL).read_text().splitlines()]
    assert [(line["outcome"], line["schema"]) for line in lines] == [
        ("started", "rundoctor.repair/2"),
        ("applied", "rundoctor.repair/2"),
    ]
    assert lines[0]["attempt"] == lines[1]["attempt"]
    assert [e.outcome for e in read_journal(run)] == ["applied"]


def test_repairs_killed_mid_action_count_for_the_breaker(tmp_path: Path) -> None:
    """Three repairs SIGKILLed between their last check and their first write (each leaves a
    ``started`` line, nothing written): they were tries, and the fourth repair is stopped by
    the breaker instead of trying a fourth time (before, the kills left no line and the repair
    went on trying forever: incident 02's loop, one crash at a time)."""
    run, config = _copy_case("fanout_never_joined", tmp_path)
    for _ in range(3):
        _apply_then_die(run, config)
        assert not (run / "final.json").exists()
    assert [e.outcome for e in read_journal(run)] == ["started"] * 3
    plan = plan_repairs(diagnose(run.name, config), config)
    (result,) = apply_repairs(plan, config, run_path=run).results
    assert result.outcome == "breaker", result.message
    assert not (run / "final.json").exists()


_CUT_THEN_DIE = r"""
import json, os, signal, sys
from pathlib import Path
from doctor import DoctorConfig, diagnose
from doctor._repair import apply_repairs, plan_repairs
root, name, now, line = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]), sys.argv[4]
config = DoctorConfig(roots=(root,), now=now)
plan = plan_repairs(diagnose(name, config), config)[:1]
stream = root / name / "progress.ndjson"

def append_a_line(kind):  # a writer appends after the check: the cut moves the line down
    fd = os.open(stream, os.O_WRONLY | os.O_APPEND)
    os.write(fd, line.encode())
    os.close(fd)

def die(point):  # SIGKILL once the line was moved down, before the cut
    assert point == "truncate_torn_line:moved", point
    os.kill(os.getpid(), signal.SIGKILL)

apply_repairs(plan, config, run_path=root / name, race_hook=append_a_line, wrote_hook=die)
"""


def test_a_cut_killed_between_moving_a_line_down_and_cutting_is_finished_by_the_next_repair(
    tmp_path: Path,
) -> None:
    """``truncate_torn_line`` SIGKILLed after it moved a line appended after its check down over
    the torn bytes, before its ``ftruncate``.

    Before, the stream was left with the appended line twice, a garbled line between (the
    torn bytes' tail glued to the line's copy), a complete line no repair is planned for: the
    stream stayed garbled. Now the cut is journaled before the move (the stream's size and
    the hashes of its tail before and after the move), and the next repair finishes it: the
    stream is the bytes before the torn line, then the appended line, once."""
    run, config, original, offset, line = _cut_then_die(tmp_path)
    stream = run / "progress.ndjson"
    report = apply_repairs([], config, run_path=run)
    (finished,) = report.results
    assert finished.outcome == "applied", finished.message
    assert "finished the cut" in finished.message
    assert stream.read_bytes() == original[:offset] + line
    assert not [f for f in report.remaining if "progress.ndjson does not parse" in f.summary]
    assert [e.outcome for e in read_journal(run)] == ["applied"]
    again = apply_repairs([], config, run_path=run)
    assert again.results == ()  # finished once: nothing left to finish


def test_a_cut_killed_after_journaling_it_before_the_move_is_finished_too(tmp_path: Path) -> None:
    """The state a kill between the cut's journal line and its move leaves (the stream as the
    cut found it: the torn bytes, then the appended line; made here from the killed run's
    journal): the next repair moves the line down and cuts."""
    run, config, original, offset, line = _cut_then_die(tmp_path)
    stream = run / "progress.ndjson"
    stream.write_bytes(original + line)
    (finished,) = apply_repairs([], config, run_path=run).results
    assert finished.outcome == "applied" and "moved" in finished.message, finished.message
    assert stream.read_bytes() == original[:offset] + line


def test_a_half_done_cut_of_a_stream_written_since_is_left_to_a_person(tmp_path: Path) -> None:
    """The same kill, then a line appended to the garbled stream (a resume): the journaled
    hashes no longer describe it, so the next repair cuts nothing (refused, journaled without
    the attempt: it stays unfinished) and the stream keeps every byte."""
    run, config, _original, _offset, _line = _cut_then_die(tmp_path)
    stream = run / "progress.ndjson"
    with stream.open("ab") as fh:
        fh.write(b'{"event": "run_resumed", "ts": "2026-02-11T00:00:00Z"}\n')
    grown = stream.read_bytes()
    (refused,) = apply_repairs([], config, run_path=run).results
    assert refused.outcome == "refused" and "a person should look" in refused.message
    assert stream.read_bytes() == grown
    assert "started" in [e.outcome for e in read_journal(run)]


def _cut_then_die(tmp_path: Path) -> tuple[Path, DoctorConfig, bytes, int, bytes]:
    """A run whose torn stream a real repair process began to cut and was SIGKILLed in: a line
    appended after its check was moved down over the torn bytes, the stream not cut yet."""
    run, config = _copy_case("torn_last_progress_line", tmp_path)
    stream = run / "progress.ndjson"
    original = stream.read_bytes()
    (cut,) = plan_repairs(diagnose(run.name, config), config)[:1]
    assert cut.kind == "truncate_torn_line" and cut.byte_offset is not None
    line = json.dumps({"event": "appended", "ts": "2026-02-10T00:00:00Z"}) + "\n"
    _killed(_CUT_THEN_DIE, run, config, line)
    garbled = stream.read_bytes()
    assert garbled.startswith(original[: cut.byte_offset] + line.encode())
    assert garbled.count(line.encode()) == 2  # the killed repair's state: moved, not cut
    return run, config, original, cut.byte_offset, line.encode()


_REAPER = r"""
import sys
from pathlib import Path
from executor._reaper import terminalize_lost_run
run, now = Path(sys.argv[1]), float(sys.argv[2])
assert terminalize_lost_run(run, run_id=run.name, reason="worker lost", epoch=1, now=now)
"""


def test_terminalize_losing_final_json_to_the_executor_s_reaper_is_refused_not_failed(
    tmp_path: Path,
) -> None:
    """The executor's reaper (another process; it follows no run lock, it links
    ``final.json`` into place only when there is none) ends the run between terminalize's
    checks and its write.

    Before, the repair's own exclusive create then failed: outcome ``failed``
    (``FileExistsError``), which the breaker counts as a try of a repair that keeps being
    undone. Nothing was overwritten then either; now the outcome says what happened: refused,
    another writer's ``final.json`` appeared, and it is left as it is."""
    run, config = _copy_case("fanout_never_joined", tmp_path)
    plan = plan_repairs(diagnose(run.name, config), config)
    assert [a.kind for a in plan] == ["terminalize"]

    def the_reaper_ends_the_run(kind: str) -> None:
        subprocess.run(
            [sys.executable, "-c", _REAPER, str(run), str(config.now)],
            check=True,
            cwd=Path(__file__).resolve().parents[2],
        )

    reaped = run / "final.json"
    (result,) = apply_repairs(plan, config, run_path=run, race_hook=the_reaper_ends_the_run).results
    assert result.outcome == "refused", result.message
    assert "final.json appeared" in result.message
    assert json.loads(reaped.read_text())["repaired_by"]["tool"] == "executor.reaper"
    assert [e.outcome for e in read_journal(run, outcomes=("applied", "failed"))] == []


def test_a_half_done_cut_is_not_finished_while_the_run_s_owner_is_alive(tmp_path: Path) -> None:
    """The same kill, then the run resumed by an owner that records itself only in ``run.pid``
    (a Kilroy older than the lock protocol): the cut is not finished under a live owner
    (refused, the stream as it is), as a cut is never begun under one."""
    run, config, _original, _offset, _line = _cut_then_die(tmp_path)
    stream = run / "progress.ndjson"
    garbled = stream.read_bytes()
    owner = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=-1)
    try:
        (run / "run.pid").write_text(str(owner.pid))
        (refused,) = apply_repairs([], config, run_path=run).results
    finally:
        owner.communicate("")
    assert refused.outcome == "refused" and "owner process is alive" in refused.message
    assert stream.read_bytes() == garbled


def test_the_plan_says_a_half_done_cut_that_apply_will_finish(tmp_path: Path) -> None:
    """``doctor repair`` without ``--apply`` after a repair was SIGKILLed between a cut's move
    and its ``ftruncate``: the plan says that ``--apply`` finishes that cut first, in the text
    and in ``--json`` (``finishing``), and changes nothing.

    Before, the plan said nothing of it: a user previewing the repair saw only the findings'
    actions, though ``--apply`` would first rewrite the stream."""
    run, _config, _original, offset, _line = _cut_then_die(tmp_path)
    stream, journal = run / "progress.ndjson", run / JOURNAL
    before = (stream.read_bytes(), journal.read_bytes())
    text = run_doctor("repair", "--run-id", run.name, "--root", run.parent)
    assert "Traceback" not in text.stderr, text.stderr
    assert "First, --apply finishes 1 cut a repair left half done:" in text.stdout, text.stdout
    assert f"progress.ndjson at byte {offset}" in text.stdout, text.stdout
    assert "Run again with --apply" in text.stdout
    planned = json.loads(
        run_doctor("repair", "--run-id", run.name, "--root", run.parent, "--json").stdout
    )
    (finishing,) = planned["finishing"]
    assert (finishing["action"], finishing["target"], finishing["byte_offset"]) == (
        "truncate_torn_line",
        "progress.ndjson",
        offset,
    )
    assert finishing["blocked"] is None
    assert (stream.read_bytes(), journal.read_bytes()) == before  # a plan writes nothing
    done = json.loads(
        run_doctor("repair", "--run-id", run.name, "--root", run.parent, "--apply", "--json").stdout
    )
    assert done["report"]["results"][0]["outcome"] == "applied"
    after = json.loads(
        run_doctor("repair", "--run-id", run.name, "--root", run.parent, "--json").stdout
    )
    assert after["finishing"] == []


def test_the_plan_forecasts_a_half_done_cut_that_apply_will_refuse(tmp_path: Path) -> None:
    """The same kill, then a line appended to the garbled stream: the plan says that finishing
    the cut would be refused (the stream changed since: a person should look), and exits 1."""
    run, _config, _original, _offset, _line = _cut_then_die(tmp_path)
    with (run / "progress.ndjson").open("ab") as fh:
        fh.write(b'{"event": "run_resumed", "ts": "2026-02-11T00:00:00Z"}\n')
    text = run_doctor("repair", "--run-id", run.name, "--root", run.parent)
    assert text.returncode == 1, text.stdout + text.stderr
    assert "expected to refuse:" in text.stdout and "a person should look" in text.stdout
    planned = json.loads(
        run_doctor("repair", "--run-id", run.name, "--root", run.parent, "--json").stdout
    )
    (finishing,) = planned["finishing"]
    assert "changed since" in finishing["blocked"], finishing


_CUT_WITHOUT_A_LEASE = r"""
import json, os, sys
from pathlib import Path
from doctor import DoctorConfig, diagnose
from doctor._repair import apply_repairs, plan_repairs
root, name, now, line = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]), sys.argv[4]
config = DoctorConfig(roots=(root,), now=now)
plan = plan_repairs(diagnose(name, config), config)[:1]
stream = root / name / "progress.ndjson"
appended = []

def append(point):  # a writer that appends after the check, then after every move
    fd = os.open(stream, os.O_WRONLY | os.O_APPEND)
    os.write(fd, line.replace("N", str(len(appended))).encode())
    os.close(fd)
    appended.append(point)

report = apply_repairs(
    plan,
    config,
    run_path=root / name,
    race_hook=append,
    wrote_hook=lambda point: append(point) if point == "truncate_torn_line:moved" else None,
)
(result,) = report.results
print(json.dumps({"outcome": result.outcome, "message": result.message, "lines": len(appended)}))
"""


def _without_a_lease(script: str, run: Path, config: DoctorConfig, arg: str) -> Any:
    """Run ``script`` (the run's root, name, now and ``arg``) in a real process that can take
    no write lease (``setpriv``: no ``CAP_LEASE``; the stream must be another user's) and
    prints one JSON object: that object."""
    no_lease = ["setpriv", "--inh-caps=-lease", "--bounding-set=-lease"]
    done = subprocess.run(
        [*no_lease, sys.executable, "-c", script, str(run.parent), run.name, str(config.now), arg],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_cut_outrun_by_a_writer_without_a_lease_is_left_for_the_next_repair_to_finish(
    tmp_path: Path,
) -> None:
    """``truncate_torn_line`` where no write lease can be had (the stream owned by another
    user, the repair without ``CAP_LEASE``: a real process under ``setpriv``), against a writer
    that appends after the check and again after every move, more often than the cut follows.

    Before, the cut moved the appended bytes down 100 times, then refused (``keeps growing``)
    with its ``refused`` line finishing the attempt: the stream was left garbled (lines twice,
    torn bytes between) and nothing recovered it. Now the last bytes are journaled but not
    moved and the refusal leaves the attempt unfinished: the plan shows it, and the next
    repair, the writer gone, finishes the cut: the stream is the bytes before the torn line,
    then every appended line once, in order."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run the repair without CAP_LEASE")
    run, config = _copy_case("torn_last_progress_line", tmp_path)
    stream = run / "progress.ndjson"
    original = stream.read_bytes()
    (cut,) = plan_repairs(diagnose(run.name, config), config)[:1]
    assert cut.kind == "truncate_torn_line" and cut.byte_offset is not None
    os.chown(stream, 65534, 65534)  # not the repair's: F_SETLEASE needs CAP_LEASE
    line = json.dumps({"event": "appended", "n": "N", "ts": "2026-02-10T00:00:00Z"}) + "\n"
    outrun = _without_a_lease(_CUT_WITHOUT_A_LEASE, run, config, line)
    assert outrun["outcome"] == "refused" and "keeps growing" in outrun["message"], outrun
    lines = [line.replace("N", str(n)).encode() for n in range(outrun["lines"])]
    assert len(lines) == 101  # after the check, then after each of the 100 moves
    garbled = stream.read_bytes()
    assert garbled != original[: cut.byte_offset] + b"".join(lines)
    assert all(garbled.count(one) >= 1 for one in lines)  # every appended line is there
    *_, refused = read_journal(run)
    assert refused.outcome == "refused" and refused.attempt is None  # leaves it unfinished
    assert [a.blocked for a in plan_finishing(diagnose(run.name, config))] == [None]
    (finished,) = apply_repairs([], config, run_path=run).results
    assert finished.outcome == "applied", finished.message
    assert stream.read_bytes() == original[: cut.byte_offset] + b"".join(lines)


def test_a_cut_whose_ftruncate_fails_after_the_move_is_left_for_the_next_repair(
    tmp_path: Path,
) -> None:
    """``truncate_torn_line`` whose ``ftruncate`` fails (``EIO``, injected into a real repair
    process by ``strace``) after it moved a line appended after its check down.

    Before, the ``failed`` line finished the attempt: the stream was left with the line twice,
    a garbled line between, and the next repair did nothing. Now an attempt that journaled a
    move and did not end applied is left unfinished: the next repair finishes the cut."""
    if shutil.which("strace") is None:
        pytest.skip("needs strace to make the cut's ftruncate fail")
    run, config = _copy_case("torn_last_progress_line", tmp_path)
    stream = run / "progress.ndjson"
    original = stream.read_bytes()
    (cut,) = plan_repairs(diagnose(run.name, config), config)[:1]
    assert cut.byte_offset is not None
    line = json.dumps({"event": "appended", "ts": "2026-02-10T00:00:00Z"}) + "\n"
    script = _CUT_THEN_DIE.replace("wrote_hook=die", "wrote_hook=None")
    script = script.replace("apply_repairs(", "print(apply_repairs(") + ".results[0].message)"
    inject = ["strace", "-f", "-qq", "-o", os.devnull, "-e", "inject=ftruncate:error=EIO:when=1"]
    args = [str(run.parent), run.name, str(config.now), line]
    failed = subprocess.run(
        [*inject, sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert failed.returncode == 0 and "Input/output error" in failed.stdout, failed
    assert stream.read_bytes().count(line.encode()) == 2  # moved, not cut
    (finished,) = apply_repairs([], config, run_path=run).results
    assert finished.outcome == "applied", finished.message
    assert stream.read_bytes() == original[: cut.byte_offset] + line.encode()


def test_a_killed_cut_counts_once_for_the_breaker(tmp_path: Path) -> None:
    """A cut SIGKILLed after its move leaves two ``started`` lines of one attempt (before its
    first write, before its move): one try for the breaker, not two (before, two killed cuts
    tripped a breaker of three)."""
    run, config, _original, _offset, _line = _cut_then_die(tmp_path)
    journal = read_journal(run, outcomes=_COUNTED)
    assert [e.outcome for e in journal] == ["started", "started"]
    assert len({e.attempt for e in journal}) == 1
    (cut,) = {(e.action, e.target) for e in journal}
    ctx = _Ctx(run, run.name, config, journal)
    action = Action(*cut, FindingRef("torn_artifact", "critical", "", None, "torn"), "torn")
    assert _breaker(ctx, action, 2, 86400) is None
    assert _breaker(ctx, action, 1, 86400) is not None


_FINISH_WITHOUT_A_LEASE = r"""
import json, os, sys
from pathlib import Path
from doctor import DoctorConfig
from doctor._repair import apply_repairs
root, name, now, line = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]), sys.argv[4]
stream = root / name / "progress.ndjson"

def append(point):  # a writer appends between the finishing move and its cut
    fd = os.open(stream, os.O_WRONLY | os.O_APPEND)
    os.write(fd, line.encode())
    os.close(fd)

config = DoctorConfig(roots=(root,), now=now)
(result,) = apply_repairs([], config, run_path=root / name, wrote_hook=append).results
print(json.dumps({"outcome": result.outcome, "message": result.message}))
"""


def test_finishing_a_cut_without_a_lease_keeps_a_line_appended_meanwhile(tmp_path: Path) -> None:
    """A half-done cut (killed before its move) finished by a repair that can have no lease
    (``setpriv`` without ``CAP_LEASE``, the stream another user's), while a writer appends a
    line between the finishing move and the ``ftruncate``.

    Before, the ``ftruncate`` cut the line off: lost, and the cut reported applied. Now the
    size is checked again before the cut: refused, the line kept, the stream left to a person."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run the repair without CAP_LEASE")
    run, config, original, _offset, line = _cut_then_die(tmp_path)
    stream = run / "progress.ndjson"
    stream.write_bytes(original + line)  # as the cut found it: killed before its move
    os.chown(stream, 65534, 65534)
    late = json.dumps({"event": "late", "ts": "2026-02-10T00:00:01Z"}) + "\n"
    finished = _without_a_lease(_FINISH_WITHOUT_A_LEASE, run, config, late)
    assert finished["outcome"] == "refused" and "grew" in finished["message"], finished
    assert stream.read_bytes().endswith(late.encode())  # the writer's line is kept
    assert "started" in [e.outcome for e in read_journal(run)]  # still the next one's


def test_a_journaled_cut_of_an_absurd_size_is_refused_not_a_crash(tmp_path: Path) -> None:
    """A journal line (damaged, or written by hand) whose half-done cut names a stream of a
    petabyte: the plan forecasts the refusal and ``--apply`` refuses it, in one line each.

    Before, both read the size the journal gave in one ``pread``: ``MemoryError``, exit 70."""
    run, _config = _copy_case("torn_last_progress_line", tmp_path)
    cut = {"at": 0, "size": 1 << 50, "length": 1, "prior": 0}
    sums = dict.fromkeys(("tail_sha256", "moved_tail_sha256", "moved_sha256"), "0" * 64)
    line = {"at": "2026-01-01T00:00:00Z", "at_s": 0.0, "action": "truncate_torn_line"}
    line |= {"target": "progress.ndjson", "finding": {}, "outcome": "started"}
    (run / JOURNAL).write_text(json.dumps({**line, "attempt": "1-1", "cut": cut | sums}) + "\n")
    planned = run_doctor("repair", "--run-id", run.name, "--root", run.parent, "--json")
    assert planned.returncode == 1 and "Traceback" not in planned.stderr, planned.stderr
    (finishing,) = json.loads(planned.stdout)["finishing"]
    assert "changed since" in finishing["blocked"]
    done = run_doctor("repair", "--run-id", run.name, "--root", run.parent, "--apply", "--json")
    assert done.returncode == 1, done.stderr
    refused = json.loads(done.stdout)["report"]["results"][0]
    assert refused["outcome"] == "refused" and "changed since" in refused["message"]


def test_the_plan_says_a_half_done_cut_in_a_run_whose_name_is_not_utf8(tmp_path: Path) -> None:
    """The plan's half-done cuts are read from the run's real directory, not from the
    diagnosis's text path (where a name's byte that is not UTF-8 is ``\\xNN``): read from
    that path, a run named ``r\\xe9`` showed none."""
    run, _config, _original, offset, _line = _cut_then_die(tmp_path)
    renamed = run.parent / os.fsdecode(b"r\xe9")
    run.rename(renamed)
    planned = run_doctor("repair", "--run-id", b"r\xe9", "--root", run.parent, "--json")
    assert "Traceback" not in planned.stderr, planned.stderr
    (finishing,) = json.loads(planned.stdout)["finishing"]
    assert finishing["byte_offset"] == offset and finishing["blocked"] is None
