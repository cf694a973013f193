"""``doctor scan``: every run under the roots, in bounded batches, with a cache.

A scan has three phases:

1. **Plan.** Each run's files are fingerprinted (inode, size, mtime of every file the doctor
   reads; nothing is opened). With a cache, a run whose fingerprint matches its entry is not
   read: its cached diagnosis is *brought to the clock* (below). Other runs are read, those
   whose streams only grew from their last byte offsets.
2. **Diagnose, in batches.** Runs to read are cut into batches of at most
   :data:`BATCH_BYTES` of event streams (and :data:`BATCH_RUNS` runs). Each batch is read into
   its own DuckDB connection, its facts computed and every per-run detector run; the batch's
   events, diagnoses and activity go to the cache, and the connection is dropped. Memory is
   that of a batch, not of the fleet. With several batches and enough bytes, two processes
   diagnose batches side by side (the machine's cores, at most :data:`MAX_WORKERS`); the
   batches are then as even as they can be and a multiple of the workers, which finish
   together. A batch returns its runs' findings as the text the scan prints (as the cache
   keeps them), so the main process splices them in as it does a cached run's.
3. **Fleet.** The detectors that look across runs (``idle_gap`` and the queue's) run once over
   every run's *activity* (first event, last progress, last event, final.json's time, and its
   progress points thinned to the first and last of each half-threshold bucket, which keeps
   every gap longer than the threshold) and the queue, at the current clock.

**Bringing a diagnosis to the clock.** Files unchanged, what a run's diagnosis depends on
besides its files is the owner process's liveness and the clock. Both enter through few
values, kept with the entry (``clock``): the owner pid (and start time), final.json's status,
the stall timeout, the last progress and last event times of the run and of each branch.
A rescan checks liveness again and recomputes the run's state and its branches' states; when
all are as cached, every finding is as cached except the ages measured against the clock,
which are recomputed (``idle_s`` from ``last_progress_at``, and the "no progress for …" of a
stalled run); ``idle_gap`` is recomputed in the fleet phase anyway. When one changed (a
running run became stalled, an owner died), the run is diagnosed again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from doctor._budget import budget_detail, exceeded
from doctor._cache import CacheEntry, RunCache, fingerprint
from doctor._config import DoctorConfig
from doctor._detectors import Context
from doctor._detectors._context import QUEUE_CHECKS
from doctor._diagnose import _order
from doctor._facts import compute_facts
from doctor._kept import FINDINGS_LEVEL, KeptFindings
from doctor._layout import RunLayout, display_name
from doctor._model import Diagnosis, Finding
from doctor._run_state import run_state
from doctor._tables import HEARTBEAT_SQL
from doctor._timestamps import parse_iso
from rundoctor.liveness import exclude_owners, excluded_owners, owner_alive

if TYPE_CHECKING:
    from concurrent.futures import Future

    from doctor._tables import Tables

__all__ = ["BATCH_BYTES", "BATCH_RUNS", "FLEET_DETECTORS", "MAX_WORKERS", "RunOutcome", "scan_runs"]

Progress = Callable[[int, int], None]

#: Event-stream bytes per batch: what one DuckDB connection holds at a time.
BATCH_BYTES = 96 << 20
#: Runs per batch at most (many tiny runs still make bounded batches). A batch's fixed
#: costs (its connection, ~20 fact and detector queries) are shared by its runs: 3,000 runs
#: of 60 events took 4.8 s in batches of 128 and 3.5 s in batches of 512 (no cache).
BATCH_RUNS = 512
#: Processes diagnosing batches side by side, at most (one per core, up to this).
MAX_WORKERS = 2
#: Below this many bytes to read, one process is faster than starting another. Each run
#: counts :data:`RUN_COST_BYTES` more.
PARALLEL_MIN_BYTES = 96 << 20
#: What a run costs beyond its streams' bytes (its documents, files, cache entry and
#: events file), as the bytes of stream that cost as much: on one core about 2 ms a run
#: against 18 ms a MiB of stream. So 3,000 runs of 12 KB (36 MB, 6 s of work) take both
#: cores, where their bytes alone kept them on one.
RUN_COST_BYTES = 128 << 10
#: A batch of fewer event-stream bytes runs on one DuckDB thread (unless ``--threads`` says
#: otherwise): its queries are too small to split, and a second thread made each of them
#: slower (a run of 8,100 events: 20-40% per query, and the connection's start).
ONE_THREAD_BYTES = 8 << 20
#: Detectors that look across runs or at the queue: run once per scan, in the fleet phase.
FLEET_DETECTORS = ("idle_gap", *QUEUE_CHECKS)


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """One run's result from its batch (or the cache): JSON-able, so it crosses processes."""

    run_id: str
    diagnosis: dict[str, Any]
    clock: dict[str, Any]
    activity: dict[str, Any]
    #: What went wrong with the run's cache entry, when something did (the scan says so in
    #: ``fleet.cache_notes``): the run was diagnosed from its files all the same.
    cache_note: str | None = None


