"""The ``progress.ndjson`` vocabulary: one frozen dataclass per event, Kilroy's names.

Every line of a stream is one :class:`Event` subclass rendered by :meth:`Event.to_json`: the
``event`` discriminator first, then the envelope (``ts`` RFC 3339 UTC with up to nanoseconds,
``run_id``, ``id`` eight random hex digits, ``epoch`` the lease epoch, 0 without a queue), then
the payload. Optional payload fields are left out when they are ``None``, and so is a number JSON
has no spelling for (an infinite or NaN cost: see :func:`finite`). The writer stamps the
envelope (:meth:`Event.stamped`); code that creates events fills the payload only.

The published schema (``docs/executor-artifacts.md``) is generated from these classes by
:func:`schema_markdown`, and a test keeps the two equal.

>>> e = StageAttemptStart(node_id="build", attempt=1, max=4, handler="tool",
...                       attempt_dir="build/attempt-1")
>>> e.stamped(ts="2026-04-24T10:05:00Z", run_id="r1", id="0a1b2c3d", epoch=2).to_json()
... # doctest: +NORMALIZE_WHITESPACE
{'event': 'stage_attempt_start', 'ts': '2026-04-24T10:05:00Z', 'run_id': 'r1', 'id': '0a1b2c3d',
 'epoch': 2, 'node_id': 'build', 'attempt': 1, 'max': 4, 'handler': 'tool',
 'attempt_dir': 'build/attempt-1'}
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

__all__ = [
    "EVENTS",
    "BranchHeartbeat",
    "BranchProgress",
    "DeterministicFailureCycleBreaker",
    "DeterministicFailureCycleCheck",
    "EdgeSelected",
    "EngineWarning",
    "Event",
    "NoMatchingFailEdgeFallback",
    "RetryDecision",
    "RunCompleted",
    "RunFailed",
    "RunStarted",
    "StageAttemptEnd",
    "StageAttemptStart",
    "StageHeartbeat",
    "StageRetryBlocked",
    "StageRetrySleep",
    "StatusContract",
    "StatusIngestionDecision",
    "StuckCycleBreaker",
    "SubgraphCanceledExit",
    "SubgraphDeterministicFailureCycleBreaker",
    "SubgraphDeterministicFailureCycleCheck",
    "finite",
    "mirror",
    "rfc3339",
    "schema_markdown",
]


def finite(value: Any) -> Any:
    """``value`` with every float that is infinite or NaN made ``None`` (in lists and dicts
    too): JSON has no spelling for them, and Python's ``json`` writes ``Infinity``, which no
    other reader takes (the doctor read such a ``final.json`` as torn, and the run as never
    ended). A stage's cost of ``1e308`` twice sums to infinity.

    >>> finite({"cost_usd": float("inf"), "n": [1.5, float("nan")], "ok": True})
    {'cost_usd': None, 'n': [1.5, None], 'ok': True}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def rfc3339(t: float) -> str:
    """Epoch seconds as Kilroy's RFC3339Nano UTC text (microsecond precision, zeros trimmed).

    >>> rfc3339(1770741731.8188812), rfc3339(1770696025.0)
    ('2026-02-10T16:42:11.818881Z', '2026-02-10T04:00:25Z')
    """
    micros = round(t * 1_000_000)
    secs, frac = divmod(micros, 1_000_000)
    base = datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    digits = f"{frac:06d}".rstrip("0")
    return f"{base}.{digits}Z" if digits else f"{base}Z"


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """The envelope every event carries; subclasses add the payload and name ``EVENT``."""

    EVENT: ClassVar[str] = ""
    DOC: ClassVar[str] = ""
    ts: str = ""
    run_id: str = ""
    id: str = ""
    epoch: int = 0

    def stamped(self, *, ts: str, run_id: str, id: str, epoch: int) -> Self:
        """A copy with the envelope filled in."""
        return replace(self, ts=ts, run_id=run_id, id=id, epoch=epoch)

    def to_json(self) -> dict[str, Any]:
        """The line's JSON object: ``event`` first, ``None`` payload fields left out (and
        infinite or NaN ones: :func:`finite`)."""
        out: dict[str, Any] = {"event": self.EVENT}
        for f in fields(self):
            value = finite(getattr(self, f.name))
            if value is not None:
                out[f.name] = value
        return out

    def to_line(self) -> bytes:
        """One whole NDJSON line, newline included."""
        text = json.dumps(self.to_json(), ensure_ascii=False, separators=(",", ":"))
        return (text + "\n").encode("utf-8")


