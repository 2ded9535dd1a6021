"""What the API tests share: tokens, warehouse hours written the way the pipeline writes
them, and waiting for something the server notices on its next poll."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from api import auth
from pizzastream.metrics import MetricRow


def token(props, role: str, stores=(), subject: str = "tester", **kwargs) -> dict:
    """Authorization header for a freshly issued token."""
    issued = auth.issue(props["Api"]["token_secret"], subject, role, stores, **kwargs)
    return {"Authorization": f"Bearer {issued}"}


def metric_row(
    store_id: int,
    hour: datetime,
    orders: int,
    revenue: str,
    items: int = 0,
    online: int | None = None,
    delivery: int = 0,
) -> MetricRow:
    online = orders if online is None else online
    revenue_d = Decimal(revenue)
    return MetricRow(
        store_id,
        hour,
        hour + timedelta(hours=1),
        orders,
        items or orders,
        revenue_d,
        online,
        orders - online,
        delivery,
        (revenue_d / orders).quantize(Decimal("0.01")),
    )


def publish(props, hours: list[datetime], rows: list[MetricRow]) -> None:
    """Loads whole hours into the warehouse as the hourly ETL's corrections do (staged
    merge plus a ``metrics_publication`` row per hour)."""
    from connectors import warehouse

    warehouse.replace_hours(props, hours, rows)


def past_day(days_ago: int = 3) -> datetime:
    """Midnight UTC of a day well outside the live window."""
    today = datetime.now(UTC).replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days_ago)


def eventually(check, timeout_s: float = 10, interval_s: float = 0.1):
    """``check()``'s first truthy result within the time, else the last one for the assert."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval_s)
