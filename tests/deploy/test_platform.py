"""The whole platform as synthesized by the CDK app (deploy/platform.py), without an AWS
account: the example environment synthesizes; the templates pass cfn-lint and cdk-nag's
AWS Solutions checks (every suppression with its reason); each service is given every
property its code reads and ships every module it imports; each role, evaluated by an IAM
policy simulator, can do what its service does and not what it must not.

One synth serves the module (the MSF zip must exist: ``deploy/package.sh``; the fixture
builds it when it is missing).
"""

from __future__ import annotations

import csv
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from connectors import dbsetup
from deploy import certs, msf, packages, platform, property_reads
from deploy.property_reads import analyze, analyze_function
from pizzastream import settings
from tests.deploy.test_deployed_reads import _distributions, _importable, _msf_requirements
from tests.platform_support import ACCOUNT, REGION, Template, simulate
from tests.project.test_locks import pins

ENV = "example"
PREFIX = platform.load_environment(ENV)["name_prefix"]
# Each deployed program and where it starts (``analyze`` a module, or a function).
PROGRAMS: dict[str, list[tuple[str, ...]]] = {
    **{job: [("module", f"jobs/{job}.py")] for job in msf.jobs()},
    "pos": [("function", "etl.pos_lambda", "handler")],
    "health": [("function", "etl.health", "handler")],
    "ticks": [("function", "pizzastream.ticks", "handler")],
    "etl": [("module", "etl/hourly.py")],
    # The worker and the record processor the KCL daemon starts (delivery.daemon).
    "delivery": [("module", "delivery/__main__.py"), ("module", "delivery/processor.py")],
    # the database set-up, the custom resource's function
    "dbsetup": [("function", "connectors.dbsetup", "handler")],
}


def _zip_has(path, name: str) -> bool:
    if not path.exists():
        return False
    with zipfile.ZipFile(path) as archive:
        return name in archive.namelist()


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory):
    if not _zip_has(msf.ZIP_PATH, "certs/rds-ca-bundle.pem"):  # missing, or built before the bundle
        subprocess.run(["bash", str(msf.DEPLOY_DIR / "package.sh")], check=True)
    outdir = tmp_path_factory.mktemp("cdk.out")
    app, stack = platform.build(ENV, outdir=outdir)
    app.synth()
    return outdir, stack.stack_name


@pytest.fixture(scope="module")
def template(synthesized) -> Template:
    outdir, name = synthesized
    return Template(outdir / f"{name}.template.json")


def _analysis(program: str) -> property_reads.Analysis:
    merged = property_reads.Analysis()
    for entry in PROGRAMS[program]:
        part = analyze(entry[1]) if entry[0] == "module" else analyze_function(*entry[1:])
        merged.reads += part.reads
        merged.unresolved += part.unresolved
        merged.external_modules |= part.external_modules
        merged.project_modules |= part.project_modules
    return merged


# --- lint ---------------------------------------------------------------------------------


