"""``recovery_loop``: the same ticket reclaimed again and again (incident 02's 12+ recoveries).

Each ``reclaimed`` ticket event is one crash recovery: a reaper took the ticket back from a
dead or expired worker. ``recoveries`` is the largest number of ``reclaimed`` events of one
ticket inside any window of ``window_s`` (:data:`WINDOW_S`, one day); the finding fires at
:data:`MIN_RECOVERIES` (3, incident 02's "recovery loops (>3 attempts)" alert and its circuit
breaker of 3 attempts). A ticket that is still open (``todo``, ``blocked``, ``claimed``,
``running``) can loop on: ``error``. One that ended (quarantined by the executor's breaker,
or done, failed, canceled) looped but stopped: ``warning``.
"""

from __future__ import annotations

from doctor._detectors._context import Context, needs
from doctor._detectors._queue import OPEN, iso_s, ticket_label
from doctor._model import Finding, Severity

__all__ = ["MIN_RECOVERIES", "WINDOW_S", "recovery_loop"]

#: Recoveries of one ticket within :data:`WINDOW_S` that make a loop.
MIN_RECOVERIES = 3
#: The sliding window, in seconds.
WINDOW_S = 86_400.0

_SQL = """
WITH reclaims AS (
    SELECT ticket_id, "at" AS t,
           count(*) OVER (PARTITION BY ticket_id ORDER BY "at"
                          RANGE BETWEEN $window PRECEDING AND CURRENT ROW) AS in_window
    FROM ticket_events WHERE event = 'reclaimed' AND "at" IS NOT NULL
),
per_ticket AS (
    SELECT ticket_id, max(in_window) AS recoveries, count(*) AS total, min(t) AS first_at,
           max(t) AS last_at, arg_max(t, in_window) AS densest_end
    FROM reclaims GROUP BY ticket_id
)
SELECT p.ticket_id, p.recoveries, p.total, p.first_at, p.last_at, p.densest_end,
       t.title, t.status, t.crash_recoveries, t.run_id
FROM per_ticket p LEFT JOIN tickets t ON t.id = p.ticket_id
WHERE p.recoveries >= $min
ORDER BY p.recoveries DESC, p.ticket_id
"""


@needs(queue=True)
def recovery_loop(ctx: Context) -> list[Finding]:
    """The same ticket reclaimed from dead workers again and again within a day."""
    findings = []
    for (
        ticket_id,
        n,
        total,
        first,
        last,
        densest_end,
        title,
        status,
        crashes,
        run_id,
    ) in ctx.tables.sql(_SQL, window=WINDOW_S, min=MIN_RECOVERIES):
        still_open = status in OPEN
        findings.append(
            Finding(
                code="recovery_loop",
                severity=Severity.ERROR if still_open else Severity.WARNING,
                summary=(
                    f"{ticket_label(ticket_id, title)} was reclaimed from a dead worker {n} times "
                    f"within a day ({total} in all, last at {iso_s(last)})"
                    + (
                        f" and is {status} again, so the loop goes on"
                        if still_open
                        else f" before it ended {status}"
                        if status
                        else " (the ticket is no longer in the queue)"
                    )
                    + "; find what kills its sessions and quarantine it until then"
                ),
                scope="",
                evidence={
                    "ticket_id": ticket_id,
                    "recoveries": int(n),
                    "window_s": WINDOW_S,
                    "total_recoveries": int(total),
                    "crash_recoveries": crashes,
                    "first_at": iso_s(first),
                    "last_at": iso_s(last),
                    "densest_window_end": iso_s(densest_end),
                    "status": status,
                    "run_id": run_id,
                },
            )
        )
    return findings
