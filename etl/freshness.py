"""The late-hour alarm's numbers (``pizzastream.publication.freshness``), measured after
every hourly ETL run and put to CloudWatch for the alarms of ``deploy/platform.py``.

Over the hours that started in the last three (``publication.LOOKBACK``):

* ``LateHours``: hours first published (``metrics_publication``, the stream's or the ETL's
  load, whichever came first) later than ``HourlySettings.alarm_bound`` after their end;
* ``UnpublishedHours``: hours with sales in Aurora's ``order_fct`` not published yet,
  ``HourlySettings.alarm_bound`` after their end.

The ETL runs here because it alone reaches both Aurora and the warehouse; it runs hourly,
so a late hour is seen at the first run after its bound has passed. If the ETL stops, these
metrics stop with it: the ``etl-freshness`` alarm (``etl.health``) says so.
"""

from __future__ import annotations

from datetime import UTC, datetime

from connectors import aurora, aws, warehouse
from etl.health import NAMESPACE
from pizzastream.config import Props
from pizzastream.publication import FreshnessReport, HourlySettings, freshness, judged_from

_SOLD_HOURS = """
SELECT DISTINCT date_trunc('hour', transaction_ts AT TIME ZONE 'UTC') FROM order_fct
WHERE transaction_ts >= %s AND transaction_ts < %s"""


def measure(props: Props, now: datetime) -> FreshnessReport:
    """The report over the hours ``judged_from(now)`` up to ``now`` (aware)."""
    end = now.astimezone(UTC).replace(tzinfo=None)
    start = judged_from(end)
    with aurora.connect(props) as conn:
        sold = [
            hour
            for (hour,) in conn.execute(_SOLD_HOURS, (start.replace(tzinfo=UTC), now)).fetchall()
        ]
    return freshness(
        warehouse.publications(props, start, end),
        sold,
        HourlySettings.from_props(props).alarm_bound,
        end,
    )


def metric_data(report: FreshnessReport, now: datetime) -> list[dict]:
    return [
        {"MetricName": name, "Timestamp": now, "Value": value, "Unit": "Count"}
        for name, value in report.metrics().items()
    ]


def publish(props: Props, now: datetime | None = None) -> FreshnessReport:
    """Measures at ``now`` (default: the clock) and puts both metrics into ``NAMESPACE``."""
    now = now or datetime.now(UTC)
    report = measure(props, now)
    aws.put_metrics(props, NAMESPACE, metric_data(report, now))
    return report
