# The two commands of the README: `make run` and `make test`. Everything they need is installed here.
# The newest CPython from 3.13 down to 3.11 on the machine, on PATH or installed by pyenv (a
# pyenv shim for a version not selected fails the probe and is passed over): a run's loop is
# about 40% faster on 3.13 than on 3.11 (a faster interpreter, and eager tasks from 3.12).
# `make PYTHON=python3.11 ...` chooses another; `make clean` first to rebuild the venv.
PYTHON ?= $(shell for python in python3.13 python3.12 \
	$$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.1[23].*/bin/python3 2>/dev/null | sort -rV) \
	python3; do $$python -c '' 2>/dev/null && echo $$python && break; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
RUN_STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==25.3

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(RUN_STAMP)

run: $(RUN_STAMP)
	$(BIN)/podium demo

lint: $(STAMP)
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck unit

bench: $(RUN_STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(PEERS_VENV) .mypy_cache .pytest_cache .ruff_cache bench/results.json \
		bench/peers.json

# podium beside LangGraph and Microsoft Agent Framework, measured on this machine: the peers
# the speed targets were set against. They install in a venv of their own, pinned in
# bench/peers.txt; podium does not depend on them.
PEERS_VENV := .venv-peers
.PHONY: bench-peers
$(PEERS_VENV)/.installed: pyproject.toml bench/peers.txt
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install --quiet -e . -r bench/peers.txt
	touch $@

bench-peers: $(PEERS_VENV)/.installed
	$(PEERS_VENV)/bin/python -m bench.peers

# The long fuzz run: 25,000 examples in each of the 4 fuzz tests, 100,000 definitions in all.
.PHONY: fuzz
fuzz: $(STAMP)
	PODIUM_FUZZ_EXAMPLES=25000 $(BIN)/pytest -q tests/fuzz --timeout=3600 \
		--hypothesis-show-statistics

# The crash test with many more seeds than `make test` runs (SQLite and PostgreSQL).
.PHONY: torture
torture: $(STAMP)
	PODIUM_TORTURE_SEEDS=60 $(BIN)/pytest -q tests/e2e/test_crash.py --timeout=3600

# The end-to-end suite against a real small model (SmolLM2-135M served by llama.cpp on
# loopback). Not part of `make test`: the `llm` extra builds llama-cpp-python from source
# (about 4 to 8 minutes on 2 cores), and the suite takes about two minutes.
# llama.cpp is built for a portable x86-64 (AVX2), not for this CPU: a CPU may advertise AMX
# that its virtual machine's kernel does not let a process use, and a native build then dies
# on its first reply. pip's cache is skipped because it keys the built wheel on the source
# alone and would hand back a native build made earlier.
LLM_STAMP := $(VENV)/.installed-llm
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON \
	-DGGML_F16C=ON -DGGML_BMI2=ON
.PHONY: test-llm
$(LLM_STAMP): pyproject.toml | $(BIN)/python
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install --quiet --no-cache-dir -e '.[dev,llm]'
	touch $@ $(STAMP) $(RUN_STAMP)

test-llm: $(LLM_STAMP)
	$(BIN)/ruff format --check tests_llm
	$(BIN)/ruff check tests_llm
	$(BIN)/pytest -q tests_llm
