"""Pipeline graphs: the Attractor DOT subset, parsed and validated into a typed :class:`Graph`.

Accepted syntax (``docs/pipelines.md`` has the full reference): one ``digraph NAME { … }``;
``graph [k=v]`` or ``k=v`` statements for graph attributes; ``node [...]`` / ``edge [...]``
defaults, scoped by ``subgraph [NAME] { … }`` blocks; node statements ``id [k=v, …]``; edge
chains ``a -> b -> c [k=v]``; ``//``, ``/* */`` and ``#`` comments; double-quoted strings with
``\\" \\n \\t \\\\`` escapes. Everything else (undirected edges, ports, HTML labels, subgraphs
as edge endpoints) is rejected, as is every graph that could not run to an end: each problem
raises :class:`~executor.GraphError` with the 1-based line and the reason, before anything runs.
The semantic checks (one start, reachable nodes, every node able to reach an exit, fan-outs
that converge on one fan-in, …) follow the parser at the end of this module.

>>> g = parse_graph('digraph p { start [shape=Mdiamond]; hi [shape=parallelogram, '
...                 'tool_command="echo hi"]; exit [shape=Msquare]; start -> hi -> exit }')
>>> (g.name, g.start, g.nodes["hi"].kind, [e.dst for e in g.outgoing("hi")])
('p', 'start', 'tool', ['exit'])
"""

from __future__ import annotations

import errno
import itertools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from executor._errors import GraphError, UsageError
from rundoctor.durations import parse_duration
from rundoctor.errors import close_matches, did_you_mean
from rundoctor.paths import read_error, read_regular_text
from rundoctor.terminal import printable

__all__ = [
    "Condition",
    "Edge",
    "Graph",
    "Node",
    "load_graph",
    "parse_graph",
]

#: The largest pipeline file read (4 MiB): far past any real pipeline, and the most of a run's
#: ``graph.dot`` the doctor reads (``doctor._documents``), so every graph run can be read back.
MAX_GRAPH_BYTES = 4 * 1024 * 1024
#: The longest ``tool_command``, in UTF-8 bytes: the shell gets it as one argument, and Linux
#: passes no argument of 128 KiB or more (``MAX_ARG_STRLEN``, its terminating NUL included).
MAX_COMMAND_BYTES = 128 * 1024 - 1

#: Node kinds and the shapes (or ``type=`` values) that make them.
SHAPES = {
    "Mdiamond": "start",
    "circle": "start",
    "Msquare": "exit",
    "doublecircle": "exit",
    "parallelogram": "tool",
    "box": "agent",
    "diamond": "conditional",
    "component": "fanout",
    "tripleoctagon": "fanin",
}
TYPES = {
    "start": "start",
    "exit": "exit",
    "tool": "tool",
    "agent": "agent",
    "codergen": "agent",
    "conditional": "conditional",
    "parallel": "fanout",
    "parallel.fan_in": "fanin",
}
#: Keys a condition clause may test.
CONDITION_KEYS = ("outcome", "preferred_label", "failure_class")
_ALIASES = {"ok": "success", "failure": "fail", "error": "fail", "skip": "skipped"}

#: A quoted string is ``"[^"\\]*(?:\\.[^"\\]*)*"``: runs between escapes are one repeat,
#: not one backtracking frame per character (``(?:[^"\\]|\\.)*`` took 11 GB for a 50 MB label).
_TOKEN = re.compile(
    r"""(?P<nl>\n)|(?P<ws>[ \t\r\f\v]+)|(?P<comment>//[^\n]*|\#[^\n]*|/\*.*?\*/)
    |(?P<string>"[^"\\]*(?:\\.[^"\\]*)*")|(?P<arrow>->)|(?P<undirected>--)
    |(?P<word>(?:-(?=[0-9.]))?[A-Za-z0-9_.]+(?:-[A-Za-z0-9_.]+)*)|(?P<punct>[{}\[\]=;,])""",
    re.X | re.S,
)
_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KEYWORDS = {"digraph", "graph", "node", "edge", "subgraph", "strict"}


def canonical_outcome(status: str) -> str:
    """Lower-case, trimmed, Kilroy's aliases resolved (``ok`` is ``success``)."""
    s = status.strip().lower()
    return _ALIASES.get(s, s)


