"""Finding the run directories under the runs roots, and saying what the search left out.

A root holds its runs directly (``R/<run>``), grouped (``R/2026/12/05/<run>``,
``R/<project>/<team>/<run>``), or both. :func:`walk_root` walks a root by these rules:

* A directory that holds a run marker (a progress stream or a top-level run document, see
  :func:`doctor._layout._looks_like_run`) is a run, executor and Kilroy alike, and is never
  entered: a run's node, branch, worktree and archive directories are not runs of their own.
* Any other directory is a group and is walked, runs being found at most :data:`MAX_DEPTH`
  levels below the root (``R/a/b/c/d/<run>``), listing at most :data:`MAX_LISTED` directories
  per root. Where a bound stops the walk, :attr:`RootWalk.too_deep` and
  :attr:`RootWalk.not_listed` say so.
* Symlinks are never followed (a symlink loop cannot hang the walk): a symlink to a directory
  is recorded in :attr:`RootWalk.links` with its target, or ``None`` when it does not resolve.
  Hidden directories (``.git``, ``.trash``), ``lost+found`` and the scan cache directory
  are not walked into; a directory that cannot be listed is in :attr:`RootWalk.unreadable`.
* A root that is a run directory itself yields the runs directly in it, never its insides.

Discovery costs a listing per group and ``lstat`` calls for the markers: no file is read.
A run's id is its directory's name; the first root, then the shallowest, then the first by
path, wins a name that several runs have (:func:`doctor._diagnose.scan` notes the others).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from doctor._errors import RootError, RunNotFound, UnsafeRunId
from doctor._layout import (
    SHOWN_BYTE,
    _is_plain_dir,
    _looks_like_run,
    _manifest_key,
    display_name,
    name_on_disk,
    odd_run_marker,
)
from rundoctor.terminal import shell_quote

__all__ = [
    "MAX_DEPTH",
    "MAX_LISTED",
    "RootWalk",
    "check_run_id",
    "list_run_dirs",
    "locate_run",
    "runs_to_scan",
    "walk_notes",
    "walk_root",
]

#: Runs are found at most this many levels below a root (``R/2026/12/05/<run>`` is 4 levels,
#: ``R/<project>/<team>/<run>`` 3): one more than the deepest layout seen in the wild.
MAX_DEPTH = 5
#: Directories listed under one root at most (a root's own listing included): a fleet of
#: runs grouped by day over ten years lists about 4,000.
MAX_LISTED = 10_000


#: Directories never walked into: a file system's own (a root that is a mount point has one,
#: which only its owner may list).
_NOT_GROUPS = frozenset({"lost+found"})


@dataclass(frozen=True, slots=True)
class RootWalk:
    """The runs under one root, and what the walk did not look into."""

    root: Path
    #: Every run directory found, in path order (by name at each level).
    runs: tuple[Path, ...]
    #: Directories at :data:`MAX_DEPTH` that are no run and were not walked into.
    too_deep: tuple[Path, ...] = ()
    #: Directories left unlisted when :data:`MAX_LISTED` stopped the walk (their paths).
    not_listed: tuple[str, ...] = ()
    #: Directories that could not be listed, with why.
    unreadable: tuple[tuple[Path, str], ...] = ()
    #: Symlinks to directories, never followed, with their targets (``None``: a loop).
    links: tuple[tuple[Path, str | None], ...] = ()
    #: Directories that would be runs but for a run's file there that is no regular file
    #: (a FIFO, a symlink), with which (:func:`doctor._layout.odd_run_marker`).
    not_runs: tuple[tuple[Path, str], ...] = ()

    def depth(self, run: Path) -> int:
        """How many levels below the root ``run`` is (1 for a run directly under it)."""
        rel = os.fspath(run)[len(os.fspath(self.root).rstrip(os.sep)) + 1 :]
        return rel.count(os.sep) + 1


def _listing(path: str) -> list[os.DirEntry[str]]:
    with os.scandir(path) as entries:
        return sorted(entries, key=lambda e: e.name)


def _link(entry: os.DirEntry[str]) -> tuple[Path, str | None] | None:
    """A symlink to a directory with its target; ``None`` for one to a file or to nothing."""
    try:
        target = os.stat(entry.path)
    except OSError as exc:
        return (Path(entry.path), None) if exc.errno == errno.ELOOP else None
    if not stat.S_ISDIR(target.st_mode):
        return None
    return Path(entry.path), os.path.realpath(entry.path)


@dataclass(slots=True)
class _Walk:
    """The walk's working state (:func:`walk_root`)."""

    runs: list[Path]
    too_deep: list[Path]
    unreadable: list[tuple[Path, str]]
    links: list[tuple[Path, str | None]]
    not_runs: list[tuple[Path, str]]

    def take(
        self, entries: Iterable[os.DirEntry[str]], depth: int, skip: Collection[str]
    ) -> list[str]:
        """Sort one listing's entries (at ``depth``) into runs and notes; the groups to list."""
        groups: list[str] = []
        for entry in entries:
            if entry.is_symlink():
                link = _link(entry)
                if link is not None:
                    self.links.append(link)
            elif not entry.is_dir(follow_symlinks=False):
                continue
            elif _looks_like_run(entry.path):
                self.runs.append(Path(entry.path))
            elif entry.name.startswith(".") or entry.name in _NOT_GROUPS or entry.path in skip:
                continue
            else:
                odd = odd_run_marker(entry.path)
                if odd is not None:  # still a group: runs may be below it
                    self.not_runs.append((Path(entry.path), odd))
                if depth >= MAX_DEPTH:
                    self.too_deep.append(Path(entry.path))
                else:
                    groups.append(entry.path)
        return groups


