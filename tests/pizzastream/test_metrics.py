"""The hourly metrics' rules without a server: UTC hours, window bounds, exact money and
its rounding, one count per order, late data and corrections, publication delays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pizzastream.catalog import Catalog
from pizzastream.metrics import (
    HOUR,
    MetricRow,
    Publication,
    SaleOrder,
    as_hour,
    average_order_value_cents,
    hour_of,
    metric_rows,
    metric_sql,
    sale_orders_from_lines,
    shortest_dedup_ttl,
    stream_closes_at,
    summarize_delays,
    window_bounds,
)
from pizzastream.orders import EnrichedOrder, OrderLine, epoch_ms
from tests.metrics_support import order_fct_lines

UTC = UTC
CATALOG = Catalog.from_reference_data()
ACTIVE = [p for p in CATALOG.products() if p.active]


def ms(text: str) -> int:
    return epoch_ms(datetime.fromisoformat(text).replace(tzinfo=UTC))


def sale(
    order_id: str,
    at: str,
    channel: str = "online",
    fulfillment: str = "pickup",
    store: int = 1,
    items: int = 1,
    cents: int = 1000,
) -> SaleOrder:
    return SaleOrder(order_id, store, channel, fulfillment, ms(at), items, cents)


@pytest.mark.parametrize(
    "at, hour",
    [
        ("2026-11-24 10:00:00", "2026-11-24 10:00"),
        ("2026-11-24 10:59:59.999", "2026-11-24 10:00"),
        ("2026-11-24 11:00:00", "2026-11-24 11:00"),
        ("2026-11-24 23:59:59.999", "2026-11-24 23:00"),
        ("2026-11-25 00:00:00", "2026-11-25 00:00"),
        ("2026-12-31 23:30:00", "2026-12-31 23:00"),
        ("1969-12-31 23:59:59.999", "1969-12-31 23:00"),
    ],
)
def test_a_sale_belongs_to_the_utc_hour_holding_its_event_time(at, hour):
    assert hour_of(ms(at)) == datetime.fromisoformat(hour)


def test_window_bounds_cross_midnight_and_the_year():
    assert window_bounds(datetime(2026, 11, 24, 23)) == (
        datetime(2026, 11, 24, 23),
        datetime(2026, 11, 25, 0),
    )
    assert window_bounds(datetime(2026, 12, 31, 23))[1] == datetime(2027, 1, 1)


def test_hours_are_naive_utc_and_must_be_whole():
    assert as_hour(datetime(2026, 11, 24, 12, tzinfo=timezone(timedelta(hours=1)))) == datetime(
        2026, 11, 24, 11
    )
    assert as_hour(datetime(2026, 11, 24, 11, tzinfo=UTC)) == datetime(2026, 11, 24, 11)
    with pytest.raises(ValueError):
        as_hour(datetime(2026, 11, 24, 11, 0, 0, 1))


@pytest.mark.parametrize(
    "revenue, orders, average",
    [
        (1501, 2, 751),  # 750.5 rounds half up
        (3, 2, 2),  # 1.5 -> 2
        (1, 3, 0),  # 0.33 -> 0
        (2, 3, 1),  # 0.67 -> 1
        (1000, 4, 250),  # exact
        (0, 1, 0),
    ],
)
def test_average_order_value_rounds_half_up_to_the_cent(revenue, orders, average):
    assert average_order_value_cents(revenue, orders) == average


@given(st.integers(0, 10**12), st.integers(1, 10**6))
def test_average_order_value_is_the_nearest_cent(revenue, orders):
    exact = Decimal(revenue) / Decimal(orders)
    average = average_order_value_cents(revenue, orders)
    assert abs(Decimal(average) - exact) <= Decimal("0.5")
    assert Decimal(average) - exact != Decimal("-0.5")  # a half goes up


def test_metric_row_of_one_store_hour():
    rows = metric_rows(
        [
            sale("a", "2026-11-24 10:05", "online", "delivery", items=2, cents=1799),
            sale("b", "2026-11-24 10:30", "in_store", "dine_in", items=1, cents=10),
            sale("c", "2026-11-24 10:59:59.999", "online", "pickup", items=3, cents=20),
        ]
    )
    assert rows == [
        MetricRow(
            1,
            datetime(2026, 11, 24, 10),
            datetime(2026, 11, 24, 11),
            3,
            6,
            Decimal("18.29"),
            2,
            1,
            1,
            Decimal("6.10"),
        )
    ]


def test_money_is_summed_in_cents_exactly():
    rows = metric_rows(
        [sale("a", "2026-11-24 10:00", cents=10), sale("b", "2026-11-24 10:01", cents=20)]
    )
    assert rows[0].revenue == Decimal("0.30")
    assert rows[0].avg_order_value == Decimal("0.15")


def test_rows_per_store_and_hour_empty_hours_have_none():
    rows = metric_rows(
        [
            sale("a", "2026-11-24 09:10", store=2),
            sale("b", "2026-11-24 11:10", store=1),
            sale("c", "2026-11-24 09:20", store=1),
        ]
    )
    assert [(r.window_start.hour, r.store_id) for r in rows] == [(9, 1), (9, 2), (11, 1)]
    assert metric_rows([]) == []


def test_the_day_changes_at_utc_midnight():
    rows = metric_rows([sale("a", "2026-11-24 23:59:59.999"), sale("b", "2026-11-25 00:00")])
    assert [(r.window_start, r.window_end) for r in rows] == [
        (datetime(2026, 11, 24, 23), datetime(2026, 11, 25)),
        (datetime(2026, 11, 25), datetime(2026, 11, 25, 1)),
    ]


def test_a_repeated_order_counts_once():
    first = sale("a", "2026-11-24 10:05", cents=500)
    assert metric_rows(
        [first, first, sale("b", "2026-11-24 10:06", cents=100), first]
    ) == metric_rows([first, sale("b", "2026-11-24 10:06", cents=100)])
    assert metric_rows([first, first])[0].orders == 1


def test_late_sales_count_in_their_own_hour_whatever_the_arrival_order():
    on_time = [sale("a", "2026-11-24 10:05"), sale("b", "2026-11-24 11:10")]
    late = sale("c", "2026-11-24 10:55", channel="in_store", cents=250)
    assert metric_rows(on_time + [late]) == metric_rows([late] + on_time)
    rows = {r.window_start.hour: r for r in metric_rows(on_time + [late])}
    assert (rows[10].orders, rows[10].in_store_orders, rows[10].revenue) == (2, 1, Decimal("12.50"))


def test_a_correction_changes_only_the_late_sales_hour():
    on_time = [sale("a", "2026-11-24 10:05"), sale("b", "2026-11-24 11:10")]
    before = {r.window_start: r for r in metric_rows(on_time)}
    after = {r.window_start: r for r in metric_rows(on_time + [sale("late", "2026-11-24 10:50")])}
    assert after[datetime(2026, 11, 24, 11)] == before[datetime(2026, 11, 24, 11)]
    assert after[datetime(2026, 11, 24, 10)].orders == before[datetime(2026, 11, 24, 10)].orders + 1


orders_st = st.builds(
    lambda n, lines, fulfillment, channel, ts: EnrichedOrder(
        f"e{n}",
        f"S0001-{n:06d}",
        1 + n % 3,
        channel,
        fulfillment,
        ts,
        40.71 if fulfillment == "delivery" else None,
        -74.0 if fulfillment == "delivery" else None,
        tuple(OrderLine(p.product_id, q, p.unit_price_cents) for p, q in lines),
    ),
    st.integers(0, 999),
    st.lists(
        st.tuples(st.sampled_from(ACTIVE), st.integers(1, 20)),
        min_size=1,
        max_size=5,
        unique_by=lambda line: line[0].product_id,
    ),
    st.sampled_from(["delivery", "pickup", "dine_in"]),
    st.sampled_from(["online", "in_store"]),
    st.integers(1_700_000_000_000, 1_700_000_000_000 + 3 * 24 * 3_600_000),
)


@given(st.lists(orders_st, max_size=30, unique_by=lambda order: order.order_id))
def test_order_fct_lines_regroup_into_the_sales_they_came_from(orders):
    lines = [line for order in orders for line in order_fct_lines(order)]
    assert sorted(sale_orders_from_lines(lines), key=lambda s: s.order_id) == sorted(
        (SaleOrder.from_enriched(order) for order in orders), key=lambda s: s.order_id
    )


@given(st.lists(orders_st, max_size=30, unique_by=lambda order: order.order_id))
def test_rows_add_up_to_the_orders(orders):
    rows = metric_rows(SaleOrder.from_enriched(order) for order in orders)
    assert sum(r.orders for r in rows) == len(orders)
    assert sum(r.revenue for r in rows) == sum(Decimal(o.total_cents) for o in orders) / 100
    assert all(r.online_orders + r.in_store_orders == r.orders for r in rows)
    assert all(r.window_end - r.window_start == HOUR for r in rows)


def test_one_sql_text_for_stream_and_batch_over_the_named_view():
    sql = metric_sql("my_orders")
    assert "FROM my_orders" in sql and "TUMBLE(ts, INTERVAL '1' HOUR)" in sql
    assert metric_sql() == metric_sql("sale_orders")


def test_publication_delay_is_measured_from_the_hours_end():
    hour = datetime(2026, 11, 24, 10)
    publications = [
        Publication(
            hour + i * HOUR,
            hour + (i + 1) * HOUR,
            hour + (i + 1) * HOUR + timedelta(minutes=minutes),
            0,
        )
        for i, minutes in enumerate([19, 20, 21, 18, 25])
    ]
    assert publications[0].delay == timedelta(minutes=19)
    summary = summarize_delays(publications, timedelta(minutes=20))
    assert (summary.hours, summary.within_target) == (5, 3)
    assert (summary.p50, summary.p95, summary.max) == (
        timedelta(minutes=20),
        timedelta(minutes=25),
        timedelta(minutes=25),
    )
    with pytest.raises(ValueError):
        summarize_delays([], timedelta(minutes=20))


def test_the_stream_closes_an_hour_after_the_bound_and_idleness():
    assert stream_closes_at(
        datetime(2026, 11, 24, 23), timedelta(minutes=20), timedelta(seconds=60)
    ) == datetime(2026, 11, 25, 0, 21)


def test_a_silent_pos_holds_the_hour_at_most_its_wait():
    bound, idle, pos_wait = timedelta(minutes=2), timedelta(seconds=60), timedelta(minutes=30)
    assert stream_closes_at(datetime(2026, 11, 24, 23), bound, idle, pos_wait) == datetime(
        2026, 11, 25, 0, 31
    )


def test_the_stream_remembers_an_order_while_its_hour_can_change():
    bound, idle = timedelta(minutes=20), timedelta(seconds=60)
    assert shortest_dedup_ttl(bound, idle) == timedelta(minutes=81)
    # a sale at the very start of an hour: its hour closes exactly that long after it
    hour = datetime(2026, 11, 24, 23)
    assert stream_closes_at(hour, bound, idle) - hour == shortest_dedup_ttl(bound, idle)
    # and late sales change it for the allowed lateness after that
    assert shortest_dedup_ttl(
        timedelta(minutes=2), idle, timedelta(minutes=30), timedelta(minutes=60)
    ) == timedelta(minutes=151)
