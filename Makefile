# The two commands a fresh machine needs (see README): `make demo` and `make test`.
PY := .venv/bin/python

.PHONY: setup demo test test-fast lint format lock stack-up stack-down

setup:
	@bash scripts/setup.sh

# Stack up, traffic in, jobs run, a summary of what came out; the stack and the API stay up
# to explore (`make stack-down` stops them).
demo: setup
	$(PY) -m stack up
	$(PY) -m stack.demo

# Everything: unit tests and end-to-end tests on the real local stack, which it starts and
# always stops again.
test: setup
	@bash scripts/test.sh

# The fast, server-free part only.
test-fast: setup
	$(PY) -m pytest -q -m "not integration"

# ruff (lint) and mypy (strict on pizzastream/ and simulation/), as configured in
# pyproject.toml; `make test` (and so CI) runs it first.
lint: setup
	@bash scripts/lint.sh

# ruff's formatter over the code (settings in pyproject.toml).
format: setup
	.venv/bin/ruff format .

# requirements.lock from pyproject.toml (after changing a dependency there); the KCL wheel it
# finds in deploy/kcl/target/wheels comes from setup. PIP_FIND_LINKS is a machine's own.
# Then requirements-runtime.lock: pyproject.toml's dependencies without the extras, at the
# full lock's versions (its constraint), for what the product ships (deploy/docker/Dockerfile).
# pip-compile copies the constraint's --find-links as an absolute path of this machine: the
# last line drops it (the relative one stays).
lock: setup
	env -u PIP_FIND_LINKS CUSTOM_COMPILE_COMMAND="make lock" .venv/bin/pip-compile -q \
	  --extra dev --extra bench --extra deploy --allow-unsafe --strip-extras \
	  --find-links deploy/kcl/target/wheels --pip-args "--only-binary amazon-kclpy" \
	  --no-emit-index-url -o requirements.lock pyproject.toml
	env -u PIP_FIND_LINKS CUSTOM_COMPILE_COMMAND="make lock" .venv/bin/pip-compile -q \
	  --constraint requirements.lock --allow-unsafe --strip-extras \
	  --find-links deploy/kcl/target/wheels --pip-args "--only-binary amazon-kclpy" \
	  --no-emit-index-url -o requirements-runtime.lock pyproject.toml
	grep -v '^--find-links /' requirements-runtime.lock > requirements-runtime.lock.tmp
	mv requirements-runtime.lock.tmp requirements-runtime.lock

stack-up: setup
	$(PY) -m stack up

stack-down:
	$(PY) -m api stop
	$(PY) -m stack down
