"""Run Doctor's durable executor: runs pipelines of stages and writes their artifacts."""

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
from executor._graph import Graph, load_graph, parse_graph
from executor._queue import Lease, Queue, SessionInfo, Ticket, TicketEvent, open_queue
from executor._runner import RunResult, run_pipeline

__all__ = [
    "EVENTS",
    "BudgetError",
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
    "RunResult",
    "SessionInfo",
    "Ticket",
    "TicketEvent",
    "UsageError",
    "WorkerError",
    "load_graph",
    "open_queue",
    "parse_graph",
    "run_pipeline",
]
