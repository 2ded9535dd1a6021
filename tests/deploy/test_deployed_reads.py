"""Every deployed program starts with what its code needs: each property group and key it
reads is in the properties deployed for it, and each module it imports is in its package.

The reads and imports come from the code itself (``deploy.property_reads`` follows each
program from its entry point), never from a list kept by hand, so a job that starts reading
a new key fails here until its deployment carries that key. The first half checks the
analysis itself against small programs written for it; the second checks the deployments.
"""

from __future__ import annotations

import importlib.metadata as metadata
import textwrap
import xml.etree.ElementTree as ElementTree

import pytest
from packaging.requirements import Requirement

from deploy import msf, property_reads
from deploy.property_reads import analyze

EXAMPLE = msf.ENVIRONMENTS_DIR / "prod.example.json"
ACCOUNT, REGION = "111122223333", "us-east-1"
# MSF fills this group itself; the code never reads it.
RUN_OPTIONS = msf.RUN_OPTIONS


# --- the analysis, on programs written for it ----------------------------------------------


@pytest.fixture
def program(tmp_path, monkeypatch):
    """Writes modules of a throwaway ``jobs`` package under a temporary root and points the
    analysis there."""
    monkeypatch.setattr(property_reads, "REPO_ROOT", tmp_path)
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "__init__.py").write_text("")

    def write(name: str, source: str) -> str:
        (tmp_path / "jobs" / f"{name}.py").write_text(textwrap.dedent(source))
        return f"jobs/{name}.py"

    return write


def test_reads_through_helpers_loops_guards_and_objects(program):
    program(
        "helpers",
        """
        from dataclasses import dataclass, fields

        def dsn(props, group="Aurora"):
            db = props[group]
            return f"{db['host']}:{db['port']}"

        def stream(props, logical_name):
            return props["Streams"][logical_name]

        @dataclass
        class Rules:
            max_lines: int
            max_quantity: int

            @classmethod
            def from_properties(cls, group):
                return cls(**{f.name: int(group[f.name]) for f in fields(cls)})
        """,
    )
    entry = program(
        "job",
        """
        import boto3
        from jobs import helpers
        from jobs.helpers import Rules

        class Operator:
            def __init__(self, props):
                self._props = props
            def open(self):
                return self._props["Redis"]["host"]

        def build(env, props):
            helpers.dsn(props)
            helpers.dsn(props, "Warehouse")
            for name in ("orders", "sales"):
                helpers.stream(props, name)
            for kind, logical in {"a": "restocks"}.items():
                helpers.stream(props, logical)
            Rules.from_properties(props["OrderRules"])
            aws = props["Aws"]
            if aws.get("endpoint"):
                aws["secret_access_key"]
            props["Lake"].get("prefix", "lake")
            Operator(props)

        def run(build_fn):
            from pizzastream.config import load_properties
            build_fn(None, load_properties())

        if __name__ == "__main__":
            run(build)
        """,
    )
    analysis = analyze(entry)
    assert analysis.unresolved == []
    assert analysis.required() == {
        "Aurora": {"host", "port"},
        "Warehouse": {"host", "port"},
        "Streams": {"orders", "sales", "restocks"},
        "OrderRules": {"max_lines", "max_quantity"},
        "Aws": set(),
        "Lake": set(),
        "Redis": {"host"},
    }
    assert analysis.optional() == {"Aws": {"endpoint", "secret_access_key"}, "Lake": {"prefix"}}
    assert "boto3" in analysis.external_modules
    assert {"jobs.job", "jobs.helpers"} <= analysis.project_modules


