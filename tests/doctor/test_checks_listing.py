"""``doctor checks`` prints a written-out listing (:mod:`doctor._detectors._listing`), not the
detectors' own docstrings: this holds the two to each other."""

from __future__ import annotations

import json
import subprocess
import sys

from doctor._detectors import DETECTORS, describe
from doctor._detectors._listing import CHECKS, listing_source


def test_the_listing_is_every_detector_in_catalog_order_with_its_first_docstring_line() -> None:
    actual = tuple((d.__name__, describe(d)) for d in DETECTORS)
    assert actual == CHECKS, (
        "doctor/_detectors/_listing.py is out of date; replace its CHECKS with:\n"
        + listing_source(actual)
    )


def test_checks_json_lists_every_detector_as_the_catalog_describes_it() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "doctor", "checks", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    listed = json.loads(done.stdout)
    assert listed == [{"name": d.__name__, "description": describe(d)} for d in DETECTORS]
