#!/usr/bin/env bash
# `make lint`: ruff's checks and formatting, and mypy, as pyproject.toml configures them (mypy: strict on
# pizzastream/ and simulation/, basic elsewhere). Run by scripts/test.sh before the tests, so by CI.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
.venv/bin/ruff check . || status=1
.venv/bin/ruff format --check . || status=1
.venv/bin/mypy || status=1
# Every noqa says why: `# noqa: CODE - reason` (ruff's RUF100 catches the unused ones).
if git grep -n -E "# noqa" -- '*.py' | grep -v -E "# noqa: [A-Z]+[0-9]+(, ?[A-Z]+[0-9]+)* - [^ ]"; then
  echo "lint: a noqa above without its reason (write '# noqa: CODE - why')" >&2
  status=1
fi
exit $status
