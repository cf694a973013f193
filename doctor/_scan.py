"""``doctor scan``: every run under the roots, in bounded batches, with a cache.

A scan has three phases:

1. **Plan** (:mod:`doctor._scan_plan`). Each run's files are fingerprinted (inode, size,
   mtime of every file the doctor reads; nothing is opened). With a cache, a run whose
   fingerprint matches its entry is not read: its cached diagnosis is *brought to the clock*
   (:mod:`doctor._scan_outcome`). Other runs are read, those whose streams only grew from
   their last byte offsets.
2. **Diagnose, in batches** (:mod:`doctor._scan_batch`). Runs to read are cut into batches of
   at most :data:`~doctor._scan_batch.BATCH_BYTES` of event streams (and
   :data:`~doctor._scan_batch.BATCH_RUNS` runs). Each batch is read into its own DuckDB
   connection, its facts computed and every per-run detector run; the batch's events,
   diagnoses and activity go to the cache, and the connection is dropped. Memory is that of
   a batch, not of the fleet. With several batches and enough bytes, two processes diagnose
   batches side by side (the machine's cores, at most :data:`MAX_WORKERS`;
   :mod:`doctor._scan_pool`); the batches are then as even as they can be and a multiple of
   the workers, which finish together. A batch returns its runs' findings as the text the
   scan prints (as the cache keeps them), so the main process splices them in as it does a
   cached run's.
3. **Fleet** (:mod:`doctor._scan_fleet`). The detectors that look across runs (``idle_gap``
   and the queue's) run once over every run's *activity* (first event, last progress, last
   event, final.json's time, and its progress points thinned to the first and last of each
   half-threshold bucket, which keeps every gap longer than the threshold) and the queue, at
   the current clock.

Here :func:`scan_runs` runs phases 1 and 2, and decides whether worker processes are worth
starting; phase 3 is :func:`~doctor._scan_fleet.fleet_findings`, re-exported with
:class:`~doctor._scan_outcome.RunOutcome` for the scan's callers. Each constant lives in the
module that reads it (a test patches it there).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from doctor._cache import CacheEntry, RunCache
from doctor._config import DoctorConfig
from doctor._layout import RunLayout
from doctor._scan_batch import _batch, _batches, _stream_bytes
from doctor._scan_fleet import fleet_findings
from doctor._scan_outcome import RunOutcome
from doctor._scan_plan import _note_damaged, _plan_cached
from doctor._scan_pool import Progress, _in_pool, _in_process, _settle

if TYPE_CHECKING:
    from concurrent.futures import Future

    from doctor._scan_child import WarmChild

__all__ = [
    "MAX_WORKERS",
    "PARALLEL_MIN_BYTES",
    "RUN_COST_BYTES",
    "RunOutcome",
    "fleet_findings",
    "scan_runs",
]


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


def scan_runs(
    config: DoctorConfig,
    layouts: Sequence[RunLayout],
    settings: str,
    progress: Progress | None,
    *,
    warm: WarmChild | None = None,
) -> tuple[dict[str, RunOutcome], int]:
    """Phases 1 and 2: every run's outcome (run_id ->), and how many were read. A rescan's
    small batch goes to ``warm``, when given (:mod:`doctor._scan_child`)."""
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
            warm=warm,
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
