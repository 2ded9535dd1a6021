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
   Every refused line (not JSON, nested too deeply, a value outside its ``order_fct``
   column, a store of another system ...) also gets a ``dead_letter`` row identified by
   the file and line number, so a re-run adds no second one; the database refusing the
   batch all the same is quarantined as ``refused_by_database``. A batch whose ingestion
   fails for any other reason (a server down) is left in landing for the next run, and the
   store system's later batches go on (the run then fails with that error, like a failed
   Lambda invocation): no batch blocks the ones after it.
4. The outbox becomes sale records on ``sales`` (one per order, ``sale_json`` of the
   regrouped line items), so hourly_metrics sees in-store sales; a batch of sales that
   were all known already sends nothing. Sales are sent after the commit, and each chunk
   is drained from the outbox after Kinesis took it: a crash re-sends at most one chunk
   (same event ids), never loses one. Then the store system's progress (what its ledger
   says it has delivered up to, ``delivered_up_to``) goes on ``sales`` as one marker per
   store, behind that store's sales: hourly_metrics publishes an hour once every store
   system's batches covering it are in.
5. The delivery is moved to ``pos/archive/``, so landing only holds what is still to do;
   each object is copied and deleted only if it is still the version read (ETag
   conditions), so a re-upload under the same name is left for the next run, never lost.

Runners lock per store system (``etl.locks``), so several can run at once and share the
systems' batches: one runner loads about 10,000 lines a second on a laptop-sized box, and
the seed's peak is about 30 million lines per 15 minutes. (On AWS: one invocation per store
system, or per manifest through S3 event notifications.)
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
from collections.abc import Iterable, Iterator
from dataclasses import astuple, dataclass
from datetime import UTC, datetime

import psycopg
from botocore.exceptions import ClientError

from connectors import aurora, aws
from connectors.kinesis_producer import MAX_BATCH_RECORDS, KinesisProducer
from etl import locks
from pizzastream import dead_letters
from pizzastream.config import Props, load_properties, pos_bucket, stream_name
from pizzastream.dead_letters import PAYLOAD_LIMIT
from pizzastream.pos_batches import (
    ARCHIVE_PREFIX,
    DATA_SUFFIX,
    LANDING_PREFIX,
    MANIFEST_SUFFIX,
    QUARANTINE_PREFIX,
    REASON_SUFFIX,
    BadBatch,
    BadLines,
    BatchDigest,
    Fault,
    Manifest,
    RefusedLine,
    SettledLine,
    batch_key,
    delivered_up_to,
    line_dead_letter,
    orders_from_lines,
    parse_manifest_key,
    progress_json,
    system_prefix,
    system_stores,
)
from pizzastream.sales import FACT_COLUMNS, sale_json
from pizzastream.settings import EtlSettings, PosSettings, need, validate

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 64 * 1024  # a longer "line" is damage, and must not fill memory
# Refused lines of one batch kept for their dead letters (each payload is cut at 4 KiB, so
# at most 4 MB); the batch's reason counts the ones beyond.
MAX_REFUSED_LINES = 1_000
# The ledger rows a store system's progress is read from: a batch missing for longer than
# this no longer holds it back (by then hourly_metrics has published and stopped correcting
# the hours it covers; the hourly ETL counts its sales when it comes).
PROGRESS_LOOKBACK = "3 hours"
_SYSTEM_LEDGER = (
    """
SELECT batch_id, status FROM pos_batch
WHERE store_system = %s AND first_seen_at >= now() - interval '"""
    + PROGRESS_LOOKBACK
    + "'"
)
# S3's answers to a conditional copy or delete of an object that is not the version read
# any more (replaced: 412; gone: 404).
_CHANGED_SINCE_READ = frozenset({"PreconditionFailed", "412", "NoSuchKey", "404"})
_STAGE = "pos_stage"
# The batch's lines in cents and epoch milliseconds (``SettledLine``), converted into
# order_fct's types in the database exactly as the jobs' order_fct sink converts its rows.
_CREATE_STAGE = (
    f"CREATE TEMPORARY TABLE {_STAGE} ("
    f"{', '.join(f'{name} {sql_type}' for name, sql_type in aurora.ORDER_FCT_STAGE)}"
    f") ON COMMIT DROP"
)
# New rows only; the orders they belong to go to the outbox in the same statement.
_INSERT_NEW_ROWS = f"""
WITH inserted AS (
    INSERT INTO order_fct ({", ".join(column for column, _ in aurora.ORDER_FCT_TARGET)})
    SELECT {", ".join(expression for _, expression in aurora.ORDER_FCT_TARGET)} FROM {_STAGE}
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
# The next orders of a batch's outbox with their line items, ordered so that orders
# regroup one at a time.
_NEXT_OUTBOX_LINES = """
WITH next AS (
    SELECT order_id FROM pos_batch_order WHERE batch_id = %s ORDER BY order_id LIMIT %s
)
SELECT f.store_id, f.order_id, f.product_id,
       (extract(epoch FROM f.transaction_ts) * 1000)::bigint, f.quantity,
       (f.unit_price * 100)::bigint, (f.total_transaction_amt * 100)::bigint,
       f.delivery_type, f.channel
