"""The MSF application zip started the way MSF starts it, against the local stack.

MSF unpacks the zip, writes the application's property groups to
``/etc/flink/application_properties.json`` and runs ``flink run`` with the zip's run options
(``python`` as ``-py``, ``pyFiles`` as ``-pyfs``, ``jarfile`` as ``-j``) on a Python that has
PyFlink and what it requires, nothing else. A module the zip lacks, a dependency left out of
``python-deps`` or a wrong path then ends as "Python process exits with code 1" at start, or
in a Python worker at the first record while the job still shows RUNNING. So here: the zip
is unpacked into an empty directory; each job's property groups are rendered from its
``deploy/msf/<job>.json`` for the local stack (passwords in the local Secrets Manager, named
by ``password_secret_arn`` as on AWS) into a file the job reads as MSF's
(``PIZZASTREAM_MSF_PROPERTIES``); the three jobs are submitted from that directory to one
standalone cluster whose Python has only apache-flink's distributions and whose processes
start outside the repository, with no ``PYTHONPATH`` and no ``PIZZASTREAM__`` override.
Orders put on ``orders`` must then come out of all three: a final status in Redis for each
(order_enrichment, inventory_windowing) and the live view of their sales (hourly_metrics).
The cluster restarts no job (MSF would, for ever): a failure anywhere, such as a Python
worker that cannot import what it was shipped, fails its job and the test at once, with
the job's root exception.

The zip is ``deploy/package.sh``'s, rebuilt first when it is stale (``_zip_is_stale``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from connectors import aws, redis_store
from deploy import msf
from jobs.runtime import PLUGINS_DIR, _s3_settings
from pizzastream.config import ENV_MSF_FILE, REPO_ROOT
from simulation.traffic import VALID
from stack.flink_cluster import StandaloneCluster
from stack.generate import send_orders
from tests.deploy.test_deployed_reads import _distributions
from tests.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

JOBS = msf.jobs()
ORDERS = 40
# What the zip is built from (deploy/package.sh, deploy/assembly/msf-zip.xml, deploy/pom.xml).
ZIP_SOURCES = [
    REPO_ROOT / "deploy" / name
    for name in (
        "package.sh",
        "requirements-msf.txt",
        "pom.xml",
        "assembly/msf-zip.xml",
        "certs.py",
        "compiled_core.py",
        "package-lock.json",
    )
]
ZIP_SOURCE_TREES = ("jobs", "pizzastream", "connectors", "etl")
# What the local stack needs where AWS needs nothing: the emulator's endpoint and keys (on
# AWS the application's role), the local Redis server's own CA (ElastiCache's is trusted).
LOCAL_STACK_ONLY = {
    "Aws": ("endpoint", "access_key_id", "secret_access_key"),
    "Redis": ("tls_ca_file",),
}
# The local PostgreSQL serves no TLS; Aurora and Redshift serve only TLS (``sslmode``). The
# CA bundle (``sslrootcert``) stays: it must name a file of the unpacked zip.
TLS_ONLY_ON_AWS = {"Aurora": "sslmode", "Warehouse": "sslmode"}


def _zip_is_stale() -> bool:
    """Missing; a project file it packs changed since (by content: a file edited while the
    zip was being built is newer and older at once); or a build input is newer than it."""
    if not msf.ZIP_PATH.exists():
        return True
    built = msf.ZIP_PATH.stat().st_mtime
    with zipfile.ZipFile(msf.ZIP_PATH) as archive:
        for name in archive.namelist():
            if name.split("/", 1)[0] in ZIP_SOURCE_TREES and name.endswith(".py"):
                source = REPO_ROOT / name
                if not source.exists() or source.read_bytes() != archive.read(name):
                    return True
    sources = [*ZIP_SOURCES, *(REPO_ROOT / "connectors" / "jvm").rglob("*.java")]
    for tree in ZIP_SOURCE_TREES:
        sources += (REPO_ROOT / tree).rglob("*.py")
    return max(path.stat().st_mtime for path in sources) > built


@pytest.fixture(scope="module")
def msf_zip() -> Path:
    if _zip_is_stale():
        subprocess.run(
            ["bash", str(msf.DEPLOY_DIR / "package.sh")],
            check=True,
            timeout=900,
            env={**os.environ, "PY": sys.executable},
        )
    return msf.ZIP_PATH


@pytest.fixture(scope="module")
def msf_python(tmp_path_factory) -> Path:
    """A Python with what MSF's runtime provides: a bare venv whose only packages are
    apache-flink and the distributions it requires (linked from this venv)."""
    root = tmp_path_factory.mktemp("msf-python")
    provided = root / "provided"
    provided.mkdir()
    for name in _distributions(["apache-flink"]):
        distribution = metadata.distribution(name)
        for top in {file.parts[0] for file in distribution.files or []}:
            if (
                top not in ("..", "__pycache__")
                and not top.endswith(".pth")
                and not (provided / top).exists()
            ):
                (provided / top).symlink_to(Path(str(distribution.locate_file(top))))
    # CPython's interpreter this venv was made from; typeshed leaves the attribute out.
    base_python = sys._base_executable  # type: ignore[attr-defined]
    subprocess.run([base_python, "-m", "venv", "--without-pip", str(root / "venv")], check=True)
    (site,) = (root / "venv" / "lib").glob("python3*/site-packages")
    (site / "msf-runtime.pth").write_text(f"{provided}\n")
    python = root / "venv" / "bin" / "python"
    # The premise: PyFlink is there; what the zip must bring, and the project, are not.
    probe = (
        "import pyflink.datastream\n"
        "for name in ('psycopg', 'redis', 'boto3', 'pizzastream'):\n"
        "    try:\n        __import__(name)\n    except ImportError:\n        continue\n"
        "    raise SystemExit(name + ' is importable')\n"
    )
    subprocess.run([str(python), "-c", probe], check=True, cwd=root, env=_outside_repository())
    return python


def _outside_repository() -> dict[str, str]:
    """This process's environment without a way into the repository or the local
    configuration: no ``PYTHONPATH``, venv or ``PIZZASTREAM_*`` variable."""
    return {
        name: value
        for name, value in os.environ.items()
        if name not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
        and not name.startswith("PIZZASTREAM")
    }


def _secrets(props) -> dict[str, str]:
    """The local passwords as Secrets Manager secrets (JSON with ``password``, as RDS
    writes them), named as ``deploy/environments/*.json`` names them."""
    client = aws.client(props, "secretsmanager")
    run = uuid.uuid4().hex[:8]
    return {
        name: client.create_secret(
            Name=f"pizzastream-local-{run}/{name}",
            SecretString=json.dumps({"password": props[group]["password"]}),
        )["ARN"]
        for name, group in (("aurora", "Aurora"), ("warehouse", "Warehouse"), ("redis", "Redis"))
    }


def _environment(props, secrets: dict[str, str]) -> dict:
    """The local stack as a ``deploy/environments/<env>.json``."""

    def keys(group: str, *names: str) -> dict[str, str]:
        return {name: props[group][name] for name in names}

    return {
        "aws": {"account_id": props["Aws"]["account_id"], "region": props["Aws"]["region"]},
        "name_prefix": "pizzastream-local",
        "code": {"bucket": "pizzastream-local-code", "prefix": "msf"},
        "streams": dict(props["Streams"]),
        "aurora": keys("Aurora", "host", "port", "dbname", "user"),
        "warehouse": keys("Warehouse", "host", "port", "dbname", "user", "engine", "iam_role"),
        # The local stack runs one Redis server, never a cluster (stack.services refuses it).
        "redis": {**keys("Redis", "host", "port", "user"), "cluster_mode": False},
        "lake": {"bucket": props["Lake"]["bucket"]},
        "secrets": secrets,
        "vpc": {"subnet_ids": ["subnet-local"], "security_group_ids": ["sg-local"]},
        "jobs": {
            job: {"parallelism": 1, "parallelism_per_kpu": 1, "autoscaling": False} for job in JOBS
        },
    }


def _property_groups(job: str, props, env_file: Path, app: Path) -> list[dict]:
    """The job's property groups as deployed (``msf.render``), plus ``LOCAL_STACK_ONLY``,
    without TLS to PostgreSQL (the CA bundle it names is checked to be in ``app``)."""
    aws_env = msf.load_environment(env_file)["aws"]
    body = msf.render(job, aws_env["account_id"], aws_env["region"], env_file)
    groups = body["ApplicationConfiguration"]["EnvironmentProperties"]["PropertyGroups"]
    for group in groups:
        name, values = group["PropertyGroupId"], group["PropertyMap"]
        values.update({key: props[name][key] for key in LOCAL_STACK_ONLY.get(name, ())})
        if name in TLS_ONLY_ON_AWS:
            assert values.pop(TLS_ONLY_ON_AWS[name]) == "verify-full", name
            assert (app / values["sslrootcert"]).is_file(), (name, values["sslrootcert"])
    return groups


def _causes(cluster: StandaloneCluster, job_id: str) -> str:
    """The end of a failed job's root exception without its stack frames: the causes, with
    a Python worker's traceback and error among them."""
    text = cluster.rest(f"/jobs/{job_id}/exceptions").get("root-exception") or ""
    lines = [
        line
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith(("at ", "... "))
    ]
    return "\n".join(lines[-40:])


def test_msf_zip_runs_every_job_as_msf_starts_it(clean_stack, msf_zip, msf_python, tmp_path):
    props = clean_stack
    app = tmp_path / "app"
    app.mkdir()
    with zipfile.ZipFile(msf_zip) as archive:
        archive.extractall(app)
    env_file = tmp_path / "local.json"
    env_file.write_text(json.dumps(_environment(props, _secrets(props))))
    cluster_dir = tmp_path / "cluster"
    cluster = StandaloneCluster(
        cluster_dir,
        task_managers=1,
        slots=len(JOBS),
        python=str(msf_python),
        cwd=cluster_dir,
        environ=_outside_repository(),
        plugins=PLUGINS_DIR,
        settings={**_s3_settings(props), "restart-strategy.type": "none"},
    )
    with cluster:
        started = {}
        for job in JOBS:
            groups = _property_groups(job, props, env_file, app)
            properties = tmp_path / f"{job}-application_properties.json"
            properties.write_text(json.dumps(groups))
            (run_options,) = (
                g["PropertyMap"] for g in groups if g["PropertyGroupId"] == msf.RUN_OPTIONS
            )
            started[job] = cluster.run_packaged_job(
                app, run_options, env={ENV_MSF_FILE: str(properties)}
            )
        for job_id in started.values():
            cluster.wait_running(job_id)

        report = send_orders(props, ORDERS, bad_share=0.0)
        redis = redis_store.client(props)

        def outputs():
            for job, job_id in started.items():
                state = cluster.job(job_id)["state"]
                assert state == "RUNNING", f"{job} {state}: {_causes(cluster, job_id)}"
            return (
                len(list(redis.scan_iter(match=redis_store.order_status_key("*")))),
                len(list(redis.scan_iter(match="live:*"))),
            )

        wait_for(
            "a final status of every order and the live view of their sales",
            outputs,
            lambda found: found[0] >= report.by_kind[VALID] and found[1] > 0,
            300,
        )
        for job_id in started.values():
            cluster.cancel(job_id)