def walk_root(root: Path, skip: Collection[str] = ()) -> RootWalk:
    """Every run under ``root`` by the module's rules; ``skip`` names directories (as
    ``os.path.join(root, ...)``) never walked into, such as the scan cache.

    A root that is not a readable directory raises :class:`RootError`.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> for rel in ("r0", "2026/12/05/r1", "2026/12/05/r1/parallel/f/01-a", "team/r2"):
    ...     (root / rel).mkdir(parents=True)
    ...     _ = (root / rel / "progress.ndjson").write_text("")
    >>> [p.relative_to(root).as_posix() for p in walk_root(root).runs]
    ['2026/12/05/r1', 'r0', 'team/r2']
    """
    if not root.is_dir():
        raise RootError(f"runs root {str(root)!r} is not a directory; pass an existing --root")
    try:
        top = _listing(os.fspath(root))
    except OSError as exc:
        raise RootError(f"cannot read runs root {str(root)!r}: {exc.strerror}") from exc
    if _looks_like_run(root):  # a run given as a root: never its insides
        runs = (Path(e.path) for e in top if e.is_dir(follow_symlinks=False))
        return RootWalk(root, tuple(p for p in runs if _looks_like_run(p)))
    walk = _Walk([], [], [], [], [])
    stack = [(g, 2) for g in reversed(walk.take(top, 1, skip))]
    listed = 1
    while stack and listed < MAX_LISTED:
        group, depth = stack.pop()
        listed += 1
        try:
            entries = _listing(group)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENOTDIR):  # else gone since: nothing missed
                walk.unreadable.append((Path(group), exc.strerror or type(exc).__name__))
            continue
        stack.extend((g, depth + 1) for g in reversed(walk.take(entries, depth, skip)))
    base = len(os.fspath(root).rstrip(os.sep)) + 1
    return RootWalk(
        root,
        tuple(sorted(walk.runs, key=lambda p: os.fspath(p)[base:].split(os.sep))),
        tuple(walk.too_deep),
        tuple(g for g, _ in reversed(stack)),
        tuple(walk.unreadable),
        tuple(walk.links),
        tuple(walk.not_runs),
    )


def list_run_dirs(roots: Sequence[Path], skip: Collection[str] = ()) -> list[Path]:
    """Every run directory under the roots (:func:`walk_root`), by root then path.

    A root that is not a readable directory raises :class:`RootError`.

    >>> from fixtures.example import example_root
    >>> root = example_root()  # one run, r1: node a's attempt, started and failed
    >>> (root / "not-a-run").mkdir()
    >>> [p.name for p in list_run_dirs([root])]
    ['r1']
    """
    return [run for root in roots for run in walk_root(root, skip).runs]