@dataclass(frozen=True, slots=True)
class Condition:
    """``clause && clause …``; a clause is ``key=value``, ``key!=value`` or a bare ``key``.

    >>> c = Condition.parse("outcome=fail && failure_class!=transient_infra", line=1)
    >>> c.matches({"outcome": "fail", "failure_class": "deterministic"})
    True
    """

    text: str
    clauses: tuple[tuple[str, str, str], ...]  # (key, op, value), op in "=", "!=", "truthy"

    @classmethod
    def parse(cls, text: str, *, line: int) -> Condition:
        clauses = []
        for raw in text.split("&&"):
            part = raw.strip()
            if not part or "||" in part:
                raise GraphError(line, f"condition {text!r}: clauses are joined by '&&' only")
            m = re.fullmatch(r"([A-Za-z_][\w.]*)\s*(!=|=)?\s*(.*)", part)
            if m is None or (m.group(2) and not m.group(3)):
                raise GraphError(line, f"condition {text!r}: {part!r} is not key=value")
            key, op, value = m.group(1), m.group(2) or "truthy", m.group(3).strip()
            if key not in CONDITION_KEYS:
                hint = did_you_mean(close_matches(key, CONDITION_KEYS, n=1))
                raise GraphError(
                    line,
                    f"condition {text!r} tests unknown key {key!r} "
                    f"(expected one of {', '.join(CONDITION_KEYS)}){hint}",
                )
            if key == "outcome":
                value = canonical_outcome(value)
            clauses.append((key, op, value))
        return cls(text, tuple(clauses))

    def matches(self, values: Mapping[str, str]) -> bool:
        for key, op, value in self.clauses:
            have = values.get(key, "")
            have = canonical_outcome(have) if key == "outcome" else have
            if op == "truthy":
                ok = have.strip().lower() not in ("", "false", "0", "no")
            else:
                ok = (have == value) == (op == "=")
            if not ok:
                return False
        return True


@dataclass(frozen=True, slots=True)
class Node:
    """A node: its kind (``start exit tool agent conditional fanout fanin``) and attributes."""

    id: str
    kind: str
    line: int
    attrs: Mapping[str, str]
    timeout_s: float | None = None
    max_retries: int | None = None

    @property
    def label(self) -> str:
        return self.attrs.get("label", self.id)

    @property
    def tool_command(self) -> str:
        return self.attrs.get("tool_command", "")

    @property
    def prompt(self) -> str:
        return self.attrs.get("prompt") or self.attrs.get("label", "")

    @property
    def retry_target(self) -> str:
        return self.attrs.get("retry_target", "")

    @property
    def auto_status(self) -> bool:
        """Kilroy's ``auto_status``: may an agent that wrote no status file succeed on its exit
        status 0 (``true``)? By default it may not: it never said it did the work.

        >>> [Node("n", "agent", 1, attrs).auto_status for attrs in ({"auto_status": "true"}, {})]
        [True, False]
        """
        return self.attrs.get("auto_status", "").strip().lower() in ("true", "1", "yes")


@dataclass(frozen=True, slots=True)
class Edge:
    src: str
    dst: str
    line: int
    index: int  # declaration order, 0-based
    label: str = ""
    condition: Condition | None = None
    weight: int = 0


@dataclass(frozen=True)
class Graph:
    """A validated pipeline. ``joins`` maps each fan-out to its fan-in, ``branch_of`` each
    node inside a branch to its fan-out."""

    name: str
    attrs: Mapping[str, str]
    nodes: Mapping[str, Node]
    edges: tuple[Edge, ...]
    start: str
    source: str
    joins: Mapping[str, str] = field(default_factory=dict)
    branch_of: Mapping[str, str] = field(default_factory=dict)

    @cached_property
    def _out(self) -> dict[str, tuple[Edge, ...]]:
        out: dict[str, list[Edge]] = {}
        for e in self.edges:
            out.setdefault(e.src, []).append(e)
        return {k: tuple(v) for k, v in out.items()}

    def outgoing(self, node_id: str) -> tuple[Edge, ...]:
        """The node's edges in declaration order."""
        return self._out.get(node_id, ())

    def int_attr(self, key: str, default: int) -> int:
        value = self.attrs.get(key)
        return int(value) if value is not None else default


