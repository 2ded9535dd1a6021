"""KPL aggregated records in the JVM (``pizzastream.flink.KinesisAggregation``,
``RecordAggregator``, the de-aggregating source schemas), through the PyFlink gateway and
mini-cluster jobs: the bytes are KPL's (its generated classes, shaded in the connector, parse
them; Python's ``connectors.kinesis_agg`` and the JVM read each other's), a key's records keep
their order, and nothing buffered misses a checkpoint."""

from __future__ import annotations

import hashlib
import json
import time
import uuid

import pytest
from py4j.java_gateway import get_field
from pyflink.common import Row

from connectors import aws, kinesis, kinesis_agg
from connectors.kinesis_producer import KinesisProducer
from tests.support import running_job, wait_for

KPL_MESSAGES = "org.apache.flink.kinesis.shaded.com.amazonaws.services.kinesis.producer.protobuf"


@pytest.fixture(scope="module")
def jvm(props):
    """The gateway's JVM with the jobs' jar loaded (as every job's environment has it)."""
    from pyflink.java_gateway import get_gateway

    from jobs import runtime

    runtime.stream_environment(props)
    return get_gateway().jvm


def _java_list(jvm, items: list[bytes]):
    values = jvm.java.util.ArrayList()
    for item in items:
        values.add(item)
    return values


def _user_records(jvm, key: str, data: bytes) -> list[tuple[str, bytes]]:
    return [
        (str(get_field(user, "partitionKey")), bytes(get_field(user, "data")))
        for user in jvm.pizzastream.flink.KinesisAggregation.userRecords(key, data)
    ]


def test_the_jvms_aggregates_are_kpls_and_pythons(jvm):
    data = [b'{"order_id": "S1-1"}', b"", "é".encode() * 200]
    encoded = bytes(jvm.pizzastream.flink.KinesisAggregation.encode("42", _java_list(jvm, data)))
    assert encoded == kinesis_agg.encode("42", data)
    assert kinesis_agg.user_records("42", encoded) == [("42", d) for d in data]
    parsed = getattr(getattr(jvm, KPL_MESSAGES), "Messages$AggregatedRecord").parseFrom(
        encoded[4:-16]
    )
    assert list(parsed.getPartitionKeyTableList()) == ["42"]
    assert [
        bytes(parsed.getRecords(i).getData().toByteArray()) for i in range(parsed.getRecordsCount())
    ] == data


def test_the_jvm_reads_pythons_and_kpls_aggregates(jvm):
    data = [f"event {i}".encode() for i in range(300)]
    assert _user_records(jvm, "5", kinesis_agg.encode("5", data)) == [("5", d) for d in data]
    messages = getattr(jvm, KPL_MESSAGES)
    builder = getattr(messages, "Messages$AggregatedRecord").newBuilder()
    builder.addPartitionKeyTable("7").addPartitionKeyTable("8").addExplicitHashKeyTable("1")
    record = getattr(messages, "Messages$Record")
    builder.addRecords(
        record.newBuilder()
        .setPartitionKeyIndex(1)
        .setExplicitHashKeyIndex(0)
        .setData(jvm.org.apache.flink.kinesis.shaded.com.google.protobuf.ByteString.copyFrom(b"a"))
        .build()
    )
    builder.addRecords(
        record.newBuilder()
        .setPartitionKeyIndex(0)
        .setData(jvm.org.apache.flink.kinesis.shaded.com.google.protobuf.ByteString.copyFrom(b"b"))
        .build()
    )
    body = bytes(builder.build().toByteArray())
    written_by_kpl = kinesis_agg.MAGIC + body + hashlib.md5(body).digest()
    assert _user_records(jvm, "7", written_by_kpl) == [("8", b"a"), ("7", b"b")]


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda record: record[:-1] + bytes([record[-1] ^ 1]),  # bad MD5
        lambda record: kinesis_agg.MAGIC + b"\xff\xff" + hashlib.md5(b"\xff\xff").digest(),
        lambda record: kinesis_agg.MAGIC + b"\x0a\x09" + hashlib.md5(b"\x0a\x09").digest(),
        lambda record: kinesis_agg.MAGIC + hashlib.md5(b"").digest(),  # no records
        lambda record: b'{"order_id": "S1-1"}',  # plain
    ],
)
def test_the_jvm_hands_anything_else_on_as_received(jvm, corrupt):
    record = corrupt(kinesis_agg.encode("3", [b"one", b"two"]))
    assert _user_records(jvm, "3", record) == [("3", record)]


