"""What one watch pass sends to its webhooks and command: a bounded number of events.

Every event of a pass goes to stdout, one line each. Its webhooks and its ``--exec`` command
get at most :attr:`doctor.WatchConfig.max_sends` events one by one, and one
:data:`ALERTS_HELD` alert for the rest, so a first pass over a large fleet (8,933 alerts over
10,000 runs) is not 8,933 chat messages or 8,933 processes. Alerts go before resolutions, the
worse first, and are sent in the pass's order. A webhook that failed every try for one event
is not tried again in the same pass: a receiver that is down cost its retries and timeouts
once per event, so a pass of 20 events to a dead URL took 15 minutes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from doctor._model import Severity
from doctor._notify import Delivery, post_webhook, run_command, safe_url

if TYPE_CHECKING:
    from doctor._watch import WatchConfig, WatchEvent

__all__ = ["ALERTS_HELD", "held_back", "send_pass"]

#: The watch's own code (never a finding's) for the events of a pass not sent one by one.
ALERTS_HELD = "alerts_held"

#: The text of a delivery not tried: its target failed for an earlier event of the pass.
NOT_TRIED = "not tried: it failed for an earlier event of this pass"


def held_back(
    events: Sequence[WatchEvent], most: int
) -> tuple[list[WatchEvent], WatchEvent | None]:
    """The events a pass sends one by one (at most ``most``; 0: all), in the pass's order,
    and the :data:`ALERTS_HELD` alert that stands for the rest (None when none is held).

    >>> from doctor._watch import WatchEvent
    >>> def ev(kind, code, sev, run):
    ...     return WatchEvent(kind, run, "", code, sev, "s", "t", "t")
    >>> events = [ev("resolved", "idle_gap", "error", None),
    ...           ev("alert", "retry_loop", "warning", "a"),
    ...           ev("alert", "missing_final", "critical", "b"),
    ...           ev("alert", "retry_loop", "warning", "c")]
    >>> sent, held = held_back(events, 2)
    >>> [(e.event, e.run_id) for e in sent]
    [('alert', 'a'), ('alert', 'b')]
    >>> held.code, held.severity, held.summary  # doctest: +NORMALIZE_WHITESPACE
    ('alerts_held', 'warning', "1 more alert and 1 resolved this pass were not sent one by
    one (at most 2 a pass, --max-sends): retry_loop 1 · idle_gap 1 resolved; `doctor scan`
    lists the findings, and the watch's stdout has every event")
    >>> held_back(events, 0)[1] is None, held_back(events, 4)[1] is None
    (True, True)
    """
    if most <= 0 or len(events) <= most:
        return list(events), None
    order = sorted(
        range(len(events)),
        key=lambda i: (events[i].event != "alert", -_rank(events[i].severity), i),
    )
    chosen = set(order[:most])
    sent = [e for i, e in enumerate(events) if i in chosen]
    rest = [e for i, e in enumerate(events) if i not in chosen]
    alerts = [e for e in rest if e.event == "alert"]
    codes = Counter((e.code, e.event) for e in rest)
    by_code = " · ".join(
        f"{code} {n:,}" + ("" if event == "alert" else " resolved")
        for (code, event), n in sorted(codes.items(), key=lambda c: (c[0][1] != "alert", -c[1]))[:5]
    )
    if len(codes) > 5:
        by_code += f" … and {len(codes) - 5} more codes"
    worst = max(alerts, key=lambda e: _rank(e.severity), default=None)
    summary = (
        f"{len(alerts):,} more alert{'' if len(alerts) == 1 else 's'} and "
        f"{len(rest) - len(alerts):,} resolved this "
        f"pass were not sent one by one (at most {most:,} a pass, --max-sends): {by_code}; "
        "`doctor scan` lists the findings, and the watch's stdout has every event"
    )
    at = rest[0].at
    severity = worst.severity if worst is not None else Severity.INFO.label
    return sent, replace(
        rest[0], event="alert", run_id=None, scope="", code=ALERTS_HELD, severity=severity,
        summary=summary, first_seen=at, ticket_id=None,
    )  # fmt: skip


def _rank(label: str) -> int:
    for severity in Severity:
        if severity.label == label:
            return int(severity)
    return -1


def send_pass(events: Sequence[WatchEvent], wcfg: WatchConfig) -> list[Delivery]:
    """Send a pass's events (:func:`held_back`) to the webhooks and the command; the failed
    deliveries. A webhook that failed for one event gets no other event of the pass: each of
    those is a failed delivery of no try, :data:`NOT_TRIED`."""
    sent, held = held_back(events, wcfg.max_sends)
    if held is not None:
        sent.append(held)
    failed: list[Delivery] = []
    down: set[str] = set()
    for event in sent:
        payload = event.to_json()
        for url in wcfg.webhooks:
            if url in down:
                failed.append(Delivery(safe_url(url), False, 0, NOT_TRIED))
                continue
            done = post_webhook(
                url, payload, retries=wcfg.retries, backoff_s=wcfg.backoff_s,
                timeout_s=wcfg.timeout_s,
            )  # fmt: skip
            if not done.ok:
                down.add(url)
                failed.append(done)
        if wcfg.exec_argv:
            done = run_command(wcfg.exec_argv, payload)
            if not done.ok:
                failed.append(done)
    return failed
