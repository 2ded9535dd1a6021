"""inventory_windowing on the mini-cluster with the real connectors, at parallelism 2, then
restored from a savepoint at parallelism 1, then again at 2: a few thousand orders for many
stores (many stores short of stock; some orders replayed after both restores) go through the
batched path, and every decision, status, sale, fact row, supplier order line and final
stock level must be what ``pizzastream.inventory.take`` and
``pizzastream.replenishment.StoreReplenishment`` decide applied store by store, one order at
a time, in the order each store's orders were written. A store's stock and the order ids seen
must come through each restore and each rescale (keyed state moving between subtasks).

The same records, run by the in-memory runner (``jobs.testing``, its state carried from run
to run as the savepoints carry the job's), must give every output record the mini-cluster
gave: each stream's records in the same order within a store, each table's rows, the Redis
statuses and the dead letters."""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import Counter, defaultdict
from typing import Any

import pytest

from connectors import aurora, redis_store
from connectors.kinesis_producer import KinesisProducer
from jobs import inventory_windowing
from jobs.testing import TestingSource, no_sales
from pizzastream.catalog import Catalog
from pizzastream.inventory import StoreStock, requirements, take
from pizzastream.orders import EnrichedOrder, OrderLine
from pizzastream.replenishment import ReplenishmentOrder, StoreReplenishment, policies_from_rows
from pizzastream.sales import fact_rows, sale_json
from tests.order_path_support import assert_the_in_memory_runner_agrees
from tests.pos_support import query, stream_json
from tests.support import running_job, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STORES = list(range(101, 161))  # 60 stores over many shards
SHORT_STORES = STORES[::3]  # opened with little stock: refusals and reorders
ORDERS = 3000
REPLAYS = 150
REPLAYED_TWICE = 20
# (first order, parallelism) of each run; each later run restores the previous one's savepoint
RUNS = ((0, 2), (1000, 1), (2000, 2))


def traffic(catalog: Catalog) -> list[EnrichedOrder]:
    rng = random.Random(13)
    active = [p for p in catalog.products() if p.active]
    now_ms = int(time.time() * 1000) - 600_000
    orders = []
    for n in range(ORDERS):
        store_id = rng.choice(STORES)
        channel = rng.choice(["online", "online", "in_store"])
        fulfillment = rng.choice(
            ["delivery", "pickup"] if channel == "online" else ["dine_in", "pickup"]
        )
        location: tuple[float | None, float | None] = (
            (40.7, -74.0) if fulfillment == "delivery" else (None, None)
        )
        lines = tuple(
            OrderLine(p.product_id, rng.randint(1, 3), p.unit_price_cents)
            for p in rng.sample(active, rng.randint(1, 3))
        )
        orders.append(
            EnrichedOrder(
                str(uuid.uuid4()),
                f"P{store_id}-{n:05d}",
                store_id,
                channel,
                fulfillment,
                now_ms + n * 100,
                *location,
                lines,
            )
        )
    return orders


def one_by_one(orders, opening, catalog, policies) -> dict:
    """Each store's stock and plan, the plan as a store with no past sales starts (the
    stack's order_fct is empty)."""
    stores: dict[int, tuple[StoreStock, StoreReplenishment]] = {}
    out: defaultdict[str, Any] = defaultdict(list)
    for order in orders:
        opened = order.store_id not in stores
        if opened:
            stores[order.store_id] = (
                StoreStock.initial(order.store_id, opening[order.store_id]),
                StoreReplenishment(order.store_id),
            )
        stock, planner = stores[order.store_id]
        demand = requirements(order, catalog)
        accepted = not take(stock, demand)
        out["status"].append(
            (order.order_id, "accepted" if accepted else "rejected:insufficient_inventory")
        )
        if accepted:
            out["sales" if order.channel == "online" else "pos_orders"].append(sale_json(order))
            if order.fulfillment == "delivery":
                out["deliveries"].append(sale_json(order))
            if order.channel == "online":
                out["facts"] += fact_rows(order)
        planner.record_demand(demand, order.ts_ms)
        for record in planner.review(
            policies, stock.on_hand, order.ts_ms, None if opened else demand
        ):
            if isinstance(record, ReplenishmentOrder):
                out["reorders"] += [
                    (record.supplier_order_id, ingredient_id, quantity)
                    for ingredient_id, quantity in record.lines
                ]
    out["stock"] = {(s, i): q for s, (stock, _) in stores.items() for i, q in stock.on_hand.items()}
    return out


