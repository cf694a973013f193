"""The command line's JSON output is ``json.dumps(value, indent=2, default=str)``, byte for byte."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest

from doctor import DoctorConfig, scan
from doctor._json_out import dumps_indented

_LEAVES: list[Any] = [
    None,
    True,
    False,
    0,
    -5,
    2**70,
    1.5,
    -0.0,
    1e-300,
    math.nan,
    math.inf,
    -math.inf,
    "",
    "plain",
    'quote " backslash \\ newline \n tab \t',
    "é ü \u2028 \U0001f600",
    (1, "tuple"),
    b"bytes",
    Path("/a/path"),
]


def _value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 4 or roll < 0.3:
        return rng.choice(_LEAVES)
    if roll < 0.65:
        keys: list[Any] = ["a", "b", "ç", "", 1, 2.5, True, None]
        return {rng.choice(keys): _value(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    return [_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]


@pytest.mark.parametrize("seed", range(5))
def test_any_value_is_encoded_as_the_standard_library_encodes_it(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(400):
        value = _value(rng)
        assert dumps_indented(value) == json.dumps(value, indent=2, default=str)


def test_a_scan_is_encoded_as_the_standard_library_encodes_it(tmp_path: Path) -> None:
    from fixtures.fleet import build_fleet

    root = build_fleet(tmp_path / "runs", runs=12, events_per_run=200, kilroy=True, crashed=0.5)
    data = scan(DoctorConfig(roots=(root,), now=1.9e9)).to_json()
    assert data["runs"] and any(r["findings"] for r in data["runs"])
    assert dumps_indented(data) == json.dumps(data, indent=2, default=str)
