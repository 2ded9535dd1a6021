"""hourly_metrics: the contract's hourly store metrics in the S3 lake and the warehouse, and
a live per-minute view of each store's hour in Redis.

sales (Kinesis, JSON text; event time and per-shard watermarks, then decoded once into typed
rows, in the JVM) -> Flink SQL:
  first copy of each order id (one deduplication, shared) -> sale_orders (view)
  sale_orders -> ``pizzastream.metrics.metric_sql``: 1-hour TUMBLE per
    store, emitted when the watermark passes the hour's end
      -> lake: Parquet under dt=/hour=, one object per hour        (``connectors.lake``)
      -> warehouse: staged merge per checkpoint                   (``connectors.warehouse``)
  sale_orders -> orders/revenue per store and minute, updated as sales come
      -> Redis ``live:{<store>}:<yyyymmddhh>``                       (``connectors.redis_store``)

Every per-event step runs in the JVM; Python only wires the job.

The watermark trails the newest sale by ``HourlyMetrics.out_of_orderness_minutes`` (20:
in-store sales come in 15-minute POS batches), so hour H is published about that long after
it ends. A sale later than that misses the stream's hour but is in ``order_fct``: the hourly
ETL recomputes the hour with ``run_batch`` (the same SQL, in batch mode, over the staging copy
of ``order_fct``) and replaces it in both sinks with ``publish_hours``.

Run locally with ``python jobs/hourly_metrics.py``; the same file is the ``python`` run option
of the Managed Service for Apache Flink application.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyflink.common import Types  # noqa: E402
from pyflink.datastream import DataStream, StreamExecutionEnvironment  # noqa: E402
from pyflink.table import DataTypes, Schema, StreamTableEnvironment, Table  # noqa: E402

from connectors import kinesis, lake, redis_store, warehouse  # noqa: E402
from jobs import runtime  # noqa: E402
from pizzastream.metrics import (  # noqa: E402
    HOUR_MS, SALE_ORDER_COLUMNS, MetricRow, as_hour, metric_sql, money_text_sql, shortest_dedup_ttl,
    stream_closes_at,
)

JOB_NAME = "hourly_metrics"
SALES, FIRST_COPIES, SALE_ORDERS = "sales", "first_copies", "sale_orders"
METRICS = "hourly_metric_rows"
MINUTE_MS = 60_000
# Most sales folded into the live view's per-store, per-minute counts before they are written.
LIVE_BATCH_SALES = 100_000
LAKE_TABLE, STAGING_TABLE = "lake_hourly_store_metrics", "staging_order_fct"

# The fields of the sale record (docs/streams.md) the metrics read; ``t`` is the event time
# (epoch ms) the source's watermarks are computed from.
SALE_RECORD = Types.ROW_NAMED(["o", "s", "c", "f", "t", "n", "r"], [
    Types.STRING(), Types.INT(), Types.STRING(), Types.STRING(), Types.LONG(), Types.LONG(),
    Types.LONG()])
KINESIS_MAX_RECORD_BYTES = 1024 * 1024

# The first copy of each order id (the ``sales`` stream is at-least-once: a replay repeats
# records). ONE deduplication feeds both outputs: the metrics and the live view each
# deduplicated on their own before, two states keyed by order id and two shuffles of every
# sale (docs/benchmarks.md). First by arrival: the copies of an order are the same record.
# Its state lives ``HourlyMetrics.dedup_ttl_minutes`` after an order's first copy: longer
# than an hour stays open (hour + out-of-orderness bound + idleness), so within an open hour
# an order counts once.
FIRST_COPIES_SQL = f"""
SELECT o AS order_id, s AS store_id, c AS channel, f AS fulfillment, n AS items,
       r AS revenue_cents, t AS ts_ms, event_time
FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY o ORDER BY seen_at) AS copy FROM {SALES})
WHERE copy = 1"""

# The first copies as the metrics' ``SALE_ORDER_COLUMNS`` (``ts`` the rowtime attribute)
# plus ``ts_ms``, the same event time in epoch ms for the live view's arithmetic.
SALE_ORDERS_SQL = f"""
CREATE TEMPORARY VIEW {SALE_ORDERS} ({', '.join(SALE_ORDER_COLUMNS)}, ts_ms) AS
SELECT order_id, store_id, channel, fulfillment, rowtime, items, revenue_cents, ts_ms
FROM {FIRST_COPIES}"""

# Running orders/revenue of each store's minutes, updated as sales arrive, late in-store
# ones included: windows would wait for the watermark, 20 minutes behind. Values, not
# increments, so a replay rewrites the same numbers. Grouped by numbers (the hour's first
# millisecond, the minute); the key and field text is formatted once per output row, not
# per sale. Key as ``redis_store.live_key``.
LIVE_SQL = f"""
SELECT
  'HSET' AS command,
  {redis_store.live_key_sql("store_id",
                            "DATE_FORMAT(TO_TIMESTAMP_LTZ(hour_ms, 3), 'yyyyMMddHH')")} AS key,
  LPAD(CAST(minute_of_hour AS STRING), 2, '0') AS field,
  CONCAT(CAST(COUNT(*) AS STRING), '/', {money_text_sql("SUM(revenue_cents)")}) AS `value`
