"""Diagnose one run, or scan every run under the roots."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from doctor._budget import budget_detail, exceeded
from doctor._config import DoctorConfig
from doctor._detectors import Context
from doctor._discovery import locate_run, removed_runs, runs_to_scan
from doctor._documents import total_cost
from doctor._errors import RootError, UsageError
from doctor._facts import compute_facts
from doctor._ingest import _documents_of, load_run
from doctor._json_out import JSONText
from doctor._kept import KeptFindings, run_text
from doctor._layout import RunLayout, discover, display_name
from doctor._model import Diagnosis, Finding, Severity
from doctor._run_state import run_state
from rundoctor.costs import cost_figure

if TYPE_CHECKING:
    from doctor._scan import RunOutcome
    from doctor._scan_child import WarmChild

__all__ = ["SCAN_SCHEMA", "ScanResult", "diagnose", "diagnose_path", "scan"]

SCAN_SCHEMA = "rundoctor.scan/1"
Progress = Callable[[int, int], None]
#: What a diagnosis reports as it goes, ``(phase, done, total)``: ``("reading", bytes read,
#: bytes to read)`` while its event streams are read, then ``("checking", checks run,
#: checks)``.
Steps = Callable[[str, int, int], None]


def _order(findings: Sequence[Finding]) -> tuple[Finding, ...]:
    return tuple(sorted(findings, key=lambda f: (-f.severity, f.scope, f.code, f.node_id or "")))


def _run_detectors(ctx: Context, steps: Steps | None = None) -> list[Finding]:
    from doctor._detectors import select

    findings: list[Finding] = []
    detectors = select(ctx.config.checks)
    for i, detector in enumerate(detectors):
        findings.extend(detector(ctx))
        if steps is not None:
            steps("checking", i + 1, len(detectors))
    return findings


def diagnose_path(path: Path, config: DoctorConfig, steps: Steps | None = None) -> Diagnosis:
    """Diagnose the run directory at ``path``; ``steps`` follows the work (:data:`Steps`).

    >>> from fixtures.example import example_root
    >>> root = example_root()  # one run, r1: node a's attempt, started and failed
    >>> d = diagnose_path(root / "r1", DoctorConfig())
    >>> d.run_id, d.layout, d.state
    ('r1', 'kilroy', 'orphaned')
    """
    layout = discover(path)
    try:
        tables = load_run(layout, config, None if steps is None else partial(steps, "reading"))
        if steps is not None:
            steps("checking", 0, 1)
        facts = compute_facts(tables, config)
        findings = _run_detectors(Context(tables, facts, config), steps)
    except Exception as exc:  # over the budget: the run's finding (doctor._budget)
        limit = exceeded(exc)
        if limit is None:
            raise
        return over_budget(layout, budget_detail(limit, config), config)
    run_facts = facts[layout.run_id]
    try:
        resolved = layout.path.resolve()
    except OSError:  # the directory moved or was swapped while it was read
        resolved = layout.path.absolute()
    return Diagnosis(
        run_id=layout.run_id,
        path=display_name(str(resolved)),
        layout=layout.layout,
        state=run_facts["_state"],
        facts=run_facts.public(),
        findings=_order([f for f in findings if f.run_id in (layout.run_id, None)]),
    )


def diagnose(run_id: str, config: DoctorConfig, steps: Steps | None = None) -> Diagnosis:
    """Diagnose the run called ``run_id`` under ``config.roots``; ``steps`` follows the work
    (:data:`Steps`).

    Unknown ids raise :class:`doctor.RunNotFound` with the closest ids; ids that could name
    something outside a root raise :class:`doctor.UnsafeRunId`.

    >>> from fixtures.example import example_root
    >>> root = example_root()  # one run, r1: node a's attempt, started and failed
    >>> d = diagnose("r1", DoctorConfig(roots=(root,)))
    >>> d.run_id, d.state, d.exit_code
    ('r1', 'orphaned', 1)
    """
    return diagnose_path(run_path(run_id, config), config, steps)


def run_path(run_id: str, config: DoctorConfig) -> Path:
    """The directory of the run called ``run_id`` under ``config.roots``, as :func:`diagnose`
    finds it: the real path, where :attr:`Diagnosis.path` is text (a byte of a name that is
    not UTF-8 written ``\\xNN``), which names no file when the name has such a byte.

    >>> from fixtures.example import example_root
    >>> run_path("r1", DoctorConfig(roots=(example_root(),))).name
    'r1'
    """
    if not config.roots:
        raise UsageError("no runs root: pass --root DIR or set RUNDOCTOR_ROOTS")
    return locate_run(run_id, config.roots, _skipped(config))


@dataclass(frozen=True)
class ScanResult:
    """Every run under the roots, fleet facts, and cross-run findings.

    ``diagnoses`` is a sequence of :class:`Diagnosis` (a scan that reused cached runs builds
    each one when first looked into; :meth:`to_json_text` needs none of them).
    """

    roots: tuple[str, ...]
    diagnoses: Sequence[Diagnosis]
    fleet: dict[str, Any]
    findings: tuple[Finding, ...] = field(default_factory=tuple)

    @property
    def exit_code(self) -> int:
        runs = self.diagnoses
        worst = max(
            [
                *(
                    runs.severities()
                    if isinstance(runs, _Diagnoses)
                    else (f.severity for d in runs for f in d.findings)
                ),
                *(f.severity for f in self.findings),
            ],
            default=None,
        )
        return 1 if worst is not None and worst >= Severity.ERROR else 0

    def to_json(self) -> dict[str, Any]:
        return self._json([_run_json(d) for d in self.diagnoses])

    def to_json_text(self) -> str:
        """``json.dumps(self.to_json(), indent=2, default=str)``: the findings of runs brought
        from the cache are spliced as the text they were kept as (:mod:`doctor._kept`)."""
        from doctor._json_out import dumps_indented

        runs = self.diagnoses
        if isinstance(runs, _Diagnoses):
            return dumps_indented(self._json(runs.scan_json()))
        return dumps_indented(self.to_json())

    def write_json_text(self, write: Callable[[str], object]) -> None:
        """:meth:`to_json_text`, given piece by piece to ``write`` (``sys.stdout.write``): a
        large fleet's text is never one string, nor copied whole to be encoded."""
        from doctor._json_out import write_indented

        runs = self.diagnoses
        if isinstance(runs, _Diagnoses):
            write_indented(self._json(runs.scan_json()), write)
        else:
            write_indented(self.to_json(), write)

    def _json(self, runs: list[Any]) -> dict[str, Any]:
        return {
            "schema": SCAN_SCHEMA,
            "roots": list(self.roots),
            "runs": runs,
            "fleet": self.fleet,
            "findings": [f.to_json() for f in self.findings],
        }


