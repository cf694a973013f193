"""A ``final.json`` that ``doctor repair`` wrote and the run has since gone past.

``terminalize`` writes final.json (``repaired_by``) for a run whose owner was dead and quiet:
its judgement at one moment, stamped with the run's last event. ``kilroy attractor resume``
accepts such a run: it takes the run's lock, works on from the checkpoint and keeps the old
final.json until it finishes, then rewrites it (real runs, docs/repair.md "Kilroy and a
repaired run"). So once any stream of the run ends with an event after the doctor's
final.json's ``timestamp`` (each stream's last event, as ``terminalize`` stamped it: a
forwarded ``branch_progress`` earlier in a stream may carry a later time), that final.json
no longer says how the run ended: the run is read as if it had none (``running`` while the
resume works, ``orphaned`` once it died, when ``terminalize`` replaces it, keeping it as a
backup). A final.json Kilroy wrote is never set aside here.
"""

from __future__ import annotations

from typing import Any

from doctor._timestamps import parse_iso

__all__ = ["repaired_final_ns", "superseded"]


def repaired_final_ns(value: Any) -> int | None:
    """The ``timestamp`` (epoch ns) of a final.json ``doctor repair`` wrote; None for any
    other (Kilroy's, the executor's, one without a readable timestamp).

    >>> repaired_final_ns({"status": "fail", "timestamp": "2026-12-06T19:17:06Z",
    ...                    "repaired_by": {"tool": "rundoctor doctor repair"}})
    1796584626000000000
    >>> repaired_final_ns({"status": "fail", "timestamp": "2026-12-06T19:17:06Z"}) is None
    True
    """
    if not isinstance(value, dict) or not isinstance(value.get("repaired_by"), dict):
        return None
    return parse_iso(value.get("timestamp"))


def superseded(value: Any, last_event_ns: int | None) -> bool:
    """Whether the final.json ``value`` is the doctor's and the run wrote an event after it
    (``last_event_ns``: the latest of its streams' last events): a resume went on past it.

    >>> final = {"timestamp": "2026-12-06T19:17:06Z", "repaired_by": {}}
    >>> superseded(final, 1796584626000000000), superseded(final, 1796584630000000000)
    (False, True)
    """
    ns = repaired_final_ns(value)
    return ns is not None and last_event_ns is not None and last_event_ns > ns