FROM (
  SELECT store_id, revenue_cents, ts_ms - MOD(ts_ms, {HOUR_MS}) AS hour_ms,
         CAST(MOD(ts_ms, {HOUR_MS}) / {MINUTE_MS} AS INT) AS minute_of_hour
  FROM {SALE_ORDERS})
GROUP BY store_id, hour_ms, minute_of_hour"""


def _settings(props: dict[str, dict[str, str]]) -> tuple[timedelta, timedelta]:
    """The watermark's out-of-orderness bound and idleness."""
    group = props["HourlyMetrics"]
    return (timedelta(minutes=float(group["out_of_orderness_minutes"])),
            timedelta(seconds=float(group["idle_seconds"])))


def _dedup_ttl(props: dict[str, dict[str, str]]) -> timedelta:
    """``HourlyMetrics.dedup_ttl_minutes``, refused when an order id could be forgotten
    while its hour is still open (``shortest_dedup_ttl``)."""
    ttl = timedelta(minutes=float(props["HourlyMetrics"]["dedup_ttl_minutes"]))
    shortest = shortest_dedup_ttl(*_settings(props))
    if ttl < shortest:
        raise ValueError(f"HourlyMetrics.dedup_ttl_minutes must be at least "
                         f"{shortest / timedelta(minutes=1):g}: an hour stays open that long")
    return ttl


def sales_table(t_env: StreamTableEnvironment, sales: DataStream) -> Table:
    """Sale records (JSON text, event time and watermarks assigned by the source) decoded
    once, in the JVM, into ``SALE_RECORD`` columns with their event time: SQL over typed
    columns runs ~1.4x as fast as one ``JSON_VALUE`` parse per field
    (docs/benchmarks.md)."""
    return t_env.from_data_stream(
        runtime.json_rows(sales, SALE_RECORD, KINESIS_MAX_RECORD_BYTES), timed_columns())


def timed_columns() -> Schema:
    """The stream's columns plus ``event_time`` (with the source's watermarks) and
    ``seen_at`` (when the job saw the record), as ``metrics_and_live`` reads them."""
    return (Schema.new_builder()
            .column_by_metadata("event_time", DataTypes.TIMESTAMP_LTZ(3), "rowtime")
            .column_by_expression("seen_at", "PROCTIME()")
            .watermark("event_time", "SOURCE_WATERMARK()")
            .build())


def metrics_and_live(t_env: StreamTableEnvironment, sales: Table,
                     props: dict[str, dict[str, str]]) -> tuple[DataStream, DataStream]:
    """The job's logic without its edges: sales (``SALE_RECORD`` columns, ``event_time``
    with watermarks, ``seen_at``) in; metric rows (``METRIC_COLUMNS``) and live Redis
    commands out. Benchmarks feed it directly."""
    group = props["HourlyMetrics"]
    config = t_env.get_config()
    # Every operator is Flink SQL or JVM code that neither keeps nor changes the records it
    # is handed, so chained operators pass them on without a defensive copy each.
    config.set("pipeline.object-reuse", "true")
    # Only the deduplication and the live view keep per-key state outside windows.
    config.set("table.exec.state.ttl", f"{_dedup_ttl(props) // timedelta(milliseconds=1)} ms")
    # The deduplication without mini-batches: a processing-time mini-batch assigner would
    # replace the sales' watermarks with the wall clock, and the windows need the former.
    config.set("table.exec.mini-batch.enabled", "false")
    t_env.create_temporary_view(SALES, sales)
    t_env.create_temporary_view(FIRST_COPIES, runtime.computed_once(
        t_env, t_env.sql_query(FIRST_COPIES_SQL), "rowtime"))
    t_env.execute_sql(SALE_ORDERS_SQL)
    metrics = t_env.to_data_stream(t_env.sql_query(metric_sql(SALE_ORDERS)))
    # The live view's running counts change once per key and mini-batch, not per sale: a
    # batch ends after ``live_refresh_ms`` or LIVE_BATCH_SALES sales, enough for the
    # busiest second to fold into one update per store and minute.
    config.set("table.exec.state.ttl", f"{group['live_ttl_minutes']} min")
    config.set("table.exec.mini-batch.enabled", "true")
    config.set("table.exec.mini-batch.allow-latency", f"{group['live_refresh_ms']} ms")
    config.set("table.exec.mini-batch.size", str(LIVE_BATCH_SALES))
    live = t_env.to_changelog_stream(t_env.sql_query(LIVE_SQL))
    return metrics, live


