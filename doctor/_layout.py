"""The layout adapter: the one place that knows the file names of a run directory.

It understands Kilroy/Attractor runs of every version in ``kilroy-run-format.md`` (branches with
and without the ``passN/`` level, ``restart-N/`` directories, the ``.ai/status.json`` and
``.ai/runs/<run_id>/status.json`` fallbacks, ``run.pid`` and ``run.lock.json``) and the
executor's native layout, which is a superset (``<node>/attempt-<n>/`` directories and a
``manifest.json`` whose ``layout`` key says ``rundoctor-native/1``).

A *scope* is one event stream, named by its directory relative to the run: ``""`` for the
top level, ``"restart-2"`` for a loop restart, ``"parallel/fanout/01-impl_dungeon"`` or
``"parallel/fan/pass1/01-a"`` for a branch. Symlinks are never followed, so nothing outside
the run directory is read.

Names are bytes until proven otherwise: a node or branch directory whose name is not UTF-8
is not read but recorded in :attr:`RunLayout.unreadable` (an ``unreadable_artifact``
finding), and a run directory whose name is not UTF-8 gets a run id with the bad bytes
written ``\\xNN`` (its path keeps the real name).
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rundoctor.paths import display_name, file_kind

__all__ = [
    "CHECKPOINT",
    "FINAL",
    "GRAPH_DOT",
    "LIVE",
    "MANIFEST",
    "NATIVE_LAYOUT",
    "PROGRESS",
    "RUN_CONFIG",
    "SHOWN_BYTE",
    "SYMLINK",
    "TOP_SQL",
    "RunLayout",
    "ScopeLayout",
    "StageDir",
    "Unreadable",
    "discover",
    "display_name",
    "fanout_dirs",
    "has_parallel_dir",
    "is_top_scope",
    "linked_dirs",
    "name_on_disk",
    "odd_run_marker",
    "stage_dirs",
    "symlink_detail",
    "unsearchable_dirs",
]

PROGRESS = "progress.ndjson"
LIVE = "live.json"
CHECKPOINT = "checkpoint.json"
FINAL = "final.json"
MANIFEST = "manifest.json"
RUN_CONFIG = "run_config.json"
RUN_PID = "run.pid"
RUN_LOCK = "run.lock.json"
#: A detached run's (``kilroy attractor run --detach``) standard output and error.
RUN_OUT = "run.out"
#: The graph the run executes (a Kilroy run copies it into its logs root).
GRAPH_DOT = "graph.dot"
STATUS = "status.json"
NATIVE_LAYOUT = "rundoctor-native/1"

#: Directories directly under a scope that are never stage (node) directories.
_NOT_NODE_DIRS = frozenset(
    {"parallel", "worktree", "modeldb", "outputs", "input_snapshot", "artifacts", ".git", ".ai"}
)
_RESTART = re.compile(r"restart-(\d+)")
_TOP_SCOPE = re.compile(r"(?:restart-\d+)?")
_ATTEMPT_DIR = re.compile(r"(?:attempt[-_](\d+))|(?:visit_(\d+))")
#: Files that mark a directory as a run: a progress stream or any top-level run document.
_RUN_MARKERS = (PROGRESS, MANIFEST, FINAL, CHECKPOINT, RUN_PID, RUN_LOCK)
_MAX_BRANCH_DEPTH = 4
#: Fan-outs inside branches inside branches…: how many levels of them are read.
_MAX_FANOUT_NESTING = 8
_MAX_MANIFEST_BYTES = 32 * 1024 * 1024


def is_top_scope(scope: str) -> bool:
    """True for the run's own stream and its loop restarts, false for branches.

    >>> is_top_scope(""), is_top_scope("restart-3"), is_top_scope("parallel/f/01-a")
    (True, True, False)
    """
    return _TOP_SCOPE.fullmatch(scope) is not None


#: SQL predicate over ``scope``: the run's own stream and its loop restarts (what
#: :func:`is_top_scope` says of a scope, in SQL).
TOP_SQL = "(scope = '' OR regexp_full_match(scope, 'restart-[0-9]+'))"


@dataclass(frozen=True, slots=True)
class Unreadable:
    """An artifact the doctor could not read as written: where (relative to the run), what
    kind of artifact it should have been, and why."""

    rel: str
    kind: str
    detail: str


#: How the ``unreadable_artifact`` detail of a symlinked artifact begins.
SYMLINK = "a symlink to "

#: How much of a symlink's target an ``unreadable_artifact`` quotes.
_TARGET_SHOWN = 160


def symlink_detail(path: Path) -> str:
    """The ``unreadable_artifact`` detail of a symlink where a run keeps a file: where it
    points (read with ``readlink``, never followed; bytes that are not UTF-8 written ``\\xNN``).

    >>> import tempfile; d = Path(tempfile.mkdtemp()); (d / "final.json").symlink_to("/etc/x")
    >>> symlink_detail(d / "final.json")
    'a symlink to /etc/x, not followed: the doctor reads nothing through a symlink'
    """
    try:
        target = os.fsdecode(os.readlink(path))
    except OSError:
        target = "?"
    shown = target.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if len(shown) > _TARGET_SHOWN:
        shown = shown[: _TARGET_SHOWN - 1] + "…"
    return f"{SYMLINK}{shown}, not followed: the doctor reads nothing through a symlink"


#: A byte of a name that is not UTF-8, as the doctor shows it (:func:`display_name`).
SHOWN_BYTE = re.compile(r"\\x([89a-fA-F][0-9a-fA-F])")


def name_on_disk(run_id: str) -> str:
    """``run_id`` as the doctor shows it, back to the name on disk: a byte that is not UTF-8,
    shown ``\\xNN`` (:func:`display_name`, the ``run_id`` of ``--json`` output), is that byte
    again, so an id copied from the doctor's output names the run it came from.

    >>> name_on_disk("r\\\\xfe") == "r" + b"\\xfe".decode("utf-8", "surrogateescape")
    True
    >>> name_on_disk("plain"), display_name(name_on_disk("r\\\\xfe"))
    ('plain', 'r\\\\xfe')
    """
    return SHOWN_BYTE.sub(lambda m: chr(0xDC00 + int(m[1], 16)), run_id)


def _is_text(name: str) -> bool:
    return display_name(name) == name


@dataclass(frozen=True, slots=True)
class StageDir:
    """One node's directory in a scope, with every status file found for it."""

    node_id: str
    path: Path
    status_files: tuple[Path, ...]  # canonical first, then attempt/visit archives
    stdout_logs: tuple[Path, ...]
    #: Attempt and visit archives this process may not list or enter (never read).
    hidden: tuple[Path, ...] = ()
    #: Attempt and visit archives that are symlinks to directories (never followed).
    linked: tuple[Path, ...] = ()


