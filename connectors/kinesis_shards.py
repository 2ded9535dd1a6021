"""The Kinesis calls of the resharding tool (``python -m pizzastream.admin shards``): the open
shard map, SplitShard/MergeShards with a wait for ACTIVE, and two ways of measuring the write
load per partition key.

* ``RecordLoadMeter`` reads every record that arrived in the window, on every shard, open or
  closed (right after a reshard a key's records of the window are spread over the parent
  and its children). Exact, and what the local stack can offer: moto keeps no CloudWatch
  metrics per shard. Reading a busy production stream whole this way is too slow.
* ``CloudWatchLoadMeter``: the per-shard ``IncomingRecords``/``IncomingBytes`` sums of
  the window (the stream needs shard-level enhanced monitoring for those two metrics), with
  the split between keys taken from a sample of each shard's records of the window.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator

from connectors import aws
from pizzastream.resharding import KeyLoad, Load, Shard, key_loads, scaled_to_shard_totals


class ReshardError(RuntimeError):
    """The stream did not get back to ACTIVE, or a measurement is unusable."""


class KinesisShards:
    """One stream's shard map and the two resharding calls."""

    def __init__(
        self,
        kinesis,
        stream_name: str,
        *,
        active_timeout_s: float = 300.0,
        poll_s: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.kinesis = kinesis
        self.stream_name = stream_name
        self.active_timeout_s = active_timeout_s
        self.poll_s = poll_s
        self.sleep = sleep
        self.clock = clock

    def all_shards(self) -> list[dict]:
        """Every shard ListShards returns, closed ones included (as Kinesis answers)."""
        shards, page = [], self.kinesis.list_shards(StreamName=self.stream_name)
        while True:
            shards.extend(page["Shards"])
            if not page.get("NextToken"):
                return shards
            page = self.kinesis.list_shards(NextToken=page["NextToken"])

    def open_shards(self) -> list[Shard]:
        """Shards still taking writes: a closed shard has an ``EndingSequenceNumber``."""
        return [
            Shard(
                s["ShardId"],
                int(s["HashKeyRange"]["StartingHashKey"]),
                int(s["HashKeyRange"]["EndingHashKey"]),
            )
            for s in self.all_shards()
            if "EndingSequenceNumber" not in s["SequenceNumberRange"]
        ]

    def wait_active(self) -> None:
        """Kinesis takes a reshard call only on an ACTIVE stream, and a reshard leaves it
        UPDATING for seconds to minutes."""
        deadline = self.clock() + self.active_timeout_s
        while True:
            status = self.kinesis.describe_stream_summary(StreamName=self.stream_name)[
                "StreamDescriptionSummary"
            ]["StreamStatus"]
            if status == "ACTIVE":
                return
            if self.clock() > deadline:
                raise ReshardError(
                    f"stream {self.stream_name} still {status} after {self.active_timeout_s:.0f} s"
                )
            self.sleep(self.poll_s)

    def split(self, shard_id: str, new_starting_hash_key: int) -> None:
        self.kinesis.split_shard(
            StreamName=self.stream_name,
            ShardToSplit=shard_id,
            NewStartingHashKey=str(new_starting_hash_key),
        )

    def merge(self, shard_id: str, adjacent_shard_id: str) -> None:
        self.kinesis.merge_shards(
            StreamName=self.stream_name,
            ShardToMerge=shard_id,
            AdjacentShardToMerge=adjacent_shard_id,
        )


def _window_records(
    kinesis, stream_name: str, shard_id: str, since: dt.datetime, limit: int | None
) -> Iterator[tuple[str, int]]:
    """``(partition_key, bytes)`` of the shard's records that arrived since ``since``, up to
    ``limit`` of them; stops at the shard's end or once caught up with its tip."""
    iterator = kinesis.get_shard_iterator(
        StreamName=stream_name, ShardId=shard_id, ShardIteratorType="AT_TIMESTAMP", Timestamp=since
    )["ShardIterator"]
    seen = 0
    while iterator:
        page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
        for record in page["Records"]:
            if record["ApproximateArrivalTimestamp"] < since:
                continue
            key = record["PartitionKey"]
            yield key, len(record["Data"]) + len(key.encode())
            seen += 1
            if limit is not None and seen >= limit:
                return
        if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
            return
        iterator = page.get("NextShardIterator")


class RecordLoadMeter:
    def __init__(
        self,
        kinesis,
        stream: KinesisShards,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ):
        self.kinesis = kinesis
        self.stream = stream
        self.now = now

    def key_loads(self, window_s: float) -> list[KeyLoad]:
        since = self.now() - dt.timedelta(seconds=window_s)
        records = (
            pair
            for shard in self.stream.all_shards()
            for pair in _window_records(
                self.kinesis, self.stream.stream_name, shard["ShardId"], since, None
            )
        )
        return key_loads(records, window_s)


class CloudWatchLoadMeter:
    def __init__(
        self,
        kinesis,
        cloudwatch,
        stream: KinesisShards,
        sample_per_shard: int,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ):
        self.kinesis = kinesis
        self.cloudwatch = cloudwatch
        self.stream = stream
        self.sample_per_shard = sample_per_shard
        self.now = now

    def shard_totals(self, shard_ids: list[str], window_s: float) -> dict[str, Load]:
        end = self.now()
        start = end - dt.timedelta(seconds=window_s)
        period = max(60, int(window_s) // 60 * 60)
        queries, names = [], {}
        for i, shard_id in enumerate(shard_ids):
            for metric in ("IncomingRecords", "IncomingBytes"):
                query_id = f"m{i}{metric[8].lower()}"
                names[query_id] = (shard_id, metric)
                queries.append(
                    {
                        "Id": query_id,
                        "MetricStat": {
                            "Metric": {
                                "Namespace": "AWS/Kinesis",
                                "MetricName": metric,
                                "Dimensions": [
                                    {"Name": "StreamName", "Value": self.stream.stream_name},
                                    {"Name": "ShardId", "Value": shard_id},
                                ],
                            },
                            "Period": period,
                            "Stat": "Sum",
                        },
                    }
                )
        sums: dict[tuple[str, str], float] = {}
        for chunk in range(0, len(queries), 500):
            kwargs = {
                "MetricDataQueries": queries[chunk : chunk + 500],
                "StartTime": start,
                "EndTime": end,
            }
            while True:
                page = self.cloudwatch.get_metric_data(**kwargs)
                for result in page["MetricDataResults"]:
                    sums[names[result["Id"]]] = sums.get(names[result["Id"]], 0.0) + sum(
                        result["Values"]
                    )
                if not page.get("NextToken"):
                    break
                kwargs["NextToken"] = page["NextToken"]
        if not any(sums.values()):
            raise ReshardError(
                f"no IncomingRecords/IncomingBytes per shard for "
                f"{self.stream.stream_name} in the last {window_s:.0f} s: is "
                "shard-level enhanced monitoring enabled for them?"
            )
        return {
            shard_id: Load(
                sums.get((shard_id, "IncomingRecords"), 0.0) / window_s,
                sums.get((shard_id, "IncomingBytes"), 0.0) / window_s,
            )
            for shard_id in shard_ids
        }

    def key_loads(self, window_s: float) -> list[KeyLoad]:
        since = self.now() - dt.timedelta(seconds=window_s)
        shards = self.stream.open_shards()
        sample = key_loads(
            (
                pair
                for shard in shards
                for pair in _window_records(
                    self.kinesis,
                    self.stream.stream_name,
                    shard.shard_id,
                    since,
                    self.sample_per_shard,
                )
            ),
            window_s,
        )
        return scaled_to_shard_totals(
            sample, shards, self.shard_totals([s.shard_id for s in shards], window_s)
        )


def for_stream(
    props: dict[str, dict[str, str]],
    stream_name: str,
    *,
    load_source: str,
    active_timeout_s: float,
    sample_per_shard: int,
) -> tuple[KinesisShards, RecordLoadMeter | CloudWatchLoadMeter]:
    kinesis = aws.client(props, "kinesis")
    stream = KinesisShards(kinesis, stream_name, active_timeout_s=active_timeout_s)
    if load_source == "records":
        return stream, RecordLoadMeter(kinesis, stream)
    if load_source == "cloudwatch":
        return stream, CloudWatchLoadMeter(
            kinesis, aws.client(props, "cloudwatch"), stream, sample_per_shard
        )
    raise ValueError(
        f"Resharding.load_source must be 'records' or 'cloudwatch', not {load_source!r}"
    )


def consumer_lag_ms(
    cloudwatch, stream_name: str, *, start: dt.datetime, end: dt.datetime
) -> float | None:
    """The Maximum of the stream's ``GetRecords.IteratorAgeMilliseconds`` (stream level, one
    datapoint a minute) between ``start`` and ``end``: how far behind the tip its furthest
    polling reader was. None when there is no datapoint (no one called GetRecords then)."""
    kwargs = {
        "MetricDataQueries": [
            {
                "Id": "lag",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/Kinesis",
                        "MetricName": "GetRecords.IteratorAgeMilliseconds",
                        "Dimensions": [{"Name": "StreamName", "Value": stream_name}],
                    },
                    "Period": 60,
                    "Stat": "Maximum",
                },
            }
        ],
        "StartTime": start,
        "EndTime": end,
    }
    values: list[float] = []
    while True:
        page = cloudwatch.get_metric_data(**kwargs)
        for result in page["MetricDataResults"]:
            values.extend(result["Values"])
        if not page.get("NextToken"):
            return max(values) if values else None
        kwargs["NextToken"] = page["NextToken"]


def lag_reader(
    props: dict[str, dict[str, str]], stream_name: str
) -> Callable[[dt.datetime, dt.datetime], float | None]:
    """``consumer_lag_ms`` of ``stream_name`` between two times, on the configured CloudWatch."""
    cloudwatch = aws.client(props, "cloudwatch")
    return lambda start, end: consumer_lag_ms(cloudwatch, stream_name, start=start, end=end)
