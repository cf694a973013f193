"""The fast ``canonical_signature`` gives exactly the signatures of the frozen version-2 copy.

Breakers persist counts keyed by signature, so a speed-up may not change one output without
bumping ``SIGNATURE_VERSION``. The comparison covers every Loghub-2k development message (as
written, with other digits, and signed again from the memo) and generated failure-like text.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given
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
