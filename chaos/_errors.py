"""The chaos harness's exception tree: one base class, mapped at every dependency boundary.

::

    ChaosError                     anything the harness raises on purpose
    ├── UsageError                 bad input: an unknown fault name, a duration, an --out dir
    └── CampaignError              the campaign itself could not run (workers, database, disk)

Invariant violations are not exceptions: they are data (:class:`chaos.Verdict`), and the CLI
turns them into exit status 1. Dependency errors (``OSError``, ``executor.ExecutorError``,
``psycopg.Error``, ``sqlite3.Error``) are mapped to :class:`CampaignError` ``from`` the
original where the harness meets them.

>>> issubclass(UsageError, ChaosError) and issubclass(CampaignError, ChaosError)
True
"""

from __future__ import annotations

__all__ = ["CampaignError", "ChaosError", "UsageError"]


class ChaosError(Exception):
    """Base class of every error the chaos harness raises deliberately."""


class UsageError(ChaosError):
    """Bad input from the caller; the CLI exits with status 2."""


class CampaignError(ChaosError):
    """The campaign could not run (a worker would not start, the database is unreachable)."""
