"""What the checkers share: the :class:`Verdict` record and the history queries they ask.

* :func:`op_pairs` pairs each worker's ``invoke`` with its outcome (``ok``, ``fail``,
  ``info``), per ``(worker, f, ticket, epoch)``, in order;
* :func:`lease_ends` gives, for each lease ``(ticket, epoch)``, the ticket event that ended it;
* :func:`touched_by` gives, for each run directory, the faults that hit it;
* :func:`stall_windows` gives the spans during which the database was stalled.

>>> ops = [Op(1.0, "invoke", "heartbeat", "w1/0", "w1", "t-1", 3),
...        Op(1.2, "ok", "heartbeat", "w1/0", "w1", "t-1", 3)]
>>> [(i.time, o.time) for i, o in op_pairs(ops)]
[(1.0, 1.2)]
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from chaos._history import FaultRecord, History, Op, QueueEvent, Record

__all__ = [
    "LEASE_ENDS",
    "Checker",
    "Found",
    "Verdict",
    "lease_ends",
    "op_pairs",
    "stall_windows",
    "touched_by",
    "verdict",
]

#: Ticket events that end the lease named by their epoch.
LEASE_ENDS = frozenset({"completed", "failed", "released", "reclaimed", "canceled"})


@dataclass(frozen=True, slots=True)
class Verdict:
    """One invariant's verdict; ``witness`` proves the first of ``violations``; ``stats`` holds
    measurements (latency percentiles)."""

    name: str
    ok: bool
    summary: str
    witness: tuple[Record, ...] = ()
    violations: int = 0
    stats: dict[str, Any] = field(default_factory=dict)


Checker = Callable[[History], Verdict]
#: One violation: why, and the records that prove it.
Found = tuple[str, tuple[Record, ...]]


def verdict(
    name: str,
    found: list[Found],
    fine: str,
    total: str = "",
    stats: dict[str, Any] | None = None,
) -> Verdict:
    """The verdict of ``found`` violations: the first one's reason and witness, or ``fine``.

    >>> verdict("x", [], "all good").summary
    'all good'
    >>> v = verdict("x", [("a broke", ()), ("b broke", ())], "all good")
    >>> (v.ok, v.summary, v.violations)
    (False, 'a broke (1 more)', 2)
    """
    if not found:
        return Verdict(name, True, fine, stats=stats or {})
    why, witness = found[0]
    more = f" ({len(found) - 1} more)" if len(found) > 1 else ""
    return Verdict(name, False, f"{total}{why}{more}", witness, len(found), stats or {})


def op_pairs(ops: Iterable[Op]) -> list[tuple[Op, Op]]:
    """Each ``invoke`` with its outcome, matched in order per (worker, f, ticket, epoch)."""
    waiting: dict[tuple[Any, ...], list[Op]] = defaultdict(list)
    out: list[tuple[Op, Op]] = []
    for op in sorted(ops, key=lambda o: o.time):
        key = (op.worker, op.f, op.ticket, op.epoch)
        if op.type == "invoke":
            waiting[key].append(op)
        elif waiting[key]:
            out.append((waiting[key].pop(0), op))
        else:
            out.append((op, op))  # an outcome without its invoke: take it as its own start
    return out


def lease_ends(h: History) -> dict[tuple[str, int], QueueEvent]:
    """The first ticket event that ended each lease ``(ticket, epoch)``.

    >>> h = History((QueueEvent(5.0, 1, "t-1", "reclaimed", "w1/0", 2),))
    >>> lease_ends(h)[("t-1", 2)].event
    'reclaimed'
    """
    ends: dict[tuple[str, int], QueueEvent] = {}
    for e in h.of(QueueEvent):
        if e.event in LEASE_ENDS and e.epoch is not None:
            ends.setdefault((e.ticket, e.epoch), e)
    return ends


def touched_by(h: History) -> dict[str, tuple[FaultRecord, ...]]:
    """The injected faults that touched each run directory.

    >>> h = History((FaultRecord(1.0, "torn_write", "inject", "x", runs=("/r/1",)),))
    >>> [f.fault for f in touched_by(h)["/r/1"]]
    ['torn_write']
    """
    out: dict[str, list[FaultRecord]] = defaultdict(list)
    for f in h.of(FaultRecord):
        # A disk fault learns the runs it hit when it ends: its recover record names them.
        if f.phase in ("inject", "recover"):
            for run in f.runs:
                if f not in out[run]:
                    out[run].append(f)
    return {k: tuple(v) for k, v in out.items()}


def stall_windows(h: History) -> list[tuple[float, float]]:
    """When the database was held away: (inject time, recover time) of ``stall_database``,
    ``database_outage`` and ``restart_database`` (SQLite's lock storm, PostgreSQL's restart).
    A window without its ``recover`` stays open to the end of the history.

    >>> h = History((FaultRecord(1.0, "stall_database", "inject", "db"),
    ...              FaultRecord(4.5, "stall_database", "recover", "db")))
    >>> stall_windows(h)
    [(1.0, 4.5)]
    """
    out: list[tuple[float, float]] = []
    start: dict[str, float] = {}
    for f in h.of(FaultRecord):
        if f.fault not in ("stall_database", "database_outage", "restart_database"):
            continue
        if f.phase == "inject" and "error" not in f.detail:
            start[f.fault] = f.time
        elif f.phase == "recover" and f.fault in start:
            out.append((start.pop(f.fault), f.time))
    out += [(t, float("inf")) for t in start.values()]
    return sorted(out)
