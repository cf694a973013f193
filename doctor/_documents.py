"""The small JSON documents of a run: final, checkpoint, live, status files, pid and lock.

Each is read once, in Python (they are small), and kept with its parse status so that an
unreadable or torn document becomes a ``torn_artifact`` finding instead of a crash. Status
files are normalized with Kilroy's own rules (aliases, the legacy ``outcome`` shape).

Every input is bytes until proven otherwise: a document is opened ``O_NOFOLLOW|O_NONBLOCK``
and read only when the descriptor is a regular file (a FIFO named ``final.json`` is never
opened for reading, where it would block, and is reported as an ``unreadable_artifact``); an
integer too long to convert, a non-finite number or an escaped lone surrogate makes the
document torn; a pid is a pid only when it fits ``pid_t``. A duplicate key is read
**last-wins**, as the engines that read these documents read it (Kilroy's Go
``encoding/json``, which routes on a status.json written ``{"status": "success", ...,
"status": "fail"}`` as ``fail``; the executor's ``json.loads``), and each is reported
(``unreadable_artifact``, a warning). (Event lines are DuckDB's, first-wins: no engine reads
its stream back to decide anything.)
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from doctor._layout import (
    GRAPH_DOT,
    SYMLINK,
    RunLayout,
    ScopeLayout,
    Unreadable,
    is_top_scope,
    linked_dirs,
    stage_dirs,
    symlink_detail,
    unsearchable_dirs,
)
from doctor._model import noun
from doctor._timestamps import parse_iso
from rundoctor.costs import cost_figure
from rundoctor.liveness import (
    owner_alive,
    owner_stopped,
    run_owner_alive,
    valid_pid,
    works_elsewhere,
)
from rundoctor.paths import file_kind

__all__ = [
    "SYMLINK",
    "TERMINAL_STATUSES",
    "Document",
    "RunDocuments",
    "ScopeDocuments",
    "StageStatus",
    "fanout_branch_count",
    "graph_successors",
    "normalize_status",
    "read_documents",
    "symlink_detail",
    "total_cost",
]

_MAX_DOC_BYTES = 32 * 1024 * 1024
_MAX_GRAPH_BYTES = 4 * 1024 * 1024
#: The statuses of a final.json that end a run (``doctor._run_state.run_state``'s).
TERMINAL_STATUSES = ("success", "fail", "canceled")
_STATUS_ALIASES = {
    "ok": "success",
    "failure": "fail",
    "error": "fail",
    "skip": "skipped",
    "partialsuccess": "partial_success",
    "partial-success": "partial_success",
    "degradedsuccess": "degraded_success",
    "degraded-success": "degraded_success",
}
_RESTART_SCOPE = re.compile(r"restart-(\d+)")
_RESTART_PREFIX = re.compile(r"(restart-\d+)(?:/|$)")
_COST = re.compile(rb'"total_cost_usd"\s*:\s*([0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)')


@dataclass(frozen=True, slots=True)
class Document:
    """One JSON file: its value when it parsed, else why not."""

    path: Path
    rel: str
    kind: str
    size: int
    mtime_ns: int
    value: Any = None
    error: str | None = None
    line: int | None = None
    byte_offset: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def get(self, key: str, default: Any = None) -> Any:
        return self.value.get(key, default) if isinstance(self.value, dict) else default


@dataclass(frozen=True, slots=True)
class StageStatus:
    """A node's status file, normalized."""

    node_id: str
    document: Document
    status: str | None
    failure_reason: str | None
    canonical: bool  # the stage's own status.json, not an archive


@dataclass(slots=True)
class ScopeDocuments:
    scope: str
    path: Path
    final: Document | None = None
    #: A final.json ``doctor repair`` wrote that the run went past (a resume wrote events
    #: after it; :mod:`doctor._superseded`): set aside from ``final`` at ingestion.
    superseded_final: Document | None = None
    checkpoint: Document | None = None
    live: Document | None = None
    statuses: list[StageStatus] = field(default_factory=list)
    stranded: list[Document] = field(default_factory=list)  # worktree / .ai status files
    cost_usd: float | None = None
    progress_size: int | None = None


