"""The pipeline runner: traverse a validated graph from start to exit, and always terminalize.

One :class:`_Engine` runs one scope (the run, or a fan-out branch) node by node:

* **attempts**: a tool or agent node is tried up to ``max_retries + 1`` times, but only
  *transient* failures (timeouts, connection errors, exit status 75, a stage's
  ``failure_class: transient``) are retried, with exponential backoff and deterministic jitter,
  while the run's retry budget lasts;
* **routing**: matching ``condition`` edges first (weight, then target id, then declaration
  order), then an edge whose label is the stage's ``preferred_label``, then unconditional edges.
  A failed outcome follows an unconditional edge only into a conditional (diamond) node, whose
  job is to route on it; otherwise it goes to ``retry_target`` or ends the scope;
* **conditional nodes** pass the previous outcome through *with its failure reason verbatim*,
  so a check node's failure carries its upstream cause;
* **the breaker**: every non-transient failure of a working node is counted under
  ``(node, rundoctor.signature.canonical_signature(reason))`` for the whole scope (a success
  never resets it); at ``breaker_limit`` the scope stops with a reason naming the signature.
  Its events record ``signature_version`` (``rundoctor.signature.SIGNATURE_VERSION``) so
  readers compare like with like. Entering a node more than ``max_node_visits`` times stops
  it too;
* **fan-out**: a ``component`` node runs each outgoing branch concurrently in its own scope
  (``parallel/<fanout>/<NN>-<branch>/``, own worktree copy, own breaker counters), mirrors
  branch events into the parent stream (``branch_progress``; stage heartbeats become
  ``branch_heartbeat``), writes each branch's ``final.json`` and joins; its ``tripleoctagon``
  fan-in then succeeds with the first successful branch or fails naming every branch's cause.

:func:`run_pipeline` writes ``final.json`` and then ``run_completed``/``run_failed`` for every
run that got a directory: success, failure, breaker, cancellation (SIGTERM/SIGINT or the
``cancel`` event) and executor errors alike.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import os
import secrets
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any

from executor import _events as ev
from executor._artifacts import AttemptDir, Checkpoint, Outcome, RunWriter
from executor._config import ExecutorConfig
from executor._errors import UsageError
from executor._graph import Edge, Graph, Node, load_graph
from executor._stage import out_of_fds, run_attempt
from rundoctor.clock import Clock
from rundoctor.paths import make_dirs
from rundoctor.signature import SIGNATURE_VERSION, canonical_signature
from rundoctor.words import noun, plural

__all__ = ["RunResult", "missing_agent_command", "new_run_id", "run_pipeline"]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_NOT_COUNTED = frozenset({"transient_infra", "canceled"})
#: Why a run whose worker was frozen past its lease stops once woken: the reaper killed its
#: stages and wrote its final.json; its next attempt would run beside the ticket's next run.
SEALED = "canceled: the reaper ended the run (its final.json) after taking the ticket's lease"


def new_run_id(clock: Clock = time.time) -> str:
    """A ULID: 26 Crockford base32 characters, sortable by creation time.

    >>> rid = new_run_id(lambda: 1770741731.8); (len(rid), rid[:10])
    (26, '01KH46X4ER')
    """
    n = (int(clock() * 1000) << 80) | int.from_bytes(secrets.token_bytes(10), "big")
    return "".join(_CROCKFORD[(n >> (5 * i)) & 31] for i in reversed(range(26)))


@dataclass(frozen=True, slots=True)
class RunResult:
    """How a run ended; ``status`` is ``success``, ``fail`` or ``canceled``.

    >>> RunResult("r1", Path("/runs/r1"), "fail", "exit status 1; …", 2.5, 0.0).to_json()["path"]
    '/runs/r1'
    """

    run_id: str
    path: Path
    status: str
    failure_reason: str
    wall_s: float
    cost_usd: float

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "path": str(self.path),
            "status": self.status,
            "failure_reason": self.failure_reason,
            "wall_s": self.wall_s,
            "cost_usd": ev.finite(self.cost_usd),  # costs that sum past a double: null
        }


class _Token:
    """Cancellation: set by a signal, a failing ``on_event`` or the caller's event."""

    def __init__(self, external: threading.Event | None) -> None:
        self.own = threading.Event()
        self.external = external
        self.reason = ""

    def cancel(self, reason: str) -> None:
        if not self.own.is_set():
            self.reason = reason
            self.own.set()

    def is_set(self) -> bool:
        if not self.own.is_set() and self.external is not None and self.external.is_set():
            self.cancel("canceled by the caller (cancel event set)")
        return self.own.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True (early) when canceled."""
        end = time.monotonic() + seconds
        while not self.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return False
            self.own.wait(min(left, 0.05))
        return True


@dataclass(slots=True)
class _Shared:
    """What the run and its branches share."""

    graph: Graph
    config: ExecutorConfig
    token: _Token
    run_id: str
    epoch: int
    clock: Clock
    retries_left: int
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take_retry(self) -> bool:
        with self.lock:
            if self.retries_left <= 0:
                return False
            self.retries_left -= 1
            return True


@dataclass(slots=True)
class _End:
    status: str  # success | fail | canceled
    reason: str
    last_node: str
    attempts: int = 0
    cost_usd: float = 0.0
    stage_s: float = 0.0


class _Engine:
    def __init__(
        self, shared: _Shared, writer: RunWriter, *, start: str, stop: str, worktree: Path
    ) -> None:
        self.s, self.w, self.g, self.cfg = shared, writer, shared.graph, shared.config
        self.start, self.stop, self.worktree = start, stop, worktree
        self.branch = bool(stop)
        self.ck = Checkpoint()
        self.totals = _End("success", "", "")
        self.fan_passes: dict[str, int] = {}
        self.joined: dict[str, list[_Branch]] = {}
        self.limit = self.g.int_attr("breaker_limit", self.cfg.breaker_limit)

    def run(self) -> _End:
        node_id, prev, prev_node = self.start, Outcome("success"), ""
        while True:
            if self.s.token.is_set():
                return self._end("canceled", self.s.token.reason, node_id, prev_node)
            if node_id == self.stop:
                status = "fail" if prev.failed else "success"
                return self._end(status, prev.failure_reason, prev_node)
            node = self.g.nodes[node_id]
            if node.kind == "exit":
                self.w.write_json(f"{node_id}/status.json", {"status": "success", "notes": "exit"})
                self._checkpoint(node_id, 0, Outcome("success", notes="exit"), prev_node)
                return self._end("success", "", node_id)
            visits = self.ck.node_visits[node_id] = self.ck.node_visits.get(node_id, 0) + 1
            visit_limit = self.g.int_attr("max_node_visits", self.cfg.max_node_visits)
            if visits > visit_limit:
                self.w.emit(
                    ev.StuckCycleBreaker(
                        node_id=node_id, visit_count=visits, visit_limit=visit_limit
                    )
                )
                reason = (
                    f"{self._scope()} aborted: node {node_id!r} entered {visits} times "
                    f"(limit {visit_limit}); the pipeline is stuck in a cycle"
                )
                return self._end("fail", reason, node_id)
            outcome, retries = self._visit(node, prev, prev_node)
            self.w.node_status(node_id, outcome.to_json())
            # A failure caused by cancellation is not the node's own: not counted.
            tripped = "" if self.s.token.is_set() else self._breaker(node, outcome)
            self._checkpoint(node_id, retries, outcome, prev_node)
            if self.s.token.is_set():
                return self._end("canceled", self.s.token.reason, node_id)
            if tripped:
                return self._end("fail", tripped, node_id)
            nxt = self.g.joins.get(node_id) or self._route(node, outcome)
            if nxt is None:
                reason = outcome.failure_reason or (
                    f"no outgoing edge of {node_id!r} matches outcome {outcome.status!r}"
                )
                return self._end("fail", reason, node_id)
            prev, prev_node, node_id = outcome, node_id, nxt

    def _scope(self) -> str:
        return "branch" if self.branch else "run"

    def _end(self, status: str, reason: str, node_id: str, prev_node: str = "") -> _End:
        if status == "canceled":
            reason = f"{reason}; the {self._scope()} stopped at node {node_id!r}"
        if status == "canceled" and self.branch:
            self.w.emit(
                ev.SubgraphCanceledExit(
                    node_id=node_id, last_node_id=prev_node, failure_reason=reason
                )
            )
        return replace(self.totals, status=status, reason=reason, last_node=node_id)

    def _checkpoint(self, node_id: str, retries: int, outcome: Outcome, prev_node: str) -> None:
        self.ck.complete(node_id, retries=retries)
        self.ck.context = {
            "current_node": node_id,
            "previous_node": prev_node,
            "outcome": outcome.status,
            "failure_reason": outcome.failure_reason,
            "failure_class": outcome.failure_class,
        }
        self.w.save_checkpoint(self.ck)

    # -- visits and attempts ---------------------------------------------------------------

    def _visit(self, node: Node, prev: Outcome, prev_node: str) -> tuple[Outcome, int]:
        """Run ``node`` to its outcome: one attempt for a node without a process, else
        attempts until one does not fail, the failure is not retried, or the run is
        canceled. Returns the outcome and how many retries it took."""
        if node.kind not in ("tool", "agent"):
            return self._single(node, prev, prev_node), 0
        default = self.g.int_attr("default_max_retry", self.cfg.default_max_retries)
        max_retries = node.max_retries if node.max_retries is not None else default
        attempt, retries = 1, 0
        while True:
            if self.w.sealed_by_other():  # no new attempt in a run the reaper ended
                self.s.token.cancel(SEALED)
                return Outcome("fail", SEALED, "canceled"), retries
            outcome, spent = run_attempt(
                self.w,
                node,
                attempt=attempt,
                max_attempts=max_retries + 1,
                worktree=self.worktree,
                config=self.cfg,
                canceled=self.s.token.is_set,
                predecessor=(prev_node, prev.status),
            )
            self.totals.attempts += 1
            self.totals.cost_usd += outcome.cost_usd or 0.0
            self.totals.stage_s += spent
            if not outcome.failed or outcome.failure_class == "canceled":
                return outcome, retries
            if not self._will_retry(node, outcome, attempt=attempt, max_retries=max_retries):
                return replace(outcome, status="fail"), retries
            delay = self._backoff(node.id, attempt)
            self.w.emit(
                ev.StageRetrySleep(
                    node_id=node.id,
                    attempt=attempt,
                    delay_ms=round(delay * 1000),
                    retries=retries + 1,
                    max_retry=max_retries,
                )
            )
            if self.s.token.wait(delay):
                return replace(outcome, status="fail"), retries
            attempt, retries = attempt + 1, retries + 1

    def _will_retry(self, node: Node, outcome: Outcome, *, attempt: int, max_retries: int) -> bool:
        """Decide whether a failed attempt is retried (attempts left, a transient failure,
        and the run's retry budget) and record the decision; a retry refused while attempts
        were left is recorded as blocked."""
        more = attempt <= max_retries
        transient = outcome.failure_class == "transient_infra"
        will = more and transient and self.s.take_retry()
        why = _verdict(will=will, more=more, transient=transient, cls=outcome.failure_class)
        self.w.emit(
            ev.RetryDecision(
                node_id=node.id,
                attempt=attempt,
                max_retries=max_retries,
                will_retry=will,
                failure_class=outcome.failure_class,
                reason=f"{outcome.failure_reason}, {why}",
            )
        )
        if not will and more:
            self.w.emit(
                ev.StageRetryBlocked(
                    node_id=node.id,
                    attempt=attempt,
                    max=max_retries + 1,
                    status=outcome.status,
                    failure_reason=outcome.failure_reason,
                    failure_class=outcome.failure_class,
                    max_retry=max_retries,
                )
            )
        return will

    def _backoff(self, node_id: str, attempt: int) -> float:
        base = self.cfg.backoff_initial_s * self.cfg.backoff_factor ** (attempt - 1)
        seed = hashlib.sha256(f"{self.s.run_id}:{node_id}:{attempt}".encode()).digest()
        jitter = 0.5 + int.from_bytes(seed[:8], "big") / 2**64  # deterministic, in [0.5, 1.5)
        return float(min(self.cfg.backoff_max_s, base) * jitter)

    def _single(self, node: Node, prev: Outcome, prev_node: str) -> Outcome:
        """Start, conditional, fan-out and fan-in nodes: one attempt, no process."""
        adir = self.w.new_attempt(node.id)
        start = ev.StageAttemptStart(
            node_id=node.id, attempt=1, max=1, handler=node.kind, attempt_dir=adir.rel
        )
        self.w.emit(start, attempt=adir)
        t0 = time.monotonic()
        if node.kind == "conditional":
            outcome = replace(
                prev, notes=f"conditional pass-through of {prev_node}", cost_usd=None, details={}
            )
        elif node.kind == "fanout":
            outcome = self._fan_out(node, adir)
        elif node.kind == "fanin":
            outcome = self._fan_in(node)
        else:
            outcome = Outcome("success", notes=node.kind)
        self.w.attempt_status(adir, outcome.to_json())
        self.w.emit(
            ev.StageAttemptEnd(
                node_id=node.id,
                attempt=1,
                max=1,
                status=outcome.status,
                failure_reason=outcome.failure_reason,
                failure_class=outcome.failure_class,
                attempt_dir=adir.rel,
                duration_s=round(time.monotonic() - t0, 6),
            ),
            attempt=adir,
        )
        self.totals.attempts += 1
        return outcome

    # -- routing and the breaker -----------------------------------------------------------

    def _route(self, node: Node, outcome: Outcome) -> str | None:
        edges = self.g.outgoing(node.id)
        values = outcome.routing()
        conditional = [e for e in edges if e.condition is not None]
        matched = [
            e for e in conditional if e.condition is not None and e.condition.matches(values)
        ]
        label = _norm(outcome.preferred_label)
        by_label = [e for e in edges if label and _norm(e.label) == label]
        plain = [
            e
            for e in edges
            if e.condition is None
            and not (outcome.failed and self.g.nodes[e.dst].kind != "conditional")
        ]
        for method, pool in (
            ("condition_match", matched),
            ("preferred_label", by_label),
            ("only_edge" if len(plain) == 1 else "weight", plain),
        ):
            if pool:
                edge = min(pool, key=lambda e: (-e.weight, e.dst, e.index))
                return self._hop(edge, method, len(edges), len(matched))
        target = node.retry_target or ("" if self.branch else self.g.attrs.get("retry_target", ""))
        if outcome.failed and target:
            self.w.emit(
                ev.NoMatchingFailEdgeFallback(
                    node_id=node.id, retry_target=target, failure_reason=outcome.failure_reason
                )
            )
            return self._hop(Edge(node.id, target, 0, -1), "", len(edges), 0, "retry_target")
        return None

    def _hop(self, e: Edge, method: str, n: int, matched: int, source: str = "") -> str:
        source = source or (
            "conditional" if self.g.nodes[e.src].kind == "conditional" else "edge_selection"
        )
        self.w.emit(
            ev.EdgeSelected(
                from_node=e.src,
                to_node=e.dst,
                label=e.label,
                condition=e.condition.text if e.condition else "",
                hop_source=source,
                selection_method=method,
                candidates_evaluated=n,
                conditions_matched=matched,
            )
        )
        return e.dst

    def _breaker(self, node: Node, outcome: Outcome) -> str:
        """Count a working node's non-transient failure; the stop reason when it trips."""
        if (
            not outcome.failed
            or node.kind in ("start", "conditional", "fanout")
            or outcome.failure_class in _NOT_COUNTED
        ):
            return ""
        text = outcome.failure_signature or outcome.failure_reason
        sig = f"{node.id}|{outcome.failure_class}|{canonical_signature(text)}"
        count = self.ck.signatures[sig] = self.ck.signatures.get(sig, 0) + 1
        check = (
            ev.SubgraphDeterministicFailureCycleCheck
            if self.branch
            else ev.DeterministicFailureCycleCheck
        )
        self.w.emit(
            check(
                node_id=node.id,
                signature=sig,
                signature_count=count,
                signature_limit=self.limit,
                failure_class=outcome.failure_class,
                failure_reason=outcome.failure_reason,
                signature_version=SIGNATURE_VERSION,
            )
        )
        if count < self.limit:
            return ""
        trip = (
            ev.SubgraphDeterministicFailureCycleBreaker
            if self.branch
            else ev.DeterministicFailureCycleBreaker
        )
        self.w.emit(
            trip(
                node_id=node.id,
                signature=sig,
                signature_count=count,
                signature_limit=self.limit,
                signature_version=SIGNATURE_VERSION,
            )
        )
        return (
            f"{self._scope()} aborted: deterministic failure cycle detected — signature "
            f"{sig!r} repeated {plural(count, 'time')} (limit {self.limit}); last failure: "
            f"{outcome.failure_reason}"
        )

    # -- fan-out and fan-in ----------------------------------------------------------------

    def _fan_out(self, node: Node, adir: AttemptDir) -> Outcome:
        """Run every branch concurrently, terminalize each, join them all."""
        n = self.fan_passes[node.id] = self.fan_passes.get(node.id, 0) + 1
        base = f"parallel/{node.id}" + (f"/pass{n}" if n > 1 else "")
        edges, join = self.g.outgoing(node.id), self.g.joins[node.id]
        workers = min(len(edges), self.cfg.max_parallel)
        with concurrent.futures.ThreadPoolExecutor(workers, f"branch-{node.id}") as pool:
            futures = [
                pool.submit(self._branch, f"{base}/{i:02d}-{e.dst}", e.dst, join)
                for i, e in enumerate(edges, 1)
            ]
            while not all(f.done() for f in futures):  # short waits let signal handlers run
                concurrent.futures.wait(futures, timeout=0.1)
        branches = [f.result() for f in futures]
        self.joined[join] = branches
        for b in branches:
            self.totals.attempts += b.end.attempts
            self.totals.cost_usd += b.end.cost_usd
            self.totals.stage_s += b.end.stage_s
        for b in branches:
            if b.error is not None:  # the process ran out of fds: the run ends with the error
                raise b.error
        results = [
            {
                "branch_key": b.key,
                "start_node_id": b.key,
                "stop_node_id": join,
                "last_node_id": b.end.last_node,
                "status": b.end.status,
                "failure_reason": b.end.reason,
                "logs_root": str(self.w.path / b.rel),
                "worktree_dir": str(self.w.path / b.rel / "worktree"),
            }
            for b in branches
        ]
        self.w.write_json(f"{node.id}/parallel_results.json", results)
        self.w.write_json(f"{adir.rel}/parallel_results.json", results)
        ok = sum(b.end.status == "success" for b in branches)
        notes = f"{ok} of {len(branches)} branches succeeded"
        if ok:
            return Outcome("success" if ok == len(branches) else "partial_success", notes=notes)
        return Outcome("fail", _all_failed(branches), "deterministic", notes=notes)

    def _branch(self, rel: str, key: str, join: str) -> _Branch:
        path = self.w.path / rel
        root = str(path)
        mirror = _Mirror(self.w, key, root)
        bw = RunWriter(
            path,
            run_id=self.s.run_id,
            epoch=self.s.epoch,
            clock=self.s.clock,
            fsync=self.cfg.fsync,
            sink=mirror,
        )
        bw.create()
        self.w.emit(
            ev.BranchProgress(
                branch_key=key, branch_logs_root=root, branch_event="branch_subgraph_start"
            )
        )
        t0 = self.s.clock()
        engine: _Engine | None = None
        error: OSError | None = None
        try:
            shutil.copytree(self.worktree, path / "worktree", symlinks=True)
            engine = _Engine(self.s, bw, start=key, stop=join, worktree=path / "worktree")
            end = engine.run()
        except Exception as exc:  # a bug in one branch must not leave the others unjoined
            # What the branch did so far stays counted, as for the run (_execute).
            done = engine.totals if engine is not None else _End("fail", "", key)
            why = f"executor error in branch {key}: {type(exc).__name__}: {exc}"
            end = replace(done, status="fail", reason=why, last_node=key)
            self.w.emit(ev.EngineWarning(message=end.reason))
            # Out of file descriptors is this process's condition, not the branch's failure:
            # the other branches stop, and the fan-out raises it (the run's, as unbranched).
            error = out_of_fds(exc)
            if error is not None:
                self.s.token.cancel(f"canceled: branch {key} ran out of file descriptors")
        bw.write_final(
            end.status,
            end.reason,
            branch_key=key,
            last_node=end.last_node,
            wall_s=round(self.s.clock() - t0, 6),
            cost_usd=round(end.cost_usd, 8),
            attempts=end.attempts,
            stage_s=round(end.stage_s, 6),
        )
        self.w.emit(
            ev.BranchProgress(
                branch_key=key,
                branch_logs_root=root,
                branch_event="branch_subgraph_done",
                branch_status=end.status,
                branch_failure_reason=end.reason,
            )
        )
        return _Branch(key, rel, end, error)

    def _fan_in(self, node: Node) -> Outcome:
        branches = self.joined.pop(node.id, [])
        wins = sorted(b.key for b in branches if b.end.status == "success")
        if wins:
            return Outcome("success", notes=f"fan-in selected branch {wins[0]}")
        return Outcome("fail", _all_failed(branches), "deterministic")


class _Mirror:
    """Copies a branch's events into the parent stream (see :func:`executor._events.mirror`)."""

    def __init__(self, parent: RunWriter, key: str, root: str) -> None:
        self.parent, self.key, self.root = parent, key, root
        self.last_event, self.last_at = "branch_initialized", parent.now()
        self.last_t = time.monotonic()

    def __call__(self, e: ev.Event) -> None:
        idle = round((time.monotonic() - self.last_t) * 1000)
        copy = ev.mirror(
            e,
            branch_key=self.key,
            branch_logs_root=self.root,
            last_event=self.last_event,
            last_at=self.last_at,
            idle_ms=idle,
        )
        self.parent.emit(copy)
        if isinstance(copy, ev.BranchProgress):
            self.last_event, self.last_at, self.last_t = e.EVENT, e.ts, time.monotonic()


@dataclass(frozen=True, slots=True)
class _Branch:
    key: str
    rel: str
    end: _End
    #: The branch's process ran out of file descriptors: raised again once joined.
    error: OSError | None = None


def _all_failed(branches: list[_Branch]) -> str:
    causes = "; ".join(f"{b.key}: {b.end.reason}" for b in branches)
    return f"all parallel branches failed: {causes}"


def _verdict(*, will: bool, more: bool, transient: bool, cls: str) -> str:
    """Why a failed attempt is (not) retried, as ``retry_decision.reason`` ends."""
    if will:
        return "attempts remaining"
    if not more:
        return "max retries exhausted"
    if not transient:
        return f"failure_class={cls} not retryable"
    return "the run's retry budget is spent"


def _norm(label: str) -> str:
    return " ".join(label.lower().split())


def missing_agent_command(agents: list[str]) -> str:
    """What a graph with agent nodes and no agent command is told, wherever it runs.

    One message for ``doctor run``, a worker's ticket and the library, naming what a person
    sets (``ExecutorConfig.agent_command`` is what those fill in).

    >>> missing_agent_command(["plan"])  # doctest: +ELLIPSIS
    "agent node plan needs an agent command to run: pass --agent-command 'CMD {prompt_file}' ..."
    """
    return (
        f"{noun(len(agents), 'agent node')} {', '.join(agents)} "
        f"{noun(len(agents), 'needs', 'need')} an agent command to run: pass "
        "--agent-command 'CMD {prompt_file}' or set RUNDOCTOR_AGENT_COMMAND"
    )


def run_pipeline(
    graph_path: Path,
    root: Path,
    config: ExecutorConfig,
    *,
    run_id: str | None = None,
    epoch: int = 0,
    clock: Clock = time.time,
    on_event: Callable[[ev.Event], None] | None = None,
    cancel: threading.Event | None = None,
) -> RunResult:
    """Run the pipeline at ``graph_path`` in a new directory ``root/<run_id>``; always terminal.

    The graph and the configuration are checked before anything is created
    (:class:`~executor.GraphError`, :class:`~executor.BudgetError`, :class:`~executor.UsageError`).
    ``epoch`` (the lease epoch) is stamped on every event; ``on_event`` sees every event of the
    run, branch activity included, right after it is written (from executor threads: keep it
    quick; if it raises, the run is canceled); setting ``cancel`` cancels the run. Called from
    the main thread, SIGTERM and SIGINT cancel the run too (the previous handlers come back
    afterwards). Cancellation stops the running stages' process groups (SIGTERM, grace,
    SIGKILL) and ends the run with ``final.json`` status ``canceled``.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "p.dot").write_text('digraph p { start [shape=Mdiamond]; exit [shape=Msquare];'
    ...     ' hi [shape=parallelogram, tool_command="echo hi"]; start -> hi -> exit }')
    >>> r = run_pipeline(d / "p.dot", d / "runs", ExecutorConfig(), run_id="r1")
    >>> (r.status, r.failure_reason, (r.path / "final.json").is_file())
    ('success', '', True)
    """
    config.validate()
    graph_path = Path(graph_path).resolve()
    graph = load_graph(graph_path)
    agents = sorted(n.id for n in graph.nodes.values() if n.kind == "agent")
    if agents and not config.agent_command:
        raise UsageError(missing_agent_command(agents))
    run_id = run_id or new_run_id(clock)
    if run_id in (".", "..") or any(c in run_id for c in "/\\\x00"):
        raise UsageError(f"run id {run_id!r} must be a plain directory name")
    path = Path(root).resolve() / run_id
    token = _Token(cancel)
    writer = RunWriter(
        path,
        run_id=run_id,
        epoch=epoch,
        clock=clock,
        fsync=config.fsync,
        sink=_guarded(on_event, token),
        base_logs_root=str(path),
    )
    with _signals(token):  # before the directory exists: no window without terminalization
        try:
            make_dirs(path.parent)
        except (FileExistsError, NotADirectoryError):  # the root, or a parent, is a file
            msg = (
                f"runs root {str(path.parent)!r} is not a directory; pass --root (or set "
                "RUNDOCTOR_ROOT to) a directory"
            )
            raise UsageError(msg) from None
        try:
            writer.create()
        except FileExistsError:
            msg = f"run directory {str(path)!r} already exists; pass a new run id"
            raise UsageError(msg) from None
        return _execute(graph, graph_path, writer, config, token)


def _execute(
    graph: Graph, graph_path: Path, w: RunWriter, config: ExecutorConfig, token: _Token
) -> RunResult:
    t0 = w.clock()
    shared = _Shared(graph, config, token, w.run_id, w.epoch, w.clock, config.retry_budget)
    engine: _Engine | None = None
    try:
        worktree = _open_run(w, graph, graph_path, config)
        engine = _Engine(shared, w, start=graph.start, stop="", worktree=worktree)
        end = engine.run()
    except BaseException as exc:
        # The attempts, costs and stage time so far stay counted (final.json said 0 attempts
        # and $0 of a run whose disk filled after stages had run and cost money).
        done = engine.totals if engine is not None else _End("fail", "", "")
        why = f"executor error: {type(exc).__name__}: {exc}"
        _terminalize(w, replace(done, status="fail", reason=why, last_node=""), t0)
        raise
    return _terminalize(w, end, t0)


def _open_run(w: RunWriter, graph: Graph, graph_path: Path, config: ExecutorConfig) -> Path:
    """The run's own documents, the lock, the worktree and ``run_started``."""
    worktree = w.path / "worktree"
    worktree.mkdir()
    host, pid = socket.gethostname(), os.getpid()
    manifest = {
        "layout": "rundoctor-native/1",
        "run_id": w.run_id,
        "graph_name": graph.name,
        "goal": graph.attrs.get("goal", ""),
        "started_at": w.now(),
        "logs_root": str(w.path),
        "worktree": str(worktree),
        "graph_dot": str(w.path / "graph.dot"),
        "graph_path": str(graph_path),
        "base_sha": "",
        "run_branch": "",
        "repo_path": "",
        "epoch": w.epoch,
        "pid": pid,
        "host": host,
    }
    w.write_json("manifest.json", manifest)
    policy = {"stage_timeout_ms": round(config.stage_timeout_s * 1000), "stall_timeout_ms": 0}
    run_config = {"version": 1, "graph": str(graph_path), "runtime_policy": policy}
    w.write_json("run_config.json", {**run_config, "executor": config.to_json()})
    (w.path / "graph.dot").write_text(graph.source, encoding="utf-8")
    w.acquire_lock(pid)
    started = ev.RunStarted(
        graph_name=graph.name,
        graph_path=str(graph_path),
        logs_root=str(w.path),
        pid=pid,
        host=host,
    )
    w.emit(started)
    return worktree


def _terminalize(w: RunWriter, end: _End, t0: float) -> RunResult:
    wall, cost = round(w.clock() - t0, 6), round(end.cost_usd, 8)
    status, reason = w.terminalize(
        end.status,
        end.reason,
        last_node=end.last_node,
        wall_s=wall,
        cost_usd=cost,
        attempts=end.attempts,
        stage_s=round(end.stage_s, 6),
    )
    return RunResult(w.run_id, w.path, status, reason, wall, cost)


def _guarded(
    on_event: Callable[[ev.Event], None] | None, token: _Token
) -> Callable[[ev.Event], None]:
    def sink(e: ev.Event) -> None:
        if on_event is None:
            return
        try:
            on_event(e)
        except Exception as exc:  # the caller lost interest (e.g. its lease was fenced)
            token.cancel(f"canceled: the on_event callback raised {type(exc).__name__}: {exc}")

    return sink


@contextlib.contextmanager
def _signals(token: _Token) -> Iterator[None]:
    """SIGTERM/SIGINT cancel the run while it runs in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        token.cancel(f"canceled by signal {signal.Signals(signum).name}")

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
