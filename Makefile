# `make run` and `make test` each create .venv if needed, install what they need, then run.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
REGISTRY ?= registry
# Editing packaging or a C kernel must reinstall (and so rebuild the kernels) before anything runs.
INSTALL_INPUTS := pyproject.toml setup.py $(wildcard shared/*/*.c edge/*.c streaming/*.c)

.PHONY: run test test-fast test-cluster bench bench-vllm lint clean venv

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

# Tests keep compiled (and assert-rewritten) modules in the venv even where PYTHONDONTWRITEBYTECODE is set:
# recompiling every test module costs each run ~5 s.
PYTEST := PYTHONDONTWRITEBYTECODE= PYTHONPYCACHEPREFIX=$(abspath $(VENV))/pycache $(BIN)/python -m pytest
# Parallel lane, 2-core VMs, 2026-12-07: 3 workers 10:38 vs 2 workers 13:09 (Intel), 14:23 vs 16:02 (AMD). With 3,
# test_demo's full export takes ~265 s beside two other workers (its timeout is 900 s). OMP_NUM_THREADS=1: one
# torch thread per training, so parallel exports do not oversubscribe the cores.
TEST_WORKERS ?= 3
FAST_WORKERS ?= 2

# Everything that neither trains, exports, spawns processes nor asserts wall-clock time (markers: tests/conftest.py),
# over FAST_WORKERS processes (35 s instead of 56 s on this 2-core machine, 2026-12-07).
test-fast: $(VENV)/.test-deps
	$(PYTEST) tests -q -m "not slow and not timing" -n $(FAST_WORKERS)

# The full suite (after `make lint`: ruff, and mypy over the serving packages): in parallel over TEST_WORKERS processes (a module stays on one worker; the 30 slowest tests listed at the end), then the tests that
# assert wall-clock bounds or drive the vLLM server alone, so other work cannot skew them.
test: lint
	OMP_NUM_THREADS=1 $(PYTEST) tests -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder -m "not timing and not vllm" --durations=30
	$(PYTEST) $(SERIAL_MODULES) -m "timing or vllm"

# The modules holding the serial lane's tests: collecting only them spares importing the whole tree a second time
# (~15 s). tests/unit/test_make_lanes.py fails when a test marked timing or vllm lives in a module not listed.
SERIAL_MODULES := tests/e2e/test_doc_examples.py tests/e2e/test_loadtest.py tests/e2e/test_router_processes.py \
	tests/integration/test_edge_hostile.py tests/integration/test_edge_store_health.py \
	tests/integration/test_origin_vllm.py

# Every test that uses the online store (marker `store`, tests/conftest.py) against the session's local 3+3 Valkey
# Cluster instead of one valkey-server (STRATA_TEST_STORE=cluster); tests marked `single_valkey` are skipped.
test-cluster: $(VENV)/.test-deps
	STRATA_TEST_STORE=cluster $(PYTEST) tests -m "store and not timing and not vllm"

bench: $(VENV)/.test-deps
	$(BIN)/strata bench edge --registry $(REGISTRY) --json bench-edge.json

# One-item explain latency, template vs the tiny model on a real vLLM server (builds its cached venv).
bench-vllm: $(VENV)/.test-deps
	$(BIN)/python -m tests.support.vllm.bench_explain --registry $(REGISTRY)

# mypy over the serving packages ([tool.mypy] in pyproject.toml). They install as strata.<folder> (setup.py's
# package_dir), which mypy cannot follow: it reads them through $(TYPECHECK)/strata, a link to this folder, so its
# paths read strata/edge/... for edge/... . `dmypy run -- ...` with the same arguments re-checks in a second or two.
TYPECHECK := $(VENV)/typecheck
TYPED := shared edge streaming origin

lint: $(VENV)/.test-deps
	$(BIN)/ruff check .
	mkdir -p $(TYPECHECK) && ln -sfn $(CURDIR) $(TYPECHECK)/strata
	cd $(TYPECHECK) && $(abspath $(BIN))/mypy --config-file $(CURDIR)/pyproject.toml $(addprefix -p strata.,$(TYPED))

clean:
	rm -rf $(VENV) $(REGISTRY) .pytest_cache