def load_graph(path: Path) -> Graph:
    """Read and validate the DOT file at ``path`` (:class:`UsageError` if unreadable).

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "p.dot"
    >>> _ = path.write_text("digraph p { start [shape=Mdiamond]; end; start -> end }")
    >>> g = load_graph(path); (g.name, g.nodes["end"].kind)
    ('p', 'exit')
    """
    try:  # a run records the graph's path in its manifest, a queue in its ticket: as text
        os.path.abspath(path).encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(
            f"pipeline graph '{printable(os.path.abspath(path))}': its path is not UTF-8 text "
            "(a byte such as \\xff in a name is no character), which a run records in its "
            "manifest and a queue in its ticket; rename it, or give a path whose names are UTF-8"
        ) from None
    try:
        source = read_regular_text(Path(path), max_bytes=MAX_GRAPH_BYTES)
    except (OSError, UnicodeDecodeError) as exc:
        if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
            why = (
                f"it is larger than {MAX_GRAPH_BYTES // (1024 * 1024)} MiB, the most a pipeline "
                "graph may be; keep long scripts and prompts in files the nodes name"
            )
        else:
            why = read_error(Path(path), exc)
        raise UsageError(f"cannot read pipeline graph {str(path)!r}: {why}") from exc
    try:
        return parse_graph(source)
    except GraphError as exc:  # name the file: a command may be given several
        raise GraphError(exc.line, exc.reason, path=str(path)) from None


#: How deep subgraphs (``subgraph { … }`` or bare ``{ … }``) may nest: far past any real
#: pipeline, and far short of the interpreter's recursion limit.
_MAX_NESTING = 100


@dataclass(slots=True)
class _Tok:
    kind: str
    text: str
    line: int


