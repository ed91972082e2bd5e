# pillowd's set-up: `make run` and `make test` do everything on a fresh Debian/Raspberry Pi OS.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
VENDOR := web/static/vendor/socket.io.min.js
# Debian packages the tests use: Chromium for the page, systemd-analyze and
# shellcheck for the unit and install.sh, headers to build systemd-python,
# mosquitto (and its mosquitto_passwd) as the MQTT broker Home Assistant would use.
TEST_APT := chromium libsystemd-dev pkg-config shellcheck systemd python3-venv mosquitto
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run demo test test-deps bench clean vendor

run: $(VENDOR) $(BIN)/pillowd
	$(BIN)/pillowd run --config config.toml --state-dir .state

demo: $(VENDOR) $(BIN)/pillowd
	$(BIN)/pillowd run --config config.toml --state-dir .state --demo

test: test-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-deps: $(VENDOR) $(VENV)/.test-deps node_modules/.bin/azurite-queue

$(VENV)/bin/python:
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || { echo "installing python3-venv"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The vendored client first (setup.py's build hook would fetch it too).
$(BIN)/pillowd: pyproject.toml setup.py | $(VENV)/bin/python $(VENDOR)
	$(BIN)/pip install -q -e .
	@touch $@

$(VENV)/.apt:
	@missing=""; for p in $(TEST_APT); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
	@mkdir -p $(VENV) && touch $@

$(VENV)/.test-deps: pyproject.toml setup.py $(VENV)/.apt | $(VENV)/bin/python $(VENDOR)
	$(BIN)/pip install -q -e ".[test,systemd,owner]"
	@touch $(BIN)/pillowd $@

# The page's socket.io client: the npm archive pinned in package-lock.json, fetched
# and checked by Python (no Node). npm is for the tests' Azurite only.
$(VENDOR): package-lock.json tools/socketio_client.py
	$(PYTHON) tools/socketio_client.py
	@touch $@

node_modules/.bin/azurite-queue: package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

vendor: $(VENDOR)

bench: test-deps
	$(BIN)/python bench/running.py
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/render.py
	$(BIN)/python bench/queue_latency.py
	$(BIN)/python bench/fanout.py
	$(BIN)/python bench/actuators.py
	$(BIN)/python bench/mqtt.py
	$(BIN)/python bench/hostile.py
	$(BIN)/python bench/hug_roundtrip.py

clean:
	rm -rf $(VENV) node_modules web/static/vendor .state .pytest_cache
