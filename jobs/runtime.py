"""Flink runtime wiring shared by the jobs: settings, shipped code, connector jar.

Every job builds its environment here so the tuned PyFlink settings (bundle size/time,
state cache) are the same locally and on Managed Service for Apache Flink, and so that
local runs behave like production: Python workers in their own processes, the project's
packages shipped to them, CBOR off towards the Kinesis emulator. The operators the jobs'
dataflows are built from are ``jobs.operators``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pyflink.common import Configuration
from pyflink.datastream import CheckpointingMode, StreamExecutionEnvironment
from pyflink.java_gateway import get_gateway
from pyflink.table import EnvironmentSettings, StreamTableEnvironment, TableEnvironment
from pyflink.util.java_utils import get_j_env_configuration

from pizzastream import run_directory, settings
from pizzastream.config import (
    REPO_ROOT,
    Props,
    is_local,
    load_properties,
    prepend_interpreter_to_path,
)
from pizzastream.settings import AwsSettings, FlinkTuningSettings

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
# Key groups of every keyed operator: fixed, so that state can be restored at any
# parallelism up to it (Flink's own default below parallelism 86, said explicitly).
MAX_PARALLELISM = 128


def _prepare_local_jvm(props: Props) -> None:
    """Must run before the first py4j call, which starts the JVM."""
    if not DEPENDENCIES_JAR.exists():
        sys.exit(f"{DEPENDENCIES_JAR} is missing: build it with `mvn -f deploy/pom.xml package`")
    if AwsSettings.from_group(props["Aws"]).endpoint:
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
    # The JVM's PATH names this interpreter's installation first. A job run in thread mode
    # (``python.execution-mode: thread``) embeds Python in the JVM (pemja), and CPython
    # started that way finds its standard library and site-packages from the first
    # ``python3`` on PATH (no program name is given it): another installation's there, such
    # as the system's beside a pyenv or virtualenv Python, gave it a foreign standard library
    # (``No module named '_struct'``) or no pemja. An activated virtualenv does the same.
    prepend_interpreter_to_path(os.environ, sys.executable)
    # Every temporary file of this run (the JVM's, and Python's here and in the workers,
    # which inherit TMPDIR) in one directory that goes when the run does.
    jvm_args = re.sub(r"\s*-Djava\.io\.tmpdir=\S*", "", os.environ.get("JVM_ARGS", ""))
    os.environ["JVM_ARGS"] = f"{jvm_args} -Djava.io.tmpdir={run_directory.claim()}".strip()


def _s3_settings(props: Props) -> dict[str, str]:
    """The S3 file system plugin's settings for the emulator (path-style, static keys);
    empty on AWS, where the plugin uses the application's role."""
    aws = AwsSettings.from_group(props["Aws"])
    if not aws.endpoint:
        return {}
    return {
        "s3.endpoint": aws.endpoint,
        "s3.path.style.access": "true",
        "s3.access-key": aws.access_key_id,
        "s3.secret-key": aws.secret_access_key,
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


def _tuning(props: Props) -> FlinkTuningSettings:
    """The ``FlinkTuning`` group, typed; every default where a deployment leaves it out."""
    return FlinkTuningSettings.from_group(props.get("FlinkTuning", {}))


def flink_configuration(props: Props, restore_from: str | None = None) -> Configuration:
    """The job's Flink settings; locally, ``restore_from`` (else ``PIZZASTREAM_RESTORE_FROM``)
    names the savepoint or retained checkpoint to start from."""
    if is_local():
        # The Configuration below starts the JVM when none runs yet: prepared first, or the
        # JVM (and every job of this process) talks CBOR to the Kinesis emulator.
        _prepare_local_jvm(props)
        # The JVM, and the Python workers it starts, run in this process's run directory,
        # as on MSF outside the code: a worker started in the repository would import the
        # packages from there (the working directory comes first on its path), ahead of
        # the copy shipped to it (``_ship_packages``, with the compiled core).
        with contextlib.chdir(run_directory.claim()):
            get_gateway()
    config = Configuration()
    tuning = _tuning(props)
    for key, value in tuning.python.items():
        config.set_string(key, value)
    if is_local():
        # MSF's state backend (RocksDB, incremental snapshots: an application cannot choose
        # another in code) with about a KPU's memory for it: local runs, tests and benchmarks
        # pay what state costs on MSF. ``state.*`` and ``taskmanager.memory.*`` keys in
        # FlinkTuning override them locally (the benchmarks compare).
        local = {
            **MSF_STATE_BACKEND,
            "taskmanager.memory.managed.size": (
                f"{MANAGED_MEMORY_PER_SLOT_MB * tuning.parallelism}m"
            ),
        }
        for key, value in {**local, **tuning.state_and_memory}.items():
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
    """``flink_configuration`` with, locally, the file systems loaded after the JVM started."""
    if not is_local():
        return flink_configuration(props)
    config = flink_configuration(props, restore_from)
    _initialize_file_systems(config)
    return config


def stream_environment(props: Props, restore_from: str | None = None) -> StreamExecutionEnvironment:
    env = StreamExecutionEnvironment.get_execution_environment(
        _started_configuration(props, restore_from)
    )
    env.set_max_parallelism(MAX_PARALLELISM)
    if is_local():
        # On MSF parallelism and checkpointing are application settings, not code.
        tuning = _tuning(props)
        env.set_parallelism(tuning.parallelism)
        env.enable_checkpointing(tuning.checkpoint_interval_ms, CheckpointingMode.EXACTLY_ONCE)
    # The order path's batchers hand every pending record downstream before a barrier passes
    # (pizzastream.flink.StoreBatcher): exactly-once with them needs aligned checkpoints.
    env.get_checkpoint_config().enable_unaligned_checkpoints(False)
    _ship_packages(env)
    return env


def _ship_packages(env: StreamExecutionEnvironment) -> None:
    """Ships the project's packages to the Python workers inside one directory of their own,
    with the order path's core compiled (``deploy.compiled_core``):
    Flink puts a shipped directory itself on the workers' PYTHONPATH, so shipping
    ``pizzastream/`` would make ``config`` importable, not ``pizzastream.config``. Workers
    import only this copy: on MSF they start outside the code, and locally in the process's
    run directory (``flink_configuration``)."""
    code = Path(tempfile.mkdtemp(prefix="pizzastream-code-", dir=run_directory.path()))
    atexit.register(shutil.rmtree, code, ignore_errors=True)
    for package in SHIPPED_PACKAGES:
        shutil.copytree(
            REPO_ROOT / package, code / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    for data in SHIPPED_DATA:
        if (REPO_ROOT / data).is_dir():
            shutil.copytree(REPO_ROOT / data, code / data)
    if is_local():
        # The order path's core compiled (deploy.compiled_core), beside its sources as in
        # the MSF zip, whose copy of the package already holds it.
        from deploy import compiled_core

        compiled_core.ship_into(code)
    env.add_python_file(str(code))


PYTHON_EXECUTION_MODE = "python.execution-mode"


@contextlib.contextmanager
def python_in_worker_processes(env: StreamExecutionEnvironment) -> Iterator[None]:
    """The Python operators added to ``env`` inside the block run in Python worker processes
    (``python.execution-mode: process``) whatever ``FlinkTuning`` says: PyFlink picks an
    operator's mode from the environment's configuration when the operator is added, so one
    job can run some functions embedded in the JVM (thread mode) and others in workers.
    For functions not proven in thread mode (``jobs.hourly_metrics.publish``)."""
    # the configuration PyFlink itself reads the mode from (the getter's is read-only)
    conf = get_j_env_configuration(env._j_stream_execution_environment)
    before = conf.toMap().get(PYTHON_EXECUTION_MODE)
    conf.setString(PYTHON_EXECUTION_MODE, "process")
    try:
        yield
    finally:
        if before is None:
            conf.removeKey(PYTHON_EXECUTION_MODE)
        else:
            conf.setString(PYTHON_EXECUTION_MODE, before)


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


def batch_table_environment(props: Props) -> TableEnvironment:
    """A bounded SQL run (``etl.metrics.run_batch``) with the jobs' jar, file
    systems and time zone; SQL only, so no Python is shipped."""
    config = _started_configuration(props)
    if is_local():
        config.set_string("parallelism.default", str(_tuning(props).parallelism))
    t_env = TableEnvironment.create(
        EnvironmentSettings.new_instance().in_batch_mode().with_configuration(config).build()
    )
    t_env.get_config().set("table.local-time-zone", "UTC")
    return t_env
