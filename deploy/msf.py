"""One job's Managed Service for Apache Flink definitions, rendered for one environment.

The templates are the reviewed source of truth: ``deploy/msf/<job>.json`` (the
CreateApplication request), ``deploy/iam/<job>-policy.json`` and ``deploy/iam/trust-policy.json``
(the job's own role). They hold ``${name}`` placeholders; the values come from an environment
file ``deploy/environments/<env>.json``, flattened to dotted names (``aurora.host``,
``jobs.order_enrichment.parallelism``), plus the names every job derives the same way
(``app``, ``log_group``, ...), so code, templates and policies cannot disagree on them.
A string that is exactly one placeholder takes the value as it is (a list of subnets, an
integer parallelism); inside a longer string the value is spliced in as text.
"""

from __future__ import annotations

import json
import re
import string
from pathlib import Path

DEPLOY_DIR = Path(__file__).resolve().parent
ENVIRONMENTS_DIR = DEPLOY_DIR / "environments"
ZIP_PATH = DEPLOY_DIR / "target" / "pizzastream-msf.zip"
RUN_OPTIONS = "kinesis.analytics.flink.run.options"
LOG_STREAM = "application"

_NAME = r"[a-z][a-z0-9_.]*"
_PLACEHOLDER = re.compile(rf"\$\{{({_NAME})\}}")


class _Template(string.Template):
    idpattern = _NAME  # dotted names: ``${aurora.host}``


def jobs() -> list[str]:
    """The jobs that have an application definition."""
    return sorted(path.stem for path in (DEPLOY_DIR / "msf").glob("*.json"))


def environment_file(name: str) -> Path:
    """``deploy/environments/<name>.json``, or ``name`` itself when it is a path to a file."""
    return Path(name) if name.endswith(".json") else ENVIRONMENTS_DIR / f"{name}.json"


def load_environment(env_file: Path) -> dict:
    return json.loads(Path(env_file).read_text())


def render(job: str, account: str, region: str, env_file: Path) -> dict:
    """The CreateApplication request of ``job`` (without the code's S3 object version, which
    only the upload knows). Passwords are never in it: property groups name their Secrets
    Manager secrets (``password_secret_arn``, from the environment's ``secrets``), which the
    job reads at start (``pizzastream.config.resolve_secrets``)."""
    env = load_environment(env_file)
    body = _render(DEPLOY_DIR / "msf" / f"{job}.json", job, account, region, env)
    # The API takes property values as strings only; environment files may write numbers.
    for group in body["ApplicationConfiguration"]["EnvironmentProperties"]["PropertyGroups"]:
        group["PropertyMap"] = {key: str(value) for key, value in group["PropertyMap"].items()}
    return body


def render_values(job: str, values: dict[str, object]) -> dict:
    """The CreateApplication request of ``job`` with ``values`` for its placeholders (the
    CDK app passes its resources' names and tokens, ``deploy/platform.py``)."""
    body = _substitute(json.loads((DEPLOY_DIR / "msf" / f"{job}.json").read_text()), values)
    for group in body["ApplicationConfiguration"]["EnvironmentProperties"]["PropertyGroups"]:
        group["PropertyMap"] = {key: str(value) for key, value in group["PropertyMap"].items()}
    return body


def render_policy(job: str, values: dict[str, object]) -> dict:
    """The job's permissions policy (``deploy/iam/<job>-policy.json``) with ``values``."""
    return _substitute(json.loads((DEPLOY_DIR / "iam" / f"{job}-policy.json").read_text()), values)


def render_role(job: str, account: str, region: str, env_file: Path) -> dict:
    """The job's IAM role: its name, trust policy and its one inline permissions policy."""
    env = load_environment(env_file)

    def policy(path: Path) -> dict:
        return _render(path, job, account, region, env)

    return {
        "RoleName": _names(job, env)["app"],
        "AssumeRolePolicyDocument": policy(DEPLOY_DIR / "iam" / "trust-policy.json"),
        "PolicyName": f"{job}-permissions",
        "PolicyDocument": policy(DEPLOY_DIR / "iam" / f"{job}-policy.json"),
    }


def _names(job: str, env: dict) -> dict[str, str]:
    """Names derived from the job, the same in the application, its role and its policy."""
    app = f"{env['name_prefix']}-{job.replace('_', '-')}"
    return {
        "app": app,
        "log_group": f"/aws/kinesis-analytics/{app}",
        "log_stream": LOG_STREAM,
        # One object per job: each role reads only its own code, each job rolls back alone.
        "code_key": f"{env['code']['prefix']}/{job}/{ZIP_PATH.name}",
    }


def _render(template: Path, job: str, account: str, region: str, env: dict) -> dict:
    values = {"account": account, "region": region, **_names(job, env), **_flatten(env)}
    return _substitute(json.loads(template.read_text()), values)


def _flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _substitute(node, values: dict[str, object]):
    if isinstance(node, dict):
        return {key: _substitute(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [_substitute(item, values) for item in node]
    if isinstance(node, str):
        whole = _PLACEHOLDER.fullmatch(node)
        return values[whole.group(1)] if whole else _Template(node).substitute(values)
    return node
