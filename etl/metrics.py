"""The hourly store metrics of given hours, recomputed from S3 staging and published: the
step the hourly ETL and reprocessing share.

The computation is the hourly_metrics job's own SQL in Flink batch mode
(``jobs.hourly_metrics.run_batch``), so a fix to a metric reaches history through the same
code as live data; ``publish_hours`` replaces each hour's lake object and warehouse rows.
The streaming job publishes an hour itself when its watermark passes the hour's end; until
then (``stream_closed``) a batch correction would race it, so the ETL leaves such hours to
the stream and takes them up once they are closed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from jobs import hourly_metrics
from pizzastream.config import Props
from pizzastream.publication import HourlySettings
from pizzastream.settings import EtlSettings


def refresh(
    props: Props, hours: Sequence[datetime], published: Callable[[dict[datetime, int]], None]
) -> None:
    """Recomputes and publishes ``hours`` (aware UTC, all staged), ``Etl.metrics_chunk_hours``
    at a time (one Flink batch job each: a long outage or a first run must not become one
    huge job). After each chunk, ``published`` gets the metric rows now published per hour
    of the chunk (0 for an hour without sales, whose rows are removed)."""
    hours = sorted(hours)
    size = EtlSettings.from_group(props["Etl"]).metrics_chunk_hours
    for first in range(0, len(hours), size):
        chunk = hours[first : first + size]
        rows = hourly_metrics.run_batch(props, chunk)
        hourly_metrics.publish_hours(props, rows, chunk)
        counts = Counter(row.window_start.replace(tzinfo=UTC) for row in rows)
        published({hour: counts[hour] for hour in chunk})


def stream_closed(props: Props, hour: datetime, now: datetime) -> bool:
    """Whether the streaming job has first published ``hour`` by ``now`` (both aware UTC).
    It may still correct it from late sales for ``allowed_lateness_minutes``: the ETL's
    recomputation from ``order_fct`` and the stream's correction count the same sales."""
    closes_at = HourlySettings.from_props(props).closes_at(hour.replace(tzinfo=None))
    return closes_at.replace(tzinfo=UTC) <= now
