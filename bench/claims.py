"""Queue throughput: claims per second by real, concurrent worker processes.

Each case pre-fills a fresh queue with a few thousand trivial tickets, starts N worker
processes (multiprocessing, spawn), lets them connect, then releases them at once; each loops
``claim`` + ``complete`` until the queue is empty. The rate is tickets / wall seconds from the
release to the last worker's exit. Every ticket must end ``done`` exactly once, or the case
raises instead of reporting a rate.

Targets are informational floors (200 claims/s for every case), not requirements from an
issue: a swarm of agent pipelines claims a ticket every few seconds, so the floors only say
"the queue is never the bottleneck". SQLite serializes writers (one write lock per file), so
its rate does not grow with workers; PostgreSQL's SKIP LOCKED lets claimers proceed side by
side, bounded here by a 2-core machine.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import uuid
from multiprocessing.synchronize import Barrier, Event

import psycopg

from bench._common import BENCH_DIR, Result, timer
from executor import SessionInfo, open_queue
from rundoctor.paths import remove_tree

__all__ = ["run"]

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
FLOOR = 200.0  # claims per second
TICKETS = 3000
SQLITE_WORKERS = (1, 4)
POSTGRES_WORKERS = (1, 4, 16)
_NOTE = f"informational floor {FLOOR:g}/s; {TICKETS} tickets, claim+complete each"


def _worker(url: str, name: str, ready: Barrier, go: Event, done: mp.Queue[int]) -> None:
    queue = open_queue(url)
    me = SessionInfo(name, pid=os.getpid(), pgid=os.getpgid(0), proc_start_time=None, host="bench")
    ready.wait()
    go.wait()
    count = 0
    while (lease := queue.claim(name, lease_ttl_s=60, session=me)) is not None:
        queue.complete(lease, result={})
        count += 1
    queue.close()
    done.put(count)


def _rate(url: str, workers: int) -> float:
    """Fill the queue at ``url``, drain it with ``workers`` processes, return claims/s."""
    with open_queue(url) as queue:
        for i in range(TICKETS):
            queue.enqueue(f"bench-{i}", "/bench/trivial.dot")
    ctx = mp.get_context("spawn")
    ready, go, done = ctx.Barrier(workers + 1), ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(url, f"w{n}", ready, go, done)) for n in range(workers)
    ]
    for p in procs:
        p.start()
    ready.wait(timeout=120)  # every worker connected: the clock measures claiming only
    with timer() as elapsed:
        go.set()
        counts = [done.get(timeout=600) for _ in procs]
        for p in procs:
            p.join(timeout=60)
    if any(p.exitcode != 0 for p in procs):
        raise RuntimeError(f"a worker failed: exit codes {[p.exitcode for p in procs]}")
    with open_queue(url) as queue:
        statuses = {t.status for t in queue.tickets()}
    if sum(counts) != TICKETS or statuses != {"done"}:
        raise RuntimeError(f"claimed {sum(counts)} of {TICKETS}; statuses {sorted(statuses)}")
    return TICKETS / elapsed()


def _sqlite_results() -> list[Result]:
    results = []
    root = BENCH_DIR / "claims"
    for workers in SQLITE_WORKERS:
        remove_tree(root, ignore_errors=True)
        root.mkdir(parents=True)
        rate = _rate(f"sqlite:///{root / 'queue.db'}", workers)
        name = f"queue claims/s, SQLite, {workers} worker{'s' if workers > 1 else ''}"
        results.append(Result(name, rate, FLOOR, "claims/s", higher_is_better=True, note=_NOTE))
    return results


def _postgres_results() -> list[Result]:
    results = []
    for workers in POSTGRES_WORKERS:
        name = f"queue claims/s, PostgreSQL, {workers} worker{'s' if workers > 1 else ''}"
        schema = f"bench_claims_{uuid.uuid4().hex[:12]}"
        try:
            with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as admin:
                admin.execute(f"CREATE SCHEMA {schema}")
        except psycopg.Error as exc:
            note = f"PostgreSQL at {PG_URL} unreachable: {str(exc).strip().splitlines()[0]}"
            results.append(Result(name, 0.0, FLOOR, "claims/s", higher_is_better=True, note=note))
            continue
        try:
            rate = _rate(f"{PG_URL}?options=-csearch_path%3D{schema}", workers)
        finally:
            with psycopg.connect(PG_URL, autocommit=True) as admin:
                admin.execute(f"DROP SCHEMA {schema} CASCADE")
        results.append(Result(name, rate, FLOOR, "claims/s", higher_is_better=True, note=_NOTE))
    return results


def run() -> list[Result]:
    """Claims per second for SQLite (1, 4 workers) and PostgreSQL (1, 4, 16 workers)."""
    return _sqlite_results() + _postgres_results()
