"""The in-memory runner of the order path (``jobs.testing``) against the rules applied one
record at a time (the references of tests/pizzastream/test_order_batches.py): whatever the
batch size, delay, store shards and checkpoints, its statuses, sales, facts, supplier
orders and their rows, alerts, dead letters, final stock levels and saved state are what
the rules decide store by store in arrival order, repeats dropped; and its emulations of
the JVM helpers read records as their Java classes do (the cases of their JUnit tests).
tests/e2e/test_order_path_parallel_e2e.py holds it to the mini-cluster."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs.testing import (
    DEFAULT_PATH,
    Checkpoint,
    JobState,
    SourceRecord,
    TestingSink,
    TestingSource,
    dedup_key,
    delimited_row,
    order_batches,
    run_inventory_windowing,
    run_order_enrichment,
    run_order_path,
    store_shard,
)
from pizzastream.batches import frame_raw_records, result_lines
from pizzastream.order_batches import (
    ALERT,
    ENRICHMENT_JOB,
    ENRICHMENT_ROUTES,
    INVENTORY_JOB,
    ORDER,
    RESTOCK,
    ROW_LAYOUTS,
    STOCK_LEVEL,
    enrich_batch,
    repeat_letter,
    store_from_bytes,
)
from pizzastream.orders import EnrichedOrder, OrderLine, enrich
from pizzastream.settings import InventorySettings, OrderPathSettings
from pizzastream.ticks import tick_records
from tests.order_batches_support import (
    ACTIVE,
    CATALOG,
    HISTORY,
    POLICIES,
    RULES,
    T0,
    expected_levels,
    one_by_one,
    opening,
    price,
    sales_history,
    traffic,
)

INVENTORY = InventorySettings(HISTORY)
TTL_MS = INVENTORY.dedup_ttl_ms


def run(records, path=DEFAULT_PATH, state=None, arrivals=None, checkpoints=()):
    """``(kind, key, data)`` records through ``run_inventory_windowing``, arriving at
    ``arrivals`` (all at 0 if None), a barrier before each index in ``checkpoints``."""
    items: list = []
    for n, (kind, key, data) in enumerate(records):
        if n in checkpoints:
            items.append(Checkpoint())
        items.append(SourceRecord(key, data, kind, arrivals[n] if arrivals else 0))
    return run_inventory_windowing(
        TestingSource(items),
        CATALOG,
        POLICIES,
        opening,
        sales_history,
        path=path,
        inventory=INVENTORY,
        state=state,
    )


def first_sightings(records):
    """The records the batcher lets through (the first of each event id) and the repeats,
    as their dead letters."""
    counts: dict[str, int] = {}
    passed, repeats = [], []
    for kind, key, data in records:
        id_key = dedup_key(kind, data)
        counts[id_key] = counts.get(id_key, 0) + 1
        if counts[id_key] == 1:
            passed.append((kind, key, data))
        else:
            repeats.append(repeat_letter(key, kind, data, counts[id_key] - 1))
    return passed, repeats


def by_store(decisions, state: JobState) -> dict:
    """The run's outputs in ``one_by_one``'s terms, each tag's records grouped by store in
    the order they left (a store's are in order; stores of different shards interleave
    as batches close)."""
    out: defaultdict = defaultdict(lambda: defaultdict(list))

    def add(tag, store, value):
        out[tag][store].append(value)

    for record in decisions.statuses:
        add("S", json.loads(record.payload)["s"], record.payload)
    for command in decisions.status_commands:
        assert (command.command, command.field) == ("SET", "")
        order_id = command.key.removeprefix("order:")
        add("C", int(order_id[1:].split("-")[0]), (order_id, command.value))
    for tag, records in (
        ("A", decisions.sales),
        ("P", decisions.pos_orders),
        ("D", decisions.deliveries),
    ):
        for record in records:
            add(tag, json.loads(record.payload)["s"], record.payload)
    for record in decisions.supplier_orders:
        add("R", json.loads(record.payload)["store_id"], record.payload)
    for row in decisions.facts:
        add("F", row.store_id, tuple(row))
    for row in decisions.supplier_order_rows:
        add("Q", row.store_id, tuple(row))
    for row in decisions.alerts:
        add("W", row.store_id, tuple(row))
    stock = {}
    for stores in state.stores.values():
        for store_id, data in stores.items():
            saved, planner = store_from_bytes(data)
            assert planner is not None
            stock[store_id] = (saved.to_state(), planner.to_state())
    levels = {(row.store_id, row.ingredient_id): row.on_hand for row in decisions.levels}
    return {**out, "stock": stock, "levels": levels}


def expected_by_store(reference: dict) -> dict:
    out: defaultdict = defaultdict(lambda: defaultdict(list))
    for payload in reference["S"]:
        out["S"][json.loads(payload)["s"]].append(payload)
    for order_id, status in reference["C"]:
        out["C"][int(order_id[1:].split("-")[0])].append((order_id, status))
    for tag in ("A", "P", "D"):
        for payload in reference[tag]:
            out[tag][json.loads(payload)["s"]].append(payload)
    for payload in reference["R"]:
        out["R"][json.loads(payload)["store_id"]].append(payload)
    for row in reference["F"]:
        out["F"][row[0]].append(row)
    for row in reference["Q"]:
        out["Q"][row[1]].append(row)
    for line in reference["W"]:
        row = delimited_row(line, ROW_LAYOUTS[ALERT])
        out["W"][row[2]].append(row)
    return {**out, "stock": reference["stock"], "levels": expected_levels(reference)}


def assert_same(got: dict, expected: dict) -> None:
    for tag in ("S", "C", "A", "P", "D", "R", "F", "Q", "W"):
        assert dict(got.get(tag, {})) == dict(expected.get(tag, {})), tag
    assert got["stock"] == expected["stock"]
    assert got["levels"] == expected["levels"]


def letter_reasons(letters) -> list[str]:
    return sorted(letter.reason for letter in letters)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), data=st.data())
def test_the_runner_decides_what_the_rules_decide_store_by_store(seed, data):
    records = traffic(seed, 150)
    path = OrderPathSettings(
        batch_max_records=data.draw(st.integers(1, 60)),
        batch_max_delay_ms=data.draw(st.integers(1, 500)),
        store_shards=data.draw(st.sampled_from([1, 5, 32])),  # 5: each store a shard
    )
    gaps = data.draw(st.lists(st.integers(0, 200), min_size=len(records), max_size=len(records)))
    arrivals = [sum(gaps[: n + 1]) for n in range(len(records))]
    checkpoints = data.draw(st.sets(st.integers(0, len(records) - 1), max_size=6))
    state = JobState()
    decisions = run(records, path, state, arrivals, checkpoints)
    passed, repeats = first_sightings(records)
    reference = one_by_one(passed)
    assert_same(by_store(decisions, state), expected_by_store(reference))
    assert letter_reasons(decisions.dead_letters) == sorted(
        reference["letters"] + [letter.reason for letter in repeats]
    )
    assert {letter.job for letter in decisions.dead_letters} <= {INVENTORY_JOB}


def test_in_one_shard_the_outputs_are_the_rules_in_arrival_order():
    """Stores 3, 35 and 67 share a shard of 32: the runner keeps their records' order
    across stores too, as the one batcher of that shard does."""
    records, _ = first_sightings(traffic(3, 300))
    decisions = run(records, OrderPathSettings(batch_max_records=17))
    reference = one_by_one(records)
    assert [r.payload for r in decisions.statuses] == reference["S"]
    assert [tuple(row) for row in decisions.facts] == reference["F"]
    assert [r.payload for r in decisions.supplier_orders] == reference["R"]
    # a record keyed "x" (no store) goes to the shard of its hash: its letter leaves apart
    assert letter_reasons(decisions.dead_letters) == sorted(reference["letters"])


def order(store_id: int, n: int) -> EnrichedOrder:
    product = ACTIVE[n % len(ACTIVE)]
    return EnrichedOrder(
        f"e{store_id}-{n}",
        f"S{store_id}-{n}",
        store_id,
        "online",
        "pickup",
        T0 + n,
        None,
        None,
        (OrderLine(product, 1, price(product)),),
    )


RESTOCK_5 = {
    "event_id": "R-5",
    "store_id": 5,
    "ingredient_id": sorted(POLICIES)[0],
    "quantity": 10,
    "ts": "2026-11-24T18:00:00Z",
    "supplier_order_id": None,
}


def test_repeats_within_the_ttl_are_dead_letters_of_their_own_and_decided_once():
    first, second = order(3, 1), order(35, 2)
    restock = {**RESTOCK_5, "event_id": "R-1", "store_id": 3}
    ((tick_key, tick),) = tick_records([35], T0)
    source = (
        TestingSource.enriched_orders([first, second, first])
        + TestingSource.restocks([restock, restock])
        + TestingSource([SourceRecord(tick_key, tick, RESTOCK)] * 2)
        + TestingSource.enriched_orders([first], arrival_ms=TTL_MS - 1)
        + TestingSource.enriched_orders([first], arrival_ms=2 * TTL_MS)  # forgotten by then
    )
    letters = TestingSink("dead_letters")
    decisions = run_inventory_windowing(
        source, CATALOG, POLICIES, opening, inventory=INVENTORY, sinks=[letters]
    )
    data = first.to_json().encode()
    assert letters.records == decisions.dead_letters
    assert [(d.reason, d.order_id, d.event_id, d.store_id) for d in letters.records] == [
        ("duplicate_order", first.order_id, first.event_id, 3),
        ("duplicate_restock", None, "R-1", 3),
        ("duplicate_tick", None, f"TICK-35-{T0 // 3_600_000}", 35),
        ("duplicate_order", first.order_id, first.event_id, 3),
    ]
    assert letters.records[0] == repeat_letter("3", ORDER, data, 1)
    assert letters.records[3] == repeat_letter("3", ORDER, data, 2)  # counted on
    # decided once within the TTL, once more after it
    assert [json.loads(r.payload)["o"] for r in decisions.statuses] == [
        first.order_id,
        second.order_id,
        first.order_id,
    ]


def test_a_malformed_record_is_a_dead_letter_and_every_other_store_goes_on():
    good = [order(3, 1), order(36, 2), order(67, 3)]
    malformed = [
        SourceRecord("3", b"{"),
        SourceRecord("36", b'{"o":"S36-9","e":"e9","s":36}'),
        *(
            SourceRecord("abc", r.data, RESTOCK)
            for r in TestingSource.restocks([{**RESTOCK_5, "event_id": "R-x"}]).items
            if isinstance(r, SourceRecord)
        ),
        SourceRecord("5", b"\xff", "z"),
    ]
    source = TestingSource(
        [malformed[0], malformed[1]]
        + TestingSource.enriched_orders(good[:2]).items
        + [malformed[2], malformed[3]]
        + TestingSource.enriched_orders(good[2:]).items
    )
    decisions = run_inventory_windowing(source, CATALOG, POLICIES, opening, inventory=INVENTORY)
    # store 36 has a shard of its own (3 and 67 share one): the shards' batches interleave
    assert sorted(json.loads(r.payload)["o"] for r in decisions.statuses) == sorted(
        o.order_id for o in good
    )
    assert sorted((d.reason, d.store_id, d.job) for d in decisions.dead_letters) == [
        ("malformed_enriched_order", 3, INVENTORY_JOB),
        ("malformed_enriched_order", 36, INVENTORY_JOB),
        ("partition_key_mismatch", 5, INVENTORY_JOB),
        ("unknown_record_kind", 5, INVENTORY_JOB),
    ]
    # the stores of the good orders published their stock; the bad records opened none
    assert {row.store_id for row in decisions.levels} == {3, 36, 67}


def test_a_run_restored_from_the_state_of_another_goes_on_as_one_run():
    records = traffic(8, 200)
    replayed = [r for r in records[:100] if r[0] == ORDER][:5]
    state = JobState()
    before = run(records[:100], state=state)
    after = run(records[100:] + replayed, state=state)
    whole_state = JobState()
    whole = run(records + replayed, state=whole_state)
    for name in ("statuses", "facts", "supplier_orders", "alerts"):
        assert getattr(before, name) + getattr(after, name) == getattr(whole, name), name
    # repeats leave as they arrive, the desk's letters as their batch closes
    assert sorted(before.dead_letters + after.dead_letters, key=str) == sorted(
        whole.dead_letters, key=str
    )
    assert {d.order_id for d in after.dead_letters if d.reason == "duplicate_order"} == {
        json.loads(data)["o"] for _, _, data in replayed
    }
    assert state == whole_state


def test_the_order_path_is_enrichment_then_the_rules_store_by_store():
    from simulation.traffic import OrderTraffic

    orders = OrderTraffic(
        RULES, datetime(2026, 11, 24, tzinfo=UTC), seed=5, bad_share=0.3, catalog=CATALOG
    )
    now_ms = orders.processing_window()[0]
    raws = [record.data for record in orders.records(400)]
    enriched = [
        o
        for o in (enrich(raw, CATALOG, RULES, now_ms) for raw in raws)
        if isinstance(o, EnrichedOrder)
    ]
    # enrich_batch is enrich record by record (tests/pizzastream/test_order_batches.py):
    # the rejections and dead letters of all the records as one batch
    result, letters = enrich_batch(frame_raw_records(raws), CATALOG, RULES, now_ms)
    rejected = [
        (tag, key, payload)
        for tag, key, payload in result_lines(result.encode(), ENRICHMENT_ROUTES)
        if tag != "E"
    ]
    assert len(enriched) > 200 and len(letters) > 50

    state = JobState()
    statuses = TestingSink("statuses")
    path = run_order_path(
        TestingSource.raw_orders(raws),
        CATALOG,
        RULES,
        POLICIES,
        opening,
        sales_history,
        path=OrderPathSettings(batch_max_records=37),
        inventory=INVENTORY,
        clock=lambda: now_ms,
        state=state,
        enrichment_sinks=[statuses],
    )
    assert [(r.partition_key, r.payload) for r in path.enrichment.enriched] == [
        (str(o.store_id), o.to_json()) for o in enriched
    ]
    assert path.enrichment.dead_letters == letters
    assert [(r.partition_key, r.payload) for r in statuses.records] == [
        (key, payload) for tag, key, payload in rejected if tag == "S"
    ]
    assert [(c.key, c.value) for c in path.enrichment.status_commands] == [
        (f"order:{key}", status) for tag, key, status in rejected if tag == "C"
    ]
    reference = one_by_one([(ORDER, str(o.store_id), o.to_json().encode()) for o in enriched])
    assert_same(by_store(path.decisions, state), expected_by_store(reference))


def test_the_enrichment_runner_dead_letters_bad_records_and_enriches_the_rest():
    good = json.dumps(
        {
            "event_id": "e1",
            "order_id": "S0003-1",
            "store_id": 3,
            "channel": "online",
            "fulfillment": "pickup",
            "ts": "2026-11-24T18:00:00Z",
            "items": [{"product_id": ACTIVE[0], "quantity": 1}],
        }
    ).encode()
    out = run_order_enrichment(
        TestingSource.raw_orders([b"not json", good, b"{}"]),
        CATALOG,
        RULES,
        clock=lambda: T0,
    )
    assert [r.partition_key for r in out.enriched] == ["3"]
    assert [d.payload for d in out.dead_letters] == ["not json", "{}"]
    assert out.dead_letters[0].reason == "malformed_json"
    assert {d.job for d in out.dead_letters} == {ENRICHMENT_JOB}


# ----------------------------------------------------------- the JVM helpers, emulated


def test_store_shards_are_store_key_shards():
    """StoreShardKeyTest's cases; a key that names no store goes by Java's hashCode."""
    assert store_shard("7", 16) == 7 and store_shard("1991", 16) == 1991 % 16
    assert store_shard("0", 16) == 0 and store_shard("007", 16) == 7
    assert store_shard("abc", 32) == 96354 % 32  # "abc".hashCode()
    assert store_shard("polygenelubricants", 16) == 0  # hashCode() == Integer.MIN_VALUE
    assert store_shard("null", 16) == 3392903 % 16
    assert store_shard("1234567890", 16) == store_shard("1234567890", 16) != 1234567890 % 16


def test_event_ids_are_read_as_dedup_key_reads_them():
    """DedupKeyTest's cases."""
    assert dedup_key("o", b'{"o":"A1","items":[1,2]}') == "o:A1"
    assert dedup_key("r", b'{"store_id":7,"event_id":"E9"}') == "r:E9"
    nested = b'{"meta":{"o":"inner"},"list":[{"o":"x"}],"o":"outer"}'
    assert dedup_key("o", nested) == "o:outer"
    assert dedup_key("o", b'{"o":"A1","rest": [unterminated') == "o:A1"
    assert dedup_key("o", b'{"o":"first","o":"second"}') == "o:first"
    for no_id in (
        b'{"o":5}',
        b'{"other":"A1"}',
        b"not json",
        b'["o"]',
        b'{"o":',
        b"",
        b'{"o":null}',
    ):
        assert dedup_key("o", no_id).startswith("o#"), no_id
        assert dedup_key("o", no_id) == dedup_key("o", no_id)
    assert dedup_key("o", b"not json") != dedup_key("o", b"not json!")
    assert dedup_key("x", b'{"o":"A1"}').startswith("x#")


