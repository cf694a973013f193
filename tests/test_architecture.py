"""The packages stand in one direction: rundoctor <- executor <- doctor <- reports <- chaos.

The import graph is derived from the source with :mod:`ast` (every import: module level,
function-local, under ``TYPE_CHECKING``), so a new import that points up a layer, closes a
cycle or reaches into another package's private module fails here, not in review. A fresh
interpreter then checks what the light entry points really load: a worker host runs the
executor without the analysis stack. See ``docs/architecture.md``.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: Bottom first: a package may import only the ones before it.
LAYERS = ("rundoctor", "executor", "doctor", "reports", "chaos")

#: What the executor, its worker and the base must never load.
HEAVY = ("duckdb", "polars", "pyarrow", "numpy")


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, root: Path) -> Iterator[tuple[int, str, str | None]]:
    """Every import in the file at ``path``: ``(line, module, name)``, relative ones resolved.

    ``name`` is the imported name of a ``from`` import (None for ``import x``).
    """
    here = _module_name(path, root).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, None
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            for alias in node.names:
                yield node.lineno, module, alias.name


def cross_imports(root: Path, packages: tuple[str, ...]) -> list[tuple[str, int, str, str]]:
    """``(file, line, from package, imported module[.name])`` for each import of another
    of ``packages``."""
    found = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            for line, module, name in imports(path, root):
                top = module.split(".")[0]
                if top in packages and top != package:
                    target = module if name is None else f"{module}.{name}"
                    found.append((str(path.relative_to(root)), line, package, target))
    return found


def private_violations(found: list[tuple[str, int, str, str]]) -> list[str]:
    """Imports that name another package's private module or name (one starting with ``_``)."""
    return [
        f"{file}:{line}: {target}"
        for file, line, _, target in found
        if any(part.startswith("_") for part in target.split(".")[1:])
    ]


def cycle(edges: set[tuple[str, str]]) -> list[str] | None:
    """One cycle of the package graph (``[a, b, …, a]``), or None."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    state: dict[str, int] = {}  # 1 on the path, 2 done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt, [*path, nxt])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def _edges(found: list[tuple[str, int, str, str]]) -> set[tuple[str, str]]:
    return {(package, target.split(".")[0]) for _, _, package, target in found}


def test_the_package_graph_has_no_cycle() -> None:
    assert cycle(_edges(cross_imports(REPO, LAYERS))) is None


def test_every_import_points_down_the_layers() -> None:
    upward = [
        f"{file}:{line}: {package} imports {target}"
        for file, line, package, target in cross_imports(REPO, LAYERS)
        if LAYERS.index(target.split(".")[0]) > LAYERS.index(package)
    ]
    assert upward == []


def test_no_package_imports_a_private_module_or_name_of_another() -> None:
    assert private_violations(cross_imports(REPO, LAYERS)) == []


def test_the_base_imports_only_the_standard_library() -> None:
    outside = [
        f"{path.relative_to(REPO)}:{line}: {module}"
        for path in sorted((REPO / "rundoctor").rglob("*.py"))
        for line, module, _ in imports(path, REPO)
        if (top := module.split(".")[0]) != "rundoctor"
        and top not in sys.stdlib_module_names
        and top != "__future__"
    ]
    assert outside == []


# The checks above must be able to fail: a planted tree with each fault.
def _plant(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_a_function_local_import_that_closes_a_cycle_is_found(tmp_path: Path) -> None:
    _plant(
        tmp_path,
        {
            "low/__init__.py": "def f():\n    from high import g\n",
            "high/__init__.py": "from low import f\n",
        },
    )
    found = cross_imports(tmp_path, ("low", "high"))
    assert cycle(_edges(found)) in (["high", "low", "high"], ["low", "high", "low"])


def test_a_type_checking_import_of_a_private_module_is_found(tmp_path: Path) -> None:
    _plant(
        tmp_path,
        {
            "low/__init__.py": "",
            "low/_impl.py": "X = 1\n",
            "high/__init__.py": "import typing\nif typing.TYPE_CHECKING:\n"
            "    from low._impl import X\n",
            "high/_mod.py": "from low import _impl\nfrom low import X\nfrom . import _mine\n",
        },
    )
    found = cross_imports(tmp_path, ("low", "high"))
    assert private_violations(found) == [
        "high/__init__.py:3: low._impl.X",
        "high/_mod.py:1: low._impl",
    ]
    assert cycle(_edges(found)) is None


# What a fresh interpreter loads: the light entry points stay light.
_PROBE = """
import importlib, json, sys
before = set(sys.modules)
for statement in sys.argv[2:]:
    exec(statement)
