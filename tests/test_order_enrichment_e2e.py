"""order_enrichment on the mini-cluster, through the real edges: the Kinesis connector
against the Kinesis emulator, the JDBC sink against PostgreSQL. Counts must be exact."""
from __future__ import annotations

import time
from collections import Counter

import pytest

from connectors import aurora, aws
from jobs import order_enrichment
from pizzastream.catalog import Catalog
from pizzastream.config import stream_name
from pizzastream.orders import EnrichedOrder
from stack.generate import send_orders
from tests.support import running_job, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ORDERS = 1200


def enriched_orders(props) -> list[tuple[str, EnrichedOrder]]:
    kinesis = aws.client(props, "kinesis")
    return [
        (key, EnrichedOrder.from_json(data))
        for key, data in aws.read_stream(kinesis, stream_name(props, "orders_enriched"))
    ]


def dead_letter_reasons(props) -> Counter:
    with aurora.connect(props) as conn:
        return Counter(dict(conn.execute(
            "SELECT reason, count(*) FROM dead_letter WHERE job = 'order_enrichment' GROUP BY reason"
        ).fetchall()))


def test_every_valid_order_enriched_once_and_every_bad_one_dead_lettered(clean_stack):
    props = clean_stack
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

    assert len(enriched) == expected_valid
    assert len({order.event_id for _, order in enriched}) == expected_valid
    assert reasons == expected_bad

    catalog = Catalog.from_reference_data()
    for key, order in enriched:
        assert key == str(order.store_id)
        for line in order.lines:
            assert line.unit_price_cents == catalog.product(line.product_id).unit_price_cents
