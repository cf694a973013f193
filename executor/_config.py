"""The executor's configuration: one frozen, typed object that flows inward.

Precedence is CLI flag > environment variable > config file (``[executor]``, see
:mod:`rundoctor.config`) > default; only the CLI reads the environment. Library code takes
an :class:`ExecutorConfig` and calls :meth:`~ExecutorConfig.validate` before it starts
anything, so an inconsistent budget is refused up front instead of surfacing hours later as a
lease that expires under a live worker.

The timing budgets of a worker must nest (all in seconds)::

    heartbeat_interval_s × heartbeat_misses  <  self_fence_s  <  lease_ttl_s

A worker heartbeats its lease every ``heartbeat_interval_s``; after ``heartbeat_misses``
missed heartbeats it still has time to notice and fence itself (stop its stages) before
``self_fence_s``, and it must have stopped before the reaper may hand the ticket to someone
else, which happens once the lease is ``lease_ttl_s`` old.
"""

from __future__ import annotations

import string
from dataclasses import asdict, dataclass
from typing import Any

from executor._errors import BudgetError, UsageError
from rundoctor.durations import MAX_SECONDS
from rundoctor.terminal import printable

__all__ = ["AGENT_PLACEHOLDERS", "MIN_LEASE_TTL_S", "ExecutorConfig"]

#: The shortest lease a worker may hold. It heartbeats the lease through the queue database
#: several times within it (``worker --lease-ttl``: every sixth of it) and must fence itself
#: before it runs out: below a second, one slow round trip or scheduling delay on a loaded
#: machine fences a healthy worker (``--lease-ttl 1ms`` fenced every ticket it claimed).
MIN_LEASE_TTL_S = 1.0