def _run_json(d: Diagnosis) -> dict[str, Any]:
    """A run's object in a scan's JSON."""
    worst = d.findings[0] if d.findings else None
    return {
        "run_id": d.run_id,
        "path": d.path,
        "layout": d.layout,
        "state": d.state,
        "counts": d.counts(),
        "worst": None
        if worst is None
        else {"code": worst.code, "severity": worst.severity.label, "summary": worst.summary},
        "findings": [f.to_json() for f in d.findings],
    }


@dataclass(frozen=True, slots=True)
class _KeptRun:
    """A run brought from the cache: its diagnosis's JSON, findings kept as text."""

    data: dict[str, Any]
    findings: KeptFindings

    def diagnosis(self) -> Diagnosis:
        return diagnosis_from_json(self.data)

    def scan_json(self) -> JSONText | dict[str, Any]:
        """:func:`_run_json` of :meth:`diagnosis`, with the findings spliced as kept (the
        whole object as text when its values are all text, as they are)."""
        data, kept = self.data, self.findings
        worst = kept.parsed(0) if kept else None
        head = (data["run_id"], data["path"], data["layout"], data["state"])
        text = run_text(*head, kept, worst)
        if text is not None:
            return text
        return {
            "run_id": data["run_id"],
            "path": data["path"],
            "layout": data["layout"],
            "state": data["state"],
            "counts": kept.counts(),
            "worst": None
            if worst is None
            else {
                "code": worst["code"],
                "severity": worst["severity"],
                "summary": worst["summary"],
            },
            "findings": kept.json_text(),
        }


