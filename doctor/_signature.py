"""Failure signatures: one stable string per failure class, and batch grouping of failure texts.

``canonical_signature`` is version ``SIGNATURE_VERSION`` (1). Anything that changes which texts
share a signature must bump it, because circuit breakers persist counts keyed by signature.

What a signature masks, in the order the masks run:

1. Every ASCII digit run becomes ``0`` before anything else looks at the text. A signature
   therefore never depends on digit values, for every input: ``exit status 1`` and
   ``exit status 2`` collapse, and so do diagnostic codes such as ``E0433`` and ``E0599``. That
   is on purpose: a breaker is only useful if the invariant "changing numbers never changes the
   signature" holds without exceptions, and the words of a diagnostic (``failed to resolve``
   versus ``no method named``) still tell its classes apart.
2. Whitespace runs become one space; the text is trimmed.
3. A JSON object inside the text is re-rendered with its keys sorted and its scalar values masked
   (``<str>``, ``<n>``; ``true``, ``false`` and ``null`` stay), so key order never matters.
4. ``<url>``: ``scheme://...``. ``<addr>``: IPv4 with optional port, IPv6, MAC, and
   ``host:port`` where the host has a dot or a digit (``db.internal:5432``, ``node-3:80``).
5. ``<str>``: a quoted single token, in single, double or back quotes (``'x'``, ``"x"``). A
   quoted phrase with spaces keeps its words (each still masked), because there the words
   usually are the message: ``"GET /v1/runs HTTP/1.1"`` and ``"POST ..."`` differ.
6. ``<date>``: ``2024-01-02``, ``2017/7/1``, optionally with a time and zone. ``<time>``:
   durations and clock readings, which cannot be told apart once digits are masked
   (``132.4s``, ``10m0s``, ``534529ms``, ``30 seconds``, ``<1 sec``, ``12:04:05.123``, ``00:01``).
   ``<size>``: ``5.2 KB``, ``403 bytes``, ``18846 bytes (18.4 KB)``.
7. ``<path>``: absolute (``/tmp/.tmpAb12``), home (``~/x``) and Windows (``C:\\x``) paths, and
   relative ones (``src/lib.rs``, ``./a/b``) with an extension or two slashes, so ``I/O`` stays
   a word; each with an optional ``:line:col``. Temp dirs are paths.
8. ``<n>``: any other token that contains a digit, as a whole: numbers, hex (``0x7f``,
   ``003a90fc``), ids (``blk_-42``, ``attempt_1_0_m_3``), ULIDs, UUIDs, pids, versions. One label
   for all of them because the same position holds ``7`` in one run and ``0x1f`` in the next.
   A dotted name before the digits stays (``core.<n>``). A run of them (``1 2 3``, ``4, 5``) is
   one ``<n>``.
9. The result is cut to 512 characters, at a space.

Words without digits (enum values, host names without a port, user names) are kept: telling a
variable word from a constant one needs a batch, which is what ``signature_groups`` is for.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence

__all__ = ["EMPTY_SIGNATURE", "SIGNATURE_VERSION", "canonical_signature", "signature_groups"]

SIGNATURE_VERSION = 1

#: The signature of empty, blank and non-string input.
EMPTY_SIGNATURE = "<empty>"

# Only this much of the digit-normalised text is looked at, which bounds the work per message;
# the signature is cut far shorter anyway.
_MAX_SCAN = 8192
_MAX_OUTPUT = 512

_DIGITS = re.compile(r"[0-9]+")

# Markers for masks whose start is only known after a second pass over the reversed text. They
# are whitespace characters: ``str.split`` has removed every one of them from the input, and no
# ``\w`` class can swallow one.
_NUM = "\u2000"
_REL = "\u2001"

_DUR = (
    r"(?:\.0)?(?:ns|us|µs|ms|s|m|h)(?:0(?:\.0)?(?:ns|us|µs|ms|s|m|h))*(?!\w)"
    r"|(?:\.0)?\ (?:(?:milli|micro|nano)?seconds?|secs?|minutes?|mins?|hours?|days?|ms|us|ns)(?!\w)"
)
_PC = r"[\w.@%+~=-]"
_POS = r"(?::0(?::0)?)?"

# Every alternative starts with a literal character, so the regex engine jumps between candidate
# characters instead of trying every position: that is what makes the throughput target.
# Lookbehinds placed after the literal check the character before it.
_LEADING = re.compile(
    rf"""
    0(?<![\w.]0)(?=[-/:.\ a-zA-Zµ])(?:
        (?<![:/-]0)(?P<date>[-/]0[-/]0(?:[T_\ :]0[:.,]0(?:[:.,]0)*)?(?:Z|[+-]0(?::0)?)?)
            (?![\w.:/-])
        |(?<![:/-]0)(?P<clock>:0(?::0)?(?:[.,:]0)?)(?![\w:])
        |(?<![:-]0)(?P<ip>\.0\.0\.0(?::0)?)(?![\w.])
        |(?<![:-]0)(?P<mac>[0-9a-fA-F]{{0,3}}(?::[0-9a-fA-F]{{0,4}}){{3,7}})(?![\w:])
        |(?P<size>(?:\.0)?\ ?(?:[KMGTPE]i?B|bytes?|B)
            (?:\ \(0(?:\.0)?\ ?(?:[KMGTPE]i?B|bytes?)\))?)(?!\w)
        |(?P<d0>{_DUR}))
    |<0(?<!\w<0)(?P<d1>{_DUR})
    |>0(?<!\w>0)(?P<d2>{_DUR})
    |~0(?<!\w~0)(?P<d3>{_DUR})
    |/(?<![\w.~/>-]/)(?!0\.0\.0\.0(?![\w.]))(?P<abs>{_PC}+(?:/{_PC}*)*{_POS})
    |~/(?<![\w.>]~/)(?P<home>{_PC}*(?:/{_PC}*)*{_POS})
    |/(?<=[\w.-]/)(?P<rel>(?:(?:{_PC}+/)+{_PC}*|(?:{_PC}+/)*[\w@%+~=-]*\.[A-Za-z][\w.-]*){_POS})
        (?![\w/])
    """,
    re.VERBOSE,
)
_LEADING_OUT = {
    "date": "<date>",
    "clock": "<time>",
    "ip": "<addr>",
    "mac": "<addr>",
    "size": "<size>",
    "d0": "<time>",
    "d1": "<time>",
    "d2": "<time>",
    "d3": "<time>",
    "abs": "<path>",
    "home": "<path>",
    "rel": _REL,
}

# Runs after the other masks, so whether the quoted text is one token is decided on what the
# other masks leave ("'5 sec'" is "'<time>'", one token), as it will be when the signature is
# canonicalised again.
_QUOTED = re.compile(
    r"""'(?<![\w>'"`]')[^'\s]*'(?![\w<'"`])
    |"(?<![\w>'"`]")[^"\s]*"(?![\w<'"`])
    |`(?<![\w>'"`]`)[^`\s]*`(?![\w<'"`])""",
    re.VERBOSE,
)
_URL = re.compile(r"(?<![\w.+-])[A-Za-z][\w+.-]*://[^\s'\"<>()\[\]{},;]*")
_WINPATH = re.compile(r"(?<![\w.-])[A-Za-z]:\\[^\s'\"<>|,;]*")
# Letter-led IPv6 and MAC addresses; the digit-led ones are in _LEADING.
_HEXCOLON = re.compile(r"(?<![\w.>])[0-9a-fA-F]{1,4}(?::[0-9a-fA-F]{0,4}){4,7}(?![\w:<])")

# A token with a digit is masked whole. A regex cannot start a match before the digit it keys
# on without trying every position, so tokens that start with their digit are masked in one
# pass, and the others in two: from the first digit to the token's end, then over the reversed
# text from the marker back to the token's start.
_NUM_WORD = r"(?:[\w~+-]|\.(?=[\w~+-]))*"
_NUM_START = re.compile(rf"0(?<![\w~+-]0){_NUM_WORD}")
_NUM_SUFFIX = re.compile(rf"0{_NUM_WORD}")
_NUM_PREFIX = re.compile(rf"{_NUM}[\w~+-]*")
_REL_PREFIX = re.compile(rf"{_REL}(?:[\w.@%+~=-]|{_NUM}|>n<)*")
# Reversed ``host:port``: the masked port, ``:``, then a host with a dot or a digit in it.
_HOST_PREFIX = re.compile(r">n<:(?=[\w-]*(?:\.|>n<))(?:[\w.-]|>n<)+")
_RUNS = re.compile(r"(?<!\S)<n>(?:,? <n>(?![^\s,]))+")

_DECODER = json.JSONDecoder()
_MAX_JSON_DEPTH = 32


def _leading(match: re.Match[str]) -> str:
    return _LEADING_OUT[match.lastgroup or "rel"]


def _render_json(value: object, depth: int = 0) -> str:
    if depth > _MAX_JSON_DEPTH:
        return "<json>"
    if isinstance(value, dict):
        pairs = sorted(
            f"{' '.join(k.split())}: {_render_json(v, depth + 1)}" for k, v in value.items()
        )
        return "{" + ", ".join(pairs) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_render_json(v, depth + 1) for v in value) + "]"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return "<str>" if isinstance(value, str) else "<n>"


