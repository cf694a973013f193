"""The fast ``canonical_signature`` gives exactly the signatures of the frozen version-7 copy.

Breakers persist counts keyed by signature, so a speed-up may not change one output without
bumping ``SIGNATURE_VERSION``. The comparison covers every Loghub-2k development message (as
written, with other digits, and signed again from the memo) and generated failure-like text.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rundoctor.signature as signature
from bench.signatures import LOGHUB_DIR, load_loghub
from rundoctor.signature import SIGNATURE_VERSION, canonical_signature, clear_signature_memo
from tests.doctor import _signature_v7 as frozen
from tests.doctor.test_signature import DIGITS, PROPERTIES, TEXTS

DIGIT_RUN = re.compile(r"[0-9]+")


def test_the_frozen_copy_is_of_the_shipped_version() -> None:
    assert frozen.SIGNATURE_VERSION == SIGNATURE_VERSION


@pytest.mark.skipif(not LOGHUB_DIR.is_dir(), reason="the Loghub-2k samples are not on this machine")
def test_every_development_message_gets_the_frozen_signature() -> None:
    texts = [text for contents, _ in load_loghub().values() for text in contents]
    expected = [frozen.canonical_signature(text) for text in texts]
    clear_signature_memo()
    assert [canonical_signature(text) for text in texts] == expected
    # Second time round every short text comes from the memo.
    assert [canonical_signature(text) for text in texts] == expected
    # Other digits hit the memo entry of the first text; the frozen copy agrees.
    shifted = [DIGIT_RUN.sub(lambda m: str(int(m[0]) * 7 + 3), text) for text in texts]
    assert [canonical_signature(text) for text in shifted] == expected
    assert [frozen.canonical_signature(text) for text in shifted] == expected


@PROPERTIES
@given(TEXTS)
def test_generated_text_gets_the_frozen_signature_fresh_and_memoized(text: str) -> None:
    clear_signature_memo()
    expected = frozen.canonical_signature(text)
    assert canonical_signature(text) == expected
    assert canonical_signature(text) == expected


@PROPERTIES
@given(TEXTS, st.data())
def test_a_memo_entry_answers_for_other_digits_as_the_frozen_copy_does(
    text: str, data: st.DataObject
) -> None:
    canonical_signature(text)
    changed = DIGIT_RUN.sub(lambda _: data.draw(DIGITS), text)
    assert canonical_signature(changed) == frozen.canonical_signature(changed)


# Pieces of what the fast paths of canonical_signature test for before they skip a pass or take
# a narrower pattern: digits and digit runs (ASCII and not), the bytes that select the full
# masks ("/", quotes, brackets, braces, "<", ">", "~", a backslash), "<0" ">0" "~0" before a
# duration, ":" and "." around numbers and host names, "," and ";" between values, words that
# end in "s" after a count, month names, placeholders already in the text, and whitespace
# that str.split() removes (tabs, the marker bytes \x1c-\x1f, NEL, no-break and wide spaces).
FAST_PATH_PIECES = st.sampled_from(
    [
        "0", "00", "7", "42", "1.5", "10.0.0.1", "10.0.0.1:80", "fe80::1", "0x1f", "v1.2.3",
        "a0.0b", "blk_-17", "x86_64", "attempt_1_2_m_3", "wl0", "2024-05-01T12:03:04Z", "12:03",
        " ", "  ", "\t", "\n", "\x1c", "\x1d", "\x1e", "\x1f", "\x85", "\xa0", "\u2000",
        "\u3000", "\u0663", "\uff10", "\u00b2", "é", "Ω", "/", "./", "../", "~/", "/tmp/x.rs",
        ":", "::", ".", ",", ", ", ";", "; ", "-", "_", "~", "+", "=", "@", "#", "%", "\\",
        "C:\\", "://", "'", '"', "`", "(", ")", "[", "]", "{", "}", "()", "[]", "<", ">",
        "<0", ">0", "~0", "<n>", "<addr>", ":<n>", "<*>", "(<n>)", "ms", "s", " ms", " sec",
        " KB", "B", " bytes", "µs", "h", "e", "E", "K", "error", " errors", " warning",
        "s,", "ss", "status", "Jun", "Jun.", "June", "Sat", "Dec", "host.example.com", "a.b",
        "db.internal", "true", '"k": ',
        # Issue 11, no memo: hex-colon runs against clock times, runs and counted nouns,
        # leading, trailing and doubled spaces.
        "ab:cd:ef:01:23:45", "1:2:3:4:5:6", "a:b:c:d:e", "12:30:00 12:30:01", ": :",
        "<n> ", "> <", ">,", ">;", "n> ", " 3 files", " 2 class", "s ",
        # Version 5: a typographic quote makes a text not plain (its first byte is marked with
        # the rare ones); spaced and glued units, AM/PM, a word before a counted noun.
        "‘", "’", "“", "”", "‘x’", "`x'", "\u2018", "\u201c", "\u2003", "€", " AM", "pm",
        "min", " µs", " s", "a.local", ".internal", " new", " new files",
        # Version 6: a number stops before a top-level domain; days before a unit; JSON
        # strings as text; JSON escapes in a text with a brace.
        "db03.example.com", "a.b0.co.uk", "/<", ".com:", ".com@", "3d4h", "0d0m", "0m.",
        '{"e": "timeout"}', '{"e": "a b", "f": ""}', '": "', "\\u003c", "\\u00e9", "\\u",
        "\\\\", "\\\\fs0\\s\\", "\\\\?\\", "\\\\.\\",
        # Version 7: addresses are "<n>" (an address at a port's or a host's place, one in
        # brackets after a value); ages standing alone; dictionaries Python prints; compound
        # names with a value.
        "(<addr>)", " (10.0.0.1)", "<addr>:", ":<addr>", "a.<addr>", "<addr>-x", "main.c:",
        " 10d", "0d", " 3y", "2y45d", "d", "y", "D", "[7d]", "=0d", "{'a': 'b'}", "{'a': [1, (2,)]",
        "'", "True", "None", "arn:aws:iam::", ":user/x", "a:b:c:d:", ":0:",
        " %", "%", " %s", "<n> %",
    ]
)  # fmt: skip
# Short texts too: a fast path is taken only when the other pieces are absent.
FAST_PATH_TEXTS = st.one_of(
    st.lists(FAST_PATH_PIECES, max_size=6).map("".join),
    st.lists(FAST_PATH_PIECES, max_size=40).map("".join),
)


@settings(max_examples=1500, database=None, deadline=None)
@given(FAST_PATH_TEXTS)
def test_text_made_of_what_the_fast_paths_test_for_gets_the_frozen_signature(text: str) -> None:
    clear_signature_memo()
    assert canonical_signature(text) == frozen.canonical_signature(text)


@pytest.mark.parametrize(
    "text",
    [
        # Each one takes a different fast path (or none): no digit, no slash, a slash, a
        # comparison before a duration, a bracket or quote that selects the full masks.
        "connection reset by peer",
        "size 10 of 4 KB in 3 ms at 10.0.0.1:80",
        "read /var/log/7.log and ./x/9 then ~/run/3",
        "took <5ms, >10 ms and ~3s",
        "took <5ms",
        "took >5ms",
        "wait ~3s",
        "wait (~3s)",
        "KeyError: 'run_7'",
        "job (pid 42) said 'done 7' [1, 2, 3] {}",
        "v1.2.3 a0.0b blk_-17 attempt_1_2_m_3 wl0",
        "db.internal:5432 refused, 3 retries, 1 warning, 11 errors",
        "on Jun 18 02:08:10 2005 and 18 Jun 2005",
        "tab\there  and\x1cthere\u3000wide \u0663\u0664 digits",
        "error: ‘foo’ undeclared at 10:11 PM after 3min, 2 previous errors",
        "error: “foo” undeclared\u2003at 10:11 PM",
        'lookup db03.example.com/10.0.0.1:53 after 3d4h: {"error": "timeout", "id": "a1"}',
        '{"msg": "expected \\u003cnil\\u003e", "at": "0m.example.com"}',
    ],
)
def test_each_fast_path_gives_the_frozen_signature(text: str) -> None:
    clear_signature_memo()
    assert canonical_signature(text) == frozen.canonical_signature(text)


@pytest.mark.parametrize(
    "month", ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
)
def test_a_month_alone_among_lower_case_words_still_makes_a_date(month: str) -> None:
    # The calendar search is skipped for text without a month's capital; each month is tried
    # alone, so a capital missing from that test fails here.
    clear_signature_memo()
    text = f"due on {month} 7 at 10:30"
    assert (
        canonical_signature(text) == frozen.canonical_signature(text) == "due on <date> at <time>"
    )


def test_long_texts_bypass_the_memo_and_keep_their_signature() -> None:
    clear_signature_memo()
    text = "failed at /srv/run/7/out.log: " + "x1 'q' " * 400
    assert canonical_signature(text) == frozen.canonical_signature(text)
    assert not signature._MEMO


def test_the_memo_stays_bounded() -> None:
    clear_signature_memo()
    for i in range(signature._MEMO_ENTRIES * 2 + 10):
        word = "".join(chr(ord("a") + int(d)) for d in str(i))
        assert canonical_signature(f"job {word} failed") == f"job {word} failed"
    assert 0 < len(signature._MEMO) <= signature._MEMO_ENTRIES


def test_non_string_input_is_not_memoized() -> None:
    clear_signature_memo()
    assert canonical_signature(None) == frozen.canonical_signature(None) == "<empty>"  # type: ignore[arg-type]
    assert not signature._MEMO


# The same texts, ASCII only: they take the patterns compiled with ``re.ASCII``.
ASCII_PIECES = FAST_PATH_PIECES.filter(str.isascii)
ASCII_TEXTS = st.one_of(
    st.lists(ASCII_PIECES, max_size=6).map("".join),
    st.lists(ASCII_PIECES, max_size=40).map("".join),
    st.text(st.characters(max_codepoint=127), max_size=80),
)


@settings(max_examples=1500, database=None, deadline=None)
@given(ASCII_TEXTS)
def test_ascii_text_gets_the_frozen_signature(text: str) -> None:
    clear_signature_memo()
    assert canonical_signature(text) == frozen.canonical_signature(text)


def _matches(
    pattern: re.Pattern[str], text: str
) -> list[tuple[tuple[int, int], tuple[object, ...]]]:
    return [(m.span(), m.groups()) for m in pattern.finditer(text)]


@settings(max_examples=400, database=None, deadline=None)
@given(ASCII_TEXTS)
def test_each_ascii_pattern_matches_as_written_on_ascii_text(text: str) -> None:
    # The masks see normalised text: U+001C to U+001F, whitespace to ``\s`` as written but
    # not to ASCII ``\s``, are gone from it (str.split removes them) before any mask with
    # ``\s`` runs; hypothesis found "C:\\\x1c" matching differently when they were kept.
    text = text.translate(dict.fromkeys(range(0x1C, 0x20)))
    for name in signature._Patterns.__slots__:
        written = getattr(signature._PATTERNS, name)
        ascii_only = getattr(signature._ascii_patterns(), name)
        assert _matches(ascii_only, text) == _matches(written, text), name


@pytest.mark.skipif(not LOGHUB_DIR.is_dir(), reason="the Loghub-2k samples are not on this machine")
def test_each_ascii_pattern_matches_as_written_on_the_development_messages() -> None:
    texts = [t for contents, _ in load_loghub().values() for t in contents if t.isascii()]
    for name in signature._Patterns.__slots__:
        written = getattr(signature._PATTERNS, name)
        ascii_only = getattr(signature._ascii_patterns(), name)
        for text in texts:
            assert _matches(ascii_only, text) == _matches(written, text), (name, text)


def test_without_the_memo_signatures_are_the_same_and_nothing_is_kept() -> None:
    texts = ["exit status 7", "exit status 8", "read 3 files from /tmp/x", "  tab\there  "]
    clear_signature_memo()
    with signature.signature_memo_disabled():
        bare = [canonical_signature(t) for t in texts]
        assert not signature._MEMO
    assert bare == [frozen.canonical_signature(t) for t in texts]
    assert [canonical_signature(t) for t in texts] == bare
    assert signature._MEMO


@pytest.mark.parametrize(
    ("text", "run"),
    [
        ("from fe80::c6b3:1ff:fecd:467f:1", True),
        ("chip FF:F0:0F:0:E0:0:0:0D ok", True),
        ("at 0:0:0 and 0:0:0 then 0:0", False),
        ("key: a, key: b, key: c, key: d, key: e", False),
    ],
)
def test_the_hex_colon_pass_is_skipped_only_without_four_close_colons(text: str, run: bool) -> None:
    assert signature._colon_run(text) is run
    clear_signature_memo()
    assert canonical_signature(text) == frozen.canonical_signature(text)


@pytest.mark.parametrize(
    "template",
    [
        "at {}-{}-{}T{}:{}:{}.{}Z done",
        "took {}ms then {}.{} sec and {}h{}m",
        "from {}.{}.{}.{}:{} to /{}.{}.{}.{} ok",
        "read {}.{} KB ({} bytes) of {} MB",
        "mac {}b:{}:{}:3a:b{}:{} and {}::{}",
        "open ./run/{}/x:{}:{} and /srv/{}:{}",
        "wait <{}ms, >{} s, ~{}us",
        "ids a:b:{}:c:d:e and {}:{}:{}:{}:{}:{}",
        '{{"a": {}, "b{}": [{}, {}]}} then {}',
        "blk_-{} core.{} x{}_{} v{}.{}.{}",
    ],
)
@pytest.mark.parametrize("width", [1, 2, 3, 5, 9])
def test_a_digit_run_of_any_length_is_one_digit_to_every_mask(template: str, width: int) -> None:
    # Digit runs are collapsed only before JSON, the hex-colon mask and a cut: elsewhere the
    # masks read a run of zeros as one digit, whatever its length.
    text = template.format(*(str(10 ** (width - 1) + i)[-width:] for i in range(12)))
    clear_signature_memo()
    assert canonical_signature(text) == frozen.canonical_signature(text)


def test_the_ascii_masks_are_compiled_only_once_enough_ascii_texts_were_signed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A rescan that signs a few dozen texts never pays for compiling them; a long read does,
    # and the signatures are those of the patterns as written either way.
    monkeypatch.setattr(signature, "_ASCII_PATTERNS", None)
    monkeypatch.setattr(signature, "_ascii_texts", [0])
    monkeypatch.setattr(signature, "ASCII_MASKS_AFTER", 5)
    texts = [f"retry {i} of job-{i} failed at ./src/m{i}.rs:{i}" for i in range(12)]
    with signature.signature_memo_disabled():
        early = [canonical_signature(t) for t in texts[:5]]
        assert signature._ASCII_PATTERNS is None
        canonical_signature("caf\u00e9 closed")  # not ASCII: not counted
        assert signature._ascii_texts == [5]
        late = [canonical_signature(t) for t in texts[5:]]
        assert signature._ASCII_PATTERNS is not None
    assert early + late == [frozen.canonical_signature(t) for t in texts]
