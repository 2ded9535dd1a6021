"""The AWS side of the local stack, served by moto: Kinesis streams, the lake bucket, DynamoDB.

Moto keeps everything in memory, so these are re-ensured on every ``up``: a restarted
moto comes back empty. (The clients the platform itself uses are ``connectors.aws``'; these
are the stack's, aimed at moto, with its fast-failing probe.)
"""

from __future__ import annotations

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from pizzastream.config import Props, stream_name

# Keys of the ``Streams`` group that configure the streams rather than name one.
STREAM_SETTINGS = frozenset({"shard_count", "initial_position"})
_FAST_WAIT = {"Delay": 1, "MaxAttempts": 30}


def client(props: Props, service: str, *, quick: bool = False):
    """A boto3 client aimed at the configured endpoint; ``quick`` fails fast, for probes."""
    aws = props["Aws"]
    config = (
        Config(connect_timeout=1, read_timeout=3, retries={"max_attempts": 1})
        if quick
        else Config(retries={"max_attempts": 3, "mode": "standard"})
    )
    return boto3.client(
        service,
        endpoint_url=aws["endpoint"],
        region_name=aws["region"],
        aws_access_key_id=aws["access_key_id"],
        aws_secret_access_key=aws["secret_access_key"],
        config=config,
    )


def stream_names(props: Props) -> list[str]:
    return [stream_name(props, key) for key in props["Streams"] if key not in STREAM_SETTINGS]


def ensure_streams(props: Props) -> list[str]:
    """Create the configured streams that are missing, wait until all are ACTIVE.

    Returns the names of the streams created now.
    """
    kinesis = client(props, "kinesis")
    created = [name for name in stream_names(props) if not _stream_exists(kinesis, name)]
    for name in created:
        kinesis.create_stream(StreamName=name, ShardCount=int(props["Streams"]["shard_count"]))
    for name in stream_names(props):
        kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig=_FAST_WAIT)
    return created


def _stream_exists(kinesis, name: str) -> bool:
    """Asked by name: ListStreams answers a page (moto's: 10 names), so a stack with the
    tests' scratch streams hid configured ones from it and they were created twice."""
    try:
        kinesis.describe_stream_summary(StreamName=name)
        return True
    except kinesis.exceptions.ResourceNotFoundException:
        return False


def recreate_streams(props: Props) -> None:
    """Empty every configured stream the only way Kinesis allows: delete and create again."""
    kinesis = client(props, "kinesis")
    for name in stream_names(props):
        if _stream_exists(kinesis, name):
            kinesis.delete_stream(StreamName=name, EnforceConsumerDeletion=True)
            kinesis.get_waiter("stream_not_exists").wait(StreamName=name, WaiterConfig=_FAST_WAIT)
    ensure_streams(props)


def ensure_bucket(props: Props) -> bool:
    """Create the lake bucket unless it exists; True when it was created."""
    s3 = client(props, "s3")
    bucket = props["Lake"]["bucket"]
    try:
        s3.head_bucket(Bucket=bucket)
        return False
    except ClientError as error:
        if error.response["Error"]["Code"] not in ("404", "NoSuchBucket"):
            raise
    region = props["Aws"]["region"]
    location = (
        {}
        if region == "us-east-1"
        else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    )
    s3.create_bucket(Bucket=bucket, **location)
    return True


def empty_bucket(props: Props) -> None:
    s3 = client(props, "s3")
    bucket = props["Lake"]["bucket"]
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})


def delete_tables(props: Props) -> None:
    """Drop every DynamoDB table: they only hold KCL leases and checkpoints, which point at
    sequence numbers of streams that ``recreate_streams`` just replaced and would make a
    restarted consumer skip the new records."""
    dynamodb = client(props, "dynamodb")
    for page in dynamodb.get_paginator("list_tables").paginate():
        for table in page["TableNames"]:
            dynamodb.delete_table(TableName=table)
