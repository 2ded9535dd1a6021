"""Merchant insights: a store's hours from the warehouse (closed) and Redis (open), cached.

Where each hour comes from:
- **published** (``metrics_publication`` has a load of it): the warehouse row, read through
  the primary key ``(store_id, window_start)`` (PostgreSQL's index; Redshift's sort key), and
  kept in this process keyed by hour then store. A closed hour changes only when it is
  loaded again (a correction from the hourly ETL or reprocessing, or a replay), and every
  load adds a ``metrics_publication`` row: the watcher polls that table every
  ``Api.publication_poll_s`` and drops each reloaded hour from the cache, so a correction is
  served at most one poll interval after it commits.
- **not yet published** and within the live view's lifetime (``HourlyMetrics.
  live_ttl_minutes``): the live per-minute hash ``live:{<store>}:<yyyymmddhh>``, kept for
  ``Api.live_cache_ms``.
- anything else (an older hour no load ever mentioned): no sales.
Hours after the current one are not reported.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis
from psycopg_pool import AsyncConnectionPool

from api.figures import (
    HOUR,
    LIVE,
    NO_SALES,
    WAREHOUSE,
    Figures,
    HourFigures,
    LiveHour,
    from_warehouse,
    hour_floor,
    parse_live_hash,
)
from connectors import redis_store

log = logging.getLogger(__name__)

STORE_HOURS_SQL = (
    "SELECT store_id, window_start, orders, items, revenue, online_orders, in_store_orders,"
    " delivery_orders FROM hourly_store_metrics"
    " WHERE store_id = ANY(%s) AND window_start >= %s AND window_start < %s"
)
ALL_PUBLISHED_SQL = "SELECT window_start, max(published_at) FROM metrics_publication GROUP BY 1"
NEW_PUBLICATIONS_SQL = (
    "SELECT window_start, source, published_at, stores"
    " FROM metrics_publication WHERE published_at > %s"
)
# A load's published_at is taken before its transaction commits, so a poll looks back this
# far past the newest time it has seen; loads seen already are recognised and skipped.
PUBLICATION_OVERLAP = timedelta(minutes=5)


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class ClosedHours:
    """Published hours' figures by hour, then store (``NO_SALES`` when the store had no
    row). Bounded: past ``max_entries`` the oldest hours go first."""

    def __init__(self, max_entries: int):
        self.published: set[datetime] = set()
        self._figures: dict[datetime, dict[int, Figures]] = {}
        self._generation: dict[datetime, int] = {}
        self._entries = 0
        self._max_entries = max_entries
        self.evictions = 0

    def get(self, hour: datetime, store_id: int) -> Figures | None:
        by_store = self._figures.get(hour)
        return None if by_store is None else by_store.get(store_id)

    def generation(self, hour: datetime) -> int:
        return self._generation.get(hour, 0)

    def put(self, hour: datetime, store_id: int, figures: Figures, generation: int) -> None:
        """Stores what was read while the hour was at ``generation``; a read that raced a
        correction is dropped rather than cached stale."""
        if self._generation.get(hour, 0) != generation:
            return
        by_store = self._figures.setdefault(hour, {})
        if store_id not in by_store:
            self._entries += 1
        by_store[store_id] = figures
        if self._entries > self._max_entries:
            oldest = min(self._figures)
            self._entries -= len(self._figures.pop(oldest))

    def loaded(self, hour: datetime) -> None:
        """``hour`` was (re)loaded into the warehouse: forget what was cached of it."""
        if hour in self.published:
            self._generation[hour] = self._generation.get(hour, 0) + 1
            dropped = self._figures.pop(hour, None)
            if dropped:
                self._entries -= len(dropped)
                self.evictions += 1
        self.published.add(hour)


class Insights:
    def __init__(
        self,
        warehouse: AsyncConnectionPool,
        redis: aioredis.Redis | aioredis.RedisCluster,
        *,
        live_window: timedelta,
        live_cache_s: float,
        max_cached: int,
    ):
        self._warehouse = warehouse
        self._redis = redis
        self._live_window = live_window
        self._live_cache_s = live_cache_s
        self.closed = ClosedHours(max_cached)
        self._live: dict[tuple[int, datetime], tuple[float, LiveHour]] = {}
        self._watermark: datetime | None = None
        self._seen: set[tuple] = set()
        # Bumped by every load seen: a response built from an older version may be stale.
        self.version = 0
        # Store-hours answered from the cache or the warehouse, and warehouse queries: the
        # cache hit rate the capacity plan needs (docs/read_side.md); shown by /health.
        self.counters = {
            "closed_hours": 0,
            "closed_hours_missed": 0,
            "warehouse_queries": 0,
            "live_hours": 0,
            "redis_live_reads": 0,
        }

    # -- corrections ---------------------------------------------------------------------
    async def refresh_publications(self) -> int:
        """Reads loads committed since the last poll and invalidates their hours; returns how
        many new loads it saw."""
        async with self._warehouse.connection() as conn:
            if self._watermark is None:
                rows = await (await conn.execute(ALL_PUBLISHED_SQL)).fetchall()
                for hour, _ in rows:
                    self.closed.loaded(hour)
                self._watermark = max((at for _, at in rows), default=datetime(1970, 1, 1))
                # The loads already counted, so the next poll's look-back skips them.
                self._seen = set(
                    await (
                        await conn.execute(
                            NEW_PUBLICATIONS_SQL, (self._watermark - PUBLICATION_OVERLAP,)
                        )
                    ).fetchall()
                )
                self.version += 1
                return len(rows)
            since = self._watermark - PUBLICATION_OVERLAP
            rows = await (await conn.execute(NEW_PUBLICATIONS_SQL, (since,))).fetchall()
        fresh = [row for row in rows if row not in self._seen]
        for hour, _, _, _ in fresh:
            self.closed.loaded(hour)
        if fresh:
            self.version += 1
        self._seen = {row for row in self._seen if row[2] > since} | set(fresh)
        self._watermark = max([self._watermark, *(row[2] for row in fresh)])
        return len(fresh)

    async def watch_publications(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.refresh_publications()
            except Exception:  # a warehouse blip must not end the watcher
                log.exception("metrics_publication poll failed; retrying")

    # -- reads ---------------------------------------------------------------------------
    async def hours(
        self, store_ids: Sequence[int], start: datetime, stop: datetime
    ) -> dict[int, list[HourFigures]]:
        """Each store's hours in ``[start, stop)`` up to the current hour."""
        now_hour = hour_floor(utc_now())
        live_from = hour_floor(utc_now() - self._live_window)
        hours = []
        hour = start
        while hour < stop and hour <= now_hour:
            hours.append(hour)
            hour += HOUR
        missing: list[tuple[int, datetime]] = []
        live: list[tuple[int, datetime]] = []
        for hour in hours:
            if hour in self.closed.published:
                missing += [(s, hour) for s in store_ids if self.closed.get(hour, s) is None]
            elif hour >= live_from:
                live += [(s, hour) for s in store_ids]
        counters = self.counters
        counters["closed_hours"] += sum(1 for h in hours if h in self.closed.published) * len(
            store_ids
        )
        counters["closed_hours_missed"] += len(missing)
        counters["live_hours"] += len(live)
        if missing:
            counters["warehouse_queries"] += 1
            await self._read_warehouse(missing)
        live_figures = await self._read_live(live) if live else {}
        result: dict[int, list[HourFigures]] = {}
        for store_id in store_ids:
            points = []
            for hour in hours:
                if hour in self.closed.published:
                    figures = self.closed.get(hour, store_id) or NO_SALES
                    points.append(HourFigures(hour, figures, WAREHOUSE))
                elif (store_id, hour) in live_figures:
                    points.append(HourFigures(hour, live_figures[store_id, hour].figures, LIVE))
                else:
                    points.append(HourFigures(hour, NO_SALES, WAREHOUSE))
            result[store_id] = points
        return result

    def live_from(self) -> datetime:
        """The oldest hour that may still be read live (or be published later)."""
        return hour_floor(utc_now() - self._live_window)

    async def live_hour(self, store_id: int) -> tuple[datetime, LiveHour]:
        """The current hour's minutes (for the dashboard's 'today, live')."""
        hour = hour_floor(utc_now())
        return hour, (await self._read_live([(store_id, hour)]))[store_id, hour]

    async def _read_warehouse(self, pairs: list[tuple[int, datetime]]) -> None:
        stores = sorted({s for s, _ in pairs})
        first = min(h for _, h in pairs)
        last = max(h for _, h in pairs)
        generations = {h: self.closed.generation(h) for _, h in pairs}
        async with self._warehouse.connection() as conn:
            rows = await (
                await conn.execute(STORE_HOURS_SQL, (stores, first, last + HOUR))
            ).fetchall()
        found = {(row[0], row[1]): from_warehouse(*row[2:]) for row in rows}
        for store_id, hour in pairs:
            self.closed.put(
                hour, store_id, found.get((store_id, hour), NO_SALES), generations[hour]
            )

    async def _read_live(
        self, pairs: Iterable[tuple[int, datetime]]
    ) -> dict[tuple[int, datetime], LiveHour]:
        now = asyncio.get_running_loop().time()
        result, stale = {}, []
        for pair in pairs:
            cached = self._live.get(pair)
            if cached is not None and cached[0] > now:
                result[pair] = cached[1]
            else:
                stale.append(pair)
        if stale:
            self.counters["redis_live_reads"] += len(stale)
            async with self._redis.pipeline(transaction=False) as pipe:
                for store_id, hour in stale:
                    pipe.hgetall(redis_store.live_key(store_id, hour))
                hashes = await pipe.execute()
            if len(self._live) > 100_000:
                self._live = {k: v for k, v in self._live.items() if v[0] > now}
            for pair, fields in zip(stale, hashes):
                live = parse_live_hash(fields)
                self._live[pair] = (now + self._live_cache_s, live)
                result[pair] = live
        return result


class Stock:
    """A store's stock from ``inventory:{<store_id>}`` (always current: inventory_windowing
    rewrites it with every change), named from the ``ingredient`` reference table."""

    def __init__(
        self,
        redis: aioredis.Redis | aioredis.RedisCluster,
        ingredients: dict[int, tuple[str, str, int]],
    ):
        self._redis = redis
        self._ingredients = ingredients  # id -> (name, unit, safety_stock)

    async def levels(self, store_id: int) -> list[dict]:
        # redis-py types its commands for the sync and async clients alike.
        levels = await self._redis.hgetall(redis_store.inventory_key(store_id))  # type: ignore[misc]
        result = []
        for ingredient_id, on_hand in sorted(levels.items(), key=lambda kv: int(kv[0])):
            name, unit, safety = self._ingredients.get(int(ingredient_id), ("?", "", 0))
            result.append(
                {
                    "ingredient_id": int(ingredient_id),
                    "name": name,
                    "unit": unit,
                    "on_hand": int(on_hand),
                    "safety_stock": safety,
                    "low": int(on_hand) <= safety,
                }
            )
        return result
