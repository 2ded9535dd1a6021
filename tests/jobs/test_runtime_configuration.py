"""Local runs (jobs, tests, benchmarks) keep state as MSF does: RocksDB with incremental
snapshots and about a KPU's memory for it per slot, unless FlinkTuning says otherwise."""

from __future__ import annotations

import copy

from jobs import runtime
from pizzastream.config import load_properties


def _configuration(**tuning: str) -> dict[str, str]:
    props = copy.deepcopy(load_properties())
    props["FlinkTuning"].update(tuning)
    config = runtime.flink_configuration(props)
    return {
        key: config.get_string(key, "")
        for key in (
            "state.backend.type",
            "state.backend.incremental",
            "taskmanager.memory.managed.size",
            "state.backend.rocksdb.use-bloom-filter",
        )
    }


def test_local_runs_keep_state_as_msf_does():
    settings = _configuration(parallelism="1")
    assert settings["state.backend.type"] == "rocksdb"
    assert settings["state.backend.incremental"] == "true"
    assert settings["taskmanager.memory.managed.size"] == (f"{runtime.MANAGED_MEMORY_PER_SLOT_MB}m")


def test_managed_memory_grows_with_the_slots():
    settings = _configuration(parallelism="2")
    assert settings["taskmanager.memory.managed.size"] == (
        f"{2 * runtime.MANAGED_MEMORY_PER_SLOT_MB}m"
    )


def test_flink_tuning_overrides_the_state_settings_locally():
    settings = _configuration(
        **{
            "state.backend.type": "hashmap",
            "state.backend.incremental": "false",
            "state.backend.rocksdb.use-bloom-filter": "true",
            "taskmanager.memory.managed.size": "256m",
        }
    )
    assert settings == {
        "state.backend.type": "hashmap",
        "state.backend.incremental": "false",
        "taskmanager.memory.managed.size": "256m",
        "state.backend.rocksdb.use-bloom-filter": "true",
    }


def _python_operators(env) -> dict[str, str]:
    """Each Python operator of ``env``'s dataflow so far: its name and the class of the
    operator running it (``Embedded...``: thread mode, ``External...``: worker process)."""
    found: dict[str, str] = {}
    seen: set[int] = set()
    pending = list(env._j_stream_execution_environment.getTransformations())
    while pending:
        transformation = pending.pop()
        if transformation.getId() in seen:
            continue
        seen.add(transformation.getId())
        pending.extend(transformation.getInputs())
        kind = transformation.getClass().getSimpleName()
        if kind not in ("OneInputTransformation", "TwoInputTransformation"):
            continue
        factory = transformation.getOperatorFactory()
        if factory.getClass().getSimpleName() != "SimpleOperatorFactory":
            continue
        operator = factory.getOperator().getClass().getSimpleName()
        if "Python" in operator or operator.startswith("CheckpointedTimers"):
            found[transformation.getName()] = operator
    return found


def _thread_mode_environment():
    props = copy.deepcopy(load_properties())
    props["FlinkTuning"][runtime.PYTHON_EXECUTION_MODE] = "thread"
    return runtime.stream_environment(props), props


def test_python_runs_in_worker_processes_inside_the_block_only():
    from pyflink.common import Types

    env, _ = _thread_mode_environment()
    numbers = env.from_collection([1, 2], type_info=Types.INT())
    numbers.map(lambda n: n, output_type=Types.INT()).name("embedded").print()
    with runtime.python_in_worker_processes(env):
        numbers.map(lambda n: n, output_type=Types.INT()).name("in-a-worker").print()
    numbers.map(lambda n: n, output_type=Types.INT()).name("embedded-again").print()
    operators = _python_operators(env)
    assert operators["embedded"].startswith("Embedded"), operators
    assert operators["in-a-worker"].startswith("External"), operators
    assert operators["embedded-again"].startswith("Embedded"), operators


def test_in_thread_mode_the_order_jobs_run_embedded_and_the_hour_publisher_in_a_worker():
    from jobs import hourly_metrics, inventory_windowing, order_enrichment

    modes = {}
    for job in (order_enrichment, inventory_windowing, hourly_metrics):
        env, props = _thread_mode_environment()
        job.build(env, props)
        modes[job.__name__] = _python_operators(env)
    assert modes["jobs.order_enrichment"] and modes["jobs.inventory_windowing"], modes
    for job in ("jobs.order_enrichment", "jobs.inventory_windowing"):
        assert all(op.startswith("Embedded") for op in modes[job].values()), modes[job]
    hourly = modes["jobs.hourly_metrics"]
    # in a worker process, with its timers in every checkpoint (operators.keyed_co_process)
    assert hourly.pop("publish-hours") == "CheckpointedTimersKeyedCoProcessOperator", modes
    assert hourly and all(op.startswith("External") for op in hourly.values()), modes
