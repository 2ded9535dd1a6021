#!/usr/bin/env bash
# The test command: starts the local stack, runs every test, stops the stack whatever happens.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
# Lint and type check first: a lint or type error fails the run before any server starts.
bash scripts/lint.sh || exit 1
trap '$PY -m stack down' EXIT
$PY -m stack up || exit 1
$PY -m pytest -q -ra "$@"