FROM next JOIN order_fct f USING (order_id)
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
        self._bucket = pos_bucket(props)
        pos = PosSettings.from_group(props["Pos"])
        self._systems = pos.store_systems
        self._cadence_ms = int(pos.batch_interval_s * 1000)
        self._producer = KinesisProducer(props)
        self._sales = stream_name(props, "sales")

    def run_once(self, systems: Iterable[int] | None = None) -> list[Outcome]:
        """Ingests the deliveries of every store system (or of ``systems``) no other runner
        is working on, after sending what an earlier run of that system left in the outbox."""
        return self.run_systems(range(1, self._systems + 1) if systems is None else systems)

    def run_systems(self, systems: Iterable[int]) -> list[Outcome]:
        """``run_once`` for the given store systems only (the Lambda function: the systems
        whose manifests just landed, ``etl.pos_lambda``)."""
        outcomes: list[Outcome] = []
        errors: list[Exception] = []
        with aurora.connect(self._props) as conn:
            for system in systems:
                try:
                    with locks.exclusive(conn, locks.pos_store_system(system)):
                        outcomes += self._ingest_system(conn, system, errors)
                except locks.Busy:
                    log.info("store system %d is being ingested by another runner", system)
        if errors:  # after every other batch had its turn; the next run retries these
            raise errors[0]
        return outcomes

    def _ingest_system(
        self, conn: psycopg.Connection, system: int, errors: list[Exception]
    ) -> list[Outcome]:
        """The system's deliveries in id order. A bad one is quarantined (``BadBatch``);
        one that fails otherwise (a server down, a bug) stays in landing, its error goes to
        ``errors`` and the later ones still get their turn: no batch blocks the next."""
        for (batch,) in conn.execute(
            "SELECT batch_id FROM pos_batch WHERE store_system = %s AND status = 'loaded'",
            (system,),
        ).fetchall():
            self._publish(conn, batch)
        outcomes = []
        for batch in self._deliveries(system):
            try:
                outcomes.append(self._ingest(conn, system, batch))
            except Exception as error:  # raised by run_once after the others
                log.exception("ingesting %s failed; left in landing for the next run", batch)
                errors.append(error)
        if any(outcome.status != "quarantined" for outcome in outcomes):
            self._send_progress(conn, system)
        return outcomes

    def _send_progress(self, conn: psycopg.Connection, system: int) -> None:
        """Puts the system's progress on ``sales``, one marker per store, each with the
        store's partition key: it reaches every shard that carries the system's sales, after
        them."""
        up_to = delivered_up_to(
            conn.execute(_SYSTEM_LEDGER, (system,)).fetchall(), self._cadence_ms
        )
        if up_to is None:
            return
        self._producer.put(
            self._sales,
            [
                (str(store), progress_json(system, store, up_to).encode())
                for store in system_stores(system, self._systems)
            ],
        )

    def _deliveries(self, system: int) -> list[str]:
        """Batch ids of the manifests in the system's landing area, in id order."""
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self._bucket, Prefix=system_prefix(LANDING_PREFIX, system)
        )
        parsed = (
            parse_manifest_key(obj["Key"]) for page in pages for obj in page.get("Contents", [])
        )
        return sorted(
            batch for batch_system, batch in filter(None, parsed) if batch_system == system
        )

    def _ingest(self, conn: psycopg.Connection, system: int, batch: str) -> Outcome:
        manifest_object = self._get(system, batch, MANIFEST_SUFFIX)
        raw_manifest = manifest_object["Body"].read()
        delivered = {
            MANIFEST_SUFFIX: manifest_object["ETag"],
            DATA_SUFFIX: self._etag(system, batch, DATA_SUFFIX),
        }
        if _status(conn, batch) in ("loaded", "published"):
            conn.execute(
                "UPDATE pos_batch SET deliveries = deliveries + 1, updated_at = now()"
                " WHERE batch_id = %s",
                (batch,),
            )
            self._move(system, batch, ARCHIVE_PREFIX, delivered)
            return Outcome(batch, "duplicate")
        try:
            manifest = _manifest(raw_manifest, system, batch)
            inserted = self._load(conn, manifest)
        except BadBatch as bad:
            self._quarantine(conn, system, batch, bad, delivered)
            return Outcome(batch, "quarantined", f"{bad.fault}: {bad.detail}")
        sent = self._publish(conn, batch)
        self._move(system, batch, ARCHIVE_PREFIX, delivered)
        return Outcome(
            batch, "loaded", f"{manifest.record_count} lines, {inserted} new rows, {sent} sales"
        )

    def _load(self, conn: psycopg.Connection, manifest: Manifest) -> int:
        """Loads a batch in one transaction; raises ``BadBatch`` (nothing loaded) if it
        is not exactly what its manifest describes. Returns the rows that were new."""
        try:
            with conn.transaction():
                return self._load_in_transaction(conn, manifest)
        except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as error:
            # parse_line keeps every value inside its column, so this is a rule missed
            raise BadBatch(Fault.REFUSED_BY_DATABASE, str(error).strip()[:500]) from None

    def _load_in_transaction(self, conn: psycopg.Connection, manifest: Manifest) -> int:
        conn.execute(_CREATE_STAGE)
        digest = BatchDigest(manifest.store_system, self._systems)
        refused: list[RefusedLine] = []
        refused_count = 0
        with conn.cursor().copy(f"COPY {_STAGE} ({', '.join(FACT_COLUMNS)}) FROM STDIN") as copy:
            for number, raw, line in self._lines(manifest, digest):
                if isinstance(line, BadBatch):
                    refused_count += 1
                    if len(refused) < MAX_REFUSED_LINES:
                        refused.append(
                            RefusedLine(number, raw[:PAYLOAD_LIMIT], line.fault, line.detail)
                        )
                elif not refused:  # once a line is refused nothing of the batch loads
                    copy.write_row(astuple(line))
        if refused:
            raise BadLines(refused, refused_count)
        digest.verify(manifest)
        conn.execute(
            _CLAIM,
            {
                "batch_id": manifest.batch_id,
                "system": manifest.store_system,
                "count": manifest.record_count,
                "min_ts": manifest.min_ts,
                "max_ts": manifest.max_ts,
            },
        )
        (inserted,) = conn.execute(_INSERT_NEW_ROWS, {"batch_id": manifest.batch_id}).fetchone()  # type: ignore[misc]  # an aggregate: always one row
        conn.execute(
            "UPDATE pos_batch SET inserted_rows = %s WHERE batch_id = %s",
            (inserted, manifest.batch_id),
        )
        return inserted

    def _lines(
        self, manifest: Manifest, digest: BatchDigest
    ) -> Iterator[tuple[int, bytes, SettledLine | BadBatch]]:
        """The batch's lines streamed from S3, one in memory at a time: each with its
        number, its bytes, and the checked line or why it is refused."""
        try:
            body = self._get(manifest.store_system, manifest.batch_id, DATA_SUFFIX)["Body"]
        except self._s3.exceptions.NoSuchKey:
            raise BadBatch(Fault.MISSING_DATA, "the data object is not there") from None
        with body, gzip.GzipFile(fileobj=body) as lines:
            try:
                while raw := lines.readline(MAX_LINE_BYTES + 1):
                    if len(raw) > MAX_LINE_BYTES:  # the rest of the file cannot be split
                        yield (
                            digest.count + 1,
                            raw,
                            BadBatch(Fault.BAD_LINE, f"longer than {MAX_LINE_BYTES} bytes"),
                        )
                        return
                    try:
                        yield digest.count + 1, raw, digest.add(raw)
                    except BadBatch as bad:
                        yield digest.count, raw, bad
            except (gzip.BadGzipFile, EOFError, zlib.error) as error:
                raise BadBatch(Fault.BAD_GZIP, f"after {digest.count} lines: {error}") from None

    def _publish(self, conn: psycopg.Connection, batch: str) -> int:
        """Sends the outbox's orders of ``batch`` as sale records, one PutRecords batch at
        a time, each drained once Kinesis has it: a crash re-sends at most one chunk."""
        sent = 0
        while rows := conn.execute(_NEXT_OUTBOX_LINES, (batch, MAX_BATCH_RECORDS)).fetchall():
            orders = list(orders_from_lines(SettledLine(*row) for row in rows))
            sent += self._producer.put(
                self._sales, [(str(order.store_id), sale_json(order).encode()) for order in orders]
            )
            conn.execute(
                "DELETE FROM pos_batch_order WHERE batch_id = %s AND order_id = ANY(%s)",
                (batch, [order.order_id for order in orders]),
            )
        conn.execute(
            "UPDATE pos_batch SET status = 'published', updated_at = now(),"
            " sales_sent = coalesce(sales_sent, 0) + %s WHERE batch_id = %s",
            (sent, batch),
        )
        return sent

    def _quarantine(
        self,
        conn: psycopg.Connection,
        system: int,
        batch: str,
        bad: BadBatch,
        delivered: dict[str, str | None],
    ) -> None:
        log.warning("quarantining %s: %s", batch, bad)
        reason = {
            "batch_id": batch,
            "store_system": system,
            "fault": str(bad.fault),
            "detail": bad.detail,
            "quarantined_at": datetime.now(UTC).isoformat(),
        }
        self._s3.put_object(
            Bucket=self._bucket,
            Body=json.dumps(reason).encode(),
            Key=batch_key(QUARANTINE_PREFIX, system, batch, REASON_SUFFIX),
        )
        data_key = batch_key(LANDING_PREFIX, system, batch, DATA_SUFFIX)
        refused = (
            bad.refused
            if isinstance(bad, BadLines)
            else [RefusedLine(0, bad.detail.encode(), bad.fault, bad.detail)]
            if bad.fault == Fault.REFUSED_BY_DATABASE
            else []
        )
        with conn.transaction(), conn.cursor() as cursor:
            if refused:
                cursor.executemany(
                    dead_letters.INSERT_SQL,
                    [line_dead_letter(data_key, line).as_tuple() for line in refused],
                )
            cursor.execute(_QUARANTINE, (batch, system, str(bad.fault), bad.detail))
        self._move(system, batch, QUARANTINE_PREFIX, delivered)

    def _move(self, system: int, batch: str, prefix: str, delivered: dict[str, str | None]) -> None:
        """Moves a delivery out of landing, each object only as the version that was read
        (its ETag when first seen): copied with ``CopySourceIfMatch`` and deleted with
        ``If-Match``, so a re-upload under the same name at any moment makes S3 refuse
        (412) and stays in landing for the next run, never deleted unseen. The data goes
        before the manifest: a crash in between leaves a manifest, which the next run
        finds, never data without one, which no run would."""
        for suffix in (DATA_SUFFIX, MANIFEST_SUFFIX):
            etag = delivered.get(suffix)
            if etag is None:
                continue
            source = batch_key(LANDING_PREFIX, system, batch, suffix)
            try:
                self._s3.copy(
                    {"Bucket": self._bucket, "Key": source},
                    self._bucket,
                    batch_key(prefix, system, batch, suffix),
                    ExtraArgs={"CopySourceIfMatch": etag},
                )
                self._s3.delete_object(Bucket=self._bucket, Key=source, IfMatch=etag)
            except ClientError as error:
                if error.response["Error"]["Code"] not in _CHANGED_SINCE_READ:
                    raise
                log.warning(
                    "%s was delivered again while it was ingested; left in landing "
                    "for the next run",
                    source,
                )
                return

    def _get(self, system: int, batch: str, suffix: str) -> dict:
        return self._s3.get_object(
            Bucket=self._bucket, Key=batch_key(LANDING_PREFIX, system, batch, suffix)
        )

    def _etag(self, system: int, batch: str, suffix: str) -> str | None:
        """The landing object's ETag, None when there is no such object."""
        try:
            return self._s3.head_object(
                Bucket=self._bucket, Key=batch_key(LANDING_PREFIX, system, batch, suffix)
            )["ETag"]
        except ClientError as error:
            if error.response["Error"]["Code"] not in ("404", "NoSuchKey"):
                raise
            return None


