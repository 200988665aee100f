# massive_rt — run `make help` for the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
COV_FLOOR ?= 90
COV_CORE ?= 95
CORE_MODULES := connection pool adapter
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

.PHONY: help install test cov lint typecheck bench soak flake fuzz run clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): setup.cfg pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Python >= 3.10 is required")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,testing]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install massive_rt with its dev and testing extras

test: $(STAMP) ## Run the whole suite in parallel under coverage (fails under the coverage floor)
	rm -f .coverage .coverage.*
	$(PY) -m coverage run -m pytest -n auto $(PYTEST_ARGS)
	$(PY) -m coverage combine --quiet
	$(PY) -m coverage report --fail-under=$(COV_FLOOR)
	@for module in $(CORE_MODULES); do \
		$(PY) -m coverage report --include="massive_rt/$$module.py" --fail-under=$(COV_CORE) >/dev/null \
		|| { echo "coverage of massive_rt/$$module.py is under $(COV_CORE)%:"; \
		     $(PY) -m coverage report --include="massive_rt/$$module.py"; exit 1; }; \
	done; echo "core modules ($(CORE_MODULES)) at or above $(COV_CORE)% coverage"

cov: test ## Same as test, plus an HTML report in htmlcov/
	$(PY) -m coverage html

lint: $(STAMP) ## ruff check and format check
	$(PY) -m ruff check massive_rt tests benchmarks examples
	$(PY) -m ruff format --check massive_rt

typecheck: $(STAMP) ## mypy --strict on the package
	$(PY) -m mypy

bench: $(STAMP) ## Side-by-side benchmarks (massive_rt vs the official client vs the raw ceiling)
	$(PY) benchmarks/run.py

soak: $(STAMP) ## 1,000,000 events through a pool with reconnects; invariants checked (not in make test)
	$(PY) benchmarks/soak.py

fuzz: $(STAMP) ## Hostile-input fuzzing of a live client with a deep hypothesis budget (HYPOTHESIS_PROFILE=deep)
	HYPOTHESIS_PROFILE=deep $(PY) -m pytest -n auto -q -p no:cacheprovider -o timeout=3600 \
		tests/hardening/test_hostile_input.py $(PYTEST_ARGS)

flake: $(STAMP) ## The whole suite 10 times in a row; fails on any failure
	for i in 1 2 3 4 5 6 7 8 9 10; do echo "== run $$i"; $(PY) -m pytest -n auto -q -p no:randomly $(PYTEST_ARGS) || exit 1; done

run: $(STAMP) ## Stream synthetic live data through the full stack for ~15 s (no API key needed)
	$(VENV)/bin/massive-rt stream T.AAPL T.MSFT T.NVDA Q.AAPL Q.MSFT 'AM.*' --demo --duration 15

clean: ## Remove the virtualenv, caches and coverage data
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.* htmlcov build dist *.egg-info
