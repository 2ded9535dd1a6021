"""Partner choice (``pizzastream.delivery``), alone; plus the server-free pieces of the
delivery service around it: the provider client against the stand-in on a local thread,
and the MultiLangDaemon properties generated from the configuration."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.delivery_provider import DeliveryProviderClient, ProviderUnavailable
from delivery import daemon
from pizzastream import reference_data
from pizzastream.config import load_properties
from pizzastream.delivery import (
    REFUSED,
    TIMED_OUT,
    Assignment,
    ConfigurationError,
    DeliveryRules,
    Denial,
    DenialReason,
    DispatchProgress,
    OfferOutcome,
    OfferResult,
    Partner,
    Place,
    Retry,
    Step,
    Undeliverable,
    choose,
    decide,
    dispatch_round,
    haversine_km,
    money_to_cents,
    quote,
    rank,
)
from stack import provider

STORE = Place(40.7128, -74.0060)
CUSTOMER = Place(40.7300, -74.0060)  # ~1.9 km north of the store
RULES = DeliveryRules(max_fee_cents=1500, max_distance_km=30.0, eta_cost_cents_per_min=10.0)
KM_PER_DEGREE_LAT = 111.195


def north_of(place: Place, km: float) -> Place:
    return Place(place.lat + km / KM_PER_DEGREE_LAT, place.lon)


def partner(
    pid: int,
    km_from_store: float = 5.0,
    base: int = 300,
    per_km: int = 100,
    capacity: int = 5,
    speed: float = 30.0,
) -> Partner:
    base_at = Place(STORE.lat - km_from_store / KM_PER_DEGREE_LAT, STORE.lon)  # south
    return Partner(pid, f"P{pid}", base_at.lat, base_at.lon, base, per_km, capacity, 0.1, speed)


def accept_all(q) -> OfferResult:
    return OfferResult.accepted(f"D-{q.partner.partner_id}")


# -- geometry and fees -------------------------------------------------------------------


def test_haversine_known_distances():
    assert haversine_km(40.7128, -74.0060, 40.7128, -74.0060) == 0
    new_york_to_los_angeles = haversine_km(40.7128, -74.0060, 34.0522, -118.2437)
    assert new_york_to_los_angeles == pytest.approx(3936, rel=0.005)
    assert haversine_km(0, 0, 1, 0) == pytest.approx(111.195, rel=1e-4)
    assert haversine_km(0, 179.9, 0, -179.9) == pytest.approx(22.24, rel=1e-3)  # antimeridian


def test_quote_trip_fee_and_eta():
    p = partner(1, km_from_store=6.0, base=250, per_km=120, speed=24.0)
    q = quote(p, STORE, CUSTOMER)
    drop = haversine_km(STORE.lat, STORE.lon, CUSTOMER.lat, CUSTOMER.lon)
    assert q.pickup_km == pytest.approx(6.0, rel=1e-3)
    assert q.drop_km == pytest.approx(drop)
    assert q.distance_km == pytest.approx(q.pickup_km + q.drop_km)
    assert q.fee_cents == 250 + round(120 * drop)  # only the drop is charged
    assert q.eta_min == pytest.approx(q.distance_km / 24.0 * 60)
    assert q.busy_until_ms(1_000) >= 1_000 + q.eta_min * 60_000


def test_fee_rounds_to_whole_cents():
    p = partner(1, base=0, per_km=100)
    assert quote(p, STORE, north_of(STORE, 1.007)).fee_cents == 101  # 100.7 cents
    assert quote(p, STORE, north_of(STORE, 1.002)).fee_cents == 100  # 100.2 cents


def test_money_conversions():
    assert money_to_cents("12.00") == 1200
    assert money_to_cents(Decimal("1.08")) == 108
    assert money_to_cents("0.005") == 1


def test_partner_from_reference_data_and_rows():
    seeded = reference_data.delivery_partners()[0]
    p = Partner.from_row(seeded)
    assert p.partner_id == seeded.partner_id
    assert p.base_fee_cents == money_to_cents(seeded.base_fee)
    assert p.fee_per_km_cents == money_to_cents(seeded.fee_per_km)
    row = {
        "partner_id": 9,
        "name": "X",
        "lat": 1.0,
        "lon": 2.0,
        "base_fee": Decimal("2.50"),
        "fee_per_km": Decimal("0.75"),
        "capacity": 4,
        "refusal_rate": 0.1,
        "speed_kmh": 20.0,
    }
    assert Partner.from_row(row) == Partner(9, "X", 1.0, 2.0, 250, 75, 4, 0.1, 20.0)


def test_rules_from_the_local_configuration():
    rules = DeliveryRules.from_properties(load_properties()["Delivery"])
    assert rules.max_fee_cents > 0 and rules.max_distance_km > 0


# -- ranking -----------------------------------------------------------------------------


def test_ranks_by_cost_and_eta_together():
    cheap_slow = partner(1, km_from_store=20.0, base=200, per_km=50, speed=15.0)
    dear_fast = partner(2, km_from_store=2.0, base=500, per_km=100, speed=30.0)
    ranking = rank([cheap_slow, dear_fast], STORE, CUSTOMER, RULES)
    # cheap_slow: ~3 dollars but ~88 minutes (8.8 dollars of time); dear_fast: ~7 dollars, ~8 min
    assert [q.partner.partner_id for q in ranking.candidates] == [2, 1]
    money_only = DeliveryRules(RULES.max_fee_cents, RULES.max_distance_km, 0.0)
    assert [
        q.partner.partner_id
        for q in rank([cheap_slow, dear_fast], STORE, CUSTOMER, money_only).candidates
    ] == [1, 2]


def test_equal_partners_rank_by_id_whatever_the_input_order():
    partners = [partner(pid) for pid in (7, 3, 5)]
    ranking = rank(partners, STORE, CUSTOMER, RULES)
    assert [q.partner.partner_id for q in ranking.candidates] == [3, 5, 7]


def test_limits_exclude_partners_with_a_reason():
    far = partner(1, km_from_store=40.0)
    pricey = partner(2, base=1600)
    full = partner(3, capacity=2)
    fine = partner(4)
    ranking = rank([far, pricey, full, fine], STORE, CUSTOMER, RULES, load={3: 2, 4: 1})
    assert [q.partner.partner_id for q in ranking.candidates] == [4]
    assert ranking.excluded == {
        1: DenialReason.OUT_OF_RANGE,
        2: DenialReason.OVER_MAX_FEE,
        3: DenialReason.NO_CAPACITY,
    }


def test_limits_are_inclusive():
    p = partner(1, base=0, per_km=100)
    q = quote(p, STORE, CUSTOMER)
    exact = DeliveryRules(q.fee_cents, q.distance_km, 10.0)
    assert rank([p], STORE, CUSTOMER, exact).candidates
    below = DeliveryRules(q.fee_cents - 1, q.distance_km, 10.0)
    assert rank([p], STORE, CUSTOMER, below).denial.reason is DenialReason.OVER_MAX_FEE


@pytest.mark.parametrize(
    "partners, load, reason",
    [
        ([], {}, DenialReason.OUT_OF_RANGE),
        ([partner(1, km_from_store=40)], {}, DenialReason.OUT_OF_RANGE),
        ([partner(1, km_from_store=40), partner(2, base=1600)], {}, DenialReason.OVER_MAX_FEE),
        (
            [partner(1, km_from_store=40), partner(2, base=1600), partner(3, capacity=1)],
            {3: 1},
            DenialReason.NO_CAPACITY,
        ),
        ([partner(3, capacity=1), partner(1, km_from_store=40)], {3: 5}, DenialReason.NO_CAPACITY),
    ],
)
def test_denial_names_the_limit_the_order_came_closest_to_passing(partners, load, reason):
    outcome = decide(partners, STORE, CUSTOMER, RULES, load, accept_all)
    assert isinstance(outcome, Denial)
    assert outcome.reason is reason
    assert outcome.status == f"denied:{reason.value}"
    assert outcome.detail


# -- offering ----------------------------------------------------------------------------


def scripted(answers: dict[int, OfferResult], asked: list[int]):
    def offer(q):
        asked.append(q.partner.partner_id)
        return answers.get(q.partner.partner_id, OfferResult.accepted(f"D-{q.partner.partner_id}"))

    return offer


def test_refusal_and_timeout_move_on_to_the_next_best():
    partners = [partner(pid) for pid in (1, 2, 3)]
    asked: list[int] = []
    outcome = decide(
        partners, STORE, CUSTOMER, RULES, {}, scripted({1: REFUSED, 2: TIMED_OUT}, asked)
    )
    assert isinstance(outcome, Assignment)
    assert asked == [1, 2, 3]
    assert outcome.quote.partner.partner_id == 3
    assert outcome.delivery_id == "D-3"
    assert outcome.status == "assigned"
    assert outcome.attempts == (
        (1, OfferOutcome.REFUSED),
        (2, OfferOutcome.TIMED_OUT),
        (3, OfferOutcome.ACCEPTED),
    )


def test_first_acceptance_ends_the_offers():
    asked: list[int] = []
    outcome = decide([partner(1), partner(2)], STORE, CUSTOMER, RULES, {}, scripted({}, asked))
    assert asked == [1] and outcome.quote.partner.partner_id == 1


def test_everyone_saying_no_denies_with_all_refused():
    asked: list[int] = []
    outcome = decide(
        [partner(1), partner(2)],
        STORE,
        CUSTOMER,
        RULES,
        {},
        scripted({1: REFUSED, 2: TIMED_OUT}, asked),
    )
    assert isinstance(outcome, Denial)
    assert outcome.reason is DenialReason.ALL_REFUSED
    assert (
        outcome.detail == "every partner offered said no (partner 1 refused, partner 2 timed_out)"
    )


def test_partners_over_a_limit_are_never_asked():
    asked: list[int] = []
    decide(
        [partner(1, km_from_store=40), partner(2, base=1600), partner(3, capacity=1)],
        STORE,
        CUSTOMER,
        RULES,
        {3: 1},
        scripted({}, asked),
    )
    assert asked == []


def test_a_failing_offer_propagates_instead_of_denying():
    def broken(_q):
        raise ConnectionError("provider down")

    with pytest.raises(ConnectionError):
        decide([partner(1)], STORE, CUSTOMER, RULES, {}, broken)


def test_missing_places_deny_without_offering():
    asked: list[int] = []
    assert (
        decide([partner(1)], STORE, None, RULES, {}, scripted({}, asked)).reason
        is DenialReason.NO_LOCATION
    )
    assert (
        decide([partner(1)], None, CUSTOMER, RULES, {}, scripted({}, asked)).reason
        is DenialReason.UNKNOWN_STORE
    )
    assert asked == []


def test_an_acceptance_without_a_delivery_id_is_an_error():
    with pytest.raises(ValueError):
        choose(
            rank([partner(1)], STORE, CUSTOMER, RULES), lambda q: OfferResult(OfferOutcome.ACCEPTED)
        )


partners_strategy = st.lists(
    st.builds(
        partner,
        st.integers(1, 10_000),
        st.floats(0, 60),
        st.integers(0, 2000),
        st.integers(0, 300),
        st.integers(1, 5),
        st.floats(5, 60),
    ),
    max_size=8,
    unique_by=lambda p: p.partner_id,
)


@settings(max_examples=200, deadline=None)
@given(
    partners_strategy,
    st.dictionaries(st.integers(1, 10_000), st.integers(0, 6)),
    st.sets(st.integers(1, 10_000)),
    st.floats(0, 10),
)
def test_whatever_happens_a_choice_respects_every_limit(partners, load, refusing, drop_km):
    customer = north_of(STORE, drop_km)
    outcome = decide(
        partners,
        STORE,
        customer,
        RULES,
        load,
        lambda q: REFUSED if q.partner.partner_id in refusing else OfferResult.accepted("D"),
    )
    if isinstance(outcome, Assignment):
        q = outcome.quote
        assert q.fee_cents <= RULES.max_fee_cents
        assert q.distance_km <= RULES.max_distance_km
        assert load.get(q.partner.partner_id, 0) < q.partner.capacity
        assert q.partner.partner_id not in refusing
        best = rank(partners, STORE, customer, RULES, load).candidates
        accepting = [c for c in best if c.partner.partner_id not in refusing]
        assert q == accepting[0]  # the best partner that says yes
    else:
        assert outcome.reason in set(DenialReason) - {
            DenialReason.NO_LOCATION,
            DenialReason.UNKNOWN_STORE,
        }


# -- rounds and retries ------------------------------------------------------------------

ORDER_MS = 1_795_400_000_000
RETRYING = DeliveryRules(
    1500, 30.0, 10.0, retry_backoff_s=30, retry_backoff_max_s=100, deadline_minutes=10
)


def rounds(partners, answers_by_round, load_by_round=None, start_ms=ORDER_MS):
    """Runs ``dispatch_round`` as the service does, each round at the time the previous
    one asked for; ``answers_by_round[r]`` scripts round r+1. Returns every outcome and
    the partners asked in each round."""
    progress, now, outcomes, asked = DispatchProgress(), start_ms, [], []
    for number, answers in enumerate(answers_by_round):
        asked.append([])
        load = (load_by_round or {}).get(number, {})
        outcome = dispatch_round(
            partners,
            STORE,
            CUSTOMER,
            RETRYING,
            load,
            scripted(answers, asked[-1]),
            progress,
            ORDER_MS,
            now,
        )
        outcomes.append(outcome)
        if not isinstance(outcome, Retry):
            break
        progress, now = outcome.progress, outcome.at_ms
    return outcomes, asked


def test_a_partner_that_refused_is_never_asked_again_and_one_that_timed_out_is():
    partners = [partner(1), partner(2), partner(3)]
    outcomes, asked = rounds(partners, [{1: REFUSED, 2: TIMED_OUT, 3: REFUSED}, {}])
    first, second = outcomes
    assert isinstance(first, Retry) and first.reason is DenialReason.NO_ANSWER
    assert first.at_ms == ORDER_MS + 30_000
    assert asked == [[1, 2, 3], [2]]
    assert isinstance(second, Assignment) and second.quote.partner.partner_id == 2
    assert second.attempts == (
        (1, OfferOutcome.REFUSED),
        (2, OfferOutcome.TIMED_OUT),
        (3, OfferOutcome.REFUSED),
        (2, OfferOutcome.ACCEPTED),
    )


def test_back_off_doubles_up_to_its_cap_and_never_passes_the_deadline():
    outcomes, _ = rounds([partner(1)], [{1: TIMED_OUT}] * 10)
    times = [o.at_ms - ORDER_MS for o in outcomes if isinstance(o, Retry)]
    assert times == [30_000, 90_000, 190_000, 290_000, 390_000, 490_000, 590_000, 600_000]
    last = outcomes[-1]
    assert isinstance(last, Undeliverable) and last.status == "undeliverable:no_answer"
    assert last.detail.endswith("deadline passed") and last.progress.rounds == 9


def test_everyone_refusing_ends_undeliverable_at_once():
    outcomes, asked = rounds([partner(1), partner(2)], [{1: REFUSED, 2: REFUSED}, {}])
    (only,) = outcomes
    assert isinstance(only, Undeliverable) and only.reason is DenialReason.ALL_REFUSED
    assert only.progress.refused == {1, 2} and asked == [[1, 2]]


def test_a_fully_booked_partner_is_not_waited_for():
    """Capacity counts deliveries at the order's event time: waiting cannot free it."""
    partners = [partner(1, capacity=1), partner(2)]
    outcomes, asked = rounds(partners, [{2: REFUSED}, {}], load_by_round={0: {1: 1}})
    (only,) = outcomes
    assert isinstance(only, Undeliverable) and only.reason is DenialReason.ALL_REFUSED
    assert asked == [[2]]
    (full,) = rounds([partner(1, capacity=1)], [{}], load_by_round={0: {1: 1}})[0]
    assert isinstance(full, Denial) and full.reason is DenialReason.NO_CAPACITY


