"""POS ingestion on AWS: the Lambda function S3 invokes when a POS manifest lands.

The same ``etl.pos_ingestion.PosIngestion`` the local daemon (``python -m etl.pos_ingestion``)
runs, one invocation per S3 event: the store systems whose manifests are in the event are
ingested (under the same per-system locks, so concurrent invocations share the work, and a
manifest whose system another invocation holds is taken by that one or the next). A scheduled
invocation without S3 records (every ``Etl.ingestion_interval_s``, the stack's safety net for
an event that was lost or arrived while its system was busy) covers every system.

Configuration is ``pizzastream.config.load_properties`` as everywhere: the package's
``PIZZASTREAM_PROPERTIES`` file with the stack's ``PIZZASTREAM__<Group>__<key>`` environment
variables; the database password is read from Secrets Manager once per cold start.
"""

from __future__ import annotations

import logging
import urllib.parse

from etl.pos_ingestion import PosIngestion
from pizzastream.config import load_properties
from pizzastream.pos_batches import parse_manifest_key
from pizzastream.settings import validate

log = logging.getLogger(__name__)
_ingestion: PosIngestion | None = None  # kept between invocations of a warm function


def systems_in(event: dict) -> list[int] | None:
    """The store systems of the landing manifests in an S3 event, in order; None when the
    event has no S3 records (the schedule: every system)."""
    records = [r for r in event.get("Records", []) if r.get("eventSource") == "aws:s3"]
    if not records:
        return None
    systems = set()
    for record in records:
        key = urllib.parse.unquote_plus(record["s3"]["object"]["key"])
        parsed = parse_manifest_key(key)
        if parsed is None:
            log.info("not a landing manifest, ignored: %s", key)
            continue
        systems.add(parsed[0])
    return sorted(systems)


def handler(event: dict, context=None) -> dict:
    """Lambda entry point (``etl.pos_lambda.handler``)."""
    global _ingestion
    if _ingestion is None:
        logging.getLogger().setLevel(logging.INFO)
        props = load_properties()
        validate(props)
        _ingestion = PosIngestion(props)
    systems = systems_in(event)
    outcomes = _ingestion.run_once() if systems is None else _ingestion.run_systems(systems)
    for outcome in outcomes:
        log.info("%s %s %s", outcome.batch_id, outcome.status, outcome.detail)
    return {"outcomes": [{"batch_id": o.batch_id, "status": o.status} for o in outcomes]}
