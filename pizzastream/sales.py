"""What an accepted or rejected order turns into on the way out (docs/streams.md): the
sale record, the ``order_fct`` rows and the order status record. Money stays in integer
cents; the Aurora sink converts to ``numeric(…,2)`` at the edge (``catalog.from_cents``).
"""

from __future__ import annotations

from typing import Any

import orjson

from pizzastream.orders import EnrichedOrder, OrderStatus, Rejection
from pizzastream.schemas import ORDER_FCT

# The ``order_fct`` columns a sale writes: all but ``delivery_id`` (the delivery service
# sets it).
FACT_TARGET = tuple(name for name in ORDER_FCT.names if name != "delivery_id")
# The fields carrying them, in their order: time in epoch ms, money in cents.
FACT_FIELD = {
    "transaction_ts": "transaction_ts_ms",
    "unit_price": "unit_price_cents",
    "total_transaction_amt": "total_cents",
}
FACT_COLUMNS = tuple(FACT_FIELD.get(name, name) for name in FACT_TARGET)
STATUSES = frozenset(status.value for status in OrderStatus)


def item_count(order: EnrichedOrder) -> int:
    return sum(line.quantity for line in order.lines)


def sale_json(order: EnrichedOrder) -> str:
    """The enriched order JSON plus ``"n"`` (items) and ``"r"`` (revenue in cents)."""
    return sale_of_enriched(order.to_json(), item_count(order), order.total_cents)


def sale_of_enriched(enriched_json: str, items: int, revenue_cents: int) -> str:
    """``sale_json`` from the order's ``orders-enriched`` record as received: the order path
    appends to the record instead of encoding the order again."""
    return f'{enriched_json.rstrip()[:-1]},"n":{items},"r":{revenue_cents}}}'


def fact_line(
    store_id: int,
    order_id: str,
    transaction_ts_ms: int,
    product_id: int,
    quantity: int,
    unit_price_cents: int,
    delivery_type: str,
    channel: str,
) -> str:
    """One ``FACT_COLUMNS`` row as tab-separated text (``pizzastream.flink.DelimitedRows``
    reads it back into a row in the JVM); the same values as ``fact_rows``."""
    return (
        f"{store_id}\t{order_id}\t{product_id}\t{transaction_ts_ms}\t{quantity}\t"
        f"{unit_price_cents}\t{quantity * unit_price_cents}\t{delivery_type}\t{channel}"
    )


def fact_lines(
    tag: str,
    key: str,
    store_id: int,
    order_id: str,
    transaction_ts_ms: int,
    lines: list[list[int]],
    delivery_type: str,
    channel: str,
) -> str:
    """``f"{tag}{key}\\t{fact_line(...)}\\n"`` (a result line) for each ``[product_id,
    quantity, unit_price_cents]`` of an order, concatenated: the order path writes an
    order's rows in one call, a one-line order's (most of them) as one f-string, the fields
    common to several lines formatted once."""
    if len(lines) == 1:
        ((product_id, quantity, unit_price_cents),) = lines
        return (
            f"{tag}{key}\t{store_id}\t{order_id}\t{product_id}\t{transaction_ts_ms}\t"
            f"{quantity}\t{unit_price_cents}\t{quantity * unit_price_cents}\t"
            f"{delivery_type}\t{channel}\n"
        )
    head = f"{tag}{key}\t{store_id}\t{order_id}\t"
    ts = f"\t{transaction_ts_ms}\t"
    tail = f"\t{delivery_type}\t{channel}\n"
    return "".join(
        [
            f"{head}{product_id}{ts}{quantity}\t{unit_price_cents}\t"
            f"{quantity * unit_price_cents}{tail}"
            for product_id, quantity, unit_price_cents in lines
        ]
    )


def fact_rows(order: EnrichedOrder) -> list[tuple[Any, ...]]:
    """One ``FACT_COLUMNS`` row per line; the amounts sum to ``order.total_cents``."""
    return [
        (
            order.store_id,
            order.order_id,
            line.product_id,
            order.ts_ms,
            line.quantity,
            line.unit_price_cents,
            line.amount_cents,
            order.fulfillment,
            order.channel,
        )
        for line in order.lines
    ]


def order_status_json(
    order_id: str,
    event_id: str | None,
    store_id: int | None,
    ts_ms: int | None,
    status: str,
    detail: str = "",
) -> str:
    """The ``order-status`` record; ``status`` must be one of the contract's statuses."""
    if status not in STATUSES:
        raise ValueError(f"{status!r} is not an order status")
    return orjson.dumps(
        {
            "o": order_id,
            "e": event_id,
            "s": store_id,
            "t": ts_ms,
            "status": str(status),
            "detail": detail,
        }
    ).decode()


def decided_status_json(
    order_id: str, event_id: str, store_id: int, ts_ms: int, status: str, detail: str
) -> str:
    """``order_status_json`` for an order the inventory decided, written directly: a third
    of the encoder's cost, and the order path writes one per order. The ids were checked
    printable (``orders.is_id``), so only a quote or a backslash would need escaping (the
    encoder is used then); ``status`` and ``detail`` are the inventory's own ASCII text."""
    if '"' in order_id or "\\" in order_id or '"' in event_id or "\\" in event_id:
        return order_status_json(order_id, event_id, store_id, ts_ms, status, detail)
    return (
        f'{{"o":"{order_id}","e":"{event_id}","s":{store_id},"t":{ts_ms},'
        f'"status":"{status}","detail":"{detail}"}}'
    )


def enriched_status_json(
    order: EnrichedOrder, status: str = OrderStatus.ACCEPTED.value, detail: str = ""
) -> str:
    """Status of an order the inventory decided on, e.g.
    ``enriched_status_json(order, decision.status, decision.detail)``."""
    return order_status_json(
        order.order_id, order.event_id, order.store_id, order.ts_ms, status, detail
    )


def rejection_status_json(rejection: Rejection, ts_ms: int) -> str | None:
    """Status of an order ``enrich`` rejected (``status_for`` its reason), or None when
    the record names no order. ``ts_ms`` is the caller's clock: a rejected record's own
    ``ts`` may be missing or unreadable."""
    if rejection.order_id is None:
        return None
    return order_status_json(
        rejection.order_id,
        rejection.event_id,
        rejection.store_id,
        ts_ms,
        rejection.status(),
        f"{rejection.reason}: {rejection.detail}",
    )
