"""Order traffic into the ``orders`` stream: ``python -m stack.generate --orders N``.

Records come from ``simulation.traffic`` (deterministic by seed), so a run can be
repeated exactly and its report compared with what the pipeline produced. The business
day defaults to the 8 hours ending now: the rules refuse event times in the future, so
a day that has not happened yet would turn valid orders into rejections.

Each run with the same seed produces the same event_ids and order_ids: a second run is a
replay, which the pipeline deduplicates. Use another ``--seed`` for new orders.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from connectors.kinesis_producer import KinesisProducer, Record
from pizzastream.catalog import from_cents
from pizzastream.config import Props, load_properties, stream_name
from pizzastream.orders import OrderRules, epoch_ms
from simulation.traffic import BUSINESS_DAY, OrderTraffic, TrafficReport

PACING_TICKS_PER_SECOND = 10
PROGRESS_REDRAW_S = 0.1


def send_orders(
    props: Props,
    n: int,
    *,
    bad_share: float = 0.05,
    duplicate_share: float = 0.0,
    seed: int = 7,
    day_start: datetime | None = None,
    rate: float = 0.0,
    producer: KinesisProducer | None = None,
    on_sent: Callable[[int], None] | None = None,
    first_sequence: int = 1,
) -> TrafficReport:
    """Generates ``n`` records and puts them on the ``orders`` stream, at most ``rate``
    records per second (0: as fast as Kinesis takes them). Returns what was sent."""
    now = datetime.now(UTC)
    traffic = OrderTraffic(
        OrderRules.from_properties(props["OrderRules"]),
        day_start or now - BUSINESS_DAY,
        seed=seed,
        bad_share=bad_share,
        duplicate_share=duplicate_share,
        first_sequence=first_sequence,
    )
    earliest, latest = traffic.processing_window()
    if not earliest <= epoch_ms(now) <= latest:
        warnings.warn(
            "the order rules, applied now, would reject this day's valid orders as "
            "future or stale events; pick a day_start within the allowed window",
            stacklevel=2,
        )
    producer = producer or KinesisProducer(props)
    stream = stream_name(props, "orders")
    records = ((r.partition_key, r.data) for r in traffic.records(n))
    for chunk in _paced(records, rate):
        producer.put(stream, chunk, on_sent)
    return traffic.report


def _paced(records: Iterable[Record], rate: float) -> Iterator[Iterable[Record]]:
    """Everything at once, or small chunks released on schedule so a slow rate still
    sends steadily instead of waiting to fill a 500-record batch."""
    if rate <= 0:
        yield records
        return
    chunk_size = max(1, round(rate / PACING_TICKS_PER_SECOND))
    start = time.monotonic()
    released = 0
    chunk: list[Record] = []
    for record in records:
        chunk.append(record)
        if len(chunk) == chunk_size:
            yield chunk
            released += len(chunk)
            chunk = []
            time.sleep(max(0.0, start + released / rate - time.monotonic()))
    if chunk:
        yield chunk


class ProgressBar:
    """A plain ``\\r`` progress bar with the send rate, redrawn at most every 0.1 s."""

    def __init__(self, total: int, width: int = 30, stream=None):
        self._total = max(total, 1)
        self._width = width
        self._stream = stream or sys.stderr
        self._done = 0
        self._start = time.monotonic()
        self._drawn_at = 0.0

    def __call__(self, count: int) -> None:
        self._done += count
        now = time.monotonic()
        if now - self._drawn_at >= PROGRESS_REDRAW_S or self._done >= self._total:
            self._drawn_at = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        filled = self._width * self._done // self._total
        rate = self._done / max(now - self._start, 1e-9)
        self._stream.write(
            f"\r[{'#' * filled}{'.' * (self._width - filled)}] "
            f"{self._done}/{self._total} {rate:,.0f} records/s"
        )
        self._stream.flush()

    def close(self) -> None:
        self._stream.write("\n")


def format_report(report: TrafficReport) -> str:
    """The report as a table for the terminal."""
    rows = [
        *sorted(report.by_kind.items(), key=lambda kv: (-kv[1], kv[0])),
        ("total", report.records),
        ("", ""),
        *(
            (f"valid {channel}", count)
            for channel, count in sorted(report.valid_by_channel.items())
        ),
        *(
            (f"valid {fulfillment}", count)
            for fulfillment, count in sorted(report.valid_by_fulfillment.items())
        ),
        ("line items", report.line_items),
        ("units", report.units),
        ("revenue", from_cents(report.revenue_cents)),
    ]
    width = max(len(str(name)) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value:>12}" for name, value in rows)


def _utc_datetime(text: str) -> datetime:
    """An ISO-8601 time; without an offset it is taken as UTC."""
    moment = datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m stack.generate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--orders", type=int, required=True, help="records to send")
    parser.add_argument("--bad-share", type=float, default=0.05)
    parser.add_argument("--duplicate-share", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--day-start",
        type=_utc_datetime,
        help="start of the 8-hour business day (default: 8 hours ago)",
    )
    parser.add_argument(
        "--rate", type=float, default=0.0, help="records per second, 0 for as fast as possible"
    )
    parser.add_argument(
        "--first-sequence",
        type=int,
        default=1,
        help="number of each store's first order (a later wave starts above)",
    )
    parser.add_argument("--report", type=Path, help="also write the report as JSON here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _arguments(argv)
    progress = ProgressBar(args.orders)
    report = send_orders(
        load_properties(),
        args.orders,
        bad_share=args.bad_share,
        duplicate_share=args.duplicate_share,
        seed=args.seed,
        day_start=args.day_start,
        rate=args.rate,
        on_sent=progress,
        first_sequence=args.first_sequence,
    )
    progress.close()
    print(format_report(report))
    if args.report:
        args.report.write_text(json.dumps(report.to_dict(), indent=2) + "\n")


if __name__ == "__main__":
    main()
