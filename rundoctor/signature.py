"""Failure signatures: one stable string per failure class, and batch grouping of failure texts.

The grouping (``signature_groups``, ``group_signatures``, ``GroupingConfig``) lives in
:mod:`rundoctor._grouping` and is re-exported here.

``canonical_signature`` is version ``SIGNATURE_VERSION`` (7). Anything that changes which texts
share a signature must bump it, because circuit breakers persist counts keyed by signature; the
executor records the version in its breaker events and the doctor compares signatures only
within one version. ``docs/signatures.md`` explains both functions with examples and the
measured figures.

``canonical_signature`` is pure: every ASCII digit run becomes ``0`` first (so digit values never
matter, for any input), terminal escape sequences (ANSI CSI, a test runner's colours) are removed
(version 3), whitespace runs become one space, then the masks of :data:`MASK_RULES` run in order,
each listed with its reason and an example: JSON re-rendered with sorted keys, each string as the
text it holds (its quotes are syntax; ``"\\u003c"`` escapes are ``?``; version 6), and a dictionary
Python prints (``{'error': 'timeout'}``) read as the JSON it stands for (version 7); ``<url>``;
Windows (UNC too, version 6), ``./`` and other paths (``<path>``, before numbers, so a path with
digits is one token); an address, ``<n>`` like a number since version 7 (``<addr>`` before; the same
failure on ``node12`` and on ``10.0.0.12`` signs alike), for IPv4, IPv6 (compressed and in brackets
with a port too, version 4), MAC, ``host:port``, and DNS names and mailboxes with a generic
top-level domain or a special-use one of private networks (``.local``, ``.internal``, version 5),
digits in the name or not (a number stops before such a domain, version 6); ISO dates and clock
times, with AM or PM (``<date>``, ``<time>``, version 5), durations and sizes with their units and
sign (``<time>``, ``<size>``; ``3min``, ``0.27 s``, ``-0.004 seconds``, version 5; days before
another unit, ``3d4h``, version 6; an age standing alone, ``10d``, ``3y``, version 7); ``<url>`` for
a compound name of five or more colon-joined fields, one holding a value (an ARN; version 7);
``<n>`` for any other token with a digit, glued punctuation and units included (hex, ids, UUIDs,
versions, ``v2.0.1`` whole since version 5, ``41C``), but not a capitalised dotted part after it
(``sqlite3.OperationalError`` is ``<n>.OperationalError``, version 4); ``<str>`` for a quoted single
token, in ASCII, GNU (```x'``) or typographic (``‘x’``, version 5) quotes; ``<date>`` for a date in
words (``Sat Jun 18 02:08:10 2005``); one value for a run of values of one kind (``1, 6, 11``;
comma-joined addresses); ``(<*>)`` for a bracket standing alone that is empty or holds values
(``()`` and ``(10.0.0.1)`` alike), except an address in brackets right after a value, which is
dropped (libpq's ``"db.example.com" (10.0.0.5)``, version 7); a counted noun made singular (``1
warning``, ``3 warnings``), and the word after it too (``3 previous errors``, version 5). The result
is cut to 512 characters, at a space. No mask names any one system's vocabulary
(:data:`GENERIC_WORDS` is all they may hold).

Signatures are memoized on the text with its digits zeroed, which is exact (equal keys give
equal signatures); ``docs/signatures.md`` gives the bound and the figures with and without it
(:func:`signature_memo_disabled` turns it off).

Words without digits (enum values, user names) are kept: telling a variable word from a constant
one needs a batch, which is what ``signature_groups`` is for.
"""

from __future__ import annotations

import ast
import json
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache

__all__ = [
    "DEFAULT_GROUPING",
    "EMPTY_SIGNATURE",
    "GENERIC_WORDS",
    "MASK_RULES",
    "SIGNATURE_VERSION",
    "GroupingConfig",
    "MaskRule",
    "canonical_signature",
    "clear_signature_memo",
    "group_signatures",
    "signature_groups",
    "signature_memo_disabled",
]

SIGNATURE_VERSION = 7

#: The signature of empty, blank and non-string input.
EMPTY_SIGNATURE = "<empty>"

# Only this much of the digit-normalised text is looked at, which bounds the work per message;
# the signature is cut far shorter anyway.
_MAX_SCAN = 8192
_MAX_OUTPUT = 512

_DIGITS = re.compile(r"[0-9]+")
# A terminal escape sequence (ECMA-48 CSI: ESC [, parameters, intermediates, a final byte):
# a coloured ``FAILED`` and a plain one are one failure. Its digits are zeros by then.
_CSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
#: Passes of ``_CSI`` after the first, at most (see :func:`canonical_signature`).
_CSI_PASSES = 4
# A JSON escape of one character ("\u003c", as Go's encoding/json writes "<"; "\u00e9"): with its
# digits zeroed it names another character, and once digit runs are collapsed it is no escape
# at all, so the JSON pass failed on the whole object and key order mattered again. In a text
# with a brace each becomes "?" (version 6): which character it was is lost with its digits
# anyway. A digit run counts as one of its four hex digits, as everywhere, so that the length of
# a run never matters ("\u00e9t" is "?t"; a hex letter right after an escape with fewer than
# four hex digits left, once runs count as one, goes with it).
_JSON_ESCAPE = re.compile(r"\\u(?:[0-9]++|[a-fA-F]){1,4}")
# What canonical_signature does instead of ``_DIGITS.sub("0", text)``, with the same result and
# no regex: on the UTF-8 bytes (no multi-byte character holds an ASCII digit byte;
# "surrogatepass" round-trips every str), one table lookup makes every digit "0". A run of
# zeros is then one digit to every mask: the masks that look at digits match ``0++`` where a
# single "0" stands for a number (``_LEADING``, ``_DOTPATH``), or take a token with its zeros
# whole (the number masks), so runs are collapsed to one "0" (``_collapse``) only before the
# two steps that count characters: JSON parsing (no leading zeros) and the hex-colon mask
# (1 to 4 hex digits a group), and before a long text is cut. Collapsing every text cost 10%
# of a signature.
_ZERO_DIGITS = bytes.maketrans(b"123456789", b"000000000")
# A text with none of these bytes is "plain": the JSON, URL, path, quote and bracket masks
# cannot apply, and of the leading masks only those keyed on a digit can (the others need "/",
# or "<", ">" or "~" right before a digit). No mask adds a brace, bracket, quote, slash or
# "~"; before the leading masks a plain text can only have gained "<addr>" from the hex-colon
# mask, which never has a digit right after it.
_RARE = b"{/\\'\"`([<>~"
# The first byte of a typographic quote (U+2018 to U+201D): a text with one is not plain either.
# Its other bytes still mark the text "w" below, so whitespace normalisation is not skipped.
_QUOTE_LEAD = 0xE2
# Likewise a plain text without any of these capitals holds no month name (placeholders are
# lower-case), and the calendar search, a character-set scan over the whole text, is skipped.
_MONTH_INITIALS = b"ADFJMNOS"
# One ``bytes.translate`` of the memo key answers these and a third: "r" for a byte of
# ``_RARE``, "m" for a month initial, "w" for a byte of whitespace other than the space or of a
# non-ASCII character (every non-ASCII whitespace is one). A text without a "w", without two
# spaces in a row and without a space at either end is already whitespace-normalised, and
# ``str.split`` and ``str.join`` are skipped.
_OTHER_SPACE = b"\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f" + bytes(range(0x80, 0x100))
_CLASSES = bytes(
    ord("r")
    if b in _RARE or b == _QUOTE_LEAD
    else ord("m")
    if b in _MONTH_INITIALS
    else ord("w")
    if b in _OTHER_SPACE
    else ord(" ")
    for b in range(256)
)

