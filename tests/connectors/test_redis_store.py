"""Redis as ElastiCache runs it: the local server requires AUTH over TLS, every client
(Python and the JVM sink) connects that way from the ``Redis`` group, and a write the
server refuses inside a pipeline surfaces as an error instead of a lost update."""

from __future__ import annotations

import uuid

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyflink.common import Row

from connectors import redis_store
from pizzastream.catalog import Catalog
from pizzastream.order_status import (
    FINAL,
    PENDING,
    Outcome,
    conflict_dead_letter,
    settle,
    transition,
)
from tests.support import run_redis_sink, run_status_gate

pytestmark = pytest.mark.integration


def test_the_configured_client_authenticates_over_tls(local_stack):
    with redis_store.client(local_stack) as client:
        assert client.ping()
        assert client.acl_whoami() == local_stack["Redis"]["user"]
        assert client.connection_pool.connection_class is redis.SSLConnection


def without(props, **changes):
    return {**props, "Redis": {**props["Redis"], **changes}}


def test_a_client_without_auth_is_refused(local_stack):
    with (
        redis_store.client(without(local_stack, password="", user="")) as client,
        pytest.raises(redis.AuthenticationError),
    ):
        client.set("intruder", "1")


def test_a_client_with_a_wrong_password_is_refused(local_stack):
    with (
        redis_store.client(without(local_stack, password="guess")) as client,
        pytest.raises(redis.AuthenticationError),
    ):
        client.ping()


def test_a_plaintext_client_is_refused(local_stack):
    with (
        redis_store.client(without(local_stack, tls="false"), socket_timeout=3) as client,
        pytest.raises(redis.ConnectionError),
    ):
        client.ping()


def test_a_client_that_does_not_trust_the_ca_is_refused(local_stack):
    with (
        redis_store.client(without(local_stack, tls_ca_file="")) as client,
        pytest.raises(redis.ConnectionError, match="certificate verify failed"),
    ):  # system CAs
        client.ping()


def test_a_refused_write_in_a_python_pipeline_surfaces_as_an_error(clean_stack):
    with redis_store.client(clean_stack) as client:
        client.set(redis_store.product_key(2), "not a hash")  # HSET will be refused
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            redis_store.publish_catalog(client, Catalog.from_reference_data())
        assert client.get(redis_store.product_key(2)) == "not a hash"


@pytest.mark.slow
def test_the_jvm_sink_writes_over_tls_with_auth_and_fails_on_a_refused_write(clean_stack):
    rows = [
        Row("SET", "order:T-1", "", "accepted"),
        Row("HSET", "live:7:2026112410", "05", "2/9.98"),
        Row("HSET", "live:7:2026112410", "06", "1/4.99"),
    ]
    run_redis_sink(clean_stack, rows, ttl_s=600)
    with redis_store.client(clean_stack) as client:
        assert client.get("order:T-1") == "accepted"
        assert client.hgetall("live:7:2026112410") == {"05": "2/9.98", "06": "1/4.99"}
        assert 0 < client.ttl("live:7:2026112410") <= 600
        client.set("live:8:2026112410", "not a hash")

    with pytest.raises(Exception, match="Redis refused a write \\(WRONGTYPE"):
        run_redis_sink(
            clean_stack,
            [
                Row("HSET", "live:8:2026112410", "05", "1/1.00"),
                Row("SET", "order:T-2", "", "accepted"),
            ],
        )


def test_delivery_partners_are_cached_with_their_ttl_until_invalidated(clean_stack):
    from delivery import store
    from tests.pos_support import query

    props = {**clean_stack, "Delivery": {**clean_stack["Delivery"], "partner_cache_ttl_s": "60"}}
    with redis_store.client(props) as client:
        fresh = store.load_partners(props)
        assert store.cached_partners(props, client) == fresh  # a miss reads Aurora
        assert 0 < client.ttl(redis_store.DELIVERY_PARTNERS_KEY) <= 60
        partner = fresh[0].partner_id
        query(
            props,
            "UPDATE delivery_partner SET capacity = capacity + 1 WHERE partner_id = %s",
            partner,
        )
        try:
            assert store.cached_partners(props, client) == fresh  # cached until ...
            assert store.invalidate_partners(client)  # ... invalidated
            changed = store.cached_partners(props, client)
            assert changed[0].capacity == fresh[0].capacity + 1
            assert changed == store.load_partners(props)
        finally:
            query(
                props,
                "UPDATE delivery_partner SET capacity = capacity - 1 WHERE partner_id = %s",
                partner,
            )
            store.invalidate_partners(client)


