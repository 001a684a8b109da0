# Two commands for a fresh machine:  `make run` (demo server)  and  `make test`.
# `PORT=9000 make run` serves the demo on another port.
PYTHON ?= python3
PORT   ?= 8000
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test lint bench bench-quick clean

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

# bench_taxii.py puts OpenTAXII in a virtualenv of its own (~/.cache/taxii-exchange-bench/).
BENCH_TAXII := $(BIN)/python tests/bench/bench_taxii.py --workers 2 --pushers 4

bench: $(BIN)/taxii-exchange
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BENCH_TAXII) --sizes 10000,100000,1000000 --medallion-n 2000 --opentaxii-n 100000
	$(BIN)/python tests/bench/bench_policy.py
	$(BIN)/python -m tests.bench.bench_normalize
	$(BIN)/python tests/bench/bench_federation.py
	$(BIN)/python tests/bench/bench_web.py
	$(BIN)/python tests/bench/bench_load.py

# The TAXII benchmark small, every column in a few minutes: to check it runs, not to quote.
bench-quick: $(BIN)/taxii-exchange
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BENCH_TAXII) --sizes 10000 --medallion-n 2000 --opentaxii-n 2000

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache
