"""The workload: pipelines built from a seed, written as DOT files of tool nodes.

Five kinds, each with what the checkers expect of it:

=================  ===========================================================================
``success``        a few quick stages; ends ``done``
``transient``      a fetch that fails transiently (exit 75, "Connection refused") a seeded
                   number of times, then succeeds; ends ``done`` and never trips the breaker
``deterministic``  a fix loop whose check fails the same way every lap while the text varies
                   (numbers, paths, durations); the breaker must stop it at its limit
``long``           one stage that runs for seconds: long enough to be killed or frozen
``fanout``         a ``component`` fan-out to concurrent branches joined by a fan-in
=================  ===========================================================================

Everything random comes from the ``random.Random`` passed in, so one seed gives the same
pipelines, byte for byte; the arrivals come from a generator of their own
(:meth:`Workload.arrivals`), so their sequence does not depend on when the queue has room.

>>> import random, tempfile
>>> w = build_workload(random.Random(7), Path(tempfile.mkdtemp()))
>>> sorted({p.kind for p in w.pipelines}) == sorted(KINDS)
True
>>> w.draw(random.Random(1)).name == w.draw(random.Random(1)).name
True
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rundoctor.paths import make_dirs

__all__ = ["KINDS", "Pipeline", "Workload", "build_workload"]

#: The kinds of pipeline, and how often each arrives.
KINDS: dict[str, float] = {
    "success": 0.25,
    "transient": 0.2,
    "deterministic": 0.15,
    "long": 0.25,
    "fanout": 0.15,
}


@dataclass(frozen=True, slots=True)
class Pipeline:
    """One pipeline of the workload: its DOT file and the outcome it should reach unhurt."""

    name: str
    kind: str
    path: Path
    expect: str  # done | failed
    breaker_limit: int | None = None


@dataclass(frozen=True, slots=True)
class Workload:
    """The pipelines of a campaign; tickets arrive by drawing from them."""

    pipelines: tuple[Pipeline, ...]

    def draw(self, rng: random.Random) -> Pipeline:
        """The next arrival: a kind by weight, then one pipeline of that kind."""
        kinds = sorted({p.kind for p in self.pipelines})
        kind = rng.choices(kinds, weights=[KINDS[k] for k in kinds])[0]
        return rng.choice([p for p in self.pipelines if p.kind == kind])

    def arrivals(self, rng: random.Random) -> Iterator[Pipeline]:
        """The campaign's arrivals in order, without end: each a :meth:`draw` from ``rng``
        alone, so the n-th ticket is the same pipeline in every replay of a seed, whenever
        the queue has room for it.

        >>> import tempfile
        >>> w = build_workload(random.Random(7), Path(tempfile.mkdtemp()))
        >>> a, b = w.arrivals(random.Random(2)), w.arrivals(random.Random(2))
        >>> [next(a).name for _ in range(5)] == [next(b).name for _ in range(5)]
        True
        """
        while True:
            yield self.draw(rng)

    def by_name(self) -> dict[str, Pipeline]:
        """Pipelines by name (a ticket's title is its pipeline's name)."""
        return {p.name: p for p in self.pipelines}


def _q(text: str) -> str:
    """A DOT double-quoted string (the commands hold no backslashes)."""
    return json.dumps(text)


def _graph(name: str, goal: str, body: list[str], attrs: str = "") -> str:
    extra = f", {attrs}" if attrs else ""
    lines = [
        f"// chaos workload: {goal}",
        f"digraph {name} {{",
        f"  graph [goal={_q(goal)}{extra}]",
        "  node [shape=parallelogram]",
        "  start [shape=Mdiamond]",
        "  exit [shape=Msquare]",
        *(f"  {line}" for line in body),
        "}",
        "",
    ]
    return "\n".join(lines)


def _success(name: str, rng: random.Random) -> tuple[str, str, int | None]:
    steps = [f"step{i}" for i in range(1, rng.randint(2, 3) + 1)]
    body = []
    for s in steps:
        cmd = f"sleep 0.{rng.randint(1, 4)}; echo {s} built {rng.randint(2, 90)} files"
        body.append(f"{s} [tool_command={_q(cmd)}]")
    body.append(" -> ".join(["start", *steps, "exit"]))
    return _graph(name, "a few quick stages", body), "done", None


def _transient(name: str, rng: random.Random) -> tuple[str, str, int | None]:
    fails = rng.randint(1, 2)
    fetch = (
        "n=$(cat .fetch 2>/dev/null || echo 0); n=$((n+1)); echo $n > .fetch; "
        f'if [ $n -le {fails} ]; then echo "curl: (7) Failed to connect to '
        'mirror-$RANDOM.example port 443: Connection refused (try $n)" >&2; exit 75; fi; '
        "echo fetched"
    )
    body = [
        f"fetch [max_retries={fails + 2}, tool_command={_q(fetch)}]",
        f"build [tool_command={_q('sleep 0.2; echo built')}]",
        "start -> fetch -> build -> exit",
    ]
    return _graph(name, f"a flaky download ({fails} transient failures)", body), "done", None


def _deterministic(name: str, rng: random.Random) -> tuple[str, str, int | None]:
    limit = rng.randint(2, 3)  # the doctor judges loops by its own limit, 3 (see docs/chaos.md)
    code = rng.randint(100, 999)
    verify = (
        "n=$(cat .lap); "
        f'echo "error[E{code}]: cannot find value x$RANDOM in this scope --> '
        "/tmp/build-$RANDOM/src/mod_$n.rs:$((RANDOM % 300)):5 "
        '(check took $((RANDOM % 900 + 100))ms, attempt $n)" >&2; exit 101'
    )
    impl = "n=$(cat .lap 2>/dev/null || echo 0); echo $((n+1)) > .lap; sleep 0.1; echo patched"
    body = [
        f"impl [tool_command={_q(impl)}]",
        f"verify [max_retries=0, tool_command={_q(verify)}]",
        "check [shape=diamond]",
        "start -> impl -> verify -> check",
        'check -> exit [condition="outcome=success"]',
        'check -> impl [condition="outcome=fail", label="retry"]',
    ]
    goal = "a fix loop that never converges"
    return _graph(name, goal, body, f"breaker_limit={limit}"), "failed", limit


def _long(name: str, rng: random.Random) -> tuple[str, str, int | None]:
    seconds = rng.randint(3, 8)
    work = f"for i in $(seq 1 {seconds}); do echo tick $i; sleep 1; done; echo finished"
    body = [f"work [tool_command={_q(work)}]", "start -> work -> exit"]
    return _graph(name, f"one stage of {seconds}s", body), "done", None


def _fanout(name: str, rng: random.Random) -> tuple[str, str, int | None]:
    branches = [f"b{i}" for i in range(1, rng.randint(2, 3) + 1)]
    body = [
        f"prep [tool_command={_q('echo prepared > prep.txt; echo prepared')}]",
        "fan [shape=component]",
        "join [shape=tripleoctagon]",
        f"report [tool_command={_q('echo joined')}]",
        "start -> prep -> fan",
        "join -> report -> exit",
    ]
    for b in branches:
        cmd = f"sleep {rng.randint(1, 3)}.{rng.randint(0, 9)}; echo {b} ok > {b}.txt; cat {b}.txt"
        body += [f"{b} [tool_command={_q(cmd)}]", f"fan -> {b} -> join"]
    return _graph(name, f"a fan-out to {len(branches)} branches", body), "done", None


_BUILDERS = {
    "success": _success,
    "transient": _transient,
    "deterministic": _deterministic,
    "long": _long,
    "fanout": _fanout,
}


def build_workload(rng: random.Random, directory: Path, *, per_kind: int = 2) -> Workload:
    """Write ``per_kind`` pipelines of every kind into ``directory``; the same seed writes
    the same files.

    >>> import tempfile
    >>> a, b = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
    >>> wa = build_workload(random.Random(3), a)
    >>> wb = build_workload(random.Random(3), b)
    >>> [p.path.read_text() for p in wa.pipelines] == [p.path.read_text() for p in wb.pipelines]
    True
    """
    make_dirs(directory)
    pipelines: list[Pipeline] = []
    for kind, build in _BUILDERS.items():
        for i in range(1, per_kind + 1):
            name = f"{kind}_{i:02d}"
            source, expect, limit = build(name, rng)
            path = directory / f"{name}.dot"
            path.write_text(source, encoding="utf-8")
            pipelines.append(Pipeline(name, kind, path.resolve(), expect, limit))
    return Workload(tuple(pipelines))
