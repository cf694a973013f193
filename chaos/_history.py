"""The campaign's history: one NDJSON line per record, one frozen dataclass per record kind.

Every line is a JSON object whose ``kind`` names its dataclass (the discriminator), written
whole with one ``write`` to a file opened ``O_APPEND``:

========== ======================================================================================
``meta``    the campaign: seed, duration, workers, database, faults, the seeded schedule, bounds
``op``      a ticket operation of a worker (Jepsen-style ``invoke`` then ``ok``/``fail``, or
            ``info`` when its outcome is unknown because the worker died): claim, start,
            heartbeat, complete, fail, release, reclaim, cancel; with worker, epoch and time
``fault``   a fault: ``inject`` (target, runs and leases it hit), ``recover``, or ``skip``
``worker``  a worker process started or exited (and whether the harness meant it to)
``ticket_event``  a row of the queue's append-only ``ticket_events``, copied after the drain
``ticket``  a ticket's final row once the workload drained
``run``     facts about one run directory read after the drain (``final.json``, breaker,
            stage heartbeats, the doctor's findings)
========== ======================================================================================

The checkers (:mod:`chaos._checkers`) read nothing else, so a history file is enough to check
a campaign again (``read_history``) and a hand-made history is enough to test a checker.

>>> op = Op(time=1.5, type="ok", f="complete", worker="w1/0", process="w1", ticket="t-1", epoch=2)
>>> line = to_line(op)
>>> line.startswith('{"kind": "op"') and from_line(line) == op
True
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import threading
import types
import typing
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from rundoctor.atomic import replace_file
from rundoctor.paths import open_regular_file

__all__ = [
    "Bounds",
    "FaultRecord",
    "FindingFact",
    "Held",
    "History",
    "Meta",
    "Op",
    "Planned",
    "QueueEvent",
    "Record",
    "Recorder",
    "RunRecord",
    "TicketRecord",
    "WorkerRecord",
    "from_line",
    "read_history",
    "to_line",
    "write_history",
]


@dataclass(frozen=True, slots=True)
class Bounds:
    """What the checkers hold the executor to, in seconds (see docs/chaos.md, "Bounds").

    ``final_s``: a run's ``final.json`` exists at most this long after its lease ended.
    ``sigkill_*``/``sigstop_*``: reclaim latency after a worker was killed or frozen, p50 and p99.
    """

    final_s: float = 5.0
    sigkill_p50_s: float = 1.5
    sigkill_p99_s: float = 3.0
    sigstop_p50_s: float = 4.0
    sigstop_p99_s: float = 6.0


@dataclass(frozen=True, slots=True)
class Planned:
    """One entry of the seeded fault schedule: ``at`` seconds after the start, ``pick`` chooses
    the target among the candidates present then."""

    at: float
    fault: str
    pick: int


@dataclass(frozen=True, slots=True)
class Meta:
    """The campaign: everything needed to replay it."""

    KIND: ClassVar[str] = "meta"
    time: float
    seed: int
    duration_s: float
    workers: int
    db: str
    faults: tuple[str, ...]
    schedule: tuple[Planned, ...]
    bounds: Bounds
    replay: str
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Op:
    """A ticket operation, as the worker saw it: ``type`` is invoke, ok, fail or info."""

    KIND: ClassVar[str] = "op"
    time: float
    type: str
    f: str
    worker: str
    process: str
    ticket: str | None
    epoch: int | None
    value: dict[str, Any] = field(default_factory=dict)
    error: str = ""


@dataclass(frozen=True, slots=True)
class Held:
    """A lease a fault's target held when it was hit."""

    ticket: str
    epoch: int


@dataclass(frozen=True, slots=True)
class FaultRecord:
    """A fault: ``phase`` inject, recover or skip (``target`` ``no candidate``: nothing to
    hit; ``database unavailable``: the queue's database was away, ``detail["reason"]`` says
    how)."""

    KIND: ClassVar[str] = "fault"
    time: float
    fault: str
    phase: str
    target: str
    detail: dict[str, Any] = field(default_factory=dict)
    runs: tuple[str, ...] = ()
    held: tuple[Held, ...] = ()


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    """A worker process started or exited; ``expected`` is False for an exit nobody caused."""

    KIND: ClassVar[str] = "worker"
    time: float
    name: str
    pid: int
    phase: str
    exit_code: int | None = None
    expected: bool = True
    #: At its exit: the last line the worker wrote (stdout or stderr), and whether its log
    #: holds a Python traceback.
    said: str = ""
    traceback: bool = False


