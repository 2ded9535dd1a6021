"""Flink runtime wiring shared by the jobs: settings, shipped code, connector jar.

Every job builds its environment here so the tuned PyFlink settings (bundle size/time,
state cache) are the same locally and on Managed Service for Apache Flink, and so that
local runs behave like production: Python workers in their own processes, the project's
packages shipped to them, CBOR off towards the Kinesis emulator.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from pyflink.common import Configuration, Types, WatermarkStrategy
from pyflink.datastream import (
    CheckpointingMode,
    DataStream,
    KeyedStream,
    OutputTag,
    StreamExecutionEnvironment,
)
from pyflink.java_gateway import get_gateway
from pyflink.table import (
    DataTypes,
    EnvironmentSettings,
    Schema,
    StreamTableEnvironment,
    Table,
    TableEnvironment,
)

from pizzastream import run_directory, settings
from pizzastream.config import REPO_ROOT, Props, is_local, load_properties

DEPENDENCIES_JAR = REPO_ROOT / "deploy" / "target" / "pizzastream-deps.jar"
LOCAL_CHECKPOINTS = REPO_ROOT / ".stack" / "checkpoints"
# Local runs resume from this checkpoint or savepoint directory when it is set (on MSF the
# service restores from its own snapshots).
RESTORE_FROM_ENV = "PIZZASTREAM_RESTORE_FROM"
# File systems such as s3:// are Flink plugins; MSF provides its own, locally deploy/pom.xml
# copies flink-s3-fs-hadoop here.
PLUGINS_DIR = REPO_ROOT / "deploy" / "target" / "plugins"
SHIPPED_PACKAGES = ("pizzastream", "connectors", "jobs")
# Shipped with them when the application has it: the databases' CAs (``certs/``, in the MSF
# zip), which ``pizzastream.config.tls_settings`` resolves against the workers' own root.
SHIPPED_DATA = ("certs",)
# What MSF runs every application on (docs.aws.amazon.com/managed-flink: "Apache Flink
# settings", state backend): RocksDB with incremental, asynchronous snapshots.
MSF_STATE_BACKEND = {"state.backend.type": "rocksdb", "state.backend.incremental": "true"}
# RocksDB's memory (block cache, write buffers) per task slot of the local mini-cluster: about
# Flink's default managed share (0.4) of a KPU's 4 GB. The mini-cluster's own default, 128 MB
# for all its slots, flushed and compacted RocksDB so often that hourly_metrics ran at
# 0.29x (docs/benchmarks.md, "The state backend").
MANAGED_MEMORY_PER_SLOT_MB = 1024


def _prepare_local_jvm(props: Props) -> None:
    """Must run before the first py4j call, which starts the JVM."""
    if not DEPENDENCIES_JAR.exists():
        sys.exit(f"{DEPENDENCIES_JAR} is missing: build it with `mvn -f deploy/pom.xml package`")
    if props["Aws"].get("endpoint"):
        # The emulators answer the SDK's CBOR with HTTP 500 or corrupt it.
        # JVM_ARGS adds to PyFlink's default JVM options (FLINK_ENV_JAVA_OPTS would replace
        # its Java 17 --add-opens list).
        args = os.environ.get("JVM_ARGS", "")
        if "aws.cborEnabled" not in args:
            os.environ["JVM_ARGS"] = f"{args} -Daws.cborEnabled=false".strip()
    # Timestamps reach PostgreSQL through the JVM's zone; MSF runs in UTC, so do we.
    if "user.timezone" not in os.environ.get("JVM_ARGS", ""):
        os.environ["JVM_ARGS"] = f"{os.environ.get('JVM_ARGS', '')} -Duser.timezone=UTC".strip()
        os.environ.setdefault("AWS_CBOR_ENABLED", "false")
    # Python workers in separate processes, as on a cluster, not inside this client.
    os.environ.setdefault("_python_worker_execution_mode", "process")
    # Every temporary file of this run (the JVM's, and Python's here and in the workers,
    # which inherit TMPDIR) in one directory that goes when the run does.
    jvm_args = re.sub(r"\s*-Djava\.io\.tmpdir=\S*", "", os.environ.get("JVM_ARGS", ""))
    os.environ["JVM_ARGS"] = f"{jvm_args} -Djava.io.tmpdir={run_directory.claim()}".strip()


def _s3_settings(props: Props) -> dict[str, str]:
    """The S3 file system plugin's settings for the emulator (path-style, static keys);
    empty on AWS, where the plugin uses the application's role."""
    aws = props["Aws"]
    if not aws.get("endpoint"):
        return {}
    return {
        "s3.endpoint": aws["endpoint"],
        "s3.path.style.access": "true",
        "s3.access-key": aws["access_key_id"],
        "s3.secret-key": aws["secret_access_key"],
    }


