"""A branch's outcome as its parent recorded it.

A Kilroy parent forwards each branch's lifecycle into its own stream
(:data:`BRANCH_LIFECYCLE_SQL`), ending with a ``branch_subgraph_done`` record; a fan-out's
``parallel_results.json`` holds the outcome of each branch of its latest pass. When either
names a branch, its state is what was recorded (:func:`_recorded_state`), not its liveness.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from doctor._documents import RunDocuments

__all__ = ["BRANCH_LIFECYCLE_SQL"]


#: Events by which a parent forwards its branches' lifecycle: ``branch_progress`` since about
#: 2026-02-11, ``branch_liveness`` in the builds of 2026-02-10/11 (format doc §2.6), which
#: carries ``branch_key``, ``branch_logs_root`` and ``branch_event`` only (no status).
BRANCH_LIFECYCLE_SQL = "('branch_progress', 'branch_liveness')"
_BRANCH_DONE_SQL = f"""
        SELECT run_id, scope, branch_logs_root, branch_key, arg_max(branch_status, seq),
               epoch_ns(max(ts))
        FROM progress_events
        WHERE event IN {BRANCH_LIFECYCLE_SQL} AND branch_event = 'branch_subgraph_done'
        GROUP BY ALL"""


_SUCCESS_LIKE = ("success", "partial_success", "degraded_success", "skipped")
_MAX_RESULTS_BYTES = 8 * 1024 * 1024
_FANOUT_SCOPE = re.compile(r"(?:(?P<prefix>.*)/)?parallel/(?P<fanout>[^/]+)/(?:pass\d+/)?[^/]+")


class _DoneRecords:
    """A run's ``branch_subgraph_done`` records ``(parent, logs_root, key, status, ns)``,
    indexed by the branch scopes each can name (see :func:`_names`): a fan-out of B branches
    finds each branch's records at once, where trying every record for every branch took
    B² :func:`_names` calls (3,000 branches: 12 million, 20 s).

    >>> done = _DoneRecords([("", "/r/parallel/p/pass1/01-a", "a", "success", 1),
    ...                      ("", None, "b", "fail", 2)])
    >>> done.of("parallel/p/pass1/01-a"), done.of("parallel/p/pass1/02-b"), done.of("x")
    ([(1, 'success')], [(2, 'fail')], [])
    """

    def __init__(self, records: list[tuple[Any, ...]]) -> None:
        self._by_suffix: dict[str, list[int]] = {}
        self._by_key: dict[str, list[int]] = {}
        self._records = records
        #: Each fan-out's parallel_results.json, read once for all its branches.
        self.results: dict[Path, dict[str, Any] | None] = {}
        for i, (_parent, root, key, _status, _ns) in enumerate(records):
            if isinstance(root, str) and root:
                # _names: the root ends with "/" + scope, so the scope is a suffix of it
                # starting after one of its slashes.
                parts = root.rstrip("/").split("/")
                for j in range(1, len(parts)):
                    self._by_suffix.setdefault("/".join(parts[j:]), []).append(i)
            elif isinstance(key, str):
                self._by_key.setdefault(key, []).append(i)

    def of(self, scope: str) -> list[tuple[Any, Any]]:
        """``(ns, status)`` of the records of branch ``scope``, in the records' order."""
        key = scope.rsplit("/", 1)[-1].split("-", 1)[-1]
        found = set(self._by_suffix.get(scope, ())) | set(self._by_key.get(key, ()))
        return [
            (ns, st)
            for i in sorted(found)
            for parent, root, key, st, ns in (self._records[i],)
            if _names(parent, root, key, scope)
        ]


