"""One configuration path for every job, tool and test.

Production reads the property groups that Managed Service for Apache Flink writes to
``/etc/flink/application_properties.json``; the local stack and the tests read the same
groups from ``conf/local/application_properties.json`` (or the file named by
``PIZZASTREAM_PROPERTIES``). A single value can be overridden with an environment
variable ``PIZZASTREAM__<GROUP>__<KEY>`` (for example ``PIZZASTREAM__AURORA__PORT``).

``PIZZASTREAM_MSF_PROPERTIES`` names a file that stands in for MSF's: a job started with it
reads its groups there and behaves as on MSF (``is_local()`` is false), which is how
``tests/deploy/test_msf_zip.py`` starts the unpacked application zip on a standalone cluster
without writing to ``/etc/flink``.

Secrets never travel in properties: on AWS a group names a Secrets Manager secret with
``<key>_secret_arn`` (``Aurora.password_secret_arn``, ``Redis.password_secret_arn``) and
``load_properties`` reads it at start into ``<key>``, in memory only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, MutableMapping
from pathlib import Path

# The names config always had, now owned by pizzastream.settings (which imports nothing of
# config: the connectors read the typed groups, and config reads secrets through them).
from pizzastream.settings import PEM_TRUST_FACTORY as PEM_TRUST_FACTORY
from pizzastream.settings import REPO_ROOT as REPO_ROOT
from pizzastream.settings import SECRET_SUFFIX as SECRET_SUFFIX
from pizzastream.settings import LakeSettings, database, tls_pairs

MSF_PROPERTIES = Path("/etc/flink/application_properties.json")
LOCAL_PROPERTIES = REPO_ROOT / "conf" / "local" / "application_properties.json"
ENV_FILE = "PIZZASTREAM_PROPERTIES"
ENV_MSF_FILE = "PIZZASTREAM_MSF_PROPERTIES"
ENV_OVERRIDE_PREFIX = "PIZZASTREAM__"

# The property groups as ``load_properties`` returns them: ``{group_id: {key: value}}``;
# the one alias of them, which modules import rather than define again. Helpers that only
# read values may take any ``Mapping[str, Mapping[str, str]]``.
Props = dict[str, dict[str, str]]


def msf_properties_path() -> Path:
    """Where MSF puts the application's property groups (or the file standing in for it)."""
    return Path(os.environ.get(ENV_MSF_FILE) or MSF_PROPERTIES)


def properties_path() -> Path:
    if os.environ.get(ENV_FILE):
        return Path(os.environ[ENV_FILE])
    if msf_properties_path().exists():
        return msf_properties_path()
    return LOCAL_PROPERTIES


def is_local() -> bool:
    """True unless running on MSF, where the platform provides the properties file."""
    return properties_path() != msf_properties_path()


def prepend_interpreter_to_path(environ: MutableMapping[str, str], python: str) -> None:
    """Puts the directory of ``python`` first on ``environ``'s ``PATH``. A JVM started with
    that environment that embeds Python (PyFlink's thread mode, through pemja) gives CPython
    no program name, so CPython takes its standard library and site-packages from the first
    ``python3`` on ``PATH``: that must be the installation the jobs run on (a system
    ``python3`` of the same version beside a pyenv or virtualenv one gave the embedded
    interpreter a foreign standard library, ``No module named '_struct'``, or no pemja)."""
    directory = str(Path(python).parent)
    rest = [entry for entry in environ.get("PATH", "").split(os.pathsep) if entry != directory]
    environ["PATH"] = os.pathsep.join([directory, *filter(None, rest)])


def load_properties(path: Path | None = None) -> Props:
    """Property groups as ``{group_id: {key: value}}``, environment overrides applied."""
    groups: Props = {}
    for group in json.loads((path or properties_path()).read_text()):
        groups[group["PropertyGroupId"]] = {k: str(v) for k, v in group["PropertyMap"].items()}
    lowered = {g.lower(): g for g in groups}
    for name, value in os.environ.items():
        if not name.startswith(ENV_OVERRIDE_PREFIX):
            continue
        group, _, key = name[len(ENV_OVERRIDE_PREFIX) :].partition("__")
        if key:
            groups.setdefault(lowered.get(group.lower(), group), {})[key.lower()] = value
    # File paths (keys ending in ``_file``) are relative to the repository root; made
    # absolute here, so they still name the same file where the job's packages are shipped
    # to (Flink's Python workers run from another directory).
    for group in groups.values():
        for key, value in group.items():
            if key.endswith("_file") and value and not Path(value).is_absolute():
                group[key] = str(REPO_ROOT / value)
    return resolve_secrets(groups)


