# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# `make run PORT=5050`: the site's port; links use it too unless PC_BASE_URL is set.
PORT ?= 5000

.PHONY: run test lint browser-deps clean

# Two stamps: `make run` installs the runtime dependencies only, `make test` adds the test extras.
$(BIN)/.runtime-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

$(BIN)/.test-installed: $(BIN)/.runtime-installed
	$(BIN)/pip install -q -e ".[test]"
	touch $@

# Site + worker + scheduler on the embedded default (SQLite, no broker server, outbox).
run: $(BIN)/.runtime-installed
	$(BIN)/preference-center db upgrade
	$(BIN)/preference-center run --port $(PORT)

# Headless Chromium for the browser tests (Debian packages; skipped when already there).
browser-deps:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null)

test: $(BIN)/.test-installed browser-deps
	$(BIN)/python -m pytest -q

# Ruff (settings in pyproject.toml); CI fails on any finding.
lint: $(BIN)/.test-installed
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
