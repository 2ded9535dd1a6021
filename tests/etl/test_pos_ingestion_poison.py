"""POS files with poison lines, through the real ingestion (moto S3, PostgreSQL): each is
quarantined whole with its reason, each refused line is one ``dead_letter`` row named by its
file and line (none added by a re-run), and the store system's later files still load."""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors import aws
from connectors.kinesis_producer import KinesisPutError
from etl.pos_ingestion import PosIngestion
from pizzastream.orders import format_event_time
from pizzastream.pos_batches import (
    DATA_SUFFIX,
    LANDING_PREFIX,
    MANIFEST_SUFFIX,
    BadBatch,
    BatchDigest,
    Manifest,
    batch_key,
    parse_line,
    settle,
)
from tests.fuzzing import server_fuzz_settings
from tests.pizzastream.test_pos_batches import JSON_VALUES, POISON_LINES
from tests.pos_support import landing_keys, make_order, query

pytestmark = pytest.mark.integration

SYSTEM = 1  # stores 1..100 with the configured 20 store systems
NOW_MS = int(time.time() * 1000)
_batches = itertools.count(1)


@pytest.fixture
def ingestion(clean_stack):
    return PosIngestion(clean_stack)


def valid_lines(first: int, count: int, store_id: int = 5) -> list[bytes]:
    """One line per order: orders ``first`` .. ``first + count - 1`` of the store."""
    return [
        line.to_json().encode() + b"\n"
        for n in range(first, first + count)
        for line in settle(make_order(n, store_id, NOW_MS + n, lines=((1, 2, 899),)))
    ]


def deliver(props, lines: list[bytes], batch: str | None = None) -> str:
    """Puts a batch file of exactly ``lines`` and a manifest that describes it (count and
    checksum; time range of the lines that parse), as the POS would. Returns the batch id."""
    batch = batch or f"ss{SYSTEM:02d}-t{int(time.time() * 1000)}{next(_batches):06d}"
    times = []
    for raw in lines:
        try:
            times.append(parse_line(raw).transaction_ts_ms)
        except BadBatch:
            pass
    body = b"".join(lines)
    manifest = Manifest(
        batch,
        SYSTEM,
        len(lines),
        hashlib.sha256(body).hexdigest(),
        *(format_event_time(f(times)) if times else None for f in (min, max)),
    )
    s3, bucket = aws.client(props, "s3"), props["Lake"]["bucket"]
    s3.put_object(
        Bucket=bucket,
        Key=batch_key(LANDING_PREFIX, SYSTEM, batch, DATA_SUFFIX),
        Body=gzip.compress(body),
    )
    s3.put_object(
        Bucket=bucket,
        Key=batch_key(LANDING_PREFIX, SYSTEM, batch, MANIFEST_SUFFIX),
        Body=manifest.to_json().encode(),
    )
    return batch


def dead_letters(props, batch: str) -> list[tuple]:
    return query(
        props,
        "SELECT reason, detail, order_id, payload FROM dead_letter"
        " WHERE job = 'pos_ingestion' AND detail LIKE %s ORDER BY detail",
        f"%/{batch}.jsonl.gz %",
    )


def loaded_orders(props) -> set[str]:
    return {order_id for (order_id,) in query(props, "SELECT DISTINCT order_id FROM order_fct")}


@pytest.mark.parametrize("poison", POISON_LINES.values(), ids=POISON_LINES.keys())
def test_a_poison_line_quarantines_its_file_dead_letters_the_line_and_blocks_nothing(
    clean_stack, ingestion, poison
):
    bad = deliver(
        clean_stack, valid_lines(1, 1) + [poison.rstrip(b"\n") + b"\n"] + valid_lines(2, 1)
    )
    later = deliver(clean_stack, valid_lines(10, 2))

    outcomes = {o.batch_id: o for o in ingestion.run_once([SYSTEM])}

    assert (outcomes[bad].status, outcomes[later].status) == ("quarantined", "loaded")
    assert outcomes[bad].detail.startswith("bad_line: 1 line(s) refused; line 2:")
    [(reason, detail, _, payload)] = dead_letters(clean_stack, bad)
    assert reason == "bad_line"
    assert detail.startswith(f"{batch_key(LANDING_PREFIX, SYSTEM, bad, DATA_SUFFIX)} line 2: ")
    assert payload.encode()[:100] == poison[:100]
    assert loaded_orders(clean_stack) == {"S0005-I000010", "S0005-I000011"}

    deliver(
        clean_stack,
        valid_lines(1, 1) + [poison.rstrip(b"\n") + b"\n"] + valid_lines(2, 1),
        batch=bad,
    )  # the same file delivered again
    assert [o.status for o in ingestion.run_once([SYSTEM])] == ["quarantined"]
    assert len(dead_letters(clean_stack, bad)) == 1  # no second row for the same line


def test_every_refused_line_of_a_file_is_one_dead_letter(clean_stack, ingestion):
    lines = valid_lines(1, 1)
    lines += [
        json.dumps({"order_id": "S0005-I000099", "store_id": 5}).encode() + b"\n",
        b"not json\n",
        valid_lines(3, 1)[0],
        valid_lines(4, 1, store_id=1500)[0],
    ]  # a store of another store system
    bad = deliver(clean_stack, lines)

    assert [o.detail for o in ingestion.run_once([SYSTEM])] == [
        "bad_line: 3 line(s) refused; line 2: KeyError: 'product_id'"
    ]
    letters = dead_letters(clean_stack, bad)
    assert [
        (reason, detail.split(": ")[0].rsplit(" ", 1)[1], order_id)
        for reason, detail, order_id, _ in letters
    ] == [
        ("bad_line", "2", "S0005-I000099"),
        ("bad_line", "3", None),
        ("wrong_store_system", "5", "S1500-I000004"),
    ]
    assert loaded_orders(clean_stack) == set()


