"""Rules for the POS batches (contract: in-store sales come back from the external POS as
one gzipped JSON-lines file per store system every 15 minutes, plus a manifest).

A batch can arrive twice, arrive hours late, or be cut short, and none of that may lose or
double-count a sale. These rules are what make that checkable without any server:

- ``Manifest``: what the POS says it sent (record count, sha256 of the uncompressed bytes,
  event-time range); the manifest is written last, so its presence means "complete".
- ``parse_line`` and ``BatchDigest``: every line is a valid settled line item, and the
  lines actually read add up to the manifest; any difference is a ``BadBatch`` naming why,
  and the whole batch is refused rather than half-loaded.
- ``settle`` / ``orders_from_lines``: an order becomes line items (``order_fct`` rows) and
  line items regroup into the sale record the ``sales`` stream carries.
- Keys: the batch id is the ledger's idempotency key; ``sale_event_id`` is a stable event
  id for a sale rebuilt from line items, so a re-sent sale is recognisably the same event.
- ``line_dead_letter``: a refused line's ``dead_letter`` row, identified by its file and
  line number, so a re-run or a re-delivery of the same bad file adds no second row.

A line ``parse_line`` accepts fits every ``order_fct`` column (integer columns, the
``numeric(10,2)``/``numeric(12,2)`` amounts): no line can fail on insert and stop a store
system's later batches.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from operator import attrgetter
from typing import Any

from pizzastream.catalog import from_cents, to_cents
from pizzastream.dead_letters import DeadLetter, printable_payload, storable_store_id
from pizzastream.orders import (
    FULFILLMENTS,
    MAX_ID_LENGTH,
    STORE_IDS,
    Channel,
    EnrichedOrder,
    OrderLine,
    format_event_time,
    is_id,
    parse_event_time,
)
from pizzastream.sales import fact_rows
from pizzastream.schemas import ORDER_FCT

LANDING_PREFIX = "pos/landing/"
ARCHIVE_PREFIX = "pos/archive/"
QUARANTINE_PREFIX = "pos/quarantine/"
DATA_SUFFIX = ".jsonl.gz"
MANIFEST_SUFFIX = ".manifest.json"
REASON_SUFFIX = ".reason.json"
LINE_COLUMNS = ORDER_FCT.names
# order_fct's column ranges: integer columns, numeric(10,2) unit_price and numeric(12,2)
# total_transaction_amt (in cents: below 10^10 and 10^12).
MAX_INTEGER = 2**31 - 1
MAX_UNIT_PRICE_CENTS = 10**10 - 1
MAX_TOTAL_CENTS = 10**12 - 1
DEAD_LETTER_JOB = "pos_ingestion"
_BATCH_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MANIFEST_KEY = re.compile(
    rf"^{re.escape(LANDING_PREFIX)}store_system=(\d+)/({_BATCH_ID.pattern})"
    rf"{re.escape(MANIFEST_SUFFIX)}$"
)


class Fault(StrEnum):
    """Why a batch was refused; recorded with the quarantined batch."""

    BAD_MANIFEST = "bad_manifest"
    MISSING_DATA = "missing_data"
    BAD_GZIP = "bad_gzip"
    BAD_LINE = "bad_line"
    WRONG_STORE_SYSTEM = "wrong_store_system"
    COUNT_MISMATCH = "count_mismatch"
    CHECKSUM_MISMATCH = "checksum_mismatch"
    TS_RANGE_MISMATCH = "ts_range_mismatch"
    REFUSED_BY_DATABASE = "refused_by_database"


class BadBatch(Exception):
    """A batch that must be quarantined whole; ``fault`` is the machine-readable reason."""

    def __init__(self, fault: Fault, detail: str):
        super().__init__(f"{fault}: {detail}")
        self.fault = fault
        self.detail = detail


# --- store systems and keys -------------------------------------------------------------


def store_system(store_id: int, systems: int) -> int:
    """The POS store system (1..``systems``) that runs a store: contiguous store ranges."""
    return (store_id - STORE_IDS.start) * systems // len(STORE_IDS) + 1


def batch_id(system: int, cut_ms: int) -> str:
    """A POS batch id: the store system and the moment the batch was cut, e.g.
    ``ss07-20261124T181500123Z``. Sorts by time within a system."""
    stamp = format_event_time(cut_ms).replace("-", "").replace(":", "").replace(".", "")
    return f"ss{system:02d}-{stamp}"


def system_prefix(prefix: str, system: int) -> str:
    """Where a store system's batches are under ``prefix``: ``pos/landing/store_system=07/``."""
    return f"{prefix}store_system={system:02d}/"


