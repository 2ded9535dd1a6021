"""Hourly review ticks (``pizzastream.ticks``): what the writer makes is what the job reads,
and a tick that is not exactly one store's hour is refused with a reason."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from pizzastream.orders import epoch_ms
from pizzastream.ticks import (
    HOUR_MS,
    InvalidTick,
    parse_tick,
    tick_event_id,
    tick_records,
)

HOUR = epoch_ms(datetime.fromisoformat("2026-11-24T18:00:00Z"))


def test_an_hours_ticks_are_one_per_store_keyed_by_it_and_read_back():
    records = tick_records([42, 7], HOUR + 1_234_567)
    assert [key for key, _ in records] == ["7", "42"]
    ticks = [parse_tick(json.loads(data)) for _, data in records]
    assert [(t.event_id, t.store_id, t.ts_ms) for t in ticks] == [
        (f"TICK-7-{HOUR // HOUR_MS}", 7, HOUR),
        (f"TICK-42-{HOUR // HOUR_MS}", 42, HOUR),
    ]
    assert tick_records([7], HOUR) == tick_records([7], HOUR + HOUR_MS - 1)


GOOD = {"event_id": tick_event_id(7, HOUR), "store_id": 7, "tick": "2026-11-24T18:00:00Z"}


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"tick": None}, "missing_field"),
        ({"store_id": "7"}, "unknown_store"),
        ({"store_id": 9999}, "unknown_store"),
        ({"tick": "yesterday"}, "invalid_timestamp"),
        ({"tick": "2026-11-24T18:30:00Z"}, "invalid_tick"),
        ({"event_id": "TICK-7-1"}, "invalid_tick"),
        ({"quantity": 5}, "invalid_tick"),
    ],
)
def test_a_malformed_tick_is_refused_with_its_reason(change, reason):
    doc = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    with pytest.raises(InvalidTick) as refused:
        parse_tick(doc)
    assert refused.value.reason == reason
    assert parse_tick(GOOD).ts_ms == HOUR
