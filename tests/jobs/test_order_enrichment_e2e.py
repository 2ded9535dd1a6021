"""order_enrichment on the mini-cluster, through the real edges: the Kinesis connector
against the Kinesis emulator, the JDBC sink against PostgreSQL, Redis. Counts are exact."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from datetime import UTC, datetime

import pytest

from connectors import aurora, aws, redis_store
from connectors.kinesis_producer import KinesisProducer
from jobs import order_enrichment
from pizzastream.catalog import Catalog
from pizzastream.config import stream_name
from pizzastream.orders import EnrichedOrder, epoch_ms, format_event_time
from stack.generate import send_orders
from tests.support import running_job, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ORDERS = 1200
REPRICED, RETIRED, NEW_PRODUCT = 1, 2, 99


def enriched_orders(props) -> list[tuple[str, EnrichedOrder]]:
    kinesis = aws.client(props, "kinesis")
    return [
        (key, EnrichedOrder.from_json(data))
        for key, data in aws.read_stream(kinesis, stream_name(props, "orders_enriched"))
    ]


def statuses(props) -> list[dict]:
    kinesis = aws.client(props, "kinesis")
    return [
        json.loads(data) for _, data in aws.read_stream(kinesis, stream_name(props, "order_status"))
    ]


def query(props, sql: str, *args) -> list[tuple]:
    with aurora.connect(props) as conn:
        cursor = conn.execute(sql, args)
        return cursor.fetchall() if cursor.description else []


def dead_letter_reasons(props) -> Counter:
    return Counter(
        dict(
            query(
                props,
                "SELECT reason, count(*) FROM dead_letter"
                " WHERE job = 'order_enrichment' GROUP BY reason",
            )
        )
    )


def order_for(product_id: int, n: int) -> tuple[str, bytes]:
    order = {
        "event_id": str(uuid.uuid4()),
        "order_id": f"S0007-C{n:05d}",
        "store_id": 7,
        "channel": "online",
        "fulfillment": "pickup",
        "ts": format_event_time(epoch_ms(datetime.now(UTC))),
        "items": [{"product_id": product_id, "quantity": 2}],
    }
    return "7", json.dumps(order).encode()


@pytest.fixture
def restored_catalog(clean_stack):
    """The test changes reference data, which resetting the stack keeps: put it back."""
    yield clean_stack
    query(clean_stack, "DELETE FROM recipe WHERE product_id = %s", NEW_PRODUCT)
    query(clean_stack, "DELETE FROM product WHERE product_id = %s", NEW_PRODUCT)
    reference = Catalog.from_reference_data()
    for product_id in (REPRICED, RETIRED):
        product = reference.product(product_id)
        query(
            clean_stack,
            "UPDATE product SET unit_price = %s / 100.0, active = %s WHERE product_id = %s",
            product.unit_price_cents,
            product.active,
            product_id,
        )


def test_orders_enriched_once_bad_ones_dead_lettered_and_catalog_changes_live(restored_catalog):
    clean_stack = restored_catalog
    props = {
        **clean_stack,
        "OrderRules": {**clean_stack["OrderRules"], "catalog_refresh_seconds": "2"},
    }
    report = send_orders(props, ORDERS, bad_share=0.15, seed=11).to_dict()
    counts = report["by_kind"]
    expected_valid = counts["valid"]
    expected_bad = Counter({kind: n for kind, n in counts.items() if kind != "valid"})
    assert len(expected_bad) >= 12, "the generator must exercise every kind of bad record"

    with running_job(order_enrichment.build, props, "order_enrichment-test"):
        wait_for(
            "every order to come out",
            lambda: (len(enriched_orders(props)), sum(dead_letter_reasons(props).values())),
            lambda seen: seen[0] >= expected_valid and seen[1] >= sum(expected_bad.values()),
            timeout_s=240,
        )
        time.sleep(5)  # anything extra (a duplicate) would show up now
        enriched = enriched_orders(props)
        reasons = dead_letter_reasons(props)

        # The catalog changes while the job runs: a price, a retirement, a new product.
        query(props, "UPDATE product SET unit_price = 10.49 WHERE product_id = %s", REPRICED)
        query(props, "UPDATE product SET active = false WHERE product_id = %s", RETIRED)
        query(
            props,
            "INSERT INTO product (product_id, name, unit_price) VALUES (%s, 'Calzone', 12.00)",
            NEW_PRODUCT,
        )
        query(
            props,
            "INSERT INTO recipe (product_id, ingredient_id, quantity) VALUES (%s, 1, 200)",
            NEW_PRODUCT,
        )
        time.sleep(4)
        KinesisProducer(props).put(
            stream_name(props, "orders"),
            [order_for(p, n) for n, p in enumerate((REPRICED, RETIRED, NEW_PRODUCT))],
        )
        later = wait_for(
            "the orders after the catalog change",
            lambda: {
                o.order_id: o for _, o in enriched_orders(props) if o.order_id.startswith("S0007-C")
            },
            lambda seen: len(seen) >= 2,
            timeout_s=60,
        )
        wait_for(
            "the retired product's rejection",
            lambda: dead_letter_reasons(props)["inactive_product"],
            lambda n: n == expected_bad["inactive_product"] + 1,
            timeout_s=30,
        )
        final_statuses = statuses(props)

    assert len(enriched) == expected_valid
    assert len({order.event_id for _, order in enriched}) == expected_valid
    assert reasons == expected_bad

    catalog = Catalog.from_reference_data()
    for key, order in enriched:
        assert key == str(order.store_id)
        for line in order.lines:
            assert line.unit_price_cents == catalog.product(line.product_id).unit_price_cents

    assert {o.order_id: o.lines[0].unit_price_cents for o in later.values()} == {
        "S0007-C00000": 1049,
        "S0007-C00002": 1200,
    }

    # Each rejected order that names an order id has one final status, in Redis too.
    named = query(props, "SELECT order_id FROM dead_letter WHERE order_id IS NOT NULL")
    assert Counter(s["o"] for s in final_statuses) == Counter(o for (o,) in named)
    redis = redis_store.client(props)
    for status in final_statuses:
        assert status["status"] in ("rejected:invalid", "rejected:unknown_product")
        assert redis.get(redis_store.order_status_key(status["o"])) == status["status"]
    assert redis.hgetall(redis_store.product_key(REPRICED))["unit_price"] == "10.49"
    assert redis.hgetall(redis_store.product_key(RETIRED))["active"] == "0"