class _Diagnoses(Sequence[Diagnosis]):
    """A scan's diagnoses, those of runs brought from the cache built when looked into."""

    __slots__ = ("_items",)

    def __init__(self, items: list[Diagnosis | _KeptRun]) -> None:
        self._items = items

    @overload
    def __getitem__(self, i: int) -> Diagnosis: ...

    @overload
    def __getitem__(self, i: slice) -> Sequence[Diagnosis]: ...

    def __getitem__(self, i: int | slice) -> Diagnosis | Sequence[Diagnosis]:
        if isinstance(i, slice):
            return tuple(self[j] for j in range(*i.indices(len(self._items))))
        item = self._items[i]
        if isinstance(item, _KeptRun):
            item = self._items[i] = item.diagnosis()
        return item

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(tuple(self))

    def severities(self) -> list[Severity]:
        """The severities found in each run (without building the diagnoses)."""
        out: list[Severity] = []
        for item in self._items:
            if isinstance(item, _KeptRun):
                out.extend(Severity(r) for r in set(item.findings.ranks))
            else:
                out.extend(f.severity for f in item.findings)
        return out

    def scan_json(self) -> list[Any]:
        return [
            item.scan_json() if isinstance(item, _KeptRun) else _run_json(item)
            for item in self._items
        ]


def _settings_key(config: DoctorConfig) -> str:
    """What a cached result depends on besides the files: thresholds and checks."""
    keep = {
        k: getattr(config, k)
        for k in (
            "stall_timeout_s",
            "breaker_limit",
            "retry_loop_min",
            "idle_gap_s",
            "stale_lease_s",
            "fragmentation_min_failures",
            "fragmentation_ratio",
            "checks",
        )
    }
    return json.dumps(keep, sort_keys=True, default=str)


def scan(
    config: DoctorConfig, *, since: float | None = None, progress: Progress | None = None
) -> ScanResult:
    """Diagnose every run under ``config.roots`` (started at or after ``since``, if given),
    and the work queue at ``config.db`` when one is given.

    Runs are diagnosed in bounded batches, on both cores for a large fleet, and the
    detectors that look across runs run once at the end (see :mod:`doctor._scan`). With
    ``config.cache_dir``, an unchanged run reuses its diagnosis brought to the clock and
    grown streams are read from their last byte offset (see :mod:`doctor._cache`).

    >>> from fixtures.example import example_root
    >>> root = example_root()  # one run, r1: node a's attempt, started and failed
    >>> result = scan(DoctorConfig(roots=(root,)))
    >>> [d.run_id for d in result.diagnoses], result.fleet["runs"]
    (['r1'], 1)
    """
    from doctor._scan_child import warm_child

    if not config.roots and not config.db:
        raise UsageError("no runs root: pass --root DIR or set RUNDOCTOR_ROOTS (or --db URL)")
    # A rescan's small batch goes to a child that imports what it needs while the roots are
    # walked (doctor._scan_child).
    with warm_child(config.cache_dir is not None) as warm:
        paths, notes = runs_to_scan(config.roots, _skipped(config))
        layouts = [discover(path) for path in paths]
        try:
            return _noted(_scan_layouts(config, layouts, since, progress, warm), notes)
        except (UsageError, RootError, KeyboardInterrupt):
            raise
        except Exception as exc:  # isolated below; re-raised when no run explains it
            failure = exc
    # Something failed the whole scan: find the runs that fail alone, report each as its own
    # finding, and scan the others. A failure no single run explains is the tool's.
    broken: dict[str, Exception] = {}
    for layout in layouts:
        try:
            _scan_layouts(dataclasses.replace(config, db=None), [layout], None, None)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # this run's failure is this run's finding
            broken[layout.run_id] = exc
    if not broken:
        raise failure
    good = [layout for layout in layouts if layout.run_id not in broken]
    result = _scan_layouts(config, good, since, progress)
    failed = [
        _undiagnosable(layout, broken[layout.run_id], config)
        for layout in layouts
        if layout.run_id in broken
    ]
    diagnoses = sorted(
        (*result.diagnoses, *failed), key=lambda d: [x.run_id for x in layouts].index(d.run_id)
    )
    fleet = {**result.fleet, "runs": len(diagnoses), "read": result.fleet["read"] + len(failed)}
    by_state = dict(fleet["by_state"])
    for d in failed:
        by_state[d.state] = by_state.get(d.state, 0) + 1
    fleet["by_state"] = by_state
    return _noted(dataclasses.replace(result, diagnoses=tuple(diagnoses), fleet=fleet), notes)


