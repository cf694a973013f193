"""The catalog of detectors: :data:`DETECTORS` in report order, :func:`select` and
:func:`describe`. Importing it imports every detector; :mod:`doctor._detectors` loads it on
first use, so a rescan that runs only ``idle_gap`` and words ``missing_final``'s ages imports
those two alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from doctor._detectors import _listing
from doctor._detectors._context import Detector
from doctor._detectors.backlog_growth import backlog_growth
from doctor._detectors.checkpoint_drift import checkpoint_drift
from doctor._detectors.clock_skew import clock_skew
from doctor._detectors.deterministic_retry_loop import deterministic_retry_loop
from doctor._detectors.false_success import false_success
from doctor._detectors.final_stream_mismatch import final_stream_mismatch
from doctor._detectors.fragmented_failure_signatures import fragmented_failure_signatures
from doctor._detectors.idle_gap import idle_gap
from doctor._detectors.lost_failure_reason import lost_failure_reason
from doctor._detectors.missing_final import missing_final
from doctor._detectors.no_progress_lease import no_progress_lease
from doctor._detectors.post_terminal_activity import post_terminal_activity
from doctor._detectors.recovery_loop import recovery_loop
from doctor._detectors.retry_loop import retry_loop
from doctor._detectors.session_desync import session_desync
from doctor._detectors.stale_heartbeat import stale_heartbeat
from doctor._detectors.stale_lease import stale_lease
from doctor._detectors.status_contract_mismatch import status_contract_mismatch
from doctor._detectors.swallowed_error import swallowed_error
from doctor._detectors.telemetry_divergence import telemetry_divergence
from doctor._detectors.torn_artifact import torn_artifact
from doctor._detectors.unjoined_fanout import unjoined_fanout
from doctor._detectors.unreadable_artifact import unreadable_artifact
from doctor._errors import UsageError
from rundoctor.errors import close_matches, did_you_mean
from rundoctor.terminal import quoted

__all__ = ["DETECTORS", "check_lines", "describe", "select"]

#: Every detector, in the order findings are reported.
DETECTORS: tuple[Detector, ...] = (
    stale_heartbeat,
    missing_final,
    unjoined_fanout,
    status_contract_mismatch,
    fragmented_failure_signatures,
    retry_loop,
    deterministic_retry_loop,
    lost_failure_reason,
    checkpoint_drift,
    telemetry_divergence,
    idle_gap,
    swallowed_error,
    torn_artifact,
    unreadable_artifact,
    post_terminal_activity,
    false_success,
    final_stream_mismatch,
    stale_lease,
    no_progress_lease,
    session_desync,
    recovery_loop,
    backlog_growth,
    clock_skew,
)


def describe(detector: Detector) -> str:
    """The first line of a detector's docstring.

    >>> describe(stale_heartbeat)
    'Heartbeats naming a node with no open attempt, or arriving after a scope finished.'
    """
    return (detector.__doc__ or "").strip().splitlines()[0]


def check_lines(detectors: Sequence[Detector]) -> list[str]:
    """:func:`doctor._detectors._listing.check_lines` of ``detectors``.

    >>> check_lines([stale_heartbeat])[0][:41]
    'stale_heartbeat  Heartbeats naming a node'
    """
    return _listing.check_lines([(d.__name__, describe(d)) for d in detectors])


def select(names: Iterable[str]) -> tuple[Detector, ...]:
    """The detectors named, in catalog order; all of them when ``names`` is empty.

    >>> [d.__name__ for d in select(["stale_heartbeat"])]
    ['stale_heartbeat']
    """
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return DETECTORS
    known = {d.__name__: d for d in DETECTORS}
    for name in wanted:
        if name not in known:
            close = close_matches(name, known)
            raise UsageError(
                f"unknown check {quoted(name)}{did_you_mean(close)}; `doctor checks` lists them all"
            )
    return tuple(d for d in DETECTORS if d.__name__ in wanted)
