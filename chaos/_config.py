"""A campaign's configuration, its seeded fault schedule, its bounds and its replay command.

One frozen object flows inward (:class:`CampaignConfig`); only the CLI reads options and the
environment. The executor under test runs with :data:`CHAOS_EXECUTOR`: the production state
machine with budgets short enough that a lease expires within seconds, so a one-minute
campaign sees many reclaims. The checkers' bounds follow from those budgets
(:meth:`CampaignConfig.bounds`).

>>> cfg = CampaignConfig(seed=7, duration_s=60, faults=("torn_write",), out=Path("/tmp/c"))
>>> cfg.replay_command()
'doctor chaos run --seed 7 --duration 1m --workers 4 --faults torn_write --out /tmp/c'
>>> [p.fault for p in plan_schedule(random.Random(7), 10, ("a", "b"), mean_gap_s=2)][:4]
['b', 'a', 'a', 'b']
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos._errors import UsageError
from chaos._faults import fault_names, select_faults
from chaos._history import Bounds, Planned
from executor import ExecutorConfig
from rundoctor import durations
from rundoctor.passwords import redact
from rundoctor.paths import expand_user
from rundoctor.terminal import shell_quote

__all__ = [
    "CHAOS_EXECUTOR",
    "MAX_SCHEDULED",
    "MAX_WORKERS",
    "CampaignConfig",
    "executor_from_json",
    "format_duration",
    "parse_duration",
    "plan_schedule",
]

#: The executor's budgets under chaos: heartbeat 0.5 s × 2 < self-fence 1.5 s < lease 2.5 s.
CHAOS_EXECUTOR = ExecutorConfig(
    heartbeat_interval_s=0.5,
    heartbeat_misses=2,
    self_fence_s=1.5,
    lease_ttl_s=2.5,
    reaper_interval_s=0.5,
    claim_grace_s=1.0,
    stage_grace_s=0.5,
    backoff_initial_s=0.1,
    backoff_max_s=1.0,
    quarantine_after=3,
    root_refusal_backoff_s=0.5,
)


def parse_duration(text: str) -> float:
    """Seconds from ``90``, ``60s``, ``20m``, ``1h30m`` or ``1d`` (:mod:`rundoctor.durations`).

    >>> parse_duration("60s"), parse_duration("1m30s"), parse_duration("90"), parse_duration("1d")
    (60.0, 90.0, 90.0, 86400.0)
    >>> parse_duration("soon")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    chaos._errors.UsageError: --duration: 'soon' is not a duration; write e.g. 90, 250ms, ...
    """
    try:
        seconds = durations.parse_duration(text)
    except durations.DurationError as exc:
        raise UsageError(f"--duration: {exc}") from None
    if seconds <= 0:
        raise UsageError(f"--duration {text!r} must be more than zero, e.g. 60s, 20m or 1h")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest text :func:`parse_duration` reads back as ``seconds``.

    >>> format_duration(60), format_duration(1200), format_duration(2.5)
    ('1m', '20m', '2.5s')
    """
    return durations.format_duration(seconds)


