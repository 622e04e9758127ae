# The two commands of the README:  `make study`  and  `make test`.
# Both bootstrap .venv (Python >= 3.12, locked dependencies) first.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
REPLICATES ?= 50
ENGINES ?= reml,bayes
# pytest-xdist workers for `make test` (tests/conftest.py groups the tests by module)
TEST_WORKERS ?= 2
PYTEST_XDIST = -n $(TEST_WORKERS) --dist loadgroup

.PHONY: bootstrap study test test-all lint lock bench

bootstrap:
	@scripts/bootstrap.sh

study: bootstrap
	$(BIN)/study run default --replicates $(REPLICATES) --engines $(ENGINES)
	$(BIN)/study summarize outputs/default
	$(BIN)/study report outputs/default

test: bootstrap
	$(BIN)/python -m pytest -q $(PYTEST_XDIST)

test-all: bootstrap
	$(BIN)/python -m pytest -q $(PYTEST_XDIST) -m "slow or not slow"

lint: bootstrap
	$(BIN)/ruff check study models tests benchmarks
	$(BIN)/ruff format --check study models tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

lock: bootstrap
	$(BIN)/uv pip compile pyproject.toml --group dev --universal --generate-hashes \
		--python-version 3.12 -o requirements.lock
