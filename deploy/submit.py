"""Uploads the application zip and creates or updates one job's MSF application.

Everything is checked before the first write: the credentials belong to the environment's
account (a prod file never lands in another account), the zip holds the files the run
options name (MSF itself would only notice at start), and the code bucket keeps object
versions (the application pins the version it runs, and a rollback needs the previous one).
A dry run stops there and prints the requests instead of sending them.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path

from connectors import aws
from deploy import msf


def submit(
    job: str,
    env_file: Path,
    zip_path: Path = msf.ZIP_PATH,
    *,
    dry_run: bool = False,
    client: Callable | None = None,
    out: Callable[[str], None] = print,
) -> dict:
    """Deploys ``job`` to the environment of ``env_file``; returns the Create/UpdateApplication
    request (sent, or only printed when ``dry_run``). ``client(service)`` makes the boto3
    clients; by default from the environment's ``aws`` section (endpoint and keys only for
    emulators, otherwise the default credential chain)."""
    env = msf.load_environment(env_file)
    account, region = env["aws"]["account_id"], env["aws"]["region"]
    client = client or (lambda service: aws.client({"Aws": env["aws"]}, service))

    caller = client("sts").get_caller_identity()["Account"]
    if caller != account:
        raise SystemExit(
            f"the credentials are for account {caller}; {env_file} deploys to {account}"
        )
    body = msf.render(job, account, region, env_file)
    _check_zip(zip_path, body)
    location = body["ApplicationConfiguration"]["ApplicationCodeConfiguration"]["CodeContent"][
        "S3ContentLocation"
    ]
    bucket, key = location["BucketARN"].split(":::", 1)[1], location["FileKey"]
    s3 = client("s3")
    if s3.get_bucket_versioning(Bucket=bucket).get("Status") != "Enabled":
        raise SystemExit(
            f"enable versioning on s3://{bucket}: applications pin the code version "
            "they run, and rolling back needs the previous one"
        )
    flink = client("kinesisanalyticsv2")
    current = _describe(flink, body["ApplicationName"])
    operation = "CreateApplication" if current is None else "UpdateApplication"

    if dry_run:
        location["ObjectVersion"] = "<version created by the upload>"
        request = body if current is None else update_request(body, current)
        out(
            json.dumps(
                {
                    "PutObject": {"Bucket": bucket, "Key": key, "Body": str(zip_path)},
                    operation: request,
                },
                indent=2,
            )
        )
        return request
    with open(zip_path, "rb") as data:
        location["ObjectVersion"] = s3.put_object(Bucket=bucket, Key=key, Body=data)["VersionId"]
    if current is None:
        request = body
        detail = flink.create_application(**request)["ApplicationDetail"]
    else:
        request = update_request(body, current)
        detail = flink.update_application(**request)["ApplicationDetail"]
    out(
        f"{operation} {body['ApplicationName']}: version {detail['ApplicationVersionId']}, "
        f"{detail['ApplicationStatus']}, code s3://{bucket}/{key} @ {location['ObjectVersion']}"
    )
    return request


def update_request(body: dict, current: dict) -> dict:
    """The UpdateApplication request that makes the application ``current`` (its
    DescribeApplication detail) match the CreateApplication request ``body``.

    A running application restarts from the snapshot MSF takes for the update, and only if
    every piece of state finds its operator again (stable operator uids; no
    AllowNonRestoredState): an update that would drop state fails, and the system rollback
    puts the previous version back."""
    config = body["ApplicationConfiguration"]
    described = current["ApplicationConfigurationDescription"]
    vpc = config["VpcConfigurations"][0]
    request = {
        "ApplicationName": body["ApplicationName"],
        "CurrentApplicationVersionId": current["ApplicationVersionId"],
        "ServiceExecutionRoleUpdate": body["ServiceExecutionRole"],
        "ApplicationConfigurationUpdate": {
            "ApplicationCodeConfigurationUpdate": {
                "CodeContentTypeUpdate": config["ApplicationCodeConfiguration"]["CodeContentType"],
                "CodeContentUpdate": {
                    "S3ContentLocationUpdate": _suffixed(
                        config["ApplicationCodeConfiguration"]["CodeContent"]["S3ContentLocation"]
                    )
                },
            },
            "EnvironmentPropertyUpdates": config["EnvironmentProperties"],
            "FlinkApplicationConfigurationUpdate": {
                f"{name}Update": _suffixed(part)
                for name, part in config["FlinkApplicationConfiguration"].items()
            },
            "ApplicationSnapshotConfigurationUpdate": _suffixed(
                config["ApplicationSnapshotConfiguration"]
            ),
            "ApplicationSystemRollbackConfigurationUpdate": _suffixed(
                config["ApplicationSystemRollbackConfiguration"]
            ),
            "VpcConfigurationUpdates": [
                {
                    "VpcConfigurationId": described["VpcConfigurationDescriptions"][0][
                        "VpcConfigurationId"
                    ],
                    "SubnetIdUpdates": vpc["SubnetIds"],
                    "SecurityGroupIdUpdates": vpc["SecurityGroupIds"],
                }
            ],
        },
        "RunConfigurationUpdate": {
            "FlinkRunConfiguration": {"AllowNonRestoredState": False},
            "ApplicationRestoreConfiguration": {
                "ApplicationRestoreType": "RESTORE_FROM_LATEST_SNAPSHOT"
            },
        },
        "CloudWatchLoggingOptionUpdates": [
            {
                "CloudWatchLoggingOptionId": current["CloudWatchLoggingOptionDescriptions"][0][
                    "CloudWatchLoggingOptionId"
                ],
                "LogStreamARNUpdate": body["CloudWatchLoggingOptions"][0]["LogStreamARN"],
            }
        ],
    }
    if current["RuntimeEnvironment"] != body["RuntimeEnvironment"]:
        request["RuntimeEnvironmentUpdate"] = body["RuntimeEnvironment"]  # in-place upgrade
    return request


def _suffixed(settings: dict) -> dict:
    """Create-style settings in their update form (``Parallelism`` -> ``ParallelismUpdate``)."""
    return {f"{name}Update": value for name, value in settings.items()}


def _describe(flink, name: str) -> dict | None:
    """The application's DescribeApplication detail, None when there is none by that name.
    (Found by listing: DescribeApplication on a missing name is an error, not an answer.)"""
    for page in flink.get_paginator("list_applications").paginate():
        if any(app["ApplicationName"] == name for app in page["ApplicationSummaries"]):
            return flink.describe_application(ApplicationName=name)["ApplicationDetail"]
    return None


def _check_zip(zip_path: Path, body: dict) -> None:
    if not Path(zip_path).exists():
        raise SystemExit(f"{zip_path} is missing: build it with deploy/package.sh")
    groups = body["ApplicationConfiguration"]["EnvironmentProperties"]["PropertyGroups"]
    options = next(g["PropertyMap"] for g in groups if g["PropertyGroupId"] == msf.RUN_OPTIONS)
    with zipfile.ZipFile(zip_path) as archive:
        names = archive.namelist()
    wanted = [options["python"], options["jarfile"], *options["pyFiles"].split(",")]
    missing = [
        path
        for path in wanted
        if path not in names and not any(name.startswith(path.rstrip("/") + "/") for name in names)
    ]
    if missing:
        raise SystemExit(
            f"{zip_path} lacks {', '.join(missing)}: rebuild it with deploy/package.sh"
        )
