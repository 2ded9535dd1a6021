"""POS ingestion: the seed's 15-minute Lambda. ``python -m etl.pos_ingestion [--once]``.

For each manifest under ``pos/landing/`` (the POS writes it after the data):

1. A batch id the ledger (``pos_batch``) already has as loaded is a duplicate delivery:
   counted, archived, nothing else.
2. Otherwise the batch streams from S3 through gunzip, line by line, into a temporary
   table (COPY), while ``BatchDigest`` checks every line and the count, checksum and time
   range against the manifest. Then, in the same transaction, the rows go into
   ``order_fct`` with ``ON CONFLICT DO NOTHING``, the ledger row is written and the orders
   whose rows were new are noted in the outbox (``pos_batch_order``). Memory stays bounded
   whatever the batch size; a crash leaves nothing half-loaded.
3. A batch that does not match its manifest (cut short, damaged gzip, bad line) is rolled
   back and quarantined whole: copied to ``pos/quarantine/`` with a ``.reason.json`` and
   ledgered as ``quarantined``. A later complete delivery of the same batch id still loads.
4. The outbox becomes sale records on ``sales`` (one per order, ``sale_json`` of the
   regrouped line items), so hourly_metrics sees in-store sales; a batch of sales that
   were all known already sends nothing. Sales are sent after the commit and the outbox
   drained after the send: a crash in between re-sends (same event ids), never loses.
5. The delivery is moved to ``pos/archive/``, so landing only holds what is still to do.
"""
from __future__ import annotations

import argparse
import gzip
import json
import logging
import signal
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import astuple, dataclass
from datetime import datetime, timezone

import psycopg
from botocore.exceptions import ClientError

from connectors import aurora, aws
from connectors.kinesis_producer import KinesisProducer
from etl import locks
from pizzastream.config import load_properties, stream_name
from pizzastream.pos_batches import (
    ARCHIVE_PREFIX, DATA_SUFFIX, LANDING_PREFIX, MANIFEST_SUFFIX, QUARANTINE_PREFIX,
    REASON_SUFFIX, BadBatch, BatchDigest, Fault, Manifest, SettledLine, batch_key,
    orders_from_lines, parse_manifest_key,
)
from pizzastream.sales import FACT_COLUMNS, sale_json

log = logging.getLogger(__name__)

Props = dict[str, dict[str, str]]
MAX_LINE_BYTES = 64 * 1024          # a longer "line" is damage, and must not fill memory
_STAGE = "pos_stage"
_CREATE_STAGE = f"""
CREATE TEMPORARY TABLE {_STAGE} (
    store_id integer, order_id text, product_id integer, transaction_ts_ms bigint,
    quantity integer, unit_price_cents bigint, total_cents bigint, delivery_type text,
    channel text
) ON COMMIT DROP"""
# New rows only; the orders they belong to go to the outbox in the same statement.
_INSERT_NEW_ROWS = f"""
WITH inserted AS (
    INSERT INTO order_fct (store_id, order_id, product_id, transaction_ts, quantity,
                           unit_price, total_transaction_amt, delivery_type, channel)
    SELECT store_id, order_id, product_id,
           timestamptz 'epoch' + transaction_ts_ms * interval '1 millisecond', quantity,
           unit_price_cents / 100.0, total_cents / 100.0, delivery_type, channel
    FROM {_STAGE}
    ON CONFLICT (order_id, product_id) DO NOTHING
    RETURNING order_id
), outbox AS (
    INSERT INTO pos_batch_order (batch_id, order_id)
    SELECT DISTINCT %(batch_id)s, order_id FROM inserted
)
SELECT count(*) FROM inserted"""
_CLAIM = """
INSERT INTO pos_batch (batch_id, store_system, status, record_count, min_ts, max_ts)
VALUES (%(batch_id)s, %(system)s, 'loaded', %(count)s, %(min_ts)s, %(max_ts)s)
ON CONFLICT (batch_id) DO UPDATE SET
    status = 'loaded', reason = NULL, detail = NULL, record_count = EXCLUDED.record_count,
    min_ts = EXCLUDED.min_ts, max_ts = EXCLUDED.max_ts,
    deliveries = pos_batch.deliveries + 1, updated_at = now()"""
_QUARANTINE = """
INSERT INTO pos_batch (batch_id, store_system, status, reason, detail)
VALUES (%s, %s, 'quarantined', %s, %s)
ON CONFLICT (batch_id) DO UPDATE SET
    status = 'quarantined', reason = EXCLUDED.reason, detail = EXCLUDED.detail,
    deliveries = pos_batch.deliveries + 1, updated_at = now()
WHERE pos_batch.status = 'quarantined'"""
# The outbox's orders with their line items, ordered so orders regroup one at a time.
_OUTBOX_LINES = """
SELECT f.store_id, f.order_id, f.product_id,
       (extract(epoch FROM f.transaction_ts) * 1000)::bigint, f.quantity,
       (f.unit_price * 100)::bigint, (f.total_transaction_amt * 100)::bigint,
       f.delivery_type, f.channel
FROM pos_batch_order o JOIN order_fct f USING (order_id)
WHERE o.batch_id = %s
ORDER BY f.order_id, f.product_id"""


