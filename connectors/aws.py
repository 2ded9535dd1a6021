"""boto3 clients for the AWS services, endpoint and keys from the ``Aws`` property group
(the local emulator) or the default credential chain (a role on AWS)."""
from __future__ import annotations

from typing import Iterator

import boto3
from botocore.config import Config


def client(props: dict[str, dict[str, str]], service: str):
    aws = props["Aws"]
    kwargs = {"region_name": aws["region"], "config": Config(retries={"mode": "standard"})}
    if aws.get("endpoint"):
        kwargs["endpoint_url"] = aws["endpoint"]
    if aws.get("access_key_id"):
        kwargs["aws_access_key_id"] = aws["access_key_id"]
        kwargs["aws_secret_access_key"] = aws["secret_access_key"]
    return boto3.client(service, **kwargs)


def put_metrics(props: dict[str, dict[str, str]], namespace: str, data: list[dict]) -> None:
    """CloudWatch ``PutMetricData`` of ``data`` (``MetricData`` entries) into ``namespace``,
    the condition the callers' IAM permission is scoped by."""
    client(props, "cloudwatch").put_metric_data(Namespace=namespace, MetricData=data)


def read_stream(kinesis, stream_name: str) -> Iterator[tuple[str, bytes]]:
    """Every record now in the stream as ``(partition_key, data)``, shard by shard from the
    oldest: for checks and summaries of what a job wrote, not for processing."""
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
