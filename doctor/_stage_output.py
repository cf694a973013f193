"""What a failed stage wrote about its failure, for reasons that say nothing themselves.

A Kilroy tool node that exits non-zero fails with Go's ``exec.ExitError`` text, ``exit status
1``, and that is also the run's reason when nothing routes the failure on (final.json's
``failure_reason``, ``run_failed``'s ``reason``): the cause is in the stage's own output files
(``<node>/stderr.log``, ``stdout.log``, or those of its ``attempt_<K>/`` and ``visit_<N>/``
archives) and in the scope's ``failure_dossier.json`` about the node (``tool.stderr_excerpt``,
format doc §3.7). ``swallowed_error`` reads them to tell an explained exit code from an
unexplained one (:func:`stage_output`); the facts quote them beside the run's terminal reason
(:func:`terminal_detail`).
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from doctor._layout import is_top_scope

__all__ = [
    "ALL_BRANCHES_FAILED",
    "BARE_EXIT_RE",
    "DETAIL_CHARS",
    "GOAL_GATE_RE",
    "SWALLOWED_RE",
    "ran_outside_git",
    "says_nothing",
    "stage_detail",
    "stage_output",
    "terminal_detail",
]

#: A reason that says nothing (full match, after trimming; RE2 syntax for DuckDB).
SWALLOWED_RE = (
    r"(?i)(?:[^:=0-9\n]{0,80}[:=]\s*)?"
    r"""(?:none|null|nil|<nil>|undefined|nan|""|''|\{\}|\[\])?"""
)
#: A bare process exit code and nothing else.
BARE_EXIT_RE = (
    r"(?i)(?:exit status|exit code|exited with (?:exit )?(?:code|status)|return ?code|"
    r"status code)\s*[:=]?\s*-?[0-9]+"
)

_OUTPUTS = ("stderr.log", "stdout.log")
_MAX_READ = 64 * 1024
#: How much of a stage's output :func:`terminal_detail` quotes: its last lines, this many
#: characters at most (the end of a log says why it stopped).
DETAIL_CHARS = 1000


def _plain_dir(path: Path) -> bool:
    """A real directory, not a symlink (nothing outside the run is read)."""
    try:
        return not path.is_symlink() and path.is_dir()
    except OSError:
        return False


def _tail(path: Path) -> str:
    """The last :data:`_MAX_READ` bytes of the regular file ``path`` as text, stripped; empty
    for anything else (a symlink, a FIFO, a file that cannot be read)."""
    return _read(path, _MAX_READ, from_end=True).strip()


def _read(path: Path, limit: int, *, from_end: bool = False) -> str:
    """The first (``from_end``: last) ``limit`` bytes of the regular file ``path`` as text;
    empty for anything else (a symlink, a FIFO, a file that cannot be read)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return ""
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return ""
        if from_end:
            os.lseek(fd, max(0, st.st_size - limit), os.SEEK_SET)
        return os.read(fd, limit).decode("utf-8", errors="replace")
    except OSError:
        return ""
    finally:
        os.close(fd)


def _dossier_excerpt(run_path: Path, scope: str, node_id: str) -> str:
    """The stderr excerpt of the scope's ``failure_dossier.json`` when it is about
    ``node_id``; empty otherwise.

    Kilroy overwrites the dossier on every failure (format doc §3.7), so only the latest
    failed node's is there; its ``tool.stderr_excerpt`` is the stage's stderr.
    """
    path = (run_path / scope if scope else run_path) / "failure_dossier.json"
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > _MAX_READ:
            return ""
        value = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return ""
    if not isinstance(value, dict) or value.get("failed_node_id") != node_id:
        return ""
    tool = value.get("tool")
    excerpt = tool.get("stderr_excerpt") if isinstance(tool, dict) else None
    return excerpt.strip() if isinstance(excerpt, str) else ""


