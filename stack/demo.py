"""The end-to-end demo: traffic in, the jobs' real entry points running, a summary out.

``make demo`` brings the stack up and runs this. It resets the stack's data, sends a wave
of orders (with bad records of every kind and replays), lets the suppliers deliver what the
pipeline reordered, sends a second wave, and prints what came out against what was sent.
The waves' orders go out hour by hour of their event times, each hour after its hourly
review ticks (``pizzastream.ticks``, ``HourlyTicks``), as the scheduled ticks would have come.

Stores open with the seeded stock (a business day of their expected use), as a store
would. ``--stock-factor F`` scales it (0.01 leaves ~1% and makes about a third of the
orders fail for inventory, exercising reorders and restocks): a stress setting, and the
summary says so.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import analytics.__main__ as analytics_cli
import stack
from api.demo import ReadSide
from connectors import aurora, aws, redis_store, warehouse
from connectors.kinesis_producer import KinesisProducer
from pizzastream.config import load_properties, stream_name
from pizzastream.orders import OrderStatus, parse_event_time
from pizzastream.publication import HourlySettings, freshness
from pizzastream.ticks import HOUR_MS, write_ticks
from simulation.traffic import BUSINESS_DAY
from stack import suppliers
from stack.generate import send_orders
from stack.jobs import JobProcess, LocalProcess

JOBS = ("order_enrichment", "inventory_windowing", "hourly_metrics")
# name: (arguments, environment). The POS cuts batches every 10 s instead of 15 min, some
# delivered twice or cut short (redelivered whole later), to show ingestion coping.
SERVICES = {
    "provider": (["-m", "stack.provider"], {}),
    "delivery": (["-m", "delivery", "--worker-id", "demo-1"], {}),
    "pos": (
        ["-m", "pos", "--interval", "10", "--duplicate-share", "0.1", "--truncate-share", "0.05"],
        {},
    ),
    "pos_ingestion": (["-m", "etl.pos_ingestion"], {"PIZZASTREAM__ETL__INGESTION_INTERVAL_S": "5"}),
    # production's hourly schedule of the ETL (stack.etl_schedule), every 30 s for the demo
    "etl_schedule": (["-m", "stack.etl_schedule"], {"PIZZASTREAM__ETL__SCHEDULE_INTERVAL_S": "30"}),
}
SECOND_WAVE_SEQUENCE = 100_000
REFUSED = OrderStatus.REJECTED_INSUFFICIENT_INVENTORY.value
# Final statuses of orders that reached the stock decision.
DECIDED_BY_STOCK = (OrderStatus.ACCEPTED.value, REFUSED)


def _count(props, logical_stream: str) -> int:
    kinesis = aws.client(props, "kinesis")
    return sum(1 for _ in aws.read_stream(kinesis, stream_name(props, logical_stream)))


def _query(props, sql: str) -> list[tuple]:
    with aurora.connect(props) as conn:
        cursor = conn.execute(sql)
        return cursor.fetchall() if cursor.description else []


def _settle(jobs: list[LocalProcess], what: str, probe, at_least: int, timeout_s: float) -> None:
    """Waits until ``probe()`` reaches ``at_least`` and then holds still for a few seconds:
    every record sent has come out and nothing more is on its way."""
    deadline = time.monotonic() + timeout_s
    last, still_since = None, time.monotonic()
    while True:
        for job in jobs:
            if not job.running():
                raise SystemExit(f"demo: {job.job} stopped:\n{job.log_tail()}")
        value = probe()
        if value != last:
            last, still_since = value, time.monotonic()
        elif value >= at_least and time.monotonic() - still_since > 8:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: timed out waiting for {what} (at {value} of {at_least})")
        time.sleep(2)


class HourlyTicks:
    """The ``producer`` a wave is sent through: it puts the wave's orders hour by hour of
    their event times, each hour's review ticks of every store (``pizzastream.ticks``)
    first, as the hourly schedule would have written them while the day went by. Orders
    reach the inventory job through order_enrichment and ticks directly, so it pauses
    after each hour's orders to let them arrive before the next hour's ticks. An hour an
    earlier wave ticked is not ticked again (that would be a repeat the job dead-letters).
    Only times within the wave's business day (``send_orders``: the hours before now)
    count: the bad records' future or stale times must not tick a store into another day."""

    PAUSE_S = 3.0

    def __init__(self, props, ticked: set[int]):
        self._props = props
        self._producer = KinesisProducer(props)
        self._ticked = ticked
        self.written = 0
        now_ms = int(time.time() * 1000)
        self._day = (now_ms - BUSINESS_DAY // timedelta(milliseconds=1), now_ms + 60_000)

    def put(self, stream: str, records, on_sent=None) -> int:
        sent = 0
        hour: int | None = None
        pending: list[Any] = []
        for key, data in records:
            ts_ms = _event_time(data)
            if (
                ts_ms is not None
                and self._day[0] <= ts_ms <= self._day[1]
                and (hour is None or ts_ms - ts_ms % HOUR_MS > hour)
            ):
                if pending:
                    sent += self._producer.put(stream, pending, on_sent)
                    pending = []
                    time.sleep(self.PAUSE_S)
                hour = ts_ms - ts_ms % HOUR_MS
                if hour not in self._ticked:
                    self.written += write_ticks(self._props, hour)
                    self._ticked.add(hour)
            pending.append((key, data))
        return sent + self._producer.put(stream, pending, on_sent)


def _event_time(data: bytes) -> int | None:
    """An order record's event time, if it has a readable one (bad records may not)."""
    try:
        ts = json.loads(data).get("ts")
    except (ValueError, AttributeError):
        return None
    return parse_event_time(ts) if isinstance(ts, str) else None


def _wave(
    props, jobs, n: int, seed: int, first_sequence: int, timeout_s: float, ticked: set[int]
) -> dict:
    # Counted before sending: the wave goes out hour by hour, and its first hours' orders
    # are decided while the last ones are still being sent.
    before = _count(props, "order_status")
    ticks = HourlyTicks(props, ticked)
    report = send_orders(
        props,
        n,
        bad_share=0.05,
        duplicate_share=0.01,
        seed=seed,
        first_sequence=first_sequence,
        producer=ticks,  # type: ignore[arg-type]  # HourlyTicks puts like a KinesisProducer
    ).to_dict()
    print(
        f"demo: wrote {ticks.written} review ticks (every store, each hour of the wave"
        " not ticked before)"
    )
    print(
        f"demo: sent {n} orders: {report['by_kind'].get('valid', 0)} valid,"
        f" {report['by_kind'].get('duplicate', 0)} replays,"
        f" {n - report['by_kind'].get('valid', 0) - report['by_kind'].get('duplicate', 0)} bad"
    )
    _settle(
        jobs,
        "every order's status",
        lambda: _count(props, "order_status"),
        before + report["by_kind"].get("valid", 0),
        timeout_s,
    )
    return report


def _summary(props, stock_factor: float) -> None:
    statuses: Counter[str] = Counter()
    by_store: dict[int, Counter] = {}
    kinesis = aws.client(props, "kinesis")
    for _, data in aws.read_stream(kinesis, stream_name(props, "order_status")):
        status = json.loads(data)
        statuses[status["status"]] += 1
        if isinstance(status.get("s"), int) and status["status"] in DECIDED_BY_STOCK:
            by_store.setdefault(status["s"], Counter())[status["status"]] += 1
    print("\n== orders by final status (order-status stream) ==")
    for status, count in statuses.most_common():
        print(f"  {status:<34}{count:>8}")
    _stock_summary(props, stock_factor, by_store)
    print("\n== routed ==")
    for logical in ("sales", "pos_orders", "deliveries", "supplier_orders"):
        print(f"  {stream_name(props, logical):<34}{_count(props, logical):>8}")
    rows, revenue = _query(
        props, "SELECT count(*), coalesce(sum(total_transaction_amt), 0) FROM order_fct"
    )[0]
    print(f"\n== Aurora ==\n  order_fct rows {rows}, revenue {revenue}")
    print(
        f"  supplier_order rows {_query(props, 'SELECT count(*) FROM supplier_order')[0][0]}"
        " (one per order line)"
    )
    print("  replenishment alerts by kind:")
    for kind, count in _query(
        props, "SELECT kind, count(*) FROM replenishment_alert GROUP BY kind ORDER BY 1"
    ):
        print(f"    {kind:<32}{count:>8}")
    print("  POS batches by outcome:")
    for status, count in _query(props, "SELECT status, count(*) FROM pos_batch GROUP BY 1"):
        print(f"    {status:<32}{count:>8}")
    print("  dead letters by reason:")
    for reason, count in _query(
        props, "SELECT reason, count(*) FROM dead_letter GROUP BY reason ORDER BY 2 DESC"
    ):
        print(f"    {reason:<32}{count:>8}")
    print("\n== deliveries (delivery service on the KCL) ==")
    for status, reason, count in _query(
        props,
        "SELECT status, coalesce(reason, ''), count(*) FROM delivery_assignment"
        " GROUP BY 1, 2 ORDER BY 3 DESC",
    ):
        print(f"  {status + (':' + reason if reason else ''):<34}{count:>8}")
    with_id = _query(
        props, "SELECT count(DISTINCT order_id) FROM order_fct WHERE delivery_id IS NOT NULL"
    )[0][0]
    print(f"  orders in order_fct carrying their delivery_id {with_id:>10}")
    store = _query(
        props,
        "SELECT store_id FROM supplier_order GROUP BY store_id ORDER BY count(*) DESC LIMIT 1",
    )
    if store:
        redis = redis_store.client(props)
        levels = redis.hgetall(redis_store.inventory_key(store[0][0]))
        print(
            f"\n== Redis {redis_store.inventory_key(store[0][0])} (hot read) ==\n  "
            + ", ".join(f"{k}={v}" for k, v in sorted(levels.items(), key=lambda kv: int(kv[0])))  # type: ignore[union-attr]  # a sync client: a dict
        )
        warnings = redis.hgetall(redis_store.stockout_key(store[0][0]))
        print(
            f"  {redis_store.stockout_key(store[0][0])}: {len(warnings)} expected stock-outs"  # type: ignore[arg-type]  # a sync client: a dict
            + "".join(f"\n    ingredient {k}: {v}" for k, v in sorted(warnings.items()))  # type: ignore[union-attr]  # a sync client: a dict
        )


def stock_label(stock_factor: float) -> str:
    """How the run's opening stock is described in the summary."""
    if stock_factor == 1:
        return "seeded opening stock (a business day of each store's expected use)"
    return (
        f"STRESS SETTING: opening stock x {stock_factor:g} (--stock-factor), not a "
        f"store's real stock; refusals and reorders below are what that provokes"
    )


def _stock_summary(props, stock_factor: float, by_store: dict[int, Counter]) -> None:
    """Refusals for inventory per store and supplier orders per store and demo day, the
    figures a store manager would judge replenishment by."""
    print(f"\n== stock: {stock_label(stock_factor)} ==")
    decided = sum(sum(c.values()) for c in by_store.values())
    refused = sum(c[REFUSED] for c in by_store.values())
    supplier_orders = _query(props, "SELECT count(DISTINCT supplier_order_id) FROM supplier_order")[
        0
    ][0]
    print(
        f"  refused for inventory {refused} of {decided} orders decided on stock"
        f" ({100 * refused / max(decided, 1):.2f}%); {len(by_store)} stores took orders"
    )
    print(
        f"  supplier orders {supplier_orders}: {supplier_orders / max(len(by_store), 1):.2f}"
        " per store and demo day (both waves replay the same business day)"
    )
    busiest = sorted(by_store.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))[:5]
    print("  busiest stores: orders, refused for inventory")
    for store_id, counts in busiest:
        total = sum(counts.values())
        print(
            f"    store {store_id:<6}{total:>6}{counts[REFUSED]:>6}"
            f" ({100 * counts[REFUSED] / total:.1f}%)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=4000, help="orders per wave")
    parser.add_argument(
        "--stock-factor",
        type=float,
        default=1.0,
        help="stress setting: opening stock as a share of the seeded stock "
        "(1: as seeded; 0.01 makes ~a third of the orders fail)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()

    props = load_properties()
    stack.reset_data(props)
    if not args.stock_factor > 0:
        parser.error("--stock-factor must be positive")
    if args.stock_factor != 1:
        print(f"demo: {stock_label(args.stock_factor)}")
        for table in ("inventory", "opening_inventory"):
            _query(props, f"UPDATE {table} SET on_hand = floor(on_hand * {args.stock_factor:f})")
    jobs: list[LocalProcess] = [JobProcess(job) for job in JOBS]
    jobs += [LocalProcess(name, argv, env) for name, (argv, env) in SERVICES.items()]
    try:
        read_side = ReadSide.start(props)  # the API (api/demo.py): stays up after the demo
        print(
            f"demo: running {', '.join(JOBS)} and the {', '.join(SERVICES)} services"
            " (logs in .stack/logs/)"
        )
        ticked: set[int] = set()
        # Hours that ended before now are replayed: sent within minutes, late by construction.
        started = datetime.now(UTC).replace(tzinfo=None)
        _wave(props, jobs, args.orders, args.seed, 1, args.timeout, ticked)
        read_side.place_sample_order()
        delivered = suppliers.deliver_all(props)
        print(f"demo: suppliers delivered {delivered} restocks")
        time.sleep(10)  # restocks land before the next wave's orders
        _wave(props, jobs, args.orders, args.seed + 1, SECOND_WAVE_SEQUENCE, args.timeout, ticked)
        _settle(
            jobs,
            "every delivery to be decided",
            lambda: _query(props, "SELECT count(*) FROM delivery_assignment")[0][0],
            _count(props, "deliveries"),
            args.timeout,
        )
        _settle(
            jobs,
            "in-store sales to come back from the POS",
            lambda: _query(
                props, "SELECT count(DISTINCT order_id) FROM order_fct WHERE channel = 'in_store'"
            )[0][0],
            _count(props, "pos_orders"),
            args.timeout,
        )
        _settle(
            jobs,
            "the business day's hours to be published",
            lambda: _published_hours(props),
            1,
            args.timeout,
        )
        schedule = next(job for job in jobs if job.job == "etl_schedule")
        _settle(
            jobs,
            "a scheduled hourly ETL run after the traffic",
            lambda: _finished_etl_runs(schedule),
            _started_etl_runs(schedule) + 1,
            args.timeout,
        )
    finally:
        for job in jobs:
            job.stop()
    _summary(props, args.stock_factor)
    print(
        "\n== hourly ETL on its schedule (stack.etl_schedule): Aurora -> S3 staging -> "
        "warehouse, late sales corrected =="
    )
    print(schedule.output())
    _hourly_metrics(props, started)
    read_side.print_access()


def _started_etl_runs(schedule: LocalProcess) -> int:
    return schedule.output().count(" started")


def _finished_etl_runs(schedule: LocalProcess) -> int:
    return schedule.output().count(" exited ")


def _published_hours(props) -> int:
    with aurora.connect(props, "Warehouse") as conn:
        return conn.execute(
            "SELECT count(DISTINCT window_start) FROM hourly_store_metrics"  # type: ignore[index]  # an aggregate: always one row
        ).fetchone()[0]


def _hourly_metrics(props, started: datetime) -> None:
    """The analysts' view: the busiest store's day from the lake and from the warehouse,
    when each hour was published, and the chart of that day."""
    with aurora.connect(props, "Warehouse") as conn:
        store, day = conn.execute(  # type: ignore[misc]  # the demo's day has metrics
            "SELECT store_id, window_start::date FROM hourly_store_metrics"
            " GROUP BY 1, 2 ORDER BY sum(revenue) DESC LIMIT 1"
        ).fetchone()
    for engine, flags in (("S3 lake (Parquet, DuckDB)", []), ("warehouse", ["--warehouse"])):
        print(f"\n== store {store} on {day} by hour, from the {engine} ==")
        analytics_cli.main([*flags, "store-day", "--store", str(store), "--day", day.isoformat()])
    print(
        "\n== publication delay after each hour's end ==\n"
        "  (the demo replays a past business day within minutes, so these delays measure the\n"
        "  replay; on live traffic the same report gives the pipeline's own delay)"
    )
    analytics_cli.main(["publication", "--from", day.isoformat(), "--to", day.isoformat()])
    _freshness(props, day, started)
    print("\n== chart ==")
    analytics_cli.main(["chart", "--store", str(store), "--day", day.isoformat()])


def _freshness(props, day, started: datetime) -> None:
    """Per hour: first publication, corrections and what they changed, stores published
    without their POS, and the alarm's verdict (``pizzastream.publication.freshness``).
    Hours that ended before the demo started (naive UTC ``started``) are replayed: listed,
    but not judged. From the replayed day's midnight to now: a demo running past midnight
    (UTC) has its live hours on the next date."""
    start = datetime.combine(day, datetime.min.time())
    now = datetime.now(UTC).replace(tzinfo=None)
    end = max(
        start + timedelta(days=1),
        now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1),
    )
    settings = HourlySettings.from_props(props)
    with aurora.connect(props, "Warehouse") as conn:
        sold = [
            hour
            for (hour,) in conn.execute(
                "SELECT DISTINCT window_start FROM hourly_store_metrics WHERE window_start >= %s"
                " AND window_start < %s",
                (start, end),
            )
        ]
    report = freshness(
        warehouse.publications(props, start, end),
        sold,
        settings.alarm_bound,
        now,
        replayed_before=started,
    )
    print(
        f"\n== freshness and completeness (alarm: first publication later than "
        f"{settings.alarm_bound} after the hour) =="
    )
    print(
        f"  Hours that ended before the demo started ({started:%H:%M:%S} UTC) are REPLAYED: "
        f"their sales were sent\n"
        f"  within minutes, after the hour had ended, so they are late by construction and "
        f"the alarm does\n"
        f"  not judge them. Their stores are published partial as well: the POS stand-in cuts "
        f"its batches at\n"
        f"  the wall clock, so its progress markers complete no replayed hour, and the "
        f"in-store sales it\n"
        f"  brings afterwards come in as corrections. Only hours that ended during the demo "
        f"are judged."
    )
    print(
        f"  {'hour':<18}{'first published':<22}{'corrections':>12}{'orders +/-':>11}"
        f"{'revenue +/-':>13}{'partial stores':>16}  verdict"
    )
    for hour in report.hours:
        verdict = (
            "replayed"
            if report.replayed(hour.window_start)
            else "LATE"
            if hour.window_start in report.late
            else "on time"
        )
        print(
            f"  {hour.window_start:%Y-%m-%d %H:00}  {hour.first_published_at:%H:%M:%S}"
            f"{'':<14}{hour.corrections:>12}{hour.orders_change:>11}"
            f"{hour.revenue_change:>13}{hour.partial_stores:>16}  {verdict}"
        )
    judged = [h for h in report.hours if not report.replayed(h.window_start)]
    print(
        f"  alarm: {len(report.late)} of {len(judged)} hour(s) that ended during the demo late"
        + (f": {', '.join(f'{h:%H:00}' for h in report.late)}" if report.late else "")
    )
    print(
        "  (the scheduled ETL's runs above put the same alarm's metrics, LateHours and\n"
        "  UnpublishedHours, as in production (etl.freshness): they know of no replay, so "
        "replayed\n  hours of the last three may count there)"
    )


if __name__ == "__main__":
    main()
