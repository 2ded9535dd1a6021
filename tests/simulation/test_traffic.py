"""The traffic generator against the order rules, and the batching Kinesis producer.

The key test: every record the generator labels is treated by ``enrich`` exactly as
labelled, so the generator's report is a trustworthy expectation for end-to-end tests.
No test here needs a Kinesis server; the producer runs against a scripted client.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from connectors.kinesis_producer import (
    MAX_BATCH_BYTES,
    MAX_BATCH_RECORDS,
    KinesisProducer,
    KinesisPutError,
    batches,
)
from pizzastream import reference_data
from pizzastream.catalog import Catalog
from pizzastream.orders import EnrichedOrder, OrderRules, Reason, Rejection, enrich, epoch_ms
from simulation.traffic import (
    DELIVERY_RADIUS_KM,
    DUPLICATE,
    EVENT_TIME_JITTER_MS,
    VALID,
    OrderTraffic,
    TrafficRecord,
)
from stack.generate import format_report, send_orders

RULES = OrderRules(
    max_quantity=20, max_lines=25, max_record_bytes=8192, max_future_seconds=300, max_age_hours=48
)
DAY_START = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
CATALOG = Catalog.from_reference_data()
STORES = {store.store_id: store for store in reference_data.stores()}


def generate(n: int, **options) -> tuple[OrderTraffic, list[TrafficRecord]]:
    traffic = OrderTraffic(RULES, DAY_START, **options)
    return traffic, list(traffic.records(n))


@pytest.fixture(scope="module")
def mixed():
    """A day with plenty of every kind: a quarter bad, some duplicates."""
    return generate(6000, seed=3, bad_share=0.25, duplicate_share=0.05)


@pytest.fixture(scope="module")
def clean_day():
    return generate(20_000, seed=5, bad_share=0.0)


def test_same_seed_same_bytes_other_seed_other_bytes():
    assert generate(500, seed=1)[1] == generate(500, seed=1)[1]
    assert generate(500, seed=1)[1] != generate(500, seed=2)[1]


def test_every_record_is_treated_by_enrich_exactly_as_labelled(mixed):
    traffic, records = mixed
    for now_ms in traffic.processing_window():
        outcomes = Counter()
        for record in records:
            result = enrich(record.data, CATALOG, RULES, now_ms)
            if record.kind in (VALID, DUPLICATE):
                assert isinstance(result, EnrichedOrder), (record, result)
                assert record.partition_key == str(result.store_id)
            else:
                assert isinstance(result, Rejection) and result.reason == record.kind, (
                    record,
                    result,
                )
            outcomes[record.kind] += 1
        assert outcomes == traffic.report.by_kind


def test_every_rejection_reason_is_produced(mixed):
    assert set(mixed[0].report.by_kind) == {VALID, DUPLICATE, *Reason}


def test_bad_records_are_distinct_bytes_and_ids_are_unique(mixed):
    _, records = mixed
    bad = [r.data for r in records if r.kind not in (VALID, DUPLICATE)]
    assert len(set(bad)) == len(bad)
    valid = [json.loads(r.data) for r in records if r.kind == VALID]
    assert len({order["event_id"] for order in valid}) == len(valid)
    assert len({order["order_id"] for order in valid}) == len(valid)


def test_duplicates_replay_an_earlier_valid_event_verbatim(mixed):
    _, records = mixed
    seen_valid: set[bytes] = set()
    for record in records:
        if record.kind == DUPLICATE:
            assert record.data in seen_valid
        elif record.kind == VALID:
            seen_valid.add(record.data)


def test_report_adds_up(mixed):
    traffic, records = mixed
    report = traffic.report
    assert report.records == len(records) == sum(report.to_dict()["by_kind"].values())
    valid_count = report.by_kind[VALID]
    assert sum(report.valid_by_channel.values()) == valid_count
    assert sum(report.valid_by_fulfillment.values()) == valid_count
    enriched = [
        enrich(r.data, CATALOG, RULES, traffic.processing_window()[0])
        for r in records
        if r.kind == VALID
    ]
    assert report.line_items == sum(len(order.lines) for order in enriched)
    assert report.units == sum(line.quantity for order in enriched for line in order.lines)
    assert report.revenue_cents == sum(order.total_cents for order in enriched)
    assert json.loads(json.dumps(report.to_dict())) == report.to_dict()
    assert f"{report.records}" in format_report(report)


def test_eighty_twenty_splits(clean_day):
    traffic, records = clean_day
    orders = [json.loads(r.data) for r in records]
    busy_share = sum(STORES[o["store_id"]].busy for o in orders) / len(orders)
    online_share = traffic.report.valid_by_channel["online"] / len(orders)
    assert busy_share == pytest.approx(0.8, abs=0.015)
    assert online_share == pytest.approx(0.8, abs=0.015)


def test_order_shape_is_realistic(clean_day):
    _, records = clean_day
    orders = [json.loads(r.data) for r in records]
    assert not any(o["channel"] == "in_store" and o["fulfillment"] == "delivery" for o in orders)
    assert {len(o["items"]) for o in orders} == {1, 2, 3, 4}
    assert {item["quantity"] for o in orders for item in o["items"]} == {1, 2, 3}
    units_per_order = sum(i["quantity"] for o in orders for i in o["items"]) / len(orders)
    assert units_per_order == pytest.approx(reference_data.ASSUMED_ITEMS_PER_ORDER, rel=0.1)
    for order in orders:
        if order["fulfillment"] == "delivery":
            store = STORES[order["store_id"]]
            assert km_between(store, order["customer"]) <= DELIVERY_RADIUS_KM + 0.01


def test_event_times_fill_the_business_day_in_rough_order(clean_day):
    traffic, records = clean_day
    times = [enrich(r.data, CATALOG, RULES, traffic.processing_window()[0]).ts_ms for r in records]
    assert epoch_ms(DAY_START) <= min(times) and max(times) <= traffic.day_end_ms
    assert max(times) - min(times) > 0.99 * (traffic.day_end_ms - epoch_ms(DAY_START))
    latest = 0
    for ts_ms in times:
        assert ts_ms > latest - 2 * EVENT_TIME_JITTER_MS
        latest = max(latest, ts_ms)


def test_shares_must_make_sense():
    with pytest.raises(ValueError):
        OrderTraffic(RULES, DAY_START, bad_share=0.7, duplicate_share=0.4)
    with pytest.raises(ValueError):
        OrderTraffic(RULES, DAY_START, bad_share=-0.1)


def km_between(store, point: dict) -> float:
    dlat = (point["lat"] - store.lat) * 111.32
    dlon = (point["lon"] - store.lon) * 111.32 * math.cos(math.radians(store.lat))
    return math.hypot(dlat, dlon)


# --- the producer, against a scripted client ---------------------------------------------


class ScriptedKinesis:
    """Records every PutRecords call; fails the records whose data is in ``failures``
    as many times as counted there."""

    def __init__(self, failures: dict[bytes, int] | None = None):
        self.failures = Counter(failures or {})
        self.calls: list[list[dict]] = []
        self.stored: list[tuple[str, bytes]] = []

    def put_records(self, StreamName, Records):  # noqa: N803 - boto3's parameter names
        self.calls.append(Records)
        results = []
        for entry in Records:
            if self.failures[entry["Data"]] > 0:
                self.failures[entry["Data"]] -= 1
                results.append(
                    {
                        "ErrorCode": "ProvisionedThroughputExceededException",
                        "ErrorMessage": "slow down",
                    }
                )
            else:
                self.stored.append((entry["PartitionKey"], entry["Data"]))
                results.append({"SequenceNumber": "1", "ShardId": "shardId-000000000000"})
        return {"FailedRecordCount": sum("ErrorCode" in r for r in results), "Records": results}


def producer(client: ScriptedKinesis, delays: list[float] | None = None, **options):
    sleep = delays.append if delays is not None else (lambda _: None)
    return KinesisProducer({}, client=client, sleep=sleep, **options)


def test_batches_respect_count_and_size_limits():
    small = [("1", b"x")] * 1201
    assert [len(b) for b in batches(small)] == [MAX_BATCH_RECORDS, MAX_BATCH_RECORDS, 201]
    big = [("1", b"x" * (1024 * 1024 - 1))] * 12
    sizes = [sum(len(k) + len(d) for k, d in batch) for batch in batches(big)]
    assert all(size <= MAX_BATCH_BYTES for size in sizes) and sum(map(len, batches(big))) == 12
    with pytest.raises(ValueError):
        list(batches([("1", b"x" * 1024 * 1024)]))


def test_only_failed_records_are_resent_with_growing_delays():
    client = ScriptedKinesis({b"b": 2, b"d": 1})
    delays: list[float] = []
    records = [(str(i), data) for i, data in enumerate([b"a", b"b", b"c", b"d"])]
    assert producer(client, delays).put("orders", records) == 4
    assert [[e["Data"] for e in call] for call in client.calls] == [
        [b"a", b"b", b"c", b"d"],
        [b"b", b"d"],
        [b"b"],
    ]
    assert sorted(client.stored) == sorted(records)
    assert delays == [0.1, 0.2]


def test_a_record_that_keeps_failing_raises_after_the_last_attempt():
    client = ScriptedKinesis({b"b": 100})
    delays: list[float] = []
    with pytest.raises(KinesisPutError, match="ProvisionedThroughputExceeded"):
        producer(client, delays, max_attempts=4).put("orders", [("1", b"a"), ("2", b"b")])
    assert len(client.calls) == 4 and delays == [0.1, 0.2, 0.4]


def test_send_orders_puts_every_generated_record_on_the_orders_stream(props):
    client = ScriptedKinesis()
    sent = []
    day_start = datetime.now(UTC) - timedelta(hours=8)
    report = send_orders(
        props,
        1200,
        seed=11,
        bad_share=0.15,
        day_start=day_start,
        producer=producer(client),
        on_sent=sent.append,
    )
    assert len(client.stored) == report.records == 1200 == sum(sent)
    expected = [
        (r.partition_key, r.data)
        for r in OrderTraffic(RULES, day_start, seed=11, bad_share=0.15).records(1200)
    ]
    assert client.stored == expected


def test_send_orders_warns_when_the_day_is_not_processable_now(props):
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    with pytest.warns(UserWarning, match="future or stale"):
        send_orders(props, 10, day_start=tomorrow, producer=producer(ScriptedKinesis()))