@dataclass(slots=True)
class RunDocuments:
    """Everything but the event streams."""

    run_id: str
    path: Path
    layout: str
    scopes: dict[str, ScopeDocuments]
    manifest: Document | None = None
    run_config: Document | None = None
    pid: int | None = None
    pid_start_time: int | None = None
    #: When the owner ``pid`` took the run (run.lock.json's ``acquired_at``, epoch ns).
    owner_since: int | None = None
    #: When ``pid`` was written down (the modification time of the file it was read from,
    #: epoch seconds): without a start time, what tells a reused pid (:meth:`owner_alive`).
    pid_recorded_at: float | None = None
    #: When a resume went on past the run's own final.json (set aside at ingestion,
    #: :mod:`doctor._superseded`): its first top-level stage start, epoch ns. What the run
    #: wrote before it (a terminal event, a stop) is the ending it resumed from, not its own.
    resumed_ns: int | None = None
    #: The run is owned by ``kilroy attractor resume``: run.lock.json names another pid than
    #: run.pid, which a resume takes the lock for but never rewrites (format doc §3.9).
    owned_by_resume: bool = False
    #: The last lines of a detached run's ``run.out``, read only when the run has no event
    #: stream: what Kilroy said when it gave up before its first event.
    run_out_tail: tuple[str, ...] = ()
    documents: list[Document] = field(default_factory=list)
    #: Artifacts that could not be read as written (not regular files, names that are not
    #: UTF-8, duplicate keys, streams over the budget): ``unreadable_artifact`` findings.
    unreadable: list[Unreadable] = field(default_factory=list)

    @property
    def top(self) -> ScopeDocuments:
        return self.scopes[""]

    def owner_alive(self) -> bool | None:
        """:func:`rundoctor.liveness.owner_alive` of the run's recorded owner: by its start
        time when the lock has one, else by when its pid was recorded (a process younger than
        the record did not write it). False too when that process lives but works on another
        run directory (:meth:`owner_elsewhere`): nothing writes this one any more."""
        return run_owner_alive(
            self.pid, self.pid_start_time, self.path, recorded_at=self.pid_recorded_at
        )

    def owner_elsewhere(self) -> str | None:
        """The run directory the recorded owner, alive, works on when it is not this one
        (:func:`rundoctor.liveness.works_elsewhere`): this directory is a copy of that run,
        or was moved away from under its engine."""
        alive = owner_alive(self.pid, self.pid_start_time, recorded_at=self.pid_recorded_at)
        if not alive or self.pid is None:
            return None
        return works_elsewhere(self.pid, self.path)

    def owner_stopped(self) -> bool:
        """:func:`rundoctor.liveness.owner_stopped`: the owner is alive but stopped (state
        ``T``), so nothing it owns makes progress until it is continued."""
        if self.owner_elsewhere() is not None:
            return False
        return owner_stopped(self.pid, self.pid_start_time, recorded_at=self.pid_recorded_at)

    @property
    def final(self) -> Document | None:
        """The run's terminal record: of its top-level final.json files (the base directory's
        and its ``restart-N/``'s), the one the run wrote last, by the ``timestamp`` each
        records (:func:`_written_order`).

        Not the latest restart's: ``kilroy attractor resume`` of a run stopped in
        ``restart-N/`` (whose stop wrote its final.json there and in the base directory) goes
        on in the base directory and rewrites only the base one (real run
        ``loop_restart_sigterm_resumed``).
        """
        finals = [
            (name, sd.final)
            for name, sd in self.scopes.items()
            if is_top_scope(name) and sd.final is not None
        ]
        if not finals:
            return None
        return max(finals, key=lambda pair: _written_order(*pair))[1]

    def top_final_of(self, scope: str) -> Document | None:
        """The final.json of the top-level scope ``scope`` lies in (itself, or the
        ``restart-N/`` or base directory over a branch): the record of how that scope ended,
        which is not the run's once a resume went on in another top-level scope.

        >>> docs = RunDocuments("r", Path("r"), "kilroy", {"restart-1": ScopeDocuments(
        ...     "restart-1", Path("r/restart-1"), final=Document(
        ...         Path("r/restart-1/final.json"), "restart-1/final.json", "final", 0, 0))})
        >>> docs.top_final_of("restart-1/parallel/par/pass1/01-a").rel
        'restart-1/final.json'
        >>> docs.top_final_of("parallel/par/pass1/01-a") is None
        True
        """
        m = _RESTART_PREFIX.match(scope)
        top = self.scopes.get(m.group(1) if m else "")
        return top.final if top is not None else None

    @property
    def stall_timeout_s(self) -> float | None:
        """The stall timeout the run's owner applies, from run_config.json's runtime policy;
        None when it states none, or when the owner is ``kilroy attractor resume``, which
        does not apply the runtime policy: no stall watchdog (real run ``resume_long``: a
        resumed 15 s silent stage under a 3 s policy ran to success). The doctor's own
        default then stands.

        >>> docs = RunDocuments("r", Path("r"), "kilroy", {})
        >>> docs.run_config = Document(Path("c"), "run_config.json", "run_config", 2, 0,
        ...     value={"runtime_policy": {"stall_timeout_ms": 3000}})
        >>> docs.stall_timeout_s
        3.0
        >>> docs.owned_by_resume = True
        >>> docs.stall_timeout_s is None
        True
        """
        if self.run_config is None or not self.run_config.ok or self.owned_by_resume:
            return None
        policy = self.run_config.get("runtime_policy") or {}
        value = policy.get("stall_timeout_ms") if isinstance(policy, dict) else None
        return float(value) / 1000.0 if isinstance(value, (int, float)) and value > 0 else None

    @property
    def cost_usd(self) -> float | None:
        costs = [s.cost_usd for s in self.scopes.values()]
        final = self.final
        if final is not None:
            costs.append(cost_figure(final.get("cost_usd")))
        return total_cost(costs)


