"""The local Kinesis emulator behaves as Kinesis where the jobs depend on it
(``stack.moto_server`` says why each matters).

* A plain moto_server loses about 1.5% of the records of three concurrent writers without an
  error to any of them; the stack's moto serialises Kinesis calls, so every record sent is
  read back exactly once.
* A plain moto_server's ListShards ignores ExclusiveStartShardId, so the Kinesis source read
  every shard again from the start after a restore; the stack's lists only the later shards.
* A plain moto_server keeps writing to a split shard's closed parent, copies merged parents'
  records into the child, never ends a closed shard in GetRecords and ignores ShardFilter;
  the stack's reshards as Kinesis does (what ``python -m pizzastream.admin shards --apply``
  and the jobs' source depend on).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from stack import moto_resources

pytestmark = pytest.mark.integration

WRITERS = 3
CALLS_PER_WRITER = 200
RECORDS_PER_CALL = 50
SHARDS = 4


@pytest.fixture
def scratch_stream(local_stack):
    """A stream of its own, so the test neither reads nor empties the pipeline's streams."""
    kinesis = moto_resources.client(local_stack, "kinesis")
    name = f"emulator-concurrency-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=name, ShardCount=SHARDS)
    kinesis.get_waiter("stream_exists").wait(
        StreamName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
    )
    yield name
    kinesis.delete_stream(StreamName=name, EnforceConsumerDeletion=True)


def _write(props, stream: str, writer: int) -> int:
    """One writer: ``CALLS_PER_WRITER`` PutRecords; returns how many records moto said it
    stored (re-sending any it refused, as a correct producer does)."""
    kinesis = moto_resources.client(props, "kinesis")
    stored = 0
    for call in range(CALLS_PER_WRITER):
        pending = [
            {
                "Data": json.dumps([writer, call, index]).encode(),
                "PartitionKey": str(writer * 100_000 + call * RECORDS_PER_CALL + index),
            }
            for index in range(RECORDS_PER_CALL)
        ]
        while pending:
            answer = kinesis.put_records(StreamName=stream, Records=pending)
            pending = [
                entry for entry, result in zip(pending, answer["Records"]) if "ErrorCode" in result
            ]
            stored += len(answer["Records"]) - len(pending)
    return stored


def _read_all(props, stream: str) -> list[tuple[int, int, int]]:
    kinesis = moto_resources.client(props, "kinesis")
    records = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            records += [tuple(json.loads(record["Data"])) for record in page["Records"]]
            if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
                break
            iterator = page.get("NextShardIterator")
    return records


def test_concurrent_writers_lose_and_duplicate_no_record(local_stack, scratch_stream):
    with ThreadPoolExecutor(WRITERS) as pool:
        stored = list(
            pool.map(lambda writer: _write(local_stack, scratch_stream, writer), range(WRITERS))
        )
    sent = {
        (writer, call, index)
        for writer in range(WRITERS)
        for call in range(CALLS_PER_WRITER)
        for index in range(RECORDS_PER_CALL)
    }
    assert sum(stored) == len(sent) == WRITERS * CALLS_PER_WRITER * RECORDS_PER_CALL

    read = Counter(_read_all(local_stack, scratch_stream))

    assert sorted(sent - set(read))[:10] == [], f"{len(sent - set(read))} records lost"
    assert {record: n for record, n in read.items() if n > 1} == {}
    assert set(read) == sent


def test_list_shards_starts_after_the_shard_named(local_stack, scratch_stream):
    kinesis = moto_resources.client(local_stack, "kinesis")
    shards = [s["ShardId"] for s in kinesis.list_shards(StreamName=scratch_stream)["Shards"]]
    assert len(shards) == SHARDS and shards == sorted(shards)
    for index, shard in enumerate(shards):
        after = kinesis.list_shards(StreamName=scratch_stream, ExclusiveStartShardId=shard)
        assert [s["ShardId"] for s in after["Shards"]] == shards[index + 1 :]


def _md5(key: str) -> int:
    return int.from_bytes(hashlib.md5(key.encode()).digest(), "big")


def _put(kinesis, stream: str, phase: str, keys: range) -> dict[str, str]:
    """One record per key; returns ``{key: shard it landed on}``."""
    answer = kinesis.put_records(
        StreamName=stream,
        Records=[
            {"PartitionKey": str(key), "Data": json.dumps([phase, key]).encode()} for key in keys
        ],
    )
    assert answer.get("FailedRecordCount", 0) == 0
    return {str(key): result["ShardId"] for key, result in zip(keys, answer["Records"])}