def test_limits_still_deny_without_waiting():
    outcome = dispatch_round(
        [partner(1, km_from_store=40)],
        STORE,
        CUSTOMER,
        RETRYING,
        {},
        scripted({}, []),
        DispatchProgress(),
        ORDER_MS,
        ORDER_MS,
    )
    assert isinstance(outcome, Denial) and outcome.reason is DenialReason.OUT_OF_RANGE
    assert isinstance(
        dispatch_round(
            [partner(1)],
            STORE,
            None,
            RETRYING,
            {},
            scripted({}, []),
            DispatchProgress(),
            ORDER_MS,
            ORDER_MS,
        ),
        Denial,
    )


def test_a_round_after_the_deadline_is_the_last():
    outcome = dispatch_round(
        [partner(1)],
        STORE,
        CUSTOMER,
        RETRYING,
        {},
        scripted({1: TIMED_OUT}, []),
        DispatchProgress(),
        ORDER_MS,
        ORDER_MS + 3_600_000,
    )
    assert isinstance(outcome, Undeliverable) and outcome.reason is DenialReason.NO_ANSWER


def test_each_step_is_reported_as_it_happens_and_progress_round_trips():
    seen = []
    dispatch_round(
        [partner(1), partner(2)],
        STORE,
        CUSTOMER,
        RETRYING,
        {},
        scripted({1: REFUSED, 2: TIMED_OUT}, []),
        DispatchProgress(),
        ORDER_MS,
        ORDER_MS + 5,
        seen.append,
    )
    assert [len(p.steps) for p in seen] == [1, 2]
    progress = seen[-1]
    assert progress.steps[0] == Step(1, 1, OfferOutcome.REFUSED, ORDER_MS + 5)
    assert DispatchProgress.from_json(progress.to_json()) == progress


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.sampled_from(["accepted", "refused", "timed_out"]), min_size=3, max_size=3),
    st.integers(1, 12),
)
def test_every_order_ends_assigned_or_undeliverable_by_its_deadline(script, partner_count):
    """Whatever the partners answer, round after round: no partner is asked after it
    refused, no round runs after the deadline, and the order ends."""
    partners = [partner(pid) for pid in range(1, partner_count + 1)]
    answer = {"accepted": None, "refused": REFUSED, "timed_out": TIMED_OUT}
    progress, now = DispatchProgress(), ORDER_MS
    for number in range(50):
        refused_before = progress.refused
        scripted_answers = {pid: answer[script[(pid + number) % 3]] for pid in range(1, 13)}
        offers = {pid: a for pid, a in scripted_answers.items() if a is not None}
        asked = []
        outcome = dispatch_round(
            partners,
            STORE,
            CUSTOMER,
            RETRYING,
            {},
            scripted(offers, asked),
            progress,
            ORDER_MS,
            now,
        )
        assert not set(asked) & refused_before
        assert now <= RETRYING.deadline_ms(ORDER_MS)
        if not isinstance(outcome, Retry):
            assert isinstance(outcome, (Assignment, Undeliverable))
            return
        progress, now = outcome.progress, outcome.at_ms
    raise AssertionError("no end after 50 rounds")


