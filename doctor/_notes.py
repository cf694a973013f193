"""Sentences about a run's facts that every view of a diagnosis says the same way.

The console diagnosis (:mod:`doctor._render`), its Markdown form and the postmortem
(``reports``) all state facts that no finding code carries: ``owner_stopped`` (the owner
lives but is stopped, state ``T``: it must be continued, not repaired), ``resumed_past``
(a resume routed past an interrupted visit instead of running it again) and
``terminal_detail`` (what the stage whose bare ``exit status 1`` ended the run wrote). Their
wording lives here once, so the three cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rundoctor.markdown import REASON_SHOWN, flatten, flatten_tail

__all__ = ["STOPPED_OWNER_HINT", "continue_command", "resumed_past_lines", "terminal_detail_lines"]

#: What to do about an owner that is alive but stopped (the ``owner_stopped`` fact).
STOPPED_OWNER_HINT = (
    "the owner is stopped (SIGSTOP, a suspended job), not dead: continue it and the run goes "
    "on; do not terminalize or resume it while it lives"
)


def continue_command(pid: int) -> str:
    """The command that continues a stopped owner.

    >>> continue_command(4242)
    'kill -CONT 4242'
    """
    return f"kill -CONT {int(pid)}"


def resumed_past_lines(facts: Mapping[str, Any]) -> list[str]:
    """One line per resume that routed on an interrupted visit (the ``resumed_past`` fact):
    a success reached that way must not read as a plain one. A visit whose engine was killed
    (``killed``) left no stop of its own: the resume routed on the status.json it left.

    >>> resumed_past_lines({"resumed_past": [{"resumed_at": "2026-01-01T00:00:00Z",
    ...     "node": "count", "failure_reason": "stopped by signal terminated",
    ...     "next_node": "report"}]})  # doctest: +NORMALIZE_WHITESPACE
    ["resumed at 2026-01-01T00:00:00Z past count's interrupted visit (stopped by signal
      terminated): the resume routed on that stop to report instead of running count again"]
    >>> resumed_past_lines({"resumed_past": [{"resumed_at": "2026-01-01T00:00:00Z",
    ...     "node": "count", "failure_reason": None, "next_node": "report",
    ...     "killed": True}]})  # doctest: +NORMALIZE_WHITESPACE
    ["resumed at 2026-01-01T00:00:00Z past count's interrupted visit (its engine was killed
      mid-attempt): the resume routed on the status.json that visit left to report instead
      of running count again"]
    """
    return [_resumed_past_line(r) for r in facts.get("resumed_past") or []]


def _resumed_past_line(r: Mapping[str, Any]) -> str:
    node = r.get("node")
    if r.get("killed"):
        why, on = "its engine was killed mid-attempt", "the status.json that visit left"
    else:
        why, on = flatten(str(r.get("failure_reason") or "stopped"), REASON_SHOWN), "that stop"
    return (
        f"resumed at {r.get('resumed_at')} past {node}'s interrupted visit ({why}): the resume "
        f"routed on {on} to {r.get('next_node')} instead of running {node} again"
    )


def terminal_detail_lines(facts: Mapping[str, Any]) -> list[str]:
    """What the stages whose failure ended the run wrote about it (the ``terminal_detail``
    fact), one line each, for under the terminal reason.

    >>> terminal_detail_lines({"terminal_detail": [{"scope": "", "node_id": "verify",
    ...     "file": "verify/stderr.log", "text": "2 tests failed\\nsee above"}]})
    ['verify wrote (verify/stderr.log): 2 tests failed see above']
    >>> terminal_detail_lines({"terminal_detail": [{"scope": "parallel/par/pass1/01-a",
    ...     "node_id": "a", "file": None, "text": "exit status 2"}]})
    ['a in parallel/par/pass1/01-a failed: exit status 2']
    >>> terminal_detail_lines({"terminal_detail": []})
    []
    """
    lines = []
    for detail in facts.get("terminal_detail") or []:
        if not isinstance(detail, Mapping):
            continue
        where = f" in {detail.get('scope')}" if detail.get("scope") else ""
        text = flatten_tail(str(detail.get("text") or ""), REASON_SHOWN)
        said = f"wrote ({detail.get('file')})" if detail.get("file") else "failed"
        lines.append(f"{detail.get('node_id')}{where} {said}: {text}")
    return lines
