"""Helpers for end-to-end tests: polling outputs and running a job on the mini-cluster."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    what: str,
    probe: Callable[[], T],
    done: Callable[[T], bool],
    timeout_s: float,
    every_s: float = 2.0,
) -> T:
    """Polls ``probe`` until ``done(value)``; fails with the last value seen."""
    deadline = time.monotonic() + timeout_s
    value = probe()
    while not done(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; last: {value}")
        time.sleep(every_s)
        value = probe()
    return value


class RunningJob:
    """A job started by ``running_job``."""

    def __init__(self, client):
        self.client = client
        self.stopped = False

    def stop_with_savepoint(self, directory) -> str:
        """Stops the job gracefully with a savepoint under ``directory`` (a Path); returns
        the savepoint's path, to restore from."""
        path = self.client.stop_with_savepoint(False, directory.as_uri()).result()
        self.stopped = True
        return path


@contextmanager
def running_job(build: Callable, props: dict, name: str, restore_from: str | None = None):
    """Runs a job's dataflow on a local mini-cluster (from the savepoint ``restore_from``, if
    given) until the block ends, then cancels it unless it was stopped already."""
    from jobs import runtime

    env = runtime.stream_environment(props, restore_from)
    build(env, props)
    job = RunningJob(env.execute_async(name))
    try:
        yield job
    finally:
        if not job.stopped:
            job.client.cancel().result()


def run_redis_sink(props, rows, ttl_s: int = 0, batch_size: int = 2) -> None:
    """Writes ``rows`` (``redis_store.REDIS_COMMAND``) through the jobs' JVM Redis sink, in
    batches of ``batch_size``, on a mini-cluster job that ends with its input."""
    from connectors import redis_store
    from jobs import runtime

    env = runtime.stream_environment(props)
    env.set_parallelism(1)
    env.from_collection(rows, type_info=redis_store.REDIS_COMMAND).sink_to(
        redis_store.sink(props, ttl_s, batch_size)
    )
    env.execute("redis-sink-test")


def run_status_gate(
    props,
    statuses: list[tuple[str, str]],
    job: str = "gate-test",
    batch_size: int = 2,
    ttl_s: int = 600,
) -> list[tuple]:
    """Writes ``(order_id, status)`` pairs through the jobs' JVM status writer
    (``redis_store.order_status_gate``), in batches of ``batch_size``, on a mini-cluster job
    that ends with its input; returns the dead letters it put out, as tuples."""
    from pyflink.common import Row

    from connectors import redis_store
    from connectors.kinesis import KEYED_RECORD
    from jobs import operators, runtime

    env = runtime.stream_environment(props)
    env.set_parallelism(1)
    lines = env.from_collection(
        [Row(order_id, status) for order_id, status in statuses], type_info=KEYED_RECORD
    )
    # the status commands as the jobs make them of their batches' status lines
    commands = operators.redis_set_commands(lines, redis_store.order_status_key(""))
    letters = redis_store.order_status_gate(commands, props, job, ttl_s, batch_size)
    with letters.execute_and_collect("status-gate-test") as rows:
        return [tuple(row) for row in rows]
