"""Sales as the ``order_fct`` contract rows, for the hourly metrics tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pizzastream.catalog import from_cents
from pizzastream.orders import EnrichedOrder
from pizzastream.sales import FACT_COLUMNS, fact_rows

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ORDER_FCT_COLUMNS = (
    "store_id",
    "order_id",
    "product_id",
    "transaction_ts",
    "quantity",
    "unit_price",
    "total_transaction_amt",
    "delivery_id",
    "delivery_type",
    "channel",
)


def order_fct_lines(order: EnrichedOrder) -> list[dict]:
    """The order's ``order_fct`` rows as the contract types them (aware UTC timestamp,
    ``numeric`` money)."""
    lines = []
    for row in fact_rows(order):
        fact = dict(zip(FACT_COLUMNS, row))
        lines.append(
            {
                "store_id": fact["store_id"],
                "order_id": fact["order_id"],
                "product_id": fact["product_id"],
                "transaction_ts": EPOCH + timedelta(milliseconds=fact["transaction_ts_ms"]),
                "quantity": fact["quantity"],
                "unit_price": from_cents(fact["unit_price_cents"]),
                "total_transaction_amt": from_cents(fact["total_cents"]),
                "delivery_id": None,
                "delivery_type": fact["delivery_type"],
                "channel": fact["channel"],
            }
        )
    return lines
