"""Operational metrics that live in the database, published to CloudWatch for the alarms.

Two numbers an operator needs and no AWS service measures, because they are rows in Aurora:

* ``DeadLetters`` per ``Job``: rows added to ``dead_letter`` in the last ``WINDOW`` (bad input
  is set aside with its reason and never stops a job, so a burst is only visible here);
* ``EtlFreshnessMinutes``: minutes since the end of the newest hour the hourly ETL exported
  successfully (``etl_run``); it grows when the ETL stops running or keeps failing.

``python -m etl.health`` prints them; on AWS the stack's scheduled Lambda function
(``etl.health.handler``, every ``WINDOW``) puts them into the ``pizzastream`` namespace.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime, timedelta

import psycopg

from connectors import aurora, aws
from pizzastream.config import load_properties
from pizzastream.settings import validate

log = logging.getLogger(__name__)

NAMESPACE = "pizzastream"
WINDOW = timedelta(minutes=5)
_DEAD_LETTERS = """
SELECT job, count(*) FROM dead_letter
WHERE received_at >= %s AND received_at < %s GROUP BY job ORDER BY job"""
_NEWEST_EXPORTED_HOUR = """
SELECT max(hour) FROM etl_run WHERE kind = 'export' AND status = 'succeeded'"""
# The writers of dead_letter (jobs/*.py JOB_NAME, delivery.service.JOB).
JOBS = ("order_enrichment", "inventory_windowing", "delivery")


def measure(conn: psycopg.Connection, now: datetime) -> dict:
    """``{"dead_letters": {job: count}, "etl_freshness_minutes": float | None}`` at ``now``
    (None: the ETL never succeeded yet). Every job of ``JOBS`` is reported, 0 included, so
    the alarm sees data points rather than missing ones."""
    counts = dict.fromkeys(JOBS, 0)
    counts.update(conn.execute(_DEAD_LETTERS, (now - WINDOW, now)).fetchall())
    (newest,) = conn.execute(_NEWEST_EXPORTED_HOUR).fetchone()  # type: ignore[misc]  # an aggregate: always one row
    freshness = (
        None if newest is None else (now - (newest + timedelta(hours=1))) / timedelta(minutes=1)
    )
    return {"dead_letters": counts, "etl_freshness_minutes": freshness}


def metric_data(measured: dict, now: datetime) -> list[dict]:
    data = [
        {
            "MetricName": "DeadLetters",
            "Dimensions": [{"Name": "Job", "Value": job}],
            "Timestamp": now,
            "Value": count,
            "Unit": "Count",
        }
        for job, count in sorted(measured["dead_letters"].items())
    ]
    if measured["etl_freshness_minutes"] is not None:
        data.append(
            {
                "MetricName": "EtlFreshnessMinutes",
                "Timestamp": now,
                "Value": measured["etl_freshness_minutes"],
                "Unit": "None",
            }
        )
    return data


def publish(props: dict, now: datetime | None = None) -> dict:
    now = now or datetime.now(UTC)
    with aurora.connect(props) as conn:
        measured = measure(conn, now)
    aws.put_metrics(props, NAMESPACE, metric_data(measured, now))
    return measured


def handler(event: dict, context=None) -> dict:
    """Lambda entry point (``etl.health.handler``), on a schedule every ``WINDOW``."""
    props = load_properties()
    validate(props)
    measured = publish(props)
    log.info("published %s", measured)
    return measured


if __name__ == "__main__":
    props = load_properties()
    validate(props)
    with aurora.connect(props) as connection:
        json.dump(measure(connection, datetime.now(UTC)), sys.stdout, default=str)
    print()
