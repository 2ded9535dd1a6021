"""hourly_metrics publishes an hour when its POS batches are in, flags a silent POS, and
corrects itself from late sales: the streaming job on the mini-cluster, the real POS
ingestion, the local Kinesis, S3, PostgreSQL and Redis.

Three hours of a business day are replayed on the stream's own time, one simulated minute
per wall-clock second: every minute the online sales of that minute, and the POS batches
(cut every 15 minutes, ``PosDeliveries``) that arrive then, through ``PosIngestion``. The day
is tomorrow, so the wall clock never closes an hour (``JsonEventTime``): only sales and POS
progress do, as on a live day. Store systems:

- 1: each batch 0 minutes after its cut; 2: 14 minutes after;
- 3: 40 minutes after for the batch that closes the second hour (past ``pos_wait``, 30);
- 4: a batch delivered twice; 5: a batch cut short, delivered whole 6 minutes later;
- 6: silent from the third hour's second batch until 50 minutes after that hour (within
  the allowed lateness, 60), when it delivers them all.

At each hour's first appearance in the lake the test reads it: rows of stores whose POS
delivered within the bound equal the recomputation from the raw events; stores of 3 and 6
are below it. At the end, every row equals the recomputation (nothing counted twice), in
the lake and the warehouse, the corrections logged as ``late`` with what they changed.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from connectors import lake, warehouse
from connectors.kinesis_producer import KinesisProducer
from etl.pos_ingestion import PosIngestion
from jobs import hourly_metrics
from pizzastream.config import stream_name
from pizzastream.metrics import HOUR, MetricRow, SaleOrder, metric_rows, summarize_delays
from pizzastream.orders import epoch_ms
from pizzastream.pos_batches import batch_id, store_system, system_stores
from pizzastream.publication import LATE, PARTIAL
from pizzastream.sales import sale_json
from pos.outbox import Version
from tests.pos_support import SYSTEMS, PosDeliveries, make_order
from tests.support import running_job, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MINUTE = timedelta(minutes=1)
CADENCE = 15
HOURS = 3
# Arrival of each system's batches, minutes after their cut (``late`` overrides per cut,
# in minutes from the first hour's start; None: never by itself).
DELAY = {1: 0, 2: 14, 3: 0, 4: 0, 5: 0, 6: 0}
SILENCE_ENDS = HOURS * 60 + 50
LATE_BATCHES = {3: {120: 40}, 6: {cut: SILENCE_ENDS - cut for cut in range(150, 226, CADENCE)}}
TWICE = (4, 60, 5)  # system, cut, redelivered minutes after the first delivery
CUT_SHORT = (5, 60, 6)  # system, cut, delivered whole minutes after the cut-short one
# (hour index, system): published without that system's POS, corrected later
HELD = {(1, 3), (2, 6)}
STORES_PER_SYSTEM = 8  # with online sales, so every shard sees sales every minute
IN_STORE_STORES = 2  # of those, with in-store sales too
SECONDS_PER_MINUTE = 1.0


def _day() -> datetime:
    today = datetime.now(UTC).replace(tzinfo=None, minute=0, second=0, microsecond=0)
    return today.replace(hour=10) + timedelta(days=1)


class Day:
    """The sales of ``HOURS`` hours from ``start`` plus the tail that closes the last one,
    and when each POS batch arrives."""

    def __init__(self, start: datetime):
        self.start = start
        self.start_ms = epoch_ms(start.replace(tzinfo=UTC))
        self.minutes = HOURS * 60 + 60
        n = 0
        self.online: dict[int, list] = defaultdict(list)  # minute -> orders
        self.in_store: dict[tuple[int, int], list] = defaultdict(list)  # (system, cut) -> orders
        for system in DELAY:
            stores = system_stores(system, SYSTEMS)[:STORES_PER_SYSTEM]
            for minute in range(self.minutes):
                for i, store in enumerate(stores):
                    n += 1
                    ts = self.start_ms + minute * 60_000 + (i * 997) % 60_000
                    self.online[minute].append(make_order(n, store, ts, channel="online"))
                    if i < IN_STORE_STORES and minute % 3 == i and minute < HOURS * 60 + 45:
                        n += 1
                        order = make_order(n, store, ts + 20_000, lines=((3, 1, 1099),))
                        cut = (minute // CADENCE + 1) * CADENCE
                        self.in_store[system, cut].append(order)

    def arrivals(self) -> dict[int, list[tuple[int, int, Version]]]:
        """minute -> [(system, cut, version)] delivered then."""
        due: dict[int, list] = defaultdict(list)
        for system, cut in sorted(self.in_store):
            minute = cut + LATE_BATCHES.get(system, {}).get(cut, DELAY[system])
            if (system, cut) == CUT_SHORT[:2]:
                due[minute].append((system, cut, Version.SHORT))
                minute += CUT_SHORT[2]
            due[minute].append((system, cut, Version.COMPLETE))
            if (system, cut) == TWICE[:2]:
                due[minute + TWICE[2]].append((system, cut, Version.COMPLETE))
        return due

    def batch(self, system: int, cut: int) -> str:
        return batch_id(system, self.start_ms + cut * 60_000)

    def all_orders(self) -> list:
        return [o for orders in self.online.values() for o in orders] + [
            o for orders in self.in_store.values() for o in orders
        ]


def test_hours_are_published_complete_flagged_and_corrected_by_the_stream(clean_stack, tmp_path):
    props = {
        **clean_stack,
        "HourlyMetrics": {**clean_stack["HourlyMetrics"], "late_refresh_seconds": "2"},
    }
    day = Day(_day())
    hours = [day.start + i * HOUR for i in range(HOURS)]
    truth = {
        (r.window_start, r.store_id): r
        for r in metric_rows(SaleOrder.from_enriched(o) for o in day.all_orders())
    }
    pos = PosDeliveries(props, tmp_path)
    ingestion = PosIngestion(props)
    producer = KinesisProducer(props)
    sales = stream_name(props, "sales")
    arrivals = day.arrivals()
    first_seen: dict[datetime, int] = {}
    first_rows: dict[datetime, dict[int, MetricRow]] = {}

    with running_job(hourly_metrics.build, props, "hourly_metrics-publication-test"):
        time.sleep(15)  # the job's source is reading before the day starts
        for minute in range(day.minutes):
            began = time.monotonic()
            producer.put(
                sales, [(str(o.store_id), sale_json(o).encode()) for o in day.online[minute]]
            )
            for system, cut, version in arrivals.get(minute, []):
                pos.deliver(day.in_store[system, cut], version, batch=day.batch(system, cut))
            if minute in arrivals:
                ingestion.run_once()
            for hour in _new_hours(props, first_seen):
                first_seen[hour] = minute
                first_rows[hour] = {
                    r.store_id: r for r in lake.read_metrics(props) if r.window_start == hour
                }
            time.sleep(max(0.0, SECONDS_PER_MINUTE - (time.monotonic() - began)))

        expected = sorted(
            (r for r in truth.values() if r.window_start in hours),
            key=lambda r: (r.window_start, r.store_id),
        )
        wait_for(
            "the corrected hours in the warehouse",
            lambda: [r for r in warehouse.metric_rows(props) if r.window_start in hours],
            lambda rows: rows == expected,
            timeout_s=90,
        )
        wait_for(
            "the corrected hours in the lake",
            lambda: [r for r in lake.read_metrics(props) if r.window_start in hours],
            lambda rows: rows == expected,
            timeout_s=30,
        )

    assert sorted(first_seen) == hours
    for index, hour in enumerate(hours):
        assert set(first_rows[hour]) == {store for h, store in truth if h == hour}
        for store, row in first_rows[hour].items():
            if (index, store_system(store, SYSTEMS)) in HELD:
                assert row.revenue <= truth[hour, store].revenue
            else:
                assert row == truth[hour, store], (hour, store)
    # the late and silent systems' stores were short at first publication, and flagged
    assert any(
        first_rows[hours[1]][s] != truth[hours[1], s]
        for s in system_stores(3, SYSTEMS)
        if s in first_rows[hours[1]]
    )
    assert any(
        first_rows[hours[2]][s] != truth[hours[2], s]
        for s in system_stores(6, SYSTEMS)
        if s in first_rows[hours[2]]
    )
    publications = {
        p.window_start: p
        for p in warehouse.publications(props, day.start, day.start + HOURS * HOUR)
    }
    assert publications[hours[0]].corrections == 0
    assert publications[hours[0]].partial_stores == 0
    for hour, system in ((hours[1], 3), (hours[2], 6)):
        missed = sum(
            truth[hour, s].revenue - first_rows[hour][s].revenue
            for s in system_stores(system, SYSTEMS)
            if (hour, s) in truth
        )
        assert publications[hour].corrections >= 1
        assert publications[hour].partial_stores == STORES_PER_SYSTEM
        assert publications[hour].revenue_change == missed
    assert {source for (source,) in _publication_sources(props)} == {"stream", PARTIAL, LATE}

    delays = {hour: (first_seen[hour] - (hour - day.start) // MINUTE - 60) for hour in hours}
    # complete early: the first hour waited only for system 2 (14 minutes); the others for
    # the bound (pos_wait, 30), as their POS was late or silent. One simulated minute per
    # second: the job's lag of a few seconds shows as a few minutes.
    assert delays[hours[0]] < 30
    assert all(30 <= delays[hour] < 40 for hour in hours[1:])
    summary = summarize_delays([_published(hour, delays[hour]) for hour in hours], timedelta(0))
    print(
        f"\npublication delay after the hour's end (stream minutes): "
        f"{ {h.isoformat(): d for h, d in delays.items()} }; p50 {summary.p50}, "
        f"p95 {summary.p95}, max {summary.max}"
    )


def _new_hours(props, seen: dict) -> list[datetime]:
    hours = set()
    for key in lake.object_keys(props):
        dt, hh = (part.split("=")[1] for part in key.split("/")[-3:-1])
        hour = datetime.fromisoformat(f"{dt}T{hh}:00")
        if hour not in seen:
            hours.add(hour)
    return sorted(hours)


def _published(hour: datetime, delay_minutes: int):
    from pizzastream.metrics import Publication

    return Publication(hour, hour + HOUR, hour + HOUR + delay_minutes * MINUTE, 0)


def _publication_sources(props) -> list[tuple]:
    with warehouse.backend(props).connect() as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT DISTINCT source FROM metrics_publication")
        return cursor.fetchall()
