"""The improvement plan: what each finding code asks the pipeline's owners to change.

A postmortem's *Improvement plan*, *Layer 2* and *Validation matrix* are read from
:data:`PLAN`, one :class:`PlanItem` per finding code (``shared/FINDINGS.md``'s table), so the
same finding always yields the same priority, action and acceptance check. Priorities follow
incident 04's plan: **P0** stops a run from ending or loses work and must be fixed first,
**P1** makes failures slow or hard to see, **P2** is hardening.

The acceptance check of every item ends in a command that proves it: the doctor reports the
code no more.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MECHANISMS", "PLAN", "PRIORITIES", "PlanItem", "plan_item"]

#: Priorities in the order the plan lists them.
PRIORITIES = ("P0", "P1", "P2")


@dataclass(frozen=True, slots=True)
class PlanItem:
    """What to do about one finding code.

    ``mechanism`` names the failing mechanism (Layer 2 of the deep dive); ``test`` and
    ``asserts`` are the regression test of the validation matrix.
    """

    priority: str
    title: str
    mechanism: str
    action: str
    acceptance: str
    test: str
    asserts: str


_TERMINAL = "Terminalization and lifecycle contract"
_HEARTBEAT = "Heartbeat and telemetry integrity"
_STATUS = "Status-file contract"
_REASON = "Failure-reason propagation"
_LOOP = "Loop control (retries and breakers)"
_CHECKPOINT = "Checkpoint fidelity"
_ARTIFACT = "Artifact integrity"
_SCHEDULE = "Scheduling and queue health"
_OTHER = "Other mechanisms"

#: Layer 2 mechanisms in the order the deep dive lists them.
MECHANISMS = (
    _TERMINAL,
    _HEARTBEAT,
    _STATUS,
    _REASON,
    _LOOP,
    _CHECKPOINT,
    _ARTIFACT,
    _SCHEDULE,
    _OTHER,
)

PLAN: dict[str, PlanItem] = {
    "missing_final": PlanItem(
        "P0",
        "Guaranteed terminalization",
        _TERMINAL,
        "Write final.json on every stop, fail and kill path (atomically, before the terminal "
        "event); a supervisor terminalizes runs whose owner died.",
        "Every run ends with a final.json, never orphaned running-without-final.",
        "Kill the owner mid-stage and mid-fan-out.",
        "final.json exists with status fail and a reason naming the kill.",
    ),
    "unjoined_fanout": PlanItem(
        "P0",
        "Deterministic fan-out join",
        _TERMINAL,
        "The fan-out parent joins or cancels every branch and ends its own attempt, whatever "
        "the branches did.",
        "Every fan-out start has its attempt end; no parent waits on finished branches.",
        "Fan-out with one succeeding, one failing and one hanging branch.",
        "The parent ends the fan-out attempt and terminalizes.",
    ),
    "stale_heartbeat": PlanItem(
        "P0",
        "Heartbeats only for live attempts",
        _HEARTBEAT,
        "Tie every heartbeat ticker to its attempt and stop it when the attempt ends.",
        "Zero heartbeats after a node's or branch's completion.",
        "Heartbeat integrity: finish a stage and wait two heartbeat intervals.",
        "No stage_heartbeat names a node without an open attempt.",
    ),
    "status_contract_mismatch": PlanItem(
        "P0",
        "Status contract hardening",
        _STATUS,
        "Accept one canonical status location, or ingest the agent's status file with "
        "provenance; otherwise fail with an actionable contract error.",
        "A stage whose agent wrote .ai/status.json ends with that outcome, not a false fail.",
        "Status contract compatibility: the agent writes only .ai/status.json.",
        "The stage outcome equals the file's outcome; no 'missing status.json' failure.",
    ),
    "lost_failure_reason": PlanItem(
        "P0",
        "Failure-reason propagation",
        _REASON,
        "Check nodes carry the upstream failure reason verbatim when they fail.",
        "No generic check failure without the upstream cause attached.",
        "Failure-reason propagation: force an upstream failure.",
        "The check node's failure_reason contains the upstream reason.",
    ),
    "deterministic_retry_loop": PlanItem(
        "P0",
        "Deterministic circuit breaker on canonical signatures",
        _LOOP,
        "Count failures per (node, canonical signature), in branches as well as the top "
        "level, and stop at the configured limit.",
        "Loops of one failure class stop within the breaker limit.",
        "Canonical signature and breaker: repeat one failure with varying text.",
        "The breaker trips at the limit.",
    ),
    "fragmented_failure_signatures": PlanItem(
        "P0",
        "Canonical failure signatures",
        _LOOP,
        "Normalize numbers, paths, ids and JSON formatting out of failure reasons before "
        "counting them (doctor.canonical_signature).",
        "Failure texts of one class collapse to one signature and the breaker can trip.",
        "Feed semantically identical, textually different failure reasons.",
        "They share one signature; the breaker counts them together.",
    ),
    "retry_loop": PlanItem(
        "P1",
        "Bounded back edges",
        _LOOP,
        "Cap visits per back edge and fix what the check keeps rejecting.",
        "No back edge is taken more than the cap.",
        "A check that always fails behind a back edge.",
        "The run fails after the cap with the check's reason.",
    ),
    "swallowed_error": PlanItem(
        "P1",
        "Informative failure reasons",
        _REASON,
        "Capture exit code, stderr tail and command in every failure reason.",
        "No failure reason is empty, None or a bare exit code.",
        "A stage subprocess that exits 1 with output on stderr.",
        "The failure reason carries the exit code and the stderr tail.",
    ),
    "telemetry_divergence": PlanItem(
        "P1",
        "Child activity surfaced in parent telemetry",
        _HEARTBEAT,
        "Update live.json and the checkpoint on every transition, and mirror branch progress "
        "into the parent stream.",
        "live.json and checkpoint.json name the node the stream is at.",
        "Telemetry consistency during a fan-out.",
        "live.json and checkpoint.json name the fan-out while it runs.",
    ),
    "checkpoint_drift": PlanItem(
        "P1",
        "Checkpoint fidelity",
        _CHECKPOINT,
        "Record real node_retries and keep completed_nodes unique.",
        "The checkpoint agrees with the event stream.",
        "Branch checkpoint consistency: retry a node twice.",
        "node_retries counts the retries; completed_nodes has no duplicates.",
    ),
    "post_terminal_activity": PlanItem(
        "P1",
        "Single writer after terminalization",
        _TERMINAL,
        "Stop every ticker and child process before writing final.json; refuse writes after.",
        "No event follows final.json.",
        "Terminalize while a heartbeat ticker runs.",
        "The stream ends with the terminal event.",
    ),
    "false_success": PlanItem(
        "P0",
        "A failed stage cannot end a run in success",
        _TERMINAL,
        "Give every stage that can fail an edge for failure (or make it a goal gate), so no "
        "failure falls back into the exit.",
        "No fallback edge_selected leaves a failed node into the exit.",
        "A stage that fails with only a success-conditioned edge.",
        "The run ends fail, or false_success fires.",
    ),
    "final_stream_mismatch": PlanItem(
        "P1",
        "One run directory, one writer of its outcome",
        _TERMINAL,
        "Resume only the original run directory, or point a copy's checkpoint "
        "(extra.base_logs_root) at the copy before resuming it; never resume a run whose "
        "checkpoint has no git_commit_sha (Kilroy refuses it and overwrites final.json).",
        "Every final.json is followed by its own run_completed or run_failed in the same "
        "directory.",
        "Copy a run killed mid-stage and resume the copy; resume a no-git run that succeeded.",
        "The original keeps its own outcome, or final_stream_mismatch fires.",
    ),
    "torn_artifact": PlanItem(
        "P2",
        "Atomic artifact writes",
        _ARTIFACT,
        "Append whole lines in one write; write JSON documents to a temp file, fsync, rename.",
        "No torn line or document after a kill at any point.",
        "Kill the writer in the middle of an append and of a document write.",
        "Every line and document parses; at most the last line is missing.",
    ),
    "idle_gap": PlanItem(
        "P1",
        "No idle execution while work is pending",
        _SCHEDULE,
        "Alert when nothing progresses while work is pending; check the scheduler and workers.",
        "No gap longer than the threshold while tickets wait.",
        "Pending work with a stopped worker.",
        "An alert fires within the threshold.",
    ),
    "stale_lease": PlanItem(
        "P0",
        "Lease reaping",
        _SCHEDULE,
        "Reclaim leases whose heartbeat stopped, with compare-and-set on the lease epoch.",
        "No lease outlives its owner by more than the lease TTL.",
        "Kill a worker holding a lease.",
        "The ticket is reclaimed within the TTL and runs again.",
    ),
    "no_progress_lease": PlanItem(
        "P1",
        "Progress-based liveness",
        _SCHEDULE,
        "Judge a lease by its run's progress events, not only its heartbeats.",
        "A lease with heartbeats but no progress is flagged within the stall timeout.",
        "A worker that heartbeats but never advances.",
        "The lease is flagged and reclaimed.",
    ),
    "session_desync": PlanItem(
        "P0",
        "Session tracking",
        _SCHEDULE,
        "Record the session (name, pid, host) in the same transaction as the claim.",
        "The queue's session record matches the process table.",
        "Claim, then kill the session.",
        "The doctor sees the dead pid and the record is reconciled.",
    ),
    "recovery_loop": PlanItem(
        "P0",
        "Recovery circuit breaker",
        _SCHEDULE,
        "Quarantine a ticket or run after N recoveries in a window.",
        "No ticket is recovered more than N times in the window.",
        "A ticket that crashes its worker every time.",
        "It is quarantined after N recoveries with its reason.",
    ),
    "clock_skew": PlanItem(
        "P1",
        "Clock discipline",
        _SCHEDULE,
        "Run NTP on every worker host and the database server; record queue times in epoch "
        "seconds only.",
        "No lease's heartbeat lies ahead of the queue's clock by more than the stale threshold.",
        "A worker whose clock is set an hour ahead.",
        "clock_skew fires; after NTP it does not.",
    ),
    "backlog_growth": PlanItem(
        "P2",
        "Capacity planning",
        _SCHEDULE,
        "Add workers or shed load when tickets arrive faster than they close.",
        "Closed per day keeps up with created per day.",
        "Enqueue faster than one worker can close.",
        "backlog_growth fires; with two workers it does not.",
    ),
}


def plan_item(code: str) -> PlanItem:
    """The plan item for ``code``; codes without one get a generic P2 item.

    >>> plan_item("missing_final").priority
    'P0'
    >>> plan_item("some_new_code").priority
    'P2'
    """
    item = PLAN.get(code)
    if item is not None:
        return item
    return PlanItem(
        "P2",
        f"Address {code}",
        _OTHER,
        "Read the finding's summary and evidence; no plan entry exists for this code yet.",
        "The doctor reports the code no more.",
        f"Reproduce {code} in a fixture case.",
        "The case diagnoses without it after the fix.",
    )
