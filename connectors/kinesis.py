"""Kinesis Data Streams edge of the Flink jobs.

PyFlink 1.20 wraps only the deprecated ``FlinkKinesisConsumer``; the jobs use the new
``KinesisStreamsSource`` (reads by stream ARN, checkpointed shard positions) built here
through py4j, and ``KinesisStreamsSink``. This is the only Python file naming connector
classes, so moving to connector 5.x / Flink 2.x changes this file alone.
"""

from __future__ import annotations

from pyflink.common import Configuration, Types, WatermarkStrategy
from pyflink.common.serialization import SerializationSchema
from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.datastream.connectors import Source
from pyflink.datastream.connectors.kinesis import KinesisStreamsSink, PartitionKeyGenerator
from pyflink.java_gateway import get_gateway

from pizzastream.config import Props, stream_arn, stream_name
from pizzastream.settings import AggregationSettings, AwsSettings, StreamsSettings

RAW_RECORD = Types.PRIMITIVE_ARRAY(Types.BYTE())
# A record tagged with the kind of stream it came from, as a keyed function receives it.
TAGGED_RECORD = Types.ROW([Types.STRING(), RAW_RECORD])
KEYED_TAGGED_RECORD = Types.ROW([Types.STRING(), TAGGED_RECORD])
# What jobs emit to an output stream: the partition key (the store) and the JSON payload.
KEYED_RECORD = Types.ROW_NAMED(["partition_key", "payload"], [Types.STRING(), Types.STRING()])
# The same with the payload as sent to Kinesis: an aggregated record or a plain one.
AGGREGATED_RECORD = Types.ROW_NAMED(["partition_key", "payload"], [Types.STRING(), RAW_RECORD])
# Everything one aggregating operator may hold at a time, over all its keys.
AGGREGATION_MAX_BUFFERED_BYTES = 16 * 1024 * 1024


def client_properties(props: Props) -> dict[str, str]:
    """AWS client settings: region always; endpoint and static keys only where configured
    (the local emulator); otherwise the default chain, i.e. the MSF application's role."""
    aws = AwsSettings.from_group(props["Aws"])
    settings = {"aws.region": aws.region}
    if aws.endpoint:
        settings["aws.endpoint"] = aws.endpoint
        # The emulator speaks plain HTTP/1.1; the async sink client defaults to HTTP/2.
        settings["aws.http.protocol.version"] = "HTTP1_1"
    credentials = aws.credentials()
    if credentials:
        settings["aws.credentials.provider"] = "BASIC"
        (
            settings["aws.credentials.provider.basic.accesskeyid"],
            settings["aws.credentials.provider.basic.secretkey"],
        ) = credentials
    else:
        settings["aws.credentials.provider"] = "AUTO"
    return settings


def _source(
    env, props, logical_name: str, schema, type_info, watermarks: WatermarkStrategy | None = None
) -> DataStream:
    jvm = get_gateway().jvm
    config = Configuration()
    for key, value in client_properties(props).items():
        config.set_string(key, value)
    config.set_string(
        "flink.stream.initpos",
        StreamsSettings.from_group(props["Streams"]).initial_position or "LATEST",
    )
    source = (
        jvm.org.apache.flink.connector.kinesis.source.KinesisStreamsSource.builder()
        .setStreamArn(stream_arn(props, logical_name))
        .setSourceConfig(config._j_configuration)
        .setDeserializationSchema(schema)
        .build()
    )
    return env.from_source(
        Source(source),
        watermarks or WatermarkStrategy.no_watermarks(),
        f"kinesis:{logical_name}",
        type_info,
    ).uid(f"source-{logical_name}")


def raw_record_source(
    env: StreamExecutionEnvironment, props: Props, logical_name: str
) -> DataStream:
    """The stream's records as the exact bytes received (decoding is the rules' job).
    Every source here unpacks KPL aggregated records (``connectors.kinesis_agg``) into the
    user records they carry, inside the source: its checkpointed position per Kinesis record
    then covers all of them."""
    schema = get_gateway().jvm.pizzastream.flink.RawRecordSchema()
    return _source(env, props, logical_name, schema, RAW_RECORD)


def text_records(
    env: StreamExecutionEnvironment,
    props: Props,
    logical_name: str,
    watermarks: WatermarkStrategy,
) -> DataStream:
    """The stream's records as UTF-8 text (decoded later, e.g. by ``operators.json_rows``).
    ``watermarks`` runs in the source, so Flink keeps event time per shard."""
    schema = get_gateway().jvm.pizzastream.flink.TextRecordSchema()
    return _source(env, props, logical_name, schema, Types.STRING(), watermarks)


def tagged_records(
    env: StreamExecutionEnvironment, props: Props, kinds: dict[str, str]
) -> DataStream:
    """Streams ``{logical_name: kind}`` merged into one, each element
    ``(partition_key, (kind, data))`` built in the JVM (see ``jobs.operators.key_by_store``)."""
    jvm = get_gateway().jvm
    streams = [
        _source(
            env, props, name, jvm.pizzastream.flink.KeyedRawRecordSchema(kind), KEYED_TAGGED_RECORD
        )
        for name, kind in kinds.items()
    ]
    return streams[0].union(*streams[1:]) if len(streams) > 1 else streams[0]


def keyed_record_sink(props: Props, logical_name: str) -> KinesisStreamsSink:
    """Sink for ``KEYED_RECORD`` or ``AGGREGATED_RECORD`` rows; failed puts are retried,
    never dropped."""
    jvm = get_gateway().jvm
    return (
        KinesisStreamsSink.builder()
        .set_kinesis_client_properties(client_properties(props))
        .set_stream_name(stream_name(props, logical_name))
        .set_serialization_schema(SerializationSchema(jvm.pizzastream.flink.KeyedRecordPayload()))
        .set_partition_key_generator(
            PartitionKeyGenerator(jvm.pizzastream.flink.KeyedRecordPartitionKey())
        )
        .set_fail_on_error(False)
        .build()
    )


def aggregated(stream: DataStream, props: Props, logical_name: str) -> DataStream:
    """``KEYED_RECORD`` rows packed per partition key into KPL aggregated records
    (``pizzastream.flink.RecordAggregator``), if ``Aggregation.enabled``: a shard takes 1,000
    records/s, so a store hotter than that fits one shard only with many events per record."""
    # Aggregation.enabled is required, not defaulted: whether the streams carry aggregates
    # is decided per deployment (AggregationSettings).
    aggregation = AggregationSettings.from_group(props["Aggregation"])
    if not aggregation.enabled:
        return stream
    operator = get_gateway().jvm.pizzastream.flink.RecordAggregator(
        aggregation.linger_ms,
        aggregation.max_bytes,
        aggregation.max_records,
        AGGREGATION_MAX_BUFFERED_BYTES,
    )
    return DataStream(
        stream._j_data_stream.transform(
            f"aggregate:{logical_name}",
            AGGREGATED_RECORD.get_java_type_info(),
            operator,
        ).uid(f"aggregate-{logical_name}")
    )


def sink_to_stream(stream: DataStream, props: Props, logical_name: str) -> None:
    aggregated(stream, props, logical_name).sink_to(keyed_record_sink(props, logical_name)).name(
        f"kinesis:{logical_name}"
    ).uid(f"sink-{logical_name}")
