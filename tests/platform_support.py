"""Reading a synthesized CloudFormation template the way AWS would: intrinsic functions
resolved to the names and ARNs CloudFormation would give (the stack names its buckets,
streams, tables, roles and log groups itself, so those are exact), and each role's policies
gathered, for the IAM evaluation and the configuration checks of tests/deploy/test_platform.py."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ACCOUNT, REGION = "111122223333", "us-east-1"
SECRET_SUFFIX = "-AbCdEf"  # what Secrets Manager appends to a secret's name


class Template:
    def __init__(self, path: Path):
        self.body = json.loads(Path(path).read_text())
        self.resources = self.body["Resources"]

    def of_type(self, kind: str) -> dict[str, dict]:
        return {k: v for k, v in self.resources.items() if v["Type"] == kind}

    # --- intrinsic functions ---------------------------------------------------------------

    def resolve(self, node):
        if isinstance(node, list):
            return [self.resolve(item) for item in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, value),) = node.items()
            if key == "Ref":
                return self.ref(value)
            if key == "Fn::GetAtt":
                logical, attribute = value if isinstance(value, list) else value.split(".", 1)
                return self.get_att(logical, attribute)
            if key == "Fn::Join":
                separator, parts = value
                return separator.join(str(self.resolve(part)) for part in parts)
            if key == "Fn::Sub":
                text, variables = (value, {}) if isinstance(value, str) else value
                for name, replacement in variables.items():
                    text = text.replace("${" + name + "}", str(self.resolve(replacement)))
                while "${" in text:
                    start = text.index("${")
                    end = text.index("}", start)
                    name = text[start + 2 : end]
                    resolved = (
                        self.ref(name) if "." not in name else self.get_att(*name.split(".", 1))
                    )
                    text = text[:start] + str(resolved) + text[end + 1 :]
                return text
            if key == "Fn::Select":
                index, items = value
                return self.resolve(items)[int(index)]
            if key == "Fn::Split":
                separator, text = value
                return str(self.resolve(text)).split(separator)
        return {k: self.resolve(v) for k, v in node.items()}

    def ref(self, name: str):
        pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": "stack",
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.body.get("Parameters", {}):
            return self.body["Parameters"][name].get("Default", name)
        resource = self.resources[name]
        props = resource.get("Properties", {})
        kind = resource["Type"]
        if kind == "AWS::S3::Bucket":
            return props.get("BucketName", name.lower())
        if kind == "AWS::Kinesis::Stream":
            return props.get("Name", name)
        if kind == "AWS::SecretsManager::Secret":
            return (
                f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:"
                f"{self.resolve(props.get('Name', name))}{SECRET_SUFFIX}"
            )
        if kind == "AWS::SecretsManager::SecretTargetAttachment":
            return self.resolve(props["SecretId"])
        if kind in (
            "AWS::IAM::Role",
            "AWS::Logs::LogGroup",
            "AWS::DynamoDB::GlobalTable",
            "AWS::DynamoDB::Table",
            "AWS::ECS::Cluster",
        ):
            return self.resolve(
                props.get(
                    {
                        "AWS::IAM::Role": "RoleName",
                        "AWS::Logs::LogGroup": "LogGroupName",
                        "AWS::ECS::Cluster": "ClusterName",
                    }.get(kind, "TableName"),
                    name,
                )
            )
        if kind == "AWS::KinesisAnalyticsV2::Application":
            return props.get("ApplicationName", name)
        return name

    def get_att(self, logical: str, attribute: str):
        resource = self.resources[logical]
        kind = resource["Type"]
        name = self.ref(logical)
        if attribute == "Arn":
            return {
                "AWS::S3::Bucket": f"arn:aws:s3:::{name}",
                "AWS::Kinesis::Stream": f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{name}",
                "AWS::IAM::Role": f"arn:aws:iam::{ACCOUNT}:role/{name}",
                "AWS::Logs::LogGroup": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}:*",
                "AWS::DynamoDB::GlobalTable": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}",
                "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}",
                "AWS::KMS::Key": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{logical}",
                "AWS::Lambda::Function": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{logical}",
                "AWS::ECS::Cluster": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{name}",
            }.get(kind, f"arn:aws:{kind.split('::')[1].lower()}:{REGION}:{ACCOUNT}:{logical}")
        return f"{logical}.{attribute}"

    # --- roles -----------------------------------------------------------------------------

    def role(self, role_name: str) -> tuple[str, list[dict]]:
        """``(role ARN, its identity policies)`` of the role named ``role_name``."""
        (logical,) = [
            k
            for k, v in self.of_type("AWS::IAM::Role").items()
            if self.resolve(v["Properties"].get("RoleName")) == role_name
        ]
        policies = [
            self.resolve(v["Properties"]["PolicyDocument"])
            for v in self.of_type("AWS::IAM::Policy").values()
            if {"Ref": logical} in v["Properties"].get("Roles", [])
        ]
        inline = [
            self.resolve(p["PolicyDocument"])
            for p in self.resources[logical]["Properties"].get("Policies", [])
        ]
        return f"arn:aws:iam::{ACCOUNT}:role/{role_name}", policies + inline

    def trust(self, role_name: str) -> dict:
        (role,) = [
            v
            for v in self.of_type("AWS::IAM::Role").values()
            if self.resolve(v["Properties"].get("RoleName")) == role_name
        ]
        return self.resolve(role["Properties"]["AssumeRolePolicyDocument"])


def simulate(requests: list[dict]) -> list[str]:
    """Each request evaluated by @cloud-copilot/iam-simulate (deploy/node_modules): "Allowed",
    "ImplicitlyDenied", "ExplicitlyDenied" or "error: ..."."""
    node_modules = REPO_ROOT / "deploy" / "node_modules"
    if not (node_modules / "@cloud-copilot" / "iam-simulate").is_dir():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--prefix", str(REPO_ROOT / "deploy")],
            check=True,
        )
    result = subprocess.run(
        ["node", str(REPO_ROOT / "tests" / "iam_simulate.cjs")],
        input=json.dumps(requests),
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "NODE_PATH": str(node_modules)},
    )
    return json.loads(result.stdout)