def _recorded_state(
    docs: RunDocuments,
    done: _DoneRecords,
    scope: str,
    last_start: int | None,
    last_status: Any = None,
) -> str | None:
    """A Kilroy branch's outcome as its parent recorded it: the parent stream's latest
    ``branch_subgraph_done`` for it, else its fan-out's ``parallel_results.json``. A record
    without a status (``branch_liveness``, 2026-02-10/11 builds) says the branch finished;
    its outcome is then that of its last attempt (``last_status``), what its subgraph
    returned.

    None when there is neither, or when the branch started an attempt after that record:
    ``kilroy attractor resume`` of a run killed mid-fan-out dispatches the fan-out again into
    the same ``passN/`` directories (real run ``fanout_resumed_killed``), so the record (and
    the results of any join before it) are of the dispatch before, and the branch's state is
    its own stream's.
    """
    records = done.of(scope)
    if not records:
        return _results_state(docs.path, scope, done.results)
    done_ns, status = max(records, key=lambda r: -1 if r[0] is None else int(r[0]))
    if done_ns is not None and last_start is not None and int(done_ns) < int(last_start):
        return None
    return _outcome_state(status) or _outcome_state(last_status)


def _results_state(
    run_path: Path, scope: str, read: dict[Path, dict[str, Any] | None] | None = None
) -> str | None:
    """A Kilroy branch's outcome from its fan-out's ``parallel_results.json`` (format doc §3.8).

    The fan-out node's directory (``[restart-N/]<fanout>/``) holds one entry per branch of the
    latest pass, each with the branch's ``logs_root`` and the ``outcome`` of its last node.
    Only read when the parent stream has no ``branch_subgraph_done`` for the branch; ``read``
    keeps each file's entries for the fan-out's other branches (:func:`_results_of`).

    >>> _results_state(Path("/nonexistent"), "parallel/par/pass1/01-a") is None
    True
    """
    m = _FANOUT_SCOPE.fullmatch(scope)
    if m is None:
        return None
    base = run_path / m["prefix"] if m["prefix"] else run_path
    path = base / m["fanout"] / "parallel_results.json"
    read = {} if read is None else read
    if path not in read:
        read[path] = _results_of(path)
    statuses = read[path]
    return None if statuses is None else _outcome_state(statuses.get(scope))


def _results_of(path: Path) -> dict[str, Any] | None:
    """``path``'s entries as the status of the last one naming each scope (every scope its
    ``logs_root`` can name, as :func:`_names` matches), None when it cannot be read."""
    try:
        if (
            path.parent.is_symlink()
            or path.is_symlink()
            or not path.is_file()
            or path.stat().st_size > _MAX_RESULTS_BYTES
        ):
            return None
        entries = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(entries, list):
        return None
    statuses: dict[str, Any] = {}
    for e in entries:
        if not isinstance(e, dict) or not isinstance(e.get("outcome") or {}, dict):
            continue
        root = e.get("logs_root")
        if isinstance(root, str) and root:
            parts = root.rstrip("/").split("/")
            for k in range(1, len(parts)):
                statuses["/".join(parts[k:])] = (e.get("outcome") or {}).get("status")
    return statuses


def _names(parent: Any, logs_root: Any, key: Any, scope: str) -> bool:
    """Whether a parent's record of a branch (its ``branch_subgraph_done``, or an entry of its
    ``parallel_results.json``) is of branch ``scope``.

    Matched on ``branch_logs_root`` (the branch's absolute directory, which ends with the
    scope), else on the branch key at the end of the scope under the same parent.

    >>> _names("", "/tmp/r/parallel/par/pass1/01-a", "a", "parallel/par/pass1/01-a")
    True
    >>> _names("", None, "a", "parallel/par/pass1/02-b")
    False
    """
    if isinstance(logs_root, str) and logs_root:
        return logs_root.rstrip("/").endswith("/" + scope)
    return (
        isinstance(key, str)
        and scope.startswith(f"{parent}/" if parent else "")
        and scope.rsplit("/", 1)[-1].split("-", 1)[-1] == key
    )


def _outcome_state(status: Any) -> str | None:
    """The branch state a recorded outcome status means; None for no status."""
    if not isinstance(status, str) or not status:
        return None
    status = status.strip().lower()
    if status in _SUCCESS_LIKE:
        return "succeeded"
    return "canceled" if status in ("canceled", "cancelled") else "failed"