#: Placeholders an ``agent_command`` element may use (``str.format`` syntax).
AGENT_PLACEHOLDERS = frozenset(
    {"prompt_file", "node_id", "run_id", "worktree", "status_path", "attempt_dir"}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutorConfig:
    """Everything the runner and the worker need to know, typed and immutable.

    >>> cfg = ExecutorConfig(heartbeat_interval_s=5.0).validate()
    >>> (cfg.breaker_limit, cfg.heartbeat_interval_s * cfg.heartbeat_misses < cfg.self_fence_s)
    (3, True)
    """

    #: argv of the agent CLI for ``box`` nodes; elements may use :data:`AGENT_PLACEHOLDERS`,
    #: e.g. ``("python", "-m", "fixtures.fake_agent", "{prompt_file}")``.
    agent_command: tuple[str, ...] = ()
    #: How a tool node's ``tool_command`` is run: ``shell + (tool_command,)``.
    shell: tuple[str, ...] = ("bash", "-c")
    #: Stage heartbeats (and the worker's lease heartbeats) are this far apart.
    heartbeat_interval_s: float = 10.0
    #: ``k``: how many heartbeats may be missed before a worker must fence itself (k >= 2).
    heartbeat_misses: int = 3
    #: Timeout of a stage attempt whose node sets no ``timeout``.
    stage_timeout_s: float = 600.0
    #: After SIGTERM to a stage's process group, how long before SIGKILL.
    stage_grace_s: float = 5.0
    #: Deterministic failures of one (node, canonical signature) that stop the run.
    #: The graph attribute ``breaker_limit`` overrides it.
    breaker_limit: int = 3
    #: ``max_retries`` of nodes that set none (graph attribute ``default_max_retry`` wins).
    default_max_retries: int = 3
    #: Retries (of transient failures) the whole run may spend, branches included.
    retry_budget: int = 20
    backoff_initial_s: float = 0.2
    backoff_factor: float = 2.0
    backoff_max_s: float = 60.0
    #: A node entered more often than this stops the run (graph attribute ``max_node_visits``).
    max_node_visits: int = 50
    #: Branches of one fan-out that run at the same time.
    max_parallel: int = 4
    #: fsync JSON documents before renaming them into place (turn off only for benchmarks).
    fsync: bool = True
    #: How much of a failed stage's stderr its failure reason quotes.
    stderr_tail_chars: int = 600
    #: The stages' base environment; ``None`` inherits the executor process's environment.
    env: tuple[tuple[str, str], ...] | None = None
    # The worker's budgets (read by the worker and the reaper, checked here).
    lease_ttl_s: float = 60.0
    self_fence_s: float = 45.0
    #: How often each worker's reaper looks for dead owners and expired leases: one cheap
    #: query, so often enough that a SIGKILLed worker's ticket is claimed again within ~2 s.
    reaper_interval_s: float = 1.0
    claim_grace_s: float = 30.0
    quarantine_after: int = 3
    quarantine_window_s: float = 3600.0
    #: How long a worker rides out an unreachable or locked queue database (a restart, an
    #: outage, SQLite's ``database is locked``), retrying each queue call with backoff, before
    #: it gives up and exits non-zero (:class:`~executor.WorkerError`).
    database_outage_s: float = 300.0
    #: A runs root that refuses writes as a whole (ENOSPC, EROFS, EDQUOT while the run
    #: directory or its ``final.json`` is written) is not the ticket's fault: the worker
    #: releases the ticket back to ``todo`` with the reason, up to this many times per ticket
    #: (counted in the ticket's log), then fails it with the reason. 0 fails it at once.
    root_refusal_releases: int = 5
    #: After such a refusal the worker pauses claiming this long, doubling on each further
    #: refusal (up to 60 s, or this value if longer) until a run writes its ``final.json``.
    root_refusal_backoff_s: float = 5.0

    def _check_ranges(self) -> None:
        """Each budget within its range: seconds past ``MAX_SECONDS`` (``inf``, ``1e300``, as
        TOML writes them) would overflow a clock or never expire."""
        positive = {
            "heartbeat_interval_s": self.heartbeat_interval_s,
            "stage_timeout_s": self.stage_timeout_s,
            "lease_ttl_s": self.lease_ttl_s,
            "self_fence_s": self.self_fence_s,
            "reaper_interval_s": self.reaper_interval_s,
            "quarantine_window_s": self.quarantine_window_s,
            "database_outage_s": self.database_outage_s,
            "backoff_factor": self.backoff_factor,
        }
        for name, value in positive.items():
            if not value > 0:
                raise BudgetError(f"{name} = {value!r} must be > 0; pass a positive number")
            if name != "backoff_factor" and not value <= MAX_SECONDS:  # inf, 1e300: overflow
                raise BudgetError(
                    f"{name} = {value!r} s is too long: at most {MAX_SECONDS:.0f} s (5218w, "
                    "about a hundred years)"
                )
        non_negative = {
            "stage_grace_s": self.stage_grace_s,
            "claim_grace_s": self.claim_grace_s,
            "backoff_initial_s": self.backoff_initial_s,
            "backoff_max_s": self.backoff_max_s,
            "root_refusal_backoff_s": self.root_refusal_backoff_s,
        }
        for name, value in non_negative.items():
            if not value >= 0:
                raise BudgetError(f"{name} = {value!r} must be >= 0")
            if not value <= MAX_SECONDS:
                raise BudgetError(
                    f"{name} = {value!r} s is too long: at most {MAX_SECONDS:.0f} s (5218w, "
                    "about a hundred years)"
                )

    def validate(self) -> ExecutorConfig:
        """Return ``self`` when consistent; raise :class:`BudgetError` or :class:`UsageError`.

        >>> ExecutorConfig(heartbeat_interval_s=20.0).validate()  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        executor._errors.BudgetError: heartbeat_interval_s × heartbeat_misses = 60 s must be ...
        """
        self._check_ranges()
        if self.lease_ttl_s < MIN_LEASE_TTL_S:
            raise BudgetError(
                f"lease_ttl_s = {self.lease_ttl_s:g} s is shorter than the {MIN_LEASE_TTL_S:g} s "
                "a lease needs: the worker must heartbeat it through the queue database several "
                "times within it, or it fences every ticket it claims; use 1s or more (the "
                "default is 60s)"
            )
        if self.heartbeat_misses < 2:
            raise BudgetError(
                f"heartbeat_misses = {self.heartbeat_misses} must be >= 2: one late heartbeat "
                "must not fence a healthy worker"
            )
        window = self.heartbeat_interval_s * self.heartbeat_misses
        if not window < self.self_fence_s < self.lease_ttl_s:
            raise BudgetError(
                f"heartbeat_interval_s × heartbeat_misses = {window:g} s must be below "
                f"self_fence_s = {self.self_fence_s:g} s, which must be below lease_ttl_s = "
                f"{self.lease_ttl_s:g} s (the reaper's threshold); shorten the heartbeat "
                "interval or lengthen the lease"
            )
        counts = {
            "breaker_limit": (self.breaker_limit, 1),
            "default_max_retries": (self.default_max_retries, 0),
            "retry_budget": (self.retry_budget, 0),
            "max_node_visits": (self.max_node_visits, 1),
            "max_parallel": (self.max_parallel, 1),
            "quarantine_after": (self.quarantine_after, 1),
            "root_refusal_releases": (self.root_refusal_releases, 0),
            "stderr_tail_chars": (self.stderr_tail_chars, 80),
        }
        for name, (value, low) in counts.items():
            if value < low:
                raise UsageError(f"{name} = {value} must be >= {low}")
        if not self.shell:
            raise UsageError("shell must name a program, e.g. ('bash', '-c')")
        self._check_agent_command()
        return self

    def _check_agent_command(self) -> None:
        for part in self.agent_command:
            try:  # each run records its configuration as JSON text (run_config.json)
                part.encode("utf-8")
            except UnicodeEncodeError:
                raise UsageError(
                    f"agent_command element '{printable(part)}' is not UTF-8 text (a byte "
                    "such as \\xff is no character): each run records its agent command in "
                    "run_config.json, as text; pass a command whose words are UTF-8"
                ) from None
            try:
                names = {f for _, f, _, _ in string.Formatter().parse(part) if f is not None}
            except ValueError as exc:
                raise UsageError(f"agent_command element {part!r} is malformed: {exc}") from exc
            unknown = sorted(names - AGENT_PLACEHOLDERS)
            if unknown:
                raise UsageError(
                    f"agent_command element {part!r} uses unknown placeholder {{{unknown[0]}}}; "
                    f"expected one of {', '.join(sorted(AGENT_PLACEHOLDERS))}"
                )

    def to_json(self) -> dict[str, Any]:
        """The configuration as JSON (recorded in each run's ``run_config.json``).

        >>> ExecutorConfig().to_json()["breaker_limit"]
        3
        """
        out = asdict(self)
        # The environment may hold secrets: record its keys only.
        out["env"] = None if self.env is None else sorted(k for k, _ in self.env)
        return out
