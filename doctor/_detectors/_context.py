"""What every detector receives, and the shape every detector has."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from doctor._config import DoctorConfig
from doctor._documents import RunDocuments
from doctor._facts import RunFacts
from doctor._model import Finding
from doctor._tables import Tables

__all__ = ["Context", "Detector", "more"]


@dataclass(frozen=True, slots=True)
class Context:
    """The canonical tables of the runs under diagnosis, their facts, and the configuration.

    Detectors look at every run in ``tables`` at once (one run for ``diagnose``, many for
    ``scan``) and return findings carrying their ``run_id``.
    """

    tables: Tables
    facts: Mapping[str, RunFacts]
    config: DoctorConfig

    def documents(self, run_id: str) -> RunDocuments:
        return self.tables.documents[run_id]


#: A detector: a plain function named after the finding code it reports.
Detector = Callable[[Context], list[Finding]]


def more(items: list[str], limit: int = 5) -> str:
    """Join a list for a summary, ending long lists with "… and N more".

    >>> more(["a", "b", "c"], limit=2)
    'a, b … and 1 more'
    """
    if len(items) <= limit:
        return ", ".join(items)
    return ", ".join(items[:limit]) + f" … and {len(items) - limit} more"
