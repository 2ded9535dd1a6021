"""Command line: ``python -m deploy submit <job> --env prod [--dry-run]`` deploys a job;
``python -m deploy iam <job> --env prod`` prints the IAM role it needs (docs/deploy.md)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from deploy import msf
from deploy.submit import submit


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m deploy")
    commands = parser.add_subparsers(dest="command", required=True)
    submitting = commands.add_parser(
        "submit", help="upload the zip, then create or update the job's MSF application")
    role = commands.add_parser(
        "iam", help="print the job's IAM role: name, trust policy, permissions policy")
    for command in (submitting, role):
        command.add_argument("job", choices=msf.jobs())
        command.add_argument("--env", required=True,
                             help="deploy/environments/<ENV>.json, or the path of a .json file")
    submitting.add_argument("--dry-run", action="store_true",
                            help="check and print the requests; upload and change nothing")
    submitting.add_argument("--zip", type=Path, default=msf.ZIP_PATH,
                            help=f"application zip (default {msf.ZIP_PATH})")
    args = parser.parse_args(argv)

    env_file = msf.environment_file(args.env)
    if args.command == "submit":
        submit(args.job, env_file, args.zip, dry_run=args.dry_run)
    else:
        aws = msf.load_environment(env_file)["aws"]
        print(json.dumps(
            msf.render_role(args.job, aws["account_id"], aws["region"], env_file), indent=2))


if __name__ == "__main__":
    main()