json.dump(sorted(set(sys.modules) - before), open(sys.argv[1], "w"))
"""


def _loaded(tmp_path: Path, *statements: str) -> set[str]:
    out = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(out), *statements],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(out.read_text()))


def _tops(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


@pytest.mark.parametrize(
    "statements",
    [
        ("import executor",),
        # Every name of the front door, so the lazy map cannot hide an import.
        ("import executor", "[getattr(executor, n) for n in executor.__all__]"),
        ("import executor._worker", "executor._worker.run_worker"),
        ("import executor._cli",),
        # `doctor worker` on a worker host: the root, then the executor's commands.
        (
            "import doctor._cli as cli",
            "cli.app(args=['worker', '--help'], prog_name='doctor', standalone_mode=False)",
        ),
    ],
    ids=["front-door", "every-name", "worker", "commands", "doctor-worker-help"],
)
def test_the_executor_loads_no_analysis_stack(tmp_path: Path, statements: tuple[str, ...]) -> None:
    modules = _loaded(tmp_path, *statements)
    assert "executor" in modules  # really imported
    assert sorted(_tops(modules) & set(HEAVY)) == []


def test_the_executor_loads_nothing_of_the_packages_above_it(tmp_path: Path) -> None:
    modules = _loaded(
        tmp_path, "import executor", "[getattr(executor, n) for n in executor.__all__]"
    )
    assert sorted(_tops(modules) & {"doctor", "reports", "chaos"}) == []


BASE_MODULES = [
    "rundoctor",
    *sorted(
        f"rundoctor.{p.stem}" for p in (REPO / "rundoctor").glob("*.py") if p.stem != "__init__"
    ),
]


@pytest.mark.parametrize("module", BASE_MODULES)
def test_the_base_loads_only_the_standard_library(tmp_path: Path, module: str) -> None:
    modules = _loaded(tmp_path, f"import {module}")
    assert module in modules
    outside = sorted(t for t in _tops(modules) if t not in sys.stdlib_module_names)
    assert outside == ["rundoctor"]


def test_one_root_mounts_the_other_packages_commands_by_name() -> None:
    mounts = {
        f"{path.relative_to(REPO)}": [
            node.args[1].value
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "Mount"
            and isinstance(node.args[1], ast.Constant)
        ]
        for package in LAYERS
        for path in sorted((REPO / package).rglob("*.py"))
    }
    roots = {file: modules for file, modules in mounts.items() if modules}
    assert list(roots) == ["doctor/_cli.py"]
    # What it names are command modules, each the home of one package's commands.
    assert {m.rpartition(".")[2].startswith("_cli") for m in roots["doctor/_cli.py"]} == {True}
    assert {m.split(".")[0] for m in roots["doctor/_cli.py"]} == {
        "executor",
        "doctor",
        "reports",
        "chaos",
    }


# Functions read along their phases: no library function over MAX_LINES lines, none taking
# more than MAX_POSITIONAL positional parameters.
MAX_LINES = 60
MAX_POSITIONAL = 6

#: ``"file:qualified.name"`` -> why it stays as it is. Keep it short; every entry must still
#: break the rule (a stale entry fails ``test_the_allow_list_names_only_real_offenders``).
#: Empty today: every function was split along its phases (issue 12).
ALLOWED: dict[str, str] = {}


def _body_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from the first statement after the docstring to the function's last line."""
    body = fn.body
    first = body[0]
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        body = body[1:]
    return 0 if not body else (fn.end_lineno or fn.lineno) - body[0].lineno + 1


