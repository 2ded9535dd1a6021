"""Hourly review ticks: the events that make ``inventory_windowing`` review every store's
replenishment at the start of each hour, orders or not.

Why ticks are events and not timers: the forecast policy (``pizzastream.replenishment``)
must look at every ingredient each hour even when a store sells nothing (night to the
morning before the lunch peak), and what it decides names supplier orders by a per-store
counter. A processing-time timer would fire at a different point of a store's event
sequence on a replay, and issue other orders under the same ids. A tick is a record in the
store's own input (the ``restocks`` stream, keyed by store), so a replay sees it at the
same place; its event id is the store and hour, so writing an hour's ticks twice is a
repeat the job drops like any other.

A tick record::

    {"event_id": "TICK-<store_id>-<epoch hour>", "store_id": 42, "tick": "2026-11-24T18:00:00.000Z"}

``python -m pizzastream.ticks`` writes the current hour's ticks for every store (a
scheduled Lambda on AWS calls ``handler``; the demo and the tests write the hours they
need with ``tick_records``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pizzastream.inventory import InvalidRestock
from pizzastream.orders import STORE_IDS, Reason, format_event_time, parse_event_time

if TYPE_CHECKING:
    from pizzastream.config import Props

HOUR_MS = 3_600_000
TICK_FIELDS = ("event_id", "store_id", "tick")
INVALID_TICK = "invalid_tick"


class InvalidTick(InvalidRestock):
    """A record on ``restocks`` that says it is a tick and is not a usable one; ``reason``
    and ``detail`` for its dead letter, as for a restock."""


@dataclass(frozen=True)
class Tick:
    event_id: str
    store_id: int
    ts_ms: int  # the start of the hour the tick opens


def tick_event_id(store_id: int, hour_ms: int) -> str:
    return f"TICK-{store_id}-{hour_ms // HOUR_MS}"


def tick_records(store_ids: Iterable[int], hour_ms: int) -> list[tuple[str, bytes]]:
    """The ``(partition key, record)`` of each store's tick for the hour that contains
    ``hour_ms``, in store order."""
    start = hour_ms - hour_ms % HOUR_MS
    tick = format_event_time(start)
    return [
        (
            str(store_id),
            json.dumps(
                {"event_id": tick_event_id(store_id, start), "store_id": store_id, "tick": tick},
                separators=(",", ":"),
            ).encode(),
        )
        for store_id in sorted(store_ids)
    ]


def parse_tick(doc: dict[str, Any]) -> Tick:
    """The tick a ``restocks`` record that carries a ``tick`` field names; raises
    ``InvalidTick``. Strict, because a tick changes what a store orders: exactly the three
    fields, a known store, the start of an hour, and the event id made from both (so the
    JVM's dedup makes every copy of one store-hour's tick a repeat)."""
    for name in TICK_FIELDS:
        if doc.get(name) is None:
            raise InvalidTick(Reason.MISSING_FIELD.value, f"tick record without {name}")
    extra = sorted(set(doc) - set(TICK_FIELDS))
    if extra:
        raise InvalidTick(INVALID_TICK, f"a tick carries no {', '.join(extra)[:80]}")
    store_id, tick = doc["store_id"], doc["tick"]
    if type(store_id) is not int or store_id not in STORE_IDS:
        raise InvalidTick(Reason.UNKNOWN_STORE.value, f"store_id {str(store_id)[:40]!r}")
    ts_ms = parse_event_time(tick) if isinstance(tick, str) else None
    if ts_ms is None:
        raise InvalidTick(Reason.INVALID_TIMESTAMP.value, "tick is not ISO-8601 UTC")
    if ts_ms % HOUR_MS:
        raise InvalidTick(INVALID_TICK, f"tick {tick[:40]!r} is not the start of an hour")
    if doc["event_id"] != tick_event_id(store_id, ts_ms):
        raise InvalidTick(INVALID_TICK, f"event_id must be {tick_event_id(store_id, ts_ms)!r}")
    return Tick(doc["event_id"], store_id, ts_ms)


def write_ticks(props: Props, hour_ms: int, store_ids: Iterable[int] = STORE_IDS) -> int:
    """Writes the hour's ticks to the ``restocks`` stream (one serialised writer:
    ``KinesisProducer``); returns how many."""
    from connectors.kinesis_producer import KinesisProducer
    from pizzastream.config import stream_name

    records = tick_records(store_ids, hour_ms)
    KinesisProducer(props).put(stream_name(props, "restocks"), records)
    return len(records)


def handler(event: dict[str, Any], context: object = None) -> dict[str, Any]:
    """The scheduled Lambda: this hour's ticks for every store (EventBridge runs it at
    the start of each hour; a retry writes the same event ids, dropped as repeats)."""
    import time

    from pizzastream.config import load_properties
    from pizzastream.settings import validate

    props = load_properties()
    validate(props)
    hour_ms = int(time.time() * 1000)
    return {"ticks": write_ticks(props, hour_ms)}


def main(argv: list[str] | None = None) -> None:
    import argparse
    import time

    from pizzastream.config import load_properties
    from pizzastream.settings import validate

    props = load_properties()
    validate(props)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hour", help="ISO-8601 UTC time within the hour (default: now)")
    args = parser.parse_args(argv)
    hour_ms = parse_event_time(args.hour) if args.hour else int(time.time() * 1000)
    if hour_ms is None:
        parser.error(f"--hour {args.hour!r} is not ISO-8601 UTC")
    written = write_ticks(props, hour_ms)
    print(f"{written} ticks for {format_event_time(hour_ms - hour_ms % HOUR_MS)}")


if __name__ == "__main__":
    main()