def resolve_secrets(groups: Props, read_secret: Callable[[str], str] | None = None) -> Props:
    """Fills ``<key>`` from the secret each ``<key>_secret_arn`` names (JSON with a
    ``password`` field, as RDS and Redshift create them, or the plain secret string).
    ``read_secret(arn)`` defaults to Secrets Manager with the ``Aws`` group's settings."""
    wanted = [
        (group, key)
        for group, values in groups.items()
        for key in values
        if key.endswith(SECRET_SUFFIX) and values[key]
    ]
    if not wanted:
        return groups
    if read_secret is None:
        from connectors import aws

        client = aws.client(groups, "secretsmanager")
        read_secret = lambda arn: client.get_secret_value(SecretId=arn)["SecretString"]  # noqa: E731 - local shorthand
    for group, key in wanted:
        value = read_secret(groups[group][key])
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value
        groups[group][key[: -len(SECRET_SUFFIX)]] = (
            parsed["password"] if isinstance(parsed, dict) else value
        )
    return groups


def flag(
    props: Mapping[str, Mapping[str, str]], group: str, key: str, default: bool = False
) -> bool:
    """A yes/no property: ``true`` or ``false`` (any case; absent or empty: ``default``).
    Anything else is refused at start: a misspelt ``tls`` or ``cluster_mode`` silently read
    as false would connect the wrong way and fail later, far from its cause."""
    value = props[group].get(key, "").strip().lower()
    if not value:
        return default
    if value not in ("true", "false"):
        raise ValueError(f"{group}.{key} is {props[group][key]!r}: expected true or false")
    return value == "true"


def stream_arn(props: Mapping[str, Mapping[str, str]], logical_name: str) -> str:
    """ARN of a Kinesis stream named in the ``Streams`` group (the new source reads by ARN)."""
    aws = props["Aws"]
    name = props["Streams"][logical_name]
    if name.startswith("arn:"):
        return name
    return f"arn:aws:kinesis:{aws['region']}:{aws['account_id']}:stream/{name}"


def stream_name(props: Mapping[str, Mapping[str, str]], logical_name: str) -> str:
    value = props["Streams"][logical_name]
    return value.rsplit("/", 1)[-1] if value.startswith("arn:") else value


def staging_bucket(props: Mapping[str, Mapping[str, str]]) -> str:
    """Where the hourly ETL stages ``order_fct``: ``Lake.staging_bucket`` on AWS (its own
    bucket, with its own lifecycle and readers), the lake's bucket locally."""
    return LakeSettings.from_group(props["Lake"]).staging


def pos_bucket(props: Mapping[str, Mapping[str, str]]) -> str:
    """Where the store systems drop POS batches (``pos/landing/``): ``Lake.pos_bucket`` on
    AWS (the store accounts may write there and nowhere else), the lake's bucket locally."""
    return LakeSettings.from_group(props["Lake"]).pos


def tls_settings(props: Mapping[str, Mapping[str, str]], group: str) -> list[tuple[str, str]]:
    """``sslmode`` and ``sslrootcert`` of a database group, those it sets, in that order. On
    AWS: ``verify-full`` (TLS, the server's certificate verified against the CAs of
    ``sslrootcert``, and its name against ``host``) with ``certs/rds-ca-bundle.pem``, the
    Amazon RDS CAs and Amazon roots every package carries (``deploy/certs.py``); locally
    neither (the local PostgreSQL serves no TLS). A relative ``sslrootcert`` names a file
    under the application's root (``REPO_ROOT``: the repository, the unpacked MSF zip, the
    Lambda package, the image's ``/app``, or the directory the jobs ship their packages to
    the Python workers in) and is resolved here, by the process that connects
    (``pizzastream.settings.DatabaseSettings.tls``)."""
    db = props[group]
    return tls_pairs(db.get("sslmode", ""), db.get("sslrootcert", ""))


def postgres_dsn(props: Mapping[str, Mapping[str, str]], group: str = "Aurora") -> str:
    """libpq connection string, with the group's ``tls_settings``."""
    return database(props, group).dsn()


def jdbc_url(props: Mapping[str, Mapping[str, str]], group: str = "Aurora") -> str:
    """The same database for the JVM sinks (pgjdbc), with the same ``sslmode`` (pgjdbc reads
    libpq's values). The CAs come through ``PEM_TRUST_FACTORY``, not pgjdbc's
    ``sslrootcert``, which takes a file path only: a relative ``sslrootcert`` names the copy
    inside the jar (``classpath:``; deploy/pom.xml packs ``certs/``), which every TaskManager
    has, while the file under the application root exists only where the job was started
    (MSF unpacks the zip on the JobManager); an absolute one is read as a file."""
    return database(props, group).jdbc_url()
