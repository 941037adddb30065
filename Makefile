# One-command habits; CI (.ci/run) calls these same targets.
PYTHON ?= python3

.PHONY: install test test-fast lint format bench servers wheel-check clean

install:  ## install poolbench and its test tools into the current Python environment
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e '.[dev]'

test:  ## the whole suite: pure logic, the engine against PostgreSQL and MariaDB, the CLI
	$(PYTHON) -m pytest -q

test-fast:  ## only the tests that need no database
	$(PYTHON) -m pytest -q -m "not postgres and not mysql and not embedded and not browser"

lint:  ## ruff check + ruff format --check + mypy (strict for the result model and backends)
	$(PYTHON) -m ruff check poolbench tests bench
	$(PYTHON) -m ruff format --check poolbench tests bench
	$(PYTHON) -m mypy

format:
	$(PYTHON) -m ruff format poolbench tests bench
	$(PYTHON) -m ruff check --fix poolbench tests bench

bench:  ## throughput against a bare loop, sampler cost, memory growth (docs/benchmarks.md)
	$(PYTHON) bench/run.py

wheel-check:  ## build the wheel, install it in a fresh venv, run bundled scenarios from outside
	PYTHON=$(PYTHON) .ci/wheel-check

servers:  ## start the loopback PostgreSQL and MariaDB if they are down
	.ci/servers

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache
