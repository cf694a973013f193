"""The one duration grammar of every command and graph attribute, and its formatter.

A duration is a bare number of seconds (``90``, ``2.5``) or one or more ``<number><unit>``
parts, largest unit first, without spaces between parts::

    250ms   90s   15m   2h   1d   2w   1h30m   1d12h   1m30.5s

Units: ``ms`` milliseconds, ``s`` seconds, ``m`` minutes, ``h`` hours, ``d`` days (86,400 s),
``w`` weeks (7 d). Case does not matter and surrounding spaces are ignored. A unit may appear
once; a part may be fractional (``1.5h``). Months and years are not durations (their length
varies): write days. Negative values do not parse, nor does anything longer than
:data:`MAX_SECONDS` (a hundred years: past it a wait overflows the platform's clock, and no
option of the tools means it).

:func:`format_duration` writes the shortest text :func:`parse_duration` reads back exactly.
Callers decide what a zero means (``--since 0s`` is now; an ``--interval`` must be more).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

__all__ = ["MAX_SECONDS", "UNITS", "DurationError", "format_duration", "parse_duration"]

#: Seconds per unit, largest first (the order parts must appear in).
UNITS: dict[str, float] = {
    "w": 604800.0,
    "d": 86400.0,
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 0.001,
}

#: The longest duration that parses: 5,218 weeks (36,526 days, about a century). A longer
#: one is refused with one line, never handed to ``Event.wait`` or ``time_t``, which overflow.
MAX_SECONDS = 5218 * 604800.0

_NUMBER = r"\d+(?:\.\d+)?"
_PART = re.compile(rf"({_NUMBER})(ms|[wdhms])")
_WHOLE = re.compile(rf"(?:{_NUMBER}(?:ms|[wdhms]))+")
_EXAMPLES = "90, 250ms, 90s, 15m, 2h, 1d, 2w or 1h30m"


class DurationError(ValueError):
    """Text that is not a duration; the message names it and shows the grammar."""


def parse_duration(text: str) -> float:
    """Seconds in ``text`` (see the module docstring for the grammar).

    >>> parse_duration("1h30m"), parse_duration("1d"), parse_duration("250ms")
    (5400.0, 86400.0, 0.25)
    >>> parse_duration("90"), parse_duration("2w"), parse_duration(" 1M30S ")
    (90.0, 1209600.0, 90.0)
    >>> parse_duration("soon")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    rundoctor.durations.DurationError: 'soon' is not a duration; write e.g. 90, 250ms, 90s, ...
    """
    value = text.strip().lower()
    if re.fullmatch(_NUMBER, value):
        return _bounded(text, float(value))
    if not _WHOLE.fullmatch(value):
        raise DurationError(f"{text!r} is not a duration; write e.g. {_EXAMPLES}")
    parts = _PART.findall(value)
    order = list(UNITS)
    ranks = [order.index(unit) for _, unit in parts]
    if ranks != sorted(set(ranks)):
        raise DurationError(
            f"{text!r} is not a duration: write each unit once, largest first (e.g. 1h30m)"
        )
    return _bounded(text, math.fsum(float(number) * UNITS[unit] for number, unit in parts))


def _bounded(text: str, seconds: float) -> float:
    """``seconds``, unless it is past :data:`MAX_SECONDS` (or not finite).

    >>> _bounded("2w", 1209600.0)
    1209600.0
    >>> _bounded("1e9d", 1e9 * 86400)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    rundoctor.durations.DurationError: '1e9d' is too long a duration: at most 5218w (about ...
    """
    if not math.isfinite(seconds) or seconds > MAX_SECONDS:
        raise DurationError(
            f"{text!r} is too long a duration: at most 5218w (about a hundred years)"
        )
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest text :func:`parse_duration` reads back as ``seconds`` (whole units
    combined, the rest in seconds; never an exponent).

    >>> format_duration(60), format_duration(5400), format_duration(2.5), format_duration(0)
    ('1m', '1h30m', '2.5s', '0s')
    >>> format_duration(90061), format_duration(1209600), format_duration(0.25)
    ('1d1h1m1s', '2w', '250ms')
    """
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"cannot format {seconds!r} as a duration: expected a finite number >= 0")
    plain = f"{_decimal(seconds)}s"
    if seconds == 0:
        return "0s"
    if seconds < 1:
        ms = f"{_decimal(seconds * 1000)}ms"
        return ms if parse_duration(ms) == seconds and len(ms) <= len(plain) else plain
    whole, parts = int(seconds), []
    for unit in ("w", "d", "h", "m"):
        size = int(UNITS[unit])
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    rest = whole + (seconds - int(seconds))
    if rest:
        parts.append(f"{_decimal(rest)}s")
    text = "".join(parts)
    return text if parse_duration(text) == seconds else plain


def _decimal(value: float) -> str:
    """``value`` in positional notation (no exponent), as short as ``repr`` makes it."""
    text = format(Decimal(repr(value)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text
