"""A frozen copy of ``canonical_signature`` version 7: version 2 as it was before the memo
(issue 11), with terminal escape sequences (ANSI CSI: colours) removed first (version 3),
version 4's rules (a number stops before a capitalised dotted part, compressed and bracketed
IPv6 is an address, a mailbox is part of its address, a size may have digit groups, and a unit
glued inside an id is not a value; a path is one value, quoted or not, as in version 3), and
version 5's: "3min" and a spaced "0.27 s" or "12 µs" are durations, a clock time takes its AM
or PM, GNU's `x' and typographic quotes quote a token, names under ".local", ".internal" and
".localdomain" are host names, the second word after a count is made singular too, a digit
right after a dot starts no number ("v2.0.1" is one), and a sign is part of a duration or size;
and version 6's: a number stops before a top-level domain that ends its token and a host name
may hold "<n>" labels (and be followed by "/"), so "db03.example.com" is "<addr>"; a day count
before another unit ("3d4h") is a duration; a JSON string renders as the text it holds;
and version 7's: an address is "<n>" (a short host name with a digit, an IP and a domain name
sign alike), and an address in brackets right after a value is dropped; an age standing alone
("10d", "3y", "2y45d") is a duration; a dictionary Python prints is read as the JSON it stands
for; five or more colon-joined fields with a value in one token (an ARN) are one "<url>"; a
percent sign after a space is its number's ("93.5 %" is "<n>%").

``tests/doctor/test_signature_equivalence.py`` checks the shipped function against this one:
any change of output must bump ``SIGNATURE_VERSION`` (breakers persist counts keyed by
signature), and then this copy is replaced by the new version's. Do not edit it otherwise.
"""

from __future__ import annotations

import ast
import json
import re
import warnings

SIGNATURE_VERSION = 7  # the version this copy computes

#: The signature of empty, blank and non-string input.
EMPTY_SIGNATURE = "<empty>"

# Only this much of the digit-normalised text is looked at, which bounds the work per message;
# the signature is cut far shorter anyway.
_MAX_SCAN = 8192
_MAX_OUTPUT = 512

_DIGITS = re.compile(r"[0-9]+")
# What canonical_signature does instead of ``_DIGITS.sub("0", text)``, with the same result and
# fewer regex matches: on the UTF-8 bytes (no multi-byte character holds an ASCII digit byte;
# "surrogatepass" round-trips every str), one table lookup makes every digit "0", then only
# runs of several digits are collapsed.
_ZERO_DIGITS = bytes.maketrans(b"123456789", b"000000000")
_ZEROS = re.compile(b"00+")
_CSI = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]")
# In a text with a brace, a JSON escape of one character is "?" (version 6); a digit run counts
# as one of its hex digits.
_JSON_ESCAPE = re.compile(rb"\\u(?:[0-9]++|[a-fA-F]){1,4}")

# Markers for masks whose start is only known after a second pass over the reversed text. They
# are whitespace characters: ``str.split`` has removed every one of them from the input, and no
# ``\w`` class can swallow one. They are below U+0100 so that a Latin-1 text stays a one-byte
# string while they are in it (a wider marker makes every later pass copy and scan 2-byte text).
_NUM = "\x1e"
_REL = "\x1f"

_DUR = (
    r"(?:\.0)?(?:ns|us|µs|ms|s|min|m|h)(?:0(?:\.0)?(?:ns|us|µs|ms|s|min|m|h))*(?!\w|[-.]\w)"
    r"|d(?:0(?:\.0)?(?:ns|us|µs|ms|s|min|m|h))+(?!\w|[-.]\w)"
    r"|(?:\.0)?\ (?:(?:milli|micro|nano)?seconds?|secs?|minutes?|mins?|hours?|days?|ms|us|µs|ns"
    r"|s)(?!\w)"
)
_MERIDIEM = r"(?:\ ?(?:AM|PM|am|pm))?"
_PC = r"[\w.@%+~=-]"
_POS = r"(?::0(?::0)?)?"