@dataclass(frozen=True)
class Outcome:
    """What one run did with one delivery: ``loaded``, ``duplicate`` or ``quarantined``."""

    batch_id: str
    status: str
    detail: str = ""


class PosIngestion:
    def __init__(self, props: Props):
        self._props = props
        self._s3 = aws.client(props, "s3")
        self._bucket = props["Lake"]["bucket"]
        self._systems = int(props["Pos"]["store_systems"])
        self._fetch_rows = int(props["Etl"]["fetch_rows"])
        self._producer = KinesisProducer(props)
        self._sales = stream_name(props, "sales")

    def run_once(self) -> list[Outcome]:
        """Sends what an earlier run left in the outbox, then ingests every delivery."""
        with aurora.connect(self._props) as conn, locks.exclusive(conn, locks.POS_INGESTION):
            for (batch,) in conn.execute(
                    "SELECT batch_id FROM pos_batch WHERE status = 'loaded'").fetchall():
                self._publish(conn, batch)
            return [self._ingest(conn, system, batch) for system, batch in self._deliveries()]

    def _deliveries(self) -> Iterator[tuple[int, str]]:
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self._bucket, Prefix=LANDING_PREFIX)
        for page in pages:
            for obj in page.get("Contents", []):
                parsed = parse_manifest_key(obj["Key"])
                if parsed:
                    yield parsed

    def _ingest(self, conn: psycopg.Connection, system: int, batch: str) -> Outcome:
        manifest_key = batch_key(LANDING_PREFIX, system, batch, MANIFEST_SUFFIX)
        response = self._s3.get_object(Bucket=self._bucket, Key=manifest_key)
        etag, raw_manifest = response["ETag"], response["Body"].read()
        if _status(conn, batch) in ("loaded", "published"):
            conn.execute("UPDATE pos_batch SET deliveries = deliveries + 1, updated_at = now()"
                         " WHERE batch_id = %s", (batch,))
            self._move(system, batch, ARCHIVE_PREFIX, etag)
            return Outcome(batch, "duplicate")
        try:
            manifest = _manifest(raw_manifest, system, batch)
            inserted = self._load(conn, manifest)
        except BadBatch as bad:
            self._quarantine(conn, system, batch, bad, etag)
            return Outcome(batch, "quarantined", f"{bad.fault}: {bad.detail}")
        sent = self._publish(conn, batch)
        self._move(system, batch, ARCHIVE_PREFIX, etag)
        return Outcome(batch, "loaded", f"{manifest.record_count} lines, {inserted} new rows, "
                                        f"{sent} sales")

    def _load(self, conn: psycopg.Connection, manifest: Manifest) -> int:
        """Loads a batch in one transaction; raises ``BadBatch`` (nothing loaded) if it
        is not exactly what its manifest describes. Returns the rows that were new."""
        with conn.transaction():
            conn.execute(_CREATE_STAGE)
            digest = BatchDigest(manifest.store_system, self._systems)
            with conn.cursor().copy(f"COPY {_STAGE} ({', '.join(FACT_COLUMNS)}) FROM STDIN") \
                    as copy:
                for line in self._lines(manifest, digest):
                    copy.write_row(astuple(line))
            digest.verify(manifest)
            conn.execute(_CLAIM, {"batch_id": manifest.batch_id, "system": manifest.store_system,
                                  "count": manifest.record_count, "min_ts": manifest.min_ts,
                                  "max_ts": manifest.max_ts})
            inserted = conn.execute(_INSERT_NEW_ROWS, {"batch_id": manifest.batch_id}).fetchone()[0]
            conn.execute("UPDATE pos_batch SET inserted_rows = %s WHERE batch_id = %s",
                         (inserted, manifest.batch_id))
        return inserted

    def _lines(self, manifest: Manifest, digest: BatchDigest) -> Iterator[SettledLine]:
        """The batch's lines, checked, streamed from S3: one line in memory at a time."""
        key = batch_key(LANDING_PREFIX, manifest.store_system, manifest.batch_id, DATA_SUFFIX)
        try:
            body = self._s3.get_object(Bucket=self._bucket, Key=key)["Body"]
        except ClientError as error:
            if error.response["Error"]["Code"] not in ("NoSuchKey", "404"):
                raise
            raise BadBatch(Fault.MISSING_DATA, f"{key} is not there") from None
        with body, gzip.GzipFile(fileobj=body) as lines:
            try:
                while raw := lines.readline(MAX_LINE_BYTES + 1):
                    if len(raw) > MAX_LINE_BYTES:
                        raise BadBatch(Fault.BAD_LINE, f"line {digest.count + 1} is longer "
                                                       f"than {MAX_LINE_BYTES} bytes")
                    yield digest.add(raw)
            except (gzip.BadGzipFile, EOFError, zlib.error) as error:
                raise BadBatch(Fault.BAD_GZIP, f"after {digest.count} lines: {error}") from None

    def _publish(self, conn: psycopg.Connection, batch: str) -> int:
        """Sends the outbox's orders of ``batch`` as sale records, then drains it."""
        with conn.transaction(), conn.cursor(name=f"outbox_{batch}") as cursor:
            cursor.itersize = self._fetch_rows
            cursor.execute(_OUTBOX_LINES, (batch,))
            orders = orders_from_lines(SettledLine(*row) for row in cursor)
            sent = self._producer.put(
                self._sales, ((str(order.store_id), sale_json(order).encode()) for order in orders))
        with conn.transaction():
            conn.execute("DELETE FROM pos_batch_order WHERE batch_id = %s", (batch,))
            conn.execute("UPDATE pos_batch SET status = 'published', sales_sent = %s,"
                         " updated_at = now() WHERE batch_id = %s", (sent, batch))
        return sent

    def _quarantine(self, conn: psycopg.Connection, system: int, batch: str, bad: BadBatch,
                    etag: str) -> None:
        log.warning("quarantining %s: %s", batch, bad)
        reason = {"batch_id": batch, "store_system": system, "fault": str(bad.fault),
                  "detail": bad.detail, "quarantined_at": datetime.now(timezone.utc).isoformat()}
        self._s3.put_object(Bucket=self._bucket, Body=json.dumps(reason).encode(),
                            Key=batch_key(QUARANTINE_PREFIX, system, batch, REASON_SUFFIX))
        conn.execute(_QUARANTINE, (batch, system, str(bad.fault), bad.detail))
        self._move(system, batch, QUARANTINE_PREFIX, etag)

    def _move(self, system: int, batch: str, prefix: str, etag: str) -> None:
        """Moves a delivery out of landing, unless its manifest changed since it was read:
        then the POS delivered again meanwhile, and that delivery is the next run's."""
        manifest_key = batch_key(LANDING_PREFIX, system, batch, MANIFEST_SUFFIX)
        for suffix in (DATA_SUFFIX, MANIFEST_SUFFIX):
            source = batch_key(LANDING_PREFIX, system, batch, suffix)
            try:
                self._s3.copy({"Bucket": self._bucket, "Key": source}, self._bucket,
                              batch_key(prefix, system, batch, suffix))
            except ClientError as error:
                if error.response["Error"]["Code"] not in ("NoSuchKey", "404"):
                    raise
        if self._s3.head_object(Bucket=self._bucket, Key=manifest_key)["ETag"] != etag:
            log.warning("%s was delivered again while it was ingested; left in landing", batch)
            return
        self._s3.delete_objects(Bucket=self._bucket, Delete={"Objects": [
            {"Key": batch_key(LANDING_PREFIX, system, batch, suffix)}
            for suffix in (DATA_SUFFIX, MANIFEST_SUFFIX)]})


