"""``python -m analytics <question> [...]`` | ``--sql "SELECT ..."`` | ``chart`` | ``publication``

Questions and ``--sql`` run on the lake (DuckDB) unless ``--warehouse``; the relation is
``hourly_store_metrics`` either way. Examples::

    python -m analytics store-day --store 42 --day 2026-11-24
    python -m analytics top-stores --day 2026-11-24 --limit 5 --warehouse
    python -m analytics channel-share --from 2026-11-01 --to 2026-11-24
    python -m analytics aov-trend --from 2026-11-01 --to 2026-11-24 --store 42
    python -m analytics --sql "SELECT COUNT(*) FROM hourly_store_metrics"
    python -m analytics chart --store 42 --day 2026-11-24 --out out/store42.png
    python -m analytics publication --from 2026-11-24 --to 2026-11-24
"""

from __future__ import annotations

import argparse
import sys
from datetime import date, datetime, time, timedelta
from pathlib import Path

import analytics
from connectors import warehouse
from pizzastream.config import load_properties
from pizzastream.metrics import summarize_delays
from pizzastream.publication import HourlySettings
from pizzastream.settings import validate


def _print(result: analytics.Result) -> None:
    def text(value) -> str:
        return value.strftime("%Y-%m-%d %H:%M") if isinstance(value, datetime) else str(value)

    cells = [[text(v) for v in row] for row in result.rows]
    widths = [
        max([len(column)] + [len(row[i]) for row in cells])
        for i, column in enumerate(result.columns)
    ]
    print("  ".join(c.rjust(w) for c, w in zip(result.columns, widths)))
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths)))
    print(f"({len(cells)} rows)")


def _publication(props, first: date, last: date) -> None:
    published = warehouse.publications(
        props, datetime.combine(first, time()), datetime.combine(last + timedelta(days=1), time())
    )
    bound = HourlySettings.from_props(props).bound  # what the late-hour alarm holds hours to
    _print(
        analytics.Result(
            ("window_start", "first_published_at", "delay_min", "corrections"),
            [
                (
                    p.window_start,
                    p.first_published_at,
                    round(p.delay.total_seconds() / 60, 1),
                    p.corrections,
                )
                for p in published
            ],
        )
    )
    if published:
        summary = summarize_delays(published, bound)
        print(
            f"{summary.hours} hours: delay p50 {summary.p50}, p95 {summary.p95}, max "
            f"{summary.max}; {summary.within_target} within the {summary.target} bound "
            f"(HourlySettings.bound)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analytics", description=__doc__.split("\n")[0])
    parser.add_argument("--sql", help="free SQL over hourly_store_metrics")
    parser.add_argument("--warehouse", action="store_true", help="ask the warehouse, not the lake")
    questions = parser.add_subparsers(dest="question")
    # Also accepted after the question; SUPPRESS keeps the top-level value otherwise.
    engine = argparse.ArgumentParser(add_help=False)
    engine.add_argument(
        "--warehouse",
        action="store_true",
        default=argparse.SUPPRESS,
        help="ask the warehouse, not the lake",
    )
    day = argparse.ArgumentParser(add_help=False)
    day.add_argument("--day", type=date.fromisoformat, required=True)
    days = argparse.ArgumentParser(add_help=False)
    days.add_argument("--from", dest="first", type=date.fromisoformat, required=True)
    days.add_argument("--to", dest="last", type=date.fromisoformat, required=True)
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument("--store", type=int, required=True)
    questions.add_parser("store-day", parents=[engine, store, day], help="one store's day by hour")
    top = questions.add_parser("top-stores", parents=[engine, day], help="top stores by revenue")
    top.add_argument("--limit", type=int, default=10)
    questions.add_parser("channel-share", parents=[engine, days], help="online vs in-store orders")
    trend = questions.add_parser(
        "aov-trend", parents=[engine, days], help="average order value per day"
    )
    trend.add_argument("--store", type=int)
    chart = questions.add_parser("chart", parents=[engine, store, day], help="PNG of a store's day")
    chart.add_argument("--out", type=Path)
    questions.add_parser(
        "publication", parents=[days], help="publication delay per hour (warehouse)"
    )
    args = parser.parse_args(argv)
    if bool(args.sql) == bool(args.question):
        parser.error("give either a question or --sql")

    props = load_properties()
    validate(props)
    run = analytics.on_warehouse if args.warehouse else analytics.on_lake
    if args.sql:
        _print(run(props, args.sql))
    elif args.question == "store-day":
        _print(run(props, analytics.store_day(args.store, args.day)))
    elif args.question == "top-stores":
        _print(run(props, analytics.top_stores(args.day, args.limit)))
    elif args.question == "channel-share":
        _print(run(props, analytics.channel_share(args.first, args.last)))
    elif args.question == "aov-trend":
        _print(run(props, analytics.aov_trend(args.first, args.last, args.store)))
    elif args.question == "chart":
        out = args.out or Path("out") / f"store{args.store}-{args.day.isoformat()}.png"
        print(analytics.chart_store_day(props, args.store, args.day, out, args.warehouse))
    else:
        _publication(props, args.first, args.last)
    return 0


if __name__ == "__main__":
    sys.exit(main())
