"""Escaping of artifact text for Markdown and Mermaid.

Everything a report quotes from a run (node ids, scopes, failure reasons, summaries that quote
them, signatures) is wrapped in :class:`Text` by the context builders. The report environment
refuses to print a :class:`Text` directly: it must pass through one of the filters below, each
of which returns a plain ``str`` that is safe where it is used.

* :func:`md` — inline Markdown text, safe in prose, list items and table cells;
* :func:`code` — an inline code span (``table=True`` inside a table cell);

  both from :mod:`rundoctor.markdown`, which the doctor's ``diagnose --markdown`` uses too;
* :func:`mermaid` — a label or section name of a Mermaid ``gantt`` block.

Every filter first turns line breaks and other control characters into spaces, so a value can
never end a table row, a list item or a fenced block.
"""

from __future__ import annotations

import re

from rundoctor.markdown import code, flatten, md

__all__ = ["Text", "code", "flatten", "md", "mermaid"]


class Text(str):
    """A string that came from artifacts; a template may print it only through a filter."""

    __slots__ = ()


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
