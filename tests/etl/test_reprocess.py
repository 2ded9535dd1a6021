"""Reprocessing history after a logic fix: a day published with a bug in a metric (in the
SQL the Flink batch run executes), the fix, ``python -m etl.reprocess`` over the day from
S3 staging, and the lake and the warehouse hold exactly what a clean run gives."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

import stack
from connectors import aws, lake, warehouse
from etl import hourly, metrics
from pizzastream.config import REPO_ROOT
from pizzastream.metrics import SaleOrder, metric_rows, metric_sql
from pizzastream.orders import Channel, epoch_ms
from tests.pos_support import insert_sales, make_order, query

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOUR = timedelta(hours=1)


def a_day_of_sales(day: datetime):
    """Every hour: online pickups and deliveries and in-store orders at three stores."""
    return [
        make_order(
            24 * n + hour,
            1 + n % 3,
            epoch_ms(day + hour * HOUR) + n * 600_000,
            channel=Channel.IN_STORE if n % 2 else Channel.ONLINE,
            fulfillment="delivery" if n == 2 else None,
        )
        for hour in range(24)
        for n in range(5)
    ]


def in_store_counted_as_online(view: str = "sale_orders") -> str:
    """The deliberate bug: a copy-paste slip in the in-store filter."""
    return metric_sql(view).replace(
        f"channel = '{Channel.IN_STORE}'", f"channel = '{Channel.ONLINE}'"
    )


def published(props) -> tuple[dict[str, str], list[tuple]]:
    """The lake objects' content and the warehouse rows (without their load time)."""
    s3, bucket = aws.client(props, "s3"), props["Lake"]["bucket"]
    return (
        {
            key: hashlib.sha256(s3.get_object(Bucket=bucket, Key=key)["Body"].read()).hexdigest()
            for key in lake.object_keys(props)
        },
        query(
            props,
            "SELECT store_id, window_start, window_end, orders, items, revenue,"
            " online_orders, in_store_orders, delivery_orders, avg_order_value,"
            " source FROM hourly_store_metrics ORDER BY window_start, store_id",
            group="Warehouse",
        ),
    )


def test_reprocessing_a_day_after_a_fix_gives_exactly_what_a_clean_run_gives(
    clean_stack, monkeypatch
):
    props = clean_stack
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)
    sold = a_day_of_sales(day)
    expected = metric_rows(SaleOrder.from_enriched(order) for order in sold)
    insert_sales(props, sold)

    with monkeypatch.context() as patch:
        patch.setattr(metrics, "metric_sql", in_store_counted_as_online)
        exported = hourly.run(props)  # the day goes out with the bug
    assert {hour for hour, (cause, _) in exported.items() if cause == "late_rows"} == {
        day + h * HOUR for h in range(24)
    }
    buggy = warehouse.metric_rows(props)
    assert buggy != expected
    assert [row.in_store_orders for row in buggy] == [row.online_orders for row in buggy]

    reprocessed = subprocess.run(
        [
            sys.executable,
            "-m",
            "etl.reprocess",
            "--from",
            day.isoformat(),
            "--to",
            (day + 24 * HOUR).isoformat(),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert reprocessed.returncode == 0, reprocessed.stderr[-3000:]
    assert "24/24 hours" in reprocessed.stderr
    after_fix = published(props)
    assert warehouse.metric_rows(props) == lake.read_metrics(props) == expected
    assert query(
        props,
        "SELECT count(*) FROM etl_run WHERE kind = 'reprocess'"
        " AND status = 'succeeded' AND metric_rows = 3",
    ) == [(24,)]

    stack.reset_data(props)  # a clean run of the same day
    insert_sales(props, sold)
    hourly.run(props)
    assert after_fix == published(props)
