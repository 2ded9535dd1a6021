"""hourly_metrics on the benchmark generator: ``jobs.hourly_metrics`` as shipped (sale
text, event time and watermarks from ``operators.json_event_time`` in the JVM, as its Kinesis
source assigns them, decoded once by ``sale_records``, then ``metrics_and_live``: one
``StoreSales`` operator keyed by store); the same over sales the generator emits already
typed, with a SQL watermark (no JSON at all); the job's earlier versions, built here from
the SQL they ran (the measured "before" of each change); and the publication latency of each
hour's rows.

Publication: an hour's rows leave the job when the watermark passes the hour's end, i.e.
when a sale ``out_of_orderness`` later than the end has come in (on a quiet stream, the wall
clock minus the bound after ``idle_seconds``). So in production the delay after the hour
ends is the bound (configuration) plus what the pipeline adds, measured here: event time is
run ~500x faster than the wall clock so that hours close every few seconds, and for each
hour the harness compares when the generator emitted the sale that let the watermark pass
its end with when its first metric row left the job.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

from pyflink.common import Types
from pyflink.datastream import DataStream, MapFunction

from pizzastream.schemas import METRIC_COLUMNS

PUBLISHED = "published.txt"
# simulated sales per event-time second in the delay run: at the job's ~20k sales/s per core
# an hour of event time passes every few wall-clock seconds
DELAY_RATE = 25


def _timed_sales(ctx) -> DataStream:
    """Sale records as text with event time and watermarks, as ``kinesis.text_records``
    with ``operators.json_event_time`` gives them to the job."""
    from jobs import hourly_metrics as job
    from jobs import operators

    out_of_orderness, idle = job._settings(ctx.props)
    strategy = operators.json_event_time(
        "t", out_of_orderness // timedelta(milliseconds=1), idle // timedelta(milliseconds=1)
    )
    sales = ctx.generator("sale_text")
    return DataStream(
        sales._j_data_stream.assignTimestampsAndWatermarks(strategy._j_watermark_strategy).name(
            "event-time"
        )
    )


def _shipped(ctx):
    """``metrics_and_live`` fed as the job feeds it."""
    from jobs import hourly_metrics as job

    return job.metrics_and_live(job.sale_records(_timed_sales(ctx)), ctx.props)


def build(ctx) -> dict:
    metrics, live = _shipped(ctx)
    ctx.discard(metrics)
    ctx.discard(live)
    return {}


def _hms(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def build_typed(ctx) -> dict:
    """``metrics_and_live`` over sales generated as typed rows (``sale_row``), event time and
    watermark (the same bound) in SQL: the job's logic with no JSON anywhere."""
    from pyflink.table import Schema

    from jobs import hourly_metrics as job

    out_of_orderness, _ = job._settings(ctx.props)
    t_env = ctx.t_env
    rows = t_env.from_data_stream(
        ctx.generator("sale_row"),
        Schema.new_builder()
        .column_by_expression("event_time", "TO_TIMESTAMP_LTZ(ts_ms, 3)")
        .watermark("event_time", f"event_time - INTERVAL '{_hms(out_of_orderness)}' HOUR TO SECOND")
        .build(),
    )
    t_env.create_temporary_view("sale_rows", rows)
    # the rowtime column last: ``to_data_stream`` makes it the records' timestamps
    sales = t_env.sql_query(
        "SELECT order_id AS o, store_id AS s, channel AS c, "
        "fulfillment AS f, ts_ms AS t, CAST(n AS BIGINT) AS n, r, event_time FROM sale_rows"
    )
    metrics, live = job.metrics_and_live(t_env.to_data_stream(sales), ctx.props)
    ctx.discard(metrics)
    ctx.discard(live)
    return {}


# hourly_metrics before ``StoreSales`` (the "before" of hourly_row_number_dedup and, with
# other metrics or input, of the earlier changes): the first copy of each order id by a SQL
# ``ROW_NUMBER`` keyed by order id (a shuffle of every sale by order id, state with a TTL
# read and written per sale), shared by the metrics (``StoreHourMetrics`` over
# STORE_HOUR_INPUT_SQL) and the live view (LIVE_SQL, a mini-batch group-by).
FIRST_COPIES, SALE_ORDERS = "first_copies", "sale_orders"
FIRST_COPIES_SQL = """
SELECT o AS order_id, s AS store_id, c AS channel, f AS fulfillment, n AS items,
       r AS revenue_cents, t AS ts_ms, event_time
FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY o ORDER BY seen_at) AS copy FROM sales_before
  WHERE o IS NOT NULL)
WHERE copy = 1"""
# Most sales folded into the live view's per-store, per-minute counts before they are written.
LIVE_BATCH_SALES = 100_000
MINUTE_MS = 60_000


