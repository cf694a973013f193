"""What every detector receives, and the shape every detector has."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from doctor._layout import is_top_scope
from doctor._model import Finding

if TYPE_CHECKING:  # what a detector runs on; importing the detectors needs none of it
    from doctor._config import DoctorConfig
    from doctor._documents import RunDocuments
    from doctor._facts import RunFacts
    from doctor._tables import Tables

__all__ = [
    "NEEDS",
    "QUEUE_CHECKS",
    "Context",
    "Detector",
    "Needs",
    "in_scope",
    "more",
    "needs",
    "scope_words",
]

# What the batch holds, asked of DuckDB once per context in one statement (not one per
# detector): whether an attempt failed, whether the tables that are usually empty have a row,
# and how many runs a scan's fleet phase sees through their activity only.
_PRESENCE_SQL = """
SELECT EXISTS (SELECT 1 FROM attempts
               WHERE end_seq IS NOT NULL AND lower(status) IN ('fail', 'retry')),
       EXISTS (SELECT 1 FROM torn), EXISTS (SELECT 1 FROM unreadable),
       EXISTS (SELECT 1 FROM tickets), EXISTS (SELECT 1 FROM ticket_events),
       (SELECT count(*) FROM cached_lives)
"""
_T = TypeVar("_T")

_PRESENCE = ("failed", "torn", "unreadable", "tickets", "ticket_events", "cached_lives")


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
    _memo: dict[str, int] = field(default_factory=dict, repr=False)
    #: False runs every detector and query whatever the batch holds (what the tests compare
    #: with: tests/doctor/test_detector_needs.py).
    skip_absent: bool = True
    #: The scopes each :meth:`restrict` prefix covers, and the interrupted visits found so far
    #: (over which scopes): a second detector asking of the same scopes is answered from these.
    _restricted: dict[str, frozenset[tuple[str, str]]] = field(default_factory=dict, repr=False)
    _cuts: list[tuple[frozenset[tuple[str, str]], dict[tuple[str, str], Any]]] = field(
        default_factory=list, repr=False
    )
    #: What :meth:`once` computed, by key.
    _once: dict[str, Any] = field(default_factory=dict, repr=False)
    #: The queue's time its rows were read at (a PostgreSQL server's clock), when the queue
    #: has a clock of its own and ``config.now`` is not pinned; None: ``config.now``.
    queue_at: float | None = None
    #: How far the queue's clock is ahead of this host's (server − host, measured with
    #: :attr:`queue_at`; 0 when the queue has no clock of its own or ``now`` is pinned): a
    #: run file's time plus this is in the queue's clock.
    queue_offset_s: float = 0.0

    @property
    def queue_now(self) -> float:
        """The "now" a queue's rows are judged at: the clock they were stamped in.

        The database server's time, read in the snapshot the rows come from, for a PostgreSQL
        queue (:attr:`queue_at`); else ``config.now`` (SQLite, one machine's clock; or a pinned
        ``now``, used as given). Runs' files keep ``config.now``: this host's clock.

        >>> from types import SimpleNamespace
        >>> cfg = SimpleNamespace(now=10.0)
        >>> Context(SimpleNamespace(), {}, cfg).queue_now  # type: ignore[arg-type]
        10.0
        >>> Context(SimpleNamespace(), {}, cfg, queue_at=70.0).queue_now  # type: ignore[arg-type]
        70.0
        """
        return self.config.now if self.queue_at is None else self.queue_at

    def once(self, key: str, compute: Callable[[Context], _T]) -> _T:
        """``compute(self)``, computed at the first call with ``key`` and reused after: what
        several detectors derive alike from the same tables (a scope's endings) is asked once.

        >>> from types import SimpleNamespace
        >>> ctx = Context(SimpleNamespace(), {}, SimpleNamespace())  # type: ignore[arg-type]
        >>> calls = []
        >>> [ctx.once("k", lambda c: calls.append(1) or len(calls)) for _ in range(3)]
        [1, 1, 1]
        """
        if key not in self._once:
            self._once[key] = compute(self)
        value: _T = self._once[key]
        return value

    def _presence(self, key: str) -> int:
        """One of :data:`_PRESENCE`, all asked at the first question (one statement)."""
        if not self._memo:
            row = self.tables.sql(_PRESENCE_SQL)[0]
            self._memo.update({k: int(v) for k, v in zip(_PRESENCE, row, strict=True)})
        return self._memo[key]

    def has_queue(self) -> bool:
        """Whether a queue was read (``tickets`` or ``ticket_events`` has a row).

        The queue detectors find nothing without one (``diagnose`` never reads a queue), so
        they return at once instead of planning their queries over empty tables.
        """
        return bool(self._presence("tickets") or self._presence("ticket_events"))

    def has_rows(self, table: str) -> bool:
        """Whether ``torn``, ``unreadable``, ``tickets``, ``ticket_events`` or
        ``cached_lives`` has a row (most batches have none)."""
        return bool(self._presence(table))

    def cached_runs(self) -> int:
        """How many runs a scan's fleet phase sees through their activity (``cached_lives``)."""
        return self._presence("cached_lives")

    def has_failed_attempts(self) -> bool:
        """Whether any attempt ended ``fail`` or ``retry`` (any case).

        The detectors of failure reasons (lost, swallowed, repeating, fragmented, a missing
        status file) look only at such attempts: a run where every attempt succeeded (most
        runs) skips planning their queries. No attempt ended at all: known without asking.
        """
        if not self.has_events("stage_attempt_start", "stage_attempt_end"):
            return False
        return bool(self._presence("failed"))

    def has_events(self, *kinds: str) -> bool:
        """Whether the batch has events of every kind given (any run, any scope): known from
        what :func:`doctor._facts.compute_facts` counted (true when it was not asked)."""
        present = self.tables.event_kinds
        return present is None or all(k in present for k in kinds)

    def has_any_event(self, kinds: Iterable[str]) -> bool:
        """Whether the batch has events of one of ``kinds`` (true when not counted)."""
        present = self.tables.event_kinds
        return present is None or any(k in present for k in kinds)

    def rows_of(self, kinds: Iterable[str], query: str, **params: Any) -> list[tuple[Any, ...]]:
        """Rows of ``query``, a query that keeps only events of ``kinds``: none, without
        asking DuckDB, when the batch has no event of these kinds."""
        if self.skip_absent and not self.has_any_event(kinds):
            return []
        return self.tables.sql(query, **params)

    def lacks(self, need: Needs) -> bool:
        """Whether the batch misses something ``need`` says the detector looks at: asked
        from what is known first (event kinds, documents), DuckDB last and once."""
        if not self.has_events(*need.events):
            return True
        if need.any_events and not self.has_any_event(need.any_events):
            return True
        if need.when is not None and not need.when(self):
            return True
        if need.failed_attempts and not self.has_failed_attempts():
            return True
        if need.queue and not self.has_queue():
            return True
        return not all(self.has_rows(t) for t in need.tables)

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
        pairs = sorted(set(keys))
        self._restricted[prefix] = frozenset(pairs)
        con = self.tables.con
        # Three statements: the keys made from their lists, then both views in one script.
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {prefix}_keys AS SELECT "
            "unnest($runs::VARCHAR[]) AS run_id, unnest($scopes::VARCHAR[]) AS scope",
            {"runs": [p[0] for p in pairs], "scopes": [p[1] for p in pairs]},
        )
        con.execute(
            ";".join(
                f"CREATE OR REPLACE TEMP VIEW {prefix}_{table} AS SELECT t.* FROM {table} t "
                f"SEMI JOIN {prefix}_keys k ON k.run_id = t.run_id AND k.scope = t.scope"
                for table in ("events", "attempts")
            )
        )

    def interrupted_visits(self, prefix: str) -> dict[tuple[str, str], tuple[str, str | None]]:
        """:func:`doctor._detectors._stops.interrupted_visits` of the scopes :meth:`restrict`
        gave ``prefix``. Each scope's answer depends on its own events alone, so scopes
        already answered for another prefix (``telemetry_divergence`` after
        ``checkpoint_drift``, most often the same scopes) are not asked again."""
        from doctor._detectors._stops import interrupted_visits

        keys = self._restricted[prefix]
        for known, cut in self._cuts:
            if keys <= known:
                return {k: v for k, v in cut.items() if k in keys}
        cut = interrupted_visits(self.tables, f"{prefix}_events")
        self._cuts.append((keys, cut))
        return cut


