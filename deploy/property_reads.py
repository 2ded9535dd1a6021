"""What a program reads from the configuration, and what it imports, derived from its code.

A deployed job or function starts with the property groups it is given and the modules in
its package; if either lacks something its code reads, it fails at start (or worse, at the
first record that takes that path). This module reads the code instead of trusting a list
kept by hand: ``analyze("jobs/hourly_metrics.py")`` follows the program from its entry
(module-level code, ``if __name__ == "__main__"`` included) through every project function
it calls, with the arguments each call passes, and records

* every ``props["Group"]["key"]`` it reads: directly, through a name bound to a group
  (``db = props["Aurora"]; db["host"]``), through helpers that take the group or key as an
  argument (``postgres_dsn(props, "Warehouse")``, ``stream_arn(props, "sales")``), loops over
  literal tuples and dicts, ``dataclasses.fields(cls)`` names, and objects that keep the
  properties (``self._props``, ``self.props``);
* the typed reads of ``pizzastream.settings``: ``XSettings.from_group(props["Group"])`` reads
  the group, and each field then read of the result (directly, or by a property or method
  of the class reading ``self.<field>``) reads the key of that name: required when the field
  has no default, optional otherwise; a field the class derives from several keys (named in
  its ``from_group``'s ``frozenset({...})``, such as ``StreamsSettings.names``) reads the
  whole group optionally;
* whether each read is *required* (``[...]``) or *optional* (``.get(key, default)``, or a
  ``[...]`` guarded by ``if group.get(key)``); iterating a whole group reads it optionally;
* every module it imports: the project's own (followed) and third-party top-level names.

A read whose group or key the analysis cannot resolve to a constant is reported in
``unresolved``: the test fails on it, so the code either keeps its reads resolvable or this
analysis learns the new form, and a read never slips through unseen.

The properties are recognized by convention, as the code base names them: a parameter or
variable ``props``, an attribute ``…props`` (``self._props``), and ``load_properties()``.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pizzastream import config

REPO_ROOT = Path(__file__).resolve().parent.parent
# The project's packages a deployed program could reach (followed, and counted as project
# modules, so a package check names one its package lacks: simulation/ is in none).
PROJECT_PACKAGES = (
    "pizzastream",
    "simulation",
    "connectors",
    "jobs",
    "etl",
    "delivery",
    "pos",
    "deploy",
)


# --- abstract values ---------------------------------------------------------------------


@dataclass(frozen=True)
class Props:
    """The property groups."""


@dataclass(frozen=True)
class Group:
    name: str


@dataclass(frozen=True)
class Const:
    value: object


@dataclass(frozen=True)
class Seq:
    """A literal tuple or list (or a dict's items): iterating binds each element in turn."""

    items: tuple


@dataclass(frozen=True)
class Mapping:
    keys: tuple
    values: tuple


@dataclass(frozen=True)
class Function:
    module: str
    qualname: str


@dataclass(frozen=True)
class ClassRef:
    module: str
    name: str


@dataclass(frozen=True)
class Instance:
    cls: ClassRef


@dataclass(frozen=True)
class Module:
    name: str


@dataclass(frozen=True)
class FieldRef:
    name: str


@dataclass(frozen=True)
class Typed:
    """A group parsed into its settings class (``AuroraSettings.from_group(props["Aurora"])``,
    ``pizzastream.settings``): reading one of its fields reads that key of ``group``."""

    cls: ClassRef
    group: str


PROPS = Props()
LOCAL = "<is_local>"
Values = frozenset


@dataclass(frozen=True)
class Read:
    group: str
    key: str | None  # None: the whole group (iterated)
    required: bool
    where: str


@dataclass
class Analysis:
    reads: list[Read] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)
    project_modules: set[str] = field(default_factory=set)
    external_modules: set[str] = field(default_factory=set)

    def required(self) -> dict[str, set[str]]:
        """``{group: {keys}}`` that must be present (a group read with no key: ``set()``)."""
        out: dict[str, set[str]] = {}
        for read in self.reads:
            if read.required:
                keys = out.setdefault(read.group, set())
                if read.key is not None:
                    keys.add(read.key)
        return out

    def optional(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for read in self.reads:
            if not read.required and read.key is not None:
                out.setdefault(read.group, set()).add(read.key)
        return out

    def groups(self) -> set[str]:
        return {read.group for read in self.reads}


# --- source -------------------------------------------------------------------------------


@dataclass
class _ModuleInfo:
    name: str
    path: Path
    tree: ast.Module
    functions: dict[str, ast.FunctionDef]  # qualname -> def (Class.method too)
    classes: dict[str, ast.ClassDef]
    imports: dict[str, object]  # local name -> Module/Function/ClassRef
    constants: dict[str, ast.expr]


def _module_path(name: str) -> Path | None:
    base = REPO_ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_level(statements):
    """The statements that run when a module is imported (not function bodies)."""
    for node in statements:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue  # annotations only: never runs
        yield node
        if isinstance(node, (ast.If, ast.Try, ast.With, ast.ClassDef)):
            for field_name in ("body", "orelse", "finalbody"):
                yield from _module_level(getattr(node, field_name, []))
            for handler in getattr(node, "handlers", []):
                yield from _module_level(handler.body)


def _is_project(name: str) -> bool:
    return name.split(".")[0] in PROJECT_PACKAGES and _module_path(name) is not None


class _Analyzer:
    def __init__(self):
        self.modules: dict[str, _ModuleInfo] = {}
        self.result = Analysis()
        self.done: set = set()
        # The typed groups each analyzed call returns (``settings.database``'s), by call.
        self.returns: dict = {}
        self.instantiated: set[ClassRef] = set()

    # modules
    def module(self, name: str) -> _ModuleInfo:
        if name in self.modules:
            return self.modules[name]
        path = _module_path(name)
        tree = ast.parse(path.read_text(), str(path))  # type: ignore[union-attr]  # a project module: always found
        info = _ModuleInfo(name, path, tree, {}, {}, {}, {})  # type: ignore[arg-type]  # as above
        self.modules[name] = info
        self.result.project_modules.add(name)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                info.functions[node.name] = node
            elif isinstance(node, ast.ClassDef):
                info.classes[node.name] = node
                for item in node.body:
                    if isinstance(item, ast.FunctionDef):
                        info.functions[f"{node.name}.{item.name}"] = item
            elif (
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
            ):
                info.constants[node.targets[0].id] = node.value
            elif (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and node.value is not None
            ):
                info.constants[node.target.id] = node.value
        # Imports at module level (also in class bodies and under if/try) run on import;
        # those inside functions count when the analysis reaches the function.
        for node in _module_level(tree.body):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for local, value in self.imports(info, node).items():
                    if value is not None:
                        info.imports.setdefault(local, value)
        return info

    def imports(self, info: _ModuleInfo, node) -> dict[str, object]:
        """Records ``node``'s dependencies; returns the names it binds and their values."""
        path = info.path
        package = info.name if path.name == "__init__.py" else info.name.rpartition(".")[0]
        bound: dict[str, object] = {}
        if isinstance(node, ast.Import):
            for alias in node.names:
                self._depend(alias.name)
                if alias.asname:
                    bound[alias.asname] = self._import_value(alias.name)
                else:
                    top = alias.name.split(".")[0]
                    bound[top] = Module(top) if _is_project(top) else None
            return bound
        base = node.module or ""
        if node.level:
            parent = package.split(".")
            parent = parent[: len(parent) - node.level + 1]
            base = ".".join(parent + ([base] if base else []))
        if base == "__future__":
            return bound
        self._depend(base)
        for alias in node.names:
            full = f"{base}.{alias.name}"
            if _is_project(full):
                self._depend(full)
                bound[alias.asname or alias.name] = Module(full)
            elif _is_project(base):
                bound[alias.asname or alias.name] = self._member(base, alias.name)
            else:
                bound[alias.asname or alias.name] = None
        return bound

    def settings_fields(self, cls: ClassRef) -> dict[str, bool | None]:
        """``{field: required}`` of a settings dataclass and its bases in the same module;
        ``None`` for a field derived from several keys (not a key of its own)."""
        out: dict[str, bool | None] = {}
        for node in reversed(self._class_chain(cls)):
            derived: set[str] = set()
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "from_group":
                    for call in ast.walk(item):
                        if (
                            isinstance(call, ast.Call)
                            and isinstance(call.func, ast.Name)
                            and call.func.id == "frozenset"
                            and call.args
                            and isinstance(call.args[0], ast.Set)
                        ):
                            derived |= {
                                e.value
                                for e in call.args[0].elts
                                if isinstance(e, ast.Constant) and isinstance(e.value, str)
                            }
            for item in node.body:
                if not (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)):
                    continue
                if "ClassVar" in ast.unparse(item.annotation):
                    continue
                name = item.target.id
                out[name] = None if name in derived else _without_default(item.value)
        return out

    def _class_chain(self, cls: ClassRef) -> list[ast.ClassDef]:
        """The class and its bases defined in the same module, the class first."""
        chain: list[ast.ClassDef] = []
        info = self.module(cls.module)
        node = info.classes.get(cls.name)
        while node is not None and node not in chain:
            chain.append(node)
            bases = [b.id for b in node.bases if isinstance(b, ast.Name) and b.id in info.classes]
            node = info.classes[bases[0]] if bases else None
        return chain

    def settings_member(self, cls: ClassRef, name: str) -> tuple[Function, bool] | None:
        """The method or property ``name`` of ``cls`` or a base in its module, and whether
        it is a property."""
        info = self.module(cls.module)
        for node in self._class_chain(cls):
            qualname = f"{node.name}.{name}"
            fn = info.functions.get(qualname)
            if fn is not None:
                is_property = any(ast.unparse(d) == "property" for d in fn.decorator_list)
                return Function(cls.module, qualname), is_property
        return None

    def _import_value(self, name: str):
        return Module(name) if _is_project(name) else None

    def _member(self, module: str, name: str):
        info = self.module(module)
        if name in info.functions:
            return Function(module, name)
        if name in info.classes:
            return ClassRef(module, name)
        return info.imports.get(name)

    def _depend(self, name: str) -> None:
        if not name:
            return
        if _is_project(name):
            self.module(name)
            # Importing a.b.c runs a/__init__ and a/b/__init__ too.
            parts = name.split(".")
            for i in range(1, len(parts)):
                if _is_project(".".join(parts[:i])):
                    self.module(".".join(parts[:i]))
        elif name.split(".")[0] not in sys.stdlib_module_names:
            self.result.external_modules.add(name.split(".")[0])

    # reads
    def read(self, scope: _Scope, group: str, key, required: bool, node) -> None:
        if LOCAL in scope.guarded:
            return  # local runs only (``if is_local():``)
        required = required and group not in scope.guarded
        self.result.reads.append(Read(group, key, required, scope.at(node)))

    # entry points
    def run_module(self, name: str) -> None:
        info = self.module(name)
        scope = _Scope(self, info, {"__name__": Values({Const("__main__")})}, None, "<module>")
        scope.block(info.tree.body)
        self.finish_instances()

    def finish_instances(self) -> None:
        """Every method of every class the program instantiates may run (Flink and the KCL
        call them): analyze each with ``self`` known and other arguments unknown."""
        seen: set = set()
        while True:
            pending = [c for c in self.instantiated if c not in seen]
            if not pending:
                return
            for cls in pending:
                seen.add(cls)
                info = self.module(cls.module)
                for qualname in list(info.functions):
                    if qualname.startswith(cls.name + "."):
                        self.call_function(
                            Function(cls.module, qualname),
                            [],
                            {},
                            self_value=Values({Instance(cls)}),
                        )

    def call_function(
        self, fn: Function, args: list, kwargs: dict, self_value=None, cls_value=None
    ) -> Values:
        """Analyzes the call; returns the typed groups (``Typed``) it may return."""
        info = self.module(fn.module)
        node = info.functions.get(fn.qualname)
        if node is None:
            return Values()
        env: dict[str, Values] = {}
        params = node.args
        positional = [*params.posonlyargs, *params.args]
        given = list(args)
        if positional and positional[0].arg in ("self", "cls") and "." in fn.qualname:
            first = positional.pop(0)
            bound = self_value if first.arg == "self" else cls_value
            if bound is None:
                bound = (
                    Values({ClassRef(fn.module, fn.qualname.split(".")[0])})
                    if first.arg == "cls"
                    else Values()
                )
            env[first.arg] = bound
        defaults = params.defaults
        first_default = len(positional) - len(defaults)
        module_scope = _Scope(self, info, {}, None, fn.qualname)
        for i, param in enumerate(positional):
            if i < len(given):
                env[param.arg] = given[i]
            elif param.arg in kwargs:
                env[param.arg] = kwargs[param.arg]
            elif i >= first_default:
                env[param.arg] = module_scope.eval(defaults[i - first_default])
        for param, default in zip(params.kwonlyargs, params.kw_defaults):
            if param.arg in kwargs:
                env[param.arg] = kwargs[param.arg]
            elif default is not None:
                env[param.arg] = module_scope.eval(default)
        key = (fn, tuple(sorted((k, _freeze(v)) for k, v in env.items())))
        if key in self.done:
            return self.returns.get(key, Values())
        self.done.add(key)
        cls = fn.qualname.split(".")[0] if "." in fn.qualname else None
        scope = _Scope(self, info, env, cls, fn.qualname)
        scope.returned = set()
        scope.block(node.body)
        self.returns[key] = Values(v for v in scope.returned if isinstance(v, Typed))
        return self.returns[key]


