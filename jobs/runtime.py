"""Flink runtime wiring shared by the jobs: settings, shipped code, connector jar.

Every job builds its environment here so the tuned PyFlink settings (bundle size/time,
state cache) are the same locally and on Managed Service for Apache Flink, and so that
local runs behave like production: Python workers in their own processes, the project's
packages shipped to them, CBOR off towards the Kinesis emulator.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from pyflink.common import Configuration
from pyflink.common import Types
from pyflink.datastream import CheckpointingMode, DataStream, KeyedStream, StreamExecutionEnvironment
from pyflink.java_gateway import get_gateway
from pyflink.table import StreamTableEnvironment

from pizzastream.config import REPO_ROOT, is_local

DEPENDENCIES_JAR = REPO_ROOT / "deploy" / "target" / "pizzastream-deps.jar"
LOCAL_CHECKPOINTS = REPO_ROOT / ".stack" / "checkpoints"
# Local runs resume from this checkpoint or savepoint directory when it is set (on MSF the
# service restores from its own snapshots).
RESTORE_FROM_ENV = "PIZZASTREAM_RESTORE_FROM"
# File systems such as s3:// are Flink plugins; MSF provides its own, locally deploy/pom.xml
# copies flink-s3-fs-hadoop here.
PLUGINS_DIR = REPO_ROOT / "deploy" / "target" / "plugins"
SHIPPED_PACKAGES = ("pizzastream", "connectors", "jobs")


def _prepare_local_jvm(props: dict[str, dict[str, str]]) -> None:
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
    # Read by the gateway launcher and by the JVM's plugin loader.
    os.environ.setdefault("FLINK_PLUGINS_DIR", str(PLUGINS_DIR))


def _s3_settings(props: dict[str, dict[str, str]]) -> dict[str, str]:
    """The S3 file system plugin's settings for the emulator (path-style, static keys);
    empty on AWS, where the plugin uses the application's role."""
    aws = props["Aws"]
    if not aws.get("endpoint"):
        return {}
    return {"s3.endpoint": aws["endpoint"], "s3.path.style.access": "true",
            "s3.access-key": aws["access_key_id"], "s3.secret-key": aws["secret_access_key"]}


def _initialize_file_systems(config: Configuration) -> None:
    """A cluster loads its file system plugins at startup; the local mini-cluster does not,
    so without this ``s3://`` paths would have no file system."""
    jvm = get_gateway().jvm
    plugins = jvm.org.apache.flink.core.plugin.PluginUtils.createPluginManagerFromRootFolder(
        config._j_configuration)
    jvm.org.apache.flink.core.fs.FileSystem.initialize(config._j_configuration, plugins)


def flink_configuration(props: dict[str, dict[str, str]]) -> Configuration:
    config = Configuration()
    for key, value in props.get("FlinkTuning", {}).items():
        if key.startswith("python."):
            config.set_string(key, value)
    if is_local():
        config.set_string("pipeline.jars", DEPENDENCIES_JAR.as_uri())
        config.set_string("python.executable", sys.executable)
        config.set_string("python.client.executable", sys.executable)
        for key, value in _s3_settings(props).items():
            config.set_string(key, value)
    return config


def stream_environment(props: dict[str, dict[str, str]]) -> StreamExecutionEnvironment:
    if is_local():
        _prepare_local_jvm(props)
    config = flink_configuration(props)
    env = StreamExecutionEnvironment.get_execution_environment(config)
    if is_local():
        _initialize_file_systems(config)
    tuning = props.get("FlinkTuning", {})
    if is_local():
        # On MSF parallelism and checkpointing are application settings, not code.
        env.set_parallelism(int(tuning.get("parallelism", "1")))
        env.enable_checkpointing(
            int(tuning.get("checkpoint_interval_ms", "5000")), CheckpointingMode.EXACTLY_ONCE
        )
    for package in SHIPPED_PACKAGES:
        env.add_python_file(str(REPO_ROOT / package))
    return env


def table_environment(env: StreamExecutionEnvironment) -> StreamTableEnvironment:
    t_env = StreamTableEnvironment.create(env)
    t_env.get_config().set("table.local-time-zone", "UTC")
    return t_env


def first_seen(
    records: DataStream, id_field_by_kind: dict[str, str], ttl_ms: int
) -> tuple[DataStream, DataStream]:
    """Splits tagged records ``(partition_key, (kind, data))`` into first sightings and
    repeats of the same id (``id_field_by_kind`` names the JSON id field of each kind).

    Runs in the JVM (``pizzastream.flink.FirstSeenFilter``): a Python lookup of an id never
    seen before would cost a synchronous state round trip on every event."""
    jvm = get_gateway().jvm
    fields = jvm.java.util.HashMap()
    for kind, field in id_field_by_kind.items():
        fields.put(kind, field)
    record_type = jvm.pizzastream.flink.KeyedRawRecordSchema.TYPE
    unique = (
        records._j_data_stream.keyBy(jvm.pizzastream.flink.DedupKey(fields), Types.STRING().get_java_type_info())
        .process(jvm.pizzastream.flink.FirstSeenFilter(ttl_ms), record_type)
        .name("first-seen")
        .uid("first-seen")
    )
    repeats = unique.getSideOutput(jvm.pizzastream.flink.FirstSeenFilter.REPEATS)
    return DataStream(unique), DataStream(repeats)


def key_by_store(records: DataStream, value_type) -> KeyedStream:
    """Keys tagged records by their partition key (the store) in the JVM, so a keyed Python
    function receives ``value_type`` values with one JVM-Python crossing per event
    (PyFlink's ``key_by`` would run a Python key extractor first)."""
    jvm = get_gateway().jvm
    j_keyed = records._j_data_stream.keyBy(
        jvm.KeyByKeySelector(), Types.ROW([Types.STRING()]).get_java_type_info()
    )
    return KeyedStream(j_keyed, value_type, records)
