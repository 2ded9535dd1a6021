"""What PyFlink itself costs, measured next to the jobs: the JVM-Python crossing alone,
with no rules (``cross_*``), one crossing per event as the order path had before it
crossed once per batch (docs/benchmarks.md). Nothing here is used by the jobs."""

from __future__ import annotations

from pyflink.common import Row, Types
from pyflink.datastream import DataStream, KeyedProcessFunction, ProcessFunction
from pyflink.datastream.state import ValueStateDescriptor

from pizzastream.config import Props

RAW = Types.PRIMITIVE_ARRAY(Types.BYTE())
KEYED_RECORD = Types.ROW_NAMED(["partition_key", "payload"], [Types.STRING(), Types.STRING()])
TAGGED_RECORD = Types.ROW([Types.STRING(), RAW])


# ------------------------------------------------------------------ the crossing alone


class _Passthrough(ProcessFunction):
    def process_element(self, value, ctx):
        yield value


class _KeyedPassthrough(KeyedProcessFunction):
    def __init__(self, state: bool):
        self._use_state = state

    def open(self, runtime_context):
        if self._use_state:
            self._state = runtime_context.get_state(
                ValueStateDescriptor("n", Types.PICKLED_BYTE_ARRAY())
            )

    def process_element(self, value, ctx):
        key = ctx.get_current_key()
        if self._use_state:
            count = self._state.value() or [0]
            count[0] += 1
            self._state.update(count)
        yield Row(key, "")


def passthrough(raw: DataStream) -> DataStream:
    return raw.process(_Passthrough(), output_type=RAW).name("passthrough")


def keyed_passthrough(tagged: DataStream, state: bool) -> DataStream:
    from jobs import operators

    return (
        operators.key_by_store(tagged, TAGGED_RECORD)
        .process(_KeyedPassthrough(state), output_type=KEYED_RECORD)
        .name("keyed-passthrough")
    )


# ------------------------------------------------------------------ one job for the order path


def fused_order_path(records: DataStream, props: Props):
    """Both order jobs' work in one keyed Python call per store batch: the contract's
    ``orders`` records keyed by store go straight into inventory_windowing's batcher and
    desk, each validated and priced by ``orders.accept`` on the way in, with no
    ``orders-enriched`` stream, no second batcher and no second crossing in between.

    A measurement of what merging the two jobs would save, not a job: the enriched JSON
    is still written and read back inside Python (a merged desk would decide from the
    parsed order), and a record ``accept`` refuses is only counted (the generator sends
    valid orders; a merged job would give it enrichment's status and dead letter)."""
    from jobs import inventory_windowing as job

    return job.decide_orders(
        records,
        props,
        desk=_FusedDesk(props),
        event_id_fields={job.ORDER: "order_id", job.RESTOCK: "event_id"},
    )


def _fused_desk_class():
    import time

    from connectors import aurora
    from jobs.inventory_windowing import DecideStoreBatches
    from pizzastream import batches
    from pizzastream.catalog import Catalog
    from pizzastream.order_batches import ORDER
    from pizzastream.orders import OrderRules, accept

    class FusedDesk(DecideStoreBatches):
        def open(self, runtime_context):
            super().open(runtime_context)
            self._rules = OrderRules.from_properties(self._props["OrderRules"])
            self._prices = aurora.Refreshing(
                lambda: Catalog.from_rows(*aurora.catalog_rows(self._props)), 30.0
            )

        def process_element(self, batch, ctx):
            raw = bytes(batch)
            persist, records = batches.store_records(raw)
            catalog, rules = self._prices.get(), self._rules
            now_ms = time.time_ns() // 1_000_000
            enriched = []
            for _, key, data in records:
                order = accept(data, catalog, rules, now_ms)
                if order is not None:
                    enriched.append((ORDER, key, order[1].encode()))
            yield from super().process_element(
                batches.frame_store_records(enriched, persist, batches.batch_epoch(raw)), ctx
            )

    return FusedDesk


def _FusedDesk(props):  # noqa: N802 - builds the class late: jobs import PyFlink's gateway
    return _fused_desk_class()(props)