def _without_default(value: ast.expr | None) -> bool:
    """Whether a dataclass field's right-hand side leaves it without a default."""
    if value is None:
        return True
    if isinstance(value, ast.Call) and ast.unparse(value.func) in ("field", "dataclasses.field"):
        return not any(kw.arg in ("default", "default_factory") for kw in value.keywords)
    return False


def _freeze(values: Values) -> tuple:
    return tuple(sorted(map(repr, values)))


class _Scope:
    def __init__(
        self, analyzer: _Analyzer, info: _ModuleInfo, env: dict, cls: str | None, where: str
    ):
        self.a, self.info, self.env, self.cls, self.where = analyzer, info, env, cls, where
        self.guarded: set[str] = set()
        self.returned: set[object] | None = None  # a function's body: what it returns

    def at(self, node) -> str:
        return (
            f"{self.info.path.relative_to(REPO_ROOT)}:{getattr(node, 'lineno', 0)} ({self.where})"
        )

    # statements
    def block(self, statements) -> None:
        saved = set(self.guarded)
        for statement in statements:
            self.statement(statement)
            # ``if not <guard>: return`` guards the rest of the block.
            if (
                isinstance(statement, ast.If)
                and not statement.orelse
                and isinstance(statement.test, ast.UnaryOp)
                and isinstance(statement.test.op, ast.Not)
                and statement.body
                and isinstance(statement.body[-1], (ast.Return, ast.Raise))
            ):
                self.guarded |= self.guards(statement.test.operand)
        self.guarded = saved

    def statement(self, node) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            # A nested function (a closure) runs with what it sees here; its own parameters
            # are unknown unless named ``props``.
            if self.where != "<module>":
                inner = _Scope(self.a, self.info, dict(self.env), self.cls, self.where)
                inner.guarded = set(self.guarded)
                for param in node.args.args:
                    inner.env[param.arg] = Values()
                inner.block(node.body)
            return
        if isinstance(node, ast.ClassDef):
            return
        if isinstance(node, ast.Return):
            returned = self.eval(node.value)
            if self.returned is not None:
                self.returned |= returned
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if self.where != "<module>" and LOCAL in self.guarded:
                # ``if is_local():``: imported by local runs only, nothing MSF needs
                for alias in node.names:
                    self.env[alias.asname or alias.name.split(".")[0]] = Values()
            elif self.where != "<module>":
                for local, value in self.a.imports(self.info, node).items():
                    self.env[local] = Values({value}) if value is not None else Values()
            return
        if isinstance(node, ast.Assign):
            value = self.eval(node.value)
            for target in node.targets:
                self.bind(target, value, node.value)
            return
        if isinstance(node, ast.AnnAssign):
            if node.value is not None:
                self.bind(node.target, self.eval(node.value), node.value)
            return
        if isinstance(node, ast.AugAssign):
            self.eval(node.value)
            return
        if isinstance(node, (ast.For, ast.AsyncFor)):
            self.bind(node.target, self.iterate(self.eval(node.iter)), None)
            self.block(node.body)
            self.block(node.orelse)
            return
        if isinstance(node, ast.If):
            self.eval(node.test)
            saved = set(self.guarded)
            self.guarded |= self.guards(node.test)
            self.block(node.body)
            self.guarded = saved
            self.block(node.orelse)
            return
        if isinstance(node, ast.While):
            self.eval(node.test)
            self.block(node.body)
            self.block(node.orelse)
            return
        if isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                value = self.eval(item.context_expr)
                if item.optional_vars is not None:
                    self.bind(item.optional_vars, Values(), None)
            self.block(node.body)
            return
        if isinstance(node, ast.Try):
            self.block(node.body)
            for handler in node.handlers:
                self.block(handler.body)
            self.block(node.orelse)
            self.block(node.finalbody)
            return
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                self.eval(child)
            elif isinstance(child, ast.stmt):
                self.statement(child)

    def guards(self, test) -> set[str]:
        """What ``test`` makes conditional in the body it guards: the groups whose optional
        keys it checks (``if group.get(key):``, ``if key in group:``), whose reads in the
        body happen only when that optional key is configured; and ``LOCAL`` for
        ``if is_local():``, a body that never runs on AWS."""
        found = set()
        for node in ast.walk(test):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "is_local"
            ):
                found.add(LOCAL)
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "get"
                and node.args
            ):
                for group in self.eval(node.func.value, record=False):
                    for key in self.eval(node.args[0], record=False):
                        if isinstance(group, Group) and isinstance(key, Const):
                            found.add(group.name)
            if isinstance(node, ast.Compare) and isinstance(node.ops[0], ast.In):
                for group in self.eval(node.comparators[0], record=False):
                    for key in self.eval(node.left, record=False):
                        if isinstance(group, Group) and isinstance(key, Const):
                            found.add(group.name)
        return found

    def bind(self, target, value: Values, source) -> None:
        if isinstance(target, ast.Name):
            self.env[target.id] = value
        elif isinstance(target, (ast.Tuple, ast.List)):
            if isinstance(source, (ast.Tuple, ast.List)) and len(source.elts) == len(target.elts):
                for t, s in zip(target.elts, source.elts):
                    self.bind(t, self.eval(s, record=False), s)
                return
            for i, t in enumerate(target.elts):
                self.bind(t, self._element(value, i), None)
        elif isinstance(target, ast.Starred):
            self.bind(target.value, Values(), None)
        else:
            self.eval(target)

    @staticmethod
    def _element(value: Values, i: int) -> Values:
        out: set[object] = set()
        for v in value:
            if isinstance(v, Seq) and i < len(v.items):
                out |= v.items[i]
        return Values(out)

    def iterate(self, value: Values) -> Values:
        out: set[object] = set()
        for v in value:
            if isinstance(v, Seq):
                for item in v.items:
                    out |= item
        return Values(out)

    # expressions: each evaluates to the set of values it may have (empty: unknown)
    def eval(self, node, record: bool = True) -> Values:
        if node is None:
            return Values()
        return self._eval(node, record)

    def _eval(self, node, record: bool) -> Values:
        ev = lambda n: self._eval(n, record)  # noqa: E731 - local shorthand
        if isinstance(node, ast.Constant):
            return Values({Const(node.value)})
        if isinstance(node, ast.Name):
            if node.id in self.env:
                return self.env[node.id]
            if node.id == "props":
                return Values({PROPS})
            return self.global_value(node.id)
        if isinstance(node, ast.Attribute):
            base = ev(node.value)
            if node.attr.endswith("props"):
                return Values({PROPS})
            out: set[object] = set()
            for v in base:
                if isinstance(v, Module):
                    full = f"{v.name}.{node.attr}"
                    if _is_project(full):
                        out.add(Module(full))
                    elif _is_project(v.name):
                        member = self.a._member(v.name, node.attr)
                        if member is not None:
                            out.add(member)
                elif isinstance(v, FieldRef) and node.attr == "name":
                    out.add(Const(v.name))
                elif isinstance(v, Typed):
                    out |= self.typed_attribute(node, v, record)
                elif isinstance(v, (ClassRef, Instance)):
                    cls = v if isinstance(v, ClassRef) else v.cls
                    qualname = f"{cls.name}.{node.attr}"
                    if qualname in self.a.module(cls.module).functions:
                        out.add(_BoundMethod(Function(cls.module, qualname), v))
            return Values(out)
        if isinstance(node, ast.Subscript):
            base, key = ev(node.value), ev(node.slice)
            return self.subscript(node, base, key, required=True, record=record)
        if isinstance(node, ast.Call):
            return self.call(node, record)
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return Values({Seq(tuple(ev(e) for e in node.elts))})
        if isinstance(node, ast.Dict):
            keys = tuple(ev(k) if k is not None else Values() for k in node.keys)
            values = tuple(ev(v) for v in node.values)
            return Values({Mapping(keys, values)})
        if isinstance(node, ast.Lambda):
            inner = _Scope(self.a, self.info, dict(self.env), self.cls, self.where)
            for param in node.args.args:
                inner.env[param.arg] = Values()
            inner.eval(node.body, record)
            return Values()
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            inner = _Scope(self.a, self.info, dict(self.env), self.cls, self.where)
            inner.guarded = set(self.guarded)
            for generator in node.generators:
                inner.bind(
                    generator.target, inner.iterate(inner.eval(generator.iter, record)), None
                )
                for condition in generator.ifs:
                    inner.eval(condition, record)
                    inner.guarded |= inner.guards(condition)
            if isinstance(node, ast.DictComp):
                inner.eval(node.key, record)
                inner.eval(node.value, record)
            else:
                inner.eval(node.elt, record)
            return Values()
        if isinstance(node, ast.IfExp):
            ev(node.test)
            return ev(node.body) | ev(node.orelse)
        if isinstance(node, ast.BoolOp):
            out = set()
            for value in node.values:
                out |= ev(value)
            return Values(out)
        if isinstance(node, ast.JoinedStr):
            for value in node.values:
                ev(value)
            return Values()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                ev(child)
        return Values()

    def typed_attribute(self, node: ast.Attribute, typed: Typed, record: bool) -> Values:
        """``typed.<attr>``: a field reads its key; a property runs with ``self`` the typed
        group; a method is bound to it."""
        fields = self.a.settings_fields(typed.cls)
        if node.attr in fields:
            required = fields[node.attr]
            if record:
                key = None if required is None else node.attr
                self.a.read(self, typed.group, key, bool(required), node)
            return Values()
        member = self.a.settings_member(typed.cls, node.attr)
        if member is None:
            return Values()
        fn, is_property = member
        if is_property:
            if record:
                self.a.call_function(fn, [], {}, self_value=Values({typed}))
            return Values()
        return Values({_BoundMethod(fn, typed)})

    def global_value(self, name: str) -> Values:
        if name in self.info.imports and self.info.imports[name] is not None:
            return Values({self.info.imports[name]})
        if name in self.info.functions:
            return Values({Function(self.info.name, name)})
        if name in self.info.classes:
            return Values({ClassRef(self.info.name, name)})
        if name in self.info.constants:
            node = self.info.constants[name]
            if (
                isinstance(node, ast.Call)
                and ast.unparse(node.func).endswith("MappingProxyType")
                and len(node.args) == 1
            ):
                node = node.args[0]  # a read-only view of a literal dict: the dict
            if isinstance(node, (ast.Constant, ast.Tuple, ast.List, ast.Dict)):
                return _Scope(self.a, self.info, {}, None, self.where).eval(node, record=False)
        return Values()

    def subscript(self, node, base: Values, key: Values, required: bool, record: bool) -> Values:
        out: set[object] = set()
        for b in base:
            if isinstance(b, Props):
                keys = [k for k in key if isinstance(k, Const)]
                if not keys and record:
                    key_text = ast.unparse(node.slice) if hasattr(node, "slice") else "?"
                    self.a.result.unresolved.append(f"{self.at(node)}: props[{key_text}]")
                for k in keys:
                    out.add(Group(k.value))  # type: ignore[arg-type]  # a literal key: a group name
                    if record:
                        self.a.read(self, k.value, None, required, node)  # type: ignore[arg-type]  # a literal key: a group name
            elif isinstance(b, Group):
                keys = [k for k in key if isinstance(k, Const)]
                if not keys and record:
                    self.a.result.unresolved.append(
                        f"{self.at(node)}: {b.name}[{ast.unparse(node.slice) if hasattr(node, 'slice') else '?'}]"
                    )
                for k in keys:
                    if record:
                        self.a.read(self, b.name, k.value, required, node)
            elif isinstance(b, Mapping):
                for k, v in zip(b.keys, b.values):
                    if k & key:
                        out |= v
            elif isinstance(b, Seq):
                for k in key:
                    if (
                        isinstance(k, Const)
                        and isinstance(k.value, int)
                        and -len(b.items) <= k.value < len(b.items)
                    ):
                        out |= b.items[k.value]
        return Values(out)

    def call(self, node: ast.Call, record: bool) -> Values:
        func = node.func
        args = [self.eval(arg, record) for arg in node.args if not isinstance(arg, ast.Starred)]
        kwargs = {kw.arg: self.eval(kw.value, record) for kw in node.keywords if kw.arg}
        for kw in node.keywords:
            if kw.arg is None:
                self.eval(kw.value, record)
        # Methods on the configuration itself.
        if isinstance(func, ast.Attribute):
            base = self.eval(func.value, record)
            out: set[object] = set()
            if func.attr == "get" and args:
                for b in base:
                    if isinstance(b, (Props, Group)):
                        for k in args[0]:
                            if not isinstance(k, Const):
                                continue
                            if isinstance(b, Props):
                                out.add(Group(k.value))  # type: ignore[arg-type]  # a literal key: a group name
                                if record:
                                    self.a.read(self, k.value, None, False, node)  # type: ignore[arg-type]  # a literal key: a group name
                            elif record:
                                self.a.read(self, b.name, k.value, False, node)
                        if not any(isinstance(k, Const) for k in args[0]) and record:
                            self.a.result.unresolved.append(
                                f"{self.at(node)}: .get({ast.unparse(node.args[0])})"
                            )
            if func.attr in ("items", "keys", "values"):
                for b in base:
                    if isinstance(b, Group) and record:
                        self.a.read(self, b.name, None, False, node)
                    if isinstance(b, Mapping):
                        if func.attr == "items":
                            out.add(
                                Seq(tuple(Values({Seq((k, v))}) for k, v in zip(b.keys, b.values)))
                            )
                        elif func.attr == "keys":
                            out.add(Seq(b.keys))
                        else:
                            out.add(Seq(b.values))
            if func.attr == "from_group" and args:
                groups = [g for g in args[0] if isinstance(g, Group)]
                for b in base:
                    if isinstance(b, ClassRef):
                        out |= {Typed(b, g.name) for g in groups}
            for target in self.eval(func, record=False):
                out |= self.invoke(target, args, kwargs)
            if func.attr == "load_properties":
                out.add(PROPS)
            return Values(out)
        targets = self.eval(func, record)
        out = set()
        if isinstance(func, ast.Name) and func.id == "load_properties":
            out.add(PROPS)
        if isinstance(func, ast.Name) and func.id == "fields" and self.cls is not None:
            # dataclasses.fields(cls) in a classmethod: the class's annotated fields.
            cls_node = self.info.classes.get(self.cls)
            names = [
                item.target.id
                for item in cls_node.body  # type: ignore[union-attr]  # a classmethod's class is in its module
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
            ]
            out.add(Seq(tuple(Values({FieldRef(n)}) for n in names)))
        if isinstance(func, ast.Name) and func.id in ("dict", "sorted", "list", "tuple") and args:
            out |= args[0]
        for target in targets:
            out |= self.invoke(target, args, kwargs)
        return Values(out)

    def invoke(self, target, args, kwargs) -> Values:
        if isinstance(target, Function):
            return self.a.call_function(target, args, kwargs)
        elif isinstance(target, _BoundMethod):
            receiver = target.receiver
            if isinstance(receiver, (Instance, Typed)):
                return self.a.call_function(target.fn, args, kwargs, self_value=Values({receiver}))
            return self.a.call_function(
                target.fn, args, kwargs, cls_value=Values({receiver}), self_value=Values()
            )
        elif isinstance(target, ClassRef):
            self.a.instantiated.add(target)
            init = f"{target.name}.__init__"
            if init in self.a.module(target.module).functions:
                self.a.call_function(
                    Function(target.module, init),
                    args,
                    kwargs,
                    self_value=Values({Instance(target)}),
                )
            return Values({Instance(target)})
        return Values()


