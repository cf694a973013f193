"""Vocabulary shared by the queue detectors (``stale_lease`` … ``backlog_growth``).

The queue's tables are the executor's (``notes/executor-design.md``): times are epoch seconds.
Queue findings carry ``run_id`` null (a scan reports them with the fleet) and the ticket's
run, when it has one, as ``evidence["run_id"]``.
"""

from __future__ import annotations

from doctor._timestamps import iso

__all__ = [
    "LEASED",
    "OPEN",
    "PROGRESS_EVENTS",
    "TERMINAL",
    "iso_s",
    "same_host",
    "this_host",
    "ticket_label",
]

#: Statuses whose ticket holds a lease (a worker and, once started, a session).
LEASED = ("claimed", "running")
#: Terminal statuses: the row never changes again.
TERMINAL = ("done", "failed", "canceled", "quarantined")
#: Statuses of work not finished yet (``blocked`` waits on other tickets).
OPEN = ("todo", "blocked", "claimed", "running")
#: Ticket events that mean execution moved: work picked up, or an execution ended.
PROGRESS_EVENTS = ("claimed", "completed", "failed")


def iso_s(seconds: float | None) -> str | None:
    """Epoch seconds (the queue's unit) as RFC 3339 UTC, to the microsecond (a double holds
    no more: finer digits would be noise).

    >>> iso_s(1770741731.5)
    '2026-02-10T16:42:11.5Z'
    >>> iso_s(1757153097.0532386)
    '2025-09-06T10:04:57.053239Z'
    >>> iso_s(None) is None
    True

    A value no calendar holds (NaN, infinite, before year 1 or after 9999: a worker that wrote
    another unit, or a hand-edited row) is None, as an unknown time is:

    >>> iso_s(float("inf")), iso_s(1e300), iso_s(-1e13), iso_s(float("nan"))
    (None, None, None, None)
    """
    if seconds is None or not _MIN_S <= seconds <= _MAX_S:  # NaN fails every comparison
        return None
    return iso(round(seconds * 1e6) * 1000)


# The seconds of 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z: datetime's range.
_MIN_S, _MAX_S = -62_135_596_800.0, 253_402_300_799.0


def this_host() -> str:
    """The name this host records in the queue's ``host`` column."""
    import socket  # only queue detectors with a queue to judge ask: `diagnose` never does

    return socket.gethostname()


def same_host(recorded: str | None, here: str) -> bool:
    """Whether ``recorded`` names this host: equal names (case aside), or a short name equal
    to the other's first label (a worker may record ``box`` where this host says ``box.lan``).
    Two full names in different domains are two hosts: ``box.east`` is not ``box.west``, and
    taking it for this one would judge a remote worker's pid by this host's process table.

    >>> same_host("box.lan", "box"), same_host("box", "box.lan"), same_host("box", "box")
    (True, True, True)
    >>> same_host("other", "box"), same_host("box.east", "box.west"), same_host(None, "box")
    (False, False, False)
    """
    if not recorded:
        return False
    a, b = recorded.lower().rstrip("."), here.lower().rstrip(".")
    if a == b:
        return True
    if "." in a and "." in b:
        return False
    return a.split(".")[0] == b.split(".")[0]


def ticket_label(ticket_id: str, title: str | None) -> str:
    """How summaries name a ticket.

    >>> ticket_label("t-01", "Mobile App Spec V2")
    "ticket t-01 ('Mobile App Spec V2')"
    """
    return f"ticket {ticket_id} ({title!r})" if title else f"ticket {ticket_id}"
