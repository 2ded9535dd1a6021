"""The JVM operators the jobs are built from: thin Python wrappers over the project's
dataflow helpers in ``connectors/jvm`` (``pizzastream.flink.*``), so each job's ``build``
reads as the dataflow it is while every per-record step runs in the JVM (a Python operator
would cost a JVM-Python crossing per record: docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Mapping

from pyflink.common import Types, WatermarkStrategy
from pyflink.datastream import ConnectedStreams, DataStream, KeyedStream, OutputTag
from pyflink.java_gateway import get_gateway

from jobs.runtime import MAX_PARALLELISM
from pizzastream.batches import NO_ROUTES, LineRoutes
from pizzastream.order_batches import DelimitedLayout

# {batch tag: (its key, the batch)} of StoreBatcher, as a keyed Python function receives it
STORE_BATCH = Types.ROW([Types.STRING(), Types.PRIMITIVE_ARRAY(Types.BYTE())])
BATCH = Types.PRIMITIVE_ARRAY(Types.BYTE())


def hand_records_on_by_reference(stream: DataStream) -> None:
    """Object reuse for the job ``stream`` belongs to: chained operators hand records on
    without a defensive copy. The order path fans every batch out to about six records per
    event in the JVM, and copying each between chained operators cost as much as producing
    it. Safe there because every JVM operator of the order path makes new records and no
    sink keeps a record it is handed beyond what the record's producer made for it
    (``PostgresCopySink`` keeps the rows ``BatchOutputs`` and the dead-letter operators
    create; the Kinesis, Redis and warehouse sinks serialize or copy on write). hourly_metrics
    too: its decoded sales go to filters, a shuffle and ``StoreSales``, none of which keeps
    or changes a record it is handed."""
    stream._j_data_stream.getExecutionEnvironment().getConfig().enableObjectReuse()


def order_batches(records: DataStream, max_records: int, max_delay_ms: int) -> DataStream:
    """Raw records grouped into ``OrderBatcher`` batches (``pizzastream.batches``): a
    stateless Python function then crosses from the JVM once per batch."""
    jvm = get_gateway().jvm
    return DataStream(
        records._j_data_stream.transform(
            "order-batches",
            BATCH.get_java_type_info(),
            jvm.pizzastream.flink.OrderBatcher(max_records, max_delay_ms),
        )
    )


def store_batches(
    records: DataStream,
    id_field_by_kind: dict[str, str],
    ttl_ms: int,
    shards: int,
    max_records: int,
    max_delay_ms: int,
) -> tuple[KeyedStream, DataStream]:
    """Tagged records ``(partition_key, (kind, data))`` without repeats (the first of each
    id passes, remembered ``ttl_ms``; ``id_field_by_kind`` names the JSON id field of each
    kind), grouped into one batch per store shard (``pizzastream.flink.StoreShardKey``,
    ``StoreBatcher``) and keyed by shard for a keyed Python function; and the repeats.
    Both in the JVM: a Python lookup of an id never seen would cost a state round trip per
    event."""
    jvm = get_gateway().jvm
    flink = jvm.pizzastream.flink
    fields = jvm.java.util.HashMap()
    for kind, field in id_field_by_kind.items():
        fields.put(kind, field)
    shard_key = Types.ROW([Types.STRING()]).get_java_type_info()
    batched = (
        records._j_data_stream.keyBy(flink.StoreShardKey(shards, MAX_PARALLELISM), shard_key)
        .transform(
            "store-batches",
            STORE_BATCH.get_java_type_info(),
            flink.StoreBatcher(fields, ttl_ms, max_records, max_delay_ms),
        )
        .uid("store-batches")
    )
    repeats = batched.getSideOutput(flink.StoreBatcher.REPEATS)
    keyed = jvm.org.apache.flink.streaming.api.datastream.DataStreamUtils.reinterpretAsKeyedStream(
        batched, jvm.KeyByKeySelector(), shard_key
    )
    return KeyedStream(keyed, BATCH, DataStream(batched)), DataStream(repeats)


def batch_outputs(
    results: DataStream,
    main_tag: str,
    side_tags: str,
    routes: LineRoutes = NO_ROUTES,
    layouts: Mapping[str, DelimitedLayout] | None = None,
) -> DataStream:
    """The result lines of a batch (``pizzastream.batches``) fanned out in the JVM
    (``pizzastream.flink.BatchOutputs``): records of ``main_tag`` as the returned stream,
    the others as side outputs taken with ``batch_output``, or, for the side tags of
    ``layouts``, as table rows taken with ``batch_rows``; ``routes`` names the lines that
    stand for more than one record."""
    from connectors.kinesis import KEYED_RECORD

    jvm = get_gateway().jvm
    copies, cached, kinds = (jvm.java.util.HashMap() for _ in range(3))
    for tag, outputs in routes.copies.items():
        copies.put(tag, outputs)
    for tag, cache in routes.cached.items():
        cached.put(tag, cache)
    for tag, layout in (layouts or {}).items():
        kinds.put(tag, layout.kinds)
    return DataStream(
        results._j_data_stream.process(
            jvm.pizzastream.flink.BatchOutputs(main_tag, side_tags, copies, cached, kinds),
            KEYED_RECORD.get_java_type_info(),
        ).name("batch-outputs")
    )


def batch_output(outputs: DataStream, tag: str) -> DataStream:
    """The ``Row(partition_key, payload)`` records tagged ``tag`` of ``batch_outputs``."""
    from connectors.kinesis import KEYED_RECORD

    return side_output(outputs, OutputTag(f"batch-{tag}", KEYED_RECORD))


# The field type of each kind letter, as DelimitedRows and FlatJsonRows read them.
KIND_TYPES = {"I": Types.INT(), "L": Types.LONG(), "S": Types.STRING()}


def delimited_row_type(layout: DelimitedLayout):
    """The Flink row type of a ``DelimitedLayout``: its field names, each typed by its
    letter."""
    return Types.ROW_NAMED(list(layout.fields), [KIND_TYPES[kind] for kind in layout.kinds])


def batch_rows(outputs: DataStream, tag: str, layout: DelimitedLayout) -> DataStream:
    """The table rows of ``layout`` that ``batch_outputs`` parsed from the lines tagged
    ``tag`` (``pizzastream.flink.DelimitedRows``, as it read each line: no record of the
    line's text in between)."""
    return side_output(outputs, OutputTag(f"batch-{tag}", delimited_row_type(layout)))


def redis_set_commands(lines: DataStream, key_prefix: str) -> DataStream:
    """``SET <key_prefix><key> <payload>`` commands of lines, built in the JVM."""
    from connectors.redis_store import REDIS_COMMAND

    jvm = get_gateway().jvm
    return DataStream(
        lines._j_data_stream.map(
            jvm.pizzastream.flink.RedisSetCommands(key_prefix), REDIS_COMMAND.get_java_type_info()
        )
    )


def json_event_time(
    field: str, out_of_orderness_ms: int, idle_ms: int, pos_wait_ms: int = 0
) -> WatermarkStrategy:
    """Event time from a JSON text record's epoch-millisecond ``field`` and watermarks
    bounded by ``out_of_orderness_ms``, held back by POS progress markers at most
    ``pos_wait_ms``, following the wall clock on a shard quiet for ``idle_ms``; computed in
    the JVM (``pizzastream.flink.JsonEventTime``, which says why)."""
    return WatermarkStrategy(
        get_gateway().jvm.pizzastream.flink.JsonEventTime(
            field, out_of_orderness_ms, idle_ms, pos_wait_ms
        )
    )


def json_rows(stream: DataStream, row_type, max_bytes: int) -> DataStream:
    """JSON records of ``stream`` decoded once, in the JVM, into ``row_type`` rows (named
    after the JSON fields), keeping their timestamps: SQL over typed columns instead of one
    ``JSON_VALUE`` parse per field (docs/benchmarks.md). Undecodable records are counted and
    dropped (``pizzastream.flink.JsonRows``). A flat row of string, int and long fields (the
    sales hourly_metrics reads) is read in one pass of a streaming parser
    (``pizzastream.flink.FlatJsonRows``); any other row type by Flink's JSON format, which
    builds a tree of each record first."""
    from pyflink.datastream.formats.json import JsonRowDeserializationSchema

    gateway = get_gateway()
    jvm = gateway.jvm
    kinds = flat_kinds(row_type)
    if kinds is not None:
        names = row_type.get_field_names()
        j_names = gateway.new_array(jvm.String, len(names))
        for i, name in enumerate(names):
            j_names[i] = name
        j_schema = jvm.pizzastream.flink.FlatJsonRows(j_names, kinds)
    else:
        schema = JsonRowDeserializationSchema.builder().type_info(row_type).build()
        j_schema = schema._j_deserialization_schema
    decoder = jvm.pizzastream.flink.JsonRows(j_schema, max_bytes)
    return DataStream(
        stream._j_data_stream.flatMap(decoder, row_type.get_java_type_info()).name("json-decode")
    )


def flat_kinds(row_type) -> str | None:
    """``FlatJsonRows``' kind letters of ``row_type`` (``KIND_TYPES``), or None if any
    field is of another type."""
    kinds = ""
    for field in row_type.get_field_types():
        kind = next((letter for letter, type_ in KIND_TYPES.items() if field == type_), None)
        if kind is None:
            return None
        kinds += kind
    return kinds


def side_output(stream: DataStream, tag: OutputTag) -> DataStream:
    """``stream``'s side output ``tag``, taken in the JVM. PyFlink's ``get_side_output``
    appends a Python identity ``map`` to every side output, so each side-output record would
    cross into Python and back once more (docs/benchmarks.md); ``tag`` must have a Flink
    type (not the pickled default), which every tag of the jobs has."""
    return DataStream(stream._j_data_stream.getSideOutput(tag.get_java_output_tag()))


def store_sales(
    sales: DataStream,
    metric_row_type,
    lateness_ms: int,
    late_refresh_ms: int,
    live_refresh_ms: int,
    channels: tuple[str, str, str],
    live_key_template: str,
) -> tuple[DataStream, DataStream]:
    """Decoded sale records (``o, s, c, f, t, n, r``, event time as the records'
    timestamps) through ``pizzastream.flink.StoreSales``, keyed by store (one shuffle): the
    records with an order id and a store, each order counted once per store-hour (order ids
    in RocksDB per store-hour, fingerprints in memory). Returns the ``metric_row_type`` rows
    per store and event-time hour (a changelog: each hour inserted when the watermark passes
    its end, updated by late sales within ``lateness_ms``, at most once per
    ``late_refresh_ms``) and the live view's ``REDIS_COMMAND`` rows (``HSET`` of each
    minute changed, every ``live_refresh_ms`` and at each checkpoint; ``live_key_template``
    as ``connectors.redis_store.LIVE_KEY_TEMPLATE``). ``channels``: the online, in-store
    and delivery names the metrics count."""
    from connectors.redis_store import REDIS_COMMAND

    jvm = get_gateway().jvm
    store_sales = jvm.pizzastream.flink.StoreSales
    online, in_store, delivery = channels
    metrics = DataStream(
        sales._j_data_stream.filter(store_sales.SALES)
        .name("orders")
        .keyBy(store_sales.STORE, Types.INT().get_java_type_info())
        .transform(
            "store-sales",
            metric_row_type.get_java_type_info(),
            store_sales(
                lateness_ms,
                late_refresh_ms,
                live_refresh_ms,
                online,
                in_store,
                delivery,
                live_key_template,
            ),
        )
        .uid("store-sales")
    )
    return metrics, side_output(metrics, OutputTag("live", REDIS_COMMAND))


def other_records(records: DataStream) -> DataStream:
    """The decoded sale records without an order id (POS progress markers), filtered in the
    JVM (``pizzastream.flink.StoreSales.OTHER_RECORDS``)."""
    jvm = get_gateway().jvm
    return DataStream(
        records._j_data_stream.filter(jvm.pizzastream.flink.StoreSales.OTHER_RECORDS).name(
            "progress-markers"
        )
    )


def key_by_store(records: DataStream, value_type) -> KeyedStream:
    """Keys tagged records by their partition key (the store) in the JVM, so a keyed Python
    function receives ``value_type`` values with one JVM-Python crossing per event
    (PyFlink's ``key_by`` would run a Python key extractor first)."""
    jvm = get_gateway().jvm
    j_keyed = records._j_data_stream.keyBy(
        jvm.KeyByKeySelector(), Types.ROW([Types.STRING()]).get_java_type_info()
    )
    return KeyedStream(j_keyed, value_type, records)


def keyed_co_process(connected: ConnectedStreams, function, output_type) -> DataStream:
    """``connected.process(function, output_type)`` for a Python ``KeyedCoProcessFunction``
    in a worker process, with the timers it registers in every checkpoint
    (``pizzastream.flink.CheckpointedTimersKeyedCoProcessOperator``: PyFlink 1.20 leaves a
    timer registered since the last watermark out of a checkpoint, so a job restored from it
    never fires that timer). Always process mode: in thread mode PyFlink registers timers
    itself as the function asks."""
    from pyflink.datastream.data_stream import _create_j_data_stream_python_function_info
    from pyflink.fn_execution.flink_fn_execution_pb2 import UserDefinedDataStreamFunction
    from pyflink.util.java_utils import get_j_env_configuration

    first, second = connected.stream1._j_data_stream, connected.stream2._j_data_stream
    j_output_type = output_type.get_java_type_info()
    operator = get_gateway().jvm.pizzastream.flink.CheckpointedTimersKeyedCoProcessOperator(
        get_j_env_configuration(first.getExecutionEnvironment()),
        _create_j_data_stream_python_function_info(
            function, UserDefinedDataStreamFunction.KEYED_CO_PROCESS
        ),
        first.getTransformation().getOutputType(),
        second.getTransformation().getOutputType(),
        j_output_type,
    )
    return DataStream(first.connect(second).transform("Keyed Co-Process", j_output_type, operator))
