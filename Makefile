PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint test-slow bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[all,test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/smoothrl train --preset minatar-quick --env minatar/breakout --method sn --layers -2 --out runs/quickstart

lint: $(STAMP)
	$(BIN)/ruff check smoothrl tests benchmarks
	$(BIN)/ruff format --check smoothrl tests benchmarks

test: lint
	$(BIN)/python -m pytest -q -n 2

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/python benchmarks/dqn_throughput.py

clean:
	rm -rf $(VENV) runs
