"""Grouping failure texts in a batch: ``signature_groups`` and ``group_signatures``.

:func:`rundoctor.signature.canonical_signature` masks what any one text shows to vary (numbers,
addresses, paths, times); telling a variable *word* (a user name, a host) from a constant one
needs a batch. ``signature_groups`` reduces each text to its canonical signature, splits the
signatures into groups of one shape (token count and constant words), and within a group calls
a position variable by :class:`GroupingConfig`'s rules, writing it ``<*>``. Re-exported by
:mod:`rundoctor.signature`, the module users import; ``docs/signatures.md`` gives the figures.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["DEFAULT_GROUPING", "GroupingConfig", "group_signatures", "signature_groups"]

_WILD = "<*>"
_PLACEHOLDER = re.compile(r"<(?:n|str|time|date|addr|path|size|url|json|\*)>")
# Where a merged token may keep a common prefix or suffix: at punctuation, never mid-word.
_CUT_AFTER = frozenset("._-:/=([{@#,;")
_CUT_BEFORE = frozenset("._-:/=)]}@#,;<")
_IDENTIFIER = re.compile(r"[._/:@$#<]|[a-z][A-Z]")


@dataclass(frozen=True)
class GroupingConfig:
    """When ``signature_groups`` calls a position of a group variable. One configuration serves
    every input; the benchmark reports it leave-one-dataset-out (see ``docs/signatures.md``).

    A position whose tokens differ within a group is variable when all of them are masks, or
    when it holds at least ``min_distinct`` distinct words and they are many for the group
    (``min_share`` of its messages), look like identifiers, are mostly seen once
    (``rare_share`` of them occur once), or are many for the messages left beside the most
    common one (``tail_share``: ``root`` in most messages, a new name in the others). Names and
    ids rarely repeat; enum values (``started``, ``stopped``; ``user=root`` and ``user=guest``)
    do. A template keeps at least ``min_context_words`` constant words, and at least as many as
    it has variable positions holding words, so unrelated texts of one length never merge.

    >>> GroupingConfig().min_distinct
    3
    """

    min_distinct: int = 3
    min_share: float = 0.25
    rare_share: float = 0.5
    tail_share: float = 0.25
    min_context_words: int = 1


#: The configuration ``signature_groups`` uses unless told otherwise.
DEFAULT_GROUPING = GroupingConfig()


def _has_word(token: str) -> bool:
    return any(c.isalpha() for c in _PLACEHOLDER.sub("", token))


def _is_masked(token: str) -> bool:
    return _PLACEHOLDER.search(token) is not None and not _has_word(token)


def _is_identifier(token: str) -> bool:
    return _IDENTIFIER.search(token.strip(".,;:()[]{}'\"")) is not None


def _variable(seen: Counter[str], messages: int, config: GroupingConfig) -> bool:
    """Whether a position holding the tokens ``seen`` (token -> messages) varies."""
    distinct = len(seen)
    if distinct < 2:
        return False
    if all(map(_is_masked, seen)):
        return True
    if distinct < config.min_distinct:
        return False
    if distinct >= config.min_share * messages or all(map(_is_identifier, seen)):
        return True
    if config.rare_share <= 1:
        once = sum(1 for n in seen.values() if n == 1)
        if once >= config.rare_share * distinct:
            return True
    # Beside its most common token (a default such as ``root``), the position still holds
    # many distinct words for the messages left.
    rest = messages - max(seen.values())
    return config.tail_share <= 1 and distinct - 1 >= config.tail_share * rest


def _generalize(values: list[str]) -> str:
    """``<*>`` keeping the prefix and suffix that all ``values`` share up to punctuation."""
    lo, hi = values[0], values[-1]
    n = 0
    while n < min(len(lo), len(hi)) and lo[n] == hi[n]:
        n += 1
    while n and lo[n - 1] not in _CUT_AFTER:
        n -= 1
    room = min(len(v) for v in values) - n
    m = 0
    while m < room and all(v[-1 - m] == lo[-1 - m] for v in values):
        m += 1
    while m and lo[-m] not in _CUT_BEFORE:
        m -= 1
    return lo[:n] + _WILD + (lo[-m:] if m else "")


def _partition(
    members: list[tuple[str, ...]],
    weight: dict[tuple[str, ...], int],
    config: GroupingConfig,
    label: dict[tuple[str, ...], str],
) -> None:
    """Label ``members`` (token tuples of one length): split on the least varied position that
    is not variable until every varying position is variable, then one template for the rest."""
    stack = [members]
    while stack:
        group = stack.pop()
        if len(group) == 1:
            label[group[0]] = " ".join(group[0])
            continue
        messages = sum(weight[m] for m in group)
        columns: list[Counter[str]] = []
        for p in range(len(group[0])):
            column: Counter[str] = Counter()
            for m in group:
                column[m[p]] += weight[m]
            columns.append(column)
        varying = [p for p, column in enumerate(columns) if len(column) > 1]
        fixed = [p for p in varying if not _variable(columns[p], messages, config)]
        if not fixed:
            words = sum(1 for c in columns if len(c) == 1 and _has_word(next(iter(c))))
            open_words = sum(1 for p in varying if not all(map(_is_masked, columns[p])))
            if words >= max(config.min_context_words, open_words):
                template = " ".join(
                    _generalize(sorted(c)) if len(c) > 1 else next(iter(c)) for c in columns
                )
                for m in group:
                    label[m] = template
                continue
            fixed = varying
        split = min(fixed, key=lambda p: (len(columns[p]), p))
        parts: dict[str, list[tuple[str, ...]]] = {}
        for m in group:
            parts.setdefault(m[split], []).append(m)
        stack.extend(parts[token] for token in sorted(parts, reverse=True))


def signature_groups(texts: Sequence[str], config: GroupingConfig = DEFAULT_GROUPING) -> list[str]:
    """One group label per text, in order: texts of one failure class share a label.

    Texts are first reduced to canonical signatures, so texts sharing a signature always share
    a group. Signatures with the same number of tokens are then partitioned, position by
    position, the way Brain and IPLoM do: a position whose tokens differ is split on, least
    varied first, unless the batch shows it is variable (see :class:`GroupingConfig`); when
    only variable positions are left, the group is one template with ``<*>`` in them. So
    ``user=root`` and ``user=guest`` stay apart while a slot holding a new name in almost
    every message merges. Deterministic: same input, same labels, whatever the hash seed.

    >>> for label in signature_groups([
    ...     "Loading hive SOFTWARE, from disk",
    ...     "Loading hive SYSTEM, from disk",
    ...     "job 7 exited after 3s",
    ...     "Loading hive SAM, from disk",
    ... ]):
    ...     print(label)
    Loading hive <*>, from disk
    Loading hive <*>, from disk
    job <n> exited after <time>
    Loading hive <*>, from disk
    >>> signature_groups(["link up on eth0", "link down on eth1"])
    ['link up on <n>', 'link down on <n>']
    """
    from rundoctor.signature import canonical_signature  # it re-exports this module

    # Each distinct text is signed once: a fleet report passes every failed attempt's reason,
    # and a run's reasons repeat (10,000 runs: tens of thousands of texts, a few distinct).
    signed: dict[str, str] = {}
    sigs = []
    for text in texts:
        sig = signed.get(text)
        if sig is None:
            sig = signed[text] = canonical_signature(text)
        sigs.append(sig)
    return group_signatures(sigs, config)


def group_signatures(sigs: Sequence[str], config: GroupingConfig = DEFAULT_GROUPING) -> list[str]:
    """:func:`signature_groups` on texts already reduced by :func:`canonical_signature`.

    >>> group_signatures(["job <n> failed", "job <n> failed"])
    ['job <n> failed', 'job <n> failed']
    """
    weight: dict[tuple[str, ...], int] = {}
    tokens_of: dict[str, tuple[str, ...]] = {}
    for sig, n in Counter(sigs).items():
        tokens = tokens_of[sig] = tuple(sig.split(" "))
        weight[tokens] = n
    by_length: dict[int, list[tuple[str, ...]]] = {}
    for tokens in weight:
        by_length.setdefault(len(tokens), []).append(tokens)
    label: dict[tuple[str, ...], str] = {}
    for length in sorted(by_length):
        _partition(sorted(by_length[length]), weight, config, label)
    return [label[tokens_of[sig]] for sig in sigs]
