"""The order path decided a batch at a time (``pizzastream.order_batches``) against the
rules applied one record at a time, in order (``pizzastream.orders``,
``pizzastream.inventory.take`` and ``pizzastream.replenishment.StoreReplenishment`` store by
store, ticks included): whatever the batch boundaries, persist points and restarts from a
persisted state, every status, sale, fact, delivery, supplier order and its rows, alert,
dead letter, final stock level and plan must be the same."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pizzastream.batches import (
    frame_raw_records,
    frame_store_records,
    raw_records,
    result_lines,
    store_records,
)
from pizzastream.dead_letters import dead_letter
from pizzastream.inventory import (
    StoreStock,
)
from pizzastream.order_batches import (
    DECISION_ROUTES,
    ENRICHMENT_ROUTES,
    INVENTORY_JOB,
    ORDER,
    RESTOCK,
    ShardDesk,
    enrich_batch,
    record_ids,
    rejection_lines,
    repeat_letter,
    store_from_bytes,
)
from pizzastream.orders import (
    EnrichedOrder,
    OrderLine,
    enrich,
    format_event_time,
    is_id,
)
from pizzastream.replenishment import (
    HOUR_MS,
    HistoryWindow,
    StoreReplenishment,
    hourly_demand,
)
from pizzastream.ticks import tick_event_id
from tests.fuzzing import json_values, profile_examples, storable
from tests.order_batches_support import (
    ACTIVE,
    CATALOG,
    HISTORY,
    INGREDIENTS,
    PAST_SALES,
    POLICIES,
    RULES,
    STORES,
    T0,
    assert_same,
    batched,
    expected_levels,
    new_desk,
    one_by_one,
    opening,
    price,
    sales_history,
    seeded_plan,
    traffic,
)


def test_frames_read_back_exactly():
    records = [b"", b"\x00\n\t{", "ünïcode".encode(), bytes(range(256))]
    assert list(raw_records(frame_raw_records(records))) == records
    tagged = [("o", "42", b"{}"), ("r", "abc", b"\n\x00"), ("o", "", b"")]
    persist, read = store_records(frame_store_records(tagged, persist=True))
    assert persist and list(read) == tagged
    assert store_records(frame_store_records(tagged))[0] is False


def test_a_routed_line_stands_for_each_output_record_it_carries():
    """A status line carries its Redis status ahead of the record; a delivered sale is one
    line for both its outputs (``BatchOutputs`` reads them the same way)."""
    result = (
        b'S3\tS3-1\taccepted\t{"o":"S3-1","detail":"a\\tb"}\n'
        b"a3\tsale\tx\np4\tpos\nA5\tonline\nF3\t1\t2\n"
    )
    assert list(result_lines(result, DECISION_ROUTES)) == [
        ("C", "S3-1", "accepted"),
        ("S", "3", '{"o":"S3-1","detail":"a\\tb"}'),
        ("A", "3", "sale\tx"),
        ("D", "3", "sale\tx"),
        ("P", "4", "pos"),
        ("D", "4", "pos"),
        ("A", "5", "online"),
        ("F", "3", "1\t2"),
    ]
    # read without routes, each line is one record of its own tag
    assert [tag for tag, _, _ in result_lines(result)] == ["S", "a", "p", "A", "F"]


def test_each_decided_order_is_one_line_with_its_cache_entry_and_delivery():
    records = traffic(3, 300)
    result, _, _ = new_desk().decide("shard", frame_store_records(records, True), lambda s: None)
    tags = [line[0] for line in result.split("\n")[:-1]]
    assert "C" not in tags and "D" not in tags
    assert tags.count("a") + tags.count("p") > 5
    routed = [tag for tag, _, _ in result_lines(result.encode(), DECISION_ROUTES)]
    assert routed.count("C") == routed.count("S") == tags.count("S") > 100
    assert routed.count("D") == tags.count("a") + tags.count("p")


def test_an_enrichment_batch_is_its_records_enriched_one_by_one():

    from simulation.traffic import OrderTraffic

    traffic = OrderTraffic(
        RULES, datetime(2026, 11, 24, tzinfo=UTC), seed=5, bad_share=0.3, catalog=CATALOG
    )
    now_ms = traffic.processing_window()[0]
    raws = [record.data for record in traffic.records(600)]
    expected_lines, expected_letters = [], []
    for raw in raws:
        result = enrich(raw, CATALOG, RULES, now_ms)
        if isinstance(result, EnrichedOrder):
            expected_lines.append(("E", str(result.store_id), result.to_json()))
        else:
            expected_letters.append(
                dead_letter(
                    "order_enrichment",
                    raw,
                    result.reason,
                    result.detail,
                    result.event_id,
                    result.order_id,
                    store_id=result.store_id,
                )
            )
            expected_lines += result_lines(
                "".join(rejection_lines(result, now_ms)).encode(), ENRICHMENT_ROUTES
            )
    lines, letters = [], []
    for start in range(0, len(raws), 97):
        result, batch_letters = enrich_batch(
            frame_raw_records(raws[start : start + 97]), CATALOG, RULES, now_ms
        )
        lines += result_lines(result.encode(), ENRICHMENT_ROUTES)
        letters += batch_letters
    assert lines == expected_lines
    assert letters == expected_letters


def test_the_traffic_exercises_every_rule():
    records = traffic(1, 400)
    reference = one_by_one(records)
    statuses = [json.loads(s)["status"] for s in reference["S"]]
    assert statuses.count("accepted") > 40
    assert statuses.count("rejected:insufficient_inventory") > 20
    assert len(reference["R"]) > 5 and reference["P"] and reference["D"]
    assert any(len(json.loads(r)["lines"]) > 1 for r in reference["R"])
    assert len(reference["Q"]) > len(reference["R"])
    assert any("expected_stockout" in w for w in reference["W"])
    assert {
        "partition_key_mismatch",
        "unknown_ingredient",
        "invalid_quantity",
        "invalid_tick",
    } <= set(reference["letters"])
    ticks = [r for r in records if b'"tick"' in r[2]]
    assert len(ticks) > 10
    # a restock closes the line it answers: some order lines were received
    closed = {
        (json.loads(d)["supplier_order_id"], json.loads(d)["ingredient_id"])
        for k, _, d in records
        if k == RESTOCK and b"PO-" in d
    }
    issued = {(row[0], row[2]) for row in reference["Q"]}
    assert closed & issued
    # store 35 was seeded from its past sales, the others start from nothing
    plans = {
        store: StoreReplenishment.from_state(plan)
        for store, (_, plan) in reference["stock"].items()
    }
    assert plans[35].level and plans[35].forecast(1, T0 // HOUR_MS - 5) > 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), data=st.data())
def test_batches_decide_exactly_what_the_rules_decide_one_by_one(seed, data):
    records = traffic(seed, 150)
    cuts = sorted(data.draw(st.sets(st.integers(1, len(records) - 1), max_size=40)))
    persists = set(data.draw(st.lists(st.sampled_from(cuts), max_size=8))) if cuts else set()
    restart_at = data.draw(st.none() | st.integers(1, len(cuts) + 1))
    assert_same(batched(records, cuts, persists, restart_at), one_by_one(records))


def test_a_broken_desk_is_caught():
    """The comparison can fail: a desk that forgets a store's stock at every persist (as if
    it never wrote it to state) decides differently after a restart."""
    records = traffic(2, 200)
    cuts, persists = [50, 100, 150], {100}
    original = ShardDesk._persist

    def forgetful(self, changed, out):
        original(self, changed, out)
        return []

    try:
        ShardDesk._persist = forgetful
        broken = batched(records, cuts, persists, restart_at=3)
    finally:
        ShardDesk._persist = original
    try:
        assert_same(broken, one_by_one(records))
    except AssertionError:
        return
    raise AssertionError("the comparison did not notice lost state")


def test_a_malformed_enriched_record_is_dead_lettered_and_changes_nothing():
    good = EnrichedOrder(
        "e1",
        "S3-1",
        3,
        "online",
        "pickup",
        T0,
        None,
        None,
        (OrderLine(ACTIVE[0], 1, price(ACTIVE[0])),),
    )
    bad = [
        b"{",
        b'{"o":"x"}',
        json.dumps({**json.loads(good.to_json()), "o": "a\nb"}).encode(),
        json.dumps({**json.loads(good.to_json()), "l": [[ACTIVE[0], -1, 5]]}).encode(),
        json.dumps({**json.loads(good.to_json()), "s": 4}).encode(),
    ]
    desk = new_desk()
    records = [(ORDER, "3", data) for data in bad] + [(ORDER, "3", good.to_json().encode())]
    result, letters, _saved = desk.decide(
        "shard", frame_store_records(records, True), lambda store: None
    )
    assert [letter.reason for letter in letters] == ["malformed_enriched_order"] * len(bad)
    assert {letter.job for letter in letters} == {INVENTORY_JOB}
    assert [
        json.loads(p)["o"] for t, _, p in result_lines(result.encode(), DECISION_ROUTES) if t == "S"
    ] == ["S3-1"]


def test_a_new_epoch_reads_stock_from_state_again():
    """After a restore the job's state is behind what a desk that survived kept in memory:
    a batch from a restarted batcher (new epoch) makes it read every store from state."""
    records = traffic(4, 60)
    desk = new_desk()
    state: dict[int, bytes] = {}
    _, _, saved = desk.decide("shard", frame_store_records(records[:20], True, b"A" * 8), state.get)
    state.update(saved)
    desk.decide("shard", frame_store_records(records[20:40], False, b"A" * 8), state.get)
    after_restore = desk.decide(
        "shard", frame_store_records(records[20:], True, b"B" * 8), state.get
    )
    fresh = new_desk()
    assert (
        after_restore[0]
        == fresh.decide("shard", frame_store_records(records[20:], True, b"B" * 8), state.get)[0]
    )


def test_a_records_ids_are_read_for_its_dead_letter_when_it_has_them():
    assert record_ids(ORDER, b'{"o":"A-1","e":"E-1","s":3}') == ("A-1", "E-1", 3)
    assert record_ids(RESTOCK, b'{"event_id":"R-1","store_id":3}') == (None, "R-1", 3)
    assert record_ids(ORDER, b'{"o":"","e":7,"s":1e30}') == (None, None, None)
    assert record_ids(ORDER, b'{"o":"A\\u0000","s":100000000000}') == (None, None, None)
    for unreadable in (b"[1]", b"\xff\xfe", b"{", b""):
        assert record_ids(ORDER, unreadable) == (None, None, None)
        assert record_ids(RESTOCK, unreadable) == (None, None, None)


# A partition key is what Kinesis carries: any text UTF-8 can encode.
_PARTITION_KEY = st.one_of(
    st.text(max_size=12), st.sampled_from(["a\x00b", "", "x" * 300, "007", " 3", "3.0"])
)


_JSON_VALUE = json_values()


@st.composite
def restock_records(draw) -> tuple[str, bytes]:
    """A restock as suppliers send it, then mutated: fields dropped, replaced by any JSON
    value (lone surrogates, NULs, huge numbers, nesting), the key changed; or raw bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(_PARTITION_KEY), draw(st.binary(max_size=80))
    store_id = draw(st.sampled_from(STORES))
    if draw(st.integers(0, 3)) == 0:  # a tick
        doc = {
            "event_id": tick_event_id(store_id, T0),
            "store_id": store_id,
            "tick": format_event_time(T0),
        }
    else:
        doc = {
            "event_id": f"R-{draw(st.integers(0, 10**6))}",
            "store_id": store_id,
            "ingredient_id": draw(st.sampled_from(INGREDIENTS)),
            "quantity": draw(st.integers(1, 500)),
            "ts": "2026-11-24T18:00:00Z",
            "supplier_order_id": draw(st.none() | st.just(f"PO-{store_id}-1-1")),
        }
    for name in draw(st.lists(st.sampled_from(sorted(doc)), max_size=3, unique=True)):
        if draw(st.booleans()):
            del doc[name]
        else:
            doc[name] = draw(_JSON_VALUE)
    key = str(store_id) if draw(st.integers(0, 4)) else draw(_PARTITION_KEY)
    return key, json.dumps(doc).encode()