@dataclass(frozen=True)
class _Batch:
    config: DoctorConfig
    settings: str
    layouts: tuple[RunLayout, ...]
    entries: dict[str, CacheEntry]
    prints: dict[str, dict[str, list[int]]]
    threads: int | None
    not_owners: frozenset[int] = field(default_factory=frozenset)


# --- phase 2: one batch -------------------------------------------------------------------------


def _per_run_detectors(config: DoctorConfig) -> list[Callable[[Context], list[Finding]]]:
    from doctor._detectors import select

    return [d for d in select(config.checks) if d.__name__ not in FLEET_DETECTORS]


def diagnose_batch(batch: _Batch) -> list[RunOutcome]:
    """Read, diagnose and cache one batch of runs (in this process or a worker)."""
    from doctor._ingest import load_runs

    exclude_owners(batch.not_owners)
    config = batch.config
    cache = RunCache(config.cache_dir, batch.settings) if config.cache_dir else None
    if cache is not None:
        for entry in batch.entries.values():
            cache.remember(entry)
    tables = load_runs(
        list(batch.layouts),
        keep_raw=False,
        threads=batch.threads,
        cache=cache,
        entries=batch.entries,
        limits=(config.memory_limit, config.spill_limit),
        relations=False,
    )
    try:
        facts = compute_facts(tables, config)
        ctx = Context(tables, facts, config)
        by_run: dict[str, list[Finding]] = {}
        for detector in _per_run_detectors(config):
            for f in detector(ctx):
                if f.run_id is not None:
                    by_run.setdefault(f.run_id, []).append(f)
        ids = [layout.run_id for layout in batch.layouts]
        clocks = _clock_inputs(tables, facts, config, ids)
        activity = _activity(tables, facts, config, ids)
        outcomes = []
        for layout in batch.layouts:
            rf = facts[layout.run_id]
            d = Diagnosis(
                run_id=layout.run_id,
                path=display_name(str(layout.path.resolve())),
                layout=layout.layout,
                state=rf["_state"],
                facts=rf.public(),
                findings=_order(by_run.get(layout.run_id, [])),
            )
            data = d.to_json()
            # The findings as the text the scan prints and the cache keeps, written here (in
            # a worker, beside the others): the main process splices it as a cached run's.
            data["findings"] = KeptFindings.of(data["findings"])
            outcomes.append(
                RunOutcome(layout.run_id, data, clocks[layout.run_id], activity[layout.run_id])
            )
        if cache is not None:
            outcomes = _saved(cache, tables, batch, outcomes)
    finally:
        tables.con.close()
    return outcomes


def _saved(
    cache: RunCache, tables: Tables, batch: _Batch, outcomes: list[RunOutcome]
) -> list[RunOutcome]:
    """``outcomes``, saved to the cache. A cache that cannot take them (a full disk, a
    read-only one, a write error) is the cache's failure, never the runs': their diagnoses
    stand, marked with a note, and the next scan reads them again."""
    saved: set[str] = set()
    try:
        _save(cache, tables, batch, outcomes, saved)
    except Exception as exc:
        # An OSError, or DuckDB's own (its module is not imported here: the scan loads
        # DuckDB's engine, not its Python layer).
        if exceeded(exc) is not None or not (
            isinstance(exc, OSError) or type(exc).__module__ == "_duckdb"
        ):
            raise
        note = f"not saved to the cache: {_short(exc)}; the next scan reads them again"
        return [
            o if o.run_id in saved else dataclasses.replace(o, cache_note=note) for o in outcomes
        ]
    return outcomes


def _short(exc: BaseException) -> str:
    """``exc`` in one short line: an OSError's own words, the system's for the errno DuckDB
    names (its message names the file and byte range too: one note per batch), else its
    first line.

    >>> _short(OSError(28, "No space left on device"))
    'No space left on device'
    >>> _short(RuntimeError('IO Error: Async write failed for range [offset=0, size=3699]: '
    ...                     '{"exception_type":"IO","errno":"28"}'))
    'No space left on device'
    """
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    named = re.search(r'"errno":\s*"?(\d+)', str(exc))
    if named is not None:
        return os.strerror(int(named[1]))
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"


