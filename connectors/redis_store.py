"""Redis (ElastiCache) edge: the hot-read keys, their TTLs, the Flink sink and a client.

Every client, Python (``client``; ``async_client`` for the API) and JVM (``sink``:
``pizzastream.flink.RedisSink``), connects as ElastiCache with in-transit encryption and
RBAC expects, from the ``Redis`` property group: ``host``, ``port``; ``user`` and
``password`` (AUTH as that user; ``user`` empty or ``default`` means the default user, a
plain AUTH as ElastiCache's AUTH token expects; ``password`` empty means no AUTH; on AWS it
comes from ``password_secret_arn``); ``tls`` (``true``: TLS, the server's certificate
verified, hostname included); ``tls_ca_file`` (the CA to trust, relative to the repository
root; absent: the system's trust store, which holds the Amazon CA ElastiCache's certificates
chain to); ``cluster_mode`` (``true``: the server is a Redis cluster, ElastiCache's cluster
mode, and ``host``/``port`` name its configuration endpoint; the clients learn the shards
from it and send each key to the node that holds its slot). Locally the stack starts
redis-server with that user, password and a self-signed CA it makes at start
(``stack.services.Redis``); the cluster tests start a cluster of three with the same
settings (``tests/redis_cluster.py``).

A pipeline's replies are checked one by one, in Python (``redis-py`` raises the first
error reply on ``execute``) and in the JVM sink (which fails the job, so it restarts from
its checkpoint and writes again): a refused write is never a lost update. The JVM writers
(``sink``, ``order_status_gate``) ride out a connection failure or an error reply of a
restart or failover (``LOADING``, ``READONLY``, ``MASTERDOWN``, ``CLUSTERDOWN``,
``TRYAGAIN``, ``MOVED``, ``ASK``; any other error reply fails the job at once): they send
the batch again on a new connection, pausing 100 ms doubling to 2 s, for
``Redis.write_retry_seconds`` (default 60; 0: not at all) before failing the job
(``pizzastream.flink.RedisBatchSender``). On a cluster a
pipeline (never a transaction here) may hold keys of many slots: the client splits it by
node, and the same checks apply to every node's replies. A command that takes several keys
(``MGET``, ``DEL a b``) or a ``MULTI`` must keep to one slot, hence one store's keys only.

Keys (documented in docs/streams.md; ``<x>`` is a value, braces are literal):
- ``order:<order_id>``             order status (contract), string, 24 h; written only
                                   through ``STATUS_WRITE_SCRIPT``: it moves forward, a final
                                   status stays (``pizzastream.order_status``)
- ``inventory:{<store_id>}``       hash ingredient_id -> on hand, no expiry (always current)
- ``stockout:{<store_id>}``        hash ingredient_id -> the latest expected stock-out warning
                                   (JSON, docs/streams.md), 24 h after the last one
- ``catalog:product:<id>``         hash name/unit_price/active, no expiry (reloaded with the catalog)
- ``live:{<store_id>}:<yyyymmddhh>`` hash minute ``mm`` -> ``"<orders>/<revenue>"`` of that
                                   minute of the UTC hour (hourly_metrics), expires a while
                                   after the hour
- ``catalog:delivery_partners``    JSON list of the delivery partners (``delivery.store``),
                                   ``Delivery.partner_cache_ttl_s``; deleted to invalidate

A store's keys carry its id as a hash tag (``{<store_id>}``): on a Redis cluster
(ElastiCache cluster mode) only the tag decides the key's slot, so all of a store's keys live
on one shard and one pipeline of a store's reads goes to one node.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster

from pizzastream.config import Props
from pizzastream.order_status import (
    ABSENT_RANK,
    FINAL,
    FINAL_RANK,
    PENDING,
    PENDING_RANK,
    UNKNOWN_RANK,
    Outcome,
)
from pizzastream.settings import RedisSettings

if TYPE_CHECKING:
    from pyflink.datastream import DataStream
    from pyflink.datastream.connectors import Sink

ORDER_STATUS_TTL_S = 24 * 3600
# A store's stock-out warnings: a warning is about the hours until the ingredient's next
# delivery (at most a lead time and a review away), so a day after the last one the hash
# only holds history; each new warning renews it.
STOCKOUT_TTL_S = 24 * 3600
# Redis's name of the user a plain ``AUTH password`` authenticates.
DEFAULT_USER = "default"
# The delivery partners, for the delivery workers' reloads (``delivery.store.cached_partners``).
DELIVERY_PARTNERS_KEY = "catalog:delivery_partners"


class RedisCommand(NamedTuple):
    """A ``REDIS_COMMAND`` row: ``SET key value`` (``field`` empty) or ``HSET key field
    value``."""

    command: str
    key: str
    field: str
    value: str


def __getattr__(name: str):
    """``REDIS_COMMAND``, what a job emits to Redis (SET key value, or HSET key field
    value), as a Flink row type built on first use: the delivery service imports this module
    and runs without PyFlink."""
    if name == "REDIS_COMMAND":
        from pyflink.common import Types

        return Types.ROW_NAMED(list(RedisCommand._fields), [Types.STRING()] * 4)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def order_status_key(order_id: str) -> str:
    return f"order:{order_id}"


def _lua_string(text: str) -> str:
    assert text.isascii() and text.isprintable() and '"' not in text and "\\" not in text
    return f'"{text}"'


# An order status write, atomic where it lands (``pizzastream.order_status``: statuses only
# move forward, the first final one stays). KEYS[1] ``order:<order_id>`` (one key, one slot:
# runs on a Redis cluster as on one server); ARGV[1] the status, ARGV[2] the TTL in seconds
# (0: none). Replies 1 (written: a move forward), 0 (the same status already there: a replay,
# nothing changes, the TTL neither) or the status kept (refused: a conflict). Run by
# EVALSHA from the jobs (``pizzastream.flink.OrderStatusGate``) and ``write_order_status``.
STATUS_WRITE_SCRIPT = f"""
local finals = {{{", ".join(f"[{_lua_string(s)}] = true" for s in sorted(FINAL))}}}
local function rank(status)
  if not status then return {ABSENT_RANK} end
  if finals[status] then return {FINAL_RANK} end
  if status == {_lua_string(PENDING)} then return {PENDING_RANK} end
  return {UNKNOWN_RANK}