def _tokens(source: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos, line = 0, 1
    while pos < len(source):
        m = _TOKEN.match(source, pos)
        if m is None:
            ch = source[pos]
            if ch == '"':
                raise GraphError(line, "unterminated string")
            if source.startswith("/*", pos):
                raise GraphError(line, "unterminated /* comment")
            if ch == "<":
                raise GraphError(line, "HTML strings (<…>) are not supported; use a quoted string")
            if ch == ":":
                raise GraphError(line, "node ports (a:port) are not supported")
            raise GraphError(line, f"unexpected character {ch!r}")
        kind, text = m.lastgroup or "", m.group()
        if kind == "string":
            out.append(_Tok("id", _unescape(text[1:-1]), line))
        elif kind == "word":
            low = text.lower()
            out.append(_Tok("kw", low, line) if low in _KEYWORDS else _Tok("id", text, line))
        elif kind in ("arrow", "undirected", "punct"):
            out.append(_Tok(text, text, line))
        line += text.count("\n")
        pos = m.end()
    out.append(_Tok("eof", "end of file", line))
    return out


def _unescape(body: str) -> str:
    table = {'"': '"', "n": "\n", "t": "\t", "\\": "\\"}
    return re.sub(r"\\(.)", lambda m: table.get(m.group(1), m.group(0)), body, flags=re.S)


class _Parser:
    def __init__(self, source: str) -> None:
        # A UTF-8 byte order mark (Windows editors write one) is no part of the text, as
        # for Graphviz and as the doctor reads artifacts; it was "unexpected character".
        self.toks = _tokens(source.removeprefix("\ufeff"))
        self.i = 0
        self.graph_attrs: dict[str, str] = {}
        self.graph_lines: dict[str, int] = {}
        self.nodes: dict[str, tuple[int, dict[str, str]]] = {}
        self.edges: list[tuple[str, str, int, dict[str, str]]] = []
        self.mentions: dict[str, int] = {}  # edge endpoint -> first line

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self, kind: str | None = None, what: str = "") -> _Tok:
        """The next token; with ``kind``, it must be of that kind (``what`` names it)."""
        tok = self.toks[self.i]
        if kind is not None and tok.kind != kind:
            raise GraphError(tok.line, f"expected {what}, found {tok.text!r}")
        self.i += 1
        return tok

    def parse(self) -> tuple[str, int]:
        if self.peek().text == "strict":
            self.take()
        head = self.take("kw", "'digraph'")
        if head.text != "digraph":
            raise GraphError(head.line, f"expected 'digraph', found {head.text!r}")
        name = self.take().text if self.peek().kind == "id" else ""
        self.take("{", "'{'")
        self.stmts({}, {}, 0)
        end = self.take("}", "'}'")
        if self.peek().kind != "eof":
            raise GraphError(self.peek().line, "only one digraph per file")
        return name, end.line

    def stmts(
        self, node_defaults: dict[str, str], edge_defaults: dict[str, str], depth: int
    ) -> None:
        nd, ed = dict(node_defaults), dict(edge_defaults)
        while self.peek().kind not in ("}", "eof"):
            tok = self.take()
            if tok.kind == ";":
                continue
            if tok.kind == "kw" and tok.text in ("graph", "node", "edge"):
                attrs = self.attr_lists()
                {"graph": self.graph_attrs, "node": nd, "edge": ed}[tok.text].update(attrs)
                if tok.text == "graph":
                    self.graph_lines.update(dict.fromkeys(attrs, tok.line))
            elif (tok.kind == "kw" and tok.text == "subgraph") or tok.kind == "{":
                if tok.kind == "kw":
                    if self.peek().kind == "id":
                        self.take()
                    self.take("{", "'{'")
                if depth == _MAX_NESTING:  # deeper, the parser's recursion would overflow
                    raise GraphError(tok.line, f"subgraphs nested more than {_MAX_NESTING} deep")
                self.stmts(nd, ed, depth + 1)
                self.take("}", "'}'")
            elif tok.kind == "id":
                self.node_or_edge(tok, nd, ed)
            else:
                raise GraphError(tok.line, f"unexpected {tok.text!r}")

    def node_or_edge(self, tok: _Tok, nd: dict[str, str], ed: dict[str, str]) -> None:
        if self.peek().kind == "=":
            self.take()
            self.graph_attrs[tok.text] = self.take("id", "a value").text
            self.graph_lines[tok.text] = tok.line
            return
        chain = [tok]
        while self.peek().kind in ("->", "--"):
            arrow = self.take()
            if arrow.kind == "--":
                raise GraphError(arrow.line, "undirected edge '--'; use '->' in a digraph")
            if self.peek().kind in ("{", "kw"):
                raise GraphError(arrow.line, "a subgraph as an edge endpoint is not supported")
            chain.append(self.take("id", "a node id"))
        for t in chain:
            if not _ID.fullmatch(t.text):
                raise GraphError(t.line, f"node id {t.text!r} must match [A-Za-z_][A-Za-z0-9_]*")
        attrs = self.attr_lists()
        if len(chain) == 1:
            line, old = self.nodes.get(tok.text, (tok.line, dict(nd)))
            self.nodes[tok.text] = (line, {**old, **attrs})
            return
        for a, b in itertools.pairwise(chain):
            self.mentions.setdefault(a.text, a.line)
            self.mentions.setdefault(b.text, b.line)
            self.edges.append((a.text, b.text, b.line, {**ed, **attrs}))

    def attr_lists(self) -> dict[str, str]:
        attrs: dict[str, str] = {}
        while self.peek().kind == "[":
            self.take()
            while self.peek().kind != "]":
                key = self.take("id", "an attribute name or ']'")
                self.take("=", "'='")
                attrs[key.text] = self.take("id", "a value").text
                if self.peek().kind in (",", ";"):
                    self.take()
            self.take("]", "']'")
        return attrs


def graph_edges(source: str) -> list[tuple[str, str]]:
    """The edges of DOT ``source`` as written, ``(from, to)`` in file order, without checking
    that the graph is one the executor runs (any shape, nesting or attribute): for readers of
    another engine's graphs, as the doctor reads a Kilroy run's ``graph.dot``.
    :class:`GraphError` on what the syntax does not accept.

    >>> graph_edges("digraph { par [shape=component]; par -> a; par -> b -> j [x=1] }")
    [('par', 'a'), ('par', 'b'), ('b', 'j')]
    """
    parser = _Parser(source)
    parser.parse()
    return [(a, b) for a, b, _line, _attrs in parser.edges]


