"""The compiled core (deploy.compiled_core) decides what the plain Python rules decide: the
rule tests run against the compiled modules, and a build is the one of the current sources."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import pytest

from deploy import compiled_core
from pizzastream.config import REPO_ROOT

pytestmark = pytest.mark.slow

# The tests of the compiled modules' rules.
RULE_TESTS = [
    f"tests/pizzastream/test_{name}.py"
    for name in compiled_core.COMPILED
    if (REPO_ROOT / f"tests/pizzastream/test_{name}.py").exists()
]

# Tests of the test harness, not of the rules: it swaps a method of ShardDesk to show the
# comparison can fail, and a compiled class takes no new methods.
NOT_OF_THE_RULES = ["tests/pizzastream/test_order_batches.py::test_a_broken_desk_is_caught"]

RUN_AGAINST_COMPILED = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    import importlib, pytest
    for name in sys.argv[2].split(","):
        module = importlib.import_module("pizzastream." + name)
        assert module.__file__.endswith(".so"), module.__file__
    print("compiled:", sys.argv[2])
    sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", *sys.argv[3:]]))
""")


@pytest.fixture(scope="module")
def compiled_package(tmp_path_factory):
    """The repository with a copy of the package holding the build of its sources."""
    return compiled_core.compiled_checkout(tmp_path_factory.mktemp("compiled"))


def test_the_rule_tests_pass_against_the_compiled_modules(compiled_package):
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            RUN_AGAINST_COMPILED,
            str(compiled_package),
            ",".join(compiled_core.COMPILED),
            *RULE_TESTS,
            *(f"--deselect={test}" for test in NOT_OF_THE_RULES),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-3000:]
    assert "compiled:" in run.stdout


def test_a_build_is_keyed_by_the_sources(tmp_path):
    root = tmp_path / "repo"
    shutil.copytree(REPO_ROOT / "pizzastream", root / "pizzastream")
    before = compiled_core.build_key(root)
    assert compiled_core.build_key(root) == before
    (root / "pizzastream" / "catalog.py").write_text("# edited\n", encoding="utf-8")
    assert compiled_core.build_key(root) != before
    assert compiled_core.build(REPO_ROOT).name == compiled_core.build_key(REPO_ROOT)