def _restart_rank(scope: str) -> int:
    # Only "restart-N" itself has a rank; "restart-N/parallel/…" is a branch inside it.
    m = _RESTART_SCOPE.fullmatch(scope)
    return int(m.group(1)) if m else 0


def _written_order(scope: str, final: Document) -> tuple[bool, int, int]:
    """Sort key of a top-level final.json by when the run wrote it: its recorded
    ``timestamp``, the run's own clock (file times do not survive a copy or a checkout).

    Kilroy saves one outcome, with one timestamp, to the logs root it ended in and to the base
    directory (``persistTerminalOutcome``), so equal timestamps are one write: the restart's
    copy is taken, the directory the run ended in. A final.json whose timestamp cannot be read
    (torn, none recorded) ranks below every one that has one; when none has one, the highest
    restart's is taken (the rule before timestamps were read).

    >>> doc = Document(Path("final.json"), "final.json", "final", 0, 0,
    ...                value={"timestamp": "2026-12-06T13:42:15.338942156Z"})
    >>> _written_order("", doc), _written_order("restart-2", doc)[0::2]
    ((True, 1796564535338942156, 0), (True, 2))
    """
    ns = parse_iso(final.get("timestamp")) if final.ok else None
    return ns is not None, ns or 0, _restart_rank(scope)


def normalize_status(value: Any) -> tuple[str | None, str | None]:
    """``(status, failure_reason)`` of a status.json value, with Kilroy's parsing rules.

    >>> normalize_status({"status": " OK "})
    ('success', None)
    >>> normalize_status({"outcome": "FAILURE", "notes": "tests failed"})
    ('fail', 'tests failed')
    """
    if not isinstance(value, dict):
        return None, None
    raw = value.get("status")
    legacy = raw is None
    if legacy:
        raw = value.get("outcome")
    if not isinstance(raw, str) or not raw.strip():
        return None, None
    status = raw.strip().lower()
    status = _STATUS_ALIASES.get(status, status)
    reason = value.get("failure_reason")
    if not isinstance(reason, str) or not reason:
        reason = None
        if legacy:
            for key in ("details", "notes"):
                if isinstance(value.get(key), str) and value[key]:
                    reason = value[key]
                    break
    return status, reason


class _NotData(ValueError):
    """A JSON value the doctor will not take as data (non-finite number, lone surrogate)."""