#: A detector: a plain function named after the finding code it reports.
Detector = Callable[[Context], list[Finding]]


@dataclass(frozen=True, slots=True)
class Needs:
    """What a detector looks at, declared with :func:`needs`: a batch without it gets no
    finding from the detector, which then returns at once instead of running its queries
    (each costs DuckDB 1-2 ms to parse and plan, whatever the data; a batch ran about 45).

    Every field must hold for the detector to run: ``events``, kinds all present in the batch
    (any run, any scope); ``any_events``, one of these kinds at least; ``failed_attempts``, an
    attempt ended ``fail`` or ``retry``; ``queue``, a queue was read; ``tables``, each of these
    tables has a row (:meth:`Context.has_rows`); ``when``, a test of what Python already holds
    (documents, facts). A need must be exact: the detector, run on a batch that lacks it, finds
    nothing (tests/doctor/test_detector_needs.py runs them all with the skip off to check).
    """

    events: tuple[str, ...] = ()
    any_events: tuple[str, ...] = ()
    failed_attempts: bool = False
    queue: bool = False
    tables: tuple[str, ...] = ()
    when: Callable[[Context], bool] | None = None


#: Each declared detector's :class:`Needs`, by name.
NEEDS: dict[str, Needs] = {}
#: The detectors that read the work queue (``needs(queue=True)``; a test holds the two equal),
#: by name, for the callers that must know them without importing every detector: a scan runs
#: them in its fleet phase, and a diagnosis of one run directory, which reads no queue, lists
#: them apart.
QUEUE_CHECKS: tuple[str, ...] = (
    "stale_lease",
    "no_progress_lease",
    "session_desync",
    "recovery_loop",
    "backlog_growth",
    "clock_skew",
)


