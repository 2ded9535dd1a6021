"""KPL aggregated records: many user records of one partition key in one Kinesis record.

A shard takes 1,000 records/s; a store hotter than that cannot be helped by splitting, only
by packing its events into fewer records (docs/resharding.md). The format is the Kinesis
Producer Library's, so every standard consumer de-aggregates it: KCL (the delivery service),
Lambda's ``aws_kinesis_agg``, and the jobs' sources (``pizzastream.flink.KinesisAggregation``,
the JVM twin of this module). Layout: magic ``F3 89 9A C2``, the protobuf
``AggregatedRecord{repeated string partition_key_table = 1; repeated string
explicit_hash_key_table = 2; repeated Record records = 3}`` with ``Record{uint64
partition_key_index = 1; uint64 explicit_hash_key_index = 2; bytes data = 3; repeated Tag
tags = 4}``, then the 16-byte MD5 of the protobuf. The message is small enough to write and
read by hand here, which keeps the protobuf runtime out of the tools that read streams.

A record that is not a valid aggregate (no magic, bad MD5, unparseable) is a user record
itself, handed on as received (as KCL does): the validation rules then dead-letter it with
a reason instead of a reader failing on it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence

MAGIC = b"\xf3\x89\x9a\xc2"
DIGEST_BYTES = 16


class _Corrupt(ValueError):
    """The bytes after the magic are not an ``AggregatedRecord``."""


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _member(data: bytes) -> bytes:
    # partition_key_index is ``required`` in KPL's proto2 schema: written even when 0.
    return _field(3, b"\x08\x00" + _field(3, data))


def _member_size(length: int) -> int:
    """``len(_member(data))`` for ``len(data) == length``, without building it."""
    inner = 2 + 1 + len(_varint(length)) + length
    return 1 + len(_varint(inner)) + inner


def encode(partition_key: str, records: Iterable[bytes]) -> bytes:
    """One aggregated record carrying ``records``, all under ``partition_key``."""
    body = _field(1, partition_key.encode()) + b"".join(_member(data) for data in records)
    return MAGIC + body + hashlib.md5(body).digest()


def aggregates(
    partition_key: str, records: Sequence[bytes], max_bytes: int, max_records: int
) -> Iterator[bytes]:
    """``records`` in order, packed into as few Kinesis records as the bounds allow (see
    ``packs``); a pack of one is sent plain, as KPL does."""
    for pack in packs(partition_key, records, max_bytes, max_records):
        members = records[pack.start : pack.stop]
        yield members[0] if len(members) == 1 else encode(partition_key, members)


def packs(
    partition_key: str, records: Sequence[bytes], max_bytes: int, max_records: int
) -> Iterator[range]:
    """Consecutive index ranges of ``records``, each as many as fit one aggregated record of
    at most ``max_bytes`` (counted as Kinesis does, partition key included) and
    ``max_records``; a record too big for the bound alone is a pack of its own."""
    key = len(partition_key.encode())
    fixed = len(MAGIC) + len(_field(1, b"x" * key)) + DIGEST_BYTES + key
    first, size = 0, fixed
    for index, data in enumerate(records):
        member = _member_size(len(data))
        if index > first and (index - first >= max_records or size + member > max_bytes):
            yield range(first, index)
            first, size = index, fixed
        size += member
    if first < len(records):
        yield range(first, len(records))


def user_records(partition_key: str, data: bytes) -> list[tuple[str, bytes]]:
    """The ``(partition_key, data)`` user records one Kinesis record carries: the members of
    a valid aggregate, else the record itself."""
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + DIGEST_BYTES:
        return [(partition_key, data)]
    body = data[len(MAGIC) : -DIGEST_BYTES]
    if hashlib.md5(body).digest() != data[-DIGEST_BYTES:]:
        return [(partition_key, data)]
    try:
        return _decode(body)
    except _Corrupt:
        return [(partition_key, data)]


def _read_varint(buffer: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if position >= len(buffer) or shift > 63:
            raise _Corrupt("varint cut short")
        byte = buffer[position]
        position += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, position


def _fields(buffer: bytes) -> Iterator[tuple[int, int | bytes]]:
    """``(field number, value)`` of a message; unknown wire types are refused."""
    position = 0
    while position < len(buffer):
        tag, position = _read_varint(buffer, position)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, position = _read_varint(buffer, position)
            yield number, value
        elif wire == 2:
            length, position = _read_varint(buffer, position)
            if position + length > len(buffer):
                raise _Corrupt("field cut short")
            yield number, buffer[position : position + length]
            position += length
        elif wire in (1, 5):
            position += 8 if wire == 1 else 4
            if position > len(buffer):
                raise _Corrupt("field cut short")
        else:
            raise _Corrupt(f"wire type {wire}")


def _decode(body: bytes) -> list[tuple[str, bytes]]:
    keys: list[str] = []
    members: list[tuple[int, bytes]] = []
    for number, value in _fields(body):
        if number == 1 and isinstance(value, bytes):
            try:
                keys.append(value.decode())
            except UnicodeDecodeError as error:
                raise _Corrupt("partition key not UTF-8") from error
        elif number == 3 and isinstance(value, bytes):
            index, data = None, b""
            for inner, inner_value in _fields(value):
                if inner == 1 and isinstance(inner_value, int):
                    index = inner_value
                elif inner == 3 and isinstance(inner_value, bytes):
                    data = inner_value
            if index is None:
                raise _Corrupt("record without partition_key_index")
            members.append((index, data))
    if not members or any(index >= len(keys) for index, _ in members):
        raise _Corrupt("no records, or a partition key index out of range")
    return [(keys[index], data) for index, data in members]
