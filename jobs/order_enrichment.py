"""order_enrichment: raw orders in, validated orders priced from the catalog out.

orders (Kinesis, raw bytes) -> batches (JVM) -> validate + enrich a batch (one Python call
per batch: pizzastream.order_batches.enrich_batch) -> one result per batch, fanned out in
the JVM to:
  orders-enriched (Kinesis, keyed by store)
  order-status (Kinesis) and Redis: the final status of each rejected order it can name
    (in Redis only if the order has no other final status yet: pizzastream.order_status)
  dead_letter (Aurora): every unusable record with its reason, and every refused status
    write (status_conflict)

Run locally with ``python jobs/order_enrichment.py``; the same file is the ``python`` run
option of the Managed Service for Apache Flink application.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyflink.common import Row
from pyflink.datastream import (
    DataStream,
    OutputTag,
    ProcessFunction,
    StreamExecutionEnvironment,
)

from connectors import aurora, kinesis, redis_store
from jobs import operators, runtime
from pizzastream.catalog import Catalog
from pizzastream.config import Props
from pizzastream.order_batches import (
    ENRICHED,
    ENRICHMENT_JOB,
    ENRICHMENT_ROUTES,
    STATUS,
    STATUS_CACHE,
    Enrichment,
    enrich_batch,
)
from pizzastream.orders import OrderRules
from pizzastream.settings import OrderPathSettings, OrderRulesSettings

JOB_NAME = ENRICHMENT_JOB
DEAD_LETTERS = OutputTag("dead-letters", aurora.DEAD_LETTER_ROW)


class EnrichOrderBatches(ProcessFunction):
    """Adapts ``pizzastream.order_batches.enrich_batch`` to the stream: a batch of raw
    records in, its result lines out as one record; dead letters (rare) leave through a
    side output of their own. The catalog reloads while running."""

    def __init__(self, props: Props):
        self._props = props
        # Read here, where the job is built: a bad key stops it before it runs. Only plain
        # values are kept for the workers: the rules' own objects are built in ``open``,
        # from the classes the workers import (compiled: deploy.compiled_core).
        self._catalog_refresh_s = OrderRulesSettings.from_group(
            props["OrderRules"]
        ).catalog_refresh_seconds
        self._catalog = None

    def open(self, runtime_context):
        self._rules: OrderRules = OrderRulesSettings.from_group(self._props["OrderRules"]).rules
        period = self._catalog_refresh_s
        self._redis = redis_store.client(self._props)
        self._catalog = aurora.Refreshing(self._load_catalog, period)

    def _load_catalog(self) -> Catalog:
        """The catalog as Aurora has it now, also published to Redis for the app's reads."""
        catalog = Catalog.from_rows(*aurora.catalog_rows(self._props))
        redis_store.publish_catalog(self._redis, catalog)
        return catalog

    def process_element(self, batch, ctx):
        result, letters = enrich_batch(
            bytes(batch), self._catalog.get(), self._rules, time.time_ns() // 1_000_000
        )
        for letter in letters:
            yield DEAD_LETTERS, Row(*letter.as_tuple())
        if result:
            yield result.encode()


def enrich_orders(raw_orders: DataStream, props: Props) -> Enrichment[DataStream]:
    """The job's logic without its edges: raw order bytes in, its outputs out.
    Benchmarks feed it directly."""
    path = OrderPathSettings.from_group(props.get("OrderPath", {}))
    operators.hand_records_on_by_reference(raw_orders)
    batches = operators.order_batches(raw_orders, path.batch_max_records, path.batch_max_delay_ms)
    results = (
        batches.process(EnrichOrderBatches(props), output_type=operators.BATCH)
        .name("enrich-orders")
        .uid("enrich-orders")
    )
    outputs = operators.batch_outputs(results, ENRICHED, STATUS + STATUS_CACHE, ENRICHMENT_ROUTES)
    return Enrichment(
        outputs,
        operators.batch_output(outputs, STATUS),
        operators.redis_set_commands(
            operators.batch_output(outputs, STATUS_CACHE), redis_store.order_status_key("")
        ),
        operators.side_output(results, DEAD_LETTERS),
    )


def build(env: StreamExecutionEnvironment, props: Props) -> None:
    """Adds the job's dataflow, with its sources and sinks, to ``env``."""
    outputs = enrich_orders(kinesis.raw_record_source(env, props, "orders"), props)
    kinesis.sink_to_stream(outputs.enriched, props, "orders_enriched")
    kinesis.sink_to_stream(outputs.statuses, props, "order_status")
    # Statuses only move forward (pizzastream.order_status): a refused write is a dead letter.
    conflicts = redis_store.order_status_gate(outputs.status_commands, props, JOB_NAME)
    outputs.dead_letters.union(conflicts).sink_to(aurora.dead_letter_sink(props)).name(
        "aurora:dead_letter"
    ).uid("sink-aurora-dead-letter")


if __name__ == "__main__":
    runtime.run_job(build, JOB_NAME)
