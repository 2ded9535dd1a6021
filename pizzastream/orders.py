"""Validation and enrichment of raw orders: the logic of the ``order_enrichment`` job.

``enrich`` turns the bytes of one ``orders`` record (see the data contract) into either an
``EnrichedOrder`` priced from the catalog or a ``Rejection`` naming the first rule it
broke. It never raises, whatever the bytes: one poison record must not stop the stream.
The checks run in a fixed order, cheapest and most fundamental first, so a record with
several defects always gets the same reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeGuard

import orjson

from pizzastream.catalog import Catalog

# How a KPL aggregated record starts (connectors/kinesis_agg.py).
KPL_MAGIC = b"\xf3\x89\x9a\xc2"


class Reason(StrEnum):
    """Why a record was rejected; shared by the rules, the dead letters and the generator."""

    OVERSIZE = "oversize"
    NOT_UTF8 = "not_utf8"
    MALFORMED_JSON = "malformed_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_FIELD = "missing_field"
    MISSING_LOCATION = "missing_location"
    WRONG_TYPE = "wrong_type"
    UNKNOWN_STORE = "unknown_store"
    INVALID_CHANNEL = "invalid_channel"
    INVALID_FULFILLMENT = "invalid_fulfillment"
    INVALID_TIMESTAMP = "invalid_timestamp"
    FUTURE_EVENT_TIME = "future_event_time"
    STALE_EVENT_TIME = "stale_event_time"
    NO_ITEMS = "no_items"
    INVALID_QUANTITY = "invalid_quantity"
    CLIENT_PRICE = "client_price"
    UNKNOWN_PRODUCT = "unknown_product"
    INACTIVE_PRODUCT = "inactive_product"
    DUPLICATE_PRODUCT = "duplicate_product"
    INVALID_LOCATION = "invalid_location"


class OrderStatus(StrEnum):
    """The contract's final order statuses."""

    ACCEPTED = "accepted"
    REJECTED_UNKNOWN_PRODUCT = "rejected:unknown_product"
    REJECTED_INSUFFICIENT_INVENTORY = "rejected:insufficient_inventory"
    REJECTED_INVALID = "rejected:invalid"


class Channel(StrEnum):
    ONLINE = "online"
    IN_STORE = "in_store"


class Fulfillment(StrEnum):
    DELIVERY = "delivery"
    PICKUP = "pickup"
    DINE_IN = "dine_in"


CHANNELS = frozenset(c.value for c in Channel)
FULFILLMENTS = frozenset(f.value for f in Fulfillment)
STORE_IDS = range(1, 2001)
MAX_ID_LENGTH = 64
REQUIRED_FIELDS = ("event_id", "order_id", "store_id", "channel", "fulfillment", "ts", "items")
ITEM_FIELDS = ("product_id", "quantity")
# Any of these on the order or an item means the client tried to set a price.
PRICE_FIELDS = frozenset({"price", "unit_price", "total", "amount"})
_UNKNOWN_PRODUCT_REASONS = frozenset({Reason.UNKNOWN_PRODUCT, Reason.INACTIVE_PRODUCT})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)
_DETAIL_VALUE_CHARS = 60


@dataclass(frozen=True)
class OrderRules:
    """Limits from the ``OrderRules`` property group (other keys in the group are ignored)."""

    max_quantity: int
    max_lines: int
    max_record_bytes: int
    max_future_seconds: int
    max_age_hours: int

    @classmethod
    def from_properties(cls, group: Mapping[str, str]) -> OrderRules:
        return cls(**{f.name: int(group[f.name]) for f in fields(cls)})


@dataclass(frozen=True)
class OrderLine:
    """A priced line; ``amount_cents`` is derived so it can never disagree with the price."""

    product_id: int
    quantity: int
    unit_price_cents: int
    amount_cents: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "amount_cents", self.quantity * self.unit_price_cents)


