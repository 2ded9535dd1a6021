"""The local Kinesis emulator behaves as Kinesis where the jobs depend on it
(``stack.moto_server`` says why each matters).

* A plain moto_server loses about 1.5% of the records of three concurrent writers without an
  error to any of them; the stack's moto serialises Kinesis calls, so every record sent is
  read back exactly once.
* A plain moto_server's ListShards ignores ExclusiveStartShardId, so the Kinesis source read
  every shard again from the start after a restore; the stack's lists only the later shards.
"""
from __future__ import annotations

import json
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from stack import aws

pytestmark = pytest.mark.integration

WRITERS = 3
CALLS_PER_WRITER = 200
RECORDS_PER_CALL = 50
SHARDS = 4


@pytest.fixture
def scratch_stream(local_stack):
    """A stream of its own, so the test neither reads nor empties the pipeline's streams."""
    kinesis = aws.client(local_stack, "kinesis")
    name = f"emulator-concurrency-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=name, ShardCount=SHARDS)
    kinesis.get_waiter("stream_exists").wait(StreamName=name,
                                             WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    yield name
    kinesis.delete_stream(StreamName=name, EnforceConsumerDeletion=True)


def _write(props, stream: str, writer: int) -> int:
    """One writer: ``CALLS_PER_WRITER`` PutRecords; returns how many records moto said it
    stored (re-sending any it refused, as a correct producer does)."""
    kinesis = aws.client(props, "kinesis")
    stored = 0
    for call in range(CALLS_PER_WRITER):
        pending = [{"Data": json.dumps([writer, call, index]).encode(),
                    "PartitionKey": str(writer * 100_000 + call * RECORDS_PER_CALL + index)}
                   for index in range(RECORDS_PER_CALL)]
        while pending:
            answer = kinesis.put_records(StreamName=stream, Records=pending)
            pending = [entry for entry, result in zip(pending, answer["Records"])
                       if "ErrorCode" in result]
            stored += len(answer["Records"]) - len(pending)
    return stored


def _read_all(props, stream: str) -> list[tuple[int, int, int]]:
    kinesis = aws.client(props, "kinesis")
    records = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            records += [tuple(json.loads(record["Data"])) for record in page["Records"]]
            if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
                break
            iterator = page.get("NextShardIterator")
    return records


def test_concurrent_writers_lose_and_duplicate_no_record(local_stack, scratch_stream):
    with ThreadPoolExecutor(WRITERS) as pool:
        stored = list(pool.map(lambda writer: _write(local_stack, scratch_stream, writer),
                               range(WRITERS)))
    sent = {(writer, call, index) for writer in range(WRITERS)
            for call in range(CALLS_PER_WRITER) for index in range(RECORDS_PER_CALL)}
    assert sum(stored) == len(sent) == WRITERS * CALLS_PER_WRITER * RECORDS_PER_CALL

    read = Counter(_read_all(local_stack, scratch_stream))

    assert sorted(sent - set(read))[:10] == [], f"{len(sent - set(read))} records lost"
    assert {record: n for record, n in read.items() if n > 1} == {}
    assert set(read) == sent


def test_list_shards_starts_after_the_shard_named(local_stack, scratch_stream):
    kinesis = aws.client(local_stack, "kinesis")
    shards = [s["ShardId"] for s in kinesis.list_shards(StreamName=scratch_stream)["Shards"]]
    assert len(shards) == SHARDS and shards == sorted(shards)
    for index, shard in enumerate(shards):
        after = kinesis.list_shards(StreamName=scratch_stream, ExclusiveStartShardId=shard)
        assert [s["ShardId"] for s in after["Shards"]] == shards[index + 1:]