def _positional(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Positional-only and positional-or-keyword parameters, defaults or not; the receiver
    (``self``/``cls``) is not counted."""
    names = [a.arg for a in (*fn.args.posonlyargs, *fn.args.args)]
    return len(names) - (1 if names[:1] in (["self"], ["cls"]) else 0)


def _is_command(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Decorated ``@app.command(...)`` or ``@app.callback(...)``: typer passes every option
    by name, so its parameters are keyword parameters in effect."""
    return any(
        isinstance(target := (d.func if isinstance(d, ast.Call) else d), ast.Attribute)
        and target.attr in ("command", "callback")
        for d in fn.decorator_list
    )


def function_shapes(root: Path, packages: tuple[str, ...]) -> dict[str, str]:
    """``"file:qualified.name"`` -> what breaks the rule, for every function (methods and
    nested functions included, each counted on its own; a nested function's lines also
    count in its parent's) over ``MAX_LINES`` body lines or with more than
    ``MAX_POSITIONAL`` positional parameters (command functions exempt from the latter)."""
    found: dict[str, str] = {}

    def visit(node: ast.AST, file: str, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = prefix + child.name
                faults = []
                if (lines := _body_lines(child)) > MAX_LINES:
                    faults.append(f"{lines} lines")
                if (count := _positional(child)) > MAX_POSITIONAL and not _is_command(child):
                    faults.append(f"{count} positional parameters")
                if faults:
                    found[f"{file}:{name}"] = ", ".join(faults)
                visit(child, file, name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, file, prefix + child.name + ".")
            else:
                visit(child, file, prefix)

    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            visit(tree, str(path.relative_to(root)), "")
    return found


def test_library_functions_are_short_and_take_few_positional_parameters() -> None:
    """Every function of the five packages has at most 60 lines of body (its docstring not
    counted; a long SQL text belongs in a module constant) and at most 6 positional
    parameters (keyword-only ones are free: they read at the call site). Typer command
    functions are exempt from the parameter count only, since typer passes their options by
    name. ``ALLOWED`` lists the exceptions, each with its reason."""
    found = function_shapes(REPO, LAYERS)
    assert {k: v for k, v in found.items() if k not in ALLOWED} == {}


def test_the_allow_list_names_only_real_offenders() -> None:
    found = function_shapes(REPO, LAYERS)
    assert sorted(k for k in ALLOWED if k not in found) == []


def test_a_long_function_and_a_wide_signature_are_found(tmp_path: Path) -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(61))
    _plant(
        tmp_path,
        {
            "pkg/__init__.py": f'def long():\n    """Doc."""\n{body}',
            "pkg/_m.py": "class C:\n"
            "    def wide(self, a, b, c, d, e, f, g, *, h=1):\n        pass\n"
            "    def ok(self, a, b, c, d, e, f, *, g=1, h=2):\n        pass\n"
            "@app.command('x')\ndef cmd(a, b, c, d, e, f, g):\n    pass\n",
        },
    )
    assert function_shapes(tmp_path, ("pkg",)) == {
        "pkg/__init__.py:long": "61 lines",
        "pkg/_m.py:C.wide": "7 positional parameters",
    }


def test_directories_are_made_only_by_the_one_helper_that_does_not_recurse() -> None:
    # Path.mkdir(parents=True) and os.makedirs recurse once per missing directory: 1,000 of
    # them ended eight commands with RecursionError, exit 70 (rundoctor.paths.make_dirs).
    # Path.expanduser raises for "~nosuchuser" (rundoctor.paths.expand_user does not).
    found = []
    for package in LAYERS:
        for path in sorted((REPO / package).rglob("*.py")):
            for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                code = line.split("#", 1)[0]
                if (
                    "mkdir(parents=True" in code or "makedirs(" in code or ".expanduser()" in code
                ) and not code.lstrip().startswith((">>>", "...", '"""', "``")):
                    found.append(f"{path.relative_to(REPO)}:{line_no}: {line.strip()}")
    assert found == [], "use rundoctor.paths.make_dirs, expand_user:\n" + "\n".join(found)


def test_trees_are_removed_only_by_the_one_helper_that_does_not_recurse() -> None:
    # shutil.rmtree (Python 3.11) recurses once per level: a previous campaign nested 1,000
    # deep ended `chaos run --out` with RecursionError, exit 70 (rundoctor.paths.remove_tree).
    found = []
    for package in (*LAYERS, "fixtures", "bench"):
        for path in sorted((REPO / package).rglob("*.py")):
            for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if "rmtree(" in line.split("#", 1)[0]:
                    found.append(f"{path.relative_to(REPO)}:{line_no}: {line.strip()}")
    assert found == [], "use rundoctor.paths.remove_tree:\n" + "\n".join(found)
