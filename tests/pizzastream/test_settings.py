"""The typed property groups: every file the platform starts with parses, each kind of bad
value is refused naming its group and key, and the defaults are what the code read before."""

from __future__ import annotations

import json
import os
import re
from datetime import timedelta
from pathlib import Path

import pytest

from deploy import msf
from pizzastream import config, settings
from pizzastream.settings import ConfigError

EXAMPLE = msf.ENVIRONMENTS_DIR / "prod.example.json"


def _local() -> config.Props:
    return config.load_properties(config.LOCAL_PROPERTIES)


def _with(group: str, **values: str) -> config.Props:
    props = _local()
    props[group] = {**props[group], **values}
    return props


def _without(group: str, key: str) -> config.Props:
    props = _local()
    del props[group][key]
    return props


def test_the_local_configuration_parses_every_group(monkeypatch):
    for name in [n for n in os.environ if n.startswith(config.ENV_OVERRIDE_PREFIX)]:
        monkeypatch.delenv(name)
    parsed = settings.validate(_local())
    assert set(parsed.groups) == set(settings.GROUPS)
    assert parsed.inventory.history.gap_hours == 48
    assert parsed.streams.name("orders_enriched") == "orders-enriched"
    assert parsed.streams.arn("orders", parsed.aws) == config.stream_arn(_local(), "orders")
    assert parsed.redis.tls is True and parsed.redis.tls_ca_file is not None
    assert parsed.flink_tuning.python["python.execution-mode"] == "process"
    assert "shard_count" not in parsed.streams.names


@pytest.mark.parametrize("job", msf.jobs())
def test_every_msf_applications_properties_parse(job):
    body = msf.render(job, "111122223333", "us-east-1", EXAMPLE)
    groups = {
        g["PropertyGroupId"]: {k: str(v) for k, v in g["PropertyMap"].items()}
        for g in body["ApplicationConfiguration"]["EnvironmentProperties"]["PropertyGroups"]
    }
    parsed = settings.validate(groups)
    assert set(parsed.groups) == set(groups) - {msf.RUN_OPTIONS}
    if parsed.has("Aurora"):  # the password comes from its secret at start
        assert parsed.aurora.password == "" and parsed.aurora.password_secret_arn


def test_an_absent_group_is_refused_only_when_asked_for():
    parsed = settings.validate({"Aws": {"region": "eu-west-1"}})
    with pytest.raises(ConfigError, match=r"^Delivery: property group missing") as error:
        parsed.delivery  # noqa: B018 - the access is what raises
    assert error.value.group == "Delivery"
    # The groups the jobs read with props.get(group, {}) keep their defaults.
    assert parsed.order_path == settings.OrderPathSettings()
    assert parsed.flink_tuning.parallelism == 1


@pytest.mark.parametrize(
    ("group", "key", "value", "message"),
    [
        ("Inventory", "dedup_ttl_hours", "abc", "Inventory.dedup_ttl_hours: 'abc' is not a number"),
        ("OrderPath", "store_shards", "3.5", "OrderPath.store_shards: '3.5' is not a whole number"),
        (
            "OrderPath",
            "batch_max_records",
            "0",
            "OrderPath.batch_max_records: '0' must be positive",
        ),
        (
            "Warehouse",
            "serialization_backoff_s",
            "-1",
            "Warehouse.serialization_backoff_s: '-1' must not be negative",
        ),
        ("Redis", "tls", "yes", "Redis.tls: 'yes' is not true or false"),
        (
            "Redis",
            "write_retry_seconds",
            "-1",
            "Redis.write_retry_seconds: '-1' must not be negative",
        ),
        (
            "Warehouse",
            "engine",
            "oracle",
            "Warehouse.engine: 'oracle' is not one of postgresql, redshift",
        ),
        (
            "Streams",
            "initial_position",
            "EARLIEST",
            "Streams.initial_position: 'EARLIEST' is not one of",
        ),
        ("Pos", "late_share", "1.5", "Pos.late_share: '1.5' must be between 0 and 1"),
        ("Aurora", "port", "x", "Aurora.port: 'x' is not a whole number"),
        ("OrderRules", "max_lines", "many", "OrderRules.max_lines: 'many' is not a whole number"),
        (
            "HourlyMetrics",
            "idle_seconds",
            "soon",
            "HourlyMetrics.idle_seconds: 'soon' is not a number",
        ),
        ("Delivery", "max_fee", "lots", "Delivery.max_fee: 'lots' is not a number"),
        ("Delivery", "kcl_metrics_level", "ALL", "Delivery.kcl_metrics_level: 'ALL' is not one of"),
        ("Resharding", "lag_source", "guess", "Resharding.lag_source"),
        ("Inventory", "history_weeks", "four", "Inventory.history_weeks"),
    ],
)
def test_a_malformed_value_names_its_group_and_key(group, key, value, message):
    with pytest.raises(ConfigError) as error:
        settings.validate(_with(group, **{key: value}))
    assert str(error.value).startswith(message)
    assert error.value.group == group