def test_typed_reads_read_the_keys_of_the_fields_they_use(program):
    """``pizzastream.settings``' form: a group parsed into a dataclass by ``from_group``;
    each field read afterwards (directly, through a property or method, or from what a
    helper returns) reads its key, required when the field has no default. A field the
    class derives from several keys reads the group, optionally."""
    program(
        "settings",
        """
        import types
        from dataclasses import dataclass, field

        @dataclass(frozen=True)
        class GroupSettings:
            GROUP = ""

            @classmethod
            def from_group(cls, values):
                return cls(**dict(values))

        @dataclass(frozen=True)
        class DatabaseSettings(GroupSettings):
            host: str
            port: int = field(metadata={"check": "positive"})
            sslmode: str = "prefer"
            unused: str = ""

            @property
            def dsn(self):
                return f"{self.host}:{self.port}"

            def tls(self):
                return [("sslmode", self.sslmode)]

        @dataclass(frozen=True)
        class WarehouseSettings(DatabaseSettings):
            port: int = field(default=5439)

        @dataclass(frozen=True)
        class StreamsSettings(GroupSettings):
            names: dict = field(default_factory=dict)
            initial_position: str | None = None

            @classmethod
            def from_group(cls, values):
                names = {k: v for k, v in values.items()}
                return cls(names=names, **parse(cls, values, frozenset({"names"})))

        DATABASES = types.MappingProxyType(
            {"Aurora": DatabaseSettings, "Warehouse": WarehouseSettings}
        )

        def parse(cls, values, skip):
            return {}

        def database(props, group="Aurora"):
            return DATABASES[group].from_group(props[group])
        """,
    )
    entry = program(
        "job",
        """
        from jobs.settings import StreamsSettings, database

        def build(props):
            aurora = database(props)
            aurora.dsn
            aurora.tls()
            database(props, "Warehouse").dsn
            StreamsSettings.from_group(props["Streams"]).names["orders"]

        if __name__ == "__main__":
            build(props)
        """,
    )
    analysis = analyze(entry)
    assert analysis.unresolved == []
    assert analysis.required() == {
        "Aurora": {"host", "port"},
        "Warehouse": {"host"},
        "Streams": set(),
    }
    assert analysis.optional() == {"Aurora": {"sslmode"}, "Warehouse": {"port"}}


def test_a_read_it_cannot_resolve_is_reported_not_skipped(program):
    entry = program(
        "job",
        """
        import os

        def build(props):
            return props[os.environ["GROUP"]]["key"]

        if __name__ == "__main__":
            build(props)
        """,
    )
    (unresolved,) = analyze(entry).unresolved
    assert "jobs/job.py:5" in unresolved


def test_local_only_code_is_not_a_production_read(program):
    entry = program(
        "job",
        """
        from pizzastream.config import is_local

        def settings(props):
            if not is_local():
                return {}
            return {"endpoint": props["Aws"]["endpoint"]}

        def build(props):
            if is_local():
                props["FlinkTuning"]["parallelism"]
            settings(props)
            return props["Aws"]["region"]

        if __name__ == "__main__":
            build(props)
        """,
    )
    assert analyze(entry).required() == {"Aws": {"region"}}


def test_a_local_only_import_is_not_a_module_the_zip_must_carry(program):
    program("localtool", "def build():\n    return 1\n")
    entry = program(
        "job",
        """
        from pizzastream.config import is_local

        def ship():
            if is_local():
                from jobs import localtool
                localtool.build()

        if __name__ == "__main__":
            ship()
        """,
    )
    assert "jobs.localtool" not in analyze(entry).project_modules


# --- the MSF applications -------------------------------------------------------------------


def _deployed_groups(job: str) -> dict[str, dict[str, str]]:
    body = msf.render(job, ACCOUNT, REGION, EXAMPLE)
    return {
        g["PropertyGroupId"]: g["PropertyMap"]
        for g in body["ApplicationConfiguration"]["EnvironmentProperties"]["PropertyGroups"]
    }


@pytest.mark.parametrize("job", msf.jobs())
def test_msf_application_carries_every_property_its_job_reads(job):
    analysis = analyze(f"jobs/{job}.py")
    assert analysis.unresolved == []
    assert analysis.reads, f"found no reads in jobs/{job}.py: the analysis lost the entry point"
    deployed = _deployed_groups(job)
    assert property_reads.missing(analysis.required(), deployed) == []
    # Every group deployed is one the job reads: a group misspelt, or one the code no
    # longer reads, would otherwise sit there unnoticed.
    unread = set(deployed) - {RUN_OPTIONS} - analysis.groups()
    assert unread == set(), f"{job} deploys groups it never reads: {unread}"


def _distributions(requirements: list[str]) -> set[str]:
    """The installed distributions ``requirements`` bring, with everything they require."""
    seen: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        requirement = todo.pop()
        name = requirement.name.lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        for line in metadata.requires(requirement.name) or []:
            dependency = Requirement(line)
            extras = requirement.extras or {""}
            if dependency.marker is None or any(
                dependency.marker.evaluate({"extra": extra}) for extra in extras
            ):
                todo.append(dependency)
    return seen


def _importable(distributions: set[str]) -> set[str]:
    """Top-level module names the distributions install."""
    names = set()
    for module, dists in metadata.packages_distributions().items():
        if any(d.lower().replace("_", "-") in distributions for d in dists):
            names.add(module)
    return names


