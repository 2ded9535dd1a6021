"""The Python workers import the project's packages from what the job ships them, not from
the directory they happen to start in (on MSF that is not the repository)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from pizzastream.config import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCRIPT = textwrap.dedent(f"""
    import sys
    sys.path.insert(0, {str(REPO_ROOT)!r})
    from pyflink.common import Types
    from jobs import runtime
    from pizzastream.config import load_properties

    def worker_reason(_):
        from pizzastream.orders import Reason  # imported inside the Python worker
        return Reason.OVERSIZE.value

    env = runtime.stream_environment(load_properties())
    stream = env.from_collection([1, 2], type_info=Types.INT())
    with stream.map(worker_reason, output_type=Types.STRING()).execute_and_collect() as rows:
        print(sorted(rows))
""")


def test_workers_import_shipped_packages_outside_the_repository(tmp_path):
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "['oversize', 'oversize']" in run.stdout


# Two jobs one after the other in one JVM, their Python embedded (thread mode): one
# interpreter serves both, and Flink deletes the first job's shipped files with it.
TWO_JOBS = textwrap.dedent(f"""
    import copy
    import sys
    sys.path.insert(0, {str(REPO_ROOT)!r})
    from pyflink.common import Types
    from jobs import runtime
    from pizzastream.config import load_properties

    def first(_):
        from jobs import operators  # the first job imports jobs, not order_enrichment
        return operators.__name__

    def second(_):
        from jobs.order_enrichment import EnrichOrderBatches  # first imported here
        return EnrichOrderBatches.__name__

    props = copy.deepcopy(load_properties())
    props["FlinkTuning"]["python.execution-mode"] = "thread"
    for function in (first, second):
        env = runtime.stream_environment(props)
        stream = env.from_collection([1], type_info=Types.INT())
        with stream.map(function, output_type=Types.STRING()).execute_and_collect() as rows:
            print(sorted(rows))
""")


def test_a_second_job_in_the_same_jvm_imports_what_the_first_never_did(tmp_path):
    """``jobs/__init__.py`` imports every shipped module when it runs embedded: without it
    the second job failed with ``No module named 'jobs.order_enrichment'``."""
    run = subprocess.run(
        [sys.executable, "-c", TWO_JOBS], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "['jobs.operators']" in run.stdout
    assert "['EnrichOrderBatches']" in run.stdout


# Run from the repository root, as the demo, the benchmarks and the tests run jobs.
WHAT_THE_WORKER_IMPORTS = textwrap.dedent(f"""
    import sys
    sys.path.insert(0, {str(REPO_ROOT)!r})
    from pyflink.common import Types
    from jobs import runtime
    from pizzastream.config import load_properties

    def imported(_):
        import os
        import pizzastream.order_batches
        return pizzastream.order_batches.__file__ + "|" + os.getcwd()

    env = runtime.stream_environment(load_properties())
    stream = env.from_collection([1], type_info=Types.INT())
    with stream.map(imported, output_type=Types.STRING()).execute_and_collect() as rows:
        print("imported:", list(rows)[0])
""")


def test_a_local_worker_started_from_the_repository_runs_the_compiled_core():
    """The worker runs in the run directory, not the repository, so the shipped copy of the
    package, with its compiled core (deploy.compiled_core), is the one it imports."""
    run = subprocess.run(
        [sys.executable, "-c", WHAT_THE_WORKER_IMPORTS],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    (line,) = [line for line in run.stdout.splitlines() if line.startswith("imported: ")]
    module, cwd = line.removeprefix("imported: ").split("|")
    assert module.endswith(".so") and "pizzastream-code-" in module, module
    assert cwd != str(REPO_ROOT), cwd
