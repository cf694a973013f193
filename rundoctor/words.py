"""Counted nouns, written one way everywhere: "1 run", "3 runs", never "run(s)".

Used by every package's messages and summaries (the executor's run summary, the doctor's
findings, the reports).
"""

from __future__ import annotations

__all__ = ["every", "noun", "plural"]


def noun(n: float, word: str, many: str | None = None) -> str:
    """``word`` for one of it, else its plural (``many``, else ``word`` + s); see :func:`plural`.

    >>> noun(1, "column"), noun(3, "column"), noun(2, "branch", "branches")
    ('column', 'columns', 'branches')
    """
    return word if n == 1 else (many or word + "s")


def every(n: int, word: str, many: str | None = None) -> str:
    """All ``n`` of ``word``, as a summary's subject: "all 3 runs", but "the one run" (never
    "all 1 runs"); pair it with :func:`noun` for the verb (``noun(n, "has", "have")``).

    >>> every(3, "run"), every(1, "run"), every(1_200, "class", "classes")
    ('all 3 runs', 'the one run', 'all 1,200 classes')
    """
    return f"the one {word}" if n == 1 else f"all {n:,} {noun(n, word, many)}"


def plural(n: float, word: str, many: str | None = None, *, shown: str | None = None) -> str:
    """``n`` (or ``shown``, its formatted text) and ``word``, singular for one, else plural.

    The one way counted nouns are written in summaries, reports and command output, never
    "run(s)".

    >>> plural(1, "run"), plural(0, "run"), plural(2, "class", "classes")
    ('1 run', '0 runs', '2 classes')
    >>> plural(39166, "event", shown="39,166")
    '39,166 events'
    """
    return f"{n if shown is None else shown} {noun(n, word, many)}"
