"""Supplier stand-in: answers supplier orders with deliveries (restocks).

A real supplier delivers after its lead time; the stand-in delivers when asked, so a demo
or a test decides when stock comes back. Each delivery's event id is derived from the
supplier order it answers: delivering twice is a replay the pipeline ignores.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone

from connectors import aws
from connectors.kinesis_producer import KinesisProducer
from pizzastream.config import stream_name
from pizzastream.orders import epoch_ms, format_event_time


def restock_for(supplier_order: dict, delivered_at: datetime) -> dict:
    """The contract's restock record delivering a supplier order in full."""
    return {
        "event_id": f"R-{supplier_order['supplier_order_id']}",
        "store_id": supplier_order["store_id"],
        "ingredient_id": supplier_order["ingredient_id"],
        "quantity": supplier_order["quantity"],
        "ts": format_event_time(epoch_ms(delivered_at)),
        "supplier_order_id": supplier_order["supplier_order_id"],
    }


def deliver_all(props: dict[str, dict[str, str]]) -> int:
    """Delivers every supplier order now on the ``supplier-orders`` stream; returns how many."""
    kinesis = aws.client(props, "kinesis")
    now = datetime.now(timezone.utc)
    restocks = [
        restock_for(json.loads(data), now)
        for _, data in aws.read_stream(kinesis, stream_name(props, "supplier_orders"))
    ]
    KinesisProducer(props).put(
        stream_name(props, "restocks"),
        [(str(r["store_id"]), json.dumps(r).encode()) for r in restocks],
    )
    return len(restocks)