def _sale_orders_sql() -> str:
    from pizzastream.metrics import SALE_ORDER_COLUMNS

    return f"""
CREATE TEMPORARY VIEW {SALE_ORDERS} ({", ".join(SALE_ORDER_COLUMNS)}, ts_ms) AS
SELECT order_id, store_id, channel, fulfillment, rowtime, items, revenue_cents, ts_ms
FROM {FIRST_COPIES}"""


def _store_hour_input_sql() -> str:
    from pizzastream.orders import Channel, Fulfillment

    return f"""
SELECT store_id, channel = '{Channel.ONLINE}' AS online,
       channel = '{Channel.IN_STORE}' AS in_store,
       fulfillment = '{Fulfillment.DELIVERY}' AS delivery, items, revenue_cents, ts
FROM {SALE_ORDERS}
WHERE store_id IS NOT NULL"""


def _live_sql() -> str:
    from connectors import redis_store
    from pizzastream.metrics import HOUR_MS, money_text_sql

    key = redis_store.live_key_sql(
        "store_id", "DATE_FORMAT(TO_TIMESTAMP_LTZ(hour_ms, 3), 'yyyyMMddHH')"
    )
    return f"""
SELECT
  'HSET' AS command,
  {key} AS key,
  LPAD(CAST(minute_of_hour AS STRING), 2, '0') AS field,
  CONCAT(CAST(COUNT(*) AS STRING), '/', {money_text_sql("SUM(revenue_cents)")}) AS `value`
FROM (
  SELECT store_id, revenue_cents, ts_ms - MOD(ts_ms, {HOUR_MS}) AS hour_ms,
         CAST(MOD(ts_ms, {HOUR_MS}) / {MINUTE_MS} AS INT) AS minute_of_hour
  FROM {SALE_ORDERS})
GROUP BY store_id, hour_ms, minute_of_hour"""


def timed_columns():
    """The decoded sales' columns plus ``event_time`` (with the source's watermarks) and
    ``seen_at`` (when the job saw the record), as ``row_number_dedup`` reads them."""
    from pyflink.table import DataTypes, Schema

    return (
        Schema.new_builder()
        .column_by_metadata("event_time", DataTypes.TIMESTAMP_LTZ(3), "rowtime")
        .column_by_expression("seen_at", "PROCTIME()")
        .watermark("event_time", "SOURCE_WATERMARK()")
        .build()
    )


def sales_table_before(ctx):
    """The job's decoded sales as the table the earlier versions read."""
    from jobs import hourly_metrics as job

    return ctx.t_env.from_data_stream(job.sale_records(_timed_sales(ctx)), timed_columns())


def computed_once(t_env, table, rowtime: str):
    """``table`` (insert-only, with one rowtime attribute) computed once for every query
    that reads the result: ``to_data_stream`` and ``to_changelog_stream`` plan each query on
    its own, so two outputs of one view would each run a copy of its operators and state.
    The rows go through as Flink's internal rows (no conversion), the rowtime attribute as
    the records' timestamps and watermarks, and come back with it as column ``rowtime``
    (the table's own time column stays, as a plain timestamp)."""
    from pyflink.java_gateway import get_gateway
    from pyflink.table import DataTypes, Schema, Table

    jvm = get_gateway().jvm
    j_tenv, j_table = t_env._j_tenv, table._j_table
    internal_rows = (
        j_table.getResolvedSchema()
        .toPhysicalRowDataType()
        .bridgedTo(jvm.org.apache.flink.table.data.RowData._java_lang_class)
    )
    j_stream = j_tenv.toDataStream(j_table, internal_rows)
    schema = (
        Schema.new_builder()
        .column_by_metadata(rowtime, DataTypes.TIMESTAMP_LTZ(3), "rowtime")
        .watermark(rowtime, "SOURCE_WATERMARK()")
        .build()
    )
    return Table(j_tenv.fromDataStream(j_stream, schema._j_schema), t_env)