# Markers for masks whose start is only known after a second pass over the reversed text. They
# are whitespace characters: ``str.split`` has removed every one of them from the input, and no
# ``\w`` class can swallow one. They are below U+0100 so that a Latin-1 text stays a one-byte
# string while they are in it (a wider marker makes every later pass copy and scan 2-byte text).
_NUM = "\x1e"
_REL = "\x1f"
# Put by the leading masks before a duration or a size whose sign starts a token (``ssize``,
# ``sd0``): the sign is part of the value, as it is of a number ("-3" and "3" are one "<n>"), so
# "wrong by -0.004 seconds" and "by 0.5 seconds" are one text (version 5). The sign and the
# marker are removed after the number masks. A search for "-<" and "+<" in every text instead
# cost 2% of a signature, a test in the ``_leading`` callback 0.7%.
_SIGNED = "\x1d"

# A duration: units glued to the number, Go's "1h2m3.5s" and systemd's "3min" too (version 5),
# or after a space, "12.3 µs" and a bare "0.27 s" among them (version 5): a formatter that picks
# the unit by size writes "1.2 s" and "980 ms" for one failure.
_DUR = (
    r"(?:\.0++)?(?:ns|us|µs|ms|s|min|m|h)(?:0++(?:\.0++)?(?:ns|us|µs|ms|s|min|m|h))*(?!\w|[-.]\w)"
    # Days only before another unit (kubectl's "3d4h", version 6): a number glued to a lone "d"
    # is as often hexadecimal ("@7317849d", "0000000d").
    r"|d(?:0++(?:\.0++)?(?:ns|us|µs|ms|s|min|m|h))++(?!\w|[-.]\w)"
    r"|(?:\.0++)?\ (?:(?:milli|micro|nano)?seconds?|secs?|minutes?|mins?|hours?|days?|ms|us|µs"
    r"|ns|s)(?!\w)"
)
# An age in days or years standing alone (version 7): kubectl prints an age of 8 days and more
# as "10d", then "3y" or "2y45d"; Prometheus ranges are "[7d]". A hexadecimal value ends in "d"
# as often, and with its digits zeroed it is the same text whatever its length, so only where
# it stands tells them apart: an age is a token of its own after a space, "(", "[" or "=" and
# before a space, a closing bracket, "," or ";" or a final "."; never the first token of a text,
# where a log line puts its sequence number or id (Windows' "0000000d Creating NT transaction"),
# and never glued to a word or "@" ("Event@7317849d").
_AGE = r"(?:d|y(?:0++d)?)(?=[\ ,;)\]]|\.?$|\.\ )"
_SIZE = r"""(?:[.,]0++)*+\ ?(?:[KMGTPE]i?B|bytes?|B)
    (?:\ \(0++(?:\.0++)?\ ?(?:[KMGTPE]i?B|bytes?)\))?"""
# A clock time may end in AM or PM (Java's and .NET's default formats, version 5).
_MERIDIEM = r"(?:\ ?(?:AM|PM|am|pm))?"
_PC = r"[\w.@%+~=-]"
_POS = r"(?::0++(?::0++)?)?"

# Every alternative starts with a literal character, so the regex engine jumps between candidate
# characters instead of trying every position: that is what makes the throughput target. A run
# of zeros is one number (``0*+`` after the first, ``0++`` elsewhere, possessive as a single
# character would be), and the lookbehinds right after the first "0" see what precedes the run.
# Lookbehinds placed after the literal check the character before it. The alternatives keyed on
# "0" are also compiled alone (``_LEADING_NUMBER_ONLY``): a single literal first character is
# found by a plain search, a set of them by testing each character against the set, 2 to 3
# times slower on a text without a match. ``_mask`` uses it when no other alternative can match.
_LEADING_NUMBER = rf"""
    0(?<![\w.]0)(?=0*+(?:[-/:a-fA-FKMGTPEnumshyµ]|[.,]0|\ [KMGTPEBbmnshduµ]))(?:
        (?<![:/-]0)0*+(?:
            (?P<date>[-/]0++[-/]0++(?:[T_\ :]0++[:.,]0++(?:[:.,]0++)*{_MERIDIEM})?
                (?:Z|[+-]0++(?::0++)?)?)
                (?![\w.:/-])
            |(?P<clock>:0++(?::0++)?(?:[.,:]0++)?{_MERIDIEM})(?![\w:]))
        |(?<![:-]0)0*+(?:
            (?P<ip>\.0++\.0++\.0++(?::0++)?)(?![\w.])
            |(?P<mac>(?:0++|[a-fA-F]){{0,3}}(?::(?:0++|[a-fA-F]){{0,4}}){{3,7}})(?![\w:]))
        |(?<!\w-0)(?:
            (?<=[+-]0)(?<![\w<>.+-][+-]0)0*+(?:(?P<ssize>{_SIZE})(?!\w|[-.]\w)|(?P<sd0>{_DUR}))
            |0*+(?:(?P<size>{_SIZE})(?!\w|[-.]\w)|(?P<d0>{_DUR}))
            |(?<=[\ (\[=]0)0*+(?P<age>{_AGE})))"""
