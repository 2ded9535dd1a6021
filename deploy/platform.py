"""The whole platform on AWS for one environment, as an AWS CDK app (one CloudFormation stack).

``build(env_name)`` returns the ``App`` with the ``PlatformStack`` of
``deploy/environments/<env_name>.json``; ``python -m deploy synth <env>`` writes its
templates (docs/deploy.md). What each part is for:

* network: a VPC over the environment's availability zones. ``data`` subnets (isolated, no
  route out) hold everything that keeps data or reads it; ``egress`` subnets, the only ones
  with a NAT route, hold the delivery service alone (it calls the partners' API on the
  internet). Gateway endpoints (S3, DynamoDB) and interface endpoints (Kinesis, Secrets
  Manager, CloudWatch Logs and metrics, ECR) keep AWS traffic inside the VPC;
* data: the Kinesis streams (``shared/CONTRACT.md`` and the internal ones) with shard counts
  from ``bench.capacity`` (or on-demand); the lake, staging and POS buckets; Aurora
  PostgreSQL (Serverless v2); Redshift Serverless; ElastiCache for Redis with TLS and AUTH;
* compute: the three MSF applications (``deploy/msf/<job>.json`` rendered with this stack's
  names; the zip of ``deploy/package.sh`` as an asset), POS ingestion and the platform
  metrics as Lambda functions, the hourly ETL as a scheduled Fargate task, the delivery
  service as a Fargate service with its KCL lease table;
* databases set up by the deploy: a custom resource (``connectors.dbsetup.handler``, a
  Lambda function in the data subnets) runs the schema files on Aurora and Redshift,
  creates one database user per service with only its grants (passwords generated into
  Secrets Manager, one secret each) and upserts the reference data, on create and whenever
  what it applies changes; every service starts after it;
* security: one role per service, each granted only what its code does (``grant_*`` on the
  one resource, or statements written out), secrets in Secrets Manager read at start;
  the role store accounts assume to drop POS batches;
* alarms: iterator age per consumed stream, MSF checkpoint failures and downtime, dead
  letters and ETL freshness (``etl.health``), hours published late or not at all
  (``etl.freshness``, after each hourly ETL run), to an SNS topic.

Every ``"*"`` resource in a policy is one AWS requires, commented where it is written;
cdk-nag's AWS Solutions checks run on every synth, and each suppression carries its reason.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

# jsii warns on every start that Debian's Node 20 is past its end of life; synth works.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "1")

from aws_cdk import (
    App,
    ArnFormat,
    Aspects,
    CfnOutput,
    CustomResource,
    Duration,
    Environment,
    IgnoreMode,
    RemovalPolicy,
    Stack,
)
from aws_cdk import (
    aws_cloudwatch as cw,
)
from aws_cdk import (
    aws_cloudwatch_actions as cw_actions,
)
from aws_cdk import (
    aws_dynamodb as dynamodb,
)
from aws_cdk import (
    aws_ec2 as ec2,
)
from aws_cdk import (
    aws_ecr_assets as ecr_assets,
)
from aws_cdk import (
    aws_ecs as ecs,
)
from aws_cdk import (
    aws_elasticache as elasticache,
)
from aws_cdk import (
    aws_events as events,
)
from aws_cdk import (
    aws_events_targets as targets,
)
from aws_cdk import (
    aws_iam as iam,
)
from aws_cdk import (
    aws_kinesis as kinesis,
)
from aws_cdk import (
    aws_kinesisanalyticsv2 as flink,
)
from aws_cdk import (
    aws_kms as kms,
)
from aws_cdk import (
    aws_lambda as lambda_,
)
from aws_cdk import (
    aws_logs as logs,
)
from aws_cdk import (
    aws_rds as rds,
)
from aws_cdk import (
    aws_redshiftserverless as redshift,
)
from aws_cdk import (
    aws_s3 as s3,
)
from aws_cdk import (
    aws_s3_assets as assets,
)
from aws_cdk import (
    aws_s3_notifications as s3n,
)
from aws_cdk import (
    aws_secretsmanager as secretsmanager,
)
from aws_cdk import (
    aws_sns as sns,
)
from aws_cdk import (
    aws_sns_subscriptions as subscriptions,
)
from aws_cdk import (
    custom_resources as cr,
)
from cdk_nag import AwsSolutionsChecks, NagPackSuppression, NagSuppressions
from constructs import Construct

from bench import capacity
from connectors import dbsetup
from connectors.dbsetup import AURORA, WAREHOUSE
from deploy import certs, msf, packages
from pizzastream.config import Props
from pizzastream.pos_batches import LANDING_PREFIX, MANIFEST_SUFFIX
from pizzastream.publication import LATE_HOURS, UNPUBLISHED_HOURS

DEPLOY_DIR = Path(__file__).resolve().parent
REPO_ROOT = DEPLOY_DIR.parent
CDK_OUT = DEPLOY_DIR / "cdk.out"

# Logical name (the ``Streams`` group's key) -> the stream's name in the contract.
STREAMS = {
    "orders": "orders",
    "orders_enriched": "orders-enriched",
    "restocks": "restocks",
    "sales": "sales",
    "deliveries": "deliveries",
    "pos_orders": "pos-orders",
    "order_status": "order-status",
    "supplier_orders": "supplier-orders",
}
# Which service reads (consumes) each stream: its iterator age is alarmed. order-status is
# read by the application layer and supplier-orders by the suppliers, outside this stack.
CONSUMERS = {
    "orders": "order_enrichment",
    "orders_enriched": "inventory_windowing",
    "restocks": "inventory_windowing",
    "sales": "hourly_metrics",
    "deliveries": "delivery",
    "pos_orders": "pos",
}
# Static groups the services read (values as conf/local, where production keeps them).
ORDER_RULES = {
    "max_quantity": "20",
    "max_lines": "25",
    "max_record_bytes": "8192",
    "max_future_seconds": "300",
    "max_age_hours": "48",
}
HOURLY_METRICS = {
    "out_of_orderness_minutes": "2",
    "idle_seconds": "60",
    "pos_wait_minutes": "30",
    "allowed_lateness_minutes": "60",
    "late_refresh_seconds": "5",
    "live_ttl_minutes": "120",
    "live_refresh_ms": "1000",
    "lake_prefix": "lake/hourly_store_metrics",
    "staging_prefix": "staging/order_fct",
    "dedup_ttl_minutes": "160",
}
# The namespace of the platform's own metrics (etl.health, etl.freshness).
METRICS_NAMESPACE = "pizzastream"
# The POS contract's cadence: POS ingestion tells a missing batch by it.
POS_CADENCE_S = "900"
ETL = {"fetch_rows": "10000", "part_rows": "1000000", "metrics_chunk_hours": "24"}
# TLS to Aurora and Redshift: the server's certificate verified against the CA bundle every
# package carries (deploy/certs.py), and its name (pizzastream.config.tls_settings).
DATABASE_TLS = {"sslmode": "verify-full", "sslrootcert": str(certs.BUNDLE)}
# The container image's build context: only what deploy/docker/Dockerfile copies.
IMAGE_FILES = [
    "requirements-runtime.lock",
    "scripts/setup_kcl.sh",
    "deploy/kcl/pom.xml",
    "deploy/pom.xml",
    "deploy/assembly",
    "deploy/docker",
    "connectors",
    "pizzastream",
    "jobs",
    "etl",
    "delivery",
    "stack",
    "conf/aws",
    "deploy/target/certs",
]


def load_environment(name: str) -> dict:
    return json.loads(msf.environment_file(name).read_text())


def shard_counts(env: dict) -> dict[str, int]:
    """Shards per stream at the environment's planned peak (``bench.capacity``: contiguous
    hash ranges, hot stores salted); the streams the model does not cover from the file."""
    config = env["streams"]
    plan = capacity.plan(
        capacity.Load(config["planned_peak_events_per_s"], capacity.skewed_weights()),
        capacity.jobs_at(100_000, 100_000, 750_000),
        utilisation=config["utilisation"],
        internal_events_per_record=config.get("events_per_record_internal", 1),
    )
    by_name = {stream.name: stream.shards for stream in plan.streams}
    counts = {logical: by_name[name] for logical, name in STREAMS.items() if name in by_name}
    counts.update(config["shards_outside_the_capacity_model"])
    return counts


def _suppress(construct, rules: dict[str, str], apply_to_children: bool = True) -> None:
    NagSuppressions.add_resource_suppressions(
        construct,
        [NagPackSuppression(id=rule, reason=reason) for rule, reason in rules.items()],
        apply_to_children,
    )


class PlatformStack(Stack):
    def __init__(self, scope: Construct, env: dict, msf_zip: Path):
        prefix = env["name_prefix"]
        super().__init__(
            scope,
            prefix,
            env=Environment(account=env["aws"]["account_id"], region=env["aws"]["region"]),
            description=f"pizzastream platform ({prefix})",
        )
        self.config, self.prefix = env, prefix
        self.roles: dict[str, iam.Role] = {}
        self._network()
        self._data()
        self._secrets_and_databases()
        self._database_setup()
        self._flink_applications(msf_zip)
        self._functions()
        self._containers()
        self._store_account_role()
        self._alarms()
        NagSuppressions.add_resource_suppressions_by_path(
            self,
            f"/{self.stack_name}/BucketNotificationsHandler050a0587b7544547bf325f094a3db834",
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM4",
                    reason=(
                        "CDK's own handler that sets the POS bucket's notification (AWS managed "
                        "AWSLambdaBasicExecutionRole for its logs); it runs only during deployments"
                    ),
                ),
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason=("s3:PutBucketNotification on '*': CDK's handler, scoped by CDK"),
                ),
            ],
            True,
        )

    # --- network ----------------------------------------------------------------------------

    def _network(self) -> None:
        net = self.config["network"]
        flow_logs = logs.LogGroup(
            self,
            "FlowLogs",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(net["cidr"]),
            availability_zones=net["availability_zones"],
            nat_gateways=net["nat_gateways"],
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24
                ),
                ec2.SubnetConfiguration(
                    name="egress", cidr_mask=24, subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS
                ),
                ec2.SubnetConfiguration(
                    name="data", cidr_mask=20, subnet_type=ec2.SubnetType.PRIVATE_ISOLATED
                ),
            ],
            gateway_endpoints={
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3),
                "DynamoDB": ec2.GatewayVpcEndpointOptions(
                    service=ec2.GatewayVpcEndpointAwsService.DYNAMODB
                ),
            },
            flow_logs={
                "Rejected": ec2.FlowLogOptions(
                    destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs),
                    traffic_type=ec2.FlowLogTrafficType.REJECT,
                )
            },
        )
        self.data_subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
        self.egress_subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
        endpoints_sg = ec2.SecurityGroup(
            self,
            "EndpointsSg",
            vpc=self.vpc,
            description="interface endpoints: HTTPS from the VPC",
            allow_all_outbound=False,
        )
        endpoints_sg.add_ingress_rule(
            ec2.Peer.ipv4(net["cidr"]), ec2.Port.tcp(443), "AWS APIs from inside the VPC"
        )
        for name, service in {
            "Kinesis": ec2.InterfaceVpcEndpointAwsService.KINESIS_STREAMS,
            "SecretsManager": ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
            "Logs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
            "Monitoring": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_MONITORING,
            "EcrApi": ec2.InterfaceVpcEndpointAwsService.ECR,
            "EcrDocker": ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
        }.items():
            self.vpc.add_interface_endpoint(
                name,
                service=service,
                subnets=self.data_subnets,
                security_groups=[endpoints_sg],
                open=False,
            )
        self.sgs: dict[str, ec2.SecurityGroup] = {}
        for name in (
            "order_enrichment",
            "inventory_windowing",
            "hourly_metrics",
            "pos",
            "health",
            "ticks",
            "etl",
            "delivery",
            "rotation",
            "dbsetup",
            "aurora",
            "redis",
            "warehouse",
        ):
            self.sgs[name] = ec2.SecurityGroup(
                self, f"Sg-{name}", vpc=self.vpc, description=f"pizzastream {name}"
            )

    def _allow(self, clients: list[str], server: str, port: int) -> None:
        for client in clients:
            self.sgs[server].add_ingress_rule(
                self.sgs[client], ec2.Port.tcp(port), f"{client} to {server}"
            )

    # --- streams and buckets -------------------------------------------------------------

    def _data(self) -> None:
        config = self.config["streams"]
        counts = shard_counts(self.config) if config["mode"] == "provisioned" else {}
        self.streams: dict[str, kinesis.Stream] = {}
        for logical, name in STREAMS.items():
            self.streams[logical] = kinesis.Stream(
                self,
                f"Stream-{logical}",
                stream_name=f"{self.prefix}-{name}",
                stream_mode=kinesis.StreamMode.ON_DEMAND
                if not counts
                else kinesis.StreamMode.PROVISIONED,
                shard_count=counts.get(logical),
                encryption=kinesis.StreamEncryption.MANAGED,
                retention_period=Duration.hours(config["retention_hours"]),
            )

        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            bucket_name=f"{self.prefix}-access-logs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            versioned=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[
                s3.LifecycleRule(
                    expiration=Duration.days(365), noncurrent_version_expiration=Duration.days(30)
                )
            ],
        )
        _suppress(
            self.access_logs,
            {
                "AwsSolutions-S1": "this is the access-log bucket of the others; logging its own "
                "access would log the log writes"
            },
        )

        def bucket(name: str, rules: list[s3.LifecycleRule]) -> s3.Bucket:
            return s3.Bucket(
                self,
                f"Bucket-{name}",
                bucket_name=f"{self.prefix}-{name}",
                encryption=s3.BucketEncryption.S3_MANAGED,
                enforce_ssl=True,
                versioned=True,
                block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
                server_access_logs_bucket=self.access_logs,
                server_access_logs_prefix=f"{name}/",
                removal_policy=RemovalPolicy.RETAIN,
                lifecycle_rules=rules,
            )

        incomplete = s3.LifecycleRule(abort_incomplete_multipart_upload_after=Duration.days(1))
        # The lake is the analysts' source of truth: versions kept 30 days after a replace.
        self.lake = bucket(
            "lake", [incomplete, s3.LifecycleRule(noncurrent_version_expiration=Duration.days(30))]
        )
        # Staging is a working copy of order_fct (rebuilt by the ETL, read by reprocessing):
        # cheaper storage after 30 days, replaced versions gone after 7.
        self.staging = bucket(
            "staging",
            [
                incomplete,
                s3.LifecycleRule(
                    noncurrent_version_expiration=Duration.days(7),
                    transitions=[
                        s3.Transition(
                            storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                            transition_after=Duration.days(30),
                        )
                    ],
                ),
            ],
        )
        # POS batches: archived ones to Glacier after 90 days (audits), gone after 2 years.
        self.pos = bucket(
            "pos",
            [
                incomplete,
                s3.LifecycleRule(
                    prefix="pos/archive/",
                    expiration=Duration.days(730),
                    noncurrent_version_expiration=Duration.days(30),
                    transitions=[
                        s3.Transition(
                            storage_class=s3.StorageClass.GLACIER,
                            transition_after=Duration.days(90),
                        )
                    ],
                ),
            ],
        )

    # --- databases -------------------------------------------------------------------------

    def _secrets_and_databases(self) -> None:
        aurora_config, wh, redis_config = (
            self.config["aurora"],
            self.config["warehouse"],
            self.config["redis"],
        )
        self.aurora_secret = rds.DatabaseSecret(
            self,
            "AuroraSecret",
            username=aurora_config["user"],
            secret_name=f"{self.prefix}/aurora",
        )
        self.aurora = rds.DatabaseCluster(
            self,
            "Aurora",
            engine=rds.DatabaseClusterEngine.aurora_postgres(
                version=rds.AuroraPostgresEngineVersion.of(
                    aurora_config["engine_version"], aurora_config["engine_version"].split(".")[0]
                )
            ),
            credentials=rds.Credentials.from_secret(self.aurora_secret),
            default_database_name=aurora_config["dbname"],
            writer=rds.ClusterInstance.serverless_v2("writer"),
            readers=[
                rds.ClusterInstance.serverless_v2(f"reader{i}", scale_with_writer=True)
                for i in range(aurora_config["readers"])
            ],
            serverless_v2_min_capacity=aurora_config["min_acu"],
            serverless_v2_max_capacity=aurora_config["max_acu"],
            vpc=self.vpc,
            vpc_subnets=self.data_subnets,
            security_groups=[self.sgs["aurora"]],
            storage_encrypted=True,
            deletion_protection=True,
            iam_authentication=True,
            backup=rds.BackupProps(retention=Duration.days(14)),
            cloudwatch_logs_exports=["postgresql"],
            parameters={"rds.force_ssl": "1"},  # TLS only
            removal_policy=RemovalPolicy.SNAPSHOT,
        )
        self.aurora.add_rotation_single_user(
            automatically_after=Duration.days(30),
            vpc_subnets=self.data_subnets,
            security_group=self.sgs["rotation"],
        )
        self._allow(
            [
                "order_enrichment",
                "inventory_windowing",
                "pos",
                "health",
                "etl",
                "delivery",
                "rotation",
                "dbsetup",
            ],
            "aurora",
            5432,
        )

        # Redshift Serverless: the admin password managed by Redshift in Secrets Manager.
        self.warehouse_secret = secretsmanager.Secret(
            self,
            "WarehouseSecret",
            secret_name=f"{self.prefix}/warehouse",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=json.dumps({"username": wh["user"]}),
                generate_string_key="password",
                exclude_punctuation=True,
                password_length=32,
            ),
        )
        _suppress(
            self.warehouse_secret,
            {
                "AwsSolutions-SMG4": "Redshift Serverless has no rotation function of its own; the "
                "password is rotated by hand with the runbook in docs/deploy.md"
            },
        )
        # The role Redshift's COPY assumes (``Warehouse.iam_role``): reads the load files and
        # manifests (lake bucket, ``warehouse/loads/``) and the hourly ETL's staging parts.
        self.warehouse_copy_role = iam.Role(
            self,
            "WarehouseCopyRole",
            role_name=f"{self.prefix}-redshift-copy",
            assumed_by=iam.ServicePrincipal("redshift.amazonaws.com"),
        )
        self.lake.grant_read(self.warehouse_copy_role, "warehouse/loads/*")
        self.staging.grant_read(self.warehouse_copy_role)
        _suppress(
            self.warehouse_copy_role,
            {
                "AwsSolutions-IAM5": "COPY reads the files a manifest names: a new load id under "
                "warehouse/loads/ per load, and the hour's staging parts"
            },
        )
        namespace = redshift.CfnNamespace(
            self,
            "WarehouseNamespace",
            namespace_name=f"{self.prefix}-warehouse",
            iam_roles=[self.warehouse_copy_role.role_arn],
            db_name=wh["dbname"],
            admin_username=wh["user"],
            admin_user_password=self.warehouse_secret.secret_value_from_json(
                "password"
            ).unsafe_unwrap(),  # a CloudFormation dynamic reference, resolved by CFN only
            log_exports=["userlog", "connectionlog", "useractivitylog"],
        )
        self.warehouse = redshift.CfnWorkgroup(
            self,
            "Warehouse",
            workgroup_name=f"{self.prefix}-warehouse",
            namespace_name=namespace.namespace_name,
            base_capacity=wh["base_rpu"],
            publicly_accessible=False,
            enhanced_vpc_routing=True,
            subnet_ids=[s.subnet_id for s in self.vpc.isolated_subnets],
            security_group_ids=[self.sgs["warehouse"].security_group_id],
            config_parameters=[
                redshift.CfnWorkgroup.ConfigParameterProperty(
                    parameter_key="require_ssl", parameter_value="true"
                )
            ],
        )
        self.warehouse.add_resource_dependency(namespace)
        self._allow(["hourly_metrics", "etl", "dbsetup"], "warehouse", 5439)

        # ElastiCache for Redis: TLS in transit, AUTH token from Secrets Manager, encrypted.
        self.redis_secret = secretsmanager.Secret(
            self,
            "RedisAuth",
            secret_name=f"{self.prefix}/redis-auth",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                exclude_punctuation=True, password_length=64
            ),
        )
        _suppress(
            self.redis_secret,
            {
                "AwsSolutions-SMG4": "an ElastiCache AUTH token changes through ModifyReplicationGroup"
                " with the ROTATE strategy, not a Secrets Manager rotation"
            },
        )
        subnets = elasticache.CfnSubnetGroup(
            self,
            "RedisSubnets",
            description="pizzastream redis",
            subnet_ids=[s.subnet_id for s in self.vpc.isolated_subnets],
        )
        # More than one shard runs in cluster mode: every client then is a cluster client
        # (Redis.cluster_mode) and a store's keys share one slot through their hash tag.
        shards = int(redis_config.get("shards", 1))
        self.redis_cluster_mode = shards > 1
        self.redis = elasticache.CfnReplicationGroup(
            self,
            "Redis",
            replication_group_description=f"{self.prefix} hot reads",
            engine="redis",
            engine_version=redis_config["engine_version"],
            cache_node_type=redis_config["node_type"],
            num_node_groups=shards,
            cluster_mode="enabled" if self.redis_cluster_mode else "disabled",
            cache_parameter_group_name=(
                f"default.redis{redis_config['engine_version'].split('.')[0]}.cluster.on"
                if self.redis_cluster_mode
                else None
            ),
            replicas_per_node_group=redis_config["replicas_per_shard"],
            automatic_failover_enabled=redis_config["replicas_per_shard"] > 0,
            multi_az_enabled=redis_config["replicas_per_shard"] > 0,
            transit_encryption_enabled=True,
            at_rest_encryption_enabled=True,
            auth_token=self.redis_secret.secret_value.unsafe_unwrap(),  # dynamic reference
            cache_subnet_group_name=subnets.ref,
            port=redis_config["port"],
            security_group_ids=[self.sgs["redis"].security_group_id],
            snapshot_retention_limit=7,
        )
        # cluster mode: the configuration endpoint, which tells the clients the slot map;
        # one shard: the primary's endpoint
        self.redis_endpoint = (
            self.redis.attr_configuration_end_point_address
            if self.redis_cluster_mode
            else self.redis.attr_primary_end_point_address
        )
        self._allow(
            ["order_enrichment", "inventory_windowing", "hourly_metrics", "delivery"],
            "redis",
            redis_config["port"],
        )

    # --- database set-up -------------------------------------------------------------------

    def db_login(self, group: str, service: str) -> tuple[str, str]:
        """``(user, password secret ARN)`` a service logs in with to ``group``'s database;
        ``("", "")`` when it does not use that database. ``dbsetup`` is the administrator."""
        if service == "dbsetup":
            if group == AURORA:
                return self.config["aurora"]["user"], self.aurora_secret.secret_arn
            return self.config["warehouse"]["user"], self.warehouse_secret.secret_arn
        if (group, service) not in self.db_users:
            return "", ""
        user, secret = self.db_users[(group, service)]
        return user, secret.secret_arn

    def _database_setup(self) -> None:
        """One user per service and database (``connectors.dbsetup.GRANTS``), its password
        generated into a secret of its own; the custom resource that applies the schemas,
        the users and their grants, and the reference data, run again whenever
        ``dbsetup.fingerprint()`` (schema files, reference data, grants) changes."""
        self.db_users: dict[tuple[str, str], tuple[str, secretsmanager.Secret]] = {}
        for group, grants in dbsetup.GRANTS.items():
            for service in grants:
                secret = secretsmanager.Secret(
                    self,
                    f"DbUser-{group}-{service}",
                    secret_name=f"{self.prefix}/{group.lower()}/{service}",
                    description=f"{service}'s password for the {group} database",
                    generate_secret_string=secretsmanager.SecretStringGenerator(
                        secret_string_template=json.dumps({"username": service}),
                        generate_string_key="password",
                        exclude_punctuation=True,
                        # Redshift wants an upper and a lower case letter and a digit
                        require_each_included_type=True,
                        password_length=32,
                    ),
                )
                _suppress(
                    secret,
                    {
                        "AwsSolutions-SMG4": "a service user's password: a new value (aws "
                        "secretsmanager put-secret-value) is set on the database "
                        "by running the set-up function again, and read by each "
                        "service at start; runbook in docs/deploy.md"
                    },
                )
                self.db_users[(group, service)] = (service, secret)

        function = self._function(
            "dbsetup",
            "connectors.dbsetup.handler",
            Duration.minutes(15),
            1024,
            "Database set-up: schemas, a user per service with its grants, reference data",
        )
        role = self.roles["dbsetup"]
        self.aurora_secret.grant_read(role)
        self.warehouse_secret.grant_read(role)
        for _, secret in self.db_users.values():
            secret.grant_read(role)
        provider_logs = logs.LogGroup(
            self,
            "Logs-dbsetup-provider",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        provider = cr.Provider(
            self, "DatabaseSetupProvider", on_event_handler=function, log_group=provider_logs
        )
        _suppress(
            provider,
            {
                "AwsSolutions-IAM4": "CDK's provider framework function (it only invokes the set-up "
                "function and answers CloudFormation): AWS managed "
                "AWSLambdaBasicExecutionRole for its logs",
                "AwsSolutions-IAM5": "CDK's provider framework may invoke any version of the one "
                "set-up function (ARN ending in :*), scoped by CDK",
            },
        )
        users = [
            {
                "service": service,
                "database": group,
                "user": user,
                "password_secret_arn": secret.secret_arn,
            }
            for (group, service), (user, secret) in self.db_users.items()
        ]
        # Also in the function's environment: invoked by hand with ``{}`` it sets the same
        # users up again (a password changed in its secret, docs/deploy.md).
        function.add_environment(dbsetup.USERS_VARIABLE, self.to_json_string(users))
        self.db_setup = CustomResource(
            self,
            "DatabaseSetup",
            service_token=provider.service_token,
            resource_type="Custom::DatabaseSetup",
            properties={"Fingerprint": dbsetup.fingerprint(), "Users": users},
        )
        # The databases must be up and reachable: Aurora's instances, the workgroup.
        self.db_setup.node.add_dependency(self.aurora)
        self.db_setup.node.add_dependency(self.warehouse)

    # --- property groups -------------------------------------------------------------------

    def groups(self, service: str) -> Props:
        """The property groups of a non-MSF service (the MSF ones come from their templates)."""
        aws = {"region": self.region, "account_id": self.account}
        # Each service logs in as its own database user (connectors.dbsetup.GRANTS); only
        # the set-up itself as the administrator.
        aurora_user, aurora_secret = self.db_login(AURORA, service)
        warehouse_user, warehouse_secret = self.db_login(WAREHOUSE, service)
        aurora = {
            "host": self.aurora.cluster_endpoint.hostname,
            "port": str(self.aurora.cluster_endpoint.port),
            "dbname": self.config["aurora"]["dbname"],
            "user": aurora_user,
            "password_secret_arn": aurora_secret,
            **DATABASE_TLS,
        }
        warehouse = {
            "host": self.warehouse.attr_workgroup_endpoint_address,
            "port": "5439",
            "dbname": self.config["warehouse"]["dbname"],
            "user": warehouse_user,
            "password_secret_arn": warehouse_secret,
            **DATABASE_TLS,
            "engine": "redshift",
            "iam_role": self.warehouse_copy_role.role_arn,
        }
        # ElastiCache's AUTH token is the default user's password (plain AUTH).
        redis = {
            "host": self.redis_endpoint,
            "port": str(self.config["redis"]["port"]),
            "user": "default",
            "tls": "true",
            "cluster_mode": "true" if self.redis_cluster_mode else "false",
            "password_secret_arn": self.redis_secret.secret_arn,
        }
        streams = {logical: stream.stream_name for logical, stream in self.streams.items()}
        lake = {
            "bucket": self.lake.bucket_name,
            "staging_bucket": self.staging.bucket_name,
            "pos_bucket": self.pos.bucket_name,
        }
        delivery = self.config["delivery"]
        if service == "pos":
            return {
                "Aws": aws,
                "Aurora": aurora,
                "Lake": lake,
                "Streams": {"sales": streams["sales"]},
                "Pos": {
                    "store_systems": str(self.config["pos"]["store_systems"]),
                    "batch_interval_s": POS_CADENCE_S,
                },
            }
        if service == "health":
            return {"Aws": aws, "Aurora": aurora}
        if service == "dbsetup":
            return {
                "Aws": aws,
                "Aurora": aurora,
                "Warehouse": {k: v for k, v in warehouse.items() if k != "iam_role"},
            }
        if service == "ticks":
            return {"Aws": aws, "Streams": {"restocks": streams["restocks"]}}
        if service == "etl":
            return {
                "Aws": aws,
                "Aurora": aurora,
                "Warehouse": warehouse,
                "Lake": lake,
                "Etl": ETL,
                "HourlyMetrics": HOURLY_METRICS,
            }
        if service == "delivery":
            return {
                "Aws": aws,
                "Aurora": aurora,
                "Redis": redis,
                "Streams": {
                    "deliveries": streams["deliveries"],
                    "initial_position": "TRIM_HORIZON",
                },
                "Delivery": {
                    "max_fee": "12.00",
                    "max_distance_km": "35",
                    "eta_cost_cents_per_min": "10",
                    "retry_backoff_s": "30",
                    "retry_backoff_max_s": "300",
                    "deadline_minutes": "45",
                    "retry_poll_s": "5",
                    "provider_url": delivery["provider_url"],
                    "provider_timeout_s": "2",
                    "provider_attempts": "3",
                    "kcl_application_name": self.lease_table_name,
                    "kcl_java_opts": "-Xms256m -Xmx1024m",
                },
            }
        raise KeyError(service)

    @staticmethod
    def environment_variables(groups: Props) -> dict[str, str]:
        """``PIZZASTREAM__<Group>__<key>``: how a Lambda function or a container gets its
        groups (``pizzastream.config.load_properties`` overrides)."""
        return {
            f"PIZZASTREAM__{group}__{key}": value
            for group, values in groups.items()
            for key, value in values.items()
        }

    # --- MSF -------------------------------------------------------------------------------

    def _flink_applications(self, msf_zip: Path) -> None:
        code = assets.Asset(self, "MsfZip", path=str(msf_zip))
        self.applications: dict[str, flink.CfnApplication] = {}
        for job in msf.jobs():
            sg = self.sgs[job]
            app_name = f"{self.prefix}-{job.replace('_', '-')}"
            log_group = logs.LogGroup(
                self,
                f"Logs-{job}",
                log_group_name=f"/aws/kinesis-analytics/{app_name}",
                retention=logs.RetentionDays.ONE_MONTH,
                removal_policy=RemovalPolicy.DESTROY,
            )
            log_stream = logs.LogStream(
                self, f"LogStream-{job}", log_group=log_group, log_stream_name=msf.LOG_STREAM
            )
            values = {
                "account": self.account,
                "region": self.region,
                "app": app_name,
                "log_group": log_group.log_group_name,
                "log_stream": msf.LOG_STREAM,
                "code.bucket": code.s3_bucket_name,
                "code_key": code.s3_object_key,
                **{f"streams.{k}": s.stream_name for k, s in self.streams.items()},
                "aurora.host": self.aurora.cluster_endpoint.hostname,
                "aurora.port": str(self.aurora.cluster_endpoint.port),
                "aurora.dbname": self.config["aurora"]["dbname"],
                "aurora.user": self.db_login(AURORA, job)[0],
                "warehouse.host": self.warehouse.attr_workgroup_endpoint_address,
                "warehouse.port": "5439",
                "warehouse.dbname": self.config["warehouse"]["dbname"],
                "warehouse.user": self.db_login(WAREHOUSE, job)[0],
                "warehouse.engine": "redshift",
                "warehouse.iam_role": self.warehouse_copy_role.role_arn,
                "redis.host": self.redis_endpoint,
                "redis.port": str(self.config["redis"]["port"]),
                # ElastiCache's AUTH token is the default user's password (plain AUTH).
                "redis.user": "default",
                "redis.cluster_mode": "true" if self.redis_cluster_mode else "false",
                "lake.bucket": self.lake.bucket_name,
                "secrets.aurora": self.db_login(AURORA, job)[1],
                "secrets.warehouse": self.db_login(WAREHOUSE, job)[1],
                "secrets.redis": self.redis_secret.secret_arn,
                "vpc.subnet_ids": [s.subnet_id for s in self.vpc.isolated_subnets],
                "vpc.security_group_ids": [sg.security_group_id],
                **{f"jobs.{job}.{k}": v for k, v in self.config["jobs"][job].items()},
            }
            body = msf.render_values(job, values)
            role = self._msf_role(job, app_name, code, log_group, log_stream)
            config = body["ApplicationConfiguration"]
            app = flink.CfnApplication(
                self,
                f"Msf-{job}",
                application_name=app_name,
                application_description=body["ApplicationDescription"],
                runtime_environment=body["RuntimeEnvironment"],
                application_mode=body["ApplicationMode"],
                service_execution_role=role.role_arn,
            )
            app.add_property_override(
                "ApplicationConfiguration",
                {
                    "ApplicationCodeConfiguration": config["ApplicationCodeConfiguration"],
                    "EnvironmentProperties": config["EnvironmentProperties"],
                    "FlinkApplicationConfiguration": config["FlinkApplicationConfiguration"],
                    "ApplicationSnapshotConfiguration": config["ApplicationSnapshotConfiguration"],
                    "ApplicationSystemRollbackConfiguration": config[
                        "ApplicationSystemRollbackConfiguration"
                    ],
                    "VpcConfigurations": config["VpcConfigurations"],
                },
            )
            # A new version restarts from the snapshot MSF takes for the update, and only if
            # all state finds its operator again (docs/deploy.md, "Roll out a new version").
            app.add_property_override(
                "RunConfiguration",
                {
                    "ApplicationRestoreConfiguration": {
                        "ApplicationRestoreType": "RESTORE_FROM_LATEST_SNAPSHOT"
                    },
                    "FlinkRunConfiguration": {"AllowNonRestoredState": False},
                },
            )
            # The role's policy must exist before MSF checks what the role may do.
            app.add_resource_dependency(role.node.find_child("DefaultPolicy").node.default_child)
            # The job's tables, user and reference data exist before it starts.
            app.node.add_dependency(self.db_setup)
            logging_option = flink.CfnApplicationCloudWatchLoggingOption(
                self,
                f"MsfLogging-{job}",
                application_name=app_name,
                cloud_watch_logging_option=flink.CfnApplicationCloudWatchLoggingOption.CloudWatchLoggingOptionProperty(
                    log_stream_arn=self.format_arn(
                        service="logs",
                        resource="log-group",
                        resource_name=f"{log_group.log_group_name}:log-stream:{msf.LOG_STREAM}",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                ),
            )
            logging_option.add_resource_dependency(app)
            self.applications[job] = app
            CfnOutput(self, f"Application-{job}", value=app_name)

    def _msf_role(
        self,
        job: str,
        app_name: str,
        code: assets.Asset,
        log_group: logs.LogGroup,
        log_stream: logs.LogStream,
    ) -> iam.Role:
        """The job's role: the statements of ``deploy/iam/<job>-policy.json`` for this stack's
        resources (the same template ``python -m deploy iam`` prints)."""
        role = iam.Role(
            self,
            f"Role-{job}",
            role_name=app_name,
            assumed_by=iam.ServicePrincipal(
                "kinesisanalytics.amazonaws.com",
                conditions={
                    "StringEquals": {"aws:SourceAccount": self.account},
                    "ArnEquals": {
                        "aws:SourceArn": self.format_arn(
                            service="kinesisanalytics",
                            resource="application",
                            resource_name=app_name,
                        )
                    },
                },
            ),
        )
        values = {
            "account": self.account,
            "region": self.region,
            "app": app_name,
            "log_group": log_group.log_group_name,
            "log_stream": msf.LOG_STREAM,
            "code.bucket": code.s3_bucket_name,
            "code_key": code.s3_object_key,
            "lake.bucket": self.lake.bucket_name,
            "secrets.aurora": self.db_login(AURORA, job)[1],
            "secrets.warehouse": self.db_login(WAREHOUSE, job)[1],
            "secrets.redis": self.redis_secret.secret_arn,
            **{f"streams.{k}": s.stream_name for k, s in self.streams.items()},
        }
        document = msf.render_policy(job, values)
        for statement in document["Statement"]:
            role.add_to_policy(iam.PolicyStatement.from_json(statement))
        _suppress(
            role,
            {
                "AwsSolutions-IAM5": "deploy/iam/<job>-policy.json: ec2:Describe* has no resource-level"
                " permissions (AWS requires '*'); ENIs are created under "
                "network-interface/* of this account and region, and the "
                "file sink's part objects under lake/* and log streams of the "
                "job's own group: names MSF and Flink choose at run time"
            },
        )
        self.roles[job] = role
        return role

    # --- Lambda functions ------------------------------------------------------------------

    def _function(
        self, name: str, handler: str, timeout: Duration, memory: int, description: str
    ) -> lambda_.Function:
        role = iam.Role(
            self,
            f"Role-{name}",
            role_name=f"{self.prefix}-{name}",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        )
        log_group = logs.LogGroup(
            self,
            f"Logs-{name}",
            log_group_name=f"/aws/lambda/{self.prefix}-{name}",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        function = lambda_.Function(
            self,
            f"Function-{name}",
            function_name=f"{self.prefix}-{name}",
            description=description,
            runtime=lambda_.Runtime.PYTHON_3_11,
            architecture=lambda_.Architecture.X86_64,
            handler=handler,
            code=lambda_.Code.from_asset(str(packages.lambda_package())),
            timeout=timeout,
            memory_size=memory,
            role=role,
            log_group=log_group,
            vpc=self.vpc,
            vpc_subnets=self.data_subnets,
            security_groups=[self.sgs[name]],
            environment={
                "PIZZASTREAM_PROPERTIES": f"/var/task/{packages.PROPERTIES}",
                **self.environment_variables(self.groups(name)),
            },
        )
        # ENIs of a function in a VPC: AWS documents these actions with Resource "*"
        # (AWSLambdaVPCAccessExecutionRole); they cannot be scoped to resources.
        role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "ec2:CreateNetworkInterface",
                    "ec2:DescribeNetworkInterfaces",
                    "ec2:DeleteNetworkInterface",
                    "ec2:AssignPrivateIpAddresses",
                    "ec2:UnassignPrivateIpAddresses",
                ],
                resources=["*"],
            )
        )
        log_group.grant_write(role)
        _suppress(
            function,
            {
                "AwsSolutions-L1": "the code base targets Python 3.11, MSF's Python: "
                "every service runs the same interpreter"
            },
        )
        _suppress(
            role,
            {
                "AwsSolutions-IAM5": "Lambda's VPC ENI actions require Resource '*' "
                "(AWS documentation); log streams are named by "
                "Lambda at run time inside the function's group"
            },
        )
        self.roles[name] = role
        return function

    def _functions(self) -> None:
        pos = self._function(
            "pos",
            "etl.pos_lambda.handler",
            Duration.minutes(15),
            512,
            "POS ingestion: a landed POS batch into order_fct and sales",
        )
        role = self.roles["pos"]
        self.db_users[(AURORA, "pos")][1].grant_read(role)
        self.streams["sales"].grant_write(role)
        # Landing in, archive and quarantine out: read, copy and delete under pos/ only.
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                resources=[self.pos.arn_for_objects("pos/*")],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[self.pos.bucket_arn],
                conditions={"StringLike": {"s3:prefix": ["pos/landing/*"]}},
            )
        )
        self.pos.add_event_notification(
            s3.EventType.OBJECT_CREATED,
            s3n.LambdaDestination(pos),
            s3.NotificationKeyFilter(prefix=LANDING_PREFIX, suffix=MANIFEST_SUFFIX),
        )
        # The safety net: every system every 15 minutes (etl.pos_lambda).
        events.Rule(
            self,
            "PosSweep",
            schedule=events.Schedule.rate(Duration.minutes(15)),
            targets=[targets.LambdaFunction(pos)],
        )
        self.pos_function = pos

        health = self._function(
            "health",
            "etl.health.handler",
            Duration.minutes(1),
            256,
            "Dead letters and ETL freshness from Aurora to CloudWatch",
        )
        self.db_users[(AURORA, "health")][1].grant_read(self.roles["health"])
        # PutMetricData has no resource-level permissions; the namespace condition scopes it.
        self.roles["health"].add_to_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": METRICS_NAMESPACE}},
            )
        )
        events.Rule(
            self,
            "HealthSchedule",
            schedule=events.Schedule.rate(Duration.minutes(5)),
            targets=[targets.LambdaFunction(health)],
        )
        # Both read and write tables the database set-up creates, as its users.
        for function in (pos, health):
            function.node.add_dependency(self.db_setup)

        # The replenishment plan's hourly review (docs/replenishment.md): each store's tick
        # on restocks at the start of every hour. A retry writes the same event ids, which
        # inventory_windowing drops as repeats.
        ticks = self._function(
            "ticks",
            "pizzastream.ticks.handler",
            Duration.minutes(2),
            256,
            "Hourly review ticks of every store onto the restocks stream",
        )
        self.streams["restocks"].grant_write(self.roles["ticks"])
        events.Rule(
            self,
            "TicksSchedule",
            schedule=events.Schedule.cron(minute="0", hour="*"),
            targets=[targets.LambdaFunction(ticks)],
        )

    # --- containers ------------------------------------------------------------------------

    def _containers(self) -> None:
        self.lease_table_name = f"{self.prefix}-delivery"
        cluster = ecs.Cluster(
            self, "Cluster", vpc=self.vpc, container_insights_v2=ecs.ContainerInsights.ENABLED
        )
        certs.rds_ca_bundle()  # deploy/target/certs, which the image copies
        image = ecs.ContainerImage.from_asset(
            str(REPO_ROOT),
            file="deploy/docker/Dockerfile",
            ignore_mode=IgnoreMode.DOCKER,
            exclude=[
                "*",
                *[f"!{path}" for path in IMAGE_FILES],
                "**/__pycache__",
                "**/target",
                "!deploy/target/certs",
            ],
            platform=ecr_assets.Platform.LINUX_AMD64,
        )

        def task(name: str, cpu: int, memory: int, command: list[str]) -> ecs.FargateTaskDefinition:
            task_role = iam.Role(
                self,
                f"Role-{name}",
                role_name=f"{self.prefix}-{name}",
                assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            )
            definition = ecs.FargateTaskDefinition(
                self, f"Task-{name}", cpu=cpu, memory_limit_mib=memory, task_role=task_role
            )
            log_group = logs.LogGroup(
                self,
                f"Logs-{name}",
                log_group_name=f"/ecs/{self.prefix}-{name}",
                retention=logs.RetentionDays.ONE_MONTH,
                removal_policy=RemovalPolicy.DESTROY,
            )
            definition.add_container(
                name,
                image=image,
                command=command,
                logging=ecs.LogDriver.aws_logs(stream_prefix=name, log_group=log_group),
                environment={
                    "PIZZASTREAM_PROPERTIES": f"/app/{packages.PROPERTIES}",
                    **self.environment_variables(self.groups(name)),
                },
            )
            _suppress(
                definition,
                {
                    "AwsSolutions-ECS2": "only non-secret settings are environment variables; the "
                    "passwords are read from Secrets Manager at start",
                    "AwsSolutions-IAM5": "the execution role pulls this stack's image (ecr:"
                    "GetAuthorizationToken requires Resource '*') and writes "
                    "log streams ECS names at run time in the task's group",
                },
            )
            self.roles[name] = task_role
            return definition

        etl = self.config["etl"]
        etl_task = task("etl", etl["cpu"], etl["memory_mib"], ["etl.hourly"])
        role = self.roles["etl"]
        self.db_users[(AURORA, "etl")][1].grant_read(role)
        self.db_users[(WAREHOUSE, "etl")][1].grant_read(role)
        self.staging.grant_read_write(role, "staging/*")
        self.staging.grant_delete(role, "staging/*")
        self.lake.grant_read_write(role, "lake/*")
        # Redshift loads: the manifest of each hour's staging parts and the recomputed
        # metrics' load files (connectors.redshift.LoadFiles, ``Warehouse.load_prefix``).
        self.lake.grant_read_write(role, "warehouse/loads/*")
        self.lake.grant_delete(role, "lake/*")
        for bucket, prefix in ((self.staging, "staging/*"), (self.lake, "lake/*")):
            role.add_to_policy(
                iam.PolicyStatement(
                    actions=["s3:ListBucket"],
                    resources=[bucket.bucket_arn],
                    conditions={"StringLike": {"s3:prefix": [prefix]}},
                )
            )
        # After each run the late-hour alarm's metrics (etl.freshness); PutMetricData has no
        # resource-level permissions, the namespace condition scopes it.
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": METRICS_NAMESPACE}},
            )
        )
        _suppress(
            role,
            {
                "AwsSolutions-IAM5": "the ETL writes one object per hour under "
                "staging/ and lake/, and each Redshift load's "
                "manifest and files under warehouse/loads/, "
                "whose names it computes; PutMetricData has "
                "no resource form (namespace condition)"
            },
        )
        etl_rule = events.Rule(
            self,
            "EtlSchedule",
            schedule=events.Schedule.expression(etl["schedule"]),
            targets=[
                targets.EcsTask(
                    cluster=cluster,
                    task_definition=etl_task,
                    subnet_selection=self.data_subnets,
                    security_groups=[self.sgs["etl"]],
                )
            ],
        )
        etl_rule.node.add_dependency(self.db_setup)
        _suppress(
            etl_task,
            {
                "AwsSolutions-IAM5": "EventBridge's role may run any revision of "
                "the ETL's task definition (ARN ends in :*)"
            },
        )

        delivery = self.config["delivery"]
        leases = dynamodb.TableV2(
            self,
            "DeliveryLeases",
            table_name=self.lease_table_name,
            partition_key=dynamodb.Attribute(name="leaseKey", type=dynamodb.AttributeType.STRING),
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            removal_policy=RemovalPolicy.DESTROY,
        )
        delivery_task = task(
            "delivery", delivery["cpu"], delivery["memory_mib"], ["delivery"]
        )  # worker id: host name + random
        role = self.roles["delivery"]
        self.db_users[(AURORA, "delivery")][1].grant_read(role)
        self.redis_secret.grant_read(role)
        self.streams["deliveries"].grant_read(role)
        leases.grant_read_write_data(role)
        # KCL 3 keeps worker metrics and the coordinator state in tables of its own, named
        # after the lease table; it creates them at first start.
        role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "dynamodb:CreateTable",
                    "dynamodb:DescribeTable",
                    "dynamodb:UpdateTable",
                    "dynamodb:GetItem",
                    "dynamodb:PutItem",
                    "dynamodb:UpdateItem",
                    "dynamodb:DeleteItem",
                    "dynamodb:Scan",
                    "dynamodb:Query",
                ],
                resources=[
                    self.format_arn(
                        service="dynamodb",
                        resource="table",
                        resource_name=f"{self.lease_table_name}*",
                    )
                ],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],  # no resource-level form
                conditions={"StringEquals": {"cloudwatch:namespace": self.lease_table_name}},
            )
        )
        _suppress(
            role,
            {
                "AwsSolutions-IAM5": "KCL tables share the lease table's name as "
                "prefix; PutMetricData has no resource form"
            },
        )
        delivery_service = ecs.FargateService(
            self,
            "Delivery",
            cluster=cluster,
            task_definition=delivery_task,
            desired_count=delivery["workers"],
            vpc_subnets=self.egress_subnets,
            security_groups=[self.sgs["delivery"]],
            assign_public_ip=False,
            min_healthy_percent=50,
        )
        delivery_service.node.add_dependency(self.db_setup)

    # --- store accounts --------------------------------------------------------------------

    def _store_account_role(self) -> None:
        """What a store account's POS system assumes to drop batches: put objects under
        pos/landing/ of the POS bucket, and nothing else."""
        pos = self.config["pos"]
        principals = [iam.AccountPrincipal(account) for account in pos["store_accounts"]]
        role = iam.Role(
            self,
            "Role-store-pos",
            role_name=f"{self.prefix}-store-pos",
            assumed_by=iam.CompositePrincipal(*principals).with_conditions(
                {"StringEquals": {"sts:ExternalId": pos["external_id"]}}
            )
            if len(principals) > 1
            else principals[0].with_conditions(
                {"StringEquals": {"sts:ExternalId": pos["external_id"]}}
            ),
            max_session_duration=Duration.hours(1),
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:PutObject"], resources=[self.pos.arn_for_objects(f"{LANDING_PREFIX}*")]
            )
        )
        _suppress(
            role,
            {
                "AwsSolutions-IAM5": "each batch is a new object under pos/landing/, "
                "named by the store system"
            },
        )
        self.roles["store-pos"] = role
        CfnOutput(self, "StorePosRole", value=role.role_arn)

    # --- alarms ----------------------------------------------------------------------------

    def _alarms(self) -> None:
        alarms = self.config["alarms"]
        key = kms.Key(self, "AlarmTopicKey", enable_key_rotation=True)
        topic = sns.Topic(
            self, "Alarms", topic_name=f"{self.prefix}-alarms", master_key=key, enforce_ssl=True
        )
        key.grant_encrypt_decrypt(iam.ServicePrincipal("cloudwatch.amazonaws.com"))
        topic.add_subscription(subscriptions.EmailSubscription(alarms["email"]))
        action = cw_actions.SnsAction(topic)

        def alarm(
            name: str,
            metric: cw.Metric,
            threshold: float,
            description: str,
            periods: int = 3,
            datapoints: int = 2,
        ) -> None:
            cw.Alarm(
                self,
                f"Alarm-{name}",
                alarm_name=f"{self.prefix}-{name}",
                metric=metric,
                threshold=threshold,
                evaluation_periods=periods,
                datapoints_to_alarm=datapoints,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                treat_missing_data=cw.TreatMissingData.BREACHING
                if name.startswith("etl-")
                else cw.TreatMissingData.NOT_BREACHING,
                alarm_description=description,
            ).add_alarm_action(action)

        for logical, consumer in CONSUMERS.items():
            alarm(
                f"iterator-age-{logical}",
                self.streams[logical].metric_get_records_iterator_age_milliseconds(
                    statistic="Maximum", period=Duration.minutes(1)
                ),
                alarms["iterator_age_ms"],
                f"{consumer} falls behind on {STREAMS[logical]}",
            )
        for job, app in self.applications.items():
            dims = {"Application": app.application_name}
            alarm(
                f"checkpoint-failures-{job}",
                cw.Metric(
                    namespace="AWS/KinesisAnalytics",
                    metric_name="numberOfFailedCheckpoints",
                    dimensions_map=dims,
                    statistic="Maximum",
                    period=Duration.minutes(5),
                ),
                0,
                f"{job} cannot complete checkpoints",
            )
            alarm(
                f"downtime-{job}",
                cw.Metric(
                    namespace="AWS/KinesisAnalytics",
                    metric_name="downtime",
                    dimensions_map=dims,
                    statistic="Maximum",
                    period=Duration.minutes(1),
                ),
                0,
                f"{job} is restarting or down",
            )
        for job in ("order_enrichment", "inventory_windowing", "delivery"):
            alarm(
                f"dead-letters-{job}",
                cw.Metric(
                    namespace=METRICS_NAMESPACE,
                    metric_name="DeadLetters",
                    dimensions_map={"Job": job},
                    statistic="Sum",
                    period=Duration.minutes(5),
                ),
                alarms["dead_letters_per_5_minutes"],
                f"{job} sets aside more bad input than usual (table dead_letter)",
            )
        alarm(
            "etl-freshness",
            cw.Metric(
                namespace=METRICS_NAMESPACE,
                metric_name="EtlFreshnessMinutes",
                statistic="Maximum",
                period=Duration.minutes(5),
            ),
            alarms["etl_freshness_minutes"],
            "the hourly ETL has not exported an hour for too long (table etl_run)",
        )
        # The late-hour alarm (issue 20): one data point per hourly ETL run (etl.freshness);
        # one is enough. No data means no ETL run, which etl-freshness reports.
        for name, metric, what in (
            (
                "hourly-late-hours",
                LATE_HOURS,
                "an hour of hourly_store_metrics was first published later than its bound "
                "(HourlySettings.bound) after its end (table metrics_publication)",
            ),
            (
                "hourly-unpublished-hours",
                UNPUBLISHED_HOURS,
                "an hour with sales is still unpublished its bound (HourlySettings.bound) "
                "after its end (order_fct against metrics_publication)",
            ),
        ):
            alarm(
                name,
                cw.Metric(
                    namespace=METRICS_NAMESPACE,
                    metric_name=metric,
                    statistic="Maximum",
                    period=Duration.hours(1),
                ),
                0,
                what,
                periods=1,
                datapoints=1,
            )


def build(
    env_name: str, msf_zip: Path = msf.ZIP_PATH, outdir: Path | None = None, nag: bool = True
) -> tuple[App, PlatformStack]:
    """The app of one environment; ``outdir`` defaults to ``deploy/cdk.out/<env>``."""
    if not Path(msf_zip).exists():
        raise SystemExit(f"{msf_zip} is missing: build it with deploy/package.sh")
    # Access logs are delivered under a bucket policy, not the legacy log-delivery ACL.
    app = App(
        outdir=str(outdir or CDK_OUT / Path(env_name).stem),
        context={"@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy": True},
    )
    stack = PlatformStack(app, load_environment(env_name), Path(msf_zip))
    if nag:
        Aspects.of(app).add(AwsSolutionsChecks(verbose=True))
    return app, stack
