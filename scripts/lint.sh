#!/usr/bin/env bash
# `make lint`: ruff's checks and mypy, as pyproject.toml configures them (mypy: strict on
# pizzastream/, basic elsewhere). Run by scripts/test.sh before the tests, so by CI.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
.venv/bin/ruff check . || status=1
.venv/bin/mypy || status=1
exit $status