def _canonical_json(text: str) -> str:
    """Re-render the JSON objects in ``text``; key order is the thing that must not matter."""
    out: list[str] = []
    done = 0
    start = text.find("{")
    for _ in range(8):
        if start < 0:
            break
        try:
            value, end = _DECODER.raw_decode(text, start)
        except (ValueError, RecursionError):
            start = text.find("{", start + 1)
            continue
        out += (text[done:start], _render_json(value))
        done = end
        start = text.find("{", end)
    out.append(text[done:])
    return "".join(out)


def signature_key(text: str) -> str:
    """A cheap key such that equal keys give equal canonical signatures.

    :func:`canonical_signature` masks digit runs before anything else, so texts that differ
    only in digits share a signature; callers signing many texts memoize on this key.

    >>> signature_key("exit status 137 after 12.5s")
    'exit status 0 after 0.0s'
    """
    return _DIGITS.sub("0", text)


def canonical_signature(text: str) -> str:
    """The failure class of ``text``: what varies between instances of one failure is masked.

    Pure and deterministic; see the module docstring for every mask and why.

    >>> canonical_signature("verify failed: cargo build exited 101 after 132.4s at src/lib.rs:12:5")
    'verify failed: cargo build exited <n> after <time> at <path>'
    >>> canonical_signature("exit status 1") == canonical_signature("exit status 2")
    True
    >>> canonical_signature('{"b": "y", "a": 2}')
    '{a: <n>, b: <str>}'
    >>> canonical_signature("connect to db.internal:5432 failed (pid 4242, 1.5 KB read)")
    'connect to <addr> failed (pid <n>, <size> read)'
    >>> canonical_signature("   ")
    '<empty>'
    """
    if not isinstance(text, str):
        return EMPTY_SIGNATURE
    text = _mask(" ".join(_DIGITS.sub("0", text)[:_MAX_SCAN].split()))
    return text if len(text) <= _MAX_OUTPUT else _shorten(text)