@dataclass(frozen=True, slots=True)
class ScopeLayout:
    """One event stream and the documents beside it."""

    scope: str
    path: Path

    @property
    def progress(self) -> Path:
        return self.path / PROGRESS

    @property
    def live(self) -> Path:
        return self.path / LIVE

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def final(self) -> Path:
        return self.path / FINAL

    def worktree_status_files(self, run_id: str) -> list[Path]:
        """Stranded status files an agent may have written instead of the stage's own."""
        wt = self.path / "worktree"
        candidates = [wt / STATUS, wt / ".ai" / STATUS, wt / ".ai" / "runs" / run_id / STATUS]
        # Every directory on the way must be real too: a symlinked worktree leads outside.
        return [p for p in candidates if _is_plain_file(p) and _plain_dirs(self.path, p.parent)]


@dataclass(frozen=True, slots=True)
class RunLayout:
    """Everything the doctor reads in one run directory."""

    run_id: str
    path: Path
    layout: str  # "kilroy" | "native"
    scopes: tuple[ScopeLayout, ...]
    extra_files: tuple[Path, ...] = field(default=())
    unreadable: tuple[Unreadable, ...] = field(default=())

    # The run's own documents, named when asked for (a rescan of a large fleet reads none).
    @property
    def manifest(self) -> Path:
        return self.path / MANIFEST

    @property
    def run_config(self) -> Path:
        return self.path / RUN_CONFIG

    @property
    def run_pid(self) -> Path:
        return self.path / RUN_PID

    @property
    def run_lock(self) -> Path:
        return self.path / RUN_LOCK

    @property
    def run_out(self) -> Path:
        return self.path / RUN_OUT

    @property
    def graph(self) -> Path:
        return self.path / GRAPH_DOT

    @property
    def top(self) -> ScopeLayout:
        return self.scopes[0]

    def scope(self, name: str) -> ScopeLayout:
        for s in self.scopes:
            if s.scope == name:
                return s
        raise KeyError(name)


