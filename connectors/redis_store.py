"""Redis (ElastiCache) edge: the hot-read keys, their TTLs, the Flink sink and a client.

Keys (documented in docs/streams.md):
- ``order:{order_id}``           order status (contract), string, 24 h
- ``inventory:{store_id}``       hash ingredient_id -> on hand, no expiry (always current)
- ``catalog:product:{id}``       hash name/unit_price/active, no expiry (reloaded with the catalog)
- ``live:{store_id}:{yyyymmddhh}`` hash minute ``mm`` -> ``"{orders}/{revenue}"`` of that minute
                                 of the UTC hour (hourly_metrics), expires a while after the hour
"""
from __future__ import annotations

from datetime import datetime

from typing import TYPE_CHECKING

import redis

if TYPE_CHECKING:
    from pyflink.datastream.connectors import Sink

ORDER_STATUS_TTL_S = 24 * 3600


def __getattr__(name: str):
    """``REDIS_COMMAND``, what a job emits to Redis (SET key value, or HSET key field
    value), as a Flink row type built on first use: the delivery service imports this module
    and runs without PyFlink."""
    if name == "REDIS_COMMAND":
        from pyflink.common import Types

        return Types.ROW_NAMED(["command", "key", "field", "value"], [Types.STRING()] * 4)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def order_status_key(order_id: str) -> str:
    return f"order:{order_id}"


def inventory_key(store_id: int | str) -> str:
    """A store's stock hash (``jobs.inventory_windowing.INVENTORY_CACHE_SQL`` builds it in
    the JVM from ``inventory_key("")`` + the store id)."""
    return f"inventory:{store_id}"


def product_key(product_id: int | str) -> str:
    return f"catalog:product:{product_id}"


def live_key(store_id: int | str, hour: datetime) -> str:
    """The live per-minute hash of a store's UTC hour; the JVM builds the same key in
    ``jobs.hourly_metrics.LIVE_SQL``."""
    return f"live:{store_id}:{hour:%Y%m%d%H}"


def connection_settings(props: dict[str, dict[str, str]]) -> dict:
    """Host, port, and on ElastiCache the AUTH token (``Redis.auth_token``, read at start
    from Secrets Manager through ``auth_token_secret_arn``, see ``pizzastream.config``) and
    TLS (``Redis.tls = true``); the local server has neither."""
    conf = props["Redis"]
    return {"host": conf["host"], "port": int(conf["port"]),
            "password": conf.get("auth_token") or None,
            "ssl": conf.get("tls", "false").lower() == "true"}


def client(props: dict[str, dict[str, str]], **options) -> redis.Redis:
    return redis.Redis(**connection_settings(props), decode_responses=True, **options)


def publish_catalog(redis_client: redis.Redis, catalog) -> None:
    """Writes every product of a freshly loaded ``pizzastream.catalog.Catalog`` for hot
    reads; values are overwritten, so publishing the same catalog again changes nothing."""
    from pizzastream.catalog import from_cents

    with redis_client.pipeline(transaction=False) as pipe:
        for product in catalog.products():
            pipe.hset(product_key(product.product_id), mapping={
                "name": product.name,
                "unit_price": str(from_cents(product.unit_price_cents)),
                "active": int(product.active),
            })
        pipe.execute()


def sink(props: dict[str, dict[str, str]], ttl_seconds: int = 0, batch_size: int = 500) -> Sink:
    from pyflink.datastream.connectors import Sink
    from pyflink.java_gateway import get_gateway

    conf = connection_settings(props)
    j_sink = get_gateway().jvm.pizzastream.flink.RedisSink(
        conf["host"], conf["port"], ttl_seconds, batch_size, conf["password"], conf["ssl"]
    )
    return Sink(j_sink)
