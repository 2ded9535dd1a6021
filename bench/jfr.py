"""Where the JVM's time goes in a benchmark run, from a Java Flight Recorder file.

``python -m bench --only chained --jfr DIR`` records each run's measured window (the
mini-cluster JVM, ``settings=profile``); ``python -m bench.jfr DIR/<run>.jfr`` prints the
split: milliseconds of samples per thread group and per part of the order path. Java code
is sampled every 10 ms (``jdk.ExecutionSample``); RocksDB's native calls, which those
samples miss, every 20 ms (``jdk.NativeMethodSample``, only frames in ``org.rocksdb``). A
sample is charged to the innermost frame that names a part, so a sink's time is the sink's
even though the fan-out called it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

# (part, substrings of a frame's class.method that belong to it), innermost match wins
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("dedup id (DedupKey)", ("DedupKey",)),
    (
        "dedup state (RocksDB get+put, TTL)",
        ("org.rocksdb", "RocksDB", "state.ttl", "getPartitionedState", "SerializedCompositeKey"),
    ),
    ("batch building (StoreBatcher)", ("StoreBatcher", "StoreShardKey")),
    ("fact/row parsing (DelimitedRows)", ("DelimitedRows",)),
    ("Redis commands", ("RedisSetCommands",)),
    ("JSON decode (JsonRows)", ("JsonRows", "JsonRowDeserializationSchema", "jackson")),
    ("event time (JsonEventTime)", ("JsonEventTime",)),
    (
        "store-hours, fingerprints, live view (StoreSales)",
        ("StoreSales", "StoreHourMetrics"),
    ),
    (
        "SQL conversions (levels, alerts)",
        ("InputConversionOperator", "OutputConversionOperator", "StreamExecCalc", "table.data"),
    ),
    ("sinks", ("DiscardingSink", "SinkWriterOperator", "bench.Count")),
    ("line fan-out (BatchOutputs)", ("BatchOutputs",)),
    ("generator (benchmark only)", ("OrderGenerator", "SyntheticOrders", "KeyedToTagged")),
    ("raw batches (OrderBatcher)", ("OrderBatcher",)),
    ("Python crossing (Beam, gRPC, coders)", ("beam", "python", "Python", "grpc")),
    (
        "shuffle (record (de)serialization)",
        ("RecordWriter", "StreamElementSerializer", "RecordDeserializer", "RowSerializer"),
    ),
    ("chaining, side-output broadcast", ("ChainingOutput", "BroadcastingOutput", "StreamRecord")),
)
SAMPLE_MS = {"jdk.ExecutionSample": 10, "jdk.NativeMethodSample": 20}


def part_of(frames: list[str]) -> str:
    """The part a sample's stack belongs to (``frames`` innermost first), else ``other``."""
    for frame in frames:
        for part, needles in PARTS:
            if any(needle in frame for needle in needles):
                return part
    return "other"


def thread_group(thread: str) -> str:
    """A Flink task thread by its chain's first operator; the rest by kind."""
    if thread.startswith("store-batches"):
        return "store batches task"
    if thread.startswith("Source:"):
        return "source task"
    if "grpc" in thread:
        return "gRPC (Python crossing)"
    return "other threads"


def split(samples: Iterable[tuple[str, str, list[str]]]) -> Counter[tuple[str, str]]:
    """Milliseconds per (thread group, part) of ``(event type, thread, frames)`` samples;
    native samples count only inside RocksDB (the others are threads waiting)."""
    spent: Counter[tuple[str, str]] = Counter()
    for event, thread, frames in samples:
        if event == "jdk.NativeMethodSample" and not any("org.rocksdb" in f for f in frames[:3]):
            continue
        spent[(thread_group(thread), part_of(frames))] += SAMPLE_MS[event]
    return spent


def read_samples(path: Path) -> list[tuple[str, str, list[str]]]:
    """``(event type, thread name, frames innermost first)`` of a recording (``jfr print``)."""
    samples = []
    for event in SAMPLE_MS:
        text = subprocess.run(
            ["jfr", "print", "--json", "--stack-depth", "200", "--events", event, str(path)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for item in json.loads(text)["recording"]["events"]:
            values = item["values"]
            thread = (values.get("sampledThread") or {}).get("javaName") or "?"
            frames = [
                f"{f['method']['type']['name'].replace('/', '.')}.{f['method']['name']}"
                for f in (values.get("stackTrace") or {}).get("frames", [])
            ]
            samples.append((event, thread, frames))
    return samples


def report(spent: Counter[tuple[str, str]]) -> str:
    total = sum(spent.values()) or 1
    by_group: Counter[str] = Counter()
    by_part: Counter[str] = Counter()
    for (group, part), ms in spent.items():
        by_group[group] += ms
        by_part[part] += ms
    lines = [f"{total} ms of samples"]
    lines += [f"  {ms:7d} ms {100 * ms / total:5.1f}%  {g}" for g, ms in by_group.most_common()]
    lines.append("by part:")
    lines += [f"  {ms:7d} ms {100 * ms / total:5.1f}%  {p}" for p, ms in by_part.most_common()]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    for name in argv:
        print(f"== {name}")
        print(report(split(read_samples(Path(name)))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