def runs_to_scan(roots: Sequence[Path], skip: Collection[str] = ()) -> tuple[list[Path], list[str]]:
    """The runs a scan of ``roots`` reads, by root then path, and what it must say of the
    roots (``fleet.root_notes``): the runs of a name an earlier root, a shallower or an
    earlier group has (the first root, then the shallowest, then the first by path wins, as
    :func:`locate_run` picks), and what each walk did not look into (:func:`walk_notes`).
    None of it is scanned, and none goes unsaid. One run reached from two roots (a root and
    a group of it) is scanned once, silently.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> for rel in ("a/dup", "b/dup", "b/other"):
    ...     (root / rel).mkdir(parents=True)
    ...     _ = (root / rel / "progress.ndjson").write_text("")
    >>> runs, (note,) = runs_to_scan([root])
    >>> [p.relative_to(root).as_posix() for p in runs]
    ['a/dup', 'b/other']
    >>> note.replace(str(root), "R")  # doctest: +NORMALIZE_WHITESPACE
    '1 run under R/b not scanned: dup is also under R/a, which comes first (as for diagnose);
     scan --root R/b alone to see it, or diagnose it: doctor diagnose --run-id b/dup --root R'
    """
    walks = [walk_root(root, skip) for root in roots]
    found: dict[str, Path] = {}
    shadowed: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for walk in walks:
        for path in sorted(walk.runs, key=walk.depth):  # stable: then by path
            first = found.setdefault(path.name, path)
            if first is not path and os.path.realpath(first) != os.path.realpath(path):
                key = (display_name(str(path.parent)), display_name(str(first.parent)))
                how = _diagnose_command(path, walk.root)
                shadowed.setdefault(key, []).append((path.name, how))
    notes = [
        f"{_count(len(runs), 'run')} under {where} not scanned: {_listed([n for n, _ in runs])} "
        f"{'is' if len(runs) == 1 else 'are'} also under {winner}, which comes first (as for "
        f"diagnose); scan --root {where} alone to see {'it' if len(runs) == 1 else 'them'}"
        + (f", or diagnose it: {runs[0][1]}" if len(runs) == 1 else "")
        for (where, winner), runs in shadowed.items()
    ]
    real_roots = [os.path.realpath(root) for root in roots]
    for walk in walks:
        notes.extend(walk_notes(walk, real_roots))
    return [p for walk in walks for p in walk.runs if found[p.name] is p], notes


def _diagnose_command(run: Path, root: Path) -> str:
    """The command that diagnoses ``run`` under ``root`` by its path there (a name that
    another run has is found by path, not by name).

    >>> _diagnose_command(Path("/r/b/dup"), Path("/r"))
    'doctor diagnose --run-id b/dup --root /r'
    """
    rel = display_name(run.relative_to(root).as_posix())
    return (
        f"doctor diagnose --run-id {shell_quote(rel)} --root {shell_quote(display_name(str(root)))}"
    )


def check_run_id(run_id: str) -> str:
    """Refuse ids that could name something outside a root: a run id is a run directory's
    name or its path relative to a root (``2026/12/05/r1``), never absolute, never ``..``.

    >>> check_run_id("01KH3DN4STSZ3MVKB58YY6RE57"), check_run_id("team-a/2026-12/r1")
    ('01KH3DN4STSZ3MVKB58YY6RE57', 'team-a/2026-12/r1')
    >>> check_run_id("../etc")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    doctor._errors.UnsafeRunId: run id '../etc' could name something outside a root ...
    """
    if not run_id.strip():
        raise UnsafeRunId(
            f"run id {run_id!r} is empty; pass the run directory's name (`doctor scan` lists them)"
        )
    parts = run_id.split("/")
    bad = (
        "\\" in SHOWN_BYTE.sub("", run_id)  # a shown byte (r\\xfe) is no separator
        or "\x00" in run_id
        or ".." in run_id
        or any(part in {"", "."} for part in parts)
    )
    if bad:
        raise UnsafeRunId(
            f"run id {run_id!r} could name something outside a root (an absolute path, '..', "
            "'.' or an empty part); pass the run directory's name, or its path relative to "
            "the root (group/run)"
        )
    return run_id


def _by_path(run_id: str, root: Path) -> Path | None:
    """The run at ``root/run_id`` when every directory on the way is real and none is a run
    (a run's own subdirectories are never runs)."""
    candidate = root / run_id
    if not _looks_like_run(candidate):
        return None
    for parent in list(candidate.relative_to(root).parents)[:-1]:
        if not _is_plain_dir(root / parent) or _looks_like_run(root / parent):
            return None
    return candidate


def _by_name(run_id: str, walk: RootWalk) -> Path | None:
    """The shallowest, then first, run named ``run_id`` in ``walk`` (as a scan picks)."""
    named = [p for p in walk.runs if p.name == run_id]
    return min(named, key=walk.depth) if named else None