def parse_graph(source: str) -> Graph:
    """Parse and validate DOT ``source``; :class:`GraphError` names the line and the reason.

    >>> parse_graph("digraph { start [shape=Mdiamond]; exit [shape=Msquare]; start -> exti }")
    Traceback (most recent call last):
    ...
    executor._errors.GraphError: line 1: edge endpoint 'exti' is not declared (did you mean 'exit'?)
    """
    nul = source.find("\x00")
    if nul >= 0:  # in a command, a program's argument ends at it; a PostgreSQL queue refuses it
        raise GraphError(
            source.count("\n", 0, nul) + 1,
            "a NUL character (\\x00): no command, prompt or name may hold one; remove it",
        )
    p = _Parser(source)
    name, end_line = p.parse()
    nodes = {nid: _node(nid, line, attrs) for nid, (line, attrs) in p.nodes.items()}
    for nid, line in p.mentions.items():
        if nid not in nodes:
            raise GraphError(line, f"edge endpoint {nid!r} is not declared{_near(nid, nodes)}")
    edges = tuple(_edge(i, *raw) for i, raw in enumerate(p.edges))
    _check_graph_attrs(p.graph_attrs, p.graph_lines, nodes)
    starts = [n for n in nodes.values() if n.kind == "start"]
    if len(starts) != 1:
        where = starts[1].line if starts else end_line
        found = ", ".join(n.id for n in starts) or "none"
        raise GraphError(where, f"a graph needs exactly one start node (found: {found})")
    if not any(n.kind == "exit" for n in nodes.values()):
        raise GraphError(end_line, "no exit node: add one, e.g. exit [shape=Msquare]")
    graph = Graph(name, dict(p.graph_attrs), nodes, edges, starts[0].id, source)
    _check_edges(graph)
    joins, branch_of = _check_fanouts(graph)
    _check_reachability(graph)
    return Graph(name, graph.attrs, nodes, edges, graph.start, source, joins, branch_of)


def _near(name: str, choices: Mapping[str, object]) -> str:
    return did_you_mean(close_matches(name, choices, n=1))


def _int(value: str, *, line: int, what: str, low: int) -> int:
    try:
        n = int(value)
    except ValueError:
        n = low - 1
    if n < low:
        raise GraphError(line, f"{what} = {value!r} must be an integer >= {low}")
    return n


def _node(nid: str, line: int, attrs: dict[str, str]) -> Node:
    if "type" in attrs:
        kind = TYPES.get(attrs["type"])
        if kind is None:
            raise GraphError(
                line,
                f"node {nid!r}: type {attrs['type']!r} is not supported; expected one of "
                + ", ".join(sorted(TYPES)),
            )
    elif "shape" in attrs:
        kind = SHAPES.get(attrs["shape"])
        if kind is None:
            raise GraphError(
                line,
                f"node {nid!r}: shape {attrs['shape']!r} is not supported; expected one "
                "of " + ", ".join(SHAPES),
            )
    else:
        kind = {"start": "start", "exit": "exit", "end": "exit"}.get(nid, "agent")
    timeout = None
    if "timeout" in attrs:
        try:
            timeout = parse_duration(attrs["timeout"])
        except ValueError as exc:
            raise GraphError(line, f"node {nid!r}: {exc}") from None
        if timeout <= 0:
            raise GraphError(line, f"node {nid!r}: timeout must be positive")
    retries = None
    if "max_retries" in attrs:
        retries = _int(attrs["max_retries"], line=line, what=f"node {nid!r}: max_retries", low=0)
    if kind == "tool" and not attrs.get("tool_command", "").strip():
        raise GraphError(line, f"tool node {nid!r} has no tool_command")
    size = len(attrs.get("tool_command", "").encode())
    if kind == "tool" and size > MAX_COMMAND_BYTES:
        raise GraphError(
            line,
            f"tool node {nid!r}: tool_command is {size:,} bytes, over the "
            f"{MAX_COMMAND_BYTES:,} a program's argument may hold on Linux (128 KiB); put the "
            "commands in a script and run that",
        )
    if kind == "agent" and not (attrs.get("prompt") or attrs.get("label", "")).strip():
        raise GraphError(line, f'agent node {nid!r} has no prompt (set prompt="…" or label)')
    return Node(nid, kind, line, dict(attrs), timeout, retries)