def _stage_text(run_path: Path, scope: str, node_id: str) -> tuple[Path, str] | None:
    """The first of the stage's own output files that has text, with that text (its tail);
    else the scope's failure dossier about the node with its stderr excerpt; else None."""
    node_dir = run_path / scope / node_id if scope else run_path / node_id
    if os.sep in node_id or node_id in ("", ".", "..") or not _plain_dir(node_dir):
        return None
    dirs = [node_dir]
    for parent in (node_dir, *sorted(d for d in node_dir.glob("visit_*") if _plain_dir(d))):
        dirs.extend(sorted(d for d in parent.glob("attempt_*") if _plain_dir(d)))
        if parent is not node_dir:
            dirs.append(parent)
    for d in dirs:
        for name in _OUTPUTS:
            text = _tail(d / name)
            if text:
                return d / name, text
    excerpt = _dossier_excerpt(run_path, scope, node_id)
    dossier = (run_path / scope if scope else run_path) / "failure_dossier.json"
    return (dossier, excerpt) if excerpt else None


#: How git begins to say that a directory is no git checkout: ``git diff`` outside any
#: repository ("warning: Not a git repository. Use --no-index …"), or in a worktree whose
#: link names a repository that is gone ("fatal: not a git repository: <gitdir>").
_NOT_A_REPOSITORY = re.compile(r"(?i)^(?:warning|fatal): not a git repository\b")
#: The run-scoped directory Kilroy gives an agent stage's fallback status path when it finds
#: no run id in the stage's directory (no git checkout on the run's branch there), in place
#: of ``.ai/runs/<run_id>/``.
_NO_RUN_ID = "/.ai/runs/unknown_run/"


def ran_outside_git(run_path: Path, scope: str, node_id: str) -> str | None:
    """The file of the stage (its latest) that shows it ran outside a git checkout, as
    ``diff.patch`` or ``cli_invocation.json``; None when none does.

    A tool stage's ``diff.patch`` (Kilroy's ``git diff`` of the worktree after the stage) is
    then git saying the directory is no git checkout, not a patch; an agent stage's
    ``cli_invocation.json`` names a ``status_fallback_path`` under ``.ai/runs/unknown_run/``
    (Kilroy found no run id there; in the run's checkout it is ``.ai/runs/<run_id>/``).

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = (Path(tmp) / "build").mkdir()
    ...     said = "warning: Not a git repository. Use --no-index to compare two paths"
    ...     _ = (Path(tmp) / "build" / "diff.patch").write_text(said + "\\n")
    ...     _ = (Path(tmp) / "impl").mkdir()
    ...     cli = {"status_fallback_path": "/l/r/worktree/.ai/runs/unknown_run/status.json"}
    ...     _ = (Path(tmp) / "impl" / "cli_invocation.json").write_text(json.dumps(cli))
    ...     [ran_outside_git(Path(tmp), "", n) for n in ("build", "impl", "test")]
    ['diff.patch', 'cli_invocation.json', None]
    """
    node_dir = run_path / scope / node_id if scope else run_path / node_id
    if os.sep in node_id or node_id in ("", ".", "..") or not _plain_dir(node_dir):
        return None
    if _NOT_A_REPOSITORY.match(_read(node_dir / "diff.patch", 200)):
        return "diff.patch"
    try:
        cli = json.loads(_read(node_dir / "cli_invocation.json", _MAX_READ))
    except ValueError:
        return None
    fallback = cli.get("status_fallback_path") if isinstance(cli, dict) else None
    if isinstance(fallback, str) and _NO_RUN_ID in fallback:
        return "cli_invocation.json"
    return None


def stage_output(run_path: Path, scope: str, node_id: str) -> Path | None:
    """The first of the stage's own output files that has text, if any.

    Looks in ``<scope>/<node_id>/`` and its ``attempt_<K>/``/``visit_<N>/`` archives (one
    level of visits, then their attempts), never following symlinks; then the scope's
    ``failure_dossier.json`` when it is about the node and quotes its stderr.
    """
    found = _stage_text(run_path, scope, node_id)
    return found[0] if found is not None else None


def says_nothing(reason: str) -> bool:
    """Whether a failure reason is a bare exit code or says nothing at all.

    >>> says_nothing("exit status 1"), says_nothing(" None "), says_nothing("disk full")
    (True, True, False)
    """
    text = reason.strip()
    return bool(re.fullmatch(BARE_EXIT_RE, text) or re.fullmatch(SWALLOWED_RE, text))


