"""Where ``doctor watch`` sends its events: webhooks (HTTP POST of JSON) and a command.

A webhook receives the event object plus a ``text`` field, which Slack-compatible receivers
(Slack, Mattermost, Rocket.Chat, Discord's ``/slack`` endpoints) show as the message. A
failed POST (no connection, a timeout, a status outside 2xx) is tried again after
``backoff_s``, then twice that, and so on, ``retries`` times; then it is given up and reported
as a :class:`Delivery` with ``ok`` false: delivery never raises, so a dead receiver never
stops a watch. The command (``--exec``) gets the event object as JSON on stdin, one process
per event; a non-zero exit, a timeout or a missing program is a failed delivery too.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from doctor._errors import UsageError

__all__ = ["Delivery", "check_webhook", "post_webhook", "run_command", "safe_url", "slack_text"]


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of sending one event to one target (``target`` is safe to print)."""

    target: str
    ok: bool
    tries: int
    error: str | None = None


def check_webhook(url: str) -> str:
    """``url`` when it is an ``http://`` or ``https://`` URL with a host (and a numeric port,
    if any); else :class:`doctor.UsageError` naming it, before any pass runs.

    >>> check_webhook("https://hooks.slack.com/services/T0/B0/XYZ")
    'https://hooks.slack.com/services/T0/B0/XYZ'
    >>> check_webhook("http://[::1/")
    Traceback (most recent call last):
    ...
    doctor._errors.UsageError: --webhook 'http://…' is not a URL (Invalid IPv6 URL); pass e.g. https://hooks.slack.com/services/…
    """
    hint = "pass e.g. https://hooks.slack.com/services/…"
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"--webhook {url!r} is not an http:// or https:// URL; {hint}")
    shown = url.split("://", 1)[0] + "://…"  # the path may hold a token: never printed
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (a port that is not a number raises here, not mid-watch)
    except ValueError as exc:
        raise UsageError(f"--webhook {shown!r} is not a URL ({exc}); {hint}") from None
    if not parts.hostname:
        raise UsageError(f"--webhook {shown!r} names no host; {hint}")
    return url


def safe_url(url: str) -> str:
    """A webhook URL without what may be a secret (Slack's tokens live in the path).

    >>> safe_url("https://user:pw@hooks.slack.com/services/T0/B0/XYZ")
    'https://hooks.slack.com/…'
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…"


def slack_text(event: Mapping[str, Any]) -> str:
    """The one-line message a chat receiver shows for a watch event.

    >>> slack_text({"event": "alert", "severity": "error", "code": "idle_gap", "run_id": None,
    ...             "scope": "", "summary": "nothing ran for 2 h"})
    '[error] idle_gap in the fleet: nothing ran for 2 h'
    >>> slack_text({"event": "resolved", "severity": "warning", "code": "stale_heartbeat",
    ...             "run_id": "r1", "scope": "parallel/f/01-a", "summary": "…"})
    'resolved: stale_heartbeat in run r1 (parallel/f/01-a)'
    """
    if event.get("run_id") is not None:
        where = f"run {event['run_id']}"
    elif event.get("ticket_id") is not None:
        where = f"the queue, ticket {event['ticket_id']}"
    else:
        where = "the fleet"
    if event.get("scope"):
        where += f" ({event['scope']})"
    if event.get("event") == "resolved":
        return f"resolved: {event['code']} in {where}"
    return f"[{event['severity']}] {event['code']} in {where}: {event['summary']}"


def _one_line(text: str) -> str:
    return " ".join(text.split())[:200]


def post_webhook(
    url: str,
    event: Mapping[str, Any],
    *,
    retries: int = 3,
    backoff_s: float = 1.0,
    timeout_s: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Delivery:
    """POST ``event`` plus its ``text`` as JSON to ``url``, retrying with backoff.

    >>> post_webhook("http://127.0.0.1:9/", {"event": "alert", "severity": "error",
    ...     "code": "x", "run_id": None, "scope": "", "summary": "s"}, retries=1,
    ...     backoff_s=0, timeout_s=1).tries
    2
    """
    body = json.dumps({**event, "text": slack_text(event)}).encode()
    error = ""
    for attempt in range(retries + 1):
        if attempt:
            sleep(backoff_s * 2 ** (attempt - 1))
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                response.read()
            return Delivery(safe_url(url), True, attempt + 1)
        except urllib.error.HTTPError as exc:
            error = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            error = _one_line(str(reason))
    return Delivery(safe_url(url), False, retries + 1, error)


def run_command(
    argv: Sequence[str], event: Mapping[str, Any], *, timeout_s: float = 30.0
) -> Delivery:
    """Run ``argv`` with ``event`` as JSON on stdin (plus a newline).

    >>> run_command(["cat"], {"event": "alert"}).ok
    True
    >>> run_command(["false"], {"event": "alert"}).error
    'exit status 1'
    """
    target = argv[0] if argv else "(no command)"
    try:
        done = subprocess.run(
            list(argv),
            input=(json.dumps(dict(event)) + "\n").encode(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Delivery(target, False, 1, f"timed out after {timeout_s:g} s")
    except OSError as exc:
        return Delivery(target, False, 1, _one_line(exc.strerror or str(exc)))
    if done.returncode:
        return Delivery(target, False, 1, f"exit status {done.returncode}")
    return Delivery(target, True, 1)
