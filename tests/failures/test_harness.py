"""The failure suite's own machinery reads correctly and fails on errors: a tail of a
stream returns every record once even when reads fail half-way, and the settle loop ends
with the error of a read that keeps failing instead of swallowing it."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from types import SimpleNamespace

import psycopg
import pytest
from botocore.exceptions import ClientError

from stack import moto_resources
from stack.faults import FaultProxy
from tests.failures.harness import StreamTail, wait_until_settled

SHARDS = 4


@pytest.fixture
def scratch_stream(local_stack):
    kinesis = moto_resources.client(local_stack, "kinesis")
    name = f"harness-tail-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=name, ShardCount=SHARDS)
    kinesis.get_waiter("stream_exists").wait(
        StreamName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
    )
    yield name
    kinesis.delete_stream(StreamName=name, EnforceConsumerDeletion=True)


@pytest.mark.integration
def test_a_tail_returns_every_record_once_when_reads_fail_half_way(local_stack, scratch_stream):
    kinesis = moto_resources.client(local_stack, "kinesis")
    sent, returned, failed_polls = [], [], 0
    with FaultProxy(local_stack["Aws"]["endpoint"], seed=7) as proxy:
        through_proxy = {
            **local_stack,
            "Aws": {**local_stack["Aws"], "endpoint": proxy.endpoint},
            "Streams": {**local_stack["Streams"], "scratch": scratch_stream},
        }
        tail = StreamTail(through_proxy, "scratch")
        # most GetRecords calls refused, so polls fail after reading some shards
        proxy.configure(get_records_throttle=0.6)
        for round_ in range(3):
            batch = [(str(n), f"{round_}-{n}".encode()) for n in range(40)]
            kinesis.put_records(
                StreamName=scratch_stream,
                Records=[{"PartitionKey": key, "Data": data} for key, data in batch],
            )
            sent += batch
            for _ in range(30):
                try:
                    returned += tail.poll()
                    break
                except ClientError as error:
                    assert (
                        error.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
                    )
                    failed_polls += 1
        proxy.clear()
        returned += tail.poll()
        again = tail.poll()

    assert failed_polls > 0, "no poll failed: the test did not exercise a failed read"
    assert Counter(returned) == Counter(sent)  # every record, each once
    assert tail.records == returned and again == []


def _stand_in(poll_statuses):
    """A pipeline and a wave with nothing expected, whose status read is ``poll_statuses``:
    only the settle loop's own logic runs."""
    outputs = SimpleNamespace(
        poll_statuses=poll_statuses,
        status_copies={},
        dead_letters=lambda ids: [],
        facts=lambda ids: {},
        inventory_fingerprint=lambda: 0,
    )
    pipeline = SimpleNamespace(outputs=outputs, assert_alive=lambda: None, restarts=lambda: {})
    wave = SimpleNamespace(
        name="wave", valid={}, named_rejections={}, bad=[], replay_dead_letter_ids=lambda: []
    )
    return pipeline, wave


def test_the_settle_wait_fails_at_once_with_an_error_that_is_not_a_server_coming_back():
    def broken_read():
        raise KeyError("status")  # a bug, not an outage

    pipeline, wave = _stand_in(broken_read)
    started = time.monotonic()
    with pytest.raises(KeyError):
        wait_until_settled(pipeline, wave, timeout_s=60, every_s=0.05)
    assert time.monotonic() - started < 5


def test_the_settle_wait_fails_when_a_server_stays_unreachable():
    def down():
        raise psycopg.OperationalError("connection refused")

    pipeline, wave = _stand_in(down)
    with pytest.raises(AssertionError, match=r"unreadable for over 1s.*connection refused") as ex:
        wait_until_settled(pipeline, wave, timeout_s=60, unreadable_limit_s=1, every_s=0.05)
    assert isinstance(ex.value.__cause__, psycopg.OperationalError)


def test_the_settle_wait_rides_out_a_server_coming_back():
    calls = []

    def back_after_three_reads():
        calls.append(1)
        if len(calls) <= 3:
            raise psycopg.OperationalError("the database system is starting up")

    pipeline, wave = _stand_in(back_after_three_reads)
    wait_until_settled(pipeline, wave, timeout_s=60, unreadable_limit_s=30, every_s=0.05)
    assert len(calls) > 3
