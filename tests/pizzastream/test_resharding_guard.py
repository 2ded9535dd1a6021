"""The consumer-lag guard of ``python -m pizzastream.admin shards --apply`` (connector 4.3.0's
parent-before-child race, FLINK-32218; docs/resharding.md): the decision
(``resharding.lag_verdict``), the re-check window that leaves out the tool's own reads
(``admin.LagGuard``), the check before every step (``admin.apply``), and the CloudWatch read
(``kinesis_shards.consumer_lag_ms``, on moto in process)."""

from __future__ import annotations

import datetime as dt

import boto3
import pytest
from moto import mock_aws

from connectors.kinesis_shards import consumer_lag_ms
from pizzastream import admin
from pizzastream import resharding as rs


def _verdict(lag, *, source="cloudwatch", override=False, earlier=None):
    return rs.lag_verdict(
        lag,
        stream="orders",
        lag_source=source,
        max_lag_ms=60_000,
        lookback_s=300,
        even_if_behind=override,
        earlier=earlier,
    )


def test_a_lag_within_the_bound_proceeds():
    v = _verdict(60_000)
    assert v.proceed and v.checked and v.lag_ms == 60_000
    assert "60,000 ms" in v.message and "within" in v.message


def test_a_lag_over_the_bound_refuses_naming_the_lag_the_bug_and_the_docs():
    v = _verdict(60_001)
    assert not v.proceed and v.checked
    for part in (
        "60,001 ms",
        "max_consumer_lag_ms",
        "FLINK-32218",
        "docs/resharding.md",
        "--even-if-behind",
    ):
        assert part in v.message, v.message


def test_even_if_behind_overrides_a_lag_and_says_so():
    v = _verdict(3_600_000, override=True)
    assert v.proceed and "--even-if-behind" in v.message and "FLINK-32218" in v.message


def test_no_datapoint_is_unknown_and_refused_unless_overridden():
    v = _verdict(None)
    assert not v.proceed and v.checked and v.lag_ms is None
    assert "no GetRecords.IteratorAgeMilliseconds datapoint" in v.message
    assert _verdict(None, override=True).proceed


def test_lag_source_none_proceeds_unchecked_and_says_so():
    v = _verdict(None, source="none")
    assert v.proceed and not v.checked and "not checked" in v.message
    assert _verdict(10**9, source="none").proceed  # nothing read, nothing weighed


def test_a_recheck_without_newer_datapoints_keeps_the_earlier_reading():
    ok, behind = _verdict(1_000), _verdict(None)
    assert _verdict(None, earlier=ok).proceed
    assert not _verdict(None, earlier=behind).proceed  # unknown stays unknown
    assert not _verdict(90_000, earlier=ok).proceed  # a newer reading wins


def test_an_unknown_lag_source_is_a_config_error():
    with pytest.raises(rs.ConfigError, match="lag_source"):
        _verdict(0, source="kinesis")


def _settings(**overrides: str) -> rs.Settings:
    return rs.Settings.from_properties({rs.GROUP: _settings_group() | overrides})


def test_settings_read_the_guard_keys_and_reject_an_unknown_lag_source():
    s = _settings()
    assert (s.lag_source, s.max_consumer_lag_ms, s.lag_lookback_s) == ("cloudwatch", 60_000, 300)
    with pytest.raises(rs.ConfigError, match="lag_source"):
        _settings(lag_source="metrics")
    with pytest.raises(rs.ConfigError, match=r"missing property Resharding\.max_consumer_lag_ms"):
        rs.Settings.from_properties(
            {rs.GROUP: {k: v for k, v in _settings_group().items() if k != "max_consumer_lag_ms"}}
        )


def _settings_group() -> dict[str, str]:
    return {
        "load_source": "records",
        "window_s": "300",
        "shard_records_per_s": "1000",
        "shard_bytes_per_s": "1048576",
        "split_above": "0.8",
        "merge_below": "0.5",
        "sample_records_per_shard": "100",
        "active_timeout_s": "5",
        "lag_source": "cloudwatch",
        "max_consumer_lag_ms": "60000",
        "lag_lookback_s": "300",
    }


