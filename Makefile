# One entry point for humans and CI. `make dev` runs Dockyard on the example agent;
# `make test` sets up everything and runs lint, type checks and the whole test suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dev test test-sqlite test-postgres lint typecheck unit e2e bench clean setup

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

dev: $(STAMP)
	$(BIN)/dockyard dev examples/support_triage

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q

# The whole suite on SQLite, then the storage-backed suites (unit, e2e) again on PostgreSQL.
test: $(STAMP) lint typecheck test-sqlite test-postgres

test-sqlite: $(STAMP)
	DOCKYARD_TEST_DATABASE=sqlite $(BIN)/pytest tests -q

# PostgreSQL at 127.0.0.1:5432 (or DOCKYARD_TEST_POSTGRES_URL); with CI=true an unreachable
# server fails the pass instead of skipping it.
test-postgres: $(STAMP)
	DOCKYARD_TEST_DATABASE=postgres $(BIN)/pytest tests/unit tests/e2e -q

bench: $(STAMP)
	$(BIN)/python bench/run_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
