#!/usr/bin/env bash
# Builds the Managed Service for Apache Flink application zip, deploy/target/pizzastream-msf.zip:
#   jobs/*.py, pizzastream/, connectors/   the code (job files are the `python` run option)
#   pizzastream/*.so                       the order path's core compiled (compiled_core.py)
#   lib/pizzastream-deps.jar               connectors and JVM helpers (`jarfile`)
#   python-deps/                           psycopg, redis and their dependencies (`pyFiles`)
#   certs/rds-ca-bundle.pem                the CAs of Aurora and Redshift (deploy/certs.py)
# Runs again from scratch every time, so the zip never carries a stale dependency.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PY:-../.venv/bin/python}
deps=target/python-deps

# MSF runs CPython 3.11 on Linux x86_64: install wheels for that platform whatever the build
# machine is (psycopg-binary carries native code), never sdists that would build for this one.
rm -rf "$deps"
"$PY" -m pip install --quiet --no-compile --target "$deps" \
  --platform manylinux2014_x86_64 --implementation cp --python-version 3.11 --only-binary=:all: \
  -r requirements-msf.txt

# The order path's core compiled for CPython 3.11 (deploy/compiled_core.py), packed beside
# its sources in pizzastream/.
rm -rf target/compiled
PYTHONPATH=.. "$PY" -m deploy.compiled_core --into target/compiled >/dev/null

# The CA bundle (Aurora.sslrootcert, Warehouse.sslrootcert) from deploy/node_modules.
PYTHONPATH=.. "$PY" -m deploy.certs >/dev/null

# One Maven run: the shaded jar, then (profile msf-zip) the zip that packs it with the above.
mvn -q -B -Pmsf-zip package -DskipTests
echo "package: $(pwd)/target/pizzastream-msf.zip"