STATUS_WRITES = st.lists(st.sampled_from(sorted(FINAL) + [PENDING, "garbage"]), max_size=8)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(writes=STATUS_WRITES)
def test_the_python_status_writer_applies_the_lifecycle_atomically(clean_stack, writes):
    """``write_order_status`` (the Lua script where the write lands) does what
    ``pizzastream.order_status.transition`` says, write by write; the status a sequence
    leaves is ``settle``'s."""
    key_id = f"T-py-{uuid.uuid4()}"
    with redis_store.client(clean_stack) as client:
        current = None
        for status in writes:
            outcome, kept = redis_store.write_order_status(client, key_id, status, ttl_s=600)
            assert outcome is transition(current, status), (current, status)
            if outcome is Outcome.WRITE:
                current = status
            assert kept == (current if outcome is Outcome.CONFLICT else None)
            assert client.get(redis_store.order_status_key(key_id)) == current
        assert current == settle(writes)[0]


def test_a_replay_keeps_the_status_and_its_ttl_and_a_flushed_script_is_loaded_again(clean_stack):
    with redis_store.client(clean_stack) as client:
        key = redis_store.order_status_key("T-ttl")
        assert redis_store.write_order_status(client, "T-ttl", "accepted", ttl_s=600) == (
            Outcome.WRITE,
            None,
        )
        client.expire(key, 100)
        client.script_flush()  # a restarted server
        assert redis_store.write_order_status(client, "T-ttl", "accepted", ttl_s=600) == (
            Outcome.SAME,
            None,
        )
        assert 0 < client.ttl(key) <= 100  # a replay changes nothing
        assert redis_store.write_order_status(client, "T-ttl", "rejected:invalid") == (
            Outcome.CONFLICT,
            "accepted",
        )
        assert client.get(key) == "accepted"


ODD_ID = (
    'T-ü€"\\ x'  # printable, not ASCII, a quote, a backslash: one dead letter id in Java and Python
)


@pytest.mark.slow
def test_the_jvm_status_writer_keeps_the_first_final_status_and_dead_letters_the_rest(clean_stack):
    with redis_store.client(clean_stack) as client:
        client.set(redis_store.order_status_key("T-pending"), PENDING)
        client.set(redis_store.order_status_key("T-kept"), "rejected:invalid")
        client.script_flush()  # the first batch meets NOSCRIPT and loads it
    writes = [
        ("T-1", "accepted"),
        ("T-1", "accepted"),
        ("T-1", "rejected:invalid"),
        ("T-2", "rejected:invalid"),
        ("T-pending", "accepted"),
        ("T-kept", "accepted"),
        ("T-kept", "accepted"),
        ("T-1", "rejected:unknown_product"),
        (ODD_ID, "rejected:invalid"),
        (ODD_ID, "accepted"),
    ]
    letters = run_status_gate(clean_stack, writes, job="order_enrichment", batch_size=3)
    expected = [
        conflict_dead_letter("order_enrichment", order_id, refused, kept).as_tuple()
        for order_id, refused, kept in (
            ("T-1", "rejected:invalid", "accepted"),
            ("T-kept", "accepted", "rejected:invalid"),
            ("T-kept", "accepted", "rejected:invalid"),
            ("T-1", "rejected:unknown_product", "accepted"),
            (ODD_ID, "accepted", "rejected:invalid"),
        )
    ]
    assert letters == expected  # the same refusal twice: the same row id twice
    with redis_store.client(clean_stack) as client:
        assert {
            o: client.get(redis_store.order_status_key(o))
            for o in ("T-1", "T-2", "T-pending", "T-kept")
        } == {
            "T-1": "accepted",
            "T-2": "rejected:invalid",
            "T-pending": "accepted",
            "T-kept": "rejected:invalid",
        }
        assert 0 < client.ttl(redis_store.order_status_key("T-1")) <= 600
        assert client.ttl(redis_store.order_status_key("T-kept")) == -1  # never rewritten
    # Run again (a replay after a restore): nothing changes, the same dead letters.
    assert run_status_gate(clean_stack, writes, job="order_enrichment") == expected
