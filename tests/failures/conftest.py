"""Fixtures of the failure suite: one pipeline (both jobs, AWS through the fault proxy)
for the whole end-to-end module, and the summary table at the end of the run."""

from __future__ import annotations

import shutil

import pytest

from pizzastream.config import REPO_ROOT
from tests.failures import summary

WORKDIR = REPO_ROOT / ".stack" / "failures"

STOCK_FACTOR = 0.03  # opening stock as a share of the seeded one: stores run short


@pytest.fixture(scope="module")
def pipeline(local_stack):
    """Clean data, tight stock, the fault proxy in front of moto, both jobs running. Logs
    of the run (each job start's Flink log, the proxy's, the cluster's) stay in
    ``.stack/failures/`` until the next run."""
    import stack
    from stack.faults import FaultProxy
    from tests.failures.harness import JOBS, Pipeline, query

    props = local_stack
    stack.reset_data(props)
    # The opening stock the job reads, wherever the schema keeps it.
    for (table,) in query(
        props,
        "SELECT t FROM unnest(ARRAY['inventory', 'opening_inventory'])"
        " AS t WHERE to_regclass(t) IS NOT NULL",
    ):
        query(props, f"UPDATE {table} SET on_hand = floor(on_hand * {STOCK_FACTOR:f})")
    workdir = WORKDIR
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    proxy = FaultProxy(props["Aws"]["endpoint"], log=workdir / "faults.log").start()
    line = Pipeline(props, proxy, workdir)
    try:
        for job in JOBS:
            line.start(job)
        yield line
    finally:
        line.stop_all()
        if line.cluster is not None:
            line.cluster.stop()
        proxy.stop()
        line.cleanup_checkpoints()


def pytest_terminal_summary(terminalreporter):
    summary.report(terminalreporter)
