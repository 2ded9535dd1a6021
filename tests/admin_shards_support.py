"""What the tests of ``python -m pizzastream.admin shards`` on the local stack share
(``tests/pizzastream/test_admin_shards.py`` and ``test_admin_shards_guard.py``): resharding
settings that make a few hundred records a hot shard, a scratch stream to reshard, its open
shards, and the command's run."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pytest

from connectors import aws
from pizzastream import admin
from pizzastream import resharding as rs

WINDOW_S = 300
# One record/s is the whole shard: a key's records in the window / 300 is its utilisation.
RESHARDING_ENV = {
    "PIZZASTREAM__RESHARDING__SHARD_RECORDS_PER_S": "1",
    "PIZZASTREAM__RESHARDING__WINDOW_S": str(WINDOW_S),
    "PIZZASTREAM__RESHARDING__SPLIT_ABOVE": "0.8",
    "PIZZASTREAM__RESHARDING__MERGE_BELOW": "0.5",
    "PIZZASTREAM__RESHARDING__LOAD_SOURCE": "records",
}


@contextmanager
def scratch_stream(
    props, monkeypatch: pytest.MonkeyPatch, env: Mapping[str, str], prefix: str, shard_count: int
) -> Iterator[tuple[Any, str]]:
    """A new stream of ``shard_count`` shards named ``prefix-…``, with ``env`` set for the
    command; yields the Kinesis client and the stream's name, and deletes the stream after."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    kinesis = aws.client(props, "kinesis")
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=name, ShardCount=shard_count)
    kinesis.get_waiter("stream_exists").wait(
        StreamName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
    )
    try:
        yield kinesis, name
    finally:
        kinesis.delete_stream(StreamName=name, EnforceConsumerDeletion=True)


def open_shards(kinesis, name: str) -> list[rs.Shard]:
    """The stream's open shards, in hash key order."""
    shards = kinesis.list_shards(StreamName=name)["Shards"]
    return sorted(
        (
            rs.Shard(
                s["ShardId"],
                int(s["HashKeyRange"]["StartingHashKey"]),
                int(s["HashKeyRange"]["EndingHashKey"]),
            )
            for s in shards
            if "EndingSequenceNumber" not in s["SequenceNumberRange"]
        ),
        key=lambda s: s.start,
    )


def run_shards(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``python -m pizzastream.admin shards`` over the window with ``args``: its exit code,
    output and error output."""
    code = admin.main(["shards", "--window-s", str(WINDOW_S), *args])
    out = capsys.readouterr()
    return code, out.out, out.err
