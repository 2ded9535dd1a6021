#!/usr/bin/env bash
# The test command: starts the local stack, runs every test, stops the stack whatever happens.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
# Lint and type check first: a lint or type error fails the run before any server starts.
bash scripts/lint.sh || exit 1
# The JVM helpers' unit tests (JUnit, connectors/jvm/src/test/java), seconds and no server:
# setup's jar build compiles them but skips them, so they run here, once.
mvn -q -B -f deploy/pom.xml test || exit 1
trap '$PY -m stack down' EXIT
$PY -m stack up || exit 1
$PY -m pytest -q -ra "$@"
