"""hourly_metrics: the contract's hourly store metrics in the S3 lake and the warehouse, and
a live per-minute view of each store's hour in Redis.

sales (Kinesis, JSON text; event time and per-shard watermarks, then decoded once into typed
rows, in the JVM) -> Flink SQL:
  first copy of each order id (one deduplication, shared) -> sale_orders (view)
  sale_orders -> ``pizzastream.metrics.metric_sql``'s rows, 1-hour windows per store folded
    in memory (JVM: ``pizzastream.flink.StoreHourMetrics``), emitted when the watermark
    passes the hour's end, then once more per ``late_refresh_seconds`` while late sales
    change it (allowed lateness)
      -> publisher (Python, per store and hour: ``HourPublisher``)
           -> lake: Parquet under dt=/hour=, the hour's one object written whole (``connectors.lake``)
           -> warehouse: staged merge per checkpoint          (``connectors.warehouse``)
  POS progress markers -> the publisher (which stores' POS had delivered the hour)
  sale_orders -> orders/revenue per store and minute, updated as sales come
      -> Redis ``live:{<store>}:<yyyymmddhh>``                       (``connectors.redis_store``)

Every per-sale step runs in the JVM; Python wires the job and publishes store-hours.

The watermark trails the newest sale by ``HourlyMetrics.out_of_orderness_minutes`` and waits
for every POS store system's batches up to the hour's end, at most ``pos_wait_minutes``
(``pizzastream.flink.JsonEventTime``): an hour is published as soon as it is complete, and a
store whose POS stayed silent is published ``partial``. A sale later than that updates its
hour within ``allowed_lateness_minutes`` (``pizzastream.publication``); later still, it is in
``order_fct``: the hourly ETL recomputes the hour with ``etl.metrics.run_batch``
(``pizzastream.metrics.metric_sql``, the same rules, in batch mode over the staging copy of
``order_fct``) and replaces it in both sinks with ``etl.metrics.publish_hours``.

Run locally with ``python jobs/hourly_metrics.py``; the same file is the ``python`` run option
of the Managed Service for Apache Flink application.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyflink.common import Row, RowKind, Types
from pyflink.common.typeinfo import LocalTimeTypeInfo
from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.datastream.functions import KeyedCoProcessFunction
from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor
from pyflink.table import DataTypes, Schema, StreamTableEnvironment, Table

from connectors import kinesis, lake, redis_store, warehouse
from jobs import operators, runtime
from pizzastream.config import Props
from pizzastream.metrics import (
    HOUR_MS,
    SALE_ORDER_COLUMNS,
    money_text_sql,
)
from pizzastream.orders import Channel, Fulfillment
from pizzastream.publication import (
    HourlySettings,
    corrections,
    first_publication,
    row_from_wire,
)
from pizzastream.schemas import METRIC_COLUMNS
from pizzastream.settings import HourlyMetricsSettings

JOB_NAME = "hourly_metrics"
SALES, FIRST_COPIES, SALE_ORDERS = "sales", "first_copies", "sale_orders"
MINUTE_MS = 60_000
# Most sales folded into the live view's per-store, per-minute counts before they are written.
LIVE_BATCH_SALES = 100_000
# What the publisher hands the warehouse sink: a metric row and who wrote it.
_TIMESTAMP = LocalTimeTypeInfo(LocalTimeTypeInfo.TimeType.LOCAL_DATE_TIME)
PUBLISHED_ROW = Types.ROW_NAMED(
    list(warehouse.LOAD_COLUMNS[:-1]),
    [
        Types.INT(),
        _TIMESTAMP,
        _TIMESTAMP,
        Types.LONG(),
        Types.LONG(),
        Types.BIG_DEC(),
        Types.LONG(),
        Types.LONG(),
        Types.LONG(),
        Types.BIG_DEC(),
        Types.STRING(),
    ],
)

# The fields of the sale record (docs/streams.md) the metrics read; ``t`` is the event time
# (epoch ms) the source's watermarks are computed from.
SALE_RECORD = Types.ROW_NAMED(
    ["o", "s", "c", "f", "t", "n", "r"],
    [
        Types.STRING(),
        Types.INT(),
        Types.STRING(),
        Types.STRING(),
        Types.LONG(),
        Types.LONG(),
        Types.LONG(),
    ],
)
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
  SELECT *, ROW_NUMBER() OVER (PARTITION BY o ORDER BY seen_at) AS copy FROM {SALES}
  WHERE o IS NOT NULL)
WHERE copy = 1"""

