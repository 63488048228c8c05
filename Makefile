# The two commands of the README: `make run` and `make test`. Everything they need is installed here.
PYTHON ?= python3
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
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache bench/results.json

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
# loopback). Not part of `make test`: the `llm` extra builds llama-cpp-python from source the
# first time (about 8 minutes on 2 idle cores; pip caches the wheel), and the suite takes
# about a minute.
LLM_STAMP := $(VENV)/.installed-llm
.PHONY: test-llm
$(LLM_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,llm]'
	touch $@ $(STAMP) $(RUN_STAMP)

test-llm: $(LLM_STAMP)
	$(BIN)/ruff format --check tests_llm
	$(BIN)/ruff check tests_llm
	$(BIN)/pytest -q tests_llm