end
local current = redis.call('GET', KEYS[1])
local status = ARGV[1]
if current == status then return 0 end
if rank(status) > rank(current) then
  local ttl = tonumber(ARGV[2])
  if ttl > 0 then
    redis.call('SET', KEYS[1], status, 'EX', ttl)
  else
    redis.call('SET', KEYS[1], status)
  end
  return 1
end
return current
"""


def status_outcome(reply) -> tuple[Outcome, str | None]:
    """What ``STATUS_WRITE_SCRIPT`` replied: the outcome, and the status kept on a conflict."""
    if reply == 1:
        return Outcome.WRITE, None
    if reply == 0:
        return Outcome.SAME, None
    return Outcome.CONFLICT, reply.decode() if isinstance(reply, bytes) else reply


def write_order_status(
    redis_client: redis.Redis | redis.cluster.RedisCluster,
    order_id: str,
    status: str,
    ttl_s: int = ORDER_STATUS_TTL_S,
) -> tuple[Outcome, str | None]:
    """Writes an order's status as the jobs do (``STATUS_WRITE_SCRIPT``, EVALSHA, loaded on a
    ``NOSCRIPT``): the one way for Python to write ``order:<order_id>``. Returns the outcome
    and, on a conflict, the status kept; the caller dead-letters a conflict
    (``pizzastream.order_status.conflict_dead_letter``)."""
    # redis-py types register_script on Redis alone; RedisCluster has the same method.
    script = redis_client.register_script(STATUS_WRITE_SCRIPT)  # type: ignore[misc]
    return status_outcome(script(keys=[order_status_key(order_id)], args=[status, ttl_s]))


def store_tag(store_id: int | str) -> str:
    """The hash tag of a store's keys."""
    return f"{{{store_id}}}"