@dataclass(frozen=True, slots=True)
class QueueEvent:
    """A row of the queue's ``ticket_events``."""

    KIND: ClassVar[str] = "ticket_event"
    time: float
    id: int
    ticket: str
    event: str
    worker: str | None
    epoch: int | None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TicketRecord:
    """A ticket's row after the drain, with the kind of workload it ran."""

    KIND: ClassVar[str] = "ticket"
    time: float
    ticket: str
    title: str
    workload: str
    status: str
    lease_epoch: int
    error_attempts: int = 0
    crash_recoveries: int = 0
    reason: str = ""


@dataclass(frozen=True, slots=True)
class FindingFact:
    """One finding of ``doctor.diagnose_path``."""

    code: str
    severity: str
    summary: str


@dataclass(frozen=True, slots=True)
class RunRecord:
    """Facts about one run directory, read after the drain.

    ``final_by`` is ``executor`` or ``reaper`` (who wrote ``final.json``), ``final_problem`` why
    it is missing or invalid; ``max_signature_count`` the highest breaker count of any
    signature and ``signature_limit`` the breaker's limit; ``late_heartbeats`` the stage
    heartbeats that came after their attempt ended.
    """

    KIND: ClassVar[str] = "run"
    time: float
    run_id: str
    path: str
    ticket: str
    epoch: int
    workload: str
    final_status: str | None = None
    final_problem: str = ""
    final_at: float | None = None
    final_by: str = ""
    signature_limit: int | None = None
    max_signature_count: int = 0
    breaker_trips: int = 0
    late_heartbeats: tuple[str, ...] = ()
    findings: tuple[FindingFact, ...] = ()


Record = Meta | Op | FaultRecord | WorkerRecord | QueueEvent | TicketRecord | RunRecord
_KINDS: dict[str, type[Any]] = {
    c.KIND: c for c in (Meta, Op, FaultRecord, WorkerRecord, QueueEvent, TicketRecord, RunRecord)
}
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class History:
    """A campaign's records, in time order.

    >>> h = History((Op(2.0, "invoke", "claim", "w1/0", "w1", None, None),))
    >>> (len(h.of(Op)), h.meta is None, h.bounds.final_s)
    (1, True, 5.0)
    """

    records: tuple[Record, ...]

    def of(self, cls: type[R]) -> tuple[R, ...]:
        """The records of one kind, in order."""
        return tuple(r for r in self.records if isinstance(r, cls))

    @property
    def meta(self) -> Meta | None:
        """The campaign record, if the history has one."""
        found = self.of(Meta)
        return found[0] if found else None

    @property
    def bounds(self) -> Bounds:
        """The campaign's bounds (the defaults for a history without a ``meta`` record)."""
        meta = self.meta
        return meta.bounds if meta is not None else Bounds()

    def sorted(self) -> History:
        """The same records, ``meta`` first, then by time (stable)."""
        return History(tuple(sorted(self.records, key=lambda r: (not isinstance(r, Meta), r.time))))


def to_json(record: Record) -> dict[str, Any]:
    """A record as a JSON object, ``kind`` first."""
    return {"kind": record.KIND, **dataclasses.asdict(record)}


def to_line(record: Record) -> str:
    """One NDJSON line (with its newline)."""
    return json.dumps(to_json(record), sort_keys=False, default=str) + "\n"


def from_line(line: str) -> Record:
    """Parse one line back into its dataclass.

    A line that is not such a record raises ``ValueError`` saying which field is wrong and
    what it should be, so that a hand-edited or foreign history is refused in one line
    rather than failing the checkers that trust their records' types.

    >>> from_line('{"kind": "op", "time": "soon"}')  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: op: missing field(s) type, f, worker, process, ticket, epoch
    >>> from_line('{"kind": "worker", "time": "soon", "name": "w1", "pid": 1, "phase": "start"}')
    Traceback (most recent call last):
    ...
    ValueError: worker.time: expected a finite number, got "soon"
    >>> from_line('{"kind": "%s"}' % ("x" * 1000))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown record kind 'xxx...xxx…; expected one of meta, ...
    """
    try:
        data = json.loads(line)
    except RecursionError:
        raise ValueError("JSON nested too deeply to be a history record") from None
    if not isinstance(data, dict):
        raise ValueError(f"a history line must be a JSON object, got {line[:60]!r}")
    kind = data.pop("kind", None)
    cls = _KINDS.get(str(kind))
    if cls is None:
        shown = repr(kind)
        shown = shown if len(shown) <= 60 else shown[:59] + "…"  # 100 MB was printed whole
        raise ValueError(f"unknown record kind {shown}; expected one of {', '.join(_KINDS)}")
    record: Record = _decode(cls, data, cls.KIND)
    return record


#: What a JSON value of a plain field must be, and how the error names it.
_PLAIN: dict[Any, tuple[tuple[type, ...], str]] = {
    str: ((str,), "a string"),
    int: ((int,), "an integer"),
    float: ((int, float), "a finite number"),
    bool: ((bool,), "true or false"),
    dict: ((dict,), "an object"),
    tuple: ((list,), "a list"),
}


