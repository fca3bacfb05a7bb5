# agency-gateway developer commands. Everything runs inside .venv, installed from uv.lock.
#
# uv itself is pinned (UV_VERSION) and kept in .tools/, apart from the project's environment, so
# `uv sync` can make .venv exactly the lock (it removes anything the lock does not name).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TOOLS := .tools
UV_VERSION := 0.13.9
UV := $(TOOLS)/bin/uv
STAMP := $(VENV)/.installed-stamp
DEMO_ARGS ?=
PYTEST_ARGS ?=
# The Python in .python-version comes from the machine; uv never downloads one.
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: install lock lock-upgrade demo test test-latest check format schemas i18n-extract clean \
	mutation

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet uv==$(UV_VERSION)

$(STAMP): uv.lock pyproject.toml | $(UV)
	$(UV) sync --locked --extra dev
	touch $(STAMP)

## install: .venv holding exactly what uv.lock names (runtime and dev), the project editable,
## and (as root on Debian) the CJK font authorisation letters embed
install: $(STAMP)
	@[ -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing fonts-wqy-microhei for the authorisation letters' Chinese text"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-wqy-microhei >/dev/null || true; \
	  else \
	    echo "note: fonts-wqy-microhei is not installed (needs root on Debian); letters need a CJK TrueType font ([lender] letter_font)"; \
	  fi

## demo: install, then run the end-to-end demo on SQLite (DEMO_ARGS=--once to exit when done)
demo: install
	@command -v dovecot >/dev/null 2>&1 || [ -x /usr/sbin/dovecot ] || \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing dovecot-imapd for the sandbox law firm's mailbox"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd >/dev/null || true; \
	  else \
	    echo "note: dovecot-imapd is not installed (needs root on Debian); the demo skips the law firm's reply path"; \
	  fi
	$(BIN)/agency-gateway demo $(DEMO_ARGS)

## test: the whole test suite (PostgreSQL tests run when GATEWAY_TEST_POSTGRES_URL is set)
test: install
	@command -v gpg >/dev/null 2>&1 || \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing gnupg for the OpenPGP tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gnupg >/dev/null || true; \
	  else \
	    echo "note: gnupg is not installed (needs root on Debian); the OpenPGP tests are skipped"; \
	  fi
	@command -v pdfsig >/dev/null 2>&1 || \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing poppler-utils to verify authorisation letters independently"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq poppler-utils >/dev/null || true; \
	  else \
	    echo "note: poppler-utils is not installed (needs root on Debian); the letter verification tests are skipped"; \
	  fi
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## lock: re-resolve uv.lock after a change to pyproject.toml, keeping every other pin
lock: | $(UV)
	$(UV) lock

## lock-upgrade: move every pin to the newest release (a deliberate change, its own commit)
lock-upgrade: | $(UV)
	$(UV) lock --upgrade

## test-latest: the suite on the newest releases, in a scratch .venv-latest (not in CI)
test-latest: | $(UV)
	rm -rf .venv-latest
	$(UV) venv --quiet .venv-latest
	VIRTUAL_ENV=.venv-latest $(UV) pip install --quiet --upgrade -e '.[dev]'
	.venv-latest/bin/python -m pytest $(PYTEST_ARGS)

## check: the lock matches pyproject.toml, formatting, lint, strict typing, import contracts
check: $(STAMP)
	$(UV) lock --check
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

## mutation: mutation testing with mutmut (slow, not in CI) of the modules and tests that
## [tool.mutmut] in pyproject.toml names, from a fresh copy in mutants/; MUTANTS='gateway.signing*'
## runs a subset, MUTATION_CHILDREN the parallel workers; ends with the score per module
## (docs/mutation.md has the last scores and the survivors)
MUTANTS ?=
MUTATION_CHILDREN ?= 1
mutation: $(STAMP)
	rm -rf mutants
	set -f; $(BIN)/mutmut run --max-children $(MUTATION_CHILDREN) $(MUTANTS)
	@$(BIN)/mutmut results --all true | awk -F': ' ' \
	  { key = $$1; sub(/^ +/, "", key); module = key; sub(/\.[^.]*$$/, "", module); \
	    if ($$2 == "not checked") next; \
	    total[module]++; if ($$2 == "killed" || $$2 == "timeout") killed[module]++; \
	    if ($$2 == "survived") print "survived: " key } \
	  END { for (m in total) printf "%-32s %4d of %4d killed (%5.1f%%)\n", m, killed[m], \
	        total[m], 100 * killed[m] / total[m] }'

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## schemas: regenerate schemas/json/*.json and the OpenAPI document from the code
schemas: $(STAMP)
	$(BIN)/agency-gateway schemas export

## i18n-extract: collect the console's strings (babel.cfg) and update both catalogues; then
## translate the new entries in gateway/console/locale/zh_CN (the English one is filled in)
I18N := gateway/console/locale
i18n-extract: $(STAMP)
	$(BIN)/pybabel -q extract -F babel.cfg -k N_ --no-location --sort-output \
	  --project agency-gateway --copyright-holder "agency-gateway" \
	  -o $(I18N)/messages.pot gateway/console
	$(BIN)/pybabel -q update --no-fuzzy-matching --ignore-obsolete --width 100 -D messages \
	  -i $(I18N)/messages.pot -d $(I18N)
	$(BIN)/python -m gateway.console.catalogues fill-english $(I18N)
	rm -f $(I18N)/messages.pot

clean:
	rm -rf $(VENV) .venv-latest $(TOOLS) var .mypy_cache .ruff_cache .pytest_cache
