"""The Redis key layout: a store's keys share one hash slot, so on a Redis cluster
(ElastiCache cluster mode) they live on one shard (``connectors.redis_store``). The keys
the jobs build in SQL are checked against these in the end-to-end tests, which read what
the jobs wrote with ``inventory_key`` and ``live_key``."""

from __future__ import annotations

from datetime import UTC, datetime

from redis.crc import key_slot

from connectors import redis_store


def test_a_stores_keys_share_one_slot_and_stores_spread_over_slots():
    hours = [datetime(2026, 12, 4, h, tzinfo=UTC) for h in (0, 13, 23)]
    slots = set()
    for store_id in range(1, 2001):
        keys = [redis_store.inventory_key(store_id)] + [
            redis_store.live_key(store_id, hour) for hour in hours
        ]
        store_slots = {key_slot(key.encode()) for key in keys}
        assert len(store_slots) == 1, keys
        slots |= store_slots
    assert len(slots) > 1900  # 2,000 stores over 16,384 slots: hardly any share one


def test_the_store_is_read_back_from_its_keys():
    hour = datetime(2026, 12, 4, 9, tzinfo=UTC)
    for store_id in (1, 8, 2000):
        assert redis_store.store_of_key(redis_store.inventory_key(store_id)) == store_id
        assert redis_store.store_of_key(redis_store.live_key(store_id, hour)) == store_id
    assert redis_store.live_key(8, hour) == "live:{8}:2026120409"
    assert redis_store.inventory_key(8) == "inventory:{8}"
