# Every target works on a fresh machine: `install` builds the virtualenv it needs.
VENV    ?= .venv
PY      := $(VENV)/bin/python
BIN     := $(VENV)/bin
PG_URL  ?= postgresql+psycopg://postgres@127.0.0.1:5432/test
PYTEST_ARGS ?=

.PHONY: install browser lint type check-migrations test test-sqlite test-postgres demo bench bench-ciba clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# Headless Chromium for the page tests comes from Debian (Playwright's own download cannot work here).
browser:
	@test -x /usr/bin/chromium || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

type: install
	$(BIN)/mypy --strict vault

# `alembic check`: the models and the migrations must agree.
check-migrations: install
	@tmp=$$(mktemp -d) && \
	AUTHSERVER_DATABASE_URL=sqlite:///$$tmp/check.db $(BIN)/alembic upgrade head >/dev/null 2>&1 && \
	AUTHSERVER_DATABASE_URL=sqlite:///$$tmp/check.db $(BIN)/alembic check && rm -rf $$tmp

test-sqlite: install browser
	$(BIN)/pytest $(PYTEST_ARGS)

test-postgres: install browser
	AUTHSERVER_TEST_DATABASE_URL=$(PG_URL) $(BIN)/pytest $(PYTEST_ARGS)

test: lint type check-migrations test-sqlite test-postgres

demo: install
	$(BIN)/authserver demo

bench: install
	$(PY) bench/run.py

# CIBA: request -> card on the approval stream, decision -> ping -> token, cost of a pending poll.
bench-ciba: install
	$(PY) bench/ciba.py

clean:
	rm -rf $(VENV) instance .pytest_cache .mypy_cache .ruff_cache