def needs(
    *,
    events: Iterable[str] = (),
    any_events: Iterable[str] = (),
    failed_attempts: bool = False,
    queue: bool = False,
    tables: Iterable[str] = (),
    when: Callable[[Context], bool] | None = None,
) -> Callable[[Detector], Detector]:
    """Declare what a detector looks at (:class:`Needs`): it returns ``[]`` at once on a
    batch that lacks it, unless the context says not to skip (``skip_absent=False``)."""
    need = Needs(tuple(events), tuple(any_events), failed_attempts, queue, tuple(tables), when)

    def declare(detector: Detector) -> Detector:
        @functools.wraps(detector)
        def run(ctx: Context) -> list[Finding]:
            if ctx.skip_absent and ctx.lacks(need):
                return []
            return detector(ctx)

        NEEDS[detector.__name__] = need
        return run

    return declare


def more(items: list[str], limit: int = 5) -> str:
    """Join a list for a summary, ending long lists with "… and N more".

    >>> more(["a", "b", "c"], limit=2)
    'a, b … and 1 more'
    """
    if len(items) <= limit:
        return ", ".join(items)
    return ", ".join(items[:limit]) + f" … and {len(items) - limit} more"


def scope_words(scope: str) -> str:
    """How a summary names a scope: the top level, one of its loop restarts, or a branch.

    A ``restart-N`` directory carries the run's own loop on after a ``loop_restart`` (the
    facts count it in the top-level stream); it is no branch. A branch under it still is.

    >>> scope_words(""), scope_words("restart-1")
    ('the top level', "the top level's restart-1")
    >>> scope_words("restart-1/parallel/par/pass1/01-a")
    'branch restart-1/parallel/par/pass1/01-a'
    """
    if not scope:
        return "the top level"
    return f"the top level's {scope}" if is_top_scope(scope) else f"branch {scope}"


def in_scope(scope: str) -> str:
    """:func:`scope_words` after a node's name (" in …"), nothing for the top level's own.

    >>> "verify" + in_scope(""), "verify" + in_scope("restart-2")
    ('verify', "verify in the top level's restart-2")
    """
    return f" in {scope_words(scope)}" if scope else ""
