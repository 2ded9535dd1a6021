"""Hypothesis-generated bad records for the whole job path (Kinesis -> order_enrichment ->
dead_letter), beyond the generator's 26 labelled kinds and the parser's in-process fuzz
in ``tests/pizzastream/test_orders.py``: what matters here is what the parser lets through to the
edges (PostgreSQL text columns, Redis keys, the JVM's strings), which only the real job
path exercises.

Each record is drawn from one of: arbitrary bytes; arbitrary text; a valid order with
corrupted bytes; a valid order with fields replaced by arbitrary JSON; and a valid order
whose string fields carry JSON escapes that decode to characters the edges are touchy
about (lone UTF-16 surrogates, NUL, control characters, non-BMP pairs).
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from pizzastream.catalog import Catalog
from pizzastream.orders import (
    PRICE_FIELDS,
    REQUIRED_FIELDS,
    EnrichedOrder,
    OrderRules,
    enrich,
    format_event_time,
)
from tests.failures.harness import BadRecord, now_ms

JSON_SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
FIELDS = [*REQUIRED_FIELDS, "customer", *sorted(PRICE_FIELDS)]
STRING_FIELDS = ["event_id", "order_id", "channel", "fulfillment", "ts"]
# Escapes as they appear in the JSON text: decoding gives one character each.
TOUCHY_ESCAPES = [
    "\\ud800",
    "\\udfff",
    "\\udc80",
    "\\u0000",
    "\\u001f",
    "\\ud83d\\ude00",
    "\\u2028",
    "\\ufeff",
]
# Strategies must not depend on anything but their draws (hypothesis replays them), so the
# ids carry a placeholder that ``number`` replaces after generation, byte for byte.
PLACEHOLDER = "#####"


def template(tag: str, ts: str, store_id: int = 42) -> dict:
    """A valid delivery order whose ids hold ``PLACEHOLDER``."""
    return {
        "event_id": f"FZ{tag}-E{PLACEHOLDER}",
        "order_id": f"FZ{tag}-{PLACEHOLDER}",
        "store_id": store_id,
        "channel": "online",
        "fulfillment": "delivery",
        "ts": ts,
        "customer": {"lat": 40.71, "lon": -74.0},
        "items": [{"product_id": 1, "quantity": 1}, {"product_id": 16, "quantity": 2}],
    }


def number(raw: bytes, index: int) -> bytes:
    """The record with unique ids: the placeholder (same length) replaced by ``index``."""
    return raw.replace(PLACEHOLDER.encode(), f"{index:05d}".encode())


def _mutated(draw, order: dict) -> bytes:
    for name, value in draw(
        st.lists(st.tuples(st.sampled_from(FIELDS), JSON_VALUES), min_size=1, max_size=3)
    ):
        order[name] = value
    return json.dumps(order).encode()


def _corrupted(draw, order: dict) -> bytes:
    raw = bytearray(json.dumps(order).encode())
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(raw) - 1))
        raw[position : position + 1] = draw(st.binary(max_size=3))
    return bytes(raw)


def _escaped(draw, order: dict) -> bytes:
    name = draw(st.sampled_from(STRING_FIELDS))
    escape = draw(st.sampled_from(TOUCHY_ESCAPES))
    text = json.dumps({**order, name: "\x00PLACEHOLDER\x00"})
    # Keep the field's meaning when it has one (a valid id plus the escape), or replace it.
    value = draw(st.sampled_from([order[name] + escape, escape, escape + order[name]]))
    # A few records are otherwise valid, the others break one more rule so they are refused
    # even where the escape is harmless.
    if draw(st.booleans()):
        text = text.replace('"quantity": 1}', '"quantity": 0}', 1)
    return text.replace("\\u0000PLACEHOLDER\\u0000", value).encode()


@st.composite
def bad_records(draw, tag: str, ts: str) -> bytes:
    """One record from the strategies above, built on a valid order with event time ``ts``."""
    order = template(tag, ts, draw(st.integers(1, 2000)))
    kind = draw(st.sampled_from(["bytes", "text", "corrupted", "mutated", "escaped"]))
    if kind == "bytes":
        return draw(st.binary(min_size=1, max_size=300))
    if kind == "text":
        return draw(st.text(min_size=1, max_size=200)).encode()
    return {"corrupted": _corrupted, "mutated": _mutated, "escaped": _escaped}[kind](draw, order)


def fuzz_batch(
    size: int, fuzz_seed: int, rules: OrderRules, catalog: Catalog, tag: str
) -> tuple[list[BadRecord], list[bytes]]:
    """``size`` hypothesis-generated records, each with the rejection ``enrich`` gives it
    now, and separately the ones it would accept (not sent: they would be real orders).
    Records whose verdict depends on the second they are judged are left out too."""
    drawn: list[bytes] = []
    ts = format_event_time(now_ms() - 600_000)

    @seed(fuzz_seed)
    @settings(
        max_examples=size,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(bad_records(tag, ts))
    def collect(raw):
        drawn.append(raw)

    collect()
    bad, accepted = [], []
    numbered = (number(raw, index) for index, raw in enumerate(drawn))
    for raw in dict.fromkeys(numbered):  # distinct bytes: one dead letter each
        now = now_ms()
        result, later = enrich(raw, catalog, rules, now), enrich(raw, catalog, rules, now + 120_000)
        if isinstance(result, EnrichedOrder):
            accepted.append(raw)
        elif type(later) is type(result) and later.reason == result.reason:
            bad.append(BadRecord("fuzz", raw, result.reason, result, source="hypothesis"))
    return bad, accepted
