"""The fast ``canonical_signature`` gives exactly the signatures of the frozen version-2 copy.

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
from tests.doctor import _signature_v2 as frozen
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
