"""Prototypes of the fixes proposed in docs/benchmarks.md, measured next to the jobs.

Nothing here is used by the jobs. ``cross_*`` measure the JVM-Python crossing alone (no
rules); the batched ones run the jobs' own rules (``EnrichOrders``, ``StoreInventory``:
same calls, same outputs) with one crossing per micro-batch instead of one per event, and
one output element per batch and output instead of one per output record:

    JVM MicroBatcher (per subtask; per store for the keyed one; <= N records or T ms,
    flushed before every checkpoint barrier) -> Python, once per batch -> one joined
    element per output -> JVM Unbatch -> one record per line, as the sinks take them.
"""
from __future__ import annotations

from collections import defaultdict

from pyflink.common import Row, Types
from pyflink.datastream import DataStream, KeyedProcessFunction, OutputTag, ProcessFunction
from pyflink.datastream.state import ValueStateDescriptor
from pyflink.java_gateway import get_gateway

RAW = Types.PRIMITIVE_ARRAY(Types.BYTE())
KEYED_RECORD = Types.ROW_NAMED(["partition_key", "payload"], [Types.STRING(), Types.STRING()])
TAGGED_RECORD = Types.ROW([Types.STRING(), RAW])
BATCH_RECORDS = 5000
BATCH_DELAY_MS = 200


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
                ValueStateDescriptor("n", Types.PICKLED_BYTE_ARRAY()))

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
    from jobs import runtime

    return (runtime.key_by_store(tagged, TAGGED_RECORD)
            .process(_KeyedPassthrough(state), output_type=KEYED_RECORD)
            .name("keyed-passthrough"))


# ------------------------------------------------------------------ batching helpers

def _render(row) -> str:
    """A batched output line: ``key<TAB>payload`` for keyed records, else the fields
    tab-separated (COPY text format for fact rows)."""
    return "\t".join("" if value is None else str(value) for value in row)


_BATCHED_TAGS: dict[str, OutputTag] = {}


def _batched_tag(tag: OutputTag | str) -> OutputTag:
    """The batched counterpart of one of the jobs' output tags (a joined text record)."""
    tag_id = tag if isinstance(tag, str) else tag.tag_id
    if tag_id not in _BATCHED_TAGS:
        _BATCHED_TAGS[tag_id] = OutputTag(f"batched-{tag_id}", KEYED_RECORD)
    return _BATCHED_TAGS[tag_id]


def _micro_batches(ctx, stream: DataStream, mode: str) -> DataStream:
    jvm = get_gateway().jvm
    batcher = jvm.pizzastream.flink.bench.MicroBatcher(
        mode, int(ctx.spec.get("batch_records", BATCH_RECORDS)),
        int(ctx.spec.get("batch_delay_ms", BATCH_DELAY_MS)), ctx.progress_dir)
    out_type = (jvm.pizzastream.flink.KeyedRawRecordSchema.TYPE if mode == "tagged"
                else jvm.org.apache.flink.api.common.typeinfo.PrimitiveArrayTypeInfo
                .BYTE_PRIMITIVE_ARRAY_TYPE_INFO)
    return DataStream(stream._j_data_stream.transform("micro-batch", out_type, batcher))


def _unbatched(ctx, stream: DataStream, counted: bool = False) -> None:
    """Batched output split back into records in the JVM; ``counted``: the lines are the
    measured output (progress name ``out``)."""
    from bench.scenarios import OUTPUT_COUNT

    jvm = get_gateway().jvm
    unbatch = (jvm.pizzastream.flink.bench.Unbatch(ctx.progress_dir, OUTPUT_COUNT) if counted
               else jvm.pizzastream.flink.bench.Unbatch())
    ctx.discard(DataStream(stream._j_data_stream.flatMap(
        unbatch, KEYED_RECORD.get_java_type_info()).name("unbatch")))


# ------------------------------------------------------------------ enrichment