@dataclass(frozen=True, slots=True, kw_only=True)
class RunStarted(Event):
    EVENT = "run_started"
    DOC = "first line of a run: what runs and who owns it"
    graph_name: str
    graph_path: str
    logs_root: str
    pid: int
    host: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StageAttemptStart(Event):
    EVENT = "stage_attempt_start"
    DOC = "an attempt of a node begins (attempt is 1-based within the visit)"
    node_id: str
    attempt: int
    max: int
    handler: str
    attempt_dir: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StageAttemptEnd(Event):
    EVENT = "stage_attempt_end"
    DOC = "the attempt is over and its process group is gone; no heartbeat of it follows"
    node_id: str
    attempt: int
    max: int
    status: str
    failure_reason: str
    failure_class: str
    attempt_dir: str
    duration_s: float
    exit_code: int | None = None
    signal: str | None = None
    cost_usd: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StageHeartbeat(Event):
    EVENT = "stage_heartbeat"
    DOC = "the attempt's process is alive (written only while the attempt is open)"
    node_id: str
    attempt: int
    elapsed_s: float
    stdout_bytes: int
    stderr_bytes: int
    since_last_output_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusContract(Event):
    EVENT = "status_contract"
    DOC = "an agent attempt is told where to write its status"
    node_id: str
    attempt: int
    status_path: str
    status_fallback_path: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusIngestionDecision(Event):
    EVENT = "status_ingestion_decision"
    DOC = (
        'which status file decided the attempt ("" = none: the exit code decided, or, '
        "`decided_by` `contract`, the agent failed for writing none)"
    )
    node_id: str
    attempt: int
    source: str
    copied: bool
    path: str
    decided_by: str
    diagnostic: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryDecision(Event):
    EVENT = "retry_decision"
    DOC = "after every failed attempt: whether the node is tried again"
    node_id: str
    attempt: int
    max_retries: int
    will_retry: bool
    failure_class: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StageRetrySleep(Event):
    EVENT = "stage_retry_sleep"
    DOC = "backing off before the next attempt"
    node_id: str
    attempt: int
    delay_ms: int
    retries: int
    max_retry: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StageRetryBlocked(Event):
    EVENT = "stage_retry_blocked"
    DOC = "attempts remain but the failure is not transient (or the run's budget is spent)"
    node_id: str
    attempt: int
    max: int
    status: str
    failure_reason: str
    failure_class: str
    max_retry: int


@dataclass(frozen=True, slots=True, kw_only=True)
class EdgeSelected(Event):
    EVENT = "edge_selected"
    DOC = "the next hop"
    from_node: str
    to_node: str
    label: str
    condition: str
    hop_source: str
    selection_method: str
    candidates_evaluated: int
    conditions_matched: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NoMatchingFailEdgeFallback(Event):
    EVENT = "no_matching_fail_edge_fallback"
    DOC = "a failure with no matching edge goes to the retry target"
    node_id: str
    retry_target: str
    failure_reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DeterministicFailureCycleCheck(Event):
    EVENT = "deterministic_failure_cycle_check"
    DOC = "a deterministic failure was counted under its canonical signature"
    node_id: str
    signature: str
    signature_count: int
    signature_limit: int
    failure_class: str
    failure_reason: str
    signature_version: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DeterministicFailureCycleBreaker(Event):
    EVENT = "deterministic_failure_cycle_breaker"
    DOC = "the count reached the limit: the run stops"
    node_id: str
    signature: str
    signature_count: int
    signature_limit: int
    signature_version: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SubgraphDeterministicFailureCycleCheck(DeterministicFailureCycleCheck):
    EVENT = "subgraph_deterministic_failure_cycle_check"
    DOC = "as deterministic_failure_cycle_check, inside a branch (own counters)"


@dataclass(frozen=True, slots=True, kw_only=True)
class SubgraphDeterministicFailureCycleBreaker(DeterministicFailureCycleBreaker):
    EVENT = "subgraph_deterministic_failure_cycle_breaker"
    DOC = "as deterministic_failure_cycle_breaker, inside a branch: the branch stops"


