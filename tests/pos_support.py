"""Helpers for the POS and ETL tests: in-store orders, batches the POS stand-in delivers
(its real spool and outbox, with chosen faults), and reads of what came out."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg

from connectors import aws
from pizzastream.config import postgres_dsn, stream_name
from pizzastream.orders import EnrichedOrder, OrderLine
from pizzastream.pos_batches import Manifest, batch_id, settle, store_system
from pizzastream.sales import fact_rows
from pos.outbox import Outbox, Spool, Version

SYSTEMS = 20
HOUR_MS = 3_600_000


def make_order(
    n: int,
    store_id: int,
    ts_ms: int,
    channel: str = "in_store",
    lines=((1, 2, 899), (7, 1, 1299)),
    fulfillment: str | None = None,
) -> EnrichedOrder:
    """An accepted order; unless told, in-store ones are dine-in or pickup, online ones
    pickup."""
    fulfillment = fulfillment or ("dine_in" if n % 2 and channel == "in_store" else "pickup")
    location: tuple[float | None, float | None] = (
        (40.7, -74.0) if fulfillment == "delivery" else (None, None)
    )
    return EnrichedOrder(
        f"e-{store_id}-{n}",
        f"S{store_id:04d}-{channel[0].upper()}{n:06d}",
        store_id,
        channel,
        fulfillment,
        ts_ms,
        *location,
        tuple(OrderLine(*line) for line in lines),
    )


def insert_sales(props, orders: list[EnrichedOrder]) -> None:
    """Writes the orders' ``order_fct`` rows as the jobs do: named columns, money converted
    from cents in the database, a replayed row ignored."""
    with psycopg.connect(postgres_dsn(props, "Aurora"), autocommit=True) as conn:
        conn.cursor().executemany(
            "INSERT INTO order_fct (store_id, order_id, product_id, transaction_ts, quantity,"
            " unit_price, total_transaction_amt, delivery_type, channel) VALUES (%s, %s, %s,"
            " timestamptz 'epoch' + %s * interval '1 millisecond', %s, %s / 100.0,"
            " %s / 100.0, %s, %s) ON CONFLICT DO NOTHING",
            [row for order in orders for row in fact_rows(order)],
        )


class PosDeliveries:
    """Deliveries through the POS stand-in's own spool and outbox, one version at a time;
    delivering the same orders under the same batch id again is a redelivery."""

    def __init__(self, props, directory: Path):
        self.outbox = Outbox(directory, aws.client(props, "s3"), props["Lake"]["bucket"])
        self._cuts = 0

    def deliver(
        self,
        orders: list[EnrichedOrder],
        version: Version = Version.COMPLETE,
        batch: str | None = None,
    ) -> Manifest:
        system = store_system(orders[0].store_id, SYSTEMS) if orders else 1
        self._cuts += 1
        batch = batch or batch_id(system, self._cuts)
        spool = Spool(self.outbox.directory, system, SYSTEMS)
        for order in orders:
            for line in settle(order):
                spool.add(line)
        manifest = spool.cut(batch, self.outbox.data_path(batch))
        self.outbox.add(manifest, [(0, version)])
        assert self.outbox.pump(0) == [(batch, version)]
        return manifest


def query(props, sql: str, *args, group: str = "Aurora") -> list[tuple]:
    with psycopg.connect(postgres_dsn(props, group), autocommit=True) as conn:
        cursor = conn.execute(sql, args)
        return cursor.fetchall() if cursor.description else []


def stream_json(props, logical_name: str) -> list[dict]:
    kinesis = aws.client(props, "kinesis")
    return [
        json.loads(data) for _, data in aws.read_stream(kinesis, stream_name(props, logical_name))
    ]


def sale_records(props) -> list[dict]:
    """The sales on ``sales``, without POS ingestion's progress markers."""
    return [record for record in stream_json(props, "sales") if "pos" not in record]


def progress_markers(props) -> dict[int, int]:
    """Per store, the newest progress POS ingestion put on ``sales``."""
    progress: dict[int, int] = {}
    for record in stream_json(props, "sales"):
        if "pos" in record:
            progress[record["s"]] = max(progress.get(record["s"], record["t"]), record["t"])
    return progress


def landing_keys(props, prefix: str) -> list[str]:
    s3 = aws.client(props, "s3")
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=props["Lake"]["bucket"], Prefix=prefix
    )
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))
