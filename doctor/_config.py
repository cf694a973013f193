"""The doctor's configuration: one frozen object that flows inward.

Precedence is CLI flag > environment variable > config file (``[doctor]``, see
:mod:`rundoctor.config`) > default; only the CLI reads the environment (see
:func:`doctor._cli.config_from_env`). Library code takes this object.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from doctor._errors import UsageError
from rundoctor.clock import Clock
from rundoctor.durations import MAX_SECONDS
from rundoctor.paths import state_home

__all__ = ["DoctorConfig", "HostNow", "default_roots"]

#: The most DuckDB threads one connection may be given (``threads``), as a worker's
#: ``--concurrency``: DuckDB starts each one.
MAX_THREADS = 1024


class HostNow(float):
    """``DoctorConfig.now`` when nobody pinned it: this host's clock, read as the configuration
    was made. A float like any other, but it says "not pinned", so a PostgreSQL queue is judged
    at its server's clock instead (``doctor._queue_ingest``); a pinned ``now`` (any other
    float) is used as given, for the queue too.

    >>> DoctorConfig(now=5.0).now_pinned, DoctorConfig(clock=lambda: 7.0).now_pinned
    (True, False)
    >>> DoctorConfig(clock=lambda: 7.0).now
    7.0
    """

    __slots__ = ()


def default_roots() -> tuple[Path, ...]:
    """Kilroy's default runs directory, then the executor's.

    >>> [p.parts[-2:] for p in default_roots()]
    [('attractor', 'runs'), ('rundoctor', 'runs')]
    """
    base = state_home()
    return (base / "kilroy" / "attractor" / "runs", base / "rundoctor" / "runs")


@dataclass(frozen=True, slots=True)
class DoctorConfig:
    """Thresholds and switches for ingestion and the detectors.

    ``now`` is the clock (epoch seconds) every age is measured against; tests pin it. Left
    out (or NaN), it is read from ``clock``, this host's clock, and is then only the runs'
    "now": a PostgreSQL queue's rows are judged at the database server's time, read in the
    snapshot the doctor reads them from (docs/queue.md, "Time: one clock per queue"). A pinned
    ``now`` is used as given, for the runs and the queue alike.
    """

    roots: tuple[Path, ...] = ()
    #: Used when a run's ``run_config.json`` names no stall timeout (Kilroy's CLI default).
    stall_timeout_s: float = 600.0
    #: Failures of one canonical signature on one node that a breaker should stop at.
    breaker_limit: int = 3
    #: A back edge taken this many times is a retry loop.
    retry_loop_min: int = 3
    #: No progress for this long, while work was pending, is an idle gap.
    idle_gap_s: float = 2 * 3600.0
    #: A lease with no heartbeat for this long is stale.
    stale_lease_s: float = 300.0
    #: backlog_growth compares tickets created and closed over this many days.
    window_days: int = 7
    #: Fragmentation: at least this many failures, and unique reasons / signatures at least this.
    fragmentation_min_failures: int = 5
    fragmentation_ratio: float = 2.0
    checks: tuple[str, ...] = ()
    #: A work queue to read too (``doctor scan --db``): a SQLite path or a PostgreSQL URL.
    db: str | None = None
    threads: int | None = None
    cache_dir: Path | None = None
    #: DuckDB's memory for one connection (one run, or one scan batch): its ``memory_limit``.
    memory_limit: str = "256MiB"
    #: The most DuckDB may spill to its private temporary directory (``max_temp_directory_size``);
    #: a run over either limit is its ``unreadable_artifact`` (:mod:`doctor._budget`).
    spill_limit: str = "4GiB"
    #: This host's clock: what an unpinned ``now`` is read from, and what brackets the reading
    #: of a PostgreSQL queue's time (the doctor's offset to its server). Not a setting; a scan
    #: that diagnoses on several processes pickles it (a lambda serves one process only).
    clock: Clock = field(default=time.time, compare=False, repr=False)
    now: float = math.nan

    def __post_init__(self) -> None:
        if math.isnan(self.now):
            object.__setattr__(self, "now", HostNow(self.clock()))

    def validate(self) -> DoctorConfig:
        """``self`` when every threshold is one the detectors can use, else a
        :class:`UsageError` naming the setting (a config file's ``idle_gap_s = nan`` or
        ``1e300`` failed deep in a detector, exit 70; a negative one flagged every gap).

        >>> DoctorConfig(idle_gap_s=-5).validate()  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        doctor._errors.UsageError: idle_gap_s = -5 must be a number of seconds above 0 and ...
        """
        for name in ("stall_timeout_s", "idle_gap_s", "stale_lease_s"):
            value = getattr(self, name)
            if not 0 < value <= MAX_SECONDS:  # NaN too
                raise UsageError(
                    f"{name} = {value!r} must be a number of seconds above 0 and at most "
                    f"{MAX_SECONDS:.0f} (5218w)"
                )
        if not 0 < self.fragmentation_ratio < math.inf:
            raise UsageError(
                f"fragmentation_ratio = {self.fragmentation_ratio!r} must be a number above 0"
            )
        counts = ("breaker_limit", "retry_loop_min", "window_days", "fragmentation_min_failures")
        for name in counts + (("threads",) if self.threads is not None else ()):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} = {getattr(self, name)!r} must be 1 or more")
        # DuckDB starts every thread it is given: 100 million exhausted the host's threads
        # and ended the command with "can't start new thread", exit 70.
        if self.threads is not None and self.threads > MAX_THREADS:
            raise UsageError(f"threads = {self.threads!r} must be at most {MAX_THREADS:,}")
        return self

    @property
    def now_pinned(self) -> bool:
        """Whether ``now`` was given (a pinned clock, used as given) rather than read from
        ``clock``."""
        return not isinstance(self.now, HostNow)

    def with_now(self, now: float) -> DoctorConfig:
        """The same settings, pinned at ``now``."""
        return replace(self, now=now)

    def at_host_clock(self) -> DoctorConfig:
        """The same settings, ``now`` read again from ``clock`` (a watch's next pass)."""
        return replace(self, now=math.nan)
