"""KPL aggregated records in Python (connectors.kinesis_agg), checked against bytes that
protobuf's own runtime wrote from KPL's schema (tests/connectors/test_kinesis_aggregation_jvm.py checks
the JVM's against KPL's generated classes)."""

from __future__ import annotations

import hashlib

import pytest

from connectors import kinesis_agg

# KPL's AggregatedRecord messages as protobuf serializes them (made with protobuf's own
# runtime from KPL's messages.proto, proto2): the bytes KCL and aws_kinesis_agg read.
# partition_key_table ["42"], records [(0, b"a"), (0, b"")]:
KPL_TWO_RECORDS = b"\n\x0242\x1a\x05\x08\x00\x1a\x01a\x1a\x04\x08\x00\x1a\x00"
# partition_key_table ["7", "8"], explicit_hash_key_table ["1"], records
# [(1, b"a", explicit_hash_key_index 0), (0, b"b", tags [("k", "v")])]:
KPL_TWO_KEYS = (
    b"\n\x017\n\x018\x12\x011\x1a\x07\x08\x01\x10\x00\x1a\x01a"
    b'\x1a\r\x08\x00\x1a\x01b"\x06\n\x01k\x12\x01v'
)


def test_encoded_aggregates_are_kpls_bytes():
    encoded = kinesis_agg.encode("42", [b"a", b""])
    assert encoded == kinesis_agg.MAGIC + KPL_TWO_RECORDS + hashlib.md5(KPL_TWO_RECORDS).digest()


def test_aggregates_written_by_kpl_are_read():
    """What KPL may write (two keys in the table, an explicit hash key, tags) reads back."""
    record = kinesis_agg.MAGIC + KPL_TWO_KEYS + hashlib.md5(KPL_TWO_KEYS).digest()
    assert kinesis_agg.user_records("7", record) == [("8", b"a"), ("7", b"b")]


def test_round_trip_keeps_order():
    data = [f"event {i}".encode() for i in range(1000)]
    assert kinesis_agg.user_records("5", kinesis_agg.encode("5", data)) == [("5", d) for d in data]


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda record: record[:-1] + bytes([record[-1] ^ 1]),  # bad MD5
        lambda record: record[:20] + record[-16:],  # body cut short
        lambda record: kinesis_agg.MAGIC + b"\xff\xff" + hashlib.md5(b"\xff\xff").digest(),
        lambda record: kinesis_agg.MAGIC + hashlib.md5(b"").digest(),  # no records
        lambda record: kinesis_agg.MAGIC + b"\x01",  # shorter than a digest
    ],
)
def test_a_corrupt_aggregate_is_handed_on_as_received(corrupt):
    record = corrupt(kinesis_agg.encode("3", [b"one", b"two"]))
    assert kinesis_agg.user_records("3", record) == [("3", record)]


def test_plain_records_are_user_records():
    assert kinesis_agg.user_records("1", b'{"a": 1}') == [("1", b'{"a": 1}')]
    assert kinesis_agg.user_records("1", b"") == [("1", b"")]


def test_aggregates_keep_within_the_bounds_and_send_a_lone_record_plain():
    data = [bytes([i]) * 100 for i in range(50)]
    by_count = list(kinesis_agg.aggregates("9", data, max_bytes=1_000_000, max_records=20))
    assert len(by_count) == 3
    assert [d for r in by_count for _, d in kinesis_agg.user_records("9", r)] == data

    by_size = list(kinesis_agg.aggregates("9", data, max_bytes=1_000, max_records=1000))
    assert all(len(r) + len(b"9") <= 1_000 for r in by_size)
    assert [d for r in by_size for _, d in kinesis_agg.user_records("9", r)] == data

    assert list(kinesis_agg.aggregates("9", [b"only"], 1_000, 10)) == [b"only"]
    # one member already over the bound goes alone, never dropped
    assert list(kinesis_agg.aggregates("9", [b"x" * 2_000, b"y"], 1_000, 10)) == [
        b"x" * 2_000,
        b"y",
    ]