#: The most worker processes a campaign starts: each is a Python process of its own, and
#: ``--workers 99999`` forked until the machine gave out.
MAX_WORKERS = 64
#: The most faults a campaign schedules (one every ``mean_gap_s``, 3 s by default: about three
#: and a half days). The schedule is planned whole and recorded in the history; a 100-year
#: ``--duration`` planned a billion faults and took the machine's memory before the first.
MAX_SCHEDULED = 100_000


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignConfig:
    """One campaign: the seed, how long, how many workers, which database and faults.

    ``db=None`` puts a SQLite queue in the campaign directory; ``faults=()`` means all of them.
    """

    seed: int
    duration_s: float = 60.0
    workers: int = 4
    db: str | None = None
    faults: tuple[str, ...] = ()
    out: Path = Path("chaos-out")
    concurrency: int = 1
    mean_gap_s: float = 3.0
    drain_timeout_s: float = 120.0
    executor: ExecutorConfig = field(default=CHAOS_EXECUTOR)
    #: How to restart, stop and start the database under test (``{action}``): never the
    #: shared server of other people's tests. None skips the database faults on PostgreSQL.
    db_control: str | None = None
    #: Mount a tmpfs of this many MiB as the runs root (root only), so that ``disk_full`` and
    #: ``read_only_root`` have a file system of their own; None: they are skipped.
    runs_tmpfs_mb: int | None = None

    def validate(self) -> CampaignConfig:
        """Return ``self`` when usable; raise :class:`chaos.UsageError` otherwise."""
        if self.seed < 0:  # a seed names the campaign (seed-N, chaos_<seed>_… schemas)
            raise UsageError(f"--seed must be 0 or more, got {self.seed}")
        if self.duration_s <= 0:
            raise UsageError(f"--duration must be positive, got {self.duration_s:g}s")
        if not self.mean_gap_s > 0:
            raise UsageError(f"mean_gap_s must be positive, got {self.mean_gap_s:g}")
        scheduled = self.duration_s / self.mean_gap_s
        if scheduled > MAX_SCHEDULED:
            raise UsageError(
                f"--duration {format_duration(self.duration_s)} would schedule {scheduled:,.0f} "
                f"faults, one every {format_duration(self.mean_gap_s)}; a campaign schedules at "
                f"most {MAX_SCHEDULED:,} (--duration "
                f"{format_duration(MAX_SCHEDULED * self.mean_gap_s)}): run several campaigns, "
                "each with its own seed"
            )
        if self.workers < 2:
            raise UsageError(
                f"--workers must be at least 2, got {self.workers}: one must stay awake to reap"
            )
        if self.workers > MAX_WORKERS:
            raise UsageError(
                f"--workers must be at most {MAX_WORKERS}, got {self.workers}: each worker is a "
                "process of its own (tens of MiB); run several campaigns for more"
            )
        if self.concurrency < 1:
            raise UsageError(f"concurrency must be at least 1, got {self.concurrency}")
        select_faults(self.faults)
        if self.db is not None:
            _check_db(self.db)
        if self.runs_tmpfs_mb is not None:
            _check_runs_tmpfs(self.runs_tmpfs_mb)
        if self.db_control is not None and "{action}" not in self.db_control:
            raise UsageError(
                f"--db-control {self.db_control!r} has no {{action}}; e.g. "
                "'pg_ctl -D /tmp/pg/data -m fast -w {action}' (restart, stop, start)"
            )
        self.executor.validate()
        return self

    @property
    def fault_list(self) -> tuple[str, ...]:
        """The selected faults' names, in catalog order."""
        return tuple(f.name for f in select_faults(self.faults))

    def replay_command(self) -> str:
        """The command that runs this campaign again (same seed, schedule and workload)."""
        args = ["doctor", "chaos", "run", "--seed", str(self.seed)]
        args += ["--duration", format_duration(self.duration_s), "--workers", str(self.workers)]
        if self.db is not None:
            args += ["--db", redact(self.db, drop=True)]
        if self.db_control is not None:
            args += ["--db-control", self.db_control]
        if self.runs_tmpfs_mb is not None:
            args += ["--runs-tmpfs", str(self.runs_tmpfs_mb)]
        if self.fault_list != fault_names():
            args += ["--faults", ",".join(self.fault_list)]
        args += ["--out", str(self.out)]
        # $'…' for a path with a byte that is not UTF-8: pasted, it names the same file (and
        # the command can be written to report.md, which shlex's '\udcff' could not).
        return " ".join(shell_quote(a) for a in args)

    def bounds(self) -> Bounds:
        """The checkers' bounds, from the executor's budgets (docs/chaos.md, "Bounds").

        A dead worker's lease is reclaimed at the next reaper pass; a frozen one's once the
        lease expired, at the next pass after that; a run's ``final.json`` is on disk before
        its lease ends, or within a stage grace of a self-fence.

        >>> b = CampaignConfig(seed=1).bounds()
        >>> (b.sigkill_p50_s, b.sigkill_p99_s, b.sigstop_p50_s, b.sigstop_p99_s, b.final_s)
        (1.0, 2.5, 3.5, 5.0, 2.5)
        """
        e = self.executor
        return Bounds(
            final_s=e.stage_grace_s + 2 * e.heartbeat_interval_s + 1.0,
            sigkill_p50_s=e.reaper_interval_s + 0.5,
            sigkill_p99_s=2 * e.reaper_interval_s + 1.5,
            sigstop_p50_s=e.lease_ttl_s + e.reaper_interval_s + 0.5,
            sigstop_p99_s=e.lease_ttl_s + 2 * e.reaper_interval_s + 1.5,
        )


def executor_from_json(data: dict[str, Any]) -> ExecutorConfig:
    """The executor configuration a campaign wrote for its workers (``executor.json``).

    >>> executor_from_json(CHAOS_EXECUTOR.to_json()) == CHAOS_EXECUTOR
    True
    """
    fields = dict(data)
    for name in ("agent_command", "shell"):
        fields[name] = tuple(fields.get(name) or ())
    fields["env"] = None  # workers inherit the harness's environment, which it never records
    return ExecutorConfig(**fields)