def _shard_records(kinesis, stream: str, shard_id: str) -> tuple[list, dict]:
    """The shard's records from its start to its end (or tip), and the last page."""
    iterator = kinesis.get_shard_iterator(
        StreamName=stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = []
    while True:
        page = kinesis.get_records(ShardIterator=iterator, Limit=7)
        records += [tuple(json.loads(r["Data"])) for r in page["Records"]]
        if "NextShardIterator" not in page or (
            not page["Records"] and page["MillisBehindLatest"] == 0
        ):
            return records, page
        iterator = page["NextShardIterator"]


def test_split_and_merge_keep_records_in_parents_and_route_writes_to_open_children(
    local_stack, scratch_stream
):
    kinesis = moto_resources.client(local_stack, "kinesis")
    shards = {s["ShardId"]: s for s in kinesis.list_shards(StreamName=scratch_stream)["Shards"]}
    parent = min(shards)
    start = int(shards[parent]["HashKeyRange"]["StartingHashKey"])
    end = int(shards[parent]["HashKeyRange"]["EndingHashKey"])
    at = (start + end) // 2
    before = _put(kinesis, scratch_stream, "before", range(200))
    kinesis.split_shard(StreamName=scratch_stream, ShardToSplit=parent, NewStartingHashKey=str(at))
    listed = {s["ShardId"]: s for s in kinesis.list_shards(StreamName=scratch_stream)["Shards"]}
    children = sorted(set(listed) - set(shards))
    assert len(children) == 2
    assert [listed[c].get("ParentShardId") for c in children] == [parent, parent]
    assert [
        (
            int(listed[c]["HashKeyRange"]["StartingHashKey"]),
            int(listed[c]["HashKeyRange"]["EndingHashKey"]),
        )
        for c in children
    ] == [(start, at - 1), (at, end)]
    assert "EndingSequenceNumber" in listed[parent]["SequenceNumberRange"]
    open_now = kinesis.list_shards(StreamName=scratch_stream, ShardFilter={"Type": "AT_LATEST"})
    assert sorted(s["ShardId"] for s in open_now["Shards"]) == sorted(set(listed) - {parent})
    summary = kinesis.describe_stream_summary(StreamName=scratch_stream)
    assert summary["StreamDescriptionSummary"]["OpenShardCount"] == SHARDS + 1

    after = _put(kinesis, scratch_stream, "after", range(200))
    for key, shard in after.items():
        if before[key] == parent:
            assert shard == (children[0] if _md5(key) < at else children[1]), key
        else:
            assert shard == before[key], key
    parent_records, last_page = _shard_records(kinesis, scratch_stream, parent)
    assert sorted(parent_records) == sorted(
        ("before", int(k)) for k, s in before.items() if s == parent
    )
    assert "NextShardIterator" not in last_page and last_page["Records"] == []
    assert sorted(c["ShardId"] for c in last_page["ChildShards"]) == children

    with pytest.raises(kinesis.exceptions.InvalidArgumentException):
        kinesis.split_shard(
            StreamName=scratch_stream, ShardToSplit=parent, NewStartingHashKey=str(at)
        )
    others = sorted(set(shards) - {parent})
    with pytest.raises(kinesis.exceptions.InvalidArgumentException):  # not adjacent
        kinesis.merge_shards(
            StreamName=scratch_stream, ShardToMerge=children[0], AdjacentShardToMerge=others[1]
        )
    kinesis.merge_shards(
        StreamName=scratch_stream, ShardToMerge=children[1], AdjacentShardToMerge=others[0]
    )
    listed = {s["ShardId"]: s for s in kinesis.list_shards(StreamName=scratch_stream)["Shards"]}
    (merged,) = set(listed) - set(shards) - set(children)
    assert (listed[merged]["ParentShardId"], listed[merged]["AdjacentParentShardId"]) == (
        children[1],
        others[0],
    )
    assert listed[merged]["HashKeyRange"] == {
        "StartingHashKey": str(at),
        "EndingHashKey": shards[others[0]]["HashKeyRange"]["EndingHashKey"],
    }
    third = _put(kinesis, scratch_stream, "third", range(200))
    assert {s for k, s in third.items() if after[k] in (children[1], others[0])} == {merged}

    read = Counter(_read_all(local_stack, scratch_stream))
    assert set(read.values()) == {1}
    assert set(read) == {
        (phase, key) for phase in ("before", "after", "third") for key in range(200)
    }
