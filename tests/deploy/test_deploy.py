"""Deployment to Managed Service for Apache Flink: the rendered application definitions, the
least-privilege IAM policies, ``python -m deploy submit`` and the application zip.

Submitting runs against an in-process moto server. Moto's kinesisanalyticsv2 creates,
lists and describes applications but has no UpdateApplication, so the update path answers
from a botocore Stubber (which still validates the request against the real API model).
Only the zip build (Maven, pip downloads) is slow.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import urllib.request
import zipfile
from collections import defaultdict
from types import SimpleNamespace

import boto3
import pytest
from botocore.stub import Stubber
from botocore.validate import validate_parameters

from deploy import certs, msf
from deploy.__main__ import main
from deploy.submit import submit
from pizzastream.config import LOCAL_PROPERTIES, REPO_ROOT

EXAMPLE = msf.ENVIRONMENTS_DIR / "prod.example.json"
ACCOUNT, REGION = "111122223333", "us-east-1"
JOBS = msf.jobs()

SOURCE_ACTIONS = {
    "kinesis:DescribeStream",
    "kinesis:DescribeStreamSummary",
    "kinesis:GetRecords",
    "kinesis:GetShardIterator",
    "kinesis:ListShards",
}
SINK_ACTIONS = {"kinesis:ListShards", "kinesis:PutRecord", "kinesis:PutRecords"}
# AWS has no resource-level permissions for these: the only actions allowed on "*".
DESCRIBE_ONLY = {
    "ec2:DescribeDhcpOptions",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeSubnets",
    "ec2:DescribeVpcs",
}
# Keys of the local configuration that MSF replaces: emulator endpoint and keys (the
# application's role instead), parallelism and checkpointing (application settings).
# What production sets instead of a local key: passwords come from Secrets Manager at
# start (pizzastream.config.resolve_secrets), over TLS (the server verified against the CA
# bundle every package carries).
DATABASE_TLS = {"sslmode", "sslrootcert"}
ON_AWS_INSTEAD = {
    "Aurora": ({"password"}, {"password_secret_arn", *DATABASE_TLS}),
    "Warehouse": ({"password"}, {"password_secret_arn", *DATABASE_TLS}),
    "Redis": ({"password"}, {"password_secret_arn"}),
}
LOCAL_ONLY = {
    "Aws": {"endpoint", "access_key_id", "secret_access_key"},
    "FlinkTuning": {"parallelism", "checkpoint_interval_ms"},
    "Warehouse": {"stand_in"},
    # ElastiCache's certificates chain to a CA in the JVM's and Python's own
    # trust stores; only the local server's self-made CA needs naming.
    "Redis": {"tls_ca_file"},
}
LAKE_WRITERS = {"hourly_metrics"}  # ../shared/CONTRACT.md: hourly store metrics to S3


def _groups(body: dict) -> dict[str, dict[str, str]]:
    return {
        g["PropertyGroupId"]: g["PropertyMap"]
        for g in body["ApplicationConfiguration"]["EnvironmentProperties"]["PropertyGroups"]
    }


def _listed(value) -> list:
    return value if isinstance(value, list) else [value]


def _streams_in_docs() -> dict[str, tuple[set[str], set[str]]]:
    """``{job: (streams it reads, streams it writes)}`` from the table in docs/streams.md."""
    text = (REPO_ROOT / "docs" / "streams.md").read_text()
    table = text.split("## Kinesis streams", 1)[1].split("\n#", 1)[0]
    uses: dict[str, tuple[set[str], set[str]]] = {job: (set(), set()) for job in JOBS}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        for job, (reads, writes) in uses.items():
            if re.search(rf"\b{job}\b", cells[2]):
                reads.add(cells[0].strip("`"))
            if re.search(rf"\b{job}\b", cells[1]):
                writes.add(cells[0].strip("`"))
    return uses


# --- application definitions -------------------------------------------------------------


@pytest.mark.parametrize("job", JOBS)
def test_application_is_a_valid_create_request_for_flink_1_20(job):
    body = msf.render(job, ACCOUNT, REGION, EXAMPLE)
    model = boto3.client("kinesisanalyticsv2", region_name=REGION).meta.service_model
    validate_parameters(body, model.operation_model("CreateApplication").input_shape)
    assert "${" not in json.dumps(body)
    assert body["RuntimeEnvironment"] == "FLINK-1_20"
    assert _groups(body)[msf.RUN_OPTIONS] == {
        "python": f"jobs/{job}.py",
        "jarfile": "lib/pizzastream-deps.jar",
        "pyFiles": "python-deps",
    }
    config = body["ApplicationConfiguration"]
    flink = config["FlinkApplicationConfiguration"]
    assert flink["CheckpointConfiguration"]["CheckpointingEnabled"] is True
    assert flink["CheckpointConfiguration"]["CheckpointInterval"] > 0
    assert flink["ParallelismConfiguration"]["AutoScalingEnabled"] is True
    assert config["ApplicationSnapshotConfiguration"]["SnapshotsEnabled"] is True
    assert config["VpcConfigurations"][0]["SubnetIds"][0].startswith("subnet-")
    assert body["ServiceExecutionRole"] == f"arn:aws:iam::{ACCOUNT}:role/{body['ApplicationName']}"


@pytest.mark.parametrize("job", JOBS)
def test_property_groups_carry_what_the_local_configuration_has(job):
    """The same groups and keys as conf/local (a key added there must be decided for
    production too), minus what MSF provides; Streams names exactly the job's streams."""
    local = {
        g["PropertyGroupId"]: set(g["PropertyMap"])
        for g in json.loads(LOCAL_PROPERTIES.read_text())
    }
    groups = _groups(msf.render(job, ACCOUNT, REGION, EXAMPLE))
    for group, properties in groups.items():
        if group not in (msf.RUN_OPTIONS, "Streams"):
            dropped, added = ON_AWS_INSTEAD.get(group, (set(), set()))
            expected = local[group] - LOCAL_ONLY.get(group, set()) - dropped | added
            assert set(properties) == expected, group
    reads, writes = _streams_in_docs()[job]
    streams = dict(groups["Streams"])
    assert streams.pop("initial_position") == "TRIM_HORIZON"
    assert set(streams) <= local["Streams"]
    assert set(streams.values()) == reads | writes


