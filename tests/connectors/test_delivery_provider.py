"""The delivery provider's client against whatever a provider may answer: a real HTTP
server on this machine plays the provider and answers each call with what hypothesis
draws (any status, any body: JSON of any shape, ids that are not ids, not JSON at all).
Every call ends in one of the outcomes the delivery service handles (an offer result, or
``ProviderUnavailable``, which it retries later), an accepted offer always carries a
delivery id PostgreSQL and Redis can store, and error messages are printable."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from connectors.delivery_provider import DeliveryProviderClient, ProviderUnavailable
from pizzastream.delivery import OfferOutcome
from pizzastream.orders import is_id
from tests.fuzzing import AWKWARD_TEXT, json_values, profile_examples, storable

ATTEMPTS = 2


class ScriptedProvider(BaseHTTPRequestHandler):
    """Answers each request with the next ``(status, body)`` of ``answers``."""

    answers: ClassVar[list[tuple[int, bytes]]] = []
    lock = threading.Lock()

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        with self.lock:
            status, body = self.answers.pop(0) if self.answers else (503, b"")
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args) -> None:  # the test's output stays readable
        pass


@pytest.fixture(scope="module")
def provider() -> Iterator[DeliveryProviderClient]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), ScriptedProvider)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield DeliveryProviderClient(
            f"http://127.0.0.1:{server.server_port}", timeout_s=5, attempts=ATTEMPTS, backoff_s=0
        )
    finally:
        server.shutdown()
        server.server_close()


TEXT = AWKWARD_TEXT
JSON_VALUE = json_values(max_leaves=8)
DISPATCH = st.fixed_dictionaries(
    {
        "order_id": st.just("A-1") | TEXT,
        "status": st.sampled_from(["active", "cancelled"]) | TEXT,
        "partner_id": st.integers(1, 9) | JSON_VALUE,
        "delivery_id": st.just("D-1") | JSON_VALUE,
        "first_at": st.integers(0, 10) | st.floats(allow_nan=False),
    }
)
BODY = st.one_of(
    st.binary(max_size=60),
    JSON_VALUE.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"delivery_id": JSON_VALUE | st.just("D-7")}).map(
        lambda v: json.dumps(v).encode()
    ),
    st.fixed_dictionaries({"cancelled": JSON_VALUE}).map(lambda v: json.dumps(v).encode()),
    st.lists(DISPATCH | JSON_VALUE, max_size=3).map(
        lambda v: json.dumps({"dispatches": v}).encode()
    ),
    st.just(b"[" * 5000 + b"]" * 5000),
)
ANSWER = st.tuples(st.sampled_from([200, 200, 200, 201, 400, 404, 409, 500, 503]), BODY)


@settings(
    max_examples=profile_examples() * 3 // 2,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(answers=st.lists(ANSWER, min_size=ATTEMPTS, max_size=ATTEMPTS))
@example(answers=[(200, b'{"delivery_id": "a\\u0000b"}'), (200, b'{"delivery_id": ["x"]}')])
@example(answers=[(200, b'{"dispatches": [{"order_id": "A-1", "status": "active"}]}')] * 2)
def test_whatever_the_provider_answers_a_call_ends_in_a_handled_outcome(provider, answers):
    for call in ("dispatch", "cancel", "active_dispatch"):
        ScriptedProvider.answers = list(answers)
        try:
            if call == "dispatch":
                result = provider.dispatch("A-1", 3, {"fee_cents": 100})
                assert result.outcome in set(OfferOutcome)
                if result.outcome == OfferOutcome.ACCEPTED:
                    assert is_id(result.delivery_id)
            elif call == "cancel":
                assert provider.cancel("A-1", 3) in (True, False)
            else:
                active = provider.active_dispatch("A-1")
                assert active is None or (
                    type(active.partner_id) is int and is_id(active.delivery_id)
                )
        except ProviderUnavailable as unavailable:
            assert storable(str(unavailable))