def test_settings_are_typed_and_a_missing_one_is_named():
    group = load_properties()["Delivery"]
    rules = DeliveryRules.from_properties(group)
    assert rules.deadline_minutes == float(group["deadline_minutes"])
    missing = {k: v for k, v in group.items() if k != "retry_backoff_s"}
    with pytest.raises(ConfigurationError, match=r"Delivery.retry_backoff_s is missing"):
        DeliveryRules.from_properties(missing)
    with pytest.raises(ConfigurationError, match=r"Delivery.deadline_minutes = 'soon'"):
        DeliveryRules.from_properties({**group, "deadline_minutes": "soon"})
    with pytest.raises(ConfigurationError, match="at most retry_backoff_max_s"):
        DeliveryRules.from_properties({**group, "retry_backoff_s": "600"})


# -- the provider client against the stand-in (local thread, no stack needed) ------------


@pytest.fixture
def stand_in():
    servers = []

    def start(**knobs):
        server = provider.start(provider.Knobs(**knobs))
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_dispatch_is_idempotent_per_order_and_partner(stand_in):
    server = stand_in(refusal_rate=0.0)
    client = DeliveryProviderClient(server.url, timeout_s=2, attempts=2)
    first = client.dispatch("O-1", 4, {"store_id": 1})
    again = client.dispatch("O-1", 4, {"store_id": 1})
    other = client.dispatch("O-1", 5, {"store_id": 1})
    assert first.outcome is OfferOutcome.ACCEPTED and first == again
    assert other.delivery_id != first.delivery_id
    dispatches = client.dispatches("O-1")["dispatches"]
    assert {(d["partner_id"], d["requests"]) for d in dispatches} == {(4, 2), (5, 1)}