def test_delimited_rows_are_parsed_as_the_jvm_parses_them():
    layout = ROW_LAYOUTS[STOCK_LEVEL]
    assert delimited_row("3\t7\t-12", layout) == (3, 7, -12)
    for bad in ("3\t7", "3\t7\t1\t2", "x\t7\t1", "2147483648\t7\t1", "3\t7\t9223372036854775808"):
        with pytest.raises(ValueError):
            delimited_row(bad, layout)


def test_order_batches_close_at_size_delay_checkpoint_and_end():
    items = [
        SourceRecord("", b"a", arrival_ms=0),
        SourceRecord("", b"b", arrival_ms=5),
        SourceRecord("", b"c", arrival_ms=10),  # the timer (0 + 10) fires first
        Checkpoint(),
        SourceRecord("", b"d", arrival_ms=11),
        SourceRecord("", b"e", arrival_ms=12),
        SourceRecord("", b"f", arrival_ms=13),
        SourceRecord("", b"g", arrival_ms=14),
    ]
    assert list(order_batches(items, 3, 10)) == [
        (10, [b"a", b"b"]),
        (10, [b"c"]),
        (13, [b"d", b"e", b"f"]),
        (14, [b"g"]),
    ]


def test_a_source_refuses_time_going_back_and_a_sink_an_unknown_output():
    with pytest.raises(ValueError, match="arrival"):
        TestingSource([SourceRecord("3", b"", arrival_ms=5), SourceRecord("3", b"")])
    with pytest.raises(ValueError, match="no output"):
        run_order_enrichment(TestingSource([]), CATALOG, RULES, sinks=[TestingSink("sales")])


def test_the_runner_needs_no_flink():
    code = "import sys, jobs.testing; assert 'pyflink' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_result_line_of_no_output_of_the_job_fails_the_run():
    """As ``BatchOutputs`` fails the job: a tag the job does not fan out is a bug."""
    from jobs import testing

    into: dict = {name: [] for name in testing.ENRICHMENT_OUTPUTS.values()}
    with pytest.raises(ValueError, match="unknown tag"):
        testing._fan_out("F3\tx\n", testing.ENRICHMENT_OUTPUTS, into, ENRICHMENT_ROUTES)
    with pytest.raises(ValueError, match="cut short"):
        testing._fan_out("E3\tx", testing.ENRICHMENT_OUTPUTS, into, ENRICHMENT_ROUTES)
    assert list(result_lines(b"E3\tx\n")) == [("E", "3", "x")]
