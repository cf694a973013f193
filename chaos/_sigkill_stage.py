"""Fault ``sigkill_stage``: SIGKILL a stage's whole session, under a live worker.

The stage runs in its own session (its leader is the group and session leader), so the kill
takes the leader and every process it started. The worker's supervision loop sees the leader
die by a signal: the attempt ends ``fail`` with a reason that names the signal, and the run
goes on as its graph says (a retry, a loop back, or the end of the run). Nothing here needs
the reaper: the worker and its lease are untouched.

The target is chosen among the live stages of running tickets (each attempt's
``process.json``: pid and group), sorted by run directory and node.
"""

from __future__ import annotations

import psutil

from chaos._injection import Fault, Injection, Stage, Target, choose, live_stages

__all__ = ["FAULT", "sigkill_stage"]


def _kill_session(stage: Stage) -> int:
    """SIGKILL the leader and its descendants; how many processes got the signal."""
    try:
        leader = psutil.Process(stage.pid)
        family = [leader, *leader.children(recursive=True)]
    except psutil.Error:
        return 0
    killed = 0
    for proc in family:
        try:
            proc.kill()
            killed += 1
        except psutil.Error:
            continue
    return killed


def sigkill_stage(target: Target) -> Injection | None:
    """SIGKILL a running stage's session (its leader and children); the worker lives on."""
    stages = live_stages(target.leased())
    stage = choose(stages, target.pick, key=lambda s: (s.run_path, s.node, s.pid))
    if stage is None:
        return None
    killed = _kill_session(stage)
    if not killed:
        return None
    return Injection(
        target=f"stage {stage.node} (pid {stage.pid}) of ticket {stage.ticket}",
        detail={"pid": stage.pid, "pgid": stage.pgid, "node": stage.node, "killed": killed},
        runs=(stage.run_path,),
    )


#: A killed stage is an ordinary failed attempt: nothing at error may follow from it alone.
FAULT = Fault(sigkill_stage, may_cause=frozenset())
