"""Starts one delivery worker: a KCL MultiLangDaemon reading the ``deliveries`` stream.

``run`` writes the daemon's properties file from the configuration (``kcl_properties``:
stream, lease table = application name, endpoints, polling retrieval, lease timings,
metrics level - NONE locally), a logback configuration, and then runs

    java -Daws.cborEnabled=false -cp 'deploy/kcl/target/jars/*'
         software.amazon.kinesis.multilang.MultiLangDaemon --properties-file <file> ...

in this process's process group, with ``AWS_CBOR_DISABLE=true`` and, when the
configuration names static keys (the emulator), those keys in the environment of the
daemon's ``DefaultCredentialsProvider``; on AWS the default chain finds the role. The
daemon starts one ``python -m delivery.processor`` per shard it leases.

SIGTERM/SIGINT are passed on to the daemon, which shuts down gracefully (record
processors get ``shutdown_requested`` and checkpoint). If this launcher dies, the kernel
sends the daemon SIGTERM (``PR_SET_PDEATHSIG``), so no orphan keeps its leases.

Lease assignment (``Delivery.kcl_client_version``). KCL 3's default has one leader
(a DynamoDB lock the KCL holds for 2 minutes, not configurable in 3.1.3) assign leases
by the workers' CPU use, which it can read only on EC2, ECS or EKS. Off AWS that goes
wrong twice: without a CPU metric the leader never rebalances (a second worker stays
idle while the first holds every shard), and a killed leader's shards wait out the
2-minute lock. Locally ``CLIENT_VERSION_CONFIG_COMPATIBLE_WITH_2X`` therefore runs the
2.x lease taker: every worker balances by lease count and takes leases not renewed for
``failoverTimeMillis`` itself, checking every 2 × ``failoverTimeMillis``. (KCL moves such
an application on to 3.x after 10 stable minutes; long enough for tests and the demo.)
Production leaves the key unset, i.e. KCL 3 with CPU-based balancing.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path

from pizzastream import run_directory
from pizzastream.config import REPO_ROOT, Props, stream_name
from pizzastream.settings import AwsSettings, DeliverySettings, StreamsSettings, need

log = logging.getLogger(__name__)

JARS_DIR = REPO_ROOT / "deploy" / "kcl" / "target" / "jars"
DAEMON_CLASS = "software.amazon.kinesis.multilang.MultiLangDaemon"
PROCESSOR_MODULE = "delivery.processor"

LOGBACK = """<configuration>
  <appender name="OUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%d{HH:mm:ss.SSS} %-5level [{worker}] %logger{30} - %msg%n</pattern></encoder>
  </appender>
  <logger name="software.amazon.kinesis" level="{level}"/>
  <!-- Lifecycle lines stay visible at any level. -->
  <logger name="software.amazon.kinesis.coordinator.Scheduler" level="INFO"/>
  <logger name="software.amazon.kinesis.multilang.MultiLangDaemon" level="INFO"/>
  <!-- The record processors' stderr is copied to the daemon's stderr verbatim already;
       this logger would repeat every line as an ERROR. -->
  <logger name="software.amazon.kinesis.multilang.DrainChildSTDERRTask" level="OFF"/>
  <root level="WARN"><appender-ref ref="OUT"/></root>
