# `make up` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.forewarn-installed
# two workers: much of the suite waits on real timers (alert groups, flow intervals, broker pauses)
PYTEST_ARGS ?= -n 2 --dist loadfile

.PHONY: install up test lint format system-deps js-deps bench fuzz clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt --upgrade pip setuptools
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Debian packages the test suite needs: the real Alertmanager is the oracle of the router's differential tests.
system-deps:
	@command -v prometheus-alertmanager >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus-alertmanager >/dev/null; \
	  else echo "prometheus-alertmanager missing (apt-get install prometheus-alertmanager); its differential tests will say so"; fi; }

# The official ClickHouse JS client, an independent client of the ClickHouse HTTP interface's tests
# (version pinned in tests/js/package.json; no lock file, so no registry URL is committed).
js-deps:
	@command -v npm >/dev/null 2>&1 && (cd tests/js && npm install --no-audit --no-fund --no-package-lock --silent) \
	  || echo "npm missing: the JS client test will be skipped"

up: install
	$(VENV)/bin/forewarn up

test: install system-deps js-deps
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

bench: install
	for b in bench/*.py; do $(PY) $$b || exit 1; done

# One million inputs per harness (fuzz/run.py: per-input timeout 10 s, RSS limit 2 GB); `make test`
# runs each briefly. FUZZ_ARGS, e.g. "otlp_json --runs 100000", narrows it.
FUZZ_ARGS ?=
fuzz: install
	nice -n 10 $(PY) fuzz/run.py $(FUZZ_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache data

# CI's stability check: N runs of .ci/run in a row from a fresh clone, then one more with a
# CPU-bound process beside it (a test that passes only on an idle machine fails there).
N ?= 5
.PHONY: ci-loop
ci-loop:
	bash .ci/loop $(N)
	bash .ci/loop 1 --busy
