"""Command line (docs/deploy.md):

``python -m deploy bootstrap <env>`` once per account and region: the CDK's asset bucket,
                                   image repository and deployment roles (``cdk bootstrap``);
``python -m deploy synth <env>``   the CloudFormation templates of the whole platform
                                   (deploy/cdk.out/<env>), from deploy/environments/<env>.json;
``python -m deploy diff <env>``    synth, then ``cdk diff`` against the deployed stack;
``python -m deploy deploy <env>``  synth, ``cdk deploy``, then start the Flink applications
                                   that are not running yet;
``python -m deploy submit <job> --env prod [--dry-run]`` / ``iam <job> --env prod``: one
MSF application into an existing network, without the rest of the platform.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path

from deploy import msf
from deploy.submit import submit

DEPLOY_DIR = Path(__file__).resolve().parent
CDK_CLI = DEPLOY_DIR / "node_modules" / ".bin" / "cdk"


def cdk_cli() -> Path:
    """The pinned CDK CLI (deploy/package.json, package-lock.json), installed on first use."""
    if not CDK_CLI.exists():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--prefix", str(DEPLOY_DIR)], check=True
        )
    return CDK_CLI


def synth(env: str, msf_zip: Path = msf.ZIP_PATH) -> tuple[Path, str]:
    """Writes the cloud assembly; returns its directory and the stack's name."""
    from deploy import platform

    app, stack = platform.build(env, msf_zip)
    assembly = app.synth()
    return Path(assembly.directory), stack.stack_name


def start_applications(outdir: Path, stack_name: str, region: str) -> None:
    """A new MSF application is created READY; start those not running, from no snapshot
    the first time (later updates restore from the snapshot MSF takes)."""
    import boto3

    outputs = (
        boto3.client("cloudformation", region_name=region)
        .describe_stacks(StackName=stack_name)["Stacks"][0]
        .get("Outputs", [])
    )
    names = [o["OutputValue"] for o in outputs if o["OutputKey"].startswith("Application")]
    flink = boto3.client("kinesisanalyticsv2", region_name=region)
    for name in names:
        status = flink.describe_application(ApplicationName=name)["ApplicationDetail"][
            "ApplicationStatus"
        ]
        if status == "READY":
            flink.start_application(
                ApplicationName=name,
                RunConfiguration={
                    "ApplicationRestoreConfiguration": {
                        "ApplicationRestoreType": "SKIP_RESTORE_FROM_SNAPSHOT"
                    }
                },
            )
            print(f"started {name}")
        else:
            print(f"{name}: {status}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m deploy")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("bootstrap", "once per account and region: cdk bootstrap"),
        ("synth", "write the CloudFormation templates of the platform"),
        ("diff", "synth, then show what a deploy would change"),
        ("deploy", "synth, deploy the stack, start the Flink applications"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("env", help="deploy/environments/<ENV>.json, or a .json path")
        command.add_argument(
            "--zip",
            type=Path,
            default=msf.ZIP_PATH,
            help=f"MSF application zip (default {msf.ZIP_PATH})",
        )
    submitting = commands.add_parser(
        "submit", help="upload the zip, then create or update one job's MSF application"
    )
    role = commands.add_parser(
        "iam", help="print the job's IAM role: name, trust policy, permissions policy"
    )
    for command in (submitting, role):
        command.add_argument("job", choices=msf.jobs())
        command.add_argument(
            "--env",
            required=True,
            help="deploy/environments/<ENV>.json, or the path of a .json file",
        )
    submitting.add_argument(
        "--dry-run",
        action="store_true",
        help="check and print the requests; upload and change nothing",
    )
    submitting.add_argument(
        "--zip", type=Path, default=msf.ZIP_PATH, help=f"application zip (default {msf.ZIP_PATH})"
    )
    args = parser.parse_args(argv)

    if args.command == "bootstrap":
        aws = json.loads(msf.environment_file(args.env).read_text())["aws"]
        subprocess.run(
            [str(cdk_cli()), "bootstrap", f"aws://{aws['account_id']}/{aws['region']}"], check=True
        )
        return
    if args.command in ("synth", "diff", "deploy"):
        outdir, stack = synth(args.env, args.zip)
        print(f"synth: {outdir / (stack + '.template.json')}")
        if args.command == "synth":
            return
        cli = [str(cdk_cli()), args.command, "--app", str(outdir), stack]
        if args.command == "deploy":
            cli += ["--require-approval", "broadening"]
        subprocess.run(cli, check=True, env={**os.environ, "CDK_DISABLE_VERSION_CHECK": "1"})
        if args.command == "deploy":
            region = json.loads(msf.environment_file(args.env).read_text())["aws"]["region"]
            start_applications(outdir, stack, region)
        return
    env_file = msf.environment_file(args.env)
    if args.command == "submit":
        submit(args.job, env_file, args.zip, dry_run=args.dry_run)
    else:
        aws = msf.load_environment(env_file)["aws"]
        print(
            json.dumps(
                msf.render_role(args.job, aws["account_id"], aws["region"], env_file), indent=2
            )
        )


if __name__ == "__main__":
    main()
