"""What ``doctor checks`` prints, read without importing a single detector.

:data:`CHECKS` is each detector's name and the first line of its docstring, in catalog order
(:data:`doctor._detectors.DETECTORS`). Importing the detectors imports the tables, the facts
and the cache: about half of the command's 0.2 s, for two strings per detector. The table is
written out here instead, and ``tests/doctor/test_checks_listing.py`` holds it to the
detectors themselves: a detector added, renamed or re-described fails that test, whose message
is the table to paste here (:func:`listing_source`).
"""

# ruff: noqa: E501  (a written-out table: each description on one line, as the test prints it)

from __future__ import annotations

from collections.abc import Sequence

from rundoctor.terminal import printable

__all__ = ["CHECKS", "check_lines", "listing_source"]

#: ``(name, description)`` of every detector, in the order findings are reported.
CHECKS: tuple[tuple[str, str], ...] = (
    (
        "stale_heartbeat",
        "Heartbeats naming a node with no open attempt, or arriving after a scope finished.",
    ),
    (
        "missing_final",
        "Runs and branches that stopped running without ever writing a valid final.json.",
    ),
    (
        "unjoined_fanout",
        "Fan-out nodes whose attempt never ended although their scope stopped running.",
    ),
    (
        "status_contract_mismatch",
        "Attempts failed for want of a status file that exists elsewhere, or status.json vs stream.",
    ),
    (
        "fragmented_failure_signatures",
        "A node's failures are many distinct strings but few canonical signatures.",
    ),
    ("retry_loop", "A back edge (a hop to a node entered earlier in the scope) taken repeatedly."),
    (
        "deterministic_retry_loop",
        "The same canonical failure repeating on a node with no breaker stopping it.",
    ),
    (
        "lost_failure_reason",
        "Generic, empty or canceled failure reasons that hide a concrete failure in the scope.",
    ),
    (
        "checkpoint_drift",
        "Checkpoints that lost retries, bloat with repeats, or lag behind their event stream.",
    ),
    (
        "telemetry_divergence",
        "live.json or checkpoint.json naming another node than the event stream.",
    ),
    (
        "idle_gap",
        "No execution progress for longer than the threshold while runs or tickets were pending.",
    ),
    (
        "swallowed_error",
        "Failure reasons that carry no information (None, empty, a bare exit code).",
    ),
    ("torn_artifact", "Progress lines and JSON documents that do not parse, one finding per file."),
    (
        "unreadable_artifact",
        "Artifacts the doctor could not read as written: not regular files, undecodable names.",
    ),
    (
        "post_terminal_activity",
        "Events after the run's terminal event or final.json (overlapping resume, leaked work).",
    ),
    (
        "false_success",
        "Runs whose final.json says success because a failed node fell back into the exit.",
    ),
    (
        "final_stream_mismatch",
        "A final.json its run's stream denies: success over unfinished work, or a later fail.",
    ),
    ("stale_lease", "A claimed or running ticket whose lease has had no heartbeat for too long."),
    (
        "no_progress_lease",
        "A lease kept alive by heartbeats while its run (or the ticket) makes no progress.",
    ),
    (
        "session_desync",
        "The queue's record of a session disagrees with the processes running on this host.",
    ),
    ("recovery_loop", "The same ticket reclaimed from dead workers again and again within a day."),
    ("backlog_growth", "Tickets are created faster than they are closed over the last days."),
    ("clock_skew", "A leased ticket whose last heartbeat is ahead of the queue's clock."),
)


def check_lines(checks: Sequence[tuple[str, str]] = CHECKS) -> list[str]:
    """One line per ``(name, description)``, the name padded to the longest and the
    description's control characters made visible: what ``doctor checks`` prints.

    >>> check_lines([("idle_gap", "No progress."), ("stale_lease", "No heartbeat.")])
    ['idle_gap     No progress.', 'stale_lease  No heartbeat.']
    """
    width = max((len(name) for name, _ in checks), default=0)
    return [f"{name:<{width}}  {printable(text)}" for name, text in checks]


def listing_source(checks: tuple[tuple[str, str], ...]) -> str:
    """``checks`` as the assignment of :data:`CHECKS` above (what a test prints to paste).

    >>> print(listing_source((("a", "b"),)))
    CHECKS: tuple[tuple[str, str], ...] = (
        ('a', 'b'),
    )
    """
    rows = "".join(f"    ({name!r}, {text!r}),\n" for name, text in checks)
    return f"CHECKS: tuple[tuple[str, str], ...] = (\n{rows})"
