"""The chaos harness's exception tree: one base class, mapped at every dependency boundary.

::

    ChaosError                     anything the harness raises on purpose
    ├── UsageError                 bad input: an unknown fault name, a duration, an --out dir
    ├── CampaignError              the campaign itself could not run (workers, database, disk)
    ├── FaultSkipped               a fault could not fire (the queue's database did not
    │                              answer): the campaign records a skip with the reason
    └── FaultNotApplicable         a fault this campaign cannot apply at all (no runs root of
                                   its own, no --db-control): a skip saying what it needs

Invariant violations are not exceptions: they are data (:class:`chaos.Verdict`), and the CLI
turns them into exit status 1. Dependency errors (``OSError``, ``executor.ExecutorError``,
``psycopg.Error``, ``sqlite3.Error``) are mapped to :class:`CampaignError` ``from`` the
original where the harness meets them.

>>> issubclass(UsageError, ChaosError) and issubclass(CampaignError, ChaosError)
True
>>> str(FaultSkipped("the queue database is unavailable: connection refused"))
'the queue database is unavailable: connection refused'
>>> issubclass(FaultNotApplicable, FaultSkipped)
False
"""

from __future__ import annotations

__all__ = ["CampaignError", "ChaosError", "FaultNotApplicable", "FaultSkipped", "UsageError"]


class ChaosError(Exception):
    """Base class of every error the chaos harness raises deliberately."""


class UsageError(ChaosError):
    """Bad input from the caller; the CLI exits with status 2."""


class CampaignError(ChaosError):
    """The campaign could not run (a worker would not start, the database is unreachable)."""


class FaultSkipped(ChaosError):
    """A fault that could not fire for a reason that is no fault of its own (the queue's
    database was unavailable); the campaign records a ``skip`` with this message as its
    reason, never an error of the fault. Never leaves the campaign."""


class FaultNotApplicable(ChaosError):
    """A fault this campaign cannot apply at any moment (it needs a runs root of its own, or a
    command that controls the database): no target will turn up, so it is not tried again.
    The campaign records a ``skip`` (target ``not applicable``) with this message, which says
    what the fault needs. Never leaves the campaign."""
