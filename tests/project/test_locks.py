"""The two locks `make lock` writes: requirements.lock pins what pyproject.toml asks for with
every extra (dev, bench, deploy), which scripts/setup.sh installs; requirements-runtime.lock
pins the product's own dependencies only, at the same versions, for what is shipped
(deploy/docker/Dockerfile; tests/deploy/test_deploy.py holds MSF's and Lambda's pins to it).
A runtime pin that differed from the tested one would ship a version no test ran; a test or
deploy tool in the runtime lock would ship with the product."""

from __future__ import annotations

import re
import tomllib

from packaging.utils import canonicalize_name

from pizzastream.config import REPO_ROOT
from tests.deploy.test_deployed_reads import _distributions

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", re.MULTILINE)


def pins(lock: str) -> dict[str, str]:
    """``{distribution: version}`` of a pip-compile output."""
    return {
        canonicalize_name(name): version
        for name, version in PIN.findall((REPO_ROOT / lock).read_text())
    }


def _project() -> dict:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]


def test_every_runtime_pin_is_the_full_locks_pin():
    full, runtime = pins("requirements.lock"), pins("requirements-runtime.lock")
    assert runtime, "requirements-runtime.lock pins nothing"
    differing = {name: (version, full.get(name)) for name, version in runtime.items()}
    assert {name: v for name, v in differing.items() if v[0] != v[1]} == {}


def test_the_runtime_lock_holds_exactly_what_the_dependencies_bring():
    """Its distributions are the closure of pyproject.toml's ``dependencies`` (as installed
    from the full lock, so at the locked versions), nothing less and nothing of the extras."""
    closure = {canonicalize_name(name) for name in _distributions(_project()["dependencies"])}
    assert set(pins("requirements-runtime.lock")) == closure


def test_the_test_bench_and_deploy_tools_are_only_in_the_full_lock():
    tools = {"pytest", "hypothesis", "moto", "locust", "aws-cdk-lib", "pip-tools"}
    assert tools <= set(pins("requirements.lock"))
    assert tools & set(pins("requirements-runtime.lock")) == set()