@pytest.mark.parametrize("job", JOBS)
def test_databases_are_verified_with_the_bundle_the_zip_carries(job):
    """``verify-full``: TLS, Aurora's (Redshift's) certificate verified against the RDS CA
    bundle at the path package.sh puts it in the zip, relative to the application's root."""
    groups = _groups(msf.render(job, ACCOUNT, REGION, EXAMPLE))
    databases = [group for group in ("Aurora", "Warehouse") if group in groups]
    assert databases
    for group in databases:
        assert groups[group]["sslmode"] == "verify-full", group
        assert groups[group]["sslrootcert"] == str(certs.BUNDLE), group


def test_example_environment_has_no_static_keys():
    assert set(msf.load_environment(EXAMPLE)["aws"]) == {"account_id", "region"}


# --- IAM -------------------------------------------------------------------------------


@pytest.mark.parametrize("job", JOBS)
def test_policy_has_no_wildcards_beyond_what_aws_requires(job):
    policy = msf.render_role(job, ACCOUNT, REGION, EXAMPLE)["PolicyDocument"]
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource", "Condition"}
        actions, resources = _listed(statement["Action"]), _listed(statement["Resource"])
        assert not any("*" in action for action in actions), statement["Sid"]
        if "*" in resources:
            assert resources == ["*"] and set(actions) <= DESCRIBE_ONLY, statement["Sid"]
        else:
            assert all(f":{ACCOUNT}:" in r or r.startswith("arn:aws:s3:::") for r in resources)


