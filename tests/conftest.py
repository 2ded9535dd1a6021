"""Session fixtures: one configuration, one local stack, jobs on the Flink mini-cluster.

`make test` starts the stack before pytest; the fixtures make sure it is up (no test skips
for a missing server) and give each end-to-end test clean streams and tables.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

from pizzastream.config import load_properties

# Property and fuzz tests: in CI the same examples every run (``ci``, the default: a failure
# is reproducible and a green run is not luck); ``HYPOTHESIS_PROFILE=bench`` draws new
# examples with ten times the budget (fuzz tests scale their own budget from it, see
# ``tests/fuzzing.py``).
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("bench", max_examples=1000, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


FAILURE_SUITE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "failures")


def pytest_collection_modifyitems(items):
    """The failure suite (``tests/failures/``) runs first, the other tests after it in
    collection order (the package directories, alphabetically)."""
    items.sort(key=lambda item: not str(item.path).startswith(FAILURE_SUITE + os.sep))


@pytest.fixture(scope="session")
def props():
    return load_properties()


@pytest.fixture(scope="session")
def local_stack(props):
    import stack

    stack.up(props)
    return props


@pytest.fixture(scope="session")
def redis_cluster(props):
    """A Redis cluster of three masters with TLS and AUTH (``tests/redis_cluster.py``),
    started for the tests that ask for it; yields ``props`` with the ``Redis`` group pointing
    at it, ``cluster_mode`` on. Stopped, its files removed, at the end of the session."""
    from tests.redis_cluster import LocalRedisCluster

    with LocalRedisCluster(props) as cluster_props:
        yield cluster_props


@pytest.fixture
def clean_stack(local_stack):
    """Empty streams and fact tables, initial inventory, empty Redis."""
    import stack

    stack.reset_data(local_stack)
    return local_stack


@pytest.fixture(scope="session")
def api_server(local_stack):
    """One API server (``python -m api serve``) for the whole session, on a free port, on a
    clean stack, polling ``metrics_publication`` every 0.3 s so tests see corrections
    quickly. Yields its base URL."""
    import os
    import socket
    import subprocess
    import sys

    import stack
    from api.__main__ import healthy
    from pizzastream.config import REPO_ROOT
    from stack.process import wait_until

    stack.reset_data(local_stack)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = REPO_ROOT / ".stack" / "logs" / "api-tests.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "api", "serve", "--port", str(port)],
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PIZZASTREAM__API__PUBLICATION_POLL_S": "0.3"},
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        if not wait_until(lambda: healthy(base_url) or server.poll() is not None, 60):
            raise RuntimeError(f"API did not answer; see {log}")
        if server.poll() is not None:
            raise RuntimeError(f"API exited: {log.read_text()[-2000:]}")
        yield base_url
    finally:
        server.terminate()
        server.wait(20)


WAREHOUSE_ENGINES = ("postgresql", "redshift")


@pytest.fixture(params=WAREHOUSE_ENGINES)
def engine_stack(clean_stack, request):
    """``clean_stack`` with ``Warehouse.engine`` set to each warehouse back end in turn, so
    both pass the same tests. Locally ``redshift`` runs its statements on the PostgreSQL
    stand-in (``Warehouse.stand_in``), its COPY reading the files it staged in moto's S3."""
    return {**clean_stack, "Warehouse": {**clean_stack["Warehouse"], "engine": request.param}}
