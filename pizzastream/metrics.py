"""Hourly store metrics (contract): what a row means, the window maths, and the SQL query
that computes the rows in batch corrections (``metric_sql``; the stream folds the same rules
in the JVM, ``pizzastream.flink.StoreSales`` with the windows of ``StoreHourMetrics``, for
what per-sale state cost in SQL).

The rules, which ``metric_sql`` implements in Flink SQL, ``StoreHourMetrics`` in Java and
``metric_rows`` in Python (the reference the tests hold the other two to):

- A sale belongs to the UTC hour ``[H, H + 1 h)`` holding its event time, the time the
  customer placed the order, never the time the pipeline saw it.
- An order counts once per hour, whatever number of times its sale record arrives (the
  ``sales`` stream is at-least-once; a replay repeats records).
- ``orders``, ``items`` (sum of quantities), ``revenue`` (sum of the lines' amounts);
  ``online_orders`` / ``in_store_orders`` by channel, ``delivery_orders`` by fulfillment.
- Money is summed in exact integer cents and only then becomes ``numeric(12, 2)``;
  ``avg_order_value`` is revenue / orders rounded half up to the cent.
- A store with no sale in an hour has no row for it.

Window bounds are naive ``datetime``s in UTC, as the lake's Parquet ``TIMESTAMP`` and the
warehouse's ``timestamp`` columns hold them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from operator import attrgetter
from typing import Any

from pizzastream.catalog import from_cents, to_cents
from pizzastream.orders import Channel, EnrichedOrder, Fulfillment, epoch_ms
from pizzastream.sales import item_count

HOUR = timedelta(hours=1)
HOUR_MS = 3_600_000
_EPOCH = datetime(1970, 1, 1)


def utc_datetime(ts_ms: int) -> datetime:
    """Epoch milliseconds as a naive UTC ``datetime``."""
    return _EPOCH + timedelta(milliseconds=ts_ms)


def hour_of(ts_ms: int) -> datetime:
    """Start of the UTC hour holding ``ts_ms`` (floor, so also right before 1970)."""
    return utc_datetime(ts_ms - ts_ms % HOUR_MS)


def as_hour(moment: datetime) -> datetime:
    """``moment`` as a window start: naive UTC (an aware value is converted first), and it
    must be on the hour; anything else is a caller's mistake, not something to round."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    if moment != moment.replace(minute=0, second=0, microsecond=0):
        raise ValueError(f"{moment.isoformat()} is not the start of an hour")
    return moment


def window_bounds(hour: datetime) -> tuple[datetime, datetime]:
    """The hour's window ``[start, end)``."""
    start = as_hour(hour)
    return start, start + HOUR


def average_order_value_cents(revenue_cents: int, orders: int) -> int:
    """Revenue per order rounded half up to the cent, in integer arithmetic (revenue is
    never negative), exactly as ``metric_sql`` computes it."""
    return (2 * revenue_cents + orders) // (2 * orders)


@dataclass(frozen=True)
class SaleOrder:
    """One sold order, the unit the metrics count (``metric_sql``'s ``sale_orders`` view)."""

    order_id: str
    store_id: int
    channel: str
    fulfillment: str
    ts_ms: int
    items: int
    revenue_cents: int

    @classmethod
    def from_enriched(cls, order: EnrichedOrder) -> SaleOrder:
        """What a sale record of ``order`` carries (``pizzastream.sales.sale_json``)."""
        return cls(
            order.order_id,
            order.store_id,
            order.channel,
            order.fulfillment,
            order.ts_ms,
            item_count(order),
            order.total_cents,
        )


