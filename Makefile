# Two quick-start commands, both on a fresh machine with nothing but Python 3.11:
#   make run   - portal + worker + beat with embedded defaults (SQLite, no-server broker)
#   make test  - the whole test suite
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test venv lint bench clean github

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/python scripts/run_dev.py

test: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

# A local GitHub (the tests' faithful fake) seeded with acme/api, for watching grants:
# see README "Watch a grant on a local GitHub".
github: $(STAMP)
	mkdir -p data && cp demo/local-github.json data/local-github.json
	$(BIN)/python -m tests.github_fake --port 9100 --state-file data/local-github.json

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) data/*.sqlite3
