"""Order intake and order status.

``place`` gives a customer's order the ids and event time the contract asks for, runs the
order_enrichment rules on the exact bytes it will send (``pizzastream.orders.enrich``: one
source of truth, so an order refused here would be refused by the job and an order taken
here passes the job's validation, unless it reaches the job later than
``OrderRules.max_age_hours``), puts them on the ``orders`` stream keyed by store
(``OrdersStream``: one ``PutRecords`` for the orders arriving together), and
only then notes the order as received (``intake:{order_id}``) so its status can say
"pending" instead of "unknown". Stock is decided downstream (inventory_windowing), whose
verdict ``status`` reads from ``order:{order_id}``, with the delivery from
``delivery:{order_id}``.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import redis.asyncio as aioredis

from connectors import kinesis_agg, redis_store
from delivery.service import redis_key as delivery_key
from pizzastream.catalog import Catalog
from pizzastream.orders import (
    EnrichedOrder,
    OrderRules,
    OrderStatus,
    Rejection,
    enrich,
    format_event_time,
    status_for,
)

SERVICE_FIELDS = ("event_id", "order_id", "ts")
INTAKE_TTL_S = redis_store.ORDER_STATUS_TTL_S
PENDING = "pending"
# What the customer is told for each final status.
MESSAGES = {
    OrderStatus.ACCEPTED.value: "Your order is accepted.",
    OrderStatus.REJECTED_INSUFFICIENT_INVENTORY.value: (
        "The store has run out of something this order needs: please choose another pizza."
    ),
    OrderStatus.REJECTED_UNKNOWN_PRODUCT.value: "A product in this order is not on the menu: please choose another pizza.",
    OrderStatus.REJECTED_INVALID.value: "The order could not be read: please try again.",
    PENDING: "Your order is being checked.",
}


def intake_key(order_id: str) -> str:
    return f"intake:{order_id}"


class OrderRefused(Exception):
    """The order breaks a rule; ``rejection`` says which (HTTP 422, or 400 for a body that
    is not a JSON object)."""

    def __init__(self, rejection: Rejection, http_status: int):
        super().__init__(rejection.detail)
        self.rejection = rejection
        self.http_status = http_status


@dataclass(frozen=True)
class Placed:
    order: EnrichedOrder
    shard_id: str


def prepare(
    body: bytes, catalog: Catalog, rules: OrderRules, now_ms: int
) -> tuple[bytes, EnrichedOrder]:
    """The record to send for a request body, validated; raises ``OrderRefused``."""
    try:
        request = json.loads(body) if len(body) <= rules.max_record_bytes else None
    except (ValueError, RecursionError):
        request = None
    if not isinstance(request, dict):
        # Not an object we can add ids to: the rules name the defect (size, UTF-8, JSON).
        result = enrich(body, catalog, rules, now_ms)
        rejection = (
            result
            if isinstance(result, Rejection)
            else Rejection("not_an_object", "the order must be a JSON object")
        )
        raise OrderRefused(rejection, 400)
    offered = [name for name in SERVICE_FIELDS if name in request]
    if offered:
        raise OrderRefused(
            Rejection(
                "service_field", f"{', '.join(offered)} are set by the service, not the client"
            ),
            400,
        )
    record = {
        "event_id": uuid.uuid4().hex,
        "order_id": f"W{uuid.uuid4().hex}",
        **request,
        "ts": format_event_time(now_ms),
    }
    raw = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()
    result = enrich(raw, catalog, rules, now_ms)
    if isinstance(result, Rejection):
        raise OrderRefused(result, 422)
    return raw, result


class StreamRefused(Exception):
    """Kinesis did not take the record (throttled or failed): the order was not placed and
    the client may retry (503)."""


class OrdersStream:
    """Puts records on the ``orders`` stream together: a record waits only while earlier
    ``PutRecords`` calls are in flight (at most ``max_in_flight``), then goes with everything
    that queued meanwhile, up to Kinesis' 500 records a call. One record alone is sent at
    once; under load the cost of signing and sending a call (boto3, in a thread) is shared
    by many orders. The records of one store within a call go as one KPL aggregated record
    (``connectors.kinesis_agg``; one alone goes plain): a shard takes 1,000 records/s, and a
    store busier than that fits its one shard only so (docs/resharding.md). Each caller
    learns its own record's outcome, an aggregate's being every member's."""

    MAX_RECORDS = 500
    # Kinesis' limit is 1 MiB per record (data plus partition key): room to spare.
    MAX_AGGREGATE_BYTES = 1_000_000

    def __init__(self, kinesis, stream: str, max_in_flight: int = 4):
        self._kinesis = kinesis
        self._stream = stream
        self._max_in_flight = max_in_flight
        self._queue: list[tuple[bytes, str, asyncio.Future]] = []
        self._in_flight = 0
        self.calls = 0

    async def put(self, data: bytes, partition_key: str) -> str:
        """Returns the shard id once Kinesis has the record; raises ``StreamRefused``."""
        future = asyncio.get_running_loop().create_future()
        self._queue.append((data, partition_key, future))
        if self._in_flight < self._max_in_flight:
            self._send_next()
        return await future

    def _send_next(self) -> None:
        batch, self._queue = self._queue[: self.MAX_RECORDS], self._queue[self.MAX_RECORDS :]
        self._in_flight += 1
        asyncio.get_running_loop().create_task(self._send(batch))

    async def _send(self, batch: list[tuple[bytes, str, asyncio.Future]]) -> None:
        try:
            records, waiting = _aggregated(batch, self.MAX_AGGREGATE_BYTES, self.MAX_RECORDS)
            self.calls += 1
            response = await anyio.to_thread.run_sync(
                lambda: self._kinesis.put_records(StreamName=self._stream, Records=records)
            )
            for futures, result in zip(waiting, response["Records"]):
                for future in futures:
                    if "ErrorCode" in result:
                        future.set_exception(
                            StreamRefused(
                                f"{result['ErrorCode']}: {result.get('ErrorMessage', '')}"
                            )
                        )
                    else:
                        future.set_result(result["ShardId"])
        except Exception as error:  # noqa: BLE001 - every waiting caller must hear of it
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(StreamRefused(f"orders stream unavailable: {error}"))
        finally:
            self._in_flight -= 1
            if self._queue:
                self._send_next()