def _shorten(text: str) -> str:
    for _ in range(3):
        cut = text.rfind(" ", 0, _MAX_OUTPUT + 1)
        if cut > 0:
            return text[:cut]
        # A token cut in half can match a mask the whole token did not: mask it again.
        text = _mask(text[:_MAX_OUTPUT])
        if len(text) <= _MAX_OUTPUT:
            return text
    return text[:_MAX_OUTPUT]


def _mask(text: str) -> str:
    """Masks 3 to 8 of the module docstring, on digit- and whitespace-normalised ``text``."""
    if not text:
        return EMPTY_SIGNATURE
    if "{" in text:
        text = _canonical_json(text)
    if "://" in text:
        text = _URL.sub("<url>", text)
    if ":\\" in text:
        text = _WINPATH.sub("<path>", text)
    if text.count(":") >= 5:
        text = _HEXCOLON.sub("<addr>", text)
    text = _NUM_START.sub("<n>", _LEADING.sub(_leading, text))
    if "0" in text:
        text = _NUM_SUFFIX.sub(_NUM, text)
    if _NUM in text or _REL in text or ":<n>" in text:
        rev = text[::-1]
        if _REL in rev:
            rev = _REL_PREFIX.sub(">htap<", rev)
        rev = _NUM_PREFIX.sub(">n<", rev)
        if ">n<:" in rev:
            rev = _HOST_PREFIX.sub(">rdda<", rev)
        text = rev[::-1]
    if "'" in text or '"' in text or "`" in text:
        # Until nothing matches: masking "("x")" makes its outer quotes hold one token.
        text, found = _QUOTED.subn("<str>", text)
        while found:
            text, found = _QUOTED.subn("<str>", text)
    if "<n> <n>" in text or "<n>, <n>" in text:
        text = _RUNS.sub("<n>", text)
    return text