# The metric rows as they cross into the publisher (``StoreHourMetrics``' output, in
# ``METRIC_COLUMNS`` order): window bounds in minutes since the epoch and money in integer
# cents (``row_from_wire`` in Python), which PyFlink carries exactly.
METRIC_WIRE_ROW = Types.ROW_NAMED(
    list(METRIC_COLUMNS), [Types.INT(), Types.INT(), Types.INT(), *[Types.LONG()] * 7]
)

# What ``StoreHourMetrics`` folds of each first copy: its store, the ``metric_sql`` filters
# as flags (the business's channel and fulfillment names stay here), items and cents; ``ts``
# carries the event time (the records' timestamps) into the stream.
STORE_HOUR_INPUT_SQL = f"""
SELECT store_id, channel = '{Channel.ONLINE}' AS online,
       channel = '{Channel.IN_STORE}' AS in_store,
       fulfillment = '{Fulfillment.DELIVERY}' AS delivery, items, revenue_cents, ts
FROM {SALE_ORDERS}
WHERE store_id IS NOT NULL"""

# POS progress markers (``pizzastream.pos_batches.progress_json``: no order id): the store's
# POS has delivered every sale before ``t``, so every hour ending by then; each goes to the
# last of those hours (the first it completes, unless the POS was silent for an hour).
PROGRESS_SQL = f"""
SELECT s AS store_id, t - MOD(t, {HOUR_MS}) AS hour_end_ms FROM {SALES}
WHERE o IS NULL AND s IS NOT NULL AND t IS NOT NULL"""

# The first copies as the metrics' ``SALE_ORDER_COLUMNS`` (``ts`` the rowtime attribute)
# plus ``ts_ms``, the same event time in epoch ms for the live view's arithmetic.
SALE_ORDERS_SQL = f"""
CREATE TEMPORARY VIEW {SALE_ORDERS} ({", ".join(SALE_ORDER_COLUMNS)}, ts_ms) AS
SELECT order_id, store_id, channel, fulfillment, rowtime, items, revenue_cents, ts_ms
FROM {FIRST_COPIES}"""

# Running orders/revenue of each store's minutes, updated as sales arrive, late in-store
# ones included: windows would wait for the watermark, up to ``HourlySettings.bound``
# behind. Values, not increments, so a replay rewrites the same numbers. Grouped by
# numbers (the hour's first millisecond, the minute); the key and field text is formatted
# once per output row, not per sale. Key as ``redis_store.live_key``.
LIVE_SQL = f"""
SELECT
  'HSET' AS command,
  {
    redis_store.live_key_sql("store_id", "DATE_FORMAT(TO_TIMESTAMP_LTZ(hour_ms, 3), 'yyyyMMddHH')")
} AS key,
  LPAD(CAST(minute_of_hour AS STRING), 2, '0') AS field,
  CONCAT(CAST(COUNT(*) AS STRING), '/', {money_text_sql("SUM(revenue_cents)")}) AS `value`
FROM (
  SELECT store_id, revenue_cents, ts_ms - MOD(ts_ms, {HOUR_MS}) AS hour_ms,
         CAST(MOD(ts_ms, {HOUR_MS}) / {MINUTE_MS} AS INT) AS minute_of_hour
  FROM {SALE_ORDERS})
GROUP BY store_id, hour_ms, minute_of_hour"""


def _settings(props: Props) -> tuple[timedelta, timedelta]:
    """The watermark's out-of-orderness bound and idleness."""
    settings = HourlySettings.from_props(props)
    return settings.out_of_orderness, settings.idle


def sales_table(t_env: StreamTableEnvironment, sales: DataStream) -> Table:
    """Sale records (JSON text, event time and watermarks assigned by the source) decoded
    once, in the JVM, into ``SALE_RECORD`` columns with their event time: SQL over typed
    columns runs ~1.4x as fast as one ``JSON_VALUE`` parse per field
    (docs/benchmarks.md)."""
    return t_env.from_data_stream(
        operators.json_rows(sales, SALE_RECORD, KINESIS_MAX_RECORD_BYTES), timed_columns()
    )


def timed_columns() -> Schema:
    """The stream's columns plus ``event_time`` (with the source's watermarks) and
    ``seen_at`` (when the job saw the record), as ``metrics_and_live`` reads them."""
    return (
        Schema.new_builder()
        .column_by_metadata("event_time", DataTypes.TIMESTAMP_LTZ(3), "rowtime")
        .column_by_expression("seen_at", "PROCTIME()")
        .watermark("event_time", "SOURCE_WATERMARK()")
        .build()
    )