def locate_run(run_id: str, roots: Sequence[Path], skip: Collection[str] = ()) -> Path:
    """The directory of ``run_id`` (a name, or a path relative to a root) under the first
    root that has it, at any depth :func:`walk_root` looks; when no root has a run of that
    name, the one run directory whose ``manifest.json`` names the run (a run directory renamed
    or moved after the run).

    Raises :class:`UnsafeRunId` for ids that could escape a root and :class:`RunNotFound`
    (with close matches, nested runs' relative paths among them) when no root has it.
    """
    run_id = name_on_disk(check_run_id(run_id))
    existing = [r for r in roots if r.is_dir()]
    if not existing:
        raise RootError(
            "no runs root exists ("
            + ", ".join(str(r) for r in roots)
            + "); pass an existing --root DIR or set RUNDOCTOR_ROOTS"
        )
    walks: list[RootWalk] = []
    for root in existing:
        found = _by_path(run_id, root)
        if found is None and "/" not in run_id:
            walks.append(walk_root(root, skip))
            found = _by_name(run_id, walks[-1])
        if found is not None:
            return found
    links = [path for walk in walks for path, _ in walk.links if path.name == run_id]
    _refuse_symlink(run_id, roots, [root / run_id for root in existing] + links)
    _refuse_unreadable(run_id, roots, walks)
    if len(walks) < len(existing):  # a relative path that named no run: walk for suggestions
        walks = [walk_root(root, skip) for root in existing]
    return _by_manifest(run_id, roots, walks)


def _refuse_symlink(run_id: str, roots: Sequence[Path], candidates: Sequence[Path]) -> None:
    """Say why a name that is there is not read: it is a symlink."""
    for candidate in candidates:
        if candidate.is_symlink():
            target = os.path.realpath(candidate)
            then = (
                f"pass the run's own path: --run-id {shell_quote(target)}"
                if _looks_like_run(target)
                else "and its target is not a run directory"
            )
            raise RunNotFound(
                run_id,
                [str(r) for r in roots],
                (),
                reason=f"{str(candidate)!r} is a symlink (to {target!r}), which the doctor "
                f"never follows out of a runs root; {then}",
            )


def _refuse_unreadable(run_id: str, roots: Sequence[Path], walks: Sequence[RootWalk]) -> None:
    """Say why a directory of that name is not read: it cannot be listed (it was "no run",
    with one directory "not looked into")."""
    for walk in walks:
        for path, why in walk.unreadable:
            if path.name == run_id:
                raise RunNotFound(
                    run_id,
                    [str(r) for r in roots],
                    (),
                    reason=f"{str(path)!r} cannot be read ({why}); fix its permissions, or "
                    "run the doctor as a user who can read it",
                )


def _by_manifest(run_id: str, roots: Sequence[Path], walks: Sequence[RootWalk]) -> Path:
    """The one run whose manifest names ``run_id``; else :class:`RunNotFound`."""
    runs = [run for walk in walks for run in walk.runs]
    named = _named_by_manifest(run_id, runs)
    if len(named) == 1:
        return named[0]
    if named:
        raise RunNotFound(
            run_id,
            [str(r) for r in roots],
            (),
            reason=f"no directory is named {run_id!r}, and the manifests of "
            f"{len(named)} run directories name that run ("
            + ", ".join(repr(str(p)) for p in named[:5])
            + (f" … and {len(named) - 5} more" if len(named) > 5 else "")
            + "): pass one by its directory name",
        )
    candidates = [p.name for p in runs] + [
        display_name(p.relative_to(w.root).as_posix())
        for w in walks
        for p in w.runs
        if w.depth(p) > 1
    ]
    unsearched = sum(len(w.too_deep) + len(w.not_listed) + len(w.unreadable) for w in walks)
    raise RunNotFound(run_id, [str(r) for r in roots], candidates, unsearched=unsearched)


def _named_by_manifest(run_id: str, runs: Sequence[Path]) -> list[Path]:
    """The run directories whose ``manifest.json`` names ``run_id`` (its ``run_id`` key): a
    Kilroy run directory renamed or moved under a root, at any depth, is still found by the
    id its artifacts carry. Read only when no directory has the name, to say why it is
    missing."""
    return [p for p in runs if _manifest_key(p / "manifest.json", "run_id") == run_id]