def _skipped(config: DoctorConfig) -> frozenset[str]:
    """The scan cache directory, as each root's walk would reach it: never walked into."""
    if config.cache_dir is None:
        return frozenset()
    cache = os.path.realpath(config.cache_dir)
    skip: set[str] = set()
    for root in config.roots:
        real = os.path.realpath(root)
        if cache.startswith(real.rstrip(os.sep) + os.sep):
            skip.add(os.path.join(os.fspath(root), os.path.relpath(cache, real)))
    return frozenset(skip)


def _noted(result: ScanResult, notes: list[str]) -> ScanResult:
    """``result`` with the roots' ``notes`` (:func:`doctor._discovery.runs_to_scan`) in
    ``fleet.root_notes``."""
    if not notes:
        return result
    notes = [*notes, *result.fleet.get("root_notes", ())]
    return dataclasses.replace(result, fleet={**result.fleet, "root_notes": notes})


def over_budget(layout: RunLayout, detail: str, config: DoctorConfig) -> Diagnosis:
    """A run over the resource budget (``detail``, from :func:`doctor._budget.budget_detail`):
    its state from its documents alone, and one ``unreadable_artifact`` saying so."""
    d = _undiagnosable(layout, MemoryError(), config)
    finding = Finding(
        code="unreadable_artifact",
        severity=Severity.ERROR,
        summary=f". (run) was not diagnosed: {detail}",
        run_id=layout.run_id,
        evidence={"file": ".", "kind": "run", "detail": detail},
    )
    return dataclasses.replace(d, findings=(finding,))


def _undiagnosable(layout: RunLayout, exc: Exception, config: DoctorConfig) -> Diagnosis:
    """A run the doctor failed on: its state from its documents alone, and one finding."""
    docs = _documents_of(layout)
    final = docs.final
    status = final.get("status") if final is not None and final.ok else None
    state = run_state(
        final_status=status,
        owner_alive=docs.owner_alive(),
        last_progress=None,
        last_event=None,
        stall_timeout_s=docs.stall_timeout_s or config.stall_timeout_s,
        now=config.now,
    )
    detail = f"the doctor failed on this run: {type(exc).__name__}: {str(exc)[:300]}"
    finding = Finding(
        code="unreadable_artifact",
        severity=Severity.ERROR,
        summary=f". (run) could not be read as written: {detail}; the rest of the fleet was "
        "diagnosed without it; `doctor diagnose --run-id` on it says more",
        run_id=layout.run_id,
        evidence={"file": ".", "kind": "run", "detail": detail},
    )
    return Diagnosis(
        run_id=layout.run_id,
        path=display_name(str(layout.path.absolute())),
        layout=layout.layout,
        state=state,
        facts={"final_json": status is not None, "owner_pid": docs.pid},
        findings=(finding,),
    )


def _still_there(layouts: list[RunLayout]) -> tuple[list[RunLayout], list[str]]:
    """The runs whose directory is still there once they were diagnosed, and a note naming
    the others: what was left of a run removed while it was read is no result."""
    gone, notes = removed_runs([x.path for x in layouts])
    return [x for x in layouts if x.path not in gone] if gone else layouts, notes