def _edge(index: int, src: str, dst: str, line: int, attrs: dict[str, str]) -> Edge:
    cond = attrs.get("condition", "").strip()
    weight = 0
    if "weight" in attrs:
        try:
            weight = int(attrs["weight"])
        except ValueError:
            raise GraphError(
                line, f"edge {src} -> {dst}: weight {attrs['weight']!r} is not an integer"
            ) from None
    condition = Condition.parse(cond, line=line) if cond else None
    return Edge(src, dst, line, index, attrs.get("label", ""), condition, weight)


def _check_graph_attrs(
    attrs: Mapping[str, str], lines: Mapping[str, int], nodes: Mapping[str, Node]
) -> None:
    for key, low in (("default_max_retry", 0), ("breaker_limit", 1), ("max_node_visits", 1)):
        if key in attrs:
            _int(attrs[key], line=lines.get(key, 0), what=f"graph attribute {key}", low=low)
    target = attrs.get("retry_target")
    if target is not None and target not in nodes:
        raise GraphError(
            lines.get("retry_target", 0),
            f"graph retry_target {target!r} is not a node{_near(target, nodes)}",
        )


def _check_edges(g: Graph) -> None:
    for e in g.edges:
        if g.nodes[e.dst].kind == "start":
            raise GraphError(e.line, f"edge {e.src} -> {e.dst} enters the start node")
        if g.nodes[e.src].kind == "exit":
            raise GraphError(e.line, f"edge {e.src} -> {e.dst} leaves exit node {e.src!r}")
    for n in g.nodes.values():
        out = g.outgoing(n.id)
        if n.kind != "exit" and not out:
            raise GraphError(n.line, f"node {n.id!r} has no outgoing edge (only exits may end)")
        if n.retry_target and (
            n.retry_target not in g.nodes or g.nodes[n.retry_target].kind == "start"
        ):
            raise GraphError(
                n.line,
                f"node {n.id!r}: retry_target {n.retry_target!r} is not a node to "
                f"return to{_near(n.retry_target, g.nodes)}",
            )
        if n.kind == "fanout":
            if len(out) < 2:
                raise GraphError(n.line, f"fan-out {n.id!r} needs at least two branches")
            for e in out:
                if e.condition is not None:
                    raise GraphError(
                        e.line,
                        f"fan-out edge {e.src} -> {e.dst} has a "
                        "condition; every branch of a fan-out runs",
                    )


def _links(g: Graph, node_id: str) -> list[tuple[str, int]]:
    """Where a node can go next, with the line that says so (edges, then its retry target)."""
    out = [(e.dst, e.line) for e in g.outgoing(node_id)]
    node = g.nodes[node_id]
    return [*out, (node.retry_target, node.line)] if node.retry_target else out


def _successors(g: Graph, node_id: str) -> list[str]:
    return [dst for dst, _ in _links(g, node_id)]


def _check_fanouts(g: Graph) -> tuple[dict[str, str], dict[str, str]]:
    """Each fan-out's branches: disjoint regions of at least one node that converge on one
    fan-in of their own, entered only from the fan-out, with no retry target inside from
    outside. Returns ``(fan-out -> fan-in, node -> its fan-out)``."""
    joins: dict[str, str] = {}
    branch_of: dict[str, str] = {}
    owner: dict[str, str] = {}  # node -> "fanout/branch" it belongs to
    for fan in (n for n in g.nodes.values() if n.kind == "fanout"):
        hit: set[str] = set()
        for e in g.outgoing(fan.id):
            region, fanins = _branch_region(g, fan.id, e)
            if not region or len(fanins) != 1 or (hit and fanins != hit):
                raise GraphError(
                    e.line,
                    f"branches of fan-out {fan.id!r} must each run at least one node and "
                    f"converge on one tripleoctagon fan-in (branch {e.dst!r} reaches: "
                    f"{', '.join(sorted(fanins)) or 'none'})",
                )
            hit = fanins
            for nid in region:
                if nid in owner:
                    raise GraphError(
                        g.nodes[nid].line,
                        f"node {nid!r} belongs to two branches "
                        f"({owner[nid]} and {fan.id}/{e.dst}); branches are disjoint",
                    )
                owner[nid] = f"{fan.id}/{e.dst}"
                branch_of[nid] = fan.id
        (join,) = hit
        if join in joins.values():
            raise GraphError(g.nodes[join].line, f"fan-in {join!r} joins more than one fan-out")
        joins[fan.id] = join
    _check_branch_entries(g, owner, branch_of, joins)
    _check_retry_targets(g, owner)
    return joins, branch_of