def _aggregated_by_a_job(
    props, rows: list[Row], linger_ms: str, max_records: str
) -> list[tuple[str, bytes]]:
    from jobs import runtime

    props = {
        **props,
        "Aggregation": {
            "enabled": "true",
            "linger_ms": linger_ms,
            "max_bytes": "1000000",
            "max_records": max_records,
        },
    }
    env = runtime.stream_environment(props)
    env.set_parallelism(1)
    stream = env.from_collection(rows, type_info=kinesis.KEYED_RECORD)
    with kinesis.aggregated(stream, props, "test").execute_and_collect("aggregate") as out:
        # a Java byte[] reaches Python as signed bytes
        return [(row[0], bytes(b & 0xFF for b in row[1])) for row in out]


def test_the_operator_packs_each_key_in_order_within_its_bounds(props):
    rows = [Row(str(i % 3), json.dumps({"store": i % 3, "n": i})) for i in range(100)]
    out = _aggregated_by_a_job(props, rows, linger_ms="3600000", max_records="10")
    unpacked = [user for key, data in out for user in kinesis_agg.user_records(key, data)]
    assert sorted(unpacked) == sorted((row[0], row[1].encode()) for row in rows)
    for store in "012":
        assert [d for k, d in unpacked if k == store] == [
            row[1].encode() for row in rows if row[0] == store
        ]
    assert all(len(kinesis_agg.user_records(k, d)) <= 10 for k, d in out)
    # 34, 33 and 33 records: four aggregates each of at most ten, the last of 3 or 4
    assert len(out) == 12
    assert all(d.startswith(kinesis_agg.MAGIC) for _, d in out)


def test_a_lone_record_is_sent_plain(props):
    out = _aggregated_by_a_job(props, [Row("1", "a"), Row("2", "b")], "3600000", "10")
    assert sorted(out) == [("1", b"a"), ("2", b"b")]


@pytest.mark.integration
@pytest.mark.slow
def test_a_checkpoint_sends_what_is_buffered_and_sources_unpack(local_stack):
    """The linger is an hour and the input never ends: the records leave the aggregating
    operator only before a checkpoint barrier. The input holds aggregated and plain records:
    the source hands on each user record."""
    kinesis_client = aws.client(local_stack, "kinesis")
    suffix = uuid.uuid4().hex[:8]
    source, target = f"agg-in-{suffix}", f"agg-out-{suffix}"
    for name in (source, target):
        kinesis_client.create_stream(StreamName=name, ShardCount=2)
        kinesis_client.get_waiter("stream_exists").wait(StreamName=name)
    props = {
        **local_stack,
        "Streams": {**local_stack["Streams"], "orders": source, "sales": target},
        "Aggregation": {
            "enabled": "true",
            "linger_ms": "3600000",
            "max_bytes": "1000000",
            "max_records": "10000",
        },
    }
    events = {store: [f"{store}-{n}".encode() for n in range(40)] for store in ("1", "2", "3")}
    records = [(store, kinesis_agg.encode(store, data[:30])) for store, data in events.items()]
    records += [(store, item) for store, data in events.items() for item in data[30:]]
    KinesisProducer(local_stack).put(source, records)

    def build(env, job_props):
        tagged = kinesis.tagged_records(env, job_props, {"orders": "o"})
        keyed = tagged.map(
            lambda row: Row(row[0], bytes(row[1][1]).decode()), output_type=kinesis.KEYED_RECORD
        )
        kinesis.sink_to_stream(keyed, job_props, "sales")

    def written():
        return list(aws.read_stream(kinesis_client, target))

    try:
        with running_job(build, props, "aggregate-checkpoint-test"):
            out = wait_for(
                "every event through a checkpoint",
                written,
                lambda seen: len(seen) >= 120,
                timeout_s=120,
            )
            time.sleep(6)  # another checkpoint: nothing sent twice
            out = written()
        kinesis_records = sum(
            len(
                kinesis_client.get_records(
                    ShardIterator=kinesis_client.get_shard_iterator(
                        StreamName=target,
                        ShardId=shard["ShardId"],
                        ShardIteratorType="TRIM_HORIZON",
                    )["ShardIterator"],
                    Limit=10000,
                )["Records"]
            )
            for shard in kinesis_client.list_shards(StreamName=target)["Shards"]
        )
    finally:
        for name in (source, target):
            kinesis_client.delete_stream(StreamName=name, EnforceConsumerDeletion=True)
    assert len(out) == 120
    for store, data in events.items():
        assert [d for k, d in out if k == store] == data
    assert kinesis_records < 120