</configuration>
"""


def kcl_properties(
    props: Props, worker_id: str, kinesis_endpoint: str | None = None
) -> dict[str, str]:
    """The MultiLangDaemon's properties for one worker, all from configuration.

    ``kinesis_endpoint`` overrides ``Aws.endpoint`` for Kinesis only (the local h2c
    bridge). Keys of the ``Delivery`` group named ``kcl.<property>`` are passed through
    verbatim, to tune anything else the daemon accepts."""
    aws = AwsSettings.from_group(props["Aws"])
    group = DeliverySettings.from_group(props["Delivery"])
    result = {
        "executableName": f"{sys.executable} -m {PROCESSOR_MODULE}",
        "processingLanguage": f"python/{sys.version_info.major}.{sys.version_info.minor}",
        "streamName": stream_name(props, "deliveries"),
        "applicationName": need(group.kcl_application_name, "Delivery", "kcl_application_name"),
        "workerId": worker_id,
        "regionName": aws.region,
        "AwsCredentialsProvider": "DefaultCredentialsProvider",
        "initialPositionInStream": group.kcl_initial_position
        or StreamsSettings.from_group(props["Streams"]).initial_position
        or "TRIM_HORIZON",
        "retrievalMode": "POLLING",
        "maxRecords": str(group.kcl_max_records),
        "idleTimeBetweenReadsInMillis": str(group.kcl_idle_between_reads_ms),
        "failoverTimeMillis": str(group.kcl_failover_ms),
        # Also how long the first shard sync pauses after creating leases: keep it short
        # locally, or a fresh application idles for a minute before processing.
        "shardSyncIntervalMillis": str(group.kcl_shard_sync_ms),
        "parentShardPollIntervalMillis": str(group.kcl_parent_shard_poll_ms),
        "metricsLevel": group.kcl_metrics_level,  # locally NONE
        "shutdownGraceMillis": str(group.kcl_shutdown_grace_ms),
        "leaseTableDeletionProtectionEnabled": "false",
        "leaseTablePitrEnabled": "false",
    }
    # KCL 3 lease assignment: the leader assigns leases (new, or expired after
    # failoverTimeMillis without renewal) every leaseAssignmentIntervalMillis, to workers
    # that have reported their metrics (every workerMetricsReporterFreqInMillis).
    # clientVersionConfig: see the module docstring; locally the 2.x-compatible lease taker.
    optional = {
        "clientVersionConfig": group.kcl_client_version,
        "maxLeasesToStealAtOneTime": group.kcl_max_leases_to_steal,
        "leaseAssignmentIntervalMillis": group.kcl_lease_assignment_ms,
        "workerMetricsReporterFreqInMillis": group.kcl_worker_metrics_report_ms,
    }
    for name, value in optional.items():
        if value:
            result[name] = str(value)
    if aws.endpoint:
        result["kinesisEndpoint"] = kinesis_endpoint or aws.endpoint
        result["dynamoDBEndpoint"] = aws.endpoint
    result.update(group.kcl)
    return result


def render_properties(mapping: Mapping[str, str]) -> str:
    lines = ["# Generated by delivery.daemon from the configuration; do not edit."]
    lines += [f"{key} = {value}" for key, value in mapping.items()]
    return "\n".join(lines) + "\n"


def cbor_enabled(props: Props) -> bool:
    return DeliverySettings.from_group(props["Delivery"]).kcl_cbor_enabled


def java_command(
    props: Props, properties_file: Path, logback_file: Path, temp_dir: Path | None = None
) -> list[str]:
    """The MultiLangDaemon's command line; its JVM keeps its temporary files in
    ``temp_dir`` (the worker's run directory), not the system's."""
    if not JARS_DIR.is_dir() or not any(JARS_DIR.glob("amazon-kinesis-client-multilang-*.jar")):
        raise SystemExit(f"no KCL jars in {JARS_DIR}: run scripts/setup_kcl.sh")
    java = shutil.which("java") or "java"
    options = shlex.split(DeliverySettings.from_group(props["Delivery"]).kcl_java_opts)
    if temp_dir is not None:
        options.append(f"-Djava.io.tmpdir={temp_dir}")
    if not cbor_enabled(props):
        options.append("-Daws.cborEnabled=false")
    return [
        java,
        *options,
        "-cp",
        str(JARS_DIR / "*"),
        DAEMON_CLASS,
        "--properties-file",
        str(properties_file),
        "--log-configuration",
        str(logback_file),
    ]


def daemon_env(props: Props) -> dict[str, str]:
    env = dict(os.environ)
    if not cbor_enabled(props):
        env["AWS_CBOR_DISABLE"] = "true"
    aws = AwsSettings.from_group(props["Aws"])
    credentials = aws.credentials()
    if credentials:
        env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"] = credentials
    env.setdefault("AWS_REGION", aws.region)
    # The record processors run `python -m delivery.processor` and must find the repo.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def _die_with_parent() -> None:
    """In the daemon's child process, before exec: SIGTERM when the launcher dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def prepare(
    props: Props, worker_id: str, run_dir: Path, kinesis_endpoint: str | None = None
) -> tuple[Path, Path]:
    run_dir.mkdir(parents=True, exist_ok=True)
    properties_file = run_dir / "delivery.properties"
    properties_file.write_text(
        render_properties(kcl_properties(props, worker_id, kinesis_endpoint))
    )
    logback_file = run_dir / "delivery-logback.xml"
    logback_file.write_text(
        LOGBACK.replace("{worker}", worker_id).replace(
            "{level}", DeliverySettings.from_group(props["Delivery"]).kcl_log_level
        )
    )
    return properties_file, logback_file


def needs_bridge(props: Props) -> bool:
    """Only a plain-HTTP emulator needs the h2c bridge (see ``delivery.h2c_bridge``)."""
    endpoint = AwsSettings.from_group(props["Aws"]).endpoint
    return endpoint.startswith("http://") and DeliverySettings.from_group(
        props["Delivery"]
    ).kcl_h2c_bridge in ("auto", "true")


def run(props: Props, worker_id: str | None = None, run_dir: Path | None = None) -> int:
    """Runs the worker until the daemon exits or this process is told to stop.

    The generated files go to ``run_dir``, by default this process's run directory
    (``pizzastream.run_directory``: removed when the worker ends, or by the next start on
    the machine if it was killed), where the daemon's JVM and the record processors it
    starts keep their temporary files too."""
    worker_id = worker_id or f"delivery-{os.uname().nodename}-{uuid.uuid4().hex[:8]}"
    run_dir = run_dir or run_directory.claim() / "delivery"
    bridge = None
    try:
        kinesis_endpoint = None
        if needs_bridge(props):
            from delivery.h2c_bridge import H2cBridge

            endpoint = AwsSettings.from_group(props["Aws"]).endpoint
            bridge = H2cBridge(endpoint).start()
            kinesis_endpoint = bridge.url
            log.info("kinesis through the h2c bridge %s -> %s", bridge.url, endpoint)
        properties_file, logback_file = prepare(props, worker_id, run_dir, kinesis_endpoint)
        command = java_command(props, properties_file, logback_file, run_directory.path())
        log.info("worker %s: %s", worker_id, " ".join(command))
        child = subprocess.Popen(command, env=daemon_env(props), preexec_fn=_die_with_parent)

        def forward(signum, _frame):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        return child.wait()
    finally:
        if bridge is not None:
            bridge.stop()
