"""The local stack answers for real, is seeded, and ``up``/``reset_data`` behave.

The session shares one stack, so nothing here calls ``down``.
"""

from __future__ import annotations

import json

import psycopg
import pytest
import redis
import redis.cluster

import stack
from connectors import redis_store
from pizzastream import reference_data as rd
from pizzastream.config import load_properties, postgres_dsn, stream_arn, stream_name
from stack import moto_resources
from stack.services import StackPaths, stack_services

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def props():
    props = load_properties()
    stack.up(props)
    return props


def _count(props, table: str, group: str = "Aurora") -> int:
    with psycopg.connect(postgres_dsn(props, group)) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        assert row is not None
        return row[0]


def _redis(props) -> redis.Redis | redis.cluster.RedisCluster:
    return redis_store.client(props, decode_responses=False)


def test_up_twice_keeps_the_same_servers_and_data(props):
    services = stack_services(props, StackPaths())
    pids = [service.pid() for service in services]
    stack.up(props)
    assert [service.pid() for service in services] == pids
    assert all(stack.status(props).values())
    assert _count(props, "store") == 2000


@pytest.mark.parametrize("group", ["Aurora", "Warehouse"])
def test_both_databases_accept_the_configured_role_over_tcp(props, group):
    with psycopg.connect(postgres_dsn(props, group)) as conn:
        row = conn.execute("SELECT current_database(), current_user").fetchone()
    assert row == (props[group]["dbname"], props[group]["user"])


def test_reference_data_is_seeded_once(props):
    assert _count(props, "store") == 2000
    assert _count(props, "product") == len(rd.products())
    assert _count(props, "supplier") == len(rd.suppliers())
    assert _count(props, "ingredient") == len(rd.ingredients())
    assert _count(props, "recipe") == len(rd.recipes())
    assert _count(props, "delivery_partner") == len(rd.delivery_partners())
    assert _count(props, "inventory") == 2000 * len(rd.ingredients())
    assert stack.seed(props) is False


def test_redis_answers(props):
    with _redis(props) as client:
        assert client.ping()


def test_every_stream_is_active_with_the_configured_shards(props):
    kinesis = moto_resources.client(props, "kinesis")
    summary = kinesis.describe_stream_summary(StreamARN=stream_arn(props, "orders"))
    description = summary["StreamDescriptionSummary"]
    assert description["StreamStatus"] == "ACTIVE"
    assert description["OpenShardCount"] == int(props["Streams"]["shard_count"])
    assert set(moto_resources.stream_names(props)) <= set(kinesis.list_streams()["StreamNames"])


def test_lake_bucket_exists(props):
    moto_resources.client(props, "s3").head_bucket(Bucket=props["Lake"]["bucket"])


def test_reset_data_empties_everything_but_reference_data(props):
    orders = stream_name(props, "orders")
    kinesis, s3 = moto_resources.client(props, "kinesis"), moto_resources.client(props, "s3")
    kinesis.put_record(StreamName=orders, PartitionKey="1", Data=json.dumps({"x": 1}).encode())
    s3.put_object(Bucket=props["Lake"]["bucket"], Key="pos/landing/test.jsonl", Body=b"{}\n")
    with psycopg.connect(postgres_dsn(props)) as conn:
        conn.execute("UPDATE inventory SET on_hand = 0 WHERE store_id = 1")
        conn.execute(
            "INSERT INTO order_fct VALUES (1, 'S0001-1', 1, now(), 1, 8.99, 8.99, "
            "NULL, 'pickup', 'online')"
        )
    with _redis(props) as client:
        client.set("order-status:S0001-1", "accepted")

    stack.reset_data(props)

    assert _records(kinesis, orders) == []
    assert s3.list_objects_v2(Bucket=props["Lake"]["bucket"])["KeyCount"] == 0
    assert _count(props, "order_fct") == 0
    assert _count(props, "store") == 2000
    with psycopg.connect(postgres_dsn(props)) as conn:
        on_hand = dict(
            conn.execute(
                "SELECT ingredient_id, on_hand FROM inventory WHERE store_id = 1"
            ).fetchall()
        )
    assert on_hand == {i: q for s, i, q in rd.initial_inventory() if s == 1}
    with _redis(props) as client:
        assert client.dbsize() == 0


def _records(kinesis, stream: str) -> list:
    records = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records += kinesis.get_records(ShardIterator=iterator)["Records"]
    return records