@pytest.mark.parametrize(
    ("group", "key"),
    [
        ("Aws", "region"),
        ("Aurora", "host"),
        ("Redis", "port"),
        ("Lake", "bucket"),
        ("OrderRules", "max_quantity"),
        ("Inventory", "history_gap_hours"),
        ("Aggregation", "enabled"),
        ("Aggregation", "linger_ms"),
        ("Delivery", "provider_url"),
        ("Delivery", "retry_poll_s"),
        ("Delivery", "max_distance_km"),
        ("Pos", "store_systems"),
        ("Etl", "fetch_rows"),
        ("HourlyMetrics", "dedup_ttl_minutes"),
        ("HourlyMetrics", "staging_prefix"),
        ("Api", "token_secret"),
        ("Resharding", "window_s"),
    ],
)
def test_a_missing_required_key_names_its_group_and_key(group, key):
    with pytest.raises(ConfigError) as error:
        settings.validate(_without(group, key))
    assert f"{group}.{key}" in str(error.value)
    assert error.value.group == group


def test_a_required_password_may_come_from_its_secret():
    props = _without("Aurora", "password")
    props["Aurora"]["password_secret_arn"] = "arn:aws:secretsmanager:us-east-1:1:secret:x"
    assert settings.validate(props).aurora.password == ""


def test_redis_writes_are_retried_for_a_minute_unless_configured_otherwise():
    """``Redis.write_retry_seconds``: how long the jobs' Redis writers send a batch again after
    a connection failure or an error reply of a failover (``pizzastream.flink.RedisBatchSender``);
    0 restarts the job at the first one, as before the setting."""
    group = {"host": "h", "port": "1"}
    assert settings.RedisSettings.from_group(group).write_retry_seconds == 60
    assert (
        settings.RedisSettings.from_group({**group, "write_retry_seconds": "0"}).write_retry_seconds
        == 0
    )
    assert settings.validate(_local()).redis.write_retry_seconds == 60


def test_a_disabled_aggregation_needs_no_sizes():
    props = _local()
    props["Aggregation"] = {"enabled": "false"}
    assert settings.validate(props).aggregation.linger_ms is None