def test_templates_pass_cfn_lint(synthesized):
    outdir, name = synthesized
    # Ignored, with reasons: W3010, the environment names its availability zones so that a
    # synth needs no AWS account to look them up; W3005, the DependsOn CDK's Lambda
    # construct adds next to its GetAtt of the role (redundant, harmless).
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "cfn-lint"),
            "--format",
            "parseable",
            "--ignore-checks",
            "W3010",
            "W3005",
            "--",
            str(outdir / f"{name}.template.json"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_cdk_nag_aws_solutions_checks_pass_and_every_suppression_says_why(synthesized):
    outdir, name = synthesized
    (path,) = outdir.glob(f"AwsSolutions-*{name}-NagReport.csv")
    with open(path) as report:
        rows = list(csv.DictReader(report))
    assert rows, "cdk-nag wrote no report: the checks did not run"
    failing = [
        (r["Rule ID"], r["Resource ID"])
        for r in rows
        if r["Compliance"] in ("Non-Compliant", "Error")
    ]
    assert failing == []
    suppressed = [r for r in rows if r["Compliance"] == "Suppressed"]
    assert suppressed
    for row in suppressed:
        assert len(row["Exception Reason"]) >= 40, (row["Rule ID"], row["Resource ID"])


# --- what each service is given -----------------------------------------------------------


def _deployed_groups(template: Template) -> dict[str, dict[str, dict]]:
    """Property groups per service: MSF applications' EnvironmentProperties, and the
    ``PIZZASTREAM__<Group>__<key>`` environment of functions and containers."""
    found: dict[str, dict[str, dict]] = {}
    for app in template.of_type("AWS::KinesisAnalyticsV2::Application").values():
        props = app["Properties"]
        job = props["ApplicationName"][len(PREFIX) + 1 :].replace("-", "_")
        found[job] = {
            g["PropertyGroupId"]: g["PropertyMap"]
            for g in props["ApplicationConfiguration"]["EnvironmentProperties"]["PropertyGroups"]
        }

    def from_environment(service: str, variables: dict) -> None:
        groups: dict[str, dict] = {}
        for name, value in variables.items():
            if name.startswith("PIZZASTREAM__"):
                group, key = name[len("PIZZASTREAM__") :].split("__", 1)
                groups.setdefault(group, {})[key] = value
        found[service] = groups

    for function in template.of_type("AWS::Lambda::Function").values():
        name = function["Properties"].get("FunctionName", "")
        if name.startswith(PREFIX):
            from_environment(
                name[len(PREFIX) + 1 :], function["Properties"]["Environment"]["Variables"]
            )
    for task in template.of_type("AWS::ECS::TaskDefinition").values():
        (container,) = task["Properties"]["ContainerDefinitions"]
        from_environment(
            container["Name"], {e["Name"]: e["Value"] for e in container.get("Environment", [])}
        )
    return found


def test_every_service_is_deployed(template):
    assert set(_deployed_groups(template)) == set(PROGRAMS)


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_each_service_is_given_every_property_its_code_reads(template, program):
    analysis = _analysis(program)
    assert analysis.unresolved == []
    assert analysis.reads
    deployed = _deployed_groups(template)[program]
    assert property_reads.missing(analysis.required(), deployed) == []
    unread = set(deployed) - {msf.RUN_OPTIONS} - analysis.groups()
    assert unread == set(), f"{program} is given groups it never reads: {unread}"


def test_each_services_properties_parse_as_the_typed_settings(template):
    """What each program checks at start (``pizzastream.settings.validate``) accepts what it
    is given; a value CloudFormation fills in (a ``Ref``, an endpoint's ``GetAtt``) stands
    in as a placeholder of the key's kind."""
    for service, groups in _deployed_groups(template).items():
        rendered = {
            group: {
                key: value
                if isinstance(value, str)
                else "5432"
                if key == "port"
                else "resolved-at-deploy"
                for key, value in values.items()
            }
            for group, values in groups.items()
        }
        try:
            settings.validate(rendered)
        except settings.ConfigError as error:
            pytest.fail(f"{service}: {error}")


def test_no_password_or_token_is_written_into_properties_or_environment(template):
    for service, groups in _deployed_groups(template).items():
        for values in groups.values():
            for key, value in values.items():
                assert key not in ("password", "auth_token", "secret_access_key"), (service, key)
                if key.endswith("_secret_arn"):
                    assert "Ref" in str(value), (service, key)
    # The generated secrets reach Redshift and ElastiCache as CloudFormation dynamic
    # references, resolved by CloudFormation, never as literal values.
    redis = template.of_type("AWS::ElastiCache::ReplicationGroup")
    (group,) = redis.values()
    assert "{{resolve:secretsmanager:" in str(template.resolve(group["Properties"]["AuthToken"]))
    assert group["Properties"]["TransitEncryptionEnabled"] is True


def test_redis_runs_in_cluster_mode_and_every_client_is_told_so(template):
    """The example environment asks for 4 shards: ElastiCache in cluster mode, and every
    service that reads Redis gets ``cluster_mode`` true and the configuration endpoint
    (which hands the clients the slot map), never one node's address."""
    (group,) = template.of_type("AWS::ElastiCache::ReplicationGroup").values()
    props = group["Properties"]
    assert (props["ClusterMode"], props["NumNodeGroups"]) == ("enabled", 4)
    assert props["CacheParameterGroupName"] == "default.redis7.cluster.on"
    readers = {
        service: groups["Redis"]
        for service, groups in _deployed_groups(template).items()
        if "Redis" in groups
    }
    assert {"order_enrichment", "inventory_windowing", "hourly_metrics"} <= set(readers)
    for service, redis in readers.items():
        assert redis["cluster_mode"] == "true", service
        assert "ConfigurationEndPoint.Address" in str(redis["host"]), (service, redis["host"])


def test_the_functions_ship_every_module_they_import(synthesized):
    """Lambda has the standard library only (and a boto3 of its own, which we do not rely
    on): everything else comes from requirements-lambda.txt, and the project's packages from
    deploy/packages.py; PyFlink never (too big for a function, and not needed)."""
    shipped = _importable(
        _distributions(
            [
                line.split("#")[0].strip()
                for line in packages.LAMBDA_REQUIREMENTS.read_text().splitlines()
                if line.split("#")[0].strip()
            ]
        )
    )
    for program in ("pos", "health", "ticks", "dbsetup"):
        analysis = _analysis(program)
        assert "pyflink" not in analysis.external_modules
        assert analysis.external_modules - shipped == set(), program
        assert {m.split(".")[0] for m in analysis.project_modules} <= set(packages.LAMBDA_PACKAGES)
    outdir, _ = synthesized
    (asset,) = [p for p in outdir.glob("asset.*") if (p / "psycopg").is_dir()]
    for name in (
        "etl/pos_lambda.py",
        "etl/health.py",
        "psycopg",
        "boto3",
        "conf/aws/application_properties.json",
        "connectors/dbsetup.py",
        "redshift_connector",
        *[
            str(path.relative_to(platform.REPO_ROOT))
            for path in (
                *dbsetup.SCHEMAS["Aurora"],
                *dbsetup.SCHEMAS["Warehouse"],
                *dbsetup.REDSHIFT_SCHEMAS,
            )
        ],
    ):
        assert (asset / name).exists(), name


def test_the_container_image_gets_every_project_package_its_services_import(synthesized):
    outdir, _ = synthesized
    (context,) = [p for p in outdir.glob("asset.*") if (p / "deploy" / "docker").is_dir()]
    dockerfile = (context / "deploy" / "docker" / "Dockerfile").read_text()
    for program in ("etl", "delivery"):
        for package in {m.split(".")[0] for m in _analysis(program).project_modules}:
            assert (context / package).is_dir(), package
            assert f"COPY {package} {package}" in dockerfile, package


def test_the_container_image_installs_the_runtime_lock_which_has_every_module_its_services_import(
    synthesized,
):
    """The image gets the product's dependencies at the tested versions
    (requirements-runtime.lock), not the test, benchmark and deploy tooling of
    requirements.lock; so whatever its services import must come from the runtime lock."""
    outdir, _ = synthesized
    (context,) = [p for p in outdir.glob("asset.*") if (p / "deploy" / "docker").is_dir()]
    dockerfile = (context / "deploy" / "docker" / "Dockerfile").read_text()
    assert "-r requirements-runtime.lock" in dockerfile
    assert (context / "requirements-runtime.lock").is_file()
    assert not (context / "requirements.lock").exists()
    installed = _importable(set(pins("requirements-runtime.lock")))
    for program in ("etl", "delivery"):
        assert _analysis(program).external_modules - installed == set(), program


def test_every_database_client_verifies_the_server_with_the_bundle_its_package_carries(
    synthesized, template
):
    """TLS to Aurora and Redshift: every service's ``Aurora`` and ``Warehouse`` groups say
    ``verify-full`` with ``sslrootcert`` naming the RDS CA bundle relative to the
    application's root, and the MSF zip, the Lambda package and the image all carry it
    there (the image copies it from its build context)."""
    bundle = certs.rds_ca_bundle().read_bytes()
    outdir, _ = synthesized
    (function_code,) = [p for p in outdir.glob("asset.*") if (p / "psycopg").is_dir()]
    assert (function_code / certs.BUNDLE).read_bytes() == bundle
    (context,) = [p for p in outdir.glob("asset.*") if (p / "deploy" / "docker").is_dir()]
    assert (context / "deploy" / "target" / certs.BUNDLE).read_bytes() == bundle
    dockerfile = (context / "deploy" / "docker" / "Dockerfile").read_text()
    assert f"COPY deploy/target/{certs.BUNDLE.parent} {certs.BUNDLE.parent}" in dockerfile
    with zipfile.ZipFile(msf.ZIP_PATH) as archive:
        assert archive.read(str(certs.BUNDLE)) == bundle
    clients = set()
    for service, groups in _deployed_groups(template).items():
        for group in ("Aurora", "Warehouse"):
            if group in groups:
                clients.add(service)
                assert groups[group]["sslmode"] == "verify-full", (service, group)
                assert groups[group]["sslrootcert"] == str(certs.BUNDLE), (service, group)
    assert {"pos", "health", "etl", "delivery", "dbsetup", *msf.jobs()} <= clients


def test_msf_zip_ships_every_module(synthesized):
    shipped = _importable(_distributions(_msf_requirements()))
    provided = _importable(_distributions(["apache-flink"]))
    for job in msf.jobs():
        assert _analysis(job).external_modules - shipped - provided == set(), job


# --- data and network -------------------------------------------------------------------


def test_shard_counts_come_from_the_capacity_model(template):
    counts = platform.shard_counts(platform.load_environment(ENV))
    streams = {
        v["Properties"]["Name"]: v["Properties"]
        for v in template.of_type("AWS::Kinesis::Stream").values()
    }
    assert set(streams) == {f"{PREFIX}-{name}" for name in platform.STREAMS.values()}
    for logical, name in platform.STREAMS.items():
        assert streams[f"{PREFIX}-{name}"]["ShardCount"] == counts[logical], name
        assert streams[f"{PREFIX}-{name}"]["StreamEncryption"]["EncryptionType"] == "KMS"


def test_buckets_are_encrypted_versioned_private_and_staging_has_a_lifecycle(template):
    buckets = {
        template.resolve(v["Properties"]["BucketName"]): v["Properties"]
        for v in template.of_type("AWS::S3::Bucket").values()
    }
    for name in ("lake", "staging", "pos"):
        props = buckets[f"{PREFIX}-{name}"]
        assert props["VersioningConfiguration"]["Status"] == "Enabled"
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    staging_rules = buckets[f"{PREFIX}-staging"]["LifecycleConfiguration"]["Rules"]
    assert any("Transitions" in rule for rule in staging_rules)


def test_only_the_delivery_service_runs_where_there_is_a_route_out(template):
    """Data subnets have no default route; the delivery service alone runs in the subnets
    routed to the NAT gateways; everything else is placed in data subnets."""
    subnets = template.of_type("AWS::EC2::Subnet")
    data = {k for k in subnets if k.startswith("Vpcdata")}
    egress = {k for k in subnets if k.startswith("Vpcegress")}
    assert len(data) >= 2 and len(egress) >= 2
    routes = template.of_type("AWS::EC2::Route").values()
    for route in routes:
        table = route["Properties"]["RouteTableId"]["Ref"]
        assert not table.startswith("Vpcdata"), "a data subnet has a route out"
    nat_routes = [r for r in routes if "NatGatewayId" in r["Properties"]]
    assert nat_routes and all(
        r["Properties"]["RouteTableId"]["Ref"].startswith("Vpcegress") for r in nat_routes
    )

    def subnet_refs(ids) -> set[str]:
        return {item["Ref"] for item in ids}

    for function in template.of_type("AWS::Lambda::Function").values():
        if "VpcConfig" in function["Properties"]:
            assert subnet_refs(function["Properties"]["VpcConfig"]["SubnetIds"]) <= data
    for app in template.of_type("AWS::KinesisAnalyticsV2::Application").values():
        (vpc,) = app["Properties"]["ApplicationConfiguration"]["VpcConfigurations"]
        assert subnet_refs(vpc["SubnetIds"]) <= data
    (service,) = template.of_type("AWS::ECS::Service").values()
    network = service["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert subnet_refs(network["Subnets"]) <= egress
    endpoints = {
        str(template.resolve(v["Properties"]["ServiceName"])).rsplit(".", 1)[-1]
        for v in template.of_type("AWS::EC2::VPCEndpoint").values()
    }
    assert {
        "s3",
        "dynamodb",
        "kinesis-streams",
        "secretsmanager",
        "logs",
        "monitoring",
    } <= endpoints


def test_msf_applications_checkpoint_autoscale_log_and_restore_from_snapshots(template):
    apps = template.of_type("AWS::KinesisAnalyticsV2::Application")
    assert len(apps) == len(msf.jobs())
    for app in apps.values():
        config = app["Properties"]["ApplicationConfiguration"]
        flink = config["FlinkApplicationConfiguration"]
        assert flink["CheckpointConfiguration"]["CheckpointingEnabled"] is True
        assert flink["ParallelismConfiguration"]["AutoScalingEnabled"] is True
        assert config["ApplicationSnapshotConfiguration"]["SnapshotsEnabled"] is True
        assert app["Properties"]["RunConfiguration"]["FlinkRunConfiguration"] == {
            "AllowNonRestoredState": False
        }
    logging = template.of_type("AWS::KinesisAnalyticsV2::ApplicationCloudWatchLoggingOption")
    assert len(logging) == len(apps)


def test_alarms_cover_iterator_age_checkpoints_downtime_dead_letters_and_etl(template):
    names = {
        template.resolve(v["Properties"]["AlarmName"])
        for v in template.of_type("AWS::CloudWatch::Alarm").values()
    }
    expected = {f"{PREFIX}-iterator-age-{s}" for s in platform.CONSUMERS}
    expected |= {
        f"{PREFIX}-{kind}-{job}"
        for job in msf.jobs()
        for kind in ("checkpoint-failures", "downtime")
    }
    expected |= {
        f"{PREFIX}-dead-letters-{job}"
        for job in ("order_enrichment", "inventory_windowing", "delivery")
    }
    expected |= {
        f"{PREFIX}-etl-freshness",
        f"{PREFIX}-hourly-late-hours",
        f"{PREFIX}-hourly-unpublished-hours",
    }
    assert names == expected


def test_the_late_hour_alarms_watch_what_the_hourly_etl_puts(template):
    """etl.freshness, run by the ETL's task after each run, puts LateHours and
    UnpublishedHours; an alarm fires on the first data point above 0 of either."""
    from etl import freshness
    from pizzastream.publication import LATE_HOURS, UNPUBLISHED_HOURS

    alarms = {
        template.resolve(v["Properties"]["AlarmName"]): v["Properties"]
        for v in template.of_type("AWS::CloudWatch::Alarm").values()
    }
    for name, metric in (
        ("hourly-late-hours", LATE_HOURS),
        ("hourly-unpublished-hours", UNPUBLISHED_HOURS),
    ):
        alarm = alarms[f"{PREFIX}-{name}"]
        assert (alarm["Namespace"], alarm["MetricName"]) == (freshness.NAMESPACE, metric)
        assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
        assert (alarm["Statistic"], alarm["Period"]) == ("Maximum", 3600)
        assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (1, 1)
        assert alarm["TreatMissingData"] == "notBreaching"  # etl-freshness covers no run
        assert alarm["AlarmActions"]
    # the ETL's task (etl.hourly) is what runs etl.freshness
    assert "etl.freshness" in _analysis("etl").project_modules


# --- IAM, evaluated ---------------------------------------------------------------------


def _arn(kind: str, name: str) -> str:
    return {
        "stream": f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{PREFIX}-{name}",
        "secret": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{PREFIX}/{name}-AbCdEf",
        "object": f"arn:aws:s3:::{PREFIX}-{name}",
        "table": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}",
    }[kind]


def _decide(template: Template, role_name: str, cases: list[tuple]) -> list[tuple]:
    """``cases``: ``(action, resource, context)``; returns them with the simulator's verdict."""
    principal, policies = template.role(role_name)
    requests = [
        {
            "principal": principal,
            "action": action,
            "resource": resource,
            "accountId": ACCOUNT,
            "context": context,
            "identityPolicies": [{"name": f"p{i}", "policy": p} for i, p in enumerate(policies)],
        }
        for action, resource, context in cases
    ]
    return list(zip(cases, simulate(requests)))


def _expect(template, role_name: str, allowed: list[tuple], denied: list[tuple]) -> None:
    cases = [(*c, {}) if len(c) == 2 else c for c in allowed + denied]
    verdicts = _decide(template, role_name, cases)
    wrong = [
        (case[:2], verdict) for case, verdict in verdicts[: len(allowed)] if verdict != "Allowed"
    ]
    wrong += [
        (case[:2], verdict)
        for case, verdict in verdicts[len(allowed) :]
        if verdict != "ImplicitlyDenied"
    ]
    assert wrong == [], role_name


def _streams_of(job: str) -> tuple[set[str], set[str]]:
    from tests.deploy.test_deploy import _streams_in_docs

    return _streams_in_docs()[job]


@pytest.mark.parametrize("job", msf.jobs())
def test_each_flink_job_reads_and_writes_exactly_its_streams(template, job):
    """docs/streams.md decides; e.g. order_enrichment cannot write sales."""
    reads, writes = _streams_of(job)
    allowed, denied = [], []
    for name in platform.STREAMS.values():
        stream = _arn("stream", name)
        (allowed if name in reads else denied).append(("kinesis:GetRecords", stream))
        (allowed if name in writes else denied).append(("kinesis:PutRecords", stream))
    _expect(template, f"{PREFIX}-{job.replace('_', '-')}", allowed, denied)


def test_flink_jobs_read_only_their_own_secrets_and_only_hourly_metrics_writes_the_lake(template):
    lake_object = (
        _arn("object", "lake") + "/lake/hourly_store_metrics/dt=2026-12-04/hour=13/p.parquet"
    )
    _expect(
        template,
        f"{PREFIX}-order-enrichment",
        allowed=[
            ("secretsmanager:GetSecretValue", _arn("secret", "aurora/order_enrichment")),
            ("secretsmanager:GetSecretValue", _arn("secret", "redis-auth")),
        ],
        denied=[
            ("secretsmanager:GetSecretValue", _arn("secret", "warehouse")),
            ("secretsmanager:GetSecretValue", _arn("secret", "aurora")),
            ("secretsmanager:GetSecretValue", _arn("secret", "aurora/inventory_windowing")),
            ("s3:PutObject", lake_object),
            ("s3:GetObject", lake_object),
        ],
    )
    _expect(
        template,
        f"{PREFIX}-hourly-metrics",
        allowed=[
            ("s3:PutObject", lake_object),
            ("secretsmanager:GetSecretValue", _arn("secret", "warehouse/hourly_metrics")),
        ],
        denied=[
            ("secretsmanager:GetSecretValue", _arn("secret", "aurora")),
            ("secretsmanager:GetSecretValue", _arn("secret", "warehouse")),
            ("secretsmanager:GetSecretValue", _arn("secret", "warehouse/etl")),
            ("s3:PutObject", _arn("object", "staging") + "/staging/order_fct/x"),
            ("s3:GetObject", _arn("object", "pos") + "/pos/landing/x"),
        ],
    )


def test_pos_ingestion_reads_landing_writes_sales_and_cannot_read_the_lake(template):
    landing = _arn("object", "pos") + "/pos/landing/store_system=07/b1.manifest.json"
    _expect(
        template,
        f"{PREFIX}-pos",
        allowed=[
            ("s3:GetObject", landing),
            ("s3:PutObject", _arn("object", "pos") + "/pos/archive/store_system=07/b1.jsonl.gz"),
            ("s3:DeleteObject", landing),
            ("s3:ListBucket", _arn("object", "pos"), {"s3:prefix": "pos/landing/store_system=07/"}),
            ("kinesis:PutRecords", _arn("stream", "sales")),
            ("secretsmanager:GetSecretValue", _arn("secret", "aurora/pos")),
        ],
        denied=[
            ("s3:GetObject", _arn("object", "lake") + "/lake/hourly_store_metrics/x"),
            ("secretsmanager:GetSecretValue", _arn("secret", "aurora")),
            ("s3:ListBucket", _arn("object", "lake"), {"s3:prefix": "lake/"}),
            ("s3:GetObject", _arn("object", "staging") + "/staging/order_fct/x"),
            ("kinesis:PutRecords", _arn("stream", "orders")),
            ("secretsmanager:GetSecretValue", _arn("secret", "warehouse")),
        ],
    )


def test_store_accounts_only_drop_files_into_landing_with_the_external_id(template):
    role = f"{PREFIX}-store-pos"
    pos = platform.load_environment(ENV)["pos"]
    _expect(
        template,
        role,
        allowed=[
            ("s3:PutObject", _arn("object", "pos") + "/pos/landing/store_system=03/b.jsonl.gz")
        ],
        denied=[
            ("s3:GetObject", _arn("object", "pos") + "/pos/landing/store_system=03/b.jsonl.gz"),
            ("s3:PutObject", _arn("object", "pos") + "/pos/archive/b.jsonl.gz"),
            ("s3:PutObject", _arn("object", "lake") + "/lake/x"),
            ("s3:ListBucket", _arn("object", "pos")),
        ],
    )
    trust = template.trust(role)
    role_arn = f"arn:aws:iam::{ACCOUNT}:role/{role}"
    store = pos["store_accounts"][0]
    caller = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": role_arn}],
    }

    def assume(account: str, external_id: str | None) -> str:
        context = {"sts:ExternalId": external_id} if external_id else {}
        (verdict,) = simulate(
            [
                {
                    "principal": f"arn:aws:iam::{account}:role/pos-uploader",
                    "action": "sts:AssumeRole",
                    "resource": role_arn,
                    "accountId": ACCOUNT,
                    "context": context,
                    "identityPolicies": [{"name": "caller", "policy": caller}],
                    "resourcePolicy": trust,
                }
            ]
        )
        return verdict

    assert assume(store, pos["external_id"]) == "Allowed"
    assert assume(store, "guessed") != "Allowed"
    assert assume(store, None) != "Allowed"
    assert assume("999999999999", pos["external_id"]) != "Allowed"