@dataclass(frozen=True)
class EnrichedOrder:
    """A valid order with catalog prices, as it travels on ``orders-enriched``."""

    event_id: str
    order_id: str
    store_id: int
    channel: str
    fulfillment: str
    ts_ms: int
    customer_lat: float | None
    customer_lon: float | None
    lines: tuple[OrderLine, ...]
    total_cents: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "total_cents", sum(line.amount_cents for line in self.lines))

    def to_json(self) -> str:
        """The ``orders-enriched`` record (``enriched_json``)."""
        return enriched_json(
            self.event_id,
            self.order_id,
            self.store_id,
            self.channel,
            self.fulfillment,
            self.ts_ms,
            [[ln.product_id, ln.quantity, ln.unit_price_cents] for ln in self.lines],
            None if self.customer_lat is None else [self.customer_lat, self.customer_lon],  # type: ignore[list-item]  # both or neither
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> EnrichedOrder:
        """Inverse of ``to_json``; trusts its input, which only ``to_json`` produces."""
        doc = json.loads(text)
        lat, lon = doc.get("g", (None, None))
        return cls(
            doc["e"],
            doc["o"],
            doc["s"],
            doc["c"],
            doc["f"],
            doc["t"],
            lat,
            lon,
            tuple(OrderLine(*line) for line in doc["l"]),
        )


def enriched_json(
    event_id: str,
    order_id: str,
    store_id: int,
    channel: str,
    fulfillment: str,
    ts_ms: int,
    lines: list[list[int]],
    location: list[float] | None,
) -> str:
    """Compact JSON, since every event crosses the JVM/Python boundary and Kinesis:
    ``{"e": event_id, "o": order_id, "s": store_id, "c": channel, "f": fulfillment,
    "t": ts_ms, "l": [[product_id, quantity, unit_price_cents], ...], "g": [lat, lon]}``
    with ``"g"`` only for deliveries; UTF-8, non-ASCII characters as they are. Amounts and
    the total are left out: they follow from the lines. The one writer of the format, for
    ``EnrichedOrder.to_json`` and ``accept`` alike."""
    doc: dict[str, Any] = {
        "e": event_id,
        "o": order_id,
        "s": store_id,
        "c": channel,
        "f": fulfillment,
        "t": ts_ms,
        "l": lines,
    }
    if location is not None:
        doc["g"] = location
    return orjson.dumps(doc).decode()


def status_for(reason: str) -> str:
    """The final order status of an order rejected for ``reason``."""
    if reason in _UNKNOWN_PRODUCT_REASONS:
        return OrderStatus.REJECTED_UNKNOWN_PRODUCT.value
    return OrderStatus.REJECTED_INVALID.value


@dataclass(frozen=True)
class Rejection:
    """A record that cannot become an order; the ids are whatever could be read from it."""

    reason: str
    detail: str
    event_id: str | None = None
    order_id: str | None = None
    store_id: int | None = None

    def status(self) -> str:
        return status_for(self.reason)


def epoch_ms(moment: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime, in exact integer arithmetic."""
    return (moment - _EPOCH) // _MILLISECOND


def format_event_time(ts_ms: int) -> str:
    """Epoch milliseconds in the contract's ``ts`` format, e.g. ``2026-11-24T18:05:31.123Z``."""
    moment = _EPOCH + ts_ms * _MILLISECOND
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_event_time(text: str) -> int | None:
    """Epoch milliseconds of an ISO-8601 UTC timestamp; None if it is not one. A missing
    or non-zero offset is refused: the contract says UTC, and guessing would shift sales
    into the wrong hour."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.utcoffset() != timedelta(0):
        return None
    return epoch_ms(moment)


class _Invalid(Exception):
    """Internal: carries the first broken rule out of the nested checks."""

    def __init__(self, reason: Reason, detail: str):
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


def enrich(
    raw: object, catalog: Catalog, rules: OrderRules, now_ms: int
) -> EnrichedOrder | Rejection:
    """Validates one raw ``orders`` record against the rules as of ``now_ms`` and prices
    it from ``catalog``. Never raises: ``raw`` is typed ``object`` because anything a
    producer sent, not only bytes, is rejected with a reason (compiled, a ``bytes`` type
    here would raise ``TypeError`` instead: deploy.compiled_core)."""
    order: object = None
    try:
        order = _decode(raw, rules.max_record_bytes)
        _check_present(order)
        _check_types(order)
        return _build(order, catalog, rules, now_ms)
    except _Invalid as invalid:
        return _rejection(invalid, order)


# --------------------------------------------------------------------------- the fast path

# The contract's own ``ts`` form, the one producers send: checked here, then parsed from
# the minute it names (cached) plus seconds and milliseconds.
_CANONICAL_TS = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-5][0-9]\.[0-9]{3}Z", re.ASCII
)
_MINUTE_MS: dict[str, int | None] = {}
# ``YYYY-MM-DDTHH:MM:SS`` of a ``ts`` that matched ``_CANONICAL_TS`` -> epoch ms of that
# second (None: no such time): a record of a second already seen only needs its
# ``.mmmZ`` checked, not the whole pattern matched again.
_SECOND_MS: dict[str, int | None] = {}
_MINUTE_CACHE_SIZE = 4096
_NUMBER_TYPES = (int, float)


def _canonical_event_time(ts: str) -> int | None:
    """``parse_event_time`` of a ``YYYY-MM-DDTHH:MM:SS.mmmZ`` text, else None."""
    if len(ts) != 24:
        return None
    second_ms = _SECOND_MS.get(ts[:19], -1)
    if second_ms != -1:
        millis = ts[20:23]
        if ts[19] == "." and ts[23] == "Z" and millis.isascii() and millis.isdigit():
            return None if second_ms is None else second_ms + int(millis)
        return None
    if _CANONICAL_TS.fullmatch(ts) is None:
        return None
    minute = ts[:16]
    minute_ms = _MINUTE_MS.get(minute, -1)
    if minute_ms == -1:
        if len(_MINUTE_MS) >= _MINUTE_CACHE_SIZE:
            _MINUTE_MS.clear()
        minute_ms = _MINUTE_MS[minute] = parse_event_time(minute + ":00Z")
    if len(_SECOND_MS) >= _MINUTE_CACHE_SIZE:
        _SECOND_MS.clear()
    second_ms = _SECOND_MS[ts[:19]] = (
        None if minute_ms is None else minute_ms + int(ts[17:19]) * 1000
    )
    return None if second_ms is None else second_ms + int(ts[20:23])


def accept(raw: bytes, catalog: Catalog, rules: OrderRules, now_ms: int) -> tuple[int, str] | None:
    """``(store_id, enriched_json)`` of a record that ``enrich`` accepts, computed without
    building its objects; None when the record is not an everyday valid order (any defect,
    or a valid order in an unusual form such as a ``ts`` with an offset), which
    ``enrich`` then decides (fields the rules do not read are ignored here as there). Never
    accepts what ``enrich`` refuses, and gives exactly
    ``enrich(...).to_json()`` for what it accepts (tests/pizzastream/test_orders.py checks both).

    Why it exists: validation is most of order_enrichment's Python time, and all but a few
    records are valid, so the common case must cost a few microseconds."""
    if len(raw) > rules.max_record_bytes:
        return None
    try:
        order = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(order) is not dict or not PRICE_FIELDS.isdisjoint(order):
        return None
    # Subscripts, not ``get`` (a call each): a missing field is no everyday order either.
    try:
        event_id, order_id, store_id = order["event_id"], order["order_id"], order["store_id"]
        channel, fulfillment, ts = order["channel"], order["fulfillment"], order["ts"]
        items = order["items"]
    except KeyError:
        return None
    if (
        type(event_id) is not str
        or type(order_id) is not str
        or type(store_id) is not int
        or type(channel) is not str
        or type(fulfillment) is not str
        or type(ts) is not str
        or type(items) is not list
        or not 0 < len(event_id) <= MAX_ID_LENGTH
        or not 0 < len(order_id) <= MAX_ID_LENGTH
        or not event_id.isprintable()
        or not order_id.isprintable()
        or store_id not in STORE_IDS
        or channel not in CHANNELS
        or fulfillment not in FULFILLMENTS
        or not 1 <= len(items) <= rules.max_lines
    ):
        return None
    ts_ms = _canonical_event_time(ts)
    if (
        ts_ms is None
        or ts_ms > now_ms + rules.max_future_seconds * 1000
        or ts_ms < now_ms - rules.max_age_hours * 3_600_000
    ):
        return None
    prices, max_quantity = catalog.sale_prices, rules.max_quantity
    lines = []
    products = set()
    for item in items:
        if type(item) is not dict or not PRICE_FIELDS.isdisjoint(item):
            return None
        try:
            product_id, quantity = item["product_id"], item["quantity"]
        except KeyError:
            return None
        if (
            type(product_id) is not int
            or type(quantity) is not int
            or not 1 <= quantity <= max_quantity
            or product_id in products
        ):
            return None
        try:
            price = prices[product_id]
        except KeyError:  # unknown or not on sale
            return None
        products.add(product_id)
        lines.append([product_id, quantity, price])
    location = None
    if fulfillment == "delivery":
        try:
            customer = order["customer"]
            if type(customer) is not dict:
                return None
            lat, lon = customer["lat"], customer["lon"]
        except KeyError:
            return None
        if (
            type(lat) not in _NUMBER_TYPES
            or type(lon) not in _NUMBER_TYPES
            or not -90 <= lat <= 90
            or not -180 <= lon <= 180
        ):
            return None
        location = [float(lat), float(lon)]
    return store_id, enriched_json(
        event_id, order_id, store_id, channel, fulfillment, ts_ms, lines, location
    )


# --------------------------------------------------------------------------- the full rules


def _decode(raw: object, max_bytes: int) -> dict[str, Any]:
    if isinstance(raw, (bytearray, memoryview)):
        raw = bytes(raw)
    if not isinstance(raw, bytes):
        raise _Invalid(Reason.NOT_UTF8, f"record is {type(raw).__name__}, not bytes")
    # Size first, before any decoding work is spent on a record that is refused anyway.
    if len(raw) > max_bytes:
        raise _Invalid(Reason.OVERSIZE, f"{len(raw)} bytes > limit {max_bytes}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        if raw.startswith(KPL_MAGIC):
            # The sources unpack valid aggregates; one that reaches the rules failed its check.
            raise _Invalid(
                Reason.NOT_UTF8,
                "a KPL aggregated record whose MD5 or protobuf does not verify (not unpacked)",
            ) from None
        raise _Invalid(Reason.NOT_UTF8, f"invalid UTF-8 at byte {error.start}") from None
    try:
        order = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as error:
        raise _Invalid(Reason.MALFORMED_JSON, str(error)) from None
    if not isinstance(order, dict):
        raise _Invalid(Reason.NOT_AN_OBJECT, f"top level is a JSON {_json_type(order)}")
    return order


def _refuse_constant(name: str) -> None:
    """NaN and Infinity are Python extensions, not JSON."""
    raise ValueError(f"{name} is not valid JSON")


def _check_present(order: dict[str, Any]) -> None:
    for name in REQUIRED_FIELDS:
        if order.get(name) is None:
            raise _Invalid(Reason.MISSING_FIELD, f"{name} is missing")
    if order["fulfillment"] == Fulfillment.DELIVERY and order.get("customer") is None:
        raise _Invalid(Reason.MISSING_LOCATION, "a delivery needs customer.lat/lon")


def _check_types(order: dict[str, Any]) -> None:
    """Shapes only, so the business checks after it can rely on the types."""
    for name in ("event_id", "order_id"):
        if not is_id(order[name]):
            raise _wrong_type(
                name, f"a non-empty string of at most {MAX_ID_LENGTH} characters", order[name]
            )
    if not _is_int(order["store_id"]):
        raise _wrong_type("store_id", "an integer", order["store_id"])
    for name in ("channel", "fulfillment", "ts"):
        if not isinstance(order[name], str):
            raise _wrong_type(name, "a string", order[name])
    if not isinstance(order["items"], list):
        raise _wrong_type("items", "a list", order["items"])
    for index, item in enumerate(order["items"]):
        if not isinstance(item, dict):
            raise _wrong_type(f"items[{index}]", "an object", item)
        for name in ITEM_FIELDS:
            if item.get(name) is None:
                raise _Invalid(Reason.MISSING_FIELD, f"items[{index}].{name} is missing")
            if not _is_int(item[name]):
                raise _wrong_type(f"items[{index}].{name}", "an integer", item[name])


def _build(
    order: dict[str, Any], catalog: Catalog, rules: OrderRules, now_ms: int
) -> EnrichedOrder:
    """Business checks on a well-typed order, then pricing."""
    if order["store_id"] not in STORE_IDS:
        raise _Invalid(
            Reason.UNKNOWN_STORE,
            f"store_id {_clip(order['store_id'])} is not {STORE_IDS.start}..{STORE_IDS.stop - 1}",
        )
    if order["channel"] not in CHANNELS:
        raise _Invalid(Reason.INVALID_CHANNEL, f"channel {_clip(order['channel'])}")
    if order["fulfillment"] not in FULFILLMENTS:
        raise _Invalid(Reason.INVALID_FULFILLMENT, f"fulfillment {_clip(order['fulfillment'])}")
    ts_ms = _event_time(order["ts"], rules, now_ms)
    items = order["items"]
    _check_items(order, items, rules)
    lines = _price(items, catalog)
    lat, lon = (
        _location(order["customer"])
        if order["fulfillment"] == Fulfillment.DELIVERY
        else (None, None)
    )
    return EnrichedOrder(
        order["event_id"],
        order["order_id"],
        order["store_id"],
        order["channel"],
        order["fulfillment"],
        ts_ms,
        lat,
        lon,
        lines,
    )


def _event_time(text: str, rules: OrderRules, now_ms: int) -> int:
    ts_ms = parse_event_time(text)
    if ts_ms is None:
        raise _Invalid(Reason.INVALID_TIMESTAMP, f"ts {_clip(text)} is not ISO-8601 UTC")
    if ts_ms > now_ms + rules.max_future_seconds * 1000:
        raise _Invalid(
            Reason.FUTURE_EVENT_TIME,
            f"ts {_clip(text)} is more than {rules.max_future_seconds}s ahead",
        )
    if ts_ms < now_ms - rules.max_age_hours * 3_600_000:
        raise _Invalid(
            Reason.STALE_EVENT_TIME, f"ts {_clip(text)} is more than {rules.max_age_hours}h old"
        )
    return ts_ms


def _check_items(order: dict[str, Any], items: list[dict[str, Any]], rules: OrderRules) -> None:
    if not 1 <= len(items) <= rules.max_lines:
        raise _Invalid(Reason.NO_ITEMS, f"{len(items)} lines, expected 1..{rules.max_lines}")
    for index, item in enumerate(items):
        if not 1 <= item["quantity"] <= rules.max_quantity:
            raise _Invalid(
                Reason.INVALID_QUANTITY,
                f"items[{index}].quantity {_clip(item['quantity'])} is not 1..{rules.max_quantity}",
            )
    _refuse_prices("order", order)
    for index, item in enumerate(items):
        _refuse_prices(f"items[{index}]", item)


def _refuse_prices(where: str, record: dict[str, Any]) -> None:
    offered = PRICE_FIELDS.intersection(record)
    if offered:
        raise _Invalid(
            Reason.CLIENT_PRICE,
            f"{where} carries {', '.join(sorted(offered))}; prices come from the catalog",
        )


def _price(items: list[dict[str, Any]], catalog: Catalog) -> tuple[OrderLine, ...]:
    """Catalog prices for each line. All lines are resolved before duplicates are looked
    for, so an unknown product wins over a repeated one wherever it appears."""
    lines = []
    for index, item in enumerate(items):
        product = catalog.product(item["product_id"])
        if product is None:
            raise _Invalid(
                Reason.UNKNOWN_PRODUCT,
                f"items[{index}].product_id {_clip(item['product_id'])} is unknown",
            )
        if not product.active:
            raise _Invalid(
                Reason.INACTIVE_PRODUCT,
                f"items[{index}].product_id {product.product_id} is not sold",
            )
        lines.append(OrderLine(product.product_id, item["quantity"], product.unit_price_cents))
    seen: set[int] = set()
    for line in lines:
        if line.product_id in seen:
            raise _Invalid(
                Reason.DUPLICATE_PRODUCT, f"product_id {line.product_id} is on more than one line"
            )
        seen.add(line.product_id)
    return tuple(lines)


def _location(customer: object) -> tuple[float, float]:
    lat = customer.get("lat") if isinstance(customer, dict) else None
    lon = customer.get("lon") if isinstance(customer, dict) else None
    if not (_is_number(lat) and _is_number(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
        raise _Invalid(
            Reason.INVALID_LOCATION,
            f"customer lat {_clip(lat)}, lon {_clip(lon)}: "
            f"need numbers, lat -90..90, lon -180..180",
        )
    return float(lat), float(lon)


def _rejection(invalid: _Invalid, order: object) -> Rejection:
    """Keeps whatever ids the record has, so its status can still be published by
    order_id and its dead letter traced; ids of the wrong shape are dropped."""
    record = order if isinstance(order, dict) else {}
    event_id, order_id, store_id = (record.get(k) for k in ("event_id", "order_id", "store_id"))
    return Rejection(
        invalid.reason.value,
        invalid.detail,
        event_id if is_id(event_id) else None,
        order_id if is_id(order_id) else None,
        store_id if _is_int(store_id) else None,
    )


def _wrong_type(name: str, expected: str, value: object) -> _Invalid:
    return _Invalid(Reason.WRONG_TYPE, f"{name} must be {expected}, got {_clip(value)}")


def is_id(value: object) -> TypeGuard[str]:
    """A non-empty string of at most ``MAX_ID_LENGTH`` printable characters: no control
    characters (PostgreSQL ``text`` refuses NUL) and no lone UTF-16 surrogates (a JSON
    ``\\ud800`` escape decodes to one; UTF-8 cannot encode it, so PyFlink's string
    serializer would fail the job on it again after every restart)."""
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH and value.isprintable()


def _is_int(value: object) -> bool:
    """JSON integers only: ``true`` is a bool and ``2.0`` a float in Python."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _json_type(value: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def _clip(value: object) -> str:
    """A short rendering of client data for a detail message: containers are named, not
    dumped, so a detail stays small and cheap whatever the record holds."""
    if isinstance(value, (dict, list)):
        return f"a JSON {_json_type(value)}"
    text = value if isinstance(value, str) else json.dumps(value)
    text = text if len(text) <= _DETAIL_VALUE_CHARS else text[:_DETAIL_VALUE_CHARS] + "…"
    # Details go to PostgreSQL and through PyFlink's UTF-8 serializer: escape what they refuse.
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