def build(env: StreamExecutionEnvironment, props: dict[str, dict[str, str]]) -> None:
    """Adds the job's dataflow to ``env`` (tests and benchmarks reuse it)."""
    t_env = runtime.table_environment(env)
    out_of_orderness, idle = _settings(props)
    sales = kinesis.text_records(env, props, "sales", runtime.json_event_time(
        "t", out_of_orderness // timedelta(milliseconds=1), idle // timedelta(milliseconds=1)))
    metrics, live = metrics_and_live(t_env, sales_table(t_env, sales), props)

    # Both sinks read the one converted stream: two SQL queries would compute it twice.
    t_env.create_temporary_view(METRICS, metrics)
    t_env.to_data_stream(t_env.sql_query(f"SELECT *, '{warehouse.STREAM}' FROM {METRICS}")) \
        .sink_to(warehouse.stream_sink(props)).name("warehouse:hourly_store_metrics") \
        .uid("sink-warehouse-hourly-store-metrics")
    t_env.execute_sql(lake.metrics_sink_ddl(props, LAKE_TABLE))
    statements = t_env.create_statement_set()
    statements.add_insert_sql(
        f"INSERT INTO {LAKE_TABLE} SELECT *, {lake.PARTITION_SQL} FROM {METRICS}")
    statements.attach_as_datastream()

    # The live rows are a changelog: an update's old value is written just before its new
    # one (at most once per key and mini-batch), which leaves the new value.
    ttl_s = int(props["HourlyMetrics"]["live_ttl_minutes"]) * 60
    live.sink_to(redis_store.sink(props, ttl_s)).name("redis:live").uid("sink-redis-live")


def run_batch(props: dict[str, dict[str, str]], hours: Sequence[datetime]) -> list[MetricRow]:
    """The metrics of ``hours`` (window starts, naive UTC or aware) recomputed by Flink in
    batch mode, with the streaming job's SQL, from the S3 staging copy of ``order_fct``
    (``lake.staging_source_ddl``), regrouped into orders. Every hour must be staged (an
    hour without sales as an empty part): an unstaged hour would otherwise read as "no
    sales" and ``publish_hours`` would empty it."""
    hours = sorted({as_hour(hour) for hour in hours})
    if not hours:
        return []
    missing = lake.unstaged_hours(props, hours)
    if missing:
        raise ValueError(f"no staging partition for {[h.isoformat() for h in missing]}")
    t_env = runtime.batch_table_environment(props)
    t_env.execute_sql(lake.staging_source_ddl(props, STAGING_TABLE))
    partitions = " OR ".join(f"(dt = '{dt}' AND `hour` = '{hh}')"
                             for dt, hh in map(lake.partition_values, hours))
    t_env.execute_sql(f"""
CREATE TEMPORARY VIEW {SALE_ORDERS} ({', '.join(SALE_ORDER_COLUMNS)}) AS
SELECT order_id, store_id, channel, delivery_type, transaction_ts,
       CAST(SUM(quantity) AS BIGINT), SUM(CAST(total_transaction_amt * 100 AS BIGINT))
FROM {STAGING_TABLE}
WHERE {partitions}
GROUP BY order_id, store_id, channel, delivery_type, transaction_ts""")
    with t_env.sql_query(metric_sql(SALE_ORDERS)).execute().collect() as results:
        rows = [MetricRow(*result) for result in results]
    return sorted(rows, key=lambda row: (row.window_start, row.store_id))


def publish_hours(props: dict[str, dict[str, str]], rows: Sequence[MetricRow],
                  hours: Sequence[datetime]) -> None:
    """Replaces ``hours`` in the lake (one PUT of each hour's object, ``lake.replace_hour``)
    and in the warehouse (staging + merge, one transaction, ``warehouse.replace_hours``) with
    ``rows`` (``run_batch``'s): rows of a store that no longer sold in an hour disappear.
    Idempotent. Refuses hours the stream may still publish itself (``stream_closes_at``)
    and rows outside ``hours``."""
    hours = sorted({as_hour(hour) for hour in hours})
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    open_hours = [hour for hour in hours if stream_closes_at(hour, *_settings(props)) > now]
    if open_hours:
        raise ValueError(f"the stream may still publish {[h.isoformat() for h in open_hours]}")
    by_hour: dict[datetime, list[MetricRow]] = {hour: [] for hour in hours}
    for row in rows:
        if row.window_start not in by_hour:
            raise ValueError(f"row of {row.window_start.isoformat()} is outside the hours")
        by_hour[row.window_start].append(row)
    for hour, hour_rows in by_hour.items():
        lake.replace_hour(props, hour, hour_rows)
    warehouse.replace_hours(props, hours, rows)


if __name__ == "__main__":
    runtime.run_job(build, JOB_NAME)