def _is_plain_file(path: Path | str) -> bool:
    """A regular file, not a symlink (one ``lstat``)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except (OSError, ValueError):
        return False


def _is_status_file(path: Path) -> bool:
    """Something other than a symlink at a status file's name: a regular file is read, and
    anything else (a FIFO, a directory) is reported as the status file it should have been.
    """
    try:
        return not stat.S_ISLNK(os.lstat(path).st_mode)
    except (OSError, ValueError):
        return False


def _is_plain_dir(path: Path | str) -> bool:
    """A directory, not a symlink (one ``lstat``)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except (OSError, ValueError):
        return False


def _plain_dirs(base: Path, path: Path) -> bool:
    """True when every directory from below ``base`` down to ``path`` is a real directory."""
    while path != base:
        if not _is_plain_dir(path):
            return False
        path = path.parent
    return True


def _manifest_layout(manifest: Path | str) -> object:
    """The manifest's ``layout`` key; ``None`` when absent or the manifest does not parse.

    The key is read from the parsed document: the marker text anywhere else (a goal that
    mentions it) does not make a run native, and a long manifest still is.
    """
    return _manifest_key(manifest, "layout")


def _manifest_key(manifest: Path | str, key: str) -> object:
    """The manifest's ``key``; ``None`` when absent, or when the manifest is no regular file
    (never a FIFO, never through a symlink), is too long or does not parse."""
    if not _is_plain_file(manifest):
        return None
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(manifest, flags)  # checked again on the descriptor: never a FIFO
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_MANIFEST_BYTES:
                return None
            value = json.loads(os.read(fd, _MAX_MANIFEST_BYTES + 1))
        finally:
            os.close(fd)
    except (OSError, ValueError, RecursionError):
        return None
    return value.get(key) if isinstance(value, dict) else None


def _looks_like_run(path: Path | str) -> bool:
    folder = os.fspath(path)
    return _is_plain_dir(folder) and any(
        _is_plain_file(os.path.join(folder, m)) for m in _RUN_MARKERS
    )


def odd_run_marker(folder: str) -> str | None:
    """Why a directory that is no run by :func:`_looks_like_run` would be one: the first of a
    run's files in it that is there but no regular file (``progress.ndjson is a FIFO``), which
    the doctor never reads; None when it holds none of them.

    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> odd_run_marker(folder) is None
    True
    >>> os.mkfifo(os.path.join(folder, "progress.ndjson")); odd_run_marker(folder)
    'progress.ndjson is a FIFO'
    """
    for marker in _RUN_MARKERS:
        try:
            mode = os.lstat(os.path.join(folder, marker)).st_mode
        except OSError:
            continue
        if not stat.S_ISREG(mode):
            return f"{marker} is {file_kind(mode)}"
    return None


