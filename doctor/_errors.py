"""The doctor's exception tree.

Every error the library raises on purpose derives from :class:`DoctorError`; the CLI maps each
to one red line on stderr and a documented exit code (2 for usage and input errors)::

    DoctorError
     ├── UsageError            bad option values, unknown check names
     ├── RunNotFound           no run with that id under the roots ("did you mean" attached)
     ├── UnsafeRunId           an id that is absolute or holds ``..``
     ├── RootError             a root that does not exist or cannot be read
     ├── IngestError           a dependency (duckdb, polars, pyarrow) failed on our input
     │    └── CacheEntryGone   a scan cache entry removed under the command that read it
     └── OverBudget            a run that cannot be read within the resource budget

Dependency errors are wrapped at the boundary with ``raise ... from``.
"""

from __future__ import annotations

from collections.abc import Iterable

from rundoctor.errors import close_matches, did_you_mean

__all__ = [
    "CacheEntryGone",
    "DoctorError",
    "IngestError",
    "OverBudget",
    "RootError",
    "RunNotFound",
    "UnsafeRunId",
    "UsageError",
]


class DoctorError(Exception):
    """Base class of every error the doctor raises on purpose."""

    exit_code = 2


class UsageError(DoctorError):
    """An option has a value the doctor cannot use."""


class RootError(DoctorError):
    """A runs root is missing or unreadable."""


class UnsafeRunId(DoctorError):
    """A run id that could escape its root (absolute, ``..``, backslashes, NUL)."""


class RunNotFound(DoctorError):
    """No run directory with that id exists under any root."""

    def __init__(
        self,
        run_id: str,
        roots: Iterable[str],
        candidates: Iterable[str],
        *,
        reason: str | None = None,
        unsearched: int = 0,
    ) -> None:
        self.run_id = run_id
        self.roots = list(roots)
        self.suggestions = close_matches(run_id, candidates)
        if reason is not None:  # the name is there but is no run (a symlink): say so
            super().__init__(reason)
            return
        hint = did_you_mean(self.suggestions)
        where = ", ".join(self.roots) or "(no roots)"
        # Directories the search could not look into (doctor._discovery): the run may be there.
        and_where = (
            f"; {unsearched} director{'y was' if unsearched == 1 else 'ies were'} not looked "
            "into, and `doctor scan` names them"
            if unsearched
            else ", and `doctor scan` lists the runs there"
        )
        super().__init__(
            f"no run {run_id!r} under {where}{hint}; pass --root DIR or set RUNDOCTOR_ROOTS"
            + and_where
        )


class IngestError(DoctorError):
    """Reading artifacts failed inside a dependency in a way ingestion could not absorb."""


class CacheEntryGone(IngestError, ValueError):
    """A scan cache entry whose facts a result reads lazily was removed or replaced since the
    scan read it (a concurrent ``doctor cache prune`` or scan): the command says to scan
    again (exit 2). A ``ValueError`` too, as the damaged entries the scan reads around."""


class OverBudget(DoctorError):
    """A run that cannot be read within the per-run resource budget (:mod:`doctor._budget`)
    for a command that needs all of it, such as its postmortem: the message names the limit
    and how to raise it."""
