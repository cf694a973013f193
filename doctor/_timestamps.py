"""Timestamps as the doctor reads and writes them: RFC 3339 text and epoch nanoseconds.

Kilroy writes RFC 3339 with up to nanoseconds (``ts`` of its events, final.json's
``timestamp``); DuckDB keeps them as ``TIMESTAMP_NS``, read back with ``epoch_ns``. The facts,
the detectors' evidence and the cache hold epoch nanoseconds; what a person reads is
:func:`iso` of them, trimmed like Kilroy's.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

__all__ = ["iso", "parse_iso"]


def iso(ns: int | None) -> str | None:
    """Nanoseconds since the epoch as RFC 3339 UTC, trailing zeros trimmed like Kilroy's.

    >>> iso(1770741731818881199)
    '2026-02-10T16:42:11.818881199Z'
    >>> iso(1770696025000000000)
    '2026-02-10T04:00:25Z'
    """
    if ns is None:
        return None
    secs, frac = divmod(int(ns), 1_000_000_000)
    base = datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    digits = f"{frac:09d}".rstrip("0")
    return f"{base}.{digits}Z" if digits else f"{base}Z"


#: RFC 3339 (section 5.6): ``T`` and ``Z`` in either case (or a space between date and time, as
#: its note allows), any number of fraction digits (kept to nanoseconds), a leap second.
_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\d)[Tt ](\d\d:\d\d):(\d\d)(?:\.(\d+))?([Zz]|[+-]\d\d:\d\d)")


def parse_iso(text: object) -> int | None:
    """RFC 3339 (up to nanoseconds, ``Z`` or an offset) to epoch nanoseconds; the inverse of
    :func:`iso`. ``None`` when it does not parse. A leap second (``23:59:60``) is the second
    after ``:59``, as POSIX time counts it, and as an event's ``ts`` is read
    (``doctor._ndjson``).

    >>> parse_iso("2026-02-10T16:42:11.818881199Z")
    1770741731818881199
    >>> parse_iso("2026-02-10T18:42:11.5+02:00") == parse_iso("2026-02-10T16:42:11.5Z")
    True
    >>> parse_iso("2026-02-10t16:42:11.5z") == parse_iso("2026-02-10T16:42:11.5Z")
    True
    >>> iso(parse_iso("2016-12-31T23:59:60.25Z"))
    '2017-01-01T00:00:00.25Z'
    >>> parse_iso("yesterday") is None
    True
    """
    m = _RFC3339.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        return None
    zone = "+00:00" if m[5] in ("Z", "z") else m[5]
    leap = m[3] == "60"
    try:
        secs = int(
            datetime.fromisoformat(f"{m[1]}T{m[2]}:{'59' if leap else m[3]}{zone}").timestamp()
        )
    except ValueError:
        return None
    return (secs + leap) * 1_000_000_000 + int((m[4] or "")[:9].ljust(9, "0"))


def _seconds(a: int | None, b: int | None) -> float | None:
    if a is None or b is None:
        return None
    return round((int(b) - int(a)) / 1e9, 3)