def _save(
    cache: RunCache, tables: Tables, batch: _Batch, outcomes: list[RunOutcome], saved: set[str]
) -> None:
    """The batch's events and entries written to the cache, each saved run into ``saved``.
    On a failure, the event files of the runs not saved are removed (no entry names them:
    on a full disk they would keep it full) and the error raised."""
    keys = {layout.run_id: RunCache.key(layout) for layout in batch.layouts}
    files = cache.write_events(tables.con, keys, tables.streams)
    try:
        for layout, outcome in zip(batch.layouts, outcomes, strict=True):
            run_id = layout.run_id
            cache.save(
                CacheEntry(
                    key=keys[run_id],
                    run_path=str(layout.path),
                    settings=cache.settings,
                    fingerprint=batch.prints[run_id],
                    streams={
                        scope: st
                        for (rid, scope), st in tables.stream_states.items()
                        if rid == run_id
                    },
                    diagnosis=outcome.diagnosis,
                    clock=outcome.clock,
                    activity=outcome.activity,
                    events=files.get(run_id),
                )
            )
            saved.add(run_id)
    except BaseException:
        for run_id, rel in files.items():
            if run_id not in saved:
                with contextlib.suppress(OSError):
                    (cache.root / rel).unlink()
        raise
    for layout in batch.layouts:
        cache.prune_events(keys[layout.run_id], files.get(layout.run_id))


def _clock_inputs(
    tables: Tables, facts: dict[str, Any], config: DoctorConfig, ids: list[str]
) -> dict[str, dict[str, Any]]:
    """Per run, what its clock- and liveness-dependent results were computed from."""
    from doctor._run_state import _branch_state, _Liveness

    out: dict[str, dict[str, Any]] = {}
    for run_id in ids:
        rf = facts[run_id]
        last_events = rf["_branch_last_event"]  # the facts read it: no statement of its own
        docs = tables.documents[run_id]
        final = docs.final
        alive = rf.get("owner_alive")
        stall = rf.get("stall_timeout_s")
        live = _Liveness(alive=alive, stall=stall, now=config.now)
        branches = []
        for b in rf.get("branches", []):
            scope = b["scope"]
            sd = docs.scopes.get(scope)
            sfinal = sd.final if sd else None
            status = sfinal.get("status") if sfinal is not None and sfinal.ok else None
            lp, le = parse_iso(b.get("last_progress_at")), last_events.get(scope)
            computed = _branch_state(docs, scope, live, last_progress=lp, last_event=le)
            # A branch state that is not the clock's (the parent's record of it, or its fan-out's
            # results) is fixed by the files.
            fixed = b["state"] if b["state"] != computed else None
            branches.append([scope, lp, le, status, fixed, b["state"]])
        out[run_id] = {
            "final_status": final.get("status") if rf.get("final_json") and final else None,
            "pid": docs.pid,
            "start_time": docs.pid_start_time,
            "owner_since": docs.owner_since,
            "stall": stall,
            "last_progress": parse_iso(rf.get("last_progress_at")),
            "last_event": parse_iso(rf.get("last_event_at")),
            "alive": alive,
            "state": rf["_state"],
            "branches": branches,
        }
    return out


# Per run, the first and last progress point in each bucket of half the threshold: two kept
# points in a row are either in one bucket (closer than the threshold) or were neighbours
# already, so the gaps longer than the threshold are exactly those of all the points.
_BUCKET_SQL = f"""
SELECT run_id, list(DISTINCT t ORDER BY t) FROM (
    SELECT run_id, min(epoch_ns(ts)) AS lo, max(epoch_ns(ts)) AS hi
    FROM events WHERE ts IS NOT NULL AND NOT {HEARTBEAT_SQL} AND run_id IN (SELECT unnest($ids))
    GROUP BY run_id, epoch_ns(ts) // $width
) UNPIVOT (t FOR side IN (lo, hi)) GROUP BY run_id
"""


