"""The hourly store metrics of given hours, recomputed from S3 staging and published: the
step the hourly ETL and reprocessing share.

The computation (``run_batch``) is the hourly_metrics job's own SQL
(``pizzastream.metrics.metric_sql``) in Flink batch mode, so a fix to a metric reaches history
through the same code as live data; ``publish_hours`` replaces each hour's lake object and
warehouse rows.
The streaming job publishes an hour itself when its watermark passes the hour's end; until
then (``stream_closed``) a batch correction would race it, so the ETL leaves such hours to
the stream and takes them up once they are closed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from connectors import lake, warehouse
from jobs import runtime
from pizzastream.config import Props
from pizzastream.metrics import SALE_ORDER_COLUMNS, MetricRow, as_hour, metric_sql
from pizzastream.publication import HourlySettings
from pizzastream.settings import EtlSettings

# The S3 staging copy of ``order_fct`` as a Flink table, and its rows regrouped into orders.
STAGING_TABLE = "staging_order_fct"
STAGED_SALE_ORDERS = "staged_sale_orders"


def refresh(
    props: Props, hours: Sequence[datetime], published: Callable[[dict[datetime, int]], None]
) -> None:
    """Recomputes and publishes ``hours`` (aware UTC, all staged), ``Etl.metrics_chunk_hours``
    at a time (one Flink batch job each: a long outage or a first run must not become one
    huge job). After each chunk, ``published`` gets the metric rows now published per hour
    of the chunk (0 for an hour without sales, whose rows are removed)."""
    hours = sorted(hours)
    size = EtlSettings.from_group(props["Etl"]).metrics_chunk_hours
    for first in range(0, len(hours), size):
        chunk = hours[first : first + size]
        rows = run_batch(props, chunk)
        publish_hours(props, rows, chunk)
        counts = Counter(row.window_start.replace(tzinfo=UTC) for row in rows)
        published({hour: counts[hour] for hour in chunk})


def stream_closed(props: Props, hour: datetime, now: datetime) -> bool:
    """Whether the streaming job has first published ``hour`` by ``now`` (both aware UTC).
    It may still correct it from late sales for ``allowed_lateness_minutes``: the ETL's
    recomputation from ``order_fct`` and the stream's correction count the same sales."""
    closes_at = HourlySettings.from_props(props).closes_at(hour.replace(tzinfo=None))
    return closes_at.replace(tzinfo=UTC) <= now


def run_batch(props: Props, hours: Sequence[datetime]) -> list[MetricRow]:
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
    partitions = " OR ".join(
        f"(dt = '{dt}' AND `hour` = '{hh}')" for dt, hh in map(lake.partition_values, hours)
    )
    t_env.execute_sql(f"""
CREATE TEMPORARY VIEW {STAGED_SALE_ORDERS} ({", ".join(SALE_ORDER_COLUMNS)}) AS
SELECT order_id, store_id, channel, delivery_type, transaction_ts,
       CAST(SUM(quantity) AS BIGINT), SUM(CAST(total_transaction_amt * 100 AS BIGINT))
FROM {STAGING_TABLE}
WHERE {partitions}
GROUP BY order_id, store_id, channel, delivery_type, transaction_ts""")
    with t_env.sql_query(metric_sql(STAGED_SALE_ORDERS)).execute().collect() as results:
        rows = [MetricRow(*result) for result in results]
    return sorted(rows, key=lambda row: (row.window_start, row.store_id))


def publish_hours(props: Props, rows: Sequence[MetricRow], hours: Sequence[datetime]) -> None:
    """Replaces ``hours`` in the lake (one PUT of each hour's object, ``lake.replace_hour``)
    and in the warehouse (staging + merge, one transaction, ``warehouse.replace_hours``) with
    ``rows`` (``run_batch``'s): rows of a store that no longer sold in an hour disappear.
    Idempotent. Refuses hours the stream may still publish itself (``stream_closes_at``)
    and rows outside ``hours``."""
    hours = sorted({as_hour(hour) for hour in hours})
    now = datetime.now(UTC).replace(tzinfo=None)
    settings = HourlySettings.from_props(props)
    open_hours = [hour for hour in hours if settings.closes_at(hour) > now]
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
