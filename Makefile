# The two commands a fresh machine needs (see README): `make demo` and `make test`.
PY := .venv/bin/python

.PHONY: setup demo test test-fast stack-up stack-down

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

stack-up: setup
	$(PY) -m stack up

stack-down:
	$(PY) -m api stop
	$(PY) -m stack down