# Every alternative starts with a literal character, so the regex engine jumps between candidate
# characters instead of trying every position: that is what makes the throughput target.
# Lookbehinds placed after the literal check the character before it.
_LEADING = re.compile(
    rf"""
    0(?<![\w.]0)(?=[-/:a-fA-FKMGTPEnumshyµ]|[.,]0|\ [KMGTPEBbmnshduµ])(?:
        (?<![:/-]0)(?P<date>[-/]0[-/]0(?:[T_\ :]0[:.,]0(?:[:.,]0)*{_MERIDIEM})?
            (?:Z|[+-]0(?::0)?)?)
            (?![\w.:/-])
        |(?<![:/-]0)(?P<clock>:0(?::0)?(?:[.,:]0)?{_MERIDIEM})(?![\w:])
        |(?<![:-]0)(?P<ip>\.0\.0\.0(?::0)?)(?![\w.])
        |(?<![:-]0)(?P<mac>[0-9a-fA-F]{{0,3}}(?::[0-9a-fA-F]{{0,4}}){{3,7}})(?![\w:])
        |(?<!\w-0)(?P<size>(?:[.,]0)*\ ?(?:[KMGTPE]i?B|bytes?|B)
            (?:\ \(0(?:\.0)?\ ?(?:[KMGTPE]i?B|bytes?)\))?)(?!\w|[-.]\w)
        |(?<!\w-0)(?P<d0>{_DUR})
        |(?<=[\ (\[=]0)(?P<age>(?:d|y(?:0d)?)(?=[\ ,;)\]]|\.?$|\.\ )))
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
    "age": "<time>",
    "d1": "<time>",
    "d2": "<time>",
    "d3": "<time>",
    "abs": "<path>",
    "home": "<path>",
    "rel": _REL,
}

# Runs after the other masks, so whether the quoted text is one token is decided on what the
# other masks leave ("'5 sec'" is "'<time>'", one token), as it will be when the signature is
# canonicalised again. A quoted token never holds a brace: the JSON pass, which runs first and
# looks at a bounded number of braces, must see the same braces when a signature is
# canonicalised again.
_QUOTED = re.compile(
    r"""'(?<![\w>'"`‘’“”]')[^'\s{}]*'(?![\w<'"`‘’“”])
    |"(?<![\w>'"`‘’“”]")[^"\s{}]*"(?![\w<'"`‘’“”])
    |`(?<![\w>'"`‘’“”]`)[^`\s{}]*`(?![\w<'"`‘’“”])
    |`(?<![\w>'"`‘’“”]`)[^`'\s{}]*'(?![\w<'"`‘’“”])
    |‘(?<![\w>'"`‘’“”]‘)[^’\s{}]*’(?![\w<'"`‘’“”])
    |“(?<![\w>'"`‘’“”]“)[^”\s{}]*”(?![\w<'"`‘’“”])""",
    re.VERBOSE,
)
_QUOTES = ("'", '"', "`", "‘", "“")
_URL = re.compile(r"(?<![\w.+-])[A-Za-z][\w+.-]*://[^\s'\"<>()\[\]{},;]*")
# A drive path, or a UNC path (and the device forms "\\\\?\\", "\\\\.\\"; version 6).
_WINPATH = re.compile(
    r"(?<![\w.-])[A-Za-z]:\\[^\s'\"<>|,;]*"
    r"|\\(?<![\w\\>]\\)\\(?:[?.]|[\w.$-]+)\\[^\s'\"<>|,;]*"
)
# Letter-led IPv6 and MAC addresses; the digit-led ones are in _LEADING. In brackets with a port
# ("[2001:db8:0:0:0:0:0:1]:443") the whole is one address (version 4), as "10.0.0.1:443" is.
_HEXCOLON = re.compile(
    r"(?<![\w.>])[0-9a-fA-F]{1,4}(?::[0-9a-fA-F]{0,4}){4,7}(?![\w:<])"
    r"|\[(?<![\w>\]]\[)[0-9a-fA-F]{1,4}(?::[0-9a-fA-F]{0,4}){4,7}\](?::0)?(?![\w<])"
)

# A compressed IPv6 address ("::1", "fe80::1%eth0", "::ffff:10.0.0.1", "2001:db8::8a2e:370:7334";
# version 4), bare or in brackets with its port ("[2001:db8::1]:5432", as "10.0.0.1:5432" is one
# address): "::" between hex groups, with a digit somewhere, so that "Option::unwrap" and
# "std::io" stay words. The full eight-group form is _HEXCOLON's.
_H16 = r"[0-9a-fA-F]{1,4}"
_IPV6_BODY = (
    rf"(?=[0-9a-fA-F:]*0)(?:{_H16}(?::{_H16}){{0,6}})?::(?:{_H16}(?::{_H16}){{0,6}})?"
    r"(?::0\.0\.0\.0)?(?:%[\w-]+)?"
)
_IPV6 = re.compile(
    rf"(?<![\w.:>\[\]]){_IPV6_BODY}(?![\w:.<])"
    rf"|\[(?<![\w>\]]\[){_IPV6_BODY}\](?::0)?(?![\w<])"
)

_TLD = (
    r"(?:com|net|org|edu|gov|mil|info|biz|local|internal|localdomain"
    r"|(?:com|net|org|edu|gov|ac|co)\.[a-z]{2})"
)
# A number stops before a top-level domain that ends its token (version 6).
_TLD_END = rf"{_TLD}(?![\w~+@-]|\.[\w~+-])"

# A token with a digit is masked whole. A regex cannot start a match before the digit it keys
# on without trying every position, so tokens that start with their digit are masked in one
# pass, and the others in two: from the first digit to the token's end, then over the reversed
# text from the marker back to the token's start.
_NUM_WORD = rf"[\w~+-]*(?:\.(?![A-Z][A-Za-z_]*(?![\w~+-])|{_TLD_END})(?=[\w~+-])[\w~+-]*)*"
_NUM_START = re.compile(rf"0(?<![\w~+-]0)(?<!0\.0){_NUM_WORD}")
_NUM_SUFFIX = re.compile(rf"0{_NUM_WORD}")
_NUM_PREFIX = re.compile(rf"{_NUM}[\w~+-]*")
_SIGNED = "\x1d"
_REL_PREFIX = re.compile(rf"{_REL}[\w.@%+~=-]*(?:(?:{_NUM}|>n<)[\w.@%+~=-]*)*")
# Reversed ``host:port``: the masked port, ``:``, then a host with a dot or a digit in it.
_HOST_PREFIX = re.compile(r">n<:(?=[\w-]*(?:\.|>n<))[\w.-]*(?:>n<[\w.-]*)*")
# The placeholders a signature writes. A run of one kind of value, joined by spaces, commas or
# semicolons, is one value: lists of addresses, channels or ids have as many entries as the
# run had (see ``_POST``).
_KINDS = r"(?:n|addr|path|time|date|size|url|str|\*)"
# A calendar date in words: an optional weekday, a month name, the day, then optionally a clock
# time, a zone and a year ("Sat Jun 18 02:08:10 2005", "Dec 10 06:55:46"), or day-first
# ("18 Jun 2005"). Months are only taken before or after a day number, so "May" alone stays.
_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]{0,6}\.?"
_CALENDAR = re.compile(
    rf"""(?:(?<![\w<>])(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]{{0,6}},?\ )?
    (?<![\w<>])(?:{_MONTH}\ <n>,?|<n>\ {_MONTH}\ <n>)
    (?:\ <time>)?(?:\ [A-Z]{{3,4}}(?![\w<]))?(?:,?\ <n>(?![\w<]))?(?![\w<])""",
    re.VERBOSE,
)
# Cheap test for a month name before a day, so most texts skip the full pattern.
_MONTH_DAY = re.compile(rf"{_MONTH}\ <n>")
# A DNS host name without digits ("ns.example.com", "www.cse.cuhk.edu.hk"): known by its generic
# top-level domain, so dotted config keys and class names ("mapred.task.id") stay words.
_DNS_NAME = rf"(?:<n>|<addr>|[a-z0-9][a-z0-9-]*)(?:\.(?:<n>|<addr>|[a-z0-9-]+))*\.{_TLD}"
_HOSTNAME = re.compile(
    rf"(?<![\w.<>@/+-])(?:(?:[\w.+-]|<n>|<addr>)+@)?{_DNS_NAME}\.?(?![\w<>@-]|\.\w)"
    # A mailbox in angle brackets, as mail headers and servers write it: "<alice@example.com>".
    rf"|<(?<![\w<>]<)(?:[\w.+-]|<n>|<addr>)+@{_DNS_NAME}>(?![\w<>])"
)
_HOSTNAME_HINT = re.compile(rf"\.{_TLD}\b")
# Five or more colon-joined fields in one token, one holding a value: one "<url>" (version 7).
_COMPOUND = re.compile(
    r"""(?<![^\s(\[{=,;])[A-Za-z][\w.+-]*:(?!:)
    (?=[^\s,;()\[\]{}'"]*<(?:n|path|addr)>)
    (?:[^\s:,;()\[\]{}'"]*:(?!\s|$)){3,}[^\s,;()\[\]{}'"]*?(?=[.:]?(?:[\s,;()\[\]{}'"]|$))""",
    re.VERBOSE,
)
# A percent sign after a space is its number's (version 7).
_SPACED_PERCENT = re.compile(r"(?<=<n>)\ %(?![\w%<])")
# An address in round brackets right after a value is dropped (version 7).
_VALUE_ADDRESS = re.compile(r"(?<=>)\ \(<addr>\)(?=[\s,;:.)\]]|$)")
_SEP = r"(?:[,;]\ ?|\ )"
_NOUN = r"\ [A-Za-z]{2,}[^\W\dsui_]s(?![\w<])"
# The first word after a count, and the second too, each made singular if it is a plural noun.
_WORDS_AFTER_COUNT = r"""(?=\ \w*s(?![\w<])|\ [A-Za-z][\w-]*\ \w*s(?![\w<]))
    (?:(?P<{0}>{2})|(?P<{1}>\ [A-Za-z][\w-]*))(?P<{3}>{2})?"""
# Bracketed values, runs and counted nouns in one pass (one regex call per text is what keeps
# the throughput), each keyed on the "<" of a value: a bracket standing alone that holds one
# value or a run of them; a run of one kind of value, with its counted noun if any; a count
# and its noun, which is made singular ("1 warning" and "3 warnings" are one text; words
# ending in "ss", "us" or "is" keep their "s": "process", "status", "this").
_POST = re.compile(
    rf"""<(?:
        (?<=[(\[{{]<)(?<![\w>\])][(\[{{]<)(?P<inner>{_KINDS})>(?:{_SEP}<(?P=inner)>)*
            (?P<close>[)\]}}])
        |(?<![^\s,;:=(\[{{]<)(?=[a-z*]+>{_SEP}<)(?P<kind>{_KINDS})>(?:{_SEP}<(?P=kind)>)+
            (?![^\s,;:.)\]}}])(?:{_WORDS_AFTER_COUNT.format("noun", "between", _NOUN, "noun2")})?
        |n>{_WORDS_AFTER_COUNT.format("counted", "adj", _NOUN, "counted2")})""",
    re.VERBOSE,
)
# The two lookaheads only fail early where the alternative after them would fail anyway (a run
# needs another value after its separator; a counted noun is a word ending in "s"): they spare
# the regex engine the slower attempts, they change no match.
# Empty brackets and brackets holding values are one thing: "()" and "(host-1)" alike. Only
# brackets that start a token: in "error[E0433]" or "f(3)" the bracket belongs to its word.
# ``_POST`` handles brackets with values; this one a bracket standing alone that holds nothing.
_BRACKETED = re.compile(r"[(\[{](?<![\w>\])][(\[{])[)\]}]")
_BRACKET_OUT = {"()": "(<*>)", "[]": "[<*>]", "{}": "{<*>}"}
# A relative path that starts at "." or "..": "./run", "../lib/x".
_DOTPATH = re.compile(r"\.(?<![\w./~>-]\.)\.?/[\w.@%+~=-]+(?:/[\w.@%+~=-]*)*(?::0(?::0)?)?")

_DECODER = json.JSONDecoder()
_MAX_JSON_DEPTH = 32


def _leading(match: re.Match[str]) -> str:
    name = match.lastgroup or "rel"
    at, text = match.start(), match.string
    # A sign that starts a token, right before a duration or a size, is the value's.
    signed = name in ("d0", "size") and text[at - 1 : at] in ("+", "-")
    if signed and (at == 1 or not (text[at - 2].isalnum() or text[at - 2] in "_<>.+-")):
        return _SIGNED + _LEADING_OUT[name]
    return _LEADING_OUT[name]


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
    if isinstance(value, str):
        # The text it holds (version 6): its quotes are syntax; empty or with a brace, <str>.
        text = " ".join(value.split())
        return "<str>" if not text or "{" in text or "}" in text else text
    return "<n>"


def _canonical_json(text: str) -> str:
    """Re-render the JSON objects in ``text``; key order is the thing that must not matter."""
    out: list[str] = []
    done = 0
    start = text.find("{")
    # One Python literal that does not read ends the tries: its scan and ast.literal_eval cost
    # far more than the JSON parser's failure, and a text of many unclosed "{'" would pay it
    # at each of them.
    literal = True
    for _ in range(8):
        if start < 0:
            break
        try:
            value, end = _DECODER.raw_decode(text, start)
        except (ValueError, RecursionError):
            found = None
            if literal and text.startswith("{'", start):
                found = _python_literal(text, start)
                literal = found is not None
            if found is None:
                start = text.find("{", start + 1)
                continue
            value, end = found
        out += (text[done:start], _render_json(value))
        done = end
        start = text.find("{", end)
    out.append(text[done:])
    return "".join(out)


def _python_literal(text: str, start: int) -> tuple[object, int] | None:
    """The dictionary Python prints at ``text[start]`` as JSON would hold it, and its end
    (version 7): the closing brace is found outside quotes within 4,096 characters."""
    depth, quote, at, stop = 0, "", start, min(len(text), start + 4096)
    while at < stop:
        ch = text[at]
        if quote:
            if ch == "\\":
                at += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "{[(":
            depth += 1
        elif ch in "}])":
            depth -= 1
            if depth == 0:
                break
        at += 1
    else:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = ast.literal_eval(text[start : at + 1])
        if not isinstance(value, dict):
            return None
        return _from_literal(value), at + 1
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def _from_literal(value: object) -> object:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out[k if isinstance(k, str) else _render_json(_from_literal(k))] = _from_literal(v)
        return out
    if isinstance(value, (list, tuple)):
        return [_from_literal(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_render_json(_from_literal(v)) for v in value)
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value


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
    >>> canonical_signature('{"b": "timeout", "a": 2, "id": "a81f"}')
    '{a: <n>, b: timeout, id: <n>}'
    >>> canonical_signature("connect to db.internal:5432 failed (pid 4242, 1.5 KB read)")
    'connect to <n> failed (pid <n>, <size> read)'
    >>> canonical_signature("   ")
    '<empty>'
    """
    if not isinstance(text, str):
        return EMPTY_SIGNATURE
    data = text.encode("utf-8", "surrogatepass").translate(_ZERO_DIGITS)
    if b"\x1b" in data:
        data, found = _CSI.subn(b"", data)
        for _ in range(4):
            if not found or b"\x1b[" not in data:
                break
            data, found = _CSI.subn(b"", data)
    if b"{" in data:
        data = _JSON_ESCAPE.sub(b"?", data)
    if b"00" in data:
        data = _ZEROS.sub(b"0", data)
    text = _mask(" ".join(data.decode("utf-8", "surrogatepass")[:_MAX_SCAN].split()))
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
    if ":\\" in text or "\\\\" in text:
        text = _WINPATH.sub("<path>", text)
    if "./" in text:
        text = _DOTPATH.sub("<path>", text)
    if "::" in text:
        text = _IPV6.sub("<addr>", text)
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
    text = text.replace("-" + _SIGNED, "").replace("+" + _SIGNED, "")
    text = _SPACED_PERCENT.sub("%", text)
    quoted = any(q in text for q in _QUOTES)
    if quoted:
        # Until nothing matches: masking "("x")" makes its outer quotes hold one token.
        text, found = _QUOTED.subn("<str>", text)
        while found:
            text, found = _QUOTED.subn("<str>", text)
        quoted = any(q in text for q in _QUOTES)
    # Host names and dates neither hold nor leave quotes, so ``quoted`` stays right below.
    if "." in text and _HOSTNAME_HINT.search(text):
        text = _HOSTNAME.sub("<addr>", text)
    # An address is a value like a number (version 7); one in brackets right after a value is
    # that value's address. "x.c:<addr>" becomes "x.c:<n>", a host and port: taken whole.
    while True:
        text = _VALUE_ADDRESS.sub("", text).replace("<addr>", "<n>")
        while True:
            masked = _HOST_PREFIX.sub(">n<", text[::-1])[::-1]
            if masked == text:
                break
            text = masked
        # An address made "<n>" can join what follows into a host name that a second signing
        # would take ("<addr>.<n>.internal" from "x.internal..y.internal"): again, until none.
        if "." not in text or not _HOSTNAME_HINT.search(text):
            break
        masked = _HOSTNAME.sub("<addr>", text)
        if masked == text:
            break
        text = masked
    text = _COMPOUND.sub("<url>", text)
    if " <n>" in text and _MONTH_DAY.search(text):
        text = _CALENDAR.sub("<date>", text)
    while True:
        if "<" in text:
            text = _POST.sub(_post, text)
        if "()" in text or "[]" in text or "{}" in text:
            text = _BRACKETED.sub(_bracketed, text)
        if not quoted:
            return text
        # A run or bracket that became one value can leave a quoted single token: mask it, and
        # look again, until nothing changes (a signature is its own signature).
        text, found = _QUOTED.subn("<str>", text)
        if not found:
            return text


def _post(match: re.Match[str]) -> str:
    close = match["close"]
    if close is not None:
        pair = match.string[match.start() - 1] + close
        return _BRACKET_OUT[pair][1:] if pair in _BRACKET_OUT else match[0]
    kind = match["kind"]
    if kind is None:
        first, between, second, kind = match["counted"], match["adj"], match["counted2"], "n"
    else:
        first, between, second = match["noun"], match["between"], match["noun2"]
    out = f"<{kind}>"
    if first is not None:
        out += first[:-1] if kind == "n" else first
    elif between is not None:
        out += between
    if second is not None:
        out += second[:-1] if kind == "n" else second
    return out


def _bracketed(match: re.Match[str]) -> str:
    found = match.group()
    return _BRACKET_OUT.get(found[0] + found[-1], found)