def sale_orders_from_lines(lines: Iterable[Mapping[str, Any]]) -> list[SaleOrder]:
    """Orders from ``order_fct`` line items (mappings with the contract's column names,
    ``transaction_ts`` an aware ``datetime``), as the batch view regroups them."""
    orders = []
    for order_id, grouped in itertools.groupby(
        sorted(lines, key=lambda line: line["order_id"]), key=lambda line: line["order_id"]
    ):
        group = list(grouped)
        first = group[0]
        orders.append(
            SaleOrder(
                order_id,
                first["store_id"],
                first["channel"],
                first["delivery_type"],
                epoch_ms(first["transaction_ts"]),
                sum(line["quantity"] for line in group),
                sum(to_cents(line["total_transaction_amt"]) for line in group),
            )
        )
    return orders


@dataclass(frozen=True)
class MetricRow:
    """One row of ``hourly_store_metrics`` (contract): its fields are
    ``pizzastream.schemas.METRIC_COLUMNS``, in order (``tests/pizzastream/test_schemas.py``)."""

    store_id: int
    window_start: datetime
    window_end: datetime
    orders: int
    items: int
    revenue: Decimal
    online_orders: int
    in_store_orders: int
    delivery_orders: int
    avg_order_value: Decimal


SALE_ORDER_COLUMNS = (
    "order_id",
    "store_id",
    "channel",
    "fulfillment",
    "ts",
    "items",
    "revenue_cents",
)


def metric_rows(orders: Iterable[SaleOrder]) -> list[MetricRow]:
    """The metrics of ``orders`` by store and hour, ordered by hour then store; an order id
    seen again in the same hour counts once."""
    firsts: dict[tuple[datetime, str], SaleOrder] = {}
    for order in sorted(orders, key=attrgetter("ts_ms")):
        firsts.setdefault((hour_of(order.ts_ms), order.order_id), order)
    by_window = sorted(firsts.items(), key=lambda item: (item[0][0], item[1].store_id))
    rows = []
    for (start, store_id), group in itertools.groupby(
        by_window, key=lambda item: (item[0][0], item[1].store_id)
    ):
        sold = [order for _, order in group]
        revenue_cents = sum(order.revenue_cents for order in sold)
        rows.append(
            MetricRow(
                store_id,
                start,
                start + HOUR,
                len(sold),
                sum(order.items for order in sold),
                from_cents(revenue_cents),
                sum(order.channel == Channel.ONLINE for order in sold),
                sum(order.channel == Channel.IN_STORE for order in sold),
                sum(order.fulfillment == Fulfillment.DELIVERY for order in sold),
                from_cents(average_order_value_cents(revenue_cents, len(sold))),
            )
        )
    return rows


def money_sql(cents: str) -> str:
    """SQL: integer cents as the exact ``DECIMAL(12, 2)`` amount (the division by 100 has
    at most two decimals, so the cast never rounds)."""
    return f"CAST(CAST({cents} AS DECIMAL(18, 0)) / 100 AS DECIMAL(12, 2))"


def money_text_sql(cents: str) -> str:
    """SQL: non-negative integer cents as the text of the amount (``1250`` -> ``12.50``),
    what ``CAST`` of ``money_sql`` prints, in integer arithmetic (no decimal division)."""
    return (
        f"CONCAT(CAST(({cents}) / 100 AS STRING), '.', "
        f"LPAD(CAST(MOD({cents}, 100) AS STRING), 2, '0'))"
    )