@pytest.mark.parametrize("job", JOBS)
def test_policy_names_exactly_the_streams_the_job_uses(job):
    """docs/streams.md decides: read actions on the streams a job reads, write actions on
    the streams it writes, nothing on any other stream."""
    policy = msf.render_role(job, ACCOUNT, REGION, EXAMPLE)["PolicyDocument"]
    granted = defaultdict(set)
    for statement in policy["Statement"]:
        kinesis = {a for a in _listed(statement["Action"]) if a.startswith("kinesis:")}
        for resource in _listed(statement["Resource"]) if kinesis else []:
            assert resource.startswith(f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/")
            granted[resource.rsplit("/", 1)[1]] |= kinesis
    reads, writes = _streams_in_docs()[job]
    assert reads, f"docs/streams.md names no stream {job} reads"
    expected = defaultdict(set)
    for stream in reads:
        expected[stream] |= SOURCE_ACTIONS
    for stream in writes:
        expected[stream] |= SINK_ACTIONS
    assert granted == expected


@pytest.mark.parametrize("job", JOBS)
def test_policy_reads_only_its_own_code_and_writes_s3_only_under_its_prefixes(job):
    body = msf.render(job, ACCOUNT, REGION, EXAMPLE)
    code = body["ApplicationConfiguration"]["ApplicationCodeConfiguration"]["CodeContent"][
        "S3ContentLocation"
    ]
    lake = msf.load_environment(EXAMPLE)["lake"]["bucket"]
    expected = {f"{code['BucketARN']}/{code['FileKey']}": {"s3:GetObject", "s3:GetObjectVersion"}}
    if job in LAKE_WRITERS:
        # the lake, and the warehouse load files of the stream on Redshift
        for prefix in ("lake/*", "warehouse/loads/hourly_store_metrics/stream/*"):
            expected[f"arn:aws:s3:::{lake}/{prefix}"] = {
                "s3:AbortMultipartUpload",
                "s3:DeleteObject",
                "s3:GetObject",
                "s3:ListMultipartUploadParts",
                "s3:PutObject",
            }
        expected[f"arn:aws:s3:::{lake}"] = {"s3:ListBucket", "s3:ListBucketMultipartUploads"}
    granted = defaultdict(set)
    policy = msf.render_role(job, ACCOUNT, REGION, EXAMPLE)["PolicyDocument"]
    for statement in policy["Statement"]:
        s3 = {a for a in _listed(statement["Action"]) if a.startswith("s3:")}
        for resource in _listed(statement["Resource"]) if s3 else []:
            granted[resource] |= s3
        if "s3:ListBucket" in s3:
            assert statement["Condition"] == {
                "StringLike": {
                    "s3:prefix": ["lake/*", "warehouse/loads/hourly_store_metrics/stream/*"]
                }
            }
    assert granted == expected


@pytest.mark.parametrize("job", JOBS)
def test_role_trusts_only_the_jobs_own_application(job):
    body = msf.render(job, ACCOUNT, REGION, EXAMPLE)
    role = msf.render_role(job, ACCOUNT, REGION, EXAMPLE)
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "kinesisanalytics.amazonaws.com"}
    assert trust["Condition"] == {
        "StringEquals": {"aws:SourceAccount": ACCOUNT},
        "ArnEquals": {
            "aws:SourceArn": f"arn:aws:kinesisanalytics:{REGION}:{ACCOUNT}:"
            f"application/{body['ApplicationName']}"
        },
    }
    assert body["ServiceExecutionRole"].endswith(f":role/{role['RoleName']}")
    logs = [
        s["Resource"]
        for s in role["PolicyDocument"]["Statement"]
        if s["Action"] == ["logs:PutLogEvents"]
    ]
    assert logs == [body["CloudWatchLoggingOptions"][0]["LogStreamARN"]]


def test_iam_command_prints_the_role(capsys):
    main(["iam", "order_enrichment", "--env", str(EXAMPLE)])
    role = json.loads(capsys.readouterr().out)
    assert role["RoleName"] == "pizzastream-prod-order-enrichment"


# --- python dependencies ------------------------------------------------------------------


