"""Failure reasons of real pipelines, labelled the way a person groups them.

Loghub measures signatures on system logs; the mission is failure reasons. These cases are the
reasons a breaker and the fleet Pareto see: incident 04's 35 verify reasons (two failures),
Kilroy's own reasons from real runs of ``../shared/kilroy/run.sh`` (``exit status 101`` of a
compile step, the missing-status reason with its run-specific fallback paths), the compile
errors those runs printed (varying file:line:col and counts), the executor's own reasons
(cause, stderr tail, command), turn limits. A person's label is the failure, not the text.
"""

from __future__ import annotations

import random

import pytest

from bench.signatures import grouping_accuracy
from doctor import canonical_signature, signature_groups
from fixtures import _rogue_text as rogue

_MISSING = (
    "missing status.json (auto_status=false); fallback[worktree] missing status artifact: "
    "/runs/{run}/worktree/status.json; fallback[dot_ai] missing status artifact: "
    "/runs/{run}/worktree/.ai/runs/{run}/status.json"
)
_E0433 = "error[E0433]: failed to resolve: use of undeclared crate or module bracket_lib"

#: (reason, the failure a person names). Kilroy's texts are copied from real runs.
CASES: tuple[tuple[str, str], ...] = (
    ("exit status 101", "compile step exits"),
    ("exit status 1", "compile step exits"),
    (_MISSING.format(run="r_legacy_dotai"), "agent wrote no status file"),
    (_MISSING.format(run="01KH3Q4W2Y8ZP6"), "agent wrote no status file"),
    ("missing status.json (auto_status=false)", "agent wrote no status, short form"),
    (f"{_E0433} --> src/map.rs:18:5", "undeclared crate"),
    (f"{_E0433} --> src/render.rs:272:25", "undeclared crate"),
    (f"{_E0433} --> src/map.rs:187:18", "undeclared crate"),
    (
        "error: could not compile rogue-core (lib) due to 11 previous errors; 1 warning emitted",
        "could not compile",
    ),
    (
        "error: could not compile rogue-core (lib) due to 29 previous errors; 3 warnings emitted",
        "could not compile",
    ),
    ("turn limit reached (max_turns=25)", "turn limit"),
    ("turn limit reached (max_turns=40)", "turn limit"),
    (
        "exit status 101; stderr tail: error[E0599]: no method named `tick` found for struct "
        "`World` in src/world.rs:40:17; command: cargo test -p rogue-core",
        "no such method",
    ),
    (
        "exit status 101; stderr tail: error[E0599]: no method named `draw` found for struct "
        "`Map` in src/map.rs:12:9; command: cargo test -p rogue-core",
        "no such method",
    ),
    (
        "timed out after 30s (process group stopped); killed by signal SIGKILL",
        "stage timeout",
    ),
    (
        "timed out after 1.5s (process group stopped); killed by signal SIGKILL",
        "stage timeout",
    ),
    ("codex exec failed: exit status 1 (no final agent message)", "agent gave no answer"),
    (rogue.ARCH_REASONS[0], "architecture gap"),
    (rogue.ARCH_REASONS[1], "architecture cycle"),
    ('failure_reason must be non-empty when status="fail"', "empty failure reason"),
)


def rogue_cases() -> list[tuple[str, str]]:
    """Incident 04's verify reasons as generated for the fixture: the cargo check failure and
    the wasm-pack failure, whatever their paths, temp dirs, ids, durations and counts."""
    reasons = rogue.verify_reasons(random.Random(4), [300 + 7 * i for i in range(35)])
    return [(r, r.split(" ", 1)[0]) for r in reasons]


def test_the_rogue_reasons_are_thirty_five_texts_of_two_failures() -> None:
    cases = rogue_cases()
    assert len(cases) == 35 and len({r for r, _ in cases}) > 20
    assert {label for _, label in cases} == {"cargo", "wasm-pack"}


@pytest.mark.parametrize("grouping", ["canonical_signature", "signature_groups"])
def test_pipeline_reasons_group_as_a_person_groups_them(grouping: str) -> None:
    cases = [*CASES, *rogue_cases()]
    texts = [text for text, _ in cases]
    labels = (
        [canonical_signature(t) for t in texts]
        if grouping == "canonical_signature"
        else signature_groups(texts)
    )
    truth = [label for _, label in cases]
    assert grouping_accuracy(labels, truth) == 1.0
