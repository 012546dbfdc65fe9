# svclab: `make demo` runs the main job, `make test` the whole test suite.
# Both install what they need first (Debian packages and .venv) and use sudo
# when not run as root.

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PY := .venv/bin/python

.PHONY: setup demo lint test test-unit bench clean-labs

setup:
	$(SUDO) sh scripts/setup.sh

demo: setup
	$(SUDO) .venv/bin/svclab experiment run seed-walkthrough --out results/seed-walkthrough

# The layers contract (import-linter) and ruff: a broken layer or lint fails `make test`.
lint: setup
	.venv/bin/lint-imports --no-cache
	.venv/bin/ruff check --no-cache .

# Two test files at a time (pytest-xdist): labs spend most of their time
# waiting on the kernel and on each other, and every lab has its own names.
TEST_WORKERS ?= 2

test: lint
	$(SUDO) $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

test-unit: lint
	$(PY) -m pytest tests/unit tests/api

bench: setup
	$(SUDO) $(PY) benchmarks/lab_updown.py

clean-labs: setup
	$(SUDO) .venv/bin/svclab clean --all