def test_msf_dependencies_are_pinned_within_the_tested_ranges():
    import tomllib

    from packaging.requirements import Requirement

    def requirements(lines):
        lines = (line.split("#", 1)[0].strip() for line in lines)
        return {
            r.name: r
            for r in map(Requirement, (line for line in lines if line and not line.startswith("-")))
        }

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    tested = requirements(project["dependencies"])
    shipped = requirements((msf.DEPLOY_DIR / "requirements-msf.txt").read_text().splitlines())
    assert "apache-flink" not in shipped  # MSF provides it
    for name, requirement in shipped.items():
        (pin,) = requirement.specifier
        assert pin.operator == "==", name
        assert tested[name].specifier.contains(pin.version), name
        assert requirement.extras == tested[name].extras, name


def test_msf_and_lambda_pins_are_the_runtime_locks():
    """deploy/package.sh and deploy/packages.py install their own short lists for MSF's and
    Lambda's platform (CPython 3.11 wheels: the lock as a whole does not resolve there, its
    soupsieve needs Python 3.11.5), each pinned at the version the tests ran."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    from deploy import packages
    from tests.project.test_locks import pins

    locked = pins("requirements-runtime.lock")
    for requirements in (msf.DEPLOY_DIR / "requirements-msf.txt", packages.LAMBDA_REQUIREMENTS):
        for line in requirements.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                requirement = Requirement(line)
                (pin,) = requirement.specifier
                assert locked[canonicalize_name(requirement.name)] == pin.version, (
                    requirements.name,
                    line,
                )


# --- submit -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws(moto_endpoint, tmp_path):
    """A fresh moto account (123456789012) with a versioned code bucket and the database
    secrets, and an environment file that points there."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST"))
    keys = {"endpoint": moto_endpoint, "access_key_id": "testing", "secret_access_key": "testing"}
    env = msf.load_environment(EXAMPLE)
    env["aws"] = {"account_id": "123456789012", "region": REGION, **keys}

    def client(service):
        return boto3.client(
            service,
            region_name=REGION,
            endpoint_url=moto_endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    s3 = client("s3")
    s3.create_bucket(Bucket=env["code"]["bucket"])
    s3.put_bucket_versioning(
        Bucket=env["code"]["bucket"], VersioningConfiguration={"Status": "Enabled"}
    )
    secrets = client("secretsmanager")
    for name in env["secrets"]:
        env["secrets"][name] = secrets.create_secret(
            Name=name, SecretString=json.dumps({"username": "flink", "password": f"pw-{name}"})
        )["ARN"]
    env_file = tmp_path / "moto.json"
    env_file.write_text(json.dumps(env))
    return SimpleNamespace(env_file=env_file, env=env, client=client)


@pytest.fixture
def app_zip(tmp_path):
    """A stand-in for the real zip (slow to build), with the files the run options name."""
    path = tmp_path / "pizzastream-msf.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name in (
            *(f"jobs/{job}.py" for job in JOBS),
            "lib/pizzastream-deps.jar",
            "python-deps/psycopg/__init__.py",
        ):
            archive.writestr(name, "")
    return path


def _code_object(aws, job):
    key = f"{aws.env['code']['prefix']}/{job}/pizzastream-msf.zip"
    return aws.client("s3").head_object(Bucket=aws.env["code"]["bucket"], Key=key)


def test_submit_uploads_the_zip_and_creates_the_application(aws, app_zip):
    submit("order_enrichment", aws.env_file, app_zip, out=lambda line: None)
    detail = aws.client("kinesisanalyticsv2").describe_application(
        ApplicationName="pizzastream-prod-order-enrichment"
    )["ApplicationDetail"]
    config = detail["ApplicationConfigurationDescription"]
    code = config["ApplicationCodeConfigurationDescription"]["CodeContentDescription"][
        "S3ApplicationCodeLocationDescription"
    ]
    assert code["ObjectVersion"] == _code_object(aws, "order_enrichment")["VersionId"]
    groups = {
        g["PropertyGroupId"]: g["PropertyMap"]
        for g in config["EnvironmentPropertyDescriptions"]["PropertyGroupDescriptions"]
    }
    # The password stays in Secrets Manager: the application names the secret only.
    assert "password" not in groups["Aurora"]
    assert groups["Aurora"]["password_secret_arn"] == aws.env["secrets"]["aurora"]
    assert groups["Aws"] == {"region": REGION, "account_id": "123456789012"}