def _reject_constant(name: str) -> Any:
    raise _NotData(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotData(f"number {text[:20]}... does not fit a double")
    return value


def _noting_duplicates(duplicates: list[str], first_wins: bool) -> Any:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                duplicates.append(key)
                if first_wins:
                    continue
            out[key] = value
        return out

    return hook


def parse_json(data: bytes, *, first_wins: bool = False) -> tuple[Any, list[str]]:
    """Parse one JSON document as the engines read it: a duplicate key's last value wins, as
    in Go's ``encoding/json`` (Kilroy) and Python's ``json`` (the executor); the duplicated
    keys are returned. ``first_wins`` reads an event line as DuckDB reads the streams. Numbers
    and strings that are not data (an integer over Python's 4,300 digits, a non-finite number,
    an escaped lone surrogate) raise ``ValueError``.

    >>> parse_json(b'{"status": "success", "status": "fail"}')
    ({'status': 'fail'}, ['status'])
    >>> parse_json(b'{"ts": "a", "ts": "b"}', first_wins=True)
    ({'ts': 'a'}, ['ts'])
    >>> try:
    ...     parse_json(b'{"cost": 1e999}')
    ... except ValueError as exc:
    ...     print(exc)
    number 1e999... does not fit a double
    """
    duplicates: list[str] = []
    value = json.loads(
        data,
        object_pairs_hook=_noting_duplicates(duplicates, first_wins),
        parse_constant=_reject_constant,
        parse_float=_finite,
    )
    if b"\\u" in data:
        try:  # only an escape can make a string that is not UTF-8
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise _NotData("a string escapes a lone UTF-16 surrogate") from None
    return value, duplicates


def read_regular(path: Path, limit: int) -> tuple[os.stat_result, bytes | None, str | None]:
    """``(stat, bytes, None)`` of a regular file of at most ``limit`` bytes, opened without
    following a symlink or blocking on a FIFO; else ``(stat, None, why)``. Raises
    ``FileNotFoundError`` when there is no such file.
    """
    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode):
        return st, None, f"{file_kind(st.st_mode)}, not a regular file: never read"
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise
        return st, None, f"unreadable: {exc.strerror}"
    try:
        st = os.fstat(fd)  # what was opened, not what was checked
        if not stat.S_ISREG(st.st_mode):
            return st, None, f"{file_kind(st.st_mode)}, not a regular file: never read"
        if st.st_size > limit:
            return st, None, f"{st.st_size} bytes, over the {limit} limit"
        chunks: list[bytes] = []
        left = limit + 1
        while left > 0:
            block = os.read(fd, min(left, 1 << 20))
            if not block:
                break
            chunks.append(block)
            left -= len(block)
    except OSError as exc:
        return st, None, f"unreadable: {exc.strerror}"
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        return st, None, f"grew over the {limit} limit while read"
    return st, data, None


def _read_json(
    path: Path, rel: str, kind: str, unreadable: list[Unreadable] | None = None
) -> Document | None:
    try:
        st, data, why = read_regular(path, _MAX_DOC_BYTES)
    except OSError:
        return None
    if data is None and stat.S_ISLNK(st.st_mode):
        # A symlink may lead outside the run: never followed, but said (the run looked as if
        # it had no such file, and `repair` refused the terminalize the diagnosis advised).
        if unreadable is not None:
            unreadable.append(Unreadable(rel, kind, symlink_detail(path)))
        return None
    if data is None and not stat.S_ISREG(st.st_mode):
        if unreadable is not None:
            unreadable.append(Unreadable(rel, kind, why or "not a regular file"))
        return None

    def doc(**kw: Any) -> Document:
        return Document(path, rel, kind, st.st_size, st.st_mtime_ns, **kw)

    if data is None:
        return doc(error=why)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return doc(error="not UTF-8", line=line, byte_offset=exc.start)
    if not text.strip():
        return doc(error="empty file", line=1, byte_offset=0)
    try:
        value, duplicates = parse_json(data)
    except json.JSONDecodeError as exc:
        offset = len(text[: exc.pos].encode("utf-8"))
        return doc(error=f"not JSON: {exc.msg}", line=exc.lineno, byte_offset=offset)
    except RecursionError:
        return doc(error="not JSON: nested too deeply")
    except ValueError as exc:  # an integer over 4,300 digits, a non-finite number, ...
        return doc(error=f"not data: {str(exc)[:120]}")
    if duplicates and unreadable is not None:
        keys = dict.fromkeys(duplicates)
        names = ", ".join(repr(k) for k in keys)
        what = f"duplicate {noun(len(keys), 'key')} {names[:200]}: the last value is read"
        unreadable.append(Unreadable(rel, kind, what))
    return doc(value=value)