def _aggregated(
    batch: list[tuple[bytes, str, asyncio.Future]], max_bytes: int, max_records: int
) -> tuple[list[dict], list[list[asyncio.Future]]]:
    """The ``PutRecords`` entries of ``batch`` with each store's records packed (in the
    order they queued), and for each entry the callers waiting on it."""
    by_key: dict[str, list[tuple[bytes, asyncio.Future]]] = {}
    for data, key, future in batch:
        by_key.setdefault(key, []).append((data, future))
    records: list[dict] = []
    waiting: list[list[asyncio.Future]] = []
    for key, queued in by_key.items():
        datas = [item for item, _ in queued]
        for pack in kinesis_agg.packs(key, datas, max_bytes, max_records):
            members = datas[pack.start : pack.stop]
            records.append(
                {
                    "Data": members[0] if len(members) == 1 else kinesis_agg.encode(key, members),
                    "PartitionKey": key,
                }
            )
            waiting.append([future for _, future in queued[pack.start : pack.stop]])
    return records, waiting


class Intake:
    def __init__(
        self,
        kinesis,
        stream: str,
        redis: aioredis.Redis | aioredis.RedisCluster,
        rules: OrderRules,
        catalog: Catalog,
    ):
        self._orders = OrdersStream(kinesis, stream)
        self._redis = redis
        self.rules = rules
        self.catalog = catalog

    async def place(self, body: bytes) -> Placed:
        raw, order = prepare(body, self.catalog, self.rules, int(time.time() * 1000))
        shard_id = await self._orders.put(raw, str(order.store_id))
        await self._redis.set(intake_key(order.order_id), order.event_id, ex=INTAKE_TTL_S)
        return Placed(order, shard_id)

    async def status(self, order_id: str, wait_s: float, poll_s: float = 0.05) -> dict | None:
        """The order's status; with ``wait_s`` > 0 waits that long at most for the final
        status to appear. None when the order is unknown (never placed here and no status)."""
        deadline = time.monotonic() + wait_s
        keys = (
            redis_store.order_status_key(order_id),
            delivery_key(order_id),
            intake_key(order_id),
        )
        while True:
            # Three keys of three slots (on a cluster, maybe three nodes): a pipeline, not
            # an MGET, which a cluster refuses across slots.
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.get(key)
                status, delivery, received = await pipe.execute()
            if status is not None or time.monotonic() >= deadline:
                break
            await asyncio.sleep(poll_s)
        if status is None and received is None:
            return None
        return status_document(order_id, status, delivery)


def status_document(order_id: str, status: str | None, delivery: str | None) -> dict:
    """The JSON a customer's app reads: ``pending``, ``accepted`` or ``rejected`` with the
    reason, a message to show, and the delivery's progress once the delivery service has
    decided it."""
    final = status or PENDING
    state, _, reason = final.partition(":")
    doc: dict[str, Any] = {
        "order_id": order_id,
        "status": state,
        "reason": reason or None,
        "message": MESSAGES.get(final, MESSAGES[status_for(reason)] if reason else final),
    }
    if delivery is not None:
        try:
            doc["delivery"] = json.loads(delivery)
        except ValueError:
            doc["delivery"] = {"status": delivery}
    else:
        doc["delivery"] = None
    return doc
