# One entry point for humans and CI. `make dev` runs Dockyard on the example agent;
# `make test` sets up everything and runs lint, type checks and the whole test suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dev test lint typecheck unit e2e bench clean setup

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

test: $(STAMP) lint typecheck
	$(BIN)/pytest tests -q

bench: $(STAMP)
	$(BIN)/python bench/run_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
