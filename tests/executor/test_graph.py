"""The DOT subset: what parses into which graph, and every rejection with its line and reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from executor import GraphError, UsageError, load_graph, parse_graph
from fixtures.fake_agent import PIPELINES

HEAD = "digraph g {\n  start [shape=Mdiamond]\n  exit [shape=Msquare]\n"


def tool(name: str, command: str = "true", extra: str = "") -> str:
    return f'  {name} [shape=parallelogram, tool_command="{command}"{extra}]\n'


def test_a_linear_tool_pipeline_parses_into_kinds_edges_and_attributes() -> None:
    g = parse_graph(
        HEAD + tool("a", "echo a", ', timeout="90s", max_retries=2') + "start -> a -> exit }"
    )
    a = g.nodes["a"]
    assert (g.name, g.start, a.kind, a.tool_command, a.timeout_s, a.max_retries) == (
        "g",
        "start",
        "tool",
        "echo a",
        90.0,
        2,
    )
    assert [(e.src, e.dst, e.index) for e in g.edges] == [("start", "a", 0), ("a", "exit", 1)]


def test_defaults_are_scoped_by_subgraphs_and_later_statements_merge_attributes() -> None:
    g = parse_graph(
        HEAD
        + '  node [shape=parallelogram, tool_command="outer"]\n'
        + "  subgraph cluster_x { node [timeout=5m]; a }\n"
        + "  b\n"
        + '  b [tool_command="inner"]\n'
        + "  start -> a -> b -> exit\n}"
    )
    assert (g.nodes["a"].timeout_s, g.nodes["a"].tool_command) == (300.0, "outer")
    assert (g.nodes["b"].timeout_s, g.nodes["b"].tool_command) == (None, "inner")


def test_comments_escapes_graph_attributes_and_edge_chains_with_attributes() -> None:
    g = parse_graph(
        "/* block\n comment */ digraph g { // line\n# hash line\n"
        '  goal = "say \\"hi\\"\\n"\n  graph [breaker_limit=2]\n'
        "  start [shape=Mdiamond]; exit [shape=Msquare]\n"
        "  a [shape=parallelogram, tool_command=\"printf '%s\\\\n' x\"]\n"
        '  start -> a -> exit [weight=3, label="go"]\n}'
    )
    assert g.attrs == {"goal": 'say "hi"\n', "breaker_limit": "2"}
    assert g.nodes["a"].tool_command == "printf '%s\\n' x"
    assert [(e.weight, e.label) for e in g.edges] == [(3, "go"), (3, "go")]


def test_conditions_match_outcomes_with_aliases_negation_and_conjunction() -> None:
    g = parse_graph(
        HEAD + tool("a") + "  c [shape=diamond]\n  start -> a -> c\n"
        '  c -> exit [condition="outcome=ok && failure_class!=transient_infra"]\n'
        '  c -> a [condition="outcome=fail"]\n}'
    )
    cond = g.outgoing("c")[0].condition
    assert cond is not None
    assert cond.matches({"outcome": "success", "failure_class": ""})
    assert not cond.matches({"outcome": "success", "failure_class": "transient_infra"})
    assert not cond.matches({"outcome": "fail"})


def test_a_fan_out_knows_its_fan_in_and_its_branch_nodes() -> None:
    g = load_graph(PIPELINES / "fanout.dot")
    assert g.joins == {"fan": "join"}
    assert sorted(g.branch_of) == ["docs", "lint", "unit", "unit_report"]


@pytest.mark.parametrize("name", sorted(p.stem for p in PIPELINES.glob("*.dot")))
def test_every_example_pipeline_is_valid(name: str) -> None:
    assert load_graph(PIPELINES / f"{name}.dot").name == name


def test_bare_values_may_hold_hyphens_as_kilroys_own_graphs_write_model_names() -> None:
    # The agent node of the real engine's example graph (shared/kilroy/graphs/agent_one.dot).
    g = parse_graph(
        HEAD + "  impl [shape=box, llm_provider=openai, llm_model=gpt-5.2, max_retries=0, "
        'goal_gate=true, prompt="Implement it."]\n'
        '  start->impl\n  impl -> exit [condition="outcome=success"]\n'
        '  impl->exit [condition="outcome!=success"]\n}'
    )
    assert g.nodes["impl"].attrs["llm_model"] == "gpt-5.2"
    assert [(e.src, e.dst) for e in g.edges] == [
        ("start", "impl"),
        ("impl", "exit"),
        ("impl", "exit"),
    ]
    with pytest.raises(GraphError, match="node id 'a-b' must match"):
        parse_graph(HEAD + "  a-b [shape=box]\n}")


def test_an_unreadable_graph_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read pipeline graph"):
        load_graph(tmp_path / "missing.dot")


BAD = [
    ("graph g { }", 1, "expected 'digraph'"),
    ("digraph g { a -- b }", 1, "undirected edge"),
    ("digraph g { a -> { b } }", 1, "subgraph as an edge endpoint"),
    ("digraph g {\n a:p -> b }", 2, "node ports"),
    ("digraph g {\n\n a [label=<b>] }", 3, "HTML strings"),
    ('digraph g {\n a [label="open }', 2, "unterminated string"),
    ("digraph g { /* never closed }", 1, "unterminated /* comment"),
    ("digraph g { a [x=1 }", 1, "expected an attribute name or ']'"),
    ("digraph g { } digraph h { }", 1, "only one digraph"),
    ("digraph g { 9a [shape=box] }", 1, "node id '9a' must match"),
    (HEAD + "  s [shape=hexagon]\n}", 4, "shape 'hexagon' is not supported"),
    (HEAD + "  s [type=wait.human]\n}", 4, "type 'wait.human' is not supported"),
    (HEAD + "  a [shape=parallelogram]\n  start -> a -> exit }", 4, "has no tool_command"),
    (HEAD + "  a [shape=box]\n  start -> a -> exit }", 4, "has no prompt"),
    (HEAD + tool("a", extra=", timeout=soon") + "start -> a -> exit }", 4, "not a duration"),
    (HEAD + tool("a", extra=", max_retries=-1") + "start -> a -> exit }", 4, "max_retries"),
    (HEAD + "  graph [breaker_limit=0]\n  start -> exit }", 4, "breaker_limit"),
    (HEAD + "  retry_target=nowhere\n  start -> exit }", 4, "graph retry_target 'nowhere'"),
    (HEAD + "  start -> exti }", 4, "edge endpoint 'exti' is not declared (did you mean 'exit'?)"),
    (HEAD + tool("a") + "  start -> a -> exit [weight=heavy] }", 5, "weight 'heavy'"),
    (HEAD + '  start -> exit [condition="outcom=success"] }', 4, "did you mean 'outcome'"),
    (HEAD + '  start -> exit [condition="outcome=a || outcome=b"] }', 4, "'&&' only"),
    (HEAD + '  start -> exit [condition="outcome="] }', 4, "is not key=value"),
    ("digraph g {\n exit [shape=Msquare]\n}", 3, "exactly one start node (found: none)"),
    ("digraph g {\n start [shape=Mdiamond]\n s2 [shape=circle]\n}", 3, "start, s2"),
    ("digraph g {\n start [shape=Mdiamond]\n}", 3, "no exit node"),
    (HEAD + tool("a") + "  start -> a -> exit\n  a -> start }", 6, "enters the start node"),
    (HEAD + tool("a") + "  start -> exit\n  exit -> a -> exit }", 6, "leaves exit node"),
    (HEAD + tool("a") + "  start -> exit }", 4, "'a' has no outgoing edge"),
    (HEAD + tool("a", extra=", retry_target=ghost") + "start -> a -> exit }", 4, "'ghost'"),
    (HEAD + tool("a") + "  start -> exit\n  a -> exit }", 4, "'a' is unreachable"),
    (HEAD + tool("a") + tool("b") + "  start -> exit\n start -> a -> b -> a }", 4, "never reach"),
    (
        HEAD + "  f [shape=component]\n" + tool("a") + "  j [shape=tripleoctagon]\n"
        "  start -> f -> a -> j -> exit }",
        4,
        "at least two branches",
    ),
    (
        HEAD + "  f [shape=component]\n" + tool("a") + tool("b") + "  j [shape=tripleoctagon]\n"
        '  start -> f\n  f -> a [condition="outcome=success"]\n  f -> b\n  a -> j\n  b -> j\n'
        "  j -> exit }",
        9,
        "has a condition",
    ),
    (
        HEAD + "  f [shape=component]\n" + tool("a") + tool("b") + "  j [shape=tripleoctagon]\n"
        "  start -> f\n  f -> a -> j -> exit\n  f -> b -> exit }",
        10,
        "reaches exit",
    ),
    (
        HEAD + "  f [shape=component]\n" + tool("a") + tool("b") + "  j [shape=tripleoctagon]\n"
        "  k [shape=tripleoctagon]\n  start -> f\n  f -> a -> j -> exit\n  f -> b -> k -> exit }",
        11,
        "converge on one tripleoctagon",
    ),
    (
        HEAD + "  f [shape=component]\n" + tool("a") + tool("b") + "  j [shape=tripleoctagon]\n"
        "  start -> f\n  f -> a -> j -> exit\n  f -> b -> j\n  start -> b }",
        11,
        "from outside",
    ),
    (
        HEAD
        + "  f [shape=component]\n  g2 [shape=component]\n"
        + tool("a")
        + tool("b")
        + tool("c")
        + "  j [shape=tripleoctagon]\n  k [shape=tripleoctagon]\n"
        "  start -> f\n  f -> g2\n  f -> c -> j\n  g2 -> a -> k\n  g2 -> b -> k\n  k -> j\n"
        "  j -> exit }",
        12,
        "nested fan-out",
    ),
]


@pytest.mark.parametrize(("source", "line", "reason"), BAD, ids=[b[2] for b in BAD])
def test_an_invalid_graph_is_rejected_with_its_line_and_reason(
    source: str, line: int, reason: str
) -> None:
    with pytest.raises(GraphError) as info:
        parse_graph(source)
    assert reason in info.value.reason
    assert info.value.line == line, info.value.reason


def test_subgraphs_nested_past_the_limit_are_a_graph_error_not_a_recursion_error() -> None:
    # Before: 5,000 nested `{ }` ended `doctor enqueue` and `doctor run` with "internal
    # error (a bug in rundoctor): RecursionError", exit 70.
    def nested(depth: int) -> str:
        body = "{" * depth + "}" * depth
        return f"digraph g {{ start [shape=Mdiamond] exit [shape=Msquare] {body} start -> exit }}"

    assert [e.dst for e in parse_graph(nested(100)).edges] == ["exit"]
    for depth in (101, 5_000):
        with pytest.raises(GraphError, match=r"^line 1: subgraphs nested more than 100 deep$"):
            parse_graph(nested(depth))


def test_a_long_chain_is_validated_reading_each_nodes_edges_a_bounded_number_of_times() -> None:
    # Before: "can it reach an exit" was a fixed point with one pass over every node per node
    # of a chain declared in order: 5,000 nodes read their edges 12.5 million times (87 s of
    # `doctor enqueue` before anything was queued). Counted, not timed: calls of outgoing().
    import cProfile
    import pstats

    n = 2_000
    chain = " -> ".join(f"n{i}" for i in range(n))
    source = (
        "digraph g { node [shape=parallelogram, tool_command=true]\n"
        "start [shape=Mdiamond] exit [shape=Msquare]\n"
        + "\n".join(f"n{i}" for i in range(n))
        + f"\nstart -> {chain} -> exit }}"
    )
    profile = cProfile.Profile()
    graph = profile.runcall(parse_graph, source)
    assert len(graph.nodes) == n + 2
    calls = {
        name: count
        for (_file, _line, name), (_cc, count, *_rest) in pstats.Stats(profile).stats.items()  # type: ignore[attr-defined]
    }
    assert calls["outgoing"] < 10 * n, calls["outgoing"]


def test_a_graph_file_that_starts_with_a_byte_order_mark_runs(tmp_path: Path) -> None:
    # Before: "pipeline graph 'p.dot', line 1: unexpected character '\ufeff'" from `doctor run`
    # and `enqueue` of a file a Windows editor saved, where the doctor reads such artifacts.
    from tests.executor.test_cli import _base_env, _doctor

    graph = tmp_path / "p.dot"
    graph.write_bytes(b"\xef\xbb\xbf" + (PIPELINES / "tool_simple.dot").read_bytes())
    assert load_graph(graph).nodes.keys() == load_graph(PIPELINES / "tool_simple.dot").nodes.keys()
    env = _base_env(tmp_path)
    done = _doctor(env, "run", graph, "--root", tmp_path / "runs", "--json")
    assert done.returncode == 0, done.stderr


def test_a_long_quoted_value_is_read_in_memory_proportional_to_it(tmp_path: Path) -> None:
    # Before: the string token was "(?:[^"\\]|\\.)*", one backtracking frame per character:
    # a 10 MB label took 7 s and 2.2 GB (50 MB: 34 s and 11 GB) before a word was parsed.
    graph = tmp_path / "long.dot"
    label = "x" * 10_000_000
    graph.write_text(
        "digraph G { start [shape=Mdiamond]; exit [shape=Msquare]; "
        f'start -> exit [label="{label}"]; '
        'note [label="a \\"quoted\\" \\\\ and \\n"]; start -> note -> exit }'
    )
    # The peak of this process's own memory (VmHWM): ru_maxrss keeps, across exec, the peak of
    # the process it was forked from, so under pytest-xdist it read a worker's 454 MiB.
    probe = (
        "import sys\n"
        "from executor import parse_graph\n"
        "g = parse_graph(open(sys.argv[1], encoding='utf-8').read())\n"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
        "print(len(g.edges[0].label), hwm.split()[1])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(graph)], capture_output=True, text=True, timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    length, peak_kib = (int(x) for x in done.stdout.split())
    assert length == len(label)
    assert peak_kib < 400 * 1024, f"peak {peak_kib // 1024} MiB"
    g = parse_graph(graph.read_text())  # load_graph refuses a file over 4 MiB unread
    assert g.nodes["note"].attrs["label"] == 'a "quoted" \\ and \n'
