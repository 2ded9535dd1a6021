"""order_enrichment: raw orders in, validated orders priced from the catalog out.

orders (Kinesis, raw bytes) -> validate + enrich (one Python call per record) ->
  orders-enriched (Kinesis, keyed by store)
  dead_letter (Aurora): every unusable record with its reason
  order-status (Kinesis) and Redis: the final status of each rejected order it can name

Run locally with ``python jobs/order_enrichment.py``; the same file is the ``python`` run
option of the Managed Service for Apache Flink application.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyflink.common import Row  # noqa: E402
from pyflink.datastream import (  # noqa: E402
    DataStream, OutputTag, ProcessFunction, StreamExecutionEnvironment,
)

from connectors import aurora, kinesis, redis_store  # noqa: E402
from jobs import runtime  # noqa: E402
from pizzastream.catalog import Catalog  # noqa: E402
from pizzastream.dead_letters import dead_letter  # noqa: E402
from pizzastream.orders import OrderRules, Rejection, enrich  # noqa: E402
from pizzastream.sales import rejection_status_json  # noqa: E402

JOB_NAME = "order_enrichment"
DEAD_LETTERS = OutputTag("dead-letters", aurora.DEAD_LETTER_ROW)
STATUSES = OutputTag("order-status", kinesis.KEYED_RECORD)
STATUS_CACHE = OutputTag("order-status-cache", redis_store.REDIS_COMMAND)


class EnrichOrders(ProcessFunction):
    """Adapts ``pizzastream.orders.enrich`` to the stream: valid orders go on, the rest
    leave through the dead-letter side output. The catalog reloads while running."""

    def __init__(self, props: dict[str, dict[str, str]]):
        self._props = props
        self._rules = OrderRules.from_properties(props["OrderRules"])
        self._catalog = None

    def open(self, runtime_context):
        period = float(self._props["OrderRules"].get("catalog_refresh_seconds", "30"))
        self._redis = redis_store.client(self._props)
        self._catalog = aurora.Refreshing(self._load_catalog, period)

    def _load_catalog(self) -> Catalog:
        """The catalog as Aurora has it now, also published to Redis for the app's reads."""
        catalog = Catalog.from_rows(*aurora.catalog_rows(self._props))
        redis_store.publish_catalog(self._redis, catalog)
        return catalog

    def process_element(self, raw, ctx):
        raw = bytes(raw)
        now_ms = time.time_ns() // 1_000_000
        result = enrich(raw, self._catalog.get(), self._rules, now_ms)
        if not isinstance(result, Rejection):
            yield Row(str(result.store_id), result.to_json())
            return
        letter = dead_letter(JOB_NAME, raw, result.reason, result.detail,
                             result.event_id, result.order_id)
        yield DEAD_LETTERS, Row(*letter.as_tuple())
        status = rejection_status_json(result, now_ms)
        if status is not None:
            # Keyed by store like every stream; by order when the store was unreadable.
            key = result.order_id if result.store_id is None else str(result.store_id)
            yield STATUSES, Row(key, status)
            yield STATUS_CACHE, Row(
                "SET", redis_store.order_status_key(result.order_id), "", result.status()
            )


def enrich_orders(raw_orders: DataStream, props: dict[str, dict[str, str]]) -> DataStream:
    """The job's logic without its edges: raw order bytes in, enriched orders out (side
    outputs ``DEAD_LETTERS``, ``STATUSES``, ``STATUS_CACHE``). Benchmarks feed it directly."""
    return (
        raw_orders.process(EnrichOrders(props), output_type=kinesis.KEYED_RECORD)
        .name("enrich-orders")
        .uid("enrich-orders")
    )


def build(env: StreamExecutionEnvironment, props: dict[str, dict[str, str]]) -> None:
    """Adds the job's dataflow, with its sources and sinks, to ``env``."""
    t_env = runtime.table_environment(env)
    enriched = enrich_orders(kinesis.raw_record_source(env, props, "orders"), props)
    kinesis.sink_to_stream(enriched, props, "orders_enriched")
    kinesis.sink_to_stream(runtime.side_output(enriched, STATUSES), props, "order_status")
    runtime.side_output(enriched, STATUS_CACHE).sink_to(
        redis_store.sink(props, redis_store.ORDER_STATUS_TTL_S)
    ).name("redis:order-status").uid("sink-redis-order-status")

    statements = t_env.create_statement_set()
    aurora.sink_dead_letters(t_env, statements, props,
                             runtime.side_output(enriched, DEAD_LETTERS))
    statements.attach_as_datastream()


if __name__ == "__main__":
    runtime.run_job(build, JOB_NAME)