def test_the_defaults_are_what_the_code_read_before():
    """Each default as the reader it replaces had it (``.get(key, default)``)."""
    minimal = {
        "Aws": {"region": "r"},
        "Streams": {"orders": "o"},
        "Warehouse": {"host": "h", "port": "1", "dbname": "d", "user": "u", "password": "p"},
        "Redis": {"host": "h", "port": "1"},
        "Inventory": {"history_gap_hours": "48", "history_weeks": "4"},
        "OrderRules": {
            k: "1"
            for k in (
                "max_quantity",
                "max_lines",
                "max_record_bytes",
                "max_future_seconds",
                "max_age_hours",
            )
        },
        "Delivery": {
            "max_fee": "12.00",
            "max_distance_km": "35",
            "eta_cost_cents_per_min": "10",
            "retry_backoff_s": "5",
            "retry_backoff_max_s": "60",
            "deadline_minutes": "45",
            "retry_poll_s": "1",
            "provider_url": "http://p",
        },
        "Pos": {"store_systems": "2", "batch_interval_s": "900"},
    }
    parsed = settings.validate(minimal)
    assert parsed.streams.initial_position is None  # LATEST for Flink, TRIM_HORIZON for KCL
    assert parsed.warehouse.engine == "postgresql" and parsed.warehouse.stand_in == ""
    assert parsed.warehouse.load_prefix == "warehouse/loads"
    assert (parsed.warehouse.serialization_attempts, parsed.warehouse.serialization_backoff_s) == (
        5,
        0.5,
    )
    assert (parsed.warehouse.copy_batch_rows, parsed.warehouse.copy_flush_interval_ms) == (
        50000,
        1000,
    )
    assert (parsed.redis.tls, parsed.redis.cluster_mode, parsed.redis.tls_ca_file) == (
        False,
        False,
        None,
    )
    assert parsed.inventory.dedup_ttl_hours == 50 and parsed.inventory.dedup_ttl_ms == 180_000_000
    assert parsed.order_rules.catalog_refresh_seconds == 30
    assert (
        parsed.order_path.batch_max_records,
        parsed.order_path.batch_max_delay_ms,
        parsed.order_path.store_shards,
    ) == (1000, 100, 32)
    assert (parsed.flink_tuning.parallelism, parsed.flink_tuning.checkpoint_interval_ms) == (
        1,
        5000,
    )
    delivery = parsed.delivery
    assert (
        delivery.provider_timeout_s,
        delivery.provider_attempts,
        delivery.provider_backoff_s,
    ) == (2, 3, 0.2)
    assert (
        delivery.redis_ttl_s,
        delivery.reference_refresh_s,
        delivery.partner_cache_ttl_s,
        delivery.retry_max_s,
        delivery.unexpected_error_attempts,
        delivery.checkpoint_every_s,
    ) == (86400, 300, 300, 30, 3, 5)
    assert (
        delivery.kcl_max_records,
        delivery.kcl_idle_between_reads_ms,
        delivery.kcl_failover_ms,
        delivery.kcl_shard_sync_ms,
        delivery.kcl_parent_shard_poll_ms,
        delivery.kcl_metrics_level,
        delivery.kcl_shutdown_grace_ms,
        delivery.kcl_log_level,
        delivery.kcl_h2c_bridge,
        delivery.kcl_cbor_enabled,
    ) == (100, 500, 10000, 60000, 10000, "SUMMARY", 10000, "INFO", "auto", False)
    assert parsed.pos.poll_interval_s == 1 and parsed.pos.late_s == 7200
    assert parsed.pos.fault_seed == 1


def test_the_existing_readers_results_are_kept():
    parsed = settings.validate(_local())
    assert parsed.hourly_metrics.timing.dedup_ttl == timedelta(minutes=160)
    assert parsed.delivery.rules.max_fee_cents == 1200
    assert parsed.resharding.policy.split_above == 0.8


def test_pass_through_keys_stay_as_written():
    props = _with("Delivery", **{"kcl.maxLeasesForWorker": "5"})
    assert dict(settings.validate(props).delivery.kcl) == {"maxLeasesForWorker": "5"}


def test_flink_tunings_state_and_memory_options_stay_as_written_apart_from_pythons():
    props = _with(
        "FlinkTuning",
        **{
            "state.backend.type": "hashmap",
            "taskmanager.memory.managed.size": "256m",
            "python.fn-execution.bundle.size": "500",
        },
    )
    tuning = settings.validate(props).flink_tuning
    assert dict(tuning.state_and_memory) == {
        "state.backend.type": "hashmap",
        "taskmanager.memory.managed.size": "256m",
    }
    assert tuning.python["python.fn-execution.bundle.size"] == "500"
    assert not set(tuning.python) & set(tuning.state_and_memory)
    assert settings.FlinkTuningSettings().state_and_memory == {}


def test_a_properties_file_with_a_bad_value_fails_validation(tmp_path: Path):
    path = tmp_path / "props.json"
    path.write_text(
        json.dumps(
            [
                {
                    "PropertyGroupId": "Inventory",
                    "PropertyMap": {
                        "dedup_ttl_hours": "abc",
                        "history_gap_hours": "48",
                        "history_weeks": "4",
                    },
                }
            ]
        )
    )
    with pytest.raises(
        ConfigError, match=re.escape("Inventory.dedup_ttl_hours: 'abc' is not a number")
    ):
        settings.validate(config.load_properties(path))


def test_both_redshift_connections_verify_the_server_as_configured():
    db = settings.WarehouseSettings.from_group(
        {
            "host": "wg.example",
            "port": "5439",
            "dbname": "dev",
            "user": "u",
            "password": "p",
            "sslmode": "verify-full",
            "connect_timeout_s": "7",
        }
    )
    assert db.redshift_connection() == {
        "host": "wg.example",
        "port": 5439,
        "database": "dev",
        "user": "u",
        "password": "p",
        "ssl": True,
        "sslmode": "verify-full",
        "timeout": 7,
    }