def _check_db(db: str) -> None:
    """Refuse a ``--db`` no campaign can use before anything starts: a URL of another kind
    (``mysql://``), or a path that is no file (a FIFO, a device). These were refused by the
    queue once the campaign had printed its start and written its workload, in a line that
    said "cannot open" twice. A file that exists is refused later, when the campaign
    directory is known (a previous campaign's queue there is replaced).

    >>> _check_db("mysql://db/q")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    chaos._errors.UsageError: --db 'mysql://db/q' is no queue URL: pass postgresql://… or ...
    >>> _check_db("/dev/null")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    chaos._errors.UsageError: --db '/dev/null' is not a regular file: ...
    """
    if db.startswith(("postgresql://", "postgres://")):
        _check_postgres_url(db)
        return
    if "://" in db and not db.startswith("sqlite://"):
        raise UsageError(
            f"--db {redact(db, drop=True)!r} is no queue URL: pass postgresql://… or a new "
            "SQLite file (a path or sqlite:///ABS/PATH)"
        )
    path = expand_user(Path(db.removeprefix("sqlite://")))
    if path.exists() and not path.is_file():
        what = "a directory" if path.is_dir() else "not a regular file"
        raise UsageError(f"--db {db!r} is {what}: pass a new SQLite file (a path or sqlite:///…)")


def _check_postgres_url(url: str) -> None:
    """Refuse a PostgreSQL ``--db`` that libpq cannot read (an unknown query parameter, a
    bad ``sslmode``) or that names a schema (``schema=``, even empty): a campaign makes its
    own. Both were refused only once the campaign directory was made, and the previous
    campaign in ``--out`` cleared.

    >>> _check_postgres_url("postgresql://u@h/db?foo=1")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    chaos._errors.UsageError: --db '...' is no PostgreSQL URL libpq reads: invalid URI query ...
    >>> _check_postgres_url("postgresql://u@h/db?schema=")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    chaos._errors.UsageError: --db '...?schema=': a campaign makes a schema of its own ...
    """
    from urllib.parse import parse_qsl

    shown = redact(url, drop=True)
    query = url.partition("?")[2]
    if any(k == "schema" for k, _ in parse_qsl(query, keep_blank_values=True)):
        raise UsageError(
            f"--db {shown!r}: a campaign makes a schema of its own (chaos_<seed>_…) and drops "
            "it after; pass the URL without schema=, or with options=-csearch_path%3DNAME to "
            "choose the schema yourself"
        )
    from psycopg import Error
    from psycopg.conninfo import conninfo_to_dict

    try:
        conninfo_to_dict(url)
    except Error as exc:
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UsageError(f"--db {shown!r} is no PostgreSQL URL libpq reads: {why}") from None


def _check_runs_tmpfs(size_mb: int) -> None:
    """Refuse a ``--runs-tmpfs`` below 1 MiB, or over half the memory this machine has
    available: a tmpfs lives in memory, and ``disk_full`` fills it to the last byte (a
    100-digit size was mounted, and its filling ate the machine's memory until the OOM killer
    chose, the campaign hung meanwhile)."""
    if size_mb < 1:
        raise UsageError(f"--runs-tmpfs must be at least 1 MiB, got {size_mb}")
    import psutil  # only for a campaign that mounts one

    most = psutil.virtual_memory().available // (2 << 20)
    if size_mb > most:
        shown = (
            str(size_mb)
            if size_mb < 10**12
            else f"{str(size_mb)[:12]}… ({len(str(size_mb))} digits)"
        )
        raise UsageError(
            f"--runs-tmpfs {shown} MiB is more than half the memory this machine has "
            f"available: a tmpfs lives in memory and disk_full fills it; pick at most {most:,} "
            "(16 is plenty for a campaign's runs)"
        )


def plan_schedule(
    rng: random.Random, duration_s: float, faults: tuple[str, ...], *, mean_gap_s: float = 3.0
) -> tuple[Planned, ...]:
    """The fault schedule: ``duration_s / mean_gap_s`` faults (at least one of each), one per
    equal slot at a seeded offset inside it, dealt from a shuffled deck (every fault comes up
    once before any comes up twice).

    >>> a = plan_schedule(random.Random(3), 30, ("x", "y", "z"))
    >>> a == plan_schedule(random.Random(3), 30, ("x", "y", "z"))
    True
    >>> (len(a), sorted({p.fault for p in a}), all(2.0 <= p.at < 30 for p in a))
    (10, ['x', 'y', 'z'], True)
    """
    if not faults:
        return ()
    warmup = min(2.0, duration_s * 0.1)
    count = max(len(faults), int(duration_s / mean_gap_s))
    slot = (duration_s - warmup) / count
    out: list[Planned] = []
    deck: list[str] = []
    for i in range(count):
        if not deck:
            deck = list(faults)
            rng.shuffle(deck)
        at = warmup + i * slot + rng.uniform(0.0, 0.8 * slot)
        out.append(Planned(round(at, 3), deck.pop(), rng.randrange(1 << 16)))
    return tuple(out)
