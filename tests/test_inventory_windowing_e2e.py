"""inventory_windowing on the mini-cluster with the real connectors, PostgreSQL and Redis:
a scripted day for two stores where stock runs out, rejections follow, one reorder goes out,
the restock arrives and orders are accepted again. Outputs must match the script exactly."""
from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from decimal import Decimal

import pytest

from connectors import aurora, aws, redis_store
from connectors.kinesis_producer import KinesisProducer
from jobs import inventory_windowing
from pizzastream.config import stream_name
from pizzastream.orders import EnrichedOrder, OrderLine
from tests.support import running_job, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DOUGH = 1
MARGHERITA_SMALL, MARGHERITA_PRICE, DOUGH_PER_PIZZA = 1, 899, 180
OPENING_DOUGH = 2 * DOUGH_PER_PIZZA + 100        # two pizzas, then short
RESTOCKED = 50_000


def order(store_id: int, n: int, channel="online", fulfillment="pickup") -> EnrichedOrder:
    location = (40.7, -74.0) if fulfillment == "delivery" else (None, None)
    return EnrichedOrder(str(uuid.uuid4()), f"S{store_id:04d}-T{n:05d}", store_id, channel,
                         fulfillment, int(time.time() * 1000) - 60_000 + n, *location,
                         (OrderLine(MARGHERITA_SMALL, 1, MARGHERITA_PRICE),))


def stream_records(props, logical_name) -> list[dict]:
    kinesis = aws.client(props, "kinesis")
    return [json.loads(data) for _, data in
            aws.read_stream(kinesis, stream_name(props, logical_name))]


def query(props, sql: str, *args) -> list[tuple]:
    with aurora.connect(props) as conn:
        cursor = conn.execute(sql, args)
        return cursor.fetchall() if cursor.description else []


def test_stock_runs_out_is_reordered_once_and_restocked(clean_stack):
    props = clean_stack
    for table in ("inventory", "opening_inventory"):
        query(props, f"UPDATE {table} SET on_hand = %s WHERE store_id = 5 AND ingredient_id = %s",
              OPENING_DOUGH, DOUGH)
    producer = KinesisProducer(props)
    put = lambda name, records: producer.put(  # noqa: E731
        stream_name(props, name), [(str(r["store_id"]), json.dumps(r).encode())
                                   if isinstance(r, dict) else (str(r.store_id), r.to_json().encode())
                                   for r in records])
    first, second, third, fourth = (order(5, n) for n in range(1, 5))
    delivery = order(6, 1, fulfillment="delivery")
    dine_in = order(6, 2, channel="in_store", fulfillment="dine_in")
    bad_restock = {"event_id": "R-bad", "store_id": 6, "ingredient_id": 99, "quantity": 5,
                   "ts": "2026-11-24T10:00:00Z", "supplier_order_id": None}
    # Poison restocks that once crash-looped the job and stopped every store's orders: a
    # key that is no number, a non-canonical key for another store, a quantity past BIGINT.
    poison = [("abc", {**bad_restock, "event_id": "R-key", "ingredient_id": DOUGH}),
              ("007", {**bad_restock, "event_id": "R-007", "store_id": 7,
                       "ingredient_id": DOUGH}),
              ("6", {**bad_restock, "event_id": "R-huge", "ingredient_id": DOUGH,
                     "quantity": 10 ** 20})]

    with running_job(inventory_windowing.build, props, "inventory_windowing-test"):
        producer.put(stream_name(props, "restocks"),
                     [(key, json.dumps(record).encode()) for key, record in poison])
        put("orders_enriched", [first, second, third, delivery, dine_in, delivery])
        put("restocks", [bad_restock])
        statuses = wait_for("five statuses", lambda: stream_records(props, "order_status"),
                            lambda s: len(s) >= 5, timeout_s=180)
        reorders = stream_records(props, "supplier_orders")
        assert [(r["store_id"], r["ingredient_id"]) for r in reorders] == [(5, DOUGH)]

        put("restocks", [{"event_id": "R-1", "store_id": 5, "ingredient_id": DOUGH,
                          "quantity": RESTOCKED, "ts": "2026-11-24T10:00:00Z",
                          "supplier_order_id": reorders[0]["supplier_order_id"]}])
        redis = redis_store.client(props)
        restocked_dough = OPENING_DOUGH - 2 * DOUGH_PER_PIZZA + RESTOCKED
        wait_for("the restock to show", lambda: redis.hget(redis_store.inventory_key(5), str(DOUGH)),
                 lambda v: v == str(restocked_dough), timeout_s=60)
        put("orders_enriched", [fourth])
        final_dough = restocked_dough - DOUGH_PER_PIZZA
        wait_for("the last order and stock", lambda: (
            len(stream_records(props, "order_status")),
            query(props, "SELECT on_hand FROM inventory WHERE store_id = 5 AND ingredient_id = 1"),
            len(query(props, "SELECT 1 FROM order_fct"))),
            lambda v: v == (6, [(final_dough,)], 4), timeout_s=60)
        time.sleep(3)  # nothing more may arrive
        statuses = stream_records(props, "order_status")

    expected = {first.order_id: "accepted", second.order_id: "accepted",
                third.order_id: "rejected:insufficient_inventory", fourth.order_id: "accepted",
                delivery.order_id: "accepted", dine_in.order_id: "accepted"}
    assert Counter(s["o"] for s in statuses) == Counter(expected.keys())  # exactly one each
    assert {s["o"]: s["status"] for s in statuses} == expected
    assert {o: redis.get(redis_store.order_status_key(o)) for o in expected} == expected

    facts = query(props, "SELECT order_id, product_id, quantity, unit_price,"
                         " total_transaction_amt, delivery_type, channel FROM order_fct")
    assert sorted(facts) == sorted(
        (o.order_id, MARGHERITA_SMALL, 1, Decimal("8.99"), Decimal("8.99"), o.fulfillment,
         "online") for o in (first, second, fourth, delivery))
    assert [s["o"] for s in stream_records(props, "pos_orders")] == [dine_in.order_id]
    assert [s["o"] for s in stream_records(props, "deliveries")] == [delivery.order_id]
    assert sorted(s["o"] for s in stream_records(props, "sales")) == sorted(
        o.order_id for o in (first, second, fourth, delivery))
    assert query(props, "SELECT store_id, ingredient_id FROM supplier_order") == [(5, DOUGH)]
    assert redis.hget(redis_store.inventory_key(5), str(DOUGH)) == str(final_dough)
    assert Counter(dict(query(props, "SELECT reason, count(*) FROM dead_letter GROUP BY reason"))) \
        == Counter({"duplicate_order": 1, "unknown_ingredient": 1,
                    "partition_key_mismatch": 2, "invalid_quantity": 1})
    assert query(props, "SELECT on_hand FROM inventory WHERE store_id = 7 AND ingredient_id = 1"
                 ) == query(props, "SELECT on_hand FROM opening_inventory"
                                   " WHERE store_id = 7 AND ingredient_id = 1")
