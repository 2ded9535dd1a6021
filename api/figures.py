"""The merchant-facing figures, as plain values: no server, no I/O, tested directly.

A store's hour comes from one of two places: the warehouse's ``hourly_store_metrics`` row
once the hour is published (``source`` ``stream`` or ``batch``), or, for the open hour and
an hour not yet published, the live per-minute hash that hourly_metrics keeps in Redis
(``live:{<store>}:<yyyymmddhh>``, minute ``mm`` -> ``"{orders}/{revenue}"``), which carries
orders and revenue only. Money is integer cents here and a two-decimal string in JSON, as
``numeric(12,2)`` is in the warehouse.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation

from pizzastream.catalog import to_cents
from pizzastream.metrics import average_order_value_cents

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
GRANULARITIES = ("hour", "day")
# The longest range one request may ask for, per granularity: a bound on the work (and the
# warehouse rows) behind a single response.
MAX_RANGE = {"hour": timedelta(days=31), "day": timedelta(days=366)}
WAREHOUSE, LIVE = "warehouse", "live"


class BadRange(ValueError):
    """A ``from``/``to``/``granularity`` the API refuses with 400; the message says why."""


@dataclass(frozen=True)
class Figures:
    """A store's sales over one period (an hour, a day, a ranking range). Counts the
    warehouse does not have for live minutes are None."""

    orders: int = 0
    revenue_cents: int = 0
    items: int | None = 0
    online_orders: int | None = 0
    in_store_orders: int | None = 0
    delivery_orders: int | None = 0

    def __add__(self, other: Figures) -> Figures:
        def add(a: int | None, b: int | None) -> int | None:
            return None if a is None or b is None else a + b

        return Figures(
            self.orders + other.orders,
            self.revenue_cents + other.revenue_cents,
            add(self.items, other.items),
            add(self.online_orders, other.online_orders),
            add(self.in_store_orders, other.in_store_orders),
            add(self.delivery_orders, other.delivery_orders),
        )

    def to_json(self) -> dict:
        aov = average_order_value_cents(self.revenue_cents, self.orders) if self.orders else 0
        return {
            "orders": self.orders,
            "revenue": money(self.revenue_cents),
            "items": self.items,
            "online_orders": self.online_orders,
            "in_store_orders": self.in_store_orders,
            "delivery_orders": self.delivery_orders,
            "avg_order_value": money(aov),
        }


NO_SALES = Figures()


def money(cents: int) -> str:
    """Cents as the two-decimal string of ``numeric(12,2)`` (``1250 -> "12.50"``), in
    integer arithmetic: exact, and cheaper than a ``Decimal`` per figure."""
    sign, cents = ("-", -cents) if cents < 0 else ("", cents)
    return f"{sign}{cents // 100}.{cents % 100:02d}"


def from_warehouse(
    orders: int, items: int, revenue: Decimal, online: int, in_store: int, delivery: int
) -> Figures:
    """A ``hourly_store_metrics`` row's figures."""
    return Figures(orders, to_cents(revenue), items, online, in_store, delivery)


@dataclass(frozen=True)
class LiveHour:
    """The open hour of one store as the live hash has it, minute by minute."""

    minutes: Mapping[int, tuple[int, int]] = field(default_factory=dict)  # mm -> orders, cents

    @property
    def figures(self) -> Figures:
        """Orders and revenue; the other counts are unknown (None) unless nothing sold."""
        if not self.minutes:
            return NO_SALES
        return Figures(
            sum(o for o, _ in self.minutes.values()),
            sum(c for _, c in self.minutes.values()),
            None,
            None,
            None,
            None,
        )


def parse_live_hash(fields: Mapping[str, str]) -> LiveHour:
    """The live hash ``{mm: "orders/revenue"}``; a field that is not a minute with counts
    (never written by the job) is left out rather than failing the whole read."""
    minutes = {}
    for minute, value in fields.items():
        orders, _, revenue = value.partition("/")
        try:
            mm, count, cents = int(minute), int(orders), to_cents(Decimal(revenue))
        except (ValueError, InvalidOperation):
            continue
        if 0 <= mm < 60:
            minutes[mm] = (count, cents)
    return LiveHour(minutes)


def parse_moment(text: str, name: str) -> datetime:
    """A query bound as naive UTC: an ISO date (midnight UTC) or date-time; a time without
    an offset is UTC. Raises ``BadRange`` with the parameter's name."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadRange(f"{name}={text[:40]!r} is not an ISO-8601 date or date-time") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def hour_floor(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def period_start(moment: datetime, granularity: str) -> datetime:
    return moment.replace(hour=0) if granularity == "day" else moment


def hour_range(start: str, end: str, granularity: str) -> tuple[datetime, datetime]:
    """``[from, to)`` as whole hours (or days), checked: ``from`` is rounded down and ``to``
    up to the granularity, ``from < to``, and the range is at most ``MAX_RANGE``."""
    if granularity not in GRANULARITIES:
        raise BadRange(f"granularity={granularity[:20]!r}: expected hour or day")
    first = period_start(hour_floor(parse_moment(start, "from")), granularity)
    last = parse_moment(end, "to")
    step = DAY if granularity == "day" else HOUR
    end_floor = period_start(hour_floor(last), granularity)
    stop = end_floor if end_floor == last else end_floor + step
    if stop <= first:
        raise BadRange("to must be after from")
    if stop - first > MAX_RANGE[granularity]:
        raise BadRange(f"at most {MAX_RANGE[granularity].days} days at granularity {granularity}")
    return first, stop


def hours_between(start: datetime, stop: datetime) -> list[datetime]:
    hours, hour = [], start
    while hour < stop:
        hours.append(hour)
        hour += HOUR
    return hours


@dataclass(frozen=True)
class HourFigures:
    """One hour of one store and where it came from."""

    hour: datetime
    figures: Figures
    source: str  # WAREHOUSE or LIVE


def series(hours: Sequence[HourFigures], granularity: str) -> list[dict]:
    """The response's points: one per hour, or per UTC day summing its hours. A point's
    ``source`` is ``live`` if any of its hours still is."""
    if granularity == "hour":
        return [
            {"period_start": h.hour.isoformat() + "Z", **h.figures.to_json(), "source": h.source}
            for h in hours
        ]
    days: dict[datetime, tuple[Figures, str]] = {}
    for h in hours:
        day = h.hour.replace(hour=0)
        figures, source = days.get(day, (NO_SALES, WAREHOUSE))
        days[day] = (figures + h.figures, LIVE if LIVE in (source, h.source) else WAREHOUSE)
    return [
        {"period_start": day.isoformat() + "Z", **figures.to_json(), "source": source}
        for day, (figures, source) in days.items()
    ]


def totals(hours: Iterable[HourFigures]) -> Figures:
    total = NO_SALES
    for h in hours:
        total = total + h.figures
    return total


def rank(by_store: Mapping[int, Figures], by: str) -> list[dict]:
    """Stores ranked by revenue or orders, highest first; ties share a rank and are listed
    by store id, so the order is stable."""
    if by not in ("revenue", "orders"):
        raise BadRange(f"by={by[:20]!r}: expected revenue or orders")
    key = (lambda f: f.revenue_cents) if by == "revenue" else (lambda f: f.orders)
    ordered = sorted(by_store.items(), key=lambda kv: (-key(kv[1]), kv[0]))
    ranking, previous, position = [], None, 0
    for index, (store_id, figures) in enumerate(ordered, start=1):
        if key(figures) != previous:
            position, previous = index, key(figures)
        ranking.append({"rank": position, "store_id": store_id, **figures.to_json()})
    return ranking