def store_of_key(key: str) -> int:
    """The store id of a key with a store tag, e.g. ``inventory:{8}`` -> 8."""
    start = key.index("{") + 1
    return int(key[start : key.index("}", start)])


def inventory_key(store_id: int | str) -> str:
    """A store's stock hash (``inventory_key_sql`` builds it in the JVM)."""
    return f"inventory:{store_tag(store_id)}"


def inventory_key_sql(store_column: str) -> str:
    """``inventory_key`` as a Flink SQL expression of an INT store id column."""
    return f"CONCAT('inventory:{{', CAST({store_column} AS STRING), '}}')"


def stockout_key(store_id: int | str) -> str:
    """A store's expected stock-out warnings (``stockout_key_sql`` builds it in the JVM)."""
    return f"stockout:{store_tag(store_id)}"


def stockout_key_sql(store_column: str) -> str:
    return f"CONCAT('stockout:{{', CAST({store_column} AS STRING), '}}')"


def product_key(product_id: int | str) -> str:
    return f"catalog:product:{product_id}"


# The places of the store id and of the UTC hour (``yyyymmddhh``) in ``LIVE_KEY_TEMPLATE``.
LIVE_KEY_STORE, LIVE_KEY_HOUR = "<store>", "<hour>"
# The live per-minute hash's key, the one home of its format: ``live_key`` fills it here,
# ``pizzastream.flink.StoreSales`` in the JVM (hourly_metrics passes it this template).
LIVE_KEY_TEMPLATE = f"live:{store_tag(LIVE_KEY_STORE)}:{LIVE_KEY_HOUR}"


def live_key(store_id: int | str, hour: datetime) -> str:
    """The live per-minute hash of a store's UTC hour (``LIVE_KEY_TEMPLATE``)."""
    return LIVE_KEY_TEMPLATE.replace(LIVE_KEY_STORE, str(store_id)).replace(
        LIVE_KEY_HOUR, f"{hour:%Y%m%d%H}"
    )


def live_key_sql(store_column: str, hour_text_sql: str) -> str:
    """``live_key`` as a Flink SQL expression of an INT store id column and the hour as
    ``yyyyMMddHH`` text (the benchmarks' SQL live view, bench/hourly.py)."""
    before, rest = LIVE_KEY_TEMPLATE.split(LIVE_KEY_STORE)
    middle, after = rest.split(LIVE_KEY_HOUR)
    return (
        f"CONCAT('{before}', CAST({store_column} AS STRING), '{middle}', {hour_text_sql}, "
        f"'{after}')"
    )


def tls_enabled(props: Mapping[str, Mapping[str, str]]) -> bool:
    return RedisSettings.from_group(props["Redis"]).tls


def cluster_mode(props: Mapping[str, Mapping[str, str]]) -> bool:
    return RedisSettings.from_group(props["Redis"]).cluster_mode


def ca_file(props: Mapping[str, Mapping[str, str]]) -> Path | None:
    """The CA certificate to trust (``Redis.tls_ca_file``; ``load_properties`` makes a
    relative path absolute, against the repository root), or None for the system's trust
    store."""
    return RedisSettings.from_group(props["Redis"]).tls_ca_file


def connection_options(props: Mapping[str, Mapping[str, str]]) -> dict:
    """``redis.Redis`` keyword arguments for the ``Redis`` group: address, AUTH, TLS."""
    conf = RedisSettings.from_group(props["Redis"])
    options: dict = {"host": conf.host, "port": conf.port}
    if conf.password:
        # The default user (no user, or ``default``) authenticates with a plain AUTH
        # password, which is what an ElastiCache AUTH token expects.
        user = conf.user or None
        options["username"] = None if user == DEFAULT_USER else user
        options["password"] = conf.password
    if conf.tls:
        ca = conf.tls_ca_file
        options.update(
            ssl=True,
            ssl_cert_reqs="required",
            ssl_check_hostname=True,
            ssl_ca_certs=str(ca) if ca else None,
        )
    return options


