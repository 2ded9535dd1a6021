"""boto3 clients for the AWS services, endpoint and keys from the ``Aws`` property group
(the local emulator) or the default credential chain (a role on AWS)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import boto3
from botocore.config import Config

from connectors import kinesis_agg
from pizzastream.settings import AwsSettings


def client(props: Mapping[str, Mapping[str, str]], service: str, timeout_s: float | None = None):
    """``timeout_s`` bounds connecting and each read of one attempt (botocore's default is
    60 s): for a caller someone is waiting on, such as a customer placing an order."""
    aws = AwsSettings.from_group(props["Aws"])
    timeouts = {"connect_timeout": timeout_s, "read_timeout": timeout_s} if timeout_s else {}
    kwargs = {"region_name": aws.region, "config": Config(retries={"mode": "standard"}, **timeouts)}
    if aws.endpoint:
        kwargs["endpoint_url"] = aws.endpoint
    credentials = aws.credentials()
    if credentials:
        kwargs["aws_access_key_id"], kwargs["aws_secret_access_key"] = credentials
    return boto3.client(service, **kwargs)


def put_metrics(props: dict[str, dict[str, str]], namespace: str, data: list[dict]) -> None:
    """CloudWatch ``PutMetricData`` of ``data`` (``MetricData`` entries) into ``namespace``,
    the condition the callers' IAM permission is scoped by."""
    client(props, "cloudwatch").put_metric_data(Namespace=namespace, MetricData=data)


def read_kinesis_records(kinesis, stream_name: str) -> Iterator[tuple[str, bytes]]:
    """Every record now in the stream as Kinesis holds it, ``(partition_key, data)``, shard
    by shard from the oldest; an aggregated record is one record, not unpacked."""
    for shard in kinesis.list_shards(StreamName=stream_name)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream_name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10000)
            for record in page["Records"]:
                yield record["PartitionKey"], record["Data"]
            if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
                break
            iterator = page.get("NextShardIterator")


def read_stream(kinesis, stream_name: str) -> Iterator[tuple[str, bytes]]:
    """Every user record now in the stream as ``(partition_key, data)``, shard by shard from
    the oldest, aggregated records unpacked (``connectors.kinesis_agg``): for checks and
    summaries of what a job wrote, not for processing."""
    for key, data in read_kinesis_records(kinesis, stream_name):
        yield from kinesis_agg.user_records(key, data)