def store_hour_metrics_before(t_env, settings) -> DataStream:
    """``StoreHourMetrics`` over STORE_HOUR_INPUT_SQL's rows, as the job ran it."""
    from pyflink.java_gateway import get_gateway

    from jobs import hourly_metrics as job

    metrics = get_gateway().jvm.pizzastream.flink.StoreHourMetrics
    flags = t_env.to_data_stream(t_env.sql_query(_store_hour_input_sql()))
    return DataStream(
        flags._j_data_stream.keyBy(metrics.STORE, Types.INT().get_java_type_info())
        .transform(
            "store-hour-metrics",
            job.METRIC_WIRE_ROW.get_java_type_info(),
            metrics(
                settings.lateness // timedelta(milliseconds=1),
                settings.late_refresh // timedelta(milliseconds=1),
            ),
        )
        .uid("store-hour-metrics")
    )


def row_number_dedup(t_env, sales, props, hour_metrics=store_hour_metrics_before):
    """hourly_metrics' ``metrics_and_live`` before ``StoreSales``, over a ``sales`` table
    (``SALE_RECORD`` columns, ``event_time`` with watermarks, ``seen_at``): the ROW_NUMBER
    deduplication, ``hour_metrics`` over the ``sale_orders`` view and LIVE_SQL, with the
    job's table configuration of then."""
    from pizzastream.settings import HourlyMetricsSettings

    group = HourlyMetricsSettings.from_group(props["HourlyMetrics"])
    settings = group.timing
    config = t_env.get_config()
    config.set("pipeline.object-reuse", "true")
    config.set("table.exec.state.ttl", f"{settings.dedup_ttl // timedelta(milliseconds=1)} ms")
    config.set("table.exec.mini-batch.enabled", "false")
    t_env.create_temporary_view("sales_before", sales)
    t_env.create_temporary_view(
        FIRST_COPIES, computed_once(t_env, t_env.sql_query(FIRST_COPIES_SQL), "rowtime")
    )
    t_env.execute_sql(_sale_orders_sql())
    metrics = hour_metrics(t_env, settings)
    config.set("table.exec.state.ttl", f"{group.live_ttl_minutes:g} min")
    config.set("table.exec.mini-batch.enabled", "true")
    config.set("table.exec.mini-batch.allow-latency", f"{group.live_refresh_ms} ms")
    config.set("table.exec.mini-batch.size", str(LIVE_BATCH_SALES))
    live = t_env.to_changelog_stream(t_env.sql_query(_live_sql()))
    return metrics, live


def build_row_number_dedup(ctx) -> dict:
    """hourly_metrics before ``StoreSales``: the measured "before" of that change."""
    metrics, live = row_number_dedup(ctx.t_env, sales_table_before(ctx), ctx.props)
    ctx.discard(metrics)
    ctx.discard(live)
    return {}


def build_json_value(ctx) -> dict:
    """hourly_metrics with the ROW_NUMBER deduplication (``row_number_dedup``) over a view
    that parses each field with ``JSON_VALUE`` (the job until it decoded sales once): the
    measured "before" of that change."""
    t_env = ctx.t_env
    t_env.create_temporary_view(
        "sale_text", t_env.from_data_stream(_timed_sales(ctx), timed_columns())
    )
    fields = ", ".join(
        f"CAST(JSON_VALUE(f0, '$.{name}') AS {sql_type}) AS {name}"
        for name, sql_type in (
            ("o", "STRING"),
            ("s", "INT"),
            ("c", "STRING"),
            ("f", "STRING"),
            ("t", "BIGINT"),
            ("n", "BIGINT"),
            ("r", "BIGINT"),
        )
    )
    sales = t_env.sql_query(f"SELECT {fields}, event_time, seen_at FROM sale_text")
    metrics, live = row_number_dedup(t_env, sales, ctx.props)
    ctx.discard(metrics)
    ctx.discard(live)
    return {}


