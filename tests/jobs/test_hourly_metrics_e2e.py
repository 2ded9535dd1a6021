"""hourly_metrics end to end: the streaming job on the mini-cluster with the real Kinesis
emulator, S3 (moto), PostgreSQL and Redis, then the batch correction.

Three whole past hours of online sales (on time) and in-store sales (15 minutes late, as POS
batches bring them) from three stores, a few sales replayed, all put on ``sales`` before the
job starts; their ``order_fct`` rows go to Aurora. Watermarks: once the stream has been read
the shards go quiet, and after ``idle_seconds`` each shard's watermark follows the wall clock
(now - 20 min), so every test hour closes without a "tick" sale (``JsonEventTime``); the
hours end at least 25 minutes ago for that. Then in-store sales far beyond the bound arrive:
the stream must leave its published hours alone, and the hourly ETL's ``etl.metrics.run_batch`` +
``publish_hours`` must
bring both sinks to the recomputation from ``order_fct``, to the cent, in place.
"""

from __future__ import annotations

import io
import random
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from psycopg.rows import dict_row

import analytics
from connectors import aws, lake, redis_store, warehouse
from connectors.kinesis_producer import KinesisProducer
from etl import metrics
from jobs import hourly_metrics
from pizzastream.catalog import Catalog, from_cents
from pizzastream.config import postgres_dsn, stream_name
from pizzastream.metrics import (
    HOUR,
    MetricRow,
    SaleOrder,
    hour_of,
    metric_rows,
    sale_orders_from_lines,
)
from pizzastream.orders import EnrichedOrder, OrderLine, epoch_ms
from pizzastream.sales import sale_json
from tests.metrics_support import ORDER_FCT_COLUMNS, order_fct_lines
from tests.support import running_job, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STORES = (11, 12, 13)
MINUTE_MS = 60_000
POS_LATENESS_MS = 15 * MINUTE_MS
# The staging files as the ETL writes them (etl/staging.py): pyarrow's defaults.
STAGING_SCHEMA = pa.schema(
    [
        ("store_id", pa.int32()),
        ("order_id", pa.string()),
        ("product_id", pa.int32()),
        ("transaction_ts", pa.timestamp("us", tz="UTC")),
        ("quantity", pa.int32()),
        ("unit_price", pa.decimal128(10, 2)),
        ("total_transaction_amt", pa.decimal128(12, 2)),
        ("delivery_id", pa.string()),
        ("delivery_type", pa.string()),
        ("channel", pa.string()),
    ]
)


class Sales:
    """Generated sales over ``hours`` and the order each would reach the stream in."""

    def __init__(self, first_hour: datetime, hours: int, seed: int = 4):
        rng = random.Random(seed)
        products = [p for p in Catalog.from_reference_data().products() if p.active]
        start = epoch_ms(first_hour.replace(tzinfo=UTC))
        end = start + hours * 3_600_000
        self._n = 0

        def order(store: int, channel: str, ts_ms: int) -> EnrichedOrder:
            self._n += 1
            fulfillment = rng.choice(
                ["delivery", "pickup"] if channel == "online" else ["dine_in", "pickup"]
            )
            lines = tuple(
                OrderLine(p.product_id, rng.randint(1, 3), p.unit_price_cents)
                for p in rng.sample(products, rng.randint(1, 3))
            )
            location: tuple[float | None, float | None] = (
                (40.7, -74.0) if fulfillment == "delivery" else (None, None)
            )
            return EnrichedOrder(
                str(uuid.uuid4()),
                f"T{store:04d}-{self._n:05d}",
                store,
                channel,
                fulfillment,
                ts_ms,
                *location,
                lines,
            )

        self.online = [
            order(s, "online", ts)
            for s in STORES
            for ts in range(start + rng.randint(0, 60_000), end, 6 * MINUTE_MS)
        ]
        self.in_store = [
            order(s, "in_store", ts)
            for s in STORES
            for ts in range(start + 5 * MINUTE_MS, end, 10 * MINUTE_MS)
        ]
        # In-store sales of the last minutes of each hour, arriving long after it closed.
        self.late = [
            order(s, "in_store", h - 7 * MINUTE_MS)
            for s in STORES[:2]
            for h in range(start + 3_600_000, end + 1, 3_600_000)
        ]
        self.replayed = rng.sample(self.online, 5)
        self.order = order

    def on_time_arrivals(self) -> list[EnrichedOrder]:
        """Online sales at their event time, in-store ones 15 minutes later, replays a
        minute later: the order the stream carries them in."""
        arrivals = [(o.ts_ms, o) for o in self.online]
        arrivals += [(o.ts_ms + POS_LATENESS_MS, o) for o in self.in_store]
        arrivals += [(o.ts_ms + MINUTE_MS, o) for o in self.replayed]
        return [o for _, o in sorted(arrivals, key=lambda arrival: arrival[0])]