def store_hour_metrics(t_env: StreamTableEnvironment, settings: HourlySettings) -> DataStream:
    """The ``metric_sql`` rows of the ``sale_orders`` view per store and event-time hour, as
    a changelog of ``METRIC_WIRE_ROW``: each store-hour inserted when the watermark passes
    its end, then updated by late sales within ``settings.lateness``, at most once per
    ``settings.late_refresh``. Folded in memory by ``pizzastream.flink.StoreHourMetrics``
    (keyed by store, written to state once per checkpoint): the SQL group window it
    replaces read and wrote RocksDB once per sale (docs/benchmarks.md)."""
    return operators.store_hour_metrics(
        t_env.to_data_stream(t_env.sql_query(STORE_HOUR_INPUT_SQL)),
        METRIC_WIRE_ROW,
        settings.lateness // timedelta(milliseconds=1),
        settings.late_refresh // timedelta(milliseconds=1),
    )


HourMetrics = Callable[[StreamTableEnvironment, HourlySettings], DataStream]


def metrics_and_live(
    t_env: StreamTableEnvironment,
    sales: Table,
    props: Props,
    hour_metrics: HourMetrics = store_hour_metrics,
) -> tuple[DataStream, DataStream]:
    """The job's logic without its edges: sales (``SALE_RECORD`` columns, ``event_time``
    with watermarks, ``seen_at``) in; metric rows (``METRIC_WIRE_ROW``, a changelog: each
    store-hour inserted when the watermark passes its end, then updated by late sales) and
    live Redis commands out. Benchmarks feed it directly, and measure ``hour_metrics``
    (the metrics of the ``sale_orders`` view) against the SQL group window it replaced."""
    group = HourlyMetricsSettings.from_group(props["HourlyMetrics"])
    settings = group.timing
    config = t_env.get_config()
    # Every operator is Flink SQL or JVM code that neither keeps nor changes the records it
    # is handed, so chained operators pass them on without a defensive copy each.
    config.set("pipeline.object-reuse", "true")
    # Only the deduplication and the live view keep per-key state outside windows.
    config.set("table.exec.state.ttl", f"{settings.dedup_ttl // timedelta(milliseconds=1)} ms")
    # The deduplication without mini-batches: a processing-time mini-batch assigner would
    # replace the sales' watermarks with the wall clock, and the windows need the former.
    config.set("table.exec.mini-batch.enabled", "false")
    t_env.create_temporary_view(SALES, sales)
    t_env.create_temporary_view(
        FIRST_COPIES, operators.computed_once(t_env, t_env.sql_query(FIRST_COPIES_SQL), "rowtime")
    )
    t_env.execute_sql(SALE_ORDERS_SQL)
    metrics = hour_metrics(t_env, settings)
    # The live view's running counts change once per key and mini-batch, not per sale: a
    # batch ends after ``live_refresh_ms`` or LIVE_BATCH_SALES sales, enough for the
    # busiest second to fold into one update per store and minute.
    config.set("table.exec.state.ttl", f"{group.live_ttl_minutes:g} min")
    config.set("table.exec.mini-batch.enabled", "true")
    config.set("table.exec.mini-batch.allow-latency", f"{group.live_refresh_ms} ms")
    config.set("table.exec.mini-batch.size", str(LIVE_BATCH_SALES))
    live = t_env.to_changelog_stream(t_env.sql_query(LIVE_SQL))
    return metrics, live


