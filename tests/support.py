"""Helpers for end-to-end tests: polling outputs and running a job on the mini-cluster."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable


def wait_for(what: str, probe: Callable[[], object], done: Callable[[object], bool],
             timeout_s: float, every_s: float = 2.0):
    """Polls ``probe`` until ``done(value)``; fails with the last value seen."""
    deadline = time.monotonic() + timeout_s
    value = probe()
    while not done(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; last: {value}")
        time.sleep(every_s)
        value = probe()
    return value


@contextmanager
def running_job(build: Callable, props: dict, name: str):
    """Runs a job's dataflow on a local mini-cluster until the block ends, then cancels it."""
    from jobs import runtime

    env = runtime.stream_environment(props)
    build(env, props)
    client = env.execute_async(name)
    try:
        yield client
    finally:
        client.cancel().result()