def test_submit_updates_an_existing_application_from_its_current_version(aws, app_zip):
    name = "pizzastream-prod-inventory-windowing"
    flink = boto3.client(
        "kinesisanalyticsv2",
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    app = {
        "ApplicationARN": f"arn:aws:kinesisanalytics:{REGION}:123456789012:application/{name}",
        "ApplicationName": name,
        "RuntimeEnvironment": "FLINK-1_20",
        "ApplicationStatus": "RUNNING",
        "ApplicationVersionId": 7,
    }
    stub = Stubber(flink)
    stub.add_response("list_applications", {"ApplicationSummaries": [app]})
    stub.add_response(
        "describe_application",
        {
            "ApplicationDetail": {
                **app,
                "ApplicationConfigurationDescription": {
                    "VpcConfigurationDescriptions": [
                        {
                            "VpcConfigurationId": "2.1",
                            "VpcId": "vpc-1",
                            "SubnetIds": ["subnet-old"],
                            "SecurityGroupIds": ["sg-old"],
                        }
                    ]
                },
                "CloudWatchLoggingOptionDescriptions": [
                    {"CloudWatchLoggingOptionId": "3.1", "LogStreamARN": "arn:aws:logs:old"}
                ],
            }
        },
        {"ApplicationName": name},
    )
    # The request itself is checked below; the Stubber validates it against the API model.
    stub.add_response(
        "update_application",
        {"ApplicationDetail": {**app, "ApplicationStatus": "UPDATING", "ApplicationVersionId": 8}},
    )

    with stub:
        request = submit(
            "inventory_windowing",
            aws.env_file,
            app_zip,
            out=lambda line: None,
            client=lambda service: (
                flink if service == "kinesisanalyticsv2" else aws.client(service)
            ),
        )
    stub.assert_no_pending_responses()
    assert request["CurrentApplicationVersionId"] == 7
    update = request["ApplicationConfigurationUpdate"]
    location = update["ApplicationCodeConfigurationUpdate"]["CodeContentUpdate"][
        "S3ContentLocationUpdate"
    ]
    assert location["ObjectVersionUpdate"] == _code_object(aws, "inventory_windowing")["VersionId"]
    assert update["VpcConfigurationUpdates"][0]["VpcConfigurationId"] == "2.1"
    assert update["VpcConfigurationUpdates"][0]["SubnetIdUpdates"] == aws.env["vpc"]["subnet_ids"]
    assert request["CloudWatchLoggingOptionUpdates"][0]["CloudWatchLoggingOptionId"] == "3.1"
    assert request["RunConfigurationUpdate"] == {
        "FlinkRunConfiguration": {"AllowNonRestoredState": False},
        "ApplicationRestoreConfiguration": {
            "ApplicationRestoreType": "RESTORE_FROM_LATEST_SNAPSHOT"
        },
    }
    assert "RuntimeEnvironmentUpdate" not in request


def test_a_job_reads_its_secrets_at_start_and_only_then(aws):
    """What the rendered groups name is what ``load_properties`` resolves at start: the
    password from an RDS-style JSON secret, the Redis password (ElastiCache's AUTH token)
    from a plain one."""
    from pizzastream.config import resolve_secrets

    token = aws.client("secretsmanager").create_secret(Name="redis-auth", SecretString="t0ken")[
        "ARN"
    ]
    groups = _groups(msf.render("order_enrichment", ACCOUNT, REGION, aws.env_file))
    groups["Aws"] = {key: str(value) for key, value in aws.env["aws"].items()}
    groups["Redis"]["password_secret_arn"] = token
    resolved = resolve_secrets(groups)
    assert resolved["Aurora"]["password"] == "pw-aurora"
    assert resolved["Redis"]["password"] == "t0ken"


def test_dry_run_prints_the_requests_and_changes_nothing(aws, app_zip, capsys):
    main(
        ["submit", "hourly_metrics", "--env", str(aws.env_file), "--zip", str(app_zip), "--dry-run"]
    )
    printed = json.loads(capsys.readouterr().out)
    create = printed["CreateApplication"]
    assert _groups(create)["Warehouse"]["password_secret_arn"] == aws.env["secrets"]["warehouse"]
    assert "password" not in _groups(create)["Warehouse"]
    assert printed["PutObject"]["Key"] == "msf/hourly_metrics/pizzastream-msf.zip"
    assert "Contents" not in aws.client("s3").list_objects_v2(Bucket=aws.env["code"]["bucket"])
    assert aws.client("kinesisanalyticsv2").list_applications()["ApplicationSummaries"] == []


def test_submit_refuses_another_accounts_credentials(aws, app_zip):
    aws.env["aws"]["account_id"] = ACCOUNT
    aws.env_file.write_text(json.dumps(aws.env))
    with pytest.raises(SystemExit, match="credentials are for account 123456789012"):
        submit("order_enrichment", aws.env_file, app_zip)


def test_submit_refuses_an_unversioned_code_bucket(aws, app_zip):
    aws.client("s3").put_bucket_versioning(
        Bucket=aws.env["code"]["bucket"], VersioningConfiguration={"Status": "Suspended"}
    )
    with pytest.raises(SystemExit, match="enable versioning"):
        submit("order_enrichment", aws.env_file, app_zip)


def test_submit_refuses_a_zip_without_the_job(aws, tmp_path):
    stale = tmp_path / "stale.zip"
    with zipfile.ZipFile(stale, "w") as archive:
        archive.writestr("lib/pizzastream-deps.jar", "")
    with pytest.raises(SystemExit, match=r"lacks jobs/order_enrichment.py, python-deps"):
        submit("order_enrichment", aws.env_file, stale)


# --- the application zip ----------------------------------------------------------------


@pytest.mark.slow
def test_package_builds_the_msf_zip_with_dependencies_for_msf(tmp_path):
    stale = msf.DEPLOY_DIR / "target" / "python-deps" / "stale.py"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_text("")
    subprocess.run(
        ["bash", str(msf.DEPLOY_DIR / "package.sh")],
        check=True,
        timeout=170,
        env={**os.environ, "PY": sys.executable},
    )

    with zipfile.ZipFile(msf.ZIP_PATH) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path, [n for n in names if n.startswith("python-deps/")])
    jobs = {f"jobs/{path.name}" for path in (REPO_ROOT / "jobs").glob("*.py")}
    assert (
        jobs
        | {
            "jobs/order_enrichment.py",
            "pizzastream/config.py",
            "connectors/kinesis.py",
            "lib/pizzastream-deps.jar",
            "python-deps/psycopg/__init__.py",
            "python-deps/redis/__init__.py",
            "certs/rds-ca-bundle.pem",
        }
        <= names
    )
    with zipfile.ZipFile(msf.ZIP_PATH) as archive:
        assert archive.read("certs/rds-ca-bundle.pem") == certs.rds_ca_bundle().read_bytes()
        # and inside the jar, for the TaskManagers' pgjdbc (PemTrustFactory, classpath:)
        with zipfile.ZipFile(io.BytesIO(archive.read("lib/pizzastream-deps.jar"))) as jar:
            assert jar.read("certs/rds-ca-bundle.pem") == certs.rds_ca_bundle().read_bytes()
            # the benchmarks' classes are not shipped (bench/jvm builds them a jar of their own)
            assert not [n for n in jar.namelist() if n.startswith("pizzastream/flink/bench/")]
    assert not [n for n in names if n.startswith("bench/") or "pizzastream-bench" in n]
    assert "python-deps/stale.py" not in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    # python-deps alone must do (-S: no site-packages to fall back on); psycopg's native
    # build for MSF's platform loads.
    probe = (
        "import sys; sys.path.insert(0, 'python-deps'); import psycopg, redis; "
        "print(psycopg.pq.__impl__)"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", probe],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
    )
    assert result.stdout.strip() == "binary"