def _decode(tp: Any, value: Any, where: str) -> Any:
    """Build ``tp`` (a dataclass, tuple[X, ...], X | None, dict or a plain type) from JSON;
    a value of another type is ``ValueError`` naming ``where`` it is."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return _decode(inner, value, where)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _decode_record(tp, _checked(dict, value, where), where)
    _checked(origin or tp, value, where)
    if origin is tuple:
        return tuple(
            _decode(typing.get_args(tp)[0], v, f"{where}[{i}]") for i, v in enumerate(value)
        )
    return float(value) if tp is float else value


def _checked(tp: Any, value: Any, where: str) -> Any:
    """``value`` when JSON gave it the type ``tp`` needs (no bool for a number, no NaN)."""
    kinds, expected = _PLAIN.get(tp, ((object,), ""))
    ok = isinstance(value, kinds) and (tp is bool or not isinstance(value, bool))
    if ok and tp is float:
        ok = math.isfinite(value)
    if not ok:
        raise ValueError(f"{where}: expected {expected}, got {json.dumps(value)[:60]}")
    return value


def _decode_record(tp: type[Any], value: dict[str, Any], where: str) -> Any:
    """A dataclass from a JSON object: every field without a default present, unknown keys
    ignored (a newer history's additions)."""
    fields = dataclasses.fields(tp)
    missing = [
        f.name
        for f in fields
        if f.name not in value
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ValueError(f"{where}: missing field(s) {', '.join(missing)}")
    hints = typing.get_type_hints(tp)
    return tp(
        **{
            f.name: _decode(hints[f.name], value[f.name], f"{where}.{f.name}")
            for f in fields
            if f.name in value
        }
    )


def read_records(path: Path) -> Iterator[Record]:
    """The records of one NDJSON file; a last line cut short by a crash is skipped."""
    with path.open(encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                return  # torn by a crash mid-write: the write never completed
            if line.strip():
                yield from_line(line)


#: A history record is a few hundred bytes (a few KB at most); a longer line is no record.
MAX_RECORD_BYTES = 16 << 20


def read_history(path: Path) -> History:
    """Read a campaign's ``history.ndjson`` (a FIFO or device is ``OSError``, never a hang),
    line by line: a file that is no history fails at its first line, and a line over
    :data:`MAX_RECORD_BYTES` is ``ValueError``, without reading the rest.

    A line that is not a record is ``ValueError`` naming its line number, and so is a file
    with no record at all: checked, it would pass every invariant for want of evidence.

    >>> import tempfile
    >>> from pathlib import Path
    >>> from chaos._history import TicketRecord
    >>> path = Path(tempfile.mkdtemp()) / "history.ndjson"
    >>> write_history(path, [TicketRecord(9.0, "t-1", "ok_01", "ok", "done", 1)])
    >>> [(r.ticket, r.status) for r in read_history(path).records]
    [('t-1', 'done')]
    """
    records = []
    with open_regular_file(path) as f:  # line by line: a wrong file fails at its first line
        for number, raw in enumerate(iter(lambda: f.readline(MAX_RECORD_BYTES + 1), b""), 1):
            if len(raw) > MAX_RECORD_BYTES:
                raise ValueError(f"line {number} is longer than {MAX_RECORD_BYTES:,} bytes")
            if not raw.endswith(b"\n"):
                break  # torn by a crash mid-write, as read_records skips it
            line = raw.decode("utf-8")
            if line.strip():
                try:
                    records.append(from_line(line))
                except ValueError as exc:
                    raise ValueError(f"line {number}: {exc}") from exc
    if not records:
        raise ValueError("it holds no record (a campaign writes its meta record first)")
    return History(tuple(records))


def write_history(path: Path, records: Iterable[Record]) -> None:
    """Write records to ``path`` atomically (:func:`rundoctor.atomic.replace_file`).

    >>> import tempfile
    >>> from pathlib import Path
    >>> from chaos._history import WorkerRecord
    >>> path = Path(tempfile.mkdtemp()) / "history.ndjson"
    >>> write_history(path, [WorkerRecord(1.0, "w1", 42, "start")])
    >>> import json
    >>> record = json.loads(path.read_text())
    >>> record["kind"], record["name"], record["phase"]
    ('worker', 'w1', 'start')
    """
    replace_file(path, "".join(to_line(r) for r in records))


class Recorder:
    """Appends records to an NDJSON file, one whole ``write`` per line, from any thread.

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "h.ndjson"
    >>> with Recorder(p) as rec:
    ...     rec.record(WorkerRecord(1.0, "w1", 42, "start"))
    >>> [r.name for r in read_records(p)]
    ['w1']
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def record(self, record: Record) -> None:
        data = to_line(record).encode()
        with self._lock:
            if self._fd >= 0:
                os.write(self._fd, data)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
