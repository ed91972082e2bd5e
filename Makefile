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
# `make run PORT=8081`: the status page on another port, config.toml untouched.
# Only from make's command line: a $PORT some other tool exported is not ours.
RUN_PORT := $(if $(filter command line,$(origin PORT)),$(PORT))
RUN_ARGS := --config config.toml --state-dir .state $(if $(RUN_PORT),--port $(RUN_PORT))
# pip's own chatter (setuptools' "Editable installation" banner) goes to a log,
# shown only when pip fails: `make run` prints the page's address, not pip's notes.
PIP_LOG := $(VENV)/pip.log
QUIET_PIP = >$(PIP_LOG) 2>&1 || { tail -n 30 $(PIP_LOG) >&2; exit 1; }

.PHONY: run demo try-pair test test-deps bench clean vendor

# The checkout's pillowd finds the same config and .state by itself, so
# `.venv/bin/pillowd send hug` reaches this pillow (pillowd/seams/checkout.py).
run: $(VENDOR) $(BIN)/pillowd
	@echo "$(BIN)/pillowd run $(RUN_ARGS)"
	@$(BIN)/pillowd run $(RUN_ARGS)

demo: $(VENDOR) $(BIN)/pillowd
	@echo "$(BIN)/pillowd run $(RUN_ARGS) --demo"
	@$(BIN)/pillowd run $(RUN_ARGS) --demo

# Azurite and two paired pillows side by side (docs/pairing.md, "Try it on one machine").
try-pair: $(VENDOR) $(BIN)/pillowd node_modules/.bin/azurite-queue
	$(BIN)/python tools/try-pair.py $(if $(RUN_PORT),--port $(RUN_PORT))

test: test-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-deps: $(VENDOR) $(VENV)/.test-deps node_modules/.bin/azurite-queue

$(VENV)/bin/python:
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || { echo "installing python3-venv"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq python3-venv; }
	$(PYTHON) -m venv $(VENV)
	@echo "$(BIN)/pip install -q --upgrade pip"
	@$(BIN)/pip install -q --upgrade pip $(QUIET_PIP)

# The vendored client first (setup.py's build hook would fetch it too).
$(BIN)/pillowd: pyproject.toml setup.py | $(VENV)/bin/python $(VENDOR)
	@echo "$(BIN)/pip install -q -e ."
	@$(BIN)/pip install -q -e . $(QUIET_PIP)
	@touch $@

$(VENV)/.apt:
	@missing=""; for p in $(TEST_APT); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
	@mkdir -p $(VENV) && touch $@

$(VENV)/.test-deps: pyproject.toml setup.py $(VENV)/.apt | $(VENV)/bin/python $(VENDOR)
	@echo '$(BIN)/pip install -q -e ".[test,systemd,owner]"'
	@$(BIN)/pip install -q -e ".[test,systemd,owner]" $(QUIET_PIP)
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
