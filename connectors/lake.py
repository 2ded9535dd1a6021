"""S3 data lake edge: the ``hourly_store_metrics`` Parquet partitions (contract) and the
``order_fct`` staging area they are recomputed from.

Layout (bucket ``Lake.bucket``, prefixes in the ``HourlyMetrics`` group):

- ``lake/hourly_store_metrics/dt=YYYY-MM-DD/hour=HH/<one object>``: written whole by
  ``replace_hour`` with a single PUT of the same key, by the streaming job's publisher at
  each publication and correction of the hour and by the batch corrections, so a reader sees
  the old hour or the new one, never both or neither. Hive-style partitions, as Athena, Spectrum, DuckDB and
  pyarrow expect; the partition columns are in the path only, not in the files.
- ``staging/order_fct/dt=YYYY-MM-DD/hour=HH/*.parquet``: the hourly ETL's copy of each hour's
  ``order_fct`` line items (``etl/staging.py``), read by the batch mode of ``hourly_metrics``.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from datetime import datetime

import pyarrow as pa
import pyarrow.parquet as pq

from connectors import aws
from pizzastream import schemas
from pizzastream.config import Props, staging_bucket
from pizzastream.metrics import MetricRow, as_hour
from pizzastream.schemas import HOURLY_STORE_METRICS, METRIC_COLUMNS, ORDER_FCT
from pizzastream.settings import HourlyMetricsSettings, LakeSettings

log = logging.getLogger(__name__)

_ARROW_TYPES = {schemas.INTEGER: pa.int32(), schemas.BIGINT: pa.int64(), schemas.TEXT: pa.string()}


def arrow_type(column: schemas.Column, unit: str) -> pa.DataType:
    """The Arrow (and so Parquet) type of a ``pizzastream.schemas`` column; timestamps in
    ``unit``, an instant (``timestamptz``) in UTC."""
    precision = schemas.numeric_precision(column.type)
    if precision:
        return pa.decimal128(*precision)
    if column.type in (schemas.TIMESTAMP, schemas.TIMESTAMPTZ):
        return pa.timestamp(unit, tz="UTC" if column.type == schemas.TIMESTAMPTZ else None)
    return _ARROW_TYPES[column.type]


def arrow_schema(
    table: schemas.Table,
    names: Sequence[str] | None = None,
    unit: str = "us",
    nullable: bool | None = None,
) -> pa.Schema:
    """The Arrow schema of ``table``'s columns ``names`` (default all), in the table's order
    given. ``nullable``: every field optional (True) or as the table says (None)."""
    columns = [table.column(name) for name in (names or table.names)]
    return pa.schema(
        [
            pa.field(
                column.name,
                arrow_type(column, unit),
                nullable=column.nullable if nullable is None else nullable,
            )
            for column in columns
        ]
    )


# The lake's Parquet schema (timestamps as Parquet INT96, as Flink's Parquet writer has
# written them since the first hours; every column optional).
METRICS_SCHEMA = arrow_schema(HOURLY_STORE_METRICS, METRIC_COLUMNS, unit="ms", nullable=True)


def partition_values(hour: datetime) -> tuple[str, str]:
    """The ``dt`` and ``hour`` partition values of an hour."""
    return f"{hour:%Y-%m-%d}", f"{hour:%H}"


def partition(hour: datetime) -> str:
    dt, hh = partition_values(hour)
    return f"dt={dt}/hour={hh}"


def _prefix(props: Props, name: str) -> str:
    prefixes = HourlyMetricsSettings.from_group(props["HourlyMetrics"])
    return (prefixes.lake_prefix if name == "lake_prefix" else prefixes.staging_prefix).strip("/")


def metrics_url(props: Props) -> str:
    return f"s3://{LakeSettings.from_group(props['Lake']).bucket}/{_prefix(props, 'lake_prefix')}"


def staging_url(props: Props) -> str:
    return f"s3://{staging_bucket(props)}/{_prefix(props, 'staging_prefix')}"


def staging_source_ddl(props: Props, table: str) -> str:
    """Flink table over the staging line items (``order_fct`` columns, as ``etl/staging.py``
    writes them), partitioned like the lake so a query for some hours reads only theirs.

    The amounts are read as DECIMAL(19, 2): Flink 1.20's Parquet reader fails on
    dictionary-encoded decimals of precision up to 18 (pyarrow's default encoding), and
    reads the same values as bytes when the declared precision is larger; the instant
    ``transaction_ts`` as a UTC ``TIMESTAMP(3)`` (``parquet.utc-timezone``)."""
    columns = ", ".join(f"{column.name} {_staging_type(column)}" for column in ORDER_FCT.columns)
    return f"""
CREATE TEMPORARY TABLE `{table}` (
  {columns}, dt STRING, `hour` STRING
) PARTITIONED BY (dt, `hour`) WITH (
  'connector' = 'filesystem',
  'path' = '{staging_url(props)}',
  'format' = 'parquet',
  'parquet.utc-timezone' = 'true'
)"""


def _staging_type(column: schemas.Column) -> str:
    if schemas.numeric_precision(column.type):
        return "DECIMAL(19, 2)"
    return "TIMESTAMP(3)" if column.type == schemas.TIMESTAMPTZ else schemas.flink_sql_type(column)


def unstaged_hours(props: Props, hours: Sequence[datetime]) -> list[datetime]:
    """Those of ``hours`` without a staging partition (the ETL stages an hour without sales
    as an empty part, so a missing partition means "not staged", never "no sales")."""
    s3 = aws.client(props, "s3")
    bucket = staging_bucket(props)
    return [
        hour
        for hour in hours
        if not s3.list_objects_v2(
            Bucket=bucket,
            Prefix=f"{_prefix(props, 'staging_prefix')}/{partition(hour)}/",
            MaxKeys=1,
        ).get("KeyCount")
    ]


def metrics_parquet(rows: Sequence[MetricRow]) -> bytes:
    """One Parquet object of ``rows`` as the streaming job writes them (Snappy, INT96)."""
    table = pa.Table.from_pylist([vars(row) for row in rows], schema=METRICS_SCHEMA)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="snappy", use_deprecated_int96_timestamps=True)
    return buffer.getvalue()


def _visible_keys(s3, bucket: str, prefix: str) -> list[str]:
    """Objects readers see: Hive, Athena and pyarrow skip names starting with ``_``/``.``."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    keys = (obj["Key"] for page in pages for obj in page.get("Contents", []))
    return sorted(key for key in keys if not key.rsplit("/", 1)[-1].startswith(("_", ".")))


def replace_hour(props: Props, hour: datetime, rows: Sequence[MetricRow]) -> str | None:
    """Makes the hour's partition hold exactly ``rows``, in one request: a PUT over the
    partition's object (a new object if the stream published nothing for the hour), or a
    DELETE of it when the hour has no rows any more. Returns the key now holding the hour."""
    hour = as_hour(hour)
    s3 = aws.client(props, "s3")
    bucket = LakeSettings.from_group(props["Lake"]).bucket
    prefix = f"{_prefix(props, 'lake_prefix')}/{partition(hour)}/"
    keys = _visible_keys(s3, bucket, prefix)
    if len(keys) > 1:
        # Not produced by the stream (one object per hour); converge, not atomically.
        log.warning("lake partition %s held %d objects; keeping %s", prefix, len(keys), keys[0])
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[1:]]})
    if not rows:
        if keys:
            s3.delete_object(Bucket=bucket, Key=keys[0])
        return None
    key = keys[0] if keys else f"{prefix}part-{hour:%Y%m%d%H}-batch"
    s3.put_object(Bucket=bucket, Key=key, Body=metrics_parquet(rows))
    return key


def read_metrics(props: Props) -> list[MetricRow]:
    """Every metric row in the lake (any Parquet reader sees the same), ordered by hour and
    store; for checks and small tools, not for analytics at scale (see ``analytics``)."""
    s3 = aws.client(props, "s3")
    bucket = LakeSettings.from_group(props["Lake"]).bucket
    rows: list[MetricRow] = []
    for key in _visible_keys(s3, bucket, f"{_prefix(props, 'lake_prefix')}/"):
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        table = pq.read_table(io.BytesIO(body)).cast(METRICS_SCHEMA)
        rows.extend(MetricRow(**row) for row in table.to_pylist())
    return sorted(rows, key=lambda row: (row.window_start, row.store_id))


def object_keys(props: Props) -> list[str]:
    """Keys of the lake's metric objects, hidden ones left out."""
    return _visible_keys(
        aws.client(props, "s3"),
        LakeSettings.from_group(props["Lake"]).bucket,
        f"{_prefix(props, 'lake_prefix')}/",
    )