class _FirstRowOfEachHour(MapFunction):
    """Writes ``<window_end ms> <wall ms>`` when an hour's first metric row passes (a few
    thousand rows per closed hour cross into Python: nothing next to the sales)."""

    def __init__(self, path: str):
        self._path = path

    def open(self, runtime_context):
        self._seen = set()
        self._file = open(self._path, "a")  # noqa: SIM115 - closed in close()

    def map(self, row):
        end_ms = row[2] * 60_000  # window_end in minutes (``job.METRIC_WIRE_ROW``)
        if end_ms not in self._seen:
            self._seen.add(end_ms)
            self._file.write(f"{end_ms} {time.time_ns() // 1_000_000}\n")
            self._file.flush()
        return end_ms

    def close(self):
        self._file.close()


def build_publications(ctx) -> dict:
    """The shipped job's logic with event time running fast; metric rows timed on the way
    out (``publication_latencies`` reads the times after the run)."""
    ctx.spec.setdefault("rate", DELAY_RATE)
    metrics, live = _shipped(ctx)
    path = str(Path(ctx.progress_dir) / PUBLISHED)
    ctx.discard(
        metrics.map(_FirstRowOfEachHour(path), output_type=Types.LONG()).name("time-publications")
    )
    ctx.discard(live)
    return {"publications": True}