def _activity(
    tables: Tables, facts: dict[str, Any], config: DoctorConfig, ids: list[str]
) -> dict[str, dict[str, Any]]:
    """Per run, what the fleet phase needs of its events (see the module docstring); its
    first, last progress and last event times are the facts' (``_activity``)."""
    width = max(1, int(config.idle_gap_s * 1e9) // 2)
    points = dict(tables.sql(_BUCKET_SQL, ids=ids, width=width))
    out: dict[str, dict[str, Any]] = {}
    for r in ids:
        final = tables.documents[r].final
        finished = bool(facts[r].get("final_json"))
        first, last_event, last_progress = facts[r]["_activity"]
        out[r] = {
            "first": first,
            "last_progress": last_progress,
            "last_event": last_event,
            "finished": finished,
            "final_ns": parse_iso(final.get("timestamp"))
            if finished and final is not None
            else None,
            "points": [int(t) for t in points.get(r, [])],
        }
    return out


# --- phase 1: plan and bring cached diagnoses to the clock --------------------------------------


def at_clock(outcome: RunOutcome, config: DoctorConfig) -> RunOutcome | None:
    """``outcome`` (from the cache) at ``config.now``, or None when it may have changed.

    See the module docstring: liveness, the run's state and its branches' states must be as
    cached; ages are then recomputed.
    """
    clock = outcome.clock
    alive = owner_alive(clock["pid"], clock["start_time"])
    if alive != clock["alive"]:
        return None
    stall = float(clock["stall"])

    def state(final_status: Any, lp: int | None, le: int | None) -> str:
        return run_state(
            final_status=final_status,
            owner_alive=alive,
            last_progress=lp,
            last_event=le,
            stall_timeout_s=stall,
            now=config.now,
        )

    top = run_state(
        final_status=clock["final_status"],
        owner_alive=alive,
        last_progress=clock["last_progress"],
        last_event=clock["last_event"],
        stall_timeout_s=stall,
        now=config.now,
        owner_since=clock.get("owner_since"),  # absent from older entries
    )
    if top != clock["state"]:
        return None
    for _scope, lp, le, status, fixed, was in clock["branches"]:
        if fixed is None and state(status, lp, le) != was:
            return None
    d = outcome.diagnosis
    kept = d["findings"]
    findings: Sequence[dict[str, Any]]
    if isinstance(kept, KeptFindings):  # only the findings with an age are parsed
        findings = _kept_at_clock(kept, config.now)
    else:
        findings = [_finding_at_clock(f, config.now) for f in kept]
    return RunOutcome(outcome.run_id, {**d, "findings": findings}, clock, outcome.activity)


def _finding_at_clock(f: dict[str, Any], now: float) -> dict[str, Any]:
    ev = f["evidence"]
    last = parse_iso(ev.get("last_progress_at"))
    if "idle_s" not in ev or last is None:
        return f
    from doctor._detectors.missing_final import _span

    old, new = ev["idle_s"], round(now - last / 1e9, 3)
    summary = f["summary"]
    if f["code"] == "missing_final" and isinstance(old, int | float):
        summary = summary.replace(
            f"no progress for {_span(old)}", f"no progress for {_span(new)}", 1
        )
    return {**f, "summary": summary, "evidence": {**ev, "idle_s": new}}


def _kept_at_clock(kept: KeptFindings, now: float) -> KeptFindings:
    """Kept findings at ``now``: those with an age parsed, brought to the clock and their
    text patched where it changed (written anew when the patch does not apply)."""
    changed: dict[int, tuple[dict[str, Any], str | None]] = {}
    for i in kept.clocked:
        f = kept.parsed(i)
        g = _finding_at_clock(f, now)
        if g is not f:
            changed[i] = (g, _patched(kept.text(i), f, g))
    return kept.replaced(changed)


def _patched(text: str, old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """``old``'s kept text with the values :func:`_finding_at_clock` changes (the summary,
    the evidence's ``idle_s``) as ``new`` has them; None when it cannot be done exactly."""
    from json.encoder import encode_basestring_ascii

    from doctor._json_out import scalar_text

    pad = "\n" + "  " * (FINDINGS_LEVEL + 1)  # the finding's keys; its evidence's one deeper
    was, now = scalar_text(old["evidence"]["idle_s"]), scalar_text(new["evidence"]["idle_s"])
    if not (isinstance(old["summary"], str) and isinstance(new["summary"], str)):
        return None
    if was is None or now is None:
        return None
    swaps = [
        (f'{pad}  "idle_s": {was}', f'{pad}  "idle_s": {now}'),
        (
            f'{pad}"summary": {encode_basestring_ascii(old["summary"])}',
            f'{pad}"summary": {encode_basestring_ascii(new["summary"])}',
        ),
    ]
    for before, after in swaps:
        # The key's whole line: followed by the next key (",") or the object's end.
        for tail in (",", "\n"):
            if text.count(before + tail) == 1:
                text = text.replace(before + tail, after + tail)
                break
        else:
            return None
    return text


def _cached(entry: CacheEntry | None, prints: dict[str, list[int]]) -> RunOutcome | None:
    if entry is None or entry.diagnosis is None or not entry.clock or not entry.activity:
        return None
    if entry.fingerprint != prints:
        return None
    return RunOutcome(
        str(entry.diagnosis.get("run_id")), entry.diagnosis, entry.clock, entry.activity
    )


def _batches(
    layouts: Sequence[RunLayout], sizes: dict[str, int], workers: int = 1
) -> Iterator[list[RunLayout]]:
    """``layouts`` in order, cut into batches of at most :data:`BATCH_BYTES` of streams and
    :data:`BATCH_RUNS` runs, as even in bytes as they can be and, when there are several, a
    multiple of ``workers`` of them: the workers then finish together, where cutting full
    batches would leave one worker alone with the last (a fleet of 14.3 full batches: 15).
    """
    total = sum(sizes.get(x.run_id, 0) for x in layouts)
    # A batch is its share of the bytes give or take half a run at each end (a run over half
    # a batch counts as half: a larger one is a batch of its own anyway).
    half = min(max(sizes.values(), default=0), BATCH_BYTES // 2) // 2
    parts = max(1, -(-total // (BATCH_BYTES - half)), -(-len(layouts) // BATCH_RUNS))
    if parts > 1:
        parts = -(-parts // workers) * workers
    batch: list[RunLayout] = []
    size_sum = done = share = 0  # bytes in the batch and before this run; the batch's share
    for layout in layouts:
        size = sizes.get(layout.run_id, 0)
        # The run's middle, in shares (total / parts; in integers, so the last run's middle
        # is never past the last share).
        middle = (2 * done + size) * parts // max(1, 2 * total)
        full = size_sum + size > BATCH_BYTES or len(batch) >= BATCH_RUNS
        if batch and (full or middle > share):
            yield batch
            batch, size_sum, share = [], 0, max(share + 1, middle)
        batch.append(layout)
        size_sum += size
        done += size
    if batch:
        yield batch


def _stream_bytes(layout: RunLayout, prints: dict[str, list[int]]) -> int:
    total = 0
    base = str(layout.path) + os.sep
    for scope in layout.scopes:
        st = prints.get(str(scope.progress).removeprefix(base))
        if st is not None:
            total += st[0]
        elif not prints:
            with contextlib.suppress(OSError):
                total += scope.progress.stat().st_size
    return total


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while a rescan allocates a thousand runs' small objects
    (none of them cycles; collections were 4% of a rescan's instructions)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _plan(
    config: DoctorConfig,
    cache: RunCache,
    layouts: Sequence[RunLayout],
    prints: dict[str, dict[str, list[int]]],
    *,
    keys: dict[str, str],
    entries: dict[str, CacheEntry],
    done: dict[str, RunOutcome],
    progress: Progress | None = None,
) -> None:
    """Phase 1: bring each unchanged run's entry to the clock (into ``done``), and keep the
    others' entries (to resume grown streams from)."""
    for i, layout in enumerate(layouts):
        run_id = layout.run_id
        entry = cache.load(layout, keys[run_id])
        if entry is not None:
            found = _classify(config, cache, entry, prints[run_id])
            if isinstance(found, RunOutcome):
                done[run_id] = RunOutcome(run_id, found.diagnosis, found.clock, found.activity)
            else:
                entries[run_id] = found
        if progress is not None and i % 64 == 63:
            progress(len(done), len(layouts))


def _classify(
    config: DoctorConfig, cache: RunCache, entry: CacheEntry, prints: dict[str, list[int]]
) -> RunOutcome | CacheEntry:
    """A cached run's outcome brought to the clock when its files are as cached and it still
    holds; else the entry to read the run with (its streams' offsets only when they can be
    resumed from)."""
    try:
        outcome = _cached(entry, prints)
        fresh = at_clock(outcome, config) if outcome is not None else None
    except (KeyError, TypeError, ValueError, AttributeError):
        fresh = None  # a damaged entry: the run is read again
    # A run whose events file went (a concurrent scan's prune) is read again, so the
    # dataset stays whole.
    events_kept = entry.events is None or cache.events_present(entry)
    if fresh is not None and events_kept:
        return fresh
    if entry.streams and events_kept and entry.events is not None:
        return entry  # grown streams resume from their offsets
    return dataclasses.replace(entry, streams={})


def _changed(
    cache: RunCache,
    layouts: Sequence[RunLayout],
    prints: dict[str, dict[str, list[int]]],
    keys: dict[str, str],
) -> list[RunLayout]:
    """The runs that have a file written after their entry was, or no entry: most likely
    those that must be read (the plan decides), found with one ``stat`` each."""
    out: list[RunLayout] = []
    for layout in layouts:
        written = cache.written_ns(keys[layout.run_id])
        if written is None or any(st[1] > written for st in prints[layout.run_id].values()):
            out.append(layout)
    return out


def scan_runs(
    config: DoctorConfig,
    layouts: Sequence[RunLayout],
    settings: str,
    progress: Progress | None,
) -> tuple[dict[str, RunOutcome], int]:
    """Phases 1 and 2: every run's outcome (run_id ->), and how many were read."""
    cache = RunCache(config.cache_dir, settings) if config.cache_dir else None
    total = len(layouts)
    prints: dict[str, dict[str, list[int]]] = {}
    entries: dict[str, CacheEntry] = {}
    done: dict[str, RunOutcome] = {}
    early: Future[list[RunOutcome]] | None = None
    early_ids: set[str] = set()
    if cache is not None:
        early, early_ids = _plan_cached(
            config,
            cache,
            layouts,
            settings,
            prints=prints,
            entries=entries,
            done=done,
            progress=progress,
        )
    to_read = [x for x in layouts if x.run_id not in done and x.run_id not in early_ids]
    if progress is not None:
        progress(len(done), total)
    sizes = {x.run_id: _stream_bytes(x, prints.get(x.run_id, {})) for x in to_read}
    parallel = sum(sizes.values()) + RUN_COST_BYTES * len(to_read) >= PARALLEL_MIN_BYTES
    cores = min(MAX_WORKERS, os.cpu_count() or 1) if parallel else 1
    batches = [
        _batch(config, settings, b, entries, prints, sizes) for b in _batches(to_read, sizes, cores)
    ]
    workers = min(cores, len(batches))
    try:
        if workers > 1:
            results = _in_pool(batches, workers, progress, len(done), total)
        else:
            results = _in_process(batches, progress, len(done), total)
    except BaseException:
        _settle(early)
        raise
    if early is not None:
        results = [*early.result(), *results]
        if progress is not None:
            progress(total, total)
    for outcome in results:
        done[outcome.run_id] = outcome
    if cache is not None and cache.damaged:
        _note_damaged(cache, layouts, done)
    return done, len(to_read) + len(early_ids)


def _note_damaged(
    cache: RunCache, layouts: Sequence[RunLayout], done: dict[str, RunOutcome]
) -> None:
    """The runs whose cache entry was damaged (:attr:`RunCache.damaged`) noted as read again."""
    note = "read again from the run directory: the cache entry was damaged"
    for x in layouts:
        outcome = done.get(x.run_id)
        if outcome is not None and outcome.cache_note is None and cache.key_of(x) in cache.damaged:
            done[x.run_id] = dataclasses.replace(outcome, cache_note=note)


def _plan_cached(
    config: DoctorConfig,
    cache: RunCache,
    layouts: Sequence[RunLayout],
    settings: str,
    *,
    prints: dict[str, dict[str, list[int]]],
    entries: dict[str, CacheEntry],
    done: dict[str, RunOutcome],
    progress: Progress | None,
) -> tuple[Future[list[RunOutcome]] | None, set[str]]:
    """Phase 1 with a cache: every run fingerprinted (into ``prints``), then planned (into
    ``done`` or ``entries``, see :func:`_plan`). The runs with a file written after their
    entry (or without one) are planned first: when those to read make a small batch, as
    after a run or two grew, it is diagnosed on a thread while the other runs are planned
    (DuckDB works without holding the interpreter's lock), instead of after them. Returns
    that batch's future and its runs (None and none without it)."""
    early: Future[list[RunOutcome]] | None = None
    with _collector_paused():
        keys = {x.run_id: cache.key_of(x) for x in layouts}
        for layout in layouts:
            prints[layout.run_id] = fingerprint(layout)
        changed = _changed(cache, layouts, prints, keys)
        _plan(config, cache, changed, prints, keys=keys, entries=entries, done=done)
        first = [x for x in changed if x.run_id not in done]
        seen = {x.run_id for x in changed}
        rest = [x for x in layouts if x.run_id not in seen]
        sizes = {x.run_id: _stream_bytes(x, prints[x.run_id]) for x in first}
        if (
            first
            and rest  # runs left to plan, for the thread to overlap
            and len(first) <= BATCH_RUNS
            and sum(sizes.values()) < ONE_THREAD_BYTES
        ):
            early = _on_thread(_batch(config, settings, first, entries, prints, sizes))
        try:
            _plan(
                config,
                cache,
                rest,
                prints,
                keys=keys,
                entries=entries,
                done=done,
                progress=progress,
            )
        except BaseException:
            _settle(early)
            raise
    return early, set(sizes) if early is not None else set()


def _batch(
    config: DoctorConfig,
    settings: str,
    layouts: Sequence[RunLayout],
    entries: dict[str, CacheEntry],
    prints: dict[str, dict[str, list[int]]],
    sizes: dict[str, int],
) -> _Batch:
    return _Batch(
        config,
        settings,
        tuple(layouts),
        {x.run_id: entries[x.run_id] for x in layouts if x.run_id in entries},
        {x.run_id: prints.get(x.run_id, {}) for x in layouts},
        config.threads or _small_batch_threads(layouts, sizes),
        excluded_owners(),
    )


def _settle(early: Future[list[RunOutcome]] | None) -> None:
    """Wait for the batch on a thread when the scan fails before taking its result: never
    leave a thread writing the cache behind (its own error, if any, is not the scan's)."""
    if early is not None:
        from concurrent.futures import wait

        wait([early])


def _on_thread(batch: _Batch) -> Future[list[RunOutcome]]:
    """``batch`` diagnosed on a thread of its own (its result or error in the future)."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rundoctor-scan")
    try:
        return pool.submit(_safely, batch)
    finally:
        pool.shutdown(wait=False)  # the thread ends with the batch


def _small_batch_threads(batch: Sequence[RunLayout], sizes: dict[str, int]) -> int | None:
    """One DuckDB thread for a batch under :data:`ONE_THREAD_BYTES`, else DuckDB's default."""
    return 1 if sum(sizes.get(x.run_id, 0) for x in batch) < ONE_THREAD_BYTES else None


def _safely(batch: _Batch) -> list[RunOutcome]:
    """A batch; when it fails with cached entries, once more reading its runs from scratch
    (a concurrent scan may have replaced a Parquet file it resumed from). A batch over the
    resource budget is diagnosed run by run (:func:`_one_by_one`)."""
    try:
        return diagnose_batch(batch)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        if exceeded(exc) is not None:
            return _one_by_one(batch, exc)
        if not batch.entries:
            raise
        why = _short(exc)
        note = f"read again from the run directory: the cached events could not be read ({why})"
    again = diagnose_batch(dataclasses.replace(batch, entries={}))
    return [
        dataclasses.replace(o, cache_note=o.cache_note or note) if o.run_id in batch.entries else o
        for o in again
    ]


def _one_by_one(batch: _Batch, exc: Exception) -> list[RunOutcome]:
    """The batch's runs each alone, after ``exc`` put the batch over the resource budget: a
    run still over it alone gets the finding (:mod:`doctor._budget`), the others their
    diagnosis."""
    out: list[RunOutcome] = []
    for layout in batch.layouts:
        limit = exceeded(exc) if len(batch.layouts) == 1 else None
        if limit is None:
            entries = {k: v for k, v in batch.entries.items() if k == layout.run_id}
            try:
                out.extend(
                    diagnose_batch(dataclasses.replace(batch, layouts=(layout,), entries=entries))
                )
                continue
            except KeyboardInterrupt:
                raise
            except Exception as again:
                limit = exceeded(again)
                if limit is None:
                    raise
        out.append(_over_budget_outcome(layout, limit, batch.config))
    return out


def _over_budget_outcome(layout: RunLayout, limit: str, config: DoctorConfig) -> RunOutcome:
    """A run over the budget: its finding, the owner for the fleet phase, and no activity
    (the fleet's ``idle_gap`` does not see it). Never cached: a rescan reads it again."""
    from doctor._diagnose import over_budget

    d = over_budget(layout, budget_detail(limit, config), config)
    clock = {"pid": d.facts.get("owner_pid"), "alive": None, "state": d.state}
    return RunOutcome(layout.run_id, d.to_json(), clock, {"first": None})


def _in_process(
    batches: list[_Batch], progress: Progress | None, start: int, total: int
) -> list[RunOutcome]:
    out: list[RunOutcome] = []
    for batch in batches:
        out.extend(_safely(batch))
        if progress is not None:
            progress(start + len(out), total)
    return out


def _in_pool(
    batches: list[_Batch], workers: int, progress: Progress | None, start: int, total: int
) -> list[RunOutcome]:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    out: list[RunOutcome] = []
    # Each worker's DuckDB gets one thread: the processes are the parallelism.
    batches = [dataclasses.replace(b, threads=1) for b in batches]
    # spawn, not fork: DuckDB's threads do not survive a fork.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending: set[Future[list[RunOutcome]]] = {pool.submit(_safely, b) for b in batches}
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                out.extend(fut.result())
            if progress is not None:
                progress(start + len(out), total)
    return out


# --- phase 3: the fleet -------------------------------------------------------------------------

_LEASED_RUNS_SQL = """
SELECT DISTINCT r.run_id FROM tickets t JOIN runs r ON r.run_id = t.run_id OR r.path = t.run_path
WHERE t.status IN {leased}
"""


def _run_rows(
    layouts: Sequence[RunLayout], outcomes: dict[str, RunOutcome]
) -> list[tuple[Any, ...]]:
    return [
        (x.run_id, display_name(str(x.path)), x.layout, outcomes[x.run_id].clock.get("pid"))
        for x in layouts
    ]


def fleet_findings(
    config: DoctorConfig, layouts: Sequence[RunLayout], outcomes: dict[str, RunOutcome]
) -> list[Finding]:
    """Phase 3: the fleet detectors over every run's activity and the queue, at the clock.

    A run a lease of the queue names is read again here (its events are what
    ``no_progress_lease`` counts); every other run is seen through its activity.
    """
    if not config.db:
        # Without a queue only idle_gap has anything to see: in Python, over the runs'
        # activity, so a rescan loads neither DuckDB nor Arrow, nor (every check selected, no
        # name to check) the catalog of detectors.
        if config.checks and not any(d.__name__ == "idle_gap" for d in _fleet(config)):
            return []
        from doctor._detectors.idle_gap import activity_gaps

        lives, points = _lives(config, layouts, outcomes)
        return activity_gaps(lives, points, config)
    detectors = _fleet(config)
    if not detectors:
        return []
    return _fleet_in_duckdb(config, layouts, outcomes, detectors)


def _fleet(config: DoctorConfig) -> list[Callable[[Context], list[Finding]]]:
    from doctor._detectors import select

    return [d for d in select(config.checks) if d.__name__ in FLEET_DETECTORS]


def _lives(
    config: DoctorConfig, layouts: Sequence[RunLayout], outcomes: dict[str, RunOutcome]
) -> tuple[list[tuple[str, int, int, bool]], dict[str, list[int]]]:
    """Each run's life (run, start_ns, end_ns, finished) and progress points (run -> t)."""
    now_ns = int(config.now * 1e9)
    lives: list[tuple[str, int, int, bool]] = []
    points: dict[str, list[int]] = {}
    for x in layouts:
        outcome = outcomes[x.run_id]
        a = outcome.activity
        first = a.get("first")
        if first is None:
            continue
        # As idle_gap's lives: a finished run lives to its final.json, one whose owner is
        # alive to now, any other to its last event of any kind.
        if a["finished"]:
            end = max(a["last_progress"] or first, a["final_ns"] or first)
        elif outcome.clock.get("alive") is True:
            end = max(a["last_event"], now_ns)
        else:
            end = a["last_event"]
        lives.append((x.run_id, int(first), int(end), bool(a["finished"])))
        points[x.run_id] = [int(t) for t in a["points"]]
    return lives, points


def _fleet_in_duckdb(
    config: DoctorConfig,
    layouts: Sequence[RunLayout],
    outcomes: dict[str, RunOutcome],
    detectors: Sequence[Callable[[Context], list[Finding]]],
) -> list[Finding]:
    from doctor._detectors._queue import LEASED
    from doctor._ingest import load_runs
    from doctor._queue_ingest import copy_queue, load_queue

    linked: set[str] = set()
    probe = load_runs([], keep_raw=False, threads=config.threads)
    try:
        if config.db:  # read once: the runs to read in full, then a copy of the same snapshot
            load_queue(probe, config.db)
            probe.add_rows("runs", _run_rows(layouts, outcomes))
            linked = {r for (r,) in probe.sql(_LEASED_RUNS_SQL.format(leased=LEASED))}
        tables = load_runs(
            [x for x in layouts if x.run_id in linked], keep_raw=False, threads=config.threads
        )
        if config.db:
            copy_queue(probe, tables)
    finally:
        probe.con.close()
    try:
        others = [x for x in layouts if x.run_id not in linked]
        tables.add_rows("runs", _run_rows(others, outcomes))
        lives, points = _lives(config, others, outcomes)
        tables.add_rows("cached_lives", lives)
        tables.add_rows("cached_progress", [(r, t) for r, ts in points.items() for t in ts])
        ctx = Context(tables, compute_facts(tables, config), config)
        return [f for d in detectors for f in d(ctx)]
    finally:
        tables.con.close()