def put_sales(props, orders: list[EnrichedOrder]) -> None:
    KinesisProducer(props).put(
        stream_name(props, "sales"), [(str(o.store_id), sale_json(o).encode()) for o in orders]
    )


def copy_order_fct(props, orders: list[EnrichedOrder]) -> None:
    with (
        psycopg.connect(postgres_dsn(props)) as conn,
        conn.cursor() as cur,
        cur.copy(f"COPY order_fct ({', '.join(ORDER_FCT_COLUMNS)}) FROM STDIN") as copy,
    ):
        for order in orders:
            for line in order_fct_lines(order):
                copy.write_row([line[c] for c in ORDER_FCT_COLUMNS])


def order_fct(props, start: datetime, end: datetime) -> list[dict]:
    with psycopg.connect(postgres_dsn(props), row_factory=dict_row) as conn:
        return conn.execute(
            f"SELECT {', '.join(ORDER_FCT_COLUMNS)} FROM order_fct WHERE transaction_ts >= %s"
            " AND transaction_ts < %s ORDER BY order_id, product_id",
            (start.replace(tzinfo=UTC), end.replace(tzinfo=UTC)),
        ).fetchall()


def stage(props, hour: datetime, lines: list[dict]) -> None:
    """The hour's ``order_fct`` rows in the S3 staging area, as the hourly ETL stages them."""
    table = pa.Table.from_pylist(lines, schema=STAGING_SCHEMA)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    aws.client(props, "s3").put_object(
        Bucket=props["Lake"]["bucket"],
        Body=buffer.getvalue(),
        Key=f"{props['HourlyMetrics']['staging_prefix']}/{lake.partition(hour)}/part-00000.parquet",
    )


def live_view(props, orders: list[EnrichedOrder]) -> tuple[dict, dict]:
    """What Redis holds for the stores and hours of ``orders``, and what it should hold."""
    minutes: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for order in {o.order_id: o for o in orders}.values():
        key = redis_store.live_key(order.store_id, hour_of(order.ts_ms))
        minute = f"{(order.ts_ms // MINUTE_MS) % 60:02d}"
        minutes[key, minute][0] += 1
        minutes[key, minute][1] += order.total_cents
    expected: dict[str, dict[str, str]] = defaultdict(dict)
    for (key, minute), (count, cents) in minutes.items():
        expected[key][minute] = f"{count}/{from_cents(cents)}"
    redis = redis_store.client(props)
    return {key: redis.hgetall(key) for key in expected}, dict(expected)


def objects_per_hour(props) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for key in lake.object_keys(props):
        counts[key.rsplit("/", 1)[0]] += 1
    return dict(counts)


def on_duckdb(props) -> list[MetricRow]:
    result = analytics.on_lake(
        props, "SELECT * FROM hourly_store_metrics ORDER BY window_start, store_id"
    )
    return [MetricRow(*row) for row in result.rows]


