"""Supplier stand-in: answers supplier orders with deliveries (restocks).

A real supplier delivers after its lead time; the stand-in delivers when asked, so a demo
or a test decides when stock comes back. A supplier order has a line per ingredient
(``pizzastream.replenishment.ReplenishmentOrder``); the stand-in delivers each line in full
as a restock of its own, carrying the order's id so the job closes that line. Each
delivery's event id is derived from the order and the ingredient it answers: delivering
twice is a replay the pipeline ignores.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from connectors import aws
from connectors.kinesis_producer import KinesisProducer
from pizzastream.config import Props, stream_name
from pizzastream.orders import epoch_ms, format_event_time


def restocks_for(supplier_order: dict, delivered_at: datetime) -> list[dict]:
    """The contract's restock records delivering a ``supplier-orders`` record in full, one
    per line."""
    order_id = supplier_order["supplier_order_id"]
    return [
        {
            "event_id": f"R-{order_id}-{line['ingredient_id']}",
            "store_id": supplier_order["store_id"],
            "ingredient_id": line["ingredient_id"],
            "quantity": line["quantity"],
            "ts": format_event_time(epoch_ms(delivered_at)),
            "supplier_order_id": order_id,
        }
        for line in supplier_order["lines"]
    ]


def deliver_all(props: Props) -> int:
    """Delivers every supplier order now on the ``supplier-orders`` stream; returns how many
    restocks (order lines) that took."""
    kinesis = aws.client(props, "kinesis")
    now = datetime.now(UTC)
    restocks = [
        restock
        for _, data in aws.read_stream(kinesis, stream_name(props, "supplier_orders"))
        for restock in restocks_for(json.loads(data), now)
    ]
    KinesisProducer(props).put(
        stream_name(props, "restocks"),
        [(str(r["store_id"]), json.dumps(r).encode()) for r in restocks],
    )
    return len(restocks)
