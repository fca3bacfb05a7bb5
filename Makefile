# agency-gateway developer commands. Everything runs inside .venv, created on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: install demo test check format schemas clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## demo: install, then run the end-to-end demo on SQLite (DEMO_ARGS=--once to exit when done)
demo: $(STAMP)
	@command -v dovecot >/dev/null 2>&1 || [ -x /usr/sbin/dovecot ] || \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing dovecot-imapd for the sandbox law firm's mailbox"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd >/dev/null || true; \
	  else \
	    echo "note: dovecot-imapd is not installed (needs root on Debian); the demo skips the law firm's reply path"; \
	  fi
	$(BIN)/agency-gateway demo $(DEMO_ARGS)

## test: the whole test suite (PostgreSQL tests run when GATEWAY_TEST_POSTGRES_URL is set)
test: $(STAMP)
	@command -v gpg >/dev/null 2>&1 || \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing gnupg for the OpenPGP tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gnupg >/dev/null || true; \
	  else \
	    echo "note: gnupg is not installed (needs root on Debian); the OpenPGP tests are skipped"; \
	  fi
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## check: formatting, lint and strict typing
check: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## schemas: regenerate schemas/json/*.json and the OpenAPI document from the code
schemas: $(STAMP)
	$(BIN)/agency-gateway schemas export

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
