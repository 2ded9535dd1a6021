"""The S3 staging area: raw ``order_fct`` rows as Parquet, one partition per hour of
transaction time, ``<HourlyMetrics.staging_prefix>/dt=YYYY-MM-DD/hour=HH/part-NNNNN.parquet``
(partition names as the lake's, ``connectors.lake.partition``).

Staging is the raw-data copy the seed design keeps for reprocessing: it holds exactly the
contract's columns with their contract types (timestamps in UTC, money as decimals), so
any Parquet reader gets the same values Aurora has. An hour is always written whole, in key
order, chunk by chunk: the same rows give byte-identical objects, so re-running an hour
changes nothing. An hour without sales is one empty part, so "staged, nothing sold" is not
mistaken for "not staged" (``etl.metrics.run_batch`` refuses unstaged hours).

Parts are written to a local temporary file and uploaded from there: memory holds one
chunk of rows, never the hour.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from connectors import aws, lake
from pizzastream import schemas
from pizzastream.config import Props, staging_bucket
from pizzastream.settings import HourlyMetricsSettings

# The contract's order_fct (pizzastream.schemas): its columns, types and nullability.
ORDER_FCT = lake.arrow_schema(schemas.ORDER_FCT)
COLUMNS = schemas.ORDER_FCT.names
_PARTITION = re.compile(r"/dt=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/")


class Staging:
    def __init__(self, props: Props):
        self._s3 = aws.client(props, "s3")
        self._bucket = staging_bucket(props)
        self.bucket = self._bucket
        self.prefix = (
            HourlyMetricsSettings.from_group(props["HourlyMetrics"]).staging_prefix.strip("/") + "/"
        )

    def hour_prefix(self, hour: datetime) -> str:
        return f"{self.prefix}{lake.partition(hour)}/"

    def keys(self, prefix: str) -> list[str]:
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self._bucket, Prefix=prefix
        )
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    def write_hour(
        self, hour: datetime, chunks: Iterable[list[tuple]], part_rows: int
    ) -> tuple[int, list[str]]:
        """Replaces the hour's partition with ``chunks`` (lists of ``COLUMNS`` rows, in key
        order; each chunk becomes a row group) in parts of at most ``part_rows`` rows;
        returns ``(rows, keys)``. Parts beyond the new count are deleted afterwards, so a
        re-run never leaves an old part behind."""
        with tempfile.TemporaryDirectory() as scratch:
            parts = _Parts(
                self._upload,
                lambda n: f"{self.hour_prefix(hour)}part-{n:05d}.parquet",
                part_rows,
                Path(scratch) / "part.parquet",
            )
            for chunk in chunks:
                parts.write(chunk)
            parts.finish()
        stale = [{"Key": key} for key in self.keys(self.hour_prefix(hour)) if key not in parts.keys]
        if stale:
            self._s3.delete_objects(Bucket=self._bucket, Delete={"Objects": stale})
        return parts.rows, parts.keys

    def read_hour(self, hour: datetime) -> Iterator[pa.RecordBatch]:
        """The hour's rows as Arrow batches, one part file on local disk at a time."""
        for key in self.keys(self.hour_prefix(hour)):
            with tempfile.NamedTemporaryFile(suffix=".parquet") as local:
                self._s3.download_file(self._bucket, key, local.name)
                yield from pq.ParquetFile(local.name).iter_batches()

    def hours(self, start: datetime, end: datetime) -> list[datetime]:
        """The staged hours in ``[start, end)``."""
        found = set()
        for key in self.keys(self.prefix):
            match = _PARTITION.search(key)
            if match:
                found.add(
                    datetime.strptime(f"{match[1]} {match[2]}", "%Y-%m-%d %H").replace(tzinfo=UTC)
                )
        return sorted(hour for hour in found if start <= hour < end)

    def _upload(self, path: Path, key: str) -> None:
        self._s3.upload_file(str(path), self._bucket, key)


class _Parts:
    """Consecutive part files of at most ``part_rows`` rows, each uploaded when full; an
    hour without rows still gets one (empty) part."""

    def __init__(self, upload, key_of, part_rows: int, path: Path):
        self._upload, self._key_of = upload, key_of
        self._part_rows, self._path = part_rows, path
        self._writer: pq.ParquetWriter | None = None
        self._in_part = 0
        self.rows = 0
        self.keys: list[str] = []

    def write(self, rows: list[tuple]) -> None:
        while rows:
            if self._writer is None:
                self._writer = pq.ParquetWriter(self._path, ORDER_FCT)
            room = self._part_rows - self._in_part
            piece, rows = rows[:room], rows[room:]
            self._writer.write_batch(_record_batch(piece))
            self._in_part += len(piece)
            self.rows += len(piece)
            if self._in_part == self._part_rows:
                self._close_part()

    def finish(self) -> None:
        if self._writer is None and not self.keys:
            self._writer = pq.ParquetWriter(self._path, ORDER_FCT)
        if self._writer is not None:
            self._close_part()

    def _close_part(self) -> None:
        self._writer.close()  # type: ignore[union-attr]  # called with a part open
        self.keys.append(self._key_of(len(self.keys)))
        self._upload(self._path, self.keys[-1])
        self._writer, self._in_part = None, 0


def _record_batch(rows: list[tuple]) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [pa.array(values, type=field.type) for values, field in zip(zip(*rows), ORDER_FCT)],
        schema=ORDER_FCT,
    )


def floor_hour(moment: datetime) -> datetime:
    """The UTC hour holding ``moment`` (aware)."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
