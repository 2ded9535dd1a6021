"""When the stream publishes an hour, what it flags and corrects, and the freshness report,
without a server (``pizzastream.publication``); what a POS store system has delivered up to
(``pizzastream.pos_batches.delivered_up_to``)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from pizzastream.metrics import HOUR, MetricRow, Publication
from pizzastream.pos_batches import (
    PROGRESS_PREFIX,
    batch_cut_ms,
    batch_id,
    delivered_up_to,
    progress_json,
    store_system,
    system_stores,
)
from pizzastream.publication import (
    LATE,
    PARTIAL,
    STREAM,
    HourlySettings,
    corrections,
    first_publication,
    freshness,
    judged_from,
    row_from_wire,
)

H = datetime(2026, 11, 24, 10)
MINUTE_MS = 60_000
CADENCE_MS = 15 * MINUTE_MS
SETTINGS = {
    "out_of_orderness_minutes": "2",
    "idle_seconds": "60",
    "pos_wait_minutes": "30",
    "allowed_lateness_minutes": "60",
    "late_refresh_seconds": "5",
    "dedup_ttl_minutes": "160",
}


def hour_end_ms(row: MetricRow) -> int:
    return (row.window_end - datetime(1970, 1, 1)) // timedelta(milliseconds=1)


def test_the_publisher_reads_minutes_and_cents_back_exactly():
    minutes = (H - datetime(1970, 1, 1)) // timedelta(minutes=1)
    assert row_from_wire((1, minutes, minutes + 60, 3, 3, 3750, 3, 0, 0, 1250)) == row(1)


def row(store: int, orders: int = 3, start: datetime = H) -> MetricRow:
    revenue = Decimal(orders) * Decimal("12.50")
    return MetricRow(
        store, start, start + HOUR, orders, orders, revenue, orders, 0, 0, Decimal("12.50")
    )


def test_settings_name_a_missing_key_and_refuse_a_short_deduplication():
    settings = HourlySettings.from_props({"HourlyMetrics": SETTINGS})
    assert settings.bound == timedelta(minutes=31)
    assert settings.closes_at(H) == H + HOUR + timedelta(minutes=31)
    assert settings.changes_for == timedelta(minutes=91)
    # the alarm's: the publisher's collection (late_refresh) and the load's commit on top
    assert settings.alarm_bound == (
        timedelta(minutes=31) + settings.late_refresh + timedelta(minutes=2)
    )
    missing = {k: v for k, v in SETTINGS.items() if k != "pos_wait_minutes"}
    with pytest.raises(ValueError, match=r"HourlyMetrics.pos_wait_minutes is missing"):
        HourlySettings.from_props({"HourlyMetrics": missing})
    with pytest.raises(ValueError, match="at least 151"):
        HourlySettings.from_props({"HourlyMetrics": {**SETTINGS, "dedup_ttl_minutes": "150"}})


def test_the_shipped_configuration_is_valid():
    from pizzastream.config import load_properties

    settings = HourlySettings.from_props(load_properties())
    assert settings.pos_wait < HOUR and settings.lateness > timedelta(0)
    # the one publication setting, as docs/hourly_metrics.md states it
    assert settings.bound == timedelta(minutes=31)
    assert settings.alarm_bound == timedelta(minutes=33, seconds=5)


def test_a_store_whose_pos_has_not_delivered_the_hour_is_published_partial():
    published = first_publication([row(1), row(2), row(3)], {1, 3, 4})
    assert [source for _, source in published] == [STREAM, PARTIAL, STREAM]


def test_only_the_rows_late_sales_changed_or_created_are_corrections():
    published = {1: row(1), 2: row(2)}
    assert corrections(published, [row(1), row(2, orders=4), row(5)]) == [
        (row(2, orders=4), LATE),
        (row(5), LATE),
    ]
    assert corrections(published, [row(1), row(2)]) == []


def test_the_alarm_names_hours_published_or_still_unpublished_past_the_bound():
    bound = timedelta(minutes=31)
    on_time = Publication(H, H + HOUR, H + HOUR + timedelta(minutes=14), 0)
    late = Publication(
        H + HOUR, H + 2 * HOUR, H + 2 * HOUR + timedelta(minutes=32), 1, 2, Decimal("40.00"), 3
    )
    now = H + 4 * HOUR
    report = freshness([on_time, late], [H, H + HOUR, H + 2 * HOUR, H + 3 * HOUR], bound, now)
    assert report.unpublished == [H + 2 * HOUR, H + 3 * HOUR]
    # H+3h ended at now: not late yet; H+2h ended an hour ago, unpublished
    assert report.late == [H + HOUR, H + 2 * HOUR]
    assert (report.late_published, report.overdue) == ([H + HOUR], [H + 2 * HOUR])
    assert report.metrics() == {"LateHours": 1, "UnpublishedHours": 1}
    # exactly the bound is on time, a second more is late
    edge = Publication(H, H + HOUR, H + HOUR + bound, 0)
    assert freshness([edge], [H], bound, now).metrics() == {"LateHours": 0, "UnpublishedHours": 0}
    assert freshness([], [H], bound, H + HOUR + bound).overdue == []
    assert freshness([], [H], bound, H + HOUR + bound + timedelta(seconds=1)).overdue == [H]


def test_a_measurement_judges_the_hours_that_started_in_the_last_three():
    assert judged_from(H + timedelta(minutes=25)) == H - 3 * HOUR
    assert judged_from(H) == H - 3 * HOUR


def test_hours_that_ended_before_a_replay_began_are_not_judged():
    """The demo replays a business day's past hours within minutes: those are late by
    construction; an hour that ends after the replay began is held to the bound."""
    bound = timedelta(minutes=31)
    started = H + 2 * HOUR + timedelta(minutes=10)  # the demo starts in H+2h
    replayed = Publication(H, H + HOUR, started + timedelta(minutes=3), 0, 250)
    ended_at_start = Publication(H + HOUR, H + 2 * HOUR, started + timedelta(minutes=25), 1)
    live = Publication(H + 2 * HOUR, H + 3 * HOUR, H + 3 * HOUR + timedelta(minutes=40), 0)
    now = H + 4 * HOUR
    report = freshness(
        [replayed, ended_at_start, live], [H + 3 * HOUR], bound, now, replayed_before=started
    )
    assert [report.replayed(h.window_start) for h in report.hours] == [True, True, False]
    assert report.late == [H + 2 * HOUR]
    assert report.overdue == []  # H+3h ended at now
    # without a replay every one of them is judged
    unjudged = freshness([replayed, ended_at_start, live], [], bound, now)
    assert unjudged.late == [H, H + HOUR, H + 2 * HOUR]


def cut(system: int, minutes: int) -> str:
    return batch_id(system, hour_end_ms(row(1)) + minutes * MINUTE_MS)


def test_a_batch_id_says_when_the_batch_was_cut():
    assert batch_cut_ms(cut(7, 15)) == hour_end_ms(row(1)) + 15 * MINUTE_MS
    assert batch_cut_ms("not-a-pos-batch") is None


def test_a_system_has_delivered_up_to_its_newest_batch_with_nothing_expected_before_it():
    end = hour_end_ms(row(1))
    loaded = [(cut(1, m), "published") for m in (-30, -15, 0, 15)]
    assert delivered_up_to(loaded, CADENCE_MS) == end + 15 * MINUTE_MS
    # a delivered-twice batch is one ledger row: nothing changes
    assert delivered_up_to(loaded + [(cut(1, 15), "published")], CADENCE_MS) == end + 15 * MINUTE_MS
    # a cut-short batch waits for its full delivery: progress stops before it
    cut_short = [(cut(1, -15), "published"), (cut(1, 0), "quarantined"), (cut(1, 15), "published")]
    assert delivered_up_to(cut_short, CADENCE_MS) == end - 15 * MINUTE_MS
    # a batch not delivered at all: the gap in the cuts says so
    gap = [(cut(1, -15), "published"), (cut(1, 15), "published")]
    assert delivered_up_to(gap, CADENCE_MS) == end - 15 * MINUTE_MS
    assert delivered_up_to([(cut(1, 0), "quarantined")], CADENCE_MS) is None
    assert delivered_up_to([], CADENCE_MS) is None


def test_a_progress_marker_is_no_sale_and_reaches_every_store_of_its_system():
    marker = progress_json(3, 201, 1234)
    assert marker.startswith(PROGRESS_PREFIX)
    assert json.loads(marker) == {"pos": 3, "s": 201, "t": 1234}
    assert "o" not in json.loads(marker)
    stores = system_stores(3, 20)
    assert stores == list(range(201, 301))
    assert {store_system(s, 20) for s in stores} == {3}
