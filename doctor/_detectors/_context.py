"""What every detector receives, and the shape every detector has."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from doctor._model import Finding

if TYPE_CHECKING:  # what a detector runs on; importing the detectors needs none of it
    from doctor._config import DoctorConfig
    from doctor._documents import RunDocuments
    from doctor._facts import RunFacts
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
    _signatures: dict[str, str] = field(default_factory=dict, repr=False)
    _memo: dict[str, bool] = field(default_factory=dict, repr=False)

    def has_queue(self) -> bool:
        """Whether a queue was read (``tickets`` or ``ticket_events`` has a row), asked once.

        The queue detectors find nothing without one (``diagnose`` never reads a queue), so
        they return at once instead of planning their queries over empty tables.
        """
        known = self._memo.get("queue")
        if known is None:
            rows = self.tables.sql(
                "SELECT EXISTS (SELECT 1 FROM tickets) OR EXISTS (SELECT 1 FROM ticket_events)"
            )
            known = self._memo["queue"] = bool(rows[0][0])
        return known

    def has_failed_attempts(self) -> bool:
        """Whether any attempt ended ``fail`` or ``retry`` (any case), asked once.

        The detectors of failure reasons (lost, swallowed, repeating, fragmented, a missing
        status file) look only at such attempts: a run where every attempt succeeded (most
        runs) skips planning their queries.
        """
        known = self._memo.get("failed")
        if known is None:
            rows = self.tables.sql(
                "SELECT EXISTS (SELECT 1 FROM attempts "
                "WHERE end_seq IS NOT NULL AND lower(status) IN ('fail', 'retry'))"
            )
            known = self._memo["failed"] = bool(rows[0][0])
        return known

    def signature(self, reason: str | None) -> str:
        """:func:`doctor.canonical_signature` of ``reason``, computed once per context.

        Several detectors sign the same failure reasons, and a fleet has tens of thousands
        that differ only in numbers: memoized on :func:`rundoctor.signature.signature_key`.
        """
        # Imported on first use: its rules compile dozens of patterns, and a run without
        # failures never signs a reason.
        from rundoctor.signature import canonical_signature, signature_key

        key = signature_key(reason or "")
        sig = self._signatures.get(key)
        if sig is None:
            sig = self._signatures[key] = canonical_signature(key)
        return sig

    def documents(self, run_id: str) -> RunDocuments:
        return self.tables.documents[run_id]

    def restrict(self, prefix: str, keys: Iterable[tuple[str, str]]) -> None:
        """Temp views ``<prefix>_events`` and ``<prefix>_attempts`` over the given scopes.

        A detector that only concerns scopes with some document (a checkpoint, live.json)
        queries these instead of the whole fleet's events.
        """
        from doctor._ndjson import insert_columns

        pairs = sorted(set(keys))
        con = self.tables.con
        con.execute(f"CREATE OR REPLACE TEMP TABLE {prefix}_keys (run_id VARCHAR, scope VARCHAR)")
        if pairs:
            runs, scopes = [p[0] for p in pairs], [p[1] for p in pairs]
            insert_columns(
                con, f"{prefix}_keys", {"run_id": ("VARCHAR", runs), "scope": ("VARCHAR", scopes)}
            )
        for table in ("events", "attempts"):
            con.execute(
                f"CREATE OR REPLACE TEMP VIEW {prefix}_{table} AS SELECT t.* FROM {table} t "
                f"SEMI JOIN {prefix}_keys k ON k.run_id = t.run_id AND k.scope = t.scope"
            )


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
