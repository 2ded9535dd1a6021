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
# The longest a published hour's warehouse load waits for the checkpoint that commits it:
# MSF checkpoints every 60 s (deploy/msf/*.json), the local stack every 5 s, plus the time
# the checkpoint takes.
COMMIT_MARGIN = timedelta(minutes=2)
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

        settings = cls(
            timedelta(minutes=read("out_of_orderness_minutes")),
            timedelta(seconds=read("idle_seconds")),
            timedelta(minutes=read("pos_wait_minutes")),
            timedelta(minutes=read("allowed_lateness_minutes")),
            timedelta(seconds=read("late_refresh_seconds")),
            timedelta(minutes=read("dedup_ttl_minutes")),
        )
        shortest = shortest_dedup_ttl(
            settings.out_of_orderness, settings.idle, settings.pos_wait, settings.lateness
        )
        if settings.dedup_ttl < shortest:
            raise ValueError(
                f"{GROUP}.dedup_ttl_minutes must be at least "
                f"{shortest / timedelta(minutes=1):g}: an hour can change that long"
            )
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
    def alarm_bound(self) -> timedelta:
        """What the late-hour alarm holds first publications to: ``bound`` plus what comes
        after the watermark passes it, the publisher's collection of the hour's rows
        (``late_refresh``) and the warehouse load's commit at the next checkpoint (at most
        ``COMMIT_MARGIN``), so that an hour held the whole ``pos_wait`` by a silent POS and
        published then is partial, not late."""
        return self.bound + self.late_refresh + COMMIT_MARGIN

    @property
    def changes_for(self) -> timedelta:
        """How long after its end the stream may still change an hour; its later sales are
        the hourly ETL's to count."""
        return self.bound + self.lateness


def row_from_wire(values: Sequence[Any]) -> MetricRow:
    """A metric row whose window bounds come as minutes since the epoch and amounts as
    integer cents (as the job's publisher gets them)."""
    (store, start, end, orders, items, revenue, online, in_store, delivery, average) = values
    return MetricRow(
        store,
        _EPOCH + start * MINUTE,
        _EPOCH + end * MINUTE,
        orders,
        items,
        from_cents(revenue),
        online,
        in_store,
        delivery,
        from_cents(average),
    )


def first_publication(
    rows: Iterable[MetricRow], delivered: Set[int]
) -> list[tuple[MetricRow, str]]:
    """An hour's rows with their ``source``: ``stream`` for a store whose POS had said it
    delivered the whole hour when it was published (``delivered``), ``partial`` otherwise."""
    return [(row, STREAM if row.store_id in delivered else PARTIAL) for row in rows]


def corrections(
    published: Mapping[int, MetricRow], current: Iterable[MetricRow]
) -> list[tuple[MetricRow, str]]:
    """The rows of a published hour that late sales changed (or created), as ``late``."""
    return [(row, LATE) for row in current if published.get(row.store_id) != row]


# --- freshness: what metrics_publication says ----------------------------------------------

# The alarm's metrics (``etl.freshness`` puts them to CloudWatch after every hourly ETL run):
# hours first published later than the bound, and hours with sales still unpublished that
# long after their end.
LATE_HOURS, UNPUBLISHED_HOURS = "LateHours", "UnpublishedHours"
# The hours a measurement judges: those that started in the last three hours before it.
LOOKBACK = 3 * HOUR


def judged_from(now: datetime) -> datetime:
    """The first hour (window start) a measurement at ``now`` judges (``LOOKBACK``)."""
    return now.replace(minute=0, second=0, microsecond=0) - LOOKBACK


@dataclass(frozen=True)
class FreshnessReport:
    hours: list[Publication]
    bound: timedelta
    now: datetime
    unpublished: list[datetime] = field(default_factory=list)
    # Hours that ended before this moment (the demo's start) were replayed after the fact:
    # late by construction, so the alarm does not judge them (``replayed``).
    replayed_before: datetime | None = None

    def replayed(self, hour: datetime) -> bool:
        """Whether ``hour`` (window start) had ended by ``replayed_before``."""
        return self.replayed_before is not None and hour + HOUR <= self.replayed_before

    @property
    def late_published(self) -> list[datetime]:
        """Hours first published later than ``bound`` after their end."""
        return [
            h.window_start
            for h in self.hours
            if h.delay > self.bound and not self.replayed(h.window_start)
        ]

    @property
    def overdue(self) -> list[datetime]:
        """Hours with sales still unpublished ``bound`` after their end."""
        return [
            hour
            for hour in self.unpublished
            if hour + HOUR + self.bound < self.now and not self.replayed(hour)
        ]

    @property
    def late(self) -> list[datetime]:
        """The alarm: hours first published later than ``bound`` after their end, and hours
        still unpublished that long after it (replayed hours left out)."""
        return sorted(self.late_published + self.overdue)

    def metrics(self) -> dict[str, int]:
        """The alarm's metrics: ``{LATE_HOURS: n, UNPUBLISHED_HOURS: m}``."""
        return {LATE_HOURS: len(self.late_published), UNPUBLISHED_HOURS: len(self.overdue)}


def freshness(
    publications: Iterable[Publication],
    expected: Iterable[datetime],
    bound: timedelta,
    now: datetime,
    replayed_before: datetime | None = None,
) -> FreshnessReport:
    """The report over ``publications`` (``connectors.warehouse.publications``); hours of
    ``expected`` (that had sales) never published are listed as unpublished. All times
    naive UTC."""
    hours = list(publications)
    seen = {h.window_start for h in hours}
    return FreshnessReport(hours, bound, now, sorted(set(expected) - seen), replayed_before)