def _initialize_file_systems(config: Configuration) -> None:
    """A cluster loads its file system plugins at startup; the local mini-cluster does not,
    so without this ``s3://`` paths would have no file system. (``FLINK_PLUGINS_DIR`` cannot
    say where they are: PyFlink overwrites it with its own, empty, plugins directory.)"""
    jvm = get_gateway().jvm
    plugin = jvm.org.apache.flink.core.plugin
    finder = plugin.DirectoryBasedPluginFinder(jvm.java.io.File(str(PLUGINS_DIR)).toPath())
    plugins = plugin.DefaultPluginManager(
        finder.findPlugins(),
        jvm.org.apache.flink.configuration.CoreOptions.getPluginParentFirstLoaderPatterns(
            config._j_configuration
        ),
    )
    jvm.org.apache.flink.core.fs.FileSystem.initialize(config._j_configuration, plugins)


def flink_configuration(props: Props, restore_from: str | None = None) -> Configuration:
    """The job's Flink settings; locally, ``restore_from`` (else ``PIZZASTREAM_RESTORE_FROM``)
    names the savepoint or retained checkpoint to start from."""
    config = Configuration()
    for key, value in props.get("FlinkTuning", {}).items():
        if key.startswith("python."):
            config.set_string(key, value)
    if is_local():
        # MSF's state backend (RocksDB, incremental snapshots: an application cannot choose
        # another in code) with about a KPU's memory for it: local runs, tests and benchmarks
        # pay what state costs on MSF. ``state.*`` and ``taskmanager.memory.*`` keys in
        # FlinkTuning override them locally (the benchmarks compare).
        tuning = props.get("FlinkTuning", {})
        slots = int(tuning.get("parallelism", "1"))
        local = {
            **MSF_STATE_BACKEND,
            "taskmanager.memory.managed.size": f"{MANAGED_MEMORY_PER_SLOT_MB * slots}m",
        }
        for key, value in {
            **local,
            **{k: v for k, v in tuning.items() if k.startswith(("state.", "taskmanager.memory."))},
        }.items():
            config.set_string(key, value)
        config.set_string("pipeline.jars", DEPENDENCIES_JAR.as_uri())
        config.set_string("python.executable", sys.executable)
        config.set_string("python.client.executable", sys.executable)
        config.set_string("io.tmp.dirs", str(run_directory.claim()))
        for key, value in _s3_settings(props).items():
            config.set_string(key, value)
        # Checkpoints outlive the process, so a killed job can be resumed from them.
        config.set_string("state.checkpoints.dir", LOCAL_CHECKPOINTS.as_uri())
        config.set_string(
            "execution.checkpointing.externalized-checkpoint-retention", "RETAIN_ON_CANCELLATION"
        )
        # A failing dependency (database restart, throttling, S3 down a minute) restarts the
        # job from its last checkpoint, as MSF does; an error that keeps coming back (a bug)
        # ends the job instead of restarting it forever.
        config.set_string("restart-strategy.type", "failure-rate")
        config.set_string("restart-strategy.failure-rate.max-failures-per-interval", "30")
        config.set_string("restart-strategy.failure-rate.failure-rate-interval", "10 min")
        config.set_string("restart-strategy.failure-rate.delay", "5 s")
        restore_from = restore_from or os.environ.get(RESTORE_FROM_ENV)
        if restore_from:
            config.set_string("execution.savepoint.path", restore_from)
    return config


def _started_configuration(props: Props, restore_from: str | None = None) -> Configuration:
    """``flink_configuration`` with, locally, the JVM prepared before it starts (creating
    the configuration starts it) and the file systems loaded after."""
    if not is_local():
        return flink_configuration(props)
    _prepare_local_jvm(props)
    config = flink_configuration(props, restore_from)
    _initialize_file_systems(config)
    return config


