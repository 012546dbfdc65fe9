# svclab: `make demo` runs the main job, `make test` the whole test suite.
# Both install what they need first (Debian packages and .venv) and use sudo
# when not run as root.

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PY := .venv/bin/python

.PHONY: setup demo test test-unit bench clean-labs

setup:
	$(SUDO) sh scripts/setup.sh

demo: setup
	$(SUDO) .venv/bin/svclab experiment run seed-walkthrough --out results/seed-walkthrough

test: setup
	$(SUDO) $(PY) -m pytest

test-unit: setup
	$(PY) -m pytest tests/unit tests/api

bench: setup
	$(SUDO) $(PY) benchmarks/lab_updown.py

clean-labs: setup
	$(SUDO) .venv/bin/svclab clean --all
