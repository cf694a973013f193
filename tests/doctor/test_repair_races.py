"""``doctor repair`` cannot be steered: real races against symlink swaps, a resuming run and
an appending writer, many tries each (bounded in count; no wall-clock assertion).

Each test runs the real repair (``apply_repairs``) while another thread or process changes
the run directory under it, and asserts the invariant on every try: nothing is written outside
the run, no ``final.json`` appears under a live run's lock, no appended line is lost.
"""

from __future__ import annotations

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

from doctor import DoctorConfig, diagnose
from doctor._errors import UsageError
from doctor._repair import Action, FindingRef, apply_repairs, plan_repairs

CASES = Path(__file__).resolve().parents[2] / "fixtures" / "cases"
TRIES = 40


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
