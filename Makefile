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
# xdist workers for test, test-min and flake: one per core. Under coverage the suite keeps the
# cores busy, and each extra worker collects (imports, rewrites) the whole suite again, so more
# workers than cores did not pay on two (docs/testing.md has the measurements).
PYTEST_WORKERS ?= auto
# test-min: a venv of its own with the oldest Python python_requires admits (when this machine has
# it) and the minimum version of every dependency setup.cfg declares (.ci/min_versions.py), running
# the tests of what those dependencies carry: the client (websocket-client, attrs), the mock server
# and the relay (websockets), the CLI and the examples. The official client (tests/relay, the
# peer-fidelity suite) needs a newer websockets than our floor, so it stays in make test.
VENV_MIN ?= .venv-min
MIN_PYTHON ?=
MIN_EXTRAS := testing,relay
MIN_TOOLS := pytest,pytest-timeout,pytest-xdist,trustme,hypothesis
MIN_PIP := --disable-pip-version-check
MIN_TESTS := tests/unit/test_mock_server.py tests/unit/test_massive_client.py \
	tests/unit/test_client_protocol_edges.py tests/integration --ignore=tests/integration/test_peer_fidelity.py \
	tests/hardening/test_tls.py tests/test_cli.py tests/test_examples.py tests/test_base_install.py
# make fuzz: the hostile-input fuzzing of a live client and the unit property tests, whose full
# budget (tests/support.py property_examples) runs only here; make test runs a quarter of it.
FUZZ_TESTS := tests/hardening/test_hostile_input.py tests/unit/test_decoder_properties.py \
	tests/unit/test_speedups.py tests/unit/test_struct_decoder.py tests/unit/test_framing.py \
	tests/unit/test_dedupe.py tests/unit/test_synthetic.py

.DEFAULT_GOAL := help

.PHONY: help install check test test-min test-browser cov lint typecheck bench soak chaos flake fuzz mutation run clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): setup.cfg pyproject.toml setup.py massive_rt/_speedups.c
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Python >= 3.10 is required")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,testing]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install massive_rt with its dev and testing extras

test: $(STAMP) ## Run the whole suite in parallel under coverage (fails under the coverage floor)
	rm -f .coverage .coverage.*
	$(PY) -m coverage run -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)
	$(PY) -m coverage combine --quiet
	$(PY) -m coverage report --fail-under=$(COV_FLOOR)
	@for module in $(CORE_MODULES); do \
		$(PY) -m coverage report --include="massive_rt/$$module.py" --fail-under=$(COV_CORE) >/dev/null \
		|| { echo "coverage of massive_rt/$$module.py is under $(COV_CORE)%:"; \
		     $(PY) -m coverage report --include="massive_rt/$$module.py"; exit 1; }; \
	done; echo "core modules ($(CORE_MODULES)) at or above $(COV_CORE)% coverage"

# Built in two steps: the interpreter and the pinned dependencies, which write nothing in the work
# tree (so .ci/run builds them in the background while make install, lint and typecheck run), then
# this checkout, editable.
$(VENV_MIN)/.deps: setup.cfg pyproject.toml .ci/min_versions.py
	rm -rf $(VENV_MIN)
	@interpreter='$(MIN_PYTHON)'; \
	if [ -z "$$interpreter" ]; then \
		interpreter=$$($(PYTHON) .ci/min_versions.py interpreter) \
		|| { interpreter=$(PYTHON); \
		     echo "test-min: no Python $$($(PYTHON) .ci/min_versions.py python) here, using $(PYTHON)"; }; \
	fi; \
	echo "$$interpreter -m venv $(VENV_MIN)"; $$interpreter -m venv $(VENV_MIN)
	$(PYTHON) .ci/min_versions.py requirements --extras $(MIN_EXTRAS) --tools $(MIN_TOOLS) \
		> $(VENV_MIN)/requirements.txt
	$(VENV_MIN)/bin/python -m pip install --quiet $(MIN_PIP) -r $(VENV_MIN)/requirements.txt
	touch $@

