"""Session fixtures: one configuration, one local stack, jobs on the Flink mini-cluster.

`make test` starts the stack before pytest; the fixtures make sure it is up (no test skips
for a missing server) and give each end-to-end test clean streams and tables.
"""
from __future__ import annotations

import os

import pytest
from hypothesis import settings

from pizzastream.config import load_properties

# Property and fuzz tests: in CI the same examples every run (``ci``, the default: a failure
# is reproducible and a green run is not luck); ``HYPOTHESIS_PROFILE=bench`` draws new
# examples with ten times the budget (fuzz tests scale their own budget from it, see
# ``tests/fuzzing.py``).
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("bench", max_examples=1000, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def props():
    return load_properties()


@pytest.fixture(scope="session")
def local_stack(props):
    import stack

    stack.up(props)
    return props


@pytest.fixture
def clean_stack(local_stack):
    """Empty streams and fact tables, initial inventory, empty Redis."""
    import stack

    stack.reset_data(local_stack)
    return local_stack