def test_refusals_are_stable_for_an_order_and_partner(stand_in):
    server = stand_in(refusal_rate=0.5, seed=3)
    client = DeliveryProviderClient(server.url)
    answers = {
        (f"O-{i}", pid): client.dispatch(f"O-{i}", pid, {}).outcome
        for i in range(40)
        for pid in (1, 2)
    }
    assert set(answers.values()) == {OfferOutcome.ACCEPTED, OfferOutcome.REFUSED}
    for (order_id, pid), outcome in answers.items():
        assert client.dispatch(order_id, pid, {}).outcome is outcome


def test_partners_own_refusal_rates_by_default(stand_in):
    server = stand_in(refusal_rate=None)
    seeded = {p.partner_id: p.refusal_rate for p in reference_data.delivery_partners()}
    state = server.state
    refusals = sum(state.refuses(f"O-{i}", 1) for i in range(4000))
    assert refusals / 4000 == pytest.approx(seeded[1], abs=0.03)


def test_a_timeout_is_reported_and_cancel_withdraws_the_dispatch(stand_in):
    server = stand_in(refusal_rate=0.0, slow_rate=1.0, slow_ms=600)
    client = DeliveryProviderClient(server.url, timeout_s=0.2, attempts=2, backoff_s=0.01)
    assert client.dispatch("O-9", 2, {}) == TIMED_OUT
    active = client.active_dispatch("O-9")
    assert active is not None and active.partner_id == 2  # the partner did take it
    assert client.cancel("O-9", 2) is True
    assert client.active_dispatch("O-9") is None
    assert client.cancel("O-9", 2) is False  # idempotent


