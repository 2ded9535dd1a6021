#!/usr/bin/env bash
# The Kinesis Client Library for the delivery service (`python -m delivery`), from the
# project's own files, and can be run again (called by scripts/setup.sh):
#  1. the MultiLangDaemon jars: Maven resolves deploy/kcl/pom.xml into deploy/kcl/target/jars;
#  2. the amazon-kclpy Python package, built from its PyPI sdist WITHOUT its own jar download.
#
# Why 2 is not a plain `pip install amazon-kclpy==3.2.0`: its setup.py hooks `install` and
# `bdist_wheel` to fetch every jar its bundled pom.xml lists straight from repo1.maven.org
# and fails when one is missing; 3.2.0 lists KCL 3.5.3, which Maven Central as reachable
# here does not carry. We swap that pom for one listing no jars, which turns the sdist
# into the plain Python package it otherwise is; the daemon's classpath points at the
# Maven folder instead (delivery/daemon.py). The built wheel is kept in
# deploy/kcl/target/wheels, where requirements.lock finds it (`--find-links`).
set -euo pipefail
cd "$(dirname "$0")/.."

KCLPY_VERSION=3.2.0
PY=${PY:-.venv/bin/python}
target=deploy/kcl/target
jars_stamp=$target/.jars-resolved

if [ ! -f "$jars_stamp" ] || [ deploy/kcl/pom.xml -nt "$jars_stamp" ]; then
  echo "setup: mvn dependency:copy-dependencies (KCL MultiLangDaemon jars)"
  rm -rf "$target/jars"
  mvn -q -B -Dstyle.color=never -f deploy/kcl/pom.xml dependency:copy-dependencies
  touch "$jars_stamp"
fi

wheel=$target/wheels/amazon_kclpy-$KCLPY_VERSION-py3-none-any.whl
if [ ! -f "$wheel" ]; then
  echo "setup: build amazon-kclpy $KCLPY_VERSION (jars from deploy/kcl, not its own download)"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  "$PY" -m pip download -q --no-deps --no-binary :all: "amazon-kclpy==$KCLPY_VERSION" -d "$work"
  tar -xzf "$work/amazon_kclpy-$KCLPY_VERSION.tar.gz" -C "$work"
  cat > "$work/amazon_kclpy-$KCLPY_VERSION/pom.xml" <<'POM'
<?xml version="1.0" encoding="utf-8"?>
<!-- pizzastream: no jars here; the MultiLangDaemon jars come from deploy/kcl/pom.xml. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
    <modelVersion>4.0.0</modelVersion>
    <properties><kcl.version>none</kcl.version></properties>
    <dependencies/>
</project>
POM
  mkdir -p "$target/wheels"
  # The sdist's build prints pages of setuptools deprecation warnings: shown only on failure.
  if ! "$PY" -m pip wheel -q --no-deps -w "$target/wheels" "$work/amazon_kclpy-$KCLPY_VERSION" \
      >"$work/build.log" 2>&1; then
    cat "$work/build.log" >&2
    exit 1
  fi
fi

if ! "$PY" - "$KCLPY_VERSION" <<'CHECK' 2>/dev/null
import importlib.metadata, sys
sys.exit(importlib.metadata.version("amazon_kclpy") != sys.argv[1])
CHECK
then
  echo "setup: pip install amazon-kclpy $KCLPY_VERSION"
  "$PY" -m pip install -q --no-deps "$wheel"
fi
