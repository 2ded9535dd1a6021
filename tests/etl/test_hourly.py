"""The hourly ETL end to end on the local stack, metrics through the real Flink batch run:
an hour run twice leaves identical outputs, and a POS batch of hours-old sales corrects its
hour in the lake and the warehouse in place. Both warehouse back ends (``engine_stack``)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from connectors import aws, lake, warehouse
from etl import hourly
from etl.pos_ingestion import PosIngestion
from etl.staging import COLUMNS, Staging, floor_hour
from pizzastream.metrics import SaleOrder, metric_rows
from pizzastream.orders import epoch_ms
from tests.pos_support import PosDeliveries, insert_sales, make_order, query

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOUR = timedelta(hours=1)


def closed_hour(hours_ago: int) -> datetime:
    """An hour the streaming job has certainly published (closed) already."""
    return floor_hour(datetime.now(UTC)) - hours_ago * HOUR


def sales_in(hour: datetime, first: int, count: int, channel: str = "online"):
    return [
        make_order(
            n,
            1 + n % 3,
            epoch_ms(hour) + (n - first) * 45_000,
            channel=channel,
            fulfillment="delivery" if n % 4 == 0 and channel == "online" else None,
        )
        for n in range(first, first + count)
    ]


def objects(props, prefix: str) -> dict[str, str]:
    s3, bucket = aws.client(props, "s3"), props["Lake"]["bucket"]
    return {
        key: hashlib.sha256(s3.get_object(Bucket=bucket, Key=key)["Body"].read()).hexdigest()
        for key in Staging(props).keys(prefix)
    }


def outputs(props) -> tuple:
    """Everything the ETL writes: staging and lake objects' content, warehouse rows."""
    return (
        objects(props, "staging/"),
        objects(props, "lake/"),
        query(
            props, f"SELECT {', '.join(COLUMNS)} FROM order_fct ORDER BY 2, 3", group="Warehouse"
        ),
        query(
            props,
            "SELECT * FROM hourly_store_metrics ORDER BY window_start, store_id",
            group="Warehouse",
        ),
    )


def expected_metrics(sold):
    return metric_rows(SaleOrder.from_enriched(order) for order in sold)


def test_running_an_hour_twice_leaves_identical_outputs(engine_stack):
    clean_stack = engine_stack
    hour = closed_hour(5)
    sold = sales_in(hour, 0, 40) + sales_in(hour, 40, 20, channel="in_store")
    insert_sales(clean_stack, sold)

    assert hourly.run(clean_stack, hour) == {hour: ("requested", 2 * 60)}
    first = outputs(clean_stack)
    assert hourly.run(clean_stack, hour) == {hour: ("requested", 2 * 60)}
    second = outputs(clean_stack)

    def without_publication_time(out):
        return out[:3] + ([row[:-1] for row in out[3]],)

    assert without_publication_time(second) == without_publication_time(first)
    assert list(first[1]) == [
        f"lake/hourly_store_metrics/{lake.partition(hour)}/part-{hour:%Y%m%d%H}-batch"
    ]
    assert (
        warehouse.metric_rows(clean_stack)
        == lake.read_metrics(clean_stack)
        == expected_metrics(sold)
    )
    assert (
        query(
            clean_stack,
            "SELECT cause, rows_exported, files, metric_rows, status"
            " FROM etl_run ORDER BY started_at",
        )
        == [("requested", 120, 1, 3, "succeeded")] * 2
    )


def test_a_late_pos_batch_of_hours_old_sales_corrects_its_hour_in_place(engine_stack, tmp_path):
    clean_stack = engine_stack
    hour = closed_hour(4)
    online = sales_in(hour, 0, 12)
    insert_sales(clean_stack, online)
    hourly.run(clean_stack, hour)
    assert warehouse.metric_rows(clean_stack) == expected_metrics(online)

    in_store = sales_in(hour, 100, 6, channel="in_store")
    PosDeliveries(clean_stack, tmp_path).deliver(in_store)  # hours late
    PosIngestion(clean_stack).run_once()

    report = hourly.run(clean_stack)  # the next scheduled run
    assert report.pop(hour) == ("late_rows", 2 * 18)
    assert set(report.values()) == {("scheduled", 0)}  # the last closed hour
    corrected = expected_metrics(online + in_store)
    assert warehouse.metric_rows(clean_stack) == lake.read_metrics(clean_stack) == corrected
    assert len(lake.object_keys(clean_stack)) == 1  # replaced, not added to
    assert query(clean_stack, "SELECT count(*) FROM order_fct", group="Warehouse") == [(36,)]
