"""Realistic, deterministic order traffic for the ``orders`` stream (pure: no I/O).

The same seed, day and reference data always give the same records, byte for byte, so a
test can compare what the pipeline produced with the ``TrafficReport`` of what was sent.
Every record is labelled with its ``kind``: ``"valid"``, ``"duplicate"`` (an earlier valid
event re-sent verbatim, as a producer retry would) or the ``Reason`` that ``enrich`` must
give it. Bad records are built from a fresh valid order with exactly one defect, so the
label is unambiguous, and each carries its own event_id, so every bad record is distinct
bytes and lands once in a dead-letter table keyed by a hash of the record.

Shape of the traffic: stores drawn by ``traffic_weight`` (the 400 busy stores carry 80%
of orders), 80% online, event times spread over an 8-hour business day in roughly
increasing order, mostly small orders (1-4 lines, 1-3 of each product, about two units
per order on average, the figure the opening inventory is sized for), delivery addresses
within a few kilometres of the store.
"""

from __future__ import annotations

import json
import math
import random
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import accumulate
from typing import Any, Generic, NamedTuple, TypeVar

from pizzastream import reference_data
from pizzastream.catalog import Catalog
from pizzastream.orders import (
    STORE_IDS,
    Channel,
    Fulfillment,
    OrderRules,
    Reason,
    epoch_ms,
    format_event_time,
)
from pizzastream.reference_data import Store

VALID = "valid"
DUPLICATE = "duplicate"

BUSINESS_DAY = timedelta(hours=8)
ONLINE_SHARE = 0.8
FULFILLMENT_MIX = {
    Channel.ONLINE: {Fulfillment.DELIVERY: 60, Fulfillment.PICKUP: 35, Fulfillment.DINE_IN: 5},
    Channel.IN_STORE: {Fulfillment.DINE_IN: 60, Fulfillment.PICKUP: 40},
}
LINE_COUNT_WEIGHTS = {1: 55, 2: 28, 3: 12, 4: 5}
QUANTITY_WEIGHTS = {1: 82, 2: 13, 3: 5}
EVENT_TIME_JITTER_MS = 45_000
DELIVERY_RADIUS_KM = 6.0
DUPLICATE_POOL_SIZE = 1000  # duplicates replay one of the latest valid events
_KM_PER_DEGREE_LAT = 111.32
# Bad event times sit this far beyond the rules' limits, so they stay bad for as long
# as the valid records stay valid (see ``OrderTraffic.processing_window``).
_TIME_MARGIN_MS = 3_600_000


class TrafficRecord(NamedTuple):
    partition_key: str
    data: bytes
    kind: str


@dataclass
class TrafficReport:
    """What was generated: every record by kind, and the valid orders' breakdown that
    the pipeline's outputs must match (one ``order_fct`` row per line item)."""

    by_kind: Counter[str] = field(default_factory=Counter)
    valid_by_channel: Counter[str] = field(default_factory=Counter)
    valid_by_fulfillment: Counter[str] = field(default_factory=Counter)
    line_items: int = 0
    units: int = 0
    revenue_cents: int = 0

    @property
    def records(self) -> int:
        return sum(self.by_kind.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "by_kind": dict(sorted(self.by_kind.items())),
            "valid_by_channel": dict(sorted(self.valid_by_channel.items())),
            "valid_by_fulfillment": dict(sorted(self.valid_by_fulfillment.items())),
            "line_items": self.line_items,
            "units": self.units,
            "revenue_cents": self.revenue_cents,
        }


_T = TypeVar("_T")


class _Weighted(Generic[_T]):
    """Repeated weighted draws: cumulative weights computed once, bisected per draw."""

    def __init__(self, weights: Mapping[_T, float]):
        self._population = list(weights)
        self._cum_weights = list(accumulate(weights.values()))

    def draw(self, rng: random.Random) -> _T:
        return rng.choices(self._population, cum_weights=self._cum_weights)[0]


_FULFILLMENT_DRAWS = {channel: _Weighted(mix) for channel, mix in FULFILLMENT_MIX.items()}
_LINE_COUNTS = _Weighted(LINE_COUNT_WEIGHTS)
_QUANTITIES = _Weighted(QUANTITY_WEIGHTS)


Mutation = Callable[[dict[str, Any]], object]


