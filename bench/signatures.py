"""Failure signatures against the eight Loghub-2k samples: grouping accuracy and throughput.

Each sample is a CSV with the log text in ``Content`` and the hand-checked event class in
``EventId``. Both functions run with one configuration for every sample; the averages are what
the targets apply to. The data is read in place (``RUNDOCTOR_LOGHUB_DIR``, else
``shared/data/loghub-2k-dev`` beside the repository) and never copied into the repository.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence
from functools import partial
from pathlib import Path

import polars as pl

from bench._common import Result, best_of, timer
from doctor._signature import canonical_signature, signature_groups

__all__ = ["LOGHUB_DIR", "grouping_accuracy", "load_loghub", "run"]

LOGHUB_DIR = Path(
    os.environ.get(
        "RUNDOCTOR_LOGHUB_DIR",
        Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "loghub-2k-dev",
    )
)
_SUFFIX = "_2k.log_structured_corrected.csv"


def grouping_accuracy(predicted: Sequence[Hashable], truth: Sequence[Hashable]) -> float:
    """Loghub's grouping accuracy: the share of messages whose predicted group is exactly their
    true group, i.e. the messages sharing its predicted label are the messages sharing its true
    label. A group split in two or merged with another counts wholly wrong.

    >>> grouping_accuracy(["a", "a", "b"], [1, 1, 2])
    1.0
    >>> grouping_accuracy(["a", "a", "a"], [1, 1, 2])
    0.0
    """
    if len(predicted) != len(truth):
        raise ValueError(f"{len(predicted)} predictions for {len(truth)} messages")
    if not truth:
        return 1.0
    true_size = Counter(truth)
    members: defaultdict[Hashable, list[int]] = defaultdict(list)
    for i, label in enumerate(predicted):
        members[label].append(i)
    correct = 0
    for idx in members.values():
        classes = {truth[i] for i in idx}
        if len(classes) == 1 and true_size[truth[idx[0]]] == len(idx):
            correct += len(idx)
    return correct / len(truth)


def load_loghub(directory: Path = LOGHUB_DIR) -> dict[str, tuple[list[str], list[str]]]:
    """``{dataset: (contents, event ids)}`` for every sample in ``directory``, sorted by name."""
    paths = sorted(directory.glob(f"*{_SUFFIX}"))
    if not paths:
        raise FileNotFoundError(
            f"no *{_SUFFIX} under {directory}; set RUNDOCTOR_LOGHUB_DIR to the Loghub-2k samples"
        )
    out: dict[str, tuple[list[str], list[str]]] = {}
    for path in paths:
        frame = pl.read_csv(path, columns=["Content", "EventId"], infer_schema=False)
        contents = frame["Content"].fill_null("").to_list()
        out[path.name.removesuffix(_SUFFIX)] = (contents, frame["EventId"].to_list())
    return out


def _sign_all(texts: list[str]) -> list[str]:
    return [canonical_signature(t) for t in texts]


def _signature_seconds(texts: list[str], chunk: int = 500) -> float:
    """Wall time of ``canonical_signature`` over ``texts``: the sum of per-chunk best-of-5 times,
    so a neighbour's burst on the shared machine spoils one short chunk run, not the estimate."""
    total = 0.0
    for start in range(0, len(texts), chunk):
        total += best_of(5, partial(_sign_all, texts[start : start + chunk]))
    return total


def _detail(scores: dict[str, float]) -> str:
    return ", ".join(f"{name} {score:.3f}" for name, score in scores.items())


def run() -> list[Result]:
    data = load_loghub()
    signature_ga: dict[str, float] = {}
    groups_ga: dict[str, float] = {}
    for name, (contents, truth) in data.items():
        signature_ga[name] = grouping_accuracy([canonical_signature(t) for t in contents], truth)
        groups_ga[name] = grouping_accuracy(signature_groups(contents), truth)

    everything = [text for contents, _ in data.values() for text in contents]
    seconds = _signature_seconds(everything)
    with timer() as elapsed:
        signature_groups(everything)
    groups_seconds = elapsed()

    return [
        Result(
            "canonical_signature GA",
            sum(signature_ga.values()) / len(signature_ga),
            0.80,
            "grouping accuracy",
            higher_is_better=True,
            note=_detail(signature_ga),
        ),
        Result(
            "canonical_signature throughput",
            len(everything) / seconds,
            200_000,
            "messages/s",
            higher_is_better=True,
            note=f"{len(everything)} messages, best of 5 per 500-message chunk",
        ),
        Result(
            "signature_groups GA",
            sum(groups_ga.values()) / len(groups_ga),
            0.90,
            "grouping accuracy",
            higher_is_better=True,
            note=f"{_detail(groups_ga)}; all {len(everything)} in one call: {groups_seconds:.2f}s",
        ),
    ]