_LEADING = re.compile(
    rf"""{_LEADING_NUMBER}
    |<0(?<!\w<0)0*+(?P<d1>{_DUR})
    |>0(?<!\w>0)0*+(?P<d2>{_DUR})
    |~0(?<!\w~0)0*+(?P<d3>{_DUR})
    |/(?<![\w.~/>-]/)(?!0++\.0++\.0++\.0++(?![\w.]))(?P<abs>{_PC}+(?:/{_PC}*)*{_POS})
    |~/(?<![\w.>]~/)(?P<home>{_PC}*(?:/{_PC}*)*{_POS})
    |/(?<=[\w.-]/)(?P<rel>(?:(?:{_PC}+/)+{_PC}*|(?:{_PC}+/)*[\w@%+~=-]*\.[A-Za-z][\w.-]*){_POS})
        (?![\w/])
    """,
    re.VERBOSE,
)
_LEADING_NUMBER_ONLY = re.compile(_LEADING_NUMBER, re.VERBOSE)
_LEADING_OUT = {
    "date": "<date>",
    "clock": "<time>",
    "ip": "<addr>",
    "mac": "<addr>",
    "size": "<size>",
    "d0": "<time>",
    "age": "<time>",
    "ssize": _SIGNED + "<size>",
    "sd0": _SIGNED + "<time>",
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
# Besides ASCII quotes, GNU's `x' (make, ld, bash) and typographic quotes (GCC and coreutils in a
# UTF-8 locale write ‘x’ where the C locale has 'x') quote a token too (version 5). The ASCII
# masks leave the typographic ones out: no ASCII text holds one.
_ASCII_QUOTES = r"""'(?<![\w>'"`‘’“”]')[^'\s{}]*'(?![\w<'"`‘’“”])
    |"(?<![\w>'"`‘’“”]")[^"\s{}]*"(?![\w<'"`‘’“”])
    |`(?<![\w>'"`‘’“”]`)[^`\s{}]*`(?![\w<'"`‘’“”])
    |`(?<![\w>'"`‘’“”]`)[^`'\s{}]*'(?![\w<'"`‘’“”])"""
_QUOTED = re.compile(
    _ASCII_QUOTES
    + r"""
    |‘(?<![\w>'"`‘’“”]‘)[^’\s{}]*’(?![\w<'"`‘’“”])
    |“(?<![\w>'"`‘’“”]“)[^”\s{}]*”(?![\w<'"`‘’“”])""",
    re.VERBOSE,
)
_QUOTED_ASCII = re.compile(_ASCII_QUOTES, re.VERBOSE)
_URL = re.compile(r"(?<![\w.+-])[A-Za-z][\w+.-]*://[^\s'\"<>()\[\]{},;]*")
# A drive path, or a UNC path ("\\\\fs01\\share\\run\\out.log", and the device forms "\\\\?\\" and
# "\\\\.\\", version 6), is one path.
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

# A generic top-level domain: what tells a DNS name from a dotted config key or class name.
# Names under the special-use domains of private networks (".local", ".internal",
# ".localdomain": Kubernetes services, cloud-internal DNS) are host names too (version 5).
_TLD = (
    r"(?:com|net|org|edu|gov|mil|info|biz|local|internal|localdomain"
    r"|(?:com|net|org|edu|gov|ac|co)\.[a-z]{2})"
)
# A top-level domain that ends its token (a port, a "/" or a space may follow, a word or "@"
# may not): a number stops before it (version 6), so that the host-name mask takes the name
# whole, digits or not ("db03.example.com" is "<n>.com", then "<addr>", as "db.example.com" is).
_TLD_END = rf"{_TLD}(?![\w~+@-]|\.[\w~+-])"

# A token with a digit is masked whole. A regex cannot start a match before the digit it keys
# on without trying every position, so tokens that start with their digit are masked in one
# pass, and the others in two: from the first digit to the token's end, then over the reversed
# text from the marker back to the token's start. The number takes the dotted parts after its
# digit ("1.2.3", "v2.0-rc.1", "part-0.gz") up to a capitalised name without a digit
# ("sqlite3.OperationalError" is "<n>.OperationalError", "urllib3.connection.HTTPConnection"
# "<n>.HTTPConnection", version 4), as the reversed pass stops before the parts that come first
# ("core.<n>"): there a dotted name ends in a class, often the exception type that tells two
# failures apart. A digit right after a digit and a dot starts no token (version 5): in "v2.0.1"
# or "-0.5" the number starts before the dot, and the two passes take it whole, as "2.0.1" and
# "0.5" are taken ("<n>.<n>" before); after a word and a dot ("core.7") it does.
_NUM_WORD = rf"[\w~+-]*+(?:\.(?![A-Z][A-Za-z_]*+(?![\w~+-])|{_TLD_END})(?=[\w~+-])[\w~+-]*+)*+"
_NUM_START = re.compile(rf"0(?<![\w~+-]0)(?<!0\.0){_NUM_WORD}")
_NUM_SUFFIX = re.compile(rf"0{_NUM_WORD}")
_NUM_PREFIX = re.compile(rf"{_NUM}[\w~+-]*+")
_REL_PREFIX = re.compile(rf"{_REL}[\w.@%+~=-]*(?:(?:{_NUM}|>n<)[\w.@%+~=-]*)*")
# Reversed ``host:port``: the masked port, ``:``, then a host with a dot or a digit in it.
_HOST_PREFIX = re.compile(r">n<:(?=[\w-]*+(?:\.|>n<))[\w.-]*+(?:>n<[\w.-]*+)*+")
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
# top-level domain (``_TLD``), so dotted config keys and class names ("mapred.task.id") stay
# words.
# With a mailbox before it ("alice@example.com", version 4), the address is one value too. A
# label may be "<n>" (what the number masks left of a name with digits) or "<addr>" (what the
# address masks left: "0:::.local" is "<addr>.local" there, one address, as its signature
# "<n>.local" is when signed again), and a "/" may follow (version 6): Java's
# "host/10.1.2.3:9000", an image "registry.example.com/api:1.2"; a path after the name was
# taken whole by the leading masks already.
_DNS_NAME = rf"(?:<n>|<addr>|[a-z0-9][a-z0-9-]*)(?:\.(?:<n>|<addr>|[a-z0-9-]+))*\.{_TLD}"
_HOSTNAME = re.compile(
    rf"(?<![\w.<>@/+-])(?:(?:[\w.+-]|<n>|<addr>)++@)?{_DNS_NAME}\.?(?![\w<>@-]|\.\w)"
    # A mailbox in angle brackets, as mail headers and servers write it: "<alice@example.com>".
    rf"|<(?<![\w<>]<)(?:[\w.+-]|<n>|<addr>)++@{_DNS_NAME}>(?![\w<>])"
)
_HOSTNAME_HINT = re.compile(rf"\.{_TLD}\b")
# A compound name (version 7): five or more fields joined by colons in one token that starts with
# a word and a single colon, one field holding a number, path or address: an AWS ARN
# ("arn:aws:iam::123456789012:user/alice", whose user or resource varies), a URN, Maven's
# "group:artifact:type:1.2.3". It names one resource, as a URL does, and is one "<url>". A field
# with a value is what tells it from an Objective-C selector ("parser:didStartElement:...:"),
# which names code; a single colon after the first word, from a C++ or Rust path ("a::b::c").
# A colon before a space or the end separates words, not fields.
_COMPOUND_CHAR = r"""[^\s:,;()\[\]{}'"]"""
_COMPOUND = re.compile(
    rf"""(?<![^\s(\[{{=,;])[A-Za-z][\w.+-]*+:(?!:)
    (?=[^\s,;()\[\]{{}}'"]*<(?:n|path|addr)>)
    (?:{_COMPOUND_CHAR}*+:(?!\s|$)){{3,}}[^\s,;()\[\]{{}}'"]*?(?=[.:]?(?:[\s,;()\[\]{{}}'"]|$))""",
    re.VERBOSE,
)
# An address in round brackets right after a value is that value's address (version 7): libpq
# writes 'connection to server at "db.example.com" (10.0.0.5), port 5432 failed' for a host
# given by name and 'at "10.0.0.5", port 5432' for one given by address, so the bracket is
# dropped and both sign alike.
_VALUE_ADDRESS = re.compile(r"(?<=>)\ \(<addr>\)(?=[\s,;:.)\]]|$)")
# A percent sign after a space is its number's (version 7): some formatters write "93.5 %" where
# others write "93.5%" for one value.
_SPACED_PERCENT = re.compile(r"(?<=<n>)\ %(?![\w%<])")
# An address inside a host before a port: "a.<addr>:<n>", "<addr>-x:<n>" (see ``_addresses``).
_ADDRESS_PORT = re.compile(r"<addr>(?:[\w.-]|<n>|<addr>)*+:<(?:n|addr)>")
_SEP = r"(?:[,;]\ ?|\ )"
_NOUN_STEM = r"\ [A-Za-z]{2,}[^\W\dsui_]"
_NOUN = rf"{_NOUN_STEM}s(?![\w<])"


# The words after a count that are made singular: the first, and the second too (version 5),
# as in "3 previous errors" and "1 previous error", or "2 files changed" and "1 file changed".
# Each is a plural noun or not, whatever the other is, so a signature stays its own signature.
def _counted_words(first: str, between: str, second: str) -> str:
    """The words after a count, the groups named for the alternative of ``_POST`` they are in."""
    return rf"""(?=\ \w++(?<=s)(?!<)|\ [A-Za-z][\w-]*+\ \w++(?<=s)(?!<))
        (?:(?P<{first}>{_NOUN})|(?P<{between}>\ [A-Za-z][\w-]*+))(?P<{second}>{_NOUN})?"""


# Bracketed values, runs and counted nouns in one pass (one regex call per text is what keeps
# the throughput; ``_mask_words`` runs it only on a text where a run or a bracket can match, and
# ``_COUNTED`` on one where only a counted noun can), each keyed on the "<" of a value: a
# bracket standing alone that holds one value or a run of them; a run of one kind of value,
# with its counted noun if any; a count and its noun, which is made singular ("1 warning" and
# "3 warnings" are one text; words ending in "ss", "us" or "is" keep their "s": "process",
# "status", "this"), one word between them or none.
_POST = re.compile(
    rf"""<(?:
        (?<=[(\[{{]<)(?<![\w>\])][(\[{{]<)(?P<inner>{_KINDS})>(?:{_SEP}<(?P=inner)>)*
            (?P<close>[)\]}}])
        |(?<![^\s,;:=(\[{{]<)(?=[a-z*]++>{_SEP}<)(?P<kind>{_KINDS})>(?:{_SEP}<(?P=kind)>)+
            (?![^\s,;:.)\]}}])(?P<tail>{_counted_words("noun", "between", "noun2")})?
        |n>{_counted_words("counted", "adj", "counted2")})""",
    re.VERBOSE,
)
# ``_POST``'s counted-noun alternative alone, for a text where no other can match.
_COUNTED = re.compile(rf"<n>{_counted_words('counted', 'adj', 'counted2')}", re.VERBOSE)
# The two lookaheads only fail early where the alternative after them would fail anyway (a run
# needs another value after its separator; a counted noun is a word ending in "s"): they spare
# the regex engine the slower attempts, they change no match.
# Empty brackets and brackets holding values are one thing: "()" and "(host-1)" alike. Only
# brackets that start a token: in "error[E0433]" or "f(3)" the bracket belongs to its word.
# ``_POST`` handles brackets with values; this one a bracket standing alone that holds nothing.
_BRACKETED = re.compile(r"[(\[{](?<![\w>\])][(\[{])[)\]}]")
_BRACKET_OUT = {"()": "(<*>)", "[]": "[<*>]", "{}": "{<*>}"}
# A relative path that starts at "." or "..": "./run", "../lib/x".
_DOTPATH = re.compile(r"\.(?<![\w./~>-]\.)\.?/[\w.@%+~=-]+(?:/[\w.@%+~=-]*)*(?::0++(?::0++)?)?")


@dataclass(frozen=True, slots=True)
class _Patterns:
    """The patterns ``_mask`` runs, by role.

    They are compiled twice: as written (``_PATTERNS``), and with ``re.ASCII``
    (``_ascii_patterns()``, on first use) for a text that is all ASCII, as most failure
    texts are. On such a
    text both match alike (``\\w``, ``\\d``, ``\\b`` and ``\\s`` differ only on other
    characters, and the whitespace that ASCII ``\\s`` lacks, U+001C to U+001F, is gone from
    a normalised text whenever a pattern with ``\\s`` runs). The ASCII copies spell every class
    out as its ASCII members (``_ascii_pattern``), which ``re`` compiles to one bitmap test per
    character, where ``[\\w~+-]`` as written tests a bitmap, then asks the character database.
    """

    url: re.Pattern[str]
    winpath: re.Pattern[str]
    dotpath: re.Pattern[str]
    hexcolon: re.Pattern[str]
    ipv6: re.Pattern[str]
    leading: re.Pattern[str]
    leading_number: re.Pattern[str]
    num_start: re.Pattern[str]
    num_suffix: re.Pattern[str]
    rel_prefix: re.Pattern[str]
    num_prefix: re.Pattern[str]
    host_prefix: re.Pattern[str]
    percent: re.Pattern[str]
    quoted: re.Pattern[str]
    hostname_hint: re.Pattern[str]
    hostname: re.Pattern[str]
    value_address: re.Pattern[str]
    address_port: re.Pattern[str]
    compound: re.Pattern[str]
    month_day: re.Pattern[str]
    calendar: re.Pattern[str]
    post: re.Pattern[str]
    counted: re.Pattern[str]
    bracketed: re.Pattern[str]


_CLASS_ESCAPES = frozenset("wWdDsS")


_ASCII = tuple(chr(c) for c in range(128))


@cache
def _ascii_class(source: str) -> str:
    """The ASCII members of the class ``source`` (``[...]`` or ``\\w``...) spelled out, which
    ``re`` compiles to one bitmap, where a class holding a category tests it separately.

    Cached, and tested with the class compiled once: the masks repeat a few dozen classes,
    and asking ``re.fullmatch`` for each character of each took 10 ms of the 18 ms that
    compiling the ASCII masks cost (a rescan that reads one run pays it)."""
    fullmatch = re.compile(source, re.ASCII).fullmatch
    members = [ch for ch in _ASCII if fullmatch(ch)]
    if not members:
        return "(?!)"
    return "[" + "".join("\\" + ch if ch in "\\]^-[" else ch for ch in members) + "]"


def _ascii_pattern(pattern: str) -> str:
    """``pattern`` with every class replaced by its ASCII members: on an ASCII text it matches
    exactly what ``pattern`` matches, in fewer steps."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\":
            escape = pattern[i : i + 2]
            out.append(_ascii_class(escape) if escape[1:] in _CLASS_ESCAPES else escape)
            i += 2
        elif pattern[i] == "[":
            j = i + 2 if pattern[i + 1] == "^" else i + 1
            if pattern[j] == "]":
                raise ValueError(f"a class that starts with ']' in {pattern!r}")
            while pattern[j] != "]":
                j += 2 if pattern[j] == "\\" else 1
            out.append(_ascii_class(pattern[i : j + 1]))
            i = j + 1
        else:
            out.append(pattern[i])
            i += 1
    return "".join(out)


_PATTERN_LIST = (
    *(_URL, _WINPATH, _DOTPATH, _HEXCOLON, _IPV6, _LEADING, _LEADING_NUMBER_ONLY, _NUM_START),
    *(_NUM_SUFFIX, _REL_PREFIX, _NUM_PREFIX, _HOST_PREFIX, _SPACED_PERCENT, _QUOTED),
    _HOSTNAME_HINT,
    *(_HOSTNAME, _VALUE_ADDRESS, _ADDRESS_PORT, _COMPOUND, _MONTH_DAY, _CALENDAR, _POST, _COUNTED),
    _BRACKETED,
)
_PATTERNS = _Patterns(*_PATTERN_LIST)


def _ascii_patterns() -> _Patterns:
    """The ASCII masks, compiled once: spelling their classes out and compiling them takes
    about 20 to 40 ms, which every command importing this module for ``SIGNATURE_VERSION``
    alone (a rescan, a worker) would otherwise pay at import."""
    global _ASCII_PATTERNS
    if _ASCII_PATTERNS is None:
        _ASCII_PATTERNS = _Patterns(
            *(
                re.compile(_ascii_pattern(p.pattern), p.flags & ~re.UNICODE | re.ASCII)
                for p in (_QUOTED_ASCII if p is _QUOTED else p for p in _PATTERN_LIST)
            )
        )
    return _ASCII_PATTERNS


_ASCII_PATTERNS: _Patterns | None = None

#: ASCII texts masked with the patterns as written before the ASCII masks are compiled: both
#: give the same result on such a text, and the masks save about a microsecond a text, so
#: compiling them pays only over thousands of texts (a rescan that reads one run signs a few
#: dozen, and would spend 20 to 40 ms compiling them).
ASCII_MASKS_AFTER = 2048
_ascii_texts = [0]


def _patterns_for(text: str) -> _Patterns:
    """The masks for ``text``: the ASCII ones for an ASCII text once they pay."""
    if not text.isascii():
        return _PATTERNS
    if _ASCII_PATTERNS is not None:
        return _ASCII_PATTERNS
    _ascii_texts[0] += 1
    return _ascii_patterns() if _ascii_texts[0] > ASCII_MASKS_AFTER else _PATTERNS


# Failure texts repeat: a log or a retry loop writes one template again and again with other
# numbers. The signature depends only on the text with every digit made "0", so those bytes are
# an exact memo key: equal keys give equal signatures whatever the digits were. Only short
# texts are kept (hashing a long one costs more than it saves), and the memo is emptied when
# full, which bounds it to about _MEMO_ENTRIES * (_MEMO_KEY_BYTES + _MAX_OUTPUT) bytes plus
# object overheads (about 7 MB; 1.2 MB for 100-byte texts).
_MEMO: dict[bytes, str] = {}
_MEMO_ENTRIES = 4096
_MEMO_KEY_BYTES = 1024

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
    return _render_json_string(value) if isinstance(value, str) else "<n>"


def _render_json_string(value: str) -> str:
    """A JSON string as the text it holds (version 6), which the masks after the JSON pass
    treat as any text: its quotes are syntax, not a mark of a value, so ``"timeout"`` and
    ``"forbidden"`` stay words where ``"a81f0c"`` becomes ``<n>``. An empty string, and one
    with a brace (which the JSON pass of a second signing would see), are ``<str>``."""
    text = " ".join(value.split())
    return "<str>" if not text or "{" in text or "}" in text else text


def _canonical_json(text: str) -> str:
    """Re-render the JSON objects in ``text``, and the dictionaries Python prints (version 7);
    key order is the thing that must not matter."""
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


# A Python literal is looked at up to this many characters (the text is at most ``_MAX_SCAN``).
_MAX_LITERAL = 4096


def _python_literal(text: str, start: int) -> tuple[object, int] | None:
    """The dictionary Python prints at ``text[start]`` (``{'error': {'type': 'x'}}``, as an SDK
    prints a response body) as the JSON value it stands for, and where it ends; None if it is
    none (version 7). Strings, numbers, ``True``, ``False``, ``None``, lists, tuples and nested
    dictionaries are read (``ast.literal_eval``, which evaluates nothing); the same body printed
    as JSON and by Python then signs alike."""
    depth, quote, at, stop = 0, "", start, min(len(text), start + _MAX_LITERAL)
    while at < stop:
        ch = text[at]
        if quote:
            if ch == "\\":
                at += 1
            elif ch == quote:
                quote = ""
        elif ch == "'" or ch == '"':
            quote = ch
        elif ch in "{[(":
            depth += 1
        elif ch in "}])":
            depth -= 1
            if not depth:
                break
        at += 1
    else:
        return None
    try:
        # An invalid escape ("\\d") is a SyntaxWarning, not an error: the string is read as
        # written, as Python reads it.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = ast.literal_eval(text[start : at + 1])
        return (_from_literal(value), at + 1) if isinstance(value, dict) else None
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def _from_literal(value: object) -> object:
    """A value ``ast.literal_eval`` read, as JSON would hold it: a key that is no string is
    rendered, a tuple is a list, a set is a sorted list (its order is the hash's), bytes are
    text."""
    if isinstance(value, dict):
        return {
            k if isinstance(k, str) else _render_json(_from_literal(k)): _from_literal(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_from_literal(v) for v in value]
    if isinstance(value, set | frozenset):
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
    key = text.encode("utf-8", "surrogatepass").translate(_ZERO_DIGITS)
    small = len(key) <= _MEMO_KEY_BYTES
    if small:
        found = _MEMO.get(key)
        if found is not None:
            return found
    text = key.decode("utf-8", "surrogatepass")
    if "\x1b" in text:
        # Again while one is left, a few times: removing one can join an ESC and what follows
        # it into another ("\x1b\x1b[0m[[" leaves "\x1b[["), which a second signing would
        # remove. Bounded: each pass is over the whole text, and escapes nested deeper than
        # this are a hostile text, not a terminal's (a megabyte of them took minutes).
        text, removed = _CSI.subn("", text)
        for _ in range(_CSI_PASSES):
            if not removed or "\x1b[" not in text:
                break
            text, removed = _CSI.subn("", text)
    if "\\u" in text and "{" in text:
        text = _JSON_ESCAPE.sub("?", text)
    if len(text) > _MAX_SCAN and "00" in text:
        text = _collapse(text)
    classes = key.translate(_CLASSES).decode("latin-1")
    plain = "r" not in classes
    text = text[:_MAX_SCAN]
    if "w" in classes or "  " in text or text[:1] == " " or text[-1:] == " ":
        text = " ".join(text.split())
    text = _mask(text, plain, not plain or "m" in classes)
    if len(text) > _MAX_OUTPUT:
        text = _shorten(text)
    if small:
        if len(_MEMO) >= _MEMO_ENTRIES:
            _MEMO.clear()
        _MEMO[key] = text
    return text


@contextmanager
def signature_memo_disabled() -> Iterator[None]:
    """Sign every text from scratch inside the block: :func:`canonical_signature` neither looks
    up nor keeps a memo entry, so a benchmark measures the masks themselves, as on a stream in
    which no text repeats once its digits are zeroed. Signatures never change by it.

    >>> with signature_memo_disabled():
    ...     canonical_signature("exit status 7")
    'exit status <n>'
    """
    global _MEMO_KEY_BYTES
    kept, _MEMO_KEY_BYTES = _MEMO_KEY_BYTES, -1
    try:
        yield
    finally:
        _MEMO_KEY_BYTES = kept


def clear_signature_memo() -> None:
    """Forget every signature :func:`canonical_signature` has memoized.

    Signatures never change by it (the memo is exact); benchmarks call it so that every text
    is signed from scratch the first time it is seen in a timed pass.

    >>> clear_signature_memo()
    """
    _MEMO.clear()


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


def _mask(text: str, plain: bool = False, months: bool = True) -> str:
    """Masks 3 to 8 of the module docstring, on whitespace-normalised ``text`` whose digits are
    all "0" (runs of them collapsed or not: the masks treat a run as one digit).

    ``plain``: the text has none of the bytes of ``_RARE``, so the masks that need them are
    skipped untested; ``months``: it may hold a month name (JSON can decode one, so a text that
    is not plain always may). Each test below only skips a pass that could not match.
    """
    if not text:
        return EMPTY_SIGNATURE
    if not plain and "{" in text:
        text = _canonical_json(_collapse(text))
    # No mask writes a non-ASCII character, so an ASCII text stays one until the end.
    p = _patterns_for(text)
    if not plain:
        if "://" in text:
            text = p.url.sub("<url>", text)
        if ":\\" in text or "\\\\" in text:
            text = p.winpath.sub("<path>", text)
        if "./" in text:
            text = p.dotpath.sub("<path>", text)
    if "::" in text and _ipv6_hint(text):
        # The IPv6 passes count hex digits: they take collapsed digit runs.
        text = p.ipv6.sub("<addr>", _collapse(text))
    # No mask adds a colon, so this count bounds the colons every later mask sees.
    colons = text.count(":")
    if colons >= 5:
        text = _collapse(text)
        if _colon_run(text):
            text = p.hexcolon.sub("<addr>", text)
    if "0" in text:
        # Only the alternatives keyed on a digit can match without "/", "<0", ">0" or "~0".
        numeric = plain or (
            "/" not in text and "<0" not in text and ">0" not in text and "~0" not in text
        )
        text = p.num_start.sub(
            "<n>", (p.leading_number if numeric else p.leading).sub(_leading, text)
        )
        if "0" in text:
            text = p.num_suffix.sub(_NUM, text)
    elif not plain and "/" in text:
        text = p.leading.sub(_leading, text)
    if _NUM in text or _REL in text or ":<n>" in text:
        rev = text[::-1]
        if _REL in rev:
            rev = p.rel_prefix.sub(">htap<", rev)
        if _NUM in rev:
            rev = p.num_prefix.sub(">n<", rev)
        if ">n<:" in rev:
            rev = p.host_prefix.sub(">rdda<", rev)
        text = rev[::-1]
    if _SIGNED in text:
        text = text.replace("-" + _SIGNED, "").replace("+" + _SIGNED, "")
    return _mask_words(text, p, plain, months, colons >= 4)


def _collapse(text: str) -> str:
    """``text`` with every run of zeros made one "0" (three ``str.replace`` calls for runs of up
    to six digits, more only for longer ones; a regex substitution allocates per run)."""
    text = text.replace("000", "0").replace("00", "0")
    while "00" in text:
        text = text.replace("00", "0")
    return text


_HEX_COLON = frozenset("0123456789abcdefABCDEF:")


def _ipv6_hint(text: str) -> bool:
    """Whether a run of hex digits and colons around a "::" holds a digit, as every address
    ``_IPV6`` takes does: most texts with "::" hold ``Class::method`` names, and that pass tries
    every hex digit of the text."""
    at = text.find("::")
    while at >= 0:
        start, end = at, at + 2
        while start and text[start - 1] in _HEX_COLON:
            start -= 1
        while end < len(text) and text[end] in _HEX_COLON:
            end += 1
        if "0" in text[start:end]:
            return True
        at = text.find("::", end)
    return False


def _colon_run(text: str) -> bool:
    """Whether four colons in a row each follow the one before within five characters, as in
    every address ``_HEXCOLON`` takes: that pass tries every hex digit of the text, and most
    texts with five colons hold clock times, not addresses."""
    run, last = 0, -9
    at = text.find(":")
    while at >= 0:
        run = run + 1 if at - last <= 5 else 1
        if run == 4:
            return True
        last = at
        at = text.find(":", at + 1)
    return False


def _mask_words(text: str, p: _Patterns, plain: bool, months: bool, colons: bool) -> str:
    """The masks of :func:`_mask` that look at words and placeholders: quotes, host names,
    addresses, compound names, dates in words, runs, brackets and counted nouns.

    ``colons``: the text had four colons or more before the masks (counting them costs as
    much as a small mask, and ``_mask`` counts them anyway)."""
    if "> %" in text:
        text = p.percent.sub("%", text)
    quoted = not plain and (
        "'" in text
        or '"' in text
        or "`" in text
        # ``isascii`` takes constant time: an ASCII text pays nothing for typographic quotes.
        or (not text.isascii() and ("‘" in text or "“" in text))
    )
    if quoted:
        # Until nothing matches: masking "("x")" makes its outer quotes hold one token.
        text, found = p.quoted.subn("<str>", text)
        while found:
            text, found = p.quoted.subn("<str>", text)
        quoted = (
            "'" in text
            or '"' in text
            or "`" in text
            or (not text.isascii() and ("‘" in text or "“" in text))
        )
    # Host names and dates neither hold nor leave quotes, so ``quoted`` stays right below.
    if "." in text and p.hostname_hint.search(text):
        text = p.hostname.sub("<addr>", text)
    if "<addr>" in text:
        text = _addresses(text, p, plain)
        # An address made "<n>" can join what follows into a host name that a second signing
        # would take ("<addr>.<n>.internal" from "x.internal..y.internal"): again, until none.
        while "." in text and p.hostname_hint.search(text):
            masked = p.hostname.sub("<addr>", text)
            if masked == text:
                break
            text = _addresses(masked, p, plain)
    # A colon before a space separates words, not the fields of a name.
    if colons and text.count(":") - text.count(": ") >= 4 and "<" in text:
        text = p.compound.sub("<url>", text)
    if months and " <n>" in text and p.month_day.search(text):
        text = p.calendar.sub("<date>", text)
    while True:
        # A run needs ">" and a separator before its next "<"; a bracket alternative "(<",
        # "[<" or "{<" (a plain text has no bracket). Without either, only counted nouns can
        # change, and they need "n> ".
        if (
            "> <" in text
            or ">," in text
            or ">;" in text
            or (not plain and ("(<" in text or "[<" in text or "{<" in text))
        ):
            text = p.post.sub(_post, text)
        elif "n> " in text:
            text = p.counted.sub(_counted, text)
        if not plain and ("()" in text or "[]" in text or "{}" in text):
            text = p.bracketed.sub(_bracketed, text)
        if not quoted:
            return text
        # A run or bracket that became one value can leave a quoted single token: mask it, and
        # look again, until nothing changes (a signature is its own signature).
        text, found = p.quoted.subn("<str>", text)
        if not found:
            return text


def _addresses(text: str, p: _Patterns, plain: bool) -> str:
    """``text`` with each ``<addr>`` made ``<n>`` (version 7), the address in brackets right
    after a value dropped first: a host may be written as an IP, a name with a domain, or a
    short name with a digit ("node12", ``<n>``), and one failure on two hosts must sign
    alike."""
    if not plain and "(<addr>)" in text:
        text = p.value_address.sub("", text)
    # "main.c:<addr>" becomes "main.c:<n>", which reads as a host and its port: it is taken
    # whole, as a second signing would take it ("main.c:12:5" is one value, as
    # "src/main.c:12:5" is one path). Only an address at a port's place or in a host's can
    # make such a pair: other texts skip the passes over the reversed text.
    again = ":<" in text and (":<addr>" in text or p.address_port.search(text) is not None)
    text = text.replace("<addr>", "<n>")
    while again and ":<n>" in text:
        masked = p.host_prefix.sub(">n<", text[::-1])[::-1]
        again = masked != text
        text = masked
    return text


def _post(match: re.Match[str]) -> str:
    close = match["close"]
    if close is not None:
        pair = match.string[match.start() - 1] + close
        return _BRACKET_OUT[pair][1:] if pair in _BRACKET_OUT else match[0]
    kind = match["kind"]
    if kind is None:
        return _counted(match)
    if match["tail"] is None:
        return f"<{kind}>"
    # A run's counted nouns are made singular after a run of numbers only.
    first, between, second = match.group("noun", "between", "noun2")
    if kind != "n":
        return f"<{kind}>{first or between}{second or ''}"
    return f"<n>{between if first is None else first[:-1]}{'' if second is None else second[:-1]}"


def _counted(match: re.Match[str]) -> str:
    """A count and the words after it, each plural noun among the two made singular."""
    first, between, second = match.group("counted", "adj", "counted2")
    return f"<n>{between if first is None else first[:-1]}{'' if second is None else second[:-1]}"


def _bracketed(match: re.Match[str]) -> str:
    found = match.group()
    return _BRACKET_OUT.get(found[0] + found[-1], found)


@dataclass(frozen=True)
class MaskRule:
    """One mask of :func:`canonical_signature`, in the order the masks run: its patterns (the
    compiled regexes the code uses), what it writes, why it is general, and an example.

    >>> MASK_RULES[0].name
    'digits'
    """

    name: str
    patterns: tuple[re.Pattern[str], ...]
    output: str
    reason: str
    example: str
    signature: str


#: Every mask, in order. No pattern names a word of any one system's vocabulary: the only words
#: they hold are in :data:`GENERIC_WORDS` (tests/doctor/test_signature_rules.py checks both).
MASK_RULES: tuple[MaskRule, ...] = (
    MaskRule(
        "digits",
        (_DIGITS,),
        "0",
        "digit values never tell failure classes apart; the words around them do",
        "exit status 137",
        "exit status <n>",
    ),
    MaskRule(
        "json",
        (),
        "{key: value, ...}",
        "serializers order keys freely; a string's quotes are syntax, so its text is masked "
        "as any text is: a word stays, an id becomes <n>; a dictionary Python prints is read "
        "as the JSON it stands for (version 7)",
        'stage failed: {"id": "a81f", "error": "timeout", "n": 2}',
        "stage failed: {error: timeout, id: <n>, n: <n>}",
    ),
    MaskRule(
        "url",
        (_URL,),
        "<url>",
        "a URL is one value, whatever its path and query hold; masked before numbers",
        "fetch https://example.com/v2/a1b2/runs?page=3 failed",
        "fetch <url> failed",
    ),
    MaskRule(
        "windows-path",
        (_WINPATH,),
        "<path>",
        "a drive path or a UNC path (version 6) is one value",
        r"cannot open C:\runs\7\out.log",
        "cannot open <path>",
    ),
    MaskRule(
        "dot-path",
        (_DOTPATH,),
        "<path>",
        "a path relative to . or .. is one value even without an extension",
        "Error loading ./runtime_malloc: missing",
        "Error loading <path>: missing",
    ),
    MaskRule(
        "hex-colon",
        (_HEXCOLON, _IPV6),
        "<n> (an address)",
        "IPv6 addresses (full, compressed, with a zone, in brackets with a port) and MAC "
        "addresses that start with a letter",
        "from fe80::1%eth0 and [2001:db8::1]:443",
        "from <n> and <n>",
    ),
    MaskRule(
        "leading",
        (_LEADING, _LEADING_NUMBER_ONLY),
        "<date> <time> <n> <size> <path>",
        "ISO dates, clock times, durations with their units, ages standing alone (10d, 3y; "
        "version 7), IPv4 with port, sizes with their units, and absolute, home and relative "
        "paths (with :line:col) are single values; paths are taken before numbers so a path "
        "with digits stays one token",
        "at 2024-05-01T12:03:04Z took 1.5s on 10.0.0.7:80 read /v2/54fa/servers, 5.2 KB",
        "at <date> took <time> on <n> read <path>, <size>",
    ),
    MaskRule(
        "numbers",
        (_NUM_START, _NUM_SUFFIX, _NUM_PREFIX),
        "<n>",
        "any other token with a digit is one value, glued punctuation and units included: "
        "numbers, hex, ids, UUIDs, versions, 41C, #12, x86_64; a capitalised dotted part after "
        "it is a class name and stays",
        "job attempt_1_0_m_3 (pid 0x1f, #12) hit 41C in sqlite3.OperationalError",
        "job <n> (pid <n>, #<n>) hit <n> in <n>.OperationalError",
    ),
    MaskRule(
        "host-port",
        (_HOST_PREFIX,),
        "<n> (an address)",
        "host:port with a dot or digit in the host is an address, and so is file:line",
        "connect db.internal:5432 refused",
        "connect <n> refused",
    ),
    MaskRule(
        "sign",
        (),
        "<time> <size>",
        "a sign before a duration or a size is part of the value, as it is of a number",
        "clock wrong by -0.004 seconds after +12 KB",
        "clock wrong by <time> after <size>",
    ),
    MaskRule(
        "percent",
        (_SPACED_PERCENT,),
        "<n>%",
        "a percent sign after a space belongs to its number, as formatters write either "
        "(version 7)",
        "disk 93.5 % full, was 9%",
        "disk <n>% full, was <n>%",
    ),
    MaskRule(
        "quoted",
        (_QUOTED,),
        "<str>",
        "a quoted single token is a value; a quoted phrase keeps its words",
        "KeyError: 'run_id'",
        "KeyError: <str>",
    ),
    MaskRule(
        "hostname",
        (_HOSTNAME, _HOSTNAME_HINT),
        "<n> (an address)",
        "a DNS name with a generic top-level domain is an address, digits or not, and so is a "
        "mailbox at one",
        "mail to alice@example.com via ns.example.com failed",
        "mail to <n> via <n> failed",
    ),
    MaskRule(
        "addresses",
        (_VALUE_ADDRESS,),
        "<n>",
        "an address is a value like a number, so a host written as an IP, a domain name or a "
        "short name with a digit signs alike; an address in brackets right after a value is "
        "that value's address and is dropped (version 7)",
        'connect to host node12 or 10.0.0.12 or "db.example.com" (10.0.0.5) failed',
        "connect to host <n> or <n> or <str> failed",
    ),
    MaskRule(
        "compound",
        (_COMPOUND,),
        "<url>",
        "five or more colon-joined fields in one token, one holding a value, name one resource "
        "as a URL does: an ARN, a URN, a Maven coordinate (version 7)",
        "User: arn:aws:iam::123456789012:user/alice is not authorized",
        "User: <url> is not authorized",
    ),
    MaskRule(
        "plural",
        (_POST, _COUNTED),
        "singular noun",
        "after a count, English writes the same noun singular or plural",
        "cargo: 11 errors, 1 warning emitted",
        "cargo: <n> error, <n> warning emitted",
    ),
    MaskRule(
        "calendar",
        (_CALENDAR, _MONTH_DAY),
        "<date>",
        "a date in words (weekday, month, day, clock, zone, year) is one value",
        "connection at Sat Jun 18 02:08:10 2005 closed",
        "connection at <date> closed",
    ),
    MaskRule(
        "runs",
        (_POST,),
        "one value",
        "a list of values of one kind (comma-joined addresses, channels, ids) has as many "
        "entries as the run had: it is one value",
        "replicas 10.0.0.1:50010,10.0.0.2:50010 lost; channels 1, 6, 11 busy",
        "replicas <n> lost; channels <n> busy",
    ),
    MaskRule(
        "brackets",
        (_POST, _BRACKETED),
        "(<*>)",
        "a bracket standing alone holds one value or none: () and (host-1) are alike",
        "connection from 10.0.0.1 () failed; pci_stats=[] ok",
        "connection from <n> (<*>) failed; pci_stats=[<*>] ok",
    ),
)

#: The only words mask patterns may contain: units, calendar names and placeholder names, which
#: every system shares.
GENERIC_WORDS = frozenset(
    {
        # units of time and size
        *("ns", "us", "µs", "ms", "milli", "micro", "nano", "sec", "secs", "second", "seconds"),
        *("min", "mins", "minute", "minutes", "hour", "hours", "day", "days", "byte", "bytes"),
        *("kb", "mb", "gb", "tb", "pb", "eb", "kib", "mib", "gib", "tib", "pib", "eib", "ib"),
        # calendar names and the halves of a 12-hour clock
        *("am", "pm"),
        *("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
        *("mon", "tue", "wed", "thu", "fri", "sat", "sun"),
        # generic top-level domains, and the special-use ones of private networks
        *("com", "net", "org", "edu", "gov", "mil", "info", "biz", "ac", "co"),
        *("local", "internal", "localdomain"),
        # the placeholders signatures write
        *("addr", "path", "time", "date", "size", "url", "str"),
    }
)


# The batch grouping builds on canonical_signature; it is its own module, named here.
from rundoctor._grouping import (  # noqa: E402
    DEFAULT_GROUPING,
    GroupingConfig,
    group_signatures,
    signature_groups,
)