def _last_lines(text: str) -> str:
    """The end of ``text``: its last non-blank lines, at most :data:`DETAIL_CHARS` characters
    (a line cut at the front starts with ``…``).

    >>> _last_lines("a\\n\\nb\\n")
    'a\\nb'
    >>> len(_last_lines("x" * 5000)), _last_lines("x" * 5000)[0]
    (1000, '…')
    """
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    out = "\n".join(lines)
    return out if len(out) <= DETAIL_CHARS else "…" + out[-(DETAIL_CHARS - 1) :]


#: The reason of a fan-in whose branches all failed (Kilroy's join), which the run ends with
#: when nothing routes the join's failure on.
ALL_BRANCHES_FAILED = "all parallel branches failed"
#: The reason of a run Kilroy ended at its exit because a goal gate node's last outcome was no
#: success and no retry target was set (``goal gate unsatisfied (%s) and no retry target``):
#: it names the node, not why that node failed.
GOAL_GATE_RE = re.compile(r"goal gate unsatisfied \((?P<node>[^()\n]+)\) and no retry target")
_PASS = re.compile(r"^(?P<fan>(?:restart-[0-9]+/)?parallel/[^/]+)/(?:pass(?P<n>[0-9]+)/)?[^/]+$")


def terminal_detail(
    run_path: Path,
    reason: Any,
    failures: Sequence[tuple[str, str, str]],
    current: tuple[str | None, str | None],
    failed_branches: Sequence[str] = (),
) -> list[dict[str, str | None]]:
    """What the stages whose failure ended the run wrote about it, when the run's terminal
    ``reason`` does not say: a bare exit code or nothing at all (:func:`says_nothing`), a
    fan-in's :data:`ALL_BRANCHES_FAILED`, or a goal gate's :data:`GOAL_GATE_RE` (the gate
    node's last failure: :func:`_gate_detail`).

    ``failures``: the run's failed attempts' ``(scope, node, reason)``. For a reason that says
    nothing, the stage is a top-level one (the run's own or a restart's) that failed with
    exactly ``reason``: the run's ``current`` ``(scope, node)`` when it is one of them, else
    the only one. For a fan-in, the stages are each of ``failed_branches`` (branch scopes)
    of its fan-out's latest dispatch (``passN``): its failed node (the one the branch's
    failure dossier names, else its only one). Each item names the stage (``scope``,
    ``node_id``), the file read relative to the run (``file``) and the text (``text``,
    :func:`_last_lines`); a branch stage without output: its failure reason, ``file`` null.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = (Path(tmp) / "verify").mkdir()
    ...     _ = (Path(tmp) / "verify" / "stderr.log").write_text("2 tests failed\\n")
    ...     terminal_detail(Path(tmp), "exit status 1", [("", "verify", "exit status 1")],
    ...                     ("", "verify"))
    [{'scope': '', 'node_id': 'verify', 'file': 'verify/stderr.log', 'text': '2 tests failed'}]
    """
    if not isinstance(reason, str):
        return []
    if reason.strip() == ALL_BRANCHES_FAILED:
        found = (_branch_detail(run_path, b, failures) for b in _latest(failed_branches))
        return [d for d in found if d is not None]
    gate = GOAL_GATE_RE.fullmatch(reason.strip())
    if gate is not None:
        detail = _gate_detail(run_path, gate["node"], failures, current[0] or "")
        return [detail] if detail is not None else []
    if not says_nothing(reason):
        return []
    stages = sorted({(s, n) for s, n, r in failures if r == reason and is_top_scope(s)})
    scope, node = (current[0] or "", current[1])
    if (scope, node) not in stages:
        if len(stages) != 1:
            return []
        scope, node = stages[0]
    detail = stage_detail(run_path, scope, str(node))
    return [detail] if detail is not None else []


def stage_detail(run_path: Path, scope: str, node: str) -> dict[str, str | None] | None:
    """What the stage ``node`` of ``scope`` wrote (:func:`terminal_detail`'s item: ``scope``,
    ``node_id``, ``file``, ``text``), or None when it wrote nothing."""
    found = _stage_text(run_path, scope, node)
    if found is None:
        return None
    path, text = found
    return {
        "scope": scope,
        "node_id": node,
        "file": path.relative_to(run_path).as_posix(),
        "text": _last_lines(text),
    }


