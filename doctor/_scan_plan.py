"""Phase 1 of a scan with a cache: the plan.

Each run's files are fingerprinted (inode, size, mtime of every file the doctor reads; nothing
is opened). A run whose fingerprint matches its entry is not read: its cached diagnosis is
*brought to the clock* (:func:`doctor._scan_outcome.at_clock`). Other runs are read, those
whose streams only grew from their last byte offsets (their entries are kept to resume from).
The runs with a file written after their entry (or without one) are planned first, so that a
small batch of them can be diagnosed while the others are planned (:func:`_plan_cached`): by a
warm child process on the other core where one could be forked (:mod:`doctor._scan_child`),
else on a thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from doctor._cache import CacheEntry, RunCache, fingerprint
from doctor._config import DoctorConfig
from doctor._layout import RunLayout
from doctor._scan_batch import _batch, _one_small_batch, _stream_bytes
from doctor._scan_outcome import RunOutcome, at_clock
from doctor._scan_pool import Progress, _on_thread, _settle

if TYPE_CHECKING:
    from concurrent.futures import Future

    from doctor._scan_child import WarmChild

__all__: list[str] = []


def _cached(entry: CacheEntry | None, prints: dict[str, list[int]]) -> RunOutcome | None:
    if entry is None or entry.diagnosis is None or not entry.clock or not entry.activity:
        return None
    if entry.fingerprint != prints:
        return None
    return RunOutcome(
        str(entry.diagnosis.get("run_id")), entry.diagnosis, entry.clock, entry.activity
    )


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
    warm: WarmChild | None = None,
) -> tuple[Future[list[RunOutcome]] | None, set[str]]:
    """Phase 1 with a cache: every run fingerprinted (into ``prints``), then planned (into
    ``done`` or ``entries``, see :func:`_plan`). The runs with a file written after their
    entry (or without one) are planned first: when those to read make a small batch, as
    after a run or two grew, it is diagnosed on a thread while the other runs are planned
    (DuckDB works without holding the interpreter's lock), or by ``warm``, a child on the other
    core (:mod:`doctor._scan_child`), instead of after them. Returns
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
        # Runs left to plan, for the thread to overlap.
        if first and rest and _one_small_batch(first, sizes):
            batch = _batch(config, settings, first, entries, prints, sizes)
            early = warm.submit(batch) if warm is not None else _on_thread(batch)
        elif warm is not None:
            warm.close()  # no batch for it: its imports stop taking a core now
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