def batch_key(prefix: str, system: int, batch: str, suffix: str) -> str:
    """Object key of one part of a batch, e.g. ``pos/landing/store_system=07/<id>.jsonl.gz``."""
    return f"{system_prefix(prefix, system)}{batch}{suffix}"


def parse_manifest_key(key: str) -> tuple[int, str] | None:
    """``(store_system, batch_id)`` of a landing manifest key, None for any other key."""
    match = _MANIFEST_KEY.match(key)
    return (int(match[1]), match[2]) if match else None


def sale_event_id(order_id: str) -> str:
    """Event id of a sale rebuilt from POS line items. Stable, so a sale re-sent after a
    crash carries the same id as the first copy and consumers can tell."""
    return f"pos:{order_id}"


# --- manifest ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Manifest:
    batch_id: str
    store_system: int
    record_count: int
    sha256: str
    min_ts: str | None  # contract ts format; None for an empty batch
    max_ts: str | None

    def to_json(self) -> str:
        return json.dumps(self.__dict__, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: bytes | str) -> Manifest:
        """The manifest, or ``BadBatch(BAD_MANIFEST)`` naming what is wrong with it."""
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as error:
            raise BadBatch(Fault.BAD_MANIFEST, f"not JSON: {error}") from None
        except RecursionError:
            raise BadBatch(Fault.BAD_MANIFEST, "JSON nested too deeply") from None
        if not isinstance(doc, dict):
            raise BadBatch(Fault.BAD_MANIFEST, "not a JSON object")
        missing = [name for name in cls.__dataclass_fields__ if name not in doc]
        if missing:
            raise BadBatch(Fault.BAD_MANIFEST, f"missing {', '.join(missing)}")
        manifest = cls(**{name: doc[name] for name in cls.__dataclass_fields__})
        manifest._check()
        return manifest

    def _check(self) -> None:
        if not (isinstance(self.batch_id, str) and _BATCH_ID.fullmatch(self.batch_id)):
            raise BadBatch(Fault.BAD_MANIFEST, f"batch_id {self.batch_id!r}")
        for name in ("store_system", "record_count"):
            value = getattr(self, name)
            if not _is_int(value) or value < 0:
                raise BadBatch(Fault.BAD_MANIFEST, f"{name} {value!r} is not a count")
        if not (isinstance(self.sha256, str) and _SHA256.fullmatch(self.sha256)):
            raise BadBatch(Fault.BAD_MANIFEST, f"sha256 {self.sha256!r}")
        for name in ("min_ts", "max_ts"):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, str) or parse_event_time(value) is None
            ):
                raise BadBatch(Fault.BAD_MANIFEST, f"{name} {value!r} is not ISO-8601 UTC")


# --- line items -------------------------------------------------------------------------


@dataclass(frozen=True)
class SettledLine:
    """One settled line item: an ``order_fct`` row of an in-store sale (``delivery_id`` is
    always null), money in cents. Field order is ``pizzastream.sales.FACT_COLUMNS``."""

    store_id: int
    order_id: str
    product_id: int
    transaction_ts_ms: int
    quantity: int
    unit_price_cents: int
    total_cents: int
    delivery_type: str
    channel: str

    def to_json(self) -> str:
        """The line as the POS writes it: ``LINE_COLUMNS``, money as decimal numbers."""
        return json.dumps(
            {
                "store_id": self.store_id,
                "order_id": self.order_id,
                "product_id": self.product_id,
                "transaction_ts": format_event_time(self.transaction_ts_ms),
                "quantity": self.quantity,
                "unit_price": float(from_cents(self.unit_price_cents)),
                "total_transaction_amt": float(from_cents(self.total_cents)),
                "delivery_id": None,
                "delivery_type": self.delivery_type,
                "channel": self.channel,
            },
            separators=(",", ":"),
        )