def _branch_scopes(
    base: Path, prefix: str, unreadable: list[Unreadable] | None = None, nesting: int = 0
) -> Iterator[ScopeLayout]:
    parallel = base / "parallel"
    if not _is_plain_dir(parallel):
        if unreadable is not None and os.path.islink(parallel) and os.path.isdir(parallel):
            rel = display_name(f"{prefix}parallel")
            unreadable.append(Unreadable(rel, "branch", symlink_detail(parallel)))
        return
    # Branch roots sit at parallel/<fanout>/<NN>-<key> or parallel/<fanout>/passN/<NN>-<key>;
    # walk a bounded depth instead of assuming either, never entering worktrees. A branch that
    # runs a fan-out of its own holds that fan-out's branches in its own parallel/ directory
    # (Kilroy nests them: parallel/par/pass1/01-a/parallel/inner/pass1/02-a2), a bounded
    # number of levels deep.
    stack: list[tuple[Path, int]] = [(parallel, 0)]
    found: list[Path] = []
    while stack:
        current, depth = stack.pop()
        try:
            children = sorted(os.scandir(current), key=lambda e: e.name)
        except OSError:
            continue
        for entry in children:
            if entry.name in _NOT_NODE_DIRS:
                continue
            child = Path(entry.path)
            if not entry.is_dir(follow_symlinks=False):
                if unreadable is not None and _is_text(entry.name) and _linked_dir(entry):
                    # A branch (or a level above one) behind a symlink: never followed, said.
                    rel = display_name(f"{prefix}{child.relative_to(base).as_posix()}")
                    unreadable.append(Unreadable(rel, "branch", symlink_detail(child)))
                continue
            if not _is_text(entry.name):
                if unreadable is not None:
                    rel = display_name(f"{prefix}{child.relative_to(base).as_posix()}")
                    unreadable.append(Unreadable(rel, "branch", "its name is not UTF-8: not read"))
                continue
            if _is_plain_file(child / PROGRESS):
                found.append(child)
            elif depth + 1 < _MAX_BRANCH_DEPTH:
                stack.append((child, depth + 1))
    for path in sorted(found):
        rel = path.relative_to(base).as_posix()
        yield ScopeLayout(f"{prefix}{rel}", path)
        if nesting + 1 < _MAX_FANOUT_NESTING:
            yield from _branch_scopes(path, f"{prefix}{rel}/", unreadable, nesting + 1)


_PASS_DIR = re.compile(r"pass(\d+)")
_BRANCH_DIR = re.compile(r"\d+-.+")
#: A node id that names one directory (Kilroy's are ``[A-Za-z_][A-Za-z0-9_]*``).
_NODE_DIR = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def has_parallel_dir(run_path: Path, scope: str) -> bool:
    """Whether ``scope`` of the run has a ``parallel/`` directory (no symlink on the way)."""
    return _plain_dirs(run_path, run_path / scope / "parallel")


def fanout_dirs(run_path: Path, scope: str, node: str) -> list[str] | None:
    """The branch directories of the latest dispatch of fan-out ``node`` in ``scope``
    (relative to the run: ``parallel/<node>/[passN/]<NN>-<key>``, the highest ``passN``),
    streams or not; None when ``scope`` has no directory ``parallel/<node>/``.

    Kilroy makes a branch's directory when it sets the branch up (``branch_setup_start``) and
    its stream only once the branch's engine starts, ~25 ms later per branch, one at a time:
    a fan-out stopped in between has branch directories and no branch scope (real run
    ``fanout_setup_killed``). Symlinks are never followed.
    """
    if not _NODE_DIR.fullmatch(node):
        return None
    fan = f"{scope}/parallel/{node}" if scope else f"parallel/{node}"
    if not _plain_dirs(run_path, run_path / fan):
        return None

    def subdirs(rel: str) -> list[str]:
        try:
            return sorted(
                e.name for e in os.scandir(run_path / rel) if e.is_dir(follow_symlinks=False)
            )
        except OSError:
            return []

    passes = [int(m.group(1)) for n in subdirs(fan) if (m := _PASS_DIR.fullmatch(n))]
    level = f"{fan}/pass{max(passes)}" if passes else fan
    return [f"{level}/{n}" for n in subdirs(level) if _BRANCH_DIR.fullmatch(n)]