def publication_latencies(progress_dir: Path, spec: dict, props, generated, after: float) -> dict:
    """For each hour published after wall time ``after``: seconds from the generator
    emitting the first sale ``out_of_orderness`` past the hour's end (when the watermark can
    pass it) to the hour's first metric row leaving the job. ``generated``: the generator's
    ``ProgressFiles`` (parallelism 1: one subtask's event time is linear in its count)."""
    from jobs import hourly_metrics as job
    from pizzastream.publication import HourlySettings

    out_of_orderness, _ = job._settings(props)
    settings = HourlySettings.from_props(props)
    bound_ms = out_of_orderness // timedelta(milliseconds=1)
    rate = float(spec.get("rate", DELAY_RATE))
    # OrderGenerator: the n-th sale's event time is (open time - lag) + n * 1000 / rate
    first_event_ms = generated.first_record_time() * 1000 - int(spec.get("lag_ms", 3_600_000))
    latencies = []
    path = progress_dir / PUBLISHED
    lines = path.read_text().split("\n") if path.exists() else []
    for line in filter(None, lines):
        end_ms, emitted_ms = map(int, line.split())
        passed = generated.time_at((end_ms + bound_ms - first_event_ms) * rate / 1000)
        if passed is not None and passed >= after:
            latencies.append(round(emitted_ms / 1000 - passed, 3))
    ordered = sorted(latencies)
    return {
        "hours_published": len(latencies),
        "latencies_s": latencies,
        "p50_s": ordered[len(ordered) // 2] if ordered else None,
        "max_s": ordered[-1] if ordered else None,
        "out_of_orderness_min": out_of_orderness / timedelta(minutes=1),
        "bound_min": settings.bound / timedelta(minutes=1),
        "late_refresh_s": settings.late_refresh.total_seconds(),
        "idle_s": float(props["HourlyMetrics"]["idle_seconds"]),
        "checkpoint_interval_ms": int(props["FlinkTuning"]["checkpoint_interval_ms"]),
    }


# The metric rows of the SQL group window as they crossed into the publisher before
# ``StoreHourMetrics`` (the job's ``METRIC_WIRE_ROW``): window bounds in minutes since the
# epoch, money in integer cents.
GROUP_WINDOW_WIRE_COLUMNS = tuple(
    f"CAST({name} * 100 AS BIGINT)"
    if name in ("revenue", "avg_order_value")
    else f"TIMESTAMPDIFF(MINUTE, TIMESTAMP '1970-01-01 00:00:00', {name})"
    if name in ("window_start", "window_end")
    else name
    for name in METRIC_COLUMNS
)


def group_window_metrics(t_env, settings) -> DataStream:
    """The hourly metrics as the job computed them before ``StoreHourMetrics``: the SQL
    group window of ``metric_sql`` over ``sale_orders``, open ``settings.lateness`` after
    it fired and re-firing every ``settings.late_refresh`` while late sales change it (its
    accumulator and timers in keyed state, read and written per sale)."""
    from pizzastream.metrics import metric_sql

    config = t_env.get_config()
    if settings.lateness:
        config.set(
            "table.exec.emit.allow-lateness", f"{settings.lateness // timedelta(milliseconds=1)} ms"
        )
        config.set("table.exec.emit.late-fire.enabled", "true")
        config.set(
            "table.exec.emit.late-fire.delay",
            f"{settings.late_refresh // timedelta(milliseconds=1)} ms",
        )
    return t_env.to_changelog_stream(
        t_env.sql_query(
            f"SELECT {', '.join(GROUP_WINDOW_WIRE_COLUMNS)} FROM ({metric_sql(SALE_ORDERS)})"
        )
    )


def build_group_window(ctx) -> dict:
    """hourly_metrics with the ROW_NUMBER deduplication (``row_number_dedup``) and the
    hourly metrics of the SQL group window it had before ``StoreHourMetrics`` (the measured
    "before" of that change, beside hourly_row_number_dedup)."""
    metrics, live = row_number_dedup(
        ctx.t_env, sales_table_before(ctx), ctx.props, hour_metrics=group_window_metrics
    )
    ctx.discard(metrics)
    ctx.discard(live)
    return {}


# hourly_metrics before its sales were deduplicated once (kept to be measured beside it): the
# metrics deduplicated within each window, the live view on its own, by DATE_FORMAT keys.
TWO_DEDUPS_METRIC_SQL = """
SELECT
  store_id, window_start, window_end,
  COUNT(*) AS orders,
  SUM(items) AS items,
  {revenue} AS revenue,
  COUNT(*) FILTER (WHERE channel = 'online') AS online_orders,
  COUNT(*) FILTER (WHERE channel = 'in_store') AS in_store_orders,
  COUNT(*) FILTER (WHERE fulfillment = 'delivery') AS delivery_orders,
  {average} AS avg_order_value
FROM (
  SELECT *, ROW_NUMBER() OVER (
    PARTITION BY window_start, window_end, order_id ORDER BY ts) AS copy
  FROM TABLE(TUMBLE(TABLE sale_orders_before, DESCRIPTOR(ts), INTERVAL '1' HOUR))
)
WHERE copy = 1
GROUP BY store_id, window_start, window_end"""
TWO_DEDUPS_LIVE_SQL = """
SELECT
  'HSET' AS command,
  CONCAT('live:{{', CAST(store_id AS STRING), '}}:', hour_key) AS key,
  minute_key AS field,
  CONCAT(CAST(COUNT(*) AS STRING), '/', CAST({revenue} AS STRING)) AS `value`
FROM (
  SELECT store_id, revenue_cents, DATE_FORMAT(ts, 'yyyyMMddHH') AS hour_key,
         DATE_FORMAT(ts, 'mm') AS minute_key
  FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY order_id ORDER BY seen_at) AS copy
    FROM sale_orders_before)
  WHERE copy = 1)
GROUP BY store_id, hour_key, minute_key"""


def build_two_dedups(ctx) -> dict:
    """hourly_metrics as it was before one deduplication fed both outputs (same source,
    decoding and configuration as then: no object reuse, mini-batches of 5,000 sales)."""
    from pizzastream.metrics import money_sql

    t_env = ctx.t_env
    group = ctx.props["HourlyMetrics"]
    config = t_env.get_config()
    config.set("table.exec.state.ttl", f"{group['live_ttl_minutes']} min")
    config.set("table.exec.mini-batch.enabled", "true")
    config.set("table.exec.mini-batch.allow-latency", f"{group['live_refresh_ms']} ms")
    config.set("table.exec.mini-batch.size", "5000")
    t_env.create_temporary_view("sales_two_dedups", sales_table_before(ctx))
    t_env.execute_sql(
        "CREATE TEMPORARY VIEW sale_orders_before AS SELECT o AS order_id, "
        "s AS store_id, c AS channel, f AS fulfillment, event_time AS ts, "
        "n AS items, r AS revenue_cents, seen_at FROM sales_two_dedups"
    )
    revenue = money_sql("SUM(revenue_cents)")
    average = money_sql("(2 * SUM(revenue_cents) + COUNT(*)) / (2 * COUNT(*))")
    ctx.discard(
        t_env.to_data_stream(
            t_env.sql_query(TWO_DEDUPS_METRIC_SQL.format(revenue=revenue, average=average))
        )
    )
    ctx.discard(
        t_env.to_changelog_stream(t_env.sql_query(TWO_DEDUPS_LIVE_SQL.format(revenue=revenue)))
    )
    return {}