def _manifest(raw: bytes, system: int, batch: str) -> Manifest:
    manifest = Manifest.from_json(raw)
    if (manifest.batch_id, manifest.store_system) != (batch, system):
        raise BadBatch(
            Fault.BAD_MANIFEST,
            f"manifest names {manifest.batch_id} of store system "
            f"{manifest.store_system}, key {batch} of {system}",
        )
    return manifest


def _status(conn: psycopg.Connection, batch: str) -> str | None:
    row = conn.execute("SELECT status FROM pos_batch WHERE batch_id = %s", (batch,)).fetchone()
    return row[0] if row else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m etl.pos_ingestion", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--once", action="store_true", help="one run, then exit")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    props = load_properties()
    validate(props)
    ingestion = PosIngestion(props)
    if args.once:
        _report(ingestion.run_once())
        return 0
    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT):  # finish the run, then stop
        signal.signal(sig, lambda *_: stop.append(True))
    interval_s = need(
        EtlSettings.from_group(props["Etl"]).ingestion_interval_s, "Etl", "ingestion_interval_s"
    )
    while not stop:
        started = time.monotonic()
        try:
            _report(ingestion.run_once())
        except Exception:  # like a failed Lambda invocation: the next one retries
            log.exception("ingestion run failed; retrying at the next interval")
        while not stop and time.monotonic() < started + interval_s:
            time.sleep(0.5)
    return 0


def _report(outcomes: list[Outcome]) -> None:
    for outcome in outcomes:
        print(f"{outcome.batch_id} {outcome.status} {outcome.detail}".rstrip(), flush=True)


if __name__ == "__main__":
    sys.exit(main())