def discover(path: Path) -> RunLayout:
    """Map a run directory's streams and documents without reading them.

    >>> from fixtures.example import example_root
    >>> root = example_root()  # one run, r1: node a's attempt, started and failed
    >>> layout = discover(root / "r1")
    >>> layout.run_id, layout.layout, [s.scope for s in layout.scopes]
    ('r1', 'kilroy', [''])
    """
    path = Path(path)
    try:  # one listing of the run directory answers most questions below
        listing: list[os.DirEntry[str]] | None = list(os.scandir(path))
    except OSError:
        listing = None
    names = None if listing is None else {e.name for e in listing}
    native = (names is None or MANIFEST in names) and _manifest_layout(
        os.path.join(path, MANIFEST)
    ) == NATIVE_LAYOUT
    scopes = [ScopeLayout("", path)]
    unreadable: list[Unreadable] = []
    restarts: list[tuple[int, Path]] = []
    for entry in listing or ():
        m = _RESTART.fullmatch(entry.name)
        if m and entry.is_dir(follow_symlinks=False):
            restarts.append((int(m.group(1)), Path(entry.path)))
        elif m and entry.is_symlink():
            # A loop restart's directory behind a symlink: never followed, said. Only Kilroy
            # names anything restart-N in a logs root (node ids hold no '-'), so whatever the
            # link points at (a directory, a file, nothing) stands where a restart was.
            unreadable.append(Unreadable(entry.name, "restart", symlink_detail(Path(entry.path))))
    if names is None or "parallel" in names:
        scopes.extend(_branch_scopes(path, "", unreadable))
    for n, rpath in sorted(restarts):
        scopes.append(ScopeLayout(f"restart-{n}", rpath))
        scopes.extend(_branch_scopes(rpath, f"restart-{n}/", unreadable))
    for scope in scopes:
        if scope.scope == "" and listing is not None:
            not_text = _not_text_dirs(listing)
        else:
            not_text = _not_text_names(scope.path)
        for name in not_text:
            rel = display_name(os.path.join(scope.scope, name) if scope.scope else name)
            unreadable.append(Unreadable(rel, "node", "its name is not UTF-8: not read"))
    return RunLayout(
        run_id=display_name(path.name),
        path=path,
        layout="native" if native else "kilroy",
        scopes=tuple(scopes),
        unreadable=tuple(unreadable),
    )


def _not_text_names(scope_path: Path) -> list[str]:
    """Directories directly in a scope whose names are not UTF-8 (never read as stages)."""
    try:
        return _not_text_dirs(os.scandir(scope_path))
    except OSError:
        return []


def _not_text_dirs(entries: Iterable[os.DirEntry[str]]) -> list[str]:
    return sorted(
        e.name for e in entries if not _is_text(e.name) and e.is_dir(follow_symlinks=False)
    )


def _archive_dirs(
    node_dir: Path, *, nested: bool, hidden: list[Path], linked: list[Path]
) -> list[Path]:
    """A node's archive directories in numeric order; those this process may not list or
    enter go to ``hidden`` instead (their files cannot be seen), and symlinks to directories
    to ``linked`` (never followed).

    Kilroy moves a node's whole directory, its ``attempt_<K>/`` included, into ``visit_<N>/``
    when the node is entered again, so with ``nested`` a visit's own attempt archives come
    just before the visit.
    """
    found: list[tuple[int, Path]] = []
    try:
        for sub in os.scandir(node_dir):
            m = _ATTEMPT_DIR.fullmatch(sub.name)
            if m and sub.is_dir(follow_symlinks=False):
                found.append((int(m.group(1) or m.group(2)), Path(sub.path)))
            elif m and _linked_dir(sub):
                linked.append(Path(sub.path))
    except OSError:
        return []
    out: list[Path] = []
    for _, path in sorted(found):
        if not os.access(path, os.R_OK | os.X_OK):
            hidden.append(path)
            continue
        if nested and path.name.startswith("visit_"):
            inner = _archive_dirs(path, nested=False, hidden=hidden, linked=linked)
            out.extend(p for p in inner if not p.name.startswith("visit_"))
        out.append(path)
    return out