def metric_sql(view: str = "sale_orders") -> str:
    """Flink SQL of the ``METRIC_COLUMNS`` rows over ``view``, a table or view with the
    ``SALE_ORDER_COLUMNS`` (``ts`` the event time; in streaming its rowtime attribute) and
    one row per order: the hourly ETL's batch reads ``order_fct`` regrouped into orders
    (``etl.metrics.run_batch``). The stream computes the same rows with
    ``pizzastream.flink.StoreSales`` (the windows of ``StoreHourMetrics``; benchmarks
    measure this query in its place over ``bench.hourly``'s ``sale_orders`` view), so a
    correction computes what the stream would have, had the sale been on time.

    A group window (``GROUP BY TUMBLE``), not the window table function: in streaming only
    the group window can stay open after it fired (allowed lateness) and emit its updated
    row for a late sale, as ``StoreHourMetrics`` does."""
    return f"""
SELECT
  store_id,
  CAST(TUMBLE_START(ts, INTERVAL '1' HOUR) AS TIMESTAMP(3)) AS window_start,
  CAST(TUMBLE_END(ts, INTERVAL '1' HOUR) AS TIMESTAMP(3)) AS window_end,
  COUNT(*) AS orders,
  SUM(items) AS items,
  {money_sql("SUM(revenue_cents)")} AS revenue,
  COUNT(*) FILTER (WHERE channel = '{Channel.ONLINE}') AS online_orders,
  COUNT(*) FILTER (WHERE channel = '{Channel.IN_STORE}') AS in_store_orders,
  COUNT(*) FILTER (WHERE fulfillment = '{Fulfillment.DELIVERY}') AS delivery_orders,
  {money_sql("(2 * SUM(revenue_cents) + COUNT(*)) / (2 * COUNT(*))")} AS avg_order_value
FROM {view}
GROUP BY store_id, TUMBLE(ts, INTERVAL '1' HOUR)"""


@dataclass(frozen=True)
class Publication:
    """When an hour's metrics were first published (``metrics_publication``), how many
    loads corrected it since (the stream's ``late`` ones and the ETL's ``batch`` ones) and
    by how much, and how many stores were first published without their POS (``partial``)."""

    window_start: datetime
    window_end: datetime
    first_published_at: datetime
    corrections: int
    partial_stores: int = 0
    revenue_change: Decimal = Decimal(0)
    orders_change: int = 0

    @property
    def delay(self) -> timedelta:
        """Publication delay: first publication after the hour's end (event time)."""
        return self.first_published_at - self.window_end


@dataclass(frozen=True)
class DelaySummary:
    hours: int
    max: timedelta
    p50: timedelta
    p95: timedelta
    within_target: int
    target: timedelta


def summarize_delays(publications: Iterable[Publication], target: timedelta) -> DelaySummary:
    """Nearest-rank percentiles of the publication delays, and how many met ``target``."""
    delays = sorted(p.delay for p in publications)
    if not delays:
        raise ValueError("no published hours to summarize")

    def rank(q: float) -> timedelta:
        return delays[max(0, math.ceil(q * len(delays)) - 1)]

    return DelaySummary(
        len(delays),
        delays[-1],
        rank(0.5),
        rank(0.95),
        sum(delay <= target for delay in delays),
        target,
    )


def stream_closes_at(
    hour: datetime, out_of_orderness: timedelta, idle: timedelta, pos_wait: timedelta = timedelta(0)
) -> datetime:
    """When the streaming job has published ``hour`` at the latest, unless it is behind:
    its watermark passes the hour's end once a sale ``out_of_orderness`` past the end
    arrives and every store system's POS batches up to the end are in, but a silent POS
    holds it at most ``pos_wait`` (``pizzastream.flink.JsonEventTime``); on a quiet stream
    the clock takes over after ``idle``. A correction of an hour before then would race the
    stream's own publication of it."""
    return window_bounds(hour)[1] + max(out_of_orderness, pos_wait) + idle


def shortest_dedup_ttl(
    out_of_orderness: timedelta,
    idle: timedelta,
    pos_wait: timedelta = timedelta(0),
    lateness: timedelta = timedelta(0),
) -> timedelta:
    """How long the stream must remember an order id after its first copy for every later
    copy to be dropped while the order's hour can still change, when the job keeps up with
    the stream: the hour closes at most an hour after its first sale plus the watermark's
    bound (``stream_closes_at``), and takes late sales ``lateness`` longer. A copy coming
    later than that finds its hour closed for good (too late for the stream, counted by the
    hourly batch from ``order_fct``)."""
    return HOUR + max(out_of_orderness, pos_wait) + idle + lateness