def _batched_enrich_class():
    from jobs.order_enrichment import EnrichOrders

    class BatchedEnrichOrders(EnrichOrders):
        """``EnrichOrders.process_element`` on every record of a micro-batch; its outputs
        regrouped into one joined element per output."""

        def process_element(self, blob, ctx):
            lines = defaultdict(list)
            for raw in bytes(blob).split(b"\n"):
                for item in super().process_element(raw, ctx):
                    if isinstance(item, tuple):
                        tag, row = item
                        lines[tag.tag_id].append(_render(row))
                    else:
                        lines[None].append(_render(item))
            for tag_id, rendered in lines.items():
                row = Row("", "\n".join(rendered))
                if tag_id is None:
                    yield row
                else:
                    yield _batched_tag(tag_id), row

    return BatchedEnrichOrders


def enrichment_batched(ctx) -> dict:
    from jobs import order_enrichment as job
    from jobs import runtime

    batches = _micro_batches(ctx, ctx.generator("raw"), "bytes")
    enriched = batches.process(_batched_enrich_class()(ctx.props), output_type=KEYED_RECORD) \
        .name("enrich-orders-batched")
    _unbatched(ctx, enriched, counted=True)
    for tag in (job.STATUSES, job.STATUS_CACHE, job.DEAD_LETTERS):
        _unbatched(ctx, runtime.side_output(enriched, _batched_tag(tag)))
    return {"batch_records": ctx.spec.get("batch_records", BATCH_RECORDS),
            "batch_delay_ms": ctx.spec.get("batch_delay_ms", BATCH_DELAY_MS), "count": "out"}


# ------------------------------------------------------------------ inventory

def _batched_inventory_class():
    from jobs import inventory_windowing as job

    class BatchedStoreInventory(job.StoreInventory):
        """``StoreInventory.process_element`` on every event of one store's micro-batch
        (the state is cached in the worker between them); its outputs regrouped into one
        joined element per output."""

        def process_element(self, value, ctx):
            _, blob = value
            lines = defaultdict(list)
            for line in bytes(blob).split(b"\n"):
                for item in super().process_element((line[:1].decode(), line[1:]), ctx):
                    if isinstance(item, tuple):
                        tag, row = item
                        lines[tag.tag_id].append(_render(row))
                    else:
                        lines[None].append(_render(item))
            yield from _emit(lines, ctx.get_current_key())

    return BatchedStoreInventory


def _emit(lines, key):
    for tag_id, rendered in lines.items():
        row = Row(key, "\n".join(rendered))
        if tag_id is None:
            yield row
        else:
            yield _batched_tag(tag_id), row


def inventory_batched(ctx) -> dict:
    from jobs import inventory_windowing as job
    from jobs import runtime

    ttl_ms = int(float(ctx.props["Inventory"].get("dedup_ttl_hours", "50")) * 3600 * 1000)
    first, repeats = runtime.first_seen(ctx.generator("tagged"), job.DEDUP_ID_FIELDS, ttl_ms)
    batches = _micro_batches(ctx, first, "tagged")
    statuses = (runtime.key_by_store(batches, TAGGED_RECORD)
                .process(_batched_inventory_class()(ctx.props), output_type=KEYED_RECORD)
                .name("store-inventory-batched"))
    _unbatched(ctx, statuses, counted=True)
    for tag in (job.SALES, job.POS_ORDERS, job.DELIVERIES, job.SUPPLIER_ORDERS,
                job.STATUS_CACHE, job.FACTS, job.SUPPLIER_ORDER_ROWS,
                job.INVENTORY_LEVELS, job.DEAD_LETTERS):
        _unbatched(ctx, runtime.side_output(statuses, _batched_tag(tag)))
    ctx.discard(repeats)
    return {"batch_records": ctx.spec.get("batch_records", BATCH_RECORDS),
            "batch_delay_ms": ctx.spec.get("batch_delay_ms", BATCH_DELAY_MS), "count": "out"}
