"""The per-run resource budget, and what a run over it becomes.

Diagnosing one run may take DuckDB's ``memory_limit`` (``DoctorConfig.memory_limit``,
256 MiB) in memory and ``max_temp_directory_size`` (``DoctorConfig.spill_limit``, 4 GiB) of
spill in a private temporary directory. A run whose reading or diagnosis goes over either
(DuckDB's out-of-memory error), or makes Python run out of memory building its facts, is
that run's ``unreadable_artifact`` (kind ``run``), saying which limit and how to raise it:
``doctor diagnose`` exits by severity as for any finding, and ``doctor scan`` retries the
batch's runs one by one so that only the run over the budget gets the finding.

Both limits are set with ``RUNDOCTOR_MEMORY_LIMIT`` / ``RUNDOCTOR_SPILL_LIMIT`` or
``memory_limit`` / ``spill_limit`` in the config file's ``[doctor]`` (DuckDB's sizes:
``512MiB``, ``8GiB``, ``2GB``).

A command that needs the whole run, such as its postmortem (``doctor report``), cannot make
do with the finding: for a run over the budget it raises :class:`doctor.OverBudget` (one
line, exit 2) saying the same, never a crash.
"""

from __future__ import annotations

import re

from doctor._config import DoctorConfig
from doctor._errors import OverBudget, UsageError
from doctor._model import Diagnosis

__all__ = [
    "LIMITS",
    "MEMORY_ENV",
    "SPILL_ENV",
    "budget_detail",
    "check_budget",
    "check_size",
    "exceeded",
    "over_budget_error",
]

MEMORY_ENV = "RUNDOCTOR_MEMORY_LIMIT"
SPILL_ENV = "RUNDOCTOR_SPILL_LIMIT"

#: What :func:`exceeded` may say was reached.
LIMITS = ("memory_limit", "spill_limit", "python")
_PREFIX = "over the resource budget: "

_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([KMGT]i?B|B|bytes)", re.IGNORECASE)
#: Bytes per unit, as DuckDB reads them (KB = 1000, KiB = 1024).
_UNIT = {"b": 1, "bytes": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_UNIT |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
#: The most a limit may say: a pebibyte (1024TiB), past any machine, and inside what DuckDB can hold
#: (a larger value failed every run with "Memory value out of range", exit 70).
_MOST_BYTES = 2**50


def check_size(name: str, value: str) -> str:
    """``value`` when it is a size DuckDB reads, else a :class:`UsageError` naming ``name``.

    >>> check_size("spill_limit", "8GiB")
    '8GiB'
    >>> check_size("spill_limit", "lots")
    Traceback (most recent call last):
    ...
    doctor._errors.UsageError: spill_limit 'lots' is not a size; expected e.g. 512MiB, 8GiB or 2GB
    >>> check_size("memory_limit", "0B")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    doctor._errors.UsageError: memory_limit '0B' is out of range; give a size above 0B ...
    """
    match = _SIZE.fullmatch(value.strip())
    if not match:
        raise UsageError(f"{name} {value!r} is not a size; expected e.g. 512MiB, 8GiB or 2GB")
    size = float(match[1]) * _UNIT[match[2].lower()]
    if not 0 < size <= _MOST_BYTES:
        raise UsageError(
            f"{name} {value!r} is out of range; give a size above 0B and at most 1024TiB "
            "(a pebibyte), e.g. 512MiB or 8GiB"
        )
    return value.strip()


#: What DuckDB says when its memory limit refuses a buffer block, whatever it was doing.
_NO_BLOCK = "could not allocate block"


def exceeded(exc: BaseException) -> str | None:
    """Which limit ``exc`` (or an exception it was raised from) says was reached:
    ``spill_limit``, ``memory_limit``, ``python``, or None for any other failure."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, MemoryError):
            return "python"
        if type(cur).__name__ == "OutOfMemoryException" or (
            # DuckDB's, not imported here; under a very small limit the block is refused at
            # the commit, wrapped as "TransactionContext Error: Failed to commit: could not
            # allocate block of size …" (RUNDOCTOR_MEMORY_LIMIT=1MiB: exit 70 before)
            type(cur).__name__ == "TransactionException" and _NO_BLOCK in str(cur)
        ):
            return "spill_limit" if "max_temp_directory_size" in str(cur) else "memory_limit"
        cur = cur.__cause__ or cur.__context__
    return None


def budget_detail(limit: str, config: DoctorConfig, *, again: str = "diagnose") -> str:
    """What the run's finding says for ``limit`` (from :func:`exceeded`); ``again`` is the
    command to run once the limit is raised.

    >>> budget_detail("spill_limit", DoctorConfig())[:60]
    'over the resource budget: DuckDB would spill more than 4GiB '
    """
    if limit == "spill_limit":
        return (
            f"{_PREFIX}DuckDB would spill more than {config.spill_limit} to "
            f"its temporary directory for this run; raise it with {SPILL_ENV}=SIZE (or "
            f"spill_limit in the config file's [doctor]) and {again} it again"
        )
    if limit == "memory_limit":
        return (
            f"{_PREFIX}DuckDB needed more than {config.memory_limit} of "
            f"memory for this run; raise it with {MEMORY_ENV}=SIZE (or memory_limit in the "
            f"config file's [doctor]) and {again} it again"
        )
    return (
        f"{_PREFIX}Python ran out of memory building this run's facts; "
        f"{again} it on a machine with more memory"
    )


def over_budget_error(
    run_id: str, limit: str, config: DoctorConfig, *, again: str = "report"
) -> OverBudget:
    """The error of a command that needs the whole run ``run_id`` when it is over ``limit``.

    >>> str(over_budget_error("r1", "memory_limit", DoctorConfig()))[:70]
    "run 'r1' is over the resource budget: DuckDB needed more than 256MiB o"
    """
    return OverBudget(f"run {run_id!r} is {budget_detail(limit, config, again=again)}")


def check_budget(diagnosis: Diagnosis, config: DoctorConfig, *, again: str = "report") -> None:
    """Raise :class:`OverBudget` when ``diagnosis`` is that of a run over the budget (its
    ``unreadable_artifact`` of kind ``run`` from :func:`budget_detail`): a command that needs
    the whole run, such as its postmortem, cannot make do with that finding.

    >>> check_budget(Diagnosis("r1", "/r1", "kilroy", "succeeded", {}), DoctorConfig())
    """
    for f in diagnosis.findings:
        detail = f.evidence.get("detail")
        if f.code != "unreadable_artifact" or f.evidence.get("kind") != "run":
            continue
        if not isinstance(detail, str) or not detail.startswith(_PREFIX):
            continue
        for limit in LIMITS:
            if detail == budget_detail(limit, config):
                raise over_budget_error(diagnosis.run_id, limit, config, again=again)
        # Diagnosed under other limits than ``config``'s: its own words.
        raise OverBudget(f"run {diagnosis.run_id!r} is {detail}")