def _restock(**fields) -> tuple[str, bytes]:
    doc = {
        "event_id": "R-1",
        "store_id": 3,
        "ingredient_id": INGREDIENTS[0],
        "quantity": 5,
        "ts": "2026-11-24T18:00:00Z",
        **fields,
    }
    return "3", json.dumps(doc).encode()


@settings(
    max_examples=3 * profile_examples(), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(records=st.lists(restock_records(), min_size=1, max_size=12))
# Poison found by hand before: ids a dead letter would carry that PostgreSQL (NUL) or the
# string coder (lone surrogate) refuse, on a restock refused after parsing.
@example(records=[_restock(event_id="a\x00b", ingredient_id=999)])
@example(records=[_restock(event_id="\ud800", ingredient_id=999)])
@example(records=[_restock(supplier_order_id="\ud800"), _restock(quantity=10**20)])
def test_any_restock_is_applied_exactly_or_dead_lettered_storably(records):
    """Whatever a restock or tick holds, the desk never raises: a record is either applied
    (a restock's quantity to its store's ingredient; a tick's review, which takes no stock)
    or one dead letter with a reason, every field of which the dead-letter table and the
    job's string coder accept."""
    desk = new_desk()
    for key, data in records:
        before = {store: dict(stock.on_hand) for store, (stock, _) in desk._stores.items()}
        _, letters, _ = desk.decide(
            "shard-3", frame_store_records([(RESTOCK, key, data)], True), lambda store: None
        )
        if letters:
            (letter,) = letters
            assert letter.reason and letter.job == INVENTORY_JOB
            assert all(
                storable(v)
                for v in (letter.detail, letter.payload, letter.event_id, letter.order_id)
            ), letter
            assert letter.store_id is None or -(2**31) <= letter.store_id < 2**31, letter
            assert {
                s: dict(stock.on_hand) for s, (stock, _) in desk._stores.items() if s in before
            } == before
            continue
        doc = json.loads(data)
        assert key == str(doc["store_id"]) and is_id(doc["event_id"])
        stock = desk._stores[doc["store_id"]][0].on_hand
        had = before.get(doc["store_id"], opening(doc["store_id"]))
        if "tick" in doc:
            assert stock == had
        else:
            assert stock[doc["ingredient_id"]] == had.get(doc["ingredient_id"], 0) + doc["quantity"]


def test_each_repeat_is_a_dead_letter_of_its_own_with_the_ids_it_repeats():
    order = b'{"o":"A-1","e":"E-1","s":3}'
    first, second = (repeat_letter("3", ORDER, order, n) for n in (1, 2))
    assert (first.reason, first.order_id, first.event_id, first.store_id) == (
        "duplicate_order",
        "A-1",
        "E-1",
        3,
    )
    assert first.dead_letter_id != second.dead_letter_id
    assert repeat_letter("3", ORDER, order, 1) == first  # a restore numbers it again
    restock = repeat_letter("35", RESTOCK, b"{not json", 1)
    assert (restock.reason, restock.event_id, restock.store_id) == ("duplicate_restock", None, 35)


def old_format_states() -> dict[int, bytes]:
    """Stores 3 and 35 as the job saved them before plans: ``StoreStock.to_bytes`` alone,
    with the consumption window and an outstanding reorder of that time."""
    from pizzastream.inventory import take_stock

    states = {}
    for store_id in (3, 35):
        stock = StoreStock.initial(store_id, opening(store_id))
        take_stock(stock, {1: 300, 2: 40}, T0 - 600_000)
        stock.outstanding[1] = f"SO-{store_id}-1-1"
        stock.seq = 1
        states[store_id] = stock.to_bytes()
    return states


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), data=st.data())
def test_a_store_saved_before_plans_restores_and_replays_to_the_same_records(seed, data):
    """A savepoint of the job before plans holds ``StoreStock`` bytes: the store keeps its
    stock and gets a plan seeded as a new store's at its first event; then a restart from
    the new format mid-stream decides the same again."""
    records = traffic(seed, 120)
    cuts = sorted(data.draw(st.sets(st.integers(1, len(records) - 1), min_size=1, max_size=20)))
    persists = set(data.draw(st.lists(st.sampled_from(cuts), min_size=1, max_size=5)))
    restart_at = data.draw(st.integers(1, len(cuts) + 1))
    saved = old_format_states()
    reference = one_by_one(records, saved)
    batch_out = batched(records, cuts, persists, restart_at, saved)
    # a restored store publishes the levels it changes, not all of them as a new one
    levels = expected_levels(reference)
    assert {cell: levels[cell] for cell in batch_out["levels"]} == batch_out["levels"]
    batch_out["levels"] = levels
    assert_same(batch_out, reference)
    touched = {int(k) for k, _, _ in records if k in ("3", "35")}
    for store_id in touched:
        state, _ = reference["stock"][store_id]
        assert StoreStock.from_state(state).outstanding == {1: f"SO-{store_id}-1-1"}