def total_cost(costs: Iterable[float | None]) -> float | None:
    """The sum of the costs that are known, rounded to 8 decimals; ``None`` when none is, or
    when they sum past a double (1e308 twice is no cost anyone paid, and JSON cannot write
    the infinity: ``doctor diagnose --json`` printed ``"cost_usd": Infinity``).

    >>> total_cost([0.25, None, 1]), total_cost([None]), total_cost([1e308, 1e308])
    (1.25, None, None)
    """
    known = [c for c in costs if c is not None]
    total = sum(known) if known else None  # math.fsum raises on such a sum; sum is inf
    return round(total, 8) if total is not None and math.isfinite(total) else None


def _cost_of(paths: list[Path]) -> float | None:
    """Sum of ``total_cost_usd`` figures in stdout logs, read in bounded blocks (infinite
    when they sum past a double: :func:`total_cost` makes that no cost)."""
    figures: list[float | None] = []
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
    for p in paths:
        try:
            fd = os.open(p, flags)
        except OSError:
            continue
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                continue
            carry = b""
            while True:
                block = os.read(fd, _LOG_BLOCK)
                data = carry + block
                # Whole lines only (a figure never spans a newline); the rest waits for the
                # next block, unless the file ended or a line outgrows the bound.
                cut = data.rfind(b"\n") + 1 if block else len(data)
                if block and cut == 0 and len(data) > _LOG_MAX_LINE:
                    cut = len(data)
                figures.extend(cost_figure(float(m.group(1))) for m in _COST.finditer(data, 0, cut))
                carry = data[cut:]
                if not block:
                    break
        except OSError:
            continue
        finally:
            os.close(fd)
    # Not rounded, and infinite when the figures sum past a double: total_cost then says none.
    known = [f for f in figures if f is not None]
    return sum(known) if known else None


_LOG_BLOCK = 1 << 20
_LOG_MAX_LINE = 16 << 20


def _mtime(path: Path) -> float | None:
    """``path``'s modification time (epoch seconds), None when it cannot be had."""
    try:
        return path.lstat().st_mtime
    except OSError:
        return None


def _read_pid(path: Path, unreadable: list[Unreadable]) -> int | None:
    try:
        st, data, why = read_regular(path, 64)
    except OSError:
        return None
    if data is None:
        # A symlink may lead outside the run: never followed, but said.
        why = symlink_detail(path) if stat.S_ISLNK(st.st_mode) else why
        unreadable.append(Unreadable("run.pid", "pid", why or "unreadable"))
        return None
    text = data.strip()
    # At most 64 bytes, ASCII digits only: no long-integer conversion is ever attempted.
    return valid_pid(int(text)) if text.isdigit() and len(text) <= 10 else None


def _check_final(final: Document | None, docs: RunDocuments) -> None:
    """Say why a final.json that parses records no end: not an object, or a status that is
    none of a final's; and when its recorded ``timestamp`` is no readable time (it is read
    for when the run ended and which final.json the run wrote last: ``"99999-01-01"`` was
    left out of both without a word)."""
    if final is not None and final.ok and not isinstance(final.value, dict):
        # Parsed, but no record at all ([…], "success", 3): read as no final.json, unsaid.
        kind = "null" if final.value is None else type(final.value).__name__
        why = f"a JSON {kind}, not an object: the run's end is not recorded"
        docs.unreadable.append(Unreadable(final.rel, "final", why))
    if final is not None and final.ok and isinstance(final.value, dict):
        status = final.value.get("status")
        if status not in TERMINAL_STATUSES:
            # Parsed, so a final.json exists (FINDINGS.md's final_json), but it ends nothing:
            # the state cannot be succeeded, failed or canceled, and this says why.
            kind = type(status).__name__
            shown = repr(status) if isinstance(status, str | int | float | None) else f"(a {kind})"
            docs.unreadable.append(
                Unreadable(
                    final.rel,
                    "final",
                    f"its status {shown[:80]} is none of {', '.join(TERMINAL_STATUSES)}: "
                    "the run's end is not recorded",
                )
            )
        stamp = final.value.get("timestamp")
        if stamp is not None and parse_iso(stamp) is None:
            # None is no timestamp recorded (the executor's final.json has none): unsaid.
            kind = type(stamp).__name__
            shown = repr(stamp) if isinstance(stamp, str | int | float) else f"(a {kind})"
            docs.unreadable.append(
                Unreadable(
                    final.rel,
                    "final",
                    f"its timestamp {shown[:80]} is no readable time (RFC 3339): when the run "
                    "ended, and which final.json it wrote last, are judged without it",
                )
            )


