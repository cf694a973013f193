"""Phase 2 of a scan: the runs to read cut into batches, and one batch diagnosed and cached.

Runs to read are cut into batches of at most :data:`BATCH_BYTES` of event streams (and
:data:`BATCH_RUNS` runs): :func:`_batches`. Each batch is read into its own DuckDB connection,
its facts computed and every per-run detector run; the batch's events, diagnoses and activity
go to the cache, and the connection is dropped (:func:`diagnose_batch`). Memory is that of a
batch, not of the fleet. When several processes diagnose batches side by side
(:mod:`doctor._scan_pool`), the batches are as even as they can be and a multiple of the
workers, which finish together. A batch returns its runs' findings as the text the scan
prints (as the cache keeps them), so the main process splices them in as it does a cached
run's. A cache that cannot take a batch's results is the cache's failure, never the runs'
(:func:`_saved`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from doctor._budget import exceeded
from doctor._cache import CacheEntry, RunCache
from doctor._config import DoctorConfig
from doctor._detectors import Context
from doctor._diagnose import _order
from doctor._facts import compute_facts
from doctor._kept import KeptFindings
from doctor._layout import RunLayout, display_name
from doctor._model import Diagnosis, Finding
from doctor._scan_fleet import FLEET_DETECTORS, _activity
from doctor._scan_outcome import RunOutcome, _clock_inputs, named_processes
from rundoctor.errors import interrupted
from rundoctor.liveness import exclude_owners, excluded_owners

if TYPE_CHECKING:
    from doctor._tables import Tables

__all__ = ["BATCH_BYTES", "BATCH_RUNS", "ONE_THREAD_BYTES", "diagnose_batch"]


#: Event-stream bytes per batch: what one DuckDB connection holds at a time.
BATCH_BYTES = 96 << 20
#: Runs per batch at most (many tiny runs still make bounded batches). A batch's fixed
#: costs (its connection, ~20 fact and detector queries) are shared by its runs: 3,000 runs
#: of 60 events took 4.8 s in batches of 128 and 3.5 s in batches of 512 (no cache).
BATCH_RUNS = 512
#: A batch of fewer event-stream bytes runs on one DuckDB thread (unless ``--threads`` says
#: otherwise): its queries are too small to split, and a second thread made each of them
#: slower (a run of 8,100 events: 20-40% per query, and the connection's start).
ONE_THREAD_BYTES = 8 << 20


@dataclass(frozen=True)
class _Batch:
    config: DoctorConfig
    settings: str
    layouts: tuple[RunLayout, ...]
    entries: dict[str, CacheEntry]
    prints: dict[str, dict[str, list[int]]]
    threads: int | None
    not_owners: frozenset[int] = field(default_factory=frozenset)


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
            clock = clocks[layout.run_id]
            if processes := named_processes(data["findings"]):
                clock["processes"] = processes
            # The findings as the text the scan prints and the cache keeps, written here (in
            # a worker, beside the others): the main process splices it as a cached run's.
            data["findings"] = KeptFindings.of(data["findings"])
            outcomes.append(RunOutcome(layout.run_id, data, clock, activity[layout.run_id]))
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
        # DuckDB's engine, not its Python layer). Ctrl-C is the scan's end, not the cache's.
        if (
            interrupted(exc)
            or exceeded(exc) is not None
            or not (isinstance(exc, OSError) or type(exc).__module__ == "_duckdb")
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
        # Only what a read resumes from: the cached diagnosis is not the batch's, and its
        # facts, read again from the entry's file to be sent to a worker, were gone when a
        # prune or another scan had removed or replaced the entry since (the scan crashed).
        {
            x.run_id: dataclasses.replace(entries[x.run_id], diagnosis=None)
            for x in layouts
            if x.run_id in entries
        },
        {x.run_id: prints.get(x.run_id, {}) for x in layouts},
        config.threads or _small_batch_threads(layouts, sizes),
        excluded_owners(),
    )


def _small_batch_threads(batch: Sequence[RunLayout], sizes: dict[str, int]) -> int | None:
    """One DuckDB thread for a batch under :data:`ONE_THREAD_BYTES`, else DuckDB's default."""
    return 1 if sum(sizes.get(x.run_id, 0) for x in batch) < ONE_THREAD_BYTES else None


def _one_small_batch(layouts: Sequence[RunLayout], sizes: dict[str, int]) -> bool:
    """Whether ``layouts`` (``sizes`` their streams' bytes) make one batch of at most
    :data:`BATCH_RUNS` runs under :data:`ONE_THREAD_BYTES`: one DuckDB thread's worth."""
    return len(layouts) <= BATCH_RUNS and sum(sizes.values()) < ONE_THREAD_BYTES