def test_the_store_state_round_trips_and_reads_the_old_format():
    from pizzastream.order_batches import store_to_bytes

    stock = StoreStock.initial(3, opening(3))
    planner = seeded_plan(35, T0)
    planner.record_demand({1: 500}, T0 + 5)
    planner.review(POLICIES, stock.on_hand, T0 + 5, None)
    back_stock, back_plan = store_from_bytes(store_to_bytes(stock, planner))
    assert back_stock == stock and back_plan == planner
    assert back_plan.review(POLICIES, stock.on_hand, T0 + 2 * HOUR_MS, None) == planner.review(
        POLICIES, stock.on_hand, T0 + 2 * HOUR_MS, None
    )
    old_stock, no_plan = store_from_bytes(stock.to_bytes())
    assert old_stock == stock and no_plan is None


def test_a_new_store_is_seeded_from_its_sales_older_than_the_gap():
    """The history read for a store met at its first event: ``weeks`` weeks ending
    ``gap_hours`` before that event's hour, so a replay, when later sales exist, reads the
    same rows."""
    calls = []

    def history(store_id, first_ms, end_ms):
        calls.append((store_id, first_ms, end_ms))
        return sales_history(store_id, first_ms, end_ms)

    desk = ShardDesk(lambda: CATALOG, lambda: POLICIES, opening, history, HISTORY)
    order = EnrichedOrder(
        "e1",
        "S35-1",
        35,
        "online",
        "pickup",
        T0 + 1_234,
        None,
        None,
        (OrderLine(ACTIVE[0], 1, price(ACTIVE[0])),),
    )
    desk.decide(
        "shard",
        frame_store_records([(ORDER, "35", order.to_json().encode())], True),
        lambda store: None,
    )
    end = T0 - 48 * HOUR_MS
    assert calls == [(35, end - 2 * 168 * HOUR_MS, end)]
    plan = desk._stores[35][1]
    assert plan.level == seeded_plan(35, T0 + 1_234).level and plan.level
    # the sales in the gap are not in it: seeding with them too gives another forecast
    everything = StoreReplenishment.seeded(35, hourly_demand(PAST_SALES[35], CATALOG.recipe_pairs))
    assert everything.level != plan.level


def test_history_window_settings_are_required():
    import pytest

    assert HistoryWindow.from_properties(
        {"history_gap_hours": "48", "history_weeks": "4"}
    ) == HistoryWindow(48, 4)
    with pytest.raises(ValueError, match=r"Inventory.history_weeks is missing"):
        HistoryWindow.from_properties({"history_gap_hours": "48"})
    with pytest.raises(ValueError, match=r"Inventory.history_gap_hours"):
        HistoryWindow.from_properties({"history_gap_hours": "2d", "history_weeks": "4"})
