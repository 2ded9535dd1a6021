"""Stand-in for the third-party delivery provider: one local HTTP API playing every partner.

    python -m stack.provider            # serves on the port of Delivery.provider_url

The delivery service offers orders here as it would to the real provider
(``connectors/delivery_provider.py`` is its client). The API, all JSON:

``POST /dispatch`` ``{"order_id", "partner_id", ...}`` (header ``Idempotency-Key`` =
    order id): ``200 {"delivery_id", "order_id", "partner_id"}`` when the partner takes
    the order, ``409 {"error": "refused"}`` when it declines. Repeating an order for the
    same partner answers as the first time did and returns the same ``delivery_id``; that
    is what makes a replayed record dispatch once.
``POST /cancel`` ``{"order_id", "partner_id"}``: ``200 {"cancelled": bool}``; the client
    cancels an offer whose answer it never got (timeout) before trying the next partner.
``GET /dispatches[?order_id=…]``: every accepted dispatch with its state (``active`` or
    ``cancelled``) and how often it was requested, plus counts of refusals and errors;
    the tests assert each order has exactly one active dispatch.
``GET /health``: 200.

Behaviour knobs, per run: keys ``provider_*`` of the ``Delivery`` property group (so also
env ``PIZZASTREAM__DELIVERY__PROVIDER_REFUSAL_RATE`` etc.) or ``Knobs`` in code:
``refusal_rate`` (empty: each partner's own ``refusal_rate`` from the reference data),
``error_rate`` (answer 503 before doing anything), ``latency_ms`` (uniform extra delay
0..N ms), ``slow_rate``/``slow_ms`` (that share of requests is held ``slow_ms`` after the
decision is made, so a client that times out has in fact been served), ``seed``;
``refusing_partners`` and ``slow_partners`` (comma-separated ids: those partners refuse
every order, or answer every dispatch ``slow_ms`` late). Knobs can be swapped while the
stand-in runs (``server.state.knobs``), so a partner can time out and then recover.
A partner's refusal is a pure function of (seed, order, partner): asked again, it says the
same, like a real courier declining an offer it already saw.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pizzastream import reference_data
from pizzastream.config import Props, load_properties
from pizzastream.settings import validate

KNOB_PREFIX = "provider_"


@dataclass(frozen=True)
class Knobs:
    refusal_rate: float | None = None
    error_rate: float = 0.0
    latency_ms: int = 0
    slow_rate: float = 0.0
    slow_ms: int = 0
    seed: int = 0
    refusing_partners: frozenset[int] = frozenset()
    slow_partners: frozenset[int] = frozenset()

    @classmethod
    def from_properties(cls, group: dict[str, str]) -> Knobs:
        def get(name: str, default: str) -> str:
            value = group.get(KNOB_PREFIX + name, "")
            return value if value.strip() else default

        refusal = get("refusal_rate", "")
        return cls(
            refusal_rate=float(refusal) if refusal else None,
            error_rate=float(get("error_rate", "0")),
            latency_ms=int(get("latency_ms", "0")),
            slow_rate=float(get("slow_rate", "0")),
            slow_ms=int(get("slow_ms", "0")),
            seed=int(get("seed", "0")),
            refusing_partners=_ids(get("refusing_partners", "")),
            slow_partners=_ids(get("slow_partners", "")),
        )


def _ids(text: str) -> frozenset[int]:
    return frozenset(int(part) for part in text.split(",") if part.strip())


@dataclass
class Dispatch:
    order_id: str
    partner_id: int
    delivery_id: str
    status: str = "active"  # active | cancelled
    requests: int = 1
    first_at: float = field(default_factory=time.time)


class ProviderState:
    """What the stand-in remembers; thread-safe."""

    def __init__(self, knobs: Knobs):
        self.knobs = knobs
        self._lock = threading.Lock()
        self._dispatches: dict[tuple[str, int], Dispatch] = {}
        self._refusals: dict[tuple[str, int], int] = {}
        self._errors = 0
        self._rng = random.Random(knobs.seed)
        self._partner_refusal = {
            p.partner_id: p.refusal_rate for p in reference_data.delivery_partners()
        }

    def refuses(self, order_id: str, partner_id: int) -> bool:
        if partner_id in self.knobs.refusing_partners:
            return True
        rate = self.knobs.refusal_rate
        if rate is None:
            rate = self._partner_refusal.get(partner_id, 0.0)
        digest = hashlib.sha256(f"{self.knobs.seed}:{order_id}:{partner_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < rate

    def draw(self) -> float:
        with self._lock:
            return self._rng.random()

    def count_error(self) -> None:
        with self._lock:
            self._errors += 1

    def dispatch(self, order_id: str, partner_id: int) -> Dispatch | None:
        """The partner's answer: its dispatch (new or repeated) or None for a refusal."""
        key = (order_id, partner_id)
        with self._lock:
            if self.refuses(order_id, partner_id):
                self._refusals[key] = self._refusals.get(key, 0) + 1
                return None
            existing = self._dispatches.get(key)
            if existing is not None:
                existing.requests += 1
                existing.status = "active"  # re-offered after a cancel: same courier job
                return existing
            created = Dispatch(order_id, partner_id, f"DLV-{partner_id}-{uuid.uuid4().hex[:12]}")
            self._dispatches[key] = created
            return created

    def cancel(self, order_id: str, partner_id: int) -> bool:
        with self._lock:
            existing = self._dispatches.get((order_id, partner_id))
            if existing is None or existing.status == "cancelled":
                return False
            existing.status = "cancelled"
            return True

    def snapshot(self, order_id: str | None = None) -> dict[str, Any]:
        with self._lock:
            dispatches = [
                asdict(d)
                for d in self._dispatches.values()
                if order_id is None or d.order_id == order_id
            ]
            refusals = sum(
                n for (oid, _), n in self._refusals.items() if order_id is None or oid == order_id
            )
            return {"dispatches": dispatches, "refusals": refusals, "errors": self._errors}


