"""Both order jobs on the mini-cluster against the real stack: an order's status in Redis only
moves forward (``pizzastream.order_status``). An order inventory_windowing accepted keeps
``accepted`` when a bad record naming its id goes through order_enrichment afterwards; an
order order_enrichment rejected first keeps ``rejected:invalid`` when a valid record of the
same id is accepted by inventory_windowing afterwards. Each refused write is one
``status_conflict`` dead letter, a replay of the bad record adds none."""

from __future__ import annotations

import json
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime

import pytest

from connectors import redis_store
from connectors.kinesis_producer import KinesisProducer
from jobs import inventory_windowing, order_enrichment
from pizzastream.config import stream_name
from pizzastream.dead_letters import DeadLetter
from pizzastream.order_batches import ENRICHMENT_JOB, INVENTORY_JOB
from pizzastream.order_status import CONFLICT_REASON, conflict_dead_letter
from pizzastream.orders import epoch_ms, format_event_time
from tests.pos_support import query, stream_json
from tests.support import running_job, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STORE = 9
ACCEPTED_FIRST = "S0009-SC0001"  # accepted, then a bad record names it
REJECTED_FIRST = "S0009-SC0002"  # a bad record names it, then it is placed and accepted


def record(order_id: str, **changes) -> tuple[str, bytes]:
    order = {
        "event_id": str(uuid.uuid4()),
        "order_id": order_id,
        "store_id": STORE,
        "channel": "online",
        "fulfillment": "pickup",
        "ts": format_event_time(epoch_ms(datetime.now(UTC))),
        "items": [{"product_id": 1, "quantity": 1}],
        **changes,
    }
    return str(STORE), json.dumps(order).encode()


def bad(order_id: str) -> tuple[str, bytes]:
    """A record naming ``order_id`` that order_enrichment rejects ``invalid``."""
    return record(order_id, channel="teleport")


def conflicts(props) -> list[tuple]:
    return query(
        props,
        f"SELECT {', '.join(DeadLetter.FIELDS)} FROM dead_letter WHERE reason = %s ORDER BY job",
        CONFLICT_REASON,
    )


def test_a_final_status_stays_and_the_other_paths_write_is_dead_lettered_once(clean_stack):
    props = clean_stack
    redis = redis_store.client(props)
    status = lambda order_id: redis.get(redis_store.order_status_key(order_id))  # noqa: E731 - local shorthand
    producer = KinesisProducer(props)
    orders = stream_name(props, "orders")
    bad_accepted = bad(ACCEPTED_FIRST)
    expected = sorted(
        [
            conflict_dead_letter(
                ENRICHMENT_JOB, ACCEPTED_FIRST, "rejected:invalid", "accepted"
            ).as_tuple(),
            conflict_dead_letter(
                INVENTORY_JOB, REJECTED_FIRST, "accepted", "rejected:invalid"
            ).as_tuple(),
        ]
    )

    with ExitStack() as jobs:
        jobs.enter_context(running_job(order_enrichment.build, props, "order_enrichment-status"))
        jobs.enter_context(
            running_job(inventory_windowing.build, props, "inventory_windowing-status")
        )
        # Accepted first, then a bad record names it; and a bad record names an order first.
        producer.put(orders, [record(ACCEPTED_FIRST), bad(REJECTED_FIRST)])
        wait_for(
            "the first statuses",
            lambda: (status(ACCEPTED_FIRST), status(REJECTED_FIRST)),
            lambda seen: seen == ("accepted", "rejected:invalid"),
            timeout_s=240,
        )
        producer.put(orders, [bad_accepted, record(REJECTED_FIRST)])
        wait_for(
            "both conflicts dead-lettered",
            lambda: conflicts(props),
            lambda rows: len(rows) >= 2,
            timeout_s=120,
        )
        # The bad record again (a producer's retry): its dead letter and its conflict land on
        # the rows they had.
        producer.put(orders, [bad_accepted])
        wait_for(
            "the replayed bad record's rejection",
            lambda: [
                r["status"] for r in stream_json(props, "order_status") if r["o"] == ACCEPTED_FIRST
            ],
            lambda seen: seen.count("rejected:invalid") == 2,
            timeout_s=60,
        )
        time.sleep(12)  # two more checkpoints: anything extra would be flushed now
        rows = conflicts(props)
        final = (status(ACCEPTED_FIRST), status(REJECTED_FIRST))

    assert final == ("accepted", "rejected:invalid")
    assert sorted(rows) == expected
    # The refused records themselves: the bad ones are dead-lettered by order_enrichment (one
    # row for the record sent twice); the valid one was decided (its sale stands, see
    # docs/failures.md).
    assert query(
        props,
        "SELECT job, reason, order_id, count(*) FROM dead_letter"
        " WHERE reason <> %s GROUP BY 1, 2, 3 ORDER BY 3",
        CONFLICT_REASON,
    ) == [
        (ENRICHMENT_JOB, "invalid_channel", ACCEPTED_FIRST, 1),
        (ENRICHMENT_JOB, "invalid_channel", REJECTED_FIRST, 1),
    ]
    assert query(props, "SELECT DISTINCT order_id FROM order_fct ORDER BY order_id") == [
        (ACCEPTED_FIRST,),
        (REJECTED_FIRST,),
    ]