def settle(order: EnrichedOrder) -> list[SettledLine]:
    """What the POS makes of an accepted in-store order: one line item per order line."""
    return [SettledLine(*row) for row in fact_rows(order)]


def parse_line(raw: bytes) -> SettledLine:
    """One line of a batch file as a ``SettledLine``; ``BadBatch(BAD_LINE)`` otherwise.
    Money is read as exact decimals: a float would round some cents."""
    try:
        doc = json.loads(raw, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadBatch(Fault.BAD_LINE, f"not JSON: {error}") from None
    except RecursionError:
        raise BadBatch(Fault.BAD_LINE, "JSON nested too deeply") from None
    if not isinstance(doc, dict):
        raise BadBatch(Fault.BAD_LINE, "not a JSON object")
    try:
        return _settled_line(doc)
    except (KeyError, TypeError, ValueError, ArithmeticError) as error:
        raise BadBatch(Fault.BAD_LINE, f"{type(error).__name__}: {error}"[:500]) from None


def _settled_line(doc: dict[str, Any]) -> SettledLine:
    """Raises KeyError/TypeError/ValueError on the first broken rule."""
    for name in ("store_id", "product_id", "quantity"):
        if not _is_int(doc[name]):
            raise TypeError(f"{name} must be an integer")
    order_id, ts = doc["order_id"], doc["transaction_ts"]
    if not (
        isinstance(order_id, str) and 0 < len(order_id) <= MAX_ID_LENGTH and isinstance(ts, str)
    ):
        raise TypeError("order_id and transaction_ts must be non-empty strings")
    if not order_id.isprintable():  # a NUL or lone surrogate: no database takes it
        raise ValueError(f"order_id {order_id!r} has unprintable characters")
    ts_ms = parse_event_time(ts)
    if doc["store_id"] not in STORE_IDS or ts_ms is None:
        raise ValueError("store_id or transaction_ts out of range")
    for name in ("product_id", "quantity"):
        if not 0 < doc[name] <= MAX_INTEGER:
            raise ValueError(f"{name} {doc[name]} is not in 1..{MAX_INTEGER}")
    price, total = (_cents(doc[name]) for name in ("unit_price", "total_transaction_amt"))
    if not 0 < price <= MAX_UNIT_PRICE_CENTS or not 0 < total <= MAX_TOTAL_CENTS:
        raise ValueError(
            f"unit_price {price} or total {total} cents out of range (numeric(10,2), numeric(12,2))"
        )
    if total != doc["quantity"] * price:
        raise ValueError(f"total {total} is not quantity x unit_price ({price} cents)")
    if doc.get("delivery_id") is not None:
        raise ValueError("an in-store sale has no delivery_id")
    if doc["delivery_type"] not in FULFILLMENTS or doc["channel"] != Channel.IN_STORE:
        raise ValueError(f"delivery_type {doc['delivery_type']!r} / channel {doc['channel']!r}")
    return SettledLine(
        doc["store_id"],
        order_id,
        doc["product_id"],
        ts_ms,
        doc["quantity"],
        price,
        total,
        doc["delivery_type"],
        doc["channel"],
    )


def _cents(value: object) -> int:
    if not isinstance(value, (int, Decimal)) or isinstance(value, bool):
        raise TypeError(f"{value!r} is not an amount")
    if isinstance(value, Decimal) and (not value.is_finite() or abs(value.adjusted()) > 20):
        # checked before converting: int() of 1E+999999999 would build a billion digits
        raise ValueError(f"amount {str(value)[:40]} is out of range")
    return to_cents(value)


# --- whole batch ------------------------------------------------------------------------


class BatchDigest:
    """Running count, sha256 and event-time range of the lines read so far, so a batch of
    any size is checked in one pass without keeping it."""

    def __init__(self, system: int, systems: int):
        self._system = system
        self._systems = systems
        self._sha = hashlib.sha256()
        self.count = 0
        self.min_ts_ms: int | None = None
        self.max_ts_ms: int | None = None

    def add(self, raw: bytes) -> SettledLine:
        """Counts one raw line (with its newline) and returns it parsed, or raises
        ``BadBatch`` (``BAD_LINE``, ``WRONG_STORE_SYSTEM``) for it; a refused line is
        counted and checksummed all the same, so the caller can go on to the next one."""
        self._sha.update(raw)
        self.count += 1
        line = parse_line(raw)
        if store_system(line.store_id, self._systems) != self._system:
            raise BadBatch(
                Fault.WRONG_STORE_SYSTEM,
                f"store {line.store_id} is not in store system {self._system}",
            )
        ts = line.transaction_ts_ms
        self.min_ts_ms = ts if self.min_ts_ms is None else min(self.min_ts_ms, ts)
        self.max_ts_ms = ts if self.max_ts_ms is None else max(self.max_ts_ms, ts)
        return line

    def manifest(self, batch: str) -> Manifest:
        """The manifest that describes exactly the lines added (what the POS writes)."""
        return Manifest(
            batch,
            self._system,
            self.count,
            self._sha.hexdigest(),
            *(
                None if ts is None else format_event_time(ts)
                for ts in (self.min_ts_ms, self.max_ts_ms)
            ),
        )

    def verify(self, manifest: Manifest) -> None:
        """``BadBatch`` unless the lines read are exactly the ones the manifest describes."""
        if manifest.store_system != self._system:
            raise BadBatch(
                Fault.WRONG_STORE_SYSTEM,
                f"manifest says store system {manifest.store_system}, key says {self._system}",
            )
        actual = self.manifest(manifest.batch_id)
        if actual.record_count != manifest.record_count:
            raise BadBatch(
                Fault.COUNT_MISMATCH,
                f"{actual.record_count} lines read, manifest says {manifest.record_count}",
            )
        if actual.sha256 != manifest.sha256:
            raise BadBatch(
                Fault.CHECKSUM_MISMATCH,
                f"sha256 {actual.sha256} read, manifest says {manifest.sha256}",
            )
        if (actual.min_ts, actual.max_ts) != _normalised_range(manifest):
            raise BadBatch(
                Fault.TS_RANGE_MISMATCH,
                f"lines span {actual.min_ts}..{actual.max_ts}"
                f", manifest says {manifest.min_ts}..{manifest.max_ts}",
            )


def _normalised_range(manifest: Manifest) -> tuple[str | None, str | None]:
    """The manifest's range in ``format_event_time`` form, so ``...Z`` and ``+00:00``
    spellings of the same instant compare equal."""
    # Both parse: the manifest was checked when it was read.
    return tuple(
        None if ts is None else format_event_time(parse_event_time(ts))  # type: ignore[arg-type]
        for ts in (manifest.min_ts, manifest.max_ts)
    )  # type: ignore[return-value]  # two


# --- line items back to orders ----------------------------------------------------------


def orders_from_lines(lines: Iterable[SettledLine]) -> Iterator[EnrichedOrder]:
    """Regroups line items into orders (the sale record's shape). ``lines`` must come
    ordered by ``order_id``, so only one order is held at a time."""
    for _, group in itertools.groupby(lines, key=attrgetter("order_id")):
        yield _order(list(group))


def _order(lines: list[SettledLine]) -> EnrichedOrder:
    first = lines[0]
    header = attrgetter("store_id", "transaction_ts_ms", "delivery_type", "channel")
    if any(header(line) != header(first) for line in lines):
        raise ValueError(f"lines of order {first.order_id} disagree on store, time or type")
    return EnrichedOrder(
        sale_event_id(first.order_id),
        first.order_id,
        first.store_id,
        first.channel,
        first.delivery_type,
        first.transaction_ts_ms,
        None,
        None,
        tuple(OrderLine(line.product_id, line.quantity, line.unit_price_cents) for line in lines),
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --- refused lines ----------------------------------------------------------------------


@dataclass(frozen=True)
class RefusedLine:
    """A line of a batch file that cannot be loaded: its 1-based number, bytes and why."""

    number: int
    raw: bytes
    fault: Fault
    detail: str


class BadLines(BadBatch):
    """A batch refused for its lines (``refused`` holds the first ones, ``count`` all of
    them): quarantined whole, and each refused line dead-lettered."""

    def __init__(self, refused: list[RefusedLine], count: int):
        first = refused[0]
        super().__init__(
            first.fault, f"{count} line(s) refused; line {first.number}: {first.detail}"
        )
        self.refused = refused
        self.count = count


def line_dead_letter(data_key: str, line: RefusedLine) -> DeadLetter:
    """The ``dead_letter`` row of a refused POS line. Its id is the file and the line
    number: a restart or a re-delivery of the same file finds its row already there."""
    digest = hashlib.sha256(f"{DEAD_LETTER_JOB}\0{data_key}\0{line.number}".encode())
    where = f"line {line.number}" if line.number else "(no line: the batch as a whole)"
    order_id, store_id = _readable_ids(line.raw)
    return DeadLetter(
        digest.hexdigest()[:32],
        DEAD_LETTER_JOB,
        str(line.fault),
        f"{data_key} {where}: {line.detail}",
        None,
        order_id,
        printable_payload(line.raw),
        store_id,
    )


def _readable_ids(raw: bytes) -> tuple[str | None, int | None]:
    """The line's order id and store id, each if it can be read as one, else None."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None, None
    if not isinstance(doc, dict):
        return None, None
    order_id = doc.get("order_id")
    return (order_id if is_id(order_id) else None), storable_store_id(doc.get("store_id"))


# --- completeness: what a store system has delivered --------------------------------------

_BATCH_CUT = re.compile(r"^ss\d+-(\d{8})T(\d{6})(\d{3})Z$")
# A marker on ``sales`` saying a store system's sales up to its time are all there; written
# starting with this text so the job's watermark generator tells it from a sale without
# parsing (``pizzastream.flink.JsonEventTime``).
PROGRESS_PREFIX = '{"pos":'


def batch_cut_ms(batch: str) -> int | None:
    """When a batch was cut (``batch_id``'s stamp), None for an id the POS did not make."""
    match = _BATCH_CUT.match(batch)
    if not match:
        return None
    return parse_event_time(
        f"{match[1][:4]}-{match[1][4:6]}-{match[1][6:]}T"
        f"{match[2][:2]}:{match[2][2:4]}:{match[2][4:]}.{match[3]}Z"
    )


def delivered_up_to(batches: Iterable[tuple[str, str]], cadence_ms: int) -> int | None:
    """The time up to which a store system's sales have all been loaded, from its ledger
    rows ``(batch_id, status)``: the cut of its newest batch such that no earlier batch is
    still expected, None when nothing can be said yet.

    A POS batch holds what the store system settled since its previous cut, so a loaded
    batch cut at T stands for every sale before T only if the batches before it are loaded
    too. Two things say one is still expected: a batch quarantined and not yet delivered
    whole again (a cut-short file), and a gap in the cuts longer than one and a half
    cadences (a batch not delivered at all yet). Repeated deliveries change nothing."""
    loaded: list[int] = []
    waiting: list[int] = []
    for batch, status in batches:
        cut = batch_cut_ms(batch)
        if cut is not None:
            (waiting if status == "quarantined" else loaded).append(cut)
    if not loaded:
        return None
    loaded.sort()
    stop = min(waiting, default=None)
    frontier = None
    for cut in loaded:
        if stop is not None and cut > stop:
            break
        if frontier is not None and cut - frontier > cadence_ms * 3 // 2:
            break
        frontier = cut
    return frontier


def progress_json(system: int, store_id: int, up_to_ms: int) -> str:
    """The ``sales`` marker of a store system's progress, put with the partition key of one
    of its stores so that it follows that store's sales on their shard (``PROGRESS_PREFIX``;
    ``s`` and ``t`` as a sale names them)."""
    return f'{PROGRESS_PREFIX}{system},"s":{store_id},"t":{up_to_ms}}}'


def system_stores(system: int, systems: int) -> list[int]:
    """The stores a POS store system runs (``store_system``'s contiguous ranges)."""
    return [store for store in STORE_IDS if store_system(store, systems) == system]
