"""A fault-injecting HTTP proxy in front of the AWS stand-in (moto): ``python -m stack.faults``.

moto never throttles and never goes down on its own, so failure tests put this proxy
between the Flink jobs and moto (``PIZZASTREAM__AWS__ENDPOINT=<proxy endpoint>`` in the
job's environment) and turn faults on and off while traffic flows:

- ``put_records_throttle`` / ``get_records_throttle``: the share of
  ``Kinesis_20131202.PutRecords`` / ``GetRecords`` calls answered with HTTP 400
  ``{"__type": "ProvisionedThroughputExceededException"}`` (whole call refused, as
  Kinesis does when a shard's read or write limit is exceeded);
- ``put_records_partial``: the share of *records* inside an otherwise successful
  PutRecords that come back with ``ErrorCode: ProvisionedThroughputExceededException``
  (only the other records are forwarded to moto; this is how Kinesis usually throttles
  writers, and a writer that does not re-send failed entries loses them silently);
- ``s3_outage``: ``"close"`` drops every S3 request's connection without an answer (the
  store is down), ``"503"`` answers ``ServiceUnavailable``; ``""`` is off. Kinesis and
  DynamoDB calls are not affected.

Everything else is forwarded unchanged. The proxy runs as its own process (so the test
process's own work does not slow the jobs' AWS calls) and is controlled over HTTP on the
reserved path ``/__faults__`` (an S3 bucket cannot be called that): ``GET`` returns the
settings and per-operation counters, ``POST`` a JSON object of settings to change,
``POST /__faults__/reset`` zeroes the counters. ``FaultProxy`` wraps all of it::

    with FaultProxy(props["Aws"]["endpoint"]) as proxy:
        env = {"PIZZASTREAM__AWS__ENDPOINT": proxy.endpoint}
        proxy.configure(put_records_throttle=0.3, get_records_throttle=0.3)
        ...
        proxy.stats()["Kinesis.PutRecords"]   # {"calls": ..., "throttled": ..., ...}

Only stdlib; listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

CONTROL_PATH = "/__faults__"
THROTTLED = "ProvisionedThroughputExceededException"
SETTINGS = {
    "put_records_throttle": float,
    "get_records_throttle": float,
    "put_records_partial": float,
    "s3_outage": str,
}
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "expect",
    }
)
UPSTREAM_TIMEOUT_S = 120


class _State:
    """Settings and counters shared by the handler threads."""

    def __init__(self, upstream: str, seed: int):
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname, parts.port or 80
        self.settings: dict[str, object] = {
            "put_records_throttle": 0.0,
            "get_records_throttle": 0.0,
            "put_records_partial": 0.0,
            "s3_outage": "",
        }
        self.counters: dict[str, Counter] = defaultdict(Counter)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def draw(self) -> float:
        with self._lock:
            return self._rng.random()

    def count(self, operation: str, **increments: int) -> None:
        with self._lock:
            self.counters[operation].update(increments)

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "settings": dict(self.settings),
                "stats": {op: dict(c) for op, c in sorted(self.counters.items())},
            }

    def update(self, changes: dict) -> None:
        unknown = set(changes) - set(SETTINGS)
        if unknown:
            raise ValueError(f"unknown settings {sorted(unknown)}; known: {sorted(SETTINGS)}")
        with self._lock:
            for key, value in changes.items():
                self.settings[key] = SETTINGS[key](value)

    def reset(self) -> None:
        with self._lock:
            self.counters.clear()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pizzastream-faults"
    state: _State  # set on the subclass made by ``serve``

    # ------------------------------------------------------------------ plumbing
    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        pass

    def do_GET(self):
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_GET

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _reply(self, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, document: object, content_type="application/json") -> None:
        self._reply(
            status,
            json.dumps(document).encode(),
            [("Content-Type", content_type), ("x-amzn-RequestId", str(uuid.uuid4()))],
        )

    # ------------------------------------------------------------------ routing
    def _dispatch(self) -> None:
        body = self._body()
        if self.path.startswith(CONTROL_PATH):
            return self._control(body)
        target = self.headers.get("X-Amz-Target", "")
        service, _, operation = target.partition(".")
        if service.startswith("Kinesis_"):
            return self._kinesis(operation, body)
        if target:  # DynamoDB and any other JSON service: untouched
            return self._forward(body)
        return self._s3(body)

    def _control(self, body: bytes) -> None:
        state = self.state
        try:
            if self.command == "POST" and self.path.rstrip("/") == f"{CONTROL_PATH}/reset":
                state.reset()
            elif self.command == "POST":
                state.update(json.loads(body or b"{}"))
        except (ValueError, TypeError) as error:
            return self._json(400, {"error": str(error)})
        self._json(200, state.snapshot())

    def _kinesis(self, operation: str, body: bytes) -> None:
        state, name = self.state, f"Kinesis.{operation}"
        share = {
            "PutRecords": state.settings["put_records_throttle"],
            "GetRecords": state.settings["get_records_throttle"],
        }.get(operation, 0.0)
        if share and state.draw() < share:  # type: ignore[operator]  # the settings' shares are floats
            state.count(name, calls=1, throttled=1)
            return self._json(
                400,
                {
                    "__type": THROTTLED,
                    "message": "Rate exceeded for shard (injected by stack.faults)",
                },
                "application/x-amz-json-1.1",
            )
        partial = state.settings["put_records_partial"]
        if operation == "PutRecords" and partial:
            return self._partial_put_records(body, partial)  # type: ignore[arg-type]  # the settings' shares are floats
        state.count(name, calls=1)
        self._forward(body)

    def _partial_put_records(self, body: bytes, share: float) -> None:
        state = self.state
        request = json.loads(body)
        records = request["Records"]
        failed = [state.draw() < share for _ in records]
        kept = [record for record, fail in zip(records, failed) if not fail]
        state.count("Kinesis.PutRecords", calls=1, records=len(records), records_failed=sum(failed))
        results: list[dict] = []
        moto_failed = 0
        if kept:
            status, headers, answer = self._upstream(
                json.dumps({**request, "Records": kept}).encode()
            )
            if status != 200:  # the whole call failed upstream: pass that on unchanged
                return self._reply(status, answer, headers)
            document = json.loads(answer)
            results = document["Records"]
            moto_failed = document.get("FailedRecordCount", 0)
        merged, upstream_results = [], iter(results)
        for fail in failed:
            merged.append(
                {
                    "ErrorCode": THROTTLED,
                    "ErrorMessage": "Rate exceeded for shard (injected by stack.faults)",
                }
                if fail
                else next(upstream_results)
            )
        self._json(
            200,
            {"FailedRecordCount": moto_failed + sum(failed), "Records": merged},
            "application/x-amz-json-1.1",
        )

    def _s3(self, body: bytes) -> None:
        outage = self.state.settings["s3_outage"]
        if outage == "close":
            self.state.count("S3", calls=1, refused=1)
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if outage:
            self.state.count("S3", calls=1, refused=1)
            return self._reply(
                503,
                b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>'
                b"ServiceUnavailable</Code><Message>injected by stack.faults"
                b"</Message></Error>",
                [("Content-Type", "application/xml")],
            )
        self.state.count("S3", calls=1)
        self._forward(body)

    # ------------------------------------------------------------------ upstream
    def _upstream(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        """One request to moto on a fresh connection (a kept-alive one that moto closed
        could not be retried safely: PutRecords is not idempotent)."""
        state = self.state
        connection = http.client.HTTPConnection(
            state.upstream_host,  # type: ignore[arg-type]  # set before the server starts
            state.upstream_port,
            timeout=UPSTREAM_TIMEOUT_S,
        )
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            headers["Content-Length"] = str(len(body))
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
            return response.status, kept, answer
        finally:
            connection.close()

    def _forward(self, body: bytes) -> None:
        try:
            status, headers, answer = self._upstream(body)
        except OSError as error:  # moto down or hung: what a client would see from AWS
            return self._json(503, {"__type": "ServiceUnavailable", "message": str(error)})
        self._reply(status, answer, headers)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


def serve(upstream: str, host: str = "127.0.0.1", port: int = 0, seed: int = 1) -> _Server:
    """A proxy server bound to ``host:port`` (0: any free port), not yet serving."""
    handler = type("Handler", (_Handler,), {"state": _State(upstream, seed)})
    return _Server((host, port), handler)


# ---------------------------------------------------------------------- test-side handle


class FaultProxy:
    """Runs ``python -m stack.faults`` as a child process and controls it."""

    def __init__(
        self,
        upstream: str,
        *,
        port: int = 0,
        seed: int = 1,
        log: Path | None = None,
        start_timeout_s: float = 20,
    ):
        self.upstream = upstream
        self._port, self._seed, self._timeout = port, seed, start_timeout_s
        self._log = log
        self._process: subprocess.Popen | None = None
        self.port: int | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        import tempfile

        port_file = Path(tempfile.mkstemp(prefix="faults-port-")[1])
        port_file.write_text("")
        log = open(self._log, "ab") if self._log else subprocess.DEVNULL  # noqa: SIM115 - the child's
        try:
            self._process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "stack.faults",
                    "--upstream",
                    self.upstream,
                    "--port",
                    str(self._port),
                    "--seed",
                    str(self._seed),
                    "--port-file",
                    str(port_file),
                    "--parent-pid",
                    str(os.getpid()),
                ],
                cwd=Path(__file__).resolve().parents[1],
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        finally:
            if log is not subprocess.DEVNULL:
                log.close()  # type: ignore[union-attr]  # a file here: DEVNULL is checked above
        deadline = time.monotonic() + self._timeout
        while not port_file.read_text().strip():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("stack.faults: the proxy did not start")
            time.sleep(0.05)
        self.port = int(port_file.read_text())
        port_file.unlink()
        return self

    def _call(self, path: str = "", payload: dict | None = None) -> dict:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            self.endpoint + CONTROL_PATH + path, data=data, method="GET" if data is None else "POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def configure(self, **settings) -> dict:
        """Changes the given settings (see the module doc); returns all of them."""
        return self._call(payload=settings)["settings"]

    def clear(self) -> None:
        """Every fault off."""
        self.configure(
            put_records_throttle=0, get_records_throttle=0, put_records_partial=0, s3_outage=""
        )

    def stats(self) -> dict[str, dict[str, int]]:
        return self._call()["stats"]

    def reset_stats(self) -> None:
        self._call("/reset", {})

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _watch_parent(parent_pid: int, server: _Server) -> None:
    """Ends the proxy when the process that started it is gone (a killed test run)."""
    while True:
        time.sleep(1)
        try:
            os.kill(parent_pid, 0)
        except ProcessLookupError:
            server.shutdown()
            return


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m stack.faults",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--upstream", required=True, help="moto's endpoint, e.g. http://127.0.0.1:4566"
    )
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--seed", type=int, default=1, help="seed of the fault draws")
    parser.add_argument("--port-file", type=Path, help="write the bound port here when ready")
    parser.add_argument("--parent-pid", type=int, help="exit when this process is gone")
    for name, kind in SETTINGS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None)
    args = parser.parse_args(argv)

    server = serve(args.upstream, port=args.port, seed=args.seed)
    initial = {name: getattr(args, name) for name in SETTINGS if getattr(args, name) is not None}
    server.RequestHandlerClass.state.update(initial)  # type: ignore[attr-defined]  # the handler class carries the shared state
    port = server.server_address[1]
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    if args.parent_pid:
        threading.Thread(target=_watch_parent, args=(args.parent_pid, server), daemon=True).start()
    print(f"stack.faults: proxy on 127.0.0.1:{port} -> {args.upstream}", flush=True)
    if args.port_file:
        args.port_file.write_text(str(port))
    server.serve_forever(poll_interval=0.2)
    server.server_close()


if __name__ == "__main__":
    main()
