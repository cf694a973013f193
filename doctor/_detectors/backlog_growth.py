"""``backlog_growth``: tickets created faster than they are closed (incident 01).

Incident 01's generators created about 16 tickets a day while nothing closed any: the
backlog grew by the day and every watchdog reported that all was well.

Over the last ``config.window_days`` days before the queue's now (``Context.queue_now``):
``created_per_day`` is the number of tickets whose ``created_at`` falls in the window, divided
by ``window_days``; ``closed_per_day`` the number that reached a terminal status (``done``,
``failed``, ``canceled``, ``quarantined``) with ``finished_at`` in the window, divided the
same way. Fires when the backlog grows by at least :data:`MIN_NET_PER_DAY` ticket a day
(``created_per_day - closed_per_day``). ``error`` when nothing closed at all while open
tickets wait (no execution, incident 01); ``warning`` when closing merely lags.
"""

from __future__ import annotations

from doctor._detectors._context import Context, needs
from doctor._detectors._queue import OPEN, TERMINAL, iso_s
from doctor._model import Finding, Severity

__all__ = ["MIN_NET_PER_DAY", "backlog_growth"]

#: Net growth (tickets a day) below which a backlog is considered steady.
MIN_NET_PER_DAY = 1.0

_SQL = f"""
SELECT count(*) FILTER (WHERE created_at > $start AND created_at <= $now) AS created,
       count(*) FILTER (WHERE status IN {TERMINAL} AND finished_at > $start
                        AND finished_at <= $now) AS closed,
       count(*) FILTER (WHERE status = 'done' AND finished_at > $start
                        AND finished_at <= $now) AS done,
       count(*) FILTER (WHERE status IN {OPEN}) AS backlog,
       count(*) FILTER (WHERE status = 'todo') AS todo
FROM tickets
"""


@needs(queue=True)
def backlog_growth(ctx: Context) -> list[Finding]:
    """Tickets are created faster than they are closed over the last days."""
    days = ctx.config.window_days
    if days <= 0:
        return []
    now = ctx.queue_now
    start = now - days * 86_400.0
    ((created, closed, done, backlog, todo),) = ctx.tables.sql(_SQL, start=start, now=now)
    created_per_day = round(created / days, 3)
    closed_per_day = round(closed / days, 3)
    if created_per_day - closed_per_day < MIN_NET_PER_DAY:
        return []
    stalled = closed == 0 and backlog > 0
    return [
        Finding(
            code="backlog_growth",
            severity=Severity.ERROR if stalled else Severity.WARNING,
            summary=(
                f"over the last {days} days the queue got {created_per_day:g} tickets a day and "
                f"closed {closed_per_day:g}; {backlog} are open ({todo} todo)"
                + (
                    ": nothing executes them; start a worker (an executor, not another "
                    "generator) and alert when nothing closes"
                    if stalled
                    else ": add execution capacity or create fewer tickets"
                )
            ),
            scope="",
            evidence={
                "created_per_day": created_per_day,
                "closed_per_day": closed_per_day,
                "window_days": days,
                "created": int(created),
                "closed": int(closed),
                "done": int(done),
                "backlog": int(backlog),
                "todo": int(todo),
                "since": iso_s(start),
            },
        )
    ]
