"""Hand-made histories for the checker tests, and the PostgreSQL switch of the campaign tests.

:class:`Story` writes a history the way a campaign would record it, one call per fact, so a
test reads as the sequence of events it checks: ``s.lease("t-1", 1, "w1/0", at=10, end=12)``
is a claim, a start, a heartbeat and a completion.
"""

from __future__ import annotations

from typing import Any

from chaos import (
    Bounds,
    FaultRecord,
    FindingFact,
    Held,
    History,
    Meta,
    Op,
    QueueEvent,
    Record,
    RunRecord,
    TicketRecord,
    WorkerRecord,
)

# The queue fixtures (one SQLite file, one fresh PostgreSQL schema), shared with the executor's.
from tests.executor.conftest import (  # noqa: F401
    backend,
    postgres_backend,
    sqlite_backend,
)


class Story:
    """Builds a :class:`chaos.History` record by record."""

    def __init__(self, bounds: Bounds | None = None) -> None:
        self.records: list[Record] = []
        self._ids = 0
        if bounds is not None:
            meta = Meta(0.0, 1, 10.0, 2, "sqlite:///q.db", (), (), bounds, "doctor chaos run")
            self.records.append(meta)

    def add(self, record: Record) -> Any:
        self.records.append(record)
        return record

    def event(
        self,
        at: float,
        ticket: str,
        event: str,
        worker: str | None = None,
        epoch: int | None = None,
        **detail: Any,
    ) -> QueueEvent:
        self._ids += 1
        return self.add(QueueEvent(float(at), self._ids, ticket, event, worker, epoch, detail))

    def op(
        self,
        at: float,
        kind: str,
        f: str,
        worker: str,
        ticket: str | None,
        epoch: int | None,
        **value: Any,
    ) -> Op:
        return self.add(Op(float(at), kind, f, worker, worker.split("/")[0], ticket, epoch, value))

    def ticket(self, ticket: str, status: str, epoch: int, workload: str = "long") -> TicketRecord:
        return self.add(TicketRecord(99.0, ticket, f"{workload}_01", workload, status, epoch))

    def run(self, run_id: str, ticket: str, epoch: int, **facts: Any) -> RunRecord:
        facts.setdefault("final_status", "success")
        facts.setdefault("final_at", 50.0)
        facts.setdefault("final_by", "executor")
        facts.setdefault("workload", "long")
        return self.add(RunRecord(50.0, run_id, f"/runs/{run_id}", ticket, epoch, **facts))

    def fault(
        self,
        at: float,
        fault: str,
        phase: str = "inject",
        *,
        runs: tuple[str, ...] = (),
        held: tuple[tuple[str, int], ...] = (),
    ) -> FaultRecord:
        leases = tuple(Held(t, e) for t, e in held)
        return self.add(FaultRecord(at, fault, phase, "worker w1 (pid 42)", {}, runs, leases))

    def worker(self, name: str, phase: str, *, expected: bool = True) -> WorkerRecord:
        code = None if phase == "start" else -9
        return self.add(WorkerRecord(1.0, name, 42, phase, code, expected))

    def lease(
        self,
        ticket: str,
        epoch: int,
        worker: str,
        *,
        at: float,
        end: float,
        ending: str = "completed",
    ) -> None:
        """A whole lease: claimed at ``at``, started, one heartbeat, ended at ``end``."""
        if epoch == 1:
            self.event(at - 1, ticket, "created")
        self.event(at, ticket, "claimed", worker, epoch)
        self.op(at, "invoke", "claim", worker, ticket, None)
        self.op(at, "ok", "claim", worker, ticket, epoch)
        self.op(at + 0.1, "invoke", "start", worker, ticket, epoch, run_id=f"r{epoch}")
        self.op(at + 0.2, "ok", "start", worker, ticket, epoch)
        self.op(at + 0.5, "invoke", "heartbeat", worker, ticket, epoch)
        self.op(at + 0.6, "ok", "heartbeat", worker, ticket, epoch)
        if ending in ("completed", "failed", "released"):
            f = {"completed": "complete", "failed": "fail", "released": "release"}[ending]
            self.op(end - 0.1, "invoke", f, worker, ticket, epoch)
            self.event(end, ticket, ending, worker, epoch)
            self.op(end + 0.1, "ok", f, worker, ticket, epoch)
        elif ending == "reclaimed":
            self.event(end, ticket, "reclaimed", worker, epoch)

    def history(self) -> History:
        return History(tuple(self.records)).sorted()


def finding(code: str, severity: str = "error") -> FindingFact:
    return FindingFact(code, severity, f"{code} seen")
