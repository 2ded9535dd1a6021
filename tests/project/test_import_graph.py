"""The project's modules import each other without a circle (docs/architecture.md): a
module can be read, tested and moved with what it imports, never with what imports it.
Imports inside functions count too: they are still a dependency, only a later one (a
circle closed by one is still two modules that cannot be moved or tested apart, and an
edge client imported in a function still has to be installed wherever the function runs).

And the layers: ``pizzastream/`` is the rules (the standard library and orjson, no Flink,
no AWS, database or Redis client), ``simulation/`` the made-up load over them, which nothing
deployed imports."""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

from pizzastream.config import REPO_ROOT

PACKAGES = (
    "pizzastream",
    "simulation",
    "connectors",
    "jobs",
    "etl",
    "delivery",
    "pos",
    "api",
    "stack",
    "analytics",
    "deploy",
    "bench",
)
SKIPPED = {"node_modules", "target", "__pycache__", "static", "docker"}  # no project code


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
                for alias in node.names:  # a submodule if there is one, else a name of it
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
EDGES_ALLOWED = {
    "pizzastream.config": {"connectors.aws"},
    "pizzastream.admin": {"connectors.kinesis_shards"},
    "pizzastream.ticks": {"connectors.kinesis_producer"},
}


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


# What the rules may import besides the standard library and each other: the order path's
# JSON. Everything else (PyFlink, boto3, psycopg, redis, ...) is an edge's.
RULES_THIRD_PARTY = {"orjson"}
EDGE_CLIENTS = {
    "pyflink",
    "boto3",
    "botocore",
    "psycopg",
    "psycopg_pool",
    "redis",
    "redshift_connector",
    "duckdb",
    "amazon_kclpy",
    "httpx",
}


def _third_party(path: Path) -> set[str]:
    """The top-level names of what a file imports from outside the project and the standard
    library, at module level or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return {
        name
        for name in names
        if name not in PACKAGES and name not in sys.stdlib_module_names and name != "__future__"
    }


def test_the_rules_import_no_client_of_an_edge():
    modules = _project_modules()
    seen = {
        module: _third_party(path)
        for module, path in modules.items()
        if module.split(".")[0] == "pizzastream"
    }
    assert "pizzastream.orders" in seen
    for module, names in seen.items():
        assert not names & EDGE_CLIENTS, (module, names & EDGE_CLIENTS)
        assert names <= RULES_THIRD_PARTY, (module, names - RULES_THIRD_PARTY)


def test_the_check_sees_an_import_inside_a_function(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "import json\n\ndef f():\n    import boto3.session\n    from psycopg import sql\n"
    )
    assert _third_party(module) == {"boto3", "psycopg"}


# Who may import the simulation: the local stack (the demo, the order generator) and the
# benchmarks; the tests too (not a package here). Never the rules, and never a deployed
# package: the MSF zip, the Lambda package and the container image do not carry it.
SIMULATION_USERS = {"simulation", "stack", "bench"}


def test_only_the_local_tools_import_the_simulation():
    graph = import_graph()
    assert {"simulation.traffic", "simulation.simulate"} <= set(graph)
    users = {
        module
        for module, wanted in graph.items()
        if any(name.split(".")[0] == "simulation" for name in wanted)
    }
    assert "stack.generate" in users
    assert {module.split(".")[0] for module in users} <= SIMULATION_USERS, users
    for module in graph:
        if module.split(".")[0] == "simulation":
            assert {m.split(".")[0] for m in graph[module]} <= {"simulation", "pizzastream"}, (
                module,
                graph[module],
            )


# Modules of different packages that share a name, each kept for its reason: the package
# says which is which, and each name is the plain word of its package's own subject. A new
# pair fails here until it is renamed or given its reason (issue 19: ``stack/aws.py`` beside
# ``connectors/aws.py``, both with a ``client(props, service)``, became
# ``stack/moto_resources.py``).
SHARED_NAMES = {
    # the API's part of ``make demo`` / the demo itself (stack.demo calls api.demo)
    "demo": {"api.demo", "stack.demo"},
    # the benchmark of the hourly ETL / the hourly ETL
    "hourly": {"bench.hourly", "etl.hourly"},
    # the ETL's recomputation of the hourly store metrics / their maths and SQL
    "metrics": {"etl.metrics", "pizzastream.metrics"},
    # each service package's own service
    "service": {"delivery.service", "pos.service"},
}
# Modules named as a top-level package: the rules of a subject the service package runs,
# and the stack's launcher of the jobs.
NAMED_AS_A_PACKAGE = {"pizzastream.delivery", "stack.jobs"}


def test_no_two_packages_have_a_module_of_the_same_name_without_a_reason():
    by_name: dict[str, set[str]] = {}
    for module in _project_modules():
        if "." in module and module.rsplit(".", 1)[1] != "__main__":
            by_name.setdefault(module.rsplit(".", 1)[1], set()).add(module)
    shared = {name: modules for name, modules in by_name.items() if len(modules) > 1}
    assert shared == SHARED_NAMES
    as_packages = {
        module
        for module in _project_modules()
        if "." in module and module.rsplit(".", 1)[1] in PACKAGES
    }
    assert as_packages == NAMED_AS_A_PACKAGE