def _manifest(raw: bytes, system: int, batch: str) -> Manifest:
    manifest = Manifest.from_json(raw)
    if (manifest.batch_id, manifest.store_system) != (batch, system):
        raise BadBatch(Fault.BAD_MANIFEST, f"manifest names {manifest.batch_id} of store system "
                                           f"{manifest.store_system}, key {batch} of {system}")
    return manifest


def _status(conn: psycopg.Connection, batch: str) -> str | None:
    row = conn.execute("SELECT status FROM pos_batch WHERE batch_id = %s", (batch,)).fetchone()
    return row[0] if row else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m etl.pos_ingestion",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--once", action="store_true", help="one run, then exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    props = load_properties()
    ingestion = PosIngestion(props)
    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.append(True))
    if args.once:
        _report(ingestion.run_once())
        return 0
    interval_s = float(props["Etl"]["ingestion_interval_s"])
    while not stop:
        started = time.monotonic()
        try:
            _report(ingestion.run_once())
        except Exception:  # noqa: BLE001 - like a failed Lambda invocation: the next one retries
            log.exception("ingestion run failed; retrying at the next interval")
        while not stop and time.monotonic() < started + interval_s:
            time.sleep(0.5)
    return 0


def _report(outcomes: list[Outcome]) -> None:
    for outcome in outcomes:
        print(f"{outcome.batch_id} {outcome.status} {outcome.detail}".rstrip(), flush=True)


if __name__ == "__main__":
    sys.exit(main())
