# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint browser-deps clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	touch $@

# Site + worker + scheduler on the embedded default (SQLite, no broker server, outbox).
run: $(BIN)/.installed
	$(BIN)/preference-center db upgrade
	$(BIN)/preference-center run

# Headless Chromium for the browser tests (Debian packages; skipped when already there).
browser-deps:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null)

test: $(BIN)/.installed browser-deps
	$(BIN)/python -m pytest -q

# Ruff (settings in pyproject.toml); CI fails on any finding.
lint: $(BIN)/.installed
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
