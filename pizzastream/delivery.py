"""Choosing a delivery partner for an accepted delivery order: the pure rules.

The delivery service (``delivery/``) reads accepted delivery sales from the
``deliveries`` stream; for each it asks these rules which courier companies may take the
order and in which order to offer it, then offers it through the provider API.

Geometry
    ``pickup_km`` is the great-circle (haversine) distance from the partner's base to the
    store, ``drop_km`` from the store to the customer, and the partner's ``distance_km``
    is the whole trip, ``pickup_km + drop_km``. ``eta_min`` is that trip at the partner's
    speed (``speed_kmh``).
Fee
    ``base_fee + fee_per_km × drop_km``, in whole cents (half a cent rounds up): what the
    customer's delivery costs; the courier's ride to the store is the partner's business.
Limits (property group ``Delivery``)
    A partner is never chosen when its ``distance_km`` exceeds ``max_distance_km`` or its
    fee exceeds ``max_fee``, nor while it already carries ``capacity`` deliveries (the
    service counts the partner's deliveries whose event-time window
    ``[order time, order time + eta)`` covers this order's time).
Ranking
    The partners left are ranked by ``fee + eta_min × eta_cost_per_min`` (cost and
    speed in one number: with the default 10 ¢/min a partner 10 minutes faster may
    charge up to one dollar more), then fee, ETA and partner id, so equal inputs always
    give the same order.
Offer
    The order is offered to the best partner; on a refusal or a timeout to the next best,
    and so on. The first partner to accept gets it.
Retries (``dispatch_round``)
    A partner that refused an order is never asked again for it. When a round has asked
    every partner left without an acceptance and one of them timed out, the order waits
    ``retry_backoff_s`` (doubling each round, at most ``retry_backoff_max_s``) and is
    offered again to the partners that did not refuse: one that timed out may answer now.
    It never waits past its deadline, the order's time + ``deadline_minutes`` (the
    promised delivery time): the last round runs at the deadline, and if that fails too
    the order ends **undeliverable** with reason ``no_answer``; when every partner left
    refused, at once, with ``all_refused``. Waiting does not free a fully booked partner
    (capacity is counted at the order's event time), so the limits still deny at once.
    Each offer is a ``Step`` of the order's ``DispatchProgress``, which the service keeps
    between rounds and shows the customer.
Denial
    With no partner left to offer it to, the delivery is denied with one reason:
    ``out_of_range`` (no partner within ``max_distance_km``), ``over_max_fee`` (the
    partners in range all charge more than ``max_fee``), ``no_capacity`` (those within
    both limits are all fully booked), ``all_refused`` (every partner offered refused or
    timed out), and, for records the rules cannot place at all, ``unknown_store`` and
    ``no_location``. When partners fail different limits the reason names the one the
    order came closest to passing (capacity before fee before distance).

What a denial means for the order
    (The same for an order that ends undeliverable, whose status is
    ``undeliverable:<reason>``.) The sale stays recorded as accepted: the stock is already consumed and the order's
    ``order_fct`` rows stay as they are, with ``delivery_id`` NULL. The order status stays
    ``accepted`` (a delivery problem is not an order rejection); the delivery status,
    Redis key ``delivery:{order_id}``, says ``denied:<reason>`` and the denial is a row in
    ``delivery_assignment`` with its reason, so the application offers the customer pickup
    or a refund. Nothing is lost: every delivery order ends either assigned or denied.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pizzastream.reference_data import DeliveryPartner

EARTH_RADIUS_KM = 6371.0088
ASSIGNED = "assigned"
DENIED_PREFIX = "denied:"
UNDELIVERABLE_PREFIX = "undeliverable:"
SEARCHING = "searching"  # offers of a round under way
RETRYING = "retrying"  # waiting for the next round


class DenialReason(StrEnum):
    NO_LOCATION = "no_location"
    UNKNOWN_STORE = "unknown_store"
    OUT_OF_RANGE = "out_of_range"
    OVER_MAX_FEE = "over_max_fee"
    NO_CAPACITY = "no_capacity"
    ALL_REFUSED = "all_refused"
    NO_ANSWER = "no_answer"


# When no partner passes every limit, the denial names the furthest limit any partner
# reached: a partner that was in range and affordable but full beats one out of range.
_LIMIT_ORDER = (DenialReason.OUT_OF_RANGE, DenialReason.OVER_MAX_FEE, DenialReason.NO_CAPACITY)


class OfferOutcome(StrEnum):
    ACCEPTED = "accepted"
    REFUSED = "refused"
    TIMED_OUT = "timed_out"


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in kilometres between two points given in degrees."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi = phi2 - phi1
    dlambda = math.radians(lon2 - lon1)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def money_to_cents(amount: Decimal | int | str | float) -> int:
    """Cents of an amount such as ``"25.00"`` or ``Decimal('1.08')`` (half a cent up)."""
    return int((Decimal(str(amount)) * 100).quantize(Decimal(1), rounding="ROUND_HALF_UP"))


def cents_to_money(cents: int) -> Decimal:
    return Decimal(cents).scaleb(-2)


@dataclass(frozen=True)
class Place:
    lat: float
    lon: float


class ConfigurationError(ValueError):
    """A ``Delivery`` property missing or unreadable: the service must not start."""


def setting(group: Mapping[str, str], key: str, kind: Callable[[str], Any]) -> Any:
    """``Delivery.<key>`` read as ``kind``; a missing or unreadable value raises
    ``ConfigurationError`` naming it, so a worker fails at start, not on its first order."""
    try:
        value = group[key]
    except KeyError:
        raise ConfigurationError(f"Delivery.{key} is missing from the configuration") from None
    if not str(value).strip():
        raise ConfigurationError(f"Delivery.{key} is missing from the configuration")
    try:
        return kind(value)
    except (ValueError, ArithmeticError) as error:
        raise ConfigurationError(f"Delivery.{key} = {value!r}: {error}") from None


@dataclass(frozen=True)
class DeliveryRules:
    """The limits, weights and retry schedule of the ``Delivery`` property group."""

    max_fee_cents: int
    max_distance_km: float
    eta_cost_cents_per_min: float = 10.0
    retry_backoff_s: float = 30.0
    retry_backoff_max_s: float = 300.0
    deadline_minutes: float = 45.0

    def __post_init__(self) -> None:
        if not (0 < self.retry_backoff_s <= self.retry_backoff_max_s and self.deadline_minutes > 0):
            raise ConfigurationError(
                "Delivery: retry_backoff_s must be positive and at most retry_backoff_max_s, "
                "deadline_minutes positive"
            )

    @classmethod
    def from_properties(cls, group: Mapping[str, str]) -> DeliveryRules:
        return cls(
            max_fee_cents=setting(group, "max_fee", money_to_cents),
            max_distance_km=setting(group, "max_distance_km", float),
            eta_cost_cents_per_min=setting(group, "eta_cost_cents_per_min", float),
            retry_backoff_s=setting(group, "retry_backoff_s", float),
            retry_backoff_max_s=setting(group, "retry_backoff_max_s", float),
            deadline_minutes=setting(group, "deadline_minutes", float),
        )

    def backoff_ms(self, rounds: int) -> int:
        """The wait after the ``rounds``-th round failed."""
        return int(
            1000 * min(self.retry_backoff_max_s, self.retry_backoff_s * 2 ** max(0, rounds - 1))
        )

    def deadline_ms(self, order_ts_ms: int) -> int:
        return order_ts_ms + int(self.deadline_minutes * 60_000)


@dataclass(frozen=True)
class Partner:
    """A courier company; fields as the ``delivery_partner`` table, money in cents."""

    partner_id: int
    name: str
    lat: float
    lon: float
    base_fee_cents: int
    fee_per_km_cents: int
    capacity: int
    refusal_rate: float
    speed_kmh: float

    @classmethod
    def from_row(cls, row: Mapping[str, Any] | Sequence[Any] | DeliveryPartner) -> Partner:
        """From a ``delivery_partner`` row (mapping or tuple in column order) or a
        ``reference_data.DeliveryPartner``."""
        if not isinstance(row, (Mapping, Sequence)):
            row = vars(row)
        if isinstance(row, Mapping):
            values = [
                row[name]
                for name in (
                    "partner_id",
                    "name",
                    "lat",
                    "lon",
                    "base_fee",
                    "fee_per_km",
                    "capacity",
                    "refusal_rate",
                    "speed_kmh",
                )
            ]
        else:
            values = list(row)
        pid, name, lat, lon, base_fee, per_km, capacity, refusal, speed = values
        return cls(
            int(pid),
            str(name),
            float(lat),
            float(lon),
            money_to_cents(base_fee),
            money_to_cents(per_km),
            int(capacity),
            float(refusal),
            float(speed),
        )


@dataclass(frozen=True)
class Quote:
    """What one partner would charge for, and take to deliver, one order."""

    partner: Partner
    pickup_km: float
    drop_km: float
    fee_cents: int
    distance_km: float = field(init=False)
    eta_min: float = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "distance_km", self.pickup_km + self.drop_km)
        object.__setattr__(self, "eta_min", self.distance_km / self.partner.speed_kmh * 60.0)

    def score(self, rules: DeliveryRules) -> float:
        return self.fee_cents + self.eta_min * rules.eta_cost_cents_per_min

    def busy_until_ms(self, order_ts_ms: int) -> int:
        """Event time at which the partner has delivered this order and is free again."""
        return order_ts_ms + math.ceil(self.eta_min * 60_000)


def quote(partner: Partner, store: Place, customer: Place) -> Quote:
    pickup_km = haversine_km(partner.lat, partner.lon, store.lat, store.lon)
    drop_km = haversine_km(store.lat, store.lon, customer.lat, customer.lon)
    fee_cents = partner.base_fee_cents + math.floor(partner.fee_per_km_cents * drop_km + 0.5)
    return Quote(partner, pickup_km, drop_km, fee_cents)


@dataclass(frozen=True)
class Denial:
    reason: DenialReason
    detail: str

    @property
    def status(self) -> str:
        return f"{DENIED_PREFIX}{self.reason.value}"


@dataclass(frozen=True)
class Ranking:
    """Partners to offer the order to, best first; when empty, why (``denial``)."""

    candidates: tuple[Quote, ...]
    denial: Denial | None = None
    excluded: Mapping[int, DenialReason] = field(default_factory=dict)


def rank(
    partners: Iterable[Partner],
    store: Place,
    customer: Place,
    rules: DeliveryRules,
    load: Mapping[int, int] | None = None,
) -> Ranking:
    """Every partner within the limits and with room, best first.

    ``load`` is how many deliveries each partner carries at the order's time (missing
    partners carry none)."""
    load = load or {}
    candidates: list[Quote] = []
    excluded: dict[int, DenialReason] = {}
    for partner in partners:
        q = quote(partner, store, customer)
        if q.distance_km > rules.max_distance_km:
            excluded[partner.partner_id] = DenialReason.OUT_OF_RANGE
        elif q.fee_cents > rules.max_fee_cents:
            excluded[partner.partner_id] = DenialReason.OVER_MAX_FEE
        elif load.get(partner.partner_id, 0) >= partner.capacity:
            excluded[partner.partner_id] = DenialReason.NO_CAPACITY
        else:
            candidates.append(q)
    candidates.sort(key=lambda q: (q.score(rules), q.fee_cents, q.eta_min, q.partner.partner_id))
    if candidates:
        return Ranking(tuple(candidates), None, excluded)
    return Ranking((), _limit_denial(excluded, rules), excluded)


def _limit_denial(excluded: Mapping[int, DenialReason], rules: DeliveryRules) -> Denial:
    reasons = set(excluded.values())
    reason = max(reasons, key=_LIMIT_ORDER.index) if reasons else DenialReason.OUT_OF_RANGE
    details = {
        DenialReason.OUT_OF_RANGE: f"no partner within {rules.max_distance_km:g} km",
        DenialReason.OVER_MAX_FEE: (
            f"every partner in range charges more than {cents_to_money(rules.max_fee_cents)}"
        ),
        DenialReason.NO_CAPACITY: "every partner within the limits is fully booked",
    }
    counted = ", ".join(
        f"{sum(1 for r in excluded.values() if r == key)} {key.value}"
        for key in _LIMIT_ORDER
        if key in reasons
    )
    return Denial(reason, f"{details[reason]} ({counted or 'no partners'})")


@dataclass(frozen=True)
class OfferResult:
    outcome: OfferOutcome
    delivery_id: str | None = None

    @classmethod
    def accepted(cls, delivery_id: str) -> OfferResult:
        return cls(OfferOutcome.ACCEPTED, delivery_id)


REFUSED = OfferResult(OfferOutcome.REFUSED)
TIMED_OUT = OfferResult(OfferOutcome.TIMED_OUT)


@dataclass(frozen=True)
class Assignment:
    quote: Quote
    delivery_id: str
    attempts: tuple[tuple[int, OfferOutcome], ...]
    progress: DispatchProgress | None = None  # every step, when rounds were counted

    status = ASSIGNED


def choose(ranking: Ranking, offer: Callable[[Quote], OfferResult]) -> Assignment | Denial:
    """Offers the order down the ranking until a partner accepts.

    ``offer`` asks one partner and says how it answered; anything it raises (say, the
    provider API being down) propagates, so the caller can retry the whole decision
    rather than deny a delivery for a fault of its own."""
    if ranking.denial is not None:
        return ranking.denial
    attempts: list[tuple[int, OfferOutcome]] = []
    for candidate in ranking.candidates:
        result = offer(candidate)
        attempts.append((candidate.partner.partner_id, result.outcome))
        if result.outcome is OfferOutcome.ACCEPTED:
            if not result.delivery_id:
                raise ValueError(f"partner {candidate.partner.partner_id} accepted without an id")
            return Assignment(candidate, result.delivery_id, tuple(attempts))
    return Denial(
        DenialReason.ALL_REFUSED, f"every partner offered said no ({describe_attempts(attempts)})"
    )


def describe_attempts(attempts: Iterable[tuple[int, OfferOutcome]]) -> str:
    """``"partner 4 refused, partner 6 accepted"``."""
    return ", ".join(f"partner {pid} {outcome.value}" for pid, outcome in attempts)


def decide(
    partners: Iterable[Partner],
    store: Place | None,
    customer: Place | None,
    rules: DeliveryRules,
    load: Mapping[int, int] | None,
    offer: Callable[[Quote], OfferResult],
) -> Assignment | Denial:
    """The whole decision for one order: place checks, ranking, offers."""
    if customer is None:
        return Denial(DenialReason.NO_LOCATION, "the order carries no customer location")
    if store is None:
        return Denial(DenialReason.UNKNOWN_STORE, "the store has no known location")
    return choose(rank(partners, store, customer, rules, load), offer)


# --------------------------------------------------------------------------- rounds


@dataclass(frozen=True)
class Step:
    """One offer of an order: to whom, in which round, how it went, when (epoch ms)."""

    partner_id: int
    round: int
    outcome: OfferOutcome
    at_ms: int


@dataclass(frozen=True)
class DispatchProgress:
    """What an order has been through so far: the service keeps it between rounds."""

    rounds: int = 0
    steps: tuple[Step, ...] = ()

    @property
    def refused(self) -> frozenset[int]:
        """Partners that refused: never asked again for this order."""
        return frozenset(s.partner_id for s in self.steps if s.outcome is OfferOutcome.REFUSED)

    def to_json(self) -> list[list[Any]]:
        return [[s.partner_id, s.round, s.outcome.value, s.at_ms] for s in self.steps]

    @classmethod
    def from_json(cls, steps: list[Any]) -> DispatchProgress:
        parsed = tuple(Step(int(p), int(r), OfferOutcome(o), int(at)) for p, r, o, at in steps)
        return cls(max((s.round for s in parsed), default=0), parsed)

    def describe(self) -> str:
        return describe_attempts((s.partner_id, s.outcome) for s in self.steps) or "no offers"


@dataclass(frozen=True)
class Retry:
    """Nobody took the order this round; offer it again at ``at_ms``."""

    at_ms: int
    reason: DenialReason
    detail: str
    progress: DispatchProgress
    status = RETRYING


@dataclass(frozen=True)
class Undeliverable:
    """No partner took the order by its deadline, or every one that could refused."""

    reason: DenialReason
    detail: str
    progress: DispatchProgress

    @property
    def status(self) -> str:
        return f"{UNDELIVERABLE_PREFIX}{self.reason.value}"


def dispatch_round(
    partners: Iterable[Partner],
    store: Place | None,
    customer: Place | None,
    rules: DeliveryRules,
    load: Mapping[int, int] | None,
    offer: Callable[[Quote], OfferResult],
    progress: DispatchProgress,
    order_ts_ms: int,
    now_ms: int,
    on_step: Callable[[DispatchProgress], None] | None = None,
) -> Assignment | Denial | Retry | Undeliverable:
    """One round of offers for an order at ``now_ms``, after ``progress``.

    ``Denial`` when no partner could ever take it (no location, unknown store, every
    partner out of range or over the fee limit): waiting changes none of that.
    ``Assignment`` when a partner accepts; otherwise ``Retry`` at the next back-off
    (never later than the deadline) or ``Undeliverable``. ``on_step`` sees the progress
    after each offer (the customer's status shows each step). What ``offer`` raises
    propagates, as in ``choose``: an outage is retried by the caller, not counted as a
    partner's answer."""
    if customer is None:
        return Denial(DenialReason.NO_LOCATION, "the order carries no customer location")
    if store is None:
        return Denial(DenialReason.UNKNOWN_STORE, "the store has no known location")
    ranking = rank(partners, store, customer, rules, load)
    if ranking.denial is not None:
        return ranking.denial
    refused = progress.refused
    candidates = [q for q in ranking.candidates if q.partner.partner_id not in refused]
    round_no = progress.rounds + 1
    steps = list(progress.steps)
    outcomes = []
    for candidate in candidates:
        result = offer(candidate)
        steps.append(Step(candidate.partner.partner_id, round_no, result.outcome, now_ms))
        outcomes.append(result.outcome)
        if result.outcome is OfferOutcome.ACCEPTED:
            if not result.delivery_id:
                raise ValueError(f"partner {candidate.partner.partner_id} accepted without an id")
            return Assignment(
                candidate,
                result.delivery_id,
                tuple((s.partner_id, s.outcome) for s in steps),
                DispatchProgress(round_no, tuple(steps)),
            )
        if on_step is not None:
            on_step(DispatchProgress(round_no, tuple(steps)))
    progress = DispatchProgress(round_no, tuple(steps))
    if OfferOutcome.TIMED_OUT in outcomes:
        reason, why = DenialReason.NO_ANSWER, "partners did not answer in time"
    else:
        reason, why = DenialReason.ALL_REFUSED, "every partner offered said no"
    detail = f"{why} (round {round_no}: {progress.describe()})"
    deadline = rules.deadline_ms(order_ts_ms)
    if reason is DenialReason.ALL_REFUSED:
        return Undeliverable(reason, detail, progress)
    if now_ms >= deadline:
        return Undeliverable(reason, f"{detail}; deadline passed", progress)
    return Retry(min(now_ms + rules.backoff_ms(round_no), deadline), reason, detail, progress)
