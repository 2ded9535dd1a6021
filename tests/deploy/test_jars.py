"""The two jars hold what they are for and nothing else: the product jar
(``deploy/pom.xml``, the one the jobs load and the MSF application zip carries) has the
connectors and the JVM helpers but no benchmark class, and the benchmarks' jar
(``bench/jvm/pom.xml``, loaded by benchmark jobs only) has the benchmark classes and the
``sink_jdbc`` baseline's JDBC connector alone.
``scripts/setup.sh`` builds both; a missing jar fails here rather than passing."""

from __future__ import annotations

import zipfile
from pathlib import Path
from xml.etree import ElementTree

from bench.flinkjob import BENCH_JAR
from jobs.runtime import DEPENDENCIES_JAR
from pizzastream.config import REPO_ROOT

BENCH_PACKAGE = "pizzastream/flink/bench/"
JDBC_CONNECTOR = "org/apache/flink/connector/jdbc/"
PRODUCT_SOURCES = REPO_ROOT / "connectors" / "jvm" / "src" / "main" / "java"
BENCH_SOURCES = REPO_ROOT / "bench" / "jvm" / "src" / "main" / "java"
POM = "{http://maven.apache.org/POM/4.0.0}"


def _entries(jar: Path) -> list[str]:
    assert jar.is_file(), f"{jar} is missing: scripts/setup.sh builds it"
    with zipfile.ZipFile(jar) as archive:
        return archive.namelist()


def _classes_of(sources: Path) -> set[str]:
    return {
        str(path.relative_to(sources).with_suffix(".class")) for path in sources.rglob("*.java")
    }


def test_the_product_jar_holds_no_benchmark_class():
    entries = _entries(DEPENDENCIES_JAR)
    assert _classes_of(PRODUCT_SOURCES) <= set(entries)  # our helpers are in it
    assert [e for e in entries if e.startswith(BENCH_PACKAGE)] == []
    # nor the unit tests of the helpers, nor what they run on
    assert [e for e in entries if e.endswith("Test.class") and e.startswith("pizzastream/")] == []
    assert [
        e for e in entries if e.startswith(("org/junit/", "org/apache/flink/streaming/util/"))
    ] == []
    # nor Flink's JDBC connector: every Aurora table is written by PostgresCopySink, through
    # the PostgreSQL driver alone
    assert [e for e in entries if e.startswith(JDBC_CONNECTOR)] == []
    assert "org/postgresql/Driver.class" in entries


def test_the_benchmark_jar_holds_the_benchmark_classes_and_the_jdbc_baseline_alone():
    sources = _classes_of(BENCH_SOURCES)
    assert "pizzastream/flink/bench/OrderGenerator.class" in sources
    entries = _entries(BENCH_JAR)
    classes = {e for e in entries if e.endswith(".class")}
    assert sources <= classes
    # the sink_jdbc baseline's connector (bench/scenarios.py), its table factory registered
    assert any(c.startswith(JDBC_CONNECTOR) for c in classes)
    with zipfile.ZipFile(BENCH_JAR) as archive:
        factories = archive.read("META-INF/services/org.apache.flink.table.factories.Factory")
    assert b"org.apache.flink.connector.jdbc" in factories
    assert all(c.startswith((BENCH_PACKAGE, JDBC_CONNECTOR)) for c in classes), {
        c for c in classes if not c.startswith((BENCH_PACKAGE, JDBC_CONNECTOR))
    }


def test_no_benchmark_source_is_among_the_products():
    assert not (PRODUCT_SOURCES / BENCH_PACKAGE).exists()
    assert not any("bench" in path.parts for path in PRODUCT_SOURCES.rglob("*.java"))


def test_the_benchmarks_build_against_the_products_flink():
    def flink_version(pom: Path) -> str | None:
        return ElementTree.parse(pom).getroot().findtext(f"{POM}properties/{POM}flink.version")

    product = flink_version(REPO_ROOT / "deploy" / "pom.xml")
    assert product and flink_version(REPO_ROOT / "bench" / "jvm" / "pom.xml") == product