#: Why a node directory or an attempt archive was not read.
_HIDDEN = "a directory the doctor may not list or enter: its status files and logs were not read"


def _share_base_worktree(run: RunLayout, docs: RunDocuments) -> None:
    """Give each Kilroy ``restart-N`` scope without a worktree of its own the base
    directory's stranded status files: a loop restart works on in the run's one git worktree,
    ``<base>/worktree`` (format doc §1.4), so an agent of ``restart-N`` strands its status
    there (real run ``loop_restart_agent_dotai``)."""
    base = docs.scopes.get("")
    if run.layout != "kilroy" or base is None or not base.stranded:
        return
    for scope in run.scopes:
        sd = docs.scopes[scope.scope]
        shares = scope.scope and is_top_scope(scope.scope) and not sd.stranded
        if shares and not os.path.lexists(scope.path / "worktree"):
            sd.stranded = list(base.stranded)


def _scope_documents(run: RunLayout, scope: ScopeLayout, docs: RunDocuments) -> ScopeDocuments:
    out = ScopeDocuments(scope.scope, scope.path)

    def read(path: Path, kind: str) -> Document | None:
        doc = _read_json(path, os.path.relpath(path, run.path), kind, docs.unreadable)
        if doc is not None:
            docs.documents.append(doc)
        return doc

    out.final = read(scope.final, "final")
    _check_final(out.final, docs)
    out.checkpoint = read(scope.checkpoint, "checkpoint")
    out.live = read(scope.live, "live")
    try:
        st = scope.progress.lstat()
    except OSError:
        out.progress_size = None
    else:
        out.progress_size = st.st_size if stat.S_ISREG(st.st_mode) else None
        if not stat.S_ISREG(st.st_mode):
            rel = os.path.relpath(scope.progress, run.path)
            why = f"{file_kind(st.st_mode)}, not a regular file: never read"
            if stat.S_ISLNK(st.st_mode):
                why = symlink_detail(scope.progress)
            docs.unreadable.append(Unreadable(rel, "progress", why))
    hidden = [(scope.path / name, "node") for name in unsearchable_dirs(scope.path)]
    stages = stage_dirs(scope.path)
    hidden += [(path, "attempt") for stage in stages for path in stage.hidden]
    for path, kind in hidden:
        rel = os.path.relpath(path, run.path)
        docs.unreadable.append(Unreadable(rel, kind, _HIDDEN))
    # A node directory or archive that is a symlink is never followed, as no file is: said.
    linked = [(scope.path / name, "node") for name in linked_dirs(scope.path)]
    linked += [(path, "attempt") for stage in stages for path in stage.linked]
    for path, kind in linked:
        rel = os.path.relpath(path, run.path)
        docs.unreadable.append(Unreadable(rel, kind, symlink_detail(path)))
    stdouts: list[Path] = []
    for stage in stages:
        for i, status_path in enumerate(stage.status_files):
            doc = read(status_path, "status")
            if doc is None:
                continue
            status, reason = normalize_status(doc.value) if doc.ok else (None, None)
            canonical = i == 0 and status_path.parent == stage.path
            out.statuses.append(StageStatus(stage.node_id, doc, status, reason, canonical))
        stdouts.extend(stage.stdout_logs)
    for path in scope.worktree_status_files(run.run_id):
        doc = read(path, "stranded_status")
        if doc is not None:
            out.stranded.append(doc)
    out.cost_usd = _cost_of(stdouts)
    return out


def _parse_time(value: Any) -> int | None:
    """An RFC 3339 time recorded in a document, as epoch ns (None if it is not one)."""
    return parse_iso(value) if isinstance(value, str) else None


