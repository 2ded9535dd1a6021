"""moto's server, made faithful to Kinesis where the jobs depend on it: ``python -m
stack.moto_server``.

**Kinesis calls are served one at a time.**
moto_server answers each request on its own thread, and its Kinesis shard is not safe for
concurrent writers: ``Shard.put_record`` reads the highest sequence number and stores the
record under that number + 1, so two PutRecords running at once can give two records the
same number and the second silently replaces the first. Measured against moto 5.2.5: three
threads each sending 200 PutRecords of 100 records read back 58,994-59,263 of 60,000, every
writer told all were stored. At parallelism > 1 the jobs' Kinesis sinks are such writers,
so a loss seen in a test could be the emulator's, not ours.

This entry point runs moto's own WSGI application behind one lock held for every Kinesis
call (writes, and reads too: a GetRecords iterating a shard while a write inserts into it
fails). It costs no throughput worth measuring, since moto is pure Python and its calls
already take turns on the interpreter lock; S3 and DynamoDB calls stay concurrent. Every
writer of the local stack (jobs, generator, POS, delivery service, fault proxy) reaches
moto through this one process, so no path around the lock exists.

**ListShards honours ExclusiveStartShardId.** moto 5.2.5 ignores it and lists every shard.
The Kinesis source (flink-connector-kinesis 4.3.0) looks for new shards every 10 s by listing
those after the last one it has seen, and keeps the shards it has handed out only in memory:
after a restore, every shard moto lists again is handed out a second time, from the start of
the stream, and each record is read twice (measured: a job restored from a savepoint read
1,521 of 3,000 orders again). Kinesis itself lists only the shards after the one named.

**Resharding behaves as on Kinesis.** moto 5.2.5's SplitShard and MergeShards leave the
closed parents in its routing table, first in line: every write after a split still lands on
the closed parent and none on the children, so a split changes nothing a reader can see;
a merge copies the parents' records into the child, so each is read twice; its GetRecords
never ends a closed shard (the Kinesis source would poll a parent forever and never treat a
child as its successor); ListShards ignores ``ShardFilter``; and ``OpenShardCount`` keeps the
count from CreateStream. Kinesis keeps a parent's records in the parent, sends new writes to
the open shard whose hash-key range holds the key (both ends inclusive), answers a GetRecords
whose iterator is at the end of a closed shard with no records, no ``NextShardIterator``
("the requested iterator does not return any more data") and the shard's ``ChildShards``,
and with ``ShardFilter`` ``AT_LATEST`` lists only open shards. The end comes in a response of
its own, after the one carrying the last records: the Kinesis source (4.3.0) keeps reading a
split after a page with records and, given a null iterator with records, reads that last page
again with the iterator it cached and fails ("Have records for a split that was not
registered"). ``reshard_as_kinesis`` makes moto do the same
(``tests/stack/test_kinesis_emulator.py``).
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple
from werkzeug.wsgi import get_input_stream

from pizzastream.resharding import hash_key

KINESIS_TARGET_PREFIX = "Kinesis_"


class OneKinesisCallAtATime:
    """WSGI middleware: a Kinesis request (``X-Amz-Target: Kinesis_20131202.*``) runs only
    while no other Kinesis request does. The body is read before the lock is taken, so a
    slow client does not hold up the others."""

    def __init__(self, app: Callable) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith(KINESIS_TARGET_PREFIX):
            return self.app(environ, start_response)
        body = get_input_stream(environ).read()
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        environ.pop("wsgi.input_terminated", None)
        with self.lock:
            # moto's responses are built in full inside the call; reading them out is
            # done under the lock too, so nothing of the call runs outside it.
            response = self.app(environ, start_response)
            try:
                return [b"".join(response)]
            finally:
                if hasattr(response, "close"):
                    response.close()


def honour_exclusive_start_shard_id() -> None:
    """Makes moto's ListShards return only the shards whose id follows
    ``ExclusiveStartShardId``, as Kinesis does (shard ids sort in creation order)."""
    from moto.core.responses import ActionResult
    from moto.kinesis.responses import KinesisResponse

    listed = KinesisResponse.list_shards
    if getattr(listed, "honours_exclusive_start", False):
        return

    def list_shards(self) -> ActionResult:
        result = listed(self)
        after = self._get_param("ExclusiveStartShardId")
        shard_filter = self._get_param("ShardFilter") or {}
        if shard_filter.get("Type") == "AFTER_SHARD_ID":
            after = shard_filter["ShardId"]
        body = dict(result.result)  # type: ignore[call-overload]  # moto's ActionResult holds a dict
        if after is not None:
            body["Shards"] = [shard for shard in body["Shards"] if shard["ShardId"] > after]
        if shard_filter.get("Type") == "AT_LATEST":
            body["Shards"] = [
                shard
                for shard in body["Shards"]
                if "EndingSequenceNumber" not in shard["SequenceNumberRange"]
            ]
        return ActionResult(body)

    list_shards.honours_exclusive_start = True  # type: ignore[attr-defined]
    KinesisResponse.list_shards = list_shards  # type: ignore[method-assign]  # the emulator patches moto on purpose


def reshard_as_kinesis() -> None:
    """SplitShard, MergeShards, routing and GetRecords at a closed shard's end as Kinesis
    does them (see the module's docstring)."""
    from moto.core.responses import ActionResult
    from moto.kinesis.exceptions import InvalidArgumentError
    from moto.kinesis.models import Shard, Stream
    from moto.kinesis.responses import KinesisResponse
    from moto.kinesis.utils import decompose_shard_iterator

    if getattr(Stream.split_shard, "as_kinesis", False):
        return
    validate_key = Stream.get_shard_for_key

    def get_shard_for_key(self: Stream, partition_key: str, explicit_hash_key: str):
        validate_key(self, partition_key, explicit_hash_key)  # moto's argument checks
        position = int(explicit_hash_key) if explicit_hash_key else hash_key(partition_key)
        for shard in self.shards.values():
            if shard.is_open and shard.starting_hash <= position <= shard.ending_hash:
                return shard
        return None

    def next_id(self: Stream) -> int:
        return max(shard._shard_id for shard in self.shards.values()) + 1

    def closed(self: Stream, shard: Shard) -> None:
        if not shard.is_open:
            raise InvalidArgumentError(
                message=f"Shard {shard.shard_id} in stream {self.stream_name} under account "
                f"{self.account_id} has already been merged or split, and thus is not "
                "eligible for merging or splitting."
            )

    def split_shard(self: Stream, shard_to_split: str, new_starting_hash_key: str) -> None:
        shard = self.shards[shard_to_split]
        closed(self, shard)
        at = int(new_starting_hash_key)
        if not shard.starting_hash < at < shard.ending_hash:
            raise InvalidArgumentError(
                message=f"NewStartingHashKey {at} used in SplitShard() on shard "
                f"{shard.shard_id} in stream {self.stream_name} under account "
                f"{self.account_id} is not both greater than one plus the shard's "
                f"StartingHashKey {shard.starting_hash} and less than the shard's "
                f"EndingHashKey {shard.ending_hash - 1}."
            )
        first = next_id(self)
        for index, (start, end) in enumerate(
            ((shard.starting_hash, at - 1), (at, shard.ending_hash))
        ):
            child = Shard(first + index, start, end, parent=shard.shard_id)
            self.shards[child.shard_id] = child
        shard.is_open = False
        self.shard_count = sum(s.is_open for s in self.shards.values())

    def merge_shards(self: Stream, shard_to_merge: str, adjacent_shard_to_merge: str) -> None:
        first, second = self.shards[shard_to_merge], self.shards[adjacent_shard_to_merge]
        closed(self, first)
        closed(self, second)
        low, high = sorted((first, second), key=lambda s: s.starting_hash)
        if low.ending_hash + 1 != high.starting_hash:
            raise InvalidArgumentError(
                message=f"Shards {first.shard_id} and {second.shard_id} in stream "
                f"{self.stream_name} under account {self.account_id} are not an "
                "adjacent pair of shards eligible for merging"
            )
        child = Shard(
            next_id(self),
            low.starting_hash,
            high.ending_hash,
            parent=first.shard_id,
            adjacent_parent=second.shard_id,
        )
        self.shards[child.shard_id] = child
        first.is_open = second.is_open = False
        self.shard_count = sum(s.is_open for s in self.shards.values())

    read = KinesisResponse.get_records

    def get_records(self) -> ActionResult:
        result = read(self)
        body = dict(result.result)  # type: ignore[call-overload]  # moto's ActionResult holds a dict
        stream_name, shard_id, _ = decompose_shard_iterator(self._get_param("ShardIterator"))
        stream = self.kinesis_backend.describe_stream(
            stream_arn=self._get_param("StreamARN"), stream_name=stream_name
        )
        shard = stream.get_shard(shard_id)
        position = int(decompose_shard_iterator(body["NextShardIterator"])[2])
        if shard.is_open or body["Records"] or position < shard.get_max_sequence_number():
            return result
        body.pop("NextShardIterator")
        body["ChildShards"] = [
            {
                "ShardId": child.shard_id,
                "ParentShards": [p for p in (child.parent, child.adjacent_parent) if p],
                "HashKeyRange": {
                    "StartingHashKey": str(child.starting_hash),
                    "EndingHashKey": str(child.ending_hash),
                },
            }
            for child in stream.shards.values()
            if shard_id in (child.parent, child.adjacent_parent)
        ]
        return ActionResult(body)

    split_shard.as_kinesis = True  # type: ignore[attr-defined]
    Stream.get_shard_for_key = get_shard_for_key  # type: ignore[method-assign]  # the emulator patches moto on purpose
    Stream.split_shard = split_shard  # type: ignore[method-assign]  # the emulator patches moto on purpose
    Stream.merge_shards = merge_shards  # type: ignore[method-assign]  # the emulator patches moto on purpose
    KinesisResponse.get_records = get_records  # type: ignore[method-assign]  # the emulator patches moto on purpose


def application() -> OneKinesisCallAtATime:
    honour_exclusive_start_shard_id()
    reshard_as_kinesis()
    return OneKinesisCallAtATime(DomainDispatcherApplication(create_backend_app))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m stack.moto_server",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))  # as moto_server: moto builds URLs with it
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    run_simple(
        args.host, args.port, application(), threaded=True, request_handler=MotoRequestHandler
    )


if __name__ == "__main__":
    main()
