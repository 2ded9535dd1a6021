"""Session fixtures: one configuration, one local stack, jobs on the Flink mini-cluster.

`make test` starts the stack before pytest; the fixtures make sure it is up (no test skips
for a missing server) and give each end-to-end test clean streams and tables.
"""
from __future__ import annotations

import pytest

from pizzastream.config import load_properties


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


WAREHOUSE_ENGINES = ("postgresql", "redshift")


@pytest.fixture(params=WAREHOUSE_ENGINES)
def engine_stack(clean_stack, request):
    """``clean_stack`` with ``Warehouse.engine`` set to each warehouse back end in turn, so
    both pass the same tests. Locally ``redshift`` runs its statements on the PostgreSQL
    stand-in (``Warehouse.stand_in``), its COPY reading the files it staged in moto's S3."""
    return {**clean_stack, "Warehouse": {**clean_stack["Warehouse"], "engine": request.param}}