def test_errors_are_retried_and_an_outage_is_not_a_refusal(stand_in):
    flaky = stand_in(refusal_rate=0.0, error_rate=0.3, seed=1)
    client = DeliveryProviderClient(flaky.url, attempts=10, backoff_s=0.001)
    for i in range(20):
        assert client.dispatch(f"O-{i}", 1, {}).outcome is OfferOutcome.ACCEPTED
    assert client.dispatches()["errors"] > 0
    down = stand_in(error_rate=1.0)
    with pytest.raises(ProviderUnavailable):
        DeliveryProviderClient(down.url, attempts=2, backoff_s=0.001).dispatch("O-1", 1, {})
    closed = stand_in()
    url = closed.url
    closed.shutdown()
    closed.server_close()
    with pytest.raises(ProviderUnavailable):
        DeliveryProviderClient(url, attempts=2, backoff_s=0.001).dispatch("O-1", 1, {})


# -- the daemon's generated configuration ------------------------------------------------


def test_kcl_properties_come_from_the_configuration():
    props = load_properties()
    kcl = daemon.kcl_properties(props, "w-1", kinesis_endpoint="http://127.0.0.1:1234")
    assert kcl["streamName"] == props["Streams"]["deliveries"]
    assert kcl["applicationName"] == props["Delivery"]["kcl_application_name"]
    assert kcl["workerId"] == "w-1"
    assert kcl["retrievalMode"] == "POLLING"
    assert kcl["metricsLevel"] == "NONE"
    assert kcl["failoverTimeMillis"] == props["Delivery"]["kcl_failover_ms"]
    assert kcl["kinesisEndpoint"] == "http://127.0.0.1:1234"
    assert kcl["dynamoDBEndpoint"] == props["Aws"]["endpoint"]
    assert kcl["executableName"].endswith("-m delivery.processor")
    rendered = daemon.render_properties(kcl)
    assert "metricsLevel = NONE\n" in rendered
    assert daemon.needs_bridge(props)