def test_etl_delivery_and_health_roles_do_their_work_and_nothing_else(template):
    _expect(
        template,
        f"{PREFIX}-etl",
        allowed=[
            (
                "s3:PutObject",
                _arn("object", "staging") + "/staging/order_fct/dt=2026-12-04/hour=13/p.parquet",
            ),
            (
                "s3:PutObject",
                _arn("object", "lake")
                + "/lake/hourly_store_metrics/dt=2026-12-04/hour=13/p.parquet",
            ),
            ("secretsmanager:GetSecretValue", _arn("secret", "warehouse/etl")),
            ("secretsmanager:GetSecretValue", _arn("secret", "aurora/etl")),
            ("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "pizzastream"}),
        ],
        denied=[
            ("s3:GetObject", _arn("object", "pos") + "/pos/landing/x"),
            ("secretsmanager:GetSecretValue", _arn("secret", "warehouse")),
            ("secretsmanager:GetSecretValue", _arn("secret", "aurora")),
            ("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "AWS/Kinesis"}),
            ("kinesis:PutRecords", _arn("stream", "sales")),
            ("secretsmanager:GetSecretValue", _arn("secret", "redis-auth")),
        ],
    )
    _expect(
        template,
        f"{PREFIX}-delivery",
        allowed=[
            ("kinesis:GetRecords", _arn("stream", "deliveries")),
            ("dynamodb:PutItem", _arn("table", f"{PREFIX}-delivery")),
            ("dynamodb:PutItem", _arn("table", f"{PREFIX}-delivery-WorkerMetricStats")),
            ("secretsmanager:GetSecretValue", _arn("secret", "redis-auth")),
            ("secretsmanager:GetSecretValue", _arn("secret", "aurora/delivery")),
        ],
        denied=[
            ("kinesis:PutRecords", _arn("stream", "sales")),
            ("kinesis:GetRecords", _arn("stream", "orders")),
            ("secretsmanager:GetSecretValue", _arn("secret", "aurora")),
            ("dynamodb:PutItem", _arn("table", "another-table")),
            ("s3:GetObject", _arn("object", "lake") + "/lake/x"),
        ],
    )
    _expect(
        template,
        f"{PREFIX}-health",
        allowed=[
            ("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "pizzastream"}),
            ("secretsmanager:GetSecretValue", _arn("secret", "aurora/health")),
        ],
        denied=[
            ("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "AWS/Kinesis"}),
            ("secretsmanager:GetSecretValue", _arn("secret", "warehouse")),
            ("secretsmanager:GetSecretValue", _arn("secret", "aurora")),
        ],
    )
    _expect(
        template,
        f"{PREFIX}-ticks",
        allowed=[("kinesis:PutRecords", _arn("stream", "restocks"))],
        denied=[
            ("kinesis:PutRecords", _arn("stream", "orders")),
            ("kinesis:GetRecords", _arn("stream", "restocks")),
            ("secretsmanager:GetSecretValue", _arn("secret", "aurora")),
        ],
    )


def test_wildcard_resources_only_where_aws_requires_them(template):
    """A statement on Resource "*" may hold only actions AWS offers no resource-level
    permission for (each place is commented in deploy/platform.py or deploy/iam/)."""
    without_resources = re.compile(
        r"^(ec2:(Describe\w+|CreateNetworkInterface|DeleteNetworkInterface|"
        r"AssignPrivateIpAddresses|UnassignPrivateIpAddresses)|cloudwatch:PutMetricData|"
        r"ecr:GetAuthorizationToken|s3:PutBucketNotification|xray:Put\w+)$"
    )
    for policy in template.of_type("AWS::IAM::Policy").values():
        for statement in template.resolve(policy["Properties"]["PolicyDocument"])["Statement"]:
            resources = (
                statement["Resource"]
                if isinstance(statement["Resource"], list)
                else [statement["Resource"]]
            )
            if "*" in resources:
                actions = (
                    statement["Action"]
                    if isinstance(statement["Action"], list)
                    else [statement["Action"]]
                )
                assert all(without_resources.match(a) for a in actions), actions


# --- the database set-up (custom resource) ----------------------------------------------


def _setup(template: Template) -> tuple[str, dict]:
    (item,) = template.of_type("Custom::DatabaseSetup").items()
    return item


def _logical(template: Template, kind: str, predicate) -> str:
    (logical,) = [k for k, v in template.of_type(kind).items() if predicate(v["Properties"])]
    return logical


def test_the_database_set_up_runs_the_set_up_function_in_the_data_subnets(template):
    """A custom resource carries the users and the fingerprint of what the set-up applies
    (a changed schema file, reference data or grant runs it again); its provider invokes
    ``connectors.dbsetup.handler``, a function in the data subnets whose security group
    Aurora and the warehouse admit."""
    _, resource = _setup(template)
    props = resource["Properties"]
    assert props["Fingerprint"] == dbsetup.fingerprint()
    users = {(u["database"], u["service"]): u for u in props["Users"]}
    assert set(users) == {(g, s) for g, grants in dbsetup.GRANTS.items() for s in grants}
    for (group, service), user in users.items():
        assert user["user"] == service
        assert template.resolve(user["password_secret_arn"]) == _arn(
            "secret", f"{group.lower()}/{service}"
        )

    function_logical = _logical(
        template, "AWS::Lambda::Function", lambda p: p.get("FunctionName") == f"{PREFIX}-dbsetup"
    )
    function = template.resources[function_logical]["Properties"]
    assert function["Handler"] == "connectors.dbsetup.handler"
    # the same users in its environment, for a run by hand
    users_variable = template.resolve(function["Environment"]["Variables"][dbsetup.USERS_VARIABLE])
    assert all(
        u["password_secret_arn"]["Ref"]
        in str(function["Environment"]["Variables"][dbsetup.USERS_VARIABLE])
        for u in props["Users"]
    ), users_variable
    subnets = {item["Ref"] for item in function["VpcConfig"]["SubnetIds"]}
    assert subnets and all(s.startswith("Vpcdata") for s in subnets)
    (sg,) = function["VpcConfig"]["SecurityGroupIds"]
    # the provider's framework function, named by the service token, invokes ours
    framework = template.resources[props["ServiceToken"]["Fn::GetAtt"][0]]["Properties"]
    assert (
        framework["Environment"]["Variables"]["USER_ON_EVENT_FUNCTION_ARN"]["Fn::GetAtt"][0]
        == function_logical
    )
    # Aurora and the warehouse admit the set-up's security group on their ports
    admitted = {
        (template.resolve(rule["Properties"]["GroupId"]), rule["Properties"]["FromPort"])
        for rule in template.of_type("AWS::EC2::SecurityGroupIngress").values()
        if rule["Properties"].get("SourceSecurityGroupId") == sg
    }
    servers = {}
    for name in ("aurora", "warehouse"):
        group = _logical(
            template,
            "AWS::EC2::SecurityGroup",
            lambda p, name=name: p["GroupDescription"] == f"pizzastream {name}",
        )
        servers[name] = template.resolve({"Fn::GetAtt": [group, "GroupId"]})
    assert admitted == {(servers["aurora"], 5432), (servers["warehouse"], 5439)}
    # it runs once the databases are there: Aurora's cluster and instances, the workgroup
    depends = set(resource.get("DependsOn", []))
    assert set(template.of_type("AWS::RDS::DBCluster")) <= depends
    assert set(template.of_type("AWS::RDS::DBInstance")) <= depends
    assert set(template.of_type("AWS::RedshiftServerless::Workgroup")) <= depends


def test_every_service_that_uses_a_database_starts_after_the_set_up(template):
    setup, _ = _setup(template)
    apps = template.of_type("AWS::KinesisAnalyticsV2::Application")
    assert apps
    for logical, app in apps.items():
        assert setup in app.get("DependsOn", []), logical
    for name in ("pos", "health"):
        logical = _logical(
            template,
            "AWS::Lambda::Function",
            lambda p, name=name: p.get("FunctionName") == f"{PREFIX}-{name}",
        )
        assert setup in template.resources[logical].get("DependsOn", []), name
    (service,) = template.of_type("AWS::ECS::Service").values()
    assert setup in service.get("DependsOn", [])
    (rule,) = [
        r
        for r in template.of_type("AWS::Events::Rule").values()
        if "EcsParameters" in str(r["Properties"].get("Targets"))
    ]
    assert setup in rule.get("DependsOn", [])


def test_each_service_logs_in_as_its_own_database_user(template):
    """Aurora and the warehouse: each service its own user and secret (the set-up gives
    the user only its grants, tests/connectors/test_dbsetup.py); only the set-up is the administrator."""
    env = platform.load_environment(ENV)
    seen = set()
    for service, groups in _deployed_groups(template).items():
        for group in ("Aurora", "Warehouse"):
            if group not in groups:
                continue
            settings = groups[group]
            secret = template.resolve(settings["password_secret_arn"])
            if service == "dbsetup":
                admin = env["aurora" if group == "Aurora" else "warehouse"]["user"]
                assert settings["user"] == admin
                assert secret == _arn("secret", group.lower())
                continue
            assert settings["user"] == service, (service, group)
            assert secret == _arn("secret", f"{group.lower()}/{service}"), (service, group)
            assert service in dbsetup.GRANTS[group], (service, group)
            seen.add((group, service))
    assert ("Aurora", "inventory_windowing") in seen and ("Warehouse", "hourly_metrics") in seen


def test_the_set_up_role_reads_the_database_secrets_and_nothing_else(template):
    users = [
        _arn("secret", f"{group.lower()}/{service}")
        for group, grants in dbsetup.GRANTS.items()
        for service in grants
    ]
    _expect(
        template,
        f"{PREFIX}-dbsetup",
        allowed=[
            ("secretsmanager:GetSecretValue", _arn("secret", "aurora")),
            ("secretsmanager:GetSecretValue", _arn("secret", "warehouse")),
            *[("secretsmanager:GetSecretValue", arn) for arn in users],
        ],
        denied=[
            ("secretsmanager:GetSecretValue", _arn("secret", "redis-auth")),
            ("secretsmanager:PutSecretValue", _arn("secret", "aurora/pos")),
            ("secretsmanager:GetSecretValue", _arn("secret", "another")),
            ("kinesis:PutRecords", _arn("stream", "sales")),
            ("kinesis:GetRecords", _arn("stream", "orders")),
            ("s3:GetObject", _arn("object", "lake") + "/lake/x"),
            ("s3:GetObject", _arn("object", "pos") + "/pos/landing/x"),
            ("redshift-data:ExecuteStatement", "*"),
        ],
    )
