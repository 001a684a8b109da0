# Two commands for a fresh machine:  `make run` (demo server)  and  `make test`.
# `PORT=9000 make run` serves the demo on another port.
PYTHON ?= python3
PORT   ?= 8000
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test lint bench clean

$(BIN)/taxii-exchange: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: $(BIN)/taxii-exchange
	$(BIN)/taxii-exchange demo --port $(PORT)

lint: $(BIN)/taxii-exchange
	$(BIN)/ruff check exchange tests
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

bench: $(BIN)/taxii-exchange
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python tests/bench/bench_taxii.py
	$(BIN)/python tests/bench/bench_policy.py
	$(BIN)/python -m tests.bench.bench_normalize
	$(BIN)/python tests/bench/bench_federation.py
	$(BIN)/python tests/bench/bench_web.py

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache
