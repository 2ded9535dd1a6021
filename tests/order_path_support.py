"""The order path's mini-cluster runs held to the in-memory runner (``jobs.testing``)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from itertools import chain

from connectors import redis_store
from jobs.testing import JobState, TestingSource, run_inventory_windowing
from pizzastream.catalog import Catalog, Row
from pizzastream.dead_letters import DeadLetter
from pizzastream.order_batches import Decisions
from pizzastream.replenishment import ReplenishmentPolicy
from pizzastream.settings import InventorySettings, OrderPathSettings
from tests.pos_support import query, stream_json


def assert_the_in_memory_runner_agrees(
    props,
    runs: list[TestingSource],
    catalog: Catalog,
    policies: Mapping[int, ReplenishmentPolicy],
    opening_stock: Mapping[int, Mapping[int, int]] | Callable[[int], Mapping[int, int]],
    sales_history: Callable[[int, int, int], Iterable[Row]],
    stores: list[int],
    facts_where: str = "TRUE",
) -> None:
    """inventory_windowing's outputs on the local stack (Kinesis streams, Aurora tables,
    Redis statuses) are every output record ``jobs.testing`` gives for the same ``runs``
    of records, each run from the state the last one left (as a savepoint carries the
    job's): a stream's records in the same order within a store, a table's rows as a set,
    the stock levels of ``stores`` as the last one published, the ``order_fct`` rows
    ``facts_where`` (SQL; those the test wrote itself left out)."""
    state = JobState()
    inventory = InventorySettings.from_group(props["Inventory"])
    path = OrderPathSettings.from_group(props.get("OrderPath", {}))
    outputs = [
        run_inventory_windowing(
            source,
            catalog,
            policies,
            opening_stock,
            sales_history,
            path=path,
            inventory=inventory,
            state=state,
        )
        for source in runs
    ]
    memory = Decisions(*(list(chain.from_iterable(records)) for records in zip(*outputs)))

    def per_store(records, store_field):
        stores = defaultdict(list)
        for record in records:
            stores[record[store_field]].append(record)
        return dict(stores)

    for name, store_field in (
        ("order_status", "s"),
        ("sales", "s"),
        ("pos_orders", "s"),
        ("deliveries", "s"),
        ("supplier_orders", "store_id"),
    ):
        output = {"order_status": "statuses"}.get(name, name)
        assert per_store(stream_json(props, name), store_field) == per_store(
            [json.loads(r.payload) for r in getattr(memory, output)], store_field
        ), name
    redis = redis_store.client(props)
    assert {c.key: redis.get(c.key) for c in memory.status_commands} == {
        c.key: c.value for c in memory.status_commands
    }
    epoch_ms = "(extract(epoch FROM {}) * 1000)::bigint"
    assert sorted(
        query(
            props,
            "SELECT store_id, order_id, product_id, " + epoch_ms.format("transaction_ts") + ","
            " quantity, (unit_price * 100)::bigint, (total_transaction_amt * 100)::bigint,"
            " delivery_type, channel FROM order_fct WHERE " + facts_where,
        )
    ) == sorted(tuple(row) for row in memory.facts)
    assert sorted(
        query(
            props,
            "SELECT supplier_order_id, store_id, ingredient_id, supplier_id, quantity, "
            + epoch_ms.format("ordered_ts")
            + ", on_hand, reorder_point FROM supplier_order",
        )
    ) == sorted(tuple(row) for row in memory.supplier_order_rows)
    assert sorted(
        query(
            props,
            "SELECT alert_id, kind, store_id, coalesce(ingredient_id, 0), coalesce(supplier_id, 0),"
            " coalesce(supplier_order_id, ''), " + epoch_ms.format("alert_ts") + ", record"
            " FROM replenishment_alert",
        )
    ) == sorted(tuple(row) for row in memory.alerts)
    # levels are published once per store and checkpoint: the table holds the last of each
    last_levels = {(row.store_id, row.ingredient_id): row.on_hand for row in memory.levels}
    assert {
        (s, i): q
        for s, i, q in query(
            props,
            "SELECT store_id, ingredient_id, on_hand FROM inventory WHERE store_id = ANY(%s)",
            stores,
        )
    } == last_levels
    assert sorted(
        query(props, f"SELECT {', '.join(DeadLetter.FIELDS)} FROM dead_letter")
    ) == sorted(letter.as_tuple() for letter in memory.dead_letters)
