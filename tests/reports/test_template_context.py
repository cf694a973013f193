"""Each template uses exactly the fields its documented context declares (datasette-style).

The template's AST is walked with the context's type hints: top-level names must be the
context's fields (``jinja2.meta.find_undeclared_variables``), every attribute read must be a
field of the dataclass it is read from (through loop variables and optionals), and every field
of every dataclass reachable from the context must be read somewhere.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jinja2 import meta, nodes

from reports import TEMPLATES, environment
from reports._context import FleetContext, PostmortemContext

Unknown = object()


def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else Unknown
    return tp


def _element(tp: Any) -> Any:
    tp = _strip_optional(tp)
    if typing.get_origin(tp) in (tuple, list):
        args = typing.get_args(tp)
        return args[0] if args else Unknown
    return Unknown


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _dataclasses_reachable(root: type) -> set[type]:
    seen: set[type] = set()
    todo = [root]
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        for tp in _hints(cls).values():
            for candidate in (_strip_optional(tp), _element(tp)):
                if dataclasses.is_dataclass(candidate) and isinstance(candidate, type):
                    todo.append(candidate)
    return seen


class _Walker:
    """Resolves names and attributes to types, recording every (dataclass, field) read."""

    def __init__(self, context: type) -> None:
        self.used: set[tuple[type, str]] = set()
        self.errors: list[str] = []
        self.scopes: list[dict[str, Any]] = [{name: tp for name, tp in _hints(context).items()}]
        self.context = context

    def lookup(self, name: str) -> Any:
        for scope in reversed(self.scopes):
            if name in scope:
                if len(self.scopes) > 0 and scope is self.scopes[0]:
                    self.used.add((self.context, name))
                return scope[name]
        return Unknown

    def type_of(self, node: nodes.Node) -> Any:
        if isinstance(node, nodes.Name):
            return self.lookup(node.name)
        if isinstance(node, nodes.Getattr):
            base = _strip_optional(self.type_of(node.node))
            if base is Unknown:
                return Unknown
            if dataclasses.is_dataclass(base) and isinstance(base, type):
                hints = _hints(base)
                if node.attr not in hints:
                    self.errors.append(f"{base.__name__} has no field {node.attr!r}")
                    return Unknown
                self.used.add((base, node.attr))
                return hints[node.attr]
            return Unknown
        if isinstance(node, nodes.Filter | nodes.Test) and node.node is not None:
            self.visit(node.node)
            for child in [*node.args, *(k.value for k in node.kwargs)]:
                self.visit(child)
            return Unknown
        self.visit_children(node)
        return Unknown

    def visit_children(self, node: nodes.Node) -> None:
        for child in node.iter_child_nodes():
            self.visit(child)

    def bind(self, target: nodes.Node, tp: Any) -> dict[str, Any]:
        if isinstance(target, nodes.Name):
            return {target.name: tp}
        if isinstance(target, nodes.Tuple):
            return {n.name: Unknown for n in target.items if isinstance(n, nodes.Name)}
        return {}

    def visit(self, node: nodes.Node) -> None:
        if isinstance(node, nodes.For):
            element = _element(self.type_of(node.iter))
            self.scopes.append({**self.bind(node.target, element), "loop": Unknown})
            if node.test is not None:
                self.visit(node.test)
            for child in node.body:
                self.visit(child)
            self.scopes.pop()
            for child in node.else_:
                self.visit(child)
        elif isinstance(node, nodes.Name | nodes.Getattr | nodes.Filter | nodes.Test):
            self.type_of(node)
        else:
            self.visit_children(node)


def _templates() -> Iterator[tuple[type, str]]:
    yield from TEMPLATES.items()


def _parse(name: str) -> nodes.Template:
    env = environment()
    assert env.loader is not None
    source, _filename, _uptodate = env.loader.get_source(env, name)
    return env.parse(source)


@pytest.mark.parametrize(("context", "name"), list(_templates()), ids=lambda x: str(x))
def test_the_templates_top_level_names_are_the_contexts_fields(context: type, name: str) -> None:
    used = meta.find_undeclared_variables(_parse(name))
    assert used == {f.name for f in dataclasses.fields(context)}


@pytest.mark.parametrize(("context", "name"), list(_templates()), ids=lambda x: str(x))
def test_every_attribute_the_template_reads_is_a_documented_field(context: type, name: str) -> None:
    walker = _Walker(context)
    walker.visit(_parse(name))
    assert walker.errors == []


@pytest.mark.parametrize(("context", "name"), list(_templates()), ids=lambda x: str(x))
def test_every_documented_field_is_used_by_the_template(context: type, name: str) -> None:
    walker = _Walker(context)
    walker.visit(_parse(name))
    declared = {
        (cls, f.name) for cls in _dataclasses_reachable(context) for f in dataclasses.fields(cls)
    }
    unused = sorted(f"{cls.__name__}.{field}" for cls, field in declared - walker.used)
    assert unused == []


def test_every_context_class_is_documented() -> None:
    for root in (PostmortemContext, FleetContext):
        for cls in _dataclasses_reachable(root):
            assert (cls.__doc__ or "").strip(), cls.__name__


def test_the_walker_notices_a_field_the_context_does_not_have() -> None:
    env = environment()
    walker = _Walker(PostmortemContext)
    walker.visit(env.parse("{% for s in layer1 %}{{ s.no_such_field }}{% endfor %}"))
    assert walker.errors == ["ScopeView has no field 'no_such_field'"]


def _documented_fields() -> dict[str, set[str]]:
    """``### Class`` headings of docs/reports.md and the `field` names of their tables."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "reports.md").read_text()
    out: dict[str, set[str]] = {}
    current = None
    for line in doc.splitlines():
        if line.startswith("### "):
            current = line[4:].strip()
            out[current] = set()
        elif current and line.startswith("| `"):
            out[current].add(line.split("`")[1])
    return out


def test_docs_reports_md_documents_every_context_field() -> None:
    documented = _documented_fields()
    for root in (PostmortemContext, FleetContext):
        for cls in _dataclasses_reachable(root):
            fields = {f.name for f in dataclasses.fields(cls)}
            assert documented.get(cls.__name__) == fields, cls.__name__