def test_stream_publishes_on_time_hours_and_batch_corrects_late_sales_in_place(engine_stack):
    """On both warehouse back ends (``engine_stack``)."""
    # The seed's settings: a 20-minute bound and no lateness, so sales later than that are
    # left to the batch correction (the stream's own corrections: test_hourly_publication_e2e).
    props = {
        **engine_stack,
        "HourlyMetrics": {
            **engine_stack["HourlyMetrics"],
            "idle_seconds": "10",
            "out_of_orderness_minutes": "20",
            "allowed_lateness_minutes": "0",
        },
    }
    now = datetime.now(UTC).replace(tzinfo=None)
    end = hour_of(epoch_ms((now - timedelta(minutes=25)).replace(tzinfo=UTC)))
    start = end - 3 * HOUR
    hours = [start + i * HOUR for i in range(3)]
    sales = Sales(start, 3)
    copy_order_fct(props, sales.online + sales.in_store + sales.late)
    late_ids = {o.order_id for o in sales.late}
    recomputed = metric_rows(sale_orders_from_lines(order_fct(props, start, end)))
    on_time = metric_rows(
        sale_orders_from_lines(
            line for line in order_fct(props, start, end) if line["order_id"] not in late_ids
        )
    )
    assert on_time != recomputed and len(on_time) == len(STORES) * len(hours)
    # The stream's own view of the sales agrees with order_fct (same prices, same rules).
    assert on_time == metric_rows(SaleOrder.from_enriched(o) for o in sales.online + sales.in_store)

    put_sales(props, sales.on_time_arrivals())
    with running_job(hourly_metrics.build, props, "hourly_metrics-test"):
        wait_for(
            "the on-time hours in the warehouse",
            lambda: warehouse.metric_rows(props),
            lambda rows: rows == on_time,
            timeout_s=150,
        )
        wait_for(
            "the same hours in the lake",
            lambda: lake.read_metrics(props),
            lambda rows: rows == on_time,
            timeout_s=30,
        )
        partitions = objects_per_hour(props)
        assert sorted(partitions) == [
            f"{props['HourlyMetrics']['lake_prefix']}/{lake.partition(h)}" for h in hours
        ]
        assert set(partitions.values()) == {1}
        assert on_duckdb(props) == on_time
        seen, expected = live_view(props, sales.online + sales.in_store)
        assert seen == expected

        # Then, on the same shards (keyed by store), a sale of the current hour per store of
        # the late ones: once the live view shows it, the sales before it were processed.
        probes = [sales.order(store, "online", epoch_ms(datetime.now(UTC))) for store in STORES[:2]]
        put_sales(props, sales.late + sales.replayed + probes)
        wait_for(
            "the sales after the late ones in the live view",
            lambda: live_view(props, probes),
            lambda views: views[0] == views[1],
            timeout_s=60,
        )
        # Later than the lateness, the late sales change the live view no more than the
        # metrics; the replays count once.
        seen, expected = live_view(props, sales.online + sales.in_store)
        assert seen == expected
        time.sleep(2 * int(props["FlinkTuning"].get("checkpoint_interval_ms", "5000")) / 1000)
        # Too late for the stream: its published hours stand as they were.
        assert warehouse.metric_rows(props) == on_time
        assert lake.read_metrics(props) == on_time
        published_keys = lake.object_keys(props)

    for hour in hours:
        stage(props, hour, order_fct(props, hour, hour + HOUR))
    rows = metrics.run_batch(props, hours)
    assert rows == recomputed
    for _replay in range(2):
        metrics.publish_hours(props, rows, hours)
        assert warehouse.metric_rows(props) == recomputed
        assert lake.read_metrics(props) == recomputed
        assert on_duckdb(props) == recomputed
        assert lake.object_keys(props) == published_keys  # replaced in place, one per hour

    publications = warehouse.publications(props, start, end)
    assert [p.window_start for p in publications] == hours
    assert all(p.corrections == 2 for p in publications)
    assert all(p.first_published_at > p.window_end for p in publications)