def _scan_layouts(
    config: DoctorConfig,
    layouts: list[RunLayout],
    since: float | None,
    progress: Progress | None,
    warm: WarmChild | None = None,
) -> ScanResult:
    from doctor._scan import fleet_findings, scan_runs

    outcomes, read = scan_runs(config, layouts, _settings_key(config), progress, warm=warm)
    listed = len(layouts)
    layouts, gone_notes = _still_there(layouts)
    by_run: dict[str | None, list[Finding]] = {}
    found, queue_notes = fleet_findings(config, layouts, outcomes)
    for f in found:
        by_run.setdefault(f.run_id, []).append(f)
    items: list[Diagnosis | _KeptRun] = []
    states: list[str] = []
    facts: list[Mapping[str, Any]] = []
    for layout in layouts:
        data = outcomes[layout.run_id].diagnosis
        kept = data["findings"]
        item: Diagnosis | _KeptRun
        if isinstance(kept, KeptFindings):
            if layout.run_id in by_run:
                kept = kept.merged([f.to_json() for f in by_run[layout.run_id]])
                data = {**data, "findings": kept}
            item = _KeptRun(data, kept)
        else:
            item = diagnosis_from_json(data)
            if layout.run_id in by_run:
                item = dataclasses.replace(
                    item, findings=_order([*item.findings, *by_run[layout.run_id]])
                )
        if since is not None and _started_before(data["facts"].get("started_at"), since):
            continue
        items.append(item)
        states.append(data["state"])
        facts.append(data["facts"])
    diagnoses = _Diagnoses(items)
    by_state: dict[str, int] = {}
    for state in states:
        by_state[state] = by_state.get(state, 0) + 1
    fleet = {
        "runs": len(diagnoses),
        "by_state": by_state,
        "events": sum(int(f.get("events") or 0) for f in facts),
        "cost_usd": _fleet_cost(facts),
        "read": read,
        "reused": listed - read,
    }
    if gone_notes:
        fleet["root_notes"] = gone_notes
    notes = cache_notes(outcomes[x.run_id] for x in layouts)
    if notes:
        fleet["cache_notes"] = notes
    if queue_notes:  # this host's clock is off from the queue's PostgreSQL server
        fleet["queue_notes"] = queue_notes
    return ScanResult(
        roots=tuple(str(r) for r in config.roots),
        diagnoses=diagnoses,
        fleet=fleet,
        findings=_order(
            [f for f in by_run.get(None, []) if since is None or not _ended_before(f, since)]
        ),
    )


def cache_notes(outcomes: Iterable[RunOutcome]) -> list[str]:
    """What went wrong with the scan cache, one line per kind, with how many runs it hit.

    >>> from doctor._scan import RunOutcome
    >>> cache_notes([RunOutcome("r1", {}, {}, {}, "not saved to the cache: No space left")] * 2)
    ['2 runs not saved to the cache: No space left']
    """
    counts: dict[str, int] = {}
    for o in outcomes:
        if o.cache_note is not None:
            counts[o.cache_note] = counts.get(o.cache_note, 0) + 1
    return [f"{n} run{'s' * (n != 1)} {note}" for note, n in counts.items()]


#: Evidence keys that say when a fleet finding's stretch of time ended (idle_gap, recovery_loop).
_END_KEYS = ("end", "last_at")


def _ended_before(finding: Finding, since: float) -> bool:
    """Whether a fleet finding is about a stretch that ended before ``since`` (``scan --since``
    leaves it out, as it leaves out the runs started before). Findings about the present
    (a stale lease now, a backlog growing now) carry no end and are always kept.

    >>> f = Finding("idle_gap", Severity.ERROR, "s", {"end": "2026-01-01T00:00:00Z"})
    >>> _ended_before(f, 1767225600.0), _ended_before(f, 1767225599.0)
    (False, False)
    >>> _ended_before(f, 1767225601.0)
    True
    """
    for key in _END_KEYS:
        value = finding.evidence.get(key)
        if isinstance(value, str):
            return _started_before(value, since)
    return False


def diagnosis_from_json(data: dict[str, Any]) -> Diagnosis:
    """Rebuild a :class:`Diagnosis` from its JSON contract."""
    return Diagnosis(
        run_id=data["run_id"],
        path=data["path"],
        layout=data["layout"],
        state=data["state"],
        facts=data["facts"],
        findings=tuple(
            Finding(
                code=f["code"],
                severity=Severity.parse(f["severity"]),
                summary=f["summary"],
                evidence=f["evidence"],
                run_id=data["run_id"],
                scope=f["scope"],
                node_id=f["node_id"],
                repair=f["repair"],
            )
            for f in data["findings"]
        ),
    )


def _fleet_cost(facts: Sequence[Mapping[str, Any]]) -> float | None:
    """The runs' costs summed; null when none reported one, as a run's own ``cost_usd`` is
    (a fleet of runs that report no cost did not cost $0).

    >>> _fleet_cost([{"cost_usd": 0.25}, {"cost_usd": None}]), _fleet_cost([{}, {"cost_usd": None}])
    (0.25, None)
    """
    return total_cost(cost_figure(f.get("cost_usd")) for f in facts)


def _started_before(started_at: Any, since: float) -> bool:
    if not isinstance(started_at, str):
        return False
    try:
        # Python 3.11 reads any number of fraction digits (iso() trims zeros: ".5Z").
        ts = datetime.fromisoformat(started_at.replace("Z", "+00:00"))
    except ValueError:
        return False
    return ts.timestamp() < since
