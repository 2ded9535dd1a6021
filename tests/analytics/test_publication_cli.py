"""``python -m analytics publication`` without a server (the warehouse's publications
stood in for): hours are held to the publisher's own bound, ``HourlySettings.bound``, the
one publication setting, and a missing timing key stops it by name."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

import analytics.__main__ as analytics_cli
from pizzastream.config import load_properties
from pizzastream.metrics import HOUR, Publication
from pizzastream.publication import HourlySettings

H = datetime(2026, 11, 24, 10)


def test_publication_counts_the_hours_within_the_publishers_bound(monkeypatch, capsys):
    bound = HourlySettings.from_props(load_properties()).bound
    late = bound + timedelta(seconds=1)
    published = [
        Publication(H, H + HOUR, H + HOUR + bound, 0),
        Publication(H + HOUR, H + 2 * HOUR, H + 2 * HOUR + late, 1),
    ]
    monkeypatch.setattr(
        analytics_cli.warehouse, "publications", lambda props, start, end: published
    )

    assert analytics_cli.main(["publication", "--from", "2026-11-24", "--to", "2026-11-24"]) == 0

    summary = capsys.readouterr().out.splitlines()[-1]
    assert summary == (
        f"2 hours: delay p50 {bound}, p95 {late}, max {late}; 1 within the "
        f"{bound} bound (HourlySettings.bound)"
    )


def test_publication_stops_naming_a_missing_timing_key(monkeypatch):
    props = load_properties()
    del props["HourlyMetrics"]["pos_wait_minutes"]
    monkeypatch.setattr(analytics_cli, "load_properties", lambda: props)
    monkeypatch.setattr(analytics_cli.warehouse, "publications", lambda props, start, end: [])
    with pytest.raises(ValueError, match=r"HourlyMetrics\.pos_wait_minutes is missing"):
        analytics_cli.main(["publication", "--from", "2026-11-24", "--to", "2026-11-24"])
