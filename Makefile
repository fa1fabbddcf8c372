# `make run` installs the requirements into .venv and starts the whole portal on embedded defaults.
# `make test` installs the test requirements and runs every test (unit, integration, browser).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: run test test-unit clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.run-installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@ $(VENV)/.run-installed

run: $(VENV)/.run-installed
	$(BIN)/python -m portal.serve

# Browser tests drive Debian's Chromium (Playwright cannot download its own browser here).
/usr/bin/chromium:
	@if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "browser tests need /usr/bin/chromium (apt-get install chromium); they will be skipped"; fi

test: $(VENV)/.dev-installed /usr/bin/chromium
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: $(VENV)/.dev-installed
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) instance storage test-artifacts
