"""The late-hour alarm's metrics (``etl.freshness``): measured from Aurora's ``order_fct``
and the warehouse's ``metrics_publication`` and put to CloudWatch (moto, on the local
stack), and put by every hourly ETL run (``python -m etl.hourly``'s main)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from connectors import aurora, aws
from etl import freshness, hourly
from pizzastream.metrics import HOUR
from pizzastream.publication import FreshnessReport, HourlySettings


@pytest.mark.integration
def test_late_and_unpublished_hours_go_to_cloudwatch(clean_stack):
    props = clean_stack
    settings = HourlySettings.from_props(props)
    bound = settings.alarm_bound
    # measured at 45 minutes past the previous hour: its hour F is not due yet, F - 1h is
    now = datetime.now(UTC).replace(minute=45, second=0, microsecond=0) - HOUR
    hour_f = now.replace(minute=0, tzinfo=None)
    on_time, late, missing, current = (hour_f - 3 * HOUR, hour_f - 2 * HOUR, hour_f - HOUR, hour_f)
    old = hour_f - 5 * HOUR  # late too, but before the lookback: no longer counted
    with aurora.connect(props) as conn:
        for n, hour in enumerate((old, on_time, late, missing, current)):
            conn.execute(
                "INSERT INTO order_fct VALUES (1, %s, 1, %s, 1, 8.99, 8.99, NULL,"
                " 'pickup', 'online')",
                (f"S0001-{n}", (hour + timedelta(minutes=5)).replace(tzinfo=UTC)),
            )
    with aurora.connect(props, "Warehouse") as conn:
        # on time: past the publisher's bound (a silent POS held it), within the alarm's
        for hour, delay in (
            (old, bound + timedelta(minutes=1)),
            (on_time, settings.bound + timedelta(minutes=1)),
            (late, bound + timedelta(minutes=1)),
        ):
            conn.execute(
                "INSERT INTO metrics_publication (window_start, window_end, source,"
                " published_at, stores, revenue_change, orders_change)"
                " VALUES (%s, %s, 'stream', %s, 1, 0, 0)",
                (hour, hour + HOUR, hour + HOUR + delay),
            )

    report = freshness.publish(props, now)

    assert (report.late_published, report.overdue) == ([late], [missing])
    assert report.unpublished == [missing, current]
    cloudwatch = aws.client(props, "cloudwatch")
    for name in ("LateHours", "UnpublishedHours"):
        stats = cloudwatch.get_metric_statistics(
            Namespace=freshness.NAMESPACE,
            MetricName=name,
            StartTime=now - timedelta(seconds=1),
            EndTime=now + timedelta(seconds=1),
            Period=60,
            Statistics=["Maximum"],
        )
        assert [point["Maximum"] for point in stats["Datapoints"]] == [1.0], name


def test_every_hourly_etl_run_puts_the_freshness_metrics(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(hourly, "run", lambda props, hour: calls.append("run") or {})
    monkeypatch.setattr(
        freshness,
        "publish",
        lambda props: (
            calls.append("freshness")
            or FreshnessReport([], timedelta(minutes=31), datetime(2026, 11, 24))
        ),
    )

    assert hourly.main([]) == 0

    assert calls == ["run", "freshness"]
    assert "freshness: LateHours 0, UnpublishedHours 0" in capsys.readouterr().out
