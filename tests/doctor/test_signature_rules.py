"""The masks of ``canonical_signature``: each is listed with its reason, and each is general."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.signatures import LOGHUB_DIR, load_loghub
from rundoctor.signature import GENERIC_WORDS, MASK_RULES, MaskRule, canonical_signature

# Regex syntax that is not a word: named groups, escapes, character classes.
_SYNTAX = (
    re.compile(r"\(\?P<\w+>|\(\?P=\w+\)"),
    re.compile(r"\\."),
    re.compile(r"\[(?:\\.|[^\]\\])*\]"),
)
_WORD = re.compile(r"[A-Za-zµ]{2,}")


def rule_words(rule: MaskRule) -> set[str]:
    """The literal words in a rule's patterns, lower-cased."""
    words: set[str] = set()
    for pattern in rule.patterns:
        source = pattern.pattern
        for syntax in _SYNTAX:
            source = syntax.sub(" ", source)
        words |= {w.lower() for w in _WORD.findall(source)}
    return words


@pytest.mark.parametrize("rule", MASK_RULES, ids=lambda rule: rule.name)
def test_every_mask_is_listed_with_a_reason_and_an_example_it_masks(rule: MaskRule) -> None:
    assert len(rule.reason.split()) >= 5
    assert canonical_signature(rule.example) == rule.signature
    assert rule.example != rule.signature


def test_the_masks_run_in_the_documented_order_and_have_distinct_names() -> None:
    names = [rule.name for rule in MASK_RULES]
    assert len(set(names)) == len(names)
    assert names.index("url") < names.index("leading") < names.index("numbers")
    assert names.index("numbers") < names.index("runs") < names.index("brackets")


@pytest.mark.parametrize("rule", MASK_RULES, ids=lambda rule: rule.name)
def test_no_mask_names_a_word_outside_the_generic_ones(rule: MaskRule) -> None:
    assert rule_words(rule) <= GENERIC_WORDS


def test_the_word_check_sees_words_in_patterns() -> None:
    rule = MaskRule("x", (re.compile(r"(?P<g>\d+) HDFS blk_[a-z]+"),), "", "", "", "")
    assert rule_words(rule) == {"hdfs", "blk"}


@pytest.mark.skipif(not LOGHUB_DIR.is_dir(), reason="the Loghub-2k samples are not on this machine")
def test_no_mask_holds_a_word_that_only_one_development_dataset_uses() -> None:
    vocabularies = {
        name: {w.lower() for text in contents for w in _WORD.findall(text)}
        for name, (contents, _) in load_loghub().items()
    }
    words = set().union(*map(rule_words, MASK_RULES))
    for name, vocabulary in vocabularies.items():
        others = set().union(*(v for n, v in vocabularies.items() if n != name))
        own = vocabulary - others
        assert words & own <= GENERIC_WORDS, name


# -- the masks, one behaviour each --------------------------------------------------------------


def test_weekday_month_and_clock_make_one_date() -> None:
    assert canonical_signature("connection at Sat Jun 18 02:08:10 2005") == ("connection at <date>")
    assert canonical_signature("status=M Fri Jul 1 12:00:01 PDT 2005 ok") == "status=M <date> ok"
    assert canonical_signature("Dec 10 06:55:46 sshd started") == "<date> sshd started"
    assert canonical_signature("due 18 Jun 2005") == canonical_signature("due 3 Aug 2024")
    assert canonical_signature("on Jan 5, 2020 at noon") == "on <date> at noon"


def test_a_month_name_without_a_day_stays_a_word() -> None:
    assert canonical_signature("May I retry?") == "May I retry?"
    assert canonical_signature("Monday run") == "Monday run"


def test_comma_joined_addresses_are_one_token() -> None:
    one = canonical_signature("replicas 10.0.0.1:50010 lost")
    assert canonical_signature("replicas 10.0.0.1:50010,10.0.0.2:50010 lost") == one
    assert canonical_signature("replicas 10.0.0.1:50010, 10.0.0.2:50010, 10.0.0.3:1 lost") == one
    assert one == "replicas <n> lost"