def test_the_daemon_runs_without_cbor_and_with_the_configured_keys():
    props = load_properties()
    env = daemon.daemon_env(props)
    assert env["AWS_CBOR_DISABLE"] == "true"
    assert env["AWS_ACCESS_KEY_ID"] == props["Aws"]["access_key_id"]
    command = daemon.java_command(
        props, daemon.JARS_DIR / "x.properties", daemon.JARS_DIR / "x.xml"
    )
    assert "-Daws.cborEnabled=false" in command
    assert command[command.index("-cp") + 1] == str(daemon.JARS_DIR / "*")
    assert daemon.DAEMON_CLASS in command
    assert not any(option.startswith("-Djava.io.tmpdir") for option in command)
    in_run = daemon.java_command(
        props, daemon.JARS_DIR / "x.properties", daemon.JARS_DIR / "x.xml", Path("/runs/42")
    )
    assert "-Djava.io.tmpdir=/runs/42" in in_run[: in_run.index("-cp")]


def test_on_aws_there_is_no_endpoint_no_bridge_and_no_static_keys():
    props = load_properties()
    aws_props = {**props, "Aws": {"region": "us-east-1", "account_id": "1"}}
    kcl = daemon.kcl_properties(aws_props, "w-1")
    assert "kinesisEndpoint" not in kcl and "dynamoDBEndpoint" not in kcl
    assert not daemon.needs_bridge(aws_props)