class OrderTraffic:
    """A seeded source of ``orders`` records for one business day starting at
    ``day_start`` (an aware UTC datetime). ``records(n)`` yields them and keeps
    ``report`` up to date."""

    def __init__(
        self,
        rules: OrderRules,
        day_start: datetime,
        *,
        seed: int = 7,
        bad_share: float = 0.05,
        duplicate_share: float = 0.0,
        catalog: Catalog | None = None,
        stores: Sequence[Store] | None = None,
        first_sequence: int = 1,
    ):
        """``first_sequence`` numbers each store's first order; a later wave of traffic
        starts above the last one so its order ids are new orders, not replays."""
        if not (bad_share >= 0 and duplicate_share >= 0 and bad_share + duplicate_share <= 1):
            raise ValueError("bad_share and duplicate_share must be >= 0 and sum to <= 1")
        self.report = TrafficReport()
        self._rules = rules
        self._day_start_ms = epoch_ms(day_start)
        self._bad_share = bad_share
        self._duplicate_share = duplicate_share
        self._catalog = catalog or Catalog.from_reference_data()
        self._rng = random.Random(seed)
        self._stores = _Weighted({s: s.traffic_weight for s in stores or reference_data.stores()})
        self._active_ids = [p.product_id for p in self._catalog.products() if p.active]
        self._bad_variants = self._bad_variant_table()
        self._sequence_base = first_sequence - 1
        self._next_seq: Counter[int] = Counter()
        self._recent: deque[TrafficRecord] = deque(maxlen=DUPLICATE_POOL_SIZE)
        self._bad_count = 0

    @property
    def day_end_ms(self) -> int:
        return self._day_start_ms + BUSINESS_DAY // timedelta(milliseconds=1)

    def processing_window(self) -> tuple[int, int]:
        """Earliest and latest processing time (epoch ms) at which every record gets the
        kind it is labelled with: the valid ones are neither future nor stale yet, and
        the future and stale ones still are."""
        return (
            self.day_end_ms - self._rules.max_future_seconds * 1000,
            self._day_start_ms + self._rules.max_age_hours * 3_600_000,
        )

    def records(self, n: int) -> Iterator[TrafficRecord]:
        """``n`` records whose event times spread evenly over the business day."""
        span = self.day_end_ms - self._day_start_ms
        for index in range(n):
            record = self._record(self._day_start_ms + index * span // max(n, 1))
            self.report.by_kind[record.kind] += 1
            yield record

    def _record(self, ts_ms: int) -> TrafficRecord:
        draw = self._rng.random()
        if draw < self._bad_share:
            return self._bad(ts_ms)
        if draw < self._bad_share + self._duplicate_share and self._recent:
            return self._rng.choice(self._recent)._replace(kind=DUPLICATE)
        return self._valid(ts_ms)

    def _valid(self, ts_ms: int) -> TrafficRecord:
        order = self._order(ts_ms)
        record = TrafficRecord(str(order["store_id"]), _dumps(order), VALID)
        self._recent.append(record)
        self._count_valid(order)
        return record

    def _bad(self, ts_ms: int) -> TrafficRecord:
        """The next bad variant in turn, applied to a fresh valid order."""
        reason, mutate = self._bad_variants[self._bad_count % len(self._bad_variants)]
        self._bad_count += 1
        order = self._order(ts_ms)
        data = mutate(order)
        return TrafficRecord(
            str(order["store_id"]), data if isinstance(data, bytes) else _dumps(data), reason.value
        )

    def _order(self, ts_ms: int) -> dict[str, Any]:
        rng = self._rng
        store = self._stores.draw(rng)
        channel = Channel.ONLINE if rng.random() < ONLINE_SHARE else Channel.IN_STORE
        fulfillment = _FULFILLMENT_DRAWS[channel].draw(rng)
        self._next_seq[store.store_id] += 1
        jitter = rng.randint(-EVENT_TIME_JITTER_MS, EVENT_TIME_JITTER_MS)
        order = {  # event_id first: a record cut short still holds its unique token
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "order_id": f"S{store.store_id:04d}-"
            f"{self._sequence_base + self._next_seq[store.store_id]:06d}",
            "store_id": store.store_id,
            "channel": channel.value,
            "fulfillment": fulfillment.value,
            "ts": format_event_time(min(max(ts_ms + jitter, self._day_start_ms), self.day_end_ms)),
        }
        if fulfillment == Fulfillment.DELIVERY:
            order["customer"] = _near(rng, store)
        products = rng.sample(self._active_ids, _LINE_COUNTS.draw(rng))
        order["items"] = [
            {"product_id": product_id, "quantity": _QUANTITIES.draw(rng)} for product_id in products
        ]
        return order

    def _count_valid(self, order: dict[str, Any]) -> None:
        report = self.report
        report.valid_by_channel[order["channel"]] += 1
        report.valid_by_fulfillment[order["fulfillment"]] += 1
        for item in order["items"]:
            report.line_items += 1
            report.units += item["quantity"]
            report.revenue_cents += (
                item["quantity"] * self._catalog.product(item["product_id"]).unit_price_cents  # type: ignore[union-attr]  # drawn from the catalog
            )

    def _bad_variant_table(self) -> list[tuple[Reason, Mutation]]:
        """Every defect this generator can produce, each tagged with the reason ``enrich``
        must give. Several defects per reason where the rule has several edges."""
        rules = self._rules
        max_future_ms = rules.max_future_seconds * 1000
        max_age_ms = rules.max_age_hours * 3_600_000
        future_ms = self._day_start_ms + max_age_ms + max_future_ms + _TIME_MARGIN_MS
        stale_ms = self.day_end_ms - max_future_ms - max_age_ms - _TIME_MARGIN_MS
        products = self._catalog.products()
        unknown_id = max(p.product_id for p in products) + 1000
        inactive_ids = [p.product_id for p in products if not p.active]
        table: list[tuple[Reason, Mutation]] = [
            (Reason.OVERSIZE, _set("note", "x" * rules.max_record_bytes)),
            (Reason.NOT_UTF8, _latin1_note),
            (Reason.MALFORMED_JSON, _truncated),
            (Reason.NOT_AN_OBJECT, lambda order: [order]),
            (Reason.MISSING_FIELD, _drop("ts")),
            (Reason.MISSING_FIELD, _set_item("quantity", None)),
            (Reason.MISSING_LOCATION, _delivery_to(None)),
            (Reason.WRONG_TYPE, lambda order: {**order, "store_id": str(order["store_id"])}),
            (Reason.WRONG_TYPE, _set_item("quantity", 1.5)),
            (Reason.UNKNOWN_STORE, _set("store_id", STORE_IDS.stop)),
            (Reason.INVALID_CHANNEL, _set("channel", "phone")),
            (Reason.INVALID_FULFILLMENT, _set("fulfillment", "drone")),
            (Reason.INVALID_TIMESTAMP, lambda order: {**order, "ts": order["ts"].rstrip("Z")}),
            (Reason.FUTURE_EVENT_TIME, _set("ts", format_event_time(future_ms))),
            (Reason.STALE_EVENT_TIME, _set("ts", format_event_time(stale_ms))),
            (Reason.NO_ITEMS, _set("items", [])),
            (
                Reason.NO_ITEMS,
                lambda order: {**order, "items": order["items"][:1] * (rules.max_lines + 1)},
            ),
            (Reason.INVALID_QUANTITY, _set_item("quantity", 0)),
            (Reason.INVALID_QUANTITY, _set_item("quantity", -1)),
            (Reason.INVALID_QUANTITY, _set_item("quantity", rules.max_quantity + 1)),
            (Reason.CLIENT_PRICE, _set_item("unit_price", 0.01)),
            (Reason.CLIENT_PRICE, _set("total", 1.0)),
            (Reason.UNKNOWN_PRODUCT, _set_item("product_id", unknown_id)),
            (
                Reason.DUPLICATE_PRODUCT,
                lambda order: {**order, "items": order["items"] + order["items"][:1]},
            ),
            (Reason.INVALID_LOCATION, _delivery_to({"lat": 123.4, "lon": -74.0})),
        ]
        if inactive_ids:
            table.append((Reason.INACTIVE_PRODUCT, _set_item("product_id", inactive_ids[0])))
        return table


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _near(rng: random.Random, store: Store) -> dict[str, float]:
    """A delivery address uniformly spread over a disk around the store."""
    distance = DELIVERY_RADIUS_KM * math.sqrt(rng.random())
    bearing = rng.uniform(0.0, 2.0 * math.pi)
    dlat = distance * math.cos(bearing) / _KM_PER_DEGREE_LAT
    dlon = distance * math.sin(bearing) / (_KM_PER_DEGREE_LAT * math.cos(math.radians(store.lat)))
    return {"lat": round(store.lat + dlat, 5), "lon": round(store.lon + dlon, 5)}


def _set(key: str, value: object) -> Mutation:
    return lambda order: {**order, key: value}


def _drop(key: str) -> Mutation:
    return lambda order: {k: v for k, v in order.items() if k != key}


def _set_item(key: str, value: object) -> Mutation:
    """Changes the first line; ``None`` (JSON null) counts as absent for the rules."""
    return lambda order: {
        **order,
        "items": [{**order["items"][0], key: value}, *order["items"][1:]],
    }


def _delivery_to(customer: dict[str, Any] | None) -> Mutation:
    return lambda order: {
        **order,
        "channel": Channel.ONLINE.value,
        "fulfillment": Fulfillment.DELIVERY.value,
        "customer": customer,
    }


def _latin1_note(order: dict[str, Any]) -> bytes:
    """A note typed on a till that sends Latin-1: valid JSON, invalid UTF-8."""
    return json.dumps({**order, "note": "extra jalapeño"}, ensure_ascii=False).encode("latin-1")


def _truncated(order: dict[str, Any]) -> bytes:
    """A record cut short in transit."""
    data = _dumps(order)
    return data[: len(data) // 2]