_WILD = "<*>"
_PLACEHOLDER = re.compile(r"<(?:n|str|time|date|addr|path|size|url|json|\*)>")
# Where a merged token may keep a common prefix or suffix: at punctuation, never mid-word.
_CUT_AFTER = frozenset("._-:/=([{@#,;")
_CUT_BEFORE = frozenset("._-:/=)]}@#,;<")
#: A slot whose other tokens agree is variable once it holds this many distinct words ...
MIN_DISTINCT = 3
#: ... while the rest of the template keeps this many words, so short texts never merge ...
MIN_CONTEXT_WORDS = 3
#: ... and its words look like identifiers, or are at least this share of its occurrences: names
#: and ids rarely repeat, enum values (``started``, ``stopped``) do.
MIN_DISTINCT_SHARE = 0.25
_ROUNDS = 4
_IDENTIFIER = re.compile(r"[._/:@$#<]|[a-z][A-Z]")


def _has_word(token: str) -> bool:
    return any(c.isalpha() for c in _PLACEHOLDER.sub("", token))


def _is_masked(token: str) -> bool:
    return _PLACEHOLDER.search(token) is not None and not _has_word(token)


def _is_identifier(token: str) -> bool:
    return _IDENTIFIER.search(token.strip(".,;:()[]{}'\"")) is not None


def _variable(values: list[str], rest: tuple[str, ...], occurrences: int) -> bool:
    words = sum(1 for token in rest if _has_word(token))
    if all(_is_masked(v) for v in values):
        return words >= 1
    if len(values) < MIN_DISTINCT or words < MIN_CONTEXT_WORDS:
        return False
    return len(values) >= MIN_DISTINCT_SHARE * occurrences or all(map(_is_identifier, values))


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


def _merge_round(template: dict[str, tuple[str, ...]], counts: Counter[str]) -> bool:
    members: dict[tuple[str, ...], list[str]] = {}
    for sig, tokens in template.items():
        members.setdefault(tokens, []).append(sig)
    # Templates that agree everywhere but at slot i share a bucket. Rolling hashes keep this
    # linear in the token count; a bucket is split by the exact tokens below, so a collision
    # costs nothing and the labels never depend on the hash seed.
    buckets: dict[tuple[int, int, int, int], list[tuple[str, ...]]] = {}
    for tokens in members:
        prefix = [0]
        for token in tokens:
            prefix.append(hash((prefix[-1], token)))
        suffix = 0
        for i in range(len(tokens) - 1, -1, -1):
            buckets.setdefault((len(tokens), i, prefix[i], suffix), []).append(tokens)
            suffix = hash((suffix, tokens[i]))
    merged_now: set[tuple[str, ...]] = set()
    for (_, i, _, _), bucket in buckets.items():
        if len(bucket) < 2:
            continue
        slots: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
        for tokens in bucket:
            if tokens not in merged_now:
                slots.setdefault(tokens[:i] + tokens[i + 1 :], []).append(tokens)
        for rest, group in slots.items():
            values = sorted({tokens[i] for tokens in group})
            seen = sum(counts[sig] for tokens in group for sig in members[tokens])
            if len(values) < 2 or not _variable(values, rest, seen):
                continue
            merged = (*rest[:i], _generalize(values), *rest[i:])
            for tokens in group:
                merged_now.add(tokens)
                for sig in members[tokens]:
                    template[sig] = merged
    return bool(merged_now)


def signature_groups(texts: Sequence[str]) -> list[str]:
    """One group label per text, in order: texts of one failure class share a label.

    Texts are first reduced to canonical signatures, so texts sharing a signature always share
    a group. Signatures with the same number of tokens that differ in one slot are then merged,
    Drain-style, into a template with ``<*>`` in that slot, when the batch shows the slot is
    variable: all its values are masks (``<n>`` and ``<path>``), or it holds at least
    ``MIN_DISTINCT`` distinct words that look like identifiers or are not repeated much (see
    ``MIN_DISTINCT_SHARE``), while the rest keeps ``MIN_CONTEXT_WORDS`` words. Merging repeats
    for a few rounds, so several slots can open up. Deterministic: same input, same labels,
    whatever the hash seed.

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
    sigs = [canonical_signature(t) for t in texts]
    counts = Counter(sigs)
    template = {sig: tuple(sig.split(" ")) for sig in counts}
    for _ in range(_ROUNDS):
        if not _merge_round(template, counts):
            break
    return [" ".join(template[sig]) for sig in sigs]
