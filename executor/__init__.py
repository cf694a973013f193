"""Run Doctor's durable executor: runs pipelines of stages and writes their artifacts.

The front door of the executor for every other package: the queue API, the worker and reaper
entry points, the errors. It stands on :mod:`rundoctor` alone (never on the doctor), so a
worker host loads no analysis stack. The shared command-line kit is :mod:`executor.console`.

>>> from executor import open_queue
>>> queue = open_queue(":memory:", clock=lambda: 5.0)
>>> queue.enqueue("demo", "/p.dot").status
'todo'
"""

import typing

from rundoctor.lazy import lazy_exports as _lazy_exports

if typing.TYPE_CHECKING:
    from executor._clocks import ClockOffset
    from executor._config import ExecutorConfig
    from executor._errors import (
        BudgetError,
        ExecutorError,
        FencedError,
        GraphError,
        NoQueueError,
        QueueError,
        UsageError,
        WorkerError,
    )
    from executor._events import EVENTS, Event
    from executor._graph import Graph, graph_edges, load_graph, parse_graph
    from executor._queue import Lease, Queue, SessionInfo, Ticket, TicketEvent, open_queue
    from executor._reaper import Reclaim, reap, watch_lapses
    from executor._runner import RunResult, run_pipeline
    from executor._sqlite import BUSY_TIMEOUT_MS
    from executor._ticket_run import WorkerStats
    from executor._worker import QueueOpener, run_ticket, run_worker

__all__ = [
    "BUSY_TIMEOUT_MS",
    "EVENTS",
    "BudgetError",
    "ClockOffset",
    "Event",
    "ExecutorConfig",
    "ExecutorError",
    "FencedError",
    "Graph",
    "GraphError",
    "Lease",
    "NoQueueError",
    "Queue",
    "QueueError",
    "QueueOpener",
    "Reclaim",
    "RunResult",
    "SessionInfo",
    "Ticket",
    "TicketEvent",
    "UsageError",
    "WorkerError",
    "WorkerStats",
    "graph_edges",
    "load_graph",
    "open_queue",
    "parse_graph",
    "reap",
    "run_pipeline",
    "run_ticket",
    "run_worker",
    "watch_lapses",
]

# The front door is lazy (PEP 562), like the doctor's: `import executor` costs nothing until a
# name is used, and `executor.console` (which every command line imports) does not pull in the
# queue or the runner. Each name lives in the module written beside it.
_HOMES = {
    "BUSY_TIMEOUT_MS": "executor._sqlite",
    "BudgetError": "executor._errors",
    "ClockOffset": "executor._clocks",
    "EVENTS": "executor._events",
    "Event": "executor._events",
    "ExecutorConfig": "executor._config",
    "ExecutorError": "executor._errors",
    "FencedError": "executor._errors",
    "Graph": "executor._graph",
    "GraphError": "executor._errors",
    "Lease": "executor._queue",
    "NoQueueError": "executor._errors",
    "Queue": "executor._queue",
    "QueueError": "executor._errors",
    "QueueOpener": "executor._worker",
    "Reclaim": "executor._reaper",
    "RunResult": "executor._runner",
    "SessionInfo": "executor._queue",
    "Ticket": "executor._queue",
    "TicketEvent": "executor._queue",
    "UsageError": "executor._errors",
    "WorkerError": "executor._errors",
    "WorkerStats": "executor._ticket_run",
    "graph_edges": "executor._graph",
    "load_graph": "executor._graph",
    "open_queue": "executor._queue",
    "parse_graph": "executor._graph",
    "reap": "executor._reaper",
    "run_pipeline": "executor._runner",
    "run_ticket": "executor._worker",
    "run_worker": "executor._worker",
    "watch_lapses": "executor._reaper",
}


__getattr__, __dir__ = _lazy_exports("executor", _HOMES, __all__, globals())