$(VENV_MIN)/.installed: $(VENV_MIN)/.deps
	$(VENV_MIN)/bin/python -m pip install --quiet $(MIN_PIP) --no-deps -e .
	$(VENV_MIN)/bin/python -m pip check $(MIN_PIP)
	touch $@

test-min: $(VENV_MIN)/.installed ## Client, server, relay, CLI, example tests on the oldest Python and dependencies
	@$(VENV_MIN)/bin/python -c 'import sys; from importlib.metadata import version as v; \
		print("test-min: Python %d.%d.%d," % sys.version_info[:3], \
		      ", ".join(f"{p} {v(p)}" for p in ("websockets", "websocket-client", "attrs", "pytest")))'
	$(VENV_MIN)/bin/python -m pytest -n $(PYTEST_WORKERS) -q -p no:cacheprovider $(MIN_TESTS) $(PYTEST_ARGS)

cov: test ## Same as test, plus an HTML report in htmlcov/
	$(PY) -m coverage html

check: lint typecheck test ## What CI runs: lint, typecheck and the suite (style and types block a landing like tests)

lint: $(STAMP) ## ruff check and format check
	$(PY) -m ruff check massive_rt tests benchmarks examples .ci
	$(PY) -m ruff format --check massive_rt

typecheck: $(STAMP) ## mypy --strict on the package
	$(PY) -m mypy

bench: $(STAMP) ## Side-by-side benchmarks (massive_rt vs the official client vs the raw ceiling)
	$(PY) benchmarks/run.py

soak: $(STAMP) ## 1,000,000 events through a pool with reconnects; invariants checked (not in make test)
	$(PY) benchmarks/soak.py

test-browser: $(STAMP) ## The browser tests alone (headless Chromium; .ci/run runs them after installing it)
	$(PY) -m pytest -q -p no:randomly tests/operating/test_browser.py $(PYTEST_ARGS)

chaos: $(STAMP) ## The chaos suite for minutes (MASSIVE_RT_CHAOS_SECONDS, default 180 per scenario): faults through FaultProxy, the accounting invariant checked
	MASSIVE_RT_CHAOS_SECONDS=$${MASSIVE_RT_CHAOS_SECONDS:-180} $(PY) -m pytest -q -p no:randomly -s tests/chaos $(PYTEST_ARGS)

fuzz: $(STAMP) ## Hostile-input fuzzing of a live client and the unit property tests with a deep hypothesis budget (HYPOTHESIS_PROFILE=deep)
	HYPOTHESIS_PROFILE=deep $(PY) -m pytest -n auto -q -p no:cacheprovider -o timeout=3600 \
		$(FUZZ_TESTS) $(PYTEST_ARGS)

flake: $(STAMP) ## The whole suite 10 times in a row; fails on any failure
	for i in 1 2 3 4 5 6 7 8 9 10; do echo "== run $$i"; $(PY) -m pytest -n $(PYTEST_WORKERS) -q -p no:randomly $(PYTEST_ARGS) || exit 1; done

$(VENV)/.installed-mutation: $(STAMP) setup.cfg
	$(PY) -m pip install --quiet -e '.[dev,testing,mutation]'
	touch $@

# make mutation MUTATION_ARGS='--module pool --keep' (see .ci/mutation.py --help and docs/testing.md)
mutation: $(VENV)/.installed-mutation ## Mutation testing of the core modules (mutmut; slow, not in make test): fails on an unreviewed survivor
	$(PY) .ci/mutation.py $(MUTATION_ARGS)

run: $(STAMP) ## Stream synthetic live data through the full stack for ~15 s (no API key needed)
	$(VENV)/bin/massive-rt stream T.AAPL T.MSFT T.NVDA Q.AAPL Q.MSFT 'AM.*' --demo --duration 15

clean: ## Remove the virtualenv, caches and coverage data
	rm -rf $(VENV) $(VENV_MIN) .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.* htmlcov build dist *.egg-info
