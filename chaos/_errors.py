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
>>> did_you_mean(["sigkill_worker"])
" (did you mean 'sigkill_worker'?)"
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["CampaignError", "ChaosError", "UsageError", "closest", "did_you_mean"]


class ChaosError(Exception):
    """Base class of every error the chaos harness raises deliberately."""


class UsageError(ChaosError):
    """Bad input from the caller; the CLI exits with status 2."""


class CampaignError(ChaosError):
    """The campaign could not run (a worker would not start, the database is unreachable)."""


def did_you_mean(suggestions: Iterable[str]) -> str:
    """Render close matches as a message suffix (empty when there are none).

    >>> did_you_mean([])
    ''
    """
    names = list(suggestions)
    if not names:
        return ""
    return " (did you mean " + " or ".join(repr(n) for n in names) + "?)"


def closest(name: str, known: Iterable[str]) -> list[str]:
    """The known names closest to ``name``, best first.

    >>> closest("sigkill_wroker", ["sigkill_worker", "torn_write"])
    ['sigkill_worker']
    """
    return difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
