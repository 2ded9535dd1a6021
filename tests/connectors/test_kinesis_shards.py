"""``connectors.kinesis_shards.CloudWatchLoadMeter``: the per-shard totals production reads
from CloudWatch, and the per-key split sampled from the records, combined (moto in process:
its Kinesis keeps records, its CloudWatch answers GetMetricData on the data points put)."""

from __future__ import annotations

import datetime as dt

import boto3
import pytest
from moto import mock_aws

from connectors.kinesis_shards import CloudWatchLoadMeter, KinesisShards, ReshardError
from pizzastream import resharding as rs

REGION = "us-east-1"


@pytest.fixture
def clients(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        kinesis = boto3.client("kinesis", region_name=REGION)
        kinesis.create_stream(StreamName="s", ShardCount=2)
        yield kinesis, boto3.client("cloudwatch", region_name=REGION)


def _metric(cloudwatch, shard_id: str, name: str, value: float, when: dt.datetime) -> None:
    cloudwatch.put_metric_data(
        Namespace="AWS/Kinesis",
        MetricData=[
            {
                "MetricName": name,
                "Value": value,
                "Timestamp": when,
                "Dimensions": [
                    {"Name": "StreamName", "Value": "s"},
                    {"Name": "ShardId", "Value": shard_id},
                ],
            }
        ],
    )


def test_key_loads_take_the_split_from_records_and_the_level_from_cloudwatch(clients):
    kinesis, cloudwatch = clients
    stream = KinesisShards(kinesis, "s")
    shards = stream.open_shards()
    keys = {
        shard.shard_id: [
            str(k) for k in range(1, 500) if shard.start <= rs.hash_key(str(k)) <= shard.end
        ][:2]
        for shard in shards
    }
    (a1, a2), (b1, _) = keys[shards[0].shard_id], keys[shards[1].shard_id]
    # sampled records: on shard 0, a1 three times as often as a2; shard 1 only b1
    kinesis.put_records(
        StreamName="s",
        Records=[{"PartitionKey": k, "Data": b"x" * 99} for k in [a1] * 30 + [a2] * 10 + [b1] * 5],
    )
    now = dt.datetime.now(dt.UTC)
    _metric(
        cloudwatch, shards[0].shard_id, "IncomingRecords", 120_000, now - dt.timedelta(minutes=2)
    )
    _metric(
        cloudwatch, shards[0].shard_id, "IncomingBytes", 12_000_000, now - dt.timedelta(minutes=2)
    )
    _metric(
        cloudwatch, shards[1].shard_id, "IncomingRecords", 30_000, now - dt.timedelta(minutes=3)
    )
    _metric(
        cloudwatch, shards[1].shard_id, "IncomingBytes", 3_000_000, now - dt.timedelta(minutes=3)
    )

    meter = CloudWatchLoadMeter(kinesis, cloudwatch, stream, sample_per_shard=1_000)
    loads = {k.key: k.load for k in meter.key_loads(600)}
    assert loads[a1].records_per_s == pytest.approx(120_000 / 600 * 0.75)
    assert loads[a2].records_per_s == pytest.approx(120_000 / 600 * 0.25)
    assert loads[b1].records_per_s == pytest.approx(30_000 / 600)
    assert loads[a1].bytes_per_s == pytest.approx(12_000_000 / 600 * 0.75)


def test_no_per_shard_metrics_names_enhanced_monitoring(clients):
    kinesis, cloudwatch = clients
    stream = KinesisShards(kinesis, "s")
    kinesis.put_record(StreamName="s", PartitionKey="1", Data=b"x")
    with pytest.raises(ReshardError, match="enhanced monitoring"):
        CloudWatchLoadMeter(kinesis, cloudwatch, stream, 100).key_loads(600)
