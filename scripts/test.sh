#!/usr/bin/env bash
# The test command: starts the local stack, runs every test, stops the stack whatever happens.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
trap '$PY -m stack down' EXIT
$PY -m stack up || exit 1
$PY -m pytest -q -ra "$@"
