"""``python -m pos`` and ``python -m etl.pos_ingestion`` as processes on the local stack:
accepted in-store orders on ``pos-orders`` come back as settled line items in ``order_fct``
and as sales on ``sales``, exactly once, although every batch is delivered twice."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter

import pytest

import stack
from connectors.kinesis_producer import KinesisProducer
from pizzastream.config import REPO_ROOT, stream_name
from pizzastream.sales import sale_json
from tests.pos_support import landing_keys, make_order, query, sale_records

pytestmark = pytest.mark.integration

INTERVAL_S = 1


def run(module: str, *args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_every_accepted_in_store_order_is_settled_once_despite_duplicate_batches(
    clean_stack, tmp_path
):
    props = clean_stack
    now_ms = int(time.time() * 1000)
    sold = [make_order(n, store, now_ms - n) for n, store in enumerate([1, 2, 150, 1999])]
    KinesisProducer(props).put(
        stream_name(props, "pos_orders"), [(str(o.store_id), sale_json(o).encode()) for o in sold]
    )
    env = {**os.environ, "PIZZASTREAM__POS__STATE_DIR": str(tmp_path)}
    pos = ("pos", "--once", "--interval", str(INTERVAL_S), "--duplicate-share", "1")

    run(*pos, env=env)
    manifests = [key for key in landing_keys(props, "pos/landing/") if key.endswith(".json")]
    assert len(manifests) == 20  # one batch per store system, empty or not
    first = run("etl.pos_ingestion", "--once", env=env).splitlines()
    assert Counter(line.split()[1] for line in first) == {"loaded": 20}

    time.sleep(INTERVAL_S)
    run(*pos, env=env)  # new (empty) batches + the 20 repeats
    second = run("etl.pos_ingestion", "--once", env=env).splitlines()
    assert Counter(line.split()[1] for line in second) == {"loaded": 20, "duplicate": 20}

    assert Counter(query(props, "SELECT order_id, product_id, channel FROM order_fct")) == Counter(
        (o.order_id, line.product_id, "in_store") for o in sold for line in o.lines
    )
    assert sorted((s["o"], s["r"], s["n"]) for s in sale_records(props)) == sorted(
        (o.order_id, o.total_cents, sum(ln.quantity for ln in o.lines)) for o in sold
    )
    assert query(props, "SELECT sum(record_count), sum(deliveries) FROM pos_batch") == [
        (2 * len(sold), 60)
    ]


def test_after_a_stack_reset_the_stand_in_forgets_the_old_streams_batches(clean_stack, tmp_path):
    props = clean_stack
    now_ms = int(time.time() * 1000)
    KinesisProducer(props).put(
        stream_name(props, "pos_orders"),
        [(str(o.store_id), sale_json(o).encode()) for o in [make_order(1, 1, now_ms)]],
    )
    env = {**os.environ, "PIZZASTREAM__POS__STATE_DIR": str(tmp_path)}
    run("pos", "--once", "--late-share", "1", "--late-s", "3600", env=env)  # all held back
    assert landing_keys(props, "pos/landing/") == []

    stack.reset_data(props)
    run("pos", "--once", env=env)

    manifests = [key for key in landing_keys(props, "pos/landing/") if key.endswith(".json")]
    assert len(manifests) == 20  # the new, empty batches only
    assert not list((tmp_path / "outbox").glob("*.plan.json"))
    assert [
        line.split()[2:4] for line in run("etl.pos_ingestion", "--once", env=env).splitlines()
    ] == [["0", "lines,"]] * 20
