"""inventory_windowing on the mini-cluster with the real connectors, PostgreSQL and Redis:
a scripted day where a store seeded from its past sales runs short of dough and sauce, a
stock-out is warned of, rejections follow, one supplier order with both lines goes out, the
supplier's restocks close it and orders are accepted again; a store no order reaches is
reviewed by its hourly tick, and its order, never delivered, is re-issued as overdue by a
later tick. Outputs must match the script exactly, and every output record must be what the
in-memory runner (``jobs.testing``) gives for the same records."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from connectors import aurora, aws, redis_store
from connectors.kinesis_producer import KinesisProducer
from jobs import inventory_windowing
from jobs.testing import SourceRecord, TestingSource
from pizzastream.catalog import Catalog
from pizzastream.config import stream_name
from pizzastream.order_batches import RESTOCK
from pizzastream.orders import EnrichedOrder, OrderLine
from pizzastream.replenishment import policies_from_rows
from pizzastream.ticks import HOUR_MS, write_ticks
from stack import suppliers
from tests.order_path_support import assert_the_in_memory_runner_agrees
from tests.support import running_job, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DOUGH, SAUCE = 1, 2
MARGHERITA_SMALL, MARGHERITA_PRICE, DOUGH_PER_PIZZA = 1, 899, 180
OPENING_DOUGH = 2 * DOUGH_PER_PIZZA + 100  # two pizzas, then short
OPENING_SAUCE = 200  # below its safety stock: a second line
QUIET_STORE = 8  # reached by ticks only


def order(store_id: int, n: int, channel="online", fulfillment="pickup") -> EnrichedOrder:
    location: tuple[float | None, float | None] = (
        (40.7, -74.0) if fulfillment == "delivery" else (None, None)
    )
    return EnrichedOrder(
        str(uuid.uuid4()),
        f"S{store_id:04d}-T{n:05d}",
        store_id,
        channel,
        fulfillment,
        int(time.time() * 1000) - 60_000 + n,
        *location,
        (OrderLine(MARGHERITA_SMALL, 1, MARGHERITA_PRICE),),
    )


def past_sales(props, store_id: int, now_ms: int) -> None:
    """Two small Margheritas an hour for three weeks, up to 50 h ago: the store's forecast
    (read at first sight, 48 h gap) expects 360 g of dough an hour."""
    hours = range(now_ms // HOUR_MS - 3 * 168, now_ms // HOUR_MS - 50)
    with aurora.connect(props) as conn:
        conn.cursor().executemany(
            "INSERT INTO order_fct (store_id, order_id, product_id, transaction_ts, quantity,"
            " unit_price, total_transaction_amt, delivery_type, channel)"
            " VALUES (%s, %s, 1, to_timestamp(%s / 1000.0), 2, 8.99, 17.98, 'pickup', 'online')",
            [(store_id, f"H-{hour}", hour * HOUR_MS + 60_000) for hour in hours],
        )


def stream_records(props, logical_name) -> list[dict]:
    kinesis = aws.client(props, "kinesis")
    return [
        json.loads(data) for _, data in aws.read_stream(kinesis, stream_name(props, logical_name))
    ]


def query(props, sql: str, *args) -> list[tuple]:
    with aurora.connect(props) as conn:
        cursor = conn.execute(sql, args)
        return cursor.fetchall() if cursor.description else []


def test_stock_runs_out_is_reordered_once_and_restocked(clean_stack):
    props = clean_stack
    for table in ("inventory", "opening_inventory"):
        for store_id, ingredient_id, on_hand in (
            (5, DOUGH, OPENING_DOUGH),
            (5, SAUCE, OPENING_SAUCE),
            (QUIET_STORE, DOUGH, 100),
        ):
            query(
                props,
                f"UPDATE {table} SET on_hand = %s WHERE store_id = %s AND ingredient_id = %s",
                on_hand,
                store_id,
                ingredient_id,
            )
    now_ms = int(time.time() * 1000)
    past_sales(props, 5, now_ms)
    producer = KinesisProducer(props)
    put = lambda name, records: producer.put(  # noqa: E731 - local shorthand
        stream_name(props, name),
        [
            (str(r["store_id"]), json.dumps(r).encode())
            if isinstance(r, dict)
            else (str(r.store_id), r.to_json().encode())
            for r in records
        ],
    )
    first, second, third, fourth = (order(5, n) for n in range(1, 5))
    delivery = order(6, 1, fulfillment="delivery")
    dine_in = order(6, 2, channel="in_store", fulfillment="dine_in")
    bad_restock = {
        "event_id": "R-bad",
        "store_id": 6,
        "ingredient_id": 99,
        "quantity": 5,
        "ts": "2026-11-24T10:00:00Z",
        "supplier_order_id": None,
    }
    # Poison restocks that once crash-looped the job and stopped every store's orders: a
    # key that is no number, a non-canonical key for another store, a quantity past BIGINT.
    poison = [
        ("abc", {**bad_restock, "event_id": "R-key", "ingredient_id": DOUGH}),
        ("007", {**bad_restock, "event_id": "R-007", "store_id": 7, "ingredient_id": DOUGH}),
        ("6", {**bad_restock, "event_id": "R-huge", "ingredient_id": DOUGH, "quantity": 10**20}),
    ]
    hour_ms = first.ts_ms - first.ts_ms % HOUR_MS
    restocks = stream_name(props, "restocks")

    with running_job(inventory_windowing.build, props, "inventory_windowing-test"):
        producer.put(restocks, [(key, json.dumps(record).encode()) for key, record in poison])
        put("orders_enriched", [first, second, third, delivery, dine_in, delivery])
        put("restocks", [bad_restock])
        write_ticks(props, hour_ms, [QUIET_STORE])  # opens the store, which orders
        statuses = wait_for(
            "five statuses",
            lambda: stream_records(props, "order_status"),
            lambda s: len(s) >= 5,
            timeout_s=180,
        )
        reorders = wait_for(
            "both stores' supplier orders",
            lambda: stream_records(props, "supplier_orders"),
            lambda r: {o["store_id"] for o in r} >= {5, QUIET_STORE},
            timeout_s=60,
        )
        ordered = {(r["store_id"], r["supplier_id"]): r for r in reorders}
        assert sorted(ordered) == [(5, 1), (QUIET_STORE, 1)]
        store_order, quiet_order = ordered[5, 1], ordered[QUIET_STORE, 1]
        assert [line["ingredient_id"] for line in store_order["lines"]] == [DOUGH, SAUCE]
        assert [line["ingredient_id"] for line in quiet_order["lines"]] == [DOUGH]

        # Store 5's order delivered, a restock per line, each closing its line.
        delivered = suppliers.restocks_for(store_order, datetime.now(UTC))
        assert [r["event_id"] for r in delivered] == [
            f"R-{store_order['supplier_order_id']}-{DOUGH}",
            f"R-{store_order['supplier_order_id']}-{SAUCE}",
        ]
        put("restocks", delivered)
        redis = redis_store.client(props)
        dough_line = store_order["lines"][0]["quantity"]
        restocked_dough = OPENING_DOUGH - 2 * DOUGH_PER_PIZZA + dough_line
        wait_for(
            "the restock to show",
            lambda: redis.hget(redis_store.inventory_key(5), str(DOUGH)),
            lambda v: v == str(restocked_dough),
            timeout_s=60,
        )
        put("orders_enriched", [fourth])
        # Seven hours on: the quiet store's order (due in 4 h, 2 h grace) is overdue and
        # re-issued; store 5's, delivered, is not.
        later = hour_ms + 7 * HOUR_MS
        write_ticks(props, later, [5, QUIET_STORE])
        final_dough = restocked_dough - DOUGH_PER_PIZZA
        wait_for(
            "the last order, stock and the re-issue",
            lambda: (
                len(stream_records(props, "order_status")),
                query(
                    props, "SELECT on_hand FROM inventory WHERE store_id = 5 AND ingredient_id = 1"
                ),
                len(query(props, "SELECT 1 FROM order_fct WHERE order_id NOT LIKE 'H-%%'")),
                [r["replaces"] for r in stream_records(props, "supplier_orders") if r["replaces"]],
            ),
            lambda v: v == (6, [(final_dough,)], 4, [quiet_order["supplier_order_id"]]),
            timeout_s=90,
        )
        time.sleep(3)  # nothing more may arrive
        statuses = stream_records(props, "order_status")
        reorders = stream_records(props, "supplier_orders")

    expected = {
        first.order_id: "accepted",
        second.order_id: "accepted",
        third.order_id: "rejected:insufficient_inventory",
        fourth.order_id: "accepted",
        delivery.order_id: "accepted",
        dine_in.order_id: "accepted",
    }
    assert Counter(s["o"] for s in statuses) == Counter(expected.keys())  # exactly one each
    assert {s["o"]: s["status"] for s in statuses} == expected
    assert {o: redis.get(redis_store.order_status_key(o)) for o in expected} == expected

    facts = query(
        props,
        "SELECT order_id, product_id, quantity, unit_price,"
        " total_transaction_amt, delivery_type, channel FROM order_fct"
        " WHERE order_id NOT LIKE 'H-%%'",
    )
    assert sorted(facts) == sorted(
        (o.order_id, MARGHERITA_SMALL, 1, Decimal("8.99"), Decimal("8.99"), o.fulfillment, "online")
        for o in (first, second, fourth, delivery)
    )
    assert [s["o"] for s in stream_records(props, "pos_orders")] == [dine_in.order_id]
    assert [s["o"] for s in stream_records(props, "deliveries")] == [delivery.order_id]
    assert sorted(s["o"] for s in stream_records(props, "sales")) == sorted(
        o.order_id for o in (first, second, fourth, delivery)
    )
    # supplier_order: a row per line of every supplier order, with the line's stock then
    rows = query(
        props,
        "SELECT supplier_order_id, store_id, ingredient_id, supplier_id,"
        " quantity FROM supplier_order",
    )
    assert sorted(rows) == sorted(
        (
            r["supplier_order_id"],
            r["store_id"],
            line["ingredient_id"],
            r["supplier_id"],
            line["quantity"],
        )
        for r in reorders
        for line in r["lines"]
    )
    assert query(
        props,
        "SELECT on_hand, reorder_point > on_hand FROM supplier_order"
        " WHERE supplier_order_id = %s AND ingredient_id = %s",
        store_order["supplier_order_id"],
        DOUGH,
    ) == [(OPENING_DOUGH - DOUGH_PER_PIZZA, True)]  # issued after the first order
    reissue = next(r for r in reorders if r["replaces"])
    assert (reissue["store_id"], reissue["lines"]) == (QUIET_STORE, quiet_order["lines"])
    # alerts: the overdue order once, and store 5's dough warned of before it ran out
    alerts = query(
        props,
        "SELECT kind, store_id, ingredient_id, supplier_id, supplier_order_id,"
        " record FROM replenishment_alert ORDER BY alert_ts, alert_id",
    )
    overdue = [a for a in alerts if a[0] == "supplier_order_overdue"]
    assert [a[1:5] for a in overdue] == [(QUIET_STORE, None, 1, quiet_order["supplier_order_id"])]
    assert json.loads(overdue[0][5])["reissued_as"] == reissue["supplier_order_id"]
    warned = {(a[1], a[2]): json.loads(a[5]) for a in alerts if a[0] == "expected_stockout"}
    assert (5, DOUGH) in warned and (5, SAUCE) in warned
    assert warned[5, DOUGH]["on_hand"] < warned[5, DOUGH]["expected_demand"]
    cached = redis.hgetall(redis_store.stockout_key(5))
    assert {int(k) for k in cached} >= {DOUGH, SAUCE}
    assert json.loads(cached[str(DOUGH)]) == warned[5, DOUGH]
    assert redis.ttl(redis_store.stockout_key(5)) > 0
    assert redis.hget(redis_store.inventory_key(5), str(DOUGH)) == str(final_dough)
    assert Counter(
        dict(query(props, "SELECT reason, count(*) FROM dead_letter GROUP BY reason"))
    ) == Counter(
        {
            "duplicate_order": 1,
            "unknown_ingredient": 1,
            "partition_key_mismatch": 2,
            "invalid_quantity": 1,
        }
    )
    assert query(
        props, "SELECT on_hand FROM inventory WHERE store_id = 7 AND ingredient_id = 1"
    ) == query(
        props, "SELECT on_hand FROM opening_inventory WHERE store_id = 7 AND ingredient_id = 1"
    )
    with aurora.connect(props) as conn:
        assert_the_in_memory_runner_agrees(
            props,
            [
                TestingSource(
                    [SourceRecord(key, json.dumps(r).encode(), RESTOCK) for key, r in poison]
                )
                + TestingSource.enriched_orders([first, second, third, delivery, dine_in, delivery])
                + TestingSource.restocks([bad_restock])
                + TestingSource.ticks([QUIET_STORE], hour_ms)
                + TestingSource.restocks(delivered)
                + TestingSource.enriched_orders([fourth])
                + TestingSource.ticks([5, QUIET_STORE], later)
            ],
            Catalog.from_rows(*aurora.catalog_rows(props)),
            policies_from_rows(aurora.ingredient_policy_rows(props)),
            lambda store_id: aurora.store_inventory(conn, store_id),
            lambda store_id, first_ms, end_ms: aurora.store_sales(conn, store_id, first_ms, end_ms),
            [5, 6, QUIET_STORE],
            facts_where="order_id NOT LIKE 'H-%%'",  # past_sales
        )
