"""Escaping of artifact text for Markdown and Mermaid.

Everything a report quotes from a run (node ids, scopes, failure reasons, summaries that quote
them, signatures) is wrapped in :class:`Text` by the context builders. The report environment
refuses to print a :class:`Text` directly: it must pass through one of the filters below, each
of which returns a plain ``str`` that is safe where it is used.

* :func:`md` — inline Markdown text, safe in prose, list items and table cells.
* :func:`code` — an inline code span (``table=True`` inside a table cell).
* :func:`mermaid` — a label or section name of a Mermaid ``gantt`` block.

Every filter first turns line breaks and other control characters into spaces, so a value can
never end a table row, a list item or a fenced block.
"""

from __future__ import annotations

import re

__all__ = ["Text", "code", "flatten", "md", "mermaid"]


class Text(str):
    """A string that came from artifacts; a template may print it only through a filter."""

    __slots__ = ()


# C0/C1 controls, DEL, and the Unicode line and paragraph separators.
_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
# Inline Markdown (CommonMark + GFM) that text could otherwise open: escapes, code spans,
# emphasis, links and images, raw HTML and autolinks, table cells, strikethrough, entities,
# headings, math.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&#$])")
# Block syntax that only matters at the start of a line or list item.
_LEADING_BLOCK = re.compile(r"^(?:([-+=])|(\d+)([.)]))")
_MERMAID_UNSAFE = re.compile(r"[^A-Za-z0-9 _.,/()+=×-]+")
# Words that start a statement in a gantt block rather than a task.
_MERMAID_KEYWORDS = frozenset(
    {
        "accdescr",
        "acctitle",
        "axisformat",
        "click",
        "dateformat",
        "excludes",
        "gantt",
        "inclusiveenddates",
        "includes",
        "section",
        "tickinterval",
        "title",
        "todaymarker",
        "topaxis",
        "weekday",
        "weekend",
    }
)


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


def mermaid(value: object, limit: int = 60) -> str:
    """A Mermaid gantt task label or section name: only characters the gantt grammar reads
    as plain text (no ``:``, ``#``, ``;``, ``%`` or backticks), never a statement keyword.

    >>> mermaid("impl_scaffold ×36")
    'impl_scaffold ×36'
    >>> mermaid("a: b; c # d")
    'a b c d'
    >>> mermaid("title x")
    'node title x'
    """
    text = " ".join(_MERMAID_UNSAFE.sub(" ", flatten(value)).split())
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    if not text:
        return "unnamed"
    if text.split(" ", 1)[0].lower() in _MERMAID_KEYWORDS:
        text = "node " + text
    return text
