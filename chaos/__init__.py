"""Run Doctor's chaos checks: deterministic fault injection against real runs.

A campaign (:func:`run_campaign`) starts real worker processes over a seeded workload,
injects the faults of :data:`FAULTS` from a seeded schedule, records the history (NDJSON, one
frozen dataclass per record) and checks the invariants of :data:`CHECKERS` on it; a
violation is a :class:`Verdict` with its witness and the command that replays the campaign.

>>> from chaos import FAULTS, CHECKERS
>>> "sigstop_worker" in [f.name for f in FAULTS] and len(CHECKERS) >= 7
True
"""

from chaos._campaign import CampaignResult, run_campaign
from chaos._checkers import (
    CHECKERS,
    at_most_one_completion,
    breaker_within_limit,
    check,
    diagnosis_explained,
    every_worker_exit_explained,
    final_json_in_time,
    no_heartbeat_after_end,
    no_stale_write_accepted,
    no_succeeded_run_rerun,
    no_ticket_lost,
    no_worker_crashed,
    reclaim_latency,
)
from chaos._config import (
    CHAOS_EXECUTOR,
    CampaignConfig,
    parse_duration,
    plan_schedule,
)
from chaos._errors import CampaignError, ChaosError, FaultNotApplicable, FaultSkipped, UsageError
from chaos._evidence import Checker, Verdict
from chaos._faults import FAULTS, select_faults
from chaos._history import (
    Bounds,
    FaultRecord,
    FindingFact,
    Held,
    History,
    Meta,
    Op,
    Planned,
    QueueEvent,
    Record,
    RunRecord,
    TicketRecord,
    WorkerRecord,
    read_history,
    write_history,
)
from chaos._injection import Fault, Injection, Target, database_unavailable
from chaos._report import chaos_context, report_json, write_report
from chaos._workload import KINDS, Pipeline, Workload, build_workload

__all__ = [
    "CHAOS_EXECUTOR",
    "CHECKERS",
    "FAULTS",
    "KINDS",
    "Bounds",
    "CampaignConfig",
    "CampaignError",
    "CampaignResult",
    "ChaosError",
    "Checker",
    "Fault",
    "FaultNotApplicable",
    "FaultRecord",
    "FaultSkipped",
    "FindingFact",
    "Held",
    "History",
    "Injection",
    "Meta",
    "Op",
    "Pipeline",
    "Planned",
    "QueueEvent",
    "Record",
    "RunRecord",
    "Target",
    "TicketRecord",
    "UsageError",
    "Verdict",
    "WorkerRecord",
    "Workload",
    "at_most_one_completion",
    "breaker_within_limit",
    "build_workload",
    "chaos_context",
    "check",
    "database_unavailable",
    "diagnosis_explained",
    "every_worker_exit_explained",
    "final_json_in_time",
    "no_heartbeat_after_end",
    "no_stale_write_accepted",
    "no_succeeded_run_rerun",
    "no_ticket_lost",
    "no_worker_crashed",
    "parse_duration",
    "plan_schedule",
    "read_history",
    "reclaim_latency",
    "report_json",
    "run_campaign",
    "select_faults",
    "write_history",
    "write_report",
]