def _latest(branches: Sequence[str]) -> list[str]:
    """The branch scopes of each fan-out's latest dispatch (``passN/``; a layout without
    passes is one dispatch), sorted.

    >>> _latest(["parallel/par/pass1/01-a", "parallel/par/pass2/01-a", "parallel/q/01-b"])
    ['parallel/par/pass2/01-a', 'parallel/q/01-b']
    """
    parsed = [(m["fan"], int(m["n"] or 0), b) for b in branches if (m := _PASS.match(b))]
    last: dict[str, int] = {}
    for fan, n, _b in parsed:
        last[fan] = max(n, last.get(fan, n))
    return sorted(b for fan, n, b in parsed if n == last[fan])


def _branch_detail(
    run_path: Path, scope: str, failures: Sequence[tuple[str, str, str]]
) -> dict[str, str | None] | None:
    """What the failed node of the branch ``scope`` wrote, else its failure reason."""
    nodes = {n: r for s, n, r in failures if s == scope}
    named = _dossier_node(run_path, scope)
    node = named if named in nodes else (next(iter(nodes)) if len(nodes) == 1 else None)
    if node is None:
        return None
    detail = stage_detail(run_path, scope, node)
    if detail is None:
        return {"scope": scope, "node_id": node, "file": None, "text": _last_lines(nodes[node])}
    return detail


def _dossier_node(run_path: Path, scope: str) -> str | None:
    """The node the scope's ``failure_dossier.json`` is about, if it can be read."""
    path = run_path / scope / "failure_dossier.json"
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > _MAX_READ:
            return None
        value = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None
    node = value.get("failed_node_id") if isinstance(value, dict) else None
    return node if isinstance(node, str) else None


def _gate_detail(
    run_path: Path, node: str, failures: Sequence[tuple[str, str, str]], current_scope: str
) -> dict[str, str | None] | None:
    """Why the goal gate ``node`` failed: its last failure in a top-level scope (the run's
    current one when it failed there, else the only one it failed in): what the stage wrote
    when that reason says nothing (:func:`says_nothing`), else the reason itself (``file``
    null). The last failure is the one the node's ``status.json`` holds (Kilroy rewrites it
    at each attempt's end) when it is one of the node's failures there, else the node's only
    failure reason there; None when neither tells it.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = (Path(tmp) / "impl").mkdir()
    ...     said = {"status": "fail", "failure_reason": "missing status.json"}
    ...     _ = (Path(tmp) / "impl" / "status.json").write_text(json.dumps(said))
    ...     _gate_detail(Path(tmp), "impl", [("", "impl", "signal: killed"),
    ...                                      ("", "impl", "missing status.json")], "")
    {'scope': '', 'node_id': 'impl', 'file': None, 'text': 'missing status.json'}
    """
    scopes = sorted({s for s, n, _r in failures if n == node and is_top_scope(s)})
    scope = current_scope if current_scope in scopes else (scopes[0] if len(scopes) == 1 else None)
    if scope is None:
        return None
    reasons = {r for s, n, r in failures if n == node and s == scope}
    last = _status_reason(run_path, scope, node)
    reason = last if last in reasons else (next(iter(reasons)) if len(reasons) == 1 else None)
    if reason is None:
        return None
    if says_nothing(reason):
        detail = stage_detail(run_path, scope, node)
        if detail is not None:
            return detail
    return {"scope": scope, "node_id": node, "file": None, "text": _last_lines(reason)}


def _status_reason(run_path: Path, scope: str, node: str) -> str | None:
    """The ``failure_reason`` of the stage's ``status.json`` (its last attempt's), if it can
    be read."""
    if os.sep in node or node in ("", ".", ".."):
        return None
    try:
        value = json.loads(_read((run_path / scope / node) / "status.json", _MAX_READ))
    except (ValueError, RecursionError):
        return None
    reason = value.get("failure_reason") if isinstance(value, dict) else None
    return reason if isinstance(reason, str) else None
