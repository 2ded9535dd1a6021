"""The Lambda handlers of the AWS deployment (deploy/platform.py), run as Lambda runs them
(an S3 event, a scheduled event) against the real local stack: POS ingestion
(``etl.pos_lambda``) and the operational metrics (``etl.health``)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from connectors import aurora, aws
from etl import health, pos_lambda
from tests.pos_support import PosDeliveries, landing_keys, make_order, query


def s3_event(bucket: str, *keys: str) -> dict:
    """An S3 ObjectCreated notification as Lambda receives it (keys URL-encoded)."""
    from urllib.parse import quote_plus

    return {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": bucket}, "object": {"key": quote_plus(key)}},
            }
            for key in keys
        ]
    }


def test_systems_come_from_manifest_keys_and_a_schedule_means_every_system():
    event = s3_event(
        "b",
        "pos/landing/store_system=07/S07-1.manifest.json",
        "pos/landing/store_system=07/S07-1.jsonl.gz",
        "pos/landing/store_system=03/S03-9.manifest.json",
    )
    assert pos_lambda.systems_in(event) == [3, 7]
    assert pos_lambda.systems_in(s3_event("b", "pos/archive/x.manifest.json")) == []
    assert pos_lambda.systems_in({"source": "aws.events", "detail-type": "Scheduled Event"}) is None


@pytest.fixture
def fresh_handler(monkeypatch):
    monkeypatch.setattr(pos_lambda, "_ingestion", None)


@pytest.mark.integration
def test_a_landed_manifest_event_ingests_that_batch(clean_stack, tmp_path, fresh_handler):
    now_ms = int(time.time() * 1000)
    sold = [make_order(n, 5, now_ms + n) for n in range(1, 4)]
    manifest = PosDeliveries(clean_stack, tmp_path).deliver(sold)
    (manifest_key,) = [
        k for k in landing_keys(clean_stack, "pos/landing/") if k.endswith(".manifest.json")
    ]
    bucket = clean_stack["Lake"]["bucket"]

    # The data file's own event is not a manifest: nothing happens.
    data_key = manifest_key.replace(".manifest.json", ".jsonl.gz")
    assert pos_lambda.handler(s3_event(bucket, data_key)) == {"outcomes": []}
    result = pos_lambda.handler(s3_event(bucket, manifest_key))

    assert result == {"outcomes": [{"batch_id": manifest.batch_id, "status": "loaded"}]}
    assert query(clean_stack, "SELECT count(DISTINCT order_id) FROM order_fct") == [(3,)]
    assert landing_keys(clean_stack, "pos/landing/") == []
    # The scheduled sweep finds nothing left to do.
    assert pos_lambda.handler({"source": "aws.events"}) == {"outcomes": []}


@pytest.mark.integration
def test_the_scheduled_sweep_ingests_what_no_event_announced(clean_stack, tmp_path, fresh_handler):
    now_ms = int(time.time() * 1000)
    deliveries = PosDeliveries(clean_stack, tmp_path)
    first = deliveries.deliver([make_order(1, 5, now_ms)])
    second = deliveries.deliver([make_order(2, 11, now_ms)])

    result = pos_lambda.handler({"source": "aws.events", "detail-type": "Scheduled Event"})

    assert sorted(o["batch_id"] for o in result["outcomes"]) == sorted(
        [first.batch_id, second.batch_id]
    )


@pytest.mark.integration
def test_health_counts_recent_dead_letters_per_job_and_etl_freshness(clean_stack):
    now = datetime.now(UTC)
    with aurora.connect(clean_stack) as conn:
        for i, (job, age) in enumerate(
            [
                ("order_enrichment", 1),
                ("order_enrichment", 2),
                ("delivery", 3),
                ("order_enrichment", 30),
            ]
        ):
            conn.execute(
                "INSERT INTO dead_letter (dead_letter_id, job, reason, detail, payload,"
                " received_at) VALUES (%s, %s, 'invalid', 'd', 'p', %s)",
                (f"health-{i}", job, now - timedelta(minutes=age)),
            )
        assert health.measure(conn, now)["etl_freshness_minutes"] is None
        hour = (now - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
        conn.execute(
            "INSERT INTO etl_run (run_id, hour, kind, cause, status) VALUES"
            " ('r1', %s, 'export', 'scheduled', 'succeeded'),"
            " ('r2', %s, 'export', 'scheduled', 'failed')",
            (hour, hour + timedelta(hours=1)),
        )
        measured = health.measure(conn, now)
    assert measured["dead_letters"] == {
        "order_enrichment": 2,
        "inventory_windowing": 0,
        "delivery": 1,
    }
    assert measured["etl_freshness_minutes"] == pytest.approx(
        (now - hour - timedelta(hours=1)) / timedelta(minutes=1)
    )

    published = health.publish(clean_stack, now)
    assert published["dead_letters"]["order_enrichment"] == 2
    cloudwatch = aws.client(clean_stack, "cloudwatch")
    stats = cloudwatch.get_metric_statistics(
        Namespace=health.NAMESPACE,
        MetricName="DeadLetters",
        Dimensions=[{"Name": "Job", "Value": "order_enrichment"}],
        StartTime=now - timedelta(seconds=1),
        EndTime=now + timedelta(seconds=1),
        Period=60,
        Statistics=["Sum"],
    )
    assert [point["Sum"] for point in stats["Datapoints"]] == [2.0]
    names = {
        m["MetricName"] for m in cloudwatch.list_metrics(Namespace=health.NAMESPACE)["Metrics"]
    }
    # the namespace is shared with etl.freshness (LateHours, UnpublishedHours), and moto
    # keeps metrics across tests
    assert names - {"LateHours", "UnpublishedHours"} == {"DeadLetters", "EtlFreshnessMinutes"}