def client(
    props: Mapping[str, Mapping[str, str]], decode_responses: bool = True, **options
) -> redis.Redis | redis.cluster.RedisCluster:
    """A client of the ``Redis`` group's server (AUTH and TLS as configured), a cluster
    client with ``cluster_mode`` (which reads the cluster's slots as it is made, so an
    unreachable cluster fails here); ``options`` are further client arguments (timeouts)."""
    kind = redis.cluster.RedisCluster if cluster_mode(props) else redis.Redis
    return kind(**connection_options(props), decode_responses=decode_responses, **options)


def async_client(
    props: Mapping[str, Mapping[str, str]], **options
) -> redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster:
    """``client`` for asyncio (the API), decoding replies; connects at its first command."""
    kind = redis.asyncio.cluster.RedisCluster if cluster_mode(props) else redis.asyncio.Redis
    return kind(**connection_options(props), decode_responses=True, **options)


def publish_catalog(redis_client: redis.Redis | redis.cluster.RedisCluster, catalog) -> None:
    """Writes every product of a freshly loaded ``pizzastream.catalog.Catalog`` for hot
    reads; values are overwritten, so publishing the same catalog again changes nothing."""
    from pizzastream.catalog import from_cents

    with redis_client.pipeline(transaction=False) as pipe:
        for product in catalog.products():
            pipe.hset(
                product_key(product.product_id),
                mapping={
                    "name": product.name,
                    "unit_price": str(from_cents(product.unit_price_cents)),
                    "active": int(product.active),
                },
            )
        pipe.execute(raise_on_error=True)  # the first error reply raises: no lost write


def jvm_endpoint(props: Props):
    """``pizzastream.flink.RedisEndpoint``: the JVM operators connect as ``client`` does
    (the ``Redis`` group: AUTH, TLS with the CA bundle, cluster mode), and send a batch again
    after a connection failure or an error reply of a failover for ``write_retry_seconds``."""
    from pyflink.java_gateway import get_gateway

    conf = RedisSettings.from_group(props["Redis"])
    return get_gateway().jvm.pizzastream.flink.RedisEndpoint(
        conf.host,
        conf.port,
        conf.user,
        conf.password,
        conf.tls,
        str(conf.tls_ca_file) if conf.tls_ca_file else "",
        conf.cluster_mode,
        conf.write_retry_seconds,
    )


def sink(props: Props, ttl_seconds: int = 0, batch_size: int = 500) -> Sink:
    """The JVM sink of ``REDIS_COMMAND`` rows, connected as ``client`` is."""
    from pyflink.datastream.connectors import Sink
    from pyflink.java_gateway import get_gateway

    return Sink(
        get_gateway().jvm.pizzastream.flink.RedisSink(jvm_endpoint(props), ttl_seconds, batch_size)
    )


def order_status_gate(
    status_commands: DataStream,
    props: Props,
    job: str,
    ttl_seconds: int = ORDER_STATUS_TTL_S,
    batch_size: int = 500,
    max_delay_ms: int = 100,
) -> DataStream:
    """Writes a job's order status commands (``REDIS_COMMAND`` rows ``SET order:<id>
    <status>``) through ``STATUS_WRITE_SCRIPT`` (``pizzastream.flink.OrderStatusGate``,
    connected as ``client`` is): a status only moves forward, a final one stays. Returns the
    refused writes as ``connectors.aurora.DEAD_LETTER_ROW`` rows
    (``pizzastream.order_status.conflict_dead_letter`` of ``job``), for the job's dead-letter
    sink. Written in batches of ``batch_size``, within ``max_delay_ms`` and before every
    checkpoint barrier, so a checkpoint's dead letters are flushed with it."""
    from pyflink.datastream import DataStream
    from pyflink.java_gateway import get_gateway

    from connectors.aurora import DEAD_LETTER_ROW

    gate = get_gateway().jvm.pizzastream.flink.OrderStatusGate(
        jvm_endpoint(props),
        ttl_seconds,
        batch_size,
        max_delay_ms,
        order_status_key(""),
        job,
        STATUS_WRITE_SCRIPT,
    )
    return DataStream(
        status_commands._j_data_stream.transform(
            "redis:order-status", DEAD_LETTER_ROW.get_java_type_info(), gate
        ).uid("redis-order-status-gate")
    )