def _msf_requirements() -> list[str]:
    lines = (
        line.split("#", 1)[0].strip()
        for line in (msf.DEPLOY_DIR / "requirements-msf.txt").read_text().splitlines()
    )
    return [line for line in lines if line]


def _zip_packages() -> set[str]:
    """Top-level project packages the MSF zip carries (deploy/assembly/msf-zip.xml)."""
    namespace = {"a": "http://maven.apache.org/ASSEMBLY/2.1.1"}
    root = ElementTree.parse(msf.DEPLOY_DIR / "assembly" / "msf-zip.xml").getroot()
    return {
        directory
        for fs in root.iterfind(".//a:fileSet", namespace)
        if (directory := fs.findtext("a:outputDirectory", namespaces=namespace)) is not None
    }


@pytest.mark.parametrize("job", msf.jobs())
def test_msf_zip_carries_every_module_its_job_imports(job):
    """MSF's Python runtime has apache-flink and what it requires; everything else the job
    imports must come in the zip: the project's packages, or ``python-deps`` built from
    requirements-msf.txt."""
    analysis = analyze(f"jobs/{job}.py")
    provided = _importable(_distributions(["apache-flink"]))
    shipped = _importable(_distributions(_msf_requirements()))
    missing = sorted(analysis.external_modules - provided - shipped)
    assert missing == [], f"{job} imports {missing}: add them to deploy/requirements-msf.txt"
    packages = {module.split(".")[0] for module in analysis.project_modules}
    assert packages <= _zip_packages(), packages - _zip_packages()


def test_boto3_is_not_provided_by_msf_and_is_shipped():
    """The defect of issue 14, kept visible: hourly_metrics needs boto3, which PyFlink's
    runtime does not bring."""
    assert "boto3" not in _importable(_distributions(["apache-flink"]))
    assert "boto3" in analyze("jobs/hourly_metrics.py").external_modules
    assert "boto3" in {Requirement(r).name for r in _msf_requirements()}


# --- what production adds to the connection settings ---------------------------------------


def test_tls_settings_reach_libpq_and_jdbc_only_when_set():
    from connectors import redis_store
    from pizzastream.config import jdbc_url, postgres_dsn

    local = {"Aurora": {"host": "h", "port": "5432", "dbname": "d", "user": "u", "password": "p"}}
    assert postgres_dsn(local) == "host=h port=5432 dbname=d user=u password=p"
    assert jdbc_url(local) == "jdbc:postgresql://h:5432/d"
    local["Aurora"]["sslmode"] = "require"
    assert postgres_dsn(local).endswith(" password=p sslmode=require")
    assert jdbc_url(local) == "jdbc:postgresql://h:5432/d?sslmode=require"
    assert redis_store.connection_options({"Redis": {"host": "r", "port": "6379"}}) == {
        "host": "r",
        "port": 6379,
    }
    # ElastiCache as deployed: TLS against the system's trust store, the AUTH token (from
    # ``password_secret_arn``) as the default user's password.
    assert redis_store.connection_options(
        {"Redis": {"host": "r", "port": "6379", "user": "default", "tls": "true", "password": "t"}}
    ) == {
        "host": "r",
        "port": 6379,
        "username": None,
        "password": "t",
        "ssl": True,
        "ssl_cert_reqs": "required",
        "ssl_check_hostname": True,
        "ssl_ca_certs": None,
    }


def test_yes_no_settings_are_true_or_false_and_a_misspelt_one_stops_the_start():
    from connectors import redis_store

    def redis(**values):
        return {"Redis": {"host": "r", "port": "6379", **values}}

    assert not redis_store.cluster_mode(redis()) and not redis_store.tls_enabled(redis())
    assert redis_store.cluster_mode(redis(cluster_mode="TRUE"))
    assert not redis_store.cluster_mode(redis(cluster_mode="false", tls=" "))
    assert redis_store.tls_enabled(redis(tls="true"))
    # A deployment file may write a JSON boolean, which the rendering turns into "False".
    assert not redis_store.cluster_mode(redis(cluster_mode=str(False)))
    with pytest.raises(ValueError, match=r"Redis\.cluster_mode: 'yes' is not true or false"):
        redis_store.cluster_mode(redis(cluster_mode="yes"))
    with pytest.raises(ValueError, match=r"Redis\.tls: 'ture' is not true or false"):
        redis_store.tls_enabled(redis(tls="ture"))