class _Clock:
    def __init__(self) -> None:
        self.t = dt.datetime(2026, 1, 1, 12, 0, 30, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.t


def test_rechecks_look_only_at_minutes_after_the_tools_own_reads():
    clock, asked = _Clock(), []
    answers = iter([1_000.0, None, 250_000.0])

    def read(start, end):
        asked.append((start, end))
        return next(answers)

    guard = admin.LagGuard(read, "orders", _settings(), even_if_behind=False, now=clock)
    assert guard.check().proceed
    assert asked[0] == (clock.t - dt.timedelta(seconds=300), clock.t)
    clock.t += dt.timedelta(seconds=20)  # the tool reads its window: 12:00:50
    guard.reads_done()
    clock.t += dt.timedelta(seconds=5)  # 12:00:55: the minute of the reads
    guard.recheck()  # not asked; the first reading stands
    assert len(asked) == 1
    clock.t += dt.timedelta(seconds=60)  # 12:01:55
    guard.recheck()  # no datapoint: the first reading stands
    assert asked[1][0] == dt.datetime(2026, 1, 1, 12, 1, tzinfo=dt.UTC)
    clock.t += dt.timedelta(seconds=60)
    with pytest.raises(admin.Refused, match="250,000 ms"):
        guard.recheck()  # the jobs fell behind meanwhile


class _Map:
    """Two shards, the lower one holding two hot keys: a plan of one split, then another."""

    def __init__(self) -> None:
        half = rs.HASH_KEY_MAX // 2
        self.shards = [rs.Shard("a", 0, half), rs.Shard("b", half + 1, rs.HASH_KEY_MAX)]
        self.steps: list[str] = []

    def open_shards(self):
        return list(self.shards)

    def wait_active(self):
        pass

    def split(self, shard_id, new_starting_hash_key):
        i = next(i for i, s in enumerate(self.shards) if s.shard_id == shard_id)
        s = self.shards[i]
        self.shards[i : i + 1] = [
            rs.Shard(f"{shard_id}L", s.start, new_starting_hash_key - 1),
            rs.Shard(f"{shard_id}U", new_starting_hash_key, s.end),
        ]
        self.steps.append(f"split {shard_id}")

    def merge(self, shard_id, adjacent_shard_id):
        raise AssertionError("no merge planned")


def test_apply_checks_before_every_step_and_stops_when_refused():
    shards = _Map()
    keys = [str(k) for k in range(1, 200) if rs.hash_key(str(k)) <= rs.HASH_KEY_MAX // 2][:3]
    loads = [rs.KeyLoad(k, rs.Load(900, 0)) for k in keys]  # 2700/s: two splits
    policy = rs.Policy()
    assert len(rs.plan(shards.open_shards(), loads, policy).steps) == 2
    checks = []

    def guard():
        checks.append(len(shards.steps))
        if len(checks) == 2:
            raise admin.Refused("behind")

    with pytest.raises(admin.Refused):
        admin.apply(shards, loads, policy, before_step=guard, log=lambda _: None)
    assert checks == [0, 1] and len(shards.steps) == 1  # checked before each step


@pytest.fixture
def cloudwatch(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield boto3.client("cloudwatch", region_name="us-east-1")


def _lag(cloudwatch, stream: str, value: float, when: dt.datetime) -> None:
    cloudwatch.put_metric_data(
        Namespace="AWS/Kinesis",
        MetricData=[
            {
                "MetricName": "GetRecords.IteratorAgeMilliseconds",
                "Value": value,
                "Timestamp": when,
                "Dimensions": [{"Name": "StreamName", "Value": stream}],
            }
        ],
    )


def test_consumer_lag_is_the_maximum_of_the_streams_datapoints_in_the_window(cloudwatch):
    now = dt.datetime.now(dt.UTC)
    _lag(cloudwatch, "s", 2_000, now - dt.timedelta(minutes=3))
    _lag(cloudwatch, "s", 45_000, now - dt.timedelta(minutes=2))
    _lag(cloudwatch, "s", 500, now - dt.timedelta(minutes=1))
    _lag(cloudwatch, "s", 999_999, now - dt.timedelta(minutes=30))  # before the window
    _lag(cloudwatch, "other", 999_999, now - dt.timedelta(minutes=1))
    assert consumer_lag_ms(cloudwatch, "s", start=now - dt.timedelta(minutes=5), end=now) == 45_000
    assert consumer_lag_ms(cloudwatch, "t", start=now - dt.timedelta(minutes=5), end=now) is None