def stream_environment(props: Props, restore_from: str | None = None) -> StreamExecutionEnvironment:
    env = StreamExecutionEnvironment.get_execution_environment(
        _started_configuration(props, restore_from)
    )
    env.set_max_parallelism(MAX_PARALLELISM)
    tuning = props.get("FlinkTuning", {})
    if is_local():
        # On MSF parallelism and checkpointing are application settings, not code.
        env.set_parallelism(int(tuning.get("parallelism", "1")))
        env.enable_checkpointing(
            int(tuning.get("checkpoint_interval_ms", "5000")), CheckpointingMode.EXACTLY_ONCE
        )
    # The order path's batchers hand every pending record downstream before a barrier passes
    # (pizzastream.flink.StoreBatcher): exactly-once with them needs aligned checkpoints.
    env.get_checkpoint_config().enable_unaligned_checkpoints(False)
    _ship_packages(env)
    return env


def _ship_packages(env: StreamExecutionEnvironment) -> None:
    """Ships the project's packages to the Python workers inside one directory of their own:
    Flink puts a shipped directory itself on the workers' PYTHONPATH, so shipping
    ``pizzastream/`` would make ``config`` importable, not ``pizzastream.config``. (Local
    workers start in the repository root and would find the packages anyway; on MSF they
    do not.)"""
    code = Path(tempfile.mkdtemp(prefix="pizzastream-code-", dir=run_directory.path()))
    atexit.register(shutil.rmtree, code, ignore_errors=True)
    for package in SHIPPED_PACKAGES:
        shutil.copytree(
            REPO_ROOT / package, code / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    for data in SHIPPED_DATA:
        if (REPO_ROOT / data).is_dir():
            shutil.copytree(REPO_ROOT / data, code / data)
    env.add_python_file(str(code))


def run_job(build, job_name: str) -> None:
    """A job's entry point: its dataflow (``build(env, props)``) on the environment the
    configuration describes, run until cancelled."""
    props = load_properties()
    settings.validate(props)  # a bad key stops the job here, before any work
    env = stream_environment(props)
    build(env, props)
    env.execute(job_name)


def table_environment(env: StreamExecutionEnvironment) -> StreamTableEnvironment:
    t_env = StreamTableEnvironment.create(env)
    t_env.get_config().set("table.local-time-zone", "UTC")
    return t_env


def computed_once(t_env: StreamTableEnvironment, table: Table, rowtime: str) -> Table:
    """``table`` (insert-only, with one rowtime attribute) computed once for every query
    that reads the result: ``to_data_stream`` and ``to_changelog_stream`` plan each query on
    its own, so two outputs of one view would each run a copy of its operators and state.
    The rows go through as Flink's internal rows (no conversion), the rowtime attribute as
    the records' timestamps and watermarks, and come back with it as column ``rowtime``
    (the table's own time column stays, as a plain timestamp)."""
    jvm = get_gateway().jvm
    j_tenv, j_table = t_env._j_tenv, table._j_table
    internal_rows = (
        j_table.getResolvedSchema()
        .toPhysicalRowDataType()
        .bridgedTo(jvm.org.apache.flink.table.data.RowData._java_lang_class)
    )
    j_stream = j_tenv.toDataStream(j_table, internal_rows)
    schema = (
        Schema.new_builder()
        .column_by_metadata(rowtime, DataTypes.TIMESTAMP_LTZ(3), "rowtime")
        .watermark(rowtime, "SOURCE_WATERMARK()")
        .build()
    )
    return Table(j_tenv.fromDataStream(j_stream, schema._j_schema), t_env)


def batch_table_environment(props: Props) -> TableEnvironment:
    """A bounded SQL run (``jobs.hourly_metrics.run_batch``) with the jobs' jar, file
    systems and time zone; SQL only, so no Python is shipped."""
    config = _started_configuration(props)
    if is_local():
        tuning = props.get("FlinkTuning", {})
        config.set_string("parallelism.default", tuning.get("parallelism", "1"))
    t_env = TableEnvironment.create(
        EnvironmentSettings.new_instance().in_batch_mode().with_configuration(config).build()
    )
    t_env.get_config().set("table.local-time-zone", "UTC")
    return t_env


# Key groups of every keyed operator: fixed, so that state can be restored at any
# parallelism up to it (Flink's own default below parallelism 86, said explicitly).
MAX_PARALLELISM = 128
# {batch tag: (its key, the batch)} of StoreBatcher, as a keyed Python function receives it
STORE_BATCH = Types.ROW([Types.STRING(), Types.PRIMITIVE_ARRAY(Types.BYTE())])
BATCH = Types.PRIMITIVE_ARRAY(Types.BYTE())


def hand_records_on_by_reference(stream: DataStream) -> None:
    """Object reuse for the job ``stream`` belongs to: chained operators hand records on
    without a defensive copy. The order path fans every batch out to about six records per
    event in the JVM, and copying each between chained operators cost as much as producing
    it. Safe there because every JVM operator of the order path makes new records and no
    sink keeps a record it is handed beyond what the record's producer made for it
    (``PostgresCopySink`` keeps the rows ``DelimitedRows`` and the dead-letter operators
    create; the Kinesis, Redis and warehouse sinks serialize or copy on write)."""
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


def batch_outputs(results: DataStream, main_tag: str, side_tags: str) -> DataStream:
    """The result lines of a batch (``pizzastream.batches``) fanned out in the JVM
    (``pizzastream.flink.BatchOutputs``): lines tagged ``main_tag`` as the returned stream,
    the others as side outputs taken with ``batch_output``."""
    from connectors.kinesis import KEYED_RECORD

    jvm = get_gateway().jvm
    return DataStream(
        results._j_data_stream.process(
            jvm.pizzastream.flink.BatchOutputs(main_tag, side_tags),
            KEYED_RECORD.get_java_type_info(),
        ).name("batch-outputs")
    )


def batch_output(outputs: DataStream, tag: str) -> DataStream:
    """The ``Row(partition_key, payload)`` lines tagged ``tag`` of ``batch_outputs``."""
    from connectors.kinesis import KEYED_RECORD

    return side_output(outputs, OutputTag(f"batch-{tag}", KEYED_RECORD))


def delimited_rows(lines: DataStream, row_type, kinds: str) -> DataStream:
    """Lines whose payload is tab-separated fields as ``row_type`` rows, parsed in the JVM;
    ``kinds`` has a letter per field: I int, L long, S string."""
    jvm = get_gateway().jvm
    return DataStream(
        lines._j_data_stream.map(
            jvm.pizzastream.flink.DelimitedRows(kinds), row_type.get_java_type_info()
        )
    )


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
    dropped (``pizzastream.flink.JsonRows``)."""
    from pyflink.datastream.formats.json import JsonRowDeserializationSchema

    schema = JsonRowDeserializationSchema.builder().type_info(row_type).build()
    decoder = get_gateway().jvm.pizzastream.flink.JsonRows(
        schema._j_deserialization_schema, max_bytes
    )
    return DataStream(
        stream._j_data_stream.flatMap(decoder, row_type.get_java_type_info()).name("json-decode")
    )


def side_output(stream: DataStream, tag: OutputTag) -> DataStream:
    """``stream``'s side output ``tag``, taken in the JVM. PyFlink's ``get_side_output``
    appends a Python identity ``map`` to every side output, so each side-output record would
    cross into Python and back once more (docs/benchmarks.md); ``tag`` must have a Flink
    type (not the pickled default), which every tag of the jobs has."""
    return DataStream(stream._j_data_stream.getSideOutput(tag.get_java_output_tag()))


def key_by_store(records: DataStream, value_type) -> KeyedStream:
    """Keys tagged records by their partition key (the store) in the JVM, so a keyed Python
    function receives ``value_type`` values with one JVM-Python crossing per event
    (PyFlink's ``key_by`` would run a Python key extractor first)."""
    jvm = get_gateway().jvm
    j_keyed = records._j_data_stream.keyBy(
        jvm.KeyByKeySelector(), Types.ROW([Types.STRING()]).get_java_type_info()
    )
    return KeyedStream(j_keyed, value_type, records)