def removed_runs(paths: Sequence[Path]) -> tuple[set[Path], list[str]]:
    """The run directories among ``paths`` that are gone now, and a root note saying so.

    A run removed while a scan read it (a retention job's ``rm -rf``) was diagnosed from
    what was left of it when its batch was read: a run that had succeeded came out
    ``orphaned`` with a ``missing_final`` error (its final.json gone first), or with an
    ``unreadable_artifact`` error advising to restore a stream deleted on purpose. It is
    left out of the scan, and said so.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "kept").mkdir()
    >>> gone, (note,) = removed_runs([root / "kept", root / "deleted"])
    >>> [p.name for p in gone], note.replace(str(root), "R")
    (['deleted'], '1 run removed while the scan read it, left out: R/deleted')
    """
    gone = [p for p in paths if not os.path.isdir(p)]
    if not gone:
        return set(), []
    them = "it" if len(gone) == 1 else "them"
    return set(gone), [
        f"{_count(len(gone), 'run')} removed while the scan read {them}, left out: {_listed(gone)}"
    ]


def _count(n: int, noun: str) -> str:
    """
    >>> _count(1, "symlink"), _count(90001, "directory")
    ('1 symlink', '90,001 directories')
    """
    if n != 1:
        noun = noun[:-1] + "ies" if noun.endswith("y") else noun + "s"
    return f"{n:,} {noun}"


def _listed(paths: Sequence[Path | str], most: int = 3) -> str:
    """
    >>> _listed(["a", "b", "c", "d", "e"])
    'a, b, c … and 2 more'
    """
    names = [display_name(str(p)) for p in paths[:most]]
    more = f" … and {len(paths) - most:,} more" if len(paths) > most else ""
    return ", ".join(names[:most]) + more


def _inside(path: str, dirs: Sequence[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip(os.sep) + os.sep) for d in dirs)


def walk_notes(walk: RootWalk, roots: Sequence[str]) -> list[str]:
    """What the walk of one root did not look into, one line per kind, each with the next
    step; ``roots`` are the real paths of every root scanned (a symlink into one of them
    leaves nothing out).

    >>> walk = RootWalk(Path("/r"), (), too_deep=(Path("/r/a/b/c/d/e"),))
    >>> walk_notes(walk, ["/r"])  # doctest: +ELLIPSIS
    ['1 directory 5 levels under /r not looked into (runs are looked for at most 5 ...']
    """
    root = walk.root
    notes: list[str] = []
    if walk.not_listed:
        notes.append(
            f"the doctor stopped after listing {MAX_LISTED:,} directories under {root}; "
            f"{_count(len(walk.not_listed), 'directory')} not looked "
            f"into, where runs may be: {_listed(walk.not_listed)}; pass a narrower --root"
        )
    if walk.too_deep:
        notes.append(
            f"{_count(len(walk.too_deep), 'directory')} {MAX_DEPTH} "
            f"levels under {root} not looked into (runs are looked for at most {MAX_DEPTH} "
            f"levels down): {_listed(walk.too_deep)}; pass one as --root to scan the runs in it"
        )
    why: dict[str, list[Path]] = {}
    for path, reason in walk.unreadable:
        why.setdefault(reason, []).append(path)
    notes.extend(
        f"{_count(len(paths), 'directory')} under {root} could not be listed ({reason}); "
        f"runs in {'it' if len(paths) == 1 else 'them'} are not scanned: {_listed(paths)}"
        for reason, paths in why.items()
    )
    if walk.not_runs:
        (first, odd), n = walk.not_runs[0], len(walk.not_runs)
        notes.append(
            f"{_count(n, 'directory')} under {root} would be "
            f"{'a run' if n == 1 else 'runs'} but for a run's file that is not a regular file "
            f"({first.name}/{odd}), not read as {'a run' if n == 1 else 'runs'}: "
            f"{_listed([p for p, _ in walk.not_runs])}"
        )
    loops = [path for path, target in walk.links if target is None]
    if loops:
        notes.append(
            f"{_count(len(loops), 'symlink')} under {root} never "
            f"{'resolves' if len(loops) == 1 else 'resolve'} (a symlink loop), "
            f"not followed: {_listed(loops)}"
        )
    out = [path for path, target in walk.links if target is not None and not _inside(target, roots)]
    if out:
        notes.append(
            f"{_count(len(out), 'symlink')} under {root} to directories outside the roots not "
            f"followed (the doctor never follows symlinks): {_listed(out)}; pass a target as "
            "--root to scan the runs there"
        )
    return notes