@dataclass(frozen=True, slots=True, kw_only=True)
class StuckCycleBreaker(Event):
    EVENT = "stuck_cycle_breaker"
    DOC = "a node was entered more than max_node_visits times"
    node_id: str
    visit_count: int
    visit_limit: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SubgraphCanceledExit(Event):
    EVENT = "subgraph_canceled_exit"
    DOC = "a branch stopped because the run was canceled"
    node_id: str
    last_node_id: str
    failure_reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BranchProgress(Event):
    EVENT = "branch_progress"
    DOC = "parent stream: a branch lifecycle step or a copy of a branch event"
    branch_key: str
    branch_logs_root: str
    branch_event: str
    branch_node_id: str | None = None
    branch_status: str | None = None
    branch_failure_reason: str | None = None
    branch_attempt: int | None = None
    branch_max: int | None = None
    branch_from_node: str | None = None
    branch_to_node: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BranchHeartbeat(Event):
    EVENT = "branch_heartbeat"
    DOC = "parent stream: a branch's stage heartbeat (liveness, not progress)"
    branch_key: str
    branch_logs_root: str
    branch_last_event: str
    branch_last_event_at: str
    branch_idle_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineWarning(Event):
    EVENT = "warning"
    DOC = "something the operator should know that did not stop the run"
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RunCompleted(Event):
    EVENT = "run_completed"
    DOC = "terminal: written after final.json, last line of the run"
    status: str
    wall_s: float
    cost_usd: float
    attempts: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFailed(Event):
    EVENT = "run_failed"
    DOC = "terminal (status fail or canceled): written after final.json, last line"
    status: str
    reason: str
    wall_s: float
    cost_usd: float
    attempts: int


#: Every event class, in the order the schema lists them.
EVENTS: tuple[type[Event], ...] = (
    RunStarted,
    StageAttemptStart,
    StageHeartbeat,
    StatusContract,
    StatusIngestionDecision,
    StageAttemptEnd,
    RetryDecision,
    StageRetrySleep,
    StageRetryBlocked,
    EdgeSelected,
    NoMatchingFailEdgeFallback,
    DeterministicFailureCycleCheck,
    DeterministicFailureCycleBreaker,
    SubgraphDeterministicFailureCycleCheck,
    SubgraphDeterministicFailureCycleBreaker,
    StuckCycleBreaker,
    SubgraphCanceledExit,
    BranchProgress,
    BranchHeartbeat,
    EngineWarning,
    RunCompleted,
    RunFailed,
)

_JSON_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}


def mirror(
    e: Event, *, branch_key: str, branch_logs_root: str, last_event: str, last_at: str, idle_ms: int
) -> BranchProgress | BranchHeartbeat:
    """The parent stream's copy of a branch's event.

    A stage heartbeat stays a heartbeat (``branch_heartbeat``: liveness, never progress);
    anything else becomes ``branch_progress`` with the fields a reader needs copied over.

    >>> beat = StageHeartbeat(node_id="a", attempt=1, elapsed_s=1.0, stdout_bytes=0,
    ...                       stderr_bytes=0, since_last_output_s=1.0)
    >>> mirror(beat, branch_key="a", branch_logs_root="/r", last_event="stage_attempt_start",
    ...        last_at="2026-01-01T00:00:00Z", idle_ms=1000).EVENT
    'branch_heartbeat'
    """
    if isinstance(e, StageHeartbeat):
        return BranchHeartbeat(
            branch_key=branch_key,
            branch_logs_root=branch_logs_root,
            branch_last_event=last_event,
            branch_last_event_at=last_at,
            branch_idle_ms=idle_ms,
        )
    return BranchProgress(
        branch_key=branch_key,
        branch_logs_root=branch_logs_root,
        branch_event=e.EVENT,
        branch_node_id=getattr(e, "node_id", None),
        branch_status=getattr(e, "status", None),
        branch_failure_reason=getattr(e, "failure_reason", None),
        branch_attempt=getattr(e, "attempt", None),
        branch_max=getattr(e, "max", None),
        branch_from_node=getattr(e, "from_node", None),
        branch_to_node=getattr(e, "to_node", None),
    )


def _field_type(annotation: object) -> str:
    text = str(annotation)
    optional = text.endswith(" | None")
    base = _JSON_TYPES[text.removesuffix(" | None")]
    return f"{base}?" if optional else base


def schema_markdown() -> str:
    """The event schema as the Markdown table published in ``docs/executor-artifacts.md``.

    ``type?`` marks an optional field, left out of the line when unknown.

    >>> print(schema_markdown().splitlines()[2])  # doctest: +ELLIPSIS
    | `run_started` | `graph_name` string, `graph_path` string, `logs_root` string, ...
    """
    lines = ["| event | payload fields | meaning |", "|---|---|---|"]
    envelope = {f.name for f in fields(Event)}
    for cls in EVENTS:
        payload = ", ".join(
            f"`{f.name}` {_field_type(f.type)}" for f in fields(cls) if f.name not in envelope
        )
        lines.append(f"| `{cls.EVENT}` | {payload} | {cls.DOC} |")
    return "\n".join(lines) + "\n"
