"""Reprocessing history: ``python -m etl.reprocess --from ISO --to ISO``.

After a bug in the metrics logic is fixed, the hourly store metrics of ``[from, to)`` are
recomputed from the raw rows in S3 staging (kept for exactly this, seed design section 6;
the operational database takes no analytical load) by the same hourly_metrics code in
Flink batch mode that the hourly ETL runs (``etl.metrics``). Each hour's lake partition
and warehouse rows are replaced as a unit, so readers see an hour either before or after,
never half.

Hours are done ``Etl.metrics_chunk_hours`` at a time (one Flink batch job each), with a
progress bar on stderr and a row per hour in ``etl_run``. Only hours that have a staging
partition are touched: an hour never exported has nothing to reprocess. It takes the
hourly ETL's lock, so the two never write the same hour at once.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

from connectors import aurora
from etl import locks, metrics
from etl.hourly import first_open_hour, parse_hour
from etl.runlog import RunLog
from etl.staging import Staging
from pizzastream.config import Props, load_properties
from pizzastream.settings import validate


def reprocess(
    props: Props,
    start: datetime,
    end: datetime,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> dict[datetime, int]:
    """Recomputes and republishes the staged hours in ``[start, end)``, up to the first hour
    the stream still publishes itself; returns the metric rows per hour.
    ``progress(done, total)`` is called after every chunk of hours."""
    closed = first_open_hour(props, datetime.now(UTC))
    hours = Staging(props).hours(start, min(end, closed))
    published: dict[datetime, int] = {}
    with aurora.connect(props) as conn, locks.exclusive(conn, locks.HOURLY):
        runlog = RunLog(conn, "reprocess")
        runlog.start({hour: "reprocess" for hour in hours})

        def done(counts: dict[datetime, int]) -> None:
            runlog.finish(counts)
            published.update(counts)
            progress(len(published), len(hours))

        progress(0, len(hours))
        try:
            metrics.refresh(props, hours, done)
        except BaseException as error:
            runlog.fail(error)
            raise
    return published


class ProgressBar:
    """``[#####.....] 12/24 hours, 0:01:10 elapsed, ~0:01:10 left`` redrawn in place."""

    def __init__(self, stream=sys.stderr, width: int = 30):
        self._stream = stream
        self._width = width
        self._start = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        elapsed = time.monotonic() - self._start
        filled = self._width * done // max(total, 1)
        left = f", ~{_clock(elapsed / done * (total - done))} left" if done else ""
        self._stream.write(
            f"\r[{'#' * filled}{'.' * (self._width - filled)}] {done}/{total} "
            f"hours, {_clock(elapsed)} elapsed{left}"
        )
        if done == total:
            self._stream.write("\n")
        self._stream.flush()


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m etl.reprocess", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--from",
        dest="start",
        type=parse_hour,
        required=True,
        help="first hour (ISO-8601, UTC unless it says otherwise)",
    )
    parser.add_argument(
        "--to", dest="end", type=parse_hour, required=True, help="end of the range, exclusive"
    )
    args = parser.parse_args(argv)
    props = load_properties()
    validate(props)
    try:
        published = reprocess(props, args.start, args.end, ProgressBar())
    except locks.Busy as busy:
        parser.exit(1, f"{parser.prog}: {busy}; try again when it is done\n")
    for hour, rows in published.items():
        print(f"{hour:%Y-%m-%dT%H:00Z} {rows} metric rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
