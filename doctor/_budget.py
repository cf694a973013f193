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
"""

from __future__ import annotations

import re

from doctor._config import DoctorConfig
from doctor._errors import UsageError

__all__ = ["MEMORY_ENV", "SPILL_ENV", "budget_detail", "check_size", "exceeded"]

MEMORY_ENV = "RUNDOCTOR_MEMORY_LIMIT"
SPILL_ENV = "RUNDOCTOR_SPILL_LIMIT"

_SIZE = re.compile(r"[0-9]+(?:\.[0-9]+)?\s*(?:[KMGT]i?B|B|bytes)", re.IGNORECASE)


def check_size(name: str, value: str) -> str:
    """``value`` when it is a size DuckDB reads, else a :class:`UsageError` naming ``name``.

    >>> check_size("spill_limit", "8GiB")
    '8GiB'
    >>> check_size("spill_limit", "lots")
    Traceback (most recent call last):
    ...
    doctor._errors.UsageError: spill_limit 'lots' is not a size; expected e.g. 512MiB, 8GiB or 2GB
    """
    if not _SIZE.fullmatch(value.strip()):
        raise UsageError(f"{name} {value!r} is not a size; expected e.g. 512MiB, 8GiB or 2GB")
    return value.strip()


def exceeded(exc: BaseException) -> str | None:
    """Which limit ``exc`` (or an exception it was raised from) says was reached:
    ``spill_limit``, ``memory_limit``, ``python``, or None for any other failure."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, MemoryError):
            return "python"
        if type(cur).__name__ == "OutOfMemoryException":  # duckdb's, not imported here
            return "spill_limit" if "max_temp_directory_size" in str(cur) else "memory_limit"
        cur = cur.__cause__ or cur.__context__
    return None


def budget_detail(limit: str, config: DoctorConfig) -> str:
    """What the run's finding says for ``limit`` (from :func:`exceeded`).

    >>> budget_detail("spill_limit", DoctorConfig())[:60]
    'over the resource budget: DuckDB would spill more than 4GiB '
    """
    if limit == "spill_limit":
        return (
            f"over the resource budget: DuckDB would spill more than {config.spill_limit} to "
            f"its temporary directory for this run; raise it with {SPILL_ENV}=SIZE (or "
            "spill_limit in the config file's [doctor]) and diagnose it again"
        )
    if limit == "memory_limit":
        return (
            f"over the resource budget: DuckDB needed more than {config.memory_limit} of "
            f"memory for this run; raise it with {MEMORY_ENV}=SIZE (or memory_limit in the "
            "config file's [doctor]) and diagnose it again"
        )
    return (
        "over the resource budget: Python ran out of memory building this run's facts; "
        "diagnose it on a machine with more memory"
    )
