"""Fault ``remove_pipeline``: a ticket's pipeline file is deleted or broken after ``enqueue``.

The harness writes a small pipeline of its own, enqueues a ticket for it, then deletes the
file (even picks) or replaces it with an invalid graph (odd picks) before a worker loads it.
The executor promises that the ticket fails with a reason naming the pipeline, and that no
slot dies: the healthy tickets behind it still run.
"""

from __future__ import annotations

from chaos._injection import Fault, Injection, Target, require_database_free
from rundoctor.paths import make_dirs

__all__ = ["FAULT", "TITLE", "remove_pipeline"]

#: The title of the tickets this fault enqueues (no workload pipeline has it).
TITLE = "removed_pipeline"
_GRAPH = (
    "digraph removed { start [shape=Mdiamond]; exit [shape=Msquare];\n"
    '  work [shape=parallelogram, tool_command="true"]; start -> work -> exit }\n'
)


def remove_pipeline(target: Target) -> Injection | None:
    """Enqueue a ticket, then delete or break its pipeline file before a worker loads it."""
    require_database_free(target)  # the harness's enqueue would wait behind it
    make_dirs(target.scratch)
    n = len(list(target.scratch.glob("removed-*.dot"))) + len(
        list(target.scratch.glob("removed-*.gone"))
    )
    path = target.scratch / f"removed-{n:03d}.dot"
    path.write_text(_GRAPH)
    ticket = target.enqueue(TITLE, path)
    if target.pick % 2 == 0:
        path.rename(path.with_suffix(".gone"))  # kept aside for the report, gone for workers
        how = "deleted"
    else:
        path.write_text("digraph removed { start -> }\n")
        how = "made invalid"
    return Injection(
        target=f"pipeline of ticket {ticket.id}",
        detail={"graph": str(path), "how": how, "ticket": ticket.id},
    )


#: The ticket never gets a run directory: nothing for the doctor to find.
FAULT = Fault(remove_pipeline, may_cause=frozenset())