class _Handler(BaseHTTPRequestHandler):
    server: ProviderServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if self.server.verbose:
            super().log_message(format, *args)

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _body(self) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def _delay(self, state: ProviderState, partner_id: int) -> None:
        knobs = state.knobs
        delay_ms = state.draw() * knobs.latency_ms if knobs.latency_ms else 0.0
        if (
            knobs.slow_rate and state.draw() < knobs.slow_rate
        ) or partner_id in knobs.slow_partners:
            delay_ms += knobs.slow_ms
        if delay_ms:
            time.sleep(delay_ms / 1000)

    def do_GET(self) -> None:  # stdlib naming
        url = urlsplit(self.path)
        if url.path == "/health":
            self._reply(HTTPStatus.OK, {"ok": True})
        elif url.path == "/dispatches":
            order_id = parse_qs(url.query).get("order_id", [None])[0]
            self._reply(HTTPStatus.OK, self.server.state.snapshot(order_id))
        else:
            self._reply(HTTPStatus.NOT_FOUND, {"error": "not_found"})

    def do_POST(self) -> None:  # stdlib naming
        state = self.server.state
        path = urlsplit(self.path).path
        body = self._body()
        if path not in ("/dispatch", "/cancel"):
            self._reply(HTTPStatus.NOT_FOUND, {"error": "not_found"})
            return
        if (
            body is None
            or not isinstance(body.get("order_id"), str)
            or not isinstance(body.get("partner_id"), int)
        ):
            self._reply(HTTPStatus.BAD_REQUEST, {"error": "order_id and partner_id required"})
            return
        if state.knobs.error_rate and state.draw() < state.knobs.error_rate:
            state.count_error()
            self._reply(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "unavailable"})
            return
        order_id, partner_id = body["order_id"], body["partner_id"]
        if path == "/cancel":
            self._reply(HTTPStatus.OK, {"cancelled": state.cancel(order_id, partner_id)})
            return
        dispatch = state.dispatch(order_id, partner_id)
        self._delay(state, partner_id)  # decided first: a client that gives up was served
        if dispatch is None:
            self._reply(HTTPStatus.CONFLICT, {"error": "refused"})
        else:
            self._reply(
                HTTPStatus.OK,
                {
                    "delivery_id": dispatch.delivery_id,
                    "order_id": order_id,
                    "partner_id": partner_id,
                },
            )


class ProviderServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        """A client that gave up (timeout) closes the socket under a slow answer: normal."""
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)

    def __init__(self, host: str, port: int, knobs: Knobs, verbose: bool = False):
        super().__init__((host, port), _Handler)
        self.state = ProviderState(knobs)
        self.verbose = verbose

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"  # type: ignore[str-bytes-safe]  # a TCP server's address: a str host


def address(props: Props) -> tuple[str, int]:
    url = urlsplit(props["Delivery"]["provider_url"])
    return url.hostname or "127.0.0.1", url.port or 80


def start(knobs: Knobs, host: str = "127.0.0.1", port: int = 0) -> ProviderServer:
    """A stand-in serving on a background thread (port 0: any free port); ``shutdown()``
    and ``server_close()`` stop it."""
    server = ProviderServer(host, port, knobs)
    threading.Thread(target=server.serve_forever, name="provider-stand-in", daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, help="default: the port of Delivery.provider_url")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    props = load_properties()
    validate(props)
    host, port = address(props)
    knobs = Knobs.from_properties(props["Delivery"])
    server = ProviderServer(host, args.port or port, knobs, verbose=args.verbose)
    print(f"provider stand-in on {server.url} ({knobs})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
