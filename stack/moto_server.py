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
    DomainDispatcherApplication, MotoRequestHandler, create_backend_app,
)
from werkzeug.serving import run_simple
from werkzeug.wsgi import get_input_stream

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
        if after is None:
            return result
        body = dict(result.result)
        body["Shards"] = [shard for shard in body["Shards"] if shard["ShardId"] > after]
        return ActionResult(body)

    list_shards.honours_exclusive_start = True  # type: ignore[attr-defined]
    KinesisResponse.list_shards = list_shards


def application() -> OneKinesisCallAtATime:
    honour_exclusive_start_shard_id()
    return OneKinesisCallAtATime(DomainDispatcherApplication(create_backend_app))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stack.moto_server", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))  # as moto_server: moto builds URLs with it
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    run_simple(args.host, args.port, application(), threaded=True,
               request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
