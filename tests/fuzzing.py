"""The budget of the fuzz tests that go through real servers, from the hypothesis profile
in force (``tests/conftest.py``: ``ci`` by default, ``HYPOTHESIS_PROFILE=bench`` for ten
times more): each of their examples costs a round trip through S3 and PostgreSQL, so they
take a fixed share of the profile's ``max_examples``."""
from __future__ import annotations

from hypothesis import HealthCheck, settings


def server_fuzz_settings(share: float = 0.2) -> settings:
    """Settings of a fuzz test through the local stack: ``share`` of the profile's budget,
    no per-example deadline (a server round trip varies with the machine's load)."""
    return settings(max_examples=max(10, int(settings.default.max_examples * share)),
                    deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
