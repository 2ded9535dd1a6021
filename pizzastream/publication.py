"""When the stream publishes an hour of store metrics, and what it says about its
completeness and corrections: the rules ``jobs.hourly_metrics``' publisher applies and the
freshness report reads back.

- An hour is published when the job's watermark passes its end. The watermark waits for
  every POS store system's batches up to the end (``pizzastream.pos_batches.delivered_up_to``,
  sent on ``sales`` as progress markers), at most ``pos_wait`` (``HourlySettings``), so an
  hour is complete when published unless a POS stayed silent that long.
- A store whose POS had not delivered up to the hour's end when the hour was published has
  its row published as ``partial``: the flag readers see in the warehouse's ``source``.
- A sale arriving after that (within ``lateness``) updates its store's row; the changed rows
  are published again as ``late`` (the lake's hour rewritten whole, the warehouse's rows
  merged, ``metrics_publication`` logging the load and how much it changed).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pizzastream.catalog import from_cents
from pizzastream.metrics import HOUR, MetricRow, Publication, shortest_dedup_ttl, stream_closes_at

STREAM, PARTIAL, LATE = "stream", "partial", "late"
GROUP = "HourlyMetrics"
_EPOCH = datetime(1970, 1, 1)
MINUTE = timedelta(minutes=1)


@dataclass(frozen=True)
class HourlySettings:
    """The ``HourlyMetrics`` timing keys, read once at start."""

    out_of_orderness: timedelta
    idle: timedelta
    pos_wait: timedelta
    lateness: timedelta
    late_refresh: timedelta
    dedup_ttl: timedelta

    @classmethod
    def from_props(cls, props: Mapping[str, Mapping[str, str]]) -> HourlySettings:
        """Refuses a missing key by name, and a deduplication too short for the hours it
        must cover (``shortest_dedup_ttl``)."""
        group = props.get(GROUP, {})

        def read(key: str) -> float:
            if key not in group:
                raise ValueError(f"{GROUP}.{key} is missing")
            return float(group[key])

        settings = cls(timedelta(minutes=read("out_of_orderness_minutes")),
                       timedelta(seconds=read("idle_seconds")),
                       timedelta(minutes=read("pos_wait_minutes")),
                       timedelta(minutes=read("allowed_lateness_minutes")),
                       timedelta(seconds=read("late_refresh_seconds")),
                       timedelta(minutes=read("dedup_ttl_minutes")))
        shortest = shortest_dedup_ttl(settings.out_of_orderness, settings.idle,
                                      settings.pos_wait, settings.lateness)
        if settings.dedup_ttl < shortest:
            raise ValueError(f"{GROUP}.dedup_ttl_minutes must be at least "
                             f"{shortest / timedelta(minutes=1):g}: an hour can change that long")
        return settings

    def closes_at(self, hour: datetime) -> datetime:
        """When the stream has first published ``hour`` at the latest (``stream_closes_at``)."""
        return stream_closes_at(hour, self.out_of_orderness, self.idle, self.pos_wait)

    @property
    def bound(self) -> timedelta:
        """How long after its end an hour may take to be published: what the alarm holds
        first publications to."""
        return self.closes_at(_EPOCH) - (_EPOCH + HOUR)

    @property
    def changes_for(self) -> timedelta:
        """How long after its end the stream may still change an hour; its later sales are
        the hourly ETL's to count."""
        return self.bound + self.lateness


def row_from_wire(values: Sequence[Any]) -> MetricRow:
    """A metric row whose window bounds come as minutes since the epoch and amounts as
    integer cents (as the job's publisher gets them)."""
    (store, start, end, orders, items, revenue, online, in_store, delivery, average) = values
    return MetricRow(store, _EPOCH + start * MINUTE, _EPOCH + end * MINUTE, orders, items,
                     from_cents(revenue), online, in_store, delivery, from_cents(average))


def first_publication(rows: Iterable[MetricRow], delivered: Set[int]
                      ) -> list[tuple[MetricRow, str]]:
    """An hour's rows with their ``source``: ``stream`` for a store whose POS had said it
    delivered the whole hour when it was published (``delivered``), ``partial`` otherwise."""
    return [(row, STREAM if row.store_id in delivered else PARTIAL) for row in rows]


def corrections(published: Mapping[int, MetricRow], current: Iterable[MetricRow]
                ) -> list[tuple[MetricRow, str]]:
    """The rows of a published hour that late sales changed (or created), as ``late``."""
    return [(row, LATE) for row in current if published.get(row.store_id) != row]


# --- freshness: what metrics_publication says ----------------------------------------------

@dataclass(frozen=True)
class FreshnessReport:
    hours: list[Publication]
    bound: timedelta
    now: datetime
    unpublished: list[datetime] = field(default_factory=list)

    @property
    def late(self) -> list[datetime]:
        """The alarm: hours first published later than ``bound`` after their end, and hours
        still unpublished that long after it."""
        return sorted([h.window_start for h in self.hours if h.delay > self.bound]
                      + [hour for hour in self.unpublished if hour + HOUR + self.bound < self.now])


def freshness(publications: Iterable[Publication], expected: Iterable[datetime],
              bound: timedelta, now: datetime) -> FreshnessReport:
    """The report over ``publications`` (``connectors.warehouse.publications``); hours of
    ``expected`` (that had sales) never published are listed as unpublished."""
    hours = list(publications)
    seen = {h.window_start for h in hours}
    return FreshnessReport(hours, bound, now, sorted(set(expected) - seen))