def _linked_dir(entry: os.DirEntry[str]) -> bool:
    """A symlink whose target is a directory: its ``stat`` is all that is looked at (the
    target is never listed nor read)."""
    try:
        return entry.is_symlink() and entry.is_dir()
    except OSError:
        return False


def linked_dirs(scope_path: Path) -> list[str]:
    """The names in a scope that are symlinks to directories where a node directory would be:
    :func:`stage_dirs` never follows one, and left them out without a word.

    >>> import tempfile; d = Path(tempfile.mkdtemp()); (d / "build").symlink_to(d.parent)
    >>> linked_dirs(d), linked_dirs(Path("/nonexistent"))
    (['build'], [])
    """
    return sorted(
        e.name
        for e in _named_entries(scope_path)
        if not _RESTART.fullmatch(e.name) and _linked_dir(e)
    )


def unsearchable_dirs(scope_path: Path) -> list[str]:
    """The node directories of a scope this process may not list or enter (no read or
    execute permission): :func:`stage_dirs` cannot see their status files or logs, and left
    them out without a word.

    >>> unsearchable_dirs(Path("/nonexistent"))
    []
    """
    return sorted(
        e.name
        for e in _named_entries(scope_path)
        if e.is_dir(follow_symlinks=False) and not os.access(e.path, os.R_OK | os.X_OK)
    )


def _named_entries(scope_path: Path) -> list[os.DirEntry[str]]:
    """The entries of a scope whose names may name a node directory (text, not one of
    :data:`_NOT_NODE_DIRS`); [] when the scope cannot be listed."""
    try:
        return [
            e for e in os.scandir(scope_path) if _is_text(e.name) and e.name not in _NOT_NODE_DIRS
        ]
    except OSError:
        return []


def stage_dirs(scope_path: Path) -> list[StageDir]:
    """Node directories of one scope with their status files and stdout logs.

    The canonical ``status.json`` comes first; Kilroy's ``attempt_<K>/`` and ``visit_<N>/``
    archives (with each visit's own ``attempt_<K>/``) and the executor's ``attempt-<n>/``
    directories follow, in numeric order.
    """
    out: list[StageDir] = []
    try:
        entries = sorted(os.scandir(scope_path), key=lambda e: e.name)
    except OSError:
        return out
    for entry in entries:
        if (
            not entry.is_dir(follow_symlinks=False)
            or not _is_text(entry.name)  # recorded by discover() as unreadable
            or entry.name in _NOT_NODE_DIRS
            or _RESTART.fullmatch(entry.name)
        ):
            continue
        node_dir = Path(entry.path)
        statuses: list[Path] = []
        stdouts: list[Path] = []
        hidden: list[Path] = []
        linked: list[Path] = []
        archives = _archive_dirs(node_dir, nested=True, hidden=hidden, linked=linked)
        for folder in (node_dir, *archives):
            if _is_status_file(folder / STATUS):
                statuses.append(folder / STATUS)
            if _is_plain_file(folder / "stdout.log"):
                stdouts.append(folder / "stdout.log")
        looks_like_stage = (
            statuses
            or stdouts
            or hidden
            or linked
            or any(
                _is_plain_file(node_dir / f)
                for f in ("cli_invocation.json", "tool_invocation.json", "prompt.md", "cmd.json")
            )
        )
        if looks_like_stage:
            out.append(
                StageDir(
                    entry.name,
                    node_dir,
                    tuple(statuses),
                    tuple(stdouts),
                    tuple(hidden),
                    tuple(linked),
                )
            )
    return out