def test_a_line_the_database_refuses_all_the_same_quarantines_its_file_only(clean_stack, ingestion):
    """A rule parse_line does not know (here a constraint added to order_fct) makes the
    database refuse the batch: quarantined with the database's reason and dead-lettered,
    and the later file loads."""
    query(
        clean_stack,
        "ALTER TABLE order_fct ADD CONSTRAINT test_small_quantity CHECK (quantity < 1000)",
    )
    try:
        huge = json.loads(valid_lines(1, 1)[0])
        huge.update(
            quantity=5000, total_transaction_amt=float(huge["unit_price"] * 5000).__round__(2)
        )
        bad = deliver(clean_stack, [json.dumps(huge).encode() + b"\n"])
        later = deliver(clean_stack, valid_lines(10, 1))

        outcomes = {o.batch_id: o for o in ingestion.run_once([SYSTEM])}
    finally:
        query(clean_stack, "ALTER TABLE order_fct DROP CONSTRAINT test_small_quantity")

    assert outcomes[bad].status == "quarantined"
    assert outcomes[bad].detail.startswith("refused_by_database: ")
    assert "test_small_quantity" in outcomes[bad].detail
    assert [reason for reason, *_ in dead_letters(clean_stack, bad)] == ["refused_by_database"]
    assert outcomes[later].status == "loaded"
    assert loaded_orders(clean_stack) == {"S0005-I000010"}


poison_or_valid = st.one_of(
    st.integers(1, 10**6).map(lambda n: valid_lines(n, 1)[0]),
    st.sampled_from(sorted(POISON_LINES.values())).map(lambda raw: raw.rstrip(b"\n") + b"\n"),
    st.binary(max_size=200).map(lambda raw: raw.replace(b"\n", b" ") + b"\n"),
    st.dictionaries(
        st.sampled_from(
            [
                "store_id",
                "order_id",
                "product_id",
                "quantity",
                "unit_price",
                "total_transaction_amt",
                "transaction_ts",
            ]
        ),
        JSON_VALUES,
        min_size=1,
    ).map(
        lambda changes: (
            json.dumps({**json.loads(valid_lines(7, 1)[0]), **changes}, default=str).encode()
            + b"\n"
        )
    ),
)


@server_fuzz_settings(share=0.1)
@given(lines=st.lists(poison_or_valid, min_size=1, max_size=8))
def test_fuzz_no_pos_file_stops_ingestion_or_a_later_file(clean_stack, ingestion, lines):
    """Fuzz: whatever a file holds, the run completes; the file is loaded if every line is
    good and quarantined with one dead letter per refused line otherwise; the store
    system's next file loads."""
    refused = []
    digest = BatchDigest(SYSTEM, int(clean_stack["Pos"]["store_systems"]))
    for number, raw in enumerate(lines, 1):
        try:
            digest.add(raw)
        except BadBatch:
            refused.append(number)
    file = deliver(clean_stack, lines)
    later_order = next(_batches) + 2_000_000
    later = deliver(clean_stack, valid_lines(later_order, 1))

    outcomes = {o.batch_id: o.status for o in ingestion.run_once([SYSTEM])}

    assert outcomes[file] == ("quarantined" if refused else "loaded")
    assert (
        sorted(
            int(detail.split(": ")[0].rsplit(" ", 1)[1])
            for _, detail, *_ in dead_letters(clean_stack, file)
        )
        == refused
    )
    assert outcomes[later] == "loaded"
    assert f"S0005-I{later_order:06d}" in loaded_orders(clean_stack)


def test_a_batch_that_fails_otherwise_stays_in_landing_and_the_next_one_still_loads(
    clean_stack, ingestion, monkeypatch
):
    """Kinesis refuses the first batch's sales (after its rows committed): the run goes on
    with the next batch, then fails with that error; the next run sends what is left."""
    first = deliver(clean_stack, valid_lines(1, 2))
    second = deliver(clean_stack, valid_lines(10, 2))
    put, calls = ingestion._producer.put, []

    def refuse_the_first_call(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise KinesisPutError("Kinesis unreachable")
        return put(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(ingestion._producer, "put", refuse_the_first_call)
        with pytest.raises(KinesisPutError):
            ingestion.run_once([SYSTEM])

    assert query(clean_stack, "SELECT batch_id, status FROM pos_batch ORDER BY batch_id") == [
        (first, "loaded"),
        (second, "published"),
    ]
    assert [key.rsplit("/", 1)[1] for key in landing_keys(clean_stack, "pos/landing/")] == [
        f"{first}.jsonl.gz",
        f"{first}.manifest.json",
    ]

    assert [(o.batch_id, o.status) for o in ingestion.run_once([SYSTEM])] == [(first, "duplicate")]
    assert query(clean_stack, "SELECT status FROM pos_batch WHERE batch_id = %s", first) == [
        ("published",)
    ]
    assert landing_keys(clean_stack, "pos/landing/") == []