@dataclass(frozen=True)
class _BoundMethod:
    fn: Function
    receiver: object


def missing(required: dict[str, set[str]], deployed: config.Props) -> list[str]:
    """``group`` or ``group.key`` that ``required`` (``Analysis.required()``) needs and the
    ``deployed`` property groups lack. A key is also there when the group names the secret
    it comes from (``password`` by ``password_secret_arn``, ``pizzastream.config``)."""
    from pizzastream.config import SECRET_SUFFIX

    lacking = []
    for group, keys in sorted(required.items()):
        if group not in deployed:
            lacking.append(f"group {group}")
            continue
        lacking += [
            f"{group}.{key}"
            for key in sorted(keys)
            if key not in deployed[group] and f"{key}{SECRET_SUFFIX}" not in deployed[group]
        ]
    return lacking


def analyze(entry: str | Path) -> Analysis:
    """What the program started as ``entry`` (a file like ``jobs/hourly_metrics.py``, or a
    module name like ``etl.hourly``) reads and imports."""
    name = str(entry)
    if name.endswith(".py"):
        name = name[:-3].replace("/", ".")
        if name.endswith(".__init__"):
            name = name[: -len(".__init__")]
    analyzer = _Analyzer()
    analyzer.run_module(name)
    return analyzer.result


def analyze_function(module: str, qualname: str) -> Analysis:
    """What calling ``module.qualname`` with the properties (its parameter ``props``) reads:
    for entry points that are functions (a Lambda handler)."""
    analyzer = _Analyzer()
    analyzer.module(module)
    analyzer.call_function(Function(module, qualname), [], {})
    analyzer.finish_instances()
    return analyzer.result
