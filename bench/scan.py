"""``doctor scan`` over a generated fleet against DuckDB alone, and a second (cached) scan.

Targets (issue 2): a cold scan within 1.5x of the time DuckDB alone needs for the same
per-run aggregates over the same files; a second scan with nothing changed at most 10% of
the first. The fleet (1,000 runs x 8,000 events) is generated once into ``.bench/``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import duckdb

from bench._common import BENCH_DIR, Result, best_of, timer
from doctor import DoctorConfig, scan
from doctor._ndjson import _READ_JSON_COLUMNS
from fixtures.fleet import build_fleet

__all__ = ["baseline_seconds", "run"]

RUNS, PER_RUN = 1000, 8000
_HB = "event IN ('stage_heartbeat', 'branch_heartbeat', 'branch_stale_warning')"

# The per-run aggregates the scan reports, computed by DuckDB straight from the files: what a
# person would write with DuckDB alone (read once into a table, then aggregate). One query per
# thing the scan reports: run summary, events by type, edges (facts, retry_loop), attempt
# pairing and durations (facts), stale heartbeats, failures by node and reason
# (deterministic_retry_loop, fragmented_failure_signatures, lost_failure_reason,
# swallowed_error), first entry of each node (retry_loop back edges), progress gaps
# (idle_gap), events after a terminal event (post_terminal_activity), unparsable lines
# (torn_artifact).
BASELINE_SQL = [
    f"""CREATE OR REPLACE TEMP TABLE ev AS SELECT filename, * EXCLUDE (filename)
        FROM read_json($files, format='newline_delimited', ignore_errors=true, filename=true,
                       columns={_READ_JSON_COLUMNS})""",
    f"""SELECT filename, min(ts), max(ts), max(ts) FILTER (WHERE NOT {_HB}), count(*),
               count(*) FILTER (WHERE event = 'stage_attempt_start'),
               count(*) FILTER (WHERE event = 'stage_attempt_end')
        FROM ev GROUP BY 1""",
    "SELECT filename, event, count(*) FROM ev GROUP BY ALL",
    "SELECT filename, from_node, to_node, count(*) FROM ev WHERE event = 'edge_selected' "
    "GROUP BY ALL",
    """CREATE OR REPLACE TEMP TABLE att AS
        WITH m AS (SELECT filename, node_id, event, ts, rowid AS seq,
                      count(*) FILTER (WHERE event = 'stage_attempt_start') OVER (
                          PARTITION BY filename, node_id ORDER BY rowid) AS n
                   FROM ev WHERE event IN ('stage_attempt_start', 'stage_attempt_end'))
        SELECT s.filename, s.node_id, s.seq AS start_seq, e.seq AS end_seq,
               epoch(e.ts::TIMESTAMP) - epoch(s.ts::TIMESTAMP) AS dur
        FROM m s LEFT JOIN m e ON e.filename = s.filename AND e.node_id = s.node_id
             AND e.n = s.n AND e.event = 'stage_attempt_end'
        WHERE s.event = 'stage_attempt_start'""",
    "SELECT filename, node_id, count(*), min(dur), median(dur), max(dur), sum(dur) FROM att "
    "GROUP BY ALL",
    f"""SELECT h.filename, count(*) FROM
        (SELECT filename, node_id, rowid AS seq FROM ev WHERE {_HB}) h
        ASOF LEFT JOIN att a ON h.filename = a.filename AND h.node_id = a.node_id
            AND h.seq > a.start_seq
        WHERE a.start_seq IS NULL OR a.end_seq < h.seq GROUP BY 1""",
    "SELECT filename, node_id, failure_reason, count(*) FROM ev "
    "WHERE event = 'stage_attempt_end' AND status IN ('fail', 'retry') GROUP BY ALL",
    "SELECT filename, coalesce(node_id, to_node), min(rowid) FROM ev GROUP BY ALL",
    f"""SELECT filename, max(gap) FROM (
        SELECT filename, epoch(ts::TIMESTAMP) - lag(epoch(ts::TIMESTAMP)) OVER (
            PARTITION BY filename ORDER BY ts) AS gap
        FROM ev WHERE NOT {_HB}) GROUP BY 1""",
    """SELECT e.filename, count(*) FROM ev e JOIN (
        SELECT filename, max(rowid) AS t FROM ev
        WHERE event IN ('run_completed', 'run_failed') GROUP BY 1) x USING (filename)
        WHERE e.rowid > x.t GROUP BY 1""",
    "SELECT filename, count(*) FILTER (WHERE event IS NULL) FROM ev GROUP BY 1",
]


def fleet_dir() -> Path:
    root = BENCH_DIR / f"fleet-{RUNS}x{PER_RUN}"
    if not (root / f"fleet-{RUNS - 1:04d}" / "progress.ndjson").exists():
        build_fleet(root, RUNS, PER_RUN)
    return root


def baseline_seconds(root: Path) -> float:
    files = sorted(str(p) for p in root.glob("*/progress.ndjson"))

    def once() -> None:
        con = duckdb.connect()
        for sql in BASELINE_SQL:
            con.execute(sql, {"files": files} if "$files" in sql else None).fetchall()
        con.close()

    return best_of(2, once)


def run() -> list[Result]:
    root = fleet_dir()
    base = baseline_seconds(root)
    cache = Path(tempfile.mkdtemp(prefix="rundoctor-bench-cache-"))
    try:
        config = DoctorConfig(roots=(root,), cache_dir=cache)
        with timer() as first:
            result = scan(config)
        cold = first()
        with timer() as second:
            again = scan(config)
        warm = second()
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    events = result.fleet["events"]
    assert again.fleet["events"] == events
    return [
        Result(
            "scan 1,000 runs cold / DuckDB alone",
            cold / base,
            1.5,
            "x",
            note=f"{cold:.2f}s vs {base:.2f}s over {events:,} events",
        ),
        Result(
            "scan again, nothing changed / first scan",
            warm / cold,
            0.10,
            "x",
            note=f"{warm:.2f}s vs {cold:.2f}s ({again.fleet['reused']} runs reused)",
        ),
    ]