class HourPublisher(KeyedCoProcessFunction):
    """Publishes each hour (the key: its end, epoch ms) once the window has emitted it, and
    its late changes after that (``pizzastream.publication``): the lake's object of the hour
    written whole (a PUT: readers see the old hour or the new one), the new or changed rows
    out to the warehouse sink, with their ``source``. A replay after a restore writes the
    same object and merges the same rows again. Per store and hour, never per sale.

    The window emits an hour's rows together, when the watermark passes its end, so the
    publisher collects them for ``late_refresh_seconds`` of processing time and publishes
    them then (PyFlink 1.20 hands this operator no watermark to set event-time timers by);
    a window subtask later than that publishes its rows as a ``late`` correction. POS
    progress markers come keyed by the last hour they complete: a store without one for the
    hour when it is published is published ``partial``. The hour's state goes
    ``changes_for`` after it was first seen, as the window's does."""

    def __init__(self, props: Props):
        self._props = props
        self._settings = HourlySettings.from_props(props)

    def open(self, runtime_context) -> None:
        self._rows = runtime_context.get_map_state(
            MapStateDescriptor("rows", Types.INT(), Types.PICKLED_BYTE_ARRAY())
        )
        self._published = runtime_context.get_map_state(
            MapStateDescriptor("published", Types.INT(), Types.PICKLED_BYTE_ARRAY())
        )
        self._delivered = runtime_context.get_map_state(
            MapStateDescriptor("delivered", Types.INT(), Types.BOOLEAN())
        )
        self._forget_at = runtime_context.get_state(ValueStateDescriptor("forget_at", Types.LONG()))

    def _remember(self, ctx) -> int:
        """Sets the hour's expiry when it is first seen; returns the processing time."""
        timers = ctx.timer_service()
        now = timers.current_processing_time()
        if self._forget_at.value() is None:
            forget_at = now + self._settings.changes_for // timedelta(milliseconds=1)
            self._forget_at.update(forget_at)
            timers.register_processing_time_timer(forget_at)
        return now

    def process_element1(self, value: Row, ctx):
        if value.get_row_kind() in (RowKind.UPDATE_BEFORE, RowKind.DELETE):
            return
        self._rows.put(value[0], row_from_wire(value))
        now = self._remember(ctx)
        refresh = self._settings.late_refresh // timedelta(milliseconds=1) or 1
        ctx.timer_service().register_processing_time_timer(now - now % refresh + refresh)

    def process_element2(self, value: Row, ctx):
        self._remember(ctx)
        self._delivered.put(value[0], True)

    def on_timer(self, timestamp: int, ctx):
        if timestamp == self._forget_at.value():
            self._rows.clear()
            self._published.clear()
            self._delivered.clear()
            self._forget_at.clear()
            return
        current = sorted(self._rows.values(), key=lambda row: row.store_id)
        if not current:
            return
        if self._published.is_empty():
            changed = first_publication(current, set(self._delivered.keys()))
        else:
            changed = corrections(dict(self._published.items()), current)
        if not changed:
            return
        lake.replace_hour(self._props, current[0].window_start, current)
        for row, source in changed:
            self._published.put(row.store_id, row)
            yield Row(*vars(row).values(), source)


def publish(t_env: StreamTableEnvironment, metrics: DataStream, props: Props) -> DataStream:
    """Metric rows (``metrics_and_live``'s changelog, ``METRIC_WIRE_ROW``) through
    ``HourPublisher``, with the POS progress markers of the ``sales`` view: the rows each
    publication wrote."""
    progress = t_env.to_data_stream(t_env.sql_query(PROGRESS_SQL))
    return (
        metrics.key_by(lambda row: row[2] * 60_000, key_type=Types.LONG())
        .connect(progress.key_by(lambda marker: marker[1], key_type=Types.LONG()))
        .process(HourPublisher(props), PUBLISHED_ROW)
        .name("publish-hours")
        .uid("publish-hours")
    )


def build(env: StreamExecutionEnvironment, props: Props) -> None:
    """Adds the job's dataflow to ``env`` (tests and benchmarks reuse it)."""
    t_env = runtime.table_environment(env)
    settings = HourlySettings.from_props(props)
    sales = kinesis.text_records(
        env,
        props,
        "sales",
        operators.json_event_time(
            "t",
            settings.out_of_orderness // timedelta(milliseconds=1),
            settings.idle // timedelta(milliseconds=1),
            settings.pos_wait // timedelta(milliseconds=1),
        ),
    )
    metrics, live = metrics_and_live(t_env, sales_table(t_env, sales), props)
    publish(t_env, metrics, props).sink_to(warehouse.stream_sink(props)).name(
        "warehouse:hourly_store_metrics"
    ).uid("sink-warehouse-hourly-store-metrics")

    # The live rows are a changelog: an update's old value is written just before its new
    # one (at most once per key and mini-batch), which leaves the new value.
    ttl_s = int(HourlyMetricsSettings.from_group(props["HourlyMetrics"]).live_ttl_minutes * 60)
    live.sink_to(redis_store.sink(props, ttl_s)).name("redis:live").uid("sink-redis-live")


if __name__ == "__main__":
    runtime.run_job(build, JOB_NAME)
