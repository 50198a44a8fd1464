# Two quick-start commands, both on a fresh machine with nothing but Python 3.11:
#   make run   - portal + worker + beat with embedded defaults (SQLite, no-server broker)
#   make test  - the whole test suite
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test venv lint bench clean github lock

# Exactly what requirements-test.lock pins, each file checked against its hash, so that two
# installs a month apart run the same code. The project itself is not installed: it runs
# from this folder (manage.py, deploy/start), and pyproject.toml only declares what it needs.
$(STAMP): requirements-test.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r requirements-test.lock
	$(BIN)/python scripts/run_dev.py --env-only
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/python scripts/run_dev.py

test: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

# A local GitHub (the tests' faithful fake) seeded with acme/api, for watching grants:
# see README "Watch a grant on a local GitHub".
LOCAL_GITHUB_PORT ?= 9100
github: $(STAMP)
	mkdir -p data && cp demo/local-github.json data/local-github.json
	$(BIN)/python -m tests.github_fake --port $(LOCAL_GITHUB_PORT) --state-file data/local-github.json

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

# Rewrites both lock files from pyproject.toml's ranges, keeping the pins they already have
# unless told otherwise (make lock LOCK_ARGS=--upgrade, or --upgrade-package NAME). The
# image's lock is resolved from the tests' one, so the tests run the versions it ships.
lock:
	set -e; tools=$$(mktemp -d); trap 'rm -rf "$$tools"' EXIT; \
	$(PYTHON) -m venv "$$tools"; \
	"$$tools/bin/pip" install --quiet pip-tools; \
	compile="$$tools/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
	  --no-emit-index-url --no-emit-find-links"; \
	$$compile --extra test $(LOCK_ARGS) -o requirements-test.lock pyproject.toml; \
	cp requirements-test.lock requirements.lock; \
	$$compile -o requirements.lock pyproject.toml

clean:
	rm -rf $(VENV) data/*.sqlite3