def traffic_and_expected(props) -> tuple[list[EnrichedOrder], dict, tuple]:
    """Opens ``SHORT_STORES`` with a twentieth of their stock; returns the traffic, what
    the rules decide of it one order at a time, in order (``one_by_one``), and what the
    rules read: ``(opening stock, catalog, policies)``."""
    for store_id in SHORT_STORES:
        for table in ("inventory", "opening_inventory"):
            query(props, f"UPDATE {table} SET on_hand = on_hand / 20 WHERE store_id = %s", store_id)
    opening: dict[int, dict[int, int]] = defaultdict(dict)
    for store_id, ingredient_id, on_hand in query(
        props,
        "SELECT store_id, ingredient_id, on_hand FROM opening_inventory WHERE store_id = ANY(%s)",
        STORES,
    ):
        opening[store_id][ingredient_id] = on_hand
    catalog = Catalog.from_rows(*aurora.catalog_rows(props))
    policies = policies_from_rows(aurora.ingredient_policy_rows(props))
    orders = traffic(catalog)
    expected = one_by_one(orders, opening, catalog, policies)
    assert len(expected["reorders"]) > len({r[0] for r in expected["reorders"]}) > 5
    return orders, expected, (opening, catalog, policies)


def wait_for_stock(props, expected: dict) -> None:
    """Until the stock levels in Aurora are the expected ones (published per checkpoint)."""
    wait_for(
        "the stock published",
        lambda: dict(
            ((s, i), q)
            for s, i, q in query(
                props,
                "SELECT store_id, ingredient_id, on_hand FROM inventory WHERE store_id = ANY(%s)",
                STORES,
            )
        ),
        lambda levels: all(levels.get(k) == v for k, v in expected["stock"].items()),
        timeout_s=120,
    )


def test_batches_decide_what_the_rules_decide_through_restores_and_rescales(clean_stack, tmp_path):
    orders, expected, rules_read = traffic_and_expected(clean_stack)
    # Replayed after the restores, of orders decided before them: the ids seen must survive;
    # some twice, and each repeat is a dead letter of its own.
    replays = random.Random(5).sample(orders[: RUNS[-1][0]], REPLAYS)
    replays += replays[:REPLAYED_TWICE]

    from pizzastream.config import stream_name

    producer = KinesisProducer(clean_stack)
    savepoint = None
    runs_sent = []
    for run, (first, parallelism) in enumerate(RUNS):
        last = RUNS[run + 1][0] if run + 1 < len(RUNS) else ORDERS
        props = {
            **clean_stack,
            "FlinkTuning": {**clean_stack["FlinkTuning"], "parallelism": str(parallelism)},
        }
        sent = orders[first:last] + (replays if run == len(RUNS) - 1 else [])
        runs_sent.append(sent)
        with running_job(
            inventory_windowing.build, props, f"order-path-{run}", restore_from=savepoint
        ) as job:
            records = [(str(o.store_id), o.to_json().encode()) for o in sent]
            for start in range(0, len(records), 500):
                producer.put(stream_name(props, "orders_enriched"), records[start : start + 500])
            wait_for(
                f"orders up to {last} decided",
                lambda: len(stream_json(clean_stack, "order_status")),
                lambda n, decided=last: n >= decided,
                timeout_s=300,
            )
            if run + 1 < len(RUNS):
                savepoint = job.stop_with_savepoint(tmp_path / f"savepoints-{run}")
                continue
            wait_for_stock(clean_stack, expected)
            time.sleep(6)  # a checkpoint more: nothing else may arrive
    props = clean_stack
    statuses = stream_json(props, "order_status")
    streams = {name: stream_json(props, name) for name in ("sales", "pos_orders", "deliveries")}

    assert Counter(s["o"] for s in statuses) == Counter(o.order_id for o in orders)
    assert sorted((s["o"], s["status"]) for s in statuses) == sorted(expected["status"])
    redis = redis_store.client(props)
    assert {o: redis.get(redis_store.order_status_key(o)) for o, _ in expected["status"]} == dict(
        expected["status"]
    )
    for name, records in streams.items():
        assert Counter(json.dumps(r, sort_keys=True) for r in records) == Counter(
            json.dumps(json.loads(s), sort_keys=True) for s in expected[name]
        ), name
    facts = query(
        props,
        "SELECT store_id, order_id, product_id, quantity,"
        " (unit_price * 100)::bigint, (total_transaction_amt * 100)::bigint,"
        " delivery_type, channel FROM order_fct",
    )
    assert sorted(facts) == sorted(
        (r[0], r[1], r[2], r[4], r[5], r[6], r[7], r[8]) for r in expected["facts"]
    )
    assert sorted(
        query(props, "SELECT supplier_order_id, ingredient_id, quantity FROM supplier_order")
    ) == sorted(expected["reorders"])
    letters = query(props, "SELECT reason, order_id, event_id, store_id FROM dead_letter")
    assert Counter(letters) == Counter(
        ("duplicate_order", o.order_id, o.event_id, o.store_id) for o in replays
    )
    opening, catalog, policies = rules_read
    # order_fct is empty, and the history window ends two days back: no sales seed a plan
    assert_the_in_memory_runner_agrees(
        props,
        [TestingSource.enriched_orders(sent) for sent in runs_sent],
        catalog,
        policies,
        opening,
        no_sales,
        STORES,
    )
