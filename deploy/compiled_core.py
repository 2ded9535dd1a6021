"""The order path's Python core compiled to C extensions with mypyc, for the jobs to ship.

The rules stay plain Python in ``pizzastream/`` (tests and tools import them as they are);
what the jobs ship beside them are C extensions mypyc builds from the same files, which
Python imports in place of a module's ``.py`` when both sit in one package directory.
Compiled, the order path's Python core costs less per event (``python -m bench.profile``
times both; docs/benchmarks.md), with the same answers: the rule tests run against the
compiled modules too (tests/deploy/test_compiled_core.py).

An extension is never put beside the sources in the repository (a stale one would shadow an
edited ``.py``): each build goes to ``.cache/compiled-core/<key>/``, ``key`` a hash of every
``pizzastream/*.py``, the interpreter and mypyc, so an edit or another Python builds anew.
``jobs.runtime`` adds the build to the packages it ships to a local job, and
``deploy/package.sh`` to the MSF zip (``--into``); MSF's Python (CPython 3.11, Linux x86_64)
is the one the extensions are built for, and they need no C library newer than
manylinux2014's (glibc 2.17, checked at build).

``python -m deploy.compiled_core [--into DIR]`` builds (if needed) and prints the
directory, or copies the extensions into ``DIR/pizzastream``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from importlib import metadata
from pathlib import Path

# As deploy/'s other build tools: package.sh runs them from deploy/, where importing the
# project (orjson, through pizzastream.config) crashes on deploy/platform.py shadowing the
# standard library's ``platform``.
REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "pizzastream"
# The modules of the order path's hot loop (bench.profile): validation and pricing, the
# batch formats, stock, replenishment, the sale and status texts, ticks (whose error is a
# restock error: a class mypyc compiles takes no subclass it does not).
COMPILED = ("batches", "inventory", "order_batches", "orders", "replenishment", "sales", "ticks")
# mypyc's runtime library for them, one per build, inside the package (not top-level).
GROUP = f"{PACKAGE}.core"
CACHE = REPO_ROOT / ".cache" / "compiled-core"
COMPLETE = "complete"
# manylinux2014: the oldest C library the extensions may need
MAX_GLIBC = (2, 17)

_SETUP = """
import sys
from mypyc.build import mypycify
from setuptools import setup
sys.argv[1:] = ["build_ext", "--inplace", "--quiet"]
setup(
    name="pizzastream-core",
    ext_modules=mypycify(
        ["--config-file", "/dev/null", "--ignore-missing-imports", *{paths!r}],
        opt_level="3",
        debug_level="0",
        group_name={group!r},
    ),
)
"""


def build_key(root: Path = REPO_ROOT) -> str:
    """What a build depends on: which modules it compiles, every source of the package (a
    compiled module may rely on another's types), this interpreter's ABI and mypyc's
    version."""
    digest = hashlib.sha256(",".join(COMPILED).encode())
    digest.update(str(sysconfig.get_config_var("EXT_SUFFIX")).encode())
    digest.update(metadata.version("mypy").encode())
    for source in sorted((root / PACKAGE).glob("*.py")):
        digest.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    return digest.hexdigest()[:24]


def extensions(build: Path) -> list[Path]:
    """The extension files of a build (the compiled modules and their runtime library)."""
    return sorted((build / PACKAGE).glob(f"*{sysconfig.get_config_var('EXT_SUFFIX')}"))


def build(root: Path = REPO_ROOT, cache: Path = CACHE) -> Path:
    """The build of the current sources (``<build>/pizzastream/*.so``), made if missing.
    Builds in a directory of its own and renames it into place, so processes that start
    jobs at once may each build, and the first finished one is kept."""
    target = cache / build_key(root)
    if (target / COMPLETE).exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="building-", dir=cache) as work:
        package = Path(work) / PACKAGE
        package.mkdir()
        for source in (root / PACKAGE).glob("*.py"):
            shutil.copy2(source, package / source.name)
        paths = [f"{PACKAGE}/{name}.py" for name in COMPILED]
        run = subprocess.run(
            [sys.executable, "-c", _SETUP.format(paths=paths, group=GROUP)],
            cwd=work,
            capture_output=True,
            text=True,
            env={**os.environ, "MYPY_CACHE_DIR": str(Path(work) / ".mypy_cache")},
        )
        if run.returncode != 0:
            raise RuntimeError(f"mypyc failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
        built = Path(work) / "built"
        (built / PACKAGE).mkdir(parents=True)
        for extension in extensions(Path(work)):
            _check_c_library(extension)
            shutil.move(str(extension), built / PACKAGE / extension.name)
        names = {path.name.split(".")[0] for path in extensions(built)}
        missing = {*COMPILED, GROUP.split(".")[1] + "__mypyc"} - names
        if missing:
            raise RuntimeError(f"mypyc built no extension for {sorted(missing)}")
        (built / COMPLETE).write_text(target.name)
        try:
            built.rename(target)
        except OSError:
            if not (target / COMPLETE).exists():  # not another process's finished build
                raise
    return target


def _check_c_library(extension: Path) -> None:
    """Refuses an extension that needs a glibc newer than ``MAX_GLIBC``: MSF's runtime
    would fail to load it."""
    symbols = subprocess.run(
        ["objdump", "-T", str(extension)], capture_output=True, text=True, check=True
    ).stdout
    needed = {tuple(map(int, found)) for found in re.findall(r"GLIBC_(\d+)\.(\d+)", symbols)}
    if needed and max(needed) > MAX_GLIBC:
        raise RuntimeError(f"{extension.name} needs glibc {max(needed)} > {MAX_GLIBC}")


def ship_into(code: Path, root: Path = REPO_ROOT) -> list[Path]:
    """Copies the build of the current sources into ``code/pizzastream`` (a copy of the
    package the job ships), where each extension takes the place of its ``.py``."""
    shipped = []
    for extension in extensions(build(root)):
        shipped.append(Path(shutil.copy2(extension, code / PACKAGE / extension.name)))
    return shipped


def compiled_checkout(into: Path, root: Path = REPO_ROOT) -> Path:
    """``into`` made a stand-in for the repository whose ``pizzastream`` is a copy holding
    the compiled core, every other entry a link to the repository's (so what the package
    finds beside itself, the configuration and the local stack, is the same). For running
    the rules compiled in a process of their own (``sys.path[0] = into``): the rule tests,
    ``bench.profile``."""
    for entry in root.iterdir():
        if entry.name != PACKAGE and not entry.name.startswith((".git", ".cache")):
            (into / entry.name).symlink_to(entry)
    shutil.copytree(root / PACKAGE, into / PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
    ship_into(into, root)
    return into


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.compiled_core", description=__doc__)
    parser.add_argument("--into", type=Path, help="copy the extensions into DIR/pizzastream")
    args = parser.parse_args(argv)
    if args.into:
        (args.into / PACKAGE).mkdir(parents=True, exist_ok=True)
        for path in ship_into(args.into):
            print(path)
    else:
        print(build())
    return 0


if __name__ == "__main__":
    sys.exit(main())