def _branch_region(g: Graph, fan: str, e: Edge) -> tuple[list[str], set[str]]:
    """The nodes the branch starting at edge ``e`` of fan-out ``fan`` runs, and the fan-ins
    it reaches; a branch that reaches exit or another fan-out first is an error."""
    region, fanins, seen = [], set(), {e.dst}
    stack = [(e.dst, e.line)]
    while stack:
        nid, via = stack.pop()
        node = g.nodes[nid]
        if node.kind == "fanin":
            fanins.add(nid)
            continue
        if node.kind in ("exit", "fanout"):
            what = "reaches exit" if node.kind == "exit" else "holds a nested fan-out"
            raise GraphError(
                via,
                f"branch {e.dst!r} of fan-out {fan!r} {what} ({nid!r}) "
                "before its fan-in; branches must end at one tripleoctagon fan-in",
            )
        region.append(nid)
        for nxt, line in _links(g, nid):
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, line))
    return region, fanins


def _check_branch_entries(
    g: Graph, owner: dict[str, str], branch_of: dict[str, str], joins: dict[str, str]
) -> None:
    """No edge enters a branch from outside but its fan-out's; a fan-in is entered only
    from its own fan-out's branches."""
    join_of = {j: f for f, j in joins.items()}
    for e in g.edges:
        inside = owner.get(e.dst)
        if inside is not None and e.src != inside.split("/")[0] and owner.get(e.src) != inside:
            raise GraphError(
                e.line,
                f"edge {e.src} -> {e.dst} enters branch {inside} from outside; only its fan-out "
                "may start a branch",
            )
        if g.nodes[e.dst].kind == "fanin" and branch_of.get(e.src) != join_of.get(e.dst):
            raise GraphError(
                e.line,
                f"edge {e.src} -> {e.dst}: a fan-in is entered only from the branches of its "
                "fan-out",
            )


def _check_retry_targets(g: Graph, owner: dict[str, str]) -> None:
    """No retry target (a node's or the graph's) lies inside a branch its node is not in."""
    targets = [(n.line, n.id, n.retry_target) for n in g.nodes.values() if n.retry_target]
    targets.append((0, "", g.attrs.get("retry_target", "")))
    for line, nid, target in targets:
        if owner.get(target) is not None and owner.get(target) != owner.get(nid):
            raise GraphError(
                line, f"retry_target {target!r} lies inside branch {owner[target]} of a fan-out"
            )


def _reached(start: set[str], links: Mapping[str, list[str]]) -> set[str]:
    """Every node reached from ``start`` following ``links`` (``start`` included)."""
    seen, stack = set(start), list(start)
    while stack:
        for s in links.get(stack.pop(), ()):
            if s not in seen:
                seen.add(s)
                stack.append(s)
    return seen


def _check_reachability(g: Graph) -> None:
    nexts = {
        n.id: _successors(g, n.id) + ([g.joins[n.id]] if n.id in g.joins else [])
        for n in g.nodes.values()
    }  # a fan-out continues at its fan-in once the branches are joined
    seen = _reached({g.start}, nexts)
    for n in g.nodes.values():
        if n.id not in seen:
            raise GraphError(n.line, f"node {n.id!r} is unreachable from {g.start!r}")
    before: dict[str, list[str]] = {}
    for nid, nxt in nexts.items():
        for s in nxt:
            before.setdefault(s, []).append(nid)
    # Walked backwards from the exits, once: a fixed point over every node took one pass per
    # node of a chain declared in order (5,000 nodes: 87 s before a run could start).
    ends = _reached({n.id for n in g.nodes.values() if n.kind == "exit"}, before)
    for n in g.nodes.values():
        if n.id not in ends:
            raise GraphError(n.line, f"node {n.id!r} can never reach an exit node")
