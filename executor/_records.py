"""The queue's records: tickets, their events, leases, the sessions doing the work, and ids.

Plain frozen dataclasses and the status vocabulary, with no database code: the state machine
that creates and changes them is :class:`executor._queue.Queue`, which re-exports them all.

>>> me = SessionInfo("rd-w1", pid=4242, pgid=4242, proc_start_time=777, host="box")
>>> (me.session_name, me.pid)
('rd-w1', 4242)
"""

from __future__ import annotations

import dataclasses
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "LEASED_STATUSES",
    "PRESSING_ORDER",
    "STATUSES",
    "TERMINAL_STATUSES",
    "Lease",
    "SessionInfo",
    "Ticket",
    "TicketEvent",
    "new_ticket_id",
]

#: Epoch seconds; injected everywhere so tests are exact.

STATUSES = ("todo", "blocked", "claimed", "running", "done", "failed", "canceled", "quarantined")
#: A row in one of these is never modified again (enforced by code and by a trigger).
TERMINAL_STATUSES = frozenset({"done", "failed", "canceled", "quarantined"})
#: A worker holds a lease on the ticket; every write it makes is fenced by the epoch.
LEASED_STATUSES = frozenset({"claimed", "running"})
#: The order ``doctor tickets`` lists statuses in, most pressing first: work under way, then
#: what needs a person (quarantined, failed), then what waits, then what is settled.
PRESSING_ORDER = (
    "running",
    "claimed",
    "quarantined",
    "failed",
    "blocked",
    "todo",
    "canceled",
    "done",
)


@dataclass(frozen=True)
class SessionInfo:
    """The process session doing a ticket's work, recorded with the claim and with ``start``."""

    session_name: str
    pid: int
    pgid: int
    proc_start_time: int | None  # /proc/PID/stat field 22: tells a reused pid from the original
    host: str


@dataclass(frozen=True)
class Ticket:
    """One row of ``tickets``; fields in column order (see docs/queue.md for their meaning)."""

    id: str
    title: str
    graph_path: str
    status: str
    priority: int
    error_attempts: int
    crash_recoveries: int
    max_error_attempts: int
    lease_owner: str | None
    lease_epoch: int
    lease_expires_at: float | None
    last_heartbeat_at: float | None
    claimed_at: float | None
    session_name: str | None
    pid: int | None
    pgid: int | None
    proc_start_time: int | None
    host: str | None
    run_id: str | None
    run_path: str | None
    reason: str | None
    created_at: float
    updated_at: float
    finished_at: float | None

    @property
    def terminal(self) -> bool:
        """True once the ticket is done, failed, canceled or quarantined."""
        return self.status in TERMINAL_STATUSES

    @property
    def last_alive_at(self) -> float | None:
        """The last sign of life of the lease: the heartbeat, or the claim when none came yet.

        A NULL heartbeat must never read as "fresh forever" (incident 05).
        """
        return self.last_heartbeat_at if self.last_heartbeat_at is not None else self.claimed_at

    def to_json(self) -> dict[str, Any]:
        """Every column, JSON-ready.

        >>> from executor._queue import open_queue
        >>> t = open_queue(":memory:", clock=lambda: 5.0).enqueue("x", "/g.dot")
        >>> {k: t.to_json()[k] for k in ("status", "lease_epoch", "pid")}
        {'status': 'todo', 'lease_epoch': 0, 'pid': None}
        """
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TicketEvent:
    """One row of the append-only ``ticket_events``; ``detail`` is the decoded JSON object."""

    id: int
    ticket_id: str
    at: float
    event: str
    worker: str | None
    epoch: int | None
    detail: dict[str, Any]


@dataclass(frozen=True)
class Lease:
    """A worker's claim on a ticket; ``epoch`` fences every write the worker makes with it.

    ``claimed_mono`` is the claiming process's :func:`time.monotonic` when the claim was
    written (None for a lease rebuilt from a row): the worker times its start from it
    (``Queue.start(alive_since=…)``), a measure no step of the queue's wall clock moves."""

    ticket: Ticket
    epoch: int
    worker: str
    claimed_mono: float | None = field(default=None, compare=False)

    @property
    def ticket_id(self) -> str:
        """The leased ticket's id."""
        return self.ticket.id


# Crockford's base32 alphabet is in ASCII order, so ids sort like the numbers they encode.
_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_RANDOM_BITS = 18
_id_lock = threading.Lock()
_id_last = 0


def new_ticket_id(now: float) -> str:
    """``'t-'`` + 12 base32 chars: 42 bits of milliseconds, then 18 bits of randomness.

    Within one process the ids are strictly increasing even inside one millisecond (the
    random part counts up), so they sort by creation; across processes they sort by
    millisecond and the random bits make collisions vanishingly unlikely.

    >>> a, b = new_ticket_id(1700000000.0), new_ticket_id(1700000000.0)
    >>> a < b and len(a) == 14 and a.startswith("t-")
    True
    """
    global _id_last
    ms = int(now * 1000) & ((1 << 42) - 1)
    value = (ms << _RANDOM_BITS) | secrets.randbits(_RANDOM_BITS)
    with _id_lock:
        # Same (or an earlier, if the clock stepped back) millisecond: count up from the last.
        value = max(value, _id_last + 1)
        _id_last = value
    chars = [_ALPHABET[(value >> shift) & 31] for shift in range(55, -1, -5)]
    return "t-" + "".join(chars)
