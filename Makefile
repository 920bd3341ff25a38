# `make run` and `make test` each create .venv if needed, install what they need, then run.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
REGISTRY ?= registry
# Editing packaging or a C kernel must reinstall (and so rebuild the kernels) before anything runs.
INSTALL_INPUTS := pyproject.toml setup.py $(wildcard shared/*/*.c edge/*.c streaming/*.c)

.PHONY: run test bench lint clean venv

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.run-deps: $(INSTALL_INPUTS) | $(BIN)/python
	$(BIN)/pip install -q -e '.[train,local,origin]'
	touch $@

$(VENV)/.test-deps: $(INSTALL_INPUTS) | $(BIN)/python
	$(BIN)/pip install -q -e '.[train,local,loadtest,eval,origin,dev]'
	touch $@

run: $(VENV)/.run-deps
	$(BIN)/strata demo --registry $(REGISTRY)

test: $(VENV)/.test-deps
	$(BIN)/ruff check .
	$(BIN)/python -m pytest tests

bench: $(VENV)/.test-deps
	$(BIN)/strata bench edge --registry $(REGISTRY) --json bench-edge.json

lint: $(VENV)/.test-deps
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(REGISTRY) .pytest_cache
