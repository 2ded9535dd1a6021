"""The two wire formats between the JVM and the Python rules of the order path.

PyFlink's cost is the crossing between the JVM and Python, per record, not the rules
(docs/benchmarks.md). So the order path crosses once per *batch*: the JVM groups records
(``pizzastream.flink.OrderBatcher``, ``StoreBatcher``), Python decides the whole batch and
answers with one result, and the JVM fans the result out to the streams and tables
(``pizzastream.flink.BatchOutputs``). Both formats are defined here and in those classes;
each side has its own tests (tests/pizzastream/test_order_batches.py, the classes' JUnit
tests) and the order path's end-to-end tests (tests/e2e/) run the two together.

Batches into Python (binary, any bytes: records are outside input)
    raw records   per record: length (4 bytes, big-endian), the record's bytes
    store records flags (1 byte: ``PERSIST`` = write changed stores to state now), the
                  batcher's epoch (8 bytes, new with each start or restore of the job), then
                  per record: kind (1 byte), key length (2), key (UTF-8), data length (4), data

Results out of Python (text)
    one line per output: ``<tag><key>\\t<payload>\\n``, the tag one character naming the
    output, the key without tab or newline, the payload without newline. Everything written
    there is the pipeline's own JSON (which escapes control characters) or tab-separated
    fields of validated values, so the framing needs no escaping; ``result_line`` refuses
    anything that would break it.

    A line may stand for more than one output record (``LineRoutes``), so that a payload that
    goes to two outputs is written, crossed and decoded once: a *copied* line's record goes
    to each output its routes name; a *cached* line carries ``<id>\t<value>\t`` ahead of
    its payload, a record ``(id, value)`` of its cache output.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from struct import Struct
from typing import NamedTuple

PERSIST = 1
_LENGTH = Struct(">I")
_STORE_RECORD_HEAD = Struct(">BH")
# A record kind's byte as text: what ``bytes([kind]).decode("latin-1")`` gives, looked up.
_KINDS = tuple(chr(code) for code in range(256))
_STORE_HEAD_BYTES = 9  # flags, epoch


def raw_records(batch: bytes) -> Iterator[bytes]:
    """The records of an ``OrderBatcher`` batch, in order."""
    unpack, end, at = _LENGTH.unpack_from, len(batch), 0
    while at < end:
        (length,) = unpack(batch, at)
        at += 4
        yield batch[at : at + length]
        at += length


def frame_raw_records(records: list[bytes]) -> bytes:
    """The ``OrderBatcher`` format of ``records`` (tests, tools)."""
    return b"".join(_LENGTH.pack(len(record)) + record for record in records)


def store_records(batch: bytes) -> tuple[bool, Iterator[tuple[str, str, bytes]]]:
    """Whether a ``StoreBatcher`` batch asks for its stores to be persisted, and its records
    ``(kind, partition_key, data)`` in order."""
    return batch[0] == PERSIST, _store_records(batch)


def batch_epoch(batch: bytes) -> bytes:
    """The epoch of the ``StoreBatcher`` that made the batch: a new one means the job was
    (re)started, and whatever a consumer kept in memory may be ahead of the restored state."""
    return batch[1:_STORE_HEAD_BYTES]


def _store_records(batch: bytes) -> Iterator[tuple[str, str, bytes]]:
    head, length, end = _STORE_RECORD_HEAD.unpack_from, _LENGTH.unpack_from, len(batch)
    at = _STORE_HEAD_BYTES
    while at < end:
        kind, key_length = head(batch, at)
        at += 3
        key = batch[at : at + key_length].decode("utf-8", "replace")
        at += key_length
        (data_length,) = length(batch, at)
        at += 4
        yield _KINDS[kind], key, batch[at : at + data_length]
        at += data_length


def frame_store_records(
    records: list[tuple[str, str, bytes]], persist: bool = False, epoch: bytes = bytes(8)
) -> bytes:
    """The ``StoreBatcher`` format of ``(kind, partition_key, data)`` records (tests, tools)."""
    parts = [bytes([PERSIST if persist else 0]) + epoch]
    for kind, key, data in records:
        key_bytes = key.encode()
        parts.append(
            kind.encode("latin-1")
            + len(key_bytes).to_bytes(2, "big")
            + key_bytes
            + _LENGTH.pack(len(data))
            + data
        )
    return b"".join(parts)


def result_line(tag: str, key: str, payload: str) -> str:
    """One checked result line (for outputs off the hot path; the hot path formats its own
    lines from values it has validated)."""
    if len(tag) != 1 or "\t" in key or "\n" in key or "\n" in payload:
        raise ValueError(f"cannot frame output {tag!r} with key {key[:40]!r}")
    return f"{tag}{key}\t{payload}\n"


class LineRoutes(NamedTuple):
    """The lines of a result that stand for more than one output record, by line tag
    (``BatchOutputs`` takes the same two maps)."""

    copies: Mapping[str, str] = {}  # line tag -> the output tags its record goes to
    cached: Mapping[str, str] = {}  # output tag -> the tag of its lines' cache entries


NO_ROUTES = LineRoutes()


def result_lines(result: bytes, routes: LineRoutes = NO_ROUTES) -> Iterator[tuple[str, str, str]]:
    """``(output tag, key, payload)`` of each output record of a result, in the order
    ``BatchOutputs`` emits them (tests, tools, ``jobs.testing``; the JVM reads it in
    ``BatchOutputs``): a cached line's cache entry first, then its record; a copied line's
    record once per output its routes name."""
    copies, cached = routes.copies, routes.cached
    for line in result.decode("utf-8").split("\n")[:-1]:
        tag = line[0]
        key, _, payload = line[1:].partition("\t")
        cache = cached.get(tag)
        if cache is not None:
            entry_id, value, payload = payload.split("\t", 2)
            yield cache, entry_id, value
        for output in copies.get(tag, tag):
            yield output, key, payload
