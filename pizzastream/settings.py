"""The property groups, typed: one frozen dataclass per group, all parsed and checked once.

``pizzastream.config.load_properties`` gives the groups as strings (``Props``);
``settings(props)`` turns every group it finds into its dataclass here, so a missing
required key or an unusable value stops a program at start with one ``ConfigError`` naming
the group and the key (``Inventory.dedup_ttl_hours: 'abc' is not a number``), not at the
first record that takes that path. ``validate(props)`` is what the entry points call.

A deployment carries only the groups its program reads (``deploy/msf/*.json``,
``deploy/platform.py``), so a group absent from the properties is no error here; asking
``Settings`` for it is (``Settings.delivery`` raises ``ConfigError`` naming the group).

Defaults are the ones the code used when it read the raw strings; where two readers of a
key disagreed (``Streams.initial_position``: ``LATEST`` for the Flink source,
``TRIM_HORIZON`` for the KCL and the POS consumer), the field is ``None`` when unset and
each reader keeps its own default. A key that some deployments leave out because their
program does not read it (``Pos.state_dir``, ``Etl.ingestion_interval_s``,
``Warehouse.iam_role``...) is ``None`` when unset; ``need`` refuses it by name where it is
read. Groups that hold open-ended maps keep them typed: ``Streams.names`` (logical name
to stream), ``FlinkTuning.python`` and ``FlinkTuning.state_and_memory`` (Flink's own
options), ``Delivery.kcl``
(``kcl.<property>`` passed to the KCL daemon).

The groups that already had a typed reader keep it and hold its result:
``OrderRulesSettings.rules`` (``pizzastream.orders.OrderRules``),
``InventorySettings.history`` (``pizzastream.replenishment.HistoryWindow``),
``HourlyMetricsSettings.timing`` (``pizzastream.publication.HourlySettings``),
``DeliverySettings.rules`` (``pizzastream.delivery.DeliveryRules``) and
``Settings.resharding`` (``pizzastream.resharding.Settings``).

Deliberately pure: no Flink, no AWS. The parsing reads the groups through a loop the
deployment analysis (``deploy/property_reads.py``) does not count as reads of any key; it
counts the fields a program then uses (``group.host`` reads ``host``).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pizzastream import resharding
from pizzastream.delivery import DeliveryRules
from pizzastream.orders import OrderRules
from pizzastream.publication import HourlySettings
from pizzastream.replenishment import HistoryWindow

# Owned here, imported by ``pizzastream.config`` (which imports this module, never the
# reverse: the connectors read the typed groups, and config's secrets come through them).
REPO_ROOT = Path(__file__).resolve().parent.parent
SECRET_SUFFIX = "_secret_arn"
# pgjdbc's socket factory trusting the CAs of one PEM (connectors/jvm: PemTrustFactory).
PEM_TRUST_FACTORY = "pizzastream.flink.PemTrustFactory"

T = TypeVar("T")
G = TypeVar("G", bound="GroupSettings")


class ConfigError(ValueError):
    """A property group or key missing or unusable; ``group`` and ``key`` name it (``key``
    is None when the problem is the group's, or spans keys the message names)."""

    def __init__(self, group: str, key: str | None, problem: str):
        self.group, self.key, self.problem = group, key, problem
        where = f"{group}.{key}" if key else group
        # "Aws.region is missing ...", "Aurora.port: 'x' is not a whole number"
        super().__init__(
            f"{where} {problem}" if problem.startswith("is missing") else f"{where}: {problem}"
        )


# Checks a field's metadata asks for (``field(metadata=POSITIVE)``).
POSITIVE: Mapping[str, str] = {"check": "positive"}
NON_NEGATIVE: Mapping[str, str] = {"check": "non_negative"}
SHARE: Mapping[str, str] = {"check": "share"}
_CHECKS: dict[str, tuple[Callable[[float], bool], str]] = {
    "positive": (lambda v: v > 0, "must be positive"),
    "non_negative": (lambda v: v >= 0, "must not be negative"),
    "share": (lambda v: 0 <= v <= 1, "must be between 0 and 1"),
}
_TRUE_FALSE = {"true": True, "false": False}


def need(value: T | None, group: str, key: str) -> T:
    """``value`` of a key the caller cannot do without, or ``ConfigError`` naming it."""
    if value is None:
        raise ConfigError(group, key, "is missing from the configuration")
    return value


# --- parsing one value ---------------------------------------------------------------------


def _convert(group: str, key: str, kind: Any, text: str) -> Any:
    """``text`` as the annotated ``kind``; empty text was handled by the caller."""
    origin = typing.get_origin(kind)
    if origin is Literal:
        choices = typing.get_args(kind)
        if text not in choices:
            raise ConfigError(group, key, f"{text!r} is not one of {', '.join(choices)}")
        return text
    if origin in (typing.Union, types.UnionType):
        (inner,) = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        return _convert(group, key, inner, text)
    if origin is tuple:
        (inner, _) = typing.get_args(kind)
        return tuple(
            _convert(group, key, inner, part.strip()) for part in text.split(",") if part.strip()
        )
    if kind is bool:
        value = _TRUE_FALSE.get(text.strip().lower())
        if value is None:
            raise ConfigError(group, key, f"{text!r} is not true or false")
        return value
    if kind is int:
        try:
            return int(text.strip())
        except ValueError:
            raise ConfigError(group, key, f"{text!r} is not a whole number") from None
    if kind is float:
        try:
            return float(text.strip())
        except ValueError:
            raise ConfigError(group, key, f"{text!r} is not a number") from None
    if kind is Path:
        return Path(text.strip())
    return text


_HINTS: dict[type[Any], dict[str, Any]] = {}


def _type_hints(cls: type[Any]) -> dict[str, Any]:
    """The resolved annotations of a group class, kept (resolving them was most of a parse)."""
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def _parse_fields(
    cls: type[Any], group: str, values: Mapping[str, str], skip: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The keyword arguments of ``cls`` from the group's ``values``: each field named as its
    key; an absent or empty key leaves the field's default (or is refused if it has none,
    unless the group names the secret it comes from: ``<key>_secret_arn``)."""
    hints = _type_hints(cls)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        text = values.get(f.name)
        kind = hints[f.name]
        if text is None or (not str(text).strip() and kind is not str):
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if required and values.get(f"{f.name}{SECRET_SUFFIX}"):
                out[f.name] = ""  # filled from the secret by load_properties
            elif required:
                raise ConfigError(group, f.name, "is missing from the configuration")
            continue
        value = _convert(group, f.name, kind, str(text))
        check = f.metadata.get("check")
        if check is not None and isinstance(value, (int, float)):
            test, problem = _CHECKS[check]
            if not test(value):
                raise ConfigError(group, f.name, f"{text!r} {problem}")
        out[f.name] = value
    return out


def _plain(values: Mapping[str, str]) -> dict[str, str]:
    """A copy of a group's values. Each ``from_group`` reads the copy: to the deployment
    analysis (``deploy/property_reads.py``) parsing a group is one read of the whole group
    and each field used afterwards a read of its key, and the keys are checked here, by the
    tests that parse every deployed file."""
    return {str(key): str(value) for key, value in values.items()}


def _reader(group: str, read: Callable[[], T]) -> T:
    """The result of one of the existing typed readers, its errors as ``ConfigError``."""
    try:
        return read()
    except ConfigError:
        raise
    except KeyError as error:
        raise ConfigError(group, str(error.args[0]), "is missing from the configuration") from None
    except ValueError as error:
        message = str(error)
        named = re.search(rf"\b{group}\.(\w+)", message)
        if named is None:
            raise ConfigError(group, None, message.removeprefix(f"{group}: ")) from None
        before, after = message[: named.start()].strip(), message[named.end() :].lstrip(" =:")
        if before not in ("", "property", "missing property"):
            raise ConfigError(group, named[1], message) from None
        raise ConfigError(group, named[1], after or "is missing from the configuration") from None


def _check_each(
    group: str,
    values: Mapping[str, str],
    keys: list[str] | tuple[str, ...],
    kind: type[int] | type[float],
) -> None:
    """Each of ``keys`` present and a ``kind``: what an existing reader parses, checked
    first so its errors name the key too."""
    for key in keys:
        if not values.get(key, "").strip():
            raise ConfigError(group, key, "is missing from the configuration")
        _convert(group, key, kind, values[key])


HOURLY_TIMING_KEYS = (
    "out_of_orderness_minutes",
    "idle_seconds",
    "pos_wait_minutes",
    "allowed_lateness_minutes",
    "late_refresh_seconds",
    "dedup_ttl_minutes",
)


# --- the groups ----------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupSettings:
    """A property group, typed. ``GROUP`` is its ``PropertyGroupId``."""

    GROUP: ClassVar[str] = ""

    @classmethod
    def from_group(cls: type[G], values: Mapping[str, str]) -> G:
        values = _plain(values)
        return cls(**_parse_fields(cls, cls.GROUP, values))


@dataclass(frozen=True)
class AwsSettings(GroupSettings):
    GROUP: ClassVar[str] = "Aws"

    region: str
    account_id: str = ""
    endpoint: str = ""  # set locally (moto); empty on AWS
    access_key_id: str = ""
    secret_access_key: str = ""

    def credentials(self) -> tuple[str, str] | None:
        """``(access_key_id, secret_access_key)`` where static keys are configured (the local
        emulator), else None: the default chain (the application's role)."""
        return (self.access_key_id, self.secret_access_key) if self.access_key_id else None

    @classmethod
    def from_group(cls, values: Mapping[str, str]) -> AwsSettings:
        values = _plain(values)
        parsed = super().from_group(values)
        if parsed.access_key_id and not parsed.secret_access_key:
            raise ConfigError(
                cls.GROUP,
                "secret_access_key",
                "is missing from the configuration (access_key_id is set)",
            )
        return parsed


InitialPosition = Literal["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"]


@dataclass(frozen=True)
class StreamsSettings(GroupSettings):
    """``names``: logical name -> stream name or ARN (every other key of the group)."""

    GROUP: ClassVar[str] = "Streams"
    SETTINGS: ClassVar[frozenset[str]] = frozenset({"shard_count", "initial_position"})

    names: Mapping[str, str] = field(default_factory=dict)
    shard_count: int | None = field(default=None, metadata=POSITIVE)  # the local stack's
    initial_position: InitialPosition | None = None  # None: each reader's own default

    @classmethod
    def from_group(cls, values: Mapping[str, str]) -> StreamsSettings:
        values = _plain(values)
        names = {k: v for k, v in values.items() if k not in cls.SETTINGS}
        empty = sorted(k for k, v in names.items() if not v.strip())
        if empty:
            raise ConfigError(cls.GROUP, empty[0], "names no stream")
        return cls(
            names=types.MappingProxyType(names),
            **_parse_fields(cls, cls.GROUP, values, frozenset({"names"})),
        )

    def name(self, logical_name: str) -> str:
        """The stream's name (``config.stream_name``)."""
        value = self.names[logical_name]
        return value.rsplit("/", 1)[-1] if value.startswith("arn:") else value

    def arn(self, logical_name: str, aws: AwsSettings) -> str:
        """The stream's ARN (``config.stream_arn``)."""
        value = self.names[logical_name]
        if value.startswith("arn:"):
            return value
        return f"arn:aws:kinesis:{aws.region}:{aws.account_id}:stream/{value}"


SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


@dataclass(frozen=True, kw_only=True)
class DatabaseSettings(GroupSettings):
    """What ``Aurora`` and ``Warehouse`` share: the address, the login, TLS, and the COPY
    upsert sink's batching (``connectors.aurora.copy_upsert_sink``, which writes to either)."""

    host: str
    port: int = field(metadata=POSITIVE)
    dbname: str
    user: str
    password: str  # or password_secret_arn, read at start
    password_secret_arn: str = ""
    sslmode: SslMode | None = None
    sslrootcert: str = ""  # relative: under the application root (config.tls_settings)
    copy_batch_rows: int = field(default=50000, metadata=POSITIVE)
    copy_flush_interval_ms: int = field(default=1000, metadata=POSITIVE)

    def tls(self) -> list[tuple[str, str]]:
        """``sslmode`` and ``sslrootcert``, those set, in that order (``config.tls_settings``:
        a relative ``sslrootcert`` is resolved under ``REPO_ROOT``)."""
        return tls_pairs(self.sslmode or "", self.sslrootcert)

    def dsn(self) -> str:
        """libpq connection string, with ``tls()`` (``config.postgres_dsn``)."""
        tls = "".join(f" {key}={value}" for key, value in self.tls())
        return (
            f"host={self.host} port={self.port} dbname={self.dbname} "
            f"user={self.user} password={self.password}{tls}"
        )

    def jdbc_url(self) -> str:
        """The same database for pgjdbc (``config.jdbc_url``, which says why the CAs come
        through ``PEM_TRUST_FACTORY``)."""
        params: list[tuple[str, str]] = [("sslmode", self.sslmode)] if self.sslmode else []
        if self.sslrootcert:
            path = Path(self.sslrootcert)
            source = str(path) if path.is_absolute() else f"classpath:{path.as_posix()}"
            params += [("sslfactory", PEM_TRUST_FACTORY), ("sslfactoryarg", source)]
        query = "&".join(f"{key}={value}" for key, value in params)
        return f"jdbc:postgresql://{self.host}:{self.port}/{self.dbname}" + (
            f"?{query}" if query else ""
        )


@dataclass(frozen=True, kw_only=True)
class AuroraSettings(DatabaseSettings):
    GROUP: ClassVar[str] = "Aurora"


@dataclass(frozen=True, kw_only=True)
class WarehouseSettings(DatabaseSettings):
    GROUP: ClassVar[str] = "Warehouse"

    port: int = field(default=5439, metadata=POSITIVE)  # Redshift's

    engine: Literal["postgresql", "redshift"] = "postgresql"
    stand_in: Literal["", "postgresql"] = ""  # redshift SQL run on PostgreSQL (locally)
    iam_role: str | None = None  # the COPY role; only the loaders read it
    load_bucket: str = ""  # empty: Lake.bucket
    load_prefix: str = "warehouse/loads"
    serialization_attempts: int = field(default=5, metadata=POSITIVE)
    serialization_backoff_s: float = field(default=0.5, metadata=NON_NEGATIVE)
    connect_timeout_s: int = field(default=30, metadata=POSITIVE)  # Redshift's driver

    def redshift_connection(self) -> dict[str, Any]:
        """``redshift_connector.connect``'s arguments: TLS on, ``sslmode`` (``verify-full``
        as deployed: the certificate and the endpoint's name verified) against the driver's
        own Redshift CA bundle, which holds the Amazon roots Redshift's ACM certificates
        chain to (``sslrootcert`` is libpq's, for psycopg)."""
        return {
            "host": self.host,
            "port": self.port,
            "database": self.dbname,
            "user": self.user,
            "password": self.password,
            "ssl": True,
            "sslmode": self.sslmode,
            "timeout": self.connect_timeout_s,
        }


def tls_pairs(sslmode: str, sslrootcert: str) -> list[tuple[str, str]]:
    """``[("sslmode", ...), ("sslrootcert", absolute path)]``, those set."""
    pairs = [("sslmode", sslmode)] if sslmode else []
    if sslrootcert:
        path = Path(sslrootcert)
        pairs.append(("sslrootcert", str(path if path.is_absolute() else REPO_ROOT / path)))
    return pairs


DATABASES: Mapping[str, type[DatabaseSettings]] = types.MappingProxyType(
    {"Aurora": AuroraSettings, "Warehouse": WarehouseSettings}
)


def database(props: Mapping[str, Mapping[str, str]], group: str = "Aurora") -> DatabaseSettings:
    """The database group ``group`` (``Aurora`` or ``Warehouse``) of ``props``, typed."""
    return DATABASES[group].from_group(props[group])


@dataclass(frozen=True)
class RedisSettings(GroupSettings):
    GROUP: ClassVar[str] = "Redis"

    host: str
    port: int = field(metadata=POSITIVE)
    user: str = ""
    password: str = ""
    password_secret_arn: str = ""
    tls: bool = False
    tls_ca_file: Path | None = None  # None: the system's trust store
    cluster_mode: bool = False
    # How long the jobs' Redis writers send a batch again after a connection failure or an
    # error reply of a failover (LOADING, READONLY, ...: pizzastream.flink.RedisBatchSender)
    # before the job restarts; 0: at the first failure.
    write_retry_seconds: int = field(default=60, metadata=NON_NEGATIVE)


@dataclass(frozen=True)
class LakeSettings(GroupSettings):
    GROUP: ClassVar[str] = "Lake"

    bucket: str
    staging_bucket: str = ""  # empty: bucket (config.staging_bucket)
    pos_bucket: str = ""  # empty: bucket (config.pos_bucket)

    @property
    def staging(self) -> str:
        return self.staging_bucket or self.bucket

    @property
    def pos(self) -> str:
        return self.pos_bucket or self.bucket


@dataclass(frozen=True)
class OrderRulesSettings(GroupSettings):
    GROUP: ClassVar[str] = "OrderRules"

    rules: OrderRules
    catalog_refresh_seconds: float = field(default=30.0, metadata=POSITIVE)

    @classmethod
    def from_group(cls, values: Mapping[str, str]) -> OrderRulesSettings:
        values = _plain(values)
        _check_each(cls.GROUP, values, [f.name for f in dataclasses.fields(OrderRules)], int)
        return cls(
            rules=_reader(cls.GROUP, lambda: OrderRules.from_properties(values)),
            **_parse_fields(cls, cls.GROUP, values, frozenset({"rules"})),
        )


@dataclass(frozen=True)
class InventorySettings(GroupSettings):
    GROUP: ClassVar[str] = "Inventory"

    history: HistoryWindow
    dedup_ttl_hours: float = field(default=50.0, metadata=POSITIVE)

    @classmethod
    def from_group(cls, values: Mapping[str, str]) -> InventorySettings:
        values = _plain(values)
        return cls(
            history=_reader(cls.GROUP, lambda: HistoryWindow.from_properties(values)),
            **_parse_fields(cls, cls.GROUP, values, frozenset({"history"})),
        )

    @property
    def dedup_ttl_ms(self) -> int:
        return int(self.dedup_ttl_hours * 3600 * 1000)


@dataclass(frozen=True)
class OrderPathSettings(GroupSettings):
    GROUP: ClassVar[str] = "OrderPath"

    batch_max_records: int = field(default=1000, metadata=POSITIVE)
    batch_max_delay_ms: int = field(default=100, metadata=POSITIVE)
    store_shards: int = field(default=32, metadata=POSITIVE)


@dataclass(frozen=True)
class AggregationSettings(GroupSettings):
    """``enabled`` is required, not defaulted: whether the streams carry KPL aggregates is
    decided per deployment; the sizes are required when it is true."""

    GROUP: ClassVar[str] = "Aggregation"

    enabled: bool
    linger_ms: int | None = field(default=None, metadata=POSITIVE)
    max_bytes: int | None = field(default=None, metadata=POSITIVE)
    max_records: int | None = field(default=None, metadata=POSITIVE)

    @classmethod
    def from_group(cls, values: Mapping[str, str]) -> AggregationSettings:
        values = _plain(values)
        parsed = super().from_group(values)
        if parsed.enabled:
            for key in ("linger_ms", "max_bytes", "max_records"):
                need(getattr(parsed, key), cls.GROUP, key)
        return parsed


@dataclass(frozen=True)
class FlinkTuningSettings(GroupSettings):
    """``python``: Flink's ``python.*`` options, passed through as written.
    ``state_and_memory``: Flink's ``state.*`` and ``taskmanager.memory.*`` options, which
    locally replace the state backend and managed memory ``jobs.runtime`` sets as on MSF
    (the benchmarks compare backends with them); MSF chooses both itself."""

    GROUP: ClassVar[str] = "FlinkTuning"
    LOCAL_PREFIXES: ClassVar[tuple[str, ...]] = ("state.", "taskmanager.memory.")

    parallelism: int = field(default=1, metadata=POSITIVE)  # locally only
    checkpoint_interval_ms: int = field(default=5000, metadata=POSITIVE)  # locally only
    python: Mapping[str, str] = field(default_factory=dict)
    state_and_memory: Mapping[str, str] = field(default_factory=dict)  # locally only

    @classmethod
    def from_group(cls, values: Mapping[str, str]) -> FlinkTuningSettings:
        values = _plain(values)
        python = {k: v for k, v in values.items() if k.startswith("python.")}
        local = {k: v for k, v in values.items() if k.startswith(cls.LOCAL_PREFIXES)}
        return cls(
            python=types.MappingProxyType(python),
            state_and_memory=types.MappingProxyType(local),
            **_parse_fields(cls, cls.GROUP, values, frozenset({"python", "state_and_memory"})),
        )


@dataclass(frozen=True)
class DeliverySettings(GroupSettings):
    """``rules``: the limits and retry schedule (``DeliveryRules``); ``kcl``: the
    ``kcl.<property>`` keys, passed to the KCL daemon verbatim (without ``kcl.``); the
    ``provider_*`` knobs after ``provider_seed`` drive the local stand-in provider only."""

    GROUP: ClassVar[str] = "Delivery"

    rules: DeliveryRules
    retry_poll_s: float = field(metadata=POSITIVE)
    provider_url: str
    kcl_application_name: str | None = None  # the KCL daemon's; required there
    provider_timeout_s: float = field(default=2.0, metadata=POSITIVE)
    provider_attempts: int = field(default=3, metadata=POSITIVE)
    provider_backoff_s: float = field(default=0.2, metadata=NON_NEGATIVE)
    redis_ttl_s: int = field(default=86400, metadata=POSITIVE)
    reference_refresh_s: float = field(default=300.0, metadata=POSITIVE)
    partner_cache_ttl_s: int = field(default=300, metadata=POSITIVE)
    retry_max_s: float = field(default=30.0, metadata=POSITIVE)
    unexpected_error_attempts: int = field(default=3, metadata=POSITIVE)
    checkpoint_every_s: float = field(default=5.0, metadata=POSITIVE)
    kcl_initial_position: InitialPosition | None = None  # None: Streams.initial_position
    kcl_max_records: int = field(default=100, metadata=POSITIVE)
    kcl_idle_between_reads_ms: int = field(default=500, metadata=NON_NEGATIVE)
    kcl_failover_ms: int = field(default=10000, metadata=POSITIVE)
    kcl_shard_sync_ms: int = field(default=60000, metadata=POSITIVE)
    kcl_parent_shard_poll_ms: int = field(default=10000, metadata=POSITIVE)
    kcl_metrics_level: Literal["NONE", "SUMMARY", "DETAILED"] = "SUMMARY"
    kcl_shutdown_grace_ms: int = field(default=10000, metadata=POSITIVE)
    kcl_client_version: str = ""
    kcl_max_leases_to_steal: int | None = field(default=None, metadata=POSITIVE)
    kcl_lease_assignment_ms: int | None = field(default=None, metadata=POSITIVE)
    kcl_worker_metrics_report_ms: int | None = field(default=None, metadata=POSITIVE)
    kcl_cbor_enabled: bool = False
    kcl_java_opts: str = ""
    kcl_log_level: Literal["ALL", "TRACE", "DEBUG", "INFO", "WARN", "ERROR", "OFF"] = "INFO"
    kcl_h2c_bridge: Literal["auto", "true", "false"] = "auto"
    kcl: Mapping[str, str] = field(default_factory=dict)
    provider_refusal_rate: float | None = field(default=None, metadata=SHARE)
    provider_error_rate: float = field(default=0.0, metadata=SHARE)
    provider_latency_ms: int = field(default=0, metadata=NON_NEGATIVE)
    provider_slow_rate: float = field(default=0.0, metadata=SHARE)
    provider_slow_ms: int = field(default=0, metadata=NON_NEGATIVE)
    provider_seed: int = 0
    provider_refusing_partners: tuple[int, ...] = ()
    provider_slow_partners: tuple[int, ...] = ()

    @classmethod
    def from_group(cls, values: Mapping[str, str]) -> DeliverySettings:
        values = _plain(values)
        _check_each(
            cls.GROUP,
            values,
            (
                "max_fee",
                "max_distance_km",
                "eta_cost_cents_per_min",
                "retry_backoff_s",
                "retry_backoff_max_s",
                "deadline_minutes",
            ),
            float,
        )
        kcl = {k[len("kcl.") :]: v for k, v in values.items() if k.startswith("kcl.")}
        return cls(
            rules=_reader(cls.GROUP, lambda: DeliveryRules.from_properties(values)),
            kcl=types.MappingProxyType(kcl),
            **_parse_fields(cls, cls.GROUP, values, frozenset({"rules", "kcl"})),
        )


@dataclass(frozen=True)
class PosSettings(GroupSettings):
    """The store systems (``pos/``) and POS ingestion (``etl.pos_ingestion``): the number
    of systems and their cadence; the simulator's state and the fault shares it injects."""

    GROUP: ClassVar[str] = "Pos"

    store_systems: int = field(metadata=POSITIVE)
    batch_interval_s: float = field(metadata=POSITIVE)
    poll_interval_s: float = field(default=1.0, metadata=POSITIVE)
    state_dir: Path | None = None  # the simulator's; required there
    duplicate_share: float = field(default=0.0, metadata=SHARE)
    truncate_share: float = field(default=0.0, metadata=SHARE)
    short_share: float = field(default=0.0, metadata=SHARE)
    late_share: float = field(default=0.0, metadata=SHARE)
    late_s: float = field(default=7200.0, metadata=NON_NEGATIVE)
    fault_seed: int = 1

    @classmethod
    def from_group(cls, values: Mapping[str, str]) -> PosSettings:
        values = _plain(values)
        parsed = super().from_group(values)
        shares = (
            parsed.duplicate_share + parsed.truncate_share + parsed.short_share + parsed.late_share
        )
        if shares > 1:
            raise ConfigError(
                cls.GROUP,
                None,
                "duplicate_share, truncate_share, short_share "
                f"and late_share add up to {shares:g}, more than 1",
            )
        return parsed


@dataclass(frozen=True)
class EtlSettings(GroupSettings):
    GROUP: ClassVar[str] = "Etl"

    fetch_rows: int = field(metadata=POSITIVE)
    part_rows: int = field(metadata=POSITIVE)
    metrics_chunk_hours: int = field(metadata=POSITIVE)
    ingestion_interval_s: float | None = field(default=None, metadata=POSITIVE)  # local loop
    schedule_interval_s: float | None = field(default=None, metadata=POSITIVE)  # local loop


@dataclass(frozen=True)
class HourlyMetricsSettings(GroupSettings):
    """``timing``: the windows' timing keys (``HourlySettings``)."""

    GROUP: ClassVar[str] = "HourlyMetrics"

    timing: HourlySettings
    live_ttl_minutes: float = field(metadata=POSITIVE)
    live_refresh_ms: int = field(metadata=POSITIVE)
    lake_prefix: str
    staging_prefix: str

    @classmethod
    def from_group(cls, values: Mapping[str, str]) -> HourlyMetricsSettings:
        values = _plain(values)
        _check_each(cls.GROUP, values, HOURLY_TIMING_KEYS, float)
        timing = _reader(cls.GROUP, lambda: HourlySettings.from_props({cls.GROUP: values}))
        return cls(timing=timing, **_parse_fields(cls, cls.GROUP, values, frozenset({"timing"})))


@dataclass(frozen=True)
class ApiSettings(GroupSettings):
    GROUP: ClassVar[str] = "Api"

    host: str
    port: int = field(metadata=POSITIVE)
    workers: int = field(metadata=POSITIVE)
    token_secret: str
    merchant_rate_per_s: float = field(metadata=POSITIVE)
    merchant_burst: float = field(metadata=POSITIVE)
    intake_rate_per_s: float = field(metadata=POSITIVE)
    intake_burst: float = field(metadata=POSITIVE)
    max_wait_s: float = field(metadata=NON_NEGATIVE)
    publication_poll_s: float = field(metadata=POSITIVE)
    live_cache_ms: float = field(metadata=NON_NEGATIVE)
    cache_max_entries: int = field(metadata=POSITIVE)
    warehouse_pool_size: int = field(metadata=POSITIVE)


@dataclass(frozen=True)
class _ReshardingGroup:
    """``pizzastream.resharding.Settings`` (the ``Resharding`` group's reader), as a group."""

    GROUP: ClassVar[str] = "Resharding"

    @classmethod
    def from_group(cls, values: Mapping[str, str]) -> resharding.Settings:
        values = _plain(values)
        return _reader(
            cls.GROUP, lambda: resharding.Settings.from_properties({cls.GROUP: dict(values)})
        )


# Every group, by its PropertyGroupId.
GROUPS: Mapping[str, Callable[[Mapping[str, str]], object]] = types.MappingProxyType(
    {
        cls.GROUP: cls.from_group
        for cls in (
            AwsSettings,
            StreamsSettings,
            _ReshardingGroup,
            AuroraSettings,
            WarehouseSettings,
            RedisSettings,
            LakeSettings,
            OrderRulesSettings,
            InventorySettings,
            OrderPathSettings,
            AggregationSettings,
            FlinkTuningSettings,
            DeliverySettings,
            PosSettings,
            EtlSettings,
            HourlyMetricsSettings,
            ApiSettings,
        )
    }
)


@dataclass(frozen=True)
class Settings:
    """Every property group the properties carry, typed. A group they lack raises
    ``ConfigError`` when asked for; ``has(group)`` tells first."""

    groups: Mapping[str, object]

    def has(self, group: str) -> bool:
        return group in self.groups

    def _group(self, name: str, kind: type[T]) -> T:
        value = self.groups.get(name)
        if value is None:
            raise ConfigError(name, None, "property group missing from the configuration")
        assert isinstance(value, kind)
        return value

    @property
    def aws(self) -> AwsSettings:
        return self._group("Aws", AwsSettings)

    @property
    def streams(self) -> StreamsSettings:
        return self._group("Streams", StreamsSettings)

    @property
    def resharding(self) -> resharding.Settings:
        return self._group("Resharding", resharding.Settings)

    @property
    def aurora(self) -> AuroraSettings:
        return self._group("Aurora", AuroraSettings)

    @property
    def warehouse(self) -> WarehouseSettings:
        return self._group("Warehouse", WarehouseSettings)

    @property
    def redis(self) -> RedisSettings:
        return self._group("Redis", RedisSettings)

    @property
    def lake(self) -> LakeSettings:
        return self._group("Lake", LakeSettings)

    @property
    def order_rules(self) -> OrderRulesSettings:
        return self._group("OrderRules", OrderRulesSettings)

    @property
    def inventory(self) -> InventorySettings:
        return self._group("Inventory", InventorySettings)

    @property
    def order_path(self) -> OrderPathSettings:
        """Absent group: every default (the jobs read it with ``props.get``)."""
        value = self.groups.get("OrderPath")
        return value if isinstance(value, OrderPathSettings) else OrderPathSettings()

    @property
    def aggregation(self) -> AggregationSettings:
        return self._group("Aggregation", AggregationSettings)

    @property
    def flink_tuning(self) -> FlinkTuningSettings:
        """Absent group: every default (as ``jobs.runtime`` reads it)."""
        value = self.groups.get("FlinkTuning")
        return value if isinstance(value, FlinkTuningSettings) else FlinkTuningSettings()

    @property
    def delivery(self) -> DeliverySettings:
        return self._group("Delivery", DeliverySettings)

    @property
    def pos(self) -> PosSettings:
        return self._group("Pos", PosSettings)

    @property
    def etl(self) -> EtlSettings:
        return self._group("Etl", EtlSettings)

    @property
    def hourly_metrics(self) -> HourlyMetricsSettings:
        return self._group("HourlyMetrics", HourlyMetricsSettings)

    @property
    def api(self) -> ApiSettings:
        return self._group("Api", ApiSettings)


def settings(groups: Mapping[str, Mapping[str, str]]) -> Settings:
    """Every group of ``groups`` (``load_properties``' result) parsed and checked; the
    first problem raises ``ConfigError``. Groups this module does not know (MSF's run
    options) are left alone."""
    parsed: dict[str, object] = {}
    for name, values in groups.items():
        parse = GROUPS.get(name)
        if parse is not None:
            parsed[name] = parse(values)
    return Settings(types.MappingProxyType(parsed))


def validate(groups: Mapping[str, Mapping[str, str]]) -> Settings:
    """What every program calls at start, before any work: ``settings(groups)``."""
    return settings(groups)
