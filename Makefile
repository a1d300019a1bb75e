# Quick start: `make demo` (set up, start the local stack, classify the sample ZIP), `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo up down test test-fast bench train evaluate clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/fashion-batch demo

up: $(STAMP)
	$(BIN)/fashion-batch up

down: $(STAMP)
	$(BIN)/fashion-batch down

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

bench: $(STAMP)
	$(BIN)/fashion-batch bench --images 10000 --json bench-out/bench.json

train: $(STAMP)
	$(BIN)/fashion-batch train

evaluate: $(STAMP)
	$(BIN)/fashion-batch evaluate

clean:
	rm -rf .data bench-out .pytest_cache
