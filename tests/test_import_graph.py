"""The project's modules import each other without a circle (docs/architecture.md): a
module can be read, tested and moved with what it imports, never with what imports it.
Imports inside functions count too: they are still a dependency, only a later one."""
from __future__ import annotations

import ast
import os
from pathlib import Path

from pizzastream.config import REPO_ROOT

PACKAGES = ("pizzastream", "connectors", "jobs", "etl", "delivery", "pos", "api", "stack",
            "analytics", "deploy", "bench")
SKIPPED = {"node_modules", "target", "__pycache__", "static", "docker"}   # no project code


def _module_of(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _project_modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for folder, subfolders, files in os.walk(REPO_ROOT / package):
            subfolders[:] = [d for d in subfolders if d not in SKIPPED]
            for name in files:
                if name.endswith(".py"):
                    path = Path(folder) / name
                    found[_module_of(path)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports: ``from package import submodule`` counts
    as the submodule (the package's ``__init__`` runs first, but nothing of it is used)."""
    modules = _project_modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        wanted: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                wanted.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:    # a submodule if there is one, else a name of it
                    submodule = f"{node.module}.{alias.name}"
                    wanted.add(submodule if submodule in modules else node.module)
        graph[module] = {name for name in wanted if name in modules and name != module}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_of_the_project_imports_itself_back():
    graph = import_graph()
    assert {"pizzastream.orders", "jobs.inventory_windowing", "bench.report"} <= set(graph)
    assert circles(graph) == []


def test_the_check_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# The modules of pizzastream/ that reach an edge: the configuration reads a secret when a
# key names its ARN; the operators' command (``python -m pizzastream.admin``, the name issue
# 17 gives it) drives the resharding planner against Kinesis; the hourly review ticks' writer
# (``python -m pizzastream.ticks`` and its Lambda handler) puts them on ``restocks``.
EDGES_ALLOWED = {"pizzastream.config": {"connectors.aws"},
                 "pizzastream.admin": {"connectors.kinesis_shards"},
                 "pizzastream.ticks": {"connectors.kinesis_producer"}}


def test_the_rules_import_no_flink_and_no_edge():
    """``pizzastream/`` is the plain-Python rules: no PyFlink, no project package above it
    but the entry points of ``EDGES_ALLOWED``."""
    graph = import_graph()
    for module, path in _project_modules().items():
        if not module.startswith("pizzastream"):
            continue
        assert "pyflink" not in path.read_text(), module
        above = {m for m in graph[module] if not m.startswith("pizzastream")}
        assert above <= EDGES_ALLOWED.get(module, set()), (module, above)
