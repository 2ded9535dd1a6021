"""The order path's reference model for tests: the rules applied one record at a time, in
order, store by store (``one_by_one``), the same traffic decided in batches (``batched``),
and the fixtures both use; held against the batched path by
tests/pizzastream/test_order_batches.py and against the in-memory runner by
tests/jobs/test_testing.py."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from datetime import datetime
from typing import Any

from pizzastream.batches import (
    frame_store_records,
    result_lines,
)
from pizzastream.catalog import Catalog
from pizzastream.inventory import (
    PARTITION_KEY_MISMATCH,
    InvalidRestock,
    StoreStock,
    accepted_detail,
    check_restock_key,
    parse_restock,
    requirements,
    restock,
    shortage_detail,
    take,
)
from pizzastream.order_batches import (
    DECISION_ROUTES,
    ORDER,
    RESTOCK,
    ShardDesk,
    alert_row,
    store_from_bytes,
)
from pizzastream.orders import (
    EnrichedOrder,
    OrderLine,
    OrderRules,
    epoch_ms,
    format_event_time,
)
from pizzastream.replenishment import (
    HOUR_MS,
    HistoryWindow,
    ReplenishmentOrder,
    StoreReplenishment,
    hourly_demand,
    policies_from_reference_data,
)
from pizzastream.sales import enriched_status_json, fact_rows, sale_json
from pizzastream.ticks import InvalidTick, parse_tick, tick_event_id

CATALOG = Catalog.from_reference_data()


POLICIES = policies_from_reference_data()


RULES = OrderRules(
    max_quantity=20, max_lines=25, max_record_bytes=8192, max_future_seconds=300, max_age_hours=48
)


T0 = epoch_ms(datetime.fromisoformat("2026-11-24T18:00:00Z"))


ACTIVE = [p.product_id for p in CATALOG.products() if p.active]


STORES = (3, 35, 67)  # one shard of 32: 3 % 32 == 35 % 32 == 67 % 32


INGREDIENTS = sorted(POLICIES)


HISTORY = HistoryWindow(gap_hours=48, weeks=2)


def price(product_id: int) -> int:
    """The catalog's unit price of a product it has."""
    product = CATALOG.product(product_id)
    assert product is not None
    return product.unit_price_cents


def opening(store_id: int) -> dict[int, int]:
    """Little stock, so orders are refused and reorders go out within a few records."""
    return {i: 900 + 137 * ((store_id + i) % 5) for i in INGREDIENTS}


