"""Redis as ElastiCache in cluster mode (``Redis.cluster_mode``): the Python client and the
jobs' JVM sink speak to a cluster of three masters over TLS with AUTH, a store's keys keep
to one slot (one shard, one transaction), keys of many slots share a pipeline whose error
replies still surface, and a client without AUTH is refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import redis
from pyflink.common import Row
from redis.cluster import RedisCluster

from connectors import redis_store
from pizzastream.catalog import Catalog
from pizzastream.order_status import Outcome, conflict_dead_letter
from tests.support import run_redis_sink, run_status_gate

pytestmark = pytest.mark.integration

HOURS = [datetime(2026, 12, 4, h, tzinfo=UTC) for h in (9, 10)]
STORES = range(1, 41)  # 40 stores: their slots fall on every one of the three shards


@pytest.fixture
def cluster(redis_cluster):
    """The cluster client of ``redis_cluster``, every shard emptied first."""
    client = redis_store.client(redis_cluster)
    client.flushall(target_nodes=RedisCluster.PRIMARIES)
    yield client
    client.close()


def shards_of(client: RedisCluster, keys) -> set[str]:
    return {client.get_node_from_key(key).name for key in keys}


def test_the_configured_client_is_a_cluster_client_over_tls_with_auth(redis_cluster, cluster):
    primaries = cluster.get_primaries()
    assert len(primaries) == 3
    for node in primaries:
        connection = node.redis_connection
        assert connection.connection_pool.connection_class is redis.SSLConnection
        assert connection.acl_whoami() == redis_cluster["Redis"]["user"]


def test_stores_inventory_and_live_keys_are_written_and_read_back_across_the_shards(cluster):
    with cluster.pipeline(transaction=False) as pipe:
        for store in STORES:
            pipe.hset(redis_store.inventory_key(store), mapping={"1": store, "2": 2 * store})
            for hour in HOURS:
                pipe.hset(redis_store.live_key(store, hour), "05", f"{store}/{hour.hour}.00")
        pipe.execute(raise_on_error=True)
    for store in STORES:
        assert cluster.hgetall(redis_store.inventory_key(store)) == {
            "1": str(store),
            "2": str(2 * store),
        }
        for hour in HOURS:
            assert cluster.hgetall(redis_store.live_key(store, hour)) == {
                "05": f"{store}/{hour.hour}.00"
            }
    inventory = [redis_store.inventory_key(store) for store in STORES]
    assert shards_of(cluster, inventory) == {node.name for node in cluster.get_primaries()}
    for node in cluster.get_primaries():  # each shard really holds its part
        assert cluster.dbsize(target_nodes=node) > 0


def test_a_stores_keys_share_one_slot_and_one_transaction(cluster):
    keys = [redis_store.inventory_key(8)] + [redis_store.live_key(8, h) for h in HOURS]
    assert len({cluster.keyslot(key) for key in keys}) == 1
    with cluster.pipeline(transaction=True) as pipe:  # MULTI/EXEC: one slot or refused
        for key in keys:
            pipe.hset(key, "05", "1/1.00")
        assert pipe.execute() == [1, 1, 1]
    assert all(cluster.hget(key, "05") == "1/1.00" for key in keys)


def test_two_stores_keys_are_refused_in_one_transaction(cluster):
    one, other = redis_store.inventory_key(1), redis_store.inventory_key(2)
    assert cluster.keyslot(one) != cluster.keyslot(other)
    with (
        pytest.raises(redis.exceptions.CrossSlotTransactionError),
        cluster.pipeline(transaction=True) as pipe,
    ):
        pipe.hset(one, "1", "1")
        pipe.hset(other, "1", "1")
        pipe.execute()
    assert cluster.exists(one, other) == 0


def test_a_refused_write_in_a_cluster_pipeline_surfaces_as_an_error(cluster):
    catalog = Catalog.from_reference_data()
    keys = [redis_store.product_key(p.product_id) for p in catalog.products()]
    assert len(shards_of(cluster, keys)) > 1  # the pipeline spans shards
    cluster.set(redis_store.product_key(2), "not a hash")  # HSET will be refused
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        redis_store.publish_catalog(cluster, catalog)
    assert cluster.get(redis_store.product_key(2)) == "not a hash"


def test_the_apis_reads_work_on_the_cluster(redis_cluster, cluster):
    import asyncio

    from api.insights import Stock
    from api.intake import Intake, intake_key
    from delivery.service import redis_key as delivery_key

    order = "T-cluster-1"
    keys = [redis_store.order_status_key(order), delivery_key(order), intake_key(order)]
    assert len({cluster.keyslot(key) for key in keys}) > 1  # no MGET of them on a cluster
    cluster.set(keys[0], "accepted")
    cluster.set(keys[2], "event-1")
    cluster.hset(redis_store.inventory_key(8), mapping={"1": "40", "2": "3"})

    async def reads():
        client = redis_store.async_client(redis_cluster)
        try:
            intake = Intake(None, "orders", client, None, None)  # status reads Redis only
            return (
                await intake.status(order, 0),
                await intake.status("T-unknown", 0),
                await Stock(client, {1: ("dough", "g", 10)}).levels(8),
            )
        finally:
            await client.aclose()

    status, unknown, levels = asyncio.run(reads())
    assert (status["order_id"], status["status"]) == (order, "accepted")
    assert unknown is None
    assert [(level["ingredient_id"], level["on_hand"]) for level in levels] == [(1, 40), (2, 3)]


def without(props, **changes):
    return {**props, "Redis": {**props["Redis"], **changes}}


def test_a_client_without_auth_is_refused_by_the_cluster(redis_cluster):
    # The cluster client reads the slots as it is made: refused there already.
    with pytest.raises(redis.RedisClusterException, match=r"NOAUTH|[Aa]uthentication"):
        redis_store.client(without(redis_cluster, password="", user=""))
    plain = without(redis_cluster, password="", user="", cluster_mode="false")
    # One node, asked directly.
    with redis_store.client(plain) as client, pytest.raises(redis.AuthenticationError):
        client.set("intruder", "1")


@pytest.mark.slow
def test_the_jvm_sink_writes_through_the_cluster_and_fails_on_a_refused_write(
    redis_cluster, cluster
):
    hour = HOURS[0]
    rows = []
    for store in STORES:
        rows += [
            Row("HSET", redis_store.inventory_key(store), "1", str(store)),
            Row("HSET", redis_store.live_key(store, hour), "05", f"{store}/1.00"),
            Row("SET", redis_store.order_status_key(f"T-{store}"), "", "accepted"),
        ]
    run_redis_sink(redis_cluster, rows, ttl_s=600, batch_size=16)  # batches span shards
    for store in STORES:
        assert cluster.hgetall(redis_store.inventory_key(store)) == {"1": str(store)}
        assert cluster.hgetall(redis_store.live_key(store, hour)) == {"05": f"{store}/1.00"}
        assert cluster.get(redis_store.order_status_key(f"T-{store}")) == "accepted"
        assert 0 < cluster.ttl(redis_store.live_key(store, hour)) <= 600
    assert len(shards_of(cluster, [row[1] for row in rows[:16]])) == 3

    cluster.set(redis_store.live_key(9, hour), "not a hash")
    with pytest.raises(Exception, match="Redis refused a write \\(WRONGTYPE"):
        run_redis_sink(
            redis_cluster,
            [Row("HSET", redis_store.live_key(s, hour), "06", "1/1.00") for s in STORES],
            batch_size=16,
        )


def flush_scripts(cluster: RedisCluster) -> None:
    """Every shard forgets its scripts, as after a restart or a failover."""
    for node in cluster.get_primaries():
        node.redis_connection.script_flush()


def test_the_python_status_writer_keeps_a_final_status_on_every_shard(cluster):
    orders = [f"T-{store}" for store in STORES]
    assert shards_of(cluster, [redis_store.order_status_key(o) for o in orders]) == {
        node.name for node in cluster.get_primaries()
    }
    flush_scripts(cluster)
    for order in orders:
        assert redis_store.write_order_status(cluster, order, "accepted", 600) == (
            Outcome.WRITE,
            None,
        )
        assert redis_store.write_order_status(cluster, order, "accepted", 600) == (
            Outcome.SAME,
            None,
        )
        assert redis_store.write_order_status(cluster, order, "rejected:invalid", 600) == (
            Outcome.CONFLICT,
            "accepted",
        )
    assert {cluster.get(redis_store.order_status_key(o)) for o in orders} == {"accepted"}


@pytest.mark.slow
def test_the_jvm_status_writer_keeps_a_final_status_on_every_shard(redis_cluster, cluster):
    orders = [f"T-{store}" for store in STORES]
    for order in orders[::2]:
        cluster.set(redis_store.order_status_key(order), "rejected:invalid")
    flush_scripts(cluster)  # NOSCRIPT on every shard
    letters = run_status_gate(
        redis_cluster, [(o, "accepted") for o in orders], job="inventory_windowing", batch_size=16
    )  # batches span shards
    assert letters == [
        conflict_dead_letter("inventory_windowing", o, "accepted", "rejected:invalid").as_tuple()
        for o in orders[::2]
    ]
    assert [cluster.get(redis_store.order_status_key(o)) for o in orders] == [
        "rejected:invalid" if n % 2 == 0 else "accepted" for n in range(len(orders))
    ]
