"""``json.dumps(value, indent=2, default=str)``, byte for byte, about twice as fast.

The standard library encodes with C only without ``indent``; with it, every token goes
through a chain of Python generators, which was a third of a 1,000-run rescan's time
(17 MB of JSON). This encoder walks the value once, appending to one list, and leaves strings
and floats to the same C and ``repr`` functions the standard one uses.

A value may hold :class:`JSONText`: text this encoder wrote earlier (a scan's cached
findings), spliced as it is instead of being parsed and encoded again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from json.encoder import encode_basestring_ascii
from typing import Any

__all__ = ["Chunked", "JSONText", "dumps_indented", "scalar_text", "write_indented"]


def _float(value: float) -> str:
    if value != value:
        return "NaN"
    if value == float("inf"):
        return "Infinity"
    if value == float("-inf"):
        return "-Infinity"
    return float.__repr__(value)


class JSONText:
    """A value's text as :func:`dumps_indented` wrote it at nesting ``level``: spliced as it
    is where it is placed at that level (re-indented elsewhere).

    >>> inner = JSONText(dumps_indented({"b": [1]}, level=1), level=1)
    >>> dumps_indented({"a": inner}) == json.dumps({"a": {"b": [1]}}, indent=2)
    True
    >>> dumps_indented([[inner]]) == json.dumps([[{"b": [1]}]], indent=2)
    True

    A text may be given as the pieces it is made of (``parts``, at ``level``): they are
    written one by one where the text is placed at its level, never joined for it.

    >>> JSONText.of_parts(["[", "1", "]"], 0).text
    '[1]'
    """

    __slots__ = ("level", "parts")

    def __init__(self, text: str, level: int) -> None:
        self.parts: tuple[str, ...] = (text,)
        self.level = level

    @classmethod
    def of_parts(cls, parts: Sequence[str], level: int) -> JSONText:
        """The text ``"".join(parts)`` written at ``level``, kept as its ``parts``."""
        made = cls("", level)
        made.parts = tuple(parts)
        return made

    @property
    def text(self) -> str:
        parts = self.parts
        return parts[0] if len(parts) == 1 else "".join(parts)

    def at(self, level: int) -> str:
        """The text as written at ``level`` (it holds no raw newline but its own)."""
        if level == self.level:
            return self.text
        if level > self.level:
            return self.text.replace("\n", "\n" + "  " * (level - self.level))
        return self.text.replace("\n" + "  " * (self.level - level), "\n")


def dumps_indented(value: Any, level: int = 0) -> str:
    """``json.dumps(value, indent=2, default=str)``; with ``level``, as that value is written
    nested ``level`` deep (its inner lines indented ``level`` more steps).

    >>> data = {"a": [1, 2.5, None, True, {}], "b": {"c": "é"}, "d": []}
    >>> dumps_indented(data) == json.dumps(data, indent=2, default=str)
    True
    """
    out: list[str] = []
    write_indented(value, out.append, level)
    return "".join(out)


def write_indented(value: Any, write: Callable[[str], object], level: int = 0) -> None:
    """:func:`dumps_indented`'s text, given piece by piece to ``write``: a scan's JSON is
    megabytes, which a stream takes without one string of it all being built and copied.

    >>> pieces: list[str] = []
    >>> write_indented({"a": [1, "b"]}, pieces.append)
    >>> "".join(pieces) == dumps_indented({"a": [1, "b"]})
    True
    """
    append = write

    def encode(o: Any, level: int) -> None:
        if isinstance(o, str):
            append(encode_basestring_ascii(o))
        elif o is None:
            append("null")
        elif o is True:
            append("true")
        elif o is False:
            append("false")
        elif isinstance(o, int):
            append(int.__repr__(o))
        elif isinstance(o, float):
            append(_float(o))
        elif isinstance(o, dict):
            if not o:
                append("{}")
                return
            inner = "\n" + "  " * (level + 1)
            append("{")
            first = True
            for k, v in o.items():
                append(inner if first else "," + inner)
                first = False
                append(encode_basestring_ascii(_key(k)))
                append(": ")
                encode(v, level + 1)
            append("\n" + "  " * level + "}")
        elif isinstance(o, list | tuple):
            if not o:
                append("[]")
                return
            inner = "\n" + "  " * (level + 1)
            append("[")
            first = True
            for v in o:
                append(inner if first else "," + inner)
                first = False
                encode(v, level + 1)
            append("\n" + "  " * level + "]")
        elif isinstance(o, JSONText):
            if o.level == level:
                for part in o.parts:
                    append(part)
            else:
                append(o.at(level))
        else:
            encode(str(o), level)

    encode(value, level)


class Chunked:
    """A ``write`` given pieces gathered into writes of at least ``size`` characters (a
    piece that long goes out alone): ``sys.stdout`` may be unbuffered (``PYTHONUNBUFFERED``),
    one system call per write, and a scan's JSON is tens of thousands of pieces.

    >>> out: list[str] = []
    >>> chunked = Chunked(out.append, size=4)
    >>> for piece in ("a", "b", "cdef", "g"):
    ...     chunked(piece)
    >>> chunked.flush()
    >>> out
    ['ab', 'cdef', 'g']
    """

    __slots__ = ("_pending", "_size", "_total", "_write")

    def __init__(self, write: Callable[[str], object], size: int = 1 << 16) -> None:
        self._write = write
        self._size = size
        self._pending: list[str] = []
        self._total = 0

    def __call__(self, piece: str) -> None:
        if len(piece) >= self._size:
            self.flush()
            self._write(piece)
            return
        self._pending.append(piece)
        self._total += len(piece)
        if self._total >= self._size:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self._write("".join(self._pending))
            self._pending.clear()
            self._total = 0


def scalar_text(value: Any) -> str | None:
    """A JSON scalar's text as :func:`dumps_indented` writes it (None for anything else).

    >>> [scalar_text(v) for v in (None, True, 3, 2.5, float("nan"), "s", [])]
    ['null', 'true', '3', '2.5', 'NaN', None, None]
    """
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return _float(value)
    return None


def _key(k: Any) -> str:
    if isinstance(k, str):
        return k
    # As json.dumps: numbers, booleans and None become their JSON text.
    return json.dumps(k) if isinstance(k, int | float | bool) or k is None else str(k)