def _past_sales() -> dict[int, list[tuple[int, int, int]]]:
    """order_fct rows ``(ts ms, product, quantity)`` of store 35 over the three weeks
    before T0 (store 3 and 67 have none): the window's two weeks seed it, the rest (older,
    or in the gap) must not."""
    rng = random.Random(7)
    rows = []
    for hour in range(T0 // HOUR_MS - 3 * 168, T0 // HOUR_MS):
        if 11 <= hour % 24 <= 21:
            rows += [
                (
                    hour * HOUR_MS + rng.randint(0, HOUR_MS - 1),
                    rng.choice(ACTIVE),
                    rng.randint(1, 3),
                )
                for _ in range(rng.randint(0, 3))
            ]
    return {35: rows}


PAST_SALES = _past_sales()


def sales_history(store_id: int, first_ms: int, end_ms: int) -> list[tuple[int, int, int]]:
    """What ``connectors.aurora.store_sales`` reads: the store's rows in [first, end)."""
    return [row for row in PAST_SALES.get(store_id, ()) if first_ms <= row[0] < end_ms]


def new_desk() -> ShardDesk:
    return ShardDesk(lambda: CATALOG, lambda: POLICIES, opening, sales_history, HISTORY)


def seeded_plan(store_id: int, first_event_ms: int) -> StoreReplenishment:
    first, end = HISTORY.hours(first_event_ms)
    return StoreReplenishment.seeded(
        store_id,
        hourly_demand(
            sales_history(store_id, first * HOUR_MS, end * HOUR_MS), CATALOG.recipe_pairs
        ),
        until_hour=end,
        start_hour=first_event_ms // HOUR_MS,
    )


def one_by_one(
    records: list[tuple[str, str, bytes]], saved: dict[int, bytes] | None = None
) -> dict:
    """The rules applied record by record, each store's stock and plan on their own: what
    the batches must add up to. ``saved``: stores' states to start from (as restored)."""
    stores: dict[int, tuple[StoreStock, StoreReplenishment]] = {}
    saved = dict(saved or {})
    out: defaultdict[str, Any] = defaultdict(list)

    def store(store_id: int, event_ms: int) -> tuple[StoreStock, StoreReplenishment, bool]:
        if store_id in stores:
            return (*stores[store_id], False)
        stock, planner = (
            store_from_bytes(saved[store_id])
            if store_id in saved
            else (StoreStock.initial(store_id, opening(store_id)), None)
        )
        return stock, planner or seeded_plan(store_id, event_ms), planner is None

    def emit(records, stock, planner):
        for record in records:
            if isinstance(record, ReplenishmentOrder):
                out["R"].append(record.to_json())
                out["Q"] += [
                    (
                        record.supplier_order_id,
                        record.store_id,
                        ingredient_id,
                        record.supplier_id,
                        quantity,
                        record.ts_ms,
                        stock.on_hand.get(ingredient_id, 0),
                        planner.reorder_point(ingredient_id),
                    )
                    for ingredient_id, quantity in record.lines
                ]
            else:
                out["W"].append(alert_row(record))

    for kind, key, data in records:
        doc = _json_or_none(data)
        if kind == RESTOCK and isinstance(doc, dict) and "tick" in doc:
            try:
                tick = parse_tick(doc)
                if key != str(tick.store_id):
                    raise InvalidTick(PARTITION_KEY_MISMATCH, "key")
            except InvalidTick as invalid:
                out["letters"].append(invalid.reason)
                continue
            stock, planner, _ = store(tick.store_id, tick.ts_ms)
            stores[tick.store_id] = (stock, planner)
            emit(planner.review(POLICIES, stock.on_hand, tick.ts_ms, None), stock, planner)
        elif kind == RESTOCK:
            try:
                delivery = parse_restock(data)
                check_restock_key(delivery, key)
                stock, planner, fresh = store(delivery.store_id, delivery.ts_ms)
                restock(
                    stock,
                    delivery.ingredient_id,
                    delivery.quantity,
                    delivery.supplier_order_id,
                    delivery.ts_ms,
                    known=POLICIES,
                )
            except InvalidRestock as invalid:
                out["letters"].append(invalid.reason)
                continue
            stores[delivery.store_id] = (stock, planner)
            planner.receive(delivery.supplier_order_id, delivery.ingredient_id, POLICIES)
            emit(
                planner.review(
                    POLICIES,
                    stock.on_hand,
                    delivery.ts_ms,
                    None if fresh else (delivery.ingredient_id,),
                ),
                stock,
                planner,
            )
        else:
            order = EnrichedOrder.from_json(data)
            stock, planner, fresh = store(order.store_id, order.ts_ms)
            stores[order.store_id] = (stock, planner)
            demand = requirements(order, CATALOG)
            short = take(stock, demand)
            status = "rejected:insufficient_inventory" if short else "accepted"
            out["S"].append(
                enriched_status_json(
                    order, status, shortage_detail(short) if short else accepted_detail(demand)
                )
            )
            out["C"].append((order.order_id, status))
            if not short:
                sale = sale_json(order)
                out["A" if order.channel == "online" else "P"].append(sale)
                if order.fulfillment == "delivery":
                    out["D"].append(sale)
                if order.channel == "online":
                    out["F"] += [tuple(row) for row in fact_rows(order)]
            planner.record_demand(demand, order.ts_ms)
            emit(
                planner.review(POLICIES, stock.on_hand, order.ts_ms, None if fresh else demand),
                stock,
                planner,
            )
    out["stock"] = {
        store_id: (stock.to_state(), planner.to_state())
        for store_id, (stock, planner) in stores.items()
    }
    return out


def _json_or_none(data: bytes):
    try:
        return json.loads(data)
    except ValueError:
        return None


def batched(
    records: list[tuple[str, str, bytes]],
    cuts: list[int],
    persists: set[int],
    restart_at: int | None,
    saved: dict[int, bytes] | None = None,
) -> dict:
    """The records through ``ShardDesk`` in batches ending at ``cuts`` (a batch ending at a
    cut in ``persists`` asks to persist); with ``restart_at``, the desk is replaced after
    that many batches by a new one restored from what was persisted, and the records after
    the last persist are decided again, as after a failure."""
    state: dict[int, bytes] = dict(saved or {})
    out: defaultdict[str, Any] = defaultdict(list)
    levels: dict[tuple[int, int], int] = {}
    bounds = list(zip([0, *cuts], [*cuts, len(records)]))

    def run(desk, batches):
        emitted = defaultdict(list)
        for start, end in batches:
            persist = end in persists or end == len(records)
            result, letters, saved = desk.decide(
                "shard", frame_store_records(records[start:end], persist), state.get
            )
            for tag, key, payload in result_lines(result.encode(), DECISION_ROUTES):
                emitted[tag].append((key, payload))
            emitted["letters"] += [letter.reason for letter in letters]
            if persist:
                yield emitted, dict(saved)
                emitted = defaultdict(list)
        yield emitted, None

    desk = new_desk()
    batches = bounds if restart_at is None else bounds[:restart_at]
    for emitted, saved in run(desk, batches):
        if saved is None:
            break  # lost with the failure: decided again below
        _collect(out, levels, emitted)
        state.update(saved)
    if restart_at is not None:
        last_persisted = max(
            (end for _, end in bounds[:restart_at] if end in persists or end == len(records)),
            default=0,
        )
        replay = [(s, e) for s, e in bounds if s >= last_persisted]
        for emitted, saved in run(new_desk(), replay):
            _collect(out, levels, emitted)
            if saved:
                state.update(saved)
    out["stock"] = {}
    for store_id, data in state.items():
        stock, planner = store_from_bytes(data)
        assert planner is not None
        out["stock"][store_id] = (stock.to_state(), planner.to_state())
    out["levels"] = levels
    return out


def _collect(out, levels, emitted) -> None:
    for tag, lines in emitted.items():
        if tag == "letters":
            out["letters"] += lines
        elif tag == "C":
            out["C"] += [(key, payload) for key, payload in lines]
        elif tag == "F":
            out["F"] += [_fact(payload) for _, payload in lines]
        elif tag == "Q":
            out["Q"] += [_supplier_order_row(payload) for _, payload in lines]
        elif tag == "L":
            for _, payload in lines:
                store_id, ingredient_id, on_hand = map(int, payload.split("\t"))
                levels[store_id, ingredient_id] = on_hand
        else:
            out[tag] += [payload for _, payload in lines]


def _fact(payload: str) -> tuple:
    store, order_id, product, ts, quantity, price, total, fulfillment, channel = payload.split("\t")
    return (
        int(store),
        order_id,
        int(product),
        int(ts),
        int(quantity),
        int(price),
        int(total),
        fulfillment,
        channel,
    )


def _supplier_order_row(payload: str) -> tuple:
    order_id, *numbers = payload.split("\t")
    return (order_id, *map(int, numbers))


def traffic(seed: int, n: int) -> list[tuple[str, str, bytes]]:
    """Orders (valid, one repeated product line, big ones that run stock out), restocks
    (answering supplier order lines or not, unknown ingredients, wrong keys) and hourly
    ticks (and malformed ones) for three stores, over a few hours of event time."""
    rng = random.Random(seed)
    records = []
    ticked = set()
    for index in range(n):
        store_id = rng.choice(STORES)
        ts_ms = T0 + index * rng.randint(0, 90_000)
        draw = rng.random()
        if draw < 0.06:
            hour_ms = ts_ms - ts_ms % HOUR_MS
            body = {
                "event_id": tick_event_id(store_id, hour_ms),
                "store_id": store_id,
                "tick": format_event_time(hour_ms),
            }
            key, flaw = str(store_id), rng.randint(0, 7)
            if flaw == 1:
                body["tick"] = format_event_time(hour_ms + 60_000)
            elif flaw == 2:
                body["event_id"] = f"TICK-{store_id}-x"
            elif flaw == 3:
                body["quantity"] = 5
            elif flaw == 4:
                key = "x"
            elif (store_id, hour_ms) in ticked:  # the JVM drops a tick's repeats
                continue
            else:
                ticked.add((store_id, hour_ms))
            records.append((RESTOCK, key, json.dumps(body).encode()))
            continue
        if draw < 0.18:
            ingredient = rng.choice([*INGREDIENTS, 999])
            supplier = POLICIES[ingredient].supplier_id if ingredient in POLICIES else 1
            key = rng.choice([str(store_id)] * 8 + ["0" + str(store_id), "x"])
            body = {
                "event_id": f"R{index}",
                "store_id": store_id,
                "ingredient_id": ingredient,
                "quantity": rng.choice([3_000, 6_000, 0]),
                "ts": format_event_time(ts_ms),
                "supplier_order_id": rng.choice(
                    [f"PO-{store_id}-{supplier}-{rng.randint(1, 4)}"] * 3
                    + [f"SO-{store_id}-{ingredient}-1", None]
                ),
            }
            records.append((RESTOCK, key, json.dumps(body).encode()))
            continue
        products = rng.sample(ACTIVE, rng.randint(1, 3))
        lines = tuple(OrderLine(p, rng.randint(1, 4), price(p)) for p in products)
        channel = rng.choice(["online", "online", "in_store"])
        fulfillment = rng.choice(
            ["delivery", "pickup"] if channel == "online" else ["dine_in", "pickup"]
        )
        location: tuple[float | None, float | None] = (
            (40.7, -74.0) if fulfillment == "delivery" else (None, None)
        )
        order = EnrichedOrder(
            f"e{index}",
            f"S{store_id}-{index}",
            store_id,
            channel,
            fulfillment,
            ts_ms,
            *location,
            lines,
        )
        records.append((ORDER, str(store_id), order.to_json().encode()))
    return records


def expected_levels(reference: dict) -> dict[tuple[int, int], int]:
    levels: dict[tuple[int, int], int] = {}
    for store_id, (state, _) in reference["stock"].items():
        stock = StoreStock.from_state(state)
        assert stock is not None
        levels.update(
            {(store_id, ingredient_id): on_hand for ingredient_id, on_hand in stock.on_hand.items()}
        )
    return levels


def assert_same(batch_out: dict, reference: dict) -> None:
    for tag in ("S", "C", "A", "P", "D", "F", "R", "Q", "W", "letters"):
        expected = (
            [(str(order_id), status) for order_id, status in reference[tag]]
            if tag == "C"
            else reference[tag]
        )
        assert batch_out[tag] == expected, tag
    assert batch_out["stock"] == reference["stock"]
    assert batch_out["levels"] == expected_levels(reference)