def read_documents(run: RunLayout) -> RunDocuments:
    """Read every JSON document of a run (never raises for bad content)."""
    docs = RunDocuments(run.run_id, run.path, run.layout, scopes={})
    docs.unreadable.extend(run.unreadable)
    bad = docs.unreadable
    docs.manifest = _read_json(run.manifest, "manifest.json", "manifest", bad)
    docs.run_config = _read_json(run.run_config, "run_config.json", "run_config", bad)
    docs.documents.extend(d for d in (docs.manifest, docs.run_config) if d is not None)
    lock = _read_json(run.run_lock, "run.lock.json", "lock", bad)
    if lock is not None:
        docs.documents.append(lock)
        pid = valid_pid(lock.get("pid"))
        if pid is not None:
            docs.pid = pid
            start = lock.get("pid_start_time")
            # A start time is clock ticks since boot: bounded like the pid, never huge.
            ok = isinstance(start, int) and not isinstance(start, bool) and 0 <= start < 2**62
            docs.pid_start_time = start if ok else None
            docs.owner_since = _parse_time(lock.get("acquired_at"))
            docs.pid_recorded_at = _mtime(run.run_lock)
            first = _read_pid(run.run_pid, []) if run.layout == "kilroy" else None
            docs.owned_by_resume = first is not None and first != pid
    if docs.pid is None:
        docs.pid = _read_pid(run.run_pid, bad)
        docs.pid_recorded_at = _mtime(run.run_pid) if docs.pid is not None else None
    for scope in run.scopes:
        docs.scopes[scope.scope] = _scope_documents(run, scope, docs)
    _share_base_worktree(run, docs)
    if not docs.scopes.get("", ScopeDocuments("", run.path)).progress_size:
        docs.run_out_tail = _read_tail(run.run_out)
    return docs


#: At most this much of run.out is read: a run that never started printed a few lines.
_RUN_OUT_MAX = 64 << 10
_RUN_OUT_LINES = 5


def _read_tail(path: Path) -> tuple[str, ...]:
    """The last non-blank lines of ``path`` (a regular file of at most 64 KiB), else none.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     out = Path(d, "run.out")
    ...     _ = out.write_bytes(b"no providers\\nvalidation failed: x\\n  hint: y\\n\\n")
    ...     _read_tail(out)
    ('no providers', 'validation failed: x', '  hint: y')
    """
    try:
        _st, data, _why = read_regular(path, _RUN_OUT_MAX)
    except OSError:
        return ()
    if data is None:
        return ()
    lines = [ln.rstrip() for ln in data.decode("utf-8", "replace").splitlines() if ln.strip()]
    return tuple(ln[:500] for ln in lines[-_RUN_OUT_LINES:])


def checkpoint_fields(doc: Document | None) -> Mapping[str, Any]:
    """``current_node``, ``completed_nodes`` and ``node_retries`` of a checkpoint, typed."""
    if doc is None or not doc.ok or not isinstance(doc.value, dict):
        return {}
    completed = doc.value.get("completed_nodes")
    retries = doc.value.get("node_retries")
    return {
        "current_node": doc.value.get("current_node"),
        "completed_nodes": [c for c in completed if isinstance(c, str)]
        if isinstance(completed, list)
        else [],
        "node_retries": {k: v for k, v in retries.items() if isinstance(v, int)}
        if isinstance(retries, dict)
        else {},
    }


def graph_successors(run_path: Path) -> dict[str, set[str]] | None:
    """Each node's successors in the run's ``graph.dot`` (the nodes its outgoing edges lead
    to). None when the run has no such graph, it cannot be read, or it is not DOT the reader
    takes."""
    from executor import GraphError, graph_edges

    try:
        _st, data, _why = read_regular(run_path / GRAPH_DOT, _MAX_GRAPH_BYTES)
    except OSError:
        return None
    if data is None:
        return None
    try:
        edges = graph_edges(data.decode("utf-8"))
    except (UnicodeDecodeError, GraphError, RecursionError):
        return None
    out: dict[str, set[str]] = {}
    for a, b in edges:
        out.setdefault(a, set()).add(b)
    return out


def fanout_branch_count(run_path: Path, node: str) -> int | None:
    """How many branches the fan-out ``node`` dispatches: the nodes its outgoing edges lead to
    in the run's ``graph.dot`` (Kilroy numbers branch directories by them, format doc §1.5,
    and starts at most ``max_parallel`` at a time, so fewer directories may exist yet). None
    when the run has no such graph, it cannot be read, or it is not DOT the reader takes.
    """
    graph = graph_successors(run_path)
    return len(graph.get(node, ())) or None if graph is not None else None
