"""Markdown escaping of text that comes from artifacts, the one implementation.

A run's node ids, failure reasons and signatures are written by programs, not people: a ``|``
would end a table cell, a backtick open a code span, ``<script>`` reach a browser, a newline
end a list item. Every function here first turns line breaks and other control characters
into spaces (:func:`flatten`), so a value never leaves the line it is printed on.

* :func:`md` — inline text, safe in prose, list items and table cells;
* :func:`code` — an inline code span (``table=True`` inside a table cell).

Used by the doctor's ``diagnose --markdown`` and by the report templates' filters.
"""

from __future__ import annotations

import re

__all__ = ["REASON_SHOWN", "code", "flatten", "flatten_tail", "md"]

#: How much of a run's terminal reason a page or a terminal shows (``--json`` has it whole):
#: a run whose stop reason held 100 KB printed it whole, on one line, in every header.
REASON_SHOWN = 300

# C0/C1 controls, DEL, and the Unicode line and paragraph separators.
_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
# Inline Markdown (CommonMark + GFM) that text could otherwise open: escapes, code spans,
# emphasis, links and images, raw HTML and autolinks, table cells, strikethrough, entities,
# headings, math.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&#$])")
# Block syntax that only matters at the start of a line or list item.
_LEADING_BLOCK = re.compile(r"^(?:([-+=])|(\d+)([.)]))")


def flatten(value: object, limit: int | None = None) -> str:
    """One line of text: control characters and line breaks become single spaces, cut at
    ``limit`` characters with an ellipsis.

    >>> flatten("a\\r\\nb\\tc")
    'a b c'
    >>> flatten("abcdef", 4)
    'abc…'
    """
    text = _BREAKS.sub(" ", str(value)).strip()
    if limit is not None and len(text) > limit:
        text = text[: max(limit - 1, 0)].rstrip() + "…"
    return text


def flatten_tail(value: object, limit: int) -> str:
    """One line of text, as :func:`flatten`, cut at the front instead: the end of a stage's
    output says why it stopped, and a long line before it would otherwise be all that shows.

    >>> flatten_tail("W" * 50 + "\\nerror: undefined symbol", 17)
    '…undefined symbol'
    >>> flatten_tail("short", 20)
    'short'
    """
    text = _BREAKS.sub(" ", str(value)).strip()
    if len(text) > limit:
        text = "…" + text[len(text) - max(limit - 1, 0) :].lstrip(" …")
    return text


def md(value: object, limit: int | None = None) -> str:
    """Inline Markdown text that renders as itself and cannot open markup or end a table cell.

    >>> md("a | b `c` <script>")
    'a \\\\| b \\\\`c\\\\` \\\\<script\\\\>'
    >>> md("- not a list"), md("1. not a list")
    ('\\\\- not a list', '1\\\\. not a list')
    """
    text = _MD_SPECIAL.sub(r"\\\1", flatten(value, limit))
    return _LEADING_BLOCK.sub(lambda m: "\\" + m[1] if m[1] else m[2] + "\\" + m[3], text)


def code(value: object, limit: int | None = None, *, table: bool = False) -> str:
    """An inline code span holding ``value`` verbatim (on one line).

    The fence is one backtick longer than the longest backtick run inside; in a table cell
    (``table=True``) pipes are escaped, which GFM removes again before the span is read.

    >>> code("verify_scaffold")
    '`verify_scaffold`'
    >>> code("a `b` c")
    '``a `b` c``'
    >>> code("x|y", table=True)
    '`x\\\\|y`'
    """
    text = flatten(value, limit)
    if not text:
        return "` `"
    runs = [len(m) for m in re.findall(r"`+", text)]
    fence = "`" * (max(runs, default=0) + 1)
    if text.startswith("`") or text.endswith("`"):
        text = f" {text} "
    if table:
        text = text.replace("|", "\\|")
    return f"{fence}{text}{fence}"
