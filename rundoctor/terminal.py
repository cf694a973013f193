"""Text from artifacts on a terminal: control characters made visible, one line kept one line.

A run id is a directory's name and a ticket's title is whatever ``enqueue`` was given: either
may hold an escape sequence (``ESC[2J`` clears the screen, ``ESC]0;…`` retitles the window),
a line break that splits a table row in two, or a bidirectional override that shows text
reversed. :func:`printable` writes each such character as its Python escape (``\\x1b``,
``\\n``, ``\\u202e``), the way the doctor already writes a name's non-UTF-8 bytes (``\\xNN``);
:func:`shell_quote` quotes a word for a command line that can be pasted, with ``$'…'`` (bash,
zsh, ksh) when the word holds such a character. Rich's ``escape`` handles markup, not these.

>>> printable("run\\x1b[31m\\nred")
'run\\\\x1b[31m\\\\nred'
"""

from __future__ import annotations

import re
import shlex

__all__ = ["printable", "quoted", "shell_quote"]

# C0 and C1 controls, DEL, the Unicode line and paragraph separators, the bidirectional
# marks, embeddings, overrides and isolates, and lone surrogates (undecodable bytes).
_UNPRINTABLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(match: re.Match[str]) -> str:
    char = match[0]
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (os.fsdecode's surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: object) -> str:
    """``value`` as text a terminal shows as written, on one line.

    >>> printable("plain id"), printable("a\\u202eb"), printable("t\\tab")
    ('plain id', 'a\\\\u202eb', 't\\\\tab')
    """
    return _UNPRINTABLE.sub(_escaped, str(value))


def shell_quote(word: str) -> str:
    """``word`` quoted for a shell; ``$'…'`` when it holds a character :func:`printable`
    escapes, so that the pasted command names the same file.

    >>> shell_quote("r 1"), shell_quote("plain")
    ("'r 1'", 'plain')
    >>> shell_quote("a\\nb'c")
    "$'a\\\\nb\\\\'c'"
    """
    if not _UNPRINTABLE.search(word):
        return shlex.quote(word)
    body = word.replace("\\", "\\\\").replace("'", "\\'")
    return "$'" + printable(body) + "'"


def quoted(value: str, limit: int = 80) -> str:
    """``value`` as ``repr`` shows it, cut to ``limit`` characters with ``…``: an error line
    names what was typed (or read), whatever its length, without repeating 100 KB of it.

    >>> quoted("todoo"), quoted("x" * 100, 10)
    ("'todoo'", "'xxxxxxxx…")
    """
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
