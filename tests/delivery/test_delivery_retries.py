"""Rounds of offers against the local partner API (``stack/provider.py`` on a thread) with
the real PostgreSQL and Redis: partners that refuse, time out, and recover.

The service runs without the KCL daemon (``DeliveryService.handle`` for the record,
``retry_due`` for the later rounds, as a worker's retry loop calls it) on a clock the
test moves, so a round's back-off passes at once; the provider calls, their timeouts
and the database are real. Orders are named ``DR<run>-…`` and removed afterwards.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from connectors import aurora, redis_store
from connectors.delivery_provider import DeliveryProviderClient
from delivery.service import DeliveryService
from pizzastream import reference_data
from pizzastream.config import postgres_dsn
from pizzastream.delivery import DeliveryRules, Partner, Place, rank
from pizzastream.orders import EnrichedOrder, OrderLine
from stack import provider

pytestmark = pytest.mark.integration

KM_PER_DEGREE = 111.195
SLOW_MS = 800  # a partner's answer arrives after the client gave up (0.3 s)


@pytest.fixture
def retries(local_stack):
    import psycopg

    from pizzastream.config import REPO_ROOT

    with psycopg.connect(postgres_dsn(local_stack)) as conn:
        conn.execute((REPO_ROOT / "stack" / "sql" / "delivery.sql").read_text())
    run = uuid.uuid4().hex[:8]
    stand_in = provider.start(provider.Knobs(refusal_rate=0.0, slow_ms=SLOW_MS))
    props = {group: dict(values) for group, values in local_stack.items()}
    props["Delivery"] |= {
        "provider_url": stand_in.url,
        "retry_backoff_s": "5",
        "retry_backoff_max_s": "20",
        "deadline_minutes": "1",
    }
    clock = [time.time()]
    service = DeliveryService(
        props,
        DeliveryProviderClient(stand_in.url, timeout_s=0.3, attempts=1),
        clock=lambda: clock[0],
    )
    yield run, props, stand_in, service, clock
    service.close()
    stand_in.shutdown()
    stand_in.server_close()
    with aurora.connect(props) as conn:
        for table in ("delivery_assignment", "delivery_attempt"):
            conn.execute(f"DELETE FROM {table} WHERE order_id LIKE %s", [f"DR{run}-%"])
    client = redis_store.client(props)
    keys = list(client.scan_iter(f"delivery:DR{run}-*"))
    if keys:
        client.delete(*keys)


def _order(run: str, label: str, candidates: int, rules: DeliveryRules):
    """A delivery order now, 2 km from a store with exactly ``candidates`` partners in
    reach; returns the record and the candidates best first."""
    partners = [Partner.from_row(p) for p in reference_data.delivery_partners()]
    for store in reference_data.stores():
        customer = Place(store.lat + 2 / KM_PER_DEGREE, store.lon)
        ranked = [
            q.partner.partner_id
            for q in rank(partners, Place(store.lat, store.lon), customer, rules).candidates
        ]
        if len(ranked) == candidates:
            order = EnrichedOrder(
                f"E-DR{run}-{label}",
                f"DR{run}-{label}",
                store.store_id,
                "online",
                "delivery",
                int(time.time() * 1000),
                customer.lat,
                customer.lon,
                (OrderLine(3, 1, 1499),),
            )
            return order.to_json().encode(), order.order_id, ranked
    raise AssertionError(f"no store with {candidates} partners in reach")


def _cached(props, order_id: str) -> dict:
    # redis-py types a reply as sync or async; this client is sync: a str
    return json.loads(redis_store.client(props).get(f"delivery:{order_id}"))  # type: ignore[arg-type]


def _pending(props, order_id: str):
    with aurora.connect(props) as conn:
        return conn.execute(
            "SELECT reason, next_attempt_at FROM delivery_attempt WHERE order_id = %s", [order_id]
        ).fetchone()


def test_refused_and_timed_out_then_the_next_best_recovers(retries):
    run, props, stand_in, service, clock = retries
    raw, order_id, (best, second, *others) = _order(run, "A", 3, service.rules)
    stand_in.state.knobs = provider.Knobs(
        refusal_rate=0.0,
        slow_ms=SLOW_MS,
        refusing_partners=frozenset({best}),
        slow_partners=frozenset({second, *others}),
    )
    first = service.handle(raw)
    assert first.decision is None and first.retry is not None
    assert first.retry.reason.value == "no_answer"
    assert first.retry.at_ms == int(clock[0] * 1000) + 5_000
    cached = _cached(props, order_id)
    assert cached["status"] == "retrying" and cached["reason"] == "no_answer"
    assert [(s["partner_id"], s["outcome"]) for s in cached["steps"]] == [
        (best, "refused"),
        (second, "timed_out"),
    ] + [(p, "timed_out") for p in others]
    assert _pending(props, order_id)[0] == "no_answer"
    offered = stand_in.state.snapshot(order_id)["dispatches"]
    assert offered and {d["status"] for d in offered} == {"cancelled"}  # withdrawn

    clock[0] += 2  # not due yet: nothing runs
    assert service.retry_due() == []
    assert service.handle(raw).waiting  # a replay of the record waits too

    stand_in.state.knobs = provider.Knobs(refusal_rate=0.0, refusing_partners=frozenset({best}))
    clock[0] += 3
    (done,) = service.retry_due()
    assert done.decision.status == "assigned" and done.decision.partner_id == second
    snapshot = stand_in.state.snapshot(order_id)
    assert snapshot["refusals"] == 1  # the partner that refused: asked once
    active = [d for d in snapshot["dispatches"] if d["status"] == "active"]
    assert [(d["partner_id"], d["delivery_id"]) for d in active] == [
        (second, done.decision.delivery_id)
    ]
    cached = _cached(props, order_id)
    assert cached["status"] == "assigned" and cached["delivery_id"] == done.decision.delivery_id
    assert [(s["round"], s["partner_id"], s["outcome"]) for s in cached["steps"]][-1] == (
        2,
        second,
        "accepted",
    )
    assert _pending(props, order_id) is None
    assert service.handle(raw).replay


def test_partners_that_never_answer_make_it_undeliverable_at_the_deadline(retries):
    run, props, stand_in, service, clock = retries
    raw, order_id, candidates = _order(run, "B", 2, service.rules)
    start = clock[0]
    stand_in.state.knobs = provider.Knobs(
        refusal_rate=0.0, slow_ms=SLOW_MS, slow_partners=frozenset(candidates)
    )
    handled = service.handle(raw)
    rounds_at = [0.0]
    while handled.retry is not None:
        clock[0] = handled.retry.at_ms / 1000
        rounds_at.append(round(clock[0] - start))
        (handled,) = service.retry_due()
    assert rounds_at == [0, 5, 15, 35, 55, 60]  # 5 s doubling to 20 s, then the deadline
    decision = handled.decision
    assert decision.delivery_status == "undeliverable:no_answer"
    assert decision.detail.endswith("deadline passed")
    cached = _cached(props, order_id)
    assert cached["status"] == "undeliverable:no_answer"
    assert len(cached["steps"]) == 6 * len(candidates)
    assert _pending(props, order_id) is None
    assert not [
        d for d in stand_in.state.snapshot(order_id)["dispatches"] if d["status"] == "active"
    ]


def test_everyone_refusing_is_undeliverable_at_once(retries):
    run, props, stand_in, service, _ = retries
    raw, order_id, candidates = _order(run, "C", 2, service.rules)
    stand_in.state.knobs = provider.Knobs(refusal_rate=0.0, refusing_partners=frozenset(candidates))
    handled = service.handle(raw)
    assert handled.retry is None
    assert handled.decision.delivery_status == "undeliverable:all_refused"
    assert _pending(props, order_id) is None
    assert stand_in.state.snapshot(order_id)["refusals"] == len(candidates)
