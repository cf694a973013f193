"""Failure signatures (draft 2)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

__all__ = ["SIGNATURE_VERSION", "canonical_signature", "signature_groups"]

SIGNATURE_VERSION = 1

EMPTY_SIGNATURE = "<empty>"
_MAX_SCAN = 4096
_MAX_OUTPUT = 512

_DIGITS = re.compile(r"[0-9]+")

# Markers: whitespace characters, so ``str.split`` has removed every one of them from the input
# before any mask runs, and no ``\w`` class can swallow one.
_NUM = "\u2000"
_REL = "\u2001"
_PORT = "\u2002"

_DUR_BODY = (
    r"(?:\.0)?(?:ns|us|µs|ms|s|m|h)(?:0(?:\.0)?(?:ns|us|µs|ms|s|m|h))*(?!\w)"
    r"|(?:\.0)?\ (?:(?:milli|micro|nano)?seconds?|secs?|minutes?|mins?|hours?|days?|ms|us|ns)(?!\w)"
)
_PATH_CHARS = r"[\w.@%+~=-]"
_POS = r"(?::0(?::0)?)?"

_LEADING = re.compile(
    rf"""
    '(?<![\w>]')(?P<s1>[^'\s]{{0,256}}')(?![\w<])
    |"(?<![\w>]")(?P<s2>[^"\s]{{0,256}}")(?![\w<])
    |`(?P<s3>[^`\s]{{0,256}}`)
    |0(?<![\w.:/-]0)(?P<date>[-/]0[-/]0(?:[T_\ :]0[:.,]0(?:[:.,]0)*)?(?:Z|[+-]0(?::0)?)?)(?![\w.:/-])
    |0(?<![\w.:/-]0)(?P<clock>:0(?::0)?(?:[.,:]0)?)(?![\w:])
    |0(?<![\w.:-]0)(?P<ip>\.0\.0\.0(?::0)?)(?![\w.])
    |0(?<![\w.:-]0)(?P<mac>[0-9a-fA-F]{{0,3}}(?::[0-9a-fA-F]{{0,4}}){{3,7}})(?![\w:])
    |0(?<![\w.]0)(?P<size>(?:\.0)?\ ?(?:[KMGTPE]i?B|bytes?|B)
        (?:\ \(0(?:\.0)?\ ?(?:[KMGTPE]i?B|bytes?)\))?)(?!\w)
    |0(?<![\w.]0)(?P<d0>{_DUR_BODY})
    |<0(?<![\w]<0)(?P<d1>{_DUR_BODY})
    |>0(?<![\w]>0)(?P<d2>{_DUR_BODY})
    |~0(?<![\w]~0)(?P<d3>{_DUR_BODY})
    |/(?<![\w.~/-]/)(?!0\.0\.0\.0(?![\w.]))(?P<abs>{_PATH_CHARS}+(?:/{_PATH_CHARS}*)*{_POS})
    |~/(?<![\w.]~/)(?P<home>{_PATH_CHARS}*(?:/{_PATH_CHARS}*)*{_POS})
    |\./(?<![\w.]\./)(?P<dot>{_PATH_CHARS}*(?:/{_PATH_CHARS}*)*{_POS})
    |\.\./(?<![\w.]\.\./)(?P<dotdot>{_PATH_CHARS}*(?:/{_PATH_CHARS}*)*{_POS})
    |/(?<=[\w.-]/)(?P<rel>(?:{_PATH_CHARS}+/)+{_PATH_CHARS}*
        |(?:{_PATH_CHARS}+/)*[\w@%+~=-]*\.[A-Za-z][\w.-]*){_POS}(?![\w/])
    |:(?<=[\w-]:)(?P<port>0)(?![\w.])
    """,
    re.VERBOSE,
)

_LEADING_OUT = {
    "s1": "<str>",
    "s2": "<str>",
    "s3": "<str>",
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
    "dot": "<path>",
    "dotdot": "<path>",
    "rel": _REL,
    "port": _PORT,
}

_URL = re.compile(r"(?<![\w.+-])[A-Za-z][\w+.-]*://[^\s'\"<>()\[\]{},;]*")
_HEXCOLON = re.compile(r"(?<![\w.])[0-9a-fA-F]{1,4}(?::[0-9a-fA-F]{0,4}){4,7}(?![\w:])")
_RUNS = re.compile(r"(?<!\S)<n>(?:,? <n>(?![^\s,]))+")
_WINPATH = re.compile(r"(?<![\w.-])[A-Za-z]:\\[^\s'\"<>|,;]*")

_WORD = r"(?:[\w~+-]|\.(?=[\w~+-]))"
_NUM_SUFFIX = re.compile(rf"0{_WORD}*")
# Run over the reversed text: a marker followed by what was the word's prefix.
_NUM_PREFIX = re.compile(rf"{_NUM}[\w~+-]*")
_REL_PREFIX = re.compile(rf"{_REL}(?:[\w.@%+~=-]|{_NUM})*")
_HOST_PREFIX = re.compile(rf"{_PORT}(?=[\w-]*[.{_NUM}])(?:[\w.-]|{_NUM})+")


def _leading(match: re.Match[str]) -> str:
    return _LEADING_OUT[match.lastgroup or "port"]


def _render_json(value: object) -> str:
    if isinstance(value, dict):
        pairs = sorted(f"{k}: {_render_json(v)}" for k, v in value.items())
        return "{" + ", ".join(pairs) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_render_json(v) for v in value) + "]"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, str):
        return "<str>"
    return "<n>"


_DECODER = json.JSONDecoder()


def _canonical_json(text: str) -> str:
    out: list[str] = []
    pos = 0
    start = text.find("{")
    tries = 0
    while start >= 0 and tries < 8:
        tries += 1
        try:
            value, end = _DECODER.raw_decode(text, start)
        except ValueError:
            start = text.find("{", start + 1)
            continue
        out.append(text[pos:start])
        out.append(_render_json(value))
        pos = end
        start = text.find("{", end)
    out.append(text[pos:])
    return "".join(out)


def canonical_signature(text: str) -> str:
    """Draft."""
    if not isinstance(text, str):
        return EMPTY_SIGNATURE
    text = " ".join(_DIGITS.sub("0", text)[:_MAX_SCAN].split())
    if not text:
        return EMPTY_SIGNATURE
    if "{" in text:
        text = _canonical_json(text)
    if "://" in text:
        text = _URL.sub("<url>", text)
    if ":\\" in text:
        text = _WINPATH.sub("<path>", text)
    if text.count(":") >= 4:
        text = _HEXCOLON.sub("<addr>", text)
    text = _LEADING.sub(_leading, text)
    text = _NUM_SUFFIX.sub(_NUM, text)
    rev = text[::-1]
    if _REL in rev:
        rev = _REL_PREFIX.sub(">htap<", rev)
    if _PORT in rev:
        rev = _HOST_PREFIX.sub(">rdda<", rev).replace(_PORT, ">n<:")
    rev = _NUM_PREFIX.sub(">n<", rev)
    text = rev[::-1]
    if "<n> <n>" in text or "<n>, <n>" in text:
        text = _RUNS.sub("<n>", text)
    if len(text) > _MAX_OUTPUT:
        cut = text.rfind(" ", 0, _MAX_OUTPUT + 1)
        text = text[: cut if cut > 0 else _MAX_OUTPUT]
    return text



_WILD = "<*>"
_PLACEHOLDER = re.compile(r"<(?:n|str|time|date|addr|path|size|url|\*)>")
_CUT_AFTER = frozenset("._-:/=([{@#,;")
_CUT_BEFORE = frozenset("._-:/=)]}@#,;<")
MIN_DISTINCT = 3
_ROUNDS = 4


def _is_slot_value(token: str) -> bool:
    rest = _PLACEHOLDER.sub("", token)
    return rest != token and not any(c.isalpha() for c in rest)


def _generalize(values: list[str]) -> str:
    lo, hi = min(values), max(values)
    n = 0
    while n < min(len(lo), len(hi)) and lo[n] == hi[n]:
        n += 1
    while n and lo[n - 1] not in _CUT_AFTER:
        n -= 1
    shortest = min(len(v) for v in values)
    m = 0
    while m < shortest - n and all(v[-1 - m] == values[0][-1 - m] for v in values):
        m += 1
    while m and values[0][-m] not in _CUT_BEFORE:
        m -= 1
    return values[0][:n] + _WILD + (values[0][-m:] if m else "")


MIN_WORDS_A = int(__import__("os").environ.get("MWA", "1"))
MIN_WORDS_B = int(__import__("os").environ.get("MWB", "3"))
MIN_DISTINCT = int(__import__("os").environ.get("MD", "3"))


def _is_word(token: str) -> bool:
    return any(c.isalpha() for c in _PLACEHOLDER.sub("", token))


def _variable(values: list[str], rest: tuple[str, ...]) -> bool:
    words = sum(1 for t in rest if _is_word(t))
    if all(_is_slot_value(v) for v in values):
        return words >= MIN_WORDS_A
    return len(values) >= MIN_DISTINCT and words >= MIN_WORDS_B


def signature_groups(texts: Sequence[str]) -> list[str]:
    """Draft."""
    sigs = [canonical_signature(t) for t in texts]
    template: dict[str, tuple[str, ...]] = {s: tuple(s.split(" ")) for s in dict.fromkeys(sigs)}
    for _ in range(_ROUNDS):
        members: dict[tuple[str, ...], list[str]] = {}
        for sig, tpl in template.items():
            members.setdefault(tpl, []).append(sig)
        slots: dict[tuple[int, int, int, int], list[tuple[str, ...]]] = {}
        for tpl in members:
            n = len(tpl)
            pre = [0] * (n + 1)
            for i, tok in enumerate(tpl):
                pre[i + 1] = hash((pre[i], tok))
            suf = 0
            for i in range(n - 1, -1, -1):
                slots.setdefault((n, i, pre[i], suf), []).append(tpl)
                suf = hash((suf, tpl[i]))
        changed = False
        done: set[tuple[str, ...]] = set()
        for (n, i, _, _), group in slots.items():
            group = [t for t in group if t not in done]
            if len(group) < 2:
                continue
            values = sorted({t[i] for t in group})
            if len(values) < 2 or not _variable(values, group[0][:i] + group[0][i + 1 :]):
                continue
            merged = group[0][:i] + (_generalize(values),) + group[0][i + 1 :]
            for t in group:
                done.add(t)
                for sig in members[t]:
                    template[sig] = merged
            changed = True
        if not changed:
            break
    return [" ".join(template[s]) for s in sigs]