def test_urls_and_paths_are_masked_before_numbers() -> None:
    assert (
        canonical_signature(
            '10.1.1.1 "GET /v2/54fadb412c4e40cdbaed9335e4c35a9e/servers/detail HTTP/1.1" '
            "status: 200"
        )
        == '<n> "GET <path> HTTP/<n>" status: <n>'
    )
    assert canonical_signature("fetch http://a.b:80/x/1?y=2 failed") == "fetch <url> failed"
    assert canonical_signature("Active base files: /var/lib/nova/instances/_base/a489c868f0c3") == (
        "Active base files: <path>"
    )


def test_numbers_glued_to_punctuation_or_units_are_one_value() -> None:
    assert canonical_signature("Temperature 41C exceeded") == "Temperature <n> exceeded"
    assert canonical_signature("build #12 failed") == canonical_signature("build #7 failed")
    assert canonical_signature("phys_ram=64172MB used_ram=2560MB") == (
        "phys_ram=<size> used_ram=<size>"
    )
    assert canonical_signature("len:1893 time:0.2477829") == "len:<n> time:<n>"
    assert canonical_signature("load 10.5% now") == "load <n>% now"


def test_runs_of_values_collapse_to_one() -> None:
    assert canonical_signature("channels 1 2 3 36 40") == canonical_signature("channels 1")
    assert canonical_signature("channel changed to 1,6") == "channel changed to <n>"
    assert canonical_signature("files /a/b.c /d/e.f /g.h missing") == "files <path> missing"
    assert canonical_signature("took 1s, 2s; 3s") == "took <time>"


def test_empty_and_filled_brackets_are_alike() -> None:
    empty = canonical_signature("connection from 1.2.3.4 () at x")
    assert empty == canonical_signature("connection from 1.2.3.4 (host-7) at x")
    assert empty == "connection from <n> (<*>) at x"
    assert canonical_signature("pci_stats=[] ok") == canonical_signature("pci_stats=[0, 1] ok")


def test_brackets_glued_to_a_word_keep_their_value() -> None:
    assert canonical_signature("error[E0433]: failed") == "error[<n>]: failed"
    assert canonical_signature("deny(1) lookup") == "deny(<n>) lookup"
    assert canonical_signature("a (spawning) task") == "a (spawning) task"


def test_a_counted_noun_is_singular() -> None:
    assert canonical_signature("3 warnings emitted") == canonical_signature("1 warning emitted")
    assert canonical_signature("2 processes, 4 status") == "<n> processe, <n> status"
    assert canonical_signature("1 is 2 was") == "<n> is <n> was"


def test_hex_ids_and_durations_are_values() -> None:
    assert canonical_signature("session 0x14f05578bf40012 expired after 10000ms") == (
        "session <n> expired after <time>"
    )
    assert canonical_signature(
        "[instance: b9000564-fe1a-409b-b8cc-1e88b294cd1d] Took 19.84 seconds"
    ) == ("[instance: <n>] Took <time>")
    assert canonical_signature("block blk_-1608999687919862906 done in 1h2m3s") == (
        "block <n> done in <time>"
    )


def test_a_dot_after_a_number_is_no_path() -> None:
    assert canonical_signature("0./@") == "<n>./@"
    assert canonical_signature("<n>./@") == "<n>./@"


def test_a_run_that_leaves_a_quoted_single_token_is_masked_again() -> None:
    assert canonical_signature("'[0 0.'") == "<str>"
    assert canonical_signature("'()'") == "<str>"


def test_a_quoted_brace_stays_for_the_json_pass() -> None:
    text = "'{'{{{{{{{{ }"
    signature = canonical_signature(text)
    assert canonical_signature(signature) == signature


def test_every_mask_is_stable_when_applied_to_its_own_output() -> None:
    for rule in MASK_RULES:
        assert canonical_signature(rule.signature) == rule.signature, rule.name


def test_the_signatures_page_shows_every_mask_with_its_example() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "signatures.md").read_text()
    for rule in MASK_RULES:
        assert f"| {rule.name} | `{rule.example}` | `{rule.signature}` |" in page, rule.name
