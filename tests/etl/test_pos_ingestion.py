"""POS ingestion against the real local stack (moto S3/Kinesis, PostgreSQL): duplicate,
cut-short and late batches lose no sale and count none twice; a bad batch is quarantined
whole with its reason; a crash between loading and sending re-sends instead of losing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal

import pytest

from connectors import aws
from connectors.kinesis_producer import KinesisPutError
from etl.pos_ingestion import PosIngestion
from pizzastream.config import REPO_ROOT
from pizzastream.pos_batches import batch_cut_ms, sale_event_id, system_stores
from pizzastream.sales import sale_json
from pos.bulk import deliver_bulk
from pos.outbox import Version
from tests.pos_support import (
    HOUR_MS,
    SYSTEMS,
    PosDeliveries,
    landing_keys,
    make_order,
    progress_markers,
    query,
    sale_records,
)

pytestmark = pytest.mark.integration

NOW_MS = int(time.time() * 1000)


@pytest.fixture
def pos(clean_stack, tmp_path):
    return PosDeliveries(clean_stack, tmp_path)


@pytest.fixture
def ingestion(clean_stack):
    return PosIngestion(clean_stack)


def orders(store_id: int, first: int, count: int, ts_ms: int = NOW_MS):
    return [make_order(n, store_id, ts_ms + n) for n in range(first, first + count)]


def facts(props) -> Counter:
    return Counter(
        query(
            props,
            "SELECT order_id, product_id, quantity, unit_price,"
            " total_transaction_amt, channel FROM order_fct",
        )
    )


def expected_facts(sold) -> Counter:
    return Counter(
        (
            o.order_id,
            ln.product_id,
            ln.quantity,
            Decimal(ln.unit_price_cents) / 100,
            Decimal(ln.amount_cents) / 100,
            "in_store",
        )
        for o in sold
        for ln in o.lines
    )


def sales(props) -> Counter:
    return Counter(json.dumps(s, sort_keys=True) for s in sale_records(props))


def expected_sales(sold) -> Counter:
    """The sale records of ``sold`` as rebuilt from line items (the event id is derived)."""
    return Counter(
        json.dumps({**json.loads(sale_json(o)), "e": sale_event_id(o.order_id)}, sort_keys=True)
        for o in sold
    )


def ledger(props) -> dict[str, tuple]:
    return {
        row[0]: row[1:]
        for row in query(
            props,
            "SELECT batch_id, status, reason, deliveries, record_count, inserted_rows,"
            " sales_sent FROM pos_batch",
        )
    }


def test_a_batch_loads_its_rows_sends_its_sales_and_is_archived(clean_stack, pos, ingestion):
    sold = orders(5, 1, 3) + orders(7, 1, 2)
    manifest = pos.deliver(sold)

    outcomes = ingestion.run_once()

    assert [(o.batch_id, o.status) for o in outcomes] == [(manifest.batch_id, "loaded")]
    assert facts(clean_stack) == expected_facts(sold)
    assert sales(clean_stack) == expected_sales(sold)
    assert ledger(clean_stack) == {manifest.batch_id: ("published", None, 1, 10, 10, 5)}
    assert landing_keys(clean_stack, "pos/landing/") == []
    # and the store system's progress, the batch's cut, for every one of its stores
    assert progress_markers(clean_stack) == {
        store: batch_cut_ms(manifest.batch_id) for store in system_stores(1, SYSTEMS)
    }
    assert len(landing_keys(clean_stack, "pos/archive/")) == 2
    assert query(clean_stack, "SELECT count(*) FROM pos_batch_order") == [(0,)]


def test_a_duplicate_batch_changes_nothing(clean_stack, pos, ingestion):
    sold = orders(5, 1, 4)
    manifest = pos.deliver(sold)
    ingestion.run_once()
    pos.deliver(sold, batch=manifest.batch_id)

    outcomes = ingestion.run_once()

    assert [(o.batch_id, o.status) for o in outcomes] == [(manifest.batch_id, "duplicate")]
    assert facts(clean_stack) == expected_facts(sold)
    assert sales(clean_stack) == expected_sales(sold)
    assert ledger(clean_stack)[manifest.batch_id][:3] == ("published", None, 2)
    assert landing_keys(clean_stack, "pos/landing/") == []


def test_the_same_sales_in_another_batch_add_only_what_is_new(clean_stack, pos, ingestion):
    first, overlapping = orders(5, 1, 3), orders(5, 3, 3)  # order 3 is in both
    pos.deliver(first)
    ingestion.run_once()
    resent = pos.deliver(overlapping)

    ingestion.run_once()

    sold = {o.order_id: o for o in first + overlapping}.values()
    assert facts(clean_stack) == expected_facts(sold)
    assert sales(clean_stack) == expected_sales(sold)
    assert ledger(clean_stack)[resent.batch_id][4:] == (2 * 2, 2)  # orders 4 and 5 only


@pytest.mark.parametrize(
    "version, fault",
    [
        (Version.TRUNCATED_GZIP, "bad_gzip"),
        (Version.SHORT, "count_mismatch"),
    ],
)
def test_a_cut_short_batch_is_quarantined_whole_until_the_complete_one_arrives(
    clean_stack, pos, ingestion, version, fault
):
    sold = orders(5, 1, 40)
    manifest = pos.deliver(sold, version)

    outcomes = ingestion.run_once()

    assert [(o.status, o.detail.split(":")[0]) for o in outcomes] == [("quarantined", fault)]
    assert facts(clean_stack) == Counter() and sales(clean_stack) == Counter()
    assert ledger(clean_stack)[manifest.batch_id][:2] == ("quarantined", fault)
    quarantined = landing_keys(clean_stack, "pos/quarantine/")
    assert [key.rsplit("/", 1)[1] for key in quarantined] == [
        manifest.batch_id + suffix for suffix in (".jsonl.gz", ".manifest.json", ".reason.json")
    ]
    reason = json.loads(
        aws.client(clean_stack, "s3")
        .get_object(Bucket=clean_stack["Lake"]["bucket"], Key=quarantined[2])["Body"]
        .read()
    )
    assert (reason["batch_id"], reason["fault"]) == (manifest.batch_id, fault)
    assert landing_keys(clean_stack, "pos/landing/") == []

    pos.deliver(sold, batch=manifest.batch_id)  # the POS delivers it again
    assert [o.status for o in ingestion.run_once()] == ["loaded"]
    assert facts(clean_stack) == expected_facts(sold)
    assert sales(clean_stack) == expected_sales(sold)
    assert ledger(clean_stack)[manifest.batch_id][:3] == ("published", None, 2)


def test_a_batch_that_does_not_match_its_manifest_quarantines_even_if_it_reads_fine(
    clean_stack, pos, ingestion
):
    manifest = pos.deliver(orders(5, 1, 2))
    s3, bucket = aws.client(clean_stack, "s3"), clean_stack["Lake"]["bucket"]
    key = f"pos/landing/store_system=01/{manifest.batch_id}.manifest.json"
    doc = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps({**doc, "sha256": "0" * 64}).encode())

    assert [o.detail.split(":")[0] for o in ingestion.run_once()] == ["checksum_mismatch"]
    assert facts(clean_stack) == Counter()


def test_a_manifest_without_its_data_is_quarantined(clean_stack, pos, ingestion):
    manifest = pos.deliver(orders(5, 1, 2))
    aws.client(clean_stack, "s3").delete_object(
        Bucket=clean_stack["Lake"]["bucket"],
        Key=f"pos/landing/store_system=01/{manifest.batch_id}.jsonl.gz",
    )

    assert [o.detail.split(":")[0] for o in ingestion.run_once()] == ["missing_data"]
    assert landing_keys(clean_stack, "pos/landing/") == []
    assert [key.rsplit(".", 2)[-2:] for key in landing_keys(clean_stack, "pos/quarantine/")] == [
        ["manifest", "json"],
        ["reason", "json"],
    ]


def test_a_late_batch_of_hours_old_sales_is_loaded_after_newer_ones(clean_stack, pos, ingestion):
    old = orders(5, 1, 3, ts_ms=NOW_MS - 3 * HOUR_MS)
    new = orders(5, 10, 2)
    pos.deliver(new)
    ingestion.run_once()
    late = pos.deliver(old)

    assert [(o.batch_id, o.status) for o in ingestion.run_once()] == [(late.batch_id, "loaded")]
    assert facts(clean_stack) == expected_facts(old + new)
    assert sales(clean_stack) == expected_sales(old + new)


def test_an_empty_batch_is_ledgered_and_sends_nothing(clean_stack, pos, ingestion):
    manifest = pos.deliver([])
    assert [o.status for o in ingestion.run_once()] == ["loaded"]
    assert ledger(clean_stack)[manifest.batch_id] == ("published", None, 1, 0, 0, 0)
    assert sales(clean_stack) == Counter()


def test_sales_not_sent_before_a_crash_are_sent_by_the_next_run(
    clean_stack, pos, ingestion, monkeypatch
):
    sold = orders(5, 1, 3)
    manifest = pos.deliver(sold)

    def unreachable(*args, **kwargs):
        raise KinesisPutError("Kinesis unreachable")

    with monkeypatch.context() as patch:
        patch.setattr(ingestion._producer, "put", unreachable)
        with pytest.raises(KinesisPutError):
            ingestion.run_once()
    assert facts(clean_stack) == expected_facts(sold)  # loaded and committed...
    assert ledger(clean_stack)[manifest.batch_id][0] == "loaded"  # ...but not sent
    assert sales(clean_stack) == Counter()

    outcomes = ingestion.run_once()

    assert [o.status for o in outcomes] == ["duplicate"]  # the delivery was loaded
    assert sales(clean_stack) == expected_sales(sold)  # and the sales sent, once
    assert ledger(clean_stack)[manifest.batch_id][0] == "published"
    assert facts(clean_stack) == expected_facts(sold)


def test_runners_working_at_once_share_the_batches_and_load_each_once(clean_stack, pos):
    sold = [orders(store, 1, 5) for store in (1, 150, 250, 1900)]  # four store systems
    for batch in sold:
        pos.deliver(batch)
    runners = [
        subprocess.Popen(
            [sys.executable, "-m", "etl.pos_ingestion", "--once"],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outcomes = [
        line.split()[1]
        for runner in runners
        for line in runner.communicate(timeout=120)[0].splitlines()
    ]

    assert Counter(outcomes) == {"loaded": 4}
    everything = [order for batch in sold for order in batch]
    assert facts(clean_stack) == expected_facts(everything)
    assert sales(clean_stack) == expected_sales(everything)


def peak_rss_kb(*argv: str) -> int:
    """Peak resident memory of a child process running ``python -m ...``."""
    child = subprocess.Popen(
        [sys.executable, "-m", *argv],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    assert child.returncode == 0
    return usage.ru_maxrss


def test_ingestion_memory_does_not_grow_with_the_batch(clean_stack):
    """Measured at 1.2 M lines (80,000 orders): 84 MB peak, the same as for 20,000 lines."""
    peaks = {}
    for lines in (3_000, 150_000):
        deliver_bulk(clean_stack, lines, lines_per_order=15)
        peaks[lines] = peak_rss_kb("etl.pos_ingestion", "--once")
    assert query(clean_stack, "SELECT count(*) FROM order_fct") == [(153_000,)]
    assert peaks[150_000] - peaks[3_000] < 10 * 1024, peaks
