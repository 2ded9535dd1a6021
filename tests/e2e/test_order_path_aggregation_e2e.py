"""Both order jobs on the mini-cluster against the real stack, once with the streams' records
plain and once aggregated (KPL format, ``Aggregation.enabled``): the same generated orders
(valid, bad and duplicates) give the same statuses, sales, POS orders, deliveries, facts and
dead letters. The second run's ``orders`` holds aggregated orders mixed with plain ones and
one corrupt aggregate, which becomes a dead letter with its reason; the streams the jobs
write hold fewer Kinesis records than user records."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable
from contextlib import ExitStack

import pytest

import stack
from connectors import aws, kinesis_agg
from connectors.kinesis_producer import KinesisProducer
from jobs import inventory_windowing, order_enrichment
from pizzastream.config import stream_name
from stack.generate import send_orders
from tests.pos_support import query, stream_json
from tests.support import running_job, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ORDERS = 2000
OUTPUT_STREAMS = ("order_status", "sales", "pos_orders", "deliveries")


class Generated:
    """Takes what ``send_orders`` generates instead of sending it, so both runs get the
    same bytes."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes]] = []

    def put(self, stream: str, records: Iterable[tuple[str, bytes]], on_sent=None) -> int:
        before = len(self.records)
        self.records += list(records)
        return len(self.records) - before


def mixed(records: list[tuple[str, bytes]], chunk: int = 500) -> list[tuple[str, bytes]]:
    """``records`` with each store's records of every ``chunk`` consecutive ones aggregated
    (a store with one record there stays plain): each store's order is kept."""
    out: list[tuple[str, bytes]] = []
    for start in range(0, len(records), chunk):
        by_store: dict[str, list[bytes]] = {}
        for key, data in records[start : start + chunk]:
            by_store.setdefault(key, []).append(data)
        for key, datas in by_store.items():
            out += [(key, record) for record in kinesis_agg.aggregates(key, datas, 1_000_000, 500)]
    return out


def _comparable(record: dict) -> str:
    """order_enrichment's rejections carry the time they were decided ("t" with "detail")."""
    if "detail" in record:
        record = {k: v for k, v in record.items() if k != "t"}
    return json.dumps(record, sort_keys=True)


def outputs(props) -> dict[str, Counter]:
    seen: dict[str, Counter] = {
        name: Counter(_comparable(r) for r in stream_json(props, name)) for name in OUTPUT_STREAMS
    }
    seen["order_fct"] = Counter(
        query(
            props,
            "SELECT store_id, order_id, product_id, quantity,"
            " unit_price, delivery_type, channel FROM order_fct",
        )
    )
    seen["dead_letter"] = Counter(
        query(
            props,
            "SELECT job, reason, detail, event_id, order_id, payload, store_id FROM dead_letter",
        )
    )
    return seen


def kinesis_records(props, logical_name: str) -> int:
    """Records as Kinesis holds them (an aggregate counts once)."""
    return sum(
        1
        for _ in aws.read_kinesis_records(
            aws.client(props, "kinesis"), stream_name(props, logical_name)
        )
    )


def run_both_jobs(props, records: list[tuple[str, bytes]], decided: int) -> dict[str, Counter]:
    """Both jobs over ``records`` until ``decided`` statuses are out and nothing changes over
    two more checkpoints; what they wrote."""

    def totals():
        return {name: sum(counter.values()) for name, counter in outputs(props).items()}

    with ExitStack() as jobs:
        jobs.enter_context(running_job(order_enrichment.build, props, "enrichment-agg"))
        jobs.enter_context(running_job(inventory_windowing.build, props, "inventory-agg"))
        KinesisProducer(props).put(stream_name(props, "orders"), records)
        wait_for(
            "every order decided",
            totals,
            lambda seen: seen["order_status"] >= decided,
            timeout_s=300,
        )
        before = totals()
        while True:
            time.sleep(11)  # two checkpoints
            now = totals()
            if now == before:
                return outputs(props)
            before = now


def test_aggregated_streams_give_what_plain_ones_give(clean_stack):
    generated = Generated()
    report = send_orders(
        clean_stack, ORDERS, bad_share=0.1, duplicate_share=0.05, seed=23, producer=generated
    ).to_dict()
    # each valid order gets one status from inventory_windowing; bad ones may get one more
    decided = report["by_kind"]["valid"]
    plain = {**clean_stack, "Aggregation": {**clean_stack["Aggregation"], "enabled": "false"}}
    aggregated = {**clean_stack, "Aggregation": {**clean_stack["Aggregation"], "enabled": "true"}}

    expected = run_both_jobs(plain, generated.records, decided)
    assert kinesis_records(plain, "orders_enriched") == sum(
        1
        for _ in aws.read_stream(
            aws.client(plain, "kinesis"), stream_name(plain, "orders_enriched")
        )
    )

    stack.reset_data(clean_stack)
    orders = mixed(generated.records)
    aggregates = sum(1 for _, data in orders if data.startswith(kinesis_agg.MAGIC))
    assert 0 < aggregates < len(orders) < len(generated.records)
    valid = generated.records[0]
    corrupt = kinesis_agg.encode(valid[0], [valid[1]])
    corrupt = corrupt[:-1] + bytes([corrupt[-1] ^ 0xFF])  # its MD5 no longer matches
    seen = run_both_jobs(aggregated, orders + [(valid[0], corrupt)], decided)

    letters = seen.pop("dead_letter") - expected.pop("dead_letter")
    assert seen == expected
    [(job, reason, detail, _, _, _, _)] = list(letters.elements())
    assert (job, reason) == ("order_enrichment", "not_utf8")
    assert "KPL aggregated record" in detail

    for name in ("orders_enriched", *OUTPUT_STREAMS):
        users = sum(
            1
            for _ in aws.read_stream(
                aws.client(aggregated, "kinesis"), stream_name(aggregated, name)
            )
        )
        assert kinesis_records(aggregated, name) < users, name
