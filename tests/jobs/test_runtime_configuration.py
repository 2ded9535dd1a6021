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
