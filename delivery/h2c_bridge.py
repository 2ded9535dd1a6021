"""Local only: lets the KCL's Kinesis client talk to the moto emulator.

The KCL always builds its Kinesis client for HTTP/2 (``KinesisClientUtil``: Netty,
``Protocol.HTTP2``; the MultiLangDaemon offers no property to change that), and against a
plain ``http://`` endpoint that means HTTP/2 with prior knowledge (h2c). moto's server
speaks only HTTP/1.1, so the daemon's first Kinesis call fails with "First received frame
was not SETTINGS". On AWS the endpoint is HTTPS and none of this applies.

This bridge accepts h2c connections on 127.0.0.1 and forwards each request as HTTP/1.1
to the configured endpoint, answer for answer. ``delivery.daemon`` starts it on a free
port (in a thread of the launcher) whenever the Kinesis endpoint is plain HTTP, and points
``kinesisEndpoint`` at it; DynamoDB needs no bridge (its client uses HTTP/1.1).
"""

from __future__ import annotations

import asyncio
import http.client
import logging
import threading
from urllib.parse import urlsplit

import h2.config
import h2.connection
import h2.events
import h2.exceptions

log = logging.getLogger(__name__)

# Headers that describe one HTTP/1.1 connection, not the message (RFC 9113 §8.2.2).
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"upgrade",
        b"te",
        b"host",
    }
)
UPSTREAM_TIMEOUT_S = 30.0


class _Stream:
    __slots__ = ("headers", "body")

    def __init__(self, headers: list[tuple[bytes, bytes]]):
        self.headers = headers
        self.body = bytearray()


class _Connection:
    """One client connection: h2 state machine plus one forwarding task per stream."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: tuple[str, int]
    ):
        self.reader, self.writer, self.upstream = reader, writer, upstream
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding=None)
        )
        self.streams: dict[int, _Stream] = {}
        self.window_open = asyncio.Event()
        self.tasks: set[asyncio.Task] = set()

    async def run(self) -> None:
        self.h2.initiate_connection()
        await self._flush()
        try:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    break
                try:
                    events = self.h2.receive_data(data)
                except h2.exceptions.ProtocolError as error:
                    log.warning("h2c bridge: protocol error: %s", error)
                    await self._flush()
                    break
                for event in events:
                    self._on_event(event)
                await self._flush()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            for task in self.tasks:
                task.cancel()
            self.writer.close()

    def _on_event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            self.streams[event.stream_id] = _Stream(list(event.headers))
            if event.stream_ended:
                self._forward(event.stream_id)
        elif isinstance(event, h2.events.DataReceived):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.body.extend(event.data)
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if event.stream_ended:
                self._forward(event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            self._forward(event.stream_id)
        elif isinstance(event, h2.events.StreamReset):
            self.streams.pop(event.stream_id, None)
        elif isinstance(event, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
            self.window_open.set()

    def _forward(self, stream_id: int) -> None:
        stream = self.streams.pop(stream_id, None)
        if stream is None:
            return
        task = asyncio.get_running_loop().create_task(self._answer(stream_id, stream))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _answer(self, stream_id: int, stream: _Stream) -> None:
        try:
            status, headers, body = await asyncio.to_thread(self._upstream_call, stream)
        except OSError as error:
            log.warning("h2c bridge: upstream %s:%s failed: %s", *self.upstream, error)
            status, headers, body = 502, [(b"content-type", b"text/plain")], str(error).encode()
        try:
            self.h2.send_headers(
                stream_id,
                [
                    (b":status", str(status).encode()),
                    *headers,
                    (b"content-length", str(len(body)).encode()),
                ],
                end_stream=not body,
            )
            await self._flush()
            view = memoryview(body)
            while view:
                window = min(
                    self.h2.local_flow_control_window(stream_id), self.h2.max_outbound_frame_size
                )
                if window <= 0:
                    self.window_open.clear()
                    await self.window_open.wait()
                    continue
                chunk, view = view[:window], view[window:]
                self.h2.send_data(stream_id, bytes(chunk), end_stream=not view)
                await self._flush()
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, ConnectionError):
            pass

    def _upstream_call(self, stream: _Stream) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        pseudo = {name: value for name, value in stream.headers if name.startswith(b":")}
        headers = {
            name.decode(): value.decode("latin-1")
            for name, value in stream.headers
            if not name.startswith(b":") and name.lower() not in _HOP_BY_HOP
        }
        host, port = self.upstream
        conn = http.client.HTTPConnection(host, port, timeout=UPSTREAM_TIMEOUT_S)
        try:
            conn.request(
                pseudo.get(b":method", b"POST").decode(),
                pseudo.get(b":path", b"/").decode(),
                body=bytes(stream.body),
                headers={**headers, "Host": f"{host}:{port}"},
            )
            response = conn.getresponse()
            body = response.read()
            answer = [
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in response.getheaders()
                if name.lower().encode("latin-1") not in _HOP_BY_HOP | {b"content-length"}
            ]
            return response.status, answer, body
        finally:
            conn.close()

    async def _flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.writer.write(data)
            await self.writer.drain()


class H2cBridge:
    """h2c on ``127.0.0.1:<port>`` → HTTP/1.1 at ``upstream_url``, served by a daemon thread."""

    def __init__(self, upstream_url: str, port: int = 0):
        url = urlsplit(upstream_url)
        self.upstream = (url.hostname or "127.0.0.1", url.port or 80)
        self._requested_port = port
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._server: asyncio.base_events.Server | None = None
        self.port = 0
        self._thread = threading.Thread(target=self._run, name="h2c-bridge", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> H2cBridge:
        self._thread.start()
        if not self._ready.wait(10) or self._server is None:
            raise RuntimeError("h2c bridge did not start")
        return self

    def stop(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def serve() -> None:
            self._server = await asyncio.start_server(
                lambda r, w: _Connection(r, w, self.upstream).run(),
                "127.0.0.1",
                self._requested_port,
            )
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()

        try:
            self._loop.run_until_complete(serve())
            self._loop.run_forever()
        finally:
            self._ready.set()
